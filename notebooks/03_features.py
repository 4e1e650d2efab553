# %% [markdown]
# # Feature embedding
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cral-book/cral-book/blob/main/notebooks/03_features.ipynb)
#
# Everything CRAL does happens on top of one tensor: the last feature map $F$ of an
# ImageNet-pretrained CNN, taken at the layer the paper calls `conv_5_relu` (Eq. 1 of
# {cite:t}`guan2020cral`). This chapter builds the two backbones of the paper, ResNet-50
# {cite}`he2016resnet` and DenseNet-121 {cite}`huang2017densenet`, cut at that layer, and
# measures what they hand on to the attention module: the shape of $F$ (channels $N$, a
# $32\times$ smaller grid), the number of parameters, and how much of the image one position of
# $F$ can see (its receptive field, computed by walking the layers and checked with gradients).
#
# Then it looks at the features themselves on a synthetic chest image: a few channels of
# `conv5`, and the heatmap of the paper's Fig. 5 (the maximum over channels of $|F|$, upsampled
# onto the image). The ImageNet weights are used where they can be downloaded; where they cannot
# (an offline machine), the chapter says so and continues with random weights, so that you can
# tell what you are looking at.

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
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import LogNorm
from matplotlib.patches import Rectangle

import cral_lib
from cral_lib import book, viz
from cral_lib.errors import WeightsError
from cral_lib.models import BACKBONES, build_backbone, hub_cache_path, imagenet_weights

cral_lib.print_config()

# %% [markdown]
# ## Parameters
# The defaults are the fast mode: they run in a few minutes on a laptop CPU. The chapter has no
# training, so the only thing that changes at full scale is the image side (224 px, the paper's
# crop) and where the data come from. `weights = "imagenet"` asks for torchvision's ImageNet
# weights; without internet access the download fails and the chapter falls back to random
# weights, visibly (see below). papermill overrides any of these with `-p name value`.

# %% tags=["parameters"]
data_dir = ""            # a ChestX-ray14 release folder; "" means $CRAL_DATA_DIR, else the synthetic dataset
device = "auto"          # "auto", "cpu", "cuda"
seed = 0                 # seed of the random weights and inputs drawn here
backbone = "resnet50"    # the network whose features are drawn: "resnet50" (the paper's Fig. 5) or "densenet121"
weights = "imagenet"     # "imagenet" (the paper; random weights if the download fails), None, or a file path
image_size = 128         # side of the network's input; full scale: 224 (the paper's center crop of 256)
n_images = 4             # test images whose features are drawn (full scale: the same)
n_channels = 8           # conv5 channels drawn for the first image (full scale: the same)

# %%
env = book.setup(data_dir, device=device)
data_dir, device = env.data_dir, env.device

# %% [markdown]
# ## The two backbones, cut at conv5
#
# Section 3.2 of the paper extracts "a discriminative feature map $F \in \mathbb{R}^{H \times W
# \times N}$ for each input image $I$":
#
# $$
# F = f_{cnn}(I;\, \theta_{cnn}), \qquad F \in \mathbb{R}^{H \times W \times N}, \tag{1}
# $$
#
# where $f_{cnn}$ is the network up to the layer `conv_5_relu`. In PyTorch's layout a batch of
# such maps is a tensor `B x N x h x w`. `cral_lib.models.build_backbone` takes torchvision's
# networks and keeps everything before the global pooling and the classifier:
#
# - **ResNet-50**: the output of `layer4` (the paper's `conv5_x`); its last bottleneck ends with
#   a ReLU, so this *is* `conv_5_relu`, with $N = 2048$ channels.
# - **DenseNet-121**: torchvision's `features` end with a batch normalization (`norm5`) and the
#   ReLU is applied only in the classifier's forward pass, so the backbone returns
#   $\mathrm{ReLU}(\mathrm{norm5})$, with $N = 1024$ channels.
#
# Two more are not in the paper. `resnet18` ($N = 512$) appears in the tables for comparison.
# `small_resnet` ($N = 256$) is the book's **fast backbone**, a teaching stand-in that chapters
# 6-10 train from random weights on a CPU: ResNet-18's layout built from torchvision's own
# `BasicBlock`, at half the width (32, 64, 128, 256 channels), and with its last stage at stride
# 1, so that conv5 is 16 times smaller than the input instead of 32
# (`cral_lib.models.small_resnet`). Its 112 px crops give the paper's $7 	imes 7$ map at a
# quarter of the paper's pixels; `benchmarks/fast_backbone.py` compares it with the other ways
# there (ResNet-18 at 224 px, ResNet-18 with a stride-1 last stage, narrower and shallower
# variants, bfloat16). It has no ImageNet weights, and at full scale the book uses the paper's
# backbones unchanged. The cell below builds the four with
# random weights (the shapes and parameter counts do not depend on the weights; they are drawn
# inside `torch.random.fork_rng` from the chapter's seed, which leaves the global random state
# alone) and passes one image of each size through them.

