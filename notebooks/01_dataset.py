# %% [markdown]
# # The ChestX-ray14 dataset
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/cral-book/cral-book/blob/main/notebooks/01_dataset.ipynb)
#
# CRAL {cite}`guan2020cral` is trained and tested on ChestX-ray14 {cite}`wang2017chestxray8`:
# 112,120 frontal chest radiographs, each labelled with any of 14 findings mined from the
# radiology reports. Before building a model we look at what it will learn from. This chapter
# explores the **real** metadata of the release (every row of its `Data_Entry` table and its
# expert boxes, which ship inside the `torchxrayvision` package {cite}`cohen2022torchxrayvision`):
# patients and follow-ups, views, age and sex, how rare some findings are, which findings come
# together, and why the official split keeps every patient on one side. It then introduces the
# **synthetic** dataset that the book runs on (phantom images in the exact release layout, with
# rows drawn from real patients) and checks that its label statistics follow the real ones.
#
# You will learn to read the metadata with `cral_lib.data`, to measure label imbalance and
# co-occurrence, and to see, with numbers, how much a random image-level split leaks.

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
from IPython.display import display

import cral_lib
from cral_lib import CLASSES, NO_FINDING, book, viz
from cral_lib.data import ChestXray14, nih_boxes, nih_metadata
from cral_lib.data.metadata import label_matrix, label_stats
from cral_lib.synthetic import MARKER, OFFICIAL_TEST, OFFICIAL_TOTAL, OFFICIAL_TRAIN_VAL, SIGNATURES
from cral_lib.metrics import ABBREVIATIONS, PAPER_TABLE1, auc_table

pd.set_option("display.max_colwidth", 120)
cral_lib.print_config()

# %% [markdown]
# ## Parameters
# The defaults run in well under a minute on a laptop CPU: this chapter reads tables and a
# handful of images, so fast mode and full scale are the same. Papermill overrides any of them
# with `-p name value`.

# %% tags=["parameters"]
data_dir = ""    # a ChestX-ray14 release folder; "" means $CRAL_DATA_DIR, else the synthetic dataset
seed = 0         # seed of the random splits of the real metadata and of the example choice
n_examples = 8   # images in the grid of examples (the paper's Fig. 3)

# %%
data_dir = book.setup(data_dir).data_dir

# %% [markdown]
# ## The real metadata
# `nih_metadata()` returns the release's `Data_Entry_2017_v2020.csv`: one row per image, with
# the image name (`PPPPPPPP_FFF.png`: patient, follow-up), the labels joined with `|`, the
# follow-up number, patient, age, sex, view, and the size and pixel spacing of the scanner's
# original image (NIH resized every image to 1024 × 1024 before release).
# `nih_boxes()` returns the expert bounding boxes of `BBox_List_2017.csv`.

# %%
meta = nih_metadata()
boxes = nih_boxes()
meta.head()

# %% [markdown]
# Images, patients and follow-ups. A patient may come back many times: the follow-up number
# counts the visits, and a few patients have more than a hundred images.

# %%
per_patient = meta.groupby("Patient ID").size()
summary = pd.Series(
    {
        "images": f"{len(meta):,}",
        "patients": f"{meta['Patient ID'].nunique():,}",
        "images per patient: median / mean / max": f"{per_patient.median():.0f} / {per_patient.mean():.2f} / {per_patient.max()}",
        "patients with a single image": f"{(per_patient == 1).mean():.1%}",
        "images of patients with 10 or more images": f"{per_patient[per_patient >= 10].sum() / len(meta):.1%}",
        "first visits (follow-up # 0)": f"{(meta['Follow-up #'] == 0).sum():,}",
        "PA / AP views": " / ".join(f"{meta['View Position'].value_counts()[v]:,}" for v in ("PA", "AP")),
        "female / male images": " / ".join(f"{meta['Patient Gender'].value_counts()[s]:,}" for s in ("F", "M")),
        "age: median (quartiles)": "{:.0f} ({:.0f}-{:.0f})".format(*meta["Patient Age"].quantile([0.5, 0.25, 0.75])),
    },
    name="real ChestX-ray14",
)
summary.to_frame()

