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


def _optimizer(kind: str, params: Any, config: TrainConfig, fused: bool | None) -> torch.optim.Optimizer:
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           fused=fused)


class SplitOptimizer(torch.optim.Optimizer):
    """Several optimizers, each of its own parameters, used as one.

    ``step``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` go to each of them in turn;
    ``param_groups`` is the list of all their groups (the same dicts), so a learning rate
    scheduler and a gradient scaler see every parameter, and a change of a group's ``lr``
    reaches the optimizer that owns it. :func:`make_optimizer` builds one when the attention
    branch has an optimizer of its own (``TrainConfig.attention_optimizer``).

    Args:
        optimizers: the optimizers, over disjoint parameters.
    """

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        # no super().__init__: the groups and the state belong to the optimizers inside
        self.optimizers = list(optimizers)
        self.defaults: dict[str, Any] = {}
        self.param_groups = [g for o in self.optimizers for g in o.param_groups]

    @property
    def state(self) -> dict[Any, Any]:  # type: ignore[override]
        """The per-parameter state of every optimizer inside (read only)."""
        return {p: v for o in self.optimizers for p, v in o.state.items()}

    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        """One step of every optimizer inside (no closures: the trainer needs none)."""
        if closure is not None:
            raise ValueError("SplitOptimizer.step takes no closure")
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Zero (or drop) the gradients of every parameter."""
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """``{"optimizers": [each optimizer's state_dict]}``."""
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Load what :meth:`state_dict` returned (the same optimizers, in the same order)."""
        states = state_dict.get("optimizers") if isinstance(state_dict, dict) else None
        if not isinstance(states, list) or len(states) != len(self.optimizers):
            raise ValueError(f"expected the state of {len(self.optimizers)} optimizers, as SplitOptimizer.state_dict "
                             "writes it")
        for o, st in zip(self.optimizers, states):
            o.load_state_dict(st)
        self.param_groups = [g for o in self.optimizers for g in o.param_groups]

    def __repr__(self) -> str:
        return f"SplitOptimizer({', '.join(type(o).__name__ for o in self.optimizers)})"


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer a config asks for: the paper's SGD with momentum, or AdamW.

    The parameters of the attention branch (``model.attention``) learn at
    ``config.lr * config.attention_lr_scale`` (a second group when that scale is not 1), and
    with ``config.attention_optimizer`` when it names an optimizer other than
    ``config.optimizer``: the two optimizers are then joined in a :class:`SplitOptimizer`. The
    learning rate schedule scales every group alike. On a GPU the optimizers are PyTorch's
    fused ones: one kernel for all the parameters, and with fp16 the gradient scaler hands them
    the overflow flag on the GPU instead of reading it on the CPU, which would stop the CPU at
    every step until the GPU has finished.
    """
    fused = all(p.device.type == "cuda" for p in model.parameters()) or None

    attention = getattr(model, "attention", None)
    kind = config.branch_optimizer
    if attention is None or (config.attention_lr_scale == 1 and kind == config.optimizer):
        return _optimizer(config.optimizer, model.parameters(), config, fused)
    own = {id(p) for p in attention.parameters()}
    rest = {"params": [p for p in model.parameters() if id(p) not in own]}
    branch = {"params": list(attention.parameters()), "lr": config.lr * config.attention_lr_scale}
    if kind == config.optimizer:
        return _optimizer(config.optimizer, [rest, branch], config, fused)
    return SplitOptimizer([_optimizer(config.optimizer, [rest], config, fused),
                           _optimizer(kind, [branch], config, fused)])


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


__all__ = ["SplitOptimizer", "TrainStep", "batch_seed", "make_optimizer"]
