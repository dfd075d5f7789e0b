"""Perturbations, augmented training, perturbed test splits, group-aware splits, format-matched sets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from manifpt.cli import app
from manifpt.errors import UsageError
from manifpt.perturb import Perturbation, augment, parse_spec, parse_specs, perturb
from manifpt.splits import group_split, make_split


@pytest.fixture(scope="module")
def photos(patches: np.ndarray) -> np.ndarray:
    return patches[:40]


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a.astype(np.float64) - b) ** 2).mean())


def test_specs_parse_and_bad_specs_say_why() -> None:
    assert [p.name for p in parse_spec("jpeg:90,75,50")] == ["jpeg:90", "jpeg:75", "jpeg:50"]
    assert [p.name for p in parse_specs(["blur:1", "blur:1,2", "resize:0.5"])] == ["blur:1", "blur:2", "resize:0.5"]
    for bad, why in [("jpeg:0", "quality 1–100"), ("jpeg:75.5", "quality"), ("foo:1", "unknown kind 'foo'"),
                     ("blur:abc", "not a number"), ("resize:1", "0 < S < 1"), ("noise", "give strengths")]:
        with pytest.raises(UsageError, match=why):
            parse_spec(bad)


def test_perturbations_keep_shape_and_grow_with_strength(photos: np.ndarray) -> None:
    gray = photos[..., 0].copy()
    for images in (photos, gray):
        for spec in ("jpeg:90,50", "webp:90,50", "resize:0.75,0.5", "blur:0.5,2", "noise:2,8", "crop:0.9,0.6"):
            weak, strong = parse_spec(spec)
            a, b = perturb(images, weak), perturb(images, strong)
            assert a.shape == images.shape and a.dtype == np.uint8, spec
            assert 0 < _mse(a, images) < _mse(b, images), spec
    # noise: σ in 8-bit levels (clipping aside, on mid-grey)
    flat = np.full((4, 32, 32), 128, np.uint8)
    assert np.std(perturb(flat, Perturbation("noise", 5)).astype(float) - 128) == pytest.approx(5, rel=0.1)
    # crop:1 is the identity; the random parts depend on the image's index, not on its batch
    assert np.array_equal(perturb(photos, Perturbation("crop", 1)), photos)
    p = Perturbation("noise", 3)
    assert np.array_equal(perturb(photos, p)[10:], perturb(photos[10:], p, np.arange(10, 40)))


def test_augment_changes_about_half_the_images(photos: np.ndarray) -> None:
    imgs = np.repeat(photos, 5, axis=0)
    out, changed = augment(imgs, parse_spec("jpeg:50") + parse_spec("blur:1"), seed=0)
    assert 0.35 < changed.mean() < 0.65
    assert np.array_equal(out[~changed], imgs[~changed])
    assert all(_mse(o, i) > 0 for o, i in zip(out[changed], imgs[changed], strict=True))


def test_group_split_keeps_every_group_on_one_side() -> None:
    # the same 30 source photos in each of 3 classes (an image-to-image generator per class)
    content = np.tile(np.arange(30), 3).astype(str)
    labels = np.repeat(["a", "b", "c"], 30)
    for seed in range(3):
        sp = group_split(labels, content, (0.6, 0.2, 0.2), seed)
        sides = [set(content[sp[k]].tolist()) for k in ("train", "val", "test")]
        assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
        assert sorted(np.concatenate(list(sp.values())).tolist()) == list(range(90))
        assert all(set(labels[sp[k]].tolist()) == {"a", "b", "c"} for k in sp)
        assert 0.1 < len(sp["test"]) / 90 < 0.3
    # without groups a random split does put one photo on several sides: the leak the option stops
    sp = make_split(labels, (0.6, 0.2, 0.2), 0)
    assert set(content[sp["train"]].tolist()) & set(content[sp["test"]].tolist())
    with pytest.raises(UsageError, match="at least 5 groups"):
        group_split(labels, np.tile(np.arange(3), 30), (0.6, 0.2, 0.2), 0)


def _compare(real, gen, out, *extra: str) -> list[dict]:
    args = ["compare", "--real", str(real), "--generated", str(gen), "--out", str(out), "--spaces", "rgb",
            "--methods", "dzanic20", "--seeds", "2", "--max-per-class", "40", "--arch", "linear", "--epochs", "3",
            "--quiet", "--no-audit", *extra]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return json.loads((out / "results.json").read_text())


def test_compare_tests_every_method_on_perturbed_test_splits(folders, tmp_path) -> None:
    real, gen = folders
    rows = _compare(real, gen, tmp_path / "c", "--perturb", "crop:1", "--perturb", "jpeg:30", "--perturb", "noise:20")
    acc = {(r["method"], r.get("perturbation")): r for r in rows if r["metric"] == "accuracy"}
    for m in ("manifpt", "dzanic20"):
        # crop:1 is the identity: the perturbed path must give the clean numbers exactly
        assert acc[(m, "crop:1")]["mean"] == acc[(m, None)]["mean"] and acc[(m, "crop:1")]["n_seeds"] == 2
        assert {(m, "jpeg:30"), (m, "noise:20")} <= set(acc)
    # the planted traces are fine patterns: strong noise destroys them for ManiFPT's artifacts
    assert acc[("manifpt", "noise:20")]["mean"] < acc[("manifpt", None)]["mean"]
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    assert cfg["perturb"] == ["crop:1", "jpeg:30", "noise:20"]


def test_augmented_training_renames_the_methods(folders, tmp_path) -> None:
    real, gen = folders
    rows = _compare(real, gen, tmp_path / "a", "--augment", "jpeg:50", "--perturb", "jpeg:50")
    methods = {r["method"] for r in rows if r["metric"] == "accuracy"}
    assert methods == {"manifpt+aug", "dzanic20+aug"}


def test_group_by_pattern_on_file_names(folders, tmp_path) -> None:
    real, gen = folders
    rows = _compare(real, gen, tmp_path / "g", "--group-by", r"re:img000(\d)")
    assert any(r["metric"] == "accuracy" for r in rows)
    r = CliRunner().invoke(app, ["compare", "--real", str(real), "--generated", str(gen), "--out",
                                 str(tmp_path / "g2"), "--spaces", "rgb", "--methods", "none", "--group-by",
                                 "re:nomatch", "--quiet"])
    assert r.exit_code != 0 and "no match in" in r.output and "Traceback" not in r.output


def test_reencoded_sets_carry_the_format_and_predict_does_the_same(tmp_path, patches) -> None:
    from manifpt.data import ImageSet

    folder = tmp_path / "png"
    folder.mkdir()
    for i, im in enumerate(patches[:6]):
        Image.fromarray(im).save(folder / f"{i}.png")
    plain = ImageSet.from_folder(folder, show_progress=False)
    jp = ImageSet.from_folder(folder, show_progress=False, reencode="jpeg:60")
    assert plain.fingerprint() != jp.fingerprint()
    assert np.array_equal(jp.load([2]), perturb(plain.load([2]), Perturbation("jpeg", 60)))
    with pytest.raises(UsageError, match="jpeg:Q or webp:Q"):
        ImageSet.from_folder(folder, show_progress=False, reencode="blur:1")
