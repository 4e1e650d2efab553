# %% [markdown]
# # att1, built by hand
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cral-book/cral-book/blob/main/notebooks/04_att1.ipynb)
#
# This chapter writes CRAL's attention module and classifier head as the paper states them,
# one equation at a time (Eq. 2–10 of {cite:t}`guan2020cral`), with plain PyTorch tensors: the
# *att1* branch that predicts one attention map per class, the category-wise residual weighting
# $H^{n,c} = (1 + a^c) \odot F^n$ that builds a $B \times C \times N \times h \times w$ tensor,
# the pooling, the $C$ separate classifiers and the loss. It runs them on a batch of chest
# images, draws the attention maps, and then checks that `cral_lib`'s model computes exactly the
# same numbers.
#
# The library does not build that five-dimensional tensor. The second half of the chapter derives
# the exact shortcut it takes instead, checks it, and measures the memory it saves at the paper's
# sizes. It then shows with numbers why the paper adds the features back ($1 + a$ rather than
# $a$), builds the three ablations of the paper's Table 2, and counts att1's parameters.

# %% [markdown]
# ## Setup environment
# On Colab this installs `cral_lib`; elsewhere it does nothing (the package is already installed).

# %% tags=["remove-output"]
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("cral_lib") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "cral-lib[book] @ git+https://github.com/cral-book/cral-book"])

# %% [markdown]
# ## Setup imports

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as nnf
from torch import nn

import cral_lib
from cral_lib import CLASSES, book, viz
from cral_lib.metrics import paper_auc
from cral_lib.models import BACKBONES, Att1, CategoryResidualHead, build_model, cral_loss, reference

cral_lib.print_config()

# %% [markdown]
# ## Parameters
# The defaults are the fast mode: the book's small backbone (`small_resnet`, $N = 256$, chapter 3)
# with random weights on 112 px crops, which give the paper's $7 \times 7$ maps, so that the
# chapter runs in a minute or two on a CPU. Nothing here is trained; the
# equations are the same for every backbone and size, so the checks hold at full scale too
# (the values in the comments: the paper's ResNet-50, $N = 2048$, on 224 px crops with ImageNet
# weights). papermill overrides any of these with `-p name value`.

# %% tags=["parameters"]
data_dir = ""          # a ChestX-ray14 release folder; "" means $CRAL_DATA_DIR, else the synthetic dataset
device = "auto"        # "auto", "cpu", "cuda"
seed = 0               # seed of the random initialization of the modules built here
backbone = "small_resnet"  # full scale: "resnet50" (or "densenet121"); small_resnet is the book's CPU stand-in
weights = None         # full scale: "imagenet" (downloads torchvision's weights once)
image_size = 112       # full scale: 224 (the paper's center crop of 256); both give 7 x 7 maps
batch_size = 4         # test images in the batch (full scale: any; the paper trains with 64)

# %%
env = book.setup(data_dir, device=device)
data_dir, device = env.data_dir, env.device

# %% [markdown]
# ## A batch of conv5 features
#
# The input of the attention module is the backbone's `conv5` map $F$ (Eq. 1, chapter 3). The
# cell takes `batch_size` test images (those with ground-truth boxes first), applies the paper's
# test transform, and computes $F$ with the backbone of a CRAL model from `build_model`. The
# same model is used below to check the hand-built modules against the library. Random
# initializations are drawn inside `torch.random.fork_rng`, so the seed does not leak into the
# global random state.
#
# Everything after the backbone runs in double precision (float64) in this chapter. Then two
# computations that agree to about $10^{-15}$ are the same computation; in float32, sums of
# thousands of terms taken in different orders can differ by $10^{-5}$ and blur that line.

# %%
batch = book.test_images(data_dir, batch_size, image_size, device)  # with boxes first; the test transform
images, x, window = batch.images, batch.x, batch.window
y = batch.labels
boxes = batch.boxes

