# %% [markdown]
# # Looking inside: heatmaps, attention maps, predictions
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cral-book/cral-book/blob/main/notebooks/09_visualization.ipynb)
#
# A mean AUC says how well a model ranks images, not what it looks at. Section 4.5 of the
# paper {cite}`guan2020cral` opens the network up with two figures: heatmaps of the conv5
# features with the ground-truth boxes drawn on (Fig. 5), and the eight most probable findings of
# test images with the true ones highlighted (Fig. 6). This chapter draws both for the model
# trained in chapter 6, and adds what the paper describes but does not show: the category-wise
# attention maps $a^c$ of Eq. 3, one per finding, which weigh the features in Eq. 4-5.
#
# You will learn how a box drawn on the original image is carried into the frame the network
# sees (the center crop of the test transform), what the Fig. 5 heatmap is and what it is not,
# how to read the 14 attention maps of one image, and how to explore them interactively.
# The next chapter turns these pictures into numbers.

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
from matplotlib.patches import Rectangle

import cral_lib
from cral_lib import CLASSES, book, localize, metrics, viz
from cral_lib.data import ChestXray14, ImageCache, TestTransform, build_cache, test_time_resize
from cral_lib.train import attention_check, load_run_model, train

cral_lib.print_config()

# %% [markdown]
# ## Parameters
# The defaults are the book's fast mode (chapter 6): the small ResNet of chapter 3 trained from
# scratch for six epochs on 112-pixel crops (7 x 7 maps, as in the paper), which runs on a laptop CPU in a few minutes. The comments give the paper's
# full-scale values (Section 4.2): `recipe = "paper"` on a GPU, and a knob left at `None` takes
# the recipe's value. papermill overrides any of them with `-p name value`. The training
# parameters are the same as chapter 6's: the same values give the same config and the same run
# folder, so this chapter reuses chapter 6's model instead of training its own.

# %% tags=["parameters"]
data_dir = ""          # a ChestX-ray14 release folder; "" means $CRAL_DATA_DIR, else the synthetic dataset
runs_dir = ""          # where trained runs live; "" means $CRAL_RUNS_DIR, else "runs"
device = "auto"        # "auto", "cpu", "cuda"
recipe = "fast"        # "fast": the book's fast mode; full scale: "paper" (Section 4.2)
seed = 0               # seed of the training run and of the choice of example images
backbone = None        # None: the recipe's; the paper: "resnet50" or "densenet121"
attention = "att1"     # "att1" or "att2"
variant = "cral"       # the full model (chapter 8 trains the ablations)
weights = None         # None: the recipe's; the paper: "imagenet"
image_size = None      # side of the network's input crop; the paper: 224
cache_size = None      # side of the cached (resized) images; the paper: 256
batch_size = None      # the paper: 64
epochs = None          # the paper: 30
amp = "auto"           # mixed precision on a GPU (see chapter 6)
predict_batch = 64     # images per forward pass when predicting the test split
n_examples = 6         # images in the heatmap figure (Fig. 5)
n_topk = 8             # images in the top-k figure (Fig. 6)
n_explorer = 12        # images in the interactive explorer
n_boot = 1000          # bootstrap resamples of the constant-attention check

# %%
env = book.setup(data_dir, runs_dir=runs_dir, device=device)
data_dir, dev = env.data_dir, env.device
rng = np.random.default_rng(seed)

# %% [markdown]
# ## The trained model
# The next cell builds the training configuration of chapter 6 from the parameters above, by the
# same call as chapter 6, and calls `train(config, resume="auto")`. When chapter 6 has already trained this run (as in the
# book's build), the call finds the finished checkpoint and returns at once; when this chapter
# runs on its own, it trains the run first. Then `load_run_model` rebuilds the network and loads
# the checkpoint with the best validation AUC, in evaluation mode.

# %%
# The run of chapter 6 (same parameters -> same config -> same run folder).
config = env.recipe(recipe, seed=seed, backbone=backbone, attention=attention, variant=variant, weights=weights,
                    image_size=image_size, cache_size=cache_size, batch_size=batch_size, epochs=epochs, amp=amp)

