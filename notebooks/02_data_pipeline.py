# %% [markdown]
# # The data pipeline
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cral-book/cral-book/blob/main/notebooks/02_data_pipeline.ipynb)
#
# A model can only learn as fast as images reach it. ChestX-ray14 ships as 112,120 PNGs of
# 1024 × 1024 pixels, and the usual input pipeline (decode each PNG, resize it, crop and flip it
# image by image in a `DataLoader`) keeps a GPU waiting most of the time. This chapter follows
# an image through the path that `cral_lib` uses instead, stage by stage: the release folder and
# its reader, the uint8 image cache built once by `cral prepare`, batches that stay uint8 until
# they reach the device, and the paper's augmentation applied to whole batches there.
#
# You will learn what the reader checks and what its errors look like, what the cache stores
# and how big it is, why the batched transform is the paper's transform (same numbers as
# torchvision), and how much faster the whole path is, measured live on the machine that runs
# this notebook.

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
import json
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.patches import Rectangle
from scipy import stats
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as TF

import cral_lib
from cral_lib import book
from cral_lib.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchLoader,
    ChestXray14,
    ImageCache,
    TestTransform,
    TrainTransform,
    build_cache,
    load_grey,
    make_synthetic,
)
from cral_lib.data.augment import sample_crop_params
from cral_lib.data.images import resize_grey
from cral_lib.errors import CralError
from cral_lib.synthetic import OFFICIAL_TOTAL

cral_lib.print_config()

# %% [markdown]
# ## Parameters
# The defaults run in well under a minute of measurements on a laptop CPU and use the paper's
# image sizes (a 256 px cache, 224 px crops). The timing knobs are small on purpose; for the
# full measurement use `benchmarks/loader.py` (see the end of the timing section). Papermill
# overrides any of them with `-p name value`.

# %% tags=["parameters"]
data_dir = ""          # a ChestX-ray14 release folder; "" means $CRAL_DATA_DIR, else the synthetic dataset
device = "auto"        # "auto", "cpu", "cuda": where batches go and the augmentation runs
seed = 0
cache_size = 256       # side of the cached images: the paper's "resize 256"
crop_size = 224        # side of the training and test crops: the paper's 224
batch_size = 64        # the paper's 64
n_show = 6             # images shown before and after augmentation
n_crop_draws = 20000   # crop boxes drawn from each sampler to compare their distributions
timing_images = 256    # images per timed pass (full measurement: benchmarks/loader.py --images 2000)
timing_repeats = 2     # timed passes per pipeline after one warm-up pass; the best one counts
png_workers = 2        # DataLoader worker processes of the PNG pipeline (full: all CPU cores)
big_png_images = 8     # 1024 px synthetic PNGs timed through the PNG pipeline too (0 skips it)

# %%
env = book.setup(data_dir, device=device)
data_dir, device = env.data_dir, env.device

# %% [markdown]
# ## Reading a release folder
# A release folder has NIH's layout, whether it is a real download or the synthetic dataset:
#
# ```text
# Data_Entry_2017_v2020.csv    one row per image: labels, patient, follow-up, age, sex, view, ...
# train_val_list.txt           the official training + validation images
# test_list.txt                the official test images (patient-disjoint)
# BBox_List_2017.csv           the expert boxes
# images_001/images/*.png ...  (or one flat images/ folder)
# ```
#
# `ChestXray14(root, split)` reads it. It parses the CSV (once per process, cached), turns the
# `|`-joined labels into an $N \times 14$ matrix in the order of the paper's Table 1, assigns
# every image to `train`, `val` or `test` (the validation split is a seeded share of the
# `train_val` *patients*), and finds every listed image on disk. Images are decoded only when
# an item is asked for.

# %%
train = ChestXray14(data_dir, "train")
val = ChestXray14(data_dir, "val")
test = ChestXray14(data_dir, "test")
for ds in (train, val, test):
    print(ds)
print("classes:", train.pathologies)
print("labels:", train.labels.shape, train.labels.dtype)
train.frame.head(3)

