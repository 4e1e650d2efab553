"""Checkpoints: atomic writes, safe loading, and the checks that refuse a foreign checkpoint.

A checkpoint is a dict of ``state_dict``s and plain data (no pickled objects), so that it
loads with ``torch.load(..., weights_only=True)`` and survives library upgrades:

``format``, ``cral_lib``, ``model`` (state_dict, never with a DDP ``module.`` prefix),
``optimizer``, ``scheduler``, ``scaler`` (or None), ``rng`` (torch CPU/CUDA generator states),
``epoch`` (completed epochs), ``batch`` (batches done in the current epoch, for step
checkpoints), ``step`` (optimizer steps so far), ``config`` (the :class:`TrainConfig` as a dict),
``model_config``, ``data_fingerprint``, ``best_val_auc``, ``history`` (the metrics log).

Files are written to a temporary name in the same folder, flushed to disk and renamed over
the old one (``os.replace``), so an interruption leaves either the old or the new file,
never half of one.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write_bytes, atomic_write_text
from ..errors import CheckpointError

FORMAT = 1


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Save a checkpoint dict atomically with ``torch.save``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing, unreadable, or not a cral checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt files
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}: {str(exc)[:200]}); "
            "it may be truncated or from another program: delete it to start over, or use checkpoints/best.pt"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise CheckpointError(f"{path} is not a cral_lib checkpoint (format {FORMAT})")
    return state


def strip_module_prefix(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Remove the ``module.`` / ``_orig_mod.`` prefixes DDP and torch.compile add to keys."""
    out = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "_orig_mod."):
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def check_compatible(state: dict[str, Any], config_dict: dict[str, Any], fingerprint: str,
                     ignore: frozenset[str], path: str | Path) -> None:
    """Refuse to resume from a checkpoint made with another config or another dataset.

    Args:
        state: the loaded checkpoint.
        config_dict: the current run's config as a dict.
        fingerprint: the current dataset's fingerprint (:func:`data_fingerprint`).
        ignore: config fields that may differ (where the run lives, how it logs).
        path: the checkpoint's path, for the message.

    Raises:
        CheckpointError: naming the differing fields or the dataset mismatch, and what to do.
    """
    old = state.get("config", {})
    diffs = {k: (old.get(k), v) for k, v in config_dict.items() if k not in ignore and old.get(k) != v}
    if diffs:
        detail = "; ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(diffs.items()))
        raise CheckpointError(
            f"{path} was made with another config ({detail}). Resume with the same settings, "
            "or start a new run in another --out folder."
        )
    if state.get("data_fingerprint") != fingerprint:
        raise CheckpointError(
            f"{path} was trained on another dataset or split (fingerprint {state.get('data_fingerprint')} "
            f"vs {fingerprint} now). Point --data at the dataset the run was made with, "
            "or start a new run in another --out folder."
        )


def data_fingerprint(parts: dict[str, Any]) -> str:
    """A short hash that identifies a dataset split: image names and labels of each split.

    Args:
        parts: mapping of split name -> (sequence of image names, label matrix as numpy array),
            plus any plain values (e.g. the cache size) that must match too.
    """
    h = hashlib.sha256()
    for name in sorted(parts):
        h.update(name.encode())
        value = parts[name]
        if isinstance(value, tuple) and len(value) == 2:
            names, labels = value
            h.update("\n".join(map(str, names)).encode())
            h.update(np.ascontiguousarray(labels, dtype=np.float32).tobytes())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()[:16]


def check_writable(folder: str | Path, need_bytes: int) -> None:
    """Fail early when the run folder cannot be written or the disk is too full.

    Args:
        folder: the run folder (created if missing).
        need_bytes: bytes the run needs at least (a few checkpoints).

    Raises:
        CheckpointError: naming the folder, what is free and what is needed.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise CheckpointError(
            f"the run folder {folder} is not writable ({exc.strerror or exc}); choose another --out"
        ) from exc
    free = shutil.disk_usage(folder).free
    if free < need_bytes:
        raise CheckpointError(
            f"only {free / 2**20:.0f} MiB free on the disk of {folder}; the run needs about "
            f"{need_bytes / 2**20:.0f} MiB for its checkpoints. Free some space or choose another --out"
        )


__all__ = [
    "FORMAT",
    "atomic_write_bytes",
    "atomic_write_text",
    "save_checkpoint",
    "load_checkpoint",
    "strip_module_prefix",
    "check_compatible",
    "data_fingerprint",
    "check_writable",
]
