# %% [markdown]
# # Using a trained model
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cral-book/cral-book/blob/main/notebooks/11_using_a_model.ipynb)
#
# The chapters so far judged a model on its own test split. This one uses it: on an image
# file it has never seen, as a reader would with a radiograph found elsewhere, and as a model
# file handed to a colleague. Four questions come up each time someone does so, and the
# chapter answers each with the run of chapter 6:
#
# 1. *How do I run it on one image?* `cral predict` (and `cral_lib.Predictor` in Python) reads
#    PNG, JPEG and DICOM files and feeds the network exactly what the run's own images went
#    through: the cache's grey conversion and resize, then the run's test transform.
# 2. *Which threshold turns a probability into a finding?* Not 0.5: one threshold per class,
#    chosen on the validation split by `cral evaluate`, whose sensitivity and specificity the
#    test split then measures, with intervals.
# 3. *How do I read the heatmap?* One picture per finding called: its attention map and its
#    class activation map over the part of the image the network saw.
# 4. *Why does it flag a normal film?* Because fourteen thresholds each let some normal films
#    through; the test split says how many.
#
# You will learn how a model file that others can load is made (`cral export`), why a
# threshold of 0.5 misses rare findings, how sensitivity and specificity at a chosen threshold
# are measured and how sure they are, how DICOM pixels become the grey image the network
# expects, and what to check before trusting a prediction on a new image.

# %% [markdown]
# ## Setup environment
# On Colab this installs `cral_lib` with the DICOM reader; elsewhere it does nothing (the package is already installed).

# %% tags=["remove-output"]
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("cral_lib") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "cral-lib[book,dicom] @ git+https://github.com/cral-book/cral-book"])

# %% [markdown]
# ## Setup imports

# %%
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import cral_lib
from cral_lib import CLASSES, book
from cral_lib.data import ChestXray14
from cral_lib.data.dicom import open_dicom_grey, write_dicom
from cral_lib.data.images import open_grey
from cral_lib.inference import Predictor, export_model
from cral_lib.inference.figures import draw_explanation
from cral_lib.metrics import ABBREVIATIONS, operating_points
from cral_lib.train import evaluate_run, train

cral_lib.print_config()

# %% [markdown]
# ## Parameters
# The training parameters are chapter 6's, with the same defaults (the book's fast mode; a knob
# left at `None` takes the recipe's value, and the comments give the paper's): the same values
# give the same config and the same run folder, so this chapter uses chapter 6's model. Run on
# its own, it trains that run first. papermill overrides any value with `-p name value`.

# %% tags=["parameters"]
data_dir = ""          # a ChestX-ray14 release folder; "" means $CRAL_DATA_DIR, else the synthetic dataset
runs_dir = ""          # where runs are written; "" means $CRAL_RUNS_DIR, else "runs"
device = "auto"        # "auto", "cpu", "cuda"
recipe = "fast"        # "fast": the book's fast mode; full scale: "paper" (Section 4.2)
seed = 0               # seed of the training run, of the bootstrap and of the example images
backbone = None        # None: the recipe's; the paper: "resnet50" (or "densenet121")
attention = "att1"     # "att1" or "att2"
variant = "cral"       # "cral", or an ablation of chapter 8
weights = None         # None: the recipe's; the paper: "imagenet"
image_size = None      # the paper: 224
cache_size = None      # the paper: 256
batch_size = None      # the paper: 64
epochs = None          # the paper: 30
amp = "auto"           # mixed precision on a GPU (see chapter 6)
threshold_rule = "youden"  # how thresholds are chosen on validation: "youden" or "sensitivity:0.9"
n_boot = 1000          # bootstrap resamples of the AUC intervals
n_examples = 4         # test images predicted from their files
work_dir = "using_a_model"  # where this chapter writes its model file, images and predictions

# %%
env = book.setup(data_dir, runs_dir=runs_dir, device=device)
data_dir, dev = env.data_dir, env.device
work = Path(work_dir)
shutil.rmtree(work, ignore_errors=True)
work.mkdir(parents=True)

# %% [markdown]
# ## The run of chapter 6
# The config is built exactly as in chapter 6, by the same call, and names the same folder;
# `train(config, resume="auto")` returns the finished run at once.

# %%
config = env.recipe(recipe, seed=seed, backbone=backbone, attention=attention, variant=variant, weights=weights,
                    image_size=image_size, cache_size=cache_size, batch_size=batch_size, epochs=epochs, amp=amp)
