"""Open-set attribution: metrics against hand-computed and brute-force references, planted unknowns."""

from __future__ import annotations

import numpy as np
import pytest

from manifpt import Manifold, get_space
from manifpt import openset as O
from manifpt.attribute import Attributor
from manifpt.demo import planted_model

KINDS = ["nearest+checker", "bilinear+stripes", "native+grid"]


def test_oscr_matches_the_hand_computed_example() -> None:
    # known: scores 0.1 (correct), 0.2 (wrong), 0.4 (correct), 0.6 (correct); unknown: 0.3, 0.5.
    # Sweeping θ upwards: (FPR, CCR) = (0, ¼) (0, ¼) (½, ¼) (½, ½) (1, ½) (1, ¾) → area ½·¼ + ½·½ = 0.375
    assert O.oscr([True, False, True, True], [0.1, 0.2, 0.4, 0.6], [0.3, 0.5]) == pytest.approx(0.375)
    # a tie between a known and an unknown image is the diagonal: its expected area in random order
    assert O.oscr([True], [0.8], [0.8]) == pytest.approx(0.5)
    # perfect: every known image correct and below every unknown one
    assert O.oscr([True, True], [0.1, 0.2], [0.5, 0.9]) == pytest.approx(1.0)
    # a misclassified known image adds nothing; unknown images below every known one cost everything
    assert O.oscr([False, True], [0.1, 0.2], [0.0, 0.05]) == pytest.approx(0.0)


def test_auroc_and_tnr_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    k, u = rng.normal(size=50), rng.normal(1.0, size=40)
    k[:5] = u[:5]  # ties count one half
    pairs = (u[None, :] > k[:, None]).mean() + 0.5 * (u[None, :] == k[:, None]).mean()
    assert O.auroc(k, u) == pytest.approx(pairs)
    assert O.tnr_at_tpr(k, u) == pytest.approx(np.mean(u > np.quantile(k, 0.95)))
    tpr = np.asarray(O.roc_tpr(k, u))  # the sampled ROC curve encloses the AUROC
    assert np.all(np.diff(tpr) >= 0) and np.trapezoid(tpr, O.ROC_GRID) == pytest.approx(O.auroc(k, u), abs=0.01)


