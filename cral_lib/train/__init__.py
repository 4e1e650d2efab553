"""Training and evaluation: the paper's recipe, checkpoints, metrics logs, many GPUs.

- :class:`TrainConfig`, :func:`paper_recipe`, :func:`fast_recipe` (``config.py``): the recipe.
- :func:`train` (``loop.py``): train a model; resumable; mixed precision; DDP under torchrun.
- :func:`read_history` (``loop.py``): a run's metrics log as a DataFrame.
- :func:`evaluate_run`, :func:`load_run_model`, :func:`compare_runs`, :func:`load_predictions`
  (``evaluate.py``): predictions, AUC with confidence intervals, the paper's table.
- ``checkpoint.py``: atomic checkpoints loaded with ``weights_only=True``.
- ``distributed.py``: torchrun / DistributedDataParallel set-up and gathering.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "paper_recipe": "config",
    "fast_recipe": "config",
    "train": "loop",
    "RunResult": "loop",
    "read_history": "loop",
    "evaluate_run": "evaluate",
    "EvalResult": "evaluate",
    "load_run_model": "evaluate",
    "run_config": "evaluate",
    "compare_runs": "evaluate",
    "load_predictions": "evaluate",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS)
