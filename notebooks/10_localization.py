# %% [markdown]
# # Localization, beyond the paper
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cral-book/cral-book/blob/main/notebooks/10_localization.ipynb)
#
# The paper says of its heatmaps (Fig. 5) that "the discriminative regions of the images are
# activated" and that CRAL "could learn to focus on the lesion areas" {cite}`guan2020cral`, but
# it does not measure it. ChestX-ray14 ships boxes drawn by radiologists around lesions
# {cite}`wang2017chestxray8`, so it can be measured. This chapter scores the maps of chapter 9
# against the boxes with two standard measures, the pointing game {cite}`zhang2018pointing` and
# the overlap of a thresholded map with the box (IoU, and the IoBB of Wang et al.), class by
# class. It compares four kinds of maps: CRAL's attention maps $a^c$ (Eq. 3), CRAL's own class
# activation maps, the class activation maps (CAM) {cite}`zhou2016cam` of the baseline without
# attention (Table 2's "w/o attention", trained like chapter 6's run) and the paper's own Fig. 5
# heatmap, and it puts them next to maps that know nothing about the image (a centre, a random
# and a class-prior map) and to the best that any map of their resolution could score, so that
# the numbers can be judged.
#
# You will learn how each measure is computed (once by hand, then for every box with
# `cral_lib.localize`), how large the uncertainty of such numbers is on a few hundred boxes, and
# what weakly supervised maps can and cannot be expected to do.

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
from scipy import stats

import cral_lib
from cral_lib import CLASSES, book, localize, viz
from cral_lib.data import ChestXray14, ImageCache, TestTransform, build_cache, nih_boxes, test_time_resize
from cral_lib.synthetic import MARKER
from cral_lib.train import load_run_model, train
from cral_lib.train.config import RESUMABLE_FIELDS

cral_lib.print_config()

# %% [markdown]
# ## Parameters
# The defaults are the book's fast mode (chapter 6: the small ResNet of chapter 3 trained from
# scratch for six epochs on 112-pixel crops, 7 x 7 maps); `recipe = "paper"` is the paper's full scale, a knob left at `None`
# takes the recipe's value, and the comments give the paper's. The training parameters are those
# of chapter 6, so that during the book's build this chapter reuses its run; the baseline is this
# chapter's own in the fast mode (with `recipe = "paper"`, chapter 8's). Run on its own, the
# chapter trains what it does not find. papermill overrides any value with `-p name value`.

# %% tags=["parameters"]
data_dir = ""          # a ChestX-ray14 release folder; "" means $CRAL_DATA_DIR, else the synthetic dataset
runs_dir = ""          # where trained runs live; "" means $CRAL_RUNS_DIR, else "runs"
device = "auto"        # "auto", "cpu", "cuda"
recipe = "fast"        # "fast": the book's fast mode; full scale: "paper" (Section 4.2)
seed = 0               # seed of the runs, the chance maps, the bootstrap and the examples
backbone = None        # None: the recipe's; the paper: "resnet50" or "densenet121"
attention = "att1"     # "att1" or "att2"
variant = "cral"       # the full model; the baseline is always variant "no_attention"
weights = None         # None: the recipe's; the paper: "imagenet"
image_size = None      # side of the network's input crop; the paper: 224
cache_size = None      # side of the cached (resized) images; the paper: 256
batch_size = None      # the paper: 64
epochs = None          # the paper: 30
amp = "auto"           # mixed precision on a GPU (see chapter 6)
predict_batch = 64     # images per forward pass
threshold = 0.5        # cut-off on the min-max normalised map for IoU and IoBB
tolerance = 0.0        # pointing-game margin in pixels of the PNG (Zhang et al. used 15)
eval_size = 256        # side of the grid the measures are computed on (None: the PNG's size)
n_boot = 1000          # bootstrap resamples of the paired comparisons
n_show = 3             # hits and misses shown in the example figure
real_data = "auto"     # is data_dir a real download? "auto": yes unless it holds the synthetic marker

# %%
env = book.setup(data_dir, runs_dir=runs_dir, device=device)
data_dir, dev = env.data_dir, env.device
rng = np.random.default_rng(seed)
is_real = not (data_dir / MARKER).is_file() if real_data == "auto" else bool(real_data)
print(f"data: {'real release' if is_real else 'synthetic'}")

