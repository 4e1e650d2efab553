"""Where the time of one training step goes: waiting for the batch, augmentation, the model.

It runs the pieces of ``cral_lib.train.train``'s inner loop one by one on a release folder (the
cache, ``BatchLoader`` with its prefetch thread, ``TrainTransform`` on the device, forward,
Eq. 10, backward, optimizer step) and times each, synchronizing the GPU between them, so that a
training loop slower than its model step (``end_to_end.py``'s b/a below 1) shows which part is
to blame. With ``--trace DIR`` it also records the timed steps with ``torch.profiler`` and
writes a Chrome trace (open it in https://ui.perfetto.dev) and the table of the most expensive
operators.

Usage::

    python benchmarks/step_breakdown.py --data _build/data/synthetic                 # the book's fast mode, CPU
    python benchmarks/step_breakdown.py --device cuda --backbone resnet50 --image-size 224 \\
        --cache-size 256 --batch-size 64 --trace prof/                               # the paper's settings
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from cral_lib.data.augment import TrainTransform
from cral_lib.data.loader import BatchLoader
from cral_lib.device import amp_settings, resolve_device
from cral_lib.models import build_model
from cral_lib.train import TrainStep, fast_recipe, make_optimizer
from cral_lib.train.splits import load_split, open_cache

from _common import device_name, precision_name, synthetic_release, write_json
from _common import sync as common_sync


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="a release folder (default: make a 300-image synthetic one)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cuda, cuda:N, cpu")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--attention", default="att1", choices=["att1", "att2", "none"])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--cache-size", type=int, default=73)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    p.add_argument("--steps", type=int, default=30, help="timed steps (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    p.add_argument("--trace", help="also profile the timed steps with torch.profiler into this folder")
    p.add_argument("--json", help="write the results as JSON to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.trace and Path(args.trace).exists() and not Path(args.trace).is_dir():
        raise SystemExit(f"--trace {args.trace} is a file; give a folder for the profile")
    device = resolve_device(args.device)
    if args.data:
        root = Path(args.data)
    else:
        root = synthetic_release(Path(tempfile.gettempdir()) / "cral-bench-breakdown", 300, 256)
    config = fast_recipe(data_dir=str(root), out_dir=str(Path(tempfile.gettempdir()) / "unused"), device=str(device),
                         backbone=args.backbone, attention=args.attention,
                         variant="cral" if args.attention != "none" else "no_attention",
                         image_size=args.image_size, cache_size=args.cache_size, batch_size=args.batch_size,
                         amp=args.amp, prior_bias=False)
    cache = open_cache(config, progress=False)
    split = load_split(config, "train", cache)
    if len(split.rows) < args.batch_size:
        raise SystemExit(f"{root} has {len(split.rows)} training images, fewer than one batch of {args.batch_size}")
    loader = BatchLoader(cache, split.rows, split.labels, args.batch_size, shuffle=True, drop_last=True, seed=0,
                         device=device, prefetch=config.prefetch)
    channels_last = device.type == "cuda"
    tf = TrainTransform(size=args.image_size, scale=config.crop_scale, channels_last=channels_last)
    model = build_model(**config.model_kwargs, weights=None).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, config)
    dtype, use_scaler = amp_settings(config.amp, device)
    train_step = TrainStep(model, opt, device, dtype, use_scaler)  # the training loop's own step, in two halves

    def sync():
        common_sync(device)

    def batches():
        epoch = 0
        while True:
            loader.set_epoch(epoch)
            yield from loader
            epoch += 1

    parts = {"wait for batch": 0.0, "augment": 0.0, "forward": 0.0, "backward + optimizer": 0.0}
    stream = batches()
    profiler = None
    total = args.warmup + args.steps
    for i in range(total):
        if i == args.warmup and args.trace:
            profiler = torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU]
                + ([torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else []))
            profiler.__enter__()
        sync()
        t0 = time.perf_counter()
        x, y, _ = next(stream)
        sync()
        t1 = time.perf_counter()
        x = tf(x, generator=torch.Generator().manual_seed(i))
        sync()
        t2 = time.perf_counter()
        loss = train_step.loss(x, y)
        sync()
        t3 = time.perf_counter()
        train_step.update(loss)
        sync()
        t4 = time.perf_counter()
        if i >= args.warmup:
            for k, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[k] += dt
    if profiler is not None:
        profiler.__exit__(None, None, None)
        out = Path(args.trace)
        out.mkdir(parents=True, exist_ok=True)
        profiler.export_chrome_trace(str(out / "trace.json"))
        sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
        (out / "operators.txt").write_text(profiler.key_averages().table(sort_by=sort, row_limit=30))
        print(f"profile: {out / 'trace.json'} (Chrome trace), {out / 'operators.txt'} (top operators)")

    step_s = sum(parts.values()) / args.steps
    name, precision = device_name(device), precision_name(dtype)
    print(f"{name}: {args.backbone} + {args.attention}, {args.image_size} px crops of {args.cache_size} px, "
          f"batch {args.batch_size}, precision {precision}")
    for k, v in parts.items():
        print(f"  {k:22s} {1000 * v / args.steps:9.2f} ms/step  {100 * v / (step_s * args.steps):5.1f}%")
    print(f"  {'step':22s} {1000 * step_s:9.2f} ms/step  = {args.batch_size / step_s:,.1f} img/s")
    result = {
        "device": name, "torch": torch.__version__, "backbone": args.backbone, "attention": args.attention,
        "image_size": args.image_size, "cache_size": args.cache_size, "batch_size": args.batch_size,
        "precision": precision, "steps": args.steps,
        "ms_per_step": {k: 1000 * v / args.steps for k, v in parts.items()},
        "share": {k: v / (step_s * args.steps) for k, v in parts.items()},
        "images_per_s": args.batch_size / step_s, "dataset": str(root),
    }
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
