"""The paper's image transforms, applied to whole batches on the device.

CRAL (Section 4.2) trains on "resize 256 x 256, RandomResizedCrop 224, random horizontal
flip, ImageNet mean/std" and tests on "resize 256, center crop 224". The resize to 256 is
done once, by the image cache (:mod:`cral_lib.data.cache`); this module does the rest on
batches of cached uint8 images, ``(B, 1, S, S)`` or ``(B, S, S)``, on whatever device they
are (GPU or CPU), and returns float32 ``(B, 3, size, size)``: the grey channel replicated to
three and normalized with the ImageNet mean and std of each channel.

How it matches torchvision:

- :func:`sample_crop_params` is ``torchvision.transforms.RandomResizedCrop.get_params``
  vectorized: for each image, up to 10 tries of a random area fraction in ``scale`` and a
  log-uniform aspect ratio in ``ratio``; the first try whose box fits is used, with a uniform
  position; after 10 failures, the central crop of the clamped aspect ratio.
- :func:`resized_crop` computes exactly what ``torchvision.transforms.v2.functional.resized_crop``
  computes with bilinear interpolation and ``antialias=True`` (the default), per image and
  per box, but for a whole batch at once. The resampling is separable: each output row (and
  column) is a weighted sum of a few input rows (columns) with the triangle filter of
  PyTorch's and PIL's antialiased bilinear resize (support widened by the downscaling
  factor). Rows are gathered (``K`` taps, ``K`` = 3 for crops of a 256 image resized to 224),
  then columns, so the cost is ``O(K)`` per output pixel, whatever the image size. The only
  difference from torchvision on uint8 images is that the result is not rounded back to
  uint8 before normalization (a difference of at most 0.5/255).
- The flip is folded into the column weights, and the normalization into the final write.

Randomness comes from an optional ``torch.Generator`` (any device); without one, torch's
default generator is used, as torchvision does.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

#: ImageNet channel means and standard deviations (RGB), as torchvision's pretrained models expect.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_TRIES = 10  # as torchvision


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` or ``(B, H, W)`` -> ``(B, H, W)`` (uint8 kept: it is converted while resampling)."""
    if x.dim() == 4:
        if x.shape[1] != 1:
            raise ValueError(f"expected one grey channel, got a batch of shape {tuple(x.shape)}")
        x = x[:, 0]
    elif x.dim() != 3:
        raise ValueError(f"expected a batch (B, 1, H, W) or (B, H, W), got shape {tuple(x.shape)}")
    return x if x.dtype in (torch.uint8, torch.float32) else x.float()


def _uniform(shape: Sequence[int], generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) float32 numbers on the CPU, drawn on the generator's device."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(tuple(shape), generator=generator, device=device).cpu()