with torch.random.fork_rng(devices=[]):
    torch.manual_seed(seed)
    model = build_model(backbone=backbone, attention="att1", variant="cral", weights=weights).to(device).eval()
with torch.no_grad():
    F = model.forward_features(x).double()
B, N, h, w = F.shape
C = len(CLASSES)
print(f"x: {tuple(x.shape)}  ->  F: B x N x h x w = {tuple(F.shape)};  C = {C} classes;  K = h w = {h * w} positions")
print("labels of the batch:", [", ".join(c for c, v in zip(CLASSES, row) if v) or "No Finding" for row in batch.labels.cpu().numpy()])

# %% [markdown]
# ## Eq. 2–3: the att1 branch
#
# "att1 consists of two $3 \times 3$ convolutional layers and each followed by a non-linear
# activation layer (ReLU), one $1 \times 1$ convolutional layer and a non-linear normalization
# layer (Sigmoid). The output is a C-channels attention scores corresponding to the C classes"
# (Section 3.3). The convolutions give unnormalized scores, one channel per class (Eq. 2), and
# the sigmoid maps them into $[0, 1]$ (Eq. 3):
#
# $$
# Z = f_{att}(F;\, \theta_{att}) \in \mathbb{R}^{H \times W \times C}, \qquad
# a^c_{i,j} = \frac{1}{1 + \exp(-z^c_{i,j})} .
# $$
#
# The paper does not give the width of the $3 \times 3$ convolutions or say whether they carry
# a bias or a normalization. `cral_lib.models.Att1` documents its choices, and the hand-built
# branch makes the same ones: **$\min(512, N)$ channels** (512 for the paper's backbones; 256
# for the fast backbone, so that the branch does not outweigh the network it sits on), **padding 1** (the map keeps its
# $h \times w$ size, so that every position gets a score), **a bias and no batch
# normalization** (the paper names none), and PyTorch's default initialization, under which the
# scores start near 0 and the attention near 0.5.

# %%
width = min(512, N)  # cral_lib's choice for the 3x3 convolutions (Att1's `width`)
with torch.random.fork_rng(devices=[]):
    torch.manual_seed(seed + 1)
    att1_hand = nn.Sequential(
        nn.Conv2d(N, width, kernel_size=3, padding=1),      # 3x3 conv
        nn.ReLU(),
        nn.Conv2d(width, width, kernel_size=3, padding=1),  # 3x3 conv
        nn.ReLU(),
        nn.Conv2d(width, C, kernel_size=1),                 # 1x1 conv to C channels: Z of Eq. 2
    ).to(device, torch.float64)
    classifiers_hand = nn.ModuleList(nn.Linear(N, 1) for _ in range(C)).to(device, torch.float64)  # Eq. 8, one per class

with torch.no_grad():
    Z = att1_hand(F)        # Eq. 2: B x C x h x w
    A = torch.sigmoid(Z)    # Eq. 3
print(f"Z: {tuple(Z.shape)}, from {Z.min().item():+.3f} to {Z.max().item():+.3f}")
print(f"A: {tuple(A.shape)}, from {A.min().item():.3f} to {A.max().item():.3f} (mean {A.mean().item():.3f})")

# %% [markdown]
# ## Eq. 4–7: category-wise residual attention, written out
#
# Each class $c$ weighs every feature channel $F^n$ with its own map $a^c$ (Eq. 4), and adds
# the features back (Eq. 5):
#
# $$
# v^{n,c}_{i,j} = F^n_{i,j}\, a^c_{i,j}, \qquad
# H^{n,c}_{i,j} = F^n_{i,j} + v^{n,c}_{i,j} = (1 + a^c_{i,j})\, F^n_{i,j} .
# $$
#
# As tensors: $F$ is `B x N x h x w` and $A$ is `B x C x h x w`; inserting a class axis into $F$
# and a channel axis into $A$ makes both five-dimensional, and broadcasting multiplies every
# class with every channel: `V = F[:, None] * A[:, :, None]` is `B x C x N x h x w`. Then a ReLU
# (Eq. 6) and the average over the $K = h w$ positions (Eq. 7) leave one $N$-vector per class
# and image, $\tilde H^c$:
#
# $$
# \tilde H^{c} = \max(0, H^c), \qquad \tilde H^{n,c} = \frac{1}{K} \sum_{i,j} \tilde H^{n,c}_{i,j} .
# $$

