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
# for each attention branch, plus the baseline they share), each over three training seeds,
# evaluates each on the test split with bootstrap intervals, and then asks the question that a table of single numbers cannot
# answer: which differences are larger than the noise? There are two noises. The test set's:
# another sample of patients would rank the models a little differently, which the paired
# bootstrap measures by scoring two models on the same resampled test patients. And training's:
# another seed trains another model, which only training the grid again tells. So every model of
# the grid is trained over several seeds, and each ablation's difference from CRAL gets two
# intervals side by side. You will learn how the ablations are built, how to read a paired
# interval and its p-value, how to put a seed-level interval on a difference, and why a
# difference must survive both before it says anything about the methods.

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
from cral_lib.metrics import PAPER_TABLE2, class_table, paired_bootstrap, paper_auc
from cral_lib.models import build_model
from cral_lib.train import compare_runs, compare_seeds, train_seeds

cral_lib.print_config()

# %% [markdown]
# ## Parameters
# The defaults are the book's fast mode, smaller still than chapter 6's so that the whole grid
# trains over three seeds on a 2-core CPU in a few minutes: the grid's recipe
# (`book.recipe(..., ablation=True)`, whose changes are `book.ABLATION_FAST`) is chapter 6's
# fast recipe with fewer epochs per model, on a seeded subset of the training images that each
# seed draws anew (chapter 6 explains the optimizer and the other fast-mode choices). `recipe = "paper"`
# is the paper's recipe, for a GPU with the real dataset; a knob left at `None` takes the
# recipe's value, and the comments give the paper's (papermill: `-p name value`). Every run is
# kept under `runs_dir` in a folder named from its config, and `train(config, resume="auto")`
# reuses a finished run, so executing the chapter again costs only the evaluation.

# %% tags=["parameters"]
data_dir = ""               # a ChestX-ray14 release folder; "" means $CRAL_DATA_DIR, else the synthetic dataset
runs_dir = ""               # where runs are written; "" means $CRAL_RUNS_DIR, else "runs"
device = "auto"             # "auto", "cpu", "cuda"
recipe = "fast"             # "fast": the grid's fast mode; full scale: "paper" (Section 4.2)
seeds = [0, 1, 2]           # training seeds of every model (the paper's recipe: chapter 10 reuses the first); the paper: one run
seed = 0                    # seed of the bootstrap (the same resamples for every model)
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

# %%
env = book.setup(data_dir, runs_dir=runs_dir, device=device)
data_dir, dev = env.data_dir, env.device
# the knobs every model of the grid shares; None takes the grid recipe's value
knobs = dict(seed=seeds[0], backbone=backbone, weights=weights, image_size=image_size, cache_size=cache_size,
             batch_size=batch_size, epochs=epochs, max_train_images=max_train_images, amp=amp)
backbone = env.recipe(recipe, ablation=True, **knobs).backbone
print(f"the grid's backbone: {backbone}; training seeds: {seeds}; the grid's changes to the fast recipe: "
      f"{book.ABLATION_FAST if recipe == 'fast' else 'none'}")

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
# ## Training and evaluating the grid, over several seeds
# Each model gets the same recipe and data; only `attention` and `variant` change, and each is
# trained once per seed of `seeds`. `train_seeds` does this for one config: it gives each seed its
# own run folder (the seed is part of the config, so `run_name` hashes it), reuses the runs that
# are finished, and evaluates each on the test split with `evaluate_run` (chapter 7: per-class
# AUC with intervals over resampled patients; the predictions go to `predictions_test.csv`). In a
# terminal, one cell of the grid and one seed is
#
# ```bash
# cral train --data DATA --variant no_residual --seed 1   # the paper's recipe; it prints its run folder, runs/NAME
# cral evaluate --run runs/NAME
# ```
#
# Each run folder is named from its config by `env.run_dir`:
# `<backbone>_<attention>_<variant>_<crop>px-<hash>`, the hash covering every other field of the
# recipe, the seed included. With the paper's recipe, chapter 10 builds the baseline's config of
# the first seed with the same call and so finds its run; in the fast mode it trains a stronger
# baseline of its own, since the grid's are close to chance.

