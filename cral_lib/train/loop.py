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
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError, TrainingError
from . import checkpoint as ckpt
from .config import RESUMABLE_FIELDS, TrainConfig
from .distributed import (all_reduce_mean, any_process, barrier, broadcast, broadcast_buffers, cleanup,
                          gather_rows, setup)


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


# ----------------------------------------------------------------------------- data


@dataclass
class SplitData:
    """One split of the dataset, as rows of the cache."""

    dataset: Any  # ChestXray14
    rows: np.ndarray  # cache rows, aligned with labels
    labels: np.ndarray  # (n, C) float32
    names: list[str]


def open_cache(config: TrainConfig, progress: bool = True):
    """Open (building it first if needed) the image cache a config asks for."""
    from ..data import build_cache
    from ..data.cache import ImageCache

    path = build_cache(config.data_dir, out=config.cache_dir, size=config.cache_size, progress=progress)
    return ImageCache(path)


def load_split(config: TrainConfig, split: str, cache) -> SplitData:
    """Read one split of the release folder and find its rows in the cache.

    Images the cache marks as unusable (skipped in lenient mode) are left out, and said so.
    """
    from ..data import ChestXray14

    # The images come from the cache, so the PNGs need not be on disk (a `cral download
    # --cache-only` folder holds only the CSVs, the lists and the cache).
    ds = ChestXray14(config.data_dir, split=split, val_fraction=config.val_fraction, seed=config.seed,
                     require_images=False)
    names = list(ds.frame["Image Index"])
    rows = np.asarray(cache.rows(names), dtype=np.int64)
    labels = np.asarray(ds.labels, dtype=np.float32)
    valid = np.asarray(cache.valid)[rows]
    if not valid.all():
        print(f"{split}: leaving out {int((~valid).sum())} images the cache could not read")
        keep = np.flatnonzero(valid)
        rows, labels, names = rows[keep], labels[keep], [names[i] for i in keep]
    if len(rows) == 0:
        raise ConfigError(f"the {split} split of {config.data_dir} is empty")
    return SplitData(ds, rows, labels, names)


def subset_train(split: SplitData, n: int | None, seed: int) -> SplitData:
    """Keep ``n`` training images (whole random sample, seeded), or all when ``n`` is None."""
    if n is None or n >= len(split.rows):
        return split
    keep = np.sort(np.random.default_rng(seed).choice(len(split.rows), size=n, replace=False))
    return SplitData(split.dataset, split.rows[keep], split.labels[keep], [split.names[i] for i in keep])


# ----------------------------------------------------------------------------- optimizer


def make_optimizer(model, config: TrainConfig):
    """The optimizer a config asks for: the paper's SGD with momentum, or AdamW.

    The parameters of the attention branch (``model.attention``) form a second group that
    learns at ``config.lr * config.attention_lr_scale`` when that scale is not 1; the learning
    rate schedule scales both groups alike. On a GPU the optimizer is PyTorch's fused one: one
    kernel for all the parameters, and with fp16 the gradient scaler hands it the overflow flag
    on the GPU instead of reading it on the CPU, which would stop the CPU at every step until the
    GPU has finished.
    """
    import torch

    fused = all(p.device.type == "cuda" for p in model.parameters()) or None

    attention = getattr(model, "attention", None)
    if config.attention_lr_scale != 1 and attention is not None:
        own = {id(p) for p in attention.parameters()}
        params = [
            {"params": [p for p in model.parameters() if id(p) not in own]},
            {"params": list(attention.parameters()), "lr": config.lr * config.attention_lr_scale},
        ]
    else:
        params = model.parameters()
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           fused=fused)


# ----------------------------------------------------------------------------- precision


def native_bf16(device) -> bool:
    """Whether a CUDA device computes in bfloat16 natively (Ampere, compute capability 8.0, and newer).

    ``torch.cuda.is_bf16_supported()`` also says True where bfloat16 is only emulated (a T4 or a
    V100, compute capability 7.x): it runs there, but far slower than float16, so mixed precision
    must not choose it. ROCm GPUs count as native.
    """
    import torch

    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    if torch.version.hip:
        return True
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index)[0] >= 8


