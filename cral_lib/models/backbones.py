"""Backbones cut at conv5 (Section 3.2 of the paper, Eq. 1), and where their weights come from.

The feature embedding module of CRAL is an ImageNet-pretrained CNN whose last feature map,
taken at "conv_5_relu", is ``F`` (``B x N x h x w``; ``7 x 7`` at 224 px input):

======================  ======  ==========================================================
name                    N       conv5 map
======================  ======  ==========================================================
``resnet50``            2048    output of ``layer4`` (its last bottleneck ends with a ReLU)
``densenet121``         1024    ``relu(norm5)``, as in torchvision's ``DenseNet.forward``
``resnet18``            512     output of ``layer4`` (for quick CPU runs; not in the paper)
``small_resnet``        256     output of ``layer4`` of :class:`~cral_lib.models.small_resnet.SmallResNet`
                                (width 32, output stride 16: 7 x 7 at 112 px; the book's
                                fast mode; not in the paper, no ImageNet weights)
======================  ======  ==========================================================

The backbone modules keep torchvision's attribute names, so a torchvision state_dict of
the whole classifier loads into them once its classification layer (``fc.*`` for ResNets,
``classifier.*`` for DenseNet) is dropped.

Weights (the ``weights`` argument of :func:`build_backbone`):

- ``None``: random initialization (torchvision's).
- ``"imagenet"``: torchvision's original ImageNet weights (``IMAGENET1K_V1`` for all three
  networks, the weights of the paper's time), downloaded once into the torch hub cache. A
  failed download raises :class:`~cral_lib.errors.WeightsError` that names the file to put
  into the cache by hand; there is never a silent fallback to random weights.
- a torchvision ``WeightsEnum`` member (for example ``ResNet50_Weights.IMAGENET1K_V2``).
- a path to a local file holding a torchvision-format state_dict of the network (the file
  torchvision downloads, or ``torch.save(torchvision.models.resnet50().state_dict(), path)``).
  Whole CRAL checkpoints are handled one level up, by :func:`cral_lib.models.build_model`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from ..choices import BACKBONE_CHANNELS
from ..errors import ConfigError, WeightsError
from .small_resnet import SmallResNet

#: Backbone name -> number of conv5 channels ``N`` (defined in :mod:`cral_lib.choices`).
BACKBONES: dict[str, int] = BACKBONE_CHANNELS

#: What ``weights`` may be: None, "imagenet", a torchvision WeightsEnum member, or a file path.
WeightsArg = Union[None, str, os.PathLike, torchvision.models.WeightsEnum]

_IMAGENET_WEIGHTS = {
    "resnet50": "ResNet50_Weights",
    "densenet121": "DenseNet121_Weights",
    "resnet18": "ResNet18_Weights",
}

# Old torchvision DenseNet checkpoints (the ImageNet files included) name layers 'norm.1';
# the current modules call them 'norm1'. torchvision renames them the same way.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\."
    r"(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)
# Prefixes left by DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its pooling and classifier: image -> conv5 after ReLU.

    Args:
        net: a torchvision ``ResNet``; its modules are taken over (not copied).
    """

    def __init__(self, net: torchvision.models.ResNet) -> None:
        super().__init__()
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4
        self.num_features: int = net.fc.in_features

    def forward(self, x: Tensor) -> Tensor:
        """Return conv5 (``B x N x H/32 x W/32``, non-negative) of images ``x`` (``B x 3 x H x W``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class DenseNetBackbone(nn.Module):
    """A torchvision DenseNet without its pooling and classifier: image -> ``relu(norm5)``.

    Args:
        net: a torchvision ``DenseNet``; its ``features`` are taken over (not copied).
    """

    def __init__(self, net: torchvision.models.DenseNet) -> None:
        super().__init__()
        self.features = net.features
        self.num_features: int = net.classifier.in_features

    def forward(self, x: Tensor) -> Tensor:
        """Return conv5 = ``relu(norm5)`` (``B x N x H/32 x W/32``) of images ``x``."""
        return F.relu(self.features(x))


def build_backbone(name: str, *, weights: WeightsArg = None, progress: bool = True) -> nn.Module:
    """Build a backbone cut at conv5, with the requested weights.

    Args:
        name: ``"resnet50"``, ``"densenet121"``, ``"resnet18"`` or ``"small_resnet"``.
        weights: None, ``"imagenet"``, a torchvision ``WeightsEnum`` member, or the path of
            a torchvision-format state_dict of the network (see the module docstring).
        progress: show a progress bar while downloading.

    Returns:
        A module mapping ``B x 3 x H x W`` images to conv5 (``B x N x H/s x W/s`` for the
        output stride ``s`` of :data:`cral_lib.choices.BACKBONE_STRIDE`), with an int
        attribute ``num_features`` (``N``).

    Raises:
        ConfigError: ``name`` is not one of :data:`BACKBONES`.
        WeightsError: the weights cannot be downloaded, read, or do not fit the network.
    """
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    if name == "small_resnet":
        backbone: nn.Module = SmallResNet(32, output_stride=16)
    else:
        net = getattr(torchvision.models, name)(weights=None)
        backbone = DenseNetBackbone(net) if name.startswith("densenet") else ResNetBackbone(net)
    if weights is None:
        return backbone
    if isinstance(weights, torchvision.models.WeightsEnum):
        state_dict = download_weights(name, weights, progress=progress)
        source = f"{type(weights).__name__}.{weights.name}"
    elif isinstance(weights, str) and weights.lower() == "imagenet":
        state_dict = download_weights(name, imagenet_weights(name), progress=progress)
        source = "ImageNet weights"
    elif isinstance(weights, (str, os.PathLike)):
        state_dict = read_weights_file(weights)
        source = str(weights)
    else:
        raise WeightsError(
            f"weights must be None, 'imagenet', a torchvision WeightsEnum member or a file "
            f"path, got {weights!r}"
        )
    load_backbone_state_dict(backbone, state_dict, name=name, source=source)
    return backbone


def imagenet_weights(name: str) -> torchvision.models.WeightsEnum:
    """Return the torchvision weights that ``weights="imagenet"`` means for ``name`` (``IMAGENET1K_V1``)."""
    if name in BACKBONES and name not in _IMAGENET_WEIGHTS:
        raise WeightsError(f"backbone {name!r} has no ImageNet weights (it is trained from random weights): "
                           "use weights=None, or a weights file of your own")
    if name not in _IMAGENET_WEIGHTS:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return getattr(torchvision.models, _IMAGENET_WEIGHTS[name]).IMAGENET1K_V1


def hub_cache_path(url: str) -> Path:
    """Return where ``torch.hub`` keeps (and first looks for) the file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def download_weights(
    name: str, weights: torchvision.models.WeightsEnum, *, progress: bool = True
) -> dict[str, Tensor]:
    """Fetch torchvision weights through the torch hub cache (downloading them if needed).

    Args:
        name: the backbone name (for the error message).
        weights: a torchvision ``WeightsEnum`` member.
        progress: show a progress bar while downloading.

    Returns:
        The network's state_dict, on the CPU.

    Raises:
        WeightsError: the download failed (no network, a proxy, a bad hash...); the message
            says where to put the file by hand, and the other ways out.
    """
    url = weights.url
    try:
        return torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=progress, check_hash=True, weights_only=True
        )
    except Exception as exc:  # URLError, HTTPError, OSError, hash mismatch: all mean the same to the user
        target = hub_cache_path(url)
        raise WeightsError(
            f"could not download the ImageNet weights of {name} from {url} "
            f"({type(exc).__name__}: {exc}). Fix it in one of three ways: download that file "
            f"elsewhere and copy it to {target} (the torch hub cache; TORCH_HOME moves it); "
            f"or pass weights='/path/to/{target.name}' (a local torchvision state_dict); "
            "or pass weights=None to train from random initialization."
        ) from exc


