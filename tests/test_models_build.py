"""cral_lib.models: the builder's rules, parameter counts, and where the weights come from."""

from __future__ import annotations

import pytest
import torch
import torchvision

from cral_lib.errors import ConfigError, WeightsError
from cral_lib.models import (
    ATTENTIONS,
    BACKBONES,
    VARIANTS,
    Att1,
    Att2,
    build_backbone,
    build_model,
    hub_cache_path,
    imagenet_weights,
)


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    # These small models run far faster on one thread when the cores are shared: OpenMP
    # threads that wait for a busy core spin instead of working (10x slower on 2 shared cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- configuration


def test_defaults_are_the_papers_model():
    model = build_model(backbone="resnet18")
    assert model.config == {
        "backbone": "resnet18",
        "attention": "att1",
        "variant": "cral",
        "num_classes": 14,
    }
    assert isinstance(model.attention, Att1)
    assert model.num_features == 512 and model.num_classes == 14
    assert tuple(model.classifier_weight.shape) == (14, 512)
    assert tuple(model.classifier_bias.shape) == (14,)
    assert model.training


@pytest.mark.parametrize(
    "kwargs, attention, variant",
    [
        ({"attention": "none"}, "none", "no_attention"),
        ({"variant": "no_attention"}, "none", "no_attention"),
        ({"attention": "none", "variant": "no_attention"}, "none", "no_attention"),
        ({"attention": "att2"}, "att2", "cral"),
        ({"variant": "no_residual"}, "att1", "no_residual"),
        ({"attention": "ATT2", "variant": "No_Category"}, "att2", "no_category"),
    ],
)
def test_attention_none_and_variant_no_attention_imply_each_other(kwargs, attention, variant):
    model = build_model(backbone="resnet18", **kwargs)
    assert (model.config["attention"], model.config["variant"]) == (attention, variant)
    assert (model.attention is None) == (variant == "no_attention")


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"attention": "none", "variant": "cral"}, "'cral'"),
        ({"attention": "none", "variant": "no_residual"}, "'no_residual'"),
        ({"attention": "att1", "variant": "no_attention"}, "'att1'"),
        ({"attention": "att2", "variant": "no_attention"}, "'att2'"),
    ],
)
def test_inconsistent_attention_and_variant_raise(kwargs, named):
    with pytest.raises(ConfigError, match=named) as info:
        build_model(backbone="resnet18", **kwargs)
    assert "no_attention" in str(info.value) and "'none'" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, value, choices",
    [
        ({"backbone": "vgg16"}, "'vgg16'", BACKBONES),
        ({"backbone": "resnet18", "attention": "att3"}, "'att3'", ATTENTIONS),
        ({"backbone": "resnet18", "variant": "w/o category"}, "'w/o category'", VARIANTS),
        ({"backbone": None}, "None", BACKBONES),
    ],
)
def test_unknown_values_name_the_value_and_the_choices(kwargs, value, choices):
    with pytest.raises(ConfigError) as info:
        build_model(**kwargs)
    message = str(info.value)
    assert value in message
    assert all(repr(choice) in message for choice in choices)


@pytest.mark.parametrize("num_classes", [0, -3, 2.5, "14", True])
def test_bad_num_classes(num_classes):
    with pytest.raises(ConfigError, match="num_classes"):
        build_model(backbone="resnet18", num_classes=num_classes)


def test_builder_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        build_model("resnet18")  # type: ignore[misc]


def test_other_num_classes():
    model = build_model(backbone="resnet18", attention="att2", num_classes=3)
    out = model(torch.randn(2, 3, 64, 64), return_maps=True)
    assert out["logits"].shape == (2, 3) and out["attention"].shape == (2, 3, 2, 2)
    assert model.config["num_classes"] == 3


# --------------------------------------------------------------------------- parameter counts


def test_att1_parameter_count_by_hand():
    N, C, width = 2048, 14, 512
    conv3x3_a = 3 * 3 * N * width + width  # 3x3 conv, N -> 512, with bias
    conv3x3_b = 3 * 3 * width * width + width  # 3x3 conv, 512 -> 512, with bias
    conv1x1 = 1 * 1 * width * C + C  # 1x1 conv, 512 -> C, with bias
    assert conv3x3_a + conv3x3_b + conv1x1 == 11_804_686
    assert n_params(Att1(N, C)) == 11_804_686
    # "w/o category": the last layer has one output channel.
    assert n_params(Att1(N, 1)) == conv3x3_a + conv3x3_b + width + 1
    # DenseNet-121 and ResNet-18, as the docstring of att1.py states.
    assert n_params(Att1(1024, 14)) == 7_086_094
    assert n_params(Att1(512, 14)) == 4_726_798


