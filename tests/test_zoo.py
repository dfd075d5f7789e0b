"""The generative-model zoo: family shapes, exact PixelCNN sampling, flow inverse, FD, configs, and a
tiny end-to-end build (models.yaml readable by the data layer, resume = uninterrupted run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from manifpt import GeneratedSet
from manifpt.zoo import ZooMismatchError, build_zoo, frechet_distance, get_family, list_families, load_config
from manifpt.zoo.build import train_set
from manifpt.zoo.cli import zoo_app
from manifpt.zoo.config import ZooConfig, bundled_configs
from manifpt.zoo.flow import MultiScaleFlow, squeeze, unsqueeze
from manifpt.zoo.layers import UPSAMPLINGS, upsample
from manifpt.zoo.pixelcnn import PixelCNNNet

runner = CliRunner()
CPU = torch.device("cpu")

#: the smallest options per family, for shape tests
TINY = {
    "gan": {"width": 8, "d_width": 8, "z_dim": 4},
    "vae": {"width": 8, "z_dim": 4},
    "flow": {"depth": 1, "hidden": 8},
    "ddpm": {"channels": [8, 16], "norm_groups": 4, "sample_steps": 2, "timesteps": 20},
    "pixelcnn": {"width": 8, "dilations": [1, 2], "head": 8, "first_kernel": 3},
}


@pytest.fixture(scope="module")
def real28() -> np.ndarray:
    """Small stand-in for Fashion-MNIST: bright blobs of varying size on black (uint8 N×28×28)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:28, 0:28]
    r = rng.uniform(4, 11, (96, 1, 1))
    cy, cx = rng.uniform(10, 18, (2, 96, 1, 1))
    return np.where((yy - cy) ** 2 + (xx - cx) ** 2 < r**2, rng.integers(120, 256, (96, 1, 1)), 0).astype(np.uint8)


def test_registry_lists_every_family() -> None:
    assert list_families() == ["ddpm", "flow", "gan", "pixelcnn", "vae"]
    with pytest.raises(KeyError, match="unknown model family"):
        get_family("nope")


@pytest.mark.parametrize("family", sorted(TINY))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_family_train_step_and_sample_shapes(family: str, shape: tuple[int, int, int]) -> None:
    fam = get_family(family)
    torch.manual_seed(0)
    m = fam(fam.Options(**TINY[family]), shape, CPU, fam.default_lr)
    gen = torch.Generator().manual_seed(0)
    m.train(True)
    losses = m.train_step(lambda: torch.rand(4, *shape, generator=gen), gen)
    assert losses and all(np.isfinite(v) for v in losses.values())
    m.after_step(1)
    m.train(False)
    x = m.sample(3, torch.Generator().manual_seed(1))
    c, h, w = shape
    assert x.dtype == np.uint8 and x.shape == ((3, h, w) if c == 1 else (3, h, w, 3))
    np.testing.assert_array_equal(m.sample(3, torch.Generator().manual_seed(1)), x)  # seeded = reproducible
    f = m.factors()
    assert set(f) == {"upsampling", "loss", "norm", "last_nl"}


@pytest.mark.parametrize("kind", UPSAMPLINGS)
def test_upsampling_doubles_size(kind: str) -> None:
    assert upsample(kind, 6, 5)(torch.zeros(2, 6, 7, 7)).shape == (2, 5, 14, 14)
    with pytest.raises(ValueError):
        upsample("cubic", 6, 5)


def test_gan_factor_combinations_build() -> None:
    fam = get_family("gan")
    for opts in ({"norm": "spectral"}, {"norm": "instance"}, {"norm": "none"}, {"loss": "wgan_gp"},
                 {"loss": "lsgan"}, {"last_nl": "sigmoid"}):
        m = fam(fam.Options(**TINY["gan"], **opts), (1, 28, 28), CPU, 1e-4)
        gen = torch.Generator().manual_seed(0)
        assert np.isfinite(list(m.train_step(lambda: torch.rand(4, 1, 28, 28), gen).values())).all()
    with pytest.raises(ValueError):
        fam.Options(loss="wasserstein")