# %% [markdown]
# An item is a small dict: the uint8 grey image, its 14 labels, its position and its name.
# The boxes of a split come as a table, in the pixel frame of the PNG.

# %%
sample = train[0]
print({k: (v.shape, v.dtype) if hasattr(v, "shape") else v for k, v in sample.items()})
display(train.boxes.head())
pd.DataFrame({ds.split: ds.label_counts() for ds in (train, val, test)})

# %% [markdown]
# ### What it checks, and what its errors look like
# The reader refuses a folder it cannot trust, with a `cral_lib.errors.CralError` whose message
# names the file or value and the fix (the `cral` command line prints the same message as one
# line and exits with status 2). It checks that the CSV exists and has the release's columns,
# that every label is one of the 14 classes or `No Finding`, that the two lists name only images
# of the CSV and share no image **and no patient**, that every listed image is on disk (or, with
# `lenient=True`, skips the missing ones and counts them), and that boxes name known images.
#
# Here is the check that Chapter 1 motivated. We copy the metadata of the release into a
# temporary folder and move one test image of a patient into `train_val_list.txt`, as a
# hand-edited list might:

# %%
lists = {"train_val": "train_val_list.txt", "test": "test_list.txt"}
patient = test.frame["Patient ID"].value_counts().index[0]  # the test patient with the most images
moved = test.frame.loc[test.frame["Patient ID"] == patient, "Image Index"].iloc[0]

with tempfile.TemporaryDirectory() as tmp:
    broken = Path(tmp)
    for name in (train.csv_path.name, "BBox_List_2017.csv", *lists.values()):
        shutil.copy(data_dir / name, broken / name)
    test_names = (broken / lists["test"]).read_text().split()
    (broken / lists["test"]).write_text("".join(f"{n}\n" for n in test_names if n != moved))
    with open(broken / lists["train_val"], "a") as f:
        f.write(f"{moved}\n")
    try:
        ChestXray14(broken, "train")
    except CralError as err:
        print(f"{type(err).__name__}: {err}")

# %% [markdown]
# ## The image cache
# Decoding a 1024 × 1024 PNG and shrinking it to 256 px takes a CPU core milliseconds per
# image, and the usual pipeline repeats it for every image of every epoch (the timing section
# below measures it). `cral prepare` (`cral_lib.data.build_cache`)
# does it **once**: every image of the CSV is decoded, converted to one 8-bit grey channel,
# resized to $S \times S$ with PIL's antialiased bilinear filter (the paper's "resize 256") and
# written as one row of a single `N × S × S` uint8 array, in CSV order. The cache lives in
# `<release>/cache/<S>/`; a complete cache of the same release and size is reused at once, and
# an interrupted build resumes where it stopped (`complete: true` is written last, atomically).

# %%
start = time.perf_counter()
cache_dir = build_cache(data_dir, size=cache_size)
print(f"build_cache returned {cache_dir} after {time.perf_counter() - start:.1f} s "
      "(a complete cache is reused at once)")
cache = ImageCache.open(data_dir, size=cache_size)
print(cache, "| images:", cache.images.shape, cache.images.dtype)
files = pd.DataFrame(
    [(p.name, p.stat().st_size) for p in sorted(cache_dir.iterdir()) if p.is_file() and not p.name.startswith(".")],
    columns=["file", "bytes"],
).set_index("file")
display(files)
print(json.dumps(cache.meta, indent=1))
pd.read_csv(cache_dir / "index.csv").head(3)

# %% [markdown]
# A cached row is exactly the PNG, decoded and resized; `ImageCache.rows` maps names to rows:

# %%
check = train.names[:8]
for name, row, path in zip(check, cache.rows(check), train.frame["path"][:8]):
    assert np.array_equal(cache.images[row], resize_grey(load_grey(path), cache_size)), name
print(f"{len(check)} cached rows equal their decoded and resized PNGs")

