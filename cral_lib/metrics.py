"""Evaluation: per-class ROC AUC, bootstrap confidence intervals, ROC data, the paper's tables.

The paper (Guan & Huang, Pattern Recognit. Lett. 130 (2020) 259-266, Section 4.1) measures
each of the 14 findings by the area under its ROC curve and reports the mean over the 14
classes (Table 1, Table 2). This module computes the same numbers for a run and adds what a
reader needs to judge them:

- :func:`auc_table`: per-class AUC (scikit-learn), positives, negatives and the mean. A class
  without a positive or without a negative example has no AUC; it is reported as undefined
  (``NaN``, ``defined == False``) and the mean row says over how many classes it was taken.
- :func:`bootstrap_auc`: percentile confidence intervals from resampling images with
  replacement. It uses a rank (Mann-Whitney) form of the AUC vectorised over resamples, so
  1,000 resamples of the 25,596-image test split take seconds (see :func:`rank_auc`).
- :func:`paired_bootstrap`: the difference of two models' AUCs on the *same* resampled images,
  with its interval and a two-sided bootstrap p-value.
- :func:`roc_curves`: the ROC points of each class (Fig. 4 of the paper).
- :data:`PAPER_TABLE1`, :data:`PAPER_TABLE2`: the paper's published numbers, cited as such,
  and :func:`results_table` / :func:`format_table` to lay a run beside them.

Inputs are ``(N, C)`` arrays (numpy, pandas or torch on any device): ``y_true`` holds 0/1
labels, ``y_score`` any real scores (probabilities or logits: the AUC only uses their order).
This module does not import torch or matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import CLASSES
from .errors import ConfigError, DataError

__all__ = [
    "ABBREVIATIONS",
    "PAPER_REFERENCES",
    "PAPER_TABLE1",
    "PAPER_TABLE2",
    "auc_table",
    "bootstrap_auc",
    "format_table",
    "paired_bootstrap",
    "paper_auc",
    "paper_comparison",
    "paper_row",
    "rank_auc",
    "results_table",
    "roc_curves",
    "table_to_markdown",
]

#: Column names of the paper's Table 1, one per class of :data:`cral_lib.CLASSES` in order.
#: "Pne1" is Pneumonia and "Pne2" Pneumothorax, "PT" Pleural_Thickening.
ABBREVIATIONS: dict[str, str] = dict(
    zip(
        CLASSES,
        ("Atel", "Card", "Effu", "Infi", "Mass", "Nodu", "Pne1", "Pne2", "Cons", "Edem", "Emph", "Fibr", "PT", "Hern"),
    )
)

MEAN = "Mean"

# ----------------------------------------------------------------------------- the paper's numbers

#: The works that Table 1 of the paper compares against, by the paper's reference number.
PAPER_REFERENCES: dict[str, str] = {
    "[12]": "S. Guendel et al., Learning to recognize abnormalities in chest X-rays with "
    "location-aware dense networks, arXiv:1803.04565 (2018).",
    "[20]": "Z. Li et al., Thoracic disease identification and localization with limited "
    "supervision, CVPR 2018, pp. 8290-8299.",
    "[30]": "Y. Shen, M. Gao, Dynamic routing on deep neural network for thoracic disease "
    "classification and sensitive area localization, MLMI 2018, pp. 389-397.",
    "[34]": "Y. Tang et al., Attention-guided curriculum learning for weakly supervised "
    "classification and localization of thoracic diseases on chest radiographs, MLMI 2018, pp. 249-258.",
    "[37]": "X. Wang et al., ChestX-ray8: hospital-scale chest X-ray database and benchmarks on "
    "weakly-supervised classification and localization of common thorax diseases, CVPR 2017, pp. 3462-3471.",
    "[45]": "L. Yao et al., Weakly supervised medical diagnosis and localization from multiple "
    "resolutions, arXiv:1803.07703 (2018).",
    "CRAL": "Q. Guan, Y. Huang, Multi-label chest X-ray image classification via category-wise "
    "residual attention learning, Pattern Recognit. Lett. 130 (2020) 259-266.",
}

_T1_COLUMNS = list(ABBREVIATIONS.values()) + [MEAN]
# Transcribed from Table 1 of the paper, row by row, exactly as printed (bold dropped).
# CNN: "R-50" ResNet-50, "D-121" DenseNet-121, "*" a ResNet/DenseNet combination (Yao et al.),
# "–" not stated in the cited work.
_T1_ROWS: list[tuple[str, str, str, str]] = [
    ("Wang et al.", "[37]", "R-50", "0.700 0.810 0.759 0.661 0.693 0.669 0.658 0.799 0.703 0.805 0.833 0.786 0.684 0.872 0.745"),
    ("Guendel et al.", "[12]", "D-121", "0.767 0.883 0.828 0.709 0.821 0.758 0.731 0.846 0.745 0.835 0.895 0.818 0.761 0.896 0.807"),
    ("Yao et al.", "[45]", "*", "0.733 0.856 0.806 0.673 0.718 0.777 0.684 0.805 0.711 0.806 0.842 0.743 0.724 0.775 0.761"),
    ("Li et al.", "[20]", "R-50", "0.727 0.836 0.789 0.672 0.776 0.696 0.649 0.808 0.720 0.806 0.888 0.771 0.737 0.693 0.755"),
    ("Li et al.", "[20]", "D-121", "0.728 0.848 0.782 0.645 0.747 0.702 0.632 0.802 0.727 0.823 0.757 0.763 0.735 0.653 0.739"),
    ("Shen et al.", "[30]", "–", "0.766 0.801 0.797 0.751 0.760 0.741 0.778 0.800 0.787 0.820 0.773 0.765 0.759 0.748 0.775"),
    ("Tang et al.", "[34]", "–", "0.756 0.887 0.819 0.689 0.814 0.755 0.729 0.850 0.728 0.848 0.906 0.818 0.765 0.875 0.803"),
    ("CRAL (att1)", "CRAL", "R-50", "0.779 0.879 0.824 0.694 0.831 0.766 0.726 0.858 0.758 0.850 0.909 0.832 0.778 0.906 0.814"),
    ("CRAL (att2)", "CRAL", "R-50", "0.777 0.875 0.826 0.695 0.825 0.765 0.720 0.852 0.751 0.848 0.905 0.819 0.777 0.908 0.810"),
    ("CRAL (att1)", "CRAL", "D-121", "0.781 0.883 0.831 0.697 0.830 0.764 0.725 0.866 0.758 0.853 0.911 0.826 0.780 0.918 0.816"),
    ("CRAL (att2)", "CRAL", "D-121", "0.781 0.880 0.829 0.702 0.834 0.773 0.729 0.857 0.754 0.850 0.908 0.830 0.778 0.917 0.816"),
]


def _paper_table1() -> pd.DataFrame:
    records = []
    for method, ref, cnn, values in _T1_ROWS:
        numbers = [float(v) for v in values.split()]
        assert len(numbers) == len(_T1_COLUMNS)
        records.append({"method": method, "reference": ref, "CNN": cnn, **dict(zip(_T1_COLUMNS, numbers))})
    return pd.DataFrame.from_records(records, columns=["method", "reference", "CNN", *_T1_COLUMNS])


#: Table 1 of the paper: per-class test AUC on ChestX-ray14 (official split) and the mean, one
#: row per published result, with columns ``method``, ``reference`` (the paper's reference
#: number, see :data:`PAPER_REFERENCES`; "CRAL" for the paper itself), ``CNN`` and the 14
#: abbreviated classes of :data:`ABBREVIATIONS` plus ``Mean``. Numbers as printed (3 decimals);
#: the bold face is not kept. (The paper bolds Guendel et al.'s 0.709 for Infiltration and 0.731
#: for Pneumonia although Shen et al.'s row prints 0.751 and 0.778; :func:`format_table`
#: marks the largest value of each column.)
PAPER_TABLE1: pd.DataFrame = _paper_table1()

#: Table 2 of the paper: mean test AUC of the ablations. Rows: ``CRAL`` (the full model),
#: ``w/o category`` (one attention map shared by all classes), ``w/o residual`` (H = A (.) F),
#: ``w/o attention`` (the plain backbone: the baseline, the same for att1 and att2).
PAPER_TABLE2: pd.DataFrame = pd.DataFrame(
    [
        [0.8136, 0.8102, 0.8157, 0.8157],
        [0.8114, 0.8093, 0.8135, 0.8136],
        [0.8069, 0.8052, 0.8069, 0.8073],
        [0.8034, 0.8034, 0.8056, 0.8056],
    ],
    index=pd.Index(["CRAL", "w/o category", "w/o residual", "w/o attention"], name="method"),
    columns=["R-50 att1", "R-50 att2", "D-121 att1", "D-121 att2"],
)

_BACKBONE_ABBR = {
    "resnet50": "R-50",
    "r-50": "R-50",
    "r50": "R-50",
    "densenet121": "D-121",
    "d-121": "D-121",
    "d121": "D-121",
}
_VARIANT_ROW = {
    "cral": "CRAL",
    "no_category": "w/o category",
    "no_residual": "w/o residual",
    "no_attention": "w/o attention",
}


def _backbone_abbr(backbone: str) -> str:
    key = str(backbone).lower().replace("_", "")
    if key not in _BACKBONE_ABBR:
        raise ConfigError(
            f"backbone={backbone!r}: the paper reports ResNet-50 and DenseNet-121 only; "
            "use 'resnet50' or 'densenet121'."
        )
    return _BACKBONE_ABBR[key]


def _attention_name(attention: str) -> str:
    att = str(attention).lower()
    if att not in ("att1", "att2"):
        raise ConfigError(f"attention={attention!r}: the paper reports 'att1' and 'att2'; use one of them.")
    return att


def paper_row(backbone: str = "resnet50", attention: str = "att1") -> pd.Series:
    """Return the paper's per-class AUCs of CRAL for one backbone and attention (Table 1).

    Args:
        backbone: ``"resnet50"`` or ``"densenet121"``.
        attention: ``"att1"`` or ``"att2"``.

    Returns:
        A Series indexed by the full class names of :data:`cral_lib.CLASSES` plus ``"Mean"``.
    """
    cnn, att = _backbone_abbr(backbone), _attention_name(attention)
    table = PAPER_TABLE1
    row = table[(table["reference"] == "CRAL") & (table["CNN"] == cnn) & (table["method"] == f"CRAL ({att})")]
    values = row.iloc[0][_T1_COLUMNS].astype(float).to_numpy()
    return pd.Series(values, index=[*CLASSES, MEAN], name=f"paper: CRAL ({att}) {cnn}")


def paper_auc(backbone: str = "resnet50", attention: str = "att1", variant: str = "cral") -> float:
    """Return the paper's mean AUC of one ablation setting (Table 2).

    Args:
        backbone: ``"resnet50"`` or ``"densenet121"``.
        attention: ``"att1"`` or ``"att2"`` (ignored by the paper's baseline, ``no_attention``,
            whose two columns are equal).
        variant: ``"cral"``, ``"no_category"``, ``"no_residual"`` or ``"no_attention"``
            (the names of ``cral train --variant``).

    Returns:
        The mean AUC over the 14 classes, as printed (4 decimals).
    """
    if variant not in _VARIANT_ROW:
        raise ConfigError(f"variant={variant!r}: use one of {sorted(_VARIANT_ROW)}.")
    column = f"{_backbone_abbr(backbone)} {_attention_name(attention)}"
    return float(PAPER_TABLE2.loc[_VARIANT_ROW[variant], column])


# ----------------------------------------------------------------------------- input checks


def _as_array(x: Any, name: str) -> np.ndarray:
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


def _check_classes(classes: Sequence[str] | None, n: int) -> list[str]:
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


def _check_inputs(
    y_true: Any, y_score: Any, classes: Sequence[str] | None, score_name: str = "y_score"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Validate labels and scores; return (y bool (N, C), scores float64 (N, C), class names)."""
    y = _as_array(y_true, "y_true")
    s = _as_array(y_score, score_name)
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
    return yb, sf, _check_classes(classes, y.shape[1])