def read_weights_file(path: str | os.PathLike) -> Any:
    """Read a weights file safely (``torch.load(..., weights_only=True)``) onto the CPU.

    Raises:
        WeightsError: the file does not exist or cannot be read as a torch file.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise WeightsError(
            f"weights file {str(path)!r} not found; pass weights='imagenet' (torchvision's "
            "ImageNet weights), the path of an existing file (a torchvision state_dict or a "
            "cral checkpoint), or None (random initialization)"
        )
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"cannot read weights file {str(file)!r} ({type(exc).__name__}: {exc}); it must be "
            "a torchvision state_dict or a cral checkpoint saved with torch.save"
        ) from exc


def strip_wrapper_prefixes(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Remove the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) key prefixes."""
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def load_backbone_state_dict(
    backbone: nn.Module, state_dict: Any, *, name: str, source: str = "the weights"
) -> None:
    """Load a torchvision-format state_dict of the whole network into a backbone.

    The classification layer (``fc.*``/``classifier.*``) is dropped; old DenseNet key
    names are renamed; everything else must fit exactly.

    Raises:
        WeightsError: ``state_dict`` is not a mapping of tensors, or its keys or shapes do
            not match the backbone ``name``.
    """
    if not isinstance(state_dict, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state_dict.items()
    ):
        raise WeightsError(
            f"{source} is not a state_dict (a mapping of names to tensors); save weights with "
            "torch.save(model.state_dict(), path)"
        )
    head = ("classifier.",) if name.startswith("densenet") else ("fc.",)
    cleaned: dict[str, Tensor] = {}
    for key, value in strip_wrapper_prefixes(state_dict).items():
        if key.startswith(head):
            continue
        match = _DENSENET_OLD_KEY.match(key)
        cleaned[match.group(1) + match.group(2) if match else key] = value
    expected = backbone.state_dict()
    for key in expected:
        # Files saved before PyTorch 0.4.1 (torchvision's ImageNet files among them) lack
        # the batch-norm step counters; they only matter for momentum=None.
        if key.endswith("num_batches_tracked") and key not in cleaned:
            cleaned[key] = torch.zeros((), dtype=torch.long)
    missing = sorted(set(expected) - set(cleaned))
    unexpected = sorted(set(cleaned) - set(expected))
    wrong_shape = [
        f"{k}: {tuple(cleaned[k].shape)} instead of {tuple(v.shape)}"
        for k, v in expected.items()
        if k in cleaned and cleaned[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} keys of the wrong shape (e.g. {wrong_shape[:2]})")
        raise WeightsError(
            f"{source} does not fit the {name} backbone: {'; '.join(problems)}. Pass a "
            f"torchvision state_dict of {name} (or a cral checkpoint built with "
            f"backbone={name!r}), 'imagenet', or None"
        )
    backbone.load_state_dict(cleaned, strict=True)
