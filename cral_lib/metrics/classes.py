"""Rare classes: which classes have enough test positives to enter the mean (:func:`class_table`).

An AUC compares a class's positive images with its negatives, so it rests on the positives:
with a handful of them, one image more or less moves it by a lot, and with one it says nothing
(chapter 7). A mean over the classes weighs every class equally, so a class with almost no
positives moves the mean as much as a class with thousands. The rule of this module, used by
every per-class table of the book and of ``benchmarks/report.py``: a class with fewer than
:data:`MIN_POSITIVES` positive test images is flagged and left out of the mean; the mean of all
the classes, as the paper's Table 1 takes it, is reported beside it and marked as such.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .paper import MEAN

#: The least number of positive test images a class needs to enter the mean (the book's rule).
MIN_POSITIVES = 10

#: The rows of :func:`class_table` after the classes: the mean under the rule, and the paper's mean.
MEAN_COUNTED = "Mean (counted classes)"
MEAN_ALL = "Mean (all classes, as the paper)"

#: The mark of a class under the minimum.
FLAG = "*"


def check_min_positives(min_positives: Any) -> int:
    """A whole number of positives, 1 or more."""
    if isinstance(min_positives, bool) or not isinstance(min_positives, (int, np.integer)) or min_positives < 1:
        raise ConfigError(f"min_positives={min_positives!r}: use a whole number of test positives, 1 or more "
                          f"(the book's rule is {MIN_POSITIVES}).")
    return int(min_positives)


def rule_text(min_positives: int = MIN_POSITIVES) -> str:
    """The rule in one sentence, to print beside a table."""
    m = check_min_positives(min_positives)
    return (f"{FLAG} fewer than {m} positive test images: the class's AUC rests on too few images, so it is "
            f"flagged and left out of the mean ({MEAN_COUNTED!r}); {MEAN_ALL!r} is the mean of every class "
            "with an AUC, as the paper's Table 1 takes it, for comparison only.")


def counted_classes(n_pos: Any, min_positives: int = MIN_POSITIVES) -> np.ndarray:
    """Which classes enter the mean: at least ``min_positives`` positives (a bool per class)."""
    m = check_min_positives(min_positives)
    counts = pd.to_numeric(pd.Series(np.asarray(n_pos, dtype=object)), errors="coerce").to_numpy(float)
    return np.nan_to_num(counts, nan=-1.0) >= m


def _percentile_interval(values: np.ndarray, ci: float) -> tuple[float, float]:
    valid = values[~np.isnan(values)]
    if valid.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(valid, [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0])
    return float(lo), float(hi)


def class_table(table: pd.DataFrame, min_positives: int = MIN_POSITIVES, *,
                samples: pd.DataFrame | None = None) -> pd.DataFrame:
    """A per-class AUC table with the test positives, the rare classes flagged and both means.

    Args:
        table: an :func:`~cral_lib.metrics.auc_table` or :func:`~cral_lib.metrics.bootstrap_auc`
            table (indexed by class, with a ``"Mean"`` row, columns ``auc`` and ``n_pos``; its
            ``ci_low`` and ``ci_high`` are kept when present), or any DataFrame indexed by class
            with those two columns.
        min_positives: the least number of positive test images of a counted class.
        samples: the bootstrap AUCs of :func:`~cral_lib.metrics.bootstrap_auc`
            (``return_samples=True``) on the same data; then the counted mean gets its interval
            from the same resamples (the mean of the counted classes in each resample).

    Returns:
        A DataFrame indexed by the classes, then :data:`MEAN_COUNTED` (the mean AUC of the
        counted classes) and :data:`MEAN_ALL` (the mean of every class with an AUC, the paper's
        mean, marked in its note), with columns ``auc``, ``ci_low`` and ``ci_high`` (when the
        input has them), ``n_pos`` (test positives; empty on the mean rows), ``counted`` and
        ``flag`` (:data:`FLAG` for a class under the minimum), and ``note``. ``attrs`` holds
        ``min_positives``, ``rule`` (:func:`rule_text`), ``counted`` and ``flagged`` (class names).

    Raises:
        ConfigError: the table lacks ``auc`` or ``n_pos``, or a bad ``min_positives``.
    """
    m = check_min_positives(min_positives)
    missing = [c for c in ("auc", "n_pos") if c not in table.columns]
    if missing:
        raise ConfigError(f"the table has no {' or '.join(missing)} column; pass an auc_table or bootstrap_auc "
                          "table (positives per class are needed to apply the rule)")
    per = table.drop(index=[MEAN, MEAN_COUNTED, MEAN_ALL], errors="ignore")
    auc = per["auc"].to_numpy(float)
    n_pos = pd.array(pd.to_numeric(per["n_pos"], errors="coerce"), dtype="Int64")
    counted = counted_classes(n_pos, m) & ~np.isnan(auc)
    has_ci = {"ci_low", "ci_high"} <= set(table.columns)
    names = [str(n) for n in per.index]
    defined = ~np.isnan(auc)
    k, n_def = int(counted.sum()), int(defined.sum())
    flagged = [n for n, c in zip(names, counted) if not c]
    mean_counted = float(auc[counted].mean()) if k else math.nan
    mean_all = float(auc[defined].mean()) if n_def else math.nan
    ci_counted = ci_all = (math.nan, math.nan)
    level = float(table.attrs.get("ci", 0.95))
    if samples is not None and k:
        ci_counted = _percentile_interval(samples[[n for n, c in zip(names, counted) if c]].to_numpy(float)
                                          .mean(axis=1), level)
    if has_ci and MEAN in table.index:
        ci_all = (float(table.loc[MEAN, "ci_low"]), float(table.loc[MEAN, "ci_high"]))
    notes = []
    for name, c, d, p in zip(names, counted, defined, n_pos):
        if not d:
            notes.append("no AUC on this split" + ("" if pd.isna(p) else f" ({int(p)} positives)"))
        elif not c:
            notes.append(f"fewer than {m} test positives: left out of the mean" if not pd.isna(p)
                         else "positives not known: left out of the mean")
        else:
            notes.append("")
    under = f"; left out: {', '.join(flagged)}" if flagged else ""
    note_counted = (f"mean of the {k} of {len(names)} classes with at least {m} test positives{under}" if k
                    else f"undefined: no class has {m} test positives")
    note_all = (f"the paper's mean: all {n_def} classes with an AUC" + (f" of {len(names)}" if n_def < len(names) else "")
                + (", including those under the minimum; for comparison only" if k < n_def else ""))
    out = pd.DataFrame({"auc": [*auc, mean_counted, mean_all]},
                       index=pd.Index([*names, MEAN_COUNTED, MEAN_ALL], name=table.index.name or "class"))
    if has_ci:
        out["ci_low"] = [*per["ci_low"].to_numpy(float), ci_counted[0], ci_all[0]]
        out["ci_high"] = [*per["ci_high"].to_numpy(float), ci_counted[1], ci_all[1]]
    out["n_pos"] = pd.array([*n_pos, None, None], dtype="Int64")
    out["counted"] = pd.array([*counted.tolist(), None, None], dtype="boolean")
    out["flag"] = [FLAG if not c else "" for c in counted] + ["", ""]
    out["note"] = [*notes, note_counted, note_all]
    out.attrs.update({"min_positives": m, "rule": rule_text(m), "counted": [n for n, c in zip(names, counted) if c],
                      "flagged": flagged})
    return out


__all__ = ["FLAG", "MEAN_ALL", "MEAN_COUNTED", "MIN_POSITIVES", "check_min_positives", "class_table",
           "counted_classes", "rule_text"]
