"""`manifpt fit` and `manifpt predict` end to end on a small planted-trace set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from manifpt.cli import app
from manifpt.fit import FitConfig, fit_run
from manifpt.pipeline import OverlapError

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(folders, tmp_path_factory) -> Path:
    real, gen = folders
    out = tmp_path_factory.mktemp("run")
    r = runner.invoke(app, ["fit", "--real", str(real), "--generated", str(gen), "--out", str(out), "--space",
                            "rgb", "--seeds", "2", "--arch", "linear", "--epochs", "15", "--quiet"])
    assert r.exit_code == 0, r.output
    return out


def test_fit_writes_results_and_report(run_dir: Path) -> None:
    rows = json.loads((run_dir / "results.json").read_text())
    keys = {"task", "target", "method", "space", "metric", "mean", "std", "n_seeds", "values"}
    assert rows and all(keys <= set(r) <= keys | {"seeds"} for r in rows)
    acc = next(r for r in rows if r["metric"] == "accuracy")
    assert acc["seeds"] == [0, 1] and np.mean(acc["values"]) == pytest.approx(acc["mean"])
    acc = next(r for r in rows if r["metric"] == "accuracy")
    assert acc["n_seeds"] == 2 and acc["mean"] > 0.9 and acc["space"] == "rgb"
    metrics = {r["metric"] for r in rows}
    assert {"accuracy", "macro_f1", "fd_ratio_features", "fd_ratio_artifacts", "nmi_kmeans"} <= metrics
    nmi_targets = {r["target"] for r in rows if r["metric"] == "nmi_kmeans"}
    assert {"model", "family", "upsampling"} <= nmi_targets
    for f in ("report.md", "report.html", "figures/confusion.png", "figures/tsne.png", "figures/triplets.png",
              "predictions.csv", "run.json"):
        assert (run_dir / f).exists(), f
    assert "accuracy" in (run_dir / "report.md").read_text()


def test_predict_single_png(run_dir: Path, folders, tmp_path: Path) -> None:
    _, gen = folders
    one = next((gen / "m_checker").glob("*.png"))
    r = runner.invoke(app, ["predict", "--model", str(run_dir), str(one), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    (p,) = res["predictions"]
    assert p["predicted"] in {"m_checker", "m_stripes", "m_grid"}
    assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert p["nearest_real"].endswith(".png")
    r = runner.invoke(app, ["predict", "--model", str(run_dir), str(one)])
    assert r.exit_code == 0 and "m_" in r.output
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    r = runner.invoke(app, ["predict", "--model", str(run_dir), str(bad)])
    assert r.exit_code == 1 and "bad.png" in r.output


def test_loading_a_run_refuses_a_planted_pickle(run_dir: Path, tmp_path: Path) -> None:
    import pickle

    from manifpt.fit import Run

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    target = copy / json.loads((copy / "run.json").read_text())["models"][0] / "model.safetensors"
    target.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(Exception):  # noqa: B017 - safetensors' own error type
        Run(copy)
    assert not marker.exists()


def test_real_images_in_the_evaluated_set_are_refused(folders, tmp_path: Path) -> None:
    real, gen = folders
    g2 = tmp_path / "gen"
    shutil.copytree(gen, g2)
    shutil.copy(next(real.glob("*.png")), g2 / "m_grid" / "leak.png")
    cfg = FitConfig(real=str(real), generated=str(g2), seeds=[0], arch="linear", epochs=1, tsne=False)
    with pytest.raises(OverlapError, match=r"leak\.png"):
        fit_run(cfg, tmp_path / "out", show_progress=False)


def test_unknown_target(folders, tmp_path: Path) -> None:
    real, gen = folders
    cfg = FitConfig(real=str(real), generated=str(gen), target="nope", seeds=[0], arch="linear", epochs=1)
    with pytest.raises(KeyError, match=r"target .nope."):
        fit_run(cfg, tmp_path / "o", show_progress=False)


def test_predict_rejects_wrong_size(run_dir: Path, tmp_path: Path) -> None:
    p = tmp_path / "small.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(p)
    r = runner.invoke(app, ["predict", "--model", str(run_dir), str(p)])
    assert r.exit_code == 1 and "expects" in r.output


def test_fit_config_file_and_attributor_flags(folders, tmp_path) -> None:
    """`fit --config FILE`: any FitConfig field, the attributor's under `attributor:`; flags win."""
    real, gen = folders
    (tmp_path / "fit.yaml").write_text("space: rgb\nseeds: [0]\ntsne: false\n"
                                       "attributor: {arch: linear, epochs: 9, lr: 0.02}\n")
    r = runner.invoke(app, ["fit", "--real", str(real), "--generated", str(gen), "--out", str(tmp_path / "o"),
                            "--config", str(tmp_path / "fit.yaml"), "--epochs", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "o" / "run.json").read_text())["config"]
    assert (cfg["seeds"], cfg["tsne"], cfg["attributor"]) == ([0], False, {**cfg["attributor"], "arch": "linear",
                                                                           "epochs": 2, "lr": 0.02})
    (tmp_path / "bad.yaml").write_text("attributor: {learning_rate: 0.1}\n")
    r = runner.invoke(app, ["fit", "--real", str(real), "--generated", str(gen), "--out", str(tmp_path / "b"),
                            "--config", str(tmp_path / "bad.yaml")])
    assert r.exit_code == 2 and "learning_rate" in r.output and "Traceback" not in r.output