# %% [markdown]
# ## Two trained models
# CRAL is the run of chapter 6, built by the same call as there, so `env.run_dir` names the same
# folder and `train(config, resume="auto")` returns at once when the run is finished (and trains
# it otherwise). The baseline without attention is Table 2's "w/o attention" model. Chapter 8's
# grid baseline is no good here: trained for three epochs on a few hundred images, it is close
# to chance, and the CAMs of a model that has learned nothing point nowhere in particular. So in
# the fast mode this chapter trains its own baseline with chapter 6's recipe, on a subset of the
# training images to keep the book's time short (`book.BASELINE_FAST`).
# The two recipes therefore differ by more than the attention, and the baseline has seen fewer
# images: the table below lists every difference. With `recipe = "paper"` both are the paper's
# recipe and differ only by the attention; the baseline is then chapter 8's "w/o attention" run.

# %%
# The CRAL run of chapter 6 (same parameters -> same config -> same run folder).
knobs = dict(seed=seed, backbone=backbone, weights=weights, image_size=image_size, cache_size=cache_size,
             batch_size=batch_size, epochs=epochs, amp=amp)
cral_config = env.recipe(recipe, attention=attention, variant=variant, **knobs)

# %%
# The baseline: chapter 6's recipe without the attention branch (fast mode: on BASELINE_FAST's subset).
base_config = env.recipe(recipe, baseline=True, attention="none", variant="no_attention", **knobs)
# every field in which the two recipes differ (where and how they ran left out)
differ = base_config.differences(cral_config, ignore=RESUMABLE_FIELDS - {"epochs"})
pd.DataFrame.from_dict({k: [str(a), str(b)] for k, (a, b) in differ.items()}, orient="index",
                       columns=["baseline", "CRAL (chapter 6)"])

# %%
models = {}
for name, config in (("CRAL", cral_config), ("baseline", base_config)):
    run = train(config, resume="auto")
    models[name], _, _ = load_run_model(run.run_dir, which="best", device=dev)
    print(f"{name}: {run.run_dir}, best validation mean AUC {run.best_val_auc:.3f} (epoch {run.best_epoch})")
cral_model, base_model = models["CRAL"], models["baseline"]

# %% [markdown]
# ## The boxes
# The boxes of the test split are in the frame of each original PNG. On the book's synthetic data
# every localized finding has a box (all classes except the diffuse Edema and Emphysema), so every
# test image with such a finding is scored. The real `BBox_List_2017.csv` has far fewer: 984
# boxes on 880 images, for 8 of the 14 classes. Its rows ship with `cral_lib` (through
# torchxrayvision's metadata, no images), so its statistics can be shown whatever data this
# chapter runs on.

# %%
test = ChestXray14(data_dir, split="test", val_fraction=cral_config.val_fraction, seed=cral_config.seed)
boxes = test.boxes
real_boxes = nih_boxes()
counts = pd.DataFrame(
    {
        "boxes (this data, test split)": boxes["label"].value_counts(),
        "images (this data, test split)": boxes.groupby("label")["row"].nunique(),
        "boxes (real NIH list)": real_boxes["label"].value_counts(),
        "images (real NIH list)": real_boxes.groupby("label")["Image Index"].nunique(),
    }
).reindex([c for c in CLASSES]).fillna(0).astype(int)
counts.loc["All"] = [len(boxes), boxes["row"].nunique(), len(real_boxes), real_boxes["Image Index"].nunique()]
counts

# %% [markdown]
# The network sees a center crop of each image (chapter 9), and its maps have $h \times w$
# cells over that crop. How large is a box compared with one cell? The next cell measures each
# box's side, $\sqrt{w h}$, in map cells, for this data and for the real list (all real PNGs are
# 1024 x 1024).

# %%
cache = ImageCache(build_cache(data_dir, out=cral_config.cache_dir, size=cral_config.cache_size))
cache_rows = cache.rows(test.names)
image_size = cral_config.image_size
resize = test_time_resize(image_size)  # the test transform's resize, as in evaluate_run
transform = TestTransform.for_crop(image_size)
with torch.no_grad():
    cells = cral_model.forward_features(torch.zeros(1, 3, image_size, image_size, device=dev)).shape[-1]
png_sizes = cache.original_sizes[cache_rows]
box_png = png_sizes[boxes["row"]]
assert (box_png == box_png[0]).all(), "localization_scores takes one image size: score each size on its own"
png_size = tuple(int(v) for v in box_png[0])
window = localize.center_crop_window(png_size, resize=resize, crop=image_size)
real_window = localize.center_crop_window((1024, 1024), resize=resize, crop=image_size)