# %%
run = train(config, resume="auto")
model, config, _ = load_run_model(run.run_dir, which="best", device=dev)
print(f"{run.run_dir}: best validation mean AUC {run.best_val_auc:.3f} at epoch {run.best_epoch}")

# %% [markdown]
# ## Test images in the network's frame
# The boxes of `BBox_List_2017.csv` are drawn on the original PNG (1024 x 1024 pixels in the real
# release). The network never sees that image: the cache stores it resized to `cache_size`
# pixels, and the paper's test transform takes the central `image_size` crop (resize 256, crop
# 224 at full scale; Section 4.2). Because a resize stretches each axis on its own, the crop is a
# fixed window of the original image, which `localize.center_crop_window` computes. The maps the
# network makes (conv5 features, attention) cover that window, not the whole image: a map of
# $h \times w$ cells is spread over the window, and whatever lies outside it was never seen.
#
# The resize before the crop is the one `evaluate_run` uses (chapter 7), `test_time_resize`:
# `image_size * 256 / 224`, rounded, which is the cache size itself in both the fast mode and
# the paper's setting.

# %%
test = ChestXray14(data_dir, split="test", val_fraction=config.val_fraction, seed=config.seed)
cache = ImageCache(build_cache(data_dir, out=config.cache_dir, size=config.cache_size))
cache_rows = cache.rows(test.names)
resize = test_time_resize(config.image_size)
transform = TestTransform.for_crop(config.image_size)
boxes = test.boxes
png_sizes = cache.original_sizes[cache_rows]
print(f"{len(test)} test images, {len(boxes)} boxes on {boxes['row'].nunique()} of them")
print(f"PNG sizes (width, height): {sorted(set(map(tuple, png_sizes.tolist())))}")


# %%
def crop_window(i):
    """(x0, y0, width, height) of test image i's PNG that the network's input shows."""
    return localize.center_crop_window(png_sizes[i], resize=resize, crop=config.image_size)


def image_boxes(i):
    """The boxes of test image i, in its PNG's pixel frame."""
    return boxes[boxes["row"] == i]


def inputs(idx):
    """The network's input for test images idx: cached pixels through the test transform."""
    pixels = torch.from_numpy(cache.images[cache_rows[np.asarray(idx)]])
    return transform(pixels.to(dev))


example = int(rng.choice(boxes["row"].unique()))
window = crop_window(example)
print(f"test image {example} ({test.names[example]}): window {tuple(round(v, 1) for v in window)}")
image_boxes(example)[["label", "x", "y", "w", "h"]]

# %% [markdown]
# To draw a box on the network's input, move it into the crop's frame: scale it from the PNG to
# the resized image (`localize.scale_boxes`), then shift it by the crop's offset. The figure shows
# both frames for one test image; the boxes land on the same structures in both.


# %% mystnb={"figure": {"caption": "One test image in two frames. Left: the original PNG with its ground-truth boxes and, dashed in orange, the window that the test transform's center crop keeps. Right: the network's input (that crop) with the same boxes carried into its frame.", "name": "fig-09-frames"}}
ex_boxes = image_boxes(example)
xywh = ex_boxes[["x", "y", "w", "h"]].to_numpy()
in_crop = localize.scale_boxes(xywh, png_sizes[example], (resize, resize))
in_crop[:, :2] -= round((resize - config.image_size) / 2)  # the crop's offset, rounded as torchvision does
labels_ex = list(ex_boxes["label"])
fig = viz.plot_examples(
    [test[example]["img"], inputs([example])[0].cpu()],
    [labels_ex, labels_ex],
    boxes=[list(zip(labels_ex, xywh)), list(zip(labels_ex, in_crop))],
    ncols=2,
    titles=[f"original PNG, {png_sizes[example][0]} x {png_sizes[example][1]} px",
            f"network input, {config.image_size} x {config.image_size} px"],
)
fig.axes[0].add_patch(Rectangle(window[:2], window[2], window[3], fill=False, edgecolor="orange", lw=1.5, ls="--"))
plt.show()

