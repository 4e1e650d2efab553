"""Tests of the batched transforms (cral_lib/data/augment.py) against torchvision."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from scipy import stats
from torchvision.transforms import RandomResizedCrop

from cral_lib.data import IMAGENET_MEAN, IMAGENET_STD, TestTransform, TrainTransform
from cral_lib.data.augment import crop_params_from_draws, resized_crop, sample_crop_params

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def batch(n: int, size: int, seed: int = 0, height: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, height or size, size), dtype=torch.uint8, generator=g)


def normalize(z: torch.Tensor) -> torch.Tensor:
    """torchvision's way: grey (B, h, w) 0..255 -> 3 channels -> /255 -> Normalize."""
    return TF.normalize(z[:, None].expand(-1, 3, -1, -1) / 255.0, IMAGENET_MEAN, IMAGENET_STD)


# --------------------------------------------------------------------------- crop parameters


class _ScriptedRandom:
    """Feeds torchvision's get_params the random numbers we choose (recorded for our sampler)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.uniforms: list[float] = []  # values returned by uniform_(a, b)
        self.randint_u: list[float] = []  # the u behind each randint(0, n) = floor(u * n)

    def uniform_(self, tensor, a, b):
        value = torch.tensor(float(a), dtype=torch.float32) + (
            torch.tensor(float(b), dtype=torch.float32) - torch.tensor(float(a), dtype=torch.float32)
        ) * torch.tensor(self.rng.random(), dtype=torch.float32)
        self.uniforms.append(float(value))
        return tensor.fill_(value)

    def randint(self, low, high, size=None, **kwargs):
        u = self.rng.random()
        self.randint_u.append(u)
        return torch.tensor([low + math.floor(u * (high - low))])


@pytest.mark.parametrize(
    "height, width, scale, ratio",
    [
        (256, 256, (0.08, 1.0), (3 / 4, 4 / 3)),  # the paper's crop
        (146, 146, (0.08, 1.0), (3 / 4, 4 / 3)),  # the fast CPU mode's cache
        (256, 256, (0.9, 1.0), (2.0, 3.0)),  # most tries fail: fallback (in_ratio < min(ratio))
        (100, 300, (0.95, 1.0), (0.2, 0.5)),  # fallback with in_ratio > max(ratio)
        (120, 100, (1.0, 1.0), (0.5, 2.0)),  # fallback to the whole image
    ],
)
def test_crop_params_follow_torchvision_get_params_exactly(monkeypatch, height, width, scale, ratio):
    """Same random numbers in, same boxes out, for torchvision's own get_params and ours."""
    script = _ScriptedRandom(np.random.default_rng(height + width))
    monkeypatch.setattr(torch.Tensor, "uniform_", lambda t, a, b: script.uniform_(t, a, b))
    monkeypatch.setattr(torch, "randint", script.randint)
    img = torch.zeros(1, height, width)
    n = 300
    scale_draws = torch.zeros(n, 10)
    ratio_draws = torch.zeros(n, 10)
    top_u, left_u = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    expected, fallbacks = [], 0
    for b in range(n):
        script.uniforms.clear()
        script.randint_u.clear()
        expected.append(RandomResizedCrop.get_params(img, list(scale), list(ratio)))
        tries = len(script.uniforms) // 2
        scale_draws[b, :tries] = torch.tensor(script.uniforms[0::2])
        ratio_draws[b, :tries] = torch.tensor(script.uniforms[1::2])
        # tries that torchvision did not make must fail in ours too: an impossible area
        scale_draws[b, tries:] = 1e9
        if script.randint_u:
            top_u[b], left_u[b] = script.randint_u
        else:
            fallbacks += 1
    monkeypatch.undo()
    ours = crop_params_from_draws(height, width, scale_draws, ratio_draws, top_u, left_u, ratio=ratio)
    assert ours.tolist() == [list(e) for e in expected]
    if scale[0] >= 0.9:
        assert fallbacks > 0  # the fallback branch was exercised


