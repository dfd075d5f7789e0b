"""`manifpt experiment all` end to end on the tiny preset (every study, tiny zoo of bundled photos)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from manifpt.cli import app
from manifpt.experiments import ORDER, load_experiment_config


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp")
    r = CliRunner().invoke(app, ["experiment", "all", "--config", "tiny", "--out", str(out / "res"), "--data",
                                 str(out / "data"), "--quiet"])
    assert r.exit_code == 0, r.output
    return out / "res"


def test_every_study_writes_results_and_reports(exp) -> None:
    keys = {"task", "target", "method", "space", "metric", "mean", "std", "n_seeds"}
    rows = json.loads((exp / "results.json").read_text())
    assert rows and all(set(r) == keys for r in rows)
    for name in ORDER:
        assert (exp / name / "report.md").exists() and (exp / name / "report.html").exists(), name
        assert (exp / name / "results.json").exists(), name
    tasks = {r["task"].split(":")[0] for r in rows}
    assert {"model-type", "train-data", "layer-type", "theory", "density", "projection"} <= tasks
    meta = json.loads((exp / "run.json").read_text())
    assert meta["total_seconds"] > 0 and set(meta["seconds"]) == set(ORDER)
    assert (exp / "figures" / "figures" / "tsne.png").exists()
    assert "wall time" in (exp / "report.md").read_text()


def test_model_type_compares_spaces_and_baselines_on_same_seeds(exp) -> None:
    rows = [r for r in json.loads((exp / "model-type" / "results.json").read_text()) if r["metric"] == "accuracy"]
    methods = {(r["method"], r["space"]) for r in rows}
    assert {("manifpt", "rgb"), ("manifpt", "freq"), ("durall20", "image"), ("dzanic20", "image")} <= methods
    assert all(r["n_seeds"] == 2 for r in rows)


def test_layer_type_average_row_is_the_mean_over_spaces(exp) -> None:
    rows = json.loads((exp / "layer-type" / "results.json").read_text())
    md = (exp / "layer-type" / "report.md").read_text()
    cfg = load_experiment_config("tiny")
    avg_line = next(line for line in md.splitlines() if line.startswith("| average"))
    cells = [c.strip() for c in avg_line.strip("|").split("|")][1:]
    for factor, cell in zip(cfg.layer_factors, cells, strict=True):
        vals = [r["mean"] for r in rows if r["target"] == factor]
        if vals:
            assert float(cell) == pytest.approx(np.mean(vals), abs=6e-4), factor
        else:
            assert cell == "–"


def test_projection_study_carries_the_raw_control(exp) -> None:
    rows = json.loads((exp / "projection" / "results.json").read_text())
    acc = {r["method"] for r in rows if r["metric"] == "accuracy"}
    assert {"manifpt", "manifpt[raw]", "manifpt[knn-mean]", "manifpt[local-affine]"} <= acc
    norms = {r["method"]: r["mean"] for r in rows if r["metric"] == "artifact_norm_mean"}
    assert norms["manifpt[local-affine]"] <= norms["manifpt"] + 1e-6  # never farther than nn1