# %%
def ablation_config(attention, variant, run_seed=seeds[0]):
    """One model of the grid: the grid's recipe with this attention branch, variant and seed."""
    return env.recipe(recipe, ablation=True, **{**knobs, "seed": run_seed}, attention=attention, variant=variant)


grid_runs = {}
t0 = time.perf_counter()
for att, var in grid:
    grid_runs[(att, var)] = train_seeds(ablation_config(att, var), seeds, n_boot=n_boot, boot_seed=seed,
                                        device=str(dev), verbose=False, threshold_rule=None)
    per_seed = grid_runs[(att, var)].mean_auc()
    print(f"{ROW[var]:>14} ({att}): test mean AUC per seed " + ", ".join(f"{s}: {v:.3f}" for s, v in per_seed.items()))
print(f"grid of {len(grid)} models x {len(seeds)} seeds done in {time.perf_counter() - t0:.0f} s")
first = seeds[0]
runs = {k: g.runs[first] for k, g in grid_runs.items()}
evals = {k: g.evals[first] for k, g in grid_runs.items()}
counted = grid_runs[grid[0]].counted()

# %% [markdown]
# Every mean AUC in this chapter follows chapter 7's rule: it is taken over the classes with at
# least `metrics.MIN_POSITIVES` positive test images, the same classes for every model (the test
# split does not depend on the seed). The cell prints which classes that leaves out.

# %%
rule = class_table(evals[grid[0]].auc)
print(rule.attrs["rule"])
print(f"counted: {len(counted)} classes; left out: {', '.join(rule.attrs['flagged']) or 'none'}")
rule[["auc", "n_pos", "flag"]].rename(columns={"auc": f"AUC of {ROW[grid[0][1]]} ({grid[0][0]}), seed {first}"}).round(3)

# %% [markdown]
# ## The grid beside Table 2
# Each cell is a method's test mean AUC averaged over the seeds, with the 95% Student's t
# interval over the seeds (`metrics.seed_summary`: mean $\pm\ t_{n-1} \cdot \mathrm{SD}/\sqrt{n}$
# for $n$ seeds) and the SD of the seeds; the mean of all classes, as the paper takes it, is in
# the last columns of this run, marked. The paper's Table 2 is quoted beside it, from
# `metrics.PAPER_TABLE2` (one run per cell). On the synthetic phantoms, with a small model
# trained for a minute, the absolute values are far from the paper's: the point is the
# comparison between rows, with its uncertainty.

# %%
def cell(summary):
    return f"{summary.mean:.3f} [{summary.ci_low:.3f}, {summary.ci_high:.3f}], SD {summary.sd:.3f}"


def model(att, var):
    return grid_runs[(att, var) if var != "no_attention" else ("none", "no_attention")]


table2 = pd.DataFrame(index=pd.Index(list(ROW.values()), name="method"))
for att in attentions:
    table2[f"this run: {backbone} {att}, {len(seeds)} seeds"] = [cell(model(att, var).summary()) for var in ROW]
for att in attentions:
    table2[f"this run: {att}, all classes (the paper's mean)"] = [
        f"{model(att, var).summary(counted=False).mean:.3f}" for var in ROW]
for column in PAPER_TABLE2.columns:
    table2[f"paper: {column}"] = PAPER_TABLE2[column].map("{:.4f}".format)
table2

# %% [markdown]
# Whether or not the intervals of two rows overlap, they are the wrong tool for comparing the
# rows. A seed that happens to draw an easy training subset lifts every model trained with it,
# and a resample of easy test patients lifts every model scored on it. Both are shared between
# the methods, and a comparison should take the difference first, seed by seed and resample by
# resample.
#
# ## Which differences are real? Two intervals for each
# **The test set's noise: the paired bootstrap.** `metrics.paired_bootstrap` draws resamples of
# the test patients as in chapter 7, but scores *both* models on each resample and keeps the
# difference of their AUCs. The percentile interval of those differences says how much the gap
# between *these two trained models* would change on another test set of the same size; if it
# contains 0, the test set cannot tell them apart. The two-sided p-value is read from the same
# resamples: twice the share of resampled differences on the other side of 0 (never below
# $2/(B+1)$). `compare_runs` does this from two run folders' prediction files; in a terminal it is
#
# ```bash
# cral compare RUN_A RUN_B        # two evaluated run folders, e.g. CRAL's and w/o residual's
# ```
#
# **The training noise: the seeds.** With the same seeds for both methods, the difference is
# taken seed by seed (each seed's ablation minus the same seed's CRAL), and the t interval of the
# mean of those differences says how sure we are that *the methods* differ, as far as this many
# seeds can tell (`train.compare_seeds`, which gives both intervals; `metrics.seed_difference`
# for the seed-level one from plain numbers). With three seeds, $t_2$ is large and the interval
# wide: a few seeds can only detect a difference that is big compared with the seeds' spread.
#
# Every ablation is compared with CRAL of the same attention branch. The difference is
# *ablation minus CRAL*, so a negative value means that removing the part lost AUC, as it does
# in the paper (its difference is in the last column, from Table 2). The paired interval shown is
# that of the first seed's pair of runs, which is the comparison a single-run table makes.

