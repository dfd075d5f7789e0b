"""Any learner on any input (``manifpt.learners``) and their late fusion (``manifpt.fusion``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import log_softmax, softmax

from manifpt.baselines import get_baseline
from manifpt.compare import CompareConfig, compare_run
from manifpt.errors import UnknownNameError
from manifpt.evaluate import ArrayMethod
from manifpt.fusion import FusedMethod, ensemble_selection, fit_temperature
from manifpt.learners import LEARNERS, learner_factory
from test_baselines_cnn import FAST, _problem

ARRAY_LEARNERS = ("wang20", "marra19")


def _arrays(images: np.ndarray) -> np.ndarray:
    """uint8 N×H×W×3 → float32 N×3×H×W centred near 0 (what an RGB artifact looks like)."""
    return (images.astype(np.float32) / 255 - 0.5).transpose(0, 3, 1, 2).copy()


@pytest.mark.parametrize("name", ARRAY_LEARNERS)
def test_cnn_learner_on_float_arrays_with_a_given_validation_set(name: str, monkeypatch) -> None:
    xtr, ytr, xte, yte = _problem(50, 24.0, seed=1)
    a_tr, a_te = _arrays(xtr), _arrays(xte)
    import manifpt.baselines._cnn as cnn

    seen: list[int] = []
    real_fit = cnn.fit_classifier

    def spy(model, X, y, X_val, y_val, **kw):  # the early-stopping set is the one given, not a carved one
        seen.append(len(X_val))
        return real_fit(model, X, y, X_val, y_val, **kw)
    monkeypatch.setattr(cnn, "fit_classifier", spy)
    clf = get_baseline(name, seed=0, **FAST[name]).fit(a_tr[:120], ytr[:120], a_tr[120:], ytr[120:])
    assert seen and all(0 < n <= 30 for n in seen) and (name == "marra19" or seen == [30])
    acc = float((clf.predict(a_te) == yte).mean())
    assert acc >= 0.8, f"{name} on arrays: accuracy {acc:.3f}"
    assert clf.input_stats_[0].shape == (3, 32, 32)
    assert clf.features(a_te[:4]).shape[0] == 4
    with pytest.raises(ValueError, match="fitted on float arrays"):
        clf.predict(xte[:2])  # uint8 images into a network trained on standardised arrays
    with pytest.raises(ValueError, match="shape"):
        clf.predict(a_te[:2, :, :16])


@pytest.mark.parametrize("name", ARRAY_LEARNERS)
def test_cnn_learner_on_vectors_gets_an_mlp(name: str) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.array(["a", "b", "c"]), 60)
    centres = rng.normal(size=(3, 40)) * 2
    X = (centres[np.searchsorted(["a", "b", "c"], y)] + rng.normal(size=(len(y), 40))).astype(np.float32)
    clf = get_baseline(name, seed=0, **FAST[name]).fit(X[::2], y[::2])
    assert float((clf.predict(X[1::2]) == y[1::2]).mean()) >= 0.9
    assert type(clf.model_.body[1]).__name__ == "LayerNorm"  # the MLP of manifpt.nn.nets


def test_array_contract_messages() -> None:
    b = get_baseline("wang20", **FAST["wang20"])
    with pytest.raises(ValueError, match="NaN"):
        b.fit(np.full((6, 3, 8, 8), np.nan, np.float32), ["a", "b"] * 3)
    with pytest.raises(ValueError, match="N×C×H×W or N×D"):
        b.fit(np.zeros((6, 8, 8), np.float32), ["a", "b"] * 3)
    with pytest.raises(TypeError, match="uint8"):  # image-only baselines still take images only
        get_baseline("durall20").fit(np.zeros((6, 8, 8), np.float32), ["a", "b"] * 3)
    with pytest.raises(ValueError, match="validation set"):
        b.fit(np.zeros((6, 3, 8, 8), np.float32), ["a", "b"] * 3, np.zeros((2, 3, 8, 8), np.float32), ["a", "z"])
    assert not hasattr(b, "classes_")  # a refused fit does not look fitted


def test_every_learner_through_the_factory() -> None:
    from manifpt.attribute import AttributorConfig

    xtr, ytr, xte, _ = _problem(30, 24.0, seed=2)
    a_tr, a_te = _arrays(xtr).reshape(len(xtr), -1), _arrays(xte).reshape(len(xte), -1)  # stored N×D, shaped C×H×W
    cfg = AttributorConfig(arch="cifar_resnet", depth=1, epochs=4, batch_size=16, patience=2)
    opts = {k: {**v, "max_epochs": 3} for k, v in FAST.items()}
    for learner in LEARNERS:
        model = learner_factory(learner, cfg, (3, 32, 32), baseline_options=opts.get(learner),
                                show_progress=False)(0)
        model.fit(a_tr[:60], ytr[:60], a_tr[60:], ytr[60:])
        p = model.predict_proba(a_te)
        assert p.shape == (len(a_te), 3) and np.allclose(p.sum(1), 1, atol=1e-5), learner
        assert list(np.asarray(model.classes_).astype(str)) == sorted(set(ytr.tolist()))
        assert len(model.transform(a_te[:3])) == 3
    with pytest.raises(UnknownNameError):
        learner_factory("svm", cfg, None)


# ---------------------------------------------------------------------------------------------- fusion


def test_fit_temperature_matches_a_grid_search() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 5)) * 3
    y = np.array([rng.choice(5, p=softmax(r / 2.5)) for r in z])  # labels drawn at temperature 2.5
    t = fit_temperature(log_softmax(z, axis=1), y)
    grid = np.exp(np.linspace(-3, 3, 6001))
    nll = [-log_softmax(z / g, axis=1)[np.arange(len(y)), y].mean() for g in grid]
    assert abs(t - grid[int(np.argmin(nll))]) < 0.01 and 1.8 < t < 3.5


def test_ensemble_selection_picks_the_informative_members() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    good = np.full((300, 3), 0.1)
    good[np.arange(300), y] = 0.8
    noise = rng.dirichlet(np.ones(3), 300)
    counts = ensemble_selection([noise, good, noise[::-1]], y)
    assert counts[1] >= 1 and counts[1] == counts.max() and counts.sum() >= 1
    assert ensemble_selection([good], y).tolist() == [1]


class _Centroid:
    """A tiny learner with the attributor's interface (nearest class mean, softmax of −distance)."""

    calls = 0

    def __init__(self, scale: float):
        self.scale = scale

    def fit(self, X, y, X_val=None, y_val=None):
        _Centroid.calls += 1
        self.classes_ = np.array(sorted(set(y.tolist())))
        self.mu_ = np.stack([X[y == c].mean(0) for c in self.classes_])
        return self

    def predict_proba(self, X):
        return softmax(-self.scale * ((X[:, None] - self.mu_[None]) ** 2).sum(-1), axis=1)

    def transform(self, X):
        return X


