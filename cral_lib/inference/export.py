"""A model file that others can load: ``cral export`` and :meth:`Predictor.from_file`.

The file is one ``torch.save`` of plain data, so ``torch.load(path, weights_only=True)`` reads
it (no pickled code runs, whoever made the file), and it needs none of the training code:

- ``format``, ``version``: ``"cral-model"`` and :data:`FORMAT_VERSION`;
- ``model``: the network's ``state_dict``; ``model_config``: the arguments of
  :func:`cral_lib.models.build_model` (backbone, attention, variant, num_classes);
- ``classes``: the output order; ``thresholds``: one per class (None: never called), with
  ``threshold_rule`` (how ``cral evaluate`` chose them on the validation split);
- ``preprocessing``: everything inference needs to feed the network what it was trained on
  (grey conversion, ``cache_size`` resize, ``test_resize`` and ``crop``, the normalization's
  mean and std): see :func:`preprocessing`;
- ``intensity``: the training images' grey-level range (for the input checks);
- ``source``: the run, checkpoint, epoch and validation AUC it comes from, the cral_lib version,
  and ``train_config``: the whole training config.

No TorchScript or ``torch.export`` program is written: the network is rebuilt from its
config by :func:`cral_lib.models.build_model`, so the file stays a plain ``state_dict`` that
any future torch reads.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import CLASSES, models
from .._io import atomic_write_bytes
from .._version import __version__
from ..data import IMAGENET_MEAN, IMAGENET_STD, test_time_resize
from ..device import resolve_device
from ..errors import CheckpointError
from ..train.checkpoint import strip_module_prefix
from ..train.evaluate import checkpoint_path, load_run_model, read_thresholds
from .predictor import Predictor, training_reference

FORMAT = "cral-model"
FORMAT_VERSION = 1


def preprocessing(image_size: int, cache_size: int) -> dict[str, Any]:
    """What turns an image file into the network's input, as plain data (the ``preprocessing`` entry)."""
    return {
        "grey": "one uint8 grey channel: 8-bit grey kept; RGB as ITU-R 601 luma; 16-bit scaled by its "
                "effective bit depth; DICOM through its VOI window, MONOCHROME1 inverted",
        "cache_size": int(cache_size),
        "cache_resize": "PIL bilinear (antialiased) to cache_size x cache_size",
        "test_resize": int(test_time_resize(image_size)),
        "crop": int(image_size),
        "test_transform": "bilinear antialiased resize to test_resize x test_resize, center crop x crop, "
                          "grey replicated to 3 channels, (x / 255 - mean) / std",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


def export_model(run_dir: str | Path, out: str | Path, which: str = "best") -> Path:
    """Write a run's model, classes, thresholds and preprocessing into one file (``cral export``).

    Args:
        run_dir: the run folder (evaluated first, so that it has thresholds).
        out: the file to write (``model.pt``).
        which: ``best``, ``last`` or a checkpoint file.

    Returns:
        The file written.

    Raises:
        CheckpointError: not a run folder, or no thresholds (run ``cral evaluate`` first).
    """
    model, config, state = load_run_model(run_dir, which, "cpu")
    chosen = read_thresholds(run_dir)
    if chosen is None:
        raise CheckpointError(f"{run_dir} has no thresholds: run `cral evaluate --run {run_dir}` first, which "
                              "chooses them on the validation split")
    classes = list(CLASSES)[: config.num_classes]
    thresholds = [chosen["classes"].get(c, {}).get("threshold") for c in classes]
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": {k: v.detach().cpu().contiguous() for k, v in strip_module_prefix(model.state_dict()).items()},
        "model_config": dict(config.model_kwargs),
        "classes": classes,
        "thresholds": [None if t is None else float(t) for t in thresholds],
        "threshold_rule": str(chosen.get("rule")),
        "preprocessing": preprocessing(config.image_size, config.cache_size),
        "amp": config.amp,
        "eval_batch_size": int(config.eval_batch_size),
        "intensity": training_reference(config),
        "source": {
            "run": Path(run_dir).name,
            "checkpoint": Path(checkpoint_path(run_dir, which)).name,
            "epoch": int(state.get("epoch", 0)),
            "best_val_auc": None if state.get("best_val_auc") is None else float(state["best_val_auc"]),
            "thresholds_epoch": int(chosen.get("epoch", -1)),
            "cral_lib": __version__,
            "torch": torch.__version__.split("+")[0],
        },
        "train_config": config.to_dict(),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(out, buf.getvalue())


def read_model_file(path: str | Path, cls: type = Predictor, device: Any = "auto",
                    batch_size: int | None = None) -> Predictor:
    """Load a file of :func:`export_model` into a :class:`Predictor` (``weights_only=True``).

    Raises:
        CheckpointError: the file is missing, not a cral model file, or of a newer format.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model file {path} does not exist (write one with `cral export --run RUN --out {path}`)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or one holding code
        raise CheckpointError(f"{path} is not a model file of `cral export` ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a model file of `cral export` (no format: {FORMAT!r}); a training "
                              "checkpoint is read with Predictor.from_run(run_dir)")
    if int(data.get("version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path} is of format version {data['version']}, this cral_lib reads up to "
                              f"{FORMAT_VERSION}: upgrade cral_lib")
    pre = data["preprocessing"]
    if int(pre["test_resize"]) != test_time_resize(int(pre["crop"])):
        raise CheckpointError(f"{path} resizes to {pre['test_resize']} px before its {pre['crop']} px crop, this "
                              f"cral_lib to {test_time_resize(int(pre['crop']))}: use the cral_lib it was made with")
    model = models.build_model(**data["model_config"], weights=None)
    model.load_state_dict(data["model"])
    thresholds = [np.nan if t is None else float(t) for t in data["thresholds"]]
    info = {"file": str(path), **data.get("source", {}), "threshold_rule": data.get("threshold_rule")}
    dev = resolve_device(device) if isinstance(device, str) else device
    return cls(model, data["classes"], pre["crop"], pre["cache_size"], thresholds, device=dev,
               amp=data.get("amp", "auto"), reference=data.get("intensity"), info=info,
               batch_size=batch_size or int(data.get("eval_batch_size", 64)))


__all__ = ["FORMAT", "FORMAT_VERSION", "export_model", "preprocessing", "read_model_file"]