# %% [markdown]
# The figure below shows the same facts as distributions. Two of them matter for training:
# most images belong to patients seen many times (so images are not independent samples), and
# later follow-ups are more often bedside AP films of patients with findings, while first
# visits are mostly PA films without a finding (panel d).

# %% mystnb={"figure": {"caption": "The real ChestX-ray14 metadata: (a) images per patient (log scale), (b) age by sex, (c) views, (d) the share of AP views and of images with at least one finding by follow-up number.", "name": "fig-01-demographics"}}
has_finding = meta["Finding Labels"] != NO_FINDING
visit = pd.cut(meta["Follow-up #"], [-1, 0, 4, 9, 19, 49, 1000], labels=["0", "1-4", "5-9", "10-19", "20-49", "50+"])

fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
ax = axes[0, 0]
ax.hist(per_patient, bins=np.logspace(0, np.log10(per_patient.max() + 1), 30), color="tab:blue")
ax.set(xscale="log", yscale="log", xlabel="images of the patient", ylabel="patients", title="(a) images per patient")
ax = axes[0, 1]
for sex, color in (("F", "tab:red"), ("M", "tab:blue")):
    ax.hist(meta.loc[meta["Patient Gender"] == sex, "Patient Age"], bins=np.arange(0, 100, 3), alpha=0.55, color=color, label=sex)
ax.set(xlabel="age (years)", ylabel="images", title="(b) age by sex")
ax.legend(title="sex")
ax = axes[1, 0]
meta["View Position"].value_counts().plot.bar(ax=ax, color=["tab:green", "tab:orange"], rot=0)
ax.set(xlabel="view", ylabel="images", title="(c) views")
ax = axes[1, 1]
by_visit = pd.DataFrame({"AP view": meta["View Position"] == "AP", "any finding": has_finding}).groupby(visit, observed=True).mean()
by_visit.plot(ax=ax, marker="o")
ax.set(xlabel="follow-up number", ylabel="share of images", ylim=(0, 1), title="(d) by follow-up number")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Labels: prevalence and the long tail
# `label_stats` turns the `Finding Labels` column into an $N \times 14$ multi-hot matrix $Y$ (in
# the order of the paper's Table 1, `cral_lib.CLASSES`) and counts images per class, labels per
# image and co-occurrences. The table also gives, for each finding, the share of its images on
# which it is the *only* finding.

# %%
Y = label_matrix(meta)
stats = label_stats(meta)
n_labels = Y.sum(axis=1)
alone = ((Y == 1) & (n_labels == 1)[:, None]).sum(axis=0) / Y.sum(axis=0)
prevalence = stats.table().assign(alone=alone)
prevalence.loc[NO_FINDING] = [stats.no_finding, stats.no_finding / stats.n_images, np.nan]
prevalence = prevalence.sort_values("images", ascending=False)
prevalence.style.format({"images": "{:,.0f}", "prevalence": "{:.2%}", "alone": "{:.0%}"}, na_rep="")

# %%
common, rare = stats.counts.idxmax(), stats.counts.idxmin()
print(f"{NO_FINDING}: {stats.no_finding / stats.n_images:.1%} of the images")
print(f"most common finding: {common} ({stats.counts[common]:,} images); rarest: {rare} ({stats.counts[rare]:,})")
print(f"ratio: {stats.counts[common] / stats.counts[rare]:.0f} to 1")
print(f"images with more than one finding: {stats.multi_label_fraction:.1%}")

