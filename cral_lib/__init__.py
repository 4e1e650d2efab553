"""CRAL: category-wise residual attention learning for chest X-ray classification.

A reusable PyTorch library behind the *CRAL Book*. It reproduces Guan & Huang,
"Multi-label chest X-ray image classification via category-wise residual attention
learning", Pattern Recognition Letters 130 (2020) 259-266, on ChestX-ray14.

Sub-packages (imported on first use, so ``import cral_lib`` stays light):

- :mod:`cral_lib.data`: reading a release (the ChestX-ray14 reader), the image cache, the
  loader and batched augmentation.
- :mod:`cral_lib.synthetic`: the synthetic dataset (``cral synth``): phantoms in the release layout.
- :mod:`cral_lib.fetch`: the real dataset's download (``cral download``), streamed into the cache.
- :mod:`cral_lib.models`: backbones, ``att1``, ``att2`` and the category-wise residual head.
- :mod:`cral_lib.train`: the paper's recipe, the training step and loop, checkpoints, evaluation.
- :mod:`cral_lib.device`: the device and the precision; :mod:`cral_lib.choices`: the model choices.
- :mod:`cral_lib.metrics`: per-class AUC, bootstrap confidence intervals, ROC data, the paper's tables.
- :mod:`cral_lib.viz`, :mod:`cral_lib.localize`: the figures of the book; maps against boxes.
- :mod:`cral_lib.inference`: a trained model on new images (``cral_lib.Predictor``, ``cral predict``,
  ``cral export``).
- :mod:`cral_lib.book`: the chapters' door (``setup``, ``recipe``, ``run_dir``).
- :mod:`cral_lib.cli`: the ``cral`` command line.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
from typing import Any

from ._version import __version__

#: The 14 ChestX-ray14 findings in the order of the paper's Table 1.
CLASSES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

#: The label NIH uses for an image with none of the 14 findings.
NO_FINDING = "No Finding"

_SUBMODULES = ("data", "synthetic", "fetch", "models", "train", "device", "choices", "metrics", "viz", "localize",
               "inference", "book", "cli")

#: Names of a sub-package offered at the top, imported on first use: ``cral_lib.Predictor``.
_TOP_NAMES = {"Predictor": "inference"}


def __getattr__(name: str) -> Any:
    # Lazy sub-packages: ``cral_lib.models`` works without an explicit import and
    # ``import cral_lib`` does not pull in torch.
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _TOP_NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_TOP_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def config() -> dict[str, str]:
    """Return the versions and the compute device that :func:`print_config` shows.

    Returns:
        A dict of name -> value (all strings), in display order.
    """
    info: dict[str, str] = {
        "cral_lib": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
    }
    # numpy, torch and torchvision are imported here, not at the top: `import cral_lib` must stay
    # light (tests/test_packaging.py checks it), and the table reports a missing one instead of failing
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:  # pragma: no cover - numpy is a dependency
        info["numpy"] = "not installed"
    try:
        import torch

        info["torch"] = torch.__version__
        try:
            import torchvision

            info["torchvision"] = torchvision.__version__
        except Exception as exc:  # a broken torchvision must not hide the rest
            info["torchvision"] = f"not usable ({type(exc).__name__})"
        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            names = ", ".join(torch.cuda.get_device_name(i) for i in range(n))
            info["device"] = f"cuda ({n} x {names})"
            # cral_lib.device imports torch: only here, so that `import cral_lib` stays light
            from .device import native_bf16

            info["mixed precision"] = "bf16" if native_bf16("cuda") else "fp16 + gradient scaler (no native bf16)"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            info["device"] = "mps"
        else:
            info["device"] = "cpu"
        info["cpu threads"] = str(torch.get_num_threads())
    except ImportError:
        info["torch"] = "not installed"
        info["device"] = "unknown"
    info["cpu cores"] = str(os.cpu_count())
    data_dir = os.environ.get("CRAL_DATA_DIR")
    info["CRAL_DATA_DIR"] = data_dir if data_dir else "(not set: synthetic data)"
    return info


def print_config() -> None:
    """Print the versions of Python, torch, torchvision and cral_lib, and the device found.

    Every notebook calls this at the end of its imports, so that an executed notebook
    records what it ran on.
    """
    info = config()
    width = max(len(k) for k in info)
    for key, value in info.items():
        print(f"{key:<{width}} : {value}")


__all__ = ["CLASSES", "NO_FINDING", "__version__", "config", "print_config"]
