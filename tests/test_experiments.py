"""`manifpt experiment all` end to end on the tiny preset (every study, tiny zoo of bundled photos)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from manifpt.experiments import ORDER, load_experiment_config


@pytest.mark.slow
def test_every_study_writes_results_and_reports(exp) -> None:
    keys = {"task", "target", "method", "space", "metric", "mean", "std", "n_seeds", "values"}
    rows = json.loads((exp / "results.json").read_text())
    assert rows and all(keys <= set(r) <= keys | {"perturbation", "seeds"} for r in rows)
    assert all(len(r["values"]) == r["n_seeds"] for r in rows)
    for name in ORDER:
        assert (exp / name / "report.md").exists() and (exp / name / "report.html").exists(), name
        assert (exp / name / "results.json").exists(), name
    tasks = {r["task"].split(":")[0] for r in rows}
    assert {"model-type", "train-data", "layer-type", "theory", "density", "projection", "openset",
            "robustness"} <= tasks
    meta = json.loads((exp / "run.json").read_text())
    assert meta["total_seconds"] > 0 and set(meta["seconds"]) == set(ORDER)
    assert (exp / "figures" / "figures" / "tsne.png").exists()
    assert "wall time" in (exp / "report.md").read_text()
    # every figure the combined report links exists; density and theory plot theirs, model-type its accuracies
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (exp / "report.md").read_text())
    assert linked and all((exp / f).is_file() for f in linked)
    for prefix in ("density/density-", "theory/theory-", "model-type/accuracy-model-type-"):
        assert any(f.startswith(prefix) for f in linked), prefix


@pytest.mark.slow
def test_model_type_compares_spaces_and_baselines_on_same_seeds(exp) -> None:
    rows = [r for r in json.loads((exp / "model-type" / "results.json").read_text()) if r["metric"] == "accuracy"]
    methods = {(r["method"], r["space"]) for r in rows}
    assert {("manifpt", "rgb"), ("manifpt", "freq"), ("durall20", "image"), ("dzanic20", "image")} <= methods
    assert all(r["n_seeds"] == 2 for r in rows)


@pytest.mark.slow
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


@pytest.mark.slow
def test_projection_study_carries_the_raw_control(exp) -> None:
    rows = json.loads((exp / "projection" / "results.json").read_text())
    acc = {r["method"] for r in rows if r["metric"] == "accuracy"}
    assert {"manifpt", "manifpt[raw]", "manifpt[knn-mean]", "manifpt[local-affine]"} <= acc
    norms = {r["method"]: r["mean"] for r in rows if r["metric"] == "artifact_norm_mean"}
    assert norms["manifpt[local-affine]"] <= norms["manifpt"] + 1e-6  # never farther than nn1


@pytest.mark.slow
def test_learner_input_study_fills_every_cell_and_fuses(exp) -> None:
    rows = json.loads((exp / "learner-input" / "results.json").read_text())
    acc = {(r["method"], r["space"]): r for r in rows if r["metric"] == "accuracy"}
    for space in ("rgb", "freq"):
        for base in ("manifpt", "manifpt[raw]"):
            for learner in ("", "@linear", "@marra19"):
                assert (base + learner, space) in acc
    assert ("manifpt-fused", "freq+rgb") in acc and ("durall20", "image") in acc
    assert all(len(r["values"]) == 2 for r in acc.values())
    md = (exp / "learner-input" / "report.md").read_text()
    assert "Learner × input" in md and "against the best baseline" in md and "What the fusion chose" in md


def _shrunk(preset: str):
    """A bundled preset with its structure kept (spaces, baselines, estimators, attributor arch, studies)
    and only its sizes cut to the tiny zoo's: a preset that crashes on some space/arch mix fails here,
    not 40 minutes into a real run."""
    cfg = load_experiment_config(preset)
    tiny = load_experiment_config("tiny")
    space_options = {**cfg.space_options, "ssl": {"train": {"steps": 3, "batch_size": 16, "width": 8,
                                                             "proj_dim": 32}}}
    baseline_options = {b: {**o, **({"max_epochs": 1} if "max_epochs" in o else {})}
                        for b, o in cfg.baseline_options.items()}
    return cfg.model_copy(update={
        "datasets": tiny.datasets, "seeds": [0], "max_per_class": 20, "space_options": space_options,
        "baseline_options": baseline_options, "attributor": cfg.attributor.model_copy(update={"epochs": 1}),
        "density_sizes": [100, "all"], "tsne_per_class": 4,
        "projection_options": {**cfg.projection_options, "autoencoder": {"steps": 5}}})


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "studies"), [("quick", ["all"]), ("default", ["model-type", "cross-dataset"])])
def test_bundled_presets_run_on_tiny_data(preset, studies, exp, tmp_path) -> None:
    from manifpt.baselines import list_baselines
    from manifpt.experiments import run_experiments

    cfg = _shrunk(preset)
    res = run_experiments(studies, cfg, tmp_path / "res", exp.parent / "data", show_progress=False)  # tiny zoo reused
    rows = json.loads((tmp_path / "res" / "results.json").read_text())
    acc = {(r["method"], r["space"]) for r in rows if r["metric"] == "accuracy" and r["task"].startswith("model-type")}
    assert {("manifpt", s) for s in cfg.spaces} <= acc
    baselines = load_experiment_config(preset).baselines
    assert {m for m, s in acc if s == "image"} == set(list_baselines() if baselines == "all" else baselines)
    assert set(res["meta"]["seconds"]) == (set(ORDER) if studies == ["all"] else set(studies))


@pytest.mark.slow
def test_rerun_resumes_finished_studies_and_reruns_on_a_new_preset(exp, tmp_path) -> None:
    import shutil

    from manifpt.experiments import run_experiments

    cfg, out = load_experiment_config("tiny"), shutil.copytree(exp, tmp_path / "res")
    done = out / "layer-type" / "done.json"
    before = (done.stat().st_mtime_ns, (out / "layer-type" / "results.json").read_text())
    res = run_experiments(["layer-type"], cfg, out, exp.parent / "data", show_progress=False)
    assert res["meta"]["resumed"] == ["layer-type"]
    assert (done.stat().st_mtime_ns, (out / "layer-type" / "results.json").read_text()) == before
    other = cfg.model_copy(update={"seeds": [0]})  # another preset: the study is run again
    res = run_experiments(["layer-type"], other, out, exp.parent / "data", show_progress=False)
    assert res["meta"]["resumed"] == [] and done.stat().st_mtime_ns != before[0]
    assert all(r["n_seeds"] == 1 for r in res["rows"] if r["task"].startswith("layer-type"))


def test_photos_preset_is_the_default_design_on_the_colour_photo_set() -> None:
    """The second real dataset runs the default preset's studies unchanged: only the data (and the
    density sizes, capped by its 20,000 crops) differ, so the two result sets are comparable."""
    default, photos = load_experiment_config("default"), load_experiment_config("photos")
    assert {n: d.real for n, d in photos.datasets.items()} == {"photos": "photos"}
    assert photos.datasets["photos"].zoo == default.datasets["fmnist"].zoo
    same = default.model_dump(exclude={"name", "datasets", "density_sizes"})
    assert photos.model_dump(exclude={"name", "datasets", "density_sizes"}) == same
    assert max(s for s in photos.density_sizes if s != "all") <= 20000


def test_every_bundled_preset_names_real_sets_zoos_spaces_and_baselines_that_exist() -> None:
    from importlib.resources import files

    from manifpt.baselines import list_baselines
    from manifpt.datasets import REAL_SETS
    from manifpt.spaces import list_spaces
    from manifpt.zoo.config import bundled_configs, load_config

    names = sorted(p.name[len("experiments-"):-5] for p in (files("manifpt") / "configs").iterdir()
                   if p.name.startswith("experiments-"))
    assert {"default", "photos", "photos64"} <= set(names)
    for name in names:
        cfg = load_experiment_config(name)
        for ds in cfg.datasets.values():
            assert ds.real in REAL_SETS and ds.zoo in bundled_configs(), name
            load_config(ds.zoo)
        assert set(cfg.spaces) <= set(list_spaces()), name
        assert cfg.baselines == "all" or set(cfg.baselines) <= set(list_baselines()), name
    assert REAL_SETS["photos64"](3, 0).shape == (3, 64, 64, 3)


def test_an_unreadable_preset_file_is_a_data_error(tmp_path) -> None:
    from manifpt.errors import DataError

    for text, why in (("name: [x\n", "not readable YAML"), ("", "expected a mapping")):
        (tmp_path / "p.yaml").write_text(text)
        with pytest.raises(DataError, match=why):
            load_experiment_config(tmp_path / "p.yaml")


def test_presets_extend_other_presets(tmp_path) -> None:
    """`extends:` starts from another preset; keys given next to it replace the preset's whole value."""
    from manifpt.errors import UsageError
    from manifpt.experiments import load_experiment_config

    default, photos = load_experiment_config("default"), load_experiment_config("photos")
    assert list(photos.datasets) == ["photos"] and photos.density_sizes == [1000, 5000, 10000, "all"]
    assert (photos.attributor, photos.baseline_options, photos.seeds) == (default.attributor,
                                                                          default.baseline_options, default.seeds)
    (tmp_path / "mine.yaml").write_text("name: mine\nextends: quick\nseeds: [0, 1, 2, 3, 4]\n")
    mine = load_experiment_config(tmp_path / "mine.yaml")
    assert mine.seeds == [0, 1, 2, 3, 4] and mine.datasets == load_experiment_config("quick").datasets
    (tmp_path / "a.yaml").write_text(f"name: a\nextends: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"name: b\nextends: {tmp_path / 'a.yaml'}\n")
    with pytest.raises(UsageError, match="makes a cycle"):
        load_experiment_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("name: c\nextends: nonesuch\n")
    with pytest.raises(UsageError, match="no experiment config 'nonesuch'"):
        load_experiment_config(tmp_path / "c.yaml")
