"""The literal, slow implementation of CRAL's head (Eq. 4-10 of the paper), for checking.

Guan & Huang, Pattern Recognition Letters 130 (2020) 259-266, Sections 3.3-3.4. Every
tensor the equations name is built as written, ``B x C x N x h x w`` included, and each
class gets its own fully connected layer in a Python loop. Nothing here is fast: the
library's head (:mod:`cral_lib.models.head`) computes the same numbers without the 5-D
tensors, and the tests and the book's notebooks check it against these functions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def category_residual_logits(
    features: Tensor, attention: Tensor, weight: Tensor, bias: Tensor, *, residual: bool = True
) -> Tensor:
    """Logits of the category-wise residual attention head, term by term (Eq. 4-8).

    Args:
        features: ``F`` (``F~`` for att2), ``B x N x h x w``.
        attention: ``A``, ``B x C x h x w``, or ``B x 1 x h x w`` when one map serves every
            class (the "w/o category" ablation).
        weight: ``C x N``; row ``c`` holds the weights of the classifier of class ``c``.
        bias: ``C``, the classifiers' biases.
        residual: True for Eq. 5 (``H = F + V``); False for the "w/o residual" ablation
            (``H = V``).

    Returns:
        Logits ``B x C`` (the input of the sigmoid of Eq. 9).
    """
    batch, channels, height, width = features.shape
    num_classes = weight.shape[0]
    attention = attention.expand(batch, num_classes, height, width)
    # Eq. 4: v^{n,c}_{ij} = F^n_{ij} * a^c_{ij}, for every class c and channel n.
    V = features[:, None, :, :, :] * attention[:, :, None, :, :]  # B x C x N x h x w
    # Eq. 5: H^{n,c} = F^n + V^{n,c}.
    H = features[:, None, :, :, :] + V if residual else V
    # Eq. 6: ReLU.
    H_relu = torch.clamp(H, min=0)
    # Eq. 7: average over the K = h * w positions -> an N-vector per class.
    K = height * width
    H_pooled = H_relu.sum(dim=(3, 4)) / K  # B x C x N
    # Eq. 8: class c's own fully connected layer on class c's own vector.
    logits = [H_pooled[:, c, :] @ weight[c] + bias[c] for c in range(num_classes)]
    return torch.stack(logits, dim=1)


def gap_fc_logits(features: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Logits of the "w/o attention" baseline: global average pooling, then one FC layer.

    Args:
        features: the conv5 map, ``B x N x h x w``.
        weight: ``C x N``.
        bias: ``C``.

    Returns:
        Logits ``B x C``.
    """
    pooled = features.sum(dim=(2, 3)) / (features.shape[2] * features.shape[3])
    return pooled @ weight.t() + bias


def probabilities(logits: Tensor) -> Tensor:
    """Eq. 9: the sigmoid of the logits, the probability of each class."""
    return 1 / (1 + torch.exp(-logits))


def bce_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Eq. 10, written out: ``-(1/C) sum_c l_c log p_c + (1 - l_c) log(1 - p_c)``, batch mean.

    Only for checking :func:`cral_lib.models.cral_loss` on moderate logits: ``log(1 - p)``
    overflows for large ones, which is why training uses ``BCEWithLogits``.
    """
    p = probabilities(logits)
    per_image = -(targets * torch.log(p) + (1 - targets) * torch.log(1 - p)).mean(dim=1)
    return per_image.mean()


def literal_forward(model: nn.Module, x: Tensor, *, return_maps: bool = False) -> Tensor | dict:
    """Run a model built by :func:`~cral_lib.models.build_model` with the literal head.

    The backbone and attention branch are the model's own; only Eq. 4-8 are replaced by
    :func:`category_residual_logits` (or :func:`gap_fc_logits` for the baseline).

    Args:
        model: a :class:`~cral_lib.models.CRALNet`.
        x: images, ``B x 3 x H x W``.
        return_maps: return the same dict as ``model(x, return_maps=True)``.

    Returns:
        Logits ``B x C``, or the dict.
    """
    conv5 = model.forward_features(x)
    weight, bias = model.classifier_weight, model.classifier_bias
    if model.attention is None:
        attention, features = None, conv5
        logits = gap_fc_logits(conv5, weight, bias)
    else:
        attention, features = model.attention(conv5)
        logits = category_residual_logits(
            features, attention, weight, bias, residual=model.head.residual
        )
    if not return_maps:
        return logits
    return {"logits": logits, "attention": attention, "features": features, "conv5": conv5}
