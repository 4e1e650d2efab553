"""Shared test fixtures: small ChestX-ray14 release folders written on the fly.

``make_release`` (a fixture) and :func:`write_release` (a plain function) write a folder in
the exact layout of the NIH release (see /work/shared/NIH_FACTS.md and
``cral_lib/data/nih.py``): the metadata CSV (either name, with or without a trailing empty
column), the two official split lists (patient-disjoint), ``BBox_List_2017.csv`` (with the
``Infiltrate`` spelling and the split ``Bbox [x,y,w,h]`` header) and small PNGs in
``images_NNN/images/`` ("nested") or ``images/`` ("flat").

Example::

    def test_something(make_release):
        root = make_release(n_images=24, size=32, layout="flat")
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest

from cral_lib import CLASSES, NO_FINDING

DATA_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"


def fixture_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth uint8 "X-ray-like" image with noise (compresses about like a real one)."""
    yy, xx = np.mgrid[0:size, 0:size] / max(size, 1)
    cx, cy = rng.uniform(0.3, 0.7, 2)
    img = (
        110
        + 70 * np.sin(xx * rng.uniform(3, 8)) * np.cos(yy * rng.uniform(3, 8))
        + 60 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) * 10)
        + rng.normal(0, 5, (size, size))
    )
    return img.clip(0, 255).astype(np.uint8)


