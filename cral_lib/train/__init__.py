"""Training and evaluation: the paper's recipe, checkpoints, metrics logs, many GPUs.

One file per job:

- :class:`TrainConfig`, :func:`paper_recipe`, :func:`fast_recipe`, :func:`run_name` (``config.py``):
  the recipe, and the run folder's name derived from it.
- :class:`TrainStep`, :func:`make_optimizer`, :class:`SplitOptimizer` (``step.py``): one training step, shared
  with the benchmarks, and the optimizers (the attention branch may have its own).
- :func:`train`, :func:`read_history` (``loop.py``): the loop; resumable; mixed precision; DDP under torchrun.
- ``splits.py``: the image cache and the splits as rows of it; ``predict.py``: predictions and the mean AUC.
- :func:`evaluate_run`, :func:`load_run_model`, :func:`compare_runs`, :func:`load_predictions`
  (``evaluate.py``): predictions, AUC with confidence intervals, the paper's table.
- :func:`train_seeds`, :func:`compare_seeds` (``seeds.py``): one configuration over several
  training seeds (each in its own run folder, finished runs reused), and two methods compared
  seed by seed: the test-set paired bootstrap of each seed beside the t interval over the seeds.
- :func:`attention_check`, :func:`branch_trace` (``probe.py``): how much a run's maps vary, and the AUC with
  every map replaced by its mean (does the attention matter?); att1's health over a run's first
  steps (dead units, saturated sigmoids), to compare optimizers of the branch.
- ``checkpoint.py``: atomic checkpoints loaded with ``weights_only=True``.
- ``distributed.py``: torchrun / DistributedDataParallel set-up and gathering.

The device and the precision are chosen by :mod:`cral_lib.device`. The names below are
imported on first use: ``cral train --help`` reads ``config.py`` (no torch) to list its flags,
and must not load the trainer.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "TrainConfig": ".config",
    "paper_recipe": ".config",
    "fast_recipe": ".config",
    "run_name": ".config",
    "TrainStep": ".step",
    "make_optimizer": ".step",
    "SplitOptimizer": ".step",
    "train": ".loop",
    "RunResult": ".loop",
    "read_history": ".loop",
    "evaluate_run": ".evaluate",
    "EvalResult": ".evaluate",
    "load_run_model": ".evaluate",
    "run_config": ".evaluate",
    "compare_runs": ".evaluate",
    "load_predictions": ".evaluate",
    "read_thresholds": ".evaluate",
    "load_patients": ".evaluate",
    "train_seeds": ".seeds",
    "compare_seeds": ".seeds",
    "SeedRuns": ".seeds",
    "SeedComparison": ".seeds",
    "attention_check": ".probe",
    "branch_trace": ".probe",
    "AttentionCheck": ".probe",
})
