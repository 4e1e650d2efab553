# %% [markdown]
# # Evaluation
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cral-book/cral-book/blob/main/notebooks/07_evaluation.ipynb)
#
# The paper measures each of the 14 findings by the area under its ROC curve (AUC) on the
# official test split of ChestX-ray14, and reports the per-class values and their mean in
# Table 1 and the curves in Fig. 4 {cite}`guan2020cral`. This chapter does the same for the run
# of chapter 6, with `cral_lib.train.evaluate_run`, the function behind `cral evaluate`: it
# predicts every test image with the run's best checkpoint and writes the predictions and the
# AUC tables into the run folder.
#
# A single number per class hides how much it would change on another test set of the same
# size. So the chapter adds what the paper's tables leave out: 95% bootstrap confidence
# intervals for every class and for the mean, drawn over patients rather than images, the
# number of positive test images behind each AUC, a mean that leaves out the classes with too
# few of them, and what AUC does and does not say about a rare finding. You will learn to read a
# per-class AUC table next to the paper's, what a ROC curve shows, how the percentile bootstrap
# works and why it must resample patients, why intervals widen as positives get rare, and why a
# good AUC can still mean that most positive predictions are wrong.

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

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import cral_lib
from cral_lib import CLASSES, book, viz
from cral_lib.data import nih_metadata
from cral_lib.metrics import (ABBREVIATIONS, MEAN_ALL, MEAN_COUNTED, MIN_POSITIVES, bootstrap_auc, format_table,
                              paper_comparison, paper_row)
from cral_lib.train import evaluate_run, train

cral_lib.print_config()

# %% [markdown]
# ## Parameters
# The training parameters are chapter 6's, with the same defaults (the book's fast mode; a knob
# left at `None` takes the recipe's value, and the comments give the paper's): the same values give
# the same config and the same run folder, so this chapter evaluates chapter 6's run. Run on its
# own, it trains that run first. papermill overrides any value with `-p name value`.

# %% tags=["parameters"]
data_dir = ""          # a ChestX-ray14 release folder; "" means $CRAL_DATA_DIR, else the synthetic dataset
runs_dir = ""          # where runs are written; "" means $CRAL_RUNS_DIR, else "runs"
device = "auto"        # "auto", "cpu", "cuda"
recipe = "fast"        # "fast": the book's fast mode; full scale: "paper" (Section 4.2)
seed = 0               # seed of the training run and of the bootstrap
backbone = None        # None: the recipe's; the paper: "resnet50" (or "densenet121")
attention = "att1"     # "att1" or "att2"
variant = "cral"       # "cral", or an ablation of chapter 8
weights = None         # None: the recipe's; the paper: "imagenet"
image_size = None      # the paper: 224
cache_size = None      # the paper: 256
batch_size = None      # the paper: 64
epochs = None          # the paper: 30
amp = "auto"           # mixed precision on a GPU (see chapter 6)
split = "test"         # the split to evaluate: the paper's official test split
which = "best"         # checkpoint: "best" (best validation mean AUC) or "last"
n_boot = 1000          # bootstrap resamples for the 95% confidence intervals

# %%
env = book.setup(data_dir, runs_dir=runs_dir, device=device)
data_dir, dev = env.data_dir, env.device

# %% [markdown]
# ## The run of chapter 6
# The config is built exactly as in chapter 6, by the same call, and `env.run_dir` names the same
# folder. `train(config, resume="auto")` returns the finished run at once (or trains it, when
# chapter 6 has not run with these parameters).

# %%
config = env.recipe(recipe, seed=seed, backbone=backbone, attention=attention, variant=variant, weights=weights,
                    image_size=image_size, cache_size=cache_size, batch_size=batch_size, epochs=epochs, amp=amp)
run = train(config, resume="auto", progress=True)
print(f"{run.run_dir}: best validation mean AUC {run.best_val_auc:.4f} at epoch {run.best_epoch}")