# %%
with torch.no_grad():
    V = F[:, None, :, :, :] * A[:, :, None, :, :]   # Eq. 4: B x C x N x h x w
    H = F[:, None, :, :, :] + V                      # Eq. 5
    H_relu = torch.relu(H)                           # Eq. 6
    H_pooled = H_relu.sum(dim=(3, 4)) / (h * w)      # Eq. 7: B x C x N
for name, t in (("F[:, None]", F[:, None]), ("A[:, :, None]", A[:, :, None]), ("V", V), ("H", H), ("H_pooled", H_pooled)):
    print(f"{name:>14}: {tuple(t.shape)}")

# %% [markdown]
# ## Eq. 8–10: one classifier per class, sigmoid, binary cross-entropy
#
# "Note that the input of each classifier is not the same features": class $c$'s fully
# connected layer sees only class $c$'s vector $\tilde H^c$ (Eq. 8). A sigmoid turns its output
# into a probability (Eq. 9), and the loss is the binary cross-entropy averaged over the $C$
# classes (Eq. 10), and here over the batch:
#
# $$
# \hat H^c = f_{cls}(\tilde H^c;\, \theta^c), \qquad
# \tilde p_c = \frac{1}{1 + \exp(-\hat H^c)},
# $$
#
# $$
# \mathcal{L} = -\frac{1}{C} \sum_{c=1}^{C} l_c \log \tilde p_c + (1 - l_c) \log (1 - \tilde p_c) .
# $$

# %%
with torch.no_grad():
    logits_hand = torch.cat([classifiers_hand[c](H_pooled[:, c]) for c in range(C)], dim=1)  # Eq. 8: B x C
    probs_hand = 1 / (1 + torch.exp(-logits_hand))                                               # Eq. 9
    loss_printed = -(y * torch.log(probs_hand) + (1 - y) * torch.log(1 - probs_hand)).mean()     # Eq. 10 as printed
    loss_hand = (y * nnf.softplus(-logits_hand) + (1 - y) * nnf.softplus(logits_hand)).mean()    # Eq. 10, stable
print(f"logits {tuple(logits_hand.shape)}, largest |logit| {logits_hand.abs().max().item():.2f}; "
      f"probabilities from {probs_hand.min().item():.3f} to {probs_hand.max().item():.3f}")
print(f"loss: {loss_hand.item():.4f} (stable form), {loss_printed.item():.4f} (printed form)")

# %% [markdown]
# The cell computes Eq. 10 twice. The printed form takes $\log \tilde p$ and $\log(1 - \tilde p)$
# of the probabilities; the second form is the same function of the logit $z$, rewritten with
# $\log \sigma(z) = -\log(1 + e^{-z})$ and $\log(1 - \sigma(z)) = -\log(1 + e^{z})$, the
# *softplus* of $-z$ and $z$, which PyTorch evaluates without overflow. They differ only in
# floating point: in float32, the precision of training, the sigmoid of a logit above about 17
# rounds to exactly 1 (in the float64 of this chapter, above about 37), so
# $\log(1 - \tilde p) = -\infty$, and a positive label then multiplies it by $1 - l_c = 0$, which
# gives NaN. Logits of that size are common in training (and in untrained full-size networks),
# which is why training uses the stable form (`cral_loss`, via PyTorch's
# `binary_cross_entropy_with_logits`) and the model returns logits, not probabilities. A few
# values:

# %%
z = torch.tensor([2.0, 10.0, 17.0, 20.0, 40.0])
p_z = 1 / (1 + torch.exp(-z))
pd.DataFrame({"logit z": z, "p = sigmoid(z), float32": p_z, "log(1 - p), printed form": torch.log(1 - p_z),
              "-softplus(z), stable form": -nnf.softplus(z)}).set_index("logit z")

# %% [markdown]
# ## The attention maps of one image
#
# `viz.plot_attention_grid` draws $a^c$ for every class over the crop the network saw, on the
# scale $[0, 1]$, with the classes the image truly has framed in red and the predicted
# probabilities in the titles. Nothing has been trained yet: the backbone is random (or only
# ImageNet-pretrained at full scale) and so is att1, so the maps carry no meaning. With small
# features the scores $Z$ start near 0 and the maps near 0.5; larger features (a random
# full-size backbone) spread them further. The range of $A$ printed above tells which case
# this is. The figure shows what the module produces and how the book draws it; chapter 9 draws
# the same grid for a trained model.

# %% mystnb={"figure": {"caption": "The 14 attention maps a^c of att1 (Eq. 3) for one synthetic test image, before any training, on the colour scale [0, 1], with the predicted probabilities; the image's true classes are framed in red and its ground-truth boxes drawn in green. Untrained, the maps carry no meaning yet.", "name": "fig-04-attention-untrained"}}
fig = viz.plot_attention_grid(images[0], A[0].cpu(), probs=probs_hand[0].cpu(), labels=y[0].cpu(), boxes=boxes[0], window=window)
plt.show()

# %% [markdown]
# ## The same numbers from cral_lib
#
# `build_model(attention="att1", variant="cral")` holds the same pieces under other names: the
# branch is `model.attention` (an `Att1` with `conv1`, `conv2`, `conv3`) and the $C$
# classifiers are stacked into one `nn.Linear(N, C)`, `model.head.fc`, whose row $c$ is
# classifier $c$ (`model.classifier_weight` and `model.classifier_bias`). Stacking changes
# nothing: row $c$ only ever multiplies class $c$'s vector. The cell copies the hand-built
# weights into the library's branch and head (switched to float64 with `.double()`, as the
# library's own tests do), runs them on the same $F$, and compares attention maps, features,
# logits and loss (the stable form) with `torch.testing.assert_close`.

# %%
model.attention.double()
model.head.double()
with torch.no_grad():
    for mine, theirs in zip((att1_hand[0], att1_hand[2], att1_hand[4]), (model.attention.conv1, model.attention.conv2, model.attention.conv3)):
        theirs.weight.copy_(mine.weight)
        theirs.bias.copy_(mine.bias)
    model.classifier_weight.copy_(torch.cat([fc.weight for fc in classifiers_hand]))  # C x N
    model.classifier_bias.copy_(torch.cat([fc.bias for fc in classifiers_hand]))      # C

    out = model.forward_head(F, return_maps=True)    # everything after conv5
    torch.testing.assert_close(out["features"], F)   # att1 weighs conv5 itself
    torch.testing.assert_close(out["attention"], A)
    torch.testing.assert_close(out["logits"], logits_hand)
    torch.testing.assert_close(cral_loss(out["logits"], y), loss_hand)
print("cral_lib's model == the hand-built att1 and head: features, attention, logits and loss")
print(f"largest logit difference: {(out['logits'] - logits_hand).abs().max().item():.2e}")

# %% [markdown]
# `cral_lib.models.reference` is the library's own literal transcription of Eq. 4–10, kept for
# tests like this one; it also agrees with the hand-built tensors. Its `bce_loss` is the printed
# form of Eq. 10, so it is compared with the printed form here (both are NaN together, should a
# logit saturate), and the two forms are compared with each other wherever the printed one is
# finite.

# %%
with torch.no_grad():
    torch.testing.assert_close(reference.category_residual_logits(F, A, model.classifier_weight, model.classifier_bias), logits_hand)
    torch.testing.assert_close(reference.probabilities(logits_hand), probs_hand)
    torch.testing.assert_close(reference.bce_loss(logits_hand, y), loss_printed, equal_nan=True)
    if torch.isfinite(loss_printed):
        torch.testing.assert_close(loss_printed, loss_hand)