run = train(config, resume="auto", progress=True)
print(f"{run.run_dir}: {config.backbone} + {config.attention}, {config.image_size} px crops of "
      f"{config.cache_size} px images; best validation mean AUC {run.best_val_auc:.3f} at epoch {run.best_epoch}")

# %% [markdown]
# ## From probabilities to findings: thresholds chosen on validation
# The network gives 14 probabilities. A finding is *called* when its probability reaches a
# threshold, and the threshold must be chosen on images that the reported numbers do not come
# from: `evaluate_run` (`cral evaluate`) predicts the **validation** split as well as the split
# it evaluates, and chooses, for each class, the threshold $t$ that maximizes Youden's {cite}`youden1950index`
# $J = \text{sensitivity} + \text{specificity} - 1$ on the validation images, over every
# probability that occurs there (a finding is called when $p \ge t$; among equal $J$ the highest
# $t$ wins). A class with no positive validation image gets no threshold and is never called.
# The thresholds go into the run folder (`thresholds.json`), where `cral predict` and
# `cral export` find them. With `threshold_rule = "sensitivity:0.9"` the rule becomes the highest
# threshold that finds 90% of the validation positives instead.
#
# ```bash
# cral evaluate --run RUN --thresholds youden      # RUN: the run folder printed above
# ```

# %%
ev = evaluate_run(run.run_dir, split="test", device=str(dev), n_boot=n_boot, seed=seed, threshold_rule=threshold_rule)
print(f"thresholds chosen on the validation split by {threshold_rule!r}; measured on {len(ev.labels)} test images")
ev.thresholds.rename(columns={"sensitivity": "val sensitivity", "specificity": "val specificity",
                              "positives": "val positives"}).drop(columns="negatives").round(3)

# %% [markdown]
# ### Why not 0.5
# A model trained with the binary cross-entropy of Eq. 10 learns probabilities that match how
# often a finding occurs: for a finding present in a few percent of the images, most of its
# probabilities sit near those few percent, and even its positives rarely climb to 0.5. A
# threshold of 0.5 then calls the finding almost never, and its sensitivity is close to zero,
# however well the model ranks the images (its AUC). The table sets, for each class, the test
# split's sensitivity and specificity at 0.5 beside those at the threshold chosen on validation.

# %%
half = operating_points(ev.labels, ev.probs, np.full(len(CLASSES), 0.5), classes=list(CLASSES))
prevalence = pd.Series(ev.labels.mean(axis=0), index=list(CLASSES))
compare = pd.DataFrame({
    "test prevalence": prevalence,
    "sens @ 0.5": half["sensitivity"], "spec @ 0.5": half["specificity"],
    "threshold": ev.operating["threshold"],
    "sens @ threshold": ev.operating["sensitivity"], "spec @ threshold": ev.operating["specificity"],
}).sort_values("test prevalence")
n_zero = int((half["tp"] == 0).sum())
print(f"at 0.5, {n_zero} of {len(CLASSES)} classes find none of their positive test images; "
      f"the median threshold chosen on validation is {np.nanmedian(ev.operating['threshold']):.3f}")
compare.round(3)

# %% [markdown]
# The figure shows why for the rarest and the most common class that have a threshold: the
# probabilities of their positive and negative test images, the chosen threshold and 0.5.

# %%
with_threshold = ev.operating.index[ev.operating["threshold"].notna() & (ev.operating["tp"] + ev.operating["fn"] > 0)]
rare = prevalence[with_threshold].idxmin()
common = prevalence[with_threshold].idxmax()
print(f"rarest class with a threshold: {rare} ({prevalence[rare]:.1%} of the test images); "
      f"most common: {common} ({prevalence[common]:.1%})")

# %% mystnb={"figure": {"caption": "Test probabilities of the positive (red) and negative (grey) images of the rarest and the most common class that have a threshold, with the threshold chosen on the validation split (solid) and 0.5 (dashed): a model trained with the cross-entropy keeps the probabilities of a finding near its frequency, positives included, so 0.5 lies beyond most of them.", "name": "fig-11-why-not-half"}}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for ax, name in zip(axes, (rare, common)):
    k = list(CLASSES).index(name)
    p, y = ev.probs[:, k], ev.labels[:, k] == 1
    bins = np.linspace(0, max(0.55, p.max()), 40)
    ax.hist(p[~y], bins=bins, color="#9a9a9a", density=True, label=f"negatives ({(~y).sum()})")
    ax.hist(p[y], bins=bins, color="#c0392b", alpha=0.7, density=True, label=f"positives ({y.sum()})")
    ax.axvline(ev.operating.loc[name, "threshold"], color="black", lw=1.5, label="chosen threshold")
    ax.axvline(0.5, color="black", ls="--", lw=1, label="0.5")
    ax.set_title(f"{name} ({prevalence[name]:.1%} of test images)", fontsize=10)
    ax.set_xlabel("predicted probability")
    ax.legend(fontsize=7)
