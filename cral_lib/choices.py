"""The choices a run is made of, defined once: backbones, attention branches, variants, precisions.

The model builder (:func:`cral_lib.models.build_model`), the config check
(:meth:`cral_lib.train.TrainConfig.validate`) and the command line (``cral train --help``) all
read these tuples. This module imports nothing, so that the command line can show them
without loading torch.
"""

from __future__ import annotations

#: Backbone name -> channels ``N`` of its conv5 map (Eq. 1): the paper's two networks, then
#: ResNet-18, and the book's fast backbone (ResNet-18's layout at half width with conv5 at 1/16
#: of the input, :mod:`cral_lib.models.small_resnet`) for CPU runs.
BACKBONE_CHANNELS: dict[str, int] = {"resnet50": 2048, "densenet121": 1024, "resnet18": 512, "small_resnet": 256}

#: Backbone name -> output stride: conv5 is ``H / stride x W / stride`` for ``H x W`` crops.
BACKBONE_STRIDE: dict[str, int] = {"resnet50": 32, "densenet121": 32, "resnet18": 32, "small_resnet": 16}

#: The backbones, in the order above.
BACKBONES: tuple[str, ...] = tuple(BACKBONE_CHANNELS)

#: The attention branches of Fig. 2 (``none``: the baseline without attention).
ATTENTIONS: tuple[str, ...] = ("att1", "att2", "none")

#: CRAL and the ablations of Table 2 (``no_attention`` is the baseline, with ``attention="none"``).
VARIANTS: tuple[str, ...] = ("cral", "no_category", "no_residual", "no_attention")

#: Mixed-precision modes of training (see :func:`cral_lib.device.amp_settings`).
AMP_MODES: tuple[str, ...] = ("auto", "bf16", "fp16", "off")

#: Optimizers: the paper's SGD with momentum, or AdamW (the book's fast mode).
OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")

#: The attention branch's optimizer: ``same`` as the rest of the network (the paper), or one of
#: :data:`OPTIMIZERS` of its own (the book's fast mode: SGD for the branch, AdamW for the rest).
ATTENTION_OPTIMIZERS: tuple[str, ...] = ("same",) + OPTIMIZERS

__all__ = ["AMP_MODES", "ATTENTION_OPTIMIZERS", "ATTENTIONS", "BACKBONES", "BACKBONE_CHANNELS", "BACKBONE_STRIDE", "OPTIMIZERS", "VARIANTS"]