print("cral_lib.models.reference == the hand-built Eq. 4-10")
print("printed form of Eq. 10 " + ("== stable form" if torch.isfinite(loss_printed) else "is not finite here (a logit saturated)"))

# %% [markdown]
# ## The fast form the library uses
#
# Written out, Eq. 4–8 give class $c$ the logit
#
# $$
# \hat H^c = \sum_{n} W_{cn}\, \frac{1}{K} \sum_{k} \max\!\big(0, (1 + a^c_k) F^n_k\big) + b_c ,
# $$
#
# with $k$ running over the $K$ positions and $(W_c, b_c)$ class $c$'s classifier. Two
# observations make the $B \times C \times N \times h \times w$ tensor unnecessary:
#
# 1. $1 + a > 0$, and for any $s > 0$, $\max(0, s F) = s \max(0, F)$. So
#    $\max(0, (1 + a^c_k) F^n_k) = (1 + a^c_k)\, \mathrm{ReLU}(F)^n_k$: the ReLU of Eq. 6 can be
#    taken *before* the weighting, on $F$ alone (for att1 it changes nothing at all, since
#    `conv_5_relu` is already non-negative; for att2's $\tilde F$ it matters, chapter 5).
# 2. The sums over $n$ and $k$ can then be swapped:
#
#    $$
#    \hat H^c = \frac{1}{K} \sum_k (1 + a^c_k)\, G_{ck} + b_c, \qquad
#    G_{ck} = \sum_n W_{cn}\, \mathrm{ReLU}(F)^n_k .
#    $$
#
#    $G$ is a $1 \times 1$ convolution of $\mathrm{ReLU}(F)$ with the stacked classifier weights,
#    `B x C x h x w`: the *class activation maps* of {cite:t}`zhou2016cam`. The head becomes
#    "weigh each class's activation map by $1 + a^c$ and average it".
#
# The cell computes this form by hand (an `einsum` for $G$), checks it against the literal
# logits, and checks that `model.head.class_maps` and `model.class_activation_maps` return
# $(1 + a^c) \odot G^c$.

# %%
W, b = model.classifier_weight.detach(), model.classifier_bias.detach()
with torch.no_grad():
    G = torch.einsum("cn,bnhw->bchw", W, torch.relu(F))   # class activation maps: B x C x h x w
    logits_fast = ((1 + A) * G).mean(dim=(2, 3)) + b
    torch.testing.assert_close(logits_fast, logits_hand)
    torch.testing.assert_close(model.head.class_maps(F, A), (1 + A) * G)
    torch.testing.assert_close(model.class_activation_maps(F), (1 + A) * G)
print(f"fast form == literal form (largest difference {(logits_fast - logits_hand).abs().max().item():.2e})")
print(f"G: {tuple(G.shape)}, instead of V and H: {tuple(V.shape)}")

# %% [markdown]
# The two forms are equal in exact arithmetic; in floating point they add the same terms in
# another order, so they differ by rounding (the library's tests also compare them and their
# gradients in float64). What the shortcut saves is memory. At the paper's sizes (batch 64,
# $C = 14$, ResNet-50's $N = 2048$, $7 \times 7$ positions) the cell computes the size of one
# five-dimensional tensor and then measures, on PyTorch's `meta` device (shapes without data, so
# nothing is allocated), how many bytes autograd keeps for the backward pass in each form.

# %%
paper = {"B": 64, "C": 14, "N": 2048, "h": 7, "w": 7}
five_d = paper["B"] * paper["C"] * paper["N"] * paper["h"] * paper["w"]
print(f"B x C x N x h x w = {five_d:,} numbers = {five_d * 4 / 2**20:,.0f} MiB in float32 (V, H and ReLU(H) are one each)")
print(f"B x C x h x w (G)  = {five_d // paper['N']:,} numbers = {five_d // paper['N'] * 4 / 2**10:,.0f} KiB")