def box_side_in_cells(frame, win):
    """sqrt(w h) of each box, in cells of an h x w map spread over the crop window."""
    return np.sqrt(frame["w"] * frame["h"]) / (win[2] / cells)


sides = pd.concat(
    [
        pd.DataFrame({"data": "this data", "label": boxes["label"], "side": box_side_in_cells(boxes, window)}),
        pd.DataFrame({"data": "real NIH list", "label": real_boxes["label"],
                      "side": box_side_in_cells(real_boxes, real_window)}),
    ]
)
print(f"maps of {cells} x {cells} cells; one cell is {window[2] / cells:.1f} px of the {png_size[0]} px PNG here "
      f"and {real_window[2] / cells:.1f} px of a 1024 px real PNG")
sides.groupby("data")["side"].describe().round(2)

# %% mystnb={"figure": {"caption": "Size of the ground-truth boxes in cells of the network's maps (side = square root of the box's area; one cell = crop window side / map side), per class, for this chapter's data and for the real NIH box list. Boxes left of the dashed line are smaller than one cell.", "name": "fig-10-box-sizes"}}
fig, ax = plt.subplots(figsize=(8, 4.2))
present = [c for c in CLASSES if c in set(sides["label"])]
for k, (data, colour) in enumerate((("this data", "tab:blue"), ("real NIH list", "tab:orange"))):
    part = sides[sides["data"] == data]
    values = [part.loc[part["label"] == c, "side"].to_numpy() for c in present]
    keep = [i for i, v in enumerate(values) if len(v)]
    bp = ax.boxplot([values[i] for i in keep], positions=[i + (k - 0.5) * 0.35 for i in keep], widths=0.3,
                    orientation="horizontal", patch_artist=True, showfliers=False, manage_ticks=False)
    for patch in bp["boxes"]:
        patch.set_facecolor(colour)
        patch.set_alpha(0.6)
    ax.plot([], [], color=colour, lw=6, alpha=0.6, label=data)
ax.axvline(1.0, color="grey", ls="--", lw=1)
ax.set_yticks(range(len(present)))
ax.set_yticklabels(present, fontsize=8)
ax.invert_yaxis()
ax.set_xlabel("box side in map cells")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
print("fraction of boxes smaller than one cell:")
print((sides["side"] < 1).groupby(sides["data"]).mean().round(3).to_string())

# %% [markdown]
# ## Two measures, computed by hand once
# Take one box and the CRAL attention map of its class, and follow what `localize` does.
#
# 1. **Upsample.** The $h \times w$ map is spread over the crop window with bilinear
#    interpolation (`localize.upsample_map`, the same as `torch.nn.functional.interpolate` with
#    `align_corners=False`). Each cell's value sits at the cell's centre.
# 2. **Pointing game** {cite}`zhang2018pointing`: find the maximum of the upsampled map and count
#    a *hit* when it lies inside the box (here with a margin of `tolerance` pixels; Zhang et al.
#    allowed 15 pixels). Bilinear upsampling never exceeds the largest cell, so the maximum sits
#    at the centre of the top cell (within a pixel); when that cell is on the border, the clamping
#    at the edge makes a plateau of equal pixels, and the point is the plateau's centre. An
#    $h \times w$ map can therefore point at only $h w$ places.
# 3. **IoU at a threshold.** Scale the map to $[0, 1]$ by its minimum and maximum over the window,
#    keep the pixels at or above `threshold`, and divide the pixels shared with the box by the
#    pixels in either: $\mathrm{IoU} = |M \cap B| / |M \cup B|$.
# 4. **IoBB** {cite}`wang2017chestxray8`: Wang et al. turn the thresholded map into a box, the
#    bounding box $D$ of its largest connected part, and score it by the intersection over the
#    *detected* box's area, $\mathrm{IoBB} = |D \cap B| / |D|$; a finding counts as localized
#    when the IoBB reaches a threshold $T$. IoBB is lenient with detections that are too small
#    (a small detection inside the box scores 1) and strict with ones that are too large.
#
# The pointing game only asks whether the map's single most salient point is on the lesion, so
# it suits coarse maps; IoU also asks whether the map has the lesion's extent.

