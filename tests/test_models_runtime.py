"""cral_lib.models under mixed precision (bf16 autocast on the CPU), channels_last and torch.compile."""

from __future__ import annotations

import copy

import pytest
import torch

from cral_lib.models import build_model, cral_loss


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    # These small models run far faster on one thread when the cores are shared: OpenMP
    # threads that wait for a busy core spin instead of working (10x slower on 2 shared cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

SMALL = [
    ("resnet18", "att1", "cral"),
    ("resnet18", "att2", "no_category"),
    ("resnet18", "att2", "no_residual"),
    ("resnet18", "none", "no_attention"),
    ("densenet121", "att1", "cral"),
]


def make(combo, seed=0):
    torch.manual_seed(seed)
    return build_model(backbone=combo[0], attention=combo[1], variant=combo[2])


def images(size=64, seed=0):
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


TARGETS = torch.tensor([[1.0] + [0.0] * 13, [0.0] * 13 + [1.0]])


@pytest.mark.parametrize(
    "combo, literal", [(combo, False) for combo in SMALL] + [(SMALL[0], True)],
    ids=["-".join(combo) for combo in SMALL] + ["literal-head"],
)
def test_bf16_autocast_forward_backward(combo, literal):
    model = make(combo)
    model.head.literal = literal
    x = images()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, return_maps=True)
        loss = cral_loss(out["logits"], TARGETS)
    assert torch.isfinite(out["logits"]).all() and loss.dtype == torch.float32
    if out["attention"] is not None:
        assert out["attention"].dtype == torch.bfloat16
        assert (out["attention"] >= 0).all() and (out["attention"] <= 1).all()
    if combo[2] != "no_attention" and not literal:
        assert out["logits"].dtype == torch.float32  # the head's tail runs in float32
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # bf16 keeps about 3 significant digits; the eval-mode float32 result is close.
    model.eval()
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(x).float()
    torch.testing.assert_close(got, expected, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("combo", SMALL[:4] + [("densenet121", "att2", "cral")], ids="-".join)
def test_channels_last(combo):
    model = make(combo).eval()
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = images(size=96)
    with torch.no_grad():
        expected = model(x, return_maps=True)
        got = model_cl(x.contiguous(memory_format=torch.channels_last), return_maps=True)
    for key in ("logits", "features", "conv5", "attention"):
        if expected[key] is not None:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-4, msg=key)
    assert got["conv5"].is_contiguous(memory_format=torch.channels_last)
    model_cl.train()
    cral_loss(model_cl(x.contiguous(memory_format=torch.channels_last)), TARGETS).backward()
    assert torch.isfinite(model_cl.classifier_weight.grad).all()


@pytest.mark.slow
def test_torch_compile_training_step_matches_eager():
    # About two minutes on a 2-core CPU (compiling forward and backward with inductor).
    model = make(("resnet18", "att1", "cral"))
    compiled_model = copy.deepcopy(model)
    compiled = torch.compile(compiled_model)
    x = images(seed=3)

    out = model(x, return_maps=True)
    cral_loss(out["logits"], TARGETS).backward()
    got = compiled(x, return_maps=True)
    cral_loss(got["logits"], TARGETS).backward()

    for key in ("logits", "attention", "features", "conv5"):
        torch.testing.assert_close(got[key], out[key], rtol=1e-3, atol=1e-4, msg=key)
    # Gradients, each compared as a whole. Near the output they agree closely. In the
    # backbone, train-mode batch norm over a 2 x 2 x 2 map amplifies rounding: eager float32
    # itself is about 1.5% away from float64 there, so the compiled one may be too.
    for (name, p), q in zip(model.named_parameters(), compiled_model.parameters()):
        error = (q.grad - p.grad).norm() / p.grad.norm().clamp_min(1e-12)
        bound = 5e-2 if name.startswith("backbone.") else 1e-3
        assert error < bound, f"{name}: relative error {error:.2e}"
