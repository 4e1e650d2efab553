"""``att1``: the convolutional attention branch of CRAL.

Paper: Q. Guan, Y. Huang, "Multi-label chest X-ray image classification via category-wise
residual attention learning", Pattern Recognition Letters 130 (2020) 259-266 (Section 3.3, Fig. 2, Eq. 2-3).

"att1 consists of two 3x3 convolutional layers and each followed by a non-linear activation
layer (ReLU), one 1x1 convolutional layer and a non-linear normalization layer (Sigmoid). The
output is a C-channels attention scores corresponding to the C classes." The features that
att1 weighs are the backbone's conv5 map ``F`` itself (att1 is an identity mapping on the
feature path).

Choices the paper leaves open, made here:

- the two 3x3 convolutions have ``width = min(512, N)`` output channels, padding 1 (the map
  keeps its ``h x w``), and a bias; there is no batch normalization (the paper names none).
  512 for the paper's backbones and ResNet-18; the book's fast backbone (``N = 256``) gets 256,
  so that the branch does not cost more than the network it sits on;
- the 1x1 convolution maps ``width`` channels to ``C`` (14) attention maps, with a bias;
- PyTorch's default initialization throughout, so that the scores start near 0.5.

For ``N`` input channels, ``C`` maps and width ``w`` the branch has
``(9 N w + w) + (9 w w + w) + (w C + C)`` parameters: 11,804,686 for ResNet-50 (N = 2048,
C = 14), 7,086,094 for DenseNet-121 (N = 1024), 4,726,798 for ResNet-18 (N = 512).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class AttentionOutput(NamedTuple):
    """What an attention branch returns.

    Attributes:
        attention: the normalized scores ``A`` of Eq. 3, ``B x C x h x w`` in ``[0, 1]``
            (``B x 1 x h x w`` when one map is shared by all classes).
        features: the map that ``A`` weighs in Eq. 4-5 (``F`` for att1, ``F~`` for att2).
    """

    attention: Tensor
    features: Tensor


class Att1(nn.Module):
    """The att1 attention branch: conv3x3-ReLU, conv3x3-ReLU, conv1x1, sigmoid (Fig. 2).

    Args:
        in_channels: ``N``, the channels of the conv5 map.
        num_maps: the number of attention maps: ``C`` for CRAL, 1 for the "w/o category"
            ablation.
        width: the channels of the two 3x3 convolutions (default ``min(512, in_channels)``).
    """

    def __init__(self, in_channels: int, num_maps: int, *, width: int | None = None) -> None:
        super().__init__()
        width = min(512, in_channels) if width is None else width
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(width, num_maps, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)

    def flat_start(self) -> None:
        """Zero the last 1x1 convolution: every score ``Z`` is 0 and every attention 0.5, for any input.

        The model then starts as if it had no attention (Eq. 5 weighs every position by 1.5), and
        the maps vary only as far as training makes them; the first two convolutions start to
        learn once the last one has moved away from zero.
        """
        nn.init.zeros_(self.conv3.weight)
        nn.init.zeros_(self.conv3.bias)

    def scores(self, x: Tensor) -> Tensor:
        """Return the unnormalized scores ``Z`` of Eq. 2 (``B x num_maps x h x w``)."""
        return self.conv3(self.relu(self.conv2(self.relu(self.conv1(x)))))

    def forward(self, x: Tensor) -> AttentionOutput:
        """Compute the attention of Eq. 3 from the conv5 map ``x`` (``B x N x h x w``).

        Returns:
            ``AttentionOutput(attention=sigmoid(Z), features=x)``.
        """
        return AttentionOutput(torch.sigmoid(self.scores(x)), x)
