"""Which backbone gives the fast mode the paper's 7 x 7 maps cheapest: candidates side by side.

The paper's maps are 7 x 7 (224 px crops, conv5 at 1/32). The book's first fast mode fed
64 px crops to ResNet-18 and got 2 x 2 maps. This benchmark times one CRAL att1 training step
(the trainer's :class:`~cral_lib.train.TrainStep`, AdamW as in the fast recipe, batch 16) of
each candidate, in one run on the same machine:

- ResNet-18 at 64 px (2 x 2: the old fast mode) and at 224 px (7 x 7: the naive way);
- ResNet-18 with its last stage at stride 1 (output stride 16) at 112 px (7 x 7), which is
  :class:`~cral_lib.models.small_resnet.SmallResNet` at width 64;
- the same layout at half and a quarter of the width (width 32 is the library's
  ``small_resnet``), and at width 32 with output stride 8 on 56 px crops (also 7 x 7);

each in float32 and under bf16 autocast, with the default and the ``channels_last`` memory
format. It goes through all the candidates ``--rounds`` times and keeps each one's best round,
so that a burst of other work on the machine during one round does not decide the ranking. It
reports the map size, images per second, milliseconds per step, forward GFLOP per image and
parameters, and the speed-up over the old fast mode in float32.

Usage::

    python benchmarks/fast_backbone.py --json benchmarks/results/fast_backbone_cpu.json
    python benchmarks/fast_backbone.py --steps 2 --warmup 1 --candidates small_resnet@112
"""

from __future__ import annotations

import argparse
import functools
import gc
import sys
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from cral_lib.models import build_model
from cral_lib.models.build import assemble, resolve_config
from cral_lib.models.small_resnet import SmallResNet
from cral_lib.train import TrainStep, fast_recipe, make_optimizer

from _common import device_name, time_steps, write_json

NUM_CLASSES = 14

#: name -> (how to build the backbone, crop size in px). ``small_resnet`` is the library's.
CANDIDATES: dict[str, tuple[str, int]] = {
    "resnet18@64": ("resnet18", 64),
    "resnet18@224": ("resnet18", 224),
    "resnet18-os16@112": ("w64-os16", 112),
    "small_resnet@112": ("small_resnet", 112),
    "w16-os16@112": ("w16-os16", 112),
    "w32-os8@56": ("w32-os8", 56),
}
BASELINE = "resnet18@64"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=16, help="the fast recipe's batch (16)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per candidate (default 6)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--rounds", type=int, default=3, help="passes over all candidates; the best is kept (default 3)")
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--formats", nargs="+", default=["default", "channels_last"], choices=["default", "channels_last"])
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda, but torch finds no CUDA device; use --device cpu")
    if min(args.batch_size, args.steps, args.rounds) < 1 or args.warmup < 0:
        p.error("--batch-size, --steps and --rounds must be at least 1, --warmup at least 0")
    return args


def build(kind: str) -> torch.nn.Module:
    """A CRAL att1 model on the candidate's backbone (random weights, seeded)."""
    torch.manual_seed(0)
    if kind in ("resnet18", "small_resnet"):
        return build_model(backbone=kind, attention="att1", variant="cral", num_classes=NUM_CLASSES)
    width, stride = kind.split("-")
    net = SmallResNet(int(width[1:]), output_stride=int(stride[2:]))
    return assemble(net, resolve_config(backbone="small_resnet", attention="att1", variant="cral",
                                        num_classes=NUM_CLASSES))


def run_one(args: argparse.Namespace, device: torch.device, name: str, precision: str, fmt: str) -> dict[str, Any]:
    kind, size = CANDIDATES[name]
    memory_format = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    model = build(kind).to(device=device, memory_format=memory_format).train()
    dtype = torch.bfloat16 if precision == "bf16" else None
    step = TrainStep(model, make_optimizer(model, fast_recipe()), device, dtype)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch_size, 3, size, size, generator=gen).to(device).contiguous(memory_format=memory_format)
    y = (torch.rand(args.batch_size, NUM_CLASSES, generator=gen) < 0.1).float().to(device)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        maps = model.forward_features(x[:1]).shape[-1]
        model(x[:1])
    model.train()
    gc.collect()
    elapsed, _ = time_steps(functools.partial(step, x, y), device, args.warmup, args.steps)
    return {"candidate": name, "crop_px": size, "map": f"{maps}x{maps}", "precision": precision, "format": fmt,
            "images_per_s": args.batch_size * args.steps / elapsed, "ms_per_step": 1000 * elapsed / args.steps,
            "gflops_per_image": counter.get_total_flops() / 1e9,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def table(rows: list[dict[str, Any]]) -> str:
    base = next((r["images_per_s"] for r in rows if r["candidate"] == BASELINE and r["precision"] == "fp32"
                 and r["format"] == "default"), None)
    lines = ["| candidate | crop | map | precision | format | img/s | ms/step | vs old fast mode | GFLOP/img | params (M) |",
             "|---|---:|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        rel = f"{r['images_per_s'] / base:.2f}x" if base else "-"
        lines.append(f"| {r['candidate']} | {r['crop_px']} | {r['map']} | {r['precision']} | {r['format']} | "
                     f"{r['images_per_s']:.1f} | {r['ms_per_step']:.0f} | {rel} | {r['gflops_per_image']:.2f} | "
                     f"{r['params_m']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}; CRAL att1, batch {args.batch_size}, "
          f"{args.warmup} warm-up + {args.steps} timed steps; random data", flush=True)
    best: dict[tuple[str, str, str], dict[str, Any]] = {}
    for k in range(args.rounds):
        for name in args.candidates:
            for precision in args.precisions:
                for fmt in args.formats:
                    r = run_one(args, device, name, precision, fmt)
                    print(f"round {k + 1}: {name:<18} {r['map']:>5} {precision:<5} {fmt:<13} "
                          f"{r['images_per_s']:7.1f} img/s {r['ms_per_step']:7.0f} ms/step", flush=True)
                    key = (name, precision, fmt)
                    if key not in best or r["images_per_s"] > best[key]["images_per_s"]:
                        best[key] = r
    rows = list(best.values())
    print()
    print(table(rows))
    if args.json:
        write_json(args.json, {"device": device_name(device), "torch": torch.__version__,
                               "batch_size": args.batch_size, "warmup": args.warmup, "steps": args.steps,
                               "rounds": args.rounds,
                               "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
