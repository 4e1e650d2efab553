"""How well a model's maps point at the lesions that NIH boxed.

ChestX-ray14 ships 984 bounding boxes (``BBox_List_2017.csv``) for 880 test images and 8 of
the 14 findings, in the frame of the 1024 x 1024 original image, as ``x, y, w, h`` (top-left
corner, width, height, in pixels). CRAL is trained with image labels only, so these boxes
measure what its attention maps (or a baseline's class activation maps) learned to look at.
Two measures are computed for every box:

- the **pointing game** (Zhang et al., "Top-down neural attention by excitation backprop",
  ECCV 2016): a hit when the maximum of the map, upsampled to the image, falls inside the
  box. Zhang et al. allow a tolerance of 15 pixels around the box; here the tolerance is a
  parameter, **0 by default** (the point must be inside the box itself);
- the **IoU at a threshold**: the map is scaled to [0, 1] (min-max over the area the network
  saw), binarised at ``threshold``, and compared with the box. Two variants:
  ``mode="mask"`` (default): IoU of the binary mask with the box's filled rectangle;
  ``mode="bbox"``: the bounding box of the largest connected component of the mask, compared
  with the ground-truth box, as in the box-generation step of Wang et al., "ChestX-ray8",
  CVPR 2017. Wang et al. report accuracy at T(IoU) and T(IoBB) (intersection over the
  *detected* box's area); :func:`localization_scores` gives all three numbers.

Frames. A map of h x w cells (7 x 7 for a 224 input) covers the network's input, which is
a window of the original image: the center crop of the test transform (resize to 256, crop
224: the window ``(64, 64, 896, 896)`` of a 1024 image, see :func:`center_crop_window`) or
the whole image. Boxes stay in the original frame; the map is upsampled (bilinear, as
``torch.nn.functional.interpolate(..., align_corners=False)``) onto its window, and the
part of a box outside the window counts as missed. Sizes are ``(width, height)`` throughout,
as in the NIH CSV and PIL; arrays are ``(..., height, width)``.

Everything works on numpy arrays and accepts torch tensors (moved to the CPU). This module
imports neither torch nor matplotlib (SciPy, a dependency of scikit-learn, finds the
connected components).
"""

from __future__ import annotations

from .maps import (
    BOX_LABEL_ALIASES,
    IOU_THRESHOLDS,
    box_from_map,
    box_iou,
    box_mask,
    center_crop_window,
    iobb,
    iou_at_threshold,
    map_peak,
    normalize_map,
    pointing_game,
    scale_boxes,
    upsample_map,
)
from .scores import localization_scores, pointing_ceiling, summarize_localization

__all__ = [
    "BOX_LABEL_ALIASES",
    "IOU_THRESHOLDS",
    "box_from_map",
    "box_iou",
    "box_mask",
    "center_crop_window",
    "iobb",
    "iou_at_threshold",
    "localization_scores",
    "map_peak",
    "normalize_map",
    "pointing_ceiling",
    "pointing_game",
    "scale_boxes",
    "summarize_localization",
    "upsample_map",
]
