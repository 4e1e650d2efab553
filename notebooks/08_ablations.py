# %% [markdown]
# # Ablations
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cral-book/cral-book/blob/main/notebooks/08_ablations.ipynb)
#
# Table 2 of the paper {cite}`guan2020cral` takes CRAL apart one piece at a time: *w/o
# category* shares one attention map between all classes, *w/o residual* drops the identity
# term of Eq. 5 ($H = A \odot F$ instead of $H = (1 + A) \odot F$), and *w/o attention* removes
# the attention branch altogether (the plain backbone, the baseline). Each is reported as one
# mean test AUC, for att1 and att2. The differences are small: from 0.8136 for CRAL to 0.8034
# for the baseline with ResNet-50 and att1, a hundredth of AUC.
#
# This chapter trains the same grid with `cral_lib` (seven models per backbone: three variants
# for each attention branch, plus the baseline they share), evaluates each on the test split
# with bootstrap intervals, and then asks the question that a table of single numbers cannot
# answer: which differences are larger than the noise? The tool is the paired bootstrap, which
# scores two models on the same resampled test images. You will learn how the ablations are
# built, how to read a paired interval and its p-value, and what test-set intervals leave out
# (the randomness of training itself).

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

import cral_lib
from cral_lib import book
from cral_lib.metrics import PAPER_TABLE2, paired_bootstrap, paper_auc
from cral_lib.models import build_model
from cral_lib.train import compare_runs, evaluate_run, train

cral_lib.print_config()

# %% [markdown]
# ## Parameters
# The defaults are the book's fast mode, smaller still than chapter 6's so that the whole grid
# trains on a 2-core CPU in a few minutes: the grid's recipe (`book.recipe(..., ablation=True)`)
# is chapter 6's fast recipe with four epochs per model, on a seeded subset of 500 training
# images (chapter 6 explains the optimizer and the other fast-mode choices). `recipe = "paper"`
# is the paper's recipe, for a GPU with the real dataset; a knob left at `None` takes the
# recipe's value, and the comments give the paper's (papermill: `-p name value`). Every run is
# kept under `runs_dir` in a folder named from its config, and `train(config, resume="auto")`
# reuses a finished run, so executing the chapter again costs only the evaluation.

# %% tags=["parameters"]
data_dir = ""               # a ChestX-ray14 release folder; "" means $CRAL_DATA_DIR, else the synthetic dataset
runs_dir = ""               # where runs are written; "" means $CRAL_RUNS_DIR, else "runs"
device = "auto"             # "auto", "cpu", "cuda"
recipe = "fast"             # "fast": the grid's fast mode; full scale: "paper" (Section 4.2)
seed = 0                    # seed of every run and of the bootstrap
backbone = None             # None: the recipe's; the paper: "resnet50" (or "densenet121")
attentions = ["att1", "att2"]  # the attention branches of Table 2
weights = None              # None: the recipe's; the paper: "imagenet"
image_size = None           # the paper: 224
cache_size = None           # the paper: 256
batch_size = None           # the paper: 64
epochs = None               # None: the recipe's (the grid's fast mode trains fewer than chapter 6's); the paper: 30
max_train_images = None     # None: the recipe's (the grid's fast mode: a seeded subset); the paper: all images
amp = "auto"                # mixed precision on a GPU (see chapter 6)
n_boot = 1000               # bootstrap resamples of the intervals and of the paired tests
second_seed = 1             # train CRAL once more with this seed, to see training noise (None: skip)

# %%
env = book.setup(data_dir, runs_dir=runs_dir, device=device)
data_dir, dev = env.data_dir, env.device
# the knobs every model of the grid shares; None takes the grid recipe's value
knobs = dict(seed=seed, backbone=backbone, weights=weights, image_size=image_size, cache_size=cache_size,
             batch_size=batch_size, epochs=epochs, max_train_images=max_train_images, amp=amp)
backbone = env.recipe(recipe, ablation=True, **knobs).backbone
print(f"the grid's backbone: {backbone}")

# %% [markdown]
# ## The grid
# `build_model` makes every row of Table 2 from the same parts (chapters 3-5): the backbone cut at
# conv5, an attention branch, and a head.
#
# | row of Table 2 | `variant` | after conv5 |
# |---|---|---|
# | CRAL | `cral` | $C$ attention maps; $H^c = (1 + a^c) \odot F$ (Eq. 4-5); one FC layer per class (Eq. 8) |
# | w/o category | `no_category` | one map $a$ shared by all classes; $H = (1 + a) \odot F$; one FC layer per class |
# | w/o residual | `no_residual` | $C$ maps; $H^c = a^c \odot F$ (Eq. 4 only); one FC layer per class |
# | w/o attention | `no_attention` | global average pooling of $F$, one FC layer to $C$ outputs |
#
# The baseline has no attention branch, so att1 and att2 share it (the paper prints the same
# value in both columns): seven models per backbone. The parameter counts show what each
# ablation removes.