# %% [markdown]
# ## Predictions on the test split
# `evaluate_run` rebuilds the model from the checkpoint (`best.pt`: the epoch with the best
# validation mean AUC), applies the paper's test transform (resize, then the central crop of the
# training crop size), predicts every image of the split, and computes the AUC table with its
# bootstrap intervals. In a terminal:
#
# ```bash
# cral evaluate --run RUN            # RUN: the run folder printed above; --split test --checkpoint best
# ```

# %%
ev = evaluate_run(run.run_dir, split=split, which=which, device=str(dev), n_boot=n_boot, seed=seed)
print(f"{len(ev.predictions)} {split} images, {ev.predictions['Patient ID'].nunique()} patients")
ev.predictions.iloc[:5, :2].join(ev.predictions.filter(like="Cardiomegaly")).join(
    ev.predictions.filter(like="Effusion")).round(4)

# %% [markdown]
# Each row is one test image: its name and patient, the 14 labels (`label_*`, 0 or 1) and the 14
# predicted probabilities (`prob_*`, the sigmoid of the logits, Eq. 9); the cell shows two of
# the classes. These probabilities are all that the rest of the chapter uses. Every file that
# `evaluate_run` wrote is in the run folder:

# %%
for path in sorted(run.run_dir.glob(f"*_{split}.*")):
    print(f"{path.stat().st_size / 1024:8.1f} KiB  {path.name}")

# %% [markdown]
# - `predictions_test.csv`: the table above, for every image (what `cral compare` reads);
# - `auc_test.csv`: the per-class table of the next sections;
# - `auc_test.json`: the same with the checkpoint, its epoch and the number of images;
# - `table1_test.csv`: the run's row laid out like the paper's Table 1, under the paper's rows;
# - `operating_test.csv`: sensitivity, specificity and PPV at one threshold per class, chosen on
#   the validation split and kept in `thresholds.json` (chapter 11 explains them).

# %%
summary = json.loads((run.run_dir / f"auc_{split}.json").read_text())
{k: summary[k] for k in ("split", "checkpoint", "epoch", "n_images", "mean_auc")}

# %% [markdown]
# ## Per-class AUC beside the paper's Table 1
# The AUC of a class is the probability that the model scores a randomly chosen positive image
# of that class above a randomly chosen negative one (ties count one half), which is the
# Mann-Whitney statistic {cite}`hanley1982auc`. It needs no threshold, 0.5 is chance and 1 is a
# perfect ranking. The mean over the 14 classes is the paper's headline number.
#
# The table puts this run's AUCs beside the paper's CRAL row of the same attention branch
# (Table 1, quoted from the paper by `metrics.paper_row`; the paper reports ResNet-50 and
# DenseNet-121 only, so a fast-mode run is set beside the ResNet-50 row). On the synthetic
# phantoms the comparison shows only that the numbers are computed and laid out the same way:
# the images, the model size and the training time all differ.

# %%
paper_backbone = backbone if backbone in ("resnet50", "densenet121") else "resnet50"
paper_name = paper_row(paper_backbone, attention).name
comparison = paper_comparison(ev.auc, backbone=paper_backbone, attention=attention).rename(
    columns={"paper": paper_name}
)
comparison.insert(0, "test positives", ev.auc["n_pos"])
comparison.insert(1, "flag", ev.classes["flag"].reindex(comparison.index).fillna(""))
print(ev.classes.attrs["rule"])
comparison.round(3)

# %% [markdown]
# The same row, under every row of the paper's Table 1 (the paper's rows are its published
# numbers, with the reference numbers of its bibliography; `–` marks an undefined value):

# %%
format_table(ev.table1, highlight=None)

# %% [markdown]
# ## ROC curves (the paper's Fig. 4)
# A ROC curve follows one class as the decision threshold on its probability goes from 1 down
# to 0: each threshold calls some images positive, giving a true positive rate (sensitivity,
# the share of positive images called positive) and a false positive rate (1 - specificity, the
# share of negative images called positive). The curve of a useless model is the diagonal; the
# AUC is the area under the curve. A class without a positive test image has no curve and is
# listed as undefined.

