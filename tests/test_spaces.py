"""Embedding spaces against independent references."""

from __future__ import annotations

import numpy as np
import pytest

from manifpt import get_space, list_spaces
from manifpt.spaces.base import Space, register_space


def test_registry() -> None:
    assert {"rgb", "freq", "sl", "ssl"} <= set(list_spaces())
    with pytest.raises(KeyError, match="unknown space 'pixels'"):
        get_space("pixels")
    with pytest.raises(ValueError, match="already registered"):
        register_space("rgb")(type("Dup", (Space,), {}))


def test_rgb_is_identity_on_unit_scale(patches: np.ndarray) -> None:
    x = patches[:7]
    emb = get_space("rgb").embed(x)
    assert emb.dtype == np.float32 and emb.shape == (7, 3 * 32 * 32)
    np.testing.assert_array_equal(emb.reshape(7, 3, 32, 32).transpose(0, 2, 3, 1) * 255, x.astype(np.float32))


def test_freq_matches_numpy_reference(patches: np.ndarray) -> None:
    x = patches[:5]
    emb = get_space("freq").embed(x).reshape(5, 3, 32, 32)
    for n in range(5):
        for c in range(3):
            ref = np.log(np.abs(np.fft.fftshift(np.fft.fft2(x[n, :, :, c] / 255.0))) + 1e-12)
            np.testing.assert_allclose(emb[n, c], ref, rtol=1e-6, atol=1e-5)


def test_freq_grayscale_and_constant_image() -> None:
    gray = np.full((2, 8, 8), 255, np.uint8)
    emb = get_space("freq").embed(gray).reshape(2, 1, 8, 8)
    assert emb[0, 0, 4, 4] == pytest.approx(np.log(64.0), rel=1e-6)  # DC after fftshift, |X| = 64
    assert emb[0, 0, 0, 0] == pytest.approx(np.log(1e-12), rel=1e-4)  # zero magnitude → log(eps)


def test_sl_offline_backbone_is_a_real_imagenet_classifier() -> None:
    """The offline EfficientNet-Lite0 weights classify a real cat photo as a cat (ImageNet 281–285)."""
    import skimage.data
    import torch

    from manifpt.spaces.cnn import efficientnet_lite0_backbone, preprocess

    net = efficientnet_lite0_backbone()
    x = preprocess(skimage.data.chelsea()[None], torch.device("cpu"), 224, net.mean, net.std, crop=1.0)
    with torch.inference_mode():
        top = int(net.model.features.net(x).argmax())
    assert 281 <= top <= 285


def test_sl_space_records_backbone_and_embeds(patches: np.ndarray) -> None:
    sp = get_space("sl", resolution=64)
    s = sp.settings()
    assert s["backbone"] == "efficientnet_lite0" and len(s["weights_sha256"]) == 64
    e1 = sp.embed(patches[:6])
    assert e1.shape == (6, 1280) and e1.dtype == np.float32 and np.isfinite(e1).all()
    np.testing.assert_allclose(sp.embed(patches[:6]), e1, rtol=1e-5, atol=1e-6)
    gray = sp.embed(patches[:2, :, :, 0])  # grayscale input is replicated to 3 channels
    assert gray.shape == (2, 1280)


def test_sl_resnet50_from_local_file_without_code_execution(tmp_path) -> None:
    """A local ResNet50 state dict is used when given; a pickle payload is refused."""
    import pickle

    import torch
    from torchvision.models import resnet50

    path = tmp_path / "resnet50.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    sp = get_space("sl", backbone="auto", weights=path, resolution=32)
    assert sp.settings()["backbone"] == "resnet50"
    assert sp.embed(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, 2048)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(pickle.UnpicklingError):
        get_space("sl", weights=bad).settings()


def test_ssl_trained_encoder_is_cached_and_deterministic(patches: np.ndarray) -> None:
    from manifpt.data import ArraySource

    real = ArraySource(patches[:300])
    recipe = {"steps": 3, "batch_size": 32, "width": 8, "proj_dim": 64}
    sp = get_space("ssl", train=recipe).fit(real)
    s = sp.settings()
    assert s["encoder"] == "barlowtwins_trained" and s["real"] == real.fingerprint()
    e1 = sp.embed(patches[300:310])
    assert e1.shape == (10, 64) and np.isfinite(e1).all()
    sp2 = get_space("ssl", train=recipe).fit(real)  # loads the cached encoder
    assert sp2.settings()["encoder_sha256"] == s["encoder_sha256"]
    np.testing.assert_array_equal(sp2.embed(patches[300:310]), e1)


def test_ssl_needs_fit() -> None:
    from manifpt.spaces.ssl import NotFittedError

    with pytest.raises(NotFittedError):
        get_space("ssl").embed(np.zeros((1, 8, 8, 3), np.uint8))


def test_barlow_twins_loss_reference() -> None:
    """Loss against a direct formula: identical, decorrelated views → loss 0."""
    import torch

    from manifpt.spaces.barlow import barlow_twins_loss

    z = torch.eye(8).repeat(4, 1) * 3.0 - 1.0  # 32 samples, 8 decorrelated standardisable dims
    z = z[:, :8]
    zs = (z - z.mean(0)) / z.std(0, unbiased=False)
    c = zs.T @ zs / len(z)
    ref = ((torch.diagonal(c) - 1) ** 2).sum() + 0.1 * (c**2).sum() - 0.1 * (torch.diagonal(c) ** 2).sum()
    assert float(barlow_twins_loss(z, z, 0.1)) == pytest.approx(float(ref), rel=1e-4, abs=1e-5)