# %%
grid = [(att, var) for att in attentions for var in ("cral", "no_category", "no_residual")]
grid.append(("none", "no_attention"))
ROW = {"cral": "CRAL", "no_category": "w/o category", "no_residual": "w/o residual", "no_attention": "w/o attention"}

sizes = {}
for att, var in grid:
    model = build_model(backbone=backbone, attention=att, variant=var, num_classes=14, weights=None)
    sizes[(att, ROW[var])] = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "of which attention": sum(p.numel() for p in model.attention.parameters()) if model.attention else 0,
    }
pd.DataFrame(sizes).T

# %% [markdown]
# ## Training and evaluating the grid
# Each model gets the same recipe, seed and data; only `attention` and `variant` change. After
# training, `evaluate_run` predicts the test split with the best checkpoint and writes
# `predictions_test.csv` into the run folder, with the per-class AUC and its 95% bootstrap
# interval (chapter 7). In a terminal, one cell of the grid is
#
# ```bash
# cral train --data DATA --variant no_residual   # the paper's recipe; it prints its run folder, runs/NAME
# cral evaluate --run runs/NAME
# ```
#
# Each run folder is named from its config by `env.run_dir`:
# `<backbone>_<attention>_<variant>_<crop>px-<hash>`, the hash covering every other field of the
# recipe. Chapter 10 builds the baseline's config with the same call and so finds its run.

# %%
def ablation_config(attention, variant, run_seed=seed):
    """One model of the grid: the grid's recipe with this attention branch, variant and seed."""
    return env.recipe(recipe, ablation=True, **{**knobs, "seed": run_seed}, attention=attention, variant=variant)


runs, evals = {}, {}
t0 = time.perf_counter()
for att, var in grid:
    print(f"--- {ROW[var]} ({att})")
    runs[(att, var)] = train(ablation_config(att, var), resume="auto", progress=True)
    evals[(att, var)] = evaluate_run(runs[(att, var)].run_dir, device=str(dev), n_boot=n_boot, seed=seed)
print(f"grid done in {time.perf_counter() - t0:.0f} s")

# %% [markdown]
# ## The grid beside Table 2
# Each cell is a mean test AUC with its 95% bootstrap interval (resampled test images, as in
# chapter 7). The paper's Table 2 is quoted beside it, from `metrics.PAPER_TABLE2`. On the
# synthetic phantoms, with a small model trained for a couple of minutes, the absolute values
# are far from the paper's: the point is the comparison between rows, with its uncertainty.

# %%
def cell(ev):
    row = ev.auc.loc["Mean"]
    return f"{row['auc']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


table2 = pd.DataFrame(index=pd.Index(list(ROW.values()), name="method"))
for att in attentions:
    table2[f"this run: {backbone} {att}"] = [
        cell(evals[(att, var)]) if var != "no_attention" else cell(evals[("none", "no_attention")]) for var in ROW
    ]
for column in PAPER_TABLE2.columns:
    table2[f"paper: {column}"] = PAPER_TABLE2[column].map("{:.4f}".format)
table2

# %% [markdown]
# Whether or not the intervals of two rows overlap, they are the wrong tool for comparing the
# rows. Each interval includes the variation from *which* test images happen to be drawn, and
# that variation is shared by all models: a resample rich in easy images lifts every model at
# once. The paired bootstrap removes it.
#
# ## Which differences are real? The paired bootstrap
# `metrics.paired_bootstrap` draws resamples of the test images as before, but scores *both*
# models on each resample and keeps the difference of their AUCs. The percentile interval of
# those differences says how much the gap between the two models would change on another test
# set of the same size; if it contains 0, the test set cannot tell them apart. The two-sided
# p-value is read from the same resamples: twice the share of resampled differences on the other
# side of 0 (never below $2/(B+1)$). `compare_runs` does this from two run folders' prediction
# files; in a terminal it is
#
# ```bash
# cral compare RUN_A RUN_B        # two evaluated run folders, e.g. CRAL's and w/o residual's
# ```
#
# Here every ablation is compared with CRAL of the same attention branch. The difference is
# *ablation minus CRAL*, so a negative value means that removing the part lost AUC, as it does
# in the paper (its difference is in the last column, from Table 2).

