"""`manifpt compare`: every method on the same splits, one table."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from manifpt.cli import app
from manifpt.compare import CompareConfig, compare_run
from manifpt.splits import stratified_split


def test_compare_uses_identical_splits_and_writes_one_table(folders, tmp_path, monkeypatch) -> None:
    real, gen = folders
    monkeypatch.setenv("MANIFPT_CACHE", str(tmp_path / "cache"))  # its own: the stage timings below need a search
    cfg = CompareConfig(real=str(real), generated=str(gen), spaces=["rgb"], methods=["durall20", "mcclo18"],
                        seeds=[0, 1], arch="linear", epochs=10)
    rows, results = compare_run(cfg, tmp_path / "cmp", show_progress=False)
    labels = np.repeat(["m_checker", "m_grid", "m_stripes"], 100)  # sorted model folders, 100 images each
    for seed in (0, 1):
        tests = [r.test_idx for r in results if r.seed == seed]
        assert len(tests) == 3 and all((t == tests[0]).all() for t in tests)
        np.testing.assert_array_equal(tests[0], stratified_split(labels, (0.6, 0.2, 0.2), seed)["test"])
    methods = {(r["method"], r["space"]) for r in rows if r["metric"] == "accuracy"}
    assert methods == {("manifpt", "rgb"), ("durall20", "image"), ("mcclo18", "image")}
    acc = {r["method"]: r["mean"] for r in rows if r["metric"] == "accuracy"}
    assert acc["manifpt"] > 0.9 and acc["durall20"] > 0.6
    saved = json.loads((tmp_path / "cmp" / "results.json").read_text())
    assert saved == rows
    run = json.loads((tmp_path / "cmp" / "run.json").read_text())
    st = run["stages"]
    assert {"decode", "embed", "index", "search", "train", "evaluate"} <= set(st)
    assert st["search"]["items"] == 300 and st["train"]["items"] == 2 * 3 * 240  # 2 seeds × 3 methods × 80%
    assert sum(v["seconds"] for v in st.values()) <= run["wall_s"] + 0.01
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "ManiFPT-RGB" in md and "durall20" in md


def test_compare_cli(folders, tmp_path) -> None:
    real, gen = folders
    r = CliRunner().invoke(app, ["compare", "--real", str(real), "--generated", str(gen), "--out",
                                 str(tmp_path / "c"), "--spaces", "freq", "--methods", "dzanic20", "--seeds", "1",
                                 "--epochs", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "c" / "report.html").exists()
    # a YAML of settings; options on the command line win over it, unknown keys are refused
    (tmp_path / "cfg.yaml").write_text("spaces: [rgb]\nmethods: []\nseeds: [0, 1]\narch: linear\nepochs: 5\n")
    args = ["compare", "--real", str(real), "--generated", str(gen), "--out", str(tmp_path / "y"),
            "--config", str(tmp_path / "cfg.yaml"), "--epochs", "2", "--quiet"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    used = json.loads((tmp_path / "y" / "config.json").read_text())
    att = used["attributor"]  # the YAML's flat attributor keys (the older layout) land in `attributor`
    assert (used["spaces"], used["methods"], used["seeds"], att["arch"], att["epochs"]) == (["rgb"], [], [0, 1],
                                                                                           "linear", 2)
    (tmp_path / "nested.yaml").write_text("spaces: [rgb]\nmethods: []\nseeds: [0]\nattributor: {arch: linear, "
                                          "epochs: 5, lr: 0.01}\n")
    r = CliRunner().invoke(app, [*args[:5], "--out", str(tmp_path / "n"), "--config", str(tmp_path / "nested.yaml"),
                                 "--epochs", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    att = json.loads((tmp_path / "n" / "config.json").read_text())["attributor"]
    assert (att["arch"], att["epochs"], att["lr"]) == ("linear", 2, 0.01)  # file, then the command line
    (tmp_path / "bad.yaml").write_text("spaces: [rgb]\nlearning_rate: 3\n")
    r = CliRunner().invoke(app, [*args[:-5], "--config", str(tmp_path / "bad.yaml")])
    assert r.exit_code == 2 and "learning_rate" in r.output
    for text, why in (("spaces: [rgb\n", "not readable YAML"), ("- rgb\n", "expected a mapping")):
        (tmp_path / "bad.yaml").write_text(text)
        r = CliRunner().invoke(app, [*args[:-5], "--config", str(tmp_path / "bad.yaml")])
        assert r.exit_code == 1 and why in r.output and "Traceback" not in r.output


def test_image_arch_applies_to_image_artifacts_only(folders, tmp_path) -> None:
    """A preset's CNN attributor is for RGB/FREQ artifacts; SL's 1280-d vectors get the MLP, not an error."""
    real, gen = folders
    cfg = CompareConfig(real=str(real), generated=str(gen), spaces=["rgb", "sl"], seeds=[0], arch="cifar_resnet",
                        epochs=1, space_options={"sl": {"resolution": 32}}, max_per_class=30)
    rows, _ = compare_run(cfg, tmp_path / "c", show_progress=False)
    archs = {s: json.loads(next((tmp_path / "c" / "models" / f"manifpt-{s}" / "seed-0").glob("*.json")).read_text())
             for s in ("rgb", "sl")}
    assert {s: a["arch"] for s, a in archs.items()} == {"rgb": "cifar_resnet", "sl": "mlp"}
    assert {(r["method"], r["space"]) for r in rows if r["metric"] == "accuracy"} == {("manifpt", "rgb"),
                                                                                       ("manifpt", "sl")}