# %%
box_rows = np.sort(boxes["row"].unique())
case = boxes.iloc[int(rng.integers(len(boxes)))]
c = CLASSES.index(case["label"])
with torch.no_grad():
    case_map = cral_model(transform(torch.from_numpy(cache.images[cache_rows[[case["row"]]]]).to(dev)),
                          return_maps=True)["attention"][0, c].float().cpu().numpy()
x0, y0, ww, wh = window
size = (round(ww), round(wh))
box_w = case[["x", "y", "w", "h"]].to_numpy(dtype=float) - [x0, y0, 0, 0]  # the box in the window's frame
up = localize.upsample_map(case_map, size)                                 # 1. (wh, ww) pixels

peak_yx = np.argwhere(up >= up.max() - 1e-12).mean(axis=0)                 # 2. centre of the top plateau
px, py = peak_yx[1] + 0.5, peak_yx[0] + 0.5                                # pixel centres
hit = box_w[0] <= px <= box_w[0] + box_w[2] and box_w[1] <= py <= box_w[1] + box_w[3]

mask = (up - up.min()) / (up.max() - up.min()) >= threshold                 # 3.
truth = localize.box_mask(box_w, size)
iou = (mask & truth).sum() / (mask | truth).sum()

detected = localize.box_from_map(mask)                                      # 4. largest component's box
ix = max(0.0, min(detected[0] + detected[2], box_w[0] + box_w[2]) - max(detected[0], box_w[0]))
iy = max(0.0, min(detected[1] + detected[3], box_w[1] + box_w[3]) - max(detected[1], box_w[1]))
iobb = ix * iy / (detected[2] * detected[3])

print(f"{case['label']} box on test image {case['row']}: peak at ({px:.0f}, {py:.0f}) -> {'hit' if hit else 'miss'}; "
      f"IoU {iou:.3f}; IoBB {iobb:.3f}")
assert hit == localize.pointing_game(case_map, box_w, size=size, tolerance=0)
np.testing.assert_allclose(localize.map_peak(up), (px, py))
np.testing.assert_allclose(iou, localize.iou_at_threshold(case_map, box_w, threshold, size=size))
np.testing.assert_allclose(iobb, localize.iobb(detected, box_w))

# %% mystnb={"figure": {"caption": "The two measures for one box, in the crop window's frame. Left: CRAL's attention map of the box's class, upsampled, with the ground-truth box (green) and the map's maximum (white cross; the pointing game's point). Right: the map scaled to [0, 1] and thresholded (white), the ground-truth box (green) and the bounding box of the thresholded map's largest component (orange), which IoBB scores.", "name": "fig-10-measures"}}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.5, 4.3))
png = test[int(case["row"])]["img"]
in_window = png[round(y0) : round(y0) + size[1], round(x0) : round(x0) + size[0]]  # the PNG inside the window
viz.overlay_heatmap(in_window, case_map, boxes=[(case["label"], box_w)], ax=ax1,
                    title=f"map of {case['label']} and its peak")
ax1.plot(px, py, "wx", ms=12, mew=3)
ax2.imshow(mask, cmap="gray")
for b, colour in ((box_w, "#00e000"), (detected, "orange")):
    ax2.add_patch(Rectangle(b[:2], b[2], b[3], fill=False, edgecolor=colour, lw=2))
ax2.set_title(f"map >= {threshold}: IoU {iou:.2f}, IoBB {iobb:.2f}", fontsize=9)
ax2.set_xticks([])
ax2.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The maps to score, and maps that know nothing
# For every test image with a box, one forward pass of each model gives:
#
# - **CRAL attention**: $a^c$ of Eq. 3, the map that weighs the features in Eq. 5;
# - **CRAL CAM**: the class activation map of CRAL's own classifier, $(1 + a^c) \odot
#   \sum_n W_{cn} F^n$; its spatial mean plus the bias *is* the logit of class $c$, so it shows
#   where the evidence for the class comes from (`model.class_activation_maps`);
# - **baseline CAM** {cite}`zhou2016cam`: $\sum_n W_{cn} F^n$ of the model without attention,
#   whose mean plus bias is again its logit.
#
# - **Fig. 5 heatmap**: the paper's own picture, the maximum over channels of the absolute conv5
#   features of CRAL (`viz.feature_heatmap`, chapter 9); one map for all classes.
#
# The two identities are checked below. Three maps that do not look at the image give the
# numbers a scale:
#
# - **centre**: a Gaussian bump in the middle of the crop, the same for every image and class; it
#   does well wherever findings tend to lie near the middle of the image;
# - **random**: a random value per cell, drawn with the chapter's seed; it points at a random cell;
# - **class prior**: for each class, the fraction of the training and validation boxes of that
#   class that cover each position: where this finding usually is, learned *with* boxes. It needs
#   boxes on training or validation images; the synthetic data have them, and where a dataset has
#   none it is left out (the cell below says which).

