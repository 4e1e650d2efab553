# %% [markdown]
# # Training with the paper's recipe
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cral-book/cral-book/blob/main/notebooks/06_training.ipynb)
#
# Chapters 3 to 5 built the network: a backbone cut at conv5, an attention branch (att1 or att2)
# and the category-wise residual head of Eq. 4-9. This chapter trains it, for real, with the
# recipe of Section 4.2 of the paper {cite}`guan2020cral`: SGD with momentum, batches of 64,
# 30 epochs, a tenfold drop of the learning rate after epoch 20, random 224-pixel crops of the
# 256-pixel images, ImageNet weights. The work is done by `cral_lib.train.train`, the same
# function that `cral train` runs in a terminal; the notebook only chooses the parameters and
# looks at what comes out.
#
# By default the chapter runs in the book's fast mode: a small ResNet (chapter 3), from random weights, on
# small crops of the synthetic dataset, so that it trains on a laptop CPU in a few minutes. With
# a real ChestX-ray14 download and a GPU, the same cells run the paper's full recipe; only the
# parameters change. You will learn what each part of the recipe does, how to read a training
# log and its curves, what a run folder holds, how training survives an interruption (atomic
# checkpoints, resuming at the batch it reached, the refusal of a foreign checkpoint), and which
# switches make it fast on GPUs: mixed precision, channels-last, `torch.compile` and several GPUs
# with `torchrun`.

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
from IPython.display import display

import cral_lib
from cral_lib import book, viz
from cral_lib.data import ChestXray14
from cral_lib.device import amp_settings
from cral_lib.errors import CheckpointError
from cral_lib.train import branch_trace, paper_recipe, read_history, train
from cral_lib.train.checkpoint import load_checkpoint

cral_lib.print_config()

# %% [markdown]
# ## Parameters
# The default recipe is the book's fast mode: it trains on a 2-core CPU in about three and a half
# minutes. `recipe = "paper"` is the recipe of Section 4.2 (for a GPU with the real dataset); a
# knob left at `None` takes the recipe's value, and the comment beside it gives the paper's.
# papermill overrides any of them with `-p name value`, and the section "Full scale" below lists
# them together. Chapters 7, 9 and 10 use the same training parameters: the same values give the
# same config and so the same run folder, and they reuse this run instead of training their own.

# %% tags=["parameters"]
data_dir = ""               # a ChestX-ray14 release folder; "" means $CRAL_DATA_DIR, else the synthetic dataset
runs_dir = ""               # where runs are written; "" means $CRAL_RUNS_DIR, else "runs"
device = "auto"             # "auto", "cpu", "cuda"
recipe = "fast"             # "fast": the book's fast mode; full scale: "paper" (Section 4.2)
seed = 0                    # seed of the validation split, the shuffling, the augmentation and the initial weights
backbone = None             # None: the recipe's; the paper: "resnet50" (or "densenet121")
attention = "att1"          # "att1" or "att2"
variant = "cral"            # "cral", or an ablation of chapter 8
weights = None              # None: the recipe's; the paper: "imagenet"
image_size = None           # side of the training crops; the paper: 224
cache_size = None           # side of the cached images the crops come from; the paper: 256
batch_size = None           # the paper: 64
epochs = None               # the paper: 30
amp = "auto"                # mixed precision: "auto" (bf16 or fp16 on a GPU, off on a CPU), "bf16", "fp16", "off"
compile = False             # torch.compile the model; full scale: True on a recent GPU
checkpoint_every_steps = 0  # also checkpoint every N steps (0: every epoch only); full scale: 200

# %%
env = book.setup(data_dir, runs_dir=runs_dir, device=device)
data_dir, dev = env.data_dir, env.device

# %% [markdown]
# ## The recipe
# Section 4.2 of the paper gives the whole recipe in one paragraph: resize every image to
# $256 \times 256$, take random resized crops of $224 \times 224$ and flip them horizontally at
# random, subtract the ImageNet mean; optimize with SGD, mini-batches of 64, 30 epochs, a
# learning rate of 0.01 divided by 10 after 20 epochs, weight decay 0.0001 and momentum 0.9; at
# test time, resize to 256 and take the central 224 crop. The backbones start from ImageNet
# weights.
#
# `TrainConfig` carries all of it. Its defaults *are* the paper's recipe (`paper_recipe()` is
# `TrainConfig()` with overrides), so a config states only where it departs from the paper; the
# book's fast mode is `fast_recipe()`, defined beside it. The next cell builds this chapter's
# config with `env.recipe`: the recipe the parameters name, with the parameters that are not
# `None` on top. It lays the config beside the paper's. The run folder's name comes from the
# config (`env.run_dir`: the model, the crop size and a hash of every field a resumed run must
# keep), so that a later chapter that builds the same config finds this run.

