"""Training-seed noise: a result over several training seeds (:func:`seed_summary`) and the
seed-level interval of a paired difference (:func:`seed_difference`).

A bootstrap interval of a test AUC measures the test set's noise and treats the trained model as
fixed. Training is random too (initial weights, batch order, crops, the training subset), so
another seed gives another model. With one value per seed, the seeds are the sample: their
mean, their standard deviation and Student's t interval of the mean,
``mean +- t_{(1+ci)/2, n-1} * sd / sqrt(n)``. For two methods trained on the same seeds, the
difference is taken seed by seed first (the pairing removes what a seed does to both), then the
t interval is taken over those differences.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ConfigError, DataError


@dataclass(frozen=True)
class SeedSummary:
    """One result over several training seeds.

    Attributes:
        values: the value of each seed (a Series indexed by seed).
        mean: their mean.
        sd: their standard deviation (``ddof=1``; NaN with one seed).
        ci_low, ci_high: Student's t interval of the mean over the seeds (NaN with one seed).
        ci: the confidence level.
    """

    values: pd.Series
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    ci: float

    @property
    def n_seeds(self) -> int:
        """How many seeds."""
        return int(len(self.values))

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain data (for a table row or a JSON file)."""
        return {"n_seeds": self.n_seeds, "mean": self.mean, "sd": self.sd, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "ci": self.ci,
                "per_seed": {int(k): float(v) for k, v in self.values.items()}}

    def __str__(self) -> str:
        return (f"{self.mean:+.4f} [{self.ci_low:+.4f}, {self.ci_high:+.4f}] ({self.n_seeds} seeds, "
                f"SD {self.sd:.4f}, t interval)")


def _as_series(values: Mapping[Any, float] | pd.Series | Any, name: str) -> pd.Series:
    if isinstance(values, pd.Series):
        series = values.astype(float)
    elif isinstance(values, Mapping):
        series = pd.Series({k: float(v) for k, v in values.items()}, dtype=float)
    else:
        arr = np.asarray(values, dtype=float).reshape(-1)
        series = pd.Series(arr, index=range(len(arr)), dtype=float)
    if series.empty:
        raise DataError(f"{name} holds no value; give one value per training seed.")
    if not np.isfinite(series.to_numpy()).all():
        bad = [k for k, v in series.items() if not np.isfinite(v)]
        raise DataError(f"{name} has no finite value for seeds {bad}; evaluate those runs again or leave them out.")
    series.index.name = "seed"
    return series


def seed_summary(values: Mapping[Any, float] | pd.Series | Any, ci: float = 0.95) -> SeedSummary:
    """Mean, standard deviation and t interval of a result over training seeds.

    Args:
        values: one value per seed: a mapping or Series seed -> value, or a sequence (seeds 0, 1, ...).
        ci: the confidence level of the interval.

    Returns:
        A :class:`SeedSummary`; with a single seed the spread and the interval are NaN.

    Raises:
        DataError: no value, or a value that is not finite.
        ConfigError: ``ci`` outside (0, 1).
    """
    if not 0.0 < float(ci) < 1.0:
        raise ConfigError(f"ci={ci!r}: give the confidence level as a fraction in (0, 1), e.g. 0.95.")
    series = _as_series(values, "values")
    x = series.to_numpy(float)
    n = x.size
    mean = float(x.mean())
    if n < 2:
        return SeedSummary(series, mean, math.nan, math.nan, math.nan, float(ci))
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf((1.0 + float(ci)) / 2.0, n - 1)) * sd / math.sqrt(n)
    return SeedSummary(series, mean, sd, mean - half, mean + half, float(ci))


def seed_difference(reference: Mapping[Any, float] | pd.Series, other: Mapping[Any, float] | pd.Series,
                    ci: float = 0.95) -> SeedSummary:
    """The seed-level interval of ``other - reference``: the difference per seed, then a t interval.

    Args:
        reference: seed -> value of the reference method (e.g. CRAL's mean test AUC).
        other: seed -> value of the other method, trained with the same seeds.
        ci: the confidence level.

    Returns:
        :func:`seed_summary` of the per-seed differences, over the seeds both have.

    Raises:
        DataError: the two share no seed.
    """
    a, b = _as_series(reference, "reference"), _as_series(other, "other")
    common = [s for s in a.index if s in b.index]
    if not common:
        raise DataError(f"reference has seeds {list(a.index)} and other {list(b.index)}: no seed in common; "
                        "train both methods with the same seeds.")
    return seed_summary(b.loc[common] - a.loc[common], ci)


__all__ = ["SeedSummary", "seed_difference", "seed_summary"]