def crop_params_from_draws(
    height: int,
    width: int,
    scale_draws: torch.Tensor,
    log_ratio_draws: torch.Tensor,
    top_draws: torch.Tensor,
    left_draws: torch.Tensor,
    ratio: Sequence[float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """The deterministic part of :func:`sample_crop_params`: boxes from given random draws.

    Mirrors ``RandomResizedCrop.get_params`` line by line, for all images and tries at once.

    Args:
        height: image height.
        width: image width.
        scale_draws: ``(B, tries)`` area fractions, drawn uniformly in ``scale``.
        log_ratio_draws: ``(B, tries)`` log aspect ratios, drawn uniformly in ``log(ratio)``.
        top_draws: ``(B,)`` uniforms in [0, 1): the top edge is ``floor(u * (height - h + 1))``.
        left_draws: ``(B,)`` uniforms in [0, 1) for the left edge, likewise.
        ratio: the aspect ratio range (for the fallback crop).

    Returns:
        ``(B, 4)`` int64 boxes ``(top, left, h, w)``.
    """
    area = float(height * width)
    target = area * scale_draws.double()
    aspect = torch.exp(log_ratio_draws.float()).double()  # float32 exp, as torchvision's
    w = torch.round(torch.sqrt(target * aspect))  # round half to even, as Python's round
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.uint8).argmax(dim=1)  # the first try that fits
    found = ok.any(dim=1)
    rows = torch.arange(len(first))
    w, h = w[rows, first], h[rows, first]

    # Fallback to the central crop (torchvision's code, once for the whole batch).
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    top = torch.floor(top_draws.double() * (height - h + 1)).clamp(max=height - h)
    left = torch.floor(left_draws.double() * (width - w + 1)).clamp(max=width - w)
    top = torch.where(found, top, (height - h) // 2)
    left = torch.where(found, left, (width - w) // 2)
    return torch.stack([top, left, h, w], dim=1).long()


def sample_crop_params(
    n: int,
    height: int,
    width: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``n`` RandomResizedCrop boxes at once, with torchvision's rules (see the module docstring).

    Args:
        n: how many boxes.
        height: image height.
        width: image width.
        scale: range of the crop's area as a fraction of the image's.
        ratio: range of the crop's aspect ratio (width / height), sampled log-uniformly.
        generator: source of randomness (any device); torch's default generator when None.

    Returns:
        ``(n, 4)`` int64 CPU tensor of boxes ``(top, left, h, w)``.
    """
    if not (0 < scale[0] <= scale[1]) or not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"scale={tuple(scale)} and ratio={tuple(ratio)} must be positive (low, high) ranges")
    u = _uniform((n, 2 * _TRIES + 2), generator)
    lo_r, hi_r = torch.log(torch.tensor([float(ratio[0]), float(ratio[1])]))  # float32, as torchvision
    scale_draws = float(scale[0]) + (float(scale[1]) - float(scale[0])) * u[:, :_TRIES]
    log_ratio_draws = lo_r + (hi_r - lo_r) * u[:, _TRIES : 2 * _TRIES]
    return crop_params_from_draws(
        height, width, scale_draws, log_ratio_draws, u[:, -2], u[:, -1], ratio=ratio
    )


def _taps(start: Any, length: Any, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Input indices and weights of an antialiased bilinear resize of ``[start, start+length)`` to ``out_size``.

    PyTorch's ``_upsample_bilinear2d_aa`` (and PIL's ``resize(BILINEAR)``): output ``o`` has
    center ``c = scale * (o + 0.5)`` in the crop (``scale = length / out_size``), support
    ``s = max(scale, 1)``, and weights ``max(0, 1 - |(j + 0.5 - c) / s|)`` over the crop's
    pixels ``j``, normalized to sum to one. Only taps with a non-zero weight somewhere in the
    batch are kept (2 when every crop is upsampled, 3 when some are slightly downsampled).

    Args:
        start: ``(B,)`` first pixel of each crop (along this axis).
        length: ``(B,)`` crop length (>= 1).
        out_size: output length.

    Returns:
        ``(index, weight)``: ``(B, out_size, K)`` int64 input positions and float32 weights
        (numpy arrays: these are small, and torch would spread each of the ~30 little
        operations over its thread pool, a loss, and a large one on a busy machine).
    """
    start = np.asarray(start, dtype=np.float64)
    length = np.asarray(length, dtype=np.float64)
    scale = length / out_size
    support = np.maximum(scale, 1.0)
    k = int(math.ceil(2.0 * float(support.max()))) + 1
    center = scale[:, None] * (np.arange(out_size, dtype=np.float64) + 0.5)
    lo = np.maximum(np.floor(center - support[:, None] - 0.5) + 1, 0)  # first pixel with weight > 0
    hi = np.minimum(np.floor(center + support[:, None] + 0.5), length[:, None])
    j = lo[..., None] + np.arange(k, dtype=np.float64)
    weight = np.clip(1.0 - np.abs((j + 0.5 - center[..., None]) / support[:, None, None]), 0.0, None)
    weight[j >= hi[..., None]] = 0.0
    used = int(np.flatnonzero((weight > 0).any(axis=(0, 1))).max()) + 1
    weight = weight[..., :used] / weight.sum(axis=-1, keepdims=True)
    index = start[:, None, None] + np.minimum(j[..., :used], length[:, None, None] - 1)
    return index.astype(np.int64), weight.astype(np.float32)


def _pass(src: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Resample the rows of every image: ``(B, H, W)`` -> ``(B, O, W)``, row ``o`` = sum_k w * row index[o, k].

    Whole rows are gathered with ``index_select`` on the ``(B*H, W)`` view (contiguous copies)
    and accumulated in float32.
    """
    b, h, w = src.shape
    o = index.shape[1]
    flat = (index + (torch.arange(b, device=index.device) * h)[:, None, None]).reshape(b * o, -1)
    weight = weight.reshape(b * o, -1)
    rows = src.reshape(b * h, w)
    part = torch.empty((b * o, w), dtype=src.dtype, device=src.device)
    out = torch.empty((b * o, w), dtype=torch.float32, device=src.device)
    for k in range(flat.shape[1]):
        torch.index_select(rows, 0, flat[:, k], out=part)
        if k == 0:
            torch.mul(part, weight[:, :1], out=out)
        else:
            out.addcmul_(part, weight[:, k : k + 1])
    return out.view(b, o, w)


def _resample(
    x: torch.Tensor, rows: tuple[np.ndarray, np.ndarray], cols: tuple[np.ndarray, np.ndarray]
) -> torch.Tensor:
    """Separable resampling of ``(B, H, W)`` by row taps, then column taps -> float32 ``(B, Oh, Ow)``."""
    device = x.device
    if device.type != "cpu":
        x = x.float()  # the mixed uint8/float kernels are used (and tested) on the CPU only
    def on_device(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        if device.type == "cuda":
            # from pinned memory the copy is asynchronous; from ordinary memory CUDA first waits
            # for the GPU to finish its queued work, so the CPU could not prepare the next batch
            t = t.pin_memory()
        return t.to(device, non_blocking=True)

    y = _pass(x, on_device(rows[0]), on_device(rows[1]))  # (B, Oh, W)
    y = y.transpose(1, 2).contiguous()  # (B, W, Oh): columns become rows
    return _pass(y, on_device(cols[0]), on_device(cols[1])).transpose(1, 2)  # (B, Oh, Ow), a view


def resized_crop(
    x: torch.Tensor,
    boxes: torch.Tensor,
    size: int | tuple[int, int],
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Crop a box out of every image and resize it (bilinear, antialiased), batch-wise.

    For each image, the same numbers as ``torchvision.transforms.v2.functional.resized_crop(
    img, top, left, h, w, size, antialias=True)`` on a float image (see the module docstring).

    Args:
        x: ``(B, 1, H, W)`` or ``(B, H, W)`` images (uint8 or float in 0..255), any device.
        boxes: ``(B, 4)`` integer boxes ``(top, left, h, w)`` inside the images.
        size: output side, or ``(height, width)``.
        flip: optional ``(B,)`` bool: mirror those outputs horizontally.

    Returns:
        float32 ``(B, out_h, out_w)`` on x's device, in 0..255.
    """
    x = _as_batch(x)
    out_h, out_w = (size, size) if isinstance(size, int) else size
    boxes = boxes.detach().to("cpu", torch.int64).numpy()
    rows = _taps(boxes[:, 0], boxes[:, 2], out_h)
    cols = _taps(boxes[:, 1], boxes[:, 3], out_w)
    if flip is not None:
        mirror = flip.detach().to("cpu", torch.bool).numpy()
        cols = tuple(np.where(mirror[:, None, None], t[:, ::-1], t) for t in cols)
    return _resample(x, rows, cols)


def _normalize(z: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Grey 0..255 ``(B, h, w)`` -> ImageNet-normalized float32 ``(B, 3, h, w)``."""
    b, h, w = z.shape
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((b, 3, h, w), dtype=torch.float32, device=z.device, memory_format=memory_format)
    for c in range(3):
        # (z / 255 - mean) / std = scale * z + shift, with Python numbers only: a tensor made on a
        # GPU here would be a host-to-device copy that waits for all the GPU's queued work
        torch.mul(z, 1.0 / (255.0 * IMAGENET_STD[c]), out=out[:, c]).add_(-IMAGENET_MEAN[c] / IMAGENET_STD[c])
    return out


class TrainTransform:
    """The paper's training transform on a batch: RandomResizedCrop, horizontal flip, ImageNet normalization.

    The input is the cache's ``S x S`` images (already resized to 256 for the paper's
    recipe). Crops follow torchvision's ``RandomResizedCrop(size, scale, ratio)`` in
    distribution (same sampling rules, same bilinear antialiased resampling).

    Args:
        size: output side (224 in the paper).
        scale: range of the crop's area fraction (torchvision's default (0.08, 1.0)).
        ratio: range of the crop's aspect ratio (torchvision's default (3/4, 4/3)).
        hflip: probability of a horizontal flip (0.5 in the paper).
        channels_last: return a channels_last tensor (faster convolutions with AMP on GPUs).

    Example:
        >>> tf = TrainTransform(224)
        >>> x = torch.zeros(8, 1, 256, 256, dtype=torch.uint8)
        >>> tf(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([8, 3, 224, 224])
    """

    def __init__(
        self,
        size: int = 224,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        channels_last: bool = False,
    ) -> None:
        self.size = int(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.hflip = float(hflip)
        self.channels_last = bool(channels_last)
        if not 0.0 <= self.hflip <= 1.0:
            raise ValueError(f"hflip={hflip!r} must be a probability in [0, 1]")

    def sample_params(
        self, n: int, height: int, width: int, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Draw the random parameters of ``n`` images.

        Returns:
            ``{"boxes": (n, 4) int64 (top, left, h, w), "flip": (n,) bool}``, on the CPU.
        """
        boxes = sample_crop_params(n, height, width, self.scale, self.ratio, generator)
        flip = _uniform((n,), generator) < self.hflip
        return {"boxes": boxes, "flip": flip}

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Apply given parameters (from :meth:`sample_params`): crop, resize, flip, normalize."""
        z = resized_crop(x, params["boxes"], self.size, flip=params["flip"])
        return _normalize(z, self.channels_last)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Transform a batch.

        Args:
            x: uint8 ``(B, 1, S, S)`` or ``(B, S, S)`` on any device (float in 0..255 also works).
            generator: source of randomness; torch's default generator when None.

        Returns:
            float32 ``(B, 3, size, size)`` on x's device.
        """
        height, width = x.shape[-2:]
        return self.apply(x, self.sample_params(x.shape[0], height, width, generator))

    def __repr__(self) -> str:
        return (
            f"TrainTransform(size={self.size}, scale={self.scale}, ratio=({self.ratio[0]:.4g}, "
            f"{self.ratio[1]:.4g}), hflip={self.hflip}, channels_last={self.channels_last})"
        )


def test_time_resize(crop: int) -> int:
    """The side the test transform resizes to before its center crop of ``crop`` pixels.

    The paper resizes to 256 and crops 224 (Section 4.2); other crop sizes keep that ratio:
    ``round(crop * 256 / 224)`` (73 for the fast mode's 64 px crops). The trainer's validation,
    :func:`cral_lib.train.evaluate_run` and the chapters all take the rule from here.

    Args:
        crop: side of the center crop (the training crop size, ``image_size``).

    Returns:
        The side to resize to.
    """
    return round(int(crop) * 256 / 224)


test_time_resize.__test__ = False  # a library function, not a pytest test, despite its name


class TestTransform:
    """The paper's test transform on a batch: (resize,) center crop, ImageNet normalization.

    With ``resize=None`` the center ``size x size`` crop is taken from the cached image as it
    is (the paper: a 256 cache, 224 crop). With ``resize=R`` the image is first resized to
    ``R x R`` (bilinear, antialiased, like torchvision's ``Resize``), e.g. the fast CPU mode's
    ``TestTransform(128, resize=test_time_resize(128))``; no resampling happens when ``R``
    equals the cached size. :meth:`for_crop` gives the transform a run is evaluated with.

    Args:
        size: output side (224 in the paper).
        resize: side to resize to before cropping, or None.
        channels_last: return a channels_last tensor.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, size: int = 224, resize: int | None = None, channels_last: bool = False) -> None:
        self.size = int(size)
        self.resize = None if resize is None else int(resize)
        self.channels_last = bool(channels_last)
        if self.resize is not None and self.resize < self.size:
            raise ValueError(f"resize={resize} is smaller than the crop size={size}")

    @classmethod
    def for_crop(cls, size: int, channels_last: bool = False) -> "TestTransform":
        """The test transform of a run trained on ``size`` px crops: resize to
        :func:`test_time_resize` of it, then the central ``size`` crop."""
        return cls(size=size, resize=test_time_resize(size), channels_last=channels_last)

    def __call__(self, x: torch.Tensor, generator: Any = None) -> torch.Tensor:
        """Transform a batch (``generator`` is accepted for symmetry and ignored).

        Args:
            x: uint8 ``(B, 1, S, S)`` or ``(B, S, S)`` on any device.

        Returns:
            float32 ``(B, 3, size, size)`` on x's device.
        """
        x = _as_batch(x)
        n, height, width = x.shape
        rh, rw = (height, width) if self.resize is None else (self.resize, self.resize)
        if self.size > min(rh, rw):
            raise ValueError(f"cannot center-crop {self.size} px out of {rh} x {rw} images")
        top = int(round((rh - self.size) / 2.0))  # torchvision's center_crop
        left = int(round((rw - self.size) / 2.0))
        if (rh, rw) == (height, width):
            z = x[:, top : top + self.size, left : left + self.size].float()
        else:
            zeros = np.zeros(n)
            rows = tuple(t[:, top : top + self.size] for t in _taps(zeros, np.full(n, height), rh))
            cols = tuple(t[:, left : left + self.size] for t in _taps(zeros, np.full(n, width), rw))
            z = _resample(x, rows, cols)
        return _normalize(z, self.channels_last)

    def __repr__(self) -> str:
        return f"TestTransform(size={self.size}, resize={self.resize}, channels_last={self.channels_last})"


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TestTransform",
    "TrainTransform",
    "crop_params_from_draws",
    "resized_crop",
    "sample_crop_params",
    "test_time_resize",
]
