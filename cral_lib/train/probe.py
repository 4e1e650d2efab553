"""Does the attention matter? A trained run's maps measured, and replaced by constants.

A CRAL model whose attention maps are flat is global average pooling plus a linear layer in
disguise: Eq. 4-5 weigh every position alike. Two measurements tell whether that is so:

- how much the maps vary: the *within-map range* (max - min of ``A`` over the ``h x w``
  positions of one image's map for one class, averaged over images and classes) and the
  *between-class spread* (the standard deviation of ``A`` over the ``C`` classes at one
  position, averaged over positions and images; 0 when one map serves every class);
- what they do: the *constant-attention check* replaces every map by its own mean (one number
  per image and class, so each class keeps its overall attention level and loses only the
  where), runs the rest of the model unchanged, and compares the test AUC with the model's
  own, on the same images, with a paired bootstrap interval
  (:func:`cral_lib.metrics.paired_bootstrap`). A drop whose interval excludes 0 says the places
  the maps pick carry information the classifier uses.

:func:`branch_trace` looks at the other end of training: the first steps of a run, with att1's
health recorded as it learns (dead ReLU units, saturated sigmoids, the size of the scores), to
compare optimizers of the attention branch (``TrainConfig.attention_optimizer``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .. import CLASSES
from ..device import autocast, eval_precision, resolve_device
from ..errors import ConfigError
from ..metrics import paired_bootstrap
from ..models.att1 import Att1
from .config import TrainConfig
from .evaluate import load_run_model, split_loader


@dataclass
class AttentionCheck:
    """What :func:`attention_check` measured on one split of one run.

    Attributes:
        map_size: ``(h, w)`` of the attention maps.
        within_map_range: mean over images and classes of ``max A - min A`` within a map.
        between_class_spread: mean over images and positions of the SD of ``A`` over classes.
        mean_attention: the mean of ``A`` over everything (where the sigmoid sits).
        auc: the model's mean AUC on the split.
        auc_constant: the mean AUC with every map replaced by its own mean.
        drop: ``auc - auc_constant``.
        ci: the paired bootstrap interval of ``drop`` (95% by default).
        p_value: the paired bootstrap p-value of "no difference".
        table: per-class paired comparison (``auc_a`` = constant maps, ``auc_b`` = the model).
        n_images: images in the split.
    """

    map_size: tuple[int, int]
    within_map_range: float
    between_class_spread: float
    mean_attention: float
    auc: float
    auc_constant: float
    drop: float
    ci: tuple[float, float]
    p_value: float
    table: pd.DataFrame
    n_images: int

    @property
    def matters(self) -> bool:
        """True when the drop's interval lies above 0: constant maps do measurably worse."""
        return self.ci[0] > 0

    def summary(self) -> str:
        """One paragraph with every number, for printing."""
        h, w = self.map_size
        verdict = "the attention matters" if self.matters else "no measurable effect of the attention's places"
        return (f"{h} x {w} maps on {self.n_images} images: within-map range {self.within_map_range:.3f}, "
                f"between-class spread {self.between_class_spread:.3f}, mean attention {self.mean_attention:.3f}; "
                f"mean AUC {self.auc:.4f}, with constant maps {self.auc_constant:.4f}: drop {self.drop:+.4f} "
                f"(95% CI {self.ci[0]:+.4f} to {self.ci[1]:+.4f}, p = {self.p_value:.3f}): {verdict}")


def constant_maps(attention: Tensor) -> Tensor:
    """Every map replaced by its own mean over the ``h x w`` positions (same shape)."""
    return attention.mean(dim=(2, 3), keepdim=True).expand_as(attention).contiguous()


def map_statistics(attention: Tensor) -> tuple[Tensor, Tensor]:
    """Per image: the within-map range (mean over maps) and the between-class spread (``B`` each)."""
    within = (attention.amax(dim=(2, 3)) - attention.amin(dim=(2, 3))).mean(dim=1)
    spread = attention.std(dim=1, unbiased=False).mean(dim=(1, 2)) if attention.shape[1] > 1 \
        else attention.new_zeros(attention.shape[0])
    return within, spread