def _check_boot(n_boot: int, ci: float) -> None:
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ConfigError(f"n_boot={n_boot!r}: use a positive integer (1000 is usual).")
    if not (0.0 < float(ci) < 1.0):
        raise ConfigError(f"ci={ci!r}: give the confidence level as a fraction in (0, 1), e.g. 0.95.")


# ----------------------------------------------------------------------------- AUC


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
    from sklearn.metrics import roc_auc_score

    y, s, names = _check_inputs(y_true, y_score, classes)
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


class _Layout:
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


def _weighted_auc(w: np.ndarray, lay: _Layout) -> np.ndarray:
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
    y, s, _ = _check_inputs(y_true, y_score, None)
    n = y.shape[0]
    if weights is None:
        w = np.ones((1, n))
    else:
        w = np.asarray(_as_array(weights, "weights"), dtype=np.float64)
        if w.ndim == 1:
            w = w[None, :]
        if w.ndim != 2 or w.shape[1] != n:
            raise DataError(f"weights has shape {w.shape}; give (N,) or (B, N) with N = {n} images.")
        if (w < 0).any() or not np.isfinite(w).all():
            raise DataError("weights must be finite and non-negative (counts of each image in a resample).")
    out = np.empty((w.shape[0], y.shape[1]))
    for c in range(y.shape[1]):
        out[:, c] = _weighted_auc(w, _Layout(s[:, c], y[:, c]))
    if weights is None or np.ndim(weights) == 1:
        out = out[0]
    return out