# %% [markdown]
# The classes span almost two orders of magnitude: the most common finding has dozens of
# times the images of the rarest, and more than half of the images carry no finding at all.
# This is why the paper measures each class by its ROC AUC, which does not depend on the
# prevalence, and averages the 14 AUCs (Section 4.1), rather than reporting an accuracy that
# "always negative" would already make high. It is also why a rare class's AUC is uncertain: it
# rests on few positive test images (Chapter 7 puts confidence intervals on it).
#
# The right panel counts labels per image. Most positive images carry one finding, but a
# sizeable share carry two or more: the task is **multi-label**, and each of the 14 outputs is
# a separate yes/no question (the sigmoid of Eq. 9 and the binary cross-entropy of Eq. 10, not
# a softmax over classes).

# %% mystnb={"figure": {"caption": "Left: images per finding in the real ChestX-ray14 (log scale; No Finding in grey). Right: how many findings an image carries.", "name": "fig-01-prevalence"}}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.4, 1]})
order = prevalence.index[::-1]
ax1.barh(order, prevalence.loc[order, "images"], color=["grey" if c == NO_FINDING else "tab:blue" for c in order])
ax1.set(xscale="log", xlabel="images (log scale)", title="images per label")
per_image = stats.labels_per_image
ax2.bar(per_image.index, per_image.to_numpy(), color="tab:blue")
ax2.set(yscale="log", xlabel="findings on the image", ylabel="images (log scale)", title="findings per image")
for k, v in per_image.items():
    ax2.text(k, v, f"{v / stats.n_images:.1%}", ha="center", va="bottom", fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Which findings come together
# Entry $(a, b)$ of $Y^\top Y$ counts the images that carry both $a$ and $b$; its diagonal is the
# class counts. `viz.plot_cooccurrence` draws it with seaborn, labelled with the abbreviations of
# the paper's Table 1 (Atel, Card, Effu, Infi, ...).

# %% mystnb={"figure": {"caption": "Co-occurrence counts of the 14 findings in the real ChestX-ray14: the number of images that carry both the row's and the column's finding (the diagonal holds each finding's count).", "name": "fig-01-cooccurrence"}}
viz.plot_cooccurrence(Y)
plt.show()

# %% [markdown]
# Counts are dominated by the common findings. Dividing each row by its diagonal gives the
# conditional probability $P(\text{column} \mid \text{row})$: of the images with the row's
# finding, the share that also carry the column's. The matrix is not symmetric: a common
# finding is a frequent companion of a rare one, but not the other way round (the printout
# after the figure gives the most lopsided pair).

# %% mystnb={"figure": {"caption": "Conditional co-occurrence in the real ChestX-ray14: P(column | row), the share of the images with the row's finding that also carry the column's finding.", "name": "fig-01-conditional"}}
viz.plot_cooccurrence(Y, normalize="conditional")
plt.show()

# %%
co = stats.cooccurrence.to_numpy().astype(float)
conditional = co / np.diag(co)[:, None]  # row a, column b: P(b | a)
lopsided = np.where(co >= 100, conditional - conditional.T, 0)
a, b = np.unravel_index(np.argmax(lopsided), lopsided.shape)
print(f"P({CLASSES[b]} | {CLASSES[a]}) = {conditional[a, b]:.2f}, but P({CLASSES[a]} | {CLASSES[b]}) = {conditional[b, a]:.2f}")

# %% [markdown]
# Which pairs occur together more often than chance? The *lift*
# $P(a, b) / (P(a) P(b))$ is 1 for independent findings. The pairs with the largest lift (among
# pairs seen on at least 100 images):

# %%
p = np.diag(co) / stats.n_images
rows = []
for a in range(len(CLASSES)):
    for b in range(a + 1, len(CLASSES)):
        if co[a, b] >= 100:
            rows.append({
                "pair": f"{CLASSES[a]} + {CLASSES[b]}",
                "images": int(co[a, b]),
                f"P(b | a)": co[a, b] / co[a, a],
                f"P(a | b)": co[a, b] / co[b, b],
                "lift": co[a, b] / stats.n_images / (p[a] * p[b]),
            })
pairs = pd.DataFrame(rows).sort_values("lift", ascending=False).set_index("pair")
pairs.head(8).round(2)

# %% [markdown]
# Findings that share a cause or a look come together: Cardiomegaly with Effusion (both signs
# of heart failure), Emphysema with Pneumothorax (a ruptured bulla), Pneumonia with Edema
# (airspace opacities that reports often name together), Mass with Nodule. For a classifier, co-occurrence is both a help and a
# trap: a network can learn to predict one finding from the evidence of another that usually
# accompanies it. CRAL's answer is to give every class its **own** spatial attention map over
# the features (Eq. 2–5), so that each class's prediction can weigh the regions that show *its*
# finding; the ablation "w/o category" of the paper's Table 2 (one map shared by all classes)
# measures what that is worth (Chapter 8).

# %% [markdown]
# ## The official split, and why it is patient-disjoint
# The paper uses "the dataset split provided by [37]" and notes that "there is no any patients
# overlap in train and test subsets" (Section 4.1). The official lists `train_val_list.txt` and
# `test_list.txt` come with the release but are not in the `torchxrayvision` wheel, so this
# chapter cannot read them; their sizes are known:

# %%
test_share = OFFICIAL_TEST / OFFICIAL_TOTAL
print(f"official split: {OFFICIAL_TRAIN_VAL:,} train_val + {OFFICIAL_TEST:,} test = {OFFICIAL_TOTAL:,} images "
      f"(test: {test_share:.1%})")

# %% [markdown]
# To see why the split must keep patients apart, we make two splits of the real metadata with
# the official proportions, both with a local generator:
#
# - an **image-level** split: a random share of the *images*, the official test share, go to test;
# - a **patient-level** split: patients are shuffled and taken, with all their images, until
#   the test side holds as many images (the last patient makes it slightly more).

# %%
rng = np.random.default_rng(seed)
n_test = round(len(meta) * test_share)
pid = meta["Patient ID"].to_numpy()

image_test = np.zeros(len(meta), dtype=bool)
image_test[rng.permutation(len(meta))[:n_test]] = True

patients = rng.permutation(per_patient.index.to_numpy())
taken = int(np.searchsorted(per_patient.loc[patients].cumsum().to_numpy(), n_test)) + 1
patient_test = np.isin(pid, patients[:taken])
splits = {"random image-level split": image_test, "patient-level split": patient_test}
for name, test in splits.items():
    print(f"{name}: {(~test).sum():,} train, {test.sum():,} test images")

# %% [markdown]
# Now we measure the leak from the test side:
#
# - the share of test **patients** that also have training images, and of test **images**
#   whose patient is in training;
# - the share of test images whose **previous or next follow-up** (the same patient's film of
#   the visit before or after, often days apart and nearly the same picture) is in training;
# - the share of test images with a training image of the same patient and **the same labels**.
#
# And one consequence: a "classifier" that never looks at a pixel, and scores a test image by
# the labels of the same patient's training images (the share of them that carry each finding,
# shrunk towards the training prevalence by one pseudo-image). Its ROC AUC, computed with
# `cral_lib.metrics.auc_table` like a model's, is what the leak alone is worth.

# %%
fu = meta["Follow-up #"].to_numpy()
visit_key = pid * 1000 + fu  # follow-up numbers stay below 1000
label_key = meta["Patient ID"].astype(str) + "/" + meta["Finding Labels"]


def patient_lookup_scores(test):
    """Score test images from the labels of the same patient's training images (no pixels)."""
    prior = Y[~test].mean(axis=0)
    sums = pd.DataFrame(Y[~test]).groupby(pid[~test]).sum().reindex(pid[test]).fillna(0).to_numpy()
    counts = pd.Series(pid[~test]).value_counts().reindex(pid[test]).fillna(0).to_numpy()[:, None]
    return (sums + prior) / (counts + 1)


leaks = {}
for name, test in splits.items():
    in_train = np.isin(pid[test], pid[~test])
    leaks[name] = {
        "test images": int(test.sum()),
        "test patients with training images": np.isin(np.unique(pid[test]), pid[~test]).mean(),
        "test images whose patient is in training": in_train.mean(),
        "test images with the previous or next follow-up in training": (
            np.isin(visit_key[test] - 1, visit_key[~test]) | np.isin(visit_key[test] + 1, visit_key[~test])
        ).mean(),
        "test images with a same-patient, same-labels training image": label_key[test].isin(label_key[~test]).mean(),
        "mean AUC of the patient lookup (no pixels)": auc_table(Y[test], patient_lookup_scores(test)).loc["Mean", "auc"],
    }
leak_table = pd.DataFrame(leaks)
leak_table.style.format(lambda v: f"{v:,.0f}" if v > 1 else f"{v:.3f}")

# %% [markdown]
# On the image-level split most test images have their patient, and often the very next
# visit, in the training set, and the pixel-free patient lookup ranks test images far better
# than chance; on the patient-level split all of these are zero and the lookup falls to an AUC
# of 0.5 (every test patient is new, so it can only output the prevalence). Here is how the
# lookup's mean AUC compares with the published results of the paper's Table 1 (all measured on
# the official, patient-disjoint split):

# %%
lookup_auc = leak_table.loc["mean AUC of the patient lookup (no pixels)", "random image-level split"]
published = PAPER_TABLE1[["method", "CNN", "Mean"]].assign(
    **{"vs. the lookup on the image-level split": np.where(PAPER_TABLE1["Mean"] > lookup_auc, "higher", "lower or equal")}
)
print(f"patient lookup on the random image-level split: mean AUC {lookup_auc:.3f}")
published

# %% [markdown]
# A model trained and tested on an image-level split gets this leak for free, on top of what it
# learns from the pixels: it can recognise the patient (anatomy, devices, scanner) and recall
# their findings. Its test AUC then says little about new patients, and comparisons with the
# published numbers are meaningless. That is why `cral_lib.data.ChestXray14` reads the official
# lists, carves its validation split out of `train_val` **by patient** too, and refuses lists
# that share a patient (Chapter 2 shows the error).

# %% [markdown]
# ## Boxes
# The release also has 984 boxes drawn by radiologists on 880 images, for 8 of the 14 classes.
# They are not used for training (CRAL is trained with image labels only), but they let us
# check *where* a model looks (Chapters 9 and 10). Coordinates are in the 1024 × 1024 frame of
# the released PNGs.

# %%
cell = 1024 / 7  # one position of the 7 x 7 conv5 map of a 224 px input, in the 1024 frame
boxes["area share"] = boxes["w"] * boxes["h"] / 1024**2
boxes["inside one cell"] = (boxes["w"] < cell) & (boxes["h"] < cell)
box_table = boxes.groupby("label").agg(
    boxes=("x", "size"),
    images=("Image Index", "nunique"),
    median_w=("w", "median"),
    median_h=("h", "median"),
    median_area_share=("area share", "median"),
    smaller_than_a_cell=("inside one cell", "mean"),
).sort_values("boxes", ascending=False)
boxed_labels = meta.set_index("Image Index").loc[boxes["Image Index"], "Finding Labels"].to_numpy()
agree = np.mean([lab in labels.split("|") for lab, labels in zip(boxes["label"], boxed_labels)])
print(f"{len(boxes)} boxes on {boxes['Image Index'].nunique()} images, {boxes['label'].nunique()} classes; "
      f"{(boxes.groupby('Image Index').size() > 1).sum()} images have more than one box")
print(f"boxes whose class is among the image's labels: {agree:.1%}")
box_table.round({"median_w": 0, "median_h": 0, "median_area_share": 3, "smaller_than_a_cell": 2})

# %% mystnb={"figure": {"caption": "The real ChestX-ray14 boxes: width against height in the 1024 x 1024 frame, one point per box, coloured by class (log scales; the dashed lines mark 7 x 7 cells of a 224 px input scaled to 1024 px).", "name": "fig-01-boxes"}}
fig, ax = plt.subplots(figsize=(7.5, 6))
for label in box_table.index:
    sel = boxes[boxes["label"] == label]
    ax.scatter(sel["w"], sel["h"], s=12, alpha=0.7, label=f"{label} ({len(sel)})")
for k in (1, 2, 4):
    ax.axvline(k * cell, color="grey", ls="--", lw=0.8)
    ax.axhline(k * cell, color="grey", ls="--", lw=0.8)
ax.set(xscale="log", yscale="log", xlabel="box width (px of 1024)", ylabel="box height (px of 1024)",
       title="box sizes in the 1024 x 1024 frame")
ax.legend(fontsize=8, markerscale=1.5)
fig.tight_layout()
plt.show()

# %% [markdown]
# Box sizes differ by class as the findings do: Cardiomegaly boxes cover the heart, Nodule
# boxes a small spot. The dashed lines mark one, two and four cells of the $7 \times 7$ `conv5`
# map that the attention of Eq. 2–3 works on (a 224 px input gives $7 \times 7$ positions, each
# covering $1024 / 7 \approx 146$ px of the original). The column `smaller_than_a_cell` of the
# table gives the share of each class's boxes that fit inside one cell: the small findings
# bound how precisely a $7 \times 7$ attention map can point at them.

# %% [markdown]
# ## The synthetic dataset
# The 42 GB of images cannot ship with the book, so every chapter runs on a **synthetic
# ChestX-ray14** made by `cral_lib.data.make_synthetic` (`cral synth`): a folder in the exact
# release layout, read by the *same* reader, `ChestXray14`, as a real download. Its rows are
# real: whole patients are drawn from the real metadata with all their images (renumbered from
# 90,000,001 so that no synthetic image poses as a real one), and split patient-disjointly in
# the official proportions. Its images are **phantoms** drawn by `cral_lib.synthetic.phantom`: a
# frontal chest film (body, real lung shapes from the masks that ship with `torchxrayvision`,
# heart, ribs, clavicles, diaphragm, vessel markings) with each finding drawn at an anatomically
# sensible place, and a box written for each localized finding. Results on it show that the
# code works and learns; they say nothing about clinical performance.

# %%
ds = ChestXray14(data_dir, "all")
synthetic = (data_dir / MARKER).is_file()
name = "synthetic" if synthetic else "this folder"  # how the tables below call it
print(ds, "(synthetic)" if synthetic else "(not a synthetic release)")
ds.frame.head()

# %% [markdown]
# `ChestXray14.split_report` counts images and patients per split and the overlaps between
# them. The validation split is a seeded share of the `train_val` *patients*; every overlap must
# be zero.

# %%
report = ChestXray14.split_report(data_dir)
assert not any(report["patient_overlap"].values()) and not any(report["image_overlap"].values())
display(pd.DataFrame({"images": report["images"], "patients": report["patients"]}).loc[["train", "val", "test"]].astype(int).T)
pd.DataFrame({"patients in both": report["patient_overlap"], "images in both": report["image_overlap"]}).T

# %% [markdown]
# Examples with their labels and boxes, the counterpart of the paper's Fig. 3: one image
# without a finding, and images chosen (with the seeded generator) so that as many different
# findings as possible appear.

# %%
candidates = np.random.default_rng(seed).permutation(len(ds))
picks, seen, have_normal = [], set(), False
for i in candidates:
    found = set(np.flatnonzero(ds.labels[i]))
    if (found - seen) or (not found and not have_normal):
        picks.append(int(i))
        seen |= found
        have_normal |= not found
    if len(picks) == n_examples:
        break
picks += [int(i) for i in candidates if i not in picks][: n_examples - len(picks)]  # when few findings exist
example_boxes = ds.boxes[ds.boxes["row"].isin(picks)].copy()
example_boxes["row"] = example_boxes["row"].map({r: k for k, r in enumerate(picks)})

# %% mystnb={"figure": {"caption": "Examples of the synthetic ChestX-ray14 with their labels (title) and boxes (green), the counterpart of the paper's Fig. 3. The images are procedural phantoms, not patient data.", "name": "fig-01-examples"}}
viz.plot_examples(
    [ds[i]["img"] for i in picks], ds.labels[picks], example_boxes,
    ncols=4, titles=[ds.names[i] for i in picks],
)
plt.show()

# %% [markdown]
# What each finding looks like in the phantoms (`cral_lib.synthetic.SIGNATURES`; the module's
# docstring describes the drawing in more detail). Each finding also gets a random severity,
# so some cases are small or faint, as on real films.

# %%
pd.Series(SIGNATURES, name="visual signature in the phantoms").rename_axis("finding").to_frame()

# %% [markdown]
# ### Every label shows
# A label whose finding cannot be seen in the image teaches a model nothing but noise, and a box
# around unchanged pixels scores a heatmap against nothing. So the generator checks each finding
# it draws: drawn **alone on the same patient's normal film** (the same image without findings:
# same anatomy, pose, exposure and noise), it must change a small region of the 256 px image by
# a few grey levels, the minimum contrast printed below. That is far below what a radiologist
# would call obvious (one pixel's detector noise is of the same order), so the findings stay
# hard to learn; it only rules out the ones that are not there at all, such as a nodule drawn
# behind the heart, where an opacity has no air to replace. A finding that falls short is
# drawn again, at a new place with the same severity, and if that fails too, with its severity
# raised step by step; one that still falls short keeps its label as deliberate label noise
# and gets no box. Each box is the bounding box of the pixels its finding changed by at least
# the minimum contrast. `cral synth` records the rule and what it took in `SYNTHETIC.json`:

# %%
if synthetic:
    shows = json.loads((data_dir / MARKER).read_text())["visibility"]
    rule = shows["rule"]
    print(f"rule: drawn alone on the patient's normal film, a finding changes at least {rule['min_pixels']} pixels "
          f"of the {rule['reference_size']} px image by {rule['min_contrast']} grey levels (of 255) or more; "
          f"else it is moved (up to {rule['moves']} new places), then raised (up to {rule['raises']} steps)")
    drawn = pd.DataFrame(shows["classes"]).T.astype(int).reindex([c for c in CLASSES if c in shows["classes"]])
    total = drawn.sum()
    for kind in ("moved", "raised", "hidden"):
        print(f"{kind}: {total[kind]} of {total['labelled']} labelled findings ({total[kind] / total['labelled']:.2%})")
    print(f"label noise (labels kept on images where the finding does not show): {len(shows['hidden'])} "
          f"({len(shows['hidden']) / total['labelled']:.2%} of the labelled findings)")
    display(drawn.rename(columns={"min contrast": f"least contrast reached by {rule['min_pixels']} pixels"}))
else:
    print("this folder is not a synthetic release: its labels are as its source gave them")

# %% [markdown]
# ### Label statistics: synthetic against real
# Because the rows are drawn from real patients, the synthetic labels follow the real
# distribution *in expectation*. A small dataset samples few patients, though, so rare classes
# get few images (possibly none) and patients with many follow-ups weigh heavily. The numbers
# side by side:

# %%
syn = label_stats(ds.frame)
side = pd.DataFrame({
    "real images": stats.counts,
    "real prevalence": stats.prevalence,
    f"{name} images": syn.counts,
    f"{name} prevalence": syn.prevalence,
})
side.loc[NO_FINDING] = [stats.no_finding, stats.no_finding / stats.n_images, syn.no_finding, syn.no_finding / syn.n_images]
side.style.format("{:.2%}", subset=[c for c in side.columns if "prevalence" in c]).format("{:,.0f}", subset=[c for c in side.columns if "images" in c])

# %%
def share_by_count(s):
    counts = s.labels_per_image.copy()
    counts.index = [str(k) if k < 4 else "4+" for k in counts.index]
    return counts.groupby(level=0, sort=False).sum() / s.n_images


def profile(frame, s):
    return {
        "images": f"{s.n_images:,}",
        "patients": f"{s.n_patients:,}",
        "images per patient": f"{s.n_images / s.n_patients:.2f}",
        "PA share": f"{(frame['View Position'] == 'PA').mean():.1%}",
        "female share": f"{(frame['Patient Gender'] == 'F').mean():.1%}",
        "median age": f"{frame['Patient Age'].median():.0f}",
        "images with more than one finding": f"{s.multi_label_fraction:.1%}",
        **{f"share with {k} findings": f"{v:.1%}" for k, v in share_by_count(s).items()},
    }


pd.DataFrame({"real": profile(meta, stats), name: profile(ds.frame, syn)}).fillna("")

# %% [markdown]
# And the co-occurrence structure: the correlation between the real and the synthetic
# co-occurrence counts of the 91 pairs of findings (off the diagonal), and how many of the
# pairs occur at all (a small dataset misses the rare pairs).

# %%
off = ~np.eye(len(CLASSES), dtype=bool)
real_co = stats.cooccurrence.to_numpy()[off]
syn_co = syn.cooccurrence.to_numpy()[off]
print(f"correlation of the pair counts, real vs {name}: {np.corrcoef(real_co, syn_co)[0, 1]:.2f}")
print(f"pairs seen together at least once: real {int((real_co > 0).sum() // 2)}, {name} {int((syn_co > 0).sum() // 2)} of 91")

# %% mystnb={"figure": {"caption": "Prevalence of each finding in the real ChestX-ray14 and in the dataset this chapter ran on (the synthetic one during the book build), with the share of images carrying 0, 1, 2, 3 or 4 and more findings on the right.", "name": "fig-01-synthetic-vs-real"}}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1.5, 1]})
pos = np.arange(len(CLASSES))
ax1.barh(pos + 0.2, stats.prevalence, height=0.4, label="real", color="tab:blue")
ax1.barh(pos - 0.2, syn.prevalence, height=0.4, label=name, color="tab:orange")
ax1.set_yticks(pos, [ABBREVIATIONS[c] for c in CLASSES])
ax1.invert_yaxis()
ax1.set(xlabel="prevalence (share of images)", title="prevalence per finding")
ax1.legend()
shares = pd.DataFrame({"real": share_by_count(stats), name: share_by_count(syn)}).fillna(0)
shares.plot.bar(ax=ax2, rot=0, color=["tab:blue", "tab:orange"])
ax2.set(yscale="log", xlabel="findings on the image", ylabel="share of images (log scale)", title="findings per image")
fig.tight_layout()
plt.show()

# %% [markdown]
# Boxes differ on purpose: the real release has boxes on a few hundred images of 8 classes,
# while the synthetic release boxes *every* localized finding that shows (all classes but the
# diffuse Edema and Emphysema), so that localization (Chapter 10) can be measured on every
# positive test image whose finding can be seen.

# %%
pd.DataFrame({
    "real boxes": boxes["label"].value_counts(),
    f"{name} boxes": ds.boxes["label"].value_counts(),
    f"{name} images with the finding": syn.counts,
}).reindex(list(CLASSES)).fillna(0).astype(int)

# %% [markdown]
# ## Summary
# - ChestX-ray14 has 112,120 images of 30,805 patients; many patients have many follow-ups.
# - The 14 findings are imbalanced over almost two orders of magnitude, more than half of the
#   images have none, and a notable share have several: a multi-label problem measured per
#   class by ROC AUC.
# - Findings co-occur in clinically sensible patterns, the motivation for one attention map per
#   class.
# - Splits must be patient-disjoint: a random image-level split puts most test patients in
#   training and lets a pixel-free lookup score well above chance.
# - The synthetic release has the real layout, real label statistics (up to sampling) and a
#   patient-disjoint split; every finding it labels changes its image by at least the minimum
#   contrast, and its boxes surround what changed. Chapter 2 turns such a folder into batches
#   on the device.
