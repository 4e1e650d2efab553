"""The category-wise residual attention head (Eq. 4-9) in a fast exact form, its ablations, and the loss.

Guan & Huang, Pattern Recognition Letters 130 (2020) 259-266, Sections 3.3-3.4. Written out,
the head builds for every class ``c`` and channel ``n`` the map ``H^{n,c} = (1 + a^c) F^n``
(Eq. 4-5), applies ReLU (Eq. 6), averages over the ``K = h w`` positions (Eq. 7) and feeds
class ``c``'s own ``N``-vector to class ``c``'s own linear classifier ``(W_c, b_c)`` (Eq. 8):

    logit_c = sum_n W_cn (1/K) sum_k ReLU((1 + a_ck) F_nk) + b_c.

That needs a ``B x C x N x h x w`` tensor (about 360 MB in float32 at batch 64 and 224 px for
ResNet-50), and as much again for each saved intermediate. Since ``1 + a > 0``,
``ReLU((1 + a) F) = (1 + a) ReLU(F)``, and the sums can be reordered:

    logit_c = (1/K) sum_k (1 + a_ck) G_ck + b_c,   G = W ReLU(F)   (a 1x1 convolution).

``G`` (``B x C x h x w``) is the class activation map of Zhou et al. (2016) for the
per-class classifiers, so the head is "weight each class's CAM by ``1 + a`` and average".
Its cost is one ``N -> C`` 1x1 convolution, the same order as the baseline's FC layer. The
identity is exact in real arithmetic; in floating point it differs from the literal form
by rounding only (``tests/test_models_equivalence.py`` checks values and gradients in
float64). Of the exact forms measured on a CPU (a 1x1 convolution, an einsum over ``F``
flattened, and pooling ``(1 + a)`` against ``F`` first, which gives ``B x C x N``), the 1x1
convolution was among the fastest in both memory formats, keeps ``channels_last`` without
copies, and yields the class activation maps for free; next to the backbone, all three
cost next to nothing, while the literal form was tens of times slower than any of them.

The ablations of Table 2 use the same form: "w/o residual" weighs by ``a`` instead of
``1 + a`` (``ReLU(a F) = a ReLU(F)`` holds as ``a >= 0``); "w/o category" has one map,
broadcast over the classes. The gradient of the literal form through ``ReLU(a F)`` differs
only where ``a`` is exactly 0, which a sigmoid reaches only by underflow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import reference


def _at_least_fp32(t: Tensor) -> Tensor:
    # The head's tail is tiny; run it in float32 even under autocast (float64 stays float64).
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


class CategoryResidualHead(nn.Module):
    """Per-class residual attention, ReLU, pooling and per-class classifiers (Eq. 4-8).

    The ``C`` classifiers of Eq. 8 (one ``N -> 1`` linear layer each) are stored stacked in
    ``self.fc`` (an ``nn.Linear(N, C)``): row ``c`` of ``fc.weight`` and ``fc.bias[c]`` are
    classifier ``c``; stacking changes neither the computation nor the initialization
    (PyTorch draws each row from the same ``U(-1/sqrt(N), 1/sqrt(N))``).

    Args:
        num_features: ``N``, the channels of the weighed map.
        num_classes: ``C``.
        residual: True for Eq. 5 (CRAL, "w/o category"); False for "w/o residual".

    Attributes:
        literal: when True, :meth:`forward` runs :func:`reference.category_residual_logits`
            (the slow literal form; for checks and the benchmark).
    """

    def __init__(self, num_features: int, num_classes: int, *, residual: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(num_features, num_classes)
        self.residual = residual
        self.literal = False

    def class_maps(self, features: Tensor, attention: Tensor) -> Tensor:
        """Attention-weighted class activation maps, ``(1 + a_c) * sum_n W_cn ReLU(F)_n``.

        Args:
            features: ``F`` (``F~`` for att2), ``B x N x h x w``.
            attention: ``A``, ``B x C x h x w`` or ``B x 1 x h x w``.

        Returns:
            ``B x C x h x w`` (float32 at least); their mean over positions plus the bias is
            the logits.
        """
        G = F.conv2d(F.relu(features), self.fc.weight[:, :, None, None])
        weight = _at_least_fp32(attention)
        if self.residual:
            weight = 1 + weight
        return weight * _at_least_fp32(G)

    def forward(self, features: Tensor, attention: Tensor) -> Tensor:
        """Return the logits ``B x C`` of Eq. 8 (no sigmoid).

        Args:
            features: ``F`` (``F~`` for att2), ``B x N x h x w``.
            attention: ``A``, ``B x C x h x w`` or ``B x 1 x h x w``.
        """
        if self.literal:
            return reference.category_residual_logits(
                features, attention, self.fc.weight, self.fc.bias, residual=self.residual
            )
        return self.class_maps(features, attention).mean(dim=(2, 3)) + self.fc.bias


class GAPHead(nn.Module):
    """The "w/o attention" baseline head: global average pooling of conv5, one FC layer.

    Args:
        num_features: ``N``.
        num_classes: ``C``.

    Attributes:
        literal: when True, :meth:`forward` runs :func:`reference.gap_fc_logits`.
    """

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(num_features, num_classes)
        self.literal = False

    def class_maps(self, features: Tensor, attention: Tensor | None = None) -> Tensor:
        """Class activation maps ``sum_n W_cn F_n`` (``B x C x h x w``, float32 at least)."""
        return _at_least_fp32(F.conv2d(features, self.fc.weight[:, :, None, None]))

    def forward(self, features: Tensor, attention: Tensor | None = None) -> Tensor:
        """Return the logits ``B x C``: ``fc(mean over positions of features)``."""
        if self.literal:
            return reference.gap_fc_logits(features, self.fc.weight, self.fc.bias)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(features, 1), 1))


def cral_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """The loss of Eq. 10: binary cross-entropy averaged over the C classes (and the batch).

    Computed from logits with ``binary_cross_entropy_with_logits`` (the sigmoid of Eq. 9 and
    the logarithms fused, which stays finite for large logits); the same as
    ``nn.BCEWithLogitsLoss()(logits, targets)`` in float32.

    Args:
        logits: ``B x C`` model outputs.
        targets: ``B x C`` labels in {0, 1} (any dtype).

    Returns:
        A scalar tensor (float32, or float64 for float64 logits).
    """
    logits = _at_least_fp32(logits)
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
