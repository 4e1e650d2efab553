"""Evaluation: per-class ROC AUC, bootstrap confidence intervals, ROC data, the paper's tables.

The paper (Guan & Huang, Pattern Recognit. Lett. 130 (2020) 259-266, Section 4.1) measures
each of the 14 findings by the area under its ROC curve and reports the mean over the 14
classes (Table 1, Table 2). This module computes the same numbers for a run and adds what a
reader needs to judge them:

- :func:`auc_table`: per-class AUC (scikit-learn), positives, negatives and the mean. A class
  without a positive or without a negative example has no AUC; it is reported as undefined
  (``NaN``, ``defined == False``) and the mean row says over how many classes it was taken.
- :func:`bootstrap_auc`: percentile confidence intervals from resampling images with
  replacement, or patients (``groups``: the cluster bootstrap, all of a drawn patient's images). It uses a rank (Mann-Whitney) form of the AUC vectorised over resamples, so
  1,000 resamples of the 25,596-image test split take seconds (see :func:`rank_auc`).
- :func:`paired_bootstrap`: the difference of two models' AUCs on the *same* resampled images,
  with its interval and a two-sided bootstrap p-value.
- :func:`class_table`, :data:`MIN_POSITIVES`: the per-class table of the book: test positives
  of each class, the classes under the minimum flagged and left out of the mean, and the
  paper's mean of all classes beside it, marked.
- :func:`seed_summary`, :func:`seed_difference`: a result over several training seeds (mean,
  SD, Student's t interval over the seeds) and the seed-level interval of a paired difference.
- :func:`roc_curves`: the ROC points of each class (Fig. 4 of the paper).
- :func:`choose_thresholds`, :func:`operating_points`, :func:`normal_false_positives`: one
  threshold per class chosen on the validation split (Youden's J, or a target sensitivity), and
  the sensitivity, specificity and PPV it gives on another split, with 95% Wilson intervals.
- :data:`PAPER_TABLE1`, :data:`PAPER_TABLE2`: the paper's published numbers, cited as such,
  and :func:`results_table` / :func:`format_table` to lay a run beside them.

Inputs are ``(N, C)`` arrays (numpy, pandas or torch on any device): ``y_true`` holds 0/1
labels, ``y_score`` any real scores (probabilities or logits: the AUC only uses their order).
This module does not import torch or matplotlib.

One module per job: ``paper.py`` (the paper's numbers), ``auc.py`` (AUC and its input checks),
``bootstrap.py`` (intervals and paired tests), ``classes.py`` (the rare classes' rule),
``seeds.py`` (training-seed noise), ``operating.py`` (thresholds), ``tables.py`` (a run beside the paper). The names
below are imported on first use (scikit-learn loads with ``auc.py``).
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "ABBREVIATIONS": ".paper",
    "MEAN": ".paper",
    "PAPER_REFERENCES": ".paper",
    "PAPER_TABLE1": ".paper",
    "PAPER_TABLE2": ".paper",
    "paper_auc": ".paper",
    "paper_row": ".paper",
    "auc_table": ".auc",
    "rank_auc": ".auc",
    "roc_curves": ".auc",
    "bootstrap_auc": ".bootstrap",
    "paired_bootstrap": ".bootstrap",
    "MIN_POSITIVES": ".classes",
    "MEAN_ALL": ".classes",
    "MEAN_COUNTED": ".classes",
    "class_table": ".classes",
    "counted_classes": ".classes",
    "rule_text": ".classes",
    "SeedSummary": ".seeds",
    "seed_difference": ".seeds",
    "seed_summary": ".seeds",
    "choose_thresholds": ".operating",
    "operating_points": ".operating",
    "normal_false_positives": ".operating",
    "format_table": ".tables",
    "paper_comparison": ".tables",
    "results_table": ".tables",
    "table_to_markdown": ".tables",
})