def saved_for_backward(head) -> int:
    """Bytes that autograd keeps for the backward pass of head(F, A) at the paper's sizes."""
    saved = {}

    def pack(t):
        saved[id(t)] = t.numel() * t.element_size()
        return t

    F_meta = torch.empty(paper["B"], paper["N"], paper["h"], paper["w"], device="meta", requires_grad=True)
    A_meta = torch.empty(paper["B"], paper["C"], paper["h"], paper["w"], device="meta", requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        head(F_meta, A_meta)
    return sum(saved.values())


W_meta = torch.empty(paper["C"], paper["N"], device="meta", requires_grad=True)
b_meta = torch.empty(paper["C"], device="meta", requires_grad=True)
lib_head = CategoryResidualHead(paper["N"], paper["C"]).to("meta")
memory = pd.Series({
    "literal Eq. 4-8 (cral_lib.models.reference)": saved_for_backward(lambda F_, A_: reference.category_residual_logits(F_, A_, W_meta, b_meta)),
    "fast form (cral_lib's CategoryResidualHead)": saved_for_backward(lib_head),
}, name="MiB kept for backward") / 2**20
memory.round(1).to_frame()

# %% [markdown]
# The literal form keeps a whole five-dimensional tensor (the ReLU's output) for the backward
# pass, on top of creating $V$ and $H$ in the forward pass; the fast form keeps little more than
# $F$ itself, which the backbone keeps anyway for its own backward pass. At every training step
# the literal head would add the memory printed above, the fast one next to nothing; it also
# turns $C 	imes N$ multiplications per position into one small matrix product.

# %% [markdown]
# ## Why $1 + a$ and not $a$
#
# The paper motivates the residual form in one sentence: "naive attention module leads to obvious
# performance drop. This is because that the discriminative feature response values are weakened
# by the attention weights (range from 0 to 1)". The numbers behind it: with the naive weighting
# $H^c = a^c \odot F$ ("w/o residual" in Table 2) the pooled features and the gradient that
# reaches $F$ (and through it the whole backbone) are both multiplied by $a$; with
# $H^c = (1 + a^c) \odot F$ they are multiplied by $1 + a \ge 1$. Where a class's attention is
# small, the naive form all but switches the features off for that class, and the backbone
# stops learning from it; the residual form keeps at least the plain features and their
# gradient, and attention can only *add* emphasis (at most a factor 2).
#
# The cell checks this on the batch's features with the library's literal head: for a range of
# attention values $a$ (the same at every position and for every class), it measures the size of
# class 0's pooled vector $\tilde H^0$ and of the gradient of the summed logits with respect to
# $F$, both relative to the same head with $a = 0$ and the residual term, $H^c = F$: that is
# the plain backbone's head (global average pooling of $\mathrm{ReLU}(F) = F$ and linear
# classifiers, Table 2's "w/o attention").

# %%
def response(a: float, residual: bool) -> tuple[float, float]:
    """(|class 0's pooled vector|, |d sum(logits) / dF|) of the literal head with uniform attention a."""
    F_leaf = F.clone().requires_grad_()
    A_const = torch.full((B, C, h, w), a, dtype=F.dtype, device=device)
    logits = reference.category_residual_logits(F_leaf, A_const, W, b, residual=residual)
    logits.sum().backward()
    weight = 1 + a if residual else a
    pooled = torch.relu(weight * F).mean(dim=(2, 3))  # Eq. 6-7 for class 0 (the same for all: a is uniform)
    return pooled.norm().item(), F_leaf.grad.norm().item()


plain_pooled, plain_grad = response(0.0, residual=True)
rows = []
for a in (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0):
    naive, residual = response(a, residual=False), response(a, residual=True)
    rows.append({
        "a": a,
        "pooled, a F": naive[0] / plain_pooled,
        "pooled, (1 + a) F": residual[0] / plain_pooled,
        "gradient to F, a F": naive[1] / plain_grad,
        "gradient to F, (1 + a) F": residual[1] / plain_grad,
    })
residual_demo = pd.DataFrame(rows).set_index("a")
residual_demo.round(3)

# %% [markdown]
# Both ratios come out as $a$ and $1 + a$, as the algebra says. The gradient with respect to the
# attention scores themselves is the same in both forms ($\partial \hat H^c / \partial a^c_k =
# \frac{1}{K} G_{ck}$), so the attention branch learns alike; what differs is the signal for
# the features. The sigmoid makes it worse for the naive form: a small $a = \sigma(z)$ means a
# very negative $z$, where $\sigma'(z) = a (1 - a)$ is small too, so a class whose attention has
# collapsed gets a weak signal for its features *and* for reviving its attention.

# %% mystnb={"figure": {"caption": "Measured on the batch's features with the literal head: the size of a class's pooled feature vector (left) and of the gradient reaching the conv5 features (right), relative to the plain backbone's head, as a function of a uniform attention score a. With the naive weighting a F both shrink toward 0 as a does; with the residual weighting (1 + a) F of Eq. 5 they never fall below the plain features' level.", "name": "fig-04-residual"}}
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), sharex=True)
for ax, quantity in zip(axes, ("pooled", "gradient to F")):
    for form in ("a F", "(1 + a) F"):
        ax.plot(residual_demo.index, residual_demo[f"{quantity}, {form}"], marker="o", label=f"H = {form}")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_xlabel("attention score a")
    ax.set_title(f"{quantity} / plain head", fontsize=10)