def attention_check(run_dir: str | Path, split: str = "test", *, which: str = "best", device: str = "auto",
                    data_dir: str | None = None, batch_size: int | None = None, n_boot: int = 1000,
                    seed: int = 0, progress: bool = False, by_patient: bool = True) -> AttentionCheck:
    """Measure a run's attention maps on a split and run the constant-attention check.

    Args:
        run_dir: a run folder of :func:`cral_lib.train.train` with an attention branch.
        split: ``test`` (default), ``val``, ``train`` or ``train_val``.
        which: checkpoint: ``best``, ``last`` or a file path.
        device: ``auto``, ``cpu``, ``cuda``, ...
        data_dir: the release folder, if it moved since training.
        batch_size: prediction batch size (default: the run's eval batch size).
        n_boot: paired bootstrap resamples.
        seed: seed of the bootstrap.
        progress: show a progress bar.
        by_patient: resample patients (the default, as :func:`~cral_lib.train.evaluate_run`) or images.

    Raises:
        ConfigError: the run has no attention branch (``variant="no_attention"``).
    """
    dev = resolve_device(device)
    model, config, _ = load_run_model(run_dir, which, dev)
    if model.attention is None:
        raise ConfigError(f"run {str(run_dir)!r} has no attention branch (variant {config.variant!r}): "
                          "the constant-attention check needs a CRAL model")
    if data_dir:
        config = config.replace(data_dir=str(data_dir))
    loader, transform, data = split_loader(config, split, dev, batch_size, progress=progress)
    labels = data.labels
    dtype = eval_precision(config.amp, dev)
    own, flat, within, spread, level = [], [], [], [], []
    model.eval()
    with torch.inference_mode():
        for x, _, _ in loader:
            with autocast(dev, dtype):
                attention, features = model.attention(model.forward_features(transform(x)))
                own.append(torch.sigmoid(model.head(features, attention).float()))
                flat.append(torch.sigmoid(model.head(features, constant_maps(attention)).float()))
            a = attention.float()
            w, s = map_statistics(a)
            within.append(w)
            spread.append(s)
            level.append(a.mean(dim=(1, 2, 3)))
    p_own, p_flat = (torch.cat(t).cpu().numpy() for t in (own, flat))
    classes = list(CLASSES)[: config.num_classes]
    groups = None
    if by_patient:
        groups = data.dataset.frame.set_index("Image Index").loc[list(data.names), "Patient ID"].to_numpy()
    table = paired_bootstrap(labels, p_flat, p_own, n_boot=n_boot, seed=seed, classes=classes, groups=groups)
    mean = table.loc["Mean"]
    return AttentionCheck(
        map_size=tuple(int(v) for v in attention.shape[-2:]),
        within_map_range=float(torch.cat(within).mean()),
        between_class_spread=float(torch.cat(spread).mean()),
        mean_attention=float(torch.cat(level).mean()),
        auc=float(mean["auc_b"]), auc_constant=float(mean["auc_a"]), drop=float(mean["diff"]),
        ci=(float(mean["ci_low"]), float(mean["ci_high"])), p_value=float(mean["p_value"]),
        table=table, n_images=int(np.asarray(labels).shape[0]),
    )