# %% mystnb={"figure": {"caption": "ROC curves of the 14 classes on the test split, with each class's AUC in the legend (cf. the paper's Fig. 4); the dashed diagonal is chance, and a class without a positive test image is listed as undefined.", "name": "fig-07-roc"}}
fig = viz.plot_roc_curves(ev.roc, ev.auc, title=f"{backbone} + {attention}, {split} split")
plt.show()

# %% [markdown]
# A curve made of a few large steps belongs to a class with few positives: each positive image
# moves the true positive rate by $1/n_{pos}$.
#
# ## How sure is each number? Bootstrap confidence intervals
# The test split is one sample of images. Another sample of the same size, from the same
# population, would give other AUCs; the confidence interval says how far they would spread.
# AUC has no simple exact interval, so `evaluate_run` uses the percentile bootstrap
# {cite}`efron1986bootstrap`:
#
# 1. draw $G$ test *patients* with replacement from the $G$ patients of the test split (some
#    appear twice, some not at all), and take every image of each drawn patient, with its labels
#    and probabilities, as often as the patient was drawn;
# 2. compute every class's AUC and the mean on that resample;
# 3. repeat $B$ times ($B$ = `n_boot`); the 2.5th and 97.5th percentiles of the $B$ values are
#    the 95% interval.
#
# Why patients and not images: ChestX-ray14's images come in follow-up series, several films
# of one patient (the `Patient ID` column of the release's `Data_Entry_2017.csv`, which
# `evaluate_run` carries into the predictions), and a patient's films resemble each other more
# than two patients' do. Resampling images treats every film as independent evidence, so it
# counts a patient seen five times as five patients and gives intervals that are too narrow.
# A new test set would bring new patients, each with all of their films; the cluster bootstrap
# of step 1 imitates that (`bootstrap_auc(..., groups=patient_ids)`; `evaluate_run` passes the
# patient IDs by default). A resample in which a class has no positive image has no AUC for that
# class; it is skipped for that class and for the mean (the column `n_boot_skipped` counts
# them). The library computes the AUC of all resamples at once from the ranks
# (`metrics.rank_auc`), which takes seconds even for the real 25,596-image test split.

# %%
ci_cols = ["auc", "ci_low", "ci_high", "se", "n_pos", "n_neg", "n_boot_skipped", "note"]
ev.auc[ci_cols].round(3)

# %% mystnb={"figure": {"caption": "Per-class test AUC of this run with its 95% bootstrap interval (black), the mean last, and the paper's CRAL values of Table 1 (red crosses); a class without a positive test image is marked undefined.", "name": "fig-07-auc-ci"}}
fig = viz.plot_auc_ci(ev.auc, paper=paper_row(paper_backbone, attention), paper_label=f"{paper_name} (Table 1)")
plt.show()

# %% [markdown]
# The interval is read from the resamples themselves. `metrics.bootstrap_auc` returns them on
# request; with the same seed and the same patient IDs it draws the same resamples as
# `evaluate_run`, and the next cell checks that the percentiles of those samples are the
# interval of the table, then draws the distribution of the mean AUC.

# %%
patients = ev.predictions["Patient ID"].to_numpy()
table, samples = bootstrap_auc(ev.labels, ev.probs, n_boot=n_boot, seed=seed, return_samples=True, groups=patients)
torch.testing.assert_close(torch.tensor(table[["ci_low", "ci_high"]].to_numpy()),
                           torch.tensor(ev.auc[["ci_low", "ci_high"]].to_numpy()), equal_nan=True)
mean_samples = samples["Mean"].dropna()
lo, hi = np.percentile(mean_samples, [2.5, 97.5])
print(f"{len(mean_samples)} valid resamples of the mean; 2.5th and 97.5th percentiles: {lo:.4f}, {hi:.4f}")

# %% mystnb={"figure": {"caption": "The bootstrap distribution of the mean test AUC: one value per resample of the test images; the dashed lines are its 2.5th and 97.5th percentiles (the 95% interval) and the solid line the mean AUC on all test images.", "name": "fig-07-bootstrap"}}
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.hist(mean_samples, bins=40, color="#9a9a9a")
for x in (lo, hi):
    ax.axvline(x, color="black", ls="--", lw=1)