# %% [markdown]
# The size on disk is one byte per pixel, $S^2$ bytes per image. Measured on this cache and
# extrapolated to the whole of ChestX-ray14 (the NIH PNGs themselves take about 42 GB):

# %%
n_cached = len(cache)
per_image = (cache_dir / "images.npy").stat().st_size / n_cached
png_per_image = np.mean([Path(p).stat().st_size for p in train.frame["path"][:200]])
pngs = train.frame["path"][:1].map(lambda p: load_grey(p).shape).iloc[0]
print(f"cache: {per_image:,.0f} bytes per image at {cache_size} px (one byte per pixel: {cache_size}^2 = {cache_size**2:,})")
print(f"PNGs of this release ({pngs[1]} x {pngs[0]} px): {png_per_image:,.0f} bytes per image on average")
total = per_image * OFFICIAL_TOTAL
print(f"all {OFFICIAL_TOTAL:,} images of ChestX-ray14 at {cache_size} px: {total / 1e9:.1f} GB ({total / 2**30:.1f} GiB)")

# %% [markdown]
# The cache is *larger* than compressed PNGs of the same size would be: it trades disk for
# time, because reading a batch is then a single memory copy (the file is memory-mapped, and
# the operating system keeps it in RAM when it fits), with no decoding at all.

# %% [markdown]
# ## Augmentation on the device
# The paper's Section 4.2 trains on images resized to 256 × 256, randomly resized and cropped
# to 224 × 224 and randomly flipped horizontally, with the ImageNet mean subtracted; at test
# time, the image is resized to 256 × 256 and center-cropped to 224 × 224. The resize is done
# by the cache; `TrainTransform` and `TestTransform` do the rest to a **whole batch at once**,
# on whatever device the batch is on, and return float32 `(B, 3, 224, 224)`: the grey channel
# repeated three times and normalized with ImageNet's per-channel mean *and* standard deviation
# (the paper mentions only the mean; dividing by the standard deviation too is what
# torchvision's ImageNet-pretrained backbones expect).
#
# `BatchLoader` serves the uint8 rows: a batch is one read of the memory-mapped array, moved to
# the device (through pinned memory on a GPU) while a background thread prepares the next one.

# %%
rows, labels = cache.select(train)
loader = BatchLoader(cache, rows, labels, n_show, shuffle=True, seed=seed, device=device, prefetch=0)
x, y, pos = next(iter(loader))
print("a batch from the cache:", tuple(x.shape), x.dtype, x.device)

train_tf = TrainTransform(crop_size)
test_tf = TestTransform(crop_size)
generator = torch.Generator().manual_seed(seed)
params = train_tf.sample_params(len(x), cache_size, cache_size, generator=generator)
x_train = train_tf.apply(x, params)
x_test = test_tf(x)
print(train_tf, "->", tuple(x_train.shape), x_train.dtype)
print(test_tf, "->", tuple(x_test.shape), x_test.dtype)

# %% mystnb={"figure": {"caption": "A batch before and after augmentation. Top: the cached 256 px images with each training crop drawn in yellow (and whether it is flipped). Middle: the training crops, resized to 224 px and flipped. Bottom: the test transform's center crops.", "name": "fig-02-augmentation"}}
def shown(z):
    """Undo the normalization of channel 0, for display in [0, 1]."""
    return (z[0].float().cpu() * IMAGENET_STD[0] + IMAGENET_MEAN[0]).clamp(0, 1)


names = cache.names[loader.rows[pos.numpy()]]
fig, axes = plt.subplots(3, len(x), figsize=(2.3 * len(x), 7.4), squeeze=False)
for k in range(len(x)):
    top, left, h, w = params["boxes"][k].tolist()
    flipped = bool(params["flip"][k])
    axes[0, k].imshow(x[k, 0].cpu(), cmap="gray", vmin=0, vmax=255)
    axes[0, k].add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False, edgecolor="yellow", linewidth=1.5))
    axes[0, k].set_title(f"{names[k]}\ncrop {w}x{h}{', flipped' if flipped else ''}", fontsize=8)
    axes[1, k].imshow(shown(x_train[k]), cmap="gray", vmin=0, vmax=1)
    axes[2, k].imshow(shown(x_test[k]), cmap="gray", vmin=0, vmax=1)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