def att1_activity(branch: Any, conv5: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """att1's inside on one batch: which ReLU units fire, its scores and its attention.

    Args:
        branch: an :class:`~cral_lib.models.att1.Att1`.
        conv5: the backbone's conv5 map of a batch (``B x N x h x w``).

    Returns:
        ``(active1, active2, scores, attention)``: for each unit of the two 3x3 convolutions,
        whether its ReLU is positive somewhere in the batch (bool, on the CPU); the scores ``Z``
        of Eq. 2 and the attention ``A = sigmoid(Z)`` of Eq. 3 (float32).
    """
    if not isinstance(branch, Att1):
        raise ConfigError(f"att1_activity needs an att1 branch, not {type(branch).__name__}")
    h1 = torch.relu(branch.conv1(conv5))
    h2 = torch.relu(branch.conv2(h1))
    z = branch.conv3(h2).float()
    return ((h1.amax(dim=(0, 2, 3)) > 0).cpu(), (h2.amax(dim=(0, 2, 3)) > 0).cpu(), z, torch.sigmoid(z))


def branch_trace(config: TrainConfig, steps: int = 60, every: int = 5, *, device: str = "auto") -> pd.DataFrame:
    """Train the first ``steps`` steps of a run and record att1's health every ``every`` steps.

    The run is the one :func:`cral_lib.train.train` would make of ``config`` (the same start, the
    same batches and augmentation, the same optimizer and precision), held in memory and thrown
    away. At step 0 and every ``every`` steps, the batch that step trains on is looked at through
    the branch as the step sees it (training mode, before the update). Compare two optimizers of
    the branch by calling it with two configs (``attention_optimizer``, ``attention_lr_scale``).

    Args:
        config: a config with ``attention="att1"``.
        steps: optimizer steps to take (fewer than the batches of one epoch).
        every: record every this many steps.
        device: where to train.

    Returns:
        One row per recorded step: ``step``, ``dead units`` (units of att1's two 3x3 convolutions
        whose ReLU is 0 everywhere in the batch), ``units`` (of both), ``saturated`` (the share of
        attention values below 0.01 or above 0.99), ``mean |score|`` (the mean of ``|Z|``),
        ``within-map range`` and ``mean attention``.
    """
    from ..data import BatchLoader, TrainTransform
    from ..device import amp_settings
    from .loop import start_model
    from .splits import load_split, open_cache, subset_train
    from .step import TrainStep, batch_seed, make_optimizer

    if config.attention != "att1" or config.variant == "no_attention":
        raise ConfigError(f"branch_trace looks inside att1; this config has attention={config.attention!r}")
    dev = resolve_device(device if device != "auto" else config.device)
    cache = open_cache(config, progress=False)
    split = subset_train(load_split(config, "train", cache), config.max_train_images, config.seed)
    loader = BatchLoader(cache, split.rows, split.labels, config.batch_size, shuffle=True, drop_last=True,
                         seed=config.seed, device=dev)
    if steps + 1 > len(loader):  # the steps and one more batch to look at
        raise ConfigError(f"steps={steps} needs {steps + 1} batches, more than one epoch ({len(loader)} batches of "
                          f"{config.batch_size}); use steps={len(loader) - 1} or fewer")
    channels_last = config.uses_channels_last(dev)
    transform = TrainTransform(size=config.image_size, scale=config.crop_scale, channels_last=channels_last)
    model = start_model(config, split.labels).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype, use_scaler = amp_settings(config.amp, dev)
    step_fn = TrainStep(model, make_optimizer(model, config), dev, amp_dtype, use_scaler)
    rows: list[dict[str, float]] = []
    record = {"now": False, "step": 0}

    def look(module: Any, inputs: tuple[Tensor, ...], output: Any) -> None:
        if not record["now"]:
            return
        with torch.no_grad():
            active1, active2, z, a = att1_activity(module, inputs[0].detach())
            within, _ = map_statistics(a)
        rows.append({"step": record["step"], "dead units": int((~active1).sum() + (~active2).sum()),
                     "units": int(active1.numel() + active2.numel()),
                     "saturated": float(((a < 0.01) | (a > 0.99)).float().mean()),
                     "mean |score|": float(z.abs().mean()), "within-map range": float(within.mean()),
                     "mean attention": float(a.mean())})

    hook = model.attention.register_forward_hook(look)
    model.train()
    loader.set_epoch(0)
    try:
        for b, (x, y, _) in enumerate(loader.iter_from(0)):
            if b > steps:
                break
            record["now"], record["step"] = b % every == 0 or b == steps, b
            x = transform(x, generator=torch.Generator().manual_seed(batch_seed(config.seed, 0, b, 0)))
            if b == steps:  # the last look, without a step
                with torch.no_grad(), autocast(dev, amp_dtype):
                    model(x)
                break
            step_fn(x, y)
    finally:
        hook.remove()
    return pd.DataFrame(rows).set_index("step")


__all__ = ["AttentionCheck", "att1_activity", "attention_check", "branch_trace", "constant_maps", "map_statistics"]