def _bootstrap_aucs(
    y: np.ndarray, score_list: list[np.ndarray], n_boot: int, seed: int | np.random.Generator | None, chunk: int
) -> np.ndarray:
    """AUC of every class on ``n_boot`` resamples of the images, for each score matrix.

    All score matrices are evaluated on the same resamples (the pairing of
    :func:`paired_bootstrap`). The resamples are drawn chunk by chunk from one generator, so
    the result does not depend on ``chunk``. Returns ``(len(score_list), n_boot, C)``.
    """
    rng = np.random.default_rng(seed)
    n, n_cls = y.shape
    layouts = [[_Layout(s[:, c], y[:, c]) for c in range(n_cls)] for s in score_list]
    out = np.empty((len(score_list), n_boot, n_cls))
    offsets = None
    # Integer counts: exact, and numpy's integer running sums are several times faster than
    # floating-point ones. int32 holds every partial sum (at most 2 N) below 2**31.
    work_dtype = np.int32 if 2 * n < 2**31 else np.int64
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        idx = rng.integers(0, n, size=(b, n))
        # counts[r, i] = how many times image i was drawn in resample r
        if offsets is None or offsets.shape[0] != b:
            offsets = (np.arange(b) * n)[:, None]
        idx += offsets
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(work_dtype)
        for k, lays in enumerate(layouts):
            for c, lay in enumerate(lays):
                out[k, done : done + b, c] = _weighted_auc(counts, lay)
        done += b
    return out