# %%
paper_backbone = backbone if backbone in ("resnet50", "densenet121") else "resnet50"
paper_cnn = {"resnet50": "R-50", "densenet121": "D-121"}[paper_backbone]
comparisons, rows = {}, {}
for att in attentions:
    for var in ("no_category", "no_residual", "no_attention"):
        cmp = compare_seeds(grid_runs[(att, "cral")], model(att, var), n_boot=n_boot, seed=seed)
        comparisons[(att, ROW[var])] = cmp
        row = cmp.row(first)
        rows[(att, ROW[var])] = {
            "seed-level difference": row["mean difference"],
            "seed ci_low": row["seed ci_low"],
            "seed ci_high": row["seed ci_high"],
            f"seed {first}: difference": row[f"seed {first}: difference"],
            "paired ci_low": row[f"seed {first}: paired ci_low"],
            "paired ci_high": row[f"seed {first}: paired ci_high"],
            "paired excludes 0": row["paired interval excludes 0"],
            "seeds exclude 0": row["seed interval excludes 0"],
            "paper's difference": paper_auc(paper_backbone, att, var) - paper_auc(paper_backbone, att, "cral"),
        }
both = pd.DataFrame.from_dict(rows, orient="index")
both.index.names = ["attention", "ablation"]
both["survives both"] = both["paired excludes 0"] & both["seeds exclude 0"]
print(f"{len(seeds)} seeds; paired intervals resample test {cmp.resample}; means over {len(counted)} classes")
both.round(4)

# %% [markdown]
# The test-set interval is narrow where the two models rank the test patients alike; the seed
# interval is wide where the seeds disagree with each other. They answer different questions,
# and the next cell says, from the table, which differences survive both and which only one.

# %%
def names(mask):
    return ", ".join(f"{abl} ({att})" for att, abl in both.index[mask.to_numpy(bool)]) or "none"


paired_only = both["paired excludes 0"] & ~both["seeds exclude 0"]
seeds_only = ~both["paired excludes 0"] & both["seeds exclude 0"]
neither = ~both["paired excludes 0"] & ~both["seeds exclude 0"]
print(f"Of the {len(both)} differences from CRAL, {int(both['survives both'].sum())} survive both intervals "
      f"(the seed-level one over {len(seeds)} seeds and the first seed's paired test-set one): "
      f"{names(both['survives both'])}.")
print(f"Only the paired test-set interval excludes 0 for {int(paired_only.sum())}: {names(paired_only)}; "
      f"only the seed-level one for {int(seeds_only.sum())}: {names(seeds_only)}; neither for {int(neither.sum())}.")
excluded_each = {k: int(((c.per_seed["ci_low"] > 0) | (c.per_seed["ci_high"] < 0)).sum()) for k, c in comparisons.items()}
print("seeds whose own paired interval excludes 0, per ablation: "
      + "; ".join(f"{abl} ({att}) {n} of {len(seeds)}" for (att, abl), n in excluded_each.items()))