for r, label in enumerate((f"cache ({cache_size} px)", f"TrainTransform ({crop_size})", f"TestTransform ({crop_size})")):
    axes[r, 0].set_ylabel(label)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### The same numbers as torchvision
# The batched transform is meant to compute what torchvision computes image by image. We apply
# torchvision's `resized_crop` (bilinear, antialiased) and `horizontal_flip` to each image with
# the same boxes and flips, normalize, and compare:

# %%
mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
std = torch.tensor(IMAGENET_STD)[:, None, None]
reference = []
for k in range(len(x)):
    top, left, h, w = params["boxes"][k].tolist()
    z = TF.resized_crop(x[k].float().cpu(), top, left, h, w, [crop_size, crop_size], antialias=True)
    if params["flip"][k]:
        z = TF.horizontal_flip(z)
    reference.append((z.expand(3, -1, -1) / 255 - mean) / std)
reference = torch.stack(reference)
torch.testing.assert_close(x_train.cpu(), reference, atol=1e-4, rtol=0)
print(f"largest difference from torchvision: {(x_train.cpu() - reference).abs().max().item():.1e}")

# %% [markdown]
# ### Crop boxes: the same distribution as `RandomResizedCrop`
# Drawing the boxes is the other half. `RandomResizedCrop` draws an area fraction uniformly in
# $[0.08, 1]$ and an aspect ratio $w/h$ log-uniformly in $[3/4, 4/3]$, retries up to 10 times
# until the box fits in the image, and falls back to a central crop. `cral_lib` follows the same
# rules for the whole batch at once, with its own generator. We draw many boxes from both
# samplers and compare the distributions of their areas and aspect ratios (torchvision draws
# from torch's global generator, so we seed it inside `torch.random.fork_rng`, which restores
# the global state afterwards).

# %%
ours = sample_crop_params(n_crop_draws, cache_size, cache_size, train_tf.scale, train_tf.ratio,
                          generator=torch.Generator().manual_seed(seed)).numpy()
with torch.random.fork_rng():
    torch.manual_seed(seed)
    image = torch.empty(1, cache_size, cache_size)
    theirs = np.array([T.RandomResizedCrop.get_params(image, list(train_tf.scale), list(train_tf.ratio))
                       for _ in range(n_crop_draws)])


def crop_stats(b):
    return {"area fraction": b[:, 2] * b[:, 3] / cache_size**2, "aspect ratio w/h": b[:, 3] / b[:, 2]}


samples = {"cral_lib (batched)": crop_stats(ours), "torchvision": crop_stats(theirs)}
rows_ks = []
for key in ("area fraction", "aspect ratio w/h"):
    a, b = samples["cral_lib (batched)"][key], samples["torchvision"][key]
    ks = stats.ks_2samp(a, b)
    rows_ks.append({"quantity": key, "cral_lib median": np.median(a), "torchvision median": np.median(b),
                    "KS statistic": ks.statistic, "KS p-value": ks.pvalue})
pd.DataFrame(rows_ks).set_index("quantity").round(4)

# %% [markdown]
# The Kolmogorov–Smirnov statistic is the largest gap between the two cumulative
# distributions. When two samplers follow the same rules, its p-value is uniformly spread
# between 0 and 1 from one seed to the next; only a very small p-value (say below 0.001) would
# point to a difference. The histograms show the same:

# %% mystnb={"figure": {"caption": "Crop boxes drawn by cral_lib's batched sampler and by torchvision's RandomResizedCrop.get_params on a 256 px image: area as a fraction of the image (left) and aspect ratio w/h (right, log scale). The two histograms lie on top of each other.", "name": "fig-02-crop-distribution"}}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
bins = {"area fraction": np.linspace(0, 1, 41), "aspect ratio w/h": np.geomspace(0.7, 1.45, 41)}
for ax, key in zip(axes, bins):
    for (label, s), style in zip(samples.items(), ({"alpha": 0.5}, {"histtype": "step", "linewidth": 2})):
        ax.hist(s[key], bins=bins[key], density=True, label=label, **style)
    ax.set(xlabel=key, ylabel="density")