@pytest.mark.parametrize("N, expected", [(2048, 18_911_246), (1024, 5_003_278), (512, 1_391_630)])
def test_att2_parameter_count_by_hand(N, expected):
    C, width, mid = 14, 512, N // 4
    unit = (N * mid) + (9 * mid * mid) + (mid * N) + 2 * N + 2 * mid + 2 * mid  # convs + 3 BN
    mask_head = 2 * N + N * width + 2 * width + width * C + C  # BN, 1x1, BN, 1x1 (+bias)
    assert 4 * unit + mask_head == expected  # 2 trunk units + 2 mask units
    assert n_params(Att2(N, C)) == expected


def test_resnet50_backbone_count_matches_torchvision():
    tv = torchvision.models.resnet50()
    ours = build_backbone("resnet50")
    assert n_params(ours) == n_params(tv) - n_params(tv.fc) == 23_508_032
    assert ours.num_features == 2048


def test_densenet121_backbone_count_matches_torchvision():
    tv = torchvision.models.densenet121()
    ours = build_backbone("densenet121")
    assert n_params(ours) == n_params(tv) - n_params(tv.classifier) == 6_953_856
    assert ours.num_features == 1024


# The totals reported in the book: backbone + attention branch + head, C = 14.
PARAMETER_COUNTS = {
    ("resnet50", "att1", "cral"): 23_508_032 + 11_804_686 + 28_686,
    ("resnet50", "att2", "cral"): 23_508_032 + 18_911_246 + 28_686,
    ("resnet50", "none", "no_attention"): 23_508_032 + 28_686,
    ("densenet121", "att1", "cral"): 6_953_856 + 7_086_094 + 14_350,
    ("densenet121", "att2", "cral"): 6_953_856 + 5_003_278 + 14_350,
    ("densenet121", "none", "no_attention"): 6_953_856 + 14_350,
    ("resnet18", "att1", "cral"): 11_176_512 + 4_726_798 + 7_182,
    ("resnet18", "att2", "cral"): 11_176_512 + 1_391_630 + 7_182,
    ("resnet18", "none", "no_attention"): 11_176_512 + 7_182,
}


@pytest.mark.parametrize("key", list(PARAMETER_COUNTS), ids="-".join)
def test_model_parameter_counts(key):
    backbone, attention, variant = key
    model = build_model(backbone=backbone, attention=attention, variant=variant)
    assert n_params(model) == PARAMETER_COUNTS[key]
    # The head is C classifiers of N weights and one bias each (Eq. 8), for every variant.
    assert n_params(model.head) == 14 * model.num_features + 14


def test_ablations_change_only_what_they_say():
    cral = build_model(backbone="resnet18", attention="att1", variant="cral")
    no_cat = build_model(backbone="resnet18", attention="att1", variant="no_category")
    no_res = build_model(backbone="resnet18", attention="att1", variant="no_residual")
    assert n_params(cral) - n_params(no_cat) == 13 * (512 + 1)  # 13 fewer output maps
    assert n_params(no_res) == n_params(cral)  # the residual adds no parameters
    assert no_cat.attention.conv3.out_channels == 1 and cral.attention.conv3.out_channels == 14


# --------------------------------------------------------------------------- weights


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub cache, so that 'imagenet' must be downloaded (and fails offline)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