# %% [markdown]
# A difference that only the paired interval calls real is a true statement about one pair of
# trained models on this test set, and the seeds say that another pair could land elsewhere.
# A difference that survives both is one the methods themselves probably make, on this data and
# recipe. Six comparisons are made at once: even with no real difference anywhere, the chance
# that at least one interval excludes 0 is up to $1 - 0.95^6 \approx 26\%$ (if the tests were
# independent), so a single survivor is weak evidence. (The p-value and the interval are read
# from the same resamples in two slightly different ways, so a comparison at the edge can have an
# interval that just excludes 0 and a p-value just above 0.05, or the reverse.)
#
# Each seed's own paired comparison, for every ablation:

# %%
per_seed = pd.concat({k: c.per_seed for k, c in comparisons.items()}, names=["attention", "ablation"])
per_seed[["reference", "other", "difference", "ci_low", "ci_high", "p_value"]].rename(
    columns={"reference": "CRAL", "other": "ablation"}).round(4)

# %% [markdown]
# ## One comparison class by class
# Per class, the intervals are wider still: each rests on that class's positives alone (chapter
# 7), and the classes under the minimum are flagged.

# %%
(att_show, var_show) = (attentions[0], "no_attention")
per_class = compare_runs(runs[(att_show, "cral")].run_dir, runs[("none", var_show)].run_dir, n_boot=n_boot, seed=seed)
per_class.insert(0, "test positives", evals[(att_show, "cral")].auc["n_pos"])
per_class.insert(1, "flag", rule["flag"].reindex(per_class.index).fillna(""))
print(f"per class: {ROW[var_show]} minus CRAL ({att_show}), seed {first}; the Mean row covers every class with an "
      f"AUC (the paper's), the table above used the {len(counted)} counted ones")
per_class[["test positives", "flag", "auc_a", "auc_b", "diff", "ci_low", "ci_high", "p_value"]].round(3)

# %% [markdown]
# `compare_runs` is `paired_bootstrap` on the two prediction files, after checking that they
# cover the same images with the same labels, with the patient IDs of the predictions as the
# groups. The same call on the arrays that `evaluate_run` returned gives the same table:

# %%
direct = paired_bootstrap(evals[(att_show, "cral")].labels, evals[(att_show, "cral")].probs,
                          evals[("none", var_show)].probs, n_boot=n_boot, seed=seed,
                          groups=evals[(att_show, "cral")].predictions["Patient ID"])
pd.testing.assert_frame_equal(direct.round(5), per_class.drop(columns=["test positives", "flag"]).round(5),
                              check_dtype=False)
print("compare_runs and paired_bootstrap agree")

# %% [markdown]
# ## Two seeds of the same model
# The yardstick of the training noise, seen directly: two runs of CRAL that differ only in
# their seed, compared exactly as the ablations were. The paired interval says whether the test
# set can tell these two models apart; the spread of CRAL over all the seeds is printed beside it.

# %%
att = attentions[0]
if len(seeds) > 1:
    cral_runs = grid_runs[(att, "cral")]
    same = compare_runs(cral_runs.runs[seeds[0]].run_dir, cral_runs.runs[seeds[1]].run_dir, n_boot=n_boot,
                        seed=seed, classes=counted).loc["Mean"]
    spread = cral_runs.summary()
    print(f"CRAL ({att}), seed {seeds[1]} minus seed {seeds[0]}: {same['diff']:+.4f} "
          f"[{same['ci_low']:+.4f}, {same['ci_high']:+.4f}], p = {same['p_value']:.3f}")
    print(f"CRAL ({att}) over {spread.n_seeds} seeds: mean {spread.mean:.4f}, SD {spread.sd:.4f}; "
          f"ablation differences larger than this SD: {int((both['seed-level difference'].abs() > spread.sd).sum())} "
          f"of {len(both)}")

# %% [markdown]
# When two seeds of one method can be told apart by the paired bootstrap, a paired interval
# that excludes 0 between two methods is no evidence about the methods on its own: it would say
# the same of two seeds. That is why the table above puts the seed-level interval beside it.