axes[0].set_ylabel("ratio to the plain GAP head")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The ablations of Table 2
#
# The paper removes one ingredient at a time (Section 4.4). `build_model` builds each of them
# from the same pieces, with a `variant` argument:
#
# - `cral`: the full model, $C$ maps, $H^c = (1 + a^c) \odot F$, one classifier per class;
# - `no_category` ("w/o category"): "all the categories are weighted by the same attention
#   scores": the last convolution of att1 outputs **one** map, shared by all classes;
#   $H = (1 + a) \odot F$ is the same for every class, but each class keeps its own classifier;
# - `no_residual` ("w/o residual"): "only the features weighted by the category-wise attention
#   scores are used": $H^c = a^c \odot F$ (Eq. 4 without Eq. 5), the naive form above;
# - `no_attention` ("w/o attention"): the plain backbone, global average pooling and one fully
#   connected layer with $C$ outputs: the baseline.
#
# The cell builds the four with the same backbone, runs the batch through them, and lists what
# changes, next to the paper's mean test AUC for each (ResNet-50 with att1, from
# `cral_lib.metrics.paper_auc`, which reads Table 2). Chapter 8 trains them.

# %%
rows = []
for variant in ("cral", "no_category", "no_residual", "no_attention"):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ablation = build_model(backbone=backbone, attention=None if variant == "no_attention" else "att1", variant=variant).to(device).eval()
    with torch.no_grad():
        o = ablation(x, return_maps=True)
    rows.append({
        "variant": variant,
        "attention module": type(ablation.attention).__name__ if ablation.attention is not None else "none",
        "head": type(ablation.head).__name__,
        "weights F by": {"cral": "1 + a^c", "no_category": "1 + a (shared)", "no_residual": "a^c", "no_attention": "1 (GAP)"}[variant],
        "attention maps": "none" if o["attention"] is None else " x ".join(map(str, o["attention"].shape)),
        "logits": " x ".join(map(str, o["logits"].shape)),
        "parameters after conv5": sum(p.numel() for p in ablation.parameters()) - sum(p.numel() for p in ablation.backbone.parameters()),
        "paper's mean AUC (R-50 att1)": paper_auc("resnet50", "att1", variant),
    })
