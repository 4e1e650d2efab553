"""Evaluation of a trained run: predictions, per-class AUC with confidence intervals, ROC data,
and the paper's Table 1 beside the run's own row.

:func:`evaluate_run` is what ``cral evaluate`` and the evaluation chapter call. It writes into
the run folder (``<split>`` is ``test`` unless asked otherwise):

- ``predictions_<split>.csv``: one row per image: name, patient, the 14 labels and the 14 probabilities;
- ``auc_<split>.csv`` and ``auc_<split>.json``: per-class AUC, 95% bootstrap interval (resampling patients
  by default: the cluster bootstrap), positives, negatives, and the mean; the JSON adds the table of
  :func:`cral_lib.metrics.class_table` (the classes under :data:`~cral_lib.metrics.MIN_POSITIVES` test
  positives flagged and left out of the mean, the paper's mean of all classes beside it);
- ``table1_<split>.csv``: the run's row laid out like the paper's Table 1, with the paper's rows;
- ``thresholds.json``: one threshold per class, chosen on the validation split (Youden's J by
  default, :mod:`cral_lib.metrics.operating`), which ``cral predict`` calls findings with;
- ``operating_<split>.csv``: sensitivity, specificity and PPV of the split at those thresholds,
  with 95% intervals (and ``auc_<split>.json`` adds them, with the normal images' false positives).
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import CLASSES, models
from ..data import BatchLoader, TestTransform
from ..device import eval_precision
from ..errors import CheckpointError, ConfigError
from ..metrics import auc_table, bootstrap_auc, class_table, paired_bootstrap, results_table, roc_curves
from ..metrics.operating import DEFAULT_RULE, choose_thresholds, normal_false_positives, operating_points, parse_rule
from . import checkpoint as ckpt
from .config import TrainConfig
from .distributed import cleanup, gather_rows, setup
from .predict import predict
from .splits import load_split, open_cache


@dataclass
class EvalResult:
    """What :func:`evaluate_run` returns.

    Attributes:
        run_dir: the run folder.
        split: the split evaluated.
        predictions: DataFrame, one row per image (labels and probabilities).
        auc: per-class AUC table with bootstrap confidence intervals and the mean.
        roc: class -> DataFrame of (fpr, tpr, threshold).
        table1: the run's row beside the paper's Table 1.
        labels: (n, C) array of labels; probs: (n, C) array of probabilities.
        files: the names of the files written into the run folder: ``predictions_<split>.csv``,
            ... , or ``predictions_<split>_on_<data>.csv``, ... when ``data_dir`` is another dataset
            than the run's own (the run's own results are never replaced by another dataset's).
        thresholds: per class, the threshold chosen on the validation split and its validation
            sensitivity and specificity (None when no rule was asked for).
        operating: per class, sensitivity, specificity and PPV on this split at those thresholds,
            with 95% Wilson intervals.
        normal: on this split's images without any finding, how many get a finding called.
        classes: :func:`cral_lib.metrics.class_table` of ``auc``: the test positives of each class,
            the classes under the minimum flagged, the mean of the counted classes (with its
            interval from the same resamples) and the paper's mean of all classes.
    """

    run_dir: Path
    split: str
    predictions: Any
    auc: Any
    roc: dict
    table1: Any
    labels: np.ndarray
    probs: np.ndarray
    files: list = field(default_factory=list)
    thresholds: Any = None
    operating: Any = None
    normal: dict | None = None
    classes: Any = None


#: Where ``cral evaluate`` stores the thresholds chosen on the validation split.
THRESHOLDS_FILE = "thresholds.json"


def run_config(run_dir: str | Path) -> TrainConfig:
    """The config a run was trained with (``config.yaml`` in the run folder)."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise CheckpointError(f"{run_dir} is not a run folder: {path} is missing (train first with `cral train`)")
    return TrainConfig.load(path)


def checkpoint_path(run_dir: str | Path, which: str = "best") -> Path:
    """``checkpoints/best.pt`` or ``checkpoints/last.pt`` of a run (or ``which`` as a file path)."""
    if which in ("best", "last"):
        path = Path(run_dir) / "checkpoints" / f"{which}.pt"
    else:
        path = Path(which)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist (has the run finished an epoch?)")
    return path