axes[1].set_xscale("log")
axes[1].set_xticks([0.75, 0.85, 1.0, 1.15, 4 / 3], ["3/4", "0.85", "1", "1.15", "4/3"])
axes[1].minorticks_off()
axes[0].legend(loc="lower center")
fig.tight_layout()
plt.show()

# %% [markdown]
# Small crops are common (the table gives the median area fraction), so during training the
# network sees many close-ups of parts of the chest, stretched to 224 px, and at test time the
# whole chest.

# %% [markdown]
# ## How fast is it?
# Now the two pipelines side by side, on the machine that runs this notebook:
#
# - **(a) PNG pipeline**, what many chest X-ray repositories do: a `DataLoader` with worker
#   processes, each decoding PNGs with PIL (here through the reader's `__getitem__`) and applying
#   torchvision's transforms image by image (resize 256, RandomResizedCrop 224, flip, 3 channels,
#   ImageNet normalization);
# - **(b) cache pipeline**: `BatchLoader` reads uint8 rows of the cache, and `TrainTransform`
#   augments the whole batch on the device.
#
# Each pipeline runs one untimed warm-up pass (worker start-up, the operating system's file
# cache), then `timing_repeats` timed passes over the same `timing_images` training images; the
# best pass counts. Batches are moved to `device` in both. The PNG pipeline's workers use one
# torch thread each (as `DataLoader` sets them); the cache pipeline is timed with one torch
# thread and with torch's default, and the better one counts (on a small, busy CPU, spreading
# memory-bound work over threads that other processes keep busy makes it slower, not faster).

# %%
png_transform = T.Compose([
    T.ToPILImage(),
    T.Resize((cache_size, cache_size)),
    T.RandomResizedCrop(crop_size),
    T.RandomHorizontalFlip(),
    T.Grayscale(num_output_channels=3),
    T.ToTensor(),
    T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
])


def images_per_second(make_pass):
    """Best images/s over `timing_repeats` passes, after one warm-up pass."""
    best = 0.0
    for r in range(timing_repeats + 1):
        start, n = time.perf_counter(), 0
        for batch in make_pass():
            n += batch.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if r > 0:
            best = max(best, n / (time.perf_counter() - start))
    return best