axes[0].set_ylabel("density")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Sensitivity and specificity on the test split, with intervals
# At the thresholds chosen on validation, the test split measures what a user would get:
# the sensitivity (the share of positive images called positive) and the specificity (the share
# of negative images not called). Both are proportions of counts, so their 95% intervals are
# Wilson score intervals {cite}`wilson1927probable` of those counts; with a handful of positives,
# a sensitivity interval spans much of the range. The positive predictive value (PPV), the
# share of calls that are right, comes last: chapter 7 showed how it falls with prevalence.

# %%
op = ev.operating
shown = op[["threshold", "tp", "fn", "sensitivity", "sens_lo", "sens_hi", "tn", "fp", "specificity", "spec_lo",
            "spec_hi", "ppv"]]
shown.round(3)

# %% [markdown]
# A threshold is itself an estimate. Youden's $J$ puts it where the validation positives of its
# class separate from the negatives, and when a class has only a handful of validation positives
# (the count is in the first table), another validation sample of the same size would put it
# elsewhere: the test split then finds a sensitivity or a specificity far from the validation
# one. The cell lists the classes whose threshold rests on fewer than five validation positives;
# on the real dataset, with hundreds of validation positives for most classes, the thresholds are
# far steadier.

# %%
few = ev.thresholds[(ev.thresholds["positives"] < 5) & ev.thresholds["threshold"].notna()]
print(f"{len(few)} classes with a threshold resting on fewer than 5 validation positives:",
      ", ".join(f"{c} ({int(n)})" for c, n in few["positives"].items()) or "none")

# %% mystnb={"figure": {"caption": "Sensitivity (left) and specificity (right) of each class on the test split at the threshold chosen on the validation split, with 95% Wilson intervals; classes without a threshold or without positive test images are left out of the sensitivity panel.", "name": "fig-11-sens-spec"}}
fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
rows = op[op["threshold"].notna()]
ypos = np.arange(len(rows))
for ax, (name, lo, hi) in zip(axes, (("sensitivity", "sens_lo", "sens_hi"), ("specificity", "spec_lo", "spec_hi"))):
    ok = rows[name].notna().to_numpy()
    ax.errorbar(rows[name][ok], ypos[ok], xerr=[(rows[name] - rows[lo])[ok], (rows[hi] - rows[name])[ok]],
                fmt="o", color="black", capsize=2, ms=4)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"test {name} (95% CI)")
    ax.grid(axis="x", alpha=0.3)
axes[0].set_yticks(ypos, [f"{ABBREVIATIONS[c]} ({int(rows.loc[c, 'tp'] + rows.loc[c, 'fn'])})" for c in rows.index],
                   fontsize=8)
