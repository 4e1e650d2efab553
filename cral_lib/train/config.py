"""The training recipe as one dataclass, from a notebook's parameters or the command line
into the trainer and into every checkpoint.

The defaults are the paper's recipe (Guan & Huang 2020, Section 4.2): SGD with momentum 0.9,
weight decay 1e-4, batch 64, 30 epochs, learning rate 0.01 divided by 10 after epoch 20,
random 224 px crops of the 256 px images, ImageNet-pretrained backbone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import CLASSES
from .._io import atomic_write_text
from ..choices import AMP_MODES, ATTENTION_OPTIMIZERS, ATTENTIONS, BACKBONES, OPTIMIZERS, VARIANTS
from ..errors import ConfigError

#: A learning rate above this only diverges (the paper's is 0.01); a typo like 1e30 is refused.
MAX_LR = 10.0
#: The largest cached image side (as cral_lib.data.cache.layout.MAX_SIZE; the config reads no data module).
MAX_CACHE_SIZE = 4096
#: Fields that may be None (null in a file).
_OPTIONAL = frozenset({"max_train_images", "weights", "cache_dir", "channels_last", "out_dir"})
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(device: Any) -> None:
    """Raise :class:`ConfigError` unless ``device`` is ``auto``, ``cpu``, ``mps``, ``cuda`` or ``cuda:N``.

    Whether this machine has that device is :func:`cral_lib.device.resolve_device`'s check.
    """
    if not isinstance(device, str) or not _DEVICE_RE.match(device):
        raise ConfigError(f"--device {device!r} is not a device: use auto, cpu, cuda, cuda:N (a GPU's number) or mps")

#: Fields that may change when a run is resumed (where it runs, how it logs); every other
#: field must equal the checkpoint's, or the resume is refused.
RESUMABLE_FIELDS = frozenset(
    {
        "data_dir",
        "cache_dir",
        "out_dir",
        "device",
        "compile",
        "log_every",
        "checkpoint_every_steps",
        "eval_batch_size",
        "prefetch",
        "epochs",
    }
)


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    Args:
        data_dir: a ChestX-ray14 release folder (real, or made by ``cral synth``).
        out_dir: the run folder (checkpoints, ``metrics.jsonl``, ``config.yaml``).
        cache_dir: where the image cache lives (default ``<data_dir>/cache/<cache_size>``).
        backbone: ``resnet50`` or ``densenet121`` (the paper's), or ``resnet18`` (quick CPU runs).
        attention: ``att1``, ``att2`` or ``none``.
        variant: ``cral`` or an ablation of Table 2: ``no_category``, ``no_residual``, ``no_attention``.
        weights: ``imagenet`` (the paper), ``none`` (random initialization) or a path to a file.
        num_classes: number of findings (14 for ChestX-ray14).
        epochs: number of epochs (paper: 30).
        batch_size: images per optimizer step over all processes (paper: 64).
        optimizer: ``sgd`` (the paper: SGD with momentum) or ``adamw`` (not in the paper; converges
            faster in short runs from random weights, such as the book's fast mode on a CPU).
        lr: initial learning rate (paper: 0.01).
        attention_lr_scale: the attention branch learns at ``lr * attention_lr_scale`` (paper: 1,
            one rate for all). The book's fast mode uses 10 with ``attention_optimizer="sgd"``: the
            branch then learns at the paper's own rate, 0.01, while the rest of the network learns
            with AdamW at 1e-3.
        attention_optimizer: the attention branch's optimizer: ``same`` (the paper: the run's
            ``optimizer`` for every weight), ``sgd`` (SGD with ``momentum`` and ``weight_decay``,
            the paper's optimizer) or ``adamw``. The book's fast mode trains the network with AdamW,
            which gets a network from random weights learning in a few hundred steps, and the
            branch with SGD. The reason: AdamW's steps are about ``lr`` in size for every weight,
            whatever its gradient, and att1 has no normalization to absorb them. Its 3x3
            convolutions have 2,304 inputs per output and weights of about 0.012 (PyTorch's
            default start), so each step changes a weight by about a tenth of itself, and as the
            inputs are never negative (they come out of ReLUs) such steps add up; the branch's
            activations grow, its ReLUs die, and its scores reach tens, where the sigmoid of Eq. 3
            is flat at 0 or 1 and its gradient ``a (1 - a)`` vanishes: AdamW then keeps pushing, because it divides that vanishing
            gradient by its own size. Measured with the fast recipe and AdamW for everything (one
            seed, a training batch probed in eval mode): in the first 20 steps the summed output
            of att1's second convolution grew from 191 to 2,298, 57% and 68% of its two layers'
            units went dead, the mean score reached -35 and every map was constant from then on.
            SGD's steps are proportional to the gradient, so they shrink as the sigmoid saturates.
            Measured over whole runs of the fast recipe (10,000-image set, one seed, test split;
            ``benchmarks/results/attention_optimizer_cpu.json``): with AdamW for the branch at
            1e-3, 130 and 182 of the 256 units of its two layers dead, 92.8% of the attention
            values below 0.01 and 7.1% above 0.99, a within-map range of 0.001 and no effect of
            making the maps constant; at 1e-4, 90 units dead and 92.7% of the values below 0.01;
            at 1e-5 (this recipe's former choice) none dead but 13.0% below 0.01 and a mean
            attention of 0.18, down from the 0.5 it starts at. With SGD at the paper's 0.01: no
            unit dead, 0.4% of the values below 0.01, a within-map range of 0.366, a mean of
            0.363, and the largest drop of the test AUC when the maps are made constant (+0.0010,
            95% CI +0.0005 to +0.0016). The loss itself pulls the maps towards 0 too, more
            slowly: at ten times the paper's rate (0.1), SGD left 4 units dead and 68.5% of the
            values below 0.01; at 0.001 the maps barely moved from their start (range 0.106). The test mean AUCs of all six runs lie between 0.883
            and 0.905, within about their intervals of each other.
        momentum: SGD momentum (paper: 0.9); unused by AdamW.
        weight_decay: L2 weight decay (paper: 1e-4).
        lr_milestones: epochs after which the learning rate is multiplied by ``lr_gamma`` (paper: 20).
        lr_gamma: the factor applied at each milestone (paper: 0.1).
        image_size: side of the random crops fed to the network (paper: 224).
        crop_scale: the range of the crop's share of the image area in RandomResizedCrop
            (paper: torchvision's default, 0.08 to 1).
        cache_size: side of the cached images the crops are taken from (paper: 256).
        val_fraction: share of the train_val patients held out for validation.
        seed: seed of the validation split, the shuffling, the augmentation and the initialization.
        amp: mixed precision: ``auto`` (bf16 where the device has it natively: GPUs from Ampere on,
            CPUs with AVX512-BF16 or AMX; fp16 with a gradient scaler on older GPUs; else off),
            ``bf16``, ``fp16`` or ``off``. See :func:`cral_lib.device.amp_settings`.
        channels_last: use the channels-last memory format (``None``: on GPU only).
        compile: wrap the model in ``torch.compile``.
        device: ``auto`` (CUDA, then MPS, then CPU), or a torch device string.
        eval_batch_size: batch size of validation and test predictions.
        checkpoint_every_steps: also checkpoint every N optimizer steps (0: only every epoch).
        log_every: refresh the progress bar's loss and throughput every N steps.
        prefetch: batches the loader prepares ahead of the GPU.
        max_train_images: use at most this many training images (a quick look; ``None``: all).
        flat_attention_start: start the attention branch's last convolution at zero, so that every
            attention score starts at 0.5 and the model starts as global average pooling (not in
            the paper, whose branch starts from PyTorch's default initialization: False).
        prior_bias: start each classifier's bias at the log-odds of its class's training
            prevalence, so that the first steps do not spend themselves learning the class
            frequencies (not in the paper; helps short runs from random weights).
    """

    data_dir: str = ""
    out_dir: str = "runs/cral"
    cache_dir: str | None = None
    backbone: str = "resnet50"
    attention: str = "att1"
    variant: str = "cral"
    weights: str | None = "imagenet"
    num_classes: int = 14
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.01
    attention_lr_scale: float = 1.0
    attention_optimizer: str = "same"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_milestones: tuple[int, ...] = (20,)
    lr_gamma: float = 0.1
    image_size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    cache_size: int = 256
    val_fraction: float = 0.1
    seed: int = 0
    amp: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    device: str = "auto"
    eval_batch_size: int = 128
    checkpoint_every_steps: int = 0
    log_every: int = 10
    prefetch: int = 2
    max_train_images: int | None = None
    prior_bias: bool = False
    flat_attention_start: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lr_milestones = tuple(int(m) for m in self.lr_milestones)
        self.crop_scale = tuple(float(v) for v in self.crop_scale)
        if isinstance(self.weights, str) and self.weights.lower() in ("none", "null", ""):
            self.weights = None
        if self.attention == "none" or self.variant == "no_attention":
            # the two spellings of the baseline mean the same model
            self.attention, self.variant = "none", "no_attention"

    # ------------------------------------------------------------------ checks
    def validate(self) -> "TrainConfig":
        """Check every value; raise :class:`ConfigError` naming the first bad one and the fix."""

        def choice(name: str, value: Any, choices: tuple) -> None:
            if value not in choices:
                raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(str, choices))}")

        def positive(name: str, value: Any, allow_zero: bool = False) -> None:
            ok = value >= 0 if allow_zero else value > 0
            if not ok:
                raise ConfigError(f"{name}={value!r} must be {'>= 0' if allow_zero else '> 0'}")

        choice("backbone", self.backbone, BACKBONES)
        choice("attention", self.attention, ATTENTIONS)
        choice("variant", self.variant, VARIANTS)
        choice("amp", self.amp, AMP_MODES)
        choice("optimizer", self.optimizer, OPTIMIZERS)
        choice("attention_optimizer", self.attention_optimizer, ATTENTION_OPTIMIZERS)
        for name in ("num_classes", "epochs", "batch_size", "image_size", "cache_size", "eval_batch_size",
                     "log_every", "prefetch"):
            positive(name, getattr(self, name))
        for name in ("lr", "attention_lr_scale", "momentum", "weight_decay", "lr_gamma", "val_fraction"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ConfigError(f"{name}={value!r} (--{name.replace('_', '-')}) must be a finite number")
        for name in ("lr", "momentum", "weight_decay", "checkpoint_every_steps", "seed"):
            positive(name, getattr(self, name), allow_zero=True)
        if self.cache_size > MAX_CACHE_SIZE:
            raise ConfigError(f"cache_size={self.cache_size} (--cache-size) must be at most {MAX_CACHE_SIZE} (paper: 256)")
        if not all(math.isfinite(v) for v in self.crop_scale):
            raise ConfigError(f"crop_scale={self.crop_scale!r} must be two finite numbers 0 < low <= high <= 1")
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr!r} must be > 0")
        if self.lr > MAX_LR:
            raise ConfigError(
                f"lr={self.lr!r} (--lr) is above {MAX_LR:g}, where SGD and Adam only diverge: the paper uses 0.01"
            )
        if self.weight_decay > 1:
            raise ConfigError(f"weight_decay={self.weight_decay!r} (--weight-decay) must be at most 1 (paper: 1e-4)")
        if self.momentum >= 1:
            raise ConfigError(f"momentum={self.momentum!r} (--momentum) must be below 1 (paper: 0.9)")
        bad = [m for m in self.lr_milestones if m < 1]
        if bad:
            raise ConfigError(
                f"lr_milestones={list(self.lr_milestones)!r} (--lr-milestones): {bad[0]} is not an epoch; "
                "give epochs >= 1 after which the learning rate drops (paper: 20)"
            )
        if self.num_classes != len(CLASSES):
            raise ConfigError(
                f"num_classes={self.num_classes!r} (--num-classes): ChestX-ray14 has {len(CLASSES)} findings and "
                f"every label row has {len(CLASSES)} columns; use {len(CLASSES)}"
            )
        check_device_name(self.device)
        if self.weights not in (None, "imagenet") and not Path(str(self.weights)).expanduser().is_file():
            raise ConfigError(
                f"weights={self.weights!r} (--weights): no such file; use imagenet (the paper), none (random "
                "initialization) or the path of an existing file (a torchvision state_dict or a cral checkpoint)"
            )
        if not self.attention_lr_scale > 0:
            raise ConfigError(f"attention_lr_scale={self.attention_lr_scale!r} must be > 0 (paper: 1)")
        if self.lr * self.attention_lr_scale > MAX_LR:
            raise ConfigError(
                f"attention_lr_scale={self.attention_lr_scale!r} (--attention-lr-scale) makes the attention branch's "
                f"rate lr * scale = {self.lr * self.attention_lr_scale:g}, above {MAX_LR:g}, where SGD and Adam only "
                "diverge: the paper uses 0.01 for every weight"
            )
        if not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"lr_gamma={self.lr_gamma!r} must be in (0, 1]")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction={self.val_fraction!r} must be between 0 and 1 (e.g. 0.1)")
        if self.image_size > self.cache_size:
            raise ConfigError(
                f"image_size={self.image_size} is larger than cache_size={self.cache_size}: crops are taken "
                f"from the cached images; use a cache_size of at least {self.image_size} "
                f"(the paper: 224 from 256)"
            )
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"crop_scale={self.crop_scale!r} must be two numbers 0 < low <= high <= 1 (paper: 0.08 1)")
        if self.image_size < 32:
            raise ConfigError(f"image_size={self.image_size} is too small for a 32x-downsampling backbone (>= 32)")
        if self.max_train_images is not None and self.max_train_images < self.batch_size:
            raise ConfigError(
                f"max_train_images={self.max_train_images} is smaller than one batch ({self.batch_size})"
            )
        if not self.data_dir:
            raise ConfigError("data_dir is empty: give a ChestX-ray14 release folder (or make one with `cral synth`)")
        return self

    # ------------------------------------------------------------------ (de)serialization
    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON/YAML-safe) of every field."""
        out = dataclasses.asdict(self)
        out["lr_milestones"] = list(self.lr_milestones)
        out["crop_scale"] = list(self.crop_scale)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build a config from a dict, refusing unknown keys (a typo must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        defaults = cls()
        for key, value in data.items():
            default = getattr(defaults, key)
            if isinstance(default, bool):
                ok = isinstance(value, bool) or (key == "channels_last" and value is None)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            elif isinstance(default, dict):
                ok = isinstance(value, dict)
            elif isinstance(default, tuple):
                ok = isinstance(value, (list, tuple)) and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            else:
                ok = value is None or isinstance(value, (str, int))
            if not ok and not (value is None and key in _OPTIONAL):
                raise ConfigError(f"config key {key}={value!r} has the wrong type: {type(default).__name__} "
                                  f"expected, like the default {default!r}")
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        """Write the config as YAML (atomically)."""
        return atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """Read a config written by :meth:`save` (YAML) or a JSON file."""
        return cls.from_dict(cls.read_mapping(path))

    @staticmethod
    def read_mapping(path: str | Path) -> dict[str, Any]:
        """The keys and values of a YAML or JSON config file, as written (not completed with defaults)."""
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        if not path.is_file():
            raise ConfigError(f"config file {path} is a folder, not a YAML or JSON file")
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
            reason = str(exc).replace("\n", " ")[:200]
            raise ConfigError(f"config file {path} cannot be read as {'JSON' if path.suffix == '.json' else 'YAML'} "
                              f"({reason}): fix it, or start from a run's config.yaml") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} does not hold a mapping of config keys")
        return data

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def differences(self, other: "TrainConfig", ignore: frozenset[str] = RESUMABLE_FIELDS) -> dict[str, tuple]:
        """Fields (other than ``ignore``) whose values differ: name -> (self's, other's)."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b.get(k)) for k in a if k not in ignore and a[k] != b.get(k)}

    @property
    def branch_optimizer(self) -> str:
        """The optimizer the attention branch learns with: ``attention_optimizer``, or for ``same`` ``optimizer``."""
        return self.optimizer if self.attention_optimizer == "same" else self.attention_optimizer

    def uses_channels_last(self, device: Any) -> bool:
        """Whether the run's model and batches are channels-last on ``device`` (a ``torch.device``):
        ``channels_last`` when set, else on GPUs only."""
        return self.channels_last if self.channels_last is not None else device.type == "cuda"

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """The arguments of :func:`cral_lib.models.build_model` this config asks for."""
        return {
            "backbone": self.backbone,
            "attention": self.attention,
            "variant": self.variant,
            "num_classes": self.num_classes,
        }