# %% [markdown]
# The window is all one needs: a box moves into the input's frame by subtracting the window's
# corner and scaling by `image_size / window width`. The check below confirms that this gives the
# boxes drawn on the right.

# %%
via_window = (xywh - [window[0], window[1], 0, 0]) * config.image_size / window[2]
np.testing.assert_allclose(in_crop, via_window, atol=1e-9)
print("boxes in the crop's frame:\n", np.round(in_crop, 1))

# %% [markdown]
# ## Predictions and maps of the test split
# One pass over the test split gives, for every image, the 14 probabilities (the sigmoid of
# Eq. 9 applied to the logits), the 14 attention maps $A$ of Eq. 3, and the Fig. 5 heatmap
# described in the next section. The conv5 features themselves are not kept: at full scale they
# would fill gigabytes. The mean AUC over the classes is printed so that you know how good the
# model is whose maps you are about to look at (chapter 7 measures it in full).

# %%
@torch.no_grad()
def predict(idx):
    """Probabilities, attention maps (Eq. 3) and Fig. 5 heatmaps of test images idx."""
    probs, att, heat = [], [], []
    for start in range(0, len(idx), predict_batch):
        out = model(inputs(idx[start : start + predict_batch]), return_maps=True)
        probs.append(torch.sigmoid(out["logits"]).float().cpu())
        att.append(out["attention"].float().cpu())
        heat.append(torch.from_numpy(viz.feature_heatmap(out["conv5"])))
    return torch.cat(probs).numpy(), torch.cat(att).numpy(), torch.cat(heat).numpy()


probs, att, heat = predict(np.arange(len(test)))
labels = test.labels
aucs = metrics.auc_table(labels, probs)
classes_auc = metrics.class_table(aucs)  # test positives per class; the rare ones flagged
print(f"attention maps {att.shape}, heatmaps {heat.shape}")
print(f"test mean AUC over the {len(classes_auc.attrs['counted'])} classes with at least "
      f"{classes_auc.attrs['min_positives']} test positives: {classes_auc.loc[metrics.MEAN_COUNTED, 'auc']:.3f} "
      f"({metrics.MEAN_ALL}: {classes_auc.loc[metrics.MEAN_ALL, 'auc']:.3f}; flagged: "
      f"{', '.join(classes_auc.attrs['flagged']) or 'none'})")

# %% [markdown]
# ## Heatmaps of the conv5 features (the paper's Fig. 5)
# The paper makes its heatmaps in two steps (Section 4.5): take the absolute value of the conv5
# features at each position, then the maximum over the $N$ channels,
#
# $$M_{i,j} = \max_{n = 1..N} \left|F^n_{i,j}\right| ,$$
#
# and zoom the $h \times w$ map up to the image. Built by hand on a few images, and compared with
# `viz.feature_heatmap`: note that $F$ is taken after the last ReLU ("conv_5_relu", Eq. 1), so it
# is never negative and the absolute value changes nothing.

# %%
fig5_idx = np.sort(rng.choice(boxes["row"].unique(), size=min(n_examples, boxes["row"].nunique()), replace=False))
with torch.no_grad():
    conv5 = model(inputs(fig5_idx), return_maps=True)["conv5"].float().cpu()
by_hand = conv5.abs().amax(dim=1)
torch.testing.assert_close(torch.from_numpy(viz.feature_heatmap(conv5)), by_hand)
# the same images in another batch size: on a GPU, cuDNN may choose another convolution algorithm
# (in TF32 on Ampere and newer), which changes the last digits
close = dict(rtol=1e-4, atol=1e-5) if dev.type == "cpu" else dict(rtol=1e-2, atol=1e-3)
torch.testing.assert_close(by_hand, torch.from_numpy(heat[fig5_idx]), **close)
print(f"conv5 {tuple(conv5.shape)}, never negative: {bool((conv5 >= 0).all())}; heatmaps {tuple(by_hand.shape)}")

