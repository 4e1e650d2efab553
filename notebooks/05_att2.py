# %% [markdown]
# # att2: the hourglass branch
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cral-book/cral-book/blob/main/notebooks/05_att2.ipynb)
#
# The paper's second attention branch, *att2*, borrows the soft-mask branch of the Residual
# Attention Network {cite}`wang2017residual`: an "hourglass" that pools the feature map down to
# gather context and upsamples it back to predict the attention, while a *trunk* of two residual
# units turns $F$ into new features $\tilde F$ that the attention then weighs (Section 3.3 and
# Fig. 2 of {cite:t}`guan2020cral`). The Residual Attention Network was designed for large
# maps ($56 \times 56$ down to $14 \times 14$); CRAL puts it on the $7 \times 7$ conv5 map, and
# the paper leaves most of the sizes open.
#
# This chapter states the choices `cral_lib` makes and why, builds att2 by hand from them, checks
# it against `cral_lib.models.Att2` with copied weights, draws its maps on a batch, and compares
# att1 and att2: parameters, floating-point operations per image at 224 px, a measured training
# step, and the paper's own results for the two (Table 2).

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
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as nnf
from IPython.display import display
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cral_lib
from cral_lib import CLASSES, book, viz
from cral_lib.metrics import PAPER_TABLE2
from cral_lib.models import BACKBONES, Att1, Att2, build_model, cral_loss, reference

cral_lib.print_config()

# %% [markdown]
# ## Parameters
# The defaults are the fast mode: the book's small backbone (`small_resnet`, $N = 256$, chapter 3)
# with random weights on 112 px crops (the paper's $7 \times 7$ maps), so that the chapter runs in a minute or two on a CPU; the values in the comments are the paper's.
# The parameter and FLOP counts are computed for the paper's backbones at 224 px whatever these
# values are (they cost no computation); the timing uses these values. papermill overrides any
# of them with `-p name value`.

# %% tags=["parameters"]
data_dir = ""          # a ChestX-ray14 release folder; "" means $CRAL_DATA_DIR, else the synthetic dataset
device = "auto"        # "auto", "cpu", "cuda"
seed = 0               # seed of the random initialization of the modules built here
backbone = "small_resnet"  # full scale: "resnet50" (or "densenet121"); small_resnet is the book's CPU stand-in
weights = None         # full scale: "imagenet" (downloads torchvision's weights once)
image_size = 112       # full scale: 224 (the paper's center crop of 256); both give 7 x 7 maps
batch_size = 4         # images in the batch that is drawn and timed (full scale: 64, the paper's batch)
timing_repeats = 3     # timed rounds of training steps, after one warm-up round (full scale: the same)

# %%
env = book.setup(data_dir, device=device)
data_dir, device = env.data_dir, env.device

