"""Learnability check: train a small CRAL model on a synthetic release and report its test AUC.

The synthetic dataset (``cral synth``) must be learnable but not trivial: a small model
trained for a few minutes on a 2-core CPU should land well above 0.5 and well below 1.0. This
script trains CRAL with the book's fast recipe (:func:`cral_lib.train.fast_recipe`; every
default below is read from it, so the script measures what the chapters train) and the trainer
the book uses, evaluates the best checkpoint on the test split with 95% bootstrap intervals,
runs the constant-attention check (:func:`cral_lib.train.attention_check`: every attention map
replaced by its mean, the AUC drop with a paired interval), and prints the mean and per-class
AUC, the attention's within-map range and the time taken.

Usage::

    python benchmarks/synthetic_auc.py                      # makes the book's synthetic release (BOOK_SYNTHETIC)
    python benchmarks/synthetic_auc.py --data _build/data/synthetic
    python benchmarks/synthetic_auc.py --epochs 8 --amp bf16 --json results/auc_bf16.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from cral_lib.choices import ATTENTION_OPTIMIZERS
from cral_lib.metrics import MEAN_COUNTED
from cral_lib.synthetic import BOOK_SYNTHETIC
from cral_lib.train import attention_check, evaluate_run, fast_recipe, train

from _common import synthetic_release, write_json


#: The fast recipe and the book's synthetic dataset: this script's defaults.
FAST = fast_recipe()
BOOK = BOOK_SYNTHETIC


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="a synthetic (or real) release folder; default: make one")
    p.add_argument("--images", type=int, default=BOOK["n_images"],
                   help=f"images of the synthetic release to make (default {BOOK['n_images']}, the book's)")
    p.add_argument("--png-size", type=int, default=BOOK["image_size"],
                   help=f"side of the synthetic PNGs (default {BOOK['image_size']})")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the split and the training (default 0)")
    p.add_argument("--backbone", default=FAST.backbone, help=f"default {FAST.backbone}, as the fast recipe")
    p.add_argument("--attention", default=FAST.attention, choices=["att1", "att2", "none"])
    p.add_argument("--image-size", type=int, default=FAST.image_size, help=f"crop side (default {FAST.image_size})")
    p.add_argument("--cache-size", type=int, default=FAST.cache_size, help=f"cached image side (default {FAST.cache_size})")
    p.add_argument("--epochs", type=int, default=FAST.epochs,
                   help=f"epochs (default {FAST.epochs}); the lr drops after epoch epochs - 1")
    p.add_argument("--batch-size", type=int, default=FAST.batch_size)
    p.add_argument("--optimizer", default=FAST.optimizer, choices=["adamw", "sgd"])
    p.add_argument("--lr", type=float, default=FAST.lr, help=f"learning rate (default {FAST.lr:g})")
    p.add_argument("--attention-lr-scale", type=float, default=FAST.attention_lr_scale,
                   help=f"the attention branch learns at lr times this (default {FAST.attention_lr_scale:g})")
    p.add_argument("--attention-optimizer", default=FAST.attention_optimizer, choices=list(ATTENTION_OPTIMIZERS),
                   help=f"the attention branch's optimizer (default {FAST.attention_optimizer}; same: --optimizer)")
    p.add_argument("--amp", default=FAST.amp, choices=["auto", "bf16", "off"],
                   help=f"mixed precision (default {FAST.amp}; bf16 autocast works on this CPU too)")
    p.add_argument("--device", default="auto")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    p.add_argument("--workdir", help="where data and runs go (default: a folder in /tmp)")
    p.add_argument("--json", help="write the results as JSON to this file")
    return p.parse_args(argv)


def _num(x) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    x = float(x)
    return x if x == x and abs(x) != float("inf") else None


def _release_size(root: Path) -> int:
    """Images in the release folder (rows of its Data_Entry file)."""
    from cral_lib.data.release import find_csv, read_data_entry

    return int(len(read_data_entry(find_csv(root))))


def _precision(config) -> str:
    """The training precision ``amp`` resolved to on this machine (``auto``: bf16 on a CPU that has it)."""
    from cral_lib.device import amp_settings, resolve_device

    dtype, _ = amp_settings(config.amp, resolve_device(config.device))
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "cral-bench-auc")
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    if args.data:
        root = Path(args.data)
    else:
        root = synthetic_release(workdir, args.images, args.png_size, args.seed, progress=True)
    t_data = time.perf_counter() - t_start
    out = workdir / "runs" / f"{args.backbone}-{args.attention}-{args.image_size}px-{time.strftime('%Y%m%d-%H%M%S')}"
    # The book's fast recipe, with this script's overrides.
    config = fast_recipe(
        data_dir=str(root), out_dir=str(out), backbone=args.backbone, attention=args.attention,
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        attention_lr_scale=args.attention_lr_scale, attention_optimizer=args.attention_optimizer, amp=args.amp,
        lr_milestones=(max(1, args.epochs - 1),), image_size=args.image_size, cache_size=args.cache_size,
        seed=args.seed, device=args.device, eval_batch_size=128,
    )
    t0 = time.perf_counter()
    result = train(config, progress=False)
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    ev = evaluate_run(out, "test", n_boot=args.bootstrap, progress=False)
    t_eval = time.perf_counter() - t1
    check = attention_check(out, "test", device=args.device, n_boot=args.bootstrap) if args.attention != "none" else None
    mean = ev.auc.loc["Mean"]
    print()
    print(ev.classes.drop(columns=["note"]).round(3).to_string())
    print(ev.classes.attrs["rule"])
    print(f"\ntest mean AUC {mean['auc']:.3f} (95% CI {mean['ci_low']:.3f}-{mean['ci_high']:.3f}) "
          f"over {int(mean['n_classes'])} classes, {len(ev.labels)} test images; best epoch {result.best_epoch} "
          f"of {args.epochs}; data {t_data:.0f} s, training {t_train:.0f} s, evaluation {t_eval:.0f} s")
    if check is not None:
        print(f"attention: {check.summary()}")
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
                   f"({torch.get_num_threads()} threads)",
        "dataset": str(root), "dataset_images": _release_size(root), "precision": _precision(config),
        "config": config.to_dict(), "run_dir": str(out), "test_images": int(len(ev.labels)),
        "mean_auc": _num(mean["auc"]), "ci_low": _num(mean["ci_low"]), "ci_high": _num(mean["ci_high"]),
        "per_class": {c: _num(v) for c, v in ev.auc["auc"].drop("Mean").items()},
        "per_class_positives": {c: int(v) for c, v in ev.auc["n_pos"].drop("Mean").items()},
        "resample": ev.auc.attrs.get("resample", "images"), "training_seeds": 1,
        "mean_auc_counted": _num(ev.classes.loc[MEAN_COUNTED, "auc"]),
        "best_epoch": result.best_epoch, "best_val_auc": _num(result.best_val_auc),
        "attention": None if check is None else {
            "map_size": list(check.map_size), "within_map_range": check.within_map_range,
            "between_class_spread": check.between_class_spread, "mean_attention": check.mean_attention,
            "auc_constant_maps": check.auc_constant, "drop": check.drop, "drop_ci": list(check.ci),
            "p_value": check.p_value},
        "seconds": {"data": t_data, "train": t_train, "evaluate": t_eval},
        "history": json.loads(result.history.drop(columns=["val_auc_per_class"]).to_json(orient="records")),
    }
    if args.json:
        write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