def png_rate(root, n, split="train"):
    """Images/s of the PNG pipeline over the first n images of a split of a release folder."""
    dataset = torch.utils.data.Subset(ChestXray14(root, split, transform=png_transform), range(n))
    png_loader = torch.utils.data.DataLoader(
        dataset, batch_size=min(batch_size, max(1, n // max(png_workers, 1))), shuffle=True,
        num_workers=png_workers, persistent_workers=png_workers > 0, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),
    )
    rate = images_per_second(lambda: (b["img"].to(device, non_blocking=True) for b in png_loader))
    del png_loader  # stops its worker processes
    return rate


n_timed = min(timing_images, len(train))
cache_loader = BatchLoader(cache, rows[:n_timed], labels[:n_timed], batch_size, shuffle=True, seed=seed, device=device)
timing_generator = torch.Generator().manual_seed(seed)


def cache_pass():
    for xb, yb, _ in cache_loader:
        yield train_tf(xb, generator=timing_generator)


default_threads = torch.get_num_threads()
by_threads = {}
for threads in sorted({1, default_threads}):
    torch.set_num_threads(threads)
    by_threads[threads] = images_per_second(cache_pass)
torch.set_num_threads(default_threads)
best_threads = max(by_threads, key=by_threads.get)

png_size = load_grey(train.frame["path"][0]).shape[0]
png_name = f"(a) PNG pipeline, {png_size} px PNGs"
timings = {png_name: png_rate(data_dir, n_timed), "(b) cache pipeline": by_threads[best_threads]}
for name, rate in timings.items():
    print(f"{name}: {rate:,.0f} images/s")
print("(b) by torch threads: " + ", ".join(f"{t}: {r:,.0f} images/s" for t, r in by_threads.items()))
print(f"(b) / (a): {timings['(b) cache pipeline'] / timings[png_name]:.1f}x on {n_timed} images, "
      f"device {device}, {png_workers} PNG workers")

# %% [markdown]
# The book's synthetic PNGs are 256 px, so decoding them is cheap. NIH's are 1024 px: 16 times
# the pixels to decode and a large resize before the crop, on every image of every epoch. To see
# that cost, we make a few synthetic images at 1024 px in a temporary folder, time the PNG
# pipeline on them, and time building their cache (the one-off cost that replaces it). The cache
# pipeline does not depend on the PNGs' size: its rows are `cache_size` pixels either way, so
# its rate above holds.

# %%
if big_png_images > 0:
    with tempfile.TemporaryDirectory() as tmp:
        big = make_synthetic(Path(tmp) / "release", n_images=big_png_images, image_size=1024, seed=seed, progress=False)
        timings["(a) PNG pipeline, 1024 px PNGs"] = png_rate(big, big_png_images, split="all")
        start = time.perf_counter()
        build_cache(big, size=cache_size, progress=False, workers=0)
        timings["building the cache from 1024 px PNGs (once, one process)"] = big_png_images / (time.perf_counter() - start)

speed = pd.DataFrame({"images/s": timings})
speed["(b) / this row"] = speed.loc["(b) cache pipeline", "images/s"] / speed["images/s"]
speed.loc[speed.index.str.startswith("building"), "(b) / this row"] = np.nan
speed.round(1)

# %% mystnb={"figure": {"caption": "Images per second of the PNG pipeline (DataLoader, PIL, torchvision) and of the cache pipeline (BatchLoader, batched TrainTransform), measured live on the machine that executed this notebook.", "name": "fig-02-throughput"}}
fig, ax = plt.subplots(figsize=(8, 0.6 * len(speed) + 1.2))
colors = ["tab:green" if name.startswith("(b)") else "tab:grey" if name.startswith("building") else "tab:red" for name in speed.index]
ax.barh(speed.index[::-1], speed["images/s"][::-1], color=colors[::-1])
for k, v in enumerate(speed["images/s"][::-1]):
    ax.text(v, k, f" {v:,.0f}", va="center", fontsize=9)
ax.set(xlabel=f"images per second, device {device}")
fig.tight_layout()
plt.show()

# %% [markdown]
# The table gives the ratio of the two pipelines on this machine. On a CPU both pipelines
# share the same few cores, and Pillow crops and resizes small uint8 images very efficiently,
# so with 256 px PNGs the gap is small there; on a GPU the batched transform costs
# almost nothing and the cache pipeline is bounded by a memory copy, while the PNG pipeline stays
# bounded by the CPU cores that decode. With NIH's 1024 px PNGs the PNG pipeline is slower still,
# as the 1024 px row shows, and it pays that price every epoch (30 epochs in the paper's recipe),
# while the cache is built once.
#
# These are short measurements on a small sample. For the full one (more images, warm-ups,
# several torch thread counts, results as JSON with the machine's description), run
# `benchmarks/loader.py`, e.g. `python benchmarks/loader.py --images 512 --json loader.json`
# (1024 px synthetic PNGs by default, or `--data DIR` for a release folder); the book's
# [performance page](../book/performance.md) records its results on named machines.

# %% [markdown]
# ## Several GPUs, and resuming in the middle of an epoch
# With $W$ processes (`torchrun`, one per GPU), each `BatchLoader` gets its `rank` and
# `world_size` and takes every $W$-th sample of the epoch's order, as
# `torch.utils.data.DistributedSampler` does. The order is a permutation drawn from
# `np.random.default_rng([seed, epoch])`: the same on every rank and after a restart. A training
# loader pads the order by wrapping around so that all ranks get the same number of batches.
# Ten samples over three ranks:

# %%
shards = [BatchLoader(cache, rows[:10], labels[:10], 2, shuffle=True, seed=seed, rank=r, world_size=3, prefetch=0)
          for r in range(3)]
for shard in shards:
    shard.set_epoch(1)
    print(f"rank {shard.rank}: positions {shard.indices().tolist()}")
assert set(np.concatenate([s.indices() for s in shards])) == set(range(10))

# %% [markdown]
# A run that stops mid-epoch (a Colab disconnection) resumes from its last checkpoint, which
# records the epoch and the batch reached; `iter_from(b)` continues the epoch at batch `b`
# without reading the batches before it, and yields exactly what the uninterrupted epoch would:

# %%
resumable = BatchLoader(cache, rows[:40], labels[:40], 8, shuffle=True, seed=seed, prefetch=0)
resumable.set_epoch(2)
whole = [p for _, _, p in resumable]
resumed = [p for _, _, p in resumable.iter_from(3)]
assert len(resumed) == len(whole) - 3 and all(torch.equal(a, b) for a, b in zip(whole[3:], resumed))
print(f"{len(whole)} batches per epoch; resuming at batch 3 yields the same last {len(resumed)} batches")

# %% [markdown]
# ## Using the real ChestX-ray14
# Everything above runs unchanged on the real release; only the folder changes. Three steps:
#
# 1. **Get the images.** `cral download` fetches NIH's 12 archives (about 42 GB) and streams them
#    straight into the image cache, decoding and resizing each PNG while the archive downloads,
#    checking every archive, and resuming where it stopped when interrupted. With
#    `--cache-only` no PNG is ever written and each archive is deleted once its images are in,
#    so the peak disk need is the cache (about 7.3 GB at 256 px, as computed above) plus one
#    archive:
#
#    ```bash
#    cral download --out /content/chestxray14 --cache-only
#    ```
#
#    Without `--cache-only` it writes NIH's layout (`images_NNN/images/*.png`), and
#    `cral prepare --data DIR` builds the cache afterwards (it reuses a complete cache and
#    resumes an interrupted one; `--size` for another side, `--lenient` to skip unreadable PNGs).
# 2. **Get the official split lists.** `train_val_list.txt` and `test_list.txt` are not in the
#    archives: download them from NIH's release page or Kaggle's copy of the dataset and put
#    them in the folder (`cral download --help` says where; `--source kaggle --metadata-only`
#    fetches them with a Kaggle API token). The metadata CSV and the box list are written for
#    you.
# 3. **Point the book at it**, for every notebook of a session or for one run:
#
#    ```bash
#    export CRAL_DATA_DIR=/content/chestxray14
#    papermill notebooks/06_training.ipynb out.ipynb -p data_dir /content/chestxray14
#    ```
#
#    and set the full-scale values written beside each parameter (backbone, image size, epochs).

# %% [markdown]
# ## Summary
# - `ChestXray14` reads a release folder, real or synthetic, checks it (labels, lists, patient
#   overlap, files) and exposes `frame`, `labels` and `boxes`; its errors name the problem and
#   the fix.
# - `cral prepare` / `build_cache` decodes every PNG once into a uint8 `N × S × S` array:
#   $S^2$ bytes per image, about 7.3 GB for all of ChestX-ray14 at 256 px.
# - `BatchLoader` moves uint8 rows to the device; `TrainTransform` / `TestTransform` apply the
#   paper's crops, flips and normalization to whole batches there, with torchvision's numbers
#   and torchvision's crop distribution.
# - The cache pipeline avoids decoding PNGs every epoch; the live measurement above gives the
#   gain on this machine, which grows with NIH's 1024 px PNGs and on a GPU. It shards over GPUs
#   and resumes mid-epoch.
#
# Chapter 3 feeds these batches to a backbone and looks at the features it computes.
