"""cral_lib.models: the fast head equals the literal Eq. 4-9 (values and gradients, float64),
and the training path never builds the B x C x N x h x w tensor."""

from __future__ import annotations

import functools

import pytest
import torch
from torch.overrides import TorchFunctionMode

from cral_lib.models import CategoryResidualHead, build_model, cral_loss, reference


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
def get_model_f64(backbone: str, attention: str, variant: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(backbone=backbone, attention=attention, variant=variant)
    # Only the attention branch and the head are used here: keep the backbone in float32.
    model.head.double()
    if model.attention is not None:
        model.attention.double()
    return model


def head_pass(model, features, attention, upstream, *, literal):
    """Run the head on leaf copies of (F or F~, A); return logits and the gradients compared.

    The attention branch is the same code in both forms, so comparing the gradients with
    respect to its outputs (and the classifiers) covers everything the two forms differ in.
    """
    model.zero_grad(set_to_none=True)
    model.head.literal = literal
    try:
        feats = features.clone().requires_grad_()
        if attention is None:
            A = None
            logits = model.head(feats)
        else:
            A = attention.clone().requires_grad_()
            logits = model.head(feats, A)
        (logits * upstream).sum().backward()
    finally:
        model.head.literal = False
    grads = {
        "logits": logits.detach(),
        "features": feats.grad,
        "classifier_weight": model.classifier_weight.grad,
        "classifier_bias": model.classifier_bias.grad,
    }
    if A is not None:
        grads["attention"] = A.grad
    return grads


@pytest.mark.parametrize("combo", COMBOS, ids=IDS)
def test_fast_head_equals_literal_equations_float64(combo):
    backbone, attention, variant = combo
    model = get_model_f64(*combo).train()
    gen = torch.Generator().manual_seed(2)
    # conv5 after ReLU (with exact zeros), 3 x 3 positions, batch 2, through the model's own
    # attention branch (so F~ of att2 has both signs).
    conv5 = torch.relu(torch.randn(2, N_FEATURES[backbone], 3, 3, generator=gen, dtype=torch.float64))
    with torch.no_grad():
        A, feats = (None, conv5) if model.attention is None else model.attention(conv5)
    if attention == "att2":
        assert (feats < 0).any()
    upstream = torch.randn(2, 14, generator=gen, dtype=torch.float64)
    fast = head_pass(model, feats, A, upstream, literal=False)
    literal = head_pass(model, feats, A, upstream, literal=True)
    assert fast.keys() == literal.keys()
    for name in fast:
        assert fast[name] is not None, name
        torch.testing.assert_close(fast[name], literal[name], rtol=1e-9, atol=1e-12, msg=name)
    assert fast["logits"].dtype == torch.float64


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("num_maps", [7, 1])
def test_head_on_signed_features(residual, num_maps):
    # F~ of att2 can be negative: the ReLU of Eq. 6 must act as in the literal form.
    gen = torch.Generator().manual_seed(3)
    head = CategoryResidualHead(16, 7, residual=residual).double()
    F_ = torch.randn(3, 16, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    A = torch.rand(3, num_maps, 5, 4, generator=gen, dtype=torch.float64).clamp(0.01, 0.99).requires_grad_()
    out_fast = head(F_, A)
    g_fast = torch.autograd.grad(out_fast.sum(), (F_, A, head.fc.weight, head.fc.bias))
    out_lit = reference.category_residual_logits(F_, A, head.fc.weight, head.fc.bias, residual=residual)
    g_lit = torch.autograd.grad(out_lit.sum(), (F_, A, head.fc.weight, head.fc.bias))
    torch.testing.assert_close(out_fast, out_lit, rtol=1e-10, atol=1e-12)
    for a, b in zip(g_fast, g_lit):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "combo", [("resnet18", "att1", "cral"), ("densenet121", "att2", "no_category"), ("resnet50", "none", "no_attention")],
    ids="-".join,
)
def test_whole_model_against_literal_forward(combo):
    torch.manual_seed(0)
    model = build_model(backbone=combo[0], attention=combo[1], variant=combo[2]).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        fast = model(x, return_maps=True)
        literal = reference.literal_forward(model, x, return_maps=True)
    torch.testing.assert_close(fast["logits"], literal["logits"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast["features"], literal["features"])


def test_reference_loss_is_cral_loss():
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(6, 14, generator=gen, dtype=torch.float64)
    targets = (torch.rand(6, 14, generator=gen) > 0.8).double()
    torch.testing.assert_close(cral_loss(logits, targets), reference.bce_loss(logits, targets))
    torch.testing.assert_close(reference.probabilities(logits), torch.sigmoid(logits))


class LargestTensor(TorchFunctionMode):
    """Records the largest tensor any torch function returns inside the block."""

    def __init__(self):
        super().__init__()
        self.numel, self.ndim = 0, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.numel, self.ndim = max(self.numel, t.numel()), max(self.ndim, t.dim())
        return out


@pytest.mark.parametrize("variant", ["cral", "no_category", "no_residual"])
def test_training_path_never_builds_the_5d_tensor(variant):
    B, N, C, h, w = 4, 2048, 14, 7, 7
    head = CategoryResidualHead(N, C, residual=variant != "no_residual")
    F_ = torch.rand(B, N, h, w, requires_grad=True)
    A = torch.rand(B, 1 if variant == "no_category" else C, h, w, requires_grad=True)
    targets = torch.zeros(B, C)

    def step(literal):
        head.literal = literal
        saved = []

        def pack(t):
            saved.append(t.numel())
            return t

        with LargestTensor() as created, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = cral_loss(head(F_, A), targets)
        loss.backward()
        return created, max(saved)

    created, saved = step(literal=False)
    # Nothing created or kept for backward is larger than F itself.
    assert created.ndim <= 4 and created.numel <= B * N * h * w and saved <= B * N * h * w
    created, saved = step(literal=True)  # the detectors do see the literal form's tensors
    assert created.ndim == 5 and created.numel == saved == B * C * N * h * w
