"""CRAL networks: backbones cut at conv5, the att1/att2 branches, the category-wise head.

Guan & Huang, "Multi-label chest X-ray image classification via category-wise residual
attention learning", Pattern Recognition Letters 130 (2020) 259-266.

- :func:`build_model` builds every network of the paper (Table 1) and its ablations
  (Table 2); :class:`CRALNet` is what it returns.
- :mod:`~cral_lib.models.backbones`: ResNet-50, DenseNet-121, ResNet-18 and their weights.
- :mod:`~cral_lib.models.att1`, :mod:`~cral_lib.models.att2`: the two attention branches.
- :mod:`~cral_lib.models.head`: Eq. 4-9 in a fast exact form; :func:`cral_loss` is Eq. 10.
- :mod:`~cral_lib.models.reference`: Eq. 4-10 written out literally, for checks.

Importing this package imports torch and torchvision but builds nothing.
"""

from __future__ import annotations

from .att1 import Att1, AttentionOutput
from .att2 import Att2, PreActBottleneck
from .backbones import BACKBONES, build_backbone, hub_cache_path, imagenet_weights
from .build import ATTENTIONS, VARIANTS, CRALNet, build_model, resolve_config
from .head import CategoryResidualHead, GAPHead, cral_loss

__all__ = [
    "ATTENTIONS",
    "Att1",
    "Att2",
    "AttentionOutput",
    "BACKBONES",
    "CRALNet",
    "CategoryResidualHead",
    "GAPHead",
    "PreActBottleneck",
    "VARIANTS",
    "build_backbone",
    "build_model",
    "cral_loss",
    "hub_cache_path",
    "imagenet_weights",
    "resolve_config",
]