ablations = pd.DataFrame(rows).set_index("variant")
ablations.style.format({"parameters after conv5": "{:,}", "paper's mean AUC (R-50 att1)": "{:.4f}"})

# %% [markdown]
# The "w/o category" model differs from CRAL by $C - 1$ output channels of att1's last
# $1 \times 1$ convolution; "w/o residual" has exactly CRAL's parameters and differs only in the
# weighting; the baseline has no attention branch at all, and its head has the same $C (N + 1)$
# parameters as CRAL's $C$ classifiers. In the paper (last column), every removal costs mean
# AUC: the shared map a little, the residual term more, the whole attention most.

# %% [markdown]
# ## How many parameters att1 has
#
# Per convolution, $k \times k \times (\text{inputs}) \times (\text{outputs})$ weights plus one
# bias per output. For $N$ input channels, width $w = \min(512, N)$ and $C$ maps:
#
# $$
# \underbrace{9 N w + w}_{3 \times 3,\ N \to w} \;+\; \underbrace{9 w^2 + w}_{3 \times 3,\ w \to w}
# \;+\; \underbrace{w C + C}_{1 \times 1,\ w \to C} .
# $$
#
# The cell evaluates the formula for the backbones and counts the parameters of
# `cral_lib`'s `Att1` and of the hand-built branch.

# %%
def att1_formula(n: int, width: int | None = None, maps: int = C) -> int:
    width = min(512, n) if width is None else width
    return (9 * n * width + width) + (9 * width * width + width) + (width * maps + maps)


rows = []
for name, n in BACKBONES.items():
    rows.append({"backbone": name, "N": n, "by hand": att1_formula(n),
                 "cral_lib Att1": sum(p.numel() for p in Att1(n, C).parameters())})
att1_params = pd.DataFrame(rows).set_index("backbone")
assert (att1_params["by hand"] == att1_params["cral_lib Att1"]).all()
assert sum(p.numel() for p in att1_hand.parameters()) == att1_formula(N)
n, width = 2048, 512
print(f"ResNet-50: 9*{n}*{width} + {width} = {9 * n * width + width:,};  9*{width}^2 + {width} = {9 * width**2 + width:,};  "
      f"{width}*{C} + {C} = {width * C + C:,};  total {att1_formula(n):,}")
att1_params.style.format({"by hand": "{:,}", "cral_lib Att1": "{:,}"})

# %% [markdown]
# The first $3 \times 3$ convolution, which reads all $N$ channels, holds most of the branch.
# Set beside the backbones' own parameter counts (chapter 3), att1 is a sizeable addition for
# ResNet-50 and an even larger one, relatively, for DenseNet-121; chapter 5 compares it with
# att2.
#
# ## Summary
#
# - att1 (Eq. 2–3) is two $3 \times 3$ convolutions with ReLU and a $1 \times 1$ convolution to
#   $C$ maps, then a sigmoid; `cral_lib` uses $\min(512, N)$ channels, padding 1, biases, no batch
#   normalization.
# - Eq. 4–7 written out need a `B x C x N x h x w` tensor; Eq. 8 is $C$ separate classifiers,
#   stacked in the library as one `nn.Linear(N, C)`. The hand-built module and `cral_lib`'s
#   model give the same attention, logits and loss (checked with `assert_close`), and so does
#   `cral_lib.models.reference`. Eq. 10 is computed from the logits (the softplus form), because
#   the printed form breaks down in floating point once a sigmoid saturates.
# - Because $1 + a > 0$, $\mathrm{ReLU}((1 + a) F) = (1 + a)\,\mathrm{ReLU}(F)$, and the
#   per-class classifiers fold into a $1 \times 1$ convolution: the head is an attention-weighted
#   class activation map, exact, and without the five-dimensional tensor.
# - The residual $1 + a$ keeps the features and their gradient at least at their plain size;
#   the naive $a$ scales both by $a$.
# - The ablations of Table 2 are `variant="no_category"`, `"no_residual"`, `"no_attention"`.