# %%
@torch.no_grad()
def maps_of(model, idx):
    """(attention or None, class activation maps, Fig. 5 heatmaps) of test images idx; checks CAM mean + bias = logits."""
    att, cam, heat = [], [], []
    for start in range(0, len(idx), predict_batch):
        pixels = torch.from_numpy(cache.images[cache_rows[idx[start : start + predict_batch]]]).to(dev)
        out = model(transform(pixels), return_maps=True)
        # Ampere and newer GPUs run convolutions in TF32 (10-bit mantissa) by default but matrix
        # products in float32; the maps come from a 1x1 convolution and the logits from a matrix
        # product, so the check below needs TF32 off to hold to 1e-4
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            maps = model.class_activation_maps(out["conv5"])
        torch.testing.assert_close(maps.mean(dim=(2, 3)) + model.classifier_bias, out["logits"].float(),
                                   rtol=1e-4, atol=1e-4)
        cam.append(maps.float().cpu())
        heat.append(torch.from_numpy(viz.feature_heatmap(out["conv5"].float().cpu()))[:, None])
        if out["attention"] is not None:
            att.append(out["attention"].float().cpu())
    return (torch.cat(att).numpy() if att else None), torch.cat(cam).numpy(), torch.cat(heat).numpy()


cral_att, cral_cam, cral_heat = maps_of(cral_model, box_rows)
_, base_cam, _ = maps_of(base_model, box_rows)
print(f"{len(box_rows)} images; maps {cral_att.shape}; CAM mean + bias = logits for both models")

# %%
grid = 32  # resolution of the centre and prior maps
centre_axis = (np.arange(grid) + 0.5) / grid - 0.5
centre = np.exp(-(centre_axis[:, None] ** 2 + centre_axis[None, :] ** 2) / (2 * 0.2**2))
random_maps = rng.random(cral_att.shape)

train_val = ChestXray14(data_dir, split="train_val", val_fraction=cral_config.val_fraction, seed=cral_config.seed)
prior_boxes = train_val.boxes
prior = np.zeros((len(CLASSES), grid, grid))
prior_n = np.zeros(len(CLASSES))
for label, xywh, png_wh in zip(prior_boxes["label"], prior_boxes[["x", "y", "w", "h"]].to_numpy(),
                              cache.original_sizes[cache.rows(prior_boxes["Image Index"])]):
    bx0, by0, bww, bwh = localize.center_crop_window(png_wh, resize=resize, crop=image_size)
    in_grid = (xywh - [bx0, by0, 0, 0]) * grid / [bww, bwh, bww, bwh]  # the box on the grid over the window
    prior[CLASSES.index(label)] += localize.box_mask(in_grid, (grid, grid))
    prior_n[CLASSES.index(label)] += 1
prior /= np.maximum(prior_n, 1)[:, None, None]

methods = {
    "CRAL attention": cral_att,
    "CRAL CAM": cral_cam,
    "baseline CAM": base_cam,
    "Fig. 5 heatmap": cral_heat,
    "centre": np.broadcast_to(centre, (len(box_rows), 1, grid, grid)),
    "random": random_maps,
}
if len(prior_boxes):
    methods["class prior"] = np.broadcast_to(prior, (len(box_rows), len(CLASSES), grid, grid))
print(f"class prior from {len(prior_boxes)} training/validation boxes" if len(prior_boxes)
      else "no boxes on training images: the class prior is left out")

# %% [markdown]
# ## Scores for every box
# `localize.localization_scores` does for every box what the hand computation did for one: the
# map of the box's class is upsampled onto the crop window inside the image's frame, the parts of
# a box outside the window count as missed (the first line below says how much of the boxes the
# window holds), and the measures are computed on a grid of `eval_size` pixels.
# `summarize_localization` averages them per class; the table gives the pointing accuracy of
# each kind of map.