@pytest.fixture(scope="module")
def planted(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gen = np.concatenate([planted_model(patches[800 + 200 * j:1000 + 200 * j], k) for j, k in enumerate(KINDS)])
    X = Manifold(get_space("rgb"), cache=False, show_progress=False).fit(patches[:800]).artifacts(gen)
    return X.reshape(-1, 3, 32, 32), np.repeat(KINDS, 200)


def _held_out(X: np.ndarray, y: np.ndarray, unknown: str) -> tuple[O.OpenSetScorer, np.ndarray, np.ndarray]:
    """Train on the other sources; (scorer, known test indices, unknown indices)."""
    idx = np.flatnonzero(y != unknown)
    np.random.default_rng(0).shuffle(idx)
    tr, va, te = idx[:200], idx[200:260], idx[260:]
    att = Attributor((3, 32, 32), arch="cifar_resnet", depth=1, epochs=8, show_progress=False, device="cpu")
    att.fit(X[tr], y[tr], X[va], y[va])
    scorer = O.OpenSetScorer(att).fit(X[tr], y[tr])
    scorer.calibrate(X[va])
    return scorer, te, np.flatnonzero(y == unknown)


def test_planted_unknown_sources_are_rejected(planted) -> None:
    X, y = planted
    for unknown in KINDS:
        scorer, te, unk = _held_out(X, y, unknown)
        k, u = scorer.scores(X[te]), scorer.scores(X[unk])
        assert O.auroc(k["mahalanobis"], u["mahalanobis"]) >= 0.95, unknown
        pred = scorer.predict(X[unk], "mahalanobis")
        assert (pred == "unknown").mean() > 0.8 and (scorer.predict(X[te], "mahalanobis") != "unknown").mean() > 0.85


def test_a_random_held_out_group_is_not_told_apart(planted) -> None:
    """Shuffled labels: the 'unknown' images come from the same sources as the known ones."""
    X, y = planted
    ys = np.random.default_rng(1).permutation(y)
    scorer, te, unk = _held_out(X, ys, KINDS[2])
    k, u = scorer.scores(X[te]), scorer.scores(X[unk])
    for s in O.SCORES:
        assert abs(O.auroc(k[s], u[s]) - 0.5) < 0.12, s


def test_enrolling_a_planted_source_from_ten_images(planted) -> None:
    X, y = planted
    scorer, te, unk = _held_out(X, y, KINDS[0])
    new = scorer.with_source("new", X[unk[:10]])
    assert scorer.enrolled_ == [] and new.enrolled_ == ["new"]  # the copy is enrolled, the original is not
    assert (new.classify(X[unk[10:]]) == "new").mean() >= 0.9
    assert (new.classify(X[te]) == y[te]).mean() >= 0.9
    with pytest.raises(ValueError, match="exists"):
        new.enroll("new", X[unk[:2]])


def test_protocols_hold_out_one_factor_value_or_a_seeded_draw() -> None:
    factors = {"gan_a": {"family": "gan", "train_data": "real"}, "gan_b": {"family": "gan", "train_data": "real"},
               "gan_c": {"family": "gan", "train_data": "real"}, "vae_a": {"family": "vae", "train_data": "real"},
               "vae_b": {"family": "vae", "train_data": "real"}, "flow": {"family": "flow", "train_data": "real"},
               "gan_a__h1": {"family": "gan", "train_data": "h1"}, "gan_a__h2": {"family": "gan", "train_data": "h2"}}
    main = [m for m in factors if "__" not in m]
    fam = O.protocol_splits("unseen-family", factors, [0, 1, 2], main=main)
    # the most common value (gan) is never held out; vae (2 sources) first, then flow; cycled
    assert [u for _, u in fam.values()] == [["vae_a", "vae_b"], ["flow"], ["vae_a", "vae_b"]]
    assert fam[1][0] == ["gan_a", "gan_b", "gan_c", "vae_a", "vae_b"]  # the main sources, the copies aside
    data = O.protocol_splits("unseen-train_data", factors, [0, 1], main=main)
    # train_data does not vary among the main sources: the copies join the population
    assert data[0] == (["flow", "gan_a", "gan_a__h2", "gan_b", "gan_c", "vae_a", "vae_b"], ["gan_a__h1"])
    assert data[1][1] == ["gan_a__h2"] and "gan_a__h1" in data[1][0]
    rnd = O.protocol_splits("random", factors, [0, 1], main=main)
    for known, unknown in rnd.values():
        assert len(unknown) == 3 and sorted(known + unknown) == sorted(main)
    assert rnd == O.protocol_splits("random", factors, [0, 1], main=main)  # seeded
    with pytest.raises(O.UsageError, match="no value of 'loss'"):
        O.protocol_splits("unseen-loss", factors, [0])
    with pytest.raises(O.UsageError, match="unknown open-set protocol"):
        O.protocol_splits("leave-one-out", factors, [0])


def test_held_out_split_leaves_sources_of_neither_side_out() -> None:
    y = np.repeat(["a", "b", "c", "d"], 20)
    sp = O.held_out_split(y, ["c"], seed=0, known=["a", "b"])
    assert set(y[sp["unknown"]]) == {"c"}
    inside = np.concatenate([sp[k] for k in ("train", "val", "test")])
    assert set(y[inside]) == {"a", "b"} and len(np.unique(inside)) == 40


def test_discovery_finds_the_number_of_sources() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 5
    truth = np.repeat(np.arange(3), 40)
    feats = centres[truth] + rng.normal(size=(120, 16))
    clusters, k = O.discover(feats, seed=0)
    assert k == 3
    sc = O.cluster_scores(truth, clusters)
    assert sc["nmi"] > 0.95 and sc["ari"] > 0.95 and sc["purity"] > 0.95


def test_openset_cli_writes_rows_and_report(folders, tmp_path) -> None:
    from typer.testing import CliRunner

    from manifpt.cli import app

    real, gen = folders
    args = ["openset", "--real", str(real), "--generated", str(gen), "--out", str(tmp_path / "o"), "--seeds", "1",
            "--max-per-class", "40", "--arch", "linear", "--epochs", "3", "--quiet"]
    r = CliRunner().invoke(app, [*args, "--unknown", "m_grid"])
    assert r.exit_code == 0, r.output
    import json

    rows = json.loads((tmp_path / "o" / "results.json").read_text())
    metrics = {(x["method"], x["metric"]) for x in rows}
    assert {("manifpt/msp", "auroc"), ("manifpt/mahalanobis", "oscr"), ("manifpt/manifold", "tnr95"),
            ("manifpt", "closed_accuracy"), ("manifpt", "enrol_k10_new")} <= metrics
    assert all(x["n_seeds"] == 1 for x in rows if x["metric"] == "auroc")
    md = (tmp_path / "o" / "report.md").read_text()
    assert "OSCR" in md and "roc.png" in md
    assert (tmp_path / "o" / "roc.png").stat().st_size > 1000
    r = CliRunner().invoke(app, [*args, "--unknown", "m_nope"])
    assert r.exit_code != 0 and "not found: m_nope" in r.output and "Traceback" not in r.output


def test_openset_cli_protocol_holds_out_a_factor_value(folders, tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from manifpt.cli import app

    real, gen = folders  # models.yaml: m_checker GAN, m_grid GAN, m_stripes VAE
    args = ["openset", "--real", str(real), "--generated", str(gen), "--out", str(tmp_path / "o"), "--seeds", "1",
            "--max-per-class", "30", "--arch", "linear", "--epochs", "2", "--quiet"]
    r = CliRunner().invoke(app, [*args, "--protocol", "unseen-family"])
    assert r.exit_code == 0, r.output
    assert "held out seed 0: m_stripes" in (tmp_path / "o" / "report.md").read_text()
    seeds = json.loads((tmp_path / "o" / "per_seed.json").read_text())
    assert set(seeds) == {"manifpt:rgb"} and "5" in seeds["manifpt:rgb"][0]["enrolment"]
    r = CliRunner().invoke(app, [*args, "--protocol", "unseen-family", "--unknown", "m_grid"])
    assert r.exit_code != 0 and "either --unknown" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, [*args, "--protocol", "unseen-loss"])
    assert r.exit_code != 0 and "no value of 'loss'" in r.output


def test_fit_calibrates_rejection_predict_says_unknown_and_enroll_adds_the_source(folders, tmp_path) -> None:
    import json
    import os

    from typer.testing import CliRunner

    from manifpt.cli import app

    real, gen = folders
    known = tmp_path / "known"
    known.mkdir()
    for m in ("m_checker", "m_stripes"):
        os.symlink(gen / m, known / m)
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["fit", "--real", str(real), "--generated", str(known), "--out", str(run),
                                 "--seeds", "1", "--arch", "cifar_resnet", "--depth", "1", "--epochs", "6",
                                 "--no-tsne", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (run / "models" / "manifpt-rgb" / "seed-0" / "openset.safetensors").exists()
    grid = sorted((gen / "m_grid").iterdir())

    def predict(files) -> list[dict]:
        r = CliRunner().invoke(app, ["predict", "--model", str(run), *map(str, files), "--json"])
        assert r.exit_code == 0, r.output
        return json.loads(r.output)["predictions"]

    unseen = predict(grid[20:60])
    assert np.mean([p["predicted"] == "unknown" for p in unseen]) >= 0.8
    assert all(p["nearest_known"] in ("m_checker", "m_stripes") for p in unseen)
    seen = predict(sorted((gen / "m_checker").iterdir())[:40])
    assert np.mean([p["predicted"] == "m_checker" for p in seen]) >= 0.8
    enrol = tmp_path / "enrol"
    enrol.mkdir()
    for f in grid[:10]:
        os.symlink(f, enrol / f.name)
    r = CliRunner().invoke(app, ["enroll", str(run), str(enrol), "--name", "m_grid"])
    assert r.exit_code == 0 and "enrolled 'm_grid' from 10 images" in " ".join(r.output.split()), r.output
    after = predict(grid[20:60])
    assert np.mean([p["predicted"] == "m_grid" for p in after]) >= 0.9
    r = CliRunner().invoke(app, ["enroll", str(run), str(enrol), "--name", "m_grid"])
    assert r.exit_code != 0 and "exists already" in r.output and "Traceback" not in r.output


def test_wide_features_are_reduced_for_mahalanobis_and_survive_save_and_load(tmp_path) -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b", "c"], 100)
    X = (rng.normal(size=(300, 400)) + 3 * (y[:, None] == np.array(["a", "b", "c"])).repeat(134, 1)[:, :400]).astype(
        np.float32)
    att = Attributor((400,), arch="linear", epochs=3, show_progress=False, device="cpu").fit(X[:240], y[:240],
                                                                                            X[240:], y[240:])
    scorer = O.OpenSetScorer(att).fit(X[:240], y[:240])
    scorer.calibrate(X[240:])
    # 400-d features, 240 training images: at most 240 directions carry any variance
    assert scorer.basis_.shape == (400, 240) and scorer.precision_.shape == (240, 240)
    att.save(tmp_path)
    scorer.save(tmp_path)
    back = O.OpenSetScorer.load(tmp_path, Attributor.load(tmp_path))
    for k, v in scorer.scores(X[240:]).items():
        np.testing.assert_allclose(back.scores(X[240:])[k], v, rtol=1e-5, atol=1e-6, err_msg=k)
