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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .. import CLASSES
from ..device import autocast, eval_precision, resolve_device
from ..errors import ConfigError
from ..metrics import paired_bootstrap
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


__all__ = ["AttentionCheck", "attention_check", "constant_maps", "map_statistics"]
