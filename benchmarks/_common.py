"""What the benchmark scripts share (they run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path``)."""

from __future__ import annotations

import os
import platform

import torch


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's architecture, core count and torch threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
