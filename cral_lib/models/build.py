"""``build_model``: a backbone, an attention branch and a head, as one CRAL network.

The four rows of the paper's Table 2 come from the same builder:

==================  =============  ===========================================================
``variant``         ``attention``  computation after conv5
==================  =============  ===========================================================
``cral``            att1 / att2    C attention maps; ``H^c = (1 + a^c) F`` (Eq. 4-5); per-class FC
``no_category``     att1 / att2    one map shared by all classes; ``H = (1 + a) F``; per-class FC
``no_residual``     att1 / att2    C maps; ``H^c = a^c F`` (Eq. 4 only); per-class FC
``no_attention``    none           GAP of conv5, one FC layer to C outputs (the baseline)
==================  =============  ===========================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ..choices import ATTENTIONS, VARIANTS
from ..errors import ConfigError, WeightsError
from .att1 import Att1
from .att2 import Att2
from .backbones import (
    BACKBONES,
    WeightsArg,
    build_backbone,
    load_backbone_state_dict,
    read_weights_file,
    strip_wrapper_prefixes,
)
from .head import CategoryResidualHead, GAPHead

_ATTENTION_MODULES = {"att1": Att1, "att2": Att2}
# Keys under which a checkpoint may keep the model's state_dict and its config.
_STATE_KEYS = ("model", "state_dict", "model_state_dict", "model_state")
_CONFIG_KEYS = ("backbone", "attention", "variant", "num_classes")


class CRALNet(nn.Module):
    """A backbone cut at conv5, an attention branch (or none) and a classification head.

    Built by :func:`build_model`. ``forward(x)`` returns logits; ``forward(x,
    return_maps=True)`` also the maps, with no hooks. Split like timm:
    ``forward(x) == forward_head(forward_features(x))``.

    Attributes:
        backbone: images ``B x 3 x H x W`` -> conv5 ``B x N x h x w`` (after ReLU).
        attention: :class:`~cral_lib.models.att1.Att1`, :class:`~cral_lib.models.att2.Att2`,
            or None for the baseline.
        head: :class:`~cral_lib.models.head.CategoryResidualHead` or
            :class:`~cral_lib.models.head.GAPHead`.
        num_features: ``N``, the channels of conv5 (and of ``F~`` for att2).
        num_classes: ``C``.
        config: a plain dict ``{"backbone", "attention", "variant", "num_classes"}``; build
            the same network again with ``build_model(**config)``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        attention: nn.Module | None,
        head: nn.Module,
        *,
        config: Mapping[str, Any],
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_module("attention", attention)
        self.head = head
        self.num_features: int = backbone.num_features
        self.num_classes: int = int(config["num_classes"])
        self.config: dict[str, Any] = dict(config)

    def forward_features(self, x: Tensor) -> Tensor:
        """Return conv5 after ReLU (``B x N x h x w``) of images ``x`` (``B x 3 x H x W``)."""
        return self.backbone(x)

    def forward_head(self, conv5: Tensor, return_maps: bool = False) -> Tensor | dict[str, Any]:
        """Attention and classification from the conv5 map (everything after Eq. 1).

        Args:
            conv5: ``B x N x h x w``, as returned by :meth:`forward_features`.
            return_maps: return the dict described in :meth:`forward` instead of logits.
        """
        if self.attention is None:
            attention, features = None, conv5
            logits = self.head(conv5)
        else:
            attention, features = self.attention(conv5)
            logits = self.head(features, attention)
        if not return_maps:
            return logits
        return {"logits": logits, "attention": attention, "features": features, "conv5": conv5}

    def forward(self, x: Tensor, return_maps: bool = False) -> Tensor | dict[str, Any]:
        """Classify images.

        Args:
            x: ``B x 3 x H x W`` (grey images replicated to 3 channels, ImageNet-normalized).
            return_maps: also return the intermediate maps.

        Returns:
            Logits ``B x C`` (no sigmoid: use :func:`~cral_lib.models.cral_loss` for
            training and ``torch.sigmoid`` for probabilities), or with ``return_maps`` a
            dict with

            - ``logits``: ``B x C``;
            - ``attention``: ``A`` of Eq. 3, ``B x C x h x w`` in ``[0, 1]``
              (``B x 1 x h x w`` for ``no_category``, None for ``no_attention``);
            - ``features``: the map the attention weighs in Eq. 4-5, ``B x N x h x w``
              (``F`` = conv5 for att1, ``F~`` for att2, conv5 for ``no_attention``);
            - ``conv5``: the backbone's conv5 map after ReLU, ``B x N x h x w`` (for the
              heatmaps of the paper's Fig. 5).
        """
        return self.forward_head(self.forward_features(x), return_maps=return_maps)

    @property
    def classifier_weight(self) -> nn.Parameter:
        """``C x N``: row ``c`` is the weight vector of class ``c``'s classifier (Eq. 8)."""
        return self.head.fc.weight

    @property
    def classifier_bias(self) -> nn.Parameter:
        """``C``: the classifiers' biases."""
        return self.head.fc.bias

    def class_activation_maps(self, x_or_features: Tensor) -> Tensor:
        """Class activation maps, ``B x C x h x w``, whose spatial mean plus bias is the logits.

        ``sum_n W_cn ReLU(F)_n`` for each class ``c`` (``W`` = :attr:`classifier_weight`,
        ``F`` the weighed map: ``F~`` for att2), multiplied by ``1 + a_c`` for ``cral`` and
        ``no_category`` and by ``a_c`` for ``no_residual``; the plain CAM of conv5 for
        ``no_attention``.

        Args:
            x_or_features: images ``B x 3 x H x W`` or a conv5 map ``B x N x h x w``
                (told apart by the channel count).

        Returns:
            ``B x C x h x w`` (float32 at least).

        Raises:
            ConfigError: the input has neither 3 nor ``N`` channels.
        """
        if x_or_features.dim() != 4 or x_or_features.shape[1] not in (3, self.num_features):
            raise ConfigError(
                f"class_activation_maps expects images B x 3 x H x W or a conv5 map "
                f"B x {self.num_features} x h x w, got shape {tuple(x_or_features.shape)}"
            )
        conv5 = x_or_features
        if x_or_features.shape[1] == 3 and self.num_features != 3:
            conv5 = self.forward_features(x_or_features)
        if self.attention is None:
            return self.head.class_maps(conv5)
        attention, features = self.attention(conv5)
        return self.head.class_maps(features, attention)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())


