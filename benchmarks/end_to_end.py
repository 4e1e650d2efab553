"""End-to-end training throughput: the model alone versus the real training loop.

For each backbone (with att1 by default) it measures, in one run and with the same settings
(mixed precision, channels_last, batch size, crop size):

(a) the **model step**: forward, loss, backward and SGD step on random tensors that are already
    on the device — the most the GPU can do;
(b) the **training loop**: :func:`cral_lib.train.train` itself on a release folder — cache rows
    gathered and copied to the device, batched augmentation there, mixed precision, optimizer step,
    loss bookkeeping, progress — timed over its second epoch (the first warms up), validation
    excluded;

and prints both with the ratio b/a (target on a GPU: >= 0.9), the peak GPU memory of each, and
the projected wall time of the paper's recipe (30 epochs over the 77,872 training images of the
official train_val split after a 10% patient-level validation split, plus validation).

The data: ``--data DIR`` (a release folder, real or synthetic), or a synthetic release made with
``cral synth`` and ``cral prepare`` of ``--images`` images (say which fraction of ChestX-ray14 it is
when you report a figure; the rate does not depend on the dataset's size once the cache is built).

Usage::

    python benchmarks/end_to_end.py                                  # GPU: R-50 and D-121 + att1
    python benchmarks/end_to_end.py --device cuda --images 20000 --json results/end_to_end.json
    python benchmarks/end_to_end.py --smoke                          # tiny CPU run (CI keeps it working)
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from cral_lib.data import ChestXray14, build_cache
from cral_lib.device import amp_settings
from cral_lib.models import build_model
from cral_lib.train import TrainConfig, TrainStep, make_optimizer, train

from _common import device_name, precision_name, synthetic_release, time_steps, write_json

#: training images per epoch of the paper's recipe (86,524 train_val images; ~10% of the
#: patients held out for validation leaves about 77,872 — the figure used for projections)
PAPER_TRAIN_IMAGES = 77_872
PAPER_VAL_IMAGES = 86_524 - PAPER_TRAIN_IMAGES
PAPER_EPOCHS = 30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cuda, cuda:N, cpu")
    p.add_argument("--data", help="a release folder (default: make a synthetic one)")
    p.add_argument("--images", type=int, default=None, help="synthetic images to make (default 20000 on GPU, 320 on CPU)")
    p.add_argument("--png-size", type=int, default=256, help="side of the synthetic PNGs (default 256)")
    p.add_argument("--workdir", help="where the synthetic data and runs go (default: a folder in /tmp, reused)")
    p.add_argument("--backbones", nargs="+", default=None, help="default: resnet50 densenet121 (GPU), resnet18 (CPU)")
    p.add_argument("--attention", default="att1", choices=["att1", "att2", "none"])
    p.add_argument("--batch-size", type=int, default=None, help="default 64 (GPU), 16 (CPU)")
    p.add_argument("--image-size", type=int, default=None, help="crop side (default 224 on GPU, 64 on CPU)")
    p.add_argument("--cache-size", type=int, default=None, help="cached image side (default 256 on GPU, 73 on CPU)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 100 GPU, 4 CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed model steps first (default 20 GPU, 1 CPU)")
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    p.add_argument("--compile", action="store_true", help="torch.compile the model in both measurements")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--smoke", action="store_true", help="the smallest CPU configuration (seconds)")
    p.add_argument("--json", help="write the results as JSON to this file")
    args = p.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    gpu = device.type == "cuda"
    if args.smoke:
        device, gpu = torch.device("cpu"), False
    args.device = device
    defaults = dict(images=20_000 if gpu else 320, backbones=["resnet50", "densenet121"] if gpu else ["resnet18"],
                    batch_size=64 if gpu else 16, image_size=224 if gpu else 64, cache_size=256 if gpu else 73,
                    steps=100 if gpu else 4, warmup=20 if gpu else 1)
    if args.smoke:
        defaults.update(images=160, steps=2)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def release(args: argparse.Namespace, workdir: Path) -> Path:
    """The release folder to train on, with its cache built (``cral synth`` + ``cral prepare``)."""
    if args.data:
        root = Path(args.data)
    else:
        root = synthetic_release(workdir, args.images, args.png_size, progress=True)
    t0 = time.perf_counter()
    build_cache(root, size=args.cache_size, progress=True)
    print(f"cache of {root} at {args.cache_size} px ready in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


def config_for(args: argparse.Namespace, root: Path, out: Path, backbone: str, max_images: int):
    return TrainConfig(
        data_dir=str(root), out_dir=str(out), backbone=backbone, attention=args.attention,
        weights=None, epochs=2, batch_size=args.batch_size, image_size=args.image_size,
        cache_size=args.cache_size, amp=args.amp, compile=args.compile, device=str(args.device),
        max_train_images=max_images, val_fraction=0.02, eval_batch_size=max(args.batch_size, 128),
        log_every=25 if args.device.type == "cuda" else 1,
    )


def model_step_rate(args: argparse.Namespace, config) -> dict[str, Any]:
    """(a) Training steps of the same model, same settings, on random tensors on the device."""
    device = args.device
    torch.manual_seed(0)
    channels_last = device.type == "cuda"
    model = build_model(**config.model_kwargs, weights=None).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if args.compile else model
    dtype, use_scaler = amp_settings(config.amp, device)
    opt = make_optimizer(model, config)
    train_step = TrainStep(net, opt, device, dtype, use_scaler)  # the training loop's own step
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=gen).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(args.batch_size, config.num_classes, generator=gen) < 0.1).float().to(device)

    elapsed, peak_bytes = time_steps(functools.partial(train_step, x, y), device, args.warmup, args.steps)
    peak = peak_bytes / 2**30 if peak_bytes is not None else None
    del model, net, opt, train_step, x, y
    return {"images_per_s": args.batch_size * args.steps / elapsed, "peak_gib": peak,
            "precision": precision_name(dtype)}


def loop_rate(config) -> dict[str, Any]:
    """(b) The real training loop, :func:`cral_lib.train.train`, timed over its second epoch."""
    device = torch.device(config.device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    result = train(config, progress=False, verbose=True)
    wall = time.perf_counter() - t0
    hist = result.history
    second = hist.iloc[-1]
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    n_val = len(ChestXray14(config.data_dir, "val", val_fraction=config.val_fraction, seed=config.seed))
    return {
        "images_per_s": float(second["images_per_s"]),
        "first_epoch_images_per_s": float(hist.iloc[0]["images_per_s"]),
        "val_images_per_s": n_val / max(float(second["val_seconds"]), 1e-9),
        "val_seconds": float(second["val_seconds"]),
        "train_seconds": float(second["train_seconds"]),
        "wall_seconds": wall,
        "peak_gib": peak,
    }


def projection(train_rate: float, val_rate: float) -> float:
    """Projected minutes of the paper's 30-epoch recipe at these measured rates."""
    per_epoch = PAPER_TRAIN_IMAGES / train_rate + PAPER_VAL_IMAGES / val_rate
    return PAPER_EPOCHS * per_epoch / 60


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "cral-bench-e2e")
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"device: {device_name(args.device)}; torch {torch.__version__}; batch {args.batch_size}, "
          f"{args.image_size} px crops of {args.cache_size} px; amp {args.amp}; compile {args.compile}", flush=True)
    root = release(args, workdir)
    rows = []
    for backbone in args.backbones:
        max_images = args.batch_size * args.steps
        out = workdir / "runs" / f"{backbone}-{args.attention}-{time.strftime('%Y%m%d-%H%M%S')}"
        config = config_for(args, root, out, backbone, max_images)
        a = model_step_rate(args, config)
        b = loop_rate(config)
        row = {
            "backbone": backbone, "attention": args.attention, "precision": a["precision"],
            "model_images_per_s": a["images_per_s"], "loop_images_per_s": b["images_per_s"],
            "ratio": b["images_per_s"] / a["images_per_s"], "model_peak_gib": a["peak_gib"],
            "loop_peak_gib": b["peak_gib"], "loop_first_epoch_images_per_s": b["first_epoch_images_per_s"],
            "loop_val_images_per_s": b["val_images_per_s"],
            "projected_paper_recipe_minutes": projection(b["images_per_s"], b["val_images_per_s"]),
        }
        rows.append(row)
        peak = f", peak {row['loop_peak_gib']:.1f} GiB" if row["loop_peak_gib"] is not None else ""
        print(f"{backbone}+{args.attention} ({row['precision']}): model {row['model_images_per_s']:,.1f} img/s, "
              f"loop {row['loop_images_per_s']:,.1f} img/s, ratio b/a {row['ratio']:.2f}{peak}; "
              f"paper recipe (30 epochs, 77,872 images) projected {row['projected_paper_recipe_minutes']:,.0f} min",
              flush=True)
    result = {
        "device": device_name(args.device), "torch": torch.__version__, "batch_size": args.batch_size,
        "image_size": args.image_size, "cache_size": args.cache_size, "amp": args.amp, "compile": args.compile,
        "steps": args.steps, "dataset": str(root), "images": args.images if not args.data else None, "rows": rows,
    }
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