ax.axvline(ev.auc.loc["Mean", "auc"], color="black", lw=1.5)
ax.set_xlabel("mean AUC of a resample")
ax.set_ylabel("resamples")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Images or patients: the same run, two intervals
# The next cell draws the bootstrap of the same predictions twice, with the same seed: once
# over images (`groups=None`, what a per-image bootstrap gives) and once over patients. The
# table shows the mean and the classes with the most positives, the width of each interval,
# and how many times wider the patient-level one is; the line above it says how many images
# each test patient has.

# %%
by_image = bootstrap_auc(ev.labels, ev.probs, n_boot=n_boot, seed=seed)
films = pd.Series(patients).value_counts()
print(f"{len(patients)} test images of {len(films)} patients: {films.mean():.2f} images per patient on average, "
      f"{int((films > 1).sum())} patients with more than one, at most {int(films.max())}")
shown = ["Mean", *ev.auc.drop(index="Mean").sort_values("n_pos", ascending=False).index[:4]]
levels = pd.DataFrame({
    "AUC": ev.auc.loc[shown, "auc"],
    "test positives": ev.auc.loc[shown, "n_pos"],
    "images: ci_low": by_image.loc[shown, "ci_low"], "images: ci_high": by_image.loc[shown, "ci_high"],
    "patients: ci_low": table.loc[shown, "ci_low"], "patients: ci_high": table.loc[shown, "ci_high"],
})
levels["width ratio (patients / images)"] = ((levels["patients: ci_high"] - levels["patients: ci_low"])
                                             / (levels["images: ci_high"] - levels["images: ci_low"]))
levels.round(3)

# %% [markdown]
# When every patient has a single film, both bootstraps draw the same resamples and the ratio is
# 1 (the library guarantees it: one distinct ID per image gives exactly the per-image draws).
# The more films a patient has, and the more alike they are, the wider the patient-level
# interval; a class whose positives are spread over many patients widens less than one whose
# positives are a few patients' many films. Read the ratios above with the line on images per
# patient. The real test split holds long follow-up series too (some patients have dozens of
# films), where a per-image bootstrap overstates the precision in the same way. Every interval
# from here on, and in chapter 8, resamples patients.
#
# ## Rare classes: what AUC does and does not say
# ### Few positives, wide intervals
# An AUC compares positives with negatives, and its uncertainty is governed by the smaller of
# the two groups: the positives. Hanley and McNeil {cite}`hanley1982auc` gave an approximate
# standard error for an AUC $A$ estimated from $n_p$ positives and $n_n$ negatives,
#
# $$
# \mathrm{SE}(A) = \sqrt{\frac{A(1-A) + (n_p - 1)(Q_1 - A^2) + (n_n - 1)(Q_2 - A^2)}{n_p\, n_n}},
# \qquad Q_1 = \frac{A}{2 - A}, \quad Q_2 = \frac{2A^2}{1 + A},
# $$
#
# which shrinks roughly as $1/\sqrt{n_p}$ when negatives are plentiful. The figure plots the
# width of each class's bootstrap interval against its number of positive test images, with
# the width that formula predicts ($2 \times 1.96 \times \mathrm{SE}$, capped at 1) for this
# run's mean AUC.

# %%
def hanley_mcneil_se(auc, n_pos, n_neg):
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    return np.sqrt((auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg))


per_class = ev.auc.drop(index="Mean")
defined = per_class[per_class["defined"]].copy()
defined["ci width"] = defined["ci_high"] - defined["ci_low"]
undefined = per_class.index[~per_class["defined"]].tolist()
print("classes without an AUC on this split (reported as undefined, not dropped):", undefined or "none")
print("the mean is the", ev.auc.loc["Mean", "note"])

