"""The book's fast backbone: ResNet-18's layout, narrower, with conv5 at 1/16 of the input.

Not in the paper. The paper's backbones (ResNet-50, DenseNet-121) reach conv5 at 1/32 of the
input, so its 224 px crops give the 7 x 7 maps of Fig. 5. A 2-core CPU cannot train those in
the minutes a chapter may take, and ResNet-18 on 64 px crops (the book's first fast mode) gives
2 x 2 maps, which can point at only four places of an image. This network keeps the resolution
of the paper's maps at a quarter of the pixels: on 112 px crops its conv5 map is 7 x 7.

It is built from torchvision's own ``BasicBlock`` in ResNet-18's layout (a 7 x 7 stride-2 stem
and a max-pool, then four stages of two blocks), with two changes:

- the widths are ``(w, 2w, 4w, 8w)`` instead of ``(64, 128, 256, 512)`` (the book uses
  ``w = 32``: a quarter of ResNet-18's multiply-adds per pixel);
- the last stage keeps the resolution (its first block has stride 1, not 2), so the output
  stride is 16 instead of 32: the same receptive-field growth as before, one fewer halving.

The modules have torchvision's ResNet attribute names (``conv1``, ``bn1``, ``layer1`` ...), and
with ``w = 64`` the shapes are exactly ResNet-18's, so torchvision's ResNet-18 ImageNet weights
load into ``small_resnet(64)`` (a stride does not change a weight's shape). Initialization is
torchvision's ResNet one: Kaiming-normal convolutions (fan-out), batch-norm weights 1 and biases 0.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

#: ResNet-18's blocks per stage.
RESNET18_LAYERS: tuple[int, int, int, int] = (2, 2, 2, 2)


class SmallResNet(nn.Module):
    """ResNet-18's layout at widths ``(w, 2w, 4w, 8w)``, conv5 at 1/16 or 1/8 of the input.

    Args:
        width: ``w``, the channels of the stem and the first stage (ResNet-18: 64).
        output_stride: 16 (the last stage keeps the resolution) or 8 (the last two do).
        layers: blocks per stage.

    Attributes:
        num_features: ``N = 8 w``, the channels of conv5.
    """

    def __init__(self, width: int = 32, *, output_stride: int = 16,
                 layers: tuple[int, int, int, int] = RESNET18_LAYERS) -> None:
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        strides = {32: (1, 2, 2, 2), 16: (1, 2, 2, 1), 8: (1, 2, 1, 1)}[output_stride]
        stages, channels = [], width
        for i, (blocks, stride) in enumerate(zip(layers, strides)):
            out = width * 2**i
            downsample = None
            if stride != 1 or channels != out:
                downsample = nn.Sequential(nn.Conv2d(channels, out, kernel_size=1, stride=stride, bias=False),
                                           nn.BatchNorm2d(out))
            stage = [BasicBlock(channels, out, stride, downsample)]
            stage += [BasicBlock(out, out) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            channels = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.num_features: int = channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Return conv5 (``B x 8w x H/s x W/s`` for output stride ``s``, non-negative) of images ``x``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


__all__ = ["RESNET18_LAYERS", "SmallResNet"]