def paper_recipe(**overrides: Any) -> TrainConfig:
    """The paper's recipe (Section 4.2) with some values overridden."""
    return TrainConfig(**overrides)


def fast_recipe(**overrides: Any) -> TrainConfig:
    """The book's fast mode: a configuration that trains in a few minutes on a 2-core CPU.

    The book's fast backbone ``small_resnet`` (ResNet-18's layout at half width, conv5 at 1/16
    of the input: :mod:`cral_lib.models.small_resnet`) from random weights, on 112 px crops of a
    128 px cache, so that conv5 and the attention maps are the paper's 7 x 7; batch 16, 6 epochs
    with the learning rate divided by 10 after epoch 5. Two departures from the paper make such a
    short run from random weights learn: AdamW (lr 1e-3) instead of SGD for the network, while the
    attention branch keeps the paper's SGD at the paper's rate, 0.01 (``attention_optimizer``
    explains why), and milder crops (50-100% of the image instead of 8-100%); the classifiers
    start at the classes' log-odds.
    The channels-last memory format, on the CPU too, and ``amp="auto"`` (bfloat16 autocast where
    the CPU has it natively): on the 2-core AVX512-BF16 machine of ``benchmarks/``, a step took
    0.47 times as long as in float32 with the default format (``fast_backbone_cpu.json``).
    Only for seeing everything run and learn: the paper's recipe is :func:`paper_recipe`.
    """
    base = dict(
        backbone="small_resnet", weights=None, optimizer="adamw", lr=1e-3,
        attention_optimizer="sgd", attention_lr_scale=10.0,
        epochs=6, lr_milestones=(5,), batch_size=16, image_size=112, cache_size=128, crop_scale=(0.5, 1.0),
        prior_bias=True, eval_batch_size=64, channels_last=True,
    )
    base.update(overrides)
    return TrainConfig(**base)


def run_name(config: TrainConfig) -> str:
    """The name of a run's folder, derived from its config (what chapters and ``cral train`` use).

    ``<backbone>_<attention>_<variant>_<crop>px-<hash>``: the model and the crop size, readable,
    then the first 8 hex digits of the SHA-256 of every field that a resumed run must keep (all
    but :data:`RESUMABLE_FIELDS`). Two configs get the same folder exactly when one may continue
    the other's run, so a chapter that builds another chapter's config finds that chapter's run,
    and runs of different recipes never meet in one folder.

    Args:
        config: the run's config.

    Returns:
        The folder name, e.g. ``resnet50_att1_cral_224px-1a2b3c4d``.
    """
    fields = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_FIELDS}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode("utf-8")).hexdigest()[:8]
    return f"{config.backbone}_{config.attention}_{config.variant}_{config.image_size}px-{digest}"


__all__ = ["TrainConfig", "paper_recipe", "fast_recipe", "run_name", "AMP_MODES", "BACKBONES", "ATTENTIONS",
           "ATTENTION_OPTIMIZERS", "OPTIMIZERS", "VARIANTS", "RESUMABLE_FIELDS"]