def resolve_config(
    *,
    backbone: Any = "resnet50",
    attention: Any = None,
    variant: Any = None,
    num_classes: Any = 14,
) -> dict[str, Any]:
    """Check and complete a model configuration (the rules of :func:`build_model`).

    Returns:
        ``{"backbone", "attention", "variant", "num_classes"}`` with every value filled in.

    Raises:
        ConfigError: an unknown value, or ``attention`` and ``variant`` that do not fit.
    """
    backbone = _choice("backbone", backbone, tuple(BACKBONES))
    attention = None if attention is None else _choice("attention", attention, ATTENTIONS)
    variant = None if variant is None else _choice("variant", variant, VARIANTS)
    if attention is None:
        attention = "none" if variant == "no_attention" else "att1"
    if variant is None:
        variant = "no_attention" if attention == "none" else "cral"
    if (attention == "none") != (variant == "no_attention"):
        raise ConfigError(
            f"attention={attention!r} does not fit variant={variant!r}: attention='none' and "
            "variant='no_attention' mean the same model (the baseline) and go together; "
            "give one of them alone, or choose attention in ('att1', 'att2') with variant in "
            "('cral', 'no_category', 'no_residual')"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    return {"backbone": backbone, "attention": attention, "variant": variant, "num_classes": num_classes}


def build_model(
    *,
    backbone: str = "resnet50",
    attention: str | None = None,
    variant: str | None = None,
    num_classes: int = 14,
    weights: WeightsArg = None,
    progress: bool = True,
) -> CRALNet:
    """Build a CRAL network (or one of the paper's ablations).

    Args:
        backbone: ``"resnet50"`` or ``"densenet121"`` (the paper's), or ``"resnet18"``
            (quick CPU runs).
        attention: ``"att1"``, ``"att2"`` or ``"none"``. None means ``"att1"``, or
            ``"none"`` when ``variant="no_attention"``.
        variant: ``"cral"``, ``"no_category"``, ``"no_residual"`` or ``"no_attention"``
            (Table 2). None means ``"cral"``, or ``"no_attention"`` when
            ``attention="none"``. ``attention="none"`` and ``variant="no_attention"``
            imply each other; any other pairing with either is an error.
        num_classes: ``C``, the number of findings (14 for ChestX-ray14).
        weights: where the weights come from:

            - None: random initialization;
            - ``"imagenet"``: torchvision's ImageNet weights of the backbone
              (``IMAGENET1K_V1``), from the torch hub cache or downloaded into it; the
              attention branch and the head start random;
            - a torchvision ``WeightsEnum`` member: those backbone weights;
            - a path to a torchvision-format state_dict of the backbone network (its
              ``fc``/``classifier`` entries are ignored); the rest starts random;
            - a path to a cral checkpoint: either a ``CRALNet`` state_dict or a dict
              holding one under ``"model"`` (or ``"state_dict"``), optionally with the
              model's config under ``"model_config"`` or ``"config"``. The whole network is
              loaded; the config must match the arguments.
        progress: show a progress bar while downloading.

    Returns:
        A :class:`CRALNet` in training mode, on the CPU, in float32.

    Raises:
        ConfigError: an unknown or inconsistent value (the message names the choices).
        WeightsError: weights that cannot be downloaded or read, or do not fit the model.
            A failed download is never replaced by random weights.

    Example:
        >>> import torch
        >>> model = build_model(backbone="resnet18", attention="att1", variant="cral")
        >>> out = model(torch.randn(2, 3, 224, 224), return_maps=True)
        >>> out["logits"].shape, out["attention"].shape
        (torch.Size([2, 14]), torch.Size([2, 14, 7, 7]))
    """
    config = resolve_config(
        backbone=backbone, attention=attention, variant=variant, num_classes=num_classes
    )
    name = config["backbone"]
    checkpoint: Any = None
    if weights is not None and (
        isinstance(weights, os.PathLike) or (isinstance(weights, str) and weights.lower() != "imagenet")
    ):
        checkpoint = read_weights_file(weights)
        net = build_backbone(name, weights=None)
    else:
        net = build_backbone(name, weights=weights, progress=progress)
    model = assemble(net, config)
    if checkpoint is not None:
        cral = _cral_state_dict(checkpoint)
        if cral is None:
            load_backbone_state_dict(net, checkpoint, name=name, source=f"weights file {str(weights)!r}")
        else:
            _load_cral_checkpoint(model, *cral, source=str(weights))
    return model


def assemble(net: nn.Module, config: dict[str, Any]) -> CRALNet:
    """Put a CRAL model together on a backbone module ``net`` (with ``num_features``).

    ``config`` is :func:`resolve_config`'s dict; ``config["backbone"]`` is only recorded. The
    benchmarks use this to compare backbones that are not one of :data:`BACKBONES`.
    """
    n, c = net.num_features, config["num_classes"]
    if config["variant"] == "no_attention":
        return CRALNet(net, None, GAPHead(n, c), config=config)
    num_maps = 1 if config["variant"] == "no_category" else c
    attention = _ATTENTION_MODULES[config["attention"]](n, num_maps)
    head = CategoryResidualHead(n, c, residual=config["variant"] != "no_residual")
    return CRALNet(net, attention, head, config=config)


def _choice(what: str, value: Any, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise ConfigError(f"unknown {what} {value!r}; choose one of {', '.join(map(repr, choices))}")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def _cral_state_dict(obj: Any) -> tuple[dict[str, Tensor], dict[str, Any] | None] | None:
    """Return (state_dict, config or None) when ``obj`` is a cral checkpoint, else None."""
    if not isinstance(obj, Mapping):
        return None
    state = next((obj[k] for k in _STATE_KEYS if _is_state_dict(obj.get(k))), obj)
    if not _is_state_dict(state):
        return None
    state = strip_wrapper_prefixes(state)
    if not any(k.startswith("backbone.") for k in state):
        return None
    config = None
    for candidate in (obj.get("model_config"), obj.get("config")):
        if isinstance(candidate, Mapping) and isinstance(candidate.get("model"), Mapping):
            candidate = candidate["model"]
        if isinstance(candidate, Mapping) and "backbone" in candidate:
            config = dict(candidate)
            break
    return state, config


def _load_cral_checkpoint(
    model: CRALNet, state: dict[str, Tensor], saved: dict[str, Any] | None, *, source: str
) -> None:
    if saved is not None:
        try:
            saved_config = resolve_config(**{k: saved[k] for k in _CONFIG_KEYS if k in saved})
        except ConfigError as exc:
            raise WeightsError(f"checkpoint {source!r} holds an invalid model config: {exc}") from exc
        if saved_config != model.config:
            raise WeightsError(
                f"checkpoint {source!r} is a {saved_config} model, but build_model was asked for "
                f"{model.config}; pass the checkpoint's values (build_model(**config, weights=...))"
            )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(
            f"checkpoint {source!r} does not fit the model {model.config}: {exc}"
        ) from exc
