"""The image workers of ``cral synth``: each draws a chunk of phantoms and writes their PNGs.

A worker process imports this module (spawned on macOS and Windows), so it imports only what
drawing needs: numpy, Pillow, SciPy and the phantoms (no pandas, no torch).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from PIL import Image

from .phantom import make_phantom

#: zlib level of the PNGs (3: quick to write, a little larger than the maximum).
PNG_COMPRESS_LEVEL = 3

_WORKER: dict[str, Any] = {}


def init_worker(templates, root: str, size: int, seed: int) -> None:
    """Set up a worker process (or this one): the lung templates and where the images go."""
    _WORKER.update(templates=templates, root=root, size=size, seed=seed)


def render_chunk(tasks: list[tuple]) -> dict[str, list[tuple]]:
    """Draw and write the images of one chunk.

    Returns:
        ``{"boxes": [(row, class, x, y, w, h), ...], "findings": [(row, class, attempt,
        contrast, pixels), ...]}``: the boxes, and how each finding shows
        (:class:`~cral_lib.synthetic.visibility.Check`).
    """
    root, size, seed = Path(_WORKER["root"]), _WORKER["size"], _WORKER["seed"]
    boxes, findings = [], []
    for index, relpath, labels, view, sex, age, patient in tasks:
        ph = make_phantom(
            labels, size=size, view=view, sex=sex, age=age, seed=seed, image_id=index,
            patient_id=patient, templates=_WORKER["templates"],
        )
        path = root / relpath
        tmp = path.with_name(f".{path.name}.tmp")
        Image.fromarray(ph.image, mode="L").save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        os.replace(tmp, path)
        for label, (x, y, w, h) in ph.boxes.items():
            boxes.append((index, label, x, y, w, h))
        for label, check in ph.checks.items():
            findings.append((index, label, check.attempt, check.contrast, check.pixels))
    return {"boxes": boxes, "findings": findings}


def chunk_size(n: int) -> int:
    """Images per task: at least 25, at most about 400 tasks."""
    return max(25, math.ceil(n / 400))


__all__ = ["PNG_COMPRESS_LEVEL", "chunk_size", "init_worker", "render_chunk"]