# %% mystnb={"figure": {"caption": "Width of each class's 95% bootstrap interval against its number of positive test images (log scale), with the width predicted by Hanley and McNeil's standard error for this run's mean AUC (line): the fewer the positives, the wider the interval.", "name": "fig-07-ci-width"}}
n_images = len(ev.labels)
mean_auc = ev.auc.loc["Mean", "auc"]
grid = np.unique(np.geomspace(1, max(2, defined["n_pos"].max()), 200).round())
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(grid, np.minimum(1, 2 * 1.96 * hanley_mcneil_se(mean_auc, grid, n_images - grid)), color="grey",
        label=f"Hanley-McNeil, AUC = {mean_auc:.2f}")
ax.scatter(defined["n_pos"].astype(float), defined["ci width"], color="black", zorder=3, label="bootstrap, per class")
for name, row in defined.iterrows():
    ax.annotate(ABBREVIATIONS[name], (float(row["n_pos"]), row["ci width"]), fontsize=7,
                xytext=(3, 3), textcoords="offset points")
ax.set_xscale("log")
ax.set_xlabel("positive test images")
ax.set_ylabel("width of the 95% interval")
ax.set_ylim(0, 1.05)
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The formula is a guide rather than a law (it assumes a particular shape of the two score
# distributions), but the trend it predicts is the one to expect: the interval of a class with a
# handful of positives spans a good part of the range, and it narrows as positives accumulate.
# When a class has only one or two positive images (the table above says whether any class of
# this split has), the bootstrap itself breaks down: a resample that
# contains the single positive ranks that same image against reshuffled negatives, so its AUC
# barely moves and the interval can look deceptively narrow, although the value rests on one
# image; the resamples that miss it cannot be scored at all and are skipped
# (`n_boot_skipped`, about $e^{-1} \approx 37\%$ of them for a single positive, and the mean
# AUC is then taken over the remaining resamples only). Neither the interval nor the AUC of such
# a class says anything about the finding. A class with no positive image at all has no AUC;
# the table and the figures keep it, marked undefined, and the mean says over how many classes
# it was taken, so that it is not silently compared with the paper's 14-class mean.
#
# ### The book's rule: a minimum of test positives
# So the book states a minimum, `metrics.MIN_POSITIVES` positive test images, and applies it in
# every per-class table (`metrics.class_table`, which `evaluate_run` returns as `ev.classes`): a
# class under it is flagged with `*` and left out of the mean, and the mean of every class with
# an AUC, as the paper takes it, stays beside it for comparison, marked as such. The rule is
# printed under the table. The interval of the counted mean comes from the same patient
# resamples as the others.

# %%
print(f"minimum: {MIN_POSITIVES} positive test images")
print(ev.classes.attrs["rule"])
ev.classes[["auc", "ci_low", "ci_high", "n_pos", "flag", "note"]].round(3)

# %%
in_paper_mean = [c for c in ev.classes.attrs["flagged"] if pd.notna(ev.classes.loc[c, "auc"])]
print(f"{MEAN_COUNTED}: {ev.classes.loc[MEAN_COUNTED, 'auc']:.3f} over {len(ev.classes.attrs['counted'])} classes; "
      f"{MEAN_ALL}: {ev.classes.loc[MEAN_ALL, 'auc']:.3f} (marked: it includes the flagged classes "
      f"{', '.join(in_paper_mean) or 'none'})")

# %% [markdown]
# The real test split has 25,596 images, so the counts there are far larger (the table of the next
# section gives, for each class, the positives expected in that many images at the class's
# prevalence in the whole dataset), and the intervals correspondingly narrower; the full-scale
# run of this chapter shows them.
#
# ### AUC ignores prevalence; the predictive value does not
# AUC is computed within each class from sensitivities and specificities, which do not depend
# on how common the finding is. What a reader of a positive prediction wants to know is the
# positive predictive value, the share of images called positive that truly are:
#
# $$
# \mathrm{PPV} = \frac{\text{sensitivity} \cdot p}{\text{sensitivity} \cdot p + (1 - \text{specificity})(1 - p)},
# $$
#
# where $p$ is the prevalence. With the same ROC curve, the same AUC and the same threshold, a
# rarer finding has a lower PPV, because the few true positives are outnumbered by false
# positives drawn from the many negatives. The table takes, for each class, the threshold at
# which this run finds 80% of the positive test images, reads the specificity there from the
# ROC curve, and computes the PPV at the class's prevalence in the real ChestX-ray14 (all
# 112,120 images, from the metadata that `cral_lib.data.nih_metadata` reads).

# %%
meta = nih_metadata()
findings = meta["Finding Labels"].str.get_dummies(sep="|")
real_prevalence = findings.reindex(columns=list(CLASSES), fill_value=0).mean()

rows = {}
for name in defined.index:
    roc = ev.roc[name]
    at = roc[roc["tpr"] >= 0.8].iloc[0]  # the highest threshold that reaches sensitivity 0.8
    sens, spec, p = at["tpr"], 1 - at["fpr"], real_prevalence[name]
    rows[name] = {"AUC": defined.loc[name, "auc"], "sensitivity": sens, "specificity": spec,
                  "real prevalence": p, "expected in 25,596 images": round(p * 25_596),
                  "PPV at real prevalence": sens * p / (sens * p + (1 - spec) * (1 - p))}
ppv = pd.DataFrame(rows).T.sort_values("real prevalence", ascending=False)
ppv["expected in 25,596 images"] = ppv["expected in 25,596 images"].astype(int)
ppv.round(3)

# %% mystnb={"figure": {"caption": "Positive predictive value against prevalence for three operating points with sensitivity 0.8; the ticks at the bottom mark the prevalence of each class in the real ChestX-ray14. At the same sensitivity and specificity, the rarer the finding, the lower the share of correct positive calls.", "name": "fig-07-ppv"}}
prev = np.geomspace(1e-3, 0.5, 200)
fig, ax = plt.subplots(figsize=(6, 4))
for spec in (0.8, 0.9, 0.95):
    ax.plot(prev, 0.8 * prev / (0.8 * prev + (1 - spec) * (1 - prev)), label=f"sensitivity 0.8, specificity {spec}")
for i, (name, p) in enumerate(real_prevalence.sort_values().items()):
    top = 0.04 + 0.08 * (i % 2)  # alternate heights so that neighbouring labels do not overlap
    ax.plot([p, p], [0, top], color="black", lw=0.8)
    ax.annotate(ABBREVIATIONS[name], (p, top + 0.005), fontsize=6, rotation=90, ha="center", va="bottom")
ax.set_xscale("log")
ax.set_ylim(0, 1)
ax.set_xlabel("prevalence")
ax.set_ylabel("positive predictive value")
ax.legend(fontsize=8, loc="upper left")
fig.tight_layout()
plt.show()

# %% [markdown]
# Two lessons for reading Table 1. First, a high AUC on a rare finding (the paper's CRAL rows
# give Hernia, the rarest class, some of their highest values) does not make its positive calls
# reliable: at a prevalence of a fraction of a percent, even a specificity of 0.95 leaves most
# positive calls wrong. Second, the mean AUC weighs every class equally, however many images it has: the rare
# classes, whose AUCs are the least certain, count as much as the common ones.
#
# ## Summary
# - `evaluate_run` (`cral evaluate`) predicts a split with a run's best checkpoint and writes
#   the predictions, the per-class AUC table with 95% bootstrap intervals, and the run's row
#   under the paper's Table 1, into the run folder.
# - An AUC is a ranking statistic; its interval comes from resampling the test patients (all of
#   a patient's films together, since they are not independent), and its width is set mostly by
#   the number of positives.
# - A class with fewer than `MIN_POSITIVES` test positives is flagged and left out of the mean;
#   the paper's mean of all classes is reported beside it, marked. A class without positives is
#   reported as undefined, never dropped.
# - AUC does not depend on prevalence; what a positive prediction is worth does.
#
# Chapter 8 trains the ablations of Table 2 and uses paired bootstrap intervals to tell which
# differences between them are larger than the noise measured here.