def _mean_over(boot: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Mean AUC of each resample over the classes ``use``; NaN when one of them is undefined."""
    sel = boot[..., use]
    if sel.shape[-1] == 0:
        return np.full(boot.shape[:-1], np.nan)
    return sel.mean(axis=-1)  # NaN propagates: such a resample is skipped for the mean


def _percentiles(values: np.ndarray, ci: float) -> tuple[float, float, int]:
    valid = values[~np.isnan(values)]
    if valid.size == 0:
        return math.nan, math.nan, 0
    lo, hi = np.quantile(valid, [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0])
    return float(lo), float(hi), int(valid.size)


def _chunk_size(n: int) -> int:
    # Resamples are processed in chunks of about a million (resample, image) cells: the work
    # arrays then stay in cache-friendly sizes (measured fastest on a 2-core machine).
    return int(max(1, min(1000, 1_000_000 // max(1, n))))


def bootstrap_auc(
    y_true: Any,
    y_score: Any,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int | np.random.Generator | None = 0,
    classes: Sequence[str] | None = CLASSES,
    *,
    return_samples: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Per-class and mean AUC with percentile bootstrap confidence intervals.

    Each resample draws N images with replacement (``np.random.default_rng(seed)``) and the
    AUC of every class is recomputed on it with the rank form of :func:`rank_auc`, vectorised
    over resamples: 1,000 resamples x 14 classes x 25,596 test images (the official test
    split) took 1.2-2 s on a 2-core CPU (4-5 s while other jobs loaded it), where a loop of
    :func:`sklearn.metrics.roc_auc_score` takes minutes. A resample in which a class has no
    positive (or no negative) image has no AUC for that class: it is skipped for that class
    and for the mean, and the number of skipped resamples is reported. The mean of a
    resample is taken over the classes that are defined on the full data (the same classes
    as the point estimate).

    Args:
        y_true: ``(N, C)`` 0/1 labels.
        y_score: ``(N, C)`` scores.
        n_boot: number of resamples.
        ci: confidence level of the percentile interval (0.95: the 2.5th and 97.5th percentiles).
        seed: seed (or generator) of the resampling; the same seed gives the same resamples.
        classes: one name per column.
        return_samples: also return the bootstrap AUCs themselves (to plot their spread).

    Returns:
        A DataFrame indexed by class plus ``"Mean"``, with columns ``auc`` (on all images, as
        :func:`auc_table`), ``ci_low``, ``ci_high``, ``se`` (standard deviation of the
        bootstrap AUCs), ``n_boot_valid``, ``n_boot_skipped``, ``n_pos``, ``n_neg``, ``defined``.
        ``attrs`` holds ``n_boot``, ``ci``, ``seed``, ``method = "percentile"``, ``n_images``.
        With ``return_samples``, a tuple ``(table, samples)`` where ``samples`` is an
        ``(n_boot, C + 1)`` DataFrame of the AUC of each resample (NaN where skipped).
    """
    _check_boot(n_boot, ci)
    y, s, names = _check_inputs(y_true, y_score, classes)
    point = auc_table(y, s, names)
    boot = _bootstrap_aucs(y, [s], int(n_boot), seed, _chunk_size(y.shape[0]))[0]
    defined = point["defined"].to_numpy()[:-1]
    boot_mean = _mean_over(boot, defined)
    rows = []
    for c, name in enumerate(names):
        lo, hi, nv = _percentiles(boot[:, c], ci) if defined[c] else (math.nan, math.nan, 0)
        rows.append((name, boot[:, c], lo, hi, nv))
    lo, hi, nv = _percentiles(boot_mean, ci)
    rows.append((MEAN, boot_mean, lo, hi, nv))
    out = pd.DataFrame(
        {
            "auc": point["auc"].to_numpy(),
            "ci_low": [r[2] for r in rows],
            "ci_high": [r[3] for r in rows],
            "se": [float(np.nanstd(r[1], ddof=1)) if r[4] > 1 else math.nan for r in rows],
            "n_boot_valid": [r[4] for r in rows],
            "n_boot_skipped": [int(n_boot) - r[4] for r in rows],
            "n_pos": point["n_pos"],
            "n_neg": point["n_neg"],
            "defined": point["defined"].to_numpy(),
        },
        index=point.index,
    )
    out.attrs.update(
        {
            "n_boot": int(n_boot),
            "ci": float(ci),
            "seed": seed if isinstance(seed, (int, np.integer, type(None))) else "generator",
            "method": "percentile",
            "n_images": int(y.shape[0]),
        }
    )
    if return_samples:
        samples = pd.DataFrame(np.column_stack([boot, boot_mean]), columns=out.index)
        samples.index.name = "resample"
        return out, samples
    return out


def paired_bootstrap(
    y_true: Any,
    score_a: Any,
    score_b: Any,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int | np.random.Generator | None = 0,
    classes: Sequence[str] | None = CLASSES,
) -> pd.DataFrame:
    """Difference of AUC between two models (b - a), per class and for the mean, with CIs.

    Both models are scored on the *same* resampled images, so the spread of the difference
    reflects only how the two models disagree, not how hard a resample happens to be. This
    is what tells whether a gap such as CRAL vs. the baseline (0.8136 vs. 0.8034 in the
    paper's Table 2) is larger than the noise of a 25,596-image test set.

    The two-sided p-value tests "no difference" by where 0 falls in the bootstrap
    distribution: ``p = min(1, 2 min((1 + #{d* <= 0}) / (B + 1), (1 + #{d* >= 0}) / (B + 1)))``
    over the B valid resamples. It is below ``1 - ci`` about when the percentile interval
    excludes 0; the smallest value it can take is ``2 / (B + 1)``.

    Args:
        y_true: ``(N, C)`` 0/1 labels.
        score_a: ``(N, C)`` scores of model a (the reference, e.g. the baseline).
        score_b: ``(N, C)`` scores of model b on the same images.
        n_boot: number of resamples.
        ci: confidence level of the percentile interval of the difference.
        seed: seed (or generator) of the resampling.
        classes: one name per column.

    Returns:
        A DataFrame indexed by class plus ``"Mean"``, with columns ``auc_a``, ``auc_b``,
        ``diff`` (b - a on all images), ``ci_low``, ``ci_high``, ``p_value``,
        ``n_boot_valid``, ``n_boot_skipped``.
    """
    _check_boot(n_boot, ci)
    y, sa, names = _check_inputs(y_true, score_a, classes, "score_a")
    _, sb, _ = _check_inputs(y, score_b, names, "score_b")
    ta, tb = auc_table(y, sa, names), auc_table(y, sb, names)
    boot = _bootstrap_aucs(y, [sa, sb], int(n_boot), seed, _chunk_size(y.shape[0]))
    defined = ta["defined"].to_numpy()[:-1]
    d = boot[1] - boot[0]  # (B, C)
    d_mean = _mean_over(boot[1], defined) - _mean_over(boot[0], defined)
    columns: dict[str, list] = {k: [] for k in ("ci_low", "ci_high", "p_value", "n_boot_valid")}
    for c in range(len(names) + 1):
        values = d_mean if c == len(names) else (d[:, c] if defined[c] else np.full(int(n_boot), np.nan))
        lo, hi, nv = _percentiles(values, ci)
        valid = values[~np.isnan(values)]
        if nv:
            below = (1 + np.count_nonzero(valid <= 0)) / (nv + 1)
            above = (1 + np.count_nonzero(valid >= 0)) / (nv + 1)
            p = min(1.0, 2.0 * min(below, above))
        else:
            p = math.nan
        for key, v in zip(columns, (lo, hi, p, nv)):
            columns[key].append(v)
    out = pd.DataFrame(
        {
            "auc_a": ta["auc"].to_numpy(),
            "auc_b": tb["auc"].to_numpy(),
            "diff": tb["auc"].to_numpy() - ta["auc"].to_numpy(),
            **columns,
            "n_boot_skipped": [int(n_boot) - v for v in columns["n_boot_valid"]],
        },
        index=ta.index,
    )
    out.attrs.update(
        {"n_boot": int(n_boot), "ci": float(ci), "method": "paired percentile", "n_images": int(y.shape[0])}
    )
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
    from sklearn.metrics import roc_curve

    y, s, names = _check_inputs(y_true, y_score, classes)
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


# ----------------------------------------------------------------------------- tables for the book


def _to_abbr(name: str) -> str:
    """Map a class name, its abbreviation or a spelling variant to the Table 1 column."""
    key = str(name)
    if key in _T1_COLUMNS:
        return key
    if key in ABBREVIATIONS:
        return ABBREVIATIONS[key]
    norm = key.lower().replace(" ", "_")
    for full, abbr in ABBREVIATIONS.items():
        if norm == full.lower():
            return abbr
    if norm in ("infiltrate", "mean_auc", "average"):
        return "Infi" if norm == "infiltrate" else MEAN
    raise ConfigError(
        f"class {name!r} is not one of the 14 ChestX-ray14 findings ({', '.join(CLASSES)}) "
        f"nor their abbreviations ({', '.join(_T1_COLUMNS)})."
    )


def _run_series(name: str, run: Any) -> tuple[pd.Series, str]:
    """A run's AUCs as a Series over the Table 1 columns, and a note on its mean."""
    if isinstance(run, pd.DataFrame):
        if "auc" not in run.columns:
            raise ConfigError(f"run {name!r}: a DataFrame must have an 'auc' column (as auc_table returns).")
        series = run["auc"]
    elif isinstance(run, Mapping):
        series = pd.Series(dict(run), dtype=float)
    elif isinstance(run, pd.Series):
        series = run
    else:
        raise ConfigError(
            f"run {name!r} is a {type(run).__name__}; pass a Series or dict class -> AUC, or an auc_table DataFrame."
        )
    values = {}
    for key, v in series.items():
        values[_to_abbr(key)] = float(v)
    row = pd.Series({col: values.get(col, math.nan) for col in _T1_COLUMNS}, dtype=float)
    classes_only = row.iloc[:-1]
    n_def = int(classes_only.notna().sum())
    note = ""
    if MEAN not in values or math.isnan(values[MEAN]):
        if n_def:
            row[MEAN] = float(classes_only.mean())
    if isinstance(run, pd.DataFrame) and MEAN in run.index and "note" in run.columns and n_def < len(classes_only):
        note = str(run.loc[MEAN, "note"])
    elif n_def < len(classes_only):
        note = f"mean of {n_def} of {len(classes_only)} classes"
    return row, note


def results_table(
    runs: Mapping[str, Any] | None = None,
    include_paper: bool | str = True,
    *,
    cnn: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Lay runs beside the paper's Table 1: rows are methods, columns the 14 classes and the mean.

    Args:
        runs: name -> the run's AUCs: an :func:`auc_table` / :func:`bootstrap_auc` DataFrame
            (its ``auc`` column is used), or a Series/dict indexed by class names or Table 1
            abbreviations, optionally with ``"Mean"`` (computed over the classes present when
            missing).
        include_paper: True for every row of Table 1, ``"cral"`` for the paper's four CRAL
            rows only, False for none.
        cnn: optional name -> backbone label (``"R-50"``) for the ``CNN`` column of the runs.

    Returns:
        A DataFrame with a two-level index (``source``: ``"paper"`` or ``"this run"``;
        ``method``: e.g. ``"Wang et al. [37] (R-50)"`` or the run's name) and columns ``CNN``,
        Atel ... Hern, ``Mean`` and ``note`` (what a run's mean covers, when not all 14 classes).
        The paper's numbers are quoted from Guan & Huang (2020), Table 1.
    """
    rows, index = [], []
    if include_paper:
        table = PAPER_TABLE1
        if include_paper == "cral":
            table = table[table["reference"] == "CRAL"]
        elif include_paper is not True:
            raise ConfigError(f"include_paper={include_paper!r}: use True, False or 'cral'.")
        for _, r in table.iterrows():
            ref = "" if r["reference"] == "CRAL" else f" {r['reference']}"
            index.append(("paper", f"{r['method']}{ref} ({r['CNN']})"))
            rows.append({"CNN": r["CNN"], **{c: r[c] for c in _T1_COLUMNS}, "note": ""})
    for name, run in (runs or {}).items():
        series, note = _run_series(str(name), run)
        index.append(("this run", str(name)))
        rows.append({"CNN": (cnn or {}).get(name, ""), **series.to_dict(), "note": note})
    out = pd.DataFrame(rows, columns=["CNN", *_T1_COLUMNS, "note"])
    out.index = pd.MultiIndex.from_tuples(index, names=["source", "method"]) if index else pd.MultiIndex.from_tuples(
        [], names=["source", "method"]
    )
    return out


def paper_comparison(run: Any, backbone: str = "resnet50", attention: str = "att1") -> pd.DataFrame:
    """One run's AUCs next to the paper's CRAL row of the same backbone and attention.

    Args:
        run: an :func:`auc_table` DataFrame, or a Series/dict class -> AUC.
        backbone: ``"resnet50"`` or ``"densenet121"`` (which paper row to compare with).
        attention: ``"att1"`` or ``"att2"``.

    Returns:
        A DataFrame indexed by the class names plus ``"Mean"`` with columns ``this run``,
        ``paper`` and ``difference`` (this run - paper).
    """
    series, _ = _run_series("run", run)
    paper = paper_row(backbone, attention)
    mine = pd.Series(series.to_numpy(), index=paper.index)
    return pd.DataFrame({"this run": mine, "paper": paper, "difference": mine - paper})


def _numeric_columns(df: pd.DataFrame) -> list:
    return [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]


def format_table(
    df: pd.DataFrame,
    decimals: int = 3,
    *,
    highlight: str | None = "max",
    columns: Sequence | None = None,
    style: str = "styler",
) -> Any:
    """Format an AUC table for display: 3 decimals and the best value of each column in bold.

    Args:
        df: any table of this module (:func:`results_table`, :func:`auc_table`, ...).
        decimals: decimals of the float columns.
        highlight: ``"max"`` to bold the largest value of each float column (as the paper's
            Table 1 does), ``"min"``, or None.
        columns: which columns to highlight (default: every float column except counts).
        style: ``"styler"`` for a :class:`pandas.io.formats.style.Styler` (notebooks, HTML) or
            ``"markdown"`` for a GitHub-flavoured markdown string (see :func:`table_to_markdown`).

    Returns:
        A Styler or a markdown string.
    """
    if style == "markdown":
        return table_to_markdown(df, decimals, highlight=highlight, columns=columns)
    if style != "styler":
        raise ConfigError(f"style={style!r}: use 'styler' or 'markdown'.")
    floats = _numeric_columns(df)
    cols = list(columns) if columns is not None else [c for c in floats if c not in ("se",)]
    styler = df.style.format({c: f"{{:.{decimals}f}}" for c in floats}, na_rep="–")
    if highlight in ("max", "min"):
        fn = styler.highlight_max if highlight == "max" else styler.highlight_min
        styler = fn(subset=cols, props="font-weight: bold;", axis=0)
    elif highlight is not None:
        raise ConfigError(f"highlight={highlight!r}: use 'max', 'min' or None.")
    return styler


def table_to_markdown(
    df: pd.DataFrame, decimals: int = 3, *, highlight: str | None = "max", columns: Sequence | None = None
) -> str:
    """A GitHub-flavoured markdown table (no extra dependency), best values in bold.

    Args:
        df: the table; a MultiIndex is written as one column per level.
        decimals: decimals of the float columns; NaN is written as an en dash.
        highlight: ``"max"``, ``"min"`` or None (see :func:`format_table`).
        columns: the columns to highlight (default: every float column).

    Returns:
        The markdown text, one line per row.
    """
    floats = _numeric_columns(df)
    cols = set(columns) if columns is not None else set(floats)
    best: dict = {}
    if highlight in ("max", "min"):
        for c in cols & set(floats):
            v = df[c].max() if highlight == "max" else df[c].min()
            best[c] = None if pd.isna(v) else round(float(v), decimals)
    elif highlight is not None:
        raise ConfigError(f"highlight={highlight!r}: use 'max', 'min' or None.")
    names = [str(n) if n is not None else "" for n in df.index.names]
    header = [*names, *[str(c) for c in df.columns]]
    rule = ["---"] * len(names) + [":---:" if c in floats else "---" for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for idx, row in df.iterrows():
        keys = list(idx) if isinstance(idx, tuple) else [idx]
        cells = [str(k) for k in keys]
        for c in df.columns:
            v = row[c]
            if c in floats:
                if pd.isna(v):
                    text = "–"
                else:
                    text = f"{float(v):.{decimals}f}"
                    if c in best and best[c] is not None and round(float(v), decimals) == best[c]:
                        text = f"**{text}**"
            else:
                text = "" if (v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA) else str(v)
            cells.append(text.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
