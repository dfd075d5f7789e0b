"""Attributor: learns planted traces, stays at chance on shuffled labels, round-trips safely."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from manifpt import Manifold, get_space
from manifpt.attribute import Attributor
from manifpt.demo import PLANTED_MODELS, planted_model
from manifpt.splits import stratified_split


@pytest.fixture(scope="module")
def planted(patches: np.ndarray) -> dict:
    """RGB and FREQ artifacts of three planted-trace 'models' against a real manifold."""
    real = patches[:800]
    kinds = list(PLANTED_MODELS)
    gen = np.concatenate([planted_model(patches[800 + 200 * j:1000 + 200 * j], k) for j, k in enumerate(kinds)])
    labels = np.repeat(kinds, 200)
    out = {"labels": labels}
    for name in ("rgb", "freq"):
        out[name] = Manifold(get_space(name), cache=False).fit(real).artifacts(gen)
    return out


def test_split_is_stratified_disjoint_and_seeded() -> None:
    labels = np.repeat(["a", "b", "c"], [10, 20, 31])
    s = stratified_split(labels, seed=1)
    allidx = np.concatenate(list(s.values()))
    assert sorted(allidx.tolist()) == list(range(61))
    for c, n in (("a", 10), ("b", 20), ("c", 31)):
        assert (labels[s["test"]] == c).sum() == round(0.2 * n)
    assert all((stratified_split(labels, seed=1)[k] == s[k]).all() for k in s)
    assert not (stratified_split(labels, seed=2)["test"] == s["test"]).all()


@pytest.mark.parametrize("space", ["rgb", "freq"])
def test_planted_artifacts_are_attributed_and_shuffled_labels_are_not(planted: dict, space: str) -> None:
    X, y = planted[space], planted["labels"]
    sp = stratified_split(y, seed=0)
    kw = dict(arch="cifar_resnet", depth=1, epochs=12, patience=12, batch_size=32, seed=0, coords=space == "freq",
              show_progress=False)
    att = Attributor((3, 32, 32), **kw).fit(X[sp["train"]], y[sp["train"]], X[sp["val"]], y[sp["val"]])
    acc = (att.predict(X[sp["test"]]) == y[sp["test"]]).mean()
    assert acc >= 0.95, f"{space}: accuracy {acc:.3f} on planted traces"
    y_shuf = np.random.default_rng(0).permutation(y)
    sh = Attributor((3, 32, 32), **kw).fit(X[sp["train"]], y_shuf[sp["train"]], X[sp["val"]], y_shuf[sp["val"]])
    acc_shuf = (sh.predict(X[sp["test"]]) == y_shuf[sp["test"]]).mean()
    assert acc_shuf < 0.5, f"{space}: shuffled-label accuracy {acc_shuf:.3f} should be near chance (1/3)"


def test_vector_mlp_and_linear(planted: dict) -> None:
    X, y = planted["freq"], planted["labels"]
    sp = stratified_split(y, seed=0)
    for arch in ("mlp", "linear"):
        att = Attributor(None, arch=arch, epochs=15, seed=0, show_progress=False)
        att.fit(X[sp["train"]], y[sp["train"]], X[sp["val"]], y[sp["val"]])
        assert (att.predict(X[sp["test"]]) == y[sp["test"]]).mean() > 0.9, arch
        assert att.transform(X[:4]).shape == (4, 256 if arch == "mlp" else X.shape[1])
        # one forward pass gives what decision_function, transform and predict_proba give in three
        logits, feats = att.outputs(X[:300])
        np.testing.assert_array_equal(logits, att.decision_function(X[:300]))
        np.testing.assert_array_equal(feats, att.transform(X[:300]))
        np.testing.assert_array_equal(att.softmax(logits), att.predict_proba(X[:300]))
        assert [a.shape for a in att.outputs(X[:0])] == [(0, 3), (0, feats.shape[1])]


def test_save_load_round_trip_and_no_code_execution(planted: dict, tmp_path) -> None:
    X, y = planted["rgb"][::6], planted["labels"][::6]
    att = Attributor((3, 32, 32), arch="cifar_resnet", depth=1, epochs=2, show_progress=False).fit(X, y)
    p = att.predict_proba(X)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    att.save(tmp_path / "att")
    loaded = Attributor.load(tmp_path / "att")
    np.testing.assert_allclose(loaded.predict_proba(X), p, rtol=1e-5, atol=1e-6)
    assert loaded.classes_.tolist() == sorted(PLANTED_MODELS)
    # format 1 (the CIFAR ResNet as one Sequential: net.0 conv, net.1 bn, net.3… blocks) still loads
    from safetensors.torch import load_file, save_file

    def v1(key: str) -> str:
        head, sep, rest = key.partition("body.stem.")
        if sep:
            return f"{head}body.net.{rest}"
        head, sep, rest = key.partition("body.layers.")
        i, _, tail = rest.partition(".")
        return f"{head}body.net.{int(i) + 3}.{tail}" if sep else key

    old = tmp_path / "att-v1"
    old.mkdir()
    tensors = load_file(str(tmp_path / "att" / "model.safetensors"))
    assert any(".net." in v1(k) for k in tensors) and not any(".net." in k.removeprefix("net.") for k in tensors)
    save_file({v1(k): v for k, v in tensors.items()}, str(old / "model.safetensors"))
    meta = json.loads((tmp_path / "att" / "attributor.json").read_text())
    (old / "attributor.json").write_text(json.dumps({**meta, "format": "manifpt-attributor/1"}))
    np.testing.assert_allclose(Attributor.load(old).predict_proba(X), p, rtol=1e-5, atol=1e-6)
    # a pickle planted where weights are expected is refused, and its payload never runs
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "att" / "model.safetensors").write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(Exception):  # noqa: B017 - safetensors raises its own error type
        Attributor.load(tmp_path / "att")
    assert not marker.exists()


def test_resnet50_head_on_small_artifacts() -> None:
    from manifpt.nn.nets import build_net

    net = build_net("resnet50", (1, 28, 28), 5, pretrained=True)
    assert net.init == "scratch"  # no ImageNet weights on this machine
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 5)
    assert net.features(torch.zeros(2, 1, 28, 28)).shape == (2, 2048)


def test_batchnorm_recalibration_is_the_plain_average_of_batch_statistics() -> None:
    from manifpt.nn.train import recalibrate_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.BatchNorm2d(3)).eval()
    batches = [torch.randn(n, 2, 5, 5) * 3 + 1 for n in (8, 8, 1, 6)]  # the batch of one is skipped
    with torch.no_grad():
        feats = [net[0](b).double() for b in batches if len(b) > 1]
    ref_mean = np.mean([f.mean((0, 2, 3)).numpy() for f in feats], axis=0)
    ref_var = np.mean([f.permute(1, 0, 2, 3).reshape(3, -1).var(1, unbiased=True).numpy() for f in feats], axis=0)
    assert recalibrate_batchnorm(net, batches)
    bn = net[1]
    np.testing.assert_allclose(bn.running_mean.numpy(), ref_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), ref_var, rtol=1e-5)
    assert bn.momentum == 0.1 and not net.training  # settings and mode restored
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    recalibrate_batchnorm(net, [torch.randn(1, 2, 5, 5)])  # nothing usable: statistics kept
    assert all(torch.equal(before[k], v) for k, v in bn.state_dict().items())
    assert not recalibrate_batchnorm(torch.nn.Linear(2, 2), batches)