def test_crop_params_distribution_matches_torchvision():
    """Our vectorized sampler and torchvision's, each with its own random numbers: same distributions."""
    n = 3000
    torch.manual_seed(0)
    img = torch.zeros(1, 256, 256)
    ref = torch.tensor([RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)])
    ours = sample_crop_params(n, 256, 256, generator=torch.Generator().manual_seed(1))
    assert ours.shape == (n, 4) and ours.dtype == torch.int64
    top, left, h, w = ours.T
    assert (h >= 1).all() and (w >= 1).all() and (top + h <= 256).all() and (left + w <= 256).all()

    def features(p):
        t, l, hh, ww = p.double().T
        return {
            "area": (hh * ww / 256**2).numpy(),
            "log_aspect": torch.log(ww / hh).numpy(),
            "top": ((t + hh / 2) / 256).numpy(),
            "left": ((l + ww / 2) / 256).numpy(),
        }

    fr, fo = features(ref), features(ours)
    for key in fr:
        p = stats.ks_2samp(fr[key], fo[key]).pvalue
        assert p > 1e-3, f"{key}: KS p-value {p:.2g}"
    # a heavily-failing setting: the share of fallback (central, full-width) crops matches
    ref_fb = np.mean([RandomResizedCrop.get_params(img, [0.9, 1.0], [1.4, 2.0])[3] == 256 for _ in range(n)])
    ours_p = sample_crop_params(n, 256, 256, (0.9, 1.0), (1.4, 2.0), torch.Generator().manual_seed(2))
    ours_fb = (ours_p[:, 3] == 256).double().mean().item()
    assert abs(ref_fb - ours_fb) < 0.04, (ref_fb, ours_fb)


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("cache, size", [(256, 224), (146, 128), (512, 224), (64, 96)])
def test_resized_crop_matches_torchvision(cache, size):
    n = 6 if cache >= 256 else 16  # torchvision's float kernel is slow on big images
    x = batch(n, cache)
    g = torch.Generator().manual_seed(cache)
    boxes = sample_crop_params(n, cache, cache, generator=g)
    boxes[0] = torch.tensor([0, 0, cache, cache])  # the whole image (a pure resize)
    boxes[1] = torch.tensor([3, 5, size // 2, size // 3])  # a small crop, upsampled
    flip = torch.rand(n, generator=g) < 0.5
    flip[:2] = torch.tensor([False, True])
    ours = resized_crop(x, boxes, size, flip=flip)
    assert ours.shape == (n, size, size) and ours.dtype == torch.float32
    for b in range(n):
        args = boxes[b].tolist()
        ref = TF.resized_crop(x[b].float(), *args, [size, size], antialias=True)[0]
        ref8 = TF.resized_crop(x[b], *args, [size, size], antialias=True)[0].float()  # uint8 path
        if flip[b]:
            ref, ref8 = ref.flip(-1), ref8.flip(-1)
        torch.testing.assert_close(ours[b], ref, atol=1e-2, rtol=0)
        assert (ours[b] - ref8).abs().max() <= 1.01  # torchvision's uint8 kernel rounds to grey levels


def test_resized_crop_identity_box_is_exact():
    x = batch(4, 64)
    boxes = torch.tensor([[10, 20, 32, 32]] * 4)
    torch.testing.assert_close(resized_crop(x, boxes, 32), x[:, 0, 10:42, 20:52].float(), atol=0, rtol=0)


# --------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("device", DEVICES)
def test_train_transform_output(device):
    x = batch(6, 64).to(device)
    tf = TrainTransform(48)
    out = tf(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == (6, 3, 48, 48) and out.dtype == torch.float32 and out.device.type == device
    # the same grey value in each channel, normalized per channel
    grey = out * torch.tensor(IMAGENET_STD, device=device)[:, None, None] + torch.tensor(IMAGENET_MEAN, device=device)[:, None, None]
    torch.testing.assert_close(grey[:, 0], grey[:, 1])
    torch.testing.assert_close(grey[:, 0], grey[:, 2])
    assert grey.min() >= -1e-5 and grey.max() <= 1 + 1e-5
    # (B, S, S) input works the same
    out2 = tf(x[:, 0], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, out2)
    # channels_last
    cl = TrainTransform(48, channels_last=True)(x, generator=torch.Generator().manual_seed(0))
    assert cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl, out)


def test_train_transform_reproducible_and_matches_per_image_torchvision():
    x = batch(8, 64)
    tf = TrainTransform(40)
    a = tf(x, generator=torch.Generator().manual_seed(5))
    b = tf(x, generator=torch.Generator().manual_seed(5))
    c = tf(x, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a, c)
    # flip=1 vs flip=0 with the same generator: same boxes, mirrored outputs
    never = TrainTransform(40, hflip=0.0)(x, generator=torch.Generator().manual_seed(5))
    always = TrainTransform(40, hflip=1.0)(x, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(always, never.flip(-1))
    # for given parameters, the whole train transform is torchvision's v2 pipeline, per image
    params = tf.sample_params(8, 64, 64, torch.Generator().manual_seed(9))
    ours = tf.apply(x, params)
    for i in range(8):
        img = TF.resized_crop(x[i].float(), *params["boxes"][i].tolist(), [40, 40], antialias=True)
        if params["flip"][i]:
            img = TF.horizontal_flip(img)
        ref = TF.normalize(img.expand(3, -1, -1) / 255.0, IMAGENET_MEAN, IMAGENET_STD)
        torch.testing.assert_close(ours[i], ref, atol=1e-4, rtol=0)
    assert 0 < int(params["flip"].sum()) < 8


def test_constant_image_normalization():
    x = torch.full((2, 1, 32, 32), 128, dtype=torch.uint8)
    for tf in (TrainTransform(16), TestTransform(16)):
        out = tf(x)
        for c in range(3):
            expected = (128 / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
            torch.testing.assert_close(out[:, c], torch.full_like(out[:, c], expected), atol=1e-5, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_test_transform_center_crop(device):
    x = batch(5, 256).to(device)
    out = TestTransform(224)(x)
    assert out.shape == (5, 3, 224, 224) and out.device.type == device
    ref = normalize(TF.center_crop(x[:, 0].float(), [224, 224]))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_test_transform_resize_then_crop():
    x = batch(4, 256)
    out = TestTransform(128, resize=146)(x)  # the fast CPU mode from a 256 cache
    ref = normalize(TF.center_crop(TF.resize(x[:, 0].float(), [146, 146], antialias=True), [128, 128]))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    # from a 146 cache, resize=146 is only a crop
    small = batch(4, 146)
    torch.testing.assert_close(TestTransform(128, resize=146)(small), TestTransform(128)(small), atol=0, rtol=0)
    assert TestTransform(128, resize=round(128 * 256 / 224)).resize == 146


def test_bad_shapes():
    with pytest.raises(ValueError, match="grey channel"):
        TrainTransform(16)(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="center-crop"):
        TestTransform(64)(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError):
        TestTransform(64, resize=32)
    with pytest.raises(ValueError, match="hflip"):
        TrainTransform(16, hflip=2.0)