# %%
with torch.random.fork_rng(devices=[]):
    torch.manual_seed(seed)
    nets = {name: build_backbone(name, weights=None).eval() for name in BACKBONES}

rows = []
for name, net in nets.items():
    for side in sorted({224, image_size}):
        with torch.no_grad():
            F = net(torch.zeros(1, 3, side, side))
        rows.append({
            "backbone": name,
            "input": f"{side} x {side}",
            "F (B x N x h x w)": " x ".join(map(str, F.shape)),
            "N": F.shape[1],
            "positions K = h w": F.shape[2] * F.shape[3],
            "downsampling": side / F.shape[-1],
        })
shapes = pd.DataFrame(rows).set_index(["backbone", "input"])
shapes

# %% [markdown]
# The paper's backbones halve the grid five times (a strided $7 \times 7$ convolution, a
# max-pooling, and one stride-2 step at the start of each of the last three stages, or each of
# DenseNet's transition layers): the output is $32\times$ smaller on each side, and a
# $224 \times 224$ crop gives the paper's $7 \times 7$ map, $K = 49$ positions. `small_resnet`
# skips the last halving ($16\times$), so the fast mode's $112 \times 112$ crops give the same
# $7 \times 7$ grid, which is what the later chapters' attention maps are drawn on. The channels
# $N$ are the number of numbers that describe each position: Eq. 4–8 weigh all $N$ of them with
# the same attention score, and the classifiers of Eq. 8 have $N$ inputs each.

# %% [markdown]
# ## How many parameters
#
# The backbone is the part of CRAL that starts from ImageNet weights; everything after it starts
# from random ones. The cell counts its parameters, and those of the ImageNet classifier that
# the cut removes (torchvision's `fc` or `classifier`, $N \times 1000$ weights plus 1000
# biases).

# %%
params = pd.DataFrame({
    "backbone": list(nets),
    "N": [BACKBONES[name] for name in nets],
    "parameters up to conv5": [sum(p.numel() for p in net.parameters()) for net in nets.values()],
    # small_resnet has no ImageNet classifier to remove: it is never trained on ImageNet
    "ImageNet classifier removed": [BACKBONES[name] * 1000 + 1000 if name != "small_resnet" else 0 for name in nets],
})
params["in the paper"] = params["backbone"].isin(["resnet50", "densenet121"])
params = params.set_index("backbone")
params.style.format({"parameters up to conv5": "{:,}", "ImageNet classifier removed": "{:,}"})

# %% [markdown]
# DenseNet-121 has less than a third of ResNet-50's parameters and half its channels, yet the
# paper finds it slightly better (Table 1); its features are built by concatenation, so each
# layer adds few channels (the *growth rate*, 32) and reuses all earlier ones. The attention
# branches of the next two chapters add to these counts (chapter 5 compares their sizes with the
# backbones'), and the per-class classifiers of Eq. 8 add $C (N + 1)$, the same as one fully
# connected layer with $C$ outputs.

# %% [markdown]
# ## The receptive field of a conv5 position
#
# One position $(i, j)$ of $F$ is computed from a square of input pixels, its *receptive
# field*. Walking the layers from the input, with $r$ the receptive field (in input pixels) and
# $s$ the distance in input pixels between two neighbouring positions of the current layer
# (its cumulative stride), each convolution or pooling with kernel $k$, dilation $d$ and stride
# $t$ updates them as
#
# $$
# r \leftarrow r + (k - 1)\, d\, s, \qquad s \leftarrow s\, t, \qquad \text{starting from } r = s = 1 .
# $$
#
# Only the longest path through the network counts. In a ResNet that is the main branch of each
# residual block: the $1 \times 1$ `downsample` convolutions of the shortcuts see less and are
# skipped. In a DenseNet each layer's output is concatenated to its input, so the longest path
# runs through every layer of every block, and the receptive field grows much faster. The
# function below walks torchvision's modules in order, which for these networks is the order of
# that longest path.