# %%
config = env.recipe(recipe, seed=seed, backbone=backbone, attention=attention, variant=variant, weights=weights,
                    image_size=image_size, cache_size=cache_size, batch_size=batch_size, epochs=epochs, amp=amp,
                    compile=compile, checkpoint_every_steps=checkpoint_every_steps)
run_dir = env.run_dir(config)
print(f"run folder: {run_dir}")

fields = ["backbone", "attention", "variant", "weights", "optimizer", "lr", "attention_optimizer", "attention_lr_scale",
          "flat_attention_start", "momentum",
          "weight_decay", "image_size",
          "cache_size", "crop_scale", "batch_size", "epochs", "lr_milestones", "lr_gamma", "prior_bias",
          "val_fraction", "seed", "amp"]
paper = paper_recipe().to_dict()
mine = config.to_dict()
recipe_table = pd.DataFrame(
    {"paper (Section 4.2)": [str(paper[f]) for f in fields], "this run": [str(mine[f]) for f in fields]},
    index=fields,
)
recipe_table["same"] = np.where(recipe_table.iloc[:, 0] == recipe_table.iloc[:, 1], "yes", "")
recipe_table

# %% [markdown]
# What each line means:
#
# - **The loss** is Eq. 10 of the paper, the binary cross-entropy averaged over the $C = 14$
#   classes and over the batch, $\mathcal{L} = -\frac{1}{C}\sum_c \left[ l_c \log p_c +
#   (1 - l_c) \log (1 - p_c) \right]$ with $p_c = \sigma(z_c)$ (Eq. 9). The model returns the
#   logits $z_c$; the loss takes them directly (`binary_cross_entropy_with_logits`), which is the
#   same number computed without overflow.
# - **SGD with momentum and weight decay.** With gradient $g_t$, momentum $\mu = 0.9$, weight
#   decay $\lambda = 10^{-4}$ and learning rate $\eta_t$, PyTorch's SGD does
#   $v_{t+1} = \mu v_t + g_t + \lambda w_t$ and $w_{t+1} = w_t - \eta_t v_{t+1}$.
# - **The schedule** is a step: $\eta_t = 0.01$ for epochs 1-20 and $0.001$ for epochs 21-30
#   (`lr_milestones=[20]`, `lr_gamma=0.1`).
# - **The augmentation** is torchvision's `RandomResizedCrop` (a crop of 8-100 % of the area,
#   aspect ratio 3/4-4/3, resized to the crop size) and a horizontal flip with probability 0.5,
#   applied to whole batches on the device (chapter 2). At test time: the central crop.
# - **Model selection.** The paper does not say which epoch it reports. `train` holds out
#   `val_fraction` of the `train_val` *patients* as a validation split (patient-disjoint, seeded),
#   measures the mean validation AUC after every epoch and keeps the best epoch in
#   `checkpoints/best.pt`. The official test split is never looked at during training; chapter 7
#   evaluates it once, at the end.
#
# The fast mode departs from the paper for time, and the table shows where: the book's
# `small_resnet` instead of a ResNet-50 (ResNet-18's layout at half width with conv5 at 1/16 of the
# input, so that 112 px crops give the paper's 7 x 7 maps; chapter 3), random initial weights
# instead of ImageNet's (nothing to download on a CI machine), small crops of small images (in
# the paper's ratio of 224 to 256), a few epochs with the drop of the learning rate before the
# last one, and smaller batches, which give more optimizer steps for the same computation.
# Starting from random weights, the network has much more to learn than when fine-tuning
# ImageNet weights, in a few hundred steps; three more departures make that possible:
#
# - **AdamW** {cite}`loshchilov2019adamw` instead of SGD, for the network: it scales each
#   weight's step by a running estimate of its gradient's size, which gets a network trained from
#   scratch moving far sooner than plain momentum does. The attention branch keeps the paper's SGD
#   at the paper's rate of 0.01 (`attention_optimizer="sgd"`; `attention_lr_scale` multiplies the
#   network's rate for the branch). The reason is a side effect of AdamW: its steps are about `lr`
#   in size for every weight, whatever the gradient. att1 has no batch normalization (chapter 4),
#   each of its scores (Eq. 2) sums hundreds of weighted inputs that are never negative (they come
#   out of ReLUs), and steps of $10^{-3}$ of one sign on weights that start near $10^{-2}$ make its
#   activations grow at every step, until its ReLUs die and its scores sit where the sigmoid of
#   Eq. 3 is flat at 0 or 1. There the sigmoid's gradient $a(1 - a)$ nearly vanishes, and AdamW,
#   which divides each gradient by its own size, goes on pushing all the same. The backbone's
#   convolutions are safe from this, because the batch normalization after each one undoes any
#   common growth of its weights. SGD's steps are proportional to the gradient, so they shrink as
#   a sigmoid saturates. After the training cell below, this chapter measures both in the run's
#   first steps; the [performance page](../book/performance.md) compares six optimizers and rates
#   of the branch over whole runs.
# - **Milder crops** (`crop_scale`: 50-100 % of the image instead of 8-100 %): a crop of a
#   tenth of a 128-pixel image rarely holds the finding its labels promise.
# - **Classifiers that start at the class frequencies** (`prior_bias`): each bias starts at the
#   log-odds of its class's prevalence in the training split, so the first steps are not spent
#   learning that most images have no finding.
#
# None of them is needed at full scale, where the paper's recipe starts from ImageNet weights.
# The splits and the number of optimizer steps show what the fast mode amounts to:

