"""The learned baselines (Wang20, Marra18, Marra19, Yu19) on planted traces, and their building blocks."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from torch import nn

from manifpt.baselines import get_baseline, list_baselines
from manifpt.baselines._cnn import predict_proba
from manifpt.baselines.marra18 import scale_learning_rate, unscale
from manifpt.baselines.marra19 import herding
from manifpt.baselines.wang20 import blur_jpeg, gaussian_blur, image_tensor, jpeg_roundtrip
from manifpt.baselines.yu19 import add_aux_loss, normalise
from manifpt.datasets import photo_patches
from manifpt.demo import plant
from manifpt.nn.nets import build_net

LEARNED = ("marra18", "marra19", "wang20", "yu19")
KINDS = ("checker", "grid", "stripes")

#: CPU-sized settings: the smallest CIFAR ResNet, batches of 16 (more steps, and batch-norm statistics that
#: settle within the few epochs), few epochs; Marra18 at the native 32 px with faster fine-tuning rates.
FAST = {
    "wang20": {"arch": "cifar_resnet", "depth": 1, "batch_size": 16, "max_epochs": 6, "patience": 3},
    "yu19": {"batch_size": 16, "max_epochs": 8, "patience": 3},
    "marra19": {"depth": 1, "batch_size": 16, "max_epochs": 6, "patience": 3, "memory_size": 30},
    "marra18": {"resolution": 32, "batch_size": 16, "max_epochs": 6, "patience": 3, "lr": 3e-3,
                "backbone_lr": 1e-3},
}
#: (training images per class, trace strength, minimum test accuracy, feature dimension); chance is 1/3.
#: Development runs over three model seeds: Wang20 0.95–0.99 (shuffled labels 0.19–0.34), Yu19 1.00 (0.25–0.34),
#: Marra19 0.98–0.99. Marra18 gets a stronger trace: an ImageNet network fine-tuned on 120 images for 6 epochs is
#: the slowest to pick up a ±24 grey-level pattern (≈ 0.74 at ±24; 0.86–0.89 at ±48).
CASES = {
    "wang20": (50, 24.0, 0.85, 64),
    "yu19": (50, 24.0, 0.85, 3 * 32 * 32),
    "marra19": (50, 24.0, 0.85, 64),
    "marra18": (40, 48.0, 0.7, 1280),
}


@functools.cache
def _problem(per_class: int, strength: float, seed: int) -> tuple[np.ndarray, ...]:
    """Real photo patches with a planted periodic trace per class; half for training, half for testing."""
    rng = np.random.default_rng(seed)
    base = photo_patches(2 * per_class * len(KINDS), 32, seed=seed)
    x = np.concatenate([plant(base[2 * per_class * j:2 * per_class * (j + 1)], k, strength)
                        for j, k in enumerate(KINDS)])
    y = np.repeat(np.array(KINDS), 2 * per_class)
    p = rng.permutation(len(x))
    x, y = x[p], y[p]
    h = len(x) // 2
    return x[:h], y[:h], x[h:], y[h:]


# ---------------------------------------------------------------------------------------------- registry, API


def test_registry_and_metadata() -> None:
    assert set(LEARNED) <= set(list_baselines())
    for name in LEARNED:
        b = get_baseline(name, seed=3)
        assert b.get_params()["seed"] == 3 and clone(b).get_params() == b.get_params()  # sklearn-style init
        assert b.name == name and len(b.paper) > 40 and b.deviations and all(isinstance(d, str) for d in b.deviations)
        assert b.learned_features and not any(k.endswith("_") for k in vars(b))
        with pytest.raises(NotFittedError):
            b.features(np.zeros((1, 32, 32, 3), np.uint8))


@pytest.mark.parametrize("name", LEARNED)
def test_fits_planted_traces(name: str) -> None:
    per_class, strength, min_acc, dim = CASES[name]
    xtr, ytr, xte, yte = _problem(per_class, strength, seed=1)
    clf = get_baseline(name, seed=0, **FAST[name]).fit(xtr, ytr)
    assert list(clf.classes_) == sorted(KINDS)
    proba = clf.predict_proba(xte)
    assert proba.shape == (len(xte), 3) and np.allclose(proba.sum(1), 1)
    pred = clf.predict(xte)
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(1)])
    acc = float((pred == yte).mean())
    assert acc >= min_acc, f"{name}: accuracy {acc:.3f} on planted traces"
    feats = clf.features(xte[:5])
    assert feats.shape == (5, dim) and feats.dtype == np.float32 and np.isfinite(feats).all()
    json.dumps(clf.describe())
    if name in ("wang20", "yu19"):  # the same recipe on shuffled labels finds no trace (σ ≈ 0.04 at n = 150)
        shuffled = np.random.default_rng(2).permutation(ytr)
        acc0 = float((get_baseline(name, seed=0, **FAST[name]).fit(xtr, shuffled).predict(xte) == yte).mean())
        assert acc0 <= 0.5, f"{name}: accuracy {acc0:.3f} with shuffled training labels"


@pytest.mark.parametrize("name", LEARNED)
def test_grayscale_and_integer_labels(name: str) -> None:
    xtr, ytr, xte, _ = _problem(20, 24.0, seed=4)
    gray_tr, gray_te = xtr[:, 2:30, 2:30, 1], xte[:4, 2:30, 2:30, 1]  # 28×28 grayscale
    codes = np.array([{"checker": 10, "grid": 20, "stripes": 30}[v] for v in ytr])
    clf = get_baseline(name, **{**FAST[name], "max_epochs": 1}).fit(gray_tr, codes)
    assert list(clf.classes_) == [10, 20, 30] and set(clf.predict(gray_te)) <= {10, 20, 30}
    assert clf.features(gray_te).shape[0] == 4
    json.dumps(clf.describe())


# ---------------------------------------------------------------------------------------------- Wang20


def test_wang20_augmentation_is_seeded_and_changes_images() -> None:
    x = _problem(20, 24.0, seed=4)[0][:12]
    a = blur_jpeg(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, blur_jpeg(x, np.random.default_rng(5)))  # deterministic per seed
    assert not np.array_equal(a, blur_jpeg(x, np.random.default_rng(6)))
    assert a.dtype == np.uint8 and a.shape == x.shape and not np.array_equal(a, x)
    np.testing.assert_array_equal(blur_jpeg(x, np.random.default_rng(5), blur_prob=0, jpeg_prob=0), x)
    j = jpeg_roundtrip(x[0], 30)
    assert j.shape == x[0].shape and j.dtype == np.uint8 and not np.array_equal(j, x[0])
    err = np.abs(j.astype(int) - x[0]).mean()
    assert 0 < err < 20 and err > np.abs(jpeg_roundtrip(x[0], 95).astype(int) - x[0]).mean()  # lossy, less at q95
    g = jpeg_roundtrip(x[0, ..., 0], 50)
    assert g.shape == (32, 32) and not np.array_equal(g, x[0, ..., 0])
    np.testing.assert_array_equal(gaussian_blur(x[0], 0.0), x[0])
    checker = plant(np.full((1, 32, 32), 128, np.uint8), "checker")[0]
    blurred = gaussian_blur(checker, 1.0).astype(float)
    assert np.abs(blurred[4:-4, 4:-4] - 128).max() <= 1  # the Nyquist pattern is erased (away from the borders)
    only_jpeg = blur_jpeg(x, np.random.default_rng(0), blur_prob=0, jpeg_prob=1)
    assert all(not np.array_equal(o, i) for o, i in zip(only_jpeg, x, strict=True))


def test_wang20_fit_is_reproducible_and_predicts_unaugmented() -> None:
    xtr, ytr, xte, _ = _problem(20, 24.0, seed=4)
    kw = {**FAST["wang20"], "max_epochs": 2, "device": "cpu"}  # bit-exact only on CPU
    a = get_baseline("wang20", seed=1, **kw).fit(xtr, ytr)
    b = get_baseline("wang20", seed=1, **kw).fit(xtr, ytr)
    np.testing.assert_allclose(a.predict_proba(xte), b.predict_proba(xte), atol=1e-6)
    np.testing.assert_array_equal(a.predict_proba(xte), a.predict_proba(xte))  # no augmentation at predict time
    assert a.arch_ == "cifar_resnet" and a.init_ == "scratch" and a.lr_ == 1e-3


# ---------------------------------------------------------------------------------------------- Marra19


def test_herding_tracks_the_mean() -> None:
    rng = np.random.default_rng(0)
    f = rng.normal(size=(200, 8)) + np.array([2.0] + [0.0] * 7)
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    mu = unit.mean(0)
    idx = herding(f, 10)
    assert len(set(idx.tolist())) == 10 and idx[0] == np.argmin(np.linalg.norm(unit - mu, axis=1))
    herd_err = np.linalg.norm(unit[idx].mean(0) - mu)
    rand_err = np.mean([np.linalg.norm(unit[rng.choice(200, 10, replace=False)].mean(0) - mu) for _ in range(50)])
    assert herd_err < 0.5 * rand_err
    assert sorted(herding(f[:7], 10).tolist()) == list(range(7))  # budget above the class size: every row


def test_marra19_single_task_is_plain_training() -> None:
    xtr, ytr, xte, _ = _problem(20, 24.0, seed=4)
    kw = {**FAST["marra19"], "max_epochs": 2, "device": "cpu"}
    clf = get_baseline("marra19", n_tasks=1, classifier="softmax", seed=2, **kw).fit(xtr, ytr)
    assert len(clf.steps_) == 1 and clf.steps_[0]["n_train"] == len(xtr)
    # the same network, seed and data order trained as a plain CNN baseline, classes in the seeded order
    codes = np.searchsorted(clf.classes_, ytr)
    order = np.random.default_rng(2).permutation(3)
    torch.manual_seed(2)
    net = build_net("cifar_resnet", (3, 32, 32), 3, depth=1)
    clf._train(net, xtr, np.argsort(order)[codes], seed=2)
    plain = predict_proba(net, xte, transform=image_tensor, batch_size=16)[:, np.argsort(order)]
    np.testing.assert_allclose(clf.predict_proba(xte), plain, atol=1e-5)


def test_marra19_incremental_steps_and_memory_budget() -> None:
    xtr, ytr, xte, yte = _problem(50, 24.0, seed=1)
    clf = get_baseline("marra19", seed=0, **{**FAST["marra19"], "n_tasks": 5}).fit(xtr, ytr)  # capped at K − 1
    assert clf.n_tasks_ == 2 and len(clf.steps_) == 2
    first, second = clf.steps_
    assert len(first["new_classes"]) == 2 and len(second["new_classes"]) == 1
    assert sorted(first["new_classes"] + second["new_classes"]) == sorted(KINDS)
    assert list(clf.class_order_) == first["new_classes"] + second["new_classes"]
    n_new = int((ytr == second["new_classes"][0]).sum())
    assert second["n_train"] == n_new + 2 * (30 // 2)  # new images + the old classes' exemplars after step 1
    assert all(s["memory"] <= 30 for s in clf.steps_)
    assert sum(len(v) for v in clf.exemplar_indices_.values()) <= 30
    for label, idx in clf.exemplar_indices_.items():
        assert len(idx) == 30 // 3 and (ytr[idx] == label).all()
    assert clf.class_means_.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(clf.class_means_, axis=1), 1, atol=1e-5)
    soft = clf.set_params(classifier="softmax")  # the head of the same network, without refitting
    assert (soft.predict(xte) == yte).mean() >= 0.6
    with pytest.raises(ValueError, match="memory_size"):
        get_baseline("marra19", memory_size=2).fit(xtr[:30], ytr[:30])


# ---------------------------------------------------------------------------------------------- Yu19


def test_yu19_fingerprints_and_features() -> None:
    xtr, ytr, xte, _ = _problem(20, 24.0, seed=4)
    clf = get_baseline("yu19", max_epochs=1, batch_size=16, max_features=300).fit(xtr, ytr)
    fm = clf.model_fingerprints()
    assert fm.shape == (3, 32, 32, 3) and fm.dtype == np.float32
    np.testing.assert_allclose(fm.reshape(3, -1).mean(1), 0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(fm.reshape(3, -1), axis=1), 1, atol=1e-5)
    assert clf.features(xte[:3]).shape == (3, 3 * 10 * 10)  # pooled: 3·10² ≤ 300
    with pytest.raises(ValueError, match="model fingerprints"):
        clf.predict(xte[:2, :28, :28])
    gray = get_baseline("yu19", max_epochs=1, batch_size=16).fit(xtr[:, 2:30, 2:30, 0], ytr)
    assert gray.model_fingerprints().shape == (3, 28, 28) and gray.features(xte[:2, 2:30, 2:30, 0]).shape == (2, 784)
    # the logits are the scaled correlations of the normalised image fingerprint with each model fingerprint
    net = clf.model_
    x = image_tensor(xte[:4], torch.device("cpu"))
    with torch.no_grad():
        fi = net.image_fingerprint(x).flatten(1)
        fm_t = normalise(net.model_fingerprints).flatten(1)
        corr = fi @ fm_t.T
        torch.testing.assert_close(net(x), net.log_scale.exp() * corr)
    assert corr.abs().max() <= 1 + 1e-5


def test_add_aux_loss_trains_on_the_sum() -> None:
    torch.manual_seed(0)
    w = torch.randn(3, 4, requires_grad=True)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    aux = (w ** 2).sum() * 0.3
    nn.functional.cross_entropy(add_aux_loss(x @ w.T, aux), y).backward()
    got = w.grad.clone()
    w.grad = None
    (nn.functional.cross_entropy(x @ w.T, y) + (w ** 2).sum() * 0.3).backward()
    torch.testing.assert_close(got, w.grad)
    torch.testing.assert_close(add_aux_loss(x @ w.T, aux), x @ w.T)


# ---------------------------------------------------------------------------------------------- Marra18


def test_scale_learning_rate_scales_adamw_steps() -> None:
    torch.manual_seed(0)
    ref = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 3))  # (a bias before batch norm would get no gradient)
    scaled = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 3))
    scaled.load_state_dict(ref.state_dict())
    before = {k: v.clone() for k, v in ref.state_dict().items()}
    changed = scale_learning_rate(scaled, 0.1)
    assert len(changed) == 4
    x, target = torch.randn(8, 4), torch.randn(8, 3)
    lr, wd = 1e-2, 0.5
    for model in (ref, scaled):  # one AdamW step on the same loss
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
        (model(x) - target).square().sum().backward()
        opt.step()
    unscale(changed)
    assert {k for k, _ in scaled.named_parameters()} == {k for k, _ in ref.named_parameters()}  # plain again
    for k in ("0.weight", "0.bias", "1.weight", "1.bias"):
        decay = -lr * wd * before[k]
        adam_ref = ref.state_dict()[k] - before[k] - decay
        # the Adam part of the step is 10× smaller; decoupled weight decay shrinks the weights as before
        torch.testing.assert_close(scaled.state_dict()[k] - before[k], 0.1 * adam_ref + decay, rtol=1e-4, atol=1e-8)