def test_pixelcnn_row_cached_sampling_equals_full_network_per_pixel() -> None:
    torch.manual_seed(0)
    net = PixelCNNNet(1, 8, (1, 2, 3), 5, 8).eval()
    for p in net.parameters():  # larger weights so that every input really matters
        p.data.mul_(3)
    noise = torch.rand(2, 10, 10, 1, 256, generator=torch.Generator().manual_seed(0)).clamp_min(1e-20)
    gumbel = -torch.log(-torch.log(noise))
    order = iter([(i, j) for i in range(10) for j in range(10)])

    def draw(logits: torch.Tensor) -> torch.Tensor:
        i, j = next(order)
        return (logits + gumbel[:, i, j]).argmax(-1)

    fast = net.sample(torch.zeros(2, 1, 10, 10), draw)
    slow = torch.zeros(2, 1, 10, 10)
    with torch.no_grad():
        for i in range(10):
            for j in range(10):
                logits = net(slow)[:, :, :, i, j]
                slow[:, :, i, j] = (logits + gumbel[:, i, j]).argmax(-1).float() / 255 * 2 - 1
    torch.testing.assert_close(fast, slow, rtol=0, atol=0)
    assert len(torch.unique(fast)) > 20  # not a degenerate constant image
    # causality of the full pass: pixel (i, j) does not see itself or later pixels
    x = torch.rand(1, 1, 10, 10) * 2 - 1
    y = x.clone()
    y[:, :, 4, 6:] = 0.3
    y[:, :, 5:] = -0.7
    with torch.no_grad():
        torch.testing.assert_close(net(y)[..., 4, 6], net(x)[..., 4, 6])


def test_flow_is_invertible() -> None:
    torch.manual_seed(0)
    flow = MultiScaleFlow((1, 28, 28), 2, 2, 8)
    x = torch.randn(3, 1, 28, 28)
    flow.train()
    flow(x)  # ActNorm data-dependent init
    flow.eval()
    with torch.no_grad():
        for p in flow.parameters():  # move away from the identity initialisation
            p.add_(0.01 * torch.randn_like(p))
        zs, _ = flow(x)
        torch.testing.assert_close(flow.reverse(zs), x, atol=1e-4, rtol=1e-4)
    t = torch.randn(2, 3, 8, 6)
    torch.testing.assert_close(unsqueeze(squeeze(t)), t)


def test_flow_log_determinant_equals_brute_force_jacobian() -> None:
    torch.manual_seed(0)
    flow = MultiScaleFlow((1, 4, 4), 2, 2, 4).double()
    flow.train()
    flow(torch.randn(8, 1, 4, 4, dtype=torch.float64))  # ActNorm init
    flow.eval()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64)

    def f(v: torch.Tensor) -> torch.Tensor:
        zs, _ = flow(v.view(1, 1, 4, 4))
        return torch.cat([z.flatten() for z in zs])

    jac = torch.autograd.functional.jacobian(f, x.flatten())
    _, logdet = flow(x)
    torch.testing.assert_close(logdet[0], torch.linalg.slogdet(jac)[1])


def test_frechet_distance_matches_scipy_formula() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 12)), rng.normal(size=(150, 12)) @ rng.normal(size=(12, 12)) + 0.5
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    ref = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-8)
    assert frechet_distance(mu1, s1, mu1 + 2, s1) == pytest.approx(4 * 12, rel=1e-8)


def test_bundled_configs_cover_the_design() -> None:
    assert {"default", "quick", "tiny"} <= set(bundled_configs())
    specs = load_config("default").specs()
    assert len(specs) >= 16
    gans = [s for s in specs if s.family == "gan"]
    seen = {k: {str(get_family("gan").Options(**s.options).model_dump()[k]) for s in gans}
            for k in ("upsampling", "loss", "norm", "last_nl")}
    assert seen == {"upsampling": set(UPSAMPLINGS), "loss": {"nonsaturating", "lsgan", "wgan_gp", "hinge"},
                    "norm": {"batch", "instance", "none", "spectral"}, "last_nl": {"tanh", "sigmoid"}}
    # one factor at a time: every GAN differs from the base in at most one factor
    base = get_family("gan").Options(**next(s for s in gans if s.name == "gan_base").options).model_dump()
    for s in gans:
        diff = {k for k, v in get_family("gan").Options(**s.options).model_dump().items() if v != base[k]}
        assert len(diff & set(seen)) <= 1, (s.name, diff)
    vae_ups = {get_family("vae").Options(**s.options).upsampling for s in specs if s.family == "vae"}
    assert vae_ups == set(UPSAMPLINGS)
    assert {"flow", "ddpm", "pixelcnn"} <= {s.family for s in specs}
    td = [s for s in specs if s.train_data is not None]
    assert len({s.train_data for s in td}) >= 2 and len(td) >= 4
    assert 6 <= len(load_config("quick").specs()) <= 10


