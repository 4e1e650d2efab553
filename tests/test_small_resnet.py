"""The book's fast backbone: ResNet-18's layout at half width, conv5 at 1/16; the fast mode's maps are 7 x 7."""

from __future__ import annotations

import pytest
import torch
import torchvision

from cral_lib.choices import BACKBONE_CHANNELS, BACKBONE_STRIDE, BACKBONES
from cral_lib.errors import WeightsError
from cral_lib.models import build_backbone, build_model
from cral_lib.models.small_resnet import SmallResNet
from cral_lib.train import fast_recipe


def test_fast_mode_maps_are_at_least_the_papers_7_by_7():
    config = fast_recipe()
    model = build_model(backbone=config.backbone, attention=config.attention, variant=config.variant).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, config.image_size, config.image_size), return_maps=True)
    assert out["conv5"].shape[-2:] == out["attention"].shape[-2:]
    assert min(out["attention"].shape[-2:]) >= 7
    assert config.image_size // BACKBONE_STRIDE[config.backbone] >= 7


@pytest.mark.parametrize("name", BACKBONES)
def test_stride_and_channels_tables_are_what_the_networks_do(name):
    net = build_backbone(name).eval()
    with torch.no_grad():
        f = net(torch.zeros(1, 3, 224, 224))
    assert f.shape[1] == BACKBONE_CHANNELS[name] == net.num_features
    assert f.shape[-1] == 224 // BACKBONE_STRIDE[name]


def test_small_resnet_is_resnet18s_layout_built_from_torchvision_blocks():
    net = SmallResNet(32)
    blocks = [m for m in net.modules() if isinstance(m, torchvision.models.resnet.BasicBlock)]
    assert len(blocks) == 8
    assert [layer[0].conv1.out_channels for layer in (net.layer1, net.layer2, net.layer3, net.layer4)] == [32, 64, 128, 256]
    assert net.layer4[0].conv1.stride == (1, 1) and net.layer3[0].conv1.stride == (2, 2)
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 112, 112)).shape == (2, 256, 7, 7)
        assert SmallResNet(32, output_stride=8)(torch.zeros(1, 3, 56, 56)).shape == (1, 256, 7, 7)
    with pytest.raises(ValueError, match="output_stride"):
        SmallResNet(32, output_stride=4)


def test_at_width_64_resnet18s_imagenet_shaped_weights_load_and_give_resnet18_until_layer4():
    """A stride changes no weight's shape: ResNet-18's state_dict fits; up to layer3 the outputs agree."""
    torch.manual_seed(0)
    ref = torchvision.models.resnet18().eval()
    net = SmallResNet(64).eval()
    net.load_state_dict({k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        a = ref.layer3(ref.layer2(ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x)))))))
        b = net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))))
        torch.testing.assert_close(a, b)
        assert ref.layer4(a).shape[-1] == 4 and net.layer4(b).shape[-1] == 7


def test_small_resnet_has_no_imagenet_weights():
    with pytest.raises(WeightsError, match="no ImageNet weights"):
        build_backbone("small_resnet", weights="imagenet")


def test_att1_width_follows_the_features_up_to_512():
    small = build_model(backbone="small_resnet", attention="att1", variant="cral")
    assert small.attention.conv1.out_channels == 256
    big = build_model(backbone="resnet18", attention="att1", variant="cral")
    assert big.attention.conv1.out_channels == 512