# %% mystnb={"figure": {"caption": "Left: test mean AUC (counted classes) of each model of the grid, one dot per training seed, with the mean over the seeds and its 95% t interval. Right: each ablation minus CRAL of the same attention branch: the seed-level 95% t interval of the per-seed differences (blue), the first seed's 95% paired bootstrap interval over test patients (black), and the paper's difference from Table 2 (red crosses). A difference says something about the methods only when both intervals leave out zero.", "name": "fig-08-ablations"}}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1, 1.2]})
labels = [f"{ROW[var]} ({att})" if var != "no_attention" else ROW[var] for att, var in grid]
y = np.arange(len(grid))[::-1]
for yi, key in zip(y, grid):
    s = grid_runs[key].summary()
    ax1.scatter(s.values.to_numpy(), np.full(s.n_seeds, yi), color="grey", s=12, zorder=2)
    ax1.errorbar([s.mean], [yi], xerr=[[s.mean - s.ci_low], [s.ci_high - s.mean]], fmt="o", color="black",
                 capsize=3, zorder=3)
ax1.axvline(0.5, color="lightgrey", ls=":")
ax1.set_yticks(y, labels, fontsize=8)
ax1.set_xlabel("test mean AUC (counted classes)")
ax1.set_title(f"each model, {len(seeds)} seeds", fontsize=10)

y2 = np.arange(len(both))[::-1]
d_seed = both["seed-level difference"].to_numpy(float)
d_pair = both[f"seed {first}: difference"].to_numpy(float)
ax2.errorbar(d_seed, y2 + 0.15, xerr=[d_seed - both["seed ci_low"].to_numpy(float),
                                      both["seed ci_high"].to_numpy(float) - d_seed],
             fmt="s", color="#1f77b4", capsize=3, label=f"seed-level t interval ({len(seeds)} seeds)")
ax2.errorbar(d_pair, y2 - 0.15, xerr=[d_pair - both["paired ci_low"].to_numpy(float),
                                      both["paired ci_high"].to_numpy(float) - d_pair],
             fmt="o", color="black", ecolor="grey", capsize=3, label=f"paired bootstrap, seed {first}")
ax2.scatter(both["paper's difference"], y2, marker="x", color="#d62728", zorder=3,
            label=f"paper, Table 2 ({paper_cnn})")
ax2.axvline(0, color="black", lw=0.8)
ax2.set_yticks(y2, [f"{abl} ({att})" for att, abl in both.index], fontsize=8)
ax2.set_xlabel("AUC difference: ablation minus CRAL")
ax2.set_title("differences from CRAL", fontsize=10)
ax2.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Reading the result
# In fast mode, on the synthetic data, the models are small, trained from random weights for
# a few epochs on a few hundred images of 112 pixels, and the left panel shows how far from
# chance (0.5) they got and how much the seeds scatter. Between models that have learned this
# little, a difference of AUC reflects which chance features each run happened to pick up as
# much as what its architecture can do, and the seed-level intervals show it. Read the right
# panel row by row: a black interval clear of zero with a blue one across it is a difference
# between two trained models, not between two methods; only a row where both leave out zero
# (the cell under the table names them) says something about the methods, on this data and
# with this recipe. The fast mode shows how the comparison is made, not its answer: differences
# of the size the paper reports, a few thousandths to a hundredth of AUC, are far below what
# this setting can resolve.
#
# At full scale the question becomes answerable. The real test split has 25,596 images of
# thousands of patients and hundreds to thousands of positives per class (chapter 7), which
# should narrow the paired intervals of the mean AUC to the order of the paper's gaps, and longer
# training on all images makes the seeds agree more. Run the chapter with the paper's recipe
# (`recipe="paper"`: ResNet-50 from ImageNet weights, SGD, 224-pixel crops, batch 64, 30 epochs
# on every training image; `backbone="densenet121"` for the other half of Table 2): seven
# 30-epoch runs per seed, so put `runs_dir` on storage that survives the session
# (`benchmarks/end_to_end.py` projects the time of one on your GPU, as the book's performance
# page explains), and keep at least three seeds, so that the seed-level interval exists.
#
# ## Summary
# - The four rows of Table 2 are four `variant`s of one builder; the baseline is shared by att1
#   and att2, so a backbone's grid is seven models, here trained once per seed (`train_seeds`).
# - Separate intervals answer "how precise is this model's AUC"; paired intervals answer "is
#   this model better than that one on this test set"; the seed-level interval of the per-seed
#   differences answers "is this method better than that one, over training runs"
#   (`compare_seeds`).
# - A difference says something about the methods only when it survives both the test-set and
#   the seed-level interval.