def amp_settings(amp: str, device) -> tuple[Any, bool]:
    """Return (autocast dtype or None, whether a gradient scaler is needed).

    ``auto``: bfloat16 on GPUs with native bfloat16, float16 with a gradient scaler on older
    GPUs (Colab's T4), full precision on the CPU.
    """
    import warnings

    import torch

    device = torch.device(device)
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None, False
    if amp == "auto":
        return (torch.bfloat16, False) if native_bf16(device) else (torch.float16, True)
    if amp == "bf16":
        if device.type == "cuda" and not native_bf16(device):
            name = torch.cuda.get_device_name(device)
            warnings.warn(
                f"amp='bf16' on {name}, which has no native bfloat16 (compute capability "
                f"{'.'.join(map(str, torch.cuda.get_device_capability(device)))}): it is emulated and slow; "
                "amp='fp16' or 'auto' is much faster there",
                stacklevel=2,
            )
        return torch.bfloat16, False
    if device.type == "cpu":
        raise ConfigError(f"amp='fp16' needs a GPU (device {device}); on the CPU use amp='bf16' or 'off'")
    return torch.float16, True


def autocast(device, dtype):
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ----------------------------------------------------------------------------- predictions


def bars_disabled() -> bool:
    """True when the environment asks for no progress bars (``TQDM_DISABLE=1``, as the book build sets)."""
    import os

    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def predict(model, loader, transform, device, amp_dtype=None, progress: bool = False, desc: str = "predict"):
    """Probabilities for every row a loader yields: returns (positions, probs (n, C), mean BCE loss).

    The loader yields (uint8 images, labels, positions); ``transform`` is the test transform.
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    model.eval()
    pos_all, prob_all, loss_all = [], [], []
    # kept on the device until the end: reading a value back after every batch would make the
    # CPU wait for the GPU each time
    count = 0
    with torch.inference_mode():
        for x, y, pos in tqdm(loader, desc=desc, leave=False, disable=not progress or bars_disabled()):
            x = transform(x)
            with autocast(device, amp_dtype):
                logits = model(x)
            logits = logits.float()
            loss_all.append(F.binary_cross_entropy_with_logits(logits, y, reduction="sum"))
            count += y.numel()
            prob_all.append(torch.sigmoid(logits))
            pos_all.append(pos.cpu().numpy() if hasattr(pos, "cpu") else np.asarray(pos))
    positions = np.concatenate(pos_all) if pos_all else np.zeros(0, dtype=np.int64)
    probs = torch.cat(prob_all).cpu().numpy() if prob_all else np.zeros((0, 0), dtype=np.float32)
    loss_sum = float(torch.stack(loss_all).cpu().double().sum()) if loss_all else 0.0
    return positions, probs, loss_sum / max(count, 1)


def mean_auc(labels: np.ndarray, probs: np.ndarray) -> tuple[float, dict[str, float]]:
    """Mean ROC AUC over the classes where it is defined, and the per-class values."""
    from .. import CLASSES
    from ..metrics import auc_table

    classes = list(CLASSES)[: labels.shape[1]] if labels.shape[1] <= len(CLASSES) else [
        f"class_{i}" for i in range(labels.shape[1])
    ]
    table = auc_table(labels, probs, classes=classes)
    per_class = {c: float(table.loc[c, "auc"]) for c in classes}
    return float(table.loc["Mean", "auc"]), per_class


# ----------------------------------------------------------------------------- the loop


def _rng_state(device) -> dict[str, Any]:
    import torch

    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device) -> None:
    import torch

    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def _checkpoint_bytes(model) -> int:
    n = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    # model + SGD momentum, in float32, for last.pt, best.pt and a temporary copy
    return int(n * 4 * 2 * 3 * 1.1) + (16 << 20)


def _batch_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + batch) * 131 + rank


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
    import pandas as pd
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from ..data import BatchLoader, TestTransform, TrainTransform
    from ..models import build_model

    config.validate()
    if resume not in (True, False, "auto"):
        raise ConfigError(f"resume={resume!r} must be True, False or 'auto'")
    info, device = setup(config.device)
    out = Path(config.out_dir)
    ckpt_dir = out / "checkpoints"
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    if resume == "auto":
        resume = last_path.exists()
    show = progress and info.is_main and not bars_disabled()
    say = print if (verbose and info.is_main) else (lambda *a, **k: None)
    try:
        if info.is_main and last_path.exists() and not resume:
            raise CheckpointError(
                f"{out} already holds a run ({last_path}); pass --resume (resume=True) to continue it, "
                "or choose another --out folder"
            )
        if resume and not last_path.exists():
            raise CheckpointError(f"nothing to resume: {last_path} does not exist (start without --resume)")
        if config.batch_size % info.world_size:
            raise ConfigError(
                f"batch_size={config.batch_size} does not split evenly over {info.world_size} processes"
            )

        # ---- data (the main process builds the cache; the others wait and open it)
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
        channels_last = config.channels_last if config.channels_last is not None else device.type == "cuda"
        train_tf = TrainTransform(size=config.image_size, scale=config.crop_scale, channels_last=channels_last)
        test_tf = TestTransform(size=config.image_size, resize=round(config.image_size * 256 / 224))

        # ---- model, optimizer, schedule, precision
        torch.manual_seed(config.seed)
        model = build_model(**config.model_kwargs, weights=config.weights).to(device)
        if config.prior_bias and not resume:
            prevalence = train_split.labels.mean(axis=0).clip(1e-4, 1 - 1e-4)
            with torch.no_grad():
                model.classifier_bias.copy_(torch.from_numpy(np.log(prevalence / (1 - prevalence))))
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if info.is_main:
            ckpt.check_writable(out, _checkpoint_bytes(model))
        optimizer = make_optimizer(model, config)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(config.lr_milestones), gamma=config.lr_gamma
        )
        amp_dtype, use_scaler = amp_settings(config.amp, device)
        scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)

        # ---- resume
        start_epoch, start_batch, step = 0, 0, 0
        best_auc, best_score, best_epoch, history = -math.inf, -math.inf, 0, []
        epoch_loss_sum, epoch_seen = 0.0, 0
        if resume:
            state = ckpt.load_checkpoint(last_path, map_location="cpu")
            ckpt.check_compatible(state, config.to_dict(), fingerprint, RESUMABLE_FIELDS, last_path)
            model.load_state_dict(ckpt.strip_module_prefix(state["model"]))
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            _set_rng_state(state.get("rng", {}), device)
            start_epoch, start_batch, step = int(state["epoch"]), int(state["batch"]), int(state["step"])
            best_auc = float(state["best_val_auc"]) if state.get("best_val_auc") is not None else -math.inf
            best_epoch = int(state.get("best_epoch", 0))
            best_score = float(state.get("best_score", best_auc))
            history = list(state.get("history", []))
            epoch_loss_sum = float(state.get("epoch_loss_sum", 0.0))
            epoch_seen = int(state.get("epoch_seen", 0))
            if start_batch >= len(train_loader):
                raise CheckpointError(f"{last_path} points past the end of epoch {start_epoch + 1}; it is corrupt")
            say(f"resuming {out} at epoch {start_epoch + 1}, batch {start_batch} (step {step})")
        if info.is_main:
            config.save(out / "config.yaml")

        # Predictions run on each process's shard without DDP's synchronization. torch.compile
        # wraps DDP, not the reverse, so that gradient all-reduces overlap the compiled backward.
        net = model
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        eval_net = model
        if config.compile:
            net, eval_net = torch.compile(net), torch.compile(model)

        def save(path: Path, epoch: int, batch: int) -> None:
            state = {
                "format": ckpt.FORMAT,
                "cral_lib": _version(),
                "model": ckpt.strip_module_prefix(model.state_dict()),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if use_scaler else None,
                "rng": _rng_state(device),
                "epoch": epoch,
                "batch": batch,
                "step": step,
                "epoch_loss_sum": epoch_loss_sum,
                "epoch_seen": epoch_seen,
                "config": config.to_dict(),
                "model_config": dict(model.config),
                "data_fingerprint": fingerprint,
                "best_val_auc": None if best_auc == -math.inf else best_auc,
                "best_epoch": best_epoch,
                "best_score": best_score,
                "history": history,
            }
            ckpt.save_checkpoint(state, path)

        def write_log() -> None:
            text = "".join(json.dumps(row) + "\n" for row in history)
            ckpt.atomic_write_text(out / "metrics.jsonl", text)

        if start_epoch >= config.epochs:
            say(f"{out}: all {config.epochs} epochs are done already")
        epochs_bar = tqdm(range(start_epoch, config.epochs), desc="epochs", disable=not show,
                          initial=start_epoch, total=config.epochs)
        for epoch in epochs_bar:
            model.train()
            lr_used = float(optimizer.param_groups[0]["lr"])
            train_loader.set_epoch(epoch)
            first = start_batch if epoch == start_epoch else 0
            if first == 0:
                epoch_loss_sum, epoch_seen = 0.0, 0
            n_batches = len(train_loader)
            bar = tqdm(total=n_batches, initial=first, desc=f"epoch {epoch + 1}/{config.epochs}",
                       leave=False, disable=not show)
            t0 = time.perf_counter()
            images = 0
            loss_acc = torch.zeros((), device=device)
            bad = torch.zeros((), dtype=torch.bool, device=device)
            since_log = 0
            for b, (x, y, _) in enumerate(train_loader.iter_from(first), start=first):
                gen = torch.Generator().manual_seed(_batch_seed(config.seed, epoch, b, info.rank))
                x = train_tf(x, generator=gen)
                with autocast(device, amp_dtype):
                    logits = net(x)
                loss = F.binary_cross_entropy_with_logits(logits.float(), y)  # Eq. 10, mean over classes
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                step += 1
                images += x.shape[0]
                since_log += 1
                loss_acc += loss.detach() * x.shape[0]
                bad |= ~torch.isfinite(loss.detach())
                checkpoint_now = config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0
                if since_log == config.log_every or checkpoint_now or b == n_batches - 1:
                    if bool(any_process(info, bad)):  # every process stops together, none waits forever
                        raise TrainingError(
                            f"the loss became {float(loss.detach()):.4g} at epoch {epoch + 1}, batch {b + 1} (step {step}); "
                            f"training stopped and {last_path} is the last good checkpoint. Try a smaller --lr, "
                            "--amp off, or check the data"
                        )
                    epoch_loss_sum += float(loss_acc)
                    epoch_seen += since_log * x.shape[0]
                    loss_acc.zero_()
                    if show:
                        if device.type == "cuda":
                            torch.cuda.synchronize(device)
                        rate = images * info.world_size / max(time.perf_counter() - t0, 1e-9)
                        bar.set_postfix(loss=f"{epoch_loss_sum / max(epoch_seen, 1):.4f}", img_s=f"{rate:.0f}")
                    bar.update(since_log)
                    since_log = 0
                    if checkpoint_now and b < n_batches - 1 and info.is_main:
                        save(last_path, epoch, b + 1)
            bar.close()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_seconds = time.perf_counter() - t0
            train_loss = all_reduce_mean(info, epoch_loss_sum / max(epoch_seen, 1))
            rate = images * info.world_size / max(train_seconds, 1e-9)

            # ---- validation on every process's shard, gathered; every process first takes the
            # main process's BatchNorm statistics, the ones its checkpoint holds
            t1 = time.perf_counter()
            broadcast_buffers(info, model)
            pos, probs, val_loss = predict(eval_net, val_loader, test_tf, device, amp_dtype, progress=show, desc="validate")
            probs = gather_rows(info, pos, probs, len(val_split.rows))
            val_loss = all_reduce_mean(info, val_loss)
            val_auc, per_class = mean_auc(val_split.labels, probs)
            scheduler.step()
            row = {
                "epoch": epoch + 1,
                "step": step,
                "lr": lr_used,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_auc": val_auc,
                "images_per_s": rate,
                "train_seconds": train_seconds,
                "val_seconds": time.perf_counter() - t1,
                "val_auc_per_class": per_class,
            }
            history.append(row)
            # The best checkpoint has the highest validation mean AUC. A validation split with no
            # class that has both positive and negative images (a tiny one) has no AUC: then the
            # lowest validation loss decides, and the log says so.
            score = val_auc if math.isfinite(val_auc) else -val_loss
            improved = score > best_score
            if improved:
                best_auc, best_score, best_epoch = val_auc, score, epoch + 1
            epoch_loss_sum, epoch_seen = 0.0, 0
            if info.is_main:
                save(last_path, epoch + 1, 0)
                if improved:
                    ckpt.atomic_write_bytes(best_path, last_path.read_bytes())
                write_log()
            barrier(info)
            epochs_bar.set_postfix(val_auc=f"{val_auc:.4f}", best=f"{best_auc:.4f}")
            msg = (f"epoch {epoch + 1:>3}/{config.epochs}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
                   f"val AUC {val_auc:.4f}{' *' if improved else '  '}  {rate:,.0f} img/s  "
                   f"{train_seconds:.0f}+{row['val_seconds']:.0f} s")
            if show:
                tqdm.write(msg)
            else:
                say(msg)
        epochs_bar.close()
        history_df = pd.DataFrame(history)
        if history and not math.isfinite(best_auc):
            say("note: the validation split has no class with both positive and negative images, so its AUC "
                "is undefined; checkpoints/best.pt is the epoch with the lowest validation loss")
        result = RunResult(out, config, history_df, float(best_auc) if history else float("nan"), best_epoch)
        return broadcast(info, result) if info.enabled else result
    finally:
        cleanup(info)


def _version() -> str:
    from .._version import __version__

    return __version__


def read_history(run_dir: str | Path):
    """The metrics log of a run as a DataFrame (one row per epoch)."""
    import pandas as pd

    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: {run_dir} is not a run folder, or no epoch finished yet")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pd.DataFrame(rows)


__all__ = ["train", "RunResult", "predict", "mean_auc", "amp_settings", "native_bf16", "read_history", "open_cache", "load_split"]