# %%
paper_backbone = backbone if backbone in ("resnet50", "densenet121") else "resnet50"
paper_cnn = {"resnet50": "R-50", "densenet121": "D-121"}[paper_backbone]
rows = {}
for att in attentions:
    cral_dir = runs[(att, "cral")].run_dir
    for var in ("no_category", "no_residual", "no_attention"):
        other = runs[(att, var) if var != "no_attention" else ("none", "no_attention")].run_dir
        mean = compare_runs(cral_dir, other, n_boot=n_boot, seed=seed).loc["Mean"]
        rows[(att, ROW[var])] = {
            "CRAL": mean["auc_a"],
            "ablation": mean["auc_b"],
            "difference": mean["diff"],
            "ci_low": mean["ci_low"],
            "ci_high": mean["ci_high"],
            "p_value": mean["p_value"],
            "interval excludes 0": not mean["ci_low"] <= 0 <= mean["ci_high"],
            "paper's difference": paper_auc(paper_backbone, att, var) - paper_auc(paper_backbone, att, "cral"),
        }
paired = pd.DataFrame(rows).T
paired.index.names = ["attention", "ablation"]
print(f"paired intervals that exclude 0: {int(paired['interval excludes 0'].sum())} of {len(paired)}")
paired.round(4)

# %% [markdown]
# A paired interval is usually narrower than the two separate intervals would suggest, because
# the variation shared by both models cancels; the more alike their predictions, the more it
# cancels. Six comparisons are made at once: even with no real difference anywhere, the chance
# that at least one p-value falls below 0.05 is up to $1 - 0.95^6 \approx 26\%$ (if the tests
# were independent), so a single small p-value in this table is weak evidence. (The p-value and
# the interval are read from the same resamples in two slightly different ways, so a comparison
# at the edge can have an interval that just excludes 0 and a p-value just above 0.05, or the
# reverse.)

# %%
(att_show, var_show) = (attentions[0], "no_attention")
per_class = compare_runs(runs[(att_show, "cral")].run_dir, runs[("none", var_show)].run_dir, n_boot=n_boot, seed=seed)
print(f"per class: {ROW[var_show]} minus CRAL ({att_show})")
per_class[["auc_a", "auc_b", "diff", "ci_low", "ci_high", "p_value"]].round(3)

# %% [markdown]
# Per class, the intervals are wider still: each rests on that class's positives alone (chapter
# 7). `compare_runs` is `paired_bootstrap` on the two prediction files, after checking that they
# cover the same images with the same labels. The same call on the arrays that `evaluate_run`
# returned gives the same table:

# %%
direct = paired_bootstrap(evals[(att_show, "cral")].labels, evals[(att_show, "cral")].probs,
                          evals[("none", var_show)].probs, n_boot=n_boot, seed=seed)
pd.testing.assert_frame_equal(direct.round(5), per_class.round(5), check_dtype=False)
print("compare_runs and paired_bootstrap agree")

# %% [markdown]
# ## What the test set cannot tell: training noise
# Both kinds of interval above measure one source of uncertainty: the finite test set. They
# treat each trained model as fixed. But training is random too (initial weights, the order of
# the batches, the crops), and another seed gives another model with another AUC. The paper
# reports one run per cell, as is common. To see how large that randomness is here, the next
# cell trains CRAL once more with another seed, everything else unchanged, and compares the two
# runs of the *same* method exactly as the ablations were compared.

# %%
if second_seed is not None:
    att = attentions[0]
    rerun = train(ablation_config(att, "cral", run_seed=second_seed), resume="auto", progress=True)
    evaluate_run(rerun.run_dir, device=str(dev), n_boot=n_boot, seed=seed)
    same = compare_runs(runs[(att, "cral")].run_dir, rerun.run_dir, n_boot=n_boot, seed=seed).loc["Mean"]
    print(f"CRAL ({att}), seed {second_seed} minus seed {seed}: {same['diff']:+.4f} "
          f"[{same['ci_low']:+.4f}, {same['ci_high']:+.4f}], p = {same['p_value']:.3f}")
    larger = int((paired["difference"].abs() > abs(same["diff"])).sum())
    print(f"ablation differences larger than this seed difference: {larger} of {len(paired)}")

# %% [markdown]
# One extra seed is a single draw of the training noise, so this yardstick is rough either way.
# When the two seeds land close together (the cell prints by how much), that does not make the
# ablations' differences real: another pair of seeds can land further apart, and the paired
# interval of the two seeds (printed beside their difference) shows how far apart two models
# that differ only in their seed still rank the test images. When the two seeds differ by as
# much as two methods, the ablation table says nothing about the methods at all. In both cases
# the paired bootstrap may call a difference real; it is real for *these two trained models* on
# this test distribution, and says nothing about the methods. To compare methods, train each
# several times with different seeds and compare the spread of the runs with the gap between
# the methods.

