"""Training-step throughput of the CRAL models: forward, BCE loss (Eq. 10), backward, SGD step.

For each backbone it times, in one run and on the same random data:

- the plain baseline (GAP + one FC layer on conv5, ``variant="no_attention"``);
- CRAL with each attention branch and the fast head (the library's training path);
- the same CRAL models with the literal head of Eq. 4-9 (``reference.py``), which builds the
  ``B x C x N x h x w`` tensor;

each in float32 and in mixed precision with ``channels_last`` (bf16 where native, else
fp16 with a gradient scaler). It reports images per second, the throughput relative to the
plain head (same backbone, same precision), the forward GFLOP per image (convolutions and
matrix products, counted by ``torch.utils.flop_counter``), the peak memory
(``torch.cuda.max_memory_allocated``; GPU only: a CPU process's resident memory does not go
down between models), the memory autograd saves for backward in one step (activations, plus
autocast's low-precision weight copies; on any device), and the size of the literal head's
``B x C x N x h x w`` tensor.

Usage::

    python benchmarks/model_step.py                       # CUDA if present, else a small CPU run
    python benchmarks/model_step.py --device cuda --json results/model_step.json
    python benchmarks/model_step.py --device cpu --batch-size 8 --image-size 64 --steps 3

Full defaults on CUDA: batch 64, 224 px, 5 warm-up and 20 timed steps. On a CPU: batch 8,
64 px, 1 warm-up and 3 timed steps (a smoke test of the numbers' shape, not a measurement).
"""

from __future__ import annotations

import argparse
import functools
import gc
import platform
import sys
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from cral_lib.device import amp_settings, autocast
from cral_lib.models import build_model
from cral_lib.train import TrainStep, make_optimizer, paper_recipe

from _common import time_steps, write_json

NUM_CLASSES = 14


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cuda, cuda:N or cpu")
    p.add_argument("--batch-size", type=int, default=None, help="default 64 on CUDA, 8 on CPU")
    p.add_argument("--image-size", type=int, default=None, help="default 224 on CUDA, 64 on CPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on CUDA, 3 on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 on CUDA, 1 on CPU)")
    p.add_argument("--backbones", nargs="+", default=["resnet50", "densenet121"])
    p.add_argument("--attentions", nargs="+", default=["att1", "att2"], choices=["att1", "att2"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "amp"], choices=["fp32", "amp"],
                   help="amp = autocast (bf16, or fp16 with a gradient scaler) + channels_last")
    p.add_argument("--heads", nargs="+", default=["fast", "literal"], choices=["fast", "literal"])
    p.add_argument("--compile", action="store_true", help="torch.compile each model first")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    on_cuda = args.device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        p.error("--device cuda, but torch finds no CUDA device; use --device cpu")
    for name, gpu, cpu in (("batch_size", 64, 8), ("image_size", 224, 64), ("steps", 20, 3), ("warmup", 5, 1)):
        if getattr(args, name) is None:
            setattr(args, name, gpu if on_cuda else cpu)
    return args


def amp_dtype(device: torch.device) -> torch.dtype:
    """What the training loop's ``amp="auto"`` uses on a GPU (bf16 where native, else fp16); bf16 on a CPU."""
    if device.type == "cuda":
        return amp_settings("auto", device)[0]
    return torch.bfloat16


def precision_label(precision: str, device: torch.device) -> str:
    return f"{str(amp_dtype(device)).replace('torch.', '')}+CL" if precision == "amp" else "fp32"