# %% [markdown]
# ## From the Residual Attention Network to a 7 x 7 map
#
# An attention module of the Residual Attention Network has two branches on the same input. The
# **trunk** is a few residual units: ordinary feature processing. The **soft-mask branch**
# max-pools the map down (in the network's first stage from $56 \times 56$ to $7 \times 7$), with
# residual units at each level, and then upsamples it back with bilinear interpolation, adding
# skip connections between levels; two $1 \times 1$ convolutions and a sigmoid give a mask in
# $[0, 1]$ that weighs the trunk's output as $(1 + M) \odot T$. That is the residual attention
# that CRAL's Eq. 5 makes category-wise. The paper describes att2 in three sentences: it "is
# similar to the hourglass structured attention" of that network, obtains "a large receptive
# field by several max pooling layers among the residual blocks", expands the global information
# "by a symmetrical upsampling architecture", and ends with "two consecutive $1 \times 1$
# convolution layers. The last one outputs a C-channel attention score." The conv5 map "also
# goes through another two residual blocks" (the trunk), whose output $\tilde F$ replaces $F$ in
# Eq. 4–5.
#
# The closest model is the Residual Attention Network's third stage, which works on a
# $14 \times 14$ map and pools it once. `cral_lib.models.Att2` scales that to conv5's
# $7 \times 7$ and documents each choice the paper leaves open:
#
# | choice | `cral_lib` | why |
# |---|---|---|
# | residual unit | pre-activation bottleneck {cite}`he2016identity`: BN-ReLU-conv $1 \times 1$ ($N \to N/4$), BN-ReLU-conv $3 \times 3$ ($N/4 \to N/4$), BN-ReLU-conv $1 \times 1$ ($N/4 \to N$), plus the identity; no biases | the unit of the Residual Attention Network |
# | trunk | two such units on $F$, giving $\tilde F$ ($N$ channels, same $h \times w$) | "another two residual blocks" |
# | pooling depth | **one** max-pooling, $3 \times 3$, stride 2, padding 1: $7 \times 7 \to 4 \times 4$ | as stage 3 pools $14 \times 14 \to 7 \times 7$; a second level would leave $2 \times 2$, a third $1 \times 1$; at $4 \times 4$ the two $3 \times 3$ convolutions of the units already see the whole map |
# | mask units | two residual units at $4 \times 4$ | the lowest level of the Residual Attention Network's masks holds two units |
# | skip connections | none | the Residual Attention Network's skips join pooling levels; with one level there is nothing to join |
# | upsampling | bilinear, back to the input's $h \times w$, `align_corners=True` | as the Residual Attention Network's code; see below |
# | mask head | BN-ReLU-conv $1 \times 1$ ($N \to 512$, no bias), BN-ReLU-conv $1 \times 1$ ($512 \to C$, with bias), sigmoid | "two consecutive $1 \times 1$ convolution layers", the last one to $C$ |
# | extra units before the split or after the merge | none | stage 3 has one of each; the paper names only the trunk's two |
#
# Since the pre-activation units end with a convolution and no ReLU, $\tilde F$ can be negative,
# unlike `conv_5_relu`. The ReLU of Eq. 6 then matters (for att1 it was a no-op), and the fast
# form of chapter 4 still holds, because $1 + a > 0$:
# $\max(0, (1 + a)\tilde F) = (1 + a) \max(0, \tilde F)$.

# %% [markdown]
# ## A batch of conv5 features
#
# As in chapter 4: test images (with boxes first), the paper's test transform, and the conv5 map
# of a CRAL model built with `build_model(attention="att2")`, which the hand-built branch is
# checked against below. As there, everything after the backbone runs in float64, so that an
# agreement to about $10^{-15}$ means the same computation.

# %%
batch = book.test_images(data_dir, batch_size, image_size, device)  # with boxes first; the test transform
images, x, window = batch.images, batch.x, batch.window
y = batch.labels
boxes = batch.boxes

with torch.random.fork_rng(devices=[]):
    torch.manual_seed(seed)
    model = build_model(backbone=backbone, attention="att2", variant="cral", weights=weights).to(device).eval()
with torch.no_grad():
    conv5 = model.forward_features(x)  # float32, for the timing below
F = conv5.double()
B, N, h, w = F.shape
C = len(CLASSES)
print(f"x: {tuple(x.shape)}  ->  F: B x N x h x w = {tuple(F.shape)};  C = {C}")

# %% [markdown]
# ## att2 by hand
#
# One residual unit is a small module: a `Sequential` body and the identity added to it. The
# trunk and the mask units are two units each; the mask head is a `Sequential`; pooling and
# upsampling are functions.