axes[0].set_ylabel("class (positive test images)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Why it flags a normal film
# A film without any finding is judged by all fourteen thresholds at once, and each one lets
# through a share of negatives equal to one minus its specificity. Even with good specificities
# the shares add up: if the fourteen calls were independent, a normal film would escape every
# one of them with probability $\prod_c \text{specificity}_c$. The test split's normal images
# say what happens.

# %%
normal = ev.normal
spec = op.loc[op["threshold"].notna(), "specificity"].dropna()
print(f"{normal['normal_images']} test images have no finding; {normal['flagged']} of them "
      f"({normal['flagged_share']:.1%}, 95% CI {normal['flagged_lo']:.1%}-{normal['flagged_hi']:.1%}) get at least "
      f"one finding called, {normal['findings_per_normal']:.2f} findings per normal image on average")
print(f"if the {len(spec)} calls were independent: {1 - spec.prod():.1%} of normal images flagged "
      f"(1 - the product of the test specificities)")

# %% [markdown]
# The product is a guide, not a law: the calls are correlated (an image that looks unusual to
# the network tends to get several at once), so the measured share can lie on either side of it.
# Either way, a false positive on a normal film is not a malfunction but the price of fourteen
# thresholds, each set for sensitivity on its own class. To flag fewer normal films, raise the thresholds
# (for example a rule reaching a lower sensitivity), and pay for it in missed findings; the table
# above gives both sides for every class.
#
# ## A model file that others can load
# `cral export` (here `export_model`) writes one file with the network's weights, its config, the
# class list, the thresholds, the preprocessing and the training images' grey-level range. It is
# plain data saved with `torch.save`, so `torch.load(path, weights_only=True)` reads it without
# running any code from the file, and `Predictor.from_file` rebuilds the network from the config
# with `cral_lib.models.build_model`: the training code is not needed. (No TorchScript or
# `torch.export` program is written.)
#
# ```bash
# cral export --run RUN --out model.pt
# ```

# %%
model_file = export_model(run.run_dir, work / "model.pt")
content = torch.load(model_file, weights_only=True)
print(f"{model_file}: {model_file.stat().st_size / 2**20:.1f} MiB; entries: {', '.join(content)}")
content["preprocessing"]

# %%
predictor = Predictor.from_file(model_file, device=dev)
print(predictor)
print("thresholds as stored:", {ABBREVIATIONS[c]: round(float(t), 3) for c, t in zip(CLASSES, predictor.thresholds)})

# %% [markdown]
# ## Predicting image files
# The predictor reads files the way the run's own images were read. A few test PNGs of the
# release, drawn at random (`n_examples - 1` with a finding, and one normal), go through `predict`, which returns
# one row per image: the 14 probabilities, the findings called, and an error column for files it
# refused. Since these images are also in the test split, their probabilities must be the ones
# `evaluate_run` stored, up to the rounding of the precision the model runs in (bfloat16 on a CPU
# that computes it natively, as training did): the cell checks it.

# %%
test = ChestXray14(data_dir, split="test", val_fraction=config.val_fraction, seed=config.seed)
rng = np.random.default_rng(seed)
sick = np.flatnonzero(test.labels.sum(axis=1) > 0)
healthy = np.flatnonzero(test.labels.sum(axis=1) == 0)
picked = list(rng.choice(sick, size=min(n_examples - 1, len(sick)), replace=False)) + [int(rng.choice(healthy))]
files = [Path(test.frame["path"].iloc[i]) for i in picked]
pred = predictor.predict(files)
stored = ev.predictions.set_index("Image Index").loc[[f.name for f in files], [f"prob_{c}" for c in CLASSES]]
diff = np.abs(pred[list(CLASSES)].to_numpy() - stored.to_numpy()).max()
# the same numbers up to rounding: float32 agrees to about 1e-6; bfloat16 (8 bits of mantissa) to a
# few thousandths, since a batch of other images takes other kernels and sums in another order
tolerance = 1e-4 if predictor.amp_dtype is None else 1e-2
print(f"largest difference from the probabilities evaluate_run stored: {diff:.2e} "
      f"(computed in {'float32' if predictor.amp_dtype is None else str(predictor.amp_dtype).replace('torch.', '')}; "
      f"allowed: {tolerance:g})")
assert diff < tolerance

# %%
truth = [";".join(c for c, v in zip(CLASSES, test.labels[i]) if v) or "No Finding" for i in picked]
pd.set_option("display.max_colwidth", 200)  # the findings called can be a long list
pd.DataFrame({"image": [f.name for f in files], "true findings": truth,
              "findings called": [s or "none" for s in pred["findings"]]})

# %% [markdown]
# ## A DICOM file
# Radiographs from a hospital come as DICOM. `cral_lib.data.dicom.open_dicom_grey` turns one into
# the same 8-bit grey image a PNG gives: the stored values pass the modality LUT (rescale slope
# and intercept), then the VOI transform when the file has one (a VOI LUT, or a window centre and
# width), else they are scaled by their bit depth as a 16-bit PNG is; `MONOCHROME1` files, whose
# 0 is white, are inverted. Here the first example is written on the fly as a 12-bit
# `MONOCHROME1` DICOM file (`write_dicom`, uncompressed) and predicted again: the grey image read
# back is the PNG's, and so are the probabilities. A copy marked as a lateral film
# (`ViewPosition` LL) is refused with its reason, since the model has only seen frontal films.

# %%
png_grey = np.asarray(open_grey(files[0]))
dcm = write_dicom(work / "example.dcm", png_grey, bits=12, photometric="MONOCHROME1")
lateral = write_dicom(work / "lateral.dcm", png_grey, view="LL")
read_back, tags = open_dicom_grey(dcm)
print(f"{dcm.name}: {tags}; read back equal to the PNG: {np.array_equal(np.asarray(read_back), png_grey)}")
on_dicom = predictor.predict([dcm, lateral])
print(f"largest difference DICOM vs PNG: {np.abs(on_dicom.loc[0, list(CLASSES)] - pred.loc[0, list(CLASSES)]).max():.2e}")
on_dicom[["image", "findings", "error"]]

# %% [markdown]
# ## Reading the heatmaps
# `explain(image, finding)` runs the network once more and returns the finding's maps: its
# attention map $a^c$ (Eq. 3, between 0 and 1, shown on that fixed scale) and its class
# activation map (the classifier's weights applied to the weighed features, whose mean plus the
# bias is the logit), over the window of the image the network's input shows (the test
# transform's centre crop; chapter 9). The attention map says where the network looks for the
# finding; the CAM says where the evidence that raised its probability lies. Neither is a
# segmentation: the cell below prints how many cells a map has, and each cell covers that share of
# the window (a large one on the fast mode's small input).

# %%
explained = [(f, c) for f, s in zip(files, pred["findings"]) for c in s.split(";") if c][:2]
if not explained:  # no finding called on these images: explain the most probable one of the first
    explained = [(files[0], pred.loc[0, list(CLASSES)].astype(float).idxmax())]
explanations = [predictor.explain(f, c) for f, c in explained]
for e in explanations:
    print(f"{Path(e.name).name}: {e.finding} p = {e.probability:.3f}, threshold {e.threshold:.3f}, "
          f"called: {e.called}; map {e.cam.shape[0]} x {e.cam.shape[1]} cells")

# %% mystnb={"figure": {"caption": "The maps behind findings called on test images: the attention map of the finding (left, on a fixed 0-1 scale) and its class activation map (right, scaled to its own range), over the window of the image that the network saw; the title gives the probability and the threshold it passed. These are the PNGs that `cral predict --heatmaps` writes.", "name": "fig-11-heatmaps"}}
fig = plt.figure(figsize=(9, 4.4 * len(explanations)), layout="constrained")
for sub, e in zip(np.atleast_1d(fig.subfigures(len(explanations), 1)), explanations):
    draw_explanation(e, fig=sub)
plt.show()

# %% [markdown]
# ## The command line
# `cral predict` does all of the above for files and folders: a folder is searched for PNG, JPEG
# and DICOM files, each bad file is reported on one line with its reason while the others are
# predicted, `predictions.csv` gets one row per image, and `--heatmaps` writes one PNG per
# finding called. The folder below holds the example images, the DICOM files, and a text file
# named like an image.

# %%
folder = work / "my_images"
folder.mkdir()
for f in files:
    shutil.copy(f, folder / f.name)
shutil.copy(dcm, folder / dcm.name)
shutil.copy(lateral, folder / lateral.name)
(folder / "notes.png").write_text("not an image\n")
cmd = [sys.executable, "-m", "cral_lib", "predict", "--model", str(model_file), str(folder),
       "--out", str(work / "out"), "--heatmaps", "--device", str(dev), "--no-progress"]
print("$ cral predict --model", model_file, folder, "--out", work / "out", "--heatmaps")
done = subprocess.run(cmd, capture_output=True, text=True)
print(done.stdout + done.stderr)
print("exit status:", done.returncode, "(1: some files were reported)")
print(sorted(p.name for p in (work / "out" / "heatmaps").glob("*.png")))

# %% [markdown]
# ## Before trusting a prediction
# The predictor refuses what it can cheaply see it cannot judge: files that are not images,
# unreadable DICOM files, lateral films (from the DICOM `ViewPosition` tag; a PNG does not say),
# nearly constant images, and images whose mean grey level lies far outside that of the training
# images (an inverted or unwindowed film). What it cannot see is the rest: another hospital's
# scanner, a child, a film with tubes and lines, a finding the labels never had. A model trained on
# the synthetic phantoms of this book knows nothing about real radiographs, and even one trained on
# ChestX-ray14 is a research model whose labels were mined from reports: its calls are a
# description of what it learned, not a diagnosis.
#
# ## Summary
# - `cral evaluate` chooses one threshold per class on the validation split (Youden's J by
#   default) and stores it in the run; the test split gives each class's sensitivity and
#   specificity at it, with Wilson intervals.
# - 0.5 is the wrong threshold for a rare finding: its probabilities, positives included, stay
#   near its prevalence.
# - A normal film is judged by fourteen thresholds; the test split measures the share of normal
#   films flagged, which one minus the product of the specificities estimates for independent calls.
# - `cral export` writes a `weights_only` file with everything inference needs;
#   `Predictor.from_file` and `cral predict --model` load it without the training code.
# - `cral predict` and `Predictor.predict` read PNG, JPEG and DICOM through the run's own
#   preprocessing, so a test image gets the probabilities `cral evaluate` stored; `explain` and
#   `--heatmaps` show the maps behind each finding called.