# %% [markdown]
# The top row of the next figure shows these heatmaps for test images that have boxes (drawn at
# random with the chapter's seed, not picked for looking good), each scaled to its own range. The
# bottom row shows, for the finding of the image's first box, CRAL's attention map $a^c$ for that
# finding, also scaled to its own range (the title gives its actual range). The heatmap is one map
# per image, the same whatever finding one asks about; the attention maps are one per finding.

# %% mystnb={"figure": {"caption": "Test images with their ground-truth boxes (green). Top row: the paper's Fig. 5 heatmap (maximum over channels of the absolute conv5 features), upsampled over the network's crop window. Bottom row: CRAL's attention map for the finding of the first box, with its predicted probability. Each map is scaled to its own range.", "name": "fig-09-heatmaps"}}
fig, axes = plt.subplots(2, len(fig5_idx), figsize=(2.7 * len(fig5_idx), 5.9), squeeze=False)
for k, i in enumerate(fig5_idx):
    img, win, bx = test[i]["img"], crop_window(i), image_boxes(i)
    viz.overlay_heatmap(img, heat[i], boxes=bx, ax=axes[0, k], window=win, title=test.names[i])
    name = bx["label"].iloc[0]
    c = CLASSES.index(name)
    a = att[i, c]
    viz.overlay_heatmap(img, a, boxes=bx[bx["label"] == name], ax=axes[1, k], window=win,
                        title=f"$a^c$, {name}: p = {probs[i, c]:.2f}\nrange [{a.min():.2f}, {a.max():.2f}]")
axes[0, 0].set_ylabel("Fig. 5 heatmap")
axes[1, 0].set_ylabel("attention of the boxed class")
fig.tight_layout()
plt.show()

# %% [markdown]
# How to read it. A hot cell means that some conv5 channel responds strongly there; that is all
# the Fig. 5 heatmap says. Where hot cells sit on the boxes, the features respond to the
# lesion; where they sit elsewhere (the heart, the diaphragm, the image border), the strongest
# features are about anatomy or acquisition, not the finding. The maps are coarse: the backbone
# divides the input side by 32, so each cell covers `image_size / h` pixels of the crop, and a
# smooth upsampling of a few cells cannot outline a small nodule. The paper's own caption warns
# that its heatmaps "may be a few difference" from run to run; chapter 10 measures how often the
# peak of a map falls in its box, which these pictures can only suggest.

# %%
cells = heat.shape[-1]
print(f"each map has {cells} x {cells} cells; one cell covers {config.image_size / cells:.0f} px of the "
      f"{config.image_size} px input, i.e. {window[2] / cells:.0f} px of the {png_sizes[example][0]} px PNG")

# %% [markdown]
# ## The attention maps of one image, class by class
# The attention branch (Eq. 2) turns $F$ into $C$ score maps $Z$, and the sigmoid of Eq. 3 into
# $A = \sigma(Z) \in [0, 1]^{C \times h \times w}$. Class $c$ then pools
# $H^c = (1 + a^c) \odot F$ (Eq. 5): a position where $a^c = 1$ weighs twice as much in class
# $c$'s pooled feature vector as one where $a^c = 0$. So $a^c$ says which positions class $c$'s
# classifier (Eq. 8) emphasizes. Nothing in the training tells it where the lesion is: the only
# signal is the image-level loss of Eq. 10.
#
# `viz.plot_attention_grid` draws all 14 maps of one image on a common colour scale from 0 to 1,
# so that the classes can be compared. The classes the image truly has are framed and titled in
# red, each with its predicted probability; the boxes of a class are drawn on its panel. The first
# example is a test image with at least two findings and a box (drawn at random).

# %%
n_findings = labels.sum(axis=1)
boxed = np.sort(boxes["row"].unique())
multi = boxed[n_findings[boxed] >= 2]
grid_idx = int(rng.choice(multi if len(multi) else boxed))
print(f"test image {grid_idx}: {', '.join(c for c, y in zip(CLASSES, labels[grid_idx]) if y)}")

