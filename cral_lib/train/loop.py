"""The training loop: the paper's recipe, resumable, mixed precision, one GPU or many.

:func:`train` is what ``cral train`` and the training chapter call. A run lives in one folder::

    RUN/config.yaml              the TrainConfig (written before the first step)
    RUN/metrics.jsonl            one line per epoch: losses, validation AUC, learning rate, throughput
    RUN/checkpoints/last.pt      the latest state (every epoch, and every N steps if asked)
    RUN/checkpoints/best.pt      the state with the best validation mean AUC so far

Resuming (``resume=True``) reloads ``last.pt``, checks that it was made with the same config
and the same data, and continues at the exact batch where it stopped: the shuffling and the
augmentation of each batch depend only on (seed, epoch, batch), so an interrupted and resumed
run repeats the uninterrupted one.

The pieces live beside this file, one job each: the step (``step.py``), the splits and the
cache (``splits.py``), predictions (``predict.py``), checkpoints (``checkpoint.py``) and the
processes of a multi-GPU job (``distributed.py``); the device and the precision are chosen by
:mod:`cral_lib.device`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .._io import remove_stale_temporaries
from .._version import __version__
from ..data import BatchLoader, TestTransform, TrainTransform
from ..device import amp_settings, autocast, native_bf16  # noqa: F401 - autocast, native_bf16: see __all__
from ..errors import CheckpointError, ConfigError, TrainingError
from .. import models
from . import checkpoint as ckpt
from .config import RESUMABLE_FIELDS, TrainConfig
from .distributed import (DistInfo, all_reduce_mean, any_process, barrier, broadcast, broadcast_buffers, cleanup,
                          gather_rows, setup)
from .predict import bars_disabled, mean_auc, predict
from .splits import SplitData, load_split, open_cache, subset_train
from .step import TrainStep, batch_seed, make_optimizer


@dataclass
class RunResult:
    """What :func:`train` returns.

    Attributes:
        run_dir: the run folder.
        config: the config the run used.
        history: one row per epoch (the contents of ``metrics.jsonl``).
        best_val_auc: the validation mean AUC of the best epoch (NaN when undefined).
        best_epoch: the best epoch (1-based): highest validation mean AUC, or lowest validation
            loss when the AUC is undefined.
    """

    run_dir: Path
    config: TrainConfig
    history: Any
    best_val_auc: float
    best_epoch: int


# ----------------------------------------------------------------------------- the data of a run


@dataclass
class _Data:
    """The splits and loaders of a run."""

    train: SplitData
    val: SplitData
    fingerprint: str
    train_loader: BatchLoader
    val_loader: BatchLoader


def _open_data(config: TrainConfig, info: DistInfo, device: torch.device, show: bool) -> _Data:
    """Open the cache (the main process builds it; the others wait and open it), the splits, the loaders."""
    if info.is_main:
        cache = open_cache(config, progress=show)
    barrier(info)
    if not info.is_main:
        cache = open_cache(config, progress=False)
    train_split = load_split(config, "train", cache)
    val_split = load_split(config, "val", cache)
    fingerprint = ckpt.data_fingerprint(
        {
            "train": (train_split.names, train_split.labels),
            "val": (val_split.names, val_split.labels),
            "cache_size": config.cache_size,
        }
    )
    train_split = subset_train(train_split, config.max_train_images, config.seed)
    per_rank = config.batch_size // info.world_size
    if len(train_split.rows) < config.batch_size:
        raise ConfigError(
            f"the training split has {len(train_split.rows)} images, fewer than one batch "
            f"({config.batch_size}); use a smaller --batch-size or more images"
        )
    train_loader = BatchLoader(
        cache, train_split.rows, train_split.labels, per_rank, shuffle=True, drop_last=True,
        seed=config.seed, device=device, rank=info.rank, world_size=info.world_size, prefetch=config.prefetch,
    )
    val_loader = BatchLoader(
        cache, val_split.rows, val_split.labels, config.eval_batch_size, shuffle=False, drop_last=False,
        seed=config.seed, device=device, rank=info.rank, world_size=info.world_size, prefetch=config.prefetch,
    )
    return _Data(train_split, val_split, fingerprint, train_loader, val_loader)


def start_model(config: TrainConfig, train_labels: np.ndarray, *, fresh: bool = True) -> models.CRALNet:
    """The model a run starts from: seeded by ``config.seed``, with the config's start options.

    A fresh run gets ``config.weights`` and, as the config asks, classifier biases at the training
    split's log-odds (``prior_bias``) and a flat attention start; a resumed run (``fresh=False``)
    gets random weights, which its checkpoint then replaces (no pretrained weights are fetched).
    """
    torch.manual_seed(config.seed)
    model = models.build_model(**config.model_kwargs, weights=config.weights if fresh else None)
    if config.prior_bias and fresh:
        prevalence = np.asarray(train_labels).mean(axis=0).clip(1e-4, 1 - 1e-4)
        with torch.no_grad():
            model.classifier_bias.copy_(torch.from_numpy(np.log(prevalence / (1 - prevalence))))
    if config.flat_attention_start and fresh and model.attention is not None:
        model.attention.flat_start()
    return model


# ----------------------------------------------------------------------------- random states


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _checkpoint_bytes(model: torch.nn.Module) -> int:
    n = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    # model + SGD momentum, in float32, for last.pt, best.pt and a temporary copy
    return int(n * 4 * 2 * 3 * 1.1) + (16 << 20)


# ----------------------------------------------------------------------------- one run


class _Run:
    """A run under way: its model, optimizer, schedule, step, and where it stands.

    Built by :func:`train` (which also resumes it); :meth:`train_epoch` and :meth:`validate`
    do the work of an epoch, :meth:`save` writes a checkpoint with every field of the format
    described in :mod:`cral_lib.train.checkpoint`.
    """

    def __init__(self, config: TrainConfig, info: DistInfo, device: torch.device, data: _Data, *,
                 fresh: bool, show: bool, say: Callable[..., None]) -> None:
        self.config, self.info, self.device, self.data = config, info, device, data
        self.show, self.say = show, say
        self.out = Path(config.out_dir)
        self.last_path = self.out / "checkpoints" / "last.pt"
        self.best_path = self.out / "checkpoints" / "best.pt"
        self.config_path = self.out / "config.yaml"
        self.channels_last = config.uses_channels_last(device)
        self.train_tf = TrainTransform(size=config.image_size, scale=config.crop_scale,
                                       channels_last=self.channels_last)
        self.test_tf = TestTransform.for_crop(config.image_size)

        model = start_model(config, data.train.labels, fresh=fresh).to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if info.is_main:
            ckpt.check_writable(self.out, _checkpoint_bytes(model))
        self.model = model
        self.optimizer = make_optimizer(model, config)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(config.lr_milestones), gamma=config.lr_gamma
        )
        self.amp_dtype, use_scaler = amp_settings(config.amp, device)
        self.use_scaler = use_scaler
        # the step's net is attached by wrap(), once a resumed state is loaded
        self.step_fn = TrainStep(model, self.optimizer, device, self.amp_dtype, use_scaler)
        self.eval_net = model

        self.start_epoch, self.start_batch, self.step = 0, 0, 0
        self.best_auc, self.best_score, self.best_epoch = -math.inf, -math.inf, 0
        self.history: list[dict[str, Any]] = []
        self.epoch_loss_sum, self.epoch_seen = 0.0, 0

    # -- state

    def resume(self) -> None:
        """Load ``last.pt`` after checking that it belongs to this config and these data."""
        state = ckpt.load_checkpoint(self.last_path, map_location="cpu")
        ckpt.check_compatible(state, self.config.to_dict(), self.data.fingerprint, RESUMABLE_FIELDS, self.last_path)
        self.model.load_state_dict(ckpt.strip_module_prefix(state["model"]))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.step_fn.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state.get("rng", {}), self.device)
        self.start_epoch, self.start_batch = int(state["epoch"]), int(state["batch"])
        self.step = int(state["step"])
        self.best_auc = float(state["best_val_auc"]) if state.get("best_val_auc") is not None else -math.inf
        self.best_epoch = int(state.get("best_epoch", 0))
        self.best_score = float(state.get("best_score", self.best_auc))
        self.history = list(state.get("history", []))
        self.epoch_loss_sum = float(state.get("epoch_loss_sum", 0.0))
        self.epoch_seen = int(state.get("epoch_seen", 0))
        if self.start_batch >= len(self.data.train_loader):
            raise CheckpointError(
                f"{self.last_path} points past the end of epoch {self.start_epoch + 1}; it is corrupt"
            )
        self.say(f"resuming {self.out} at epoch {self.start_epoch + 1}, batch {self.start_batch} (step {self.step})")

    def wrap(self) -> None:
        """DDP and ``torch.compile`` around the model.

        Predictions run on each process's shard without DDP's synchronization. torch.compile
        wraps DDP, not the reverse, so that gradient all-reduces overlap the compiled backward.
        """
        net = self.model
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = DistributedDataParallel(net, device_ids=ids)
        if self.config.compile:
            net, self.eval_net = torch.compile(net), torch.compile(self.model)
        self.step_fn.net = net

    def save(self, path: Path, epoch: int, batch: int) -> None:
        """Write a checkpoint of where the run stands (``epoch`` done, ``batch`` into the next)."""
        state = {
            "format": ckpt.FORMAT,
            "cral_lib": __version__,
            "model": ckpt.strip_module_prefix(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.step_fn.scaler.state_dict() if self.use_scaler else None,
            "rng": _rng_state(self.device),
            "epoch": epoch,
            "batch": batch,
            "step": self.step,
            "epoch_loss_sum": self.epoch_loss_sum,
            "epoch_seen": self.epoch_seen,
            "config": self.config.to_dict(),
            "model_config": dict(self.model.config),
            "data_fingerprint": self.data.fingerprint,
            "best_val_auc": None if self.best_auc == -math.inf else self.best_auc,
            "best_epoch": self.best_epoch,
            "best_score": self.best_score,
            "history": self.history,
        }
        if not self.config_path.exists():
            self.config.save(self.config_path)  # a fresh run's folder holds a run from its first checkpoint on
        ckpt.save_checkpoint(state, path)

    def write_log(self) -> None:
        text = "".join(json.dumps(row) + "\n" for row in self.history)
        ckpt.atomic_write_text(self.out / "metrics.jsonl", text)

    # -- an epoch

    def train_epoch(self, epoch: int) -> tuple[float, float, float, int]:
        """Train one epoch (from the resumed batch, for the first); returns (loss, img/s, seconds, images)."""
        config, info, device, loader = self.config, self.info, self.device, self.data.train_loader
        self.model.train()
        loader.set_epoch(epoch)
        first = self.start_batch if epoch == self.start_epoch else 0
        if first == 0:
            self.epoch_loss_sum, self.epoch_seen = 0.0, 0
        n_batches = len(loader)
        bar = tqdm(total=n_batches, initial=first, desc=f"epoch {epoch + 1}/{config.epochs}",
                   leave=False, disable=not self.show)
        t0 = time.perf_counter()
        images = 0
        loss_acc = torch.zeros((), device=device)
        bad = torch.zeros((), dtype=torch.bool, device=device)
        since_log = 0
        for b, (x, y, _) in enumerate(loader.iter_from(first), start=first):
            gen = torch.Generator().manual_seed(batch_seed(config.seed, epoch, b, info.rank))
            x = self.train_tf(x, generator=gen)
            loss = self.step_fn(x, y)
            self.step += 1
            images += x.shape[0]
            since_log += 1
            loss_acc += loss * x.shape[0]
            bad |= ~torch.isfinite(loss)
            checkpoint_now = config.checkpoint_every_steps and self.step % config.checkpoint_every_steps == 0
            if since_log == config.log_every or checkpoint_now or b == n_batches - 1:
                if bool(any_process(info, bad)):  # every process stops together, none waits forever
                    kept = (f"{self.last_path} is the last good checkpoint (continue from it with --resume)"
                            if self.last_path.exists() else
                            f"no checkpoint was written yet, so nothing is kept in {self.out}")
                    raise TrainingError(
                        f"the loss became {float(loss):.4g} at epoch {epoch + 1}, batch {b + 1} (step {self.step}); "
                        f"training stopped and {kept}. Try a smaller --lr, --amp off, or check the data"
                    )
                self.epoch_loss_sum += float(loss_acc)
                self.epoch_seen += since_log * x.shape[0]
                loss_acc.zero_()
                if self.show:
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    rate = images * info.world_size / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix(loss=f"{self.epoch_loss_sum / max(self.epoch_seen, 1):.4f}", img_s=f"{rate:.0f}")
                bar.update(since_log)
                since_log = 0
                if checkpoint_now and b < n_batches - 1 and info.is_main:
                    self.save(self.last_path, epoch, b + 1)
        bar.close()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - t0
        train_loss = all_reduce_mean(info, self.epoch_loss_sum / max(self.epoch_seen, 1))
        rate = images * info.world_size / max(train_seconds, 1e-9)
        return train_loss, rate, train_seconds, images

    def validate(self) -> tuple[float, dict[str, float], float, float]:
        """Predict the validation split on every process's shard and gather it.

        Every process first takes the main process's BatchNorm statistics, the ones its
        checkpoint holds. Returns (mean AUC, per-class AUC, loss, seconds).
        """
        t1 = time.perf_counter()
        broadcast_buffers(self.info, self.model)
        pos, probs, val_loss = predict(self.eval_net, self.data.val_loader, self.test_tf, self.device,
                                       self.amp_dtype, progress=self.show, desc="validate")
        probs = gather_rows(self.info, pos, probs, len(self.data.val.rows))
        val_loss = all_reduce_mean(self.info, val_loss)
        val_auc, per_class = mean_auc(self.data.val.labels, probs)
        return val_auc, per_class, val_loss, time.perf_counter() - t1

    def end_epoch(self, epoch: int, row: dict[str, Any]) -> bool:
        """Log the epoch, keep the best checkpoint, write ``last.pt``; returns whether it improved.

        The best checkpoint has the highest validation mean AUC. A validation split with no class
        that has both positive and negative images (a tiny one) has no AUC: then the lowest
        validation loss decides, and the log says so.
        """
        self.scheduler.step()
        self.history.append(row)
        score = row["val_auc"] if math.isfinite(row["val_auc"]) else -row["val_loss"]
        improved = score > self.best_score
        if improved:
            self.best_auc, self.best_score, self.best_epoch = row["val_auc"], score, epoch + 1
        self.epoch_loss_sum, self.epoch_seen = 0.0, 0
        if self.info.is_main:
            self.save(self.last_path, epoch + 1, 0)
            if improved:
                ckpt.atomic_write_bytes(self.best_path, self.last_path.read_bytes())
            self.write_log()
        barrier(self.info)
        return improved


#: The files that make a folder hold a run (any one of them): it is never written over without --resume.
RUN_FILES = ("config.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt", "predictions_*.csv",
             "auc_*.csv", "auc_*.json", "table1_*.csv")


def run_files(out: Path) -> list[Path]:
    """The files of a run found in ``out`` (see :data:`RUN_FILES`)."""
    return sorted(p for pattern in RUN_FILES for p in out.glob(pattern) if p.is_file())


def _check_start(config: TrainConfig, info: DistInfo, last_path: Path, resume: bool) -> None:
    out = last_path.parent.parent
    found = run_files(out) if info.is_main and not resume else []
    if found:
        names = ", ".join(str(p.relative_to(out)) for p in found[:3]) + (", ..." if len(found) > 3 else "")
        how = ("pass --resume (resume=True) to continue it" if last_path.exists() else
               "it has no checkpoints/last.pt to continue from")
        raise CheckpointError(
            f"{out} already holds a run ({names}); {how}, or choose another --out folder (nothing was written)"
        )
    if resume and not last_path.exists():
        raise CheckpointError(f"nothing to resume: {last_path} does not exist (start without --resume)")
    if config.batch_size % info.world_size:
        raise ConfigError(
            f"batch_size={config.batch_size} does not split evenly over {info.world_size} processes"
        )


def _remove_partial_writes(out: Path, say: Callable[..., None]) -> None:
    """Delete what an interrupted atomic write left: ``.NAME.*.tmp`` files and write tests."""
    removed = []
    for folder in (out, out / "checkpoints"):
        removed += remove_stale_temporaries(folder) + remove_stale_temporaries(folder, ".write-test.*")
    if removed:
        say(f"removed {len(removed)} partial file(s) of an interrupted write in {out}: "
            + ", ".join(p.name for p in removed[:3]))


def train(config: TrainConfig, *, resume: bool | str = False, progress: bool = True, verbose: bool = True) -> RunResult:
    """Train a model with a config; the work behind ``cral train`` and the training chapter.

    Args:
        config: the recipe (see :class:`TrainConfig`); its defaults are the paper's.
        resume: ``True``: continue the run in ``config.out_dir`` from ``checkpoints/last.pt``
            (a finished run returns at once). ``"auto"``: resume when a checkpoint exists, else start
            (what notebooks use, so that a re-executed chapter reuses its run). ``False``: a run
            folder that already holds a checkpoint is refused, never overwritten.
        progress: show progress bars (epochs, batches with loss and images/s).
        verbose: print one summary line per epoch.

    Returns:
        A :class:`RunResult` with the history and the best validation AUC.

    Raises:
        ConfigError: a bad config value.
        CheckpointError: the run folder is not writable, the disk is too full, a checkpoint to
            resume is missing or belongs to another config or dataset.
        TrainingError: the loss became NaN or infinite (the last good checkpoint stays intact).
    """
    config.validate()
    if resume not in (True, False, "auto"):
        raise ConfigError(f"resume={resume!r} must be True, False or 'auto'")
    info, device = setup(config.device)
    out = Path(config.out_dir)
    last_path = out / "checkpoints" / "last.pt"
    if resume == "auto":
        resume = last_path.exists()
    show = progress and info.is_main and not bars_disabled()
    say = print if (verbose and info.is_main) else (lambda *a, **k: None)
    try:
        _check_start(config, info, last_path, resume)
        if info.is_main:
            _remove_partial_writes(out, say)
        data = _open_data(config, info, device, show)
        run = _Run(config, info, device, data, fresh=not resume, show=show, say=say)
        if resume:
            run.resume()
            if info.is_main:
                config.save(out / "config.yaml")
        run.wrap()
        _epochs(run)
        history_df = pd.DataFrame(run.history)
        if run.history and not math.isfinite(run.best_auc):
            say("note: the validation split has no class with both positive and negative images, so its AUC "
                "is undefined; checkpoints/best.pt is the epoch with the lowest validation loss")
        best = float(run.best_auc) if run.history else float("nan")
        result = RunResult(out, config, history_df, best, run.best_epoch)
        return broadcast(info, result) if info.enabled else result
    finally:
        cleanup(info)


def _epochs(run: _Run) -> None:
    """The epochs still to do: train, validate, log, checkpoint."""
    config = run.config
    if run.start_epoch >= config.epochs:
        run.say(f"{run.out}: all {config.epochs} epochs are done already")
    epochs_bar = tqdm(range(run.start_epoch, config.epochs), desc="epochs", disable=not run.show,
                      initial=run.start_epoch, total=config.epochs)
    for epoch in epochs_bar:
        lr_used = float(run.optimizer.param_groups[0]["lr"])
        train_loss, rate, train_seconds, _ = run.train_epoch(epoch)
        val_auc, per_class, val_loss, val_seconds = run.validate()
        row = {
            "epoch": epoch + 1,
            "step": run.step,
            "lr": lr_used,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_auc": val_auc,
            "images_per_s": rate,
            "train_seconds": train_seconds,
            "val_seconds": val_seconds,
            "val_auc_per_class": per_class,
        }
        improved = run.end_epoch(epoch, row)
        epochs_bar.set_postfix(val_auc=f"{val_auc:.4f}", best=f"{run.best_auc:.4f}")
        msg = (f"epoch {epoch + 1:>3}/{config.epochs}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
               f"val AUC {val_auc:.4f}{' *' if improved else '  '}  {rate:,.0f} img/s  "
               f"{train_seconds:.0f}+{val_seconds:.0f} s")
        if run.show:
            tqdm.write(msg)
        else:
            run.say(msg)
    epochs_bar.close()


def read_history(run_dir: str | Path) -> pd.DataFrame:
    """The metrics log of a run as a DataFrame (one row per epoch)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: {run_dir} is not a run folder, or no epoch finished yet")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pd.DataFrame(rows)


# Besides its own names, this module still exports those that lived here before it was split by
# job (the precision helpers, predictions, splits, the optimizer), for code that imports them from here.
__all__ = ["train", "start_model", "RunResult", "predict", "mean_auc", "amp_settings", "native_bf16", "read_history", "open_cache",
           "load_split", "make_optimizer", "autocast", "bars_disabled", "TrainStep"]
