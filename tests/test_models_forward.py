"""cral_lib.models: every backbone x attention x variant runs forward and backward, and the
ablations compute what Table 2 of the paper says they compute."""

from __future__ import annotations

import functools

import pytest
import torch

from cral_lib.errors import ConfigError
from cral_lib.models import Att2, build_model, cral_loss


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    # These small models run far faster on one thread when the cores are shared: OpenMP
    # threads that wait for a busy core spin instead of working (10x slower on 2 shared cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

COMBOS = [
    (backbone, attention, variant)
    for backbone in ("resnet50", "densenet121", "resnet18")
    for attention in ("att1", "att2")
    for variant in ("cral", "no_category", "no_residual")
] + [(backbone, "none", "no_attention") for backbone in ("resnet50", "densenet121", "resnet18")]
IDS = ["-".join(combo) for combo in COMBOS]
N_FEATURES = {"resnet50": 2048, "densenet121": 1024, "resnet18": 512}


@functools.lru_cache(maxsize=None)
def get_model(backbone: str, attention: str, variant: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(backbone=backbone, attention=attention, variant=variant)


def images(batch: int = 2, size: int | tuple[int, int] = 64, seed: int = 0) -> torch.Tensor:
    h, w = (size, size) if isinstance(size, int) else size
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def first_conv(model: torch.nn.Module) -> torch.nn.Conv2d:
    backbone = model.backbone
    return backbone.features.conv0 if hasattr(backbone, "features") else backbone.conv1


@pytest.mark.parametrize("combo", COMBOS, ids=IDS)
def test_forward_backward(combo):
    backbone, attention, variant = combo
    model = get_model(*combo)
    model.train()
    model.zero_grad(set_to_none=True)
    N = N_FEATURES[backbone]
    out = model(images(), return_maps=True)

    assert set(out) == {"logits", "attention", "features", "conv5"}
    logits, A, feats, conv5 = out["logits"], out["attention"], out["features"], out["conv5"]
    assert logits.shape == (2, 14) and torch.isfinite(logits).all()
    assert conv5.shape == (2, N, 2, 2) and (conv5 >= 0).all()  # conv5 after ReLU
    assert feats.shape == (2, N, 2, 2) and torch.isfinite(feats).all()
    if variant == "no_attention":
        assert A is None and feats is conv5
    else:
        assert A.shape == (2, 1 if variant == "no_category" else 14, 2, 2)
        assert (A >= 0).all() and (A <= 1).all()
        if attention == "att1":
            assert feats is conv5  # att1 weighs F itself
        else:
            assert not torch.equal(feats, conv5)  # att2 weighs F~ = trunk(F)
    # The timm-style split gives the same numbers (same batch, so same batch-norm statistics).
    torch.testing.assert_close(model.forward_head(model.forward_features(images())), logits)

    targets = torch.zeros(2, 14)
    targets[0, 3] = targets[1, 0] = 1
    cral_loss(logits, targets).backward()
    grad = first_conv(model).weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    model.zero_grad(set_to_none=True)


def expected_logits(out: dict, model: torch.nn.Module, variant: str) -> torch.Tensor:
    """The head's output computed in the test from the returned maps, per Table 2's definitions."""
    W, b = model.classifier_weight, model.classifier_bias
    F_, A = out["features"], out["attention"]
    if variant == "no_attention":
        return out["conv5"].mean(dim=(2, 3)) @ W.t() + b  # GAP + one FC layer
    weight = A if variant == "no_residual" else 1 + A  # A (.) F  vs  F + A (.) F
    H = torch.relu(weight[:, :, None] * F_[:, None])  # B x C x N x h x w (C = 1 broadcasts)
    pooled = H.mean(dim=(3, 4)).expand(-1, 14, -1)  # B x C x N
    return torch.stack([pooled[:, c] @ W[c] + b[c] for c in range(14)], dim=1)


@pytest.mark.parametrize("combo", COMBOS, ids=IDS)
@torch.no_grad()
def test_variant_computes_its_definition(combo):
    backbone, attention, variant = combo
    model = get_model(*combo).eval()
    # The head does not care where conv5 came from: a random non-negative map (3 x 3, with
    # exact zeros like a ReLU output) keeps this test fast.
    conv5 = torch.relu(torch.randn(2, N_FEATURES[backbone], 3, 3, generator=torch.Generator().manual_seed(1)))
    out = model.forward_head(conv5, return_maps=True)
    assert out["conv5"] is conv5
    torch.testing.assert_close(out["logits"], expected_logits(out, model, variant), rtol=1e-4, atol=1e-5)
    if variant in ("cral", "no_residual"):
        # C different maps, one per class.
        assert out["attention"].shape[1] == 14
        assert not torch.allclose(out["attention"][:, 0], out["attention"][:, 1])
    if variant == "no_category":
        # One map for all classes: the branch itself has one output channel.
        assert out["attention"].shape[1] == 1
    if variant != "no_attention":
        # The residual matters: swapping (1 + A) and A changes the logits.
        other = "cral" if variant == "no_residual" else "no_residual"
        assert not torch.allclose(out["logits"], expected_logits(out, model, other), atol=1e-4)

    # Class activation maps: their mean over positions plus the bias is the logits.
    cams = model.class_activation_maps(conv5)
    assert cams.shape == (2, 14, 3, 3)
    torch.testing.assert_close(cams.mean(dim=(2, 3)) + model.classifier_bias, out["logits"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", ["cral", "no_attention"])
@torch.no_grad()
def test_class_activation_maps_from_images(variant):
    model = get_model("resnet18", "att2" if variant == "cral" else "none", variant).eval()
    x = images(size=96)
    cams = model.class_activation_maps(x)
    assert cams.shape == (2, 14, 3, 3)
    torch.testing.assert_close(model.class_activation_maps(model.forward_features(x)), cams)
    torch.testing.assert_close(cams.mean(dim=(2, 3)) + model.classifier_bias, model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attention", ["att1", "att2"])
@pytest.mark.parametrize("size, grid", [(32, (1, 1)), (64, (2, 2)), (128, (4, 4)), (224, (7, 7)), ((64, 160), (2, 5))])
def test_any_input_size(attention, size, grid):
    model = get_model("resnet18", attention, "cral").eval()
    with torch.no_grad():
        out = model(images(size=size), return_maps=True)
    assert out["attention"].shape == (2, 14, *grid)
    assert out["features"].shape == (2, 512, *grid)
    assert torch.isfinite(out["logits"]).all()


def test_att2_mask_pools_once_and_upsamples_back():
    att = Att2(64, 5).eval()
    seen = []
    att.mask_units.register_forward_hook(lambda mod, inp, outp: seen.append(outp.shape[-2:]))
    with torch.no_grad():
        A, F_tilde = att(torch.rand(2, 64, 7, 7))
    assert seen == [torch.Size([4, 4])]  # one max-pool level: 7x7 -> 4x4
    assert A.shape == (2, 5, 7, 7) and F_tilde.shape == (2, 64, 7, 7)
    assert (F_tilde < 0).any()  # pre-activation units end without ReLU: Eq. 6 matters for att2


def test_logits_have_no_sigmoid_inside():
    model = get_model("resnet18", "att1", "cral").eval()
    with torch.no_grad():
        model.classifier_bias.add_(5.0)
        logits = model(images())
        model.classifier_bias.sub_(5.0)
    assert (logits > 1).all()  # probabilities could not exceed 1


def test_class_activation_maps_rejects_other_shapes():
    model = get_model("resnet18", "att1", "cral")
    with pytest.raises(ConfigError, match="B x 512 x h x w"):
        model.class_activation_maps(torch.zeros(2, 7, 4, 4))


def test_config_is_plain_data():
    model = get_model("densenet121", "att2", "no_residual")
    assert model.config == {"backbone": "densenet121", "attention": "att2", "variant": "no_residual", "num_classes": 14}
    assert all(isinstance(v, (str, int)) for v in model.config.values())
    assert build_model(**model.config).config == model.config
    assert "variant='no_residual'" in repr(model).splitlines()[1]


def test_cral_loss_is_eq_10():
    logits = torch.randn(4, 14, dtype=torch.float64)
    targets = (torch.rand(4, 14) > 0.7).double()
    p = torch.sigmoid(logits)
    eq10 = -(targets * p.log() + (1 - targets) * (1 - p).log()).mean(dim=1).mean()
    torch.testing.assert_close(cral_loss(logits, targets), eq10)
    torch.testing.assert_close(cral_loss(logits, targets.bool()), torch.nn.BCEWithLogitsLoss()(logits, targets))
    assert cral_loss(logits.bfloat16(), targets).dtype == torch.float32
    assert torch.isfinite(cral_loss(torch.tensor([[200.0, -200.0]]), torch.tensor([[0.0, 1.0]])))