# %%
scored_boxes = boxes.assign(row=np.searchsorted(box_rows, boxes["row"]))  # index into the maps
scores = {
    name: localize.localization_scores(maps, scored_boxes, image_size=png_size, crop=window, threshold=threshold,
                                       tolerance=tolerance, eval_size=eval_size)
    for name, maps in methods.items()
}
summaries = {name: localize.summarize_localization(s) for name, s in scores.items()}
visible = scores["CRAL attention"]["visible"]
print(f"boxes wholly inside the crop window: {(visible >= 1).mean():.3f}; mean share inside: {visible.mean():.3f}")
pointing = pd.DataFrame({name: s["pointing_acc"] for name, s in summaries.items()})
pointing.insert(0, "boxes", summaries["CRAL attention"]["n_boxes"])
pointing.round(3)

# %% [markdown]
# ### The ceiling of a map's resolution
# A map of $h \times w$ cells can point at only $h w$ places of the crop window (the cell
# centres; see step 2 above). A box that holds none of them is missed by *every* map of that
# size, however good. `localize.pointing_ceiling` finds, for each box, whether any of those places
# lies in it; its mean is the best pointing accuracy a map of that resolution could reach on these
# boxes. A method's score means something only against its ceiling. The book's first fast mode had
# 2 x 2 maps on 64 px crops; the last line below gives their ceiling on these boxes, low enough
# that "the learned maps lose to the centre" was decided by geometry before any training.

# %%
ceiling = {}
for name, maps in methods.items():
    shape = tuple(maps.shape[-2:])
    ceiling[name] = {"map": f"{shape[0]} x {shape[1]}", "pointing_acc": summaries[name].loc["All boxes", "pointing_acc"],
                     "ceiling": localize.pointing_ceiling(shape, boxes, png_size, crop=window, tolerance=tolerance,
                                                          eval_size=eval_size).mean()}
ceiling = pd.DataFrame(ceiling).T
ceiling["share of ceiling"] = ceiling["pointing_acc"].astype(float) / ceiling["ceiling"].astype(float)
old_window = localize.center_crop_window(png_size, resize=test_time_resize(64), crop=64)
old_ceiling = localize.pointing_ceiling((2, 2), boxes, png_size, crop=old_window, tolerance=tolerance, eval_size=eval_size)
print(f"2 x 2 maps on 64 px crops (the first fast mode) could reach {old_ceiling.sum()} of {len(boxes)} boxes "
      f"(ceiling {old_ceiling.mean():.3f})")
ceiling.round(3)

# %% [markdown]
# ### How sure are these numbers?
# A pointing accuracy is a proportion of hits among $n$ boxes. With a few boxes per class it is
# very uncertain; the figure gives each a 95% Wilson interval for a binomial proportion. Boxes
# of the same image are not quite independent, so the intervals are, if anything, a little too
# narrow.