# %% mystnb={"figure": {"caption": "CRAL's 14 attention maps for one test image with several findings, on a common scale from 0 (blue) to 1 (red), over the network's crop window. The first panel is the image with its boxes; the true classes are framed in red; each title gives the predicted probability.", "name": "fig-09-attention-grid"}}
fig = viz.plot_attention_grid(test[grid_idx]["img"], att[grid_idx], probs=probs[grid_idx], labels=labels[grid_idx],
                              boxes=image_boxes(grid_idx), window=crop_window(grid_idx))
plt.show()

# %% [markdown]
# The grid smooths each map over the window. The next figure draws the maps of the image's true
# findings as they are, one flat square per cell of the $h \times w$ map, each on its own range
# (given in the title, with the within-map range max - min), with that finding's boxes. This is
# the category-wise part of CRAL: one image, one map per finding, and the maps need not agree.

# %% mystnb={"figure": {"caption": "The attention maps of the true findings of the image above, drawn at their own resolution (one square per map cell, each map scaled to its own range; the title gives the range), with each finding's boxes in green.", "name": "fig-09-attention-cells"}}
true_classes = [c for c in range(len(CLASSES)) if labels[grid_idx, c]][:4]
fig, axes = plt.subplots(1, len(true_classes), figsize=(3.0 * len(true_classes), 3.4), squeeze=False)
grid_boxes = image_boxes(grid_idx)
for ax, c in zip(axes[0], true_classes):
    a = att[grid_idx, c]
    viz.overlay_heatmap(test[grid_idx]["img"], a, boxes=grid_boxes[grid_boxes["label"] == CLASSES[c]], ax=ax,
                        window=crop_window(grid_idx), cells=True,
                        title=f"{CLASSES[c]}: p = {probs[grid_idx, c]:.2f}\n"
                              f"a in [{a.min():.2f}, {a.max():.2f}], range {a.max() - a.min():.2f}")
fig.tight_layout()
plt.show()

# %%
peaks = [np.unravel_index(att[grid_idx, c].argmax(), att.shape[-2:]) for c in true_classes]
print(f"{att.shape[-2]} x {att.shape[-1]} maps; the true findings' maps peak at cells "
      + ", ".join(f"{CLASSES[c]} (row {r}, col {q})" for c, (r, q) in zip(true_classes, peaks)))
print(f"within-map range of this image's 14 maps: mean {np.ptp(att[grid_idx], axis=(1, 2)).mean():.3f}; "
      f"between-class spread (SD over the 14 classes at a cell, mean over cells): {att[grid_idx].std(axis=0).mean():.3f}")

# %% [markdown]
# For contrast, the same panels for a test image with no finding at all. Every class still gets
# a map: the sigmoid of Eq. 3 always produces one, and the residual form $1 + a^c$ keeps the
# features intact whatever the map is. What matters is whether the maps, and the probabilities
# they lead to, differ between images with and without the finding.

# %% mystnb={"figure": {"caption": "CRAL's 14 attention maps for a test image labelled No Finding, on the same 0-to-1 scale as the previous figure, with the predicted probability of each class.", "name": "fig-09-attention-grid-normal"}}
normal_idx = int(rng.choice(np.flatnonzero(n_findings == 0)))
fig = viz.plot_attention_grid(test[normal_idx]["img"], att[normal_idx], probs=probs[normal_idx],
                              labels=labels[normal_idx], window=crop_window(normal_idx))
plt.show()

# %% [markdown]
# Over the whole test split, the table compares the mean attention $\bar a^c$ (averaged over the
# $h \times w$ positions) of images that have finding $c$ with that of images that do not. The
# last two columns rank the images by $\bar a^c$ alone, and by the model's probability, and give
# the AUC of each ranking: an AUC near 0.5 for $\bar a^c$ means that the map's overall level
# carries no information about the finding, and that whatever the map contributes is in *where*
# it is high, not how high.