# %% mystnb={"figure": {"caption": "Left: mean test AUC of each model of the grid with its 95% bootstrap interval. Right: each ablation minus CRAL of the same attention branch, with its 95% paired bootstrap interval (black) and the paper's difference from Table 2 (red crosses); the shaded band is as wide as the difference between two seeds of the same CRAL model. An interval that crosses zero means the test set cannot tell the two models apart; a difference inside the band is no larger than what a change of seed produces.", "name": "fig-08-ablations"}}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1, 1.2]})
labels = [f"{ROW[var]} ({att})" if var != "no_attention" else ROW[var] for att, var in grid]
means = np.array([evals[k].auc.loc["Mean", ["auc", "ci_low", "ci_high"]].to_numpy(float) for k in grid])
y = np.arange(len(grid))[::-1]
ax1.errorbar(means[:, 0], y, xerr=[means[:, 0] - means[:, 1], means[:, 2] - means[:, 0]], fmt="o",
             color="black", ecolor="grey", capsize=3)
ax1.axvline(0.5, color="lightgrey", ls=":")
ax1.set_yticks(y, labels, fontsize=8)
ax1.set_xlabel("mean test AUC")
ax1.set_title("each model", fontsize=10)

y2 = np.arange(len(paired))[::-1]
d = paired["difference"].to_numpy(float)
ax2.errorbar(d, y2, xerr=[d - paired["ci_low"].to_numpy(float), paired["ci_high"].to_numpy(float) - d],
             fmt="o", color="black", ecolor="grey", capsize=3, label="this run (paired 95% interval)")
ax2.scatter(paired["paper's difference"], y2, marker="x", color="#d62728", zorder=3,
            label=f"paper, Table 2 ({paper_cnn})")
if second_seed is not None:
    ax2.axvspan(-abs(same["diff"]), abs(same["diff"]), color="#1f77b4", alpha=0.15,
                label=f"within ± |CRAL seed {second_seed} - seed {seed}|")
ax2.axvline(0, color="black", lw=0.8)
ax2.set_yticks(y2, [f"{abl} ({att})" for att, abl in paired.index], fontsize=8)
ax2.set_xlabel("AUC difference: ablation minus CRAL")
ax2.set_title("paired differences", fontsize=10)
ax2.legend(fontsize=7, loc="best")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Reading the result
# In fast mode, on the synthetic data, the models are small, trained from random weights for
# a few epochs on a few hundred images of 112 pixels, and the left panel shows how far from
# chance (0.5) they got. Between models that have learned this little, a difference of AUC
# reflects which chance features each run happened to pick up more than what its architecture
# can do; the second seed of CRAL shows the size of that effect for one model. So read the right
# panel through the band: a difference no larger than what a change of seed produces is no
# evidence about the methods, whatever its p-value (and one extra seed gives only a rough idea
# of the training noise: the band is a yardstick, not a test). A paired interval that excludes
# zero here is a true statement about two particular trained models on a few hundred test
# images; it does not say that removing a part of CRAL helps or hurts. The fast mode shows how
# the comparison is made, not its answer: differences of the size the paper reports, a few
# thousandths to a hundredth of AUC, are far below what this setting can resolve.
#
# At full scale the question becomes answerable. The real test split has 25,596 images and
# hundreds to thousands of positives per class (chapter 7), which should narrow the paired
# intervals of the mean AUC to the order of the paper's gaps. Run the chapter with the
# paper's recipe (`recipe="paper"`: ResNet-50 from ImageNet weights, SGD, 224-pixel crops,
# batch 64, 30 epochs on every training image; `backbone="densenet121"` for the other half of
# Table 2): seven 30-epoch runs, so put `runs_dir` on storage that survives the session;
# `benchmarks/end_to_end.py` projects the time of one on your GPU, as the book's performance page
# explains), and, to judge the methods rather than single runs, repeat it with a few seeds.
#
# ## Summary
# - The four rows of Table 2 are four `variant`s of one builder; the baseline is shared by att1
#   and att2, so a backbone's grid is seven models.
# - Separate intervals answer "how precise is this model's AUC", paired intervals answer "is
#   this model better than that one on this test set"; only the second compares models.
# - Neither measures the randomness of training: a second seed of the same model is the
#   yardstick for any difference between methods.
