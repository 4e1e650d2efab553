"""Multi-GPU and multi-node training through ``torchrun`` and DistributedDataParallel.

Run the same command under ``torchrun`` and it trains on every process it starts::

    torchrun --nproc_per_node=4 -m cral_lib train --data DIR --out RUN
    # several nodes: add --nnodes, --node_rank and --rdzv_endpoint as usual for torchrun

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`setup` reads them, joins
the process group (NCCL on GPUs, gloo on CPUs) and picks this process's device. The loader
gives each process its own shard of every epoch; the global batch (``batch_size``) is split
evenly between processes, and DDP averages the gradients, so the optimizer sees the same
batch size as on one GPU. Predictions are gathered on every process before metrics are
computed, so the validation AUC is that of the whole split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..device import resolve_device

#: How long a process waits for the others in a collective before the job fails. Longer than
#: PyTorch's 10 minutes for NCCL because the other processes wait while the main one builds
#: the image cache (build it first with ``cral prepare`` to skip that wait).
TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly one-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and prints progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group when started by ``torchrun``; return (info, this process's device)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(), resolve_device(device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        # NCCL binds this process to its GPU at once (barriers then need no guess of the device)
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo",
                                device_id=dev if dev.type == "cuda" else None, timeout=TIMEOUT)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank), dev


def cleanup(info: DistInfo) -> None:
    """Leave the process group (a no-op for one process)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast(info: DistInfo, obj: Any) -> Any:
    """Send a picklable object from the main process to every process."""
    if not info.enabled:
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def collective_device() -> torch.device:
    """Where tensors for a collective must live: this process's GPU under NCCL (which cannot
    reduce CPU tensors), the CPU under gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(info: DistInfo, value: float) -> float:
    """Average a number over processes."""
    if not info.enabled:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64, device=collective_device())
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def any_process(info: DistInfo, flag: torch.Tensor) -> torch.Tensor:
    """A boolean tensor that is True on every process when it is True on any (one GPU: ``flag``)."""
    if not info.enabled:
        return flag
    t = flag.to(collective_device(), dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.bool()


def broadcast_buffers(info: DistInfo, module) -> None:
    """Give every process the main process's buffers (BatchNorm running statistics).

    DDP copies them from the main process only at the start of each training forward, so after
    an epoch each process holds the statistics of its own last batch.
    """
    if not info.enabled:
        return
    for buf in module.buffers():
        dist.broadcast(buf, src=0)


def gather_rows(info: DistInfo, positions: np.ndarray, values: np.ndarray, total: int) -> np.ndarray:
    """Put every process's rows of a prediction matrix in place.

    Args:
        info: this process.
        positions: (n,) positions of this process's rows in the whole split.
        values: (n, k) this process's rows.
        total: number of rows of the whole split.

    Returns:
        The (total, k) matrix, the same on every process.

    Raises:
        RuntimeError: when some row was predicted twice or never (a sharding bug).
    """
    parts = [(positions, values)]
    if info.enabled:
        parts = [None] * info.world_size
        dist.all_gather_object(parts, (positions, values))
    out = np.full((total, values.shape[1]), np.nan, dtype=np.float64)
    seen = np.zeros(total, dtype=np.int64)
    for pos, val in parts:
        out[pos] = val
        np.add.at(seen, pos, 1)
    if not np.all(seen == 1):
        raise RuntimeError(
            f"gathered predictions cover {int((seen > 0).sum())} of {total} rows "
            f"({int((seen > 1).sum())} more than once): the evaluation shards overlap or miss rows"
        )
    return out


# resolve_device lived here before cral_lib.device; importable from here still.
__all__ = ["DistInfo", "resolve_device", "setup", "cleanup", "barrier", "broadcast", "all_reduce_mean", "gather_rows",
           "collective_device", "any_process", "broadcast_buffers"]