# %%
att_mean = att.mean(axis=(2, 3))
present = labels > 0.5
attention_table = pd.DataFrame(
    {
        "n_present": present.sum(axis=0),
        "mean a (present)": [att_mean[present[:, c], c].mean() if present[:, c].any() else np.nan
                             for c in range(len(CLASSES))],
        "mean a (absent)": [att_mean[~present[:, c], c].mean() for c in range(len(CLASSES))],
    },
    index=list(CLASSES),
)
attention_table["AUC of mean a"] = metrics.auc_table(labels, att_mean)["auc"]
attention_table["AUC of p"] = aucs["auc"]
attention_table["rare"] = classes_auc["flag"]  # under the minimum of test positives
print(classes_auc.attrs["rule"])
attention_table.style.format("{:.2e}", subset=["mean a (present)", "mean a (absent)"], na_rep="–").format(
    "{:.3f}", subset=["AUC of mean a", "AUC of p"], na_rep="–")

# %% [markdown]
# ## Does the attention matter?
# A picture of maps that vary says little if the classifier would do as well without the
# variation. `cral_lib.train.attention_check` measures it on the whole test split: how much the
# maps vary (the within-map range, max - min of $a^c$ over the cells of one map, and the spread
# between classes, the SD of the 14 values at one cell), and the *constant-attention check*:
# every map is replaced by its own mean, so that each class keeps how much attention it pays
# overall and loses only *where*, the rest of the model runs unchanged, and the test AUC is
# compared with the model's own on the same images (paired bootstrap, 95% interval).

# %%
check = attention_check(run.run_dir, "test", device=dev, n_boot=n_boot)
print(check.summary())
values = att.ravel()
print(f"attention values over the test split: below 0.01: {(values < 0.01).mean():.1%}; "
      f"above 0.99: {(values > 0.99).mean():.1%} (saturated)")
check.table[["auc_a", "auc_b", "diff", "ci_low", "ci_high"]].rename(
    columns={"auc_a": "AUC, constant maps", "auc_b": "AUC, own maps"}).round(3)

# %% [markdown]
# How to read it. If the drop's interval lies above 0, the places the maps pick carry
# information the classifier uses: with flat maps the model is worse, so the attention is doing
# part of the work. If it straddles 0, the model is in effect global average pooling and a linear
# layer, whatever the pictures look like. The sigmoid of Eq. 3 can also *saturate*: where most
# values sit at 0 or 1, the map has stopped doing anything (with $a^c \approx 0$ the residual
# form $(1 + a^c) \odot F$ of Eq. 5 is just $F$), and its gradient $a^c(1 - a^c)$ is nearly
# zero, so training cannot bring it back. Chapter 6 explains why the fast recipe trains the
# attention branch with SGD for that reason, and shows a branch trained with AdamW saturate
# within a few dozen steps; the cell above prints how many values are saturated in this run. The residual form earns its place here too: the product $A \odot F$
# without the residual (Eq. 4, chapter 8's *w/o residual* ablation) would multiply saturated
# positions by almost zero.

# %% [markdown]
# ## The top-8 predictions (the paper's Fig. 6)
# Fig. 6 of the paper lists, under each test image, the eight most probable findings with their
# probabilities, the true ones highlighted. `viz.plot_topk` draws the same: true labels the model
# ranks in its top 8 in red, true labels it ranks lower in blue (appended under the eight, as the
# paper does for "Edema" in its third example), the other classes in grey. The images are drawn at
# random among the test images with at least one finding.

# %% mystnb={"figure": {"caption": "Test images with their true findings (titles) and, below each, the model's eight most probable findings with their probabilities: true findings in the top eight in red, true findings ranked lower in blue, other classes in grey (cf. the paper's Fig. 6).", "name": "fig-09-topk"}}
sick = np.flatnonzero(n_findings > 0)
topk_idx = np.sort(rng.choice(sick, size=min(n_topk, len(sick)), replace=False))
fig = viz.plot_topk([test[i]["img"] for i in topk_idx], probs[topk_idx], labels[topk_idx], k=8)
plt.show()