def load_run_model(run_dir: str | Path, which: str = "best", device: str | Any = "cpu"):
    """Rebuild a run's model and load its weights: returns (model in eval mode, config, checkpoint dict).

    Args:
        run_dir: the run folder.
        which: ``best`` (highest validation AUC), ``last``, or a path to a checkpoint file.
        device: where to put the model.
    """
    path = checkpoint_path(run_dir, which)
    state = ckpt.load_checkpoint(path)
    config = TrainConfig.from_dict(state["config"])
    model = models.build_model(**config.model_kwargs, weights=None)
    model.load_state_dict(ckpt.strip_module_prefix(state["model"]))
    device = torch.device(device) if isinstance(device, str) else device
    model.to(device).eval()
    if config.uses_channels_last(device):
        model.to(memory_format=torch.channels_last)  # the run's memory format, as in training
    return model, config, state


def split_loader(config: TrainConfig, split: str, device: torch.device, batch_size: int | None = None, *,
                 progress: bool = False, rank: int = 0, world_size: int = 1) -> tuple[BatchLoader, TestTransform, Any]:
    """The test-time path of a run over one split: (loader in order, test transform, the split).

    The split (:func:`~cral_lib.train.splits.load_split`) has ``rows``, ``labels`` and ``names``;
    the loader yields (uint8 images, labels, positions) without shuffling or dropping a batch,
    and the transform resizes and centre-crops as :func:`~cral_lib.data.augment.test_time_resize` says.
    """
    cache = open_cache(config, progress=progress)
    data = load_split(config, split, cache)
    loader = BatchLoader(cache, data.rows, data.labels, batch_size or config.eval_batch_size, shuffle=False,
                         drop_last=False, device=device, rank=rank, world_size=world_size)
    return loader, TestTransform.for_crop(config.image_size), data


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    *,
    which: str = "best",
    data_dir: str | None = None,
    cache_dir: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
    write: bool = True,
    threshold_rule: str | None = DEFAULT_RULE,
    by_patient: bool = True,
) -> EvalResult:
    """Predict a split with a run's checkpoint and measure per-class AUC with bootstrap intervals.

    The test-time transform is the paper's: resize to
    :func:`~cral_lib.data.augment.test_time_resize` of the training crop size (256 for 224 px
    crops) and a center crop of that size.

    Thresholds: unless ``threshold_rule`` is None, one threshold per class is chosen on the
    **validation** split by that rule (:func:`cral_lib.metrics.choose_thresholds`: ``"youden"``,
    the maximum of sensitivity + specificity - 1, or ``"sensitivity:S"``), stored in the run as
    ``thresholds.json`` (what ``cral predict`` calls findings with), and the evaluated split's
    sensitivity, specificity and PPV at them are measured with 95% intervals.

    Intervals: the bootstrap resamples patients (``Patient ID`` of the release's Data_Entry
    file), each drawn patient bringing all of its images, because the follow-up films of one
    patient are not independent evidence (:func:`cral_lib.metrics.bootstrap_auc` with
    ``groups``); ``by_patient=False`` resamples images.

    Args:
        run_dir: the run folder written by :func:`cral_lib.train.train`.
        split: ``test`` (default), ``val``, ``train`` or ``train_val``.
        which: checkpoint: ``best``, ``last`` or a file path.
        data_dir: the release folder, if it moved since training (default: the run's).
        cache_dir: the cache folder, if not the default one.
        device: ``auto``, ``cpu``, ``cuda``, ...
        batch_size: prediction batch size (default: the run's eval batch size).
        n_boot: bootstrap resamples for the confidence intervals (0: none).
        seed: seed of the bootstrap.
        progress: show a progress bar.
        write: write the CSV/JSON files into the run folder.
        threshold_rule: the rule of the thresholds, or None for none.
        by_patient: resample patients (True, the default) or images (False) for the intervals.
    """
    if split not in ("test", "val", "train", "train_val"):
        raise ConfigError(f"split={split!r} is not one of test, val, train, train_val")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} must be 1 or more (default: the run's eval batch size)")
    if n_boot < 0:
        raise ConfigError(f"--bootstrap {n_boot} must be >= 0")
    if threshold_rule is not None:
        parse_rule(threshold_rule)  # a bad rule fails before any prediction
    run_dir = Path(run_dir)
    info, dev = setup(device)
    try:
        model, config, state = load_run_model(run_dir, which, dev)
        trained_on = resolve_data_dir(run_dir, config.data_dir, given=data_dir)
        changes = {"device": device, "data_dir": str(Path(data_dir) if data_dir else trained_on)}
        if cache_dir:
            changes["cache_dir"] = str(cache_dir)
        config = config.replace(**changes)
        bs = batch_size or config.eval_batch_size
        show = progress and info.is_main
        data, probs = predict_split(model, config, split, dev, info, bs, progress=show)
        tag = _data_tag(config, open_cache(config, progress=False), state, trained_on) if data_dir else ""
        classes = list(CLASSES)[: config.num_classes]
        labels = data.labels
        frame = data.dataset.frame.set_index("Image Index").loc[data.names]
        pred = pd.DataFrame({"Image Index": data.names, "Patient ID": frame["Patient ID"].to_numpy()})
        for i, c in enumerate(classes):
            pred[f"label_{c}"] = labels[:, i].astype(int)
        for i, c in enumerate(classes):
            pred[f"prob_{c}"] = probs[:, i]
        table = auc_table(labels, probs, classes=classes)
        samples = None
        if n_boot:
            groups = pred["Patient ID"].to_numpy() if by_patient else None
            ci, samples = bootstrap_auc(labels, probs, n_boot=n_boot, seed=seed, classes=classes, groups=groups,
                                        return_samples=True)
            for col in ci.columns:
                if col not in table.columns:
                    table[col] = ci[col]
            table.attrs.update({k: ci.attrs[k] for k in ("n_boot", "ci", "resample", "n_groups")})
        per_class = class_table(table, samples=samples)
        roc = roc_curves(labels, probs, classes=classes)
        name = f"{config.backbone}+{config.attention} {config.variant} (this run)"
        table1 = results_table({name: table}, include_paper=True)
        thresholds = operating = normal = None
        n_val = 0
        if threshold_rule is not None:
            if split == "val":
                val_labels, val_probs = labels, probs
            else:
                val, val_probs = predict_split(model, config, "val", dev, info, bs, progress=show)
                val_labels = val.labels
            n_val = len(val_labels)
            thresholds = choose_thresholds(val_labels, val_probs, classes=classes, rule=threshold_rule)
            operating = operating_points(labels, probs, thresholds["threshold"].to_numpy(), classes=classes)
            normal = normal_false_positives(labels, probs, thresholds["threshold"].to_numpy())
        files = [f"{kind}_{split}{tag}.{ext}" for kind, ext in OUTPUTS]
        if thresholds is not None:
            files += [threshold_file(tag), f"operating_{split}{tag}.csv"]
        if write and info.is_main:
            _write_results(run_dir, files, split, which, state, config.data_dir, pred, table, table1, labels, classes,
                           threshold_rule, thresholds, operating, normal, n_val, per_class)
        return EvalResult(run_dir, split, pred, table, roc, table1, labels, probs, files=files, thresholds=thresholds,
                          operating=operating, normal=normal, classes=per_class)
    finally:
        cleanup(info)


def predict_split(model: Any, config: TrainConfig, split: str, dev: Any, info: Any, batch_size: int | None = None,
                  progress: bool = False):
    """One split of a run's data through its test-time path (:func:`split_loader`) and the model.

    Returns:
        ``(split, probs)``: the split (rows, labels, names) and its ``(n, C)`` probabilities,
        gathered from every process under torchrun.
    """
    loader, transform, data = split_loader(config, split, dev, batch_size, progress=progress, rank=info.rank,
                                           world_size=info.world_size)
    amp_dtype = eval_precision(config.amp, dev)
    pos, probs, _ = predict(model, loader, transform, dev, amp_dtype, progress=progress, desc=f"predict {split}")
    return data, gather_rows(info, pos, probs, len(data.rows))


def threshold_file(tag: str = "") -> str:
    """The thresholds' file name: ``thresholds.json`` for the run's own data, ``thresholds<tag>.json`` for another's."""
    return THRESHOLDS_FILE if not tag else f"thresholds{tag}.json"


def _write_results(run_dir: Path, files: list[str], split: str, which: str, state: dict, data_dir: str, pred: Any,
                   table: Any, table1: Any, labels: np.ndarray, classes: list[str], rule: str | None, thresholds: Any,
                   operating: Any, normal: dict | None, n_val: int, per_class: Any) -> None:
    """The files of :func:`evaluate_run`, under the names ``files`` (see the module docstring)."""
    ckpt.atomic_write_text(run_dir / files[0], pred.to_csv(index=False))
    ckpt.atomic_write_text(run_dir / files[1], table.to_csv())
    summary = {
        "split": split,
        "data_dir": data_dir,
        "checkpoint": str(checkpoint_path(run_dir, which)),
        "epoch": int(state.get("epoch", 0)),
        "n_images": int(len(labels)),
        "mean_auc": _finite(table.loc["Mean", "auc"]),
        "per_class": {c: _finite(table.loc[c, "auc"]) for c in classes},
        "table": json.loads(table.to_json(orient="index")),
        "intervals": {"resample": table.attrs.get("resample"), "n_groups": table.attrs.get("n_groups"),
                      "n_boot": table.attrs.get("n_boot"), "ci": table.attrs.get("ci"), "method": "percentile"},
        "min_positives": per_class.attrs["min_positives"],
        "mean_auc_counted": _finite(per_class.iloc[-2]["auc"]),
        "classes_flagged": per_class.attrs["flagged"],
        "class_table": json.loads(per_class.to_json(orient="index")),
    }
    if thresholds is not None:
        summary["at_thresholds"] = {"rule": rule, "normal_images": {k: _finite(v) for k, v in normal.items()},
                                    "per_class": json.loads(operating.to_json(orient="index"))}
        ckpt.atomic_write_text(run_dir / files[5], operating.to_csv())
        chosen = {
            "rule": rule,
            "split": "val",
            "data_dir": data_dir,
            "n_images": int(n_val),
            "checkpoint": str(checkpoint_path(run_dir, which)),
            "epoch": int(state.get("epoch", 0)),
            "called_when": "probability >= threshold; a class without a threshold is never called",
            "classes": {c: {"threshold": _finite(r.threshold), "sensitivity": _finite(r.sensitivity),
                            "specificity": _finite(r.specificity), "positives": int(r.positives),
                            "negatives": int(r.negatives), "note": r.note}
                        for c, r in thresholds.iterrows()},
        }
        ckpt.atomic_write_text(run_dir / files[4], json.dumps(chosen, indent=2) + "\n")
    ckpt.atomic_write_text(run_dir / files[2], json.dumps(summary, indent=2) + "\n")
    ckpt.atomic_write_text(run_dir / files[3], table1.to_csv())


def read_thresholds(run_dir: str | Path) -> dict[str, Any] | None:
    """The thresholds ``cral evaluate`` stored in a run (``thresholds.json``), or None when there are none.

    Returns:
        The file's mapping: ``rule``, ``split``, ``checkpoint``, ``epoch``, ``classes`` (class ->
        ``threshold`` (None: never called), ``sensitivity``, ``specificity``, ...).
    """
    path = Path(run_dir) / THRESHOLDS_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}): run `cral evaluate --run {run_dir}` again") from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), dict):
        raise CheckpointError(f"{path} holds no per-class thresholds: run `cral evaluate --run {run_dir}` again")
    return data