def save_png(path: Path, grey: np.ndarray, mode: str = "L") -> None:
    """Save a uint8 grey image as a PNG of the given PIL mode (L, LA, RGB, RGBA, I;16, I;16-12bit, P)."""
    from PIL import Image

    if mode == "L":
        img = Image.fromarray(grey, "L")
    elif mode == "LA":
        img = Image.merge("LA", [Image.fromarray(grey, "L"), Image.new("L", grey.shape[::-1], 255)])
    elif mode in ("RGB", "RGBA"):
        img = Image.fromarray(np.stack([grey] * 3 + [np.full_like(grey, 255)] * (mode == "RGBA"), -1), mode)
    elif mode == "I;16":
        img = Image.fromarray(grey.astype(np.uint16) * 257)  # full 16-bit range
    elif mode == "I;16-12bit":
        img = Image.fromarray((grey.astype(np.uint32) * 4095 // 255).astype(np.uint16))  # a 12-bit X-ray
    elif mode == "P":
        img = Image.fromarray(grey, "L").convert("P")
    else:
        raise ValueError(mode)
    img.save(path)


def write_release(
    root: str | Path,
    n_images: int = 24,
    size: int = 32,
    *,
    layout: str = "nested",
    csv_name: str = "Data_Entry_2017.csv",
    trailing_column: bool = False,
    bbox_trailing: bool = False,
    modes: Sequence[str] = ("L",),
    images_per_patient: int = 3,
    seed: int = 0,
    write_images: bool = True,
) -> Path:
    """Write a small release folder and return it.

    Patients ``1..`` get ``images_per_patient`` images each (``{pid:08d}_{k:03d}.png``); every
    fourth patient is in ``test_list.txt``, the rest in ``train_val_list.txt``. Labels cycle
    through ``No Finding``, the 14 single classes and 14 pairs, so all 14 classes occur when
    ``n_images >= 15``. Image ``i`` is saved in PIL mode ``modes[i % len(modes)]``.

    Args:
        root: the folder to write (created).
        n_images: number of images.
        size: side of the square PNGs.
        layout: ``"nested"`` (``images_001/images``, ``images_002/images``) or ``"flat"`` (``images/``).
        csv_name: ``Data_Entry_2017.csv`` or ``Data_Entry_2017_v2020.csv``.
        trailing_column: end every CSV line with an empty column (as some copies do).
        bbox_trailing: write the box rows with three empty trailing fields (the original file).
        modes: PNG modes to cycle through.
        images_per_patient: images of each patient.
        seed: seed of the image content.
        write_images: write the PNGs (False: metadata only).

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    end = "," if trailing_column else ""
    lines = [DATA_ENTRY_HEADER + end]
    train_val, test, boxes = [], [], []
    names = []
    for i in range(n_images):
        pid = i // images_per_patient + 1
        name = f"{pid:08d}_{i % images_per_patient:03d}.png"
        names.append(name)
        k = i % 29
        if k == 0:
            label = NO_FINDING
        elif k <= 14:
            label = CLASSES[k - 1]
        else:
            label = f"{CLASSES[k - 15]}|{CLASSES[(k - 15 + 5) % 14]}"
        lines.append(
            f"{name},{label},{i % images_per_patient},{pid},{20 + i % 60},{'MF'[i % 2]},{('PA', 'AP')[i % 2]},"
            f"{size},{size},0.143,0.143{end}"
        )
        (test if pid % 4 == 0 else train_val).append(name)
        if i % 5 == 1:
            box_label = "Infiltrate" if i % 10 == 1 else CLASSES[i % 14]
            tail = ",,," if bbox_trailing else ""
            boxes.append(f"{name},{box_label},{size * 0.25},{size * 0.3},{size * 0.4},{size * 0.35}{tail}")
    (root / csv_name).write_text("\n".join(lines) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    (root / "BBox_List_2017.csv").write_text("\n".join([BBOX_HEADER] + boxes) + "\n")
    if write_images:
        for i, name in enumerate(names):
            if layout == "flat":
                folder = root / "images"
            elif layout == "nested":
                folder = root / f"images_{1 + 2 * i // max(n_images, 1):03d}" / "images"
            else:
                raise ValueError(f"layout={layout!r}")
            folder.mkdir(parents=True, exist_ok=True)
            save_png(folder / name, fixture_image(rng, size), modes[i % len(modes)])
    return root


def image_path(root: Path, name: str) -> Path:
    """The file of image ``name`` in a release written by :func:`write_release`."""
    found = list(Path(root).glob(f"images*/**/{name}")) or list(Path(root).glob(f"images*/{name}"))
    if not found:
        raise FileNotFoundError(name)
    return found[0]


@pytest.fixture
def make_release(tmp_path: Path) -> Callable[..., Path]:
    """A function that writes a release folder under ``tmp_path`` (see :func:`write_release`).

    Each call writes a new folder; pass ``root=`` to choose it.
    """
    count = [0]

    def make(root: str | Path | None = None, **kwargs) -> Path:
        count[0] += 1
        return write_release(root if root is not None else tmp_path / f"release{count[0]}", **kwargs)

    return make


@pytest.fixture(scope="session")
def small_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One read-only 60-image release (nested layout, 32 px), shared by a whole test session."""
    return write_release(tmp_path_factory.mktemp("small_release") / "release", n_images=60, size=32)


# --------------------------------------------------------------------------- training

#: The training tests' recipe: 48 px crops of 56 px cached images (2 x 2 conv5 maps), a few
#: seconds per epoch on 2 cores.
TRAIN_SMALL = dict(backbone="resnet18", attention="att1", weights=None, image_size=48, cache_size=56, batch_size=16,
                   eval_batch_size=64, lr=0.05, epochs=2, lr_milestones=(1,), max_train_images=64, log_every=1)


@pytest.fixture(scope="session")
def train_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 240-image synthetic release (64 px) with its 56 px cache, shared by the training tests."""
    from cral_lib.data import build_cache, make_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, n_images=240, image_size=64, seed=3, progress=False)
    build_cache(root, size=56, progress=False, workers=1)
    return root


def train_config(release: Path, out: Path, **changes):
    """A TrainConfig of :data:`TRAIN_SMALL` on ``release``, writing to ``out``, with ``changes``."""
    from cral_lib.train import TrainConfig

    return TrainConfig(data_dir=str(release), out_dir=str(out), **{**TRAIN_SMALL, **changes})


def book_tools(build: Path, monkeypatch, name: str = "book_tools_under_test"):
    """tools/book.py loaded as a module whose _build/ is ``build`` (``CRAL_BOOK_BUILD``)."""
    import importlib.util

    monkeypatch.setenv("CRAL_BOOK_BUILD", str(build))
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "tools" / "book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.BUILD == build
    return module
