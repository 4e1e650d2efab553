"""Predictions of a model over a loader, and the mean AUC the trainer selects checkpoints by."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import CLASSES
from ..device import autocast
from ..metrics import auc_table


def bars_disabled() -> bool:
    """True when the environment asks for no progress bars (``TQDM_DISABLE=1``, as the book build sets)."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def predict(model: torch.nn.Module, loader: Any, transform: Any, device: torch.device,
            amp_dtype: torch.dtype | None = None, progress: bool = False,
            desc: str = "predict") -> tuple[np.ndarray, np.ndarray, float]:
    """Probabilities for every row a loader yields: returns (positions, probs (n, C), mean BCE loss).

    The loader yields (uint8 images, labels, positions); ``transform`` is the test transform.
    """
    model.eval()
    pos_all, prob_all, loss_all = [], [], []
    # kept on the device until the end: reading a value back after every batch would make the
    # CPU wait for the GPU each time
    count = 0
    with torch.inference_mode():
        for x, y, pos in tqdm(loader, desc=desc, leave=False, disable=not progress or bars_disabled()):
            x = transform(x)
            with autocast(device, amp_dtype):
                logits = model(x)
            logits = logits.float()
            loss_all.append(F.binary_cross_entropy_with_logits(logits, y, reduction="sum"))
            count += y.numel()
            prob_all.append(torch.sigmoid(logits))
            pos_all.append(pos.cpu().numpy() if hasattr(pos, "cpu") else np.asarray(pos))
    positions = np.concatenate(pos_all) if pos_all else np.zeros(0, dtype=np.int64)
    probs = torch.cat(prob_all).cpu().numpy() if prob_all else np.zeros((0, 0), dtype=np.float32)
    loss_sum = float(torch.stack(loss_all).cpu().double().sum()) if loss_all else 0.0
    return positions, probs, loss_sum / max(count, 1)


def mean_auc(labels: np.ndarray, probs: np.ndarray) -> tuple[float, dict[str, float]]:
    """Mean ROC AUC over the classes where it is defined, and the per-class values."""
    classes = list(CLASSES)[: labels.shape[1]] if labels.shape[1] <= len(CLASSES) else [
        f"class_{i}" for i in range(labels.shape[1])
    ]
    table = auc_table(labels, probs, classes=classes)
    per_class = {c: float(table.loc[c, "auc"]) for c in classes}
    return float(table.loc["Mean", "auc"]), per_class


__all__ = ["bars_disabled", "mean_auc", "predict"]