def test_config_validation(tmp_path: Path) -> None:
    good = {"models": [{"name": "a", "family": "gan", "steps": 1}]}
    ZooConfig(**good)
    for bad, msg in [
        ({"models": [{"name": "a", "family": "gan", "steps": 1, "upsamplin": "x"}]}, "upsamplin"),
        ({"models": [{"name": "a", "family": "gan", "steps": 1}] * 2}, "duplicate"),
        ({"models": [{"name": "_a", "family": "gan", "steps": 1}]}, "folder name"),
        ({**good, "train_data": {"sets": {"x": "real:2/2"}, "models": ["a"]}}, "training-set spec"),
        ({**good, "train_data": {"sets": {"x": "real"}, "models": ["b"]}}, "not in models"),
    ]:
        with pytest.raises(ValueError, match=msg):
            ZooConfig(**bad)
    p = tmp_path / "z.yaml"
    p.write_text(yaml.safe_dump(good))
    assert load_config(p).specs()[0].name == "a"
    with pytest.raises(FileNotFoundError, match="bundled"):
        load_config("nope")


def test_train_set_parts_are_disjoint(real28: np.ndarray) -> None:
    a, b = train_set("real:0/2", real28, 0), train_set("real:1/2", real28, 0)
    assert len(a) == len(b) == 48
    rows = {x.tobytes() for x in a}
    assert not rows & {x.tobytes() for x in b}
    assert train_set("real", real28, 0) is real28


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_tiny_build_end_to_end(tmp_path: Path, real28: np.ndarray) -> None:
    out = tmp_path / "gen"
    res = build_zoo("tiny", real28, out, show_progress=False)
    cfg = load_config("tiny")
    names = [s.name for s in cfg.specs()]
    assert sorted(res.models) == sorted(names)
    for n in names:
        assert len(list((out / n).glob("*.png"))) == cfg.samples_per_model
        assert (res.grids / f"{n}.png").is_file()
    assert res.grids == tmp_path / "gen_grids" and not list((out / "_train").rglob("*.png"))
    gs = GeneratedSet.from_folder(out, show_progress=False)
    assert gs.model_names == sorted(names) and not gs.images.bad
    assert {"family", "upsampling", "loss", "norm", "last_nl", "train_data", "architecture", "steps",
            "params"} <= set(gs.factor_names())
    assert set(gs.labels("train_data")) == {"real", "half-a", "half-b"}
    assert gs.factors["vae_nearest"]["family"] == "VAE" and gs.factors["vae_nearest"]["upsampling"] == "nearest_conv"
    t = json.loads((out / "timings.json").read_text())
    assert set(t["models"]) == set(names) and t["build_wall_s"] > 0
    q = json.loads((out / "quality.json").read_text())
    assert set(q["models"]) == set(names) and q["real_vs_real"] >= 0
    # the train-data copies share initial weights and noise with their base model; only data differs
    ck = {n: load_file(str(out / "_train" / n / "checkpoint.safetensors")) for n in ("gan_base", "gan_base__half-a")}
    assert ck["gan_base"].keys() == ck["gan_base__half-a"].keys()
    # a finished build reruns as a no-op
    before = _tree(out)
    build_zoo("tiny", real28, out, show_progress=False)
    assert _tree(out) == before
    # a changed recipe is refused instead of mixing two models in one folder
    changed = cfg.model_copy(update={"defaults": {**cfg.defaults, "gan": {**cfg.defaults["gan"], "steps": 6}}})
    with pytest.raises(ZooMismatchError):
        build_zoo(changed, real28, out, show_progress=False, only=["gan_base"])


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path: Path, real28: np.ndarray,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config("tiny")
    cfg = cfg.model_copy(update={"defaults": {**cfg.defaults, "gan": {**cfg.defaults["gan"], "steps": 7}},
                                 "quality": cfg.quality.model_copy(update={"space": None})})
    only = ["gan_base", "vae_nearest"]
    build_zoo(cfg, real28, tmp_path / "ref", show_progress=False, only=only)

    gan = get_family("gan")
    original = gan.train_step
    calls = {"n": 0}

    def flaky(self, batch, gen):
        calls["n"] += 1
        if calls["n"] == 6:  # after the checkpoint at step 4, before the one at step 6
            raise KeyboardInterrupt
        return original(self, batch, gen)

    monkeypatch.setattr(gan, "train_step", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_zoo(cfg, real28, tmp_path / "run", show_progress=False, only=only)
    state = json.loads((tmp_path / "run" / "_train" / "gan_base" / "state.json").read_text())
    assert state["step"] == 4
    monkeypatch.setattr(gan, "train_step", original)
    build_zoo(cfg, real28, tmp_path / "run", show_progress=False, only=only)
    for n in only:
        a = load_file(str(tmp_path / "ref" / "_train" / n / "checkpoint.safetensors"))
        b = load_file(str(tmp_path / "run" / "_train" / n / "checkpoint.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{n}: {k}")
    assert _tree(tmp_path / "ref") == _tree(tmp_path / "run")


def test_parallel_workers_give_the_same_models(tmp_path: Path, real28: np.ndarray) -> None:
    cfg = load_config("tiny").model_copy(update={"quality": load_config("tiny").quality.model_copy(
        update={"space": None})})
    build_zoo(cfg, real28, tmp_path / "one", show_progress=False, workers=1, only=["gan_base", "vae_nearest"])
    build_zoo(cfg, real28, tmp_path / "two", show_progress=False, workers=2, only=["gan_base", "vae_nearest"])
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")


def test_zoo_cli(tmp_path: Path, real28: np.ndarray) -> None:
    from manifpt.datasets import write_image_folder

    write_image_folder(real28, tmp_path / "real")
    r = runner.invoke(zoo_app, ["build", "--config", "tiny", "--real", str(tmp_path / "real"), "--out",
                                str(tmp_path / "gen"), "--only", "gan_base", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "gan_base" in r.output and len(list((tmp_path / "gen" / "gan_base").glob("*.png"))) == 12
    assert yaml.safe_load((tmp_path / "gen" / "models.yaml").read_text())["models"]["gan_base"]["train_data"] == "real"
    r = runner.invoke(zoo_app, ["list", "--config", "default"])
    assert r.exit_code == 0 and "gan_base" in r.output
    r = runner.invoke(zoo_app, ["configs"])
    assert "quick" in r.output


def test_shipped_weights_replace_training_and_give_the_same_samples(tmp_path: Path, real28: np.ndarray,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from manifpt.errors import DataError
    from manifpt.zoo.pretrained import export_pretrained

    cfg = load_config("tiny").model_copy(update={"quality": load_config("tiny").quality.model_copy(
        update={"space": None})})
    only = ["gan_base", "vae_nearest"]
    build_zoo(cfg, real28, tmp_path / "trained", show_progress=False, only=only, pretrained=tmp_path / "none")
    weights = tmp_path / "weights"
    assert len(export_pretrained(tmp_path / "trained", weights)) == 2
    for fam in ("gan", "vae"):  # nothing may train now
        monkeypatch.setattr(get_family(fam), "train_step", lambda *a: pytest.fail("trained"))
    build_zoo(cfg, real28, tmp_path / "shipped", show_progress=False, only=only, pretrained=weights)
    assert _tree(tmp_path / "shipped") == _tree(tmp_path / "trained")
    done = {n: json.loads((tmp_path / "shipped" / "_train" / n / "done.json").read_text()) for n in only}
    assert all(d["pretrained"] and d["train_s"] == 0 for d in done.values())
    monkeypatch.undo()
    build_zoo(cfg, real28, tmp_path / "re", show_progress=False, only=["vae_nearest"], pretrained=weights,
              retrain=True)
    assert not json.loads((tmp_path / "re" / "_train" / "vae_nearest" / "done.json").read_text())["pretrained"]
    # a damaged or foreign file is refused, never loaded with a cast
    key = done["gan_base"]["key"]
    (weights / f"{key}.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="not a readable safetensors file"):
        build_zoo(cfg, real28, tmp_path / "bad", show_progress=False, only=["gan_base"], pretrained=weights)
    (weights / f"{key}.safetensors").write_bytes((weights / f"{done['vae_nearest']['key']}.safetensors").read_bytes())
    with pytest.raises(DataError, match="sampling networks of a gan model"):
        build_zoo(cfg, real28, tmp_path / "bad2", show_progress=False, only=["gan_base"], pretrained=weights)


def test_shipped_quick_zoo_weights_match_the_architectures_a_rebuild_makes() -> None:
    """The package's weights (``manifpt/zoo/pretrained``) load into the quick config's freshly built
    models: every tensor's name, shape and dtype as a rebuild of that config makes them."""
    from safetensors import safe_open

    from manifpt.zoo.build import build_model
    from manifpt.zoo.pretrained import PRETRAINED_DIR, load_pretrained

    files = sorted(PRETRAINED_DIR.glob("*.safetensors"))
    specs = {s.name: s for s in load_config("quick").specs()}
    assert {safe_open(str(f), "pt").metadata()["name"] for f in files} == set(specs)
    for f in files:
        spec = specs[safe_open(str(f), "pt").metadata()["name"]]
        model = build_model(spec, (1, 28, 28), torch.device("cpu"), 0)
        assert load_pretrained(model, f.stem, PRETRAINED_DIR), f.name