# %% [markdown]
# A handful of images is an anecdote. Over all test images with at least one finding, the next
# cell counts how many of their true findings the model ranks in its top 8, and how often its top
# prediction is a true finding. Two rankings that do not look at the image give the scale: a
# random order, which puts a true finding in the top 8 of 14 with probability 8/14, and the
# order of how common each finding is in the training split, the same for every image. Because a
# few findings are far more common than the others, the second is much harder to beat.

# %%
def top_k_scores(scores, k=8):
    """Share of true findings ranked in the top k, and share of top-1 predictions that are true."""
    order = np.argsort(-scores, axis=1, kind="stable")
    in_top = np.zeros_like(present)
    np.put_along_axis(in_top, order[:, :k], True, axis=1)
    return (in_top & present)[sick].sum() / present[sick].sum(), present[sick, order[sick, 0]].mean()


prevalence = ChestXray14(data_dir, split="train", val_fraction=config.val_fraction, seed=config.seed).labels.mean(axis=0)
pd.DataFrame(
    {
        "model": top_k_scores(probs),
        "training prevalence": top_k_scores(np.broadcast_to(prevalence, probs.shape)),
        "random order": (8 / len(CLASSES), present[sick].sum(axis=1).mean() / len(CLASSES)),
    },
    index=["true findings in the top 8", "top-1 is a true finding"],
).round(3)

# %% [markdown]
# ## An explorer of the attention maps
# The explorer below lets you pick any of `n_explorer` test images with boxes (drawn at random)
# and any of the 14 classes, and shows that class's attention map over the image, its boxes of
# that class, the predicted probability and whether the finding is truly there, next to a bar
# chart of all 14 probabilities (true findings in red). It is built with ipywidgets and needs a
# live Jupyter kernel: it works when you run this notebook (locally or on Colab), but the printed
# or HTML book cannot redraw it. The static figure after it shows what the explorer shows for a few image and
# class pairs, so that nothing is lost on the page.

# %%
explorer_idx = np.sort(rng.choice(boxed, size=min(n_explorer, len(boxed)), replace=False))
assert len({tuple(s) for s in png_sizes[explorer_idx]}) == 1, "the explorer needs images of one size"
explorer_boxes = boxes[boxes["row"].isin(explorer_idx)].assign(
    row=lambda d: np.searchsorted(explorer_idx, d["row"])  # index within the explorer's images
)
explorer_data = dict(
    images=np.stack([test[i]["img"] for i in explorer_idx]),
    attention=att[explorer_idx],
    probs=probs[explorer_idx],
    labels=labels[explorer_idx],
    boxes=explorer_boxes,
    window=crop_window(explorer_idx[0]),
)
viz.attention_explorer(**explorer_data)

# %% mystnb={"figure": {"caption": "What the interactive explorer shows, for the true findings of the first explorer images: each finding's attention map over the image (0 to 1 scale), its boxes, and the predicted probability.", "name": "fig-09-explorer-static"}}
fig = viz.static_explorer_figure(**explorer_data, max_pairs=6)
plt.show()

# %% [markdown]
# ## Summary
# - The network sees a center crop of the image; its maps cover that window, and boxes move into
#   its frame with `localize.center_crop_window` and `localize.scale_boxes`.
# - The paper's Fig. 5 heatmap, $\max_n |F^n|$ over conv5, is one class-agnostic map per image:
#   it shows where the features are strong, whatever the finding.
# - CRAL's attention gives one map $a^c \in [0, 1]$ per finding; through $H^c = (1 + a^c) \odot F$
#   it decides which positions each class's classifier emphasizes. It is learned from image
#   labels only; its maps have the paper's 7 x 7 cells in the fast mode too, and the
#   constant-attention check says whether the classifier uses where they point.
# - The top-8 panels (Fig. 6) and the counts over the test split show how the probabilities rank
#   the true findings.
#
# On the synthetic data these pictures show that the code works and what the maps look like, not
# how a model behaves on real radiographs. Whether the attention maps actually point at the
# lesions is a question for numbers, not pictures: chapter 10 scores them against the boxes.