#: The files of an evaluation (``<kind>_<split><tag>.<ext>``), in the order they are written.
OUTPUTS = (("predictions", "csv"), ("auc", "csv"), ("auc", "json"), ("table1", "csv"))


def resolve_data_dir(run_dir: Path, stored: str, *, given: str | None = None) -> Path:
    """The release folder a run was trained on: ``stored`` as it is, or a relative one from the run folder.

    Raises:
        ConfigError: it is found neither way (and no ``given`` folder replaces it): pass ``--data``.
    """
    path = Path(stored)
    if path.is_dir() or given:
        return path
    if not path.is_absolute() and (run_dir / path).is_dir():
        return run_dir / path
    where = (f"neither from here ({Path.cwd()}) nor from the run folder {run_dir}" if not path.is_absolute()
             else "it is not there any more")
    raise ConfigError(
        f"the run {run_dir} was trained on {stored!r}, found {where}: pass --data DIR, the release folder "
        "to evaluate on"
    )


def _data_tag(config: TrainConfig, cache, state: dict[str, Any], trained_on: Path) -> str:
    """``""`` when --data is the run's own release (moved or not), else ``_on_<folder>-<hash>``.

    The run's own release is told by its training and validation splits (the checkpoint's data
    fingerprint), so a moved copy keeps the run's file names and another dataset never takes them.
    """
    given = Path(config.data_dir)
    if given.resolve() == trained_on.resolve():
        return ""
    try:
        parts = {s: load_split(config, s, cache) for s in ("train", "val")}
        same = ckpt.data_fingerprint({
            "train": (parts["train"].names, parts["train"].labels),
            "val": (parts["val"].names, parts["val"].labels),
            "cache_size": config.cache_size,
        }) == state.get("data_fingerprint")
    except (ConfigError, ValueError, KeyError):
        same = False
    if same:
        return ""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", given.resolve().name).strip("-") or "data"
    return f"_on_{slug}-{hashlib.sha1(str(given.resolve()).encode()).hexdigest()[:6]}"


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def load_predictions(run_dir: str | Path, split: str = "test"):
    """Read ``predictions_<split>.csv`` back: returns (names, labels (n, C), probs (n, C))."""
    path = Path(run_dir) / f"predictions_{split}.csv"
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: run `cral evaluate --run {run_dir} --split {split}` first")
    df = pd.read_csv(path)
    label_cols = [c for c in df.columns if c.startswith("label_")]
    prob_cols = [c for c in df.columns if c.startswith("prob_")]
    return list(df["Image Index"]), df[label_cols].to_numpy(np.float32), df[prob_cols].to_numpy(np.float64)


