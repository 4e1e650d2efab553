"""What the benchmark scripts share (they run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path``)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch

from cral_lib._io import atomic_write_text


def synthetic_release(parent: Path, images: int, size: int, seed: int = 0, progress: bool = False) -> Path:
    """A synthetic release for a benchmark, made once under ``parent`` and reused afterwards.

    Its folder is named as the chapters' default dataset is (with the generator's version:
    :func:`cral_lib.synthetic.default.synthetic_folder_name`).
    """
    from cral_lib.synthetic import make_synthetic
    from cral_lib.synthetic.default import synthetic_folder_name

    root = Path(parent) / synthetic_folder_name(images, size, seed)
    return make_synthetic(root, n_images=images, image_size=size, seed=seed, progress=progress)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's architecture, core count and torch threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def precision_name(dtype: torch.dtype | None) -> str:
    """``fp32`` without autocast, else the autocast dtype's name (``bfloat16``, ``float16``)."""
    return "fp32" if dtype is None else str(dtype).replace("torch.", "")


def sync(device: torch.device) -> None:
    """Wait for the GPU (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], Any], device: torch.device, warmup: int, steps: int) -> tuple[float, int | None]:
    """Run ``step`` ``warmup`` times untimed, then ``steps`` times timed, the GPU synchronized around.

    Returns:
        (seconds of the timed steps, peak GPU bytes allocated from the warm-up on, or None on a CPU).
    """
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    elapsed = time.perf_counter() - start
    return elapsed, torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def write_json(path: str | os.PathLike, result: Any) -> None:
    """Write a benchmark's results (its ``--json PATH``), making the folder, and say where."""
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
