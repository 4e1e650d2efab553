"""The rows of a synthetic release: whole real patients, renumbered, in a patient-disjoint split.

:func:`synthetic_metadata` draws them from the real metadata that the torchxrayvision wheel
carries (:func:`cral_lib.data.nih_metadata`); :func:`data_entry_text` and :func:`bbox_text` write
them, and the phantoms' boxes, in NIH's exact file formats.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd

from .. import CLASSES
from ..data.metadata import nih_metadata
from ..data.files import BBOX_HEADER, BOX_LABEL_ALIASES, CSV_COLUMNS, DATA_ENTRY_HEADER
from ..errors import ConfigError

#: Images in NIH's first archive (``images_001``) and in each later one.
FIRST_FOLDER_IMAGES = 4999
FOLDER_IMAGES = 10000
#: The official split of the release.
OFFICIAL_TRAIN_VAL = 86524
OFFICIAL_TEST = 25596
OFFICIAL_TOTAL = OFFICIAL_TRAIN_VAL + OFFICIAL_TEST
#: Synthetic patient numbers start above this (real ones end at 30,805).
PATIENT_OFFSET = 90_000_000

#: Image sides and counts that :func:`~cral_lib.synthetic.make_synthetic` accepts.
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 4096
MAX_IMAGES = OFFICIAL_TOTAL

_SAMPLE_STREAM = 101  # seed-sequence stream of the patient sampling (distinct from the phantoms')


def check_int(name: str, value: Any, lo: int, hi: int | None, hint: str) -> int:
    """``value`` as an int in ``[lo, hi]``; a :class:`ConfigError` naming ``name`` and ``hint`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer {hint}, got {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        raise ConfigError(f"{name} must be {hint}, got {value}")
    return value


def check_params(n_images: Any, image_size: Any, seed: Any) -> tuple[int, int, int]:
    """The three parameters of a synthetic dataset, checked (``cral synth``'s flags in the messages)."""
    n = check_int("n_images (--images)", n_images, 1, MAX_IMAGES, f"from 1 to {MAX_IMAGES:,}")
    size = check_int(
        "image_size (--size)", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE,
        f"from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels",
    )
    seed = check_int("seed (--seed)", seed, 0, 2**63 - 1, "from 0 upwards")
    return n, size, seed



def image_folder(position: int) -> str:
    """Return the archive folder (``images_NNN``) of the image at ``position`` (0-based).

    NIH's first archive holds 4,999 images and each later one 10,000.

    Args:
        position: the image's row in ``Data_Entry`` (0-based).

    Returns:
        The folder name, e.g. ``"images_001"``.
    """
    if position < FIRST_FOLDER_IMAGES:
        return "images_001"
    return f"images_{2 + (position - FIRST_FOLDER_IMAGES) // FOLDER_IMAGES:03d}"



def split_counts(n_images: int) -> tuple[int, int]:
    """Return ``(train_val, test)`` image counts for ``n_images`` in the official proportions.

    Args:
        n_images: total number of images.

    Returns:
        The two counts; ``test = round(n_images * 25,596 / 112,120)``.
    """
    test = int(round(n_images * OFFICIAL_TEST / OFFICIAL_TOTAL))
    return n_images - test, test


def synthetic_metadata(n_images: int, seed: int = 0) -> pd.DataFrame:
    """Draw the rows of a synthetic release: real patients, renumbered, split by patient.

    Real patients are taken in a random order (seeded by ``seed``) with all their images:
    first for the test split until it holds ``round(n * 25,596 / 112,120)`` images, then for
    train_val until ``n`` is reached; the last patient of each split may be cut to its first
    follow-ups so that the counts are exact. Patients are then numbered from 90,000,001 in a
    random order and the rows sorted by image name, as in the release.

    Args:
        n_images: number of rows (1 to 112,120).
        seed: the dataset seed.

    Returns:
        A DataFrame with the columns of :data:`cral_lib.data.release.CSV_COLUMNS` plus
        ``split`` (``"train_val"`` or ``"test"``) and ``folder`` (``images_NNN``), one row per
        image, in file order.

    Raises:
        ConfigError: ``n_images`` or ``seed`` out of range.
    """
    n, _, seed = check_params(n_images, MIN_IMAGE_SIZE, seed)
    meta = nih_metadata().sort_values(["Patient ID", "Follow-up #"], kind="stable").reset_index(drop=True)
    pids = meta["Patient ID"].to_numpy()
    starts = np.flatnonzero(np.r_[True, pids[1:] != pids[:-1]])
    counts = np.diff(np.r_[starts, len(pids)])
    rng = np.random.default_rng([seed, _SAMPLE_STREAM])
    order = rng.permutation(len(starts))
    n_train_val, n_test = split_counts(n)

    picks: list[tuple[int, int, str]] = []  # (patient position, images taken, split)
    pos = 0
    for split, budget in (("test", n_test), ("train_val", n_train_val)):
        while budget > 0:
            p = int(order[pos])
            pos += 1
            take = int(min(counts[p], budget))
            picks.append((p, take, split))
            budget -= take
    numbers = rng.permutation(len(picks)) + PATIENT_OFFSET + 1
    rows, splits, new_ids = [], [], []
    for (p, take, split), number in zip(picks, numbers):
        rows.append(np.arange(starts[p], starts[p] + take))
        splits += [split] * take
        new_ids += [int(number)] * take
    frame = meta.iloc[np.concatenate(rows)].reset_index(drop=True)
    frame["Patient ID"] = np.asarray(new_ids, dtype=np.int64)
    frame["split"] = splits
    frame["Image Index"] = [
        f"{pid:08d}_{fu:03d}.png" for pid, fu in zip(frame["Patient ID"], frame["Follow-up #"])
    ]
    frame = frame.sort_values("Image Index", kind="stable").reset_index(drop=True)
    frame["folder"] = [image_folder(i) for i in range(len(frame))]
    return frame


def data_entry_text(frame: pd.DataFrame) -> str:
    """``Data_Entry_2017_v2020.csv`` of these rows, with NIH's header."""
    body = frame.loc[:, list(CSV_COLUMNS)].to_csv(index=False, header=False, lineterminator="\n")
    return DATA_ENTRY_HEADER + "\n" + body


def bbox_text(frame: pd.DataFrame, boxes: list[tuple]) -> str:
    """``BBox_List_2017.csv`` of the phantoms' boxes ``(row, class, x, y, w, h)``, with NIH's header and spellings."""
    to_nih = {v: k for k, v in BOX_LABEL_ALIASES.items()}
    names = frame["Image Index"].tolist()
    lines = [BBOX_HEADER]
    for index, label, x, y, w, h in sorted(boxes, key=lambda b: (b[0], _class_rank(b[1]))):
        values = ",".join(repr(float(v)) for v in (x, y, w, h))
        lines.append(f"{names[index]},{to_nih.get(label, label)},{values},,,")
    return "\n".join(lines) + "\n"


def _class_rank(label: str) -> int:
    return CLASSES.index(label)


__all__ = [
    "FIRST_FOLDER_IMAGES",
    "FOLDER_IMAGES",
    "MAX_IMAGES",
    "MAX_IMAGE_SIZE",
    "MIN_IMAGE_SIZE",
    "OFFICIAL_TEST",
    "OFFICIAL_TOTAL",
    "OFFICIAL_TRAIN_VAL",
    "PATIENT_OFFSET",
    "bbox_text",
    "check_params",
    "data_entry_text",
    "image_folder",
    "split_counts",
    "synthetic_metadata",
]