# %%
splits = {s: ChestXray14(data_dir, split=s, val_fraction=config.val_fraction, seed=config.seed,
                         require_images=False) for s in ("train", "val", "test")}
n_train = len(splits["train"].labels)
steps = pd.DataFrame(
    {
        "images": [n_train, 86_524 * (1 - paper["val_fraction"])],
        "batch": [config.batch_size, paper["batch_size"]],
        "epochs": [config.epochs, paper["epochs"]],
    },
    index=["this run (data_dir)", "paper's recipe on ChestX-ray14 (about)"],
)
steps["steps per epoch"] = (steps["images"] // steps["batch"]).astype(int)
steps["optimizer steps"] = steps["steps per epoch"] * steps["epochs"]
steps["images"] = steps["images"].round().astype(int)
print({s: len(d.labels) for s, d in splits.items()})
steps

# %% [markdown]
# ## Training
# One call trains the model. `resume="auto"` makes the cell safe to run again: when the run
# folder already holds a checkpoint of the same config, training continues from it (a finished
# run returns at once); otherwise it starts. The same run from a terminal is `cral train` with a
# flag for each value that departs from the paper (the flags left out keep the paper's values);
# the next cell writes that command out from the config.

# %%
def flag(name, value):
    """The `cral train` flag that sets one config value."""
    option = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return option if value else f"--no-{option[2:]}"
    if value is None:
        return f"{option} none"
    if isinstance(value, list):
        return f"{option} {' '.join(map(str, value))}"
    return f"{option} {value}"


departures = [flag(k, v) for k, v in mine.items()
              if k not in ("data_dir", "out_dir", "device") and v != paper[k]]
print(" \\\n    ".join([f"cral train --data {data_dir} --out {run_dir} --resume", *departures]))

# %% [markdown]
# The first call builds the image cache at `cache_size` pixels if it does not exist yet. Each
# epoch prints one line: the mean training loss, the validation loss and mean AUC (a star marks
# a new best), the throughput and the seconds spent training and validating. Running the
# notebook yourself, you also get progress bars with the running loss and images per second.

# %%
t0 = time.perf_counter()
result = train(config, resume="auto", progress=True)
print(f"{result.run_dir}: best validation mean AUC {result.best_val_auc:.4f} at epoch {result.best_epoch} "
      f"({time.perf_counter() - t0:.0f} s in this call)")

# %% [markdown]
# ### The curves
# `metrics.jsonl` holds one line per epoch, and `read_history` reads it back as a table. Two
# references make the curves readable. A model that ignores the image and always predicts each
# class's training prevalence has a known loss (the dotted line of the loss panel): below it,
# the predicted probabilities are better than the base rates. And a mean AUC of 0.5 (the dotted
# line of the AUC panel) is chance. The two do not measure the same thing: the loss also
# punishes probabilities that are too high or too low overall, while the AUC looks only at how
# the images are ranked. Early in training a model can therefore rank images better than
# chance while its loss is still above the prevalence-only loss. Much of the early fall of the
# loss comes from learning how rare each finding is: a freshly initialized network predicts
# probabilities near one half for everything.

# %%
history = read_history(result.run_dir)
prevalence = splits["train"].labels.mean(axis=0).clip(1e-6, 1 - 1e-6)
y_val = splits["val"].labels
prior_loss = float(-(y_val * np.log(prevalence) + (1 - y_val) * np.log(1 - prevalence)).mean())
print(f"validation loss of the prevalence-only predictor: {prior_loss:.4f}")
history[["epoch", "step", "lr", "train_loss", "val_loss", "val_auc"]].round(4)

# %% mystnb={"figure": {"caption": "Training curves of this run: training and validation loss with the loss of a predictor that always outputs the training prevalence (dotted), the validation mean AUC with chance (dotted), and the learning rate of each epoch.", "name": "fig-06-curves"}}
fig = viz.plot_training_curves(history[["epoch", "train_loss", "val_loss", "val_auc", "lr"]])
fig.axes[0].axhline(prior_loss, color="grey", ls=":", lw=1, label="prevalence only (val)")
fig.axes[0].legend(fontsize=7)
fig.axes[1].axhline(0.5, color="grey", ls=":", lw=1)
plt.show()

# %% [markdown]
# The validation split is small on the synthetic dataset, and AUC is a ranking of the few
# positive images of each class against the negatives: with a handful of positives, one image
# moving up or down changes a class's AUC by a lot, and a class without any positive has no AUC
# at all. The per-class validation AUC of each epoch shows it (the last column counts the
# positives; `NaN` marks a class whose AUC is undefined and left out of the mean). Chapter 7
# measures this noise on the test split with bootstrap confidence intervals.

# %%
per_class = pd.DataFrame(list(history["val_auc_per_class"]), index=history["epoch"]).T
per_class.columns = [f"epoch {e}" for e in per_class.columns]
per_class["val positives"] = splits["val"].labels.sum(axis=0).astype(int)
per_class.round(3)

# %% [markdown]
# On the synthetic phantoms these numbers show that the code runs and learns, not a clinical
# performance: a few minutes of CPU from random weights are not the paper's 30 epochs of a
# pretrained ResNet-50 on 78,000 radiographs.
#
# ### Throughput
# Every epoch records its training throughput (images per second, the optimizer's work only)
# and the seconds spent training and validating. The last column turns the throughput into the
# time one epoch over ChestX-ray14's training images would take at this speed, with this small
# model and these small crops; the paper's ResNet-50 at 224 pixels needs many times more
# computation per image. That is why the full recipe needs a GPU.

# %%
speed = history[["epoch", "images_per_s", "train_seconds", "val_seconds"]].copy()
speed["hours per ChestX-ray14 epoch at this speed"] = steps.iloc[1]["images"] / speed["images_per_s"] / 3600
speed.round(2)

# %% [markdown]
# These rates are for this model, crop size and machine. On a GPU with mixed precision the same
# loop runs the paper's ResNet-50 at 224 pixels orders of magnitude faster;
# `benchmarks/model_step.py` and `benchmarks/end_to_end.py` measure it on yours.
#
# ### Why the attention branch has its own optimizer
# The recipe section above says that AdamW, left to train att1, drives the branch into dead ReLUs
# and saturated sigmoids. `branch_trace` shows it: it takes the first steps of this chapter's run
# again, in memory (the same start, the same batches), and looks inside att1 every few steps, at
# the batch each step trains on. It does so twice: with this run's config, and with AdamW at
# $10^{-3}$ for every weight, the branch included. Each side of the table counts the branch's
# dead units (units of its two $3 \times 3$ convolutions whose ReLU is 0 everywhere in the batch),
# the share of saturated attention values (within 0.01 of 0 or of 1), the mean size of the
# scores $|Z|$, and the within-map range of the maps.

# %%
trace_steps = min(40, int(steps.loc["this run (data_dir)", "steps per epoch"]) - 1)  # within one epoch
if config.attention == "att1":
    adamw_everywhere = config.replace(optimizer="adamw", lr=1e-3, attention_optimizer="same", attention_lr_scale=1.0)
    branch_lr = config.lr * config.attention_lr_scale
    traces = {
        f"this run (branch: {config.branch_optimizer}, lr {branch_lr:g})": branch_trace(config, steps=trace_steps, every=10, device=env.device),
        "AdamW for every weight (lr 0.001)": branch_trace(adamw_everywhere, steps=trace_steps, every=10, device=env.device),
    }
    columns = ["dead units", "saturated", "mean |score|", "within-map range"]
    trace_table = pd.concat({name: t[columns] for name, t in traces.items()}, axis=1)
    (ours, theirs) = (t.iloc[-1] for t in traces.values())
    units = int(ours["units"])
    print(f"after {trace_steps} steps, this run: {int(ours['dead units'])} of {units} units dead, "
          f"{ours['saturated']:.1%} of the attention values saturated, within-map range {ours['within-map range']:.3f}; "
          f"AdamW for every weight: {int(theirs['dead units'])} of {units} dead, {theirs['saturated']:.1%} saturated, "
          f"within-map range {theirs['within-map range']:.3f}")
    display(trace_table.style.format({c: "{:.1%}" for c in trace_table.columns if c[1] == "saturated"}
                                     | {c: "{:.3f}" for c in trace_table.columns if c[1] in ("mean |score|", "within-map range")}))
else:
    print(f"branch_trace looks inside att1; this run's branch is {config.attention}")

# %% [markdown]
# Read the right-hand side down the rows. The dead units and the size of the scores climb within
# the first handful of steps, and once most values are saturated, the maps are the same at every
# position (a within-map range near 0): such a branch weighs every position alike and has
# stopped doing anything, and no later step brings it back. On the left, the branch's units stay
# alive and its maps keep varying, as they start. Whole runs tell the same story: the
# performance page's table "The attention branch's optimizer and rate" trains the fast recipe to
# the end with six optimizers and rates of the branch (`benchmarks/attention_optimizer.py`) and
# measures each run's test AUC, its dead units, its saturated values and the constant-attention
# check of chapter 9. AdamW at the network's rate, or at a tenth of it, leaves most values
# saturated; at a hundredth it only slows the same drift. SGD at the paper's rate keeps the maps
# alive and gives the largest effect of the attention's places. The table also shows that the
# loss itself pulls the maps towards 0, more slowly than AdamW does: SGD at ten times the
# paper's rate leaves almost no unit dead but most values near 0. So the branch learns at the paper's
# rate, which is the one of the six that keeps the maps varying and matters most.
#
# ## The run folder
# Everything a run produces lives in its folder, and nothing else is needed to continue it,
# evaluate it or compare it:
#
# - `config.yaml`: the `TrainConfig`, written before the first step (`TrainConfig.load` reads it);
# - `metrics.jsonl`: one JSON line per epoch, rewritten atomically after each epoch;
# - `checkpoints/last.pt`: the latest state, every epoch (and every `checkpoint_every_steps`
#   steps when asked);
# - `checkpoints/best.pt`: a copy of the state of the epoch with the best validation mean AUC;
# - after chapter 7 (`cral evaluate`): the predictions and the AUC tables of the test split.

# %%
for path in sorted(p for p in result.run_dir.rglob("*") if p.is_file()):
    print(f"{path.stat().st_size / 2**20:8.2f} MiB  {path.relative_to(result.run_dir)}")
print()
print((result.run_dir / "config.yaml").read_text())

# %% [markdown]
# A checkpoint is a dictionary of `state_dict`s and plain values, never a pickled object, so it
# loads with `torch.load(..., weights_only=True)` (which cannot run code hidden in a file) and
# survives library upgrades. The model's weights are stored without the `module.` prefix that
# DistributedDataParallel adds or the `_orig_mod.` prefix of `torch.compile`, so a checkpoint
# from several GPUs loads on one CPU. Besides the model, it holds everything needed to continue
# exactly: the optimizer's momentum buffers, the scheduler, the gradient scaler, the random
# generators' states, where the run stands (epoch, batch, step), the config, a fingerprint of
# the dataset and the metrics so far.

# %%
state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
summary = {k: v for k, v in state.items() if isinstance(v, (int, float, str, type(None)))}
summary["model tensors"] = len(state["model"])
summary["model parameters"] = int(sum(t.numel() for t in state["model"].values() if t.is_floating_point()))
pd.Series(summary, name="checkpoints/last.pt").to_frame()

# %% [markdown]
# ### Atomic writes
# A checkpoint is first written to a temporary file in the same folder, flushed to the disk
# (`fsync`), and then renamed over the old one with `os.replace`. A rename within a file system
# is atomic: whoever opens `last.pt` sees the old file or the new one, never half of one, even
# if the process is killed or the machine loses power in the middle of the write. `best.pt`
# and `metrics.jsonl` are written the same way.
#
# ### Resuming
# `train(config, resume="auto")` on a folder that holds `checkpoints/last.pt` loads it and
# continues at the exact batch where it stopped. The shuffling of every epoch and the random
# crops of every batch depend only on (seed, epoch, batch), and the generators' states travel in
# the checkpoint, so an interrupted and resumed run repeats the uninterrupted one batch for
# batch (the library's tests kill a training process and check this). Calling it again on this
# finished run returns at once:

# %%
t0 = time.perf_counter()
again = train(config, resume="auto", progress=False)
print(f"returned in {time.perf_counter() - t0:.1f} s; best epoch {again.best_epoch}, "
      f"best validation mean AUC {again.best_val_auc:.4f}")

# %% [markdown]
# **On Colab**, a runtime that disconnects (idle time-out, a closed laptop, the session's time
# limit) loses the Python process. Re-run the training cell, after the set-up cells: it finds
# `last.pt` and resumes where the run stood. By default `last.pt` is written after every epoch,
# so at most one epoch is lost; with `checkpoint_every_steps=200` (about a sixth of an epoch of
# the paper's recipe) it is also written every 200 steps and the run resumes at the batch it
# reached. When the virtual machine itself is recycled, its disk goes too: keep `runs_dir` on
# Google Drive (see below) so that the checkpoints outlive the machine.
#
# The number of epochs may change on resume (to extend a finished run), and so may where and how
# the run executes: the data and cache folders, the device, `compile`, logging and checkpoint
# frequency. Nothing else may. A checkpoint made with another config, or on another dataset
# or split (the fingerprint hashes the names and labels of the training and validation images),
# is refused with a message that names the difference and the way out, instead of silently
# mixing two runs. Here is the refusal, for a learning rate changed after the fact:

# %%
try:
    train(config.replace(lr=config.lr * 10), resume="auto", progress=False)
except CheckpointError as err:
    print(f"CheckpointError: {err}")

# %% [markdown]
# With `resume=False` (the default of `cral train` without `--resume`), a folder that already
# holds a run is refused too: a run is never overwritten by accident.
#
# ## Going faster on GPUs
# The same `train` call uses the tools that make the full recipe fit in hours rather than days.
# They are switched by config fields, never by editing the loop.
#
# - **Mixed precision** (`amp`). Under `torch.autocast`, convolutions and matrix products run in
#   16-bit floats on the tensor cores, and the weights, the loss and the optimizer stay in 32
#   bits {cite}`micikevicius2018mixed`. `amp="auto"` picks bfloat16 on GPUs that compute in it
#   natively (Ampere and newer: A100, L4, H100): it has float32's range, so nothing else changes.
#   Older GPUs (Colab's T4, a V100) only emulate bfloat16, slowly, so they get float16,
#   whose small range can flush small gradients to zero; a gradient scaler multiplies the loss
#   before the backward pass and divides the gradients before the step, skipping steps whose
#   gradients overflowed. On a CPU, `auto` means full precision. The loss of Eq. 10 is always
#   computed in float32 from the logits.
# - **Channels-last** memory layout (`channels_last`, default: on GPUs). Stored as
#   $N \times H \times W \times C$, convolutions on tensor cores skip a transposition on every
#   layer; the batched augmentation produces that layout directly.
# - **`torch.compile`** (`compile=True`). PyTorch 2 traces the model and fuses its small
#   operations (batch norm, ReLU, the attention's sigmoid and the head's weighting) into fewer
#   kernels. The first steps are slow while it compiles; the saved weights carry no trace of it.
# - **Several GPUs** with `torchrun`: the same command, started once per GPU,
#
#   ```bash
#   torchrun --nproc_per_node=4 -m cral_lib train --data DATA
#   ```
#
#   Each process takes its own shard of every epoch; `batch_size` is the global batch (64 is
#   16 per GPU on 4 GPUs), and DistributedDataParallel averages the gradients, so the optimizer
#   takes the same steps as on one GPU and the paper's learning rate still applies (a larger
#   global batch would call for a larger rate {cite}`goyal2017accurate`). Batch-norm statistics
#   are computed per GPU, over 16 images each. Only the first process writes files; the
#   validation predictions of all processes are gathered before the AUC is computed, so it is
#   that of the whole split. Add `--nnodes`, `--node_rank` and `--rdzv_endpoint` for several
#   machines.
#
# What this run used:

# %%
amp_dtype, scaler = amp_settings(config.amp, dev)
pd.Series({
    "device": str(dev),
    "autocast dtype": str(amp_dtype) if amp_dtype is not None else "none (float32)",
    "gradient scaler": scaler,
    "channels_last": config.channels_last if config.channels_last is not None else dev.type == "cuda",
    "torch.compile": config.compile,
}, name="this run").to_frame()

# %% [markdown]
# ## Full scale
# To train the paper's model, run this notebook with these parameters (on a GPU, with a real
# ChestX-ray14 release in `data_dir` or `CRAL_DATA_DIR`):
#
# ```python
# recipe = "paper"             # Section 4.2: ImageNet weights, SGD, 224 px crops of 256 px, batch 64, 30 epochs
# backbone = None              # the recipe's "resnet50"; or "densenet121"
# attention = "att1"           # or "att2"
# amp, compile = "auto", True
# checkpoint_every_steps = 200
# ```
#
# or, in a terminal, `cral train --data DATA --compile --checkpoint-every-steps 200`: every
# default of `cral train` is the paper's. Without `--out`, `cral train` writes into
# `runs/NAME`, and NAME is the one `env.run_dir` gives the same config here
# (`resnet50_att1_cral_224px-` and the recipe's hash); chapters 7, 9 and 10 run with the same
# parameters build the same config and find the run.
#
# ### On Colab
# Choose a GPU runtime (Runtime > Change runtime type). Without further steps the notebook uses
# the synthetic dataset, made on first use. For the real data, download ChestX-ray14 onto the
# runtime's local disk, straight into the image cache:
#
# ```bash
# !cral download --out /content/chestxray14 --cache-only
# ```
#
# NIH publishes the 112,120 images as 12 archives, about 42 GB in all. `--cache-only` decodes
# each archive while it downloads, writes the images resized to 256 pixels into the uint8 cache
# (about 7.3 GB), writes no PNG and deletes each archive once its images are in: the disk needed
# at the peak is the cache plus one archive, about 12 GB, which fits a Colab runtime. An
# interrupted download resumes when the same command runs again. The official split lists
# (`train_val_list.txt`, `test_list.txt`) are not in the archives; `cral download --help` says
# where to get them. Then set `data_dir = "/content/chestxray14"`. Since no PNG is kept, only
# the 256-pixel cache exists: keep `cache_size = 256`.
#
# A new Colab session starts from an empty disk. To avoid downloading again, keep a copy of the
# release folder (the CSV files, the split lists and `cache/256`) on Google Drive and copy it to
# `/content` at the start of each session: copying 7.3 GB from Drive is much quicker than
# downloading and decoding 42 GB again. Training straight from the copy on Drive also works but reads
# every image over the network, epoch after epoch. Put `runs_dir` on Drive
# (`runs_dir = "/content/drive/MyDrive/cral/runs"`) so that checkpoints survive the end of a
# session and the training cell resumes in the next one.
#
# ## Summary
# - `TrainConfig`'s defaults are the paper's recipe; a config states where it departs from it,
#   and the table above shows every departure of the fast mode.
# - `train(config, resume="auto")` trains, or resumes, or returns a finished run; the run
#   folder holds the config, the metrics log and atomic checkpoints (`last.pt`, `best.pt`).
# - A checkpoint resumes only the run it belongs to: same config, same data.
# - Mixed precision, channels-last, `torch.compile` and `torchrun` are config fields and a
#   launcher, not code changes.
#
# Chapter 7 evaluates this run on the test split: per-class AUC beside the paper's Table 1, ROC
# curves and bootstrap confidence intervals.