def forward_gflops(model: torch.nn.Module, image_size: int, device: torch.device) -> float:
    """Forward GFLOP of one image (a multiply-add counts as 2)."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, image_size, image_size, device=device))
    model.train(was_training)
    return counter.get_total_flops() / 1e9


def run_one(args: argparse.Namespace, device: torch.device, backbone: str, attention: str,
            head: str, precision: str) -> dict[str, Any]:
    """Build one model and time its training steps."""
    torch.manual_seed(0)
    model = build_model(backbone=backbone, attention=attention, num_classes=NUM_CLASSES)
    model.head.literal = head == "literal"
    amp = precision == "amp"
    memory_format = torch.channels_last if amp else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format).train()
    step_model = torch.compile(model) if args.compile else model
    dtype = amp_dtype(device) if amp else None
    # the paper's SGD (fused on a GPU) and the training loop's own step
    optimizer = make_optimizer(model, paper_recipe())
    train_step = TrainStep(step_model, optimizer, device, dtype, use_scaler=dtype == torch.float16)
    gen = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=gen)
    y = (torch.rand(args.batch_size, NUM_CLASSES, generator=gen) < 0.1).float()
    x = x.to(device).contiguous(memory_format=memory_format)
    y = y.to(device)

    gflops = forward_gflops(model, args.image_size, device)
    gc.collect()
    elapsed, peak_bytes = time_steps(functools.partial(train_step, x, y), device, args.warmup, args.steps)
    peak = peak_bytes / 2**20 if peak_bytes is not None else None

    # Memory autograd keeps for backward in one forward: activations, each storage counted
    # once, parameters left out.
    storages: dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            storages[s.data_ptr()] = s.nbytes()
        return t

    optimizer.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(device, dtype):
        logits = model(x)
    conv5 = model.forward_features(x[:1])
    literal_mb = None
    if head == "literal" and attention != "none":
        elements = args.batch_size * NUM_CLASSES * conv5.shape[1] * conv5.shape[2] * conv5.shape[3]
        literal_mb = elements * (2 if amp else 4) / 2**20
    del logits, conv5
    return {
        "backbone": backbone,
        "model": "plain GAP+FC" if attention == "none" else f"CRAL {attention}",
        "head": "-" if attention == "none" else head,
        "precision": precision_label(precision, device),
        "images_per_s": args.batch_size * args.steps / elapsed,
        "ms_per_step": 1000 * elapsed / args.steps,
        "gflops_per_image": gflops,
        "peak_mb": peak,
        "saved_mb": sum(storages.values()) / 2**20,
        "literal_tensor_mb": literal_mb,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch_size}, {args.image_size} px, "
          f"{args.warmup} warm-up + {args.steps} timed steps; random data; "
          f"vs plain = throughput / plain GAP+FC head's (same backbone and precision)", flush=True)

    rows: list[dict[str, Any]] = []
    for backbone in args.backbones:
        for precision in args.precisions:
            configs = [("none", "fast")] + [(a, h) for a in args.attentions for h in args.heads]
            for attention, head in configs:
                try:
                    row = run_one(args, device, backbone, attention, head, precision)
                except torch.cuda.OutOfMemoryError:
                    model_name = "plain GAP+FC" if attention == "none" else f"CRAL {attention}"
                    row = {"backbone": backbone, "model": model_name, "head": "-" if attention == "none" else head,
                           "precision": precision_label(precision, device), "images_per_s": float("nan"),
                           "ms_per_step": float("nan"), "gflops_per_image": None, "peak_mb": None,
                           "saved_mb": None, "literal_tensor_mb": None, "error": "out of memory"}
                    torch.cuda.empty_cache()
                rows.append(row)
                plain = next(r for r in rows if r["backbone"] == backbone and r["model"] == "plain GAP+FC"
                             and r["precision"] == row["precision"])
                row["vs_plain"] = row["images_per_s"] / plain["images_per_s"]
                print(format_row(row), flush=True)

    print()
    print(table(rows))
    if args.json:
        write_json(args.json, {"device": name, "torch": torch.__version__, "batch_size": args.batch_size,
                               "image_size": args.image_size, "warmup": args.warmup, "steps": args.steps,
                               "compile": args.compile, "rows": rows})
    return 0


COLUMNS = [("backbone", "{:<12}"), ("model", "{:<13}"), ("head", "{:<8}"), ("precision", "{:<12}"),
           ("images_per_s", "{:>8.1f}"), ("ms_per_step", "{:>9.1f}"), ("vs_plain", "{:>8.2f}"),
           ("gflops_per_image", "{:>8.2f}"), ("peak_mb", "{:>8.0f}"), ("saved_mb", "{:>8.1f}"),
           ("literal_tensor_mb", "{:>9.1f}")]
HEADERS = ["backbone", "model", "head", "precision", "img/s", "ms/step", "vs plain", "GFLOP/im",
           "peak MB", "saved MB", "5-D MB"]


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return fmt.replace(".0f", "").replace(".1f", "").replace(".2f", "").format("-")
    return fmt.format(value)


def format_row(row: dict[str, Any]) -> str:
    return "  ".join(_cell(row, key, fmt) for key, fmt in COLUMNS)


def table(rows: list[dict[str, Any]]) -> str:
    widths = [len(_cell(rows[0], key, fmt)) for key, fmt in COLUMNS]
    head = "  ".join(h.rjust(w) if i >= 4 else h.ljust(w) for i, (h, w) in enumerate(zip(HEADERS, widths)))
    return "\n".join([head, "-" * len(head)] + [format_row(r) for r in rows])


if __name__ == "__main__":
    sys.exit(main())