def test_fused_method_reuses_member_fits_and_beats_a_useless_member() -> None:
    rng = np.random.default_rng(2)
    labels = np.repeat(np.array(["a", "b", "c"]), 100)
    codes = np.searchsorted(["a", "b", "c"], labels)
    informative = (np.eye(3)[codes] * 2 + rng.normal(size=(300, 3))).astype(np.float32)
    useless = rng.normal(size=(300, 3)).astype(np.float32)
    members = [ArrayMethod("manifpt", "rgb", informative, None, lambda s: _Centroid(1.0)),
               ArrayMethod("manifpt[raw]", "rgb", useless, None, lambda s: _Centroid(1.0))]
    fused = FusedMethod(members)
    p = rng.permutation(300)
    train, val, test = np.sort(p[:180]), np.sort(p[180:240]), np.sort(p[240:])
    _Centroid.calls = 0
    for m in members:
        m.fit(train, val, labels, 0)
    fused.fit(train, val, labels, 0)
    assert _Centroid.calls == 2  # the members' fits of this seed and split, not new ones
    sel = {s["method"]: s["weight"] for s in fused.selection()}
    assert sel["manifpt"] > sel["manifpt[raw]"] and abs(sum(sel.values()) - 1) < 1e-12
    proba, classes = fused.predict_proba(test)
    assert classes == ["a", "b", "c"] and np.allclose(proba.sum(1), 1)
    acc_fused = float((np.asarray(classes)[proba.argmax(1)] == labels[test]).mean())
    members[0].fit(train, val, labels, 0)
    pm, cm = members[0].predict_proba(test)
    assert acc_fused >= float((np.asarray(cm)[pm.argmax(1)] == labels[test]).mean()) - 0.05
    fused.fit(train, val, labels, 1)  # another seed: trained anew
    assert _Centroid.calls == 4


def test_compare_with_learners_and_fusion(folders, tmp_path) -> None:
    real, gen = folders
    cfg = CompareConfig(real=str(real), generated=str(gen), spaces=["rgb"], projections=["nn1", "raw"], seeds=[0, 1],
                        learners=["attributor", "linear", "marra19"], fuse=True, max_per_class=40,
                        attributor={"arch": "cifar_resnet", "depth": 1, "epochs": 3, "batch_size": 16},
                        baseline_options={"marra19": {**FAST["marra19"], "max_epochs": 2}})
    rows, results = compare_run(cfg, tmp_path / "c", show_progress=False)
    acc = {(r["method"], r["space"]): r for r in rows if r["metric"] == "accuracy"}
    assert set(acc) == {(m, "rgb") for m in ("manifpt", "manifpt@linear", "manifpt@marra19", "manifpt[raw]",
                                            "manifpt[raw]@linear", "manifpt[raw]@marra19", "manifpt-fused")}
    assert all(len(r["values"]) == 2 and r["seeds"] == [0, 1] for r in acc.values())
    tests = {r.seed: r.test_idx for r in results if r.method == "manifpt"}
    assert all((r.test_idx == tests[r.seed]).all() for r in results)  # one split per seed for every method
    sel = json.loads((tmp_path / "c" / "models" / "manifpt-fused-rgb" / "seed-0" / "fusion.json").read_text())
    assert len(sel["members"]) == 6 and abs(sum(m["weight"] for m in sel["members"]) - 1) < 1e-9
    assert acc[("manifpt-fused", "rgb")]["mean"] > 0.5  # three planted traces, chance 1/3
    with pytest.raises(UnknownNameError):
        compare_run(cfg.model_copy(update={"learners": ["knn"]}), None, show_progress=False)


def test_compare_cli_learners_and_fuse(folders, tmp_path) -> None:
    from typer.testing import CliRunner

    from manifpt.cli import app

    real, gen = folders
    args = ["compare", "--real", str(real), "--generated", str(gen), "--out", str(tmp_path / "c"), "--spaces", "rgb",
            "--methods", "none", "--seeds", "2", "--max-per-class", "30", "--arch", "linear", "--epochs", "2",
            "--learners", "attributor,linear", "--fuse", "--quiet"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "c" / "results.json").read_text())
    assert {x["method"] for x in rows if x["metric"] == "accuracy"} == {"manifpt", "manifpt@linear", "manifpt-fused"}
    r = CliRunner().invoke(app, [*args[:-3], "--learners", "svm", "--quiet"])
    assert r.exit_code != 0 and "svm" in r.output and "Traceback" not in r.output