# %%
def receptive_field(net: torch.nn.Module) -> tuple[int, int]:
    """Return (receptive field, cumulative stride) in input pixels of one output position."""
    r, s = 1, 1
    for name, module in net.named_modules():
        if "downsample" in name:  # ResNet shortcuts: not on the longest path
            continue
        if isinstance(module, (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
            k, t, d = (np.atleast_1d(getattr(module, a, 1))[0] for a in ("kernel_size", "stride", "dilation"))
            r, s = r + (k - 1) * d * s, s * t
    return r, s


rf = pd.DataFrame(
    [(name, *map(int, receptive_field(net))) for name, net in nets.items()],
    columns=["backbone", "receptive field (px)", "stride between positions (px)"],
).set_index("backbone")
rf["larger than a 224 px crop"] = rf["receptive field (px)"] > 224
rf["larger than a 1024 px original"] = rf["receptive field (px)"] > 1024
rf

# %% [markdown]
# The stride is 32, as the shapes said. The receptive fields are larger than the paper's
# $224 \times 224$ input: in theory every position of the $7 \times 7$ map depends on every
# pixel of the crop (zero padding fills the rest). DenseNet-121's is larger than even the
# $1024 \times 1024$ originals of ChestX-ray14.
#
# **A check with gradients.** The receptive field is exactly the set of input pixels on which
# the gradient of one output position can be non-zero. The cell below takes a random image large
# enough to hold ResNet-50's whole receptive field, back-propagates the sum of the $N$ channels
# at the central position of $F$, and measures the extent of the pixels whose gradient is not
# zero. That extent could come out smaller than the field (a max-pooling that never picks an
# edge pixel, a ReLU that is off there), never larger; the cell checks that it is equal.

# %%
def centre_gradient(net: torch.nn.Module, side: int) -> np.ndarray:
    """|d(sum over channels of F at the central position) / d(image)|, summed over RGB: (side, side)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, side, side, generator=gen).to(device).requires_grad_()
    # without cuDNN: its Winograd and FFT kernels can leave rounding noise where the gradient is
    # exactly zero, which would make the field look larger than it is
    with torch.backends.cudnn.flags(enabled=False):
        F = net.to(device)(x)
        h, w = F.shape[-2:]
        F[0, :, h // 2, w // 2].sum().backward()
    return x.grad[0].abs().sum(0).cpu().numpy()


r50_rf, r50_stride = receptive_field(nets["resnet50"])
big = r50_stride * math.ceil((r50_rf + r50_stride) / r50_stride)  # room for the whole field around the centre
grad_r50 = centre_gradient(nets["resnet50"], big)
rows_nz, cols_nz = np.nonzero(grad_r50.sum(1))[0], np.nonzero(grad_r50.sum(0))[0]
extent = (rows_nz.max() - rows_nz.min() + 1, cols_nz.max() - cols_nz.min() + 1)
print(f"ResNet-50 on a {big} x {big} input: conv5 is {big // r50_stride} x {big // r50_stride}; "
      f"the gradient of its central position is non-zero on {extent[0]} x {extent[1]} pixels "
      f"(rows {rows_nz.min()}..{rows_nz.max()}); walking the layers gave {r50_rf} px")
assert extent == (r50_rf, r50_rf)

grad_d121 = centre_gradient(nets["densenet121"], 224)
print(f"DenseNet-121 on a 224 x 224 input: non-zero gradient on {np.count_nonzero(grad_d121)} of "
      f"{grad_d121.size} pixels (its receptive field, {receptive_field(nets['densenet121'])[0]} px, covers them all)")

# %% [markdown]
# The theoretical field is not what a position *mostly* looks at. The figure shows the gradient
# magnitudes on a logarithmic scale: they fall off quickly away from the centre, like a
# Gaussian, so most of a position's response comes from a region much smaller than its
# theoretical field, its *effective receptive field* {cite}`luo2016erf`. Training moves and
# widens it, but the picture stays: each of the 49 positions of $F$ summarizes the whole crop
# and weighs its own neighbourhood most, which is why an attention map over the $7 \times 7$ grid
# can point to a region of the radiograph.

# %% mystnb={"figure": {"caption": "Gradient magnitude of the central conv5 position with respect to each input pixel, on a logarithmic scale, for random weights and a random image (white: exactly zero). Left: ResNet-50 on an input large enough to hold its receptive field; the green square is the field computed by walking the layers, and the non-zero gradients fill exactly that square. Right: DenseNet-121 at 224 px, whose receptive field is larger than the input. The red squares are the 32 x 32 cell of the input that the position stands for. Most of the gradient sits near that cell: the effective receptive field is much smaller than the theoretical one.", "name": "fig-03-receptive-field"}}
fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
for ax, grad, title in ((axes[0], grad_r50, f"ResNet-50, {big} px input"), (axes[1], grad_d121, "DenseNet-121, 224 px input")):
    positive = grad[grad > 0]
    im = ax.imshow(np.where(grad > 0, grad, np.nan), cmap="magma",
                   norm=LogNorm(vmin=np.quantile(positive, 0.01), vmax=positive.max()))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="|gradient|")
    cell = grad.shape[0] // 32 // 2 * 32  # top-left pixel of the central position's 32 x 32 cell
    ax.add_patch(Rectangle((cell - 0.5, cell - 0.5), 32, 32, fill=False, ec="red", lw=1.5))
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
axes[0].add_patch(Rectangle((cols_nz.min() - 0.5, rows_nz.min() - 0.5), r50_rf, r50_rf, fill=False, ec="lime", lw=1.5))
fig.tight_layout()
plt.show()

# %% [markdown]
# How concentrated? The share of the total gradient magnitude that falls inside squares of
# growing side around the central cell:

# %%
def central_share(grad: np.ndarray, side: int) -> float:
    c, half = grad.shape[0] // 32 // 2 * 32 + 16, side // 2
    return grad[c - half : c + half, c - half : c + half].sum() / grad.sum()


pd.DataFrame(
    {f"{side} x {side} px": [central_share(grad_r50, side), central_share(grad_d121, side)] for side in (32, 96, 160)},
    index=[f"ResNet-50 ({big} px input, field {r50_rf} px)", "DenseNet-121 (224 px input)"],
).style.format("{:.0%}")

# %% [markdown]
# ## ImageNet weights, or an explicit fallback
#
# The paper starts from ImageNet-pretrained networks. `build_backbone(name, weights="imagenet")`
# loads torchvision's original ImageNet weights (`IMAGENET1K_V1`, those of the paper's time)
# from the torch hub cache, downloading them once. When the download fails, for instance on a
# machine without internet access, the library raises `WeightsError` with a message that says
# where to put the file by hand; it **never** replaces the weights by random ones on its own,
# because a model trained from random weights silently would be a different experiment.
#
# This chapter only looks at features, so it may continue without the weights: it catches
# exactly that error, prints the message, and falls back to random weights *on purpose*. The
# printed line `weights used` tells you which case the figures below show.

# %%
print(f"ImageNet weights of {backbone}: {imagenet_weights(backbone)} "
      f"(hub cache: {hub_cache_path(imagenet_weights(backbone).url)})")
try:
    net = build_backbone(backbone, weights=weights, progress=False)
    weights_used = weights
except WeightsError as err:
    print(f"WeightsError: {err}")
    print(f"Falling back to random weights for {backbone}: the features below are those of an "
          "untrained network, not the pretrained features of the paper.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_backbone(backbone, weights=None)
    weights_used = None
net = net.eval().to(device)
print(f"weights used: {weights_used!r}")

# %% [markdown]
# ## What conv5 looks like on a chest image
#
# The images come from the data folder (the book's synthetic ChestX-ray14, unless you point
# `data_dir` at the real one); `book.test_images` takes them and passes them through the paper's
# test transform, as `evaluate_run` does: resize to
# $\tfrac{256}{224}$ of the crop side, center crop, grey value copied to the three input
# channels and normalized with ImageNet's mean and standard deviation. The synthetic images are
# procedural phantoms, not radiographs of patients: what the features do on them shows that the
# code works, not what a network learns from real chest X-rays. Images with ground-truth boxes
# are taken first, so that the heatmaps can be compared with them.

# %%
batch = book.test_images(data_dir, n_images, image_size, device)  # with boxes first; the test transform
images, x, window = batch.images, batch.x, batch.window
boxes = batch.boxes

with torch.no_grad():
    F = net(x)
print(f"images {tuple(images.shape)} -> network input {tuple(x.shape)} -> F = conv5 {tuple(F.shape)}")
print(f"the input shows the window (x0, y0, w, h) = {tuple(round(v, 1) for v in window)} of each image")
print(f"F >= 0 everywhere: {bool((F >= 0).all())}; zeros: {(F == 0).float().mean().item():.1%} of the values; "
      f"channels that are zero at every position of every image: {int((F.amax(dim=(0, 2, 3)) == 0).sum())} of {F.shape[1]}")

# %% [markdown]
# `conv_5_relu` is the output of a ReLU, so $F$ has no negative values and many exact zeros:
# each channel responds to some positions and is silent at the others. The figure draws, for the
# first image, the `n_channels` channels with the largest mean response, each one upsampled over
# the part of the image that the network saw, on a colour scale shared by all panels (so that a
# weak channel looks weak).

# %% mystnb={"figure": {"caption": "Single channels of conv5 on one synthetic chest image (the channels with the largest mean response), each upsampled bilinearly over the crop the network saw, on a colour scale shared by all panels. Each channel is a coarse map, strong at some positions and weak or zero at others.", "name": "fig-03-channels"}}
top = torch.argsort(F[0].mean(dim=(1, 2)), descending=True)[:n_channels].tolist()
vmax = F[0, top].max().item()
ncols = min(4, n_channels)
fig, axes = plt.subplots(math.ceil(n_channels / ncols), ncols, figsize=(2.8 * ncols, 2.9 * math.ceil(n_channels / ncols)), squeeze=False)
for ax, n in zip(axes.flat, top):
    viz.overlay_heatmap(images[0], F[0, n].cpu(), ax=ax, window=window, vrange=(0.0, vmax), title=f"channel {n}")
fig.suptitle(f"conv5 channels of {batch.names[0]}", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The heatmap of the paper's Fig. 5
#
# Section 4.5 of the paper draws the learned features as heatmaps: "we first take the absolute
# value of the feature values at each position [...] and then count the maximum values along
# feature channels", and zooms the $7 \times 7$ result to the size of the image.
# `viz.feature_heatmap` computes exactly that, $\max_n |F^n_{ij}|$ (the absolute value changes
# nothing after a ReLU, but keeps the function right for any layer), and `viz.overlay_heatmap`
# upsamples it bilinearly over the window the network saw and draws the ground-truth boxes.
# Each map is scaled to its own range, as in the paper's figure.

# %% mystnb={"figure": {"caption": "The paper's Fig. 5 heatmap on synthetic test images: the maximum over the conv5 channels of the absolute feature value, upsampled over the crop the network saw, with the ground-truth boxes in green. Which weights produced the features is printed above (ImageNet weights, or random weights when the download failed).", "name": "fig-03-heatmaps"}}
heat = viz.feature_heatmap(F)
fig, axes = plt.subplots(1, len(images), figsize=(3.2 * len(images), 3.4))
for ax, img, h, b, name in zip(np.atleast_1d(axes), images, heat, boxes, batch.names):
    viz.overlay_heatmap(img, h, boxes=b, ax=ax, window=window, title=name)
fig.tight_layout()
plt.show()

# %% [markdown]
# Read these maps with the printed `weights used` in mind. With **random weights** the channels
# are random filters of random filters: the heatmap follows the image's brightness and contrast
# (the bright mediastinum and diaphragm, the lung edges), not any finding. With **ImageNet
# weights** the channels respond to edges, blobs and textures that ImageNet made useful, so the
# maxima sit on structures, still without any notion of disease. Only training on chest X-rays
# (chapter 6) turns these channels into the lesion detectors that the paper's Fig. 5 shows;
# chapter 9 draws the same heatmaps for a trained model, and chapter 10 measures how well they
# point at the boxes. In every case the map is coarse, one value per 32-pixel cell: that grid
# is all the attention module of the next chapters can weigh.
#
# ## Summary
#
# - $F$ (Eq. 1) is `conv_5_relu`: `layer4` of ResNet-50 ($N = 2048$) or
#   $\mathrm{ReLU}(\mathrm{norm5})$ of DenseNet-121 ($N = 1024$), on a grid $32\times$ smaller
#   than the input ($7 \times 7$ at 224 px). It is non-negative and sparse.
# - The backbones hold tens of millions (ResNet-50) or millions (DenseNet-121) of parameters,
#   counted above; the classifier they lose is replaced by CRAL's head.
# - Every conv5 position has a theoretical receptive field larger than the paper's crop (walked
#   through the layers, checked exactly with a gradient), but an effective field concentrated
#   around its own cell.
# - The paper's Fig. 5 heatmap is $\max_n |F^n|$ upsampled onto the image:
#   `viz.feature_heatmap` and `viz.overlay_heatmap`.
#
# Next, chapter 4 builds *att1* and the category-wise residual head on top of $F$, equation by
# equation.
