"""The attention branch's optimizer and rate, side by side: which ones keep att1's maps alive?

The book's fast recipe trains the network with AdamW, and AdamW's steps are about ``lr`` in size
for every weight, whatever its gradient. att1 (two 3x3 convolutions with ReLU, a 1x1
convolution, a sigmoid) has no normalization to absorb such steps: its activations grow, its
ReLUs die and its scores reach values where the sigmoid is flat at 0 or 1, which is where its
gradient vanishes and AdamW keeps pushing (``TrainConfig.attention_optimizer``). This script
trains the fast recipe once per candidate (the branch's optimizer and rate; everything else as
:func:`cral_lib.train.fast_recipe`), with :mod:`synthetic_auc` (test AUC with its interval, the
constant-attention check), and measures the branch's health on the test split:

- the ReLU units of att1's two 3x3 convolutions that are never active on any test image (dead);
- the share of attention values below 0.01 and above 0.99 (a saturated sigmoid);
- the within-map range, the between-class spread and the mean of the maps.

Usage::

    python benchmarks/attention_optimizer.py --data _build/data/synthetic --json benchmarks/results/attention_optimizer_cpu.json
    python benchmarks/attention_optimizer.py --candidates adamw:1 sgd:10     # a subset (optimizer:scale)
"""

from __future__ import annotations

import argparse
import os
import platform

import torch

from cral_lib.device import autocast, eval_precision, resolve_device
from cral_lib.train import fast_recipe
from cral_lib.train.evaluate import load_run_model, split_loader
from cral_lib.train.probe import att1_activity

import synthetic_auc
from _common import write_json

FAST = fast_recipe()
#: (optimizer of the branch, attention_lr_scale): AdamW at the network's rate and below it, the
#: fast recipe's former choice (AdamW at a hundredth), and SGD at a tenth of, at, and at ten times
#: the paper's 0.01.
CANDIDATES = ("adamw:1", "adamw:0.1", "adamw:0.01", "sgd:1", "sgd:10", "sgd:100")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), metavar="OPT:SCALE",
                   help="the branch's optimizer (adamw or sgd) and attention_lr_scale, e.g. sgd:10 "
                        f"(default: {' '.join(CANDIDATES)})")
    p.add_argument("--json", help="write the results as JSON to this file")
    known, rest = p.parse_known_args(argv)
    known.rest = rest  # passed on to synthetic_auc.py (--data, --epochs, --workdir, ...)
    return known


def candidate(text: str) -> tuple[str, float]:
    opt, _, scale = text.partition(":")
    if opt not in ("adamw", "sgd") or not scale:
        raise SystemExit(f"candidate {text!r}: write OPTIMIZER:SCALE with OPTIMIZER adamw or sgd, e.g. sgd:10")
    try:
        return opt, float(scale)
    except ValueError:
        raise SystemExit(f"candidate {text!r}: the scale {scale!r} is not a number; e.g. sgd:10") from None


def branch_health(run_dir: str, device: str = "auto") -> dict:
    """Dead ReLU units of att1's two 3x3 convolutions and saturated attention values, on the test split."""
    dev = resolve_device(device)
    model, config, _ = load_run_model(run_dir, "best", dev)
    att = model.attention
    loader, transform, _ = split_loader(config, "test", dev, 128, progress=False)
    dtype = eval_precision(config.amp, dev)
    active1 = torch.zeros(att.conv1.out_channels, dtype=torch.bool)
    active2 = torch.zeros(att.conv2.out_channels, dtype=torch.bool)
    low = high = total = 0
    model.eval()
    with torch.inference_mode():
        for x, _, _ in loader:
            with autocast(dev, dtype):
                fired1, fired2, _, a = att1_activity(att, model.forward_features(transform(x)))
            active1 |= fired1
            active2 |= fired2
            low += int((a < 0.01).sum())
            high += int((a > 0.99).sum())
            total += a.numel()
    return {"units": [int(active1.numel()), int(active2.numel())],
            "dead_units": [int((~active1).sum()), int((~active2).sum())],
            "share_below_0.01": low / total, "share_above_0.99": high / total}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    rows = []
    for text in args.candidates:
        opt, scale = candidate(text)
        print(f"\n== attention branch: {opt}, lr {FAST.lr * scale:g} (attention_lr_scale {scale:g})", flush=True)
        r = synthetic_auc.main([*args.rest, "--attention-optimizer", opt, "--attention-lr-scale", str(scale)])
        health = branch_health(r["run_dir"], device=r["config"]["device"])
        print(f"dead units {health['dead_units']} of {health['units']}; values below 0.01: "
              f"{health['share_below_0.01']:.1%}, above 0.99: {health['share_above_0.99']:.1%}", flush=True)
        rows.append({"optimizer": opt, "attention_lr_scale": scale, "branch_lr": FAST.lr * scale,
                     "mean_auc": r["mean_auc"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
                     "attention": r["attention"], **health, "train_seconds": r["seconds"]["train"],
                     "best_val_auc": r["best_val_auc"]})
        base = r
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
                   f"({torch.get_num_threads()} threads)",
        "dataset_images": base["dataset_images"], "test_images": base["test_images"], "precision": base["precision"],
        "resample": base["resample"], "training_seeds": 1,
        "config": {k: v for k, v in base["config"].items()
                   if k not in ("attention_optimizer", "attention_lr_scale", "out_dir", "data_dir")},
        "rows": rows,
    }
    if args.json:
        write_json(args.json, summary)
    return summary


if __name__ == "__main__":
    main()
