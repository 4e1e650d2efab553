"""One configuration trained over several seeds (:func:`train_seeds`), and two methods compared
seed by seed (:func:`compare_seeds`).

The test-set bootstrap of :func:`~cral_lib.train.evaluate_run` treats a trained model as fixed;
a second seed trains another model (other initial weights, batch order, crops and training
subset). :func:`train_seeds` trains the same config once per seed, each in its own run folder
(:func:`~cral_lib.train.run_name` hashes the seed, so the folder of each seed is the one a chapter
or ``cral train`` with that seed uses), reuses the runs that are finished, and evaluates each.
:func:`compare_seeds` sets two methods trained on the same seeds side by side: for each seed, the
paired bootstrap of the test set (how sure *this pair of models* differs), and over the seeds
the t interval of the per-seed differences (how sure *the methods* differ, as far as a few seeds
tell), from :func:`cral_lib.metrics.seed_difference`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError
from ..metrics import MIN_POSITIVES, SeedSummary, class_table, paired_bootstrap, seed_difference, seed_summary
from ..metrics.operating import DEFAULT_RULE
from .config import TrainConfig, run_name
from .evaluate import EvalResult, evaluate_run
from .loop import RunResult, train


def check_seeds(seeds: Any) -> list[int]:
    """Distinct whole numbers, 0 or more, at least one."""
    try:
        values = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise ConfigError(f"seeds={seeds!r}: give a list of whole numbers, e.g. [0, 1, 2]") from None
    if not values or len(set(values)) != len(values) or min(values) < 0 or any(
            isinstance(s, bool) or float(s) != int(s) for s in seeds):
        raise ConfigError(f"seeds={list(seeds)!r}: give distinct whole numbers 0 or more, e.g. [0, 1, 2]")
    return values


def seed_config(config: TrainConfig, seed: int, runs_dir: str | Path | None = None) -> TrainConfig:
    """``config`` with another seed, in that seed's run folder ``runs_dir / run_name(...)``.

    Args:
        config: the configuration.
        seed: the training seed.
        runs_dir: the runs folder (default: the folder that holds ``config.out_dir``).
    """
    changed = config.replace(seed=int(seed))
    folder = Path(runs_dir) if runs_dir is not None else Path(config.out_dir).parent
    return changed.replace(out_dir=str(folder / run_name(changed)))


@dataclass
class SeedRuns:
    """One configuration trained with several seeds: what :func:`train_seeds` returns.

    Attributes:
        config: the configuration (with the first seed).
        runs: seed -> :class:`~cral_lib.train.RunResult`.
        evals: seed -> :class:`~cral_lib.train.EvalResult` on the test split (empty when not evaluated).
        min_positives: the rule of the mean (:data:`cral_lib.metrics.MIN_POSITIVES`).
    """

    config: TrainConfig
    runs: dict[int, RunResult]
    evals: dict[int, EvalResult] = field(default_factory=dict)
    min_positives: int = MIN_POSITIVES

    @property
    def seeds(self) -> list[int]:
        """The seeds, in the order they were trained."""
        return list(self.runs)

    def counted(self) -> list[str]:
        """The classes that enter the mean: at least ``min_positives`` test positives (the same test split for every seed)."""
        first = self._evals()[self.seeds[0]]
        names = class_table(first.auc, self.min_positives).attrs["counted"]
        if not names:
            raise ConfigError(f"no class has {self.min_positives} positive test images: lower min_positives, or "
                              "evaluate on a larger test split")
        return names

    def mean_auc(self, counted: bool = True) -> pd.Series:
        """The test mean AUC of every seed: over the counted classes (default), or over all classes (the paper's)."""
        evals = self._evals()
        names = self.counted() if counted else None
        values = {}
        for s in self.seeds:
            auc = evals[s].auc["auc"].drop("Mean")
            values[s] = float(auc[names].mean()) if names is not None else float(evals[s].auc.loc["Mean", "auc"])
        return pd.Series(values, dtype=float).rename_axis("seed")

    def summary(self, counted: bool = True, ci: float = 0.95) -> SeedSummary:
        """Mean, SD and t interval over the seeds of the test mean AUC (:func:`cral_lib.metrics.seed_summary`)."""
        return seed_summary(self.mean_auc(counted), ci)

    def _evals(self) -> dict[int, EvalResult]:
        missing = [s for s in self.seeds if s not in self.evals]
        if missing:
            raise ConfigError(f"seeds {missing} were not evaluated: call train_seeds(..., evaluate=True)")
        return self.evals


def train_seeds(config: TrainConfig, seeds: Sequence[int], *, runs_dir: str | Path | None = None,
                evaluate: bool = True, n_boot: int = 1000, boot_seed: int = 0, device: str | None = None,
                by_patient: bool = True, progress: bool = False, verbose: bool = True,
                min_positives: int = MIN_POSITIVES, threshold_rule: str | None = DEFAULT_RULE) -> SeedRuns:
    """Train one configuration once per seed (reusing finished runs) and evaluate each on the test split.

    Args:
        config: the configuration; its ``seed`` is replaced by each of ``seeds``.
        seeds: the training seeds, e.g. ``[0, 1, 2]``.
        runs_dir: where the runs live (default: the folder that holds ``config.out_dir``); each
            seed's run is ``runs_dir / run_name(config with that seed)``.
        evaluate: evaluate each run on the test split (:func:`~cral_lib.train.evaluate_run`).
        n_boot: bootstrap resamples of the evaluation.
        boot_seed: seed of the bootstrap (the same for every run, so the resamples are shared).
        device: device of the evaluation (default: the config's).
        by_patient: resample patients (default) or images in the evaluation.
        progress: progress bars while training.
        verbose: one line per epoch while training.
        min_positives: the rule of the counted mean.
        threshold_rule: the evaluation's rule of the thresholds (None: no thresholds, which skips
            predicting the validation split).

    Returns:
        A :class:`SeedRuns`.

    Raises:
        ConfigError: bad seeds; anything :func:`~cral_lib.train.train` raises.
    """
    values = check_seeds(seeds)
    runs, evals = {}, {}
    for s in values:
        cfg = seed_config(config, s, runs_dir)
        runs[s] = train(cfg, resume="auto", progress=progress, verbose=verbose)
        if evaluate:
            evals[s] = evaluate_run(runs[s].run_dir, device=device or cfg.device, n_boot=n_boot, seed=boot_seed,
                                    progress=False, by_patient=by_patient, threshold_rule=threshold_rule)
    return SeedRuns(seed_config(config, values[0], runs_dir), runs, evals, min_positives)


@dataclass
class SeedComparison:
    """Two methods trained on the same seeds, compared: what :func:`compare_seeds` returns.

    Attributes:
        per_seed: one row per seed: ``reference``, ``other`` (test mean AUCs over the counted
            classes), ``difference`` (other - reference) and its paired bootstrap interval on the
            test set (``ci_low``, ``ci_high``, ``p_value``).
        seeds: the t interval over the seeds of the per-seed differences.
        classes: the classes of the means.
        resample: what the paired bootstrap resampled (patients or images).
    """

    per_seed: pd.DataFrame
    seeds: SeedSummary
    classes: list[str]
    resample: str

    def row(self, seed: int | None = None) -> dict[str, Any]:
        """One line of a table: the seed-level interval beside one seed's test-set paired interval.

        Args:
            seed: the seed whose paired interval is shown (default: the first).
        """
        s = self.per_seed.index[0] if seed is None else seed
        p = self.per_seed.loc[s]
        excludes = (lambda lo, hi: bool(lo > 0 or hi < 0) if not (math.isnan(lo) or math.isnan(hi)) else False)
        return {
            "seeds": self.seeds.n_seeds,
            "mean difference": self.seeds.mean,
            "seed SD": self.seeds.sd,
            "seed ci_low": self.seeds.ci_low,
            "seed ci_high": self.seeds.ci_high,
            f"seed {s}: difference": p["difference"],
            f"seed {s}: paired ci_low": p["ci_low"],
            f"seed {s}: paired ci_high": p["ci_high"],
            "seed interval excludes 0": excludes(self.seeds.ci_low, self.seeds.ci_high),
            "paired interval excludes 0": excludes(p["ci_low"], p["ci_high"]),
        }


def compare_seeds(reference: SeedRuns, other: SeedRuns, *, n_boot: int = 1000, seed: int = 0,
                  by_patient: bool = True, ci: float = 0.95) -> SeedComparison:
    """Compare two methods trained on the same seeds: per seed on the test set, and over the seeds.

    Both means are taken over the classes with enough test positives (``reference.counted()``).
    For each seed both have, :func:`cral_lib.metrics.paired_bootstrap` of the two runs' test
    predictions gives the difference (other - reference) and its interval on resampled
    patients (or images); :func:`cral_lib.metrics.seed_difference` gives the t interval of the
    mean of those per-seed differences.

    Args:
        reference: the reference method (e.g. CRAL).
        other: the other method (e.g. an ablation).
        n_boot: resamples of the paired bootstrap.
        seed: seed of the paired bootstrap.
        by_patient: resample patients (default) or images.
        ci: the confidence level of both intervals.

    Raises:
        ConfigError: no seed in common, or the two were evaluated on different test images.
    """
    common = [s for s in reference.seeds if s in other.seeds]
    if not common:
        raise ConfigError(f"the reference has seeds {reference.seeds} and the other {other.seeds}: train both "
                          "with the same seeds")
    names = reference.counted()
    classes = list(reference._evals()[common[0]].auc.index[:-1])
    cols = [classes.index(c) for c in names]
    rows, resample = {}, "images"
    for s in common:
        a, b = reference._evals()[s], other._evals()[s]
        if list(a.predictions["Image Index"]) != list(b.predictions["Image Index"]):
            raise ConfigError(f"seed {s}: the two runs were evaluated on different test images; evaluate both on "
                              "the same release")
        groups = a.predictions["Patient ID"].to_numpy() if by_patient else None
        table = paired_bootstrap(a.labels[:, cols], a.probs[:, cols], b.probs[:, cols], n_boot=n_boot, seed=seed,
                                 ci=ci, classes=names, groups=groups)
        resample = table.attrs["resample"]
        m = table.loc["Mean"]
        rows[s] = {"reference": m["auc_a"], "other": m["auc_b"], "difference": m["diff"], "ci_low": m["ci_low"],
                   "ci_high": m["ci_high"], "p_value": m["p_value"]}
    per_seed = pd.DataFrame(rows).T.rename_axis("seed")
    diff = seed_difference(per_seed["reference"], per_seed["other"], ci)
    return SeedComparison(per_seed, diff, names, resample)


__all__ = ["SeedComparison", "SeedRuns", "check_seeds", "compare_seeds", "seed_config", "train_seeds"]