def _offline(*args, **kwargs):
    import urllib.error

    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_failed_download_raises_weights_error_with_the_fix(torch_home, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", _offline)  # offline, without waiting
    expected_path = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert hub_cache_path(imagenet_weights("resnet18").url) == expected_path
    with pytest.raises(WeightsError) as info:
        build_model(backbone="resnet18", weights="imagenet")
    message = str(info.value)
    assert "URLError" in message
    assert str(expected_path) in message  # where to put the file by hand
    assert "weights=None" in message and "weights='/path/to/resnet18-f37072fd.pth'" in message


def test_real_download_attempt_fails_cleanly_offline(torch_home):
    # No network here: torchvision's own download path must end in a WeightsError too.
    with pytest.raises(WeightsError, match="could not download the ImageNet weights of resnet18"):
        build_backbone("resnet18", weights="imagenet", progress=False)


def test_imagenet_weights_from_the_hub_cache(torch_home):
    # The fix the error message gives: a file at the printed path is used without download.
    source = torchvision.models.resnet18()
    path = hub_cache_path(imagenet_weights("resnet18").url)
    path.parent.mkdir(parents=True)
    torch.save(source.state_dict(), path)
    model = build_model(backbone="resnet18", weights="imagenet")
    torch.testing.assert_close(model.backbone.conv1.weight, source.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(model.backbone.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)


def test_imagenet_weights_download_success_is_used(monkeypatch):
    source = torchvision.models.densenet121()
    calls = []

    def fake_download(url, **kwargs):
        calls.append((url, kwargs))
        return source.state_dict()

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    model = build_model(backbone="densenet121", attention="att2", weights="imagenet")
    assert calls[0][0] == torchvision.models.DenseNet121_Weights.IMAGENET1K_V1.url
    assert calls[0][1]["check_hash"] is True and calls[0][1]["weights_only"] is True
    assert torch.equal(model.backbone.features.conv0.weight, source.features.conv0.weight)


def test_weights_enum_member(monkeypatch):
    source = torchvision.models.resnet18()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda url, **kw: source.state_dict())
    backbone = build_backbone("resnet18", weights=torchvision.models.ResNet18_Weights.DEFAULT)
    assert torch.equal(backbone.layer1[0].conv1.weight, source.layer1[0].conv1.weight)


def test_local_torchvision_file(tmp_path):
    source = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)  # includes fc.*, which is dropped
    model = build_model(backbone="resnet18", attention="att2", weights=str(path))
    assert torch.equal(model.backbone.layer3[0].downsample[0].weight, source.layer3[0].downsample[0].weight)
    model = build_model(backbone="resnet18", attention="none", weights=path)  # a Path works too
    assert torch.equal(model.backbone.conv1.weight, source.conv1.weight)
    # torchvision's published files have no 'num_batches_tracked' entries.
    torch.save({k: v for k, v in source.state_dict().items() if "num_batches" not in k}, path)
    model = build_model(backbone="resnet18", weights=path)
    assert torch.equal(model.backbone.bn1.running_mean, source.bn1.running_mean)


def test_local_densenet_file_with_old_key_names(tmp_path):
    # torchvision's published DenseNet files use 'norm.1'-style names; they must load.
    source = torchvision.models.densenet121()
    old = {}
    for key, value in source.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue  # the published files predate these counters
        for part in ("norm1", "norm2", "relu1", "relu2", "conv1", "conv2"):
            if ".denselayer" in key and f".{part}." in key:
                key = key.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
        old[key] = value
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    path = tmp_path / "densenet121_old.pth"
    torch.save(old, path)
    backbone = build_backbone("densenet121", weights=path)
    assert torch.equal(
        backbone.features.denseblock4.denselayer16.conv2.weight,
        source.features.denseblock4.denselayer16.conv2.weight,
    )


def test_weights_of_another_network_raise(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(WeightsError, match="does not fit the resnet50 backbone") as info:
        build_model(backbone="resnet50", weights=path)
    assert "wrong shape" in str(info.value)
    with pytest.raises(WeightsError, match="missing keys"):
        build_model(backbone="densenet121", weights=path)


@pytest.mark.parametrize("content", [b"not a torch file", None])
def test_unreadable_or_missing_weights_file(tmp_path, content):
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match="weights.pth"):
        build_model(backbone="resnet18", weights=str(path))


def test_weights_of_an_unsupported_type():
    with pytest.raises(WeightsError, match="got 3"):
        build_model(backbone="resnet18", weights=3)


def test_unknown_weights_string_is_treated_as_a_missing_file():
    with pytest.raises(WeightsError, match="'imagenet1k' not found.*None"):
        build_model(backbone="resnet18", weights="imagenet1k")


def test_cral_checkpoint_round_trip(tmp_path):
    model = build_model(backbone="resnet18", attention="att2", variant="no_category")
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    expected = model(x)
    # A checkpoint dict as the trainer writes it (state_dict plus plain data).
    path = tmp_path / "last.pt"
    torch.save({"model": model.state_dict(), "config": dict(model.config), "epoch": 3}, path)
    loaded = build_model(**model.config, weights=path).eval()
    torch.testing.assert_close(loaded(x), expected)
    # A bare state_dict, with the prefix DistributedDataParallel adds.
    path2 = tmp_path / "bare.pt"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path2)
    loaded = build_model(**model.config, weights=str(path2)).eval()
    torch.testing.assert_close(loaded(x), expected)


def test_cral_checkpoint_with_another_config_raises(tmp_path):
    model = build_model(backbone="resnet18", attention="att1", variant="cral")
    path = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "config": model.config}, path)
    with pytest.raises(WeightsError, match="no_residual"):
        build_model(backbone="resnet18", attention="att1", variant="no_residual", weights=path)
    # Without a stored config the shapes still have to fit.
    torch.save(model.state_dict(), path)
    with pytest.raises(WeightsError, match="does not fit"):
        build_model(backbone="resnet18", attention="att2", weights=path)