# %%
def wilson(hits, n):
    """95% Wilson interval of a proportion."""
    ci = stats.binomtest(int(hits), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return ci.low, ci.high


rows = []
for name, s in scores.items():
    for label, group in list(s.groupby("label")) + [("All boxes", s)]:
        lo, hi = wilson(group["hit"].sum(), len(group))
        rows.append({"method": name, "class": label, "acc": group["hit"].mean(), "low": lo, "high": hi})
pointing_ci = pd.DataFrame(rows)
pointing_ci[pointing_ci["class"] == "All boxes"].set_index("method").drop(columns="class").round(3)

# %% mystnb={"figure": {"caption": "Pointing accuracy per class (fraction of boxes whose map maximum falls inside the box) with 95% Wilson intervals, for CRAL's attention maps, CRAL's CAMs, the baseline's CAMs and the maps that ignore the image (centre, random and, where training boxes exist, the class prior). The bottom row pools all boxes.", "name": "fig-10-pointing"}}
order = list(pointing.index)
colours = dict(zip(methods, ["tab:red", "tab:orange", "tab:blue", "tab:purple", "tab:grey", "black", "tab:green"]))
fig, ax = plt.subplots(figsize=(9, 0.5 * len(order) + 1.5))
for k, name in enumerate(methods):
    part = pointing_ci[pointing_ci["method"] == name].set_index("class").reindex(order)
    y = np.arange(len(order)) + (k - (len(methods) - 1) / 2) * 0.13
    ax.errorbar(part["acc"], y, xerr=[part["acc"] - part["low"], part["high"] - part["acc"]], fmt="o", ms=4,
                color=colours[name], capsize=2, lw=1, label=name)
ax.set_yticks(range(len(order)))
ax.set_yticklabels([f"{c} ({n})" for c, n in zip(order, pointing["boxes"])], fontsize=8)
ax.axhline(len(order) - 1.5, color="lightgrey", lw=0.8)
ax.invert_yaxis()
ax.set_xlim(-0.02, 1.02)
ax.set_xlabel("pointing accuracy (95% Wilson interval)")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
fig.tight_layout()
plt.show()

# %% [markdown]
# Two methods scored on the *same* boxes can be compared more precisely than their separate
# intervals suggest: what matters is on how many boxes they disagree. The next cell gives, for
# each method against the centre map (the simplest guess that ignores the image), the difference
# in pooled pointing accuracy with a 95% bootstrap interval that resamples whole images (all
# boxes of an image together) {cite}`efron1986bootstrap`, and says from the interval whether the
# method beats the centre.

# %%
image_of_box = scores["CRAL attention"]["row"].to_numpy()
n_images = len(box_rows)
boxes_per_image = np.bincount(image_of_box, minlength=n_images)
hits_per_image = {name: np.bincount(image_of_box, weights=s["hit"].to_numpy(float), minlength=n_images)
                  for name, s in scores.items()}
draws = np.random.default_rng(seed).integers(0, n_images, size=(n_boot, n_images))
n_drawn = boxes_per_image[draws].sum(axis=1)
ref = hits_per_image["centre"]
paired = []
for name in methods:
    if name == "centre":
        continue
    diff = hits_per_image[name] - ref
    boot = diff[draws].sum(axis=1) / n_drawn
    lo, hi = np.quantile(boot, 0.025), np.quantile(boot, 0.975)
    verdict = "beats the centre" if lo > 0 else "worse than the centre" if hi < 0 else "not distinguishable"
    paired.append({"method minus centre": name, "difference": diff.sum() / boxes_per_image.sum(),
                   "ci_low": lo, "ci_high": hi, "verdict": verdict})
paired = pd.DataFrame(paired).set_index("method minus centre")
learned = ["CRAL attention", "CRAL CAM", "baseline CAM", "Fig. 5 heatmap"]
winners = [m for m in learned if paired.loc[m, "verdict"] == "beats the centre"]
print(f"of the learned maps, {len(winners)} of {len(learned)} beat the centre map by more than the interval"
      + (f": {', '.join(winners)}" if winners else ""))
paired.round(3)

# %% [markdown]
# ## Overlap: IoU and T(IoBB)
# The overlap measures depend on the threshold (here `threshold`, printed below), which is why
# Wang et al. report accuracies at several overlap levels $T$ {cite}`wang2017chestxray8`. The
# first table gives, for all boxes pooled, the mean IoU of the thresholded map with the box and
# the fraction of boxes with IoU $\geq T$; the second the same for IoBB, the T(IoBB) accuracy.

# %%
print(f"threshold on the normalised map: {threshold}")
iou_table = pd.DataFrame({name: s.loc["All boxes"] for name, s in summaries.items()}).T.drop(columns="n_boxes")
iou_table.round(3)

# %%
iobb_table = pd.DataFrame(
    {name: localize.summarize_localization(s, iou_column="iobb").loc["All boxes"] for name, s in scores.items()}
).T.drop(columns=["n_boxes", "pointing_acc"]).rename(columns={"mean_iou": "mean_iobb"})
iobb_table.round(3)

# %% [markdown]
# Per class, the T(IoBB) accuracies of CRAL's attention maps:

# %%
localize.summarize_localization(scores["CRAL attention"], iou_column="iobb").round(3)

# %% [markdown]
# ## Hits and misses
# Numbers hide what a miss looks like. The figure shows boxes drawn at random among CRAL's
# attention hits (left) and misses (right), with CRAL's attention map of the box's class on top
# and the baseline's CAM of the same class below; the cross marks each map's maximum.

# %%
cral_scores = scores["CRAL attention"]
hits = cral_scores.index[cral_scores["hit"]].to_numpy()
misses = cral_scores.index[~cral_scores["hit"]].to_numpy()
shown = np.concatenate([rng.choice(hits, size=min(n_show, len(hits)), replace=False),
                        rng.choice(misses, size=min(n_show, len(misses)), replace=False)])


def peak_in_png(m):
    """The map's maximum, upsampled onto the crop window, in the PNG's pixel frame."""
    px_, py_ = localize.map_peak(localize.upsample_map(m, size))
    return px_ * ww / size[0] + x0, py_ * wh / size[1] + y0


# %% mystnb={"figure": {"caption": "Boxes where CRAL's attention map points inside the box (left columns, hits) and outside it (right columns, misses). Top row: CRAL's attention map of the box's class; bottom row: the baseline's class activation map of the same class; green: the ground-truth box; white cross: the map's maximum. Maps are scaled to their own range.", "name": "fig-10-hits-misses"}}
fig, axes = plt.subplots(2, len(shown), figsize=(2.7 * len(shown), 6.0), squeeze=False)
for k, b in enumerate(shown):
    box = cral_scores.loc[b]
    i, c = int(box["row"]), CLASSES.index(box["label"])
    img = test[int(box_rows[i])]["img"]
    for r, (name, maps) in enumerate((("CRAL attention", cral_att), ("baseline CAM", base_cam))):
        verdict = "hit" if scores[name].loc[b, "hit"] else "miss"
        viz.overlay_heatmap(img, maps[i, c], boxes=[(box["label"], box[["x", "y", "w", "h"]].to_numpy(float))],
                            ax=axes[r, k], window=window, title=f"{name}\n{box['label']}: {verdict}")
        axes[r, k].plot(*peak_in_png(maps[i, c]), "wx", ms=10, mew=2.5)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## On the real boxes
# Everything above runs unchanged on the real release: pass its folder as `data_dir` (with the
# images and `BBox_List_2017.csv`), or set `CRAL_DATA_DIR`. The real boxes differ from the
# synthetic ones in three ways that matter here. There are only 984 of them, spread over 8
# classes, so per-class intervals are wide (see the counts at the top). The class prior can be
# built only from boxes on training and validation images, and is left out when there are none.
# And the PNGs are 1024 pixels wide: `tolerance` is in those pixels (Zhang et al. used 15 pixels
# on images a few hundred pixels wide). The cell below says which case this run was.

# %%
if is_real:
    print(f"real release: the tables and figures above score {len(boxes)} real boxes on {len(box_rows)} test images")
else:
    print(f"synthetic data: the tables above score {len(boxes)} synthetic boxes; the real list has "
          f"{len(real_boxes)} boxes on {real_boxes['Image Index'].nunique()} images, median size "
          f"{real_boxes['w'].median():.0f} x {real_boxes['h'].median():.0f} px of 1024")

# %% [markdown]
# ## What to make of it
# - The maps are trained with image labels only (Eq. 10). Nothing asks the attention of Eq. 3
#   to cover the lesion; it only has to make the pooled features of Eq. 7 useful for the
#   classifier of Eq. 8. That it points at lesions at all, when it does, is a side effect.
# - The maps are coarse: 7 x 7 in the fast mode as at full scale, so the pointing game chooses
#   among 49 points, and a box smaller than a cell (see the box sizes above) is reachable only
#   when a cell centre happens to fall inside it. The ceiling table says how many boxes any
#   map of each size could reach at all. IoU punishes coarse maps twice: an upsampled cell is
#   far larger than a small box.
# - The maps that ignore the image matter. A method is only interesting where it beats the
#   centre and random maps by more than the intervals. It can even score below the random map,
#   when its maximum sits systematically where lesions are not (at the border of the crop, say:
#   look at the crosses in the hits-and-misses figure). The class prior, where it exists, shows
#   how much can be had by knowing where a finding usually lies, with no look at the image.
# - A saturated attention map (chapter 9 measures how many of its values sit at 0 or 1) is
#   nearly flat: its maximum is decided by tiny differences, or it is a tie scored at the middle of
#   the tied region, and its pointing accuracy then follows the centre map's. Compare
#   the two rows before reading anything into CRAL's attention column.
# - CRAL's attention and CAMs answer different questions: $a^c$ says which positions class $c$
#   weighs more (by a factor between 1 and 2), the CAM where the evidence for class $c$'s logit
#   comes from. The paired comparisons say whether the attention maps point better than the
#   CAMs on these boxes.
#
# On the synthetic data these numbers show that the measures and the code work; they say
# nothing about real radiographs, where the real boxes and a full-scale model are needed.
