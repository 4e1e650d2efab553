"""Lung-shape templates from the real lung masks: the lung fields of every phantom have a real shape.

Each patient of the synthetic dataset gets one of these templates (cropped to the two lungs
and resampled to a square), jittered per image by a small affine transform.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from ..data.masks import reduced_lung_masks

#: Side of the square lung-shape templates and how many real masks serve as shapes.
TEMPLATE_RESOLUTION = 128
TEMPLATE_COUNT = 96


@dataclass(frozen=True)
class LungTemplates:
    """Real lung shapes, cropped to the two lungs and resampled to a square.

    Attributes:
        right: ``(K, T, T)`` float32 in [0, 1]: the patient's right lung (image left).
        left: ``(K, T, T)`` float32: the patient's left lung (image right).
        aspect: ``(K,)`` height / width of the real two-lung bounding box.
        boxes: ``(K, 2, 4)`` per template and side (right, left): ``u0, u1, v0, v1``, the
            lung's extent in template coordinates (0-1, u to the image right, v down).
        names: the mask file of each template.
    """

    right: np.ndarray
    left: np.ndarray
    aspect: np.ndarray
    boxes: np.ndarray
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)


def _template_from_mask(grey: np.ndarray, resolution: int):
    """Split a two-lung mask into right/left channels on a square; None when unusable."""
    # marks drawn over a lung (devices, labels; grey 127 in the file) leave holes: fill them
    small = ndimage.binary_fill_holes(grey >= 128)
    labels, count = ndimage.label(small)
    if count < 2:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    total = small.sum()
    order = np.argsort(sizes)[::-1]
    big = [i + 1 for i in order if sizes[i] > 0.05 * total]
    if len(big) != 2:
        return None
    lungs = np.isin(labels, big)
    ys, xs = np.nonzero(lungs)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    hh, ww = y1 - y0, x1 - x0
    touches = y0 == 0 or x0 == 0 or y1 == small.shape[0] or x1 == small.shape[1]
    ratio = sizes[big[0] - 1] / sizes[big[1] - 1]
    fill = lungs.sum() / (hh * ww)
    if touches or not (0.6 <= hh / ww <= 1.05) or not (0.5 <= fill <= 0.7) or ratio > 1.5:
        return None
    crop = labels[y0:y1, x0:x1]
    cx = [np.nonzero(crop == b)[1].mean() for b in big]
    right_id, left_id = (big[0], big[1]) if cx[0] < cx[1] else (big[1], big[0])
    channels, boxes = [], []
    for lab in (right_id, left_id):
        part = (crop == lab)
        py, px = np.nonzero(part)
        if px.max() > 0.75 * ww if lab == right_id else px.min() < 0.25 * ww:
            return None  # one lung reaches across the midline: not a usable shape
        boxes.append((px.min() / ww, (px.max() + 1) / ww, py.min() / hh, (py.max() + 1) / hh))
        img = Image.fromarray(part.astype(np.float32))
        arr = np.asarray(img.resize((resolution, resolution), Image.BILINEAR), dtype=np.float32)
        channels.append(ndimage.gaussian_filter(arr, 0.7).astype(np.float32))
    return channels[0], channels[1], hh / ww, np.asarray(boxes, dtype=np.float32)


@functools.lru_cache(maxsize=2)
def lung_templates(count: int = TEMPLATE_COUNT, resolution: int = TEMPLATE_RESOLUTION) -> LungTemplates:
    """Return the lung-shape templates that phantoms draw their lung fields from.

    The real masks (:func:`cral_lib.data.masks.reduced_lung_masks`) are read in name order;
    a mask is used when it holds exactly two lungs side by side that do not touch its border,
    with a plausible shape (height/width of both lungs 0.6-1.05, lungs filling 50-70 % of
    their bounding box, the larger lung at most 1.5 times the smaller one). The first
    ``count`` such masks are kept. Cached per process.

    Args:
        count: how many templates to keep (at most the 434 masks that pass).
        resolution: side of the square templates.

    Returns:
        The :class:`LungTemplates`.

    Raises:
        DataError: torchxrayvision (which carries the masks) is not installed.
    """
    right, left, aspect, boxes, names = [], [], [], [], []
    for name, grey in reduced_lung_masks():
        made = _template_from_mask(grey, resolution)
        if made is None:
            continue
        right.append(made[0])
        left.append(made[1])
        aspect.append(made[2])
        boxes.append(made[3])
        names.append(name)
        if len(names) >= count:
            break
    out = LungTemplates(
        right=np.stack(right),
        left=np.stack(left),
        aspect=np.asarray(aspect, dtype=np.float32),
        boxes=np.stack(boxes),
        names=tuple(names),
    )
    for arr in (out.right, out.left, out.aspect, out.boxes):
        arr.flags.writeable = False
    return out


__all__ = ["LungTemplates", "TEMPLATE_COUNT", "TEMPLATE_RESOLUTION", "lung_templates"]