def test_predict_streams_to_csv_and_jsonl_batch_independent(run_dir: Path, folders, tmp_path: Path) -> None:
    import csv

    from manifpt.fit import predict_files

    _, gen = folders
    files = sorted((gen / "m_checker").glob("*.png"))[:13] + sorted((gen / "m_grid").glob("*.png"))[:12]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for f in files:
        shutil.copy(f, inputs / f"{f.parent.name}-{f.name}")
    (inputs / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    out = tmp_path / "preds.csv"
    r = runner.invoke(app, ["predict", "--model", str(run_dir), str(inputs), "--out", str(out), "--batch-size", "4",
                            "--top-k", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "25 images attributed, 1 skipped" in " ".join(r.output.split())
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 26 and {x["status"] for x in rows} == {"ok", "skipped"}
    bad = next(x for x in rows if x["status"] == "skipped")
    assert bad["path"].endswith("zz-broken.png") and bad["reason"]
    ok = {Path(x["path"]).name: x for x in rows if x["status"] == "ok"}
    # batches of 4 give the in-memory predictions, image for image
    ref = {Path(p["path"]).name: p for p in predict_files(run_dir, [str(inputs)])["predictions"]}
    assert set(ok) == set(ref)
    for name, x in ok.items():
        assert x["predicted"] == ref[name]["predicted"] and x["top1"] in ref[name]["probabilities"]
        assert float(x["p1"]) == pytest.approx(max(ref[name]["probabilities"].values()), abs=1e-5)
        assert float(x["p1"]) >= float(x["p2"]) and x["nearest_real"] == ref[name]["nearest_real"]
        assert x["unknown"] in ("0", "1")
    r = runner.invoke(app, ["predict", "--model", str(run_dir), str(inputs), "--out", str(tmp_path / "p.jsonl"),
                            "--quiet"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").open()]
    assert len(lines) == 26 and sum(x["status"] == "ok" for x in lines) == 25
    r = runner.invoke(app, ["predict", "--model", str(run_dir), str(inputs), "--out", str(tmp_path / "p.txt")])
    assert r.exit_code != 0 and ".csv or a .jsonl" in r.output


def test_fit_report_has_the_audit(run_dir: Path) -> None:
    audit = json.loads((run_dir / "audit.json").read_text())
    assert audit["warning"] is None and {t["question"] for t in audit["tests"]} == {"real vs generated",
                                                                                   "generated classes"}
    assert "Shortcut audit" in (run_dir / "report.md").read_text()


def test_fit_warns_when_the_real_set_is_jpeg(folders, tmp_path: Path) -> None:
    real, gen = folders
    jreal = tmp_path / "real-jpeg"
    jreal.mkdir()
    for f in sorted(real.glob("*.png"))[:300]:
        Image.open(f).save(jreal / (f.stem + ".jpg"), quality=90)
    r = runner.invoke(app, ["fit", "--real", str(jreal), "--generated", str(gen), "--out", str(tmp_path / "r"),
                            "--seeds", "1", "--arch", "linear", "--epochs", "2", "--max-per-class", "30",
                            "--no-tsne", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "warning: file metadata alone tells real from generated" in " ".join(r.output.split())
    assert "**Warning:**" in (tmp_path / "r" / "report.md").read_text()
