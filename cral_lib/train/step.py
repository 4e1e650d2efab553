"""One training step, shared by :func:`cral_lib.train.train` and the benchmarks.

A step is the same wherever it runs: the forward pass under the run's autocast precision, the
loss of Eq. 10 in float32 from the logits, then zero the gradients, backward through the
gradient scaler (a no-op unless float16 needs it), the optimizer's step and the scaler's update.
``benchmarks/model_step.py``, ``end_to_end.py`` and ``step_breakdown.py`` time this object, so
their figures are those of the trainer's own step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..device import autocast
from ..models import cral_loss
from .config import TrainConfig


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer a config asks for: the paper's SGD with momentum, or AdamW.

    The parameters of the attention branch (``model.attention``) form a second group that
    learns at ``config.lr * config.attention_lr_scale`` when that scale is not 1; the learning
    rate schedule scales both groups alike. On a GPU the optimizer is PyTorch's fused one: one
    kernel for all the parameters, and with fp16 the gradient scaler hands it the overflow flag
    on the GPU instead of reading it on the CPU, which would stop the CPU at every step until the
    GPU has finished.
    """
    fused = all(p.device.type == "cuda" for p in model.parameters()) or None

    attention = getattr(model, "attention", None)
    if config.attention_lr_scale != 1 and attention is not None:
        own = {id(p) for p in attention.parameters()}
        params: Any = [
            {"params": [p for p in model.parameters() if id(p) not in own]},
            {"params": list(attention.parameters()), "lr": config.lr * config.attention_lr_scale},
        ]
    else:
        params = model.parameters()
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           fused=fused)


class TrainStep:
    """Forward, the loss of Eq. 10, backward and the optimizer's step, in the run's precision.

    Args:
        net: what the forward pass calls (the model, or its DDP / ``torch.compile`` wrapper).
        optimizer: the optimizer of the model's parameters.
        device: where the batches are.
        amp_dtype: the autocast dtype (None: full precision), from
            :func:`cral_lib.device.amp_settings`.
        use_scaler: scale the loss for float16 (:class:`torch.amp.GradScaler`).

    Attributes:
        scaler: the gradient scaler (disabled unless ``use_scaler``); its state goes into checkpoints.
    """

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                 amp_dtype: torch.dtype | None = None, use_scaler: bool = False) -> None:
        self.net = net
        self.optimizer = optimizer
        self.device = device
        self.amp_dtype = amp_dtype
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        """The forward pass under autocast and the loss of Eq. 10 (float32, mean over classes and batch)."""
        with autocast(self.device, self.amp_dtype):
            logits = self.net(x)
        return cral_loss(logits, y)

    def update(self, loss: Tensor) -> None:
        """Backward from ``loss`` and one optimizer step (through the gradient scaler)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """One whole step on a batch; returns the loss, detached (still on the device)."""
        loss = self.loss(x, y)
        self.update(loss)
        return loss.detach()


def batch_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """The seed of one batch's augmentation: it depends only on (seed, epoch, batch, process)."""
    return (seed * 1_000_003 + epoch * 10_007 + batch) * 131 + rank


__all__ = ["TrainStep", "batch_seed", "make_optimizer"]
