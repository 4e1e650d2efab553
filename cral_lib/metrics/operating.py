"""From probabilities to findings: one threshold per class, and what it gives on another split.

A probability is not a finding. To call a finding positive, ``cral evaluate`` chooses one
threshold per class on the **validation** split (never on the test split it reports), and the
test split then measures what that threshold does:

- :func:`choose_thresholds`: the rule. ``"youden"`` (the default) takes, for each class, the
  threshold that maximizes Youden's J = sensitivity + specificity - 1 on the validation
  images, over every probability that occurs there (a finding is called when ``p >= t``; among
  equal J the highest threshold wins). ``"sensitivity:0.9"`` takes the highest threshold whose
  validation sensitivity reaches 0.9. A class with no positive or no negative validation image
  gets no threshold (``NaN``): it is never called, and the table says why.
- :func:`operating_points`: sensitivity, specificity, PPV and the counts at given thresholds,
  with 95% Wilson score intervals (binomial proportions: no resampling needed).
- :func:`normal_false_positives`: on the images with no finding at all, how many get at least
  one finding called, and how many findings per image.

Why not 0.5: with a prior-matched model, a finding present in 1% of the images gets
probabilities around 0.01, and 0.5 would call it almost never (sensitivity near 0); the
threshold has to sit where that class's positives and negatives separate, which is a different
place for every class.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .auc import check_inputs

#: The rule ``cral evaluate`` uses unless told otherwise.
DEFAULT_RULE = "youden"

_Z95 = 1.959963984540054


def parse_rule(rule: str) -> tuple[str, float | None]:
    """``"youden"`` -> ("youden", None); ``"sensitivity:0.9"`` -> ("sensitivity", 0.9).

    Raises:
        ConfigError: any other spelling (the message lists the two forms).
    """
    text = str(rule).strip().lower()
    if text == "youden":
        return "youden", None
    name, _, value = text.partition(":")
    if name == "sensitivity":
        try:
            target = float(value)
        except ValueError:
            target = float("nan")
        if 0 < target <= 1:
            return "sensitivity", target
    raise ConfigError(f"threshold rule {rule!r} is not 'youden' or 'sensitivity:S' with 0 < S <= 1 "
                      "(e.g. 'sensitivity:0.9')")


def _one_threshold(y: np.ndarray, p: np.ndarray, kind: str, target: float | None) -> tuple[float, str]:
    """The threshold of one class, or (NaN, reason)."""
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan"), f"no {'positive' if pos == 0 else 'negative'} image in the split"
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    # candidate thresholds: each distinct probability; "p >= t" counts all images down to it
    last = np.r_[np.flatnonzero(ps[1:] != ps[:-1]), len(ps) - 1]
    tp = np.cumsum(ys)[last]
    fp = np.cumsum(~ys)[last]
    sens, spec = tp / pos, 1.0 - fp / neg
    if kind == "youden":
        j = sens + spec - 1.0
        k = int(np.argmax(j))  # the first maximum: the highest threshold among equal J
        return float(ps[last[k]]), ""
    k = int(np.argmax(sens >= target - 1e-12))  # sensitivity only grows as t falls
    return float(ps[last[k]]), ""


def choose_thresholds(y_true: Any, y_score: Any, classes: Sequence[str] | None = None,
                      rule: str = DEFAULT_RULE) -> pd.DataFrame:
    """One threshold per class from labelled images (the validation split), by ``rule``.

    Args:
        y_true: ``(N, C)`` 0/1 labels.
        y_score: ``(N, C)`` probabilities.
        classes: the class names (default: the first C of CLASSES).
        rule: ``"youden"`` or ``"sensitivity:S"`` (see the module docstring).

    Returns:
        A DataFrame indexed by class: ``threshold`` (NaN when the class cannot be called),
        ``sensitivity``, ``specificity`` (on these images, at that threshold), ``positives``,
        ``negatives``, ``note`` (why a threshold is missing).
    """
    y, p, classes = check_inputs(y_true, y_score, classes)
    kind, target = parse_rule(rule)
    rows = []
    for i, name in enumerate(classes):
        t, note = _one_threshold(y[:, i], p[:, i], kind, target)
        rows.append({"class": name, "threshold": t, "positives": int(y[:, i].sum()),
                     "negatives": int((~y[:, i]).sum()), "note": note})
    table = pd.DataFrame(rows).set_index("class")
    at = operating_points(y, p, table["threshold"].to_numpy(), classes=classes)
    table["sensitivity"] = at["sensitivity"]
    table["specificity"] = at["specificity"]
    return table[["threshold", "sensitivity", "specificity", "positives", "negatives", "note"]]


def wilson_interval(successes: Any, trials: Any) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson score interval of binomial proportions (NaN where there are no trials)."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        phat = k / n
        z2 = _Z95**2
        centre = (phat + z2 / (2 * n)) / (1 + z2 / n)
        half = _Z95 * np.sqrt(phat * (1 - phat) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # the interval holds the estimate itself (rounding can put a bound a hair past it at 0 or 1)
    lo, hi = np.minimum(centre - half, phat), np.maximum(centre + half, phat)
    empty = n <= 0
    return np.where(empty, np.nan, np.clip(lo, 0, 1)), np.where(empty, np.nan, np.clip(hi, 0, 1))


def called(y_score: Any, thresholds: Any) -> np.ndarray:
    """``(N, C)`` bool: the findings called positive (``p >= t``; never where ``t`` is NaN)."""
    p = np.asarray(y_score, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64).reshape(1, -1)
    if p.ndim != 2 or t.shape[1] != p.shape[1]:
        raise ConfigError(f"{t.shape[1]} thresholds for probabilities of shape {p.shape}")
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(t), False, p >= t)


def operating_points(y_true: Any, y_score: Any, thresholds: Any, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Sensitivity, specificity and PPV at given thresholds, with 95% Wilson intervals.

    Args:
        y_true: ``(N, C)`` 0/1 labels.
        y_score: ``(N, C)`` probabilities.
        thresholds: ``(C,)`` thresholds (NaN: the class is never called).
        classes: class names.

    Returns:
        A DataFrame indexed by class with ``threshold``, ``tp``, ``fn``, ``tn``, ``fp``,
        ``sensitivity``, ``sens_lo``, ``sens_hi``, ``specificity``, ``spec_lo``, ``spec_hi``,
        ``ppv``, ``ppv_lo``, ``ppv_hi`` (NaN where a proportion has no trials).
    """
    y, p, classes = check_inputs(y_true, y_score, classes)
    pred = called(p, thresholds)
    pos, neg = y, ~y
    tp, fn = (pred & pos).sum(0), (~pred & pos).sum(0)
    tn, fp = (~pred & neg).sum(0), (pred & neg).sum(0)
    table = pd.DataFrame({"threshold": np.asarray(thresholds, dtype=np.float64), "tp": tp, "fn": fn, "tn": tn,
                          "fp": fp}, index=pd.Index(classes, name="class"))
    for name, k, n in (("sensitivity", tp, tp + fn), ("specificity", tn, tn + fp), ("ppv", tp, tp + fp)):
        with np.errstate(invalid="ignore", divide="ignore"):
            table[name] = np.where(n > 0, k / np.maximum(n, 1), np.nan)
        lo, hi = wilson_interval(k, n)
        short = {"sensitivity": "sens", "specificity": "spec", "ppv": "ppv"}[name]
        table[f"{short}_lo"], table[f"{short}_hi"] = lo, hi
    return table


def normal_false_positives(y_true: Any, y_score: Any, thresholds: Any) -> dict[str, float]:
    """What the thresholds call on the images without any finding ("No Finding").

    Returns:
        ``{"normal_images", "flagged", "flagged_share", "flagged_lo", "flagged_hi",
        "findings_per_normal"}``: how many normal images, how many get at least one finding
        called, that share with its 95% Wilson interval, and the mean number of findings
        called per normal image.
    """
    y, p, _ = check_inputs(y_true, y_score, None)
    normal = ~y.any(axis=1)
    pred = called(p, thresholds)[normal]
    n = int(normal.sum())
    flagged = int(pred.any(axis=1).sum())
    lo, hi = wilson_interval(flagged, n)
    return {"normal_images": n, "flagged": flagged, "flagged_share": flagged / n if n else float("nan"),
            "flagged_lo": float(lo), "flagged_hi": float(hi),
            "findings_per_normal": float(pred.sum(axis=1).mean()) if n else float("nan")}


__all__ = ["DEFAULT_RULE", "called", "choose_thresholds", "normal_false_positives", "operating_points", "parse_rule",
           "wilson_interval"]
