"""``att2``: the hourglass (soft-mask) attention branch of CRAL, with its trunk.

Paper: Q. Guan, Y. Huang, "Multi-label chest X-ray image classification via category-wise
residual attention learning", Pattern Recognition Letters 130 (2020) 259-266 (Section 3.3,
Fig. 2). att2 "is similar to the hourglass structured attention proposed in" F. Wang et al.,
"Residual attention network for image classification", CVPR 2017, 3156-3164: "a large
receptive field by several max pooling layers among the residual blocks, and the global
information is then expanded by a symmetrical upsampling architecture. The last two
convolutional layers are two consecutive 1x1 convolution layers. The last one outputs a
C-channel attention score." The conv5 map ``F`` also goes through "another two residual
blocks" (the trunk), whose output ``F~`` replaces ``F`` in Eq. 4-5.

The closest model is the attention module of the Residual Attention Network's 14x14 stage
(stage 3), scaled to the 7x7 conv5 map. Choices the paper leaves open, made here:

- **Residual unit**: the pre-activation bottleneck of the Residual Attention Network
  (He et al. 2016's "identity mappings" form): BN-ReLU-conv1x1 (N -> N/4), BN-ReLU-conv3x3
  (N/4 -> N/4), BN-ReLU-conv1x1 (N/4 -> N), plus the identity; convolutions without bias.
  So the bottleneck widths are 512 (ResNet-50), 256 (DenseNet-121), 128 (ResNet-18).
- **Trunk**: two such units on ``F``, giving ``F~`` (``N`` channels, same ``h x w``).
  Pre-activation units end without a ReLU, so ``F~`` may be negative: the ReLU of Eq. 6
  matters here (for att1 it does not, because ``F`` is already a ReLU output).
- **Soft-mask branch, pooling depth one**: one max-pool (3x3, stride 2, padding 1: 7x7 ->
  4x4, as stage 3 pools 14x14 -> 7x7), two residual units at 4x4, and bilinear upsampling
  back to the input's ``h x w`` (any size: 4x4 at 224 px becomes 7x7, 1x1 at 64 px becomes
  2x2). A second pooling level would leave 2x2 and 1x1 maps; after one, the two 3x3
  convolutions already see the whole 4x4 map. With one level there is no skip connection
  (the RAN's skips join levels). Upsampling uses ``align_corners=True`` like the RAN code:
  the pooled cells are centred on every other input position, which this maps back exactly
  for odd sizes such as 7.
- **Mask head**: BN-ReLU-conv1x1 (N -> ``width`` = 512, no bias), BN-ReLU-conv1x1
  (``width`` -> C, with bias), sigmoid.
- There are no extra units before the split or after the merge (stage 3 of the RAN has one
  each): the paper names only the two trunk units.

Parameters: one residual unit has ``N^2/2 + 9 N^2/16`` convolution weights and ``3 N``
batch-norm parameters (4,462,592 for N = 2048); the mask head has
``2 N + N w + 2 w + w C + C``. The whole branch (C = 14, w = 512): 18,911,246 for
ResNet-50, 5,003,278 for DenseNet-121, 1,391,630 for ResNet-18.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .att1 import AttentionOutput


class PreActBottleneck(nn.Module):
    """A pre-activation bottleneck residual unit that keeps channels and size.

    ``x + conv1x1(relu(bn(conv3x3(relu(bn(conv1x1(relu(bn(x)))))))))``, the residual unit
    of the Residual Attention Network (Wang et al., CVPR 2017).

    Args:
        channels: input and output channels.
        mid_channels: the bottleneck width (default ``channels // 4``).
    """

    def __init__(self, channels: int, mid_channels: int | None = None) -> None:
        super().__init__()
        mid = mid_channels or max(channels // 4, 1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, mid, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, channels, kernel_size=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the unit to ``x`` (``B x channels x h x w``)."""
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return x + out


class Att2(nn.Module):
    """The att2 branch: a two-unit trunk ``F -> F~`` and an hourglass soft mask ``F -> A``.

    Args:
        in_channels: ``N``, the channels of the conv5 map.
        num_maps: the number of attention maps: ``C`` for CRAL, 1 for "w/o category".
        width: the channels of the first 1x1 convolution of the mask head.
    """

    def __init__(self, in_channels: int, num_maps: int, *, width: int = 512) -> None:
        super().__init__()
        self.trunk = nn.Sequential(PreActBottleneck(in_channels), PreActBottleneck(in_channels))
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.mask_units = nn.Sequential(
            PreActBottleneck(in_channels), PreActBottleneck(in_channels)
        )
        self.mask_head = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, width, kernel_size=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, num_maps, kernel_size=1),
        )

    def flat_start(self) -> None:
        """Zero the mask head's last 1x1 convolution: every attention starts at 0.5 (see ``Att1.flat_start``)."""
        nn.init.zeros_(self.mask_head[-1].weight)
        nn.init.zeros_(self.mask_head[-1].bias)

    def scores(self, x: Tensor) -> Tensor:
        """Return the unnormalized scores ``Z`` of Eq. 2 (``B x num_maps x h x w``)."""
        mask = self.mask_units(self.pool(x))
        mask = F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=True)
        return self.mask_head(mask)

    def forward(self, x: Tensor) -> AttentionOutput:
        """Compute ``A`` (Eq. 3) and ``F~`` from the conv5 map ``x`` (``B x N x h x w``).

        Returns:
            ``AttentionOutput(attention=sigmoid(Z), features=trunk(x))``.
        """
        return AttentionOutput(torch.sigmoid(self.scores(x)), self.trunk(x))