# %%
class ResidualUnit(nn.Module):
    """x + body(x), body = BN-ReLU-conv1x1 (n -> n/4), BN-ReLU-conv3x3, BN-ReLU-conv1x1 (n/4 -> n)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        mid = n // 4
        self.body = nn.Sequential(
            nn.BatchNorm2d(n), nn.ReLU(), nn.Conv2d(n, mid, kernel_size=1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(), nn.Conv2d(mid, mid, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(), nn.Conv2d(mid, n, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


width = 512  # cral_lib's choice for the first 1x1 convolution of the mask head (Att2's `width`)
with torch.random.fork_rng(devices=[]):
    torch.manual_seed(seed + 1)
    trunk_hand = nn.Sequential(ResidualUnit(N), ResidualUnit(N)).to(device, torch.float64)
    mask_units_hand = nn.Sequential(ResidualUnit(N), ResidualUnit(N)).to(device, torch.float64)
    mask_head_hand = nn.Sequential(
        nn.BatchNorm2d(N), nn.ReLU(), nn.Conv2d(N, width, kernel_size=1, bias=False),
        nn.BatchNorm2d(width), nn.ReLU(), nn.Conv2d(width, C, kernel_size=1),
    ).to(device, torch.float64)
hand_modules = (trunk_hand, mask_units_hand, mask_head_hand)

# Fresh batch-norm layers compute (almost) the identity in eval mode; random statistics and
# affine parameters make sure that the check below would notice two layers swapped.
gen = torch.Generator().manual_seed(seed + 2)
with torch.no_grad():
    for bn in (m for part in hand_modules for m in part.modules() if isinstance(m, nn.BatchNorm2d)):
        for t, lo, hi in ((bn.weight, 0.5, 1.5), (bn.bias, -0.2, 0.2), (bn.running_mean, -0.2, 0.2), (bn.running_var, 0.5, 2.0)):
            t.copy_(torch.empty(t.shape).uniform_(lo, hi, generator=gen))
for part in hand_modules:
    part.eval()


def att2_by_hand(F: torch.Tensor) -> dict[str, torch.Tensor]:
    """The soft-mask branch and the trunk, step by step."""
    steps = {"F": F}
    steps["max-pool 3x3 / 2"] = nnf.max_pool2d(F, kernel_size=3, stride=2, padding=1)
    steps["2 residual units"] = mask_units_hand(steps["max-pool 3x3 / 2"])
    steps["bilinear upsampling"] = nnf.interpolate(steps["2 residual units"], size=F.shape[-2:], mode="bilinear", align_corners=True)
    steps["Z (two 1x1 convs)"] = mask_head_hand(steps["bilinear upsampling"])   # Eq. 2
    steps["A = sigmoid(Z)"] = torch.sigmoid(steps["Z (two 1x1 convs)"])          # Eq. 3
    steps["F~ = trunk(F)"] = trunk_hand(F)
    return steps


with torch.no_grad():
    steps = att2_by_hand(F)
pd.DataFrame({"shape": [" x ".join(map(str, t.shape)) for t in steps.values()]}, index=list(steps))

# %% [markdown]
# At the paper's size the soft mask goes $7 \times 7 \to 4 \times 4 \to 7 \times 7$; at the fast
# mode's smaller crops the grid above is smaller, and the same code pools and upsamples it
# (`cral_lib` upsamples to whatever size the input had). The shapes at 224 px for ResNet-50
# ($N = 2048$) can be traced without computing anything, on PyTorch's `meta` device:

# %%
with torch.device("meta"):
    att2_meta = Att2(BACKBONES["resnet50"], C)
    F_meta = torch.empty(1, BACKBONES["resnet50"], 7, 7)
    pooled_meta = att2_meta.pool(F_meta)
    units_meta = att2_meta.mask_units(pooled_meta)
    up_meta = nnf.interpolate(units_meta, size=(7, 7), mode="bilinear", align_corners=True)
    print(f"ResNet-50 at 224 px: F {tuple(F_meta.shape)} -> pooled {tuple(pooled_meta.shape)} -> units {tuple(units_meta.shape)} "
          f"-> upsampled {tuple(up_meta.shape)} -> A {tuple(att2_meta.mask_head(up_meta).shape)}; F~ {tuple(att2_meta.trunk(F_meta).shape)}")

# %% [markdown]
# **Why `align_corners=True`.** The max-pooling with stride 2 and padding 1 centres its
# $3 \times 3$ windows on the input positions $0, 2, 4, 6$ of a $7 \times 7$ map: pooled cell
# $i$ sits at input position $2i$. Bilinear upsampling with `align_corners=True` maps output
# position $p$ to the pooled coordinate $p \cdot (4 - 1) / (7 - 1) = p / 2$, so every even output
# position receives exactly the cell centred on it, and odd positions average their two
# neighbours. With `align_corners=False` the grids would be shifted by a fraction of a cell.
# The check:

# %%
cells = torch.arange(16.0).reshape(1, 1, 4, 4)
up = nnf.interpolate(cells, size=(7, 7), mode="bilinear", align_corners=True)
torch.testing.assert_close(up[..., ::2, ::2], cells)
print("upsampled 4x4 -> 7x7: positions 0, 2, 4, 6 carry the pooled cells exactly; row 0:", up[0, 0, 0].tolist())

# %% [markdown]
# ## The same numbers from cral_lib
#
# `cral_lib.models.Att2` names the same pieces `trunk`, `pool`, `mask_units` and `mask_head`; a
# unit (`PreActBottleneck`) calls its layers `bn1`, `conv1`, `bn2`, `conv2`, `bn3`, `conv3`
# instead of `body[0]` to `body[8]`. The cell switches the library's branch and head to float64,
# copies the hand-built weights and batch-norm statistics into them, then compares attention maps, $\tilde F$ and logits (the
# head of Eq. 4–8 with $\tilde F$ in place of $F$, computed by `cral_lib.models.reference`,
# chapter 4's literal form) in evaluation mode, where batch normalization uses its running
# statistics, and in training mode, where it uses the batch's own (only the branch switches
# mode; both sides start from the same $F$).

# %%
UNIT_NAMES = {0: "bn1", 2: "conv1", 3: "bn2", 5: "conv2", 6: "bn3", 8: "conv3"}  # body index -> PreActBottleneck name


def copy_units(hand: nn.Sequential, lib: nn.Sequential) -> None:
    for unit_hand, unit_lib in zip(hand, lib):
        for index, name in UNIT_NAMES.items():
            getattr(unit_lib, name).load_state_dict(unit_hand.body[index].state_dict())


model.attention.double()
model.head.double()
copy_units(trunk_hand, model.attention.trunk)
copy_units(mask_units_hand, model.attention.mask_units)
model.attention.mask_head.load_state_dict(mask_head_hand.state_dict())  # the same Sequential layout

W, b = model.classifier_weight.detach(), model.classifier_bias.detach()
for mode in ("eval", "train"):
    for module in (model.attention, *hand_modules):
        module.train(mode == "train")
    with torch.no_grad():
        steps = att2_by_hand(F)
        A_hand, F_tilde_hand = steps["A = sigmoid(Z)"], steps["F~ = trunk(F)"]
        logits_hand = reference.category_residual_logits(F_tilde_hand, A_hand, W, b)  # Eq. 4-8 with F~
        out = model.forward_head(F, return_maps=True)  # everything after conv5, on the same F
    torch.testing.assert_close(out["attention"], A_hand)
    torch.testing.assert_close(out["features"], F_tilde_hand)
    torch.testing.assert_close(out["logits"], logits_hand)
    print(f"{mode} mode: cral_lib's Att2 == the hand-built att2 (attention, F~, logits); "
          f"largest logit difference {(out['logits'] - logits_hand).abs().max().item():.2e}")
for module in (model.attention, *hand_modules):
    module.eval()
with torch.no_grad():
    out = model.forward_head(F, return_maps=True)
A, F_tilde = out["attention"], out["features"]

# %% [markdown]
# $\tilde F$ is no longer the output of a ReLU. The cell counts its negative values and checks
# the two forms of the head on it: the literal one (ReLU after the weighting, Eq. 6) equals the
# library's fast one (ReLU first), and both differ from a head that would skip the ReLU.

# %%
with torch.no_grad():
    fast = ((1 + A) * torch.einsum("cn,bnhw->bchw", W, torch.relu(F_tilde))).mean(dim=(2, 3)) + b
    literal = reference.category_residual_logits(F_tilde, A, W, b)
    without_relu = ((1 + A) * torch.einsum("cn,bnhw->bchw", W, F_tilde)).mean(dim=(2, 3)) + b
torch.testing.assert_close(fast, literal)
print(f"negative values: {(F < 0).float().mean().item():.1%} of F, {(F_tilde < 0).float().mean().item():.1%} of F~")
print(f"fast == literal (largest difference {(fast - literal).abs().max().item():.1e}); "
      f"a head without the ReLU of Eq. 6 would be off by up to {(without_relu - literal).abs().max().item():.3f}")

# %% [markdown]
# ## The maps on a batch
#
# The attention maps of att2 for one image of the batch, drawn like chapter 4's. They are
# untrained, and carry the random batch-normalization statistics set for the check above, so
# their values mean nothing yet. Their smoothness does: the mask is computed on the pooled grid
# (its size is in the table of shapes above) and interpolated back, so each map varies slowly
# over the crop, and everything before the last $1 \times 1$ convolution is shared by the
# classes.

# %% mystnb={"figure": {"caption": "The 14 attention maps a^c of att2 for one synthetic test image, before any training, on the colour scale [0, 1], with the predicted probabilities; the image's true classes are framed in red and its ground-truth boxes drawn in green.", "name": "fig-05-attention-untrained"}}
probs = torch.sigmoid(out["logits"][0])
fig = viz.plot_attention_grid(images[0], A[0].cpu(), probs=probs.cpu(), labels=y[0].cpu(), boxes=boxes[0], window=window)
plt.show()

# %% [markdown]
# ## att1 and att2 compared
#
# ### Parameters
#
# att1's parameters grow like $9 N w$ (its first $3 \times 3$ convolution reads all $N$
# channels into $w = 512$); att2's like $N^2$, since each of its four residual units has
# $N^2/4 + 9 N^2/16 + N^2/4$ convolution weights (the bottleneck is $N/4$ wide) plus $3N$
# batch-norm parameters, and its mask head has $2N + N w + 2w + w C + C$. The cell counts both
# branches for the three backbones, checks the formula for att2, and sets them beside the
# backbone (built on the `meta` device: shapes only, no memory, no initialization).

# %%
def att2_formula(n: int, width: int = 512, maps: int = C) -> int:
    unit = n * n // 4 + 9 * (n // 4) ** 2 + n * n // 4 + 3 * n
    return 4 * unit + (2 * n + n * width + 2 * width + width * maps + maps)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


rows = []
with torch.device("meta"):
    for name, n in BACKBONES.items():
        backbone_params = count(build_model(backbone=name, attention="none").backbone)
        att1, att2 = count(Att1(n, C)), count(Att2(n, C))
        assert att2 == att2_formula(n)
        rows.append({"backbone": name, "N": n, "backbone parameters": backbone_params, "att1": att1, "att2": att2,
                     "att1 / backbone": att1 / backbone_params, "att2 / backbone": att2 / backbone_params})
branch_params = pd.DataFrame(rows).set_index("backbone")
branch_params.style.format({"backbone parameters": "{:,}", "att1": "{:,}", "att2": "{:,}",
                            "att1 / backbone": "{:.0%}", "att2 / backbone": "{:.0%}"})

# %% [markdown]
# So which branch is larger depends on $N$: the two formulas cross where $N^2$ terms overtake
# $9 N w$ ones. The table shows where each backbone falls.
#
# ### Floating-point operations per image at 224 px
#
# Parameters are not cost: a $3 \times 3$ convolution on a $7 \times 7$ map uses each weight 49
# times, one on a $4 \times 4$ map 16 times. `torch.utils.flop_counter.FlopCounterMode` counts the
# operations of convolutions and matrix products (a multiply-add counts as two; batch
# normalization, ReLU, pooling and the sigmoid are left out, they are a small fraction). On the
# `meta` device nothing is computed, so the paper's full-size models are counted in no time,
# one image at 224 px each.

# %%
def flops(fn, *args) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()


rows = []
with torch.device("meta"):
    image = torch.empty(1, 3, 224, 224)
    for name in BACKBONES:
        for attention in ("none", "att1", "att2"):
            net = build_model(backbone=name, attention=attention).eval()
            features = net.backbone(image)
            branch = 0 if net.attention is None else flops(net.attention, features)
            head = flops(net.forward_head, features) - branch
            rows.append({"backbone": name, "attention": attention, "backbone GFLOPs": flops(net.backbone, image) / 1e9,
                         "branch GFLOPs": branch / 1e9, "head MFLOPs": head / 1e6})
cost = pd.DataFrame(rows)
cost["total GFLOPs"] = cost["backbone GFLOPs"] + cost["branch GFLOPs"] + cost["head MFLOPs"] / 1e3
cost["vs. no attention"] = cost["total GFLOPs"] / cost.groupby("backbone")["total GFLOPs"].transform("first") - 1
cost.set_index(["backbone", "attention"]).style.format(
    {"backbone GFLOPs": "{:.2f}", "branch GFLOPs": "{:.3f}", "head MFLOPs": "{:.2f}", "total GFLOPs": "{:.2f}", "vs. no attention": "{:+.1%}"})

# %% [markdown]
# The backbone dominates; the category-wise head (the $1 \times 1$ class map of chapter 4's fast
# form) is negligible; the branches add the fractions in the last column. As with the
# parameters, att2's cost grows faster with $N$ than att1's, so which branch is heavier depends on
# the backbone. Per weight, att2 is cheap: its mask units run on the pooled $4 \times 4$ grid,
# and its trunk's bottlenecks are $N/4$ wide.
#
# ### A measured training step
#
# Counting operations does not tell how long they take: many small kernels, batch normalization
# and memory traffic do not show in FLOPs. The cell times a training step (forward pass, the loss
# of Eq. 10, backward pass) of the three models at the fast-mode size, on the device chosen
# above, and separately the step of the attention branch and head alone on a fixed conv5 map.
# The rounds alternate between the three models, so that a change in the machine's load hits
# them alike; the first round is a warm-up, and of the next `timing_repeats` the fastest is
# kept, the one least disturbed by anything else. These are live measurements of a few steps:
# on a shared or busy machine they still vary from run to run.

# %%
nets = {}
for attention in ("none", "att1", "att2"):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        nets[attention] = build_model(backbone=backbone, attention=attention, weights=weights).to(device).train()


def training_step(net: nn.Module) -> None:
    net.zero_grad(set_to_none=True)
    cral_loss(net(x), y).backward()


def branch_and_head_step(net: nn.Module) -> None:
    net.zero_grad(set_to_none=True)
    cral_loss(net.forward_head(conv5), y).backward()


def seconds(step, net: nn.Module) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step(net)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


steps_to_time = {"training step (ms)": training_step, "branch + head only (ms)": branch_and_head_step}
measured = {(attention, kind): [] for attention in nets for kind in steps_to_time}
for round_ in range(1 + timing_repeats):
    for attention, net in nets.items():
        for kind, step in steps_to_time.items():
            t = seconds(step, net)
            if round_ > 0:  # round 0 warms up
                measured[attention, kind].append(t)
timing = 1e3 * pd.Series({key: min(values) for key, values in measured.items()}).unstack().loc[list(nets), list(steps_to_time)]
timing["step vs. no attention"] = timing["training step (ms)"] / timing.loc["none", "training step (ms)"] - 1
print(f"{backbone}, batch {B}, {image_size} px, conv5 {h} x {w}, on {device} ({torch.get_num_threads()} CPU threads)")
timing.style.format({"training step (ms)": "{:.0f}", "branch + head only (ms)": "{:.1f}", "step vs. no attention": "{:+.0%}"})

# %% [markdown]
# Compare the last column with the FLOP table's row for this backbone: on the fast mode's small
# map they agree only roughly. Small tensors leave the processor underused, and att2's many
# small operations (batch normalizations, pooling, interpolation) take time that a FLOP count
# does not see: a cost per step has to be measured on the machine and at the size that matter.
#
# ### What the paper found
#
# The paper trains both branches on both backbones (Tables 1 and 2). Its Table 2, from
# `cral_lib.metrics.PAPER_TABLE2`, and the difference between att1 and att2 in each row:

# %%
paper_diff = pd.DataFrame({
    "R-50: att1 - att2": PAPER_TABLE2["R-50 att1"] - PAPER_TABLE2["R-50 att2"],
    "D-121: att1 - att2": PAPER_TABLE2["D-121 att1"] - PAPER_TABLE2["D-121 att2"],
})
display(PAPER_TABLE2.style.format("{:.4f}").set_caption("The paper's Table 2: mean test AUC on ChestX-ray14"))
paper_diff.style.format("{:+.4f}").set_caption("att1 minus att2, from the paper's Table 2")

# %% [markdown]
# In the paper, the hourglass buys nothing: att1 is slightly ahead with ResNet-50 and the two are
# level with DenseNet-121, and the ablations rank the same way for both branches. The paper does
# not discuss why; one reading consistent with these numbers is that the residual, category-wise
# weighting matters more than the branch that predicts the weights, and that on a $7 \times 7$
# map there is little context for an hourglass to gather that two $3 \times 3$ convolutions
# (which together see $5 \times 5$ positions) do not already have. The library's default is
# att1; chapter 8 trains both.
#
# ## Summary
#
# - att2 = a trunk of two pre-activation bottleneck units ($F \to \tilde F$) and a soft-mask
#   hourglass: max-pool ($7 \times 7 \to 4 \times 4$), two units, bilinear upsampling
#   (`align_corners=True`), BN-ReLU-$1 \times 1$ twice (to 512, then to $C$), sigmoid.
#   $\tilde F$ replaces $F$ in Eq. 4–5, and the ReLU of Eq. 6 matters because $\tilde F$ can be
#   negative.
# - The hand-built branch equals `cral_lib.models.Att2` with copied weights, in evaluation and
#   training mode, and the logits equal the literal Eq. 4–8 on $\tilde F$.
# - att1 grows with $N w$, att2 with $N^2$; both cost a modest fraction of the backbone's
#   operations at 224 px, and the paper finds no gain from the heavier att2.
