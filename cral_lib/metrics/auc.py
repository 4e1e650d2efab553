"""Per-class ROC AUC (:func:`auc_table`), its rank form for many weightings at once (:func:`rank_auc`), ROC data.

Also the checks every metric applies to its inputs: ``(N, C)`` 0/1 labels and real scores
(numpy, pandas or torch on any device).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from .. import CLASSES
from ..errors import ConfigError, DataError
from .paper import MEAN


def as_array(x: Any, name: str) -> np.ndarray:
    """numpy view of a numpy/pandas/torch/list input (torch tensors are moved to the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu()
        if str(getattr(x, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
            x = x.float()
        x = x.numpy()
    elif isinstance(x, (pd.DataFrame, pd.Series)):
        x = x.to_numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise DataError(f"{name} could not be read as an array ({exc}); pass an (N, C) numpy array.") from exc
    if arr.dtype == object:
        try:
            arr = arr.astype(float)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{name} holds non-numeric values; pass an (N, C) array of numbers.") from exc
    return arr


def check_classes(classes: Sequence[str] | None, n: int) -> list[str]:
    """One distinct name per column (the 14 findings by default for 14 columns)."""
    if classes is None:
        classes = CLASSES if n == len(CLASSES) else [f"class_{i}" for i in range(n)]
    classes = [str(c) for c in classes]
    if len(classes) != n:
        raise ConfigError(
            f"classes has {len(classes)} names but the arrays have {n} columns; pass one name per column "
            "(classes=cral_lib.CLASSES for the 14 ChestX-ray14 findings)."
        )
    if len(set(classes)) != len(classes) or MEAN in classes:
        raise ConfigError(f"classes must be distinct names other than {MEAN!r}; got {classes}.")
    return classes


def check_inputs(
    y_true: Any, y_score: Any, classes: Sequence[str] | None, score_name: str = "y_score"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Validate labels and scores; return (y bool (N, C), scores float64 (N, C), class names)."""
    y = as_array(y_true, "y_true")
    s = as_array(y_score, score_name)
    if y.ndim == 1:
        y = y[:, None]
    if s.ndim == 1:
        s = s[:, None]
    if y.ndim != 2 or s.ndim != 2:
        raise DataError(
            f"y_true has shape {y.shape} and {score_name} {s.shape}; both must be (N images, C classes)."
        )
    if y.shape != s.shape:
        raise DataError(
            f"y_true has shape {y.shape} but {score_name} has shape {s.shape}; pass labels and scores of "
            "the same images and classes, row by row."
        )
    if y.shape[0] == 0:
        raise DataError("y_true has no rows; evaluate at least one image.")
    if y.dtype == bool:
        yb = y
    else:
        if not np.issubdtype(y.dtype, np.number):
            raise DataError(f"y_true has dtype {y.dtype}; pass 0/1 labels.")
        yf = y.astype(float)
        bad = ~np.isin(yf, (0.0, 1.0))
        if bad.any():
            values = np.unique(yf[bad])[:5]
            raise DataError(
                f"y_true must hold only 0 and 1; found {values.tolist()} ({int(bad.sum())} entries). "
                "Map uncertain or missing labels (-1, NaN) to 0 or 1 before computing the AUC."
            )
        yb = yf == 1.0
    if not np.issubdtype(s.dtype, np.number) and s.dtype != bool:
        raise DataError(f"{score_name} has dtype {s.dtype}; pass real-valued scores.")
    sf = s.astype(np.float64)
    finite = np.isfinite(sf)
    if not finite.all():
        rows, cols = np.nonzero(~finite)
        raise DataError(
            f"{score_name} holds {int((~finite).sum())} NaN/inf values (first at row {int(rows[0])}, "
            f"column {int(cols[0])}); the model diverged or the predictions are incomplete: fix them first."
        )
    return yb, sf, check_classes(classes, y.shape[1])


def check_boot(n_boot: int, ci: float) -> None:
    """A positive number of resamples and a confidence level in (0, 1)."""
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ConfigError(f"n_boot={n_boot!r}: use a positive integer (1000 is usual).")
    if not (0.0 < float(ci) < 1.0):
        raise ConfigError(f"ci={ci!r}: give the confidence level as a fraction in (0, 1), e.g. 0.95.")


def auc_table(
    y_true: Any,
    y_score: Any,
    classes: Sequence[str] | None = CLASSES,
    *,
    strict: bool = False,
) -> pd.DataFrame:
    """Per-class ROC AUC, positives and negatives, and the mean over the classes.

    The AUC of each class is :func:`sklearn.metrics.roc_auc_score` of its column. A class with
    no positive or no negative image has no ROC curve: it gets ``auc = NaN``,
    ``defined = False`` and a note, and it is left out of the mean, which says so.

    Args:
        y_true: ``(N, C)`` 0/1 labels (numpy, pandas or torch).
        y_score: ``(N, C)`` scores: probabilities or logits.
        classes: one name per column; default :data:`cral_lib.CLASSES`.
        strict: when True, the mean is NaN as soon as one class is undefined (so a partial mean
            cannot be mistaken for the paper's 14-class mean).

    Returns:
        A DataFrame indexed by the class names plus a last row ``"Mean"``, with columns
        ``auc`` (float), ``n_pos``, ``n_neg`` (nullable ints; empty on the mean row),
        ``defined`` (bool), ``n_classes`` (1/0 on a class row; on the mean row, the number of
        classes averaged) and ``note`` (why a class is undefined; what the mean covers).
        ``attrs`` holds ``n_images``, ``n_classes_defined`` and ``strict``.

    Raises:
        DataError: labels not 0/1, shapes that differ, NaN or infinite scores.
        ConfigError: a class list of the wrong length.
    """
    y, s, names = check_inputs(y_true, y_score, classes)
    n_pos = y.sum(axis=0).astype(int)
    n_neg = y.shape[0] - n_pos
    aucs = np.full(len(names), np.nan)
    notes = [""] * len(names)
    for c in range(len(names)):
        if n_pos[c] == 0:
            notes[c] = "undefined: no positive example"
        elif n_neg[c] == 0:
            notes[c] = "undefined: no negative example"
        else:
            aucs[c] = roc_auc_score(y[:, c], s[:, c])
    defined = ~np.isnan(aucs)
    k = int(defined.sum())
    undefined = [n for n, d in zip(names, defined) if not d]
    if k == 0 or (strict and k < len(names)):
        mean = math.nan
    else:
        mean = float(aucs[defined].mean())
    if k == len(names):
        mean_note = f"mean of all {k} classes"
    elif k == 0:
        mean_note = "undefined: no class has both positive and negative examples"
    elif strict:
        mean_note = f"NaN (strict): {len(undefined)} of {len(names)} classes undefined ({', '.join(undefined)})"
    else:
        mean_note = f"mean of {k} of {len(names)} classes (undefined: {', '.join(undefined)})"
    table = pd.DataFrame(
        {
            "auc": np.append(aucs, mean),
            "n_pos": pd.array([*n_pos.tolist(), None], dtype="Int64"),
            "n_neg": pd.array([*n_neg.tolist(), None], dtype="Int64"),
            "defined": np.append(defined, not math.isnan(mean)),
            "n_classes": np.append(defined.astype(int), k if not math.isnan(mean) else 0),
            "note": [*notes, mean_note],
        },
        index=pd.Index([*names, MEAN], name="class"),
    )
    table.attrs.update({"n_images": int(y.shape[0]), "n_classes_defined": k, "strict": bool(strict)})
    return table


class Layout:
    """How one score column orders the images: what the bootstrap reuses on every resample.

    Attributes:
        order: indices that sort the images by score (ascending).
        pos_at: positions, in that sorted order, of the positive images.
        last: for each positive, the last position of its group of tied scores (itself when
            its score is unique).
        before: for each positive, the position just before its group (-1 at the start), or
            None when no two scores are equal.
    """

    __slots__ = ("order", "pos_at", "last", "before")

    def __init__(self, scores: np.ndarray, positive: np.ndarray) -> None:
        self.order = np.argsort(scores, kind="stable")
        ss = scores[self.order]
        self.pos_at = np.flatnonzero(positive[self.order])
        n = ss.shape[0]
        tied_next = ss[1:] == ss[:-1]  # position k ties with k + 1
        if not tied_next.any():
            self.last, self.before = self.pos_at, None
            return
        new_group = np.concatenate(([True], ~tied_next))
        starts = np.flatnonzero(new_group)
        ends = np.append(starts[1:] - 1, n - 1)
        group = np.cumsum(new_group) - 1
        g = group[self.pos_at]
        self.last = ends[g]
        self.before = starts[g] - 1


def weighted_auc(w: np.ndarray, lay: Layout) -> np.ndarray:
    """AUC of one class for each row of image weights ``w`` (B, N), in the images' own order.

    Mann-Whitney with ties counted one half. Sort the images by score and keep the negative
    weights only; let ``cum`` be their running sum. A positive of weight ``w_i`` whose group of
    tied scores spans sorted positions ``s..e`` beats ``cum[s-1]`` negatives and ties with
    ``cum[e] - cum[s-1]``, so ``2 * AUC * P * N = sum_i w_i (cum[e] + cum[s-1])``. A bootstrap
    resample is the same images weighted by how often they were drawn, so one pass over
    ``w`` gives the AUC of every resample. Integer weights (counts) keep the work exact; the
    final sums are taken in float64. Returns NaN where a row has no positive or no negative
    weight.
    """
    # np.take returns a C-ordered copy (w[:, order] would be F-ordered, and the running sum
    # along rows of an F-ordered array is several times slower)
    ws = np.take(w, lay.order, axis=1)
    wp = ws[:, lay.pos_at]  # weights of the positives
    ws[:, lay.pos_at] = 0  # now the negative weights only
    np.cumsum(ws, axis=1, out=ws)
    if lay.before is None:
        beaten2 = 2 * ws[:, lay.last]
    else:
        beaten2 = ws[:, lay.last] + np.where(lay.before >= 0, ws[:, np.maximum(lay.before, 0)], 0)
    num2 = np.einsum("bp,bp->b", wp.astype(np.float64, copy=False), beaten2.astype(np.float64, copy=False))
    p_total = wp.sum(axis=1, dtype=np.float64)
    n_total = ws[:, -1].astype(np.float64)
    denom = 2.0 * p_total * n_total
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = num2 / denom
    auc[denom == 0] = np.nan
    return auc


def rank_auc(y_true: Any, y_score: Any, weights: Any = None) -> np.ndarray:
    """ROC AUC of every column by ranks (Mann-Whitney U), optionally for many weightings at once.

    Equal to :func:`sklearn.metrics.roc_auc_score` (ties count one half), but vectorised: with
    ``weights`` of shape ``(B, N)``, where row b gives how many times each image appears in
    resample b, it returns the AUC of all B resamples of all C classes in one pass. This is
    the engine of :func:`bootstrap_auc` and :func:`paired_bootstrap`.

    Args:
        y_true: ``(N, C)`` or ``(N,)`` 0/1 labels.
        y_score: scores of the same shape.
        weights: None (every image once), ``(N,)`` or ``(B, N)`` non-negative whole-number
            weights (other non-negative weights work too, up to float rounding).

    Returns:
        ``(C,)`` AUCs, or ``(B, C)`` with 2-D weights; NaN where a class has no positive or no
        negative (weighted) image.
    """
    y, s, _ = check_inputs(y_true, y_score, None)
    n = y.shape[0]
    if weights is None:
        w = np.ones((1, n))
    else:
        w = np.asarray(as_array(weights, "weights"), dtype=np.float64)
        if w.ndim == 1:
            w = w[None, :]
        if w.ndim != 2 or w.shape[1] != n:
            raise DataError(f"weights has shape {w.shape}; give (N,) or (B, N) with N = {n} images.")
        if (w < 0).any() or not np.isfinite(w).all():
            raise DataError("weights must be finite and non-negative (counts of each image in a resample).")
    out = np.empty((w.shape[0], y.shape[1]))
    for c in range(y.shape[1]):
        out[:, c] = weighted_auc(w, Layout(s[:, c], y[:, c]))
    if weights is None or np.ndim(weights) == 1:
        out = out[0]
    return out


def roc_curves(
    y_true: Any, y_score: Any, classes: Sequence[str] | None = CLASSES, *, drop_intermediate: bool = True
) -> dict[str, pd.DataFrame]:
    """ROC curve of every class (:func:`sklearn.metrics.roc_curve`), the data of Fig. 4.

    Args:
        y_true: ``(N, C)`` 0/1 labels.
        y_score: ``(N, C)`` scores.
        classes: one name per column.
        drop_intermediate: drop the thresholds that do not change the curve's shape.

    Returns:
        A dict class name -> DataFrame with columns ``fpr``, ``tpr``, ``threshold`` (the first
        threshold is ``inf``: nothing predicted positive). An undefined class (no positive or
        no negative) maps to an empty DataFrame whose ``attrs["note"]`` says why.
    """
    y, s, names = check_inputs(y_true, y_score, classes)
    curves: dict[str, pd.DataFrame] = {}
    for c, name in enumerate(names):
        n_pos = int(y[:, c].sum())
        if n_pos == 0 or n_pos == y.shape[0]:
            frame = pd.DataFrame({"fpr": [], "tpr": [], "threshold": []}, dtype=float)
            frame.attrs["note"] = "undefined: no positive example" if n_pos == 0 else "undefined: no negative example"
        else:
            fpr, tpr, thr = roc_curve(y[:, c], s[:, c], drop_intermediate=drop_intermediate)
            frame = pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr})
        curves[name] = frame
    return curves


__all__ = ["Layout", "as_array", "auc_table", "check_boot", "check_classes", "check_inputs", "rank_auc", "roc_curves",
           "weighted_auc"]