#: The least share of test images two runs must have in common for :func:`compare_runs` (of the larger set).
MIN_SHARE = 0.9


def load_patients(run_dir: str | Path, split: str = "test") -> np.ndarray:
    """The ``Patient ID`` of every row of ``predictions_<split>.csv``, in its order."""
    path = Path(run_dir) / f"predictions_{split}.csv"
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: run `cral evaluate --run {run_dir} --split {split}` first")
    df = pd.read_csv(path, usecols=lambda c: c == "Patient ID")
    if "Patient ID" not in df.columns:
        raise CheckpointError(f"{path} has no Patient ID column: run `cral evaluate --run {run_dir}` again")
    return df["Patient ID"].to_numpy()


def compare_runs(run_a: str | Path, run_b: str | Path, split: str = "test", n_boot: int = 1000, seed: int = 0, *,
                 by_patient: bool = True, classes: list[str] | None = None):
    """Paired bootstrap comparison of two evaluated runs on the same images (b minus a).

    Args:
        run_a: the reference run folder (evaluated on ``split``).
        run_b: the other run folder.
        split: the split both were evaluated on.
        n_boot: resamples.
        seed: seed of the resampling.
        by_patient: resample patients (the default, as :func:`evaluate_run`) or images.
        classes: compare over these classes only (their mean is the ``Mean`` row); default all.

    Returns:
        :func:`cral_lib.metrics.paired_bootstrap`'s table.
    """
    names_a, y_a, p_a = load_predictions(run_a, split)
    names_b, y_b, p_b = load_predictions(run_b, split)
    groups = load_patients(run_a, split) if by_patient else None
    if names_a != names_b:
        common = sorted(set(names_a) & set(names_b))
        share = len(common) / max(len(names_a), len(names_b))
        if share < MIN_SHARE:
            raise ConfigError(
                f"{run_a} and {run_b} share {len(common)} of their {len(names_a)} and {len(names_b)} {split} images "
                f"({share:.0%}, below the {MIN_SHARE:.0%} a paired comparison needs): they were evaluated on "
                f"different data; evaluate both on the same release (`cral evaluate --run RUN --data DIR`)"
            )
        warnings.warn(
            f"{run_a} and {run_b} share {len(common)} of their {len(names_a)} and {len(names_b)} {split} images "
            f"({share:.0%}); the comparison uses those {len(common)}",
            stacklevel=2,
        )
        ia = {n: i for i, n in enumerate(names_a)}
        ib = {n: i for i, n in enumerate(names_b)}
        sel_a = [ia[n] for n in common]
        sel_b = [ib[n] for n in common]
        y_a, p_a, p_b, y_b = y_a[sel_a], p_a[sel_a], p_b[sel_b], y_b[sel_b]
        groups = groups[sel_a] if groups is not None else None
    if not np.array_equal(y_a, y_b):
        raise ConfigError(f"{run_a} and {run_b} disagree on the labels of the same images: different datasets")
    names = list(CLASSES)[: y_a.shape[1]]
    if classes is not None:
        unknown = [c for c in classes if c not in names]
        if unknown or not classes:
            raise ConfigError(f"classes={classes!r}: give some of the runs' classes ({', '.join(names)})")
        cols = [names.index(c) for c in classes]
        y_a, p_a, p_b, names = y_a[:, cols], p_a[:, cols], p_b[:, cols], list(classes)
    return paired_bootstrap(y_a, p_a, p_b, n_boot=n_boot, seed=seed, classes=names, groups=groups)


# eval_precision lived here before cral_lib.device; importable from here still.
__all__ = ["EvalResult", "THRESHOLDS_FILE", "eval_precision", "evaluate_run", "split_loader", "predict_split",
           "read_thresholds", "threshold_file", "load_run_model", "run_config", "checkpoint_path", "load_predictions",
           "load_patients", "compare_runs"]
