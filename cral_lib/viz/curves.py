"""ROC curves (Fig. 4), AUCs with their bootstrap intervals, and training curves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from .common import TRUE_COLOR, abbr, fig_ax, grid

# matplotlib (and seaborn, ipywidgets where used) is imported inside the functions that draw:
# `import cral_lib.viz` must not load it or choose its backend (tests/test_viz.py checks both).


def _class_colors(n: int) -> list:
    from matplotlib import colormaps

    # the dark half of tab20 first, then the light half: neighbours in the legend differ
    cmap = colormaps["tab20"]
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    return [cmap(order[i % 20]) for i in range(n)]


def _auc_lookup(aucs: Any, name: str) -> float | None:
    if aucs is None:
        return None
    if isinstance(aucs, pd.DataFrame):
        aucs = aucs["auc"]
    try:
        v = aucs[name]
    except (KeyError, IndexError, TypeError):
        try:
            v = aucs[abbr(name)]
        except (KeyError, IndexError, TypeError):
            return None
    return None if v is None or pd.isna(v) else float(v)


def plot_roc_curves(
    roc: Mapping[str, pd.DataFrame],
    aucs: Any = None,
    ax: Any = None,
    title: str | None = "ROC curves",
    *,
    legend: bool = True,
) -> Any:
    """The ROC curves of all classes in one panel, AUC in the legend (the paper's Fig. 4).

    Args:
        roc: class -> DataFrame with ``fpr``, ``tpr`` (:func:`cral_lib.metrics.roc_curves`).
            An empty frame (an undefined class) is listed in the legend as undefined.
        aucs: class -> AUC (a Series, dict or :func:`cral_lib.metrics.auc_table`); None
            computes it from the curve (trapezoidal rule).
        ax: axes to draw in; a new figure when None.
        title: axes title.
        legend: draw the legend.

    Returns:
        The Figure.
    """
    own = ax is None
    fig, ax = fig_ax(ax, (6, 6))
    colors = _class_colors(len(roc))
    for color, (name, frame) in zip(colors, roc.items()):
        if frame is None or len(frame) == 0:
            ax.plot([], [], color=color, label=f"{name} (undefined)")
            continue
        fpr, tpr = frame["fpr"].to_numpy(), frame["tpr"].to_numpy()
        auc = _auc_lookup(aucs, name)
        if auc is None:
            auc = float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))
        ax.plot(fpr, tpr, color=color, lw=1.4, label=f"{name} ({auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(loc="lower right", fontsize=7, title="class (AUC)", title_fontsize=7, frameon=True)
    if own:
        fig.tight_layout()
    return fig


def plot_roc_grid(
    rocs: Mapping[str, Mapping[str, pd.DataFrame]],
    aucs: Mapping[str, Any] | None = None,
    *,
    ncols: int = 2,
    fig: Any = None,
) -> Any:
    """Several models' ROC curves side by side, one panel per model (Fig. 4 has four).

    Args:
        rocs: model name -> the dict of :func:`cral_lib.metrics.roc_curves`.
        aucs: model name -> its AUCs (see :func:`plot_roc_curves`).
        ncols: panels per row.
        fig: an existing figure to draw into.

    Returns:
        The Figure, one axes per model.
    """
    if not rocs:
        raise ConfigError("rocs is empty; give model name -> roc_curves(...) for at least one model.")
    fig, axes = grid(len(rocs), ncols, (5.0, 5.0), fig=fig)
    for ax, (name, roc) in zip(axes, rocs.items()):
        plot_roc_curves(roc, None if aucs is None else aucs.get(name), ax=ax, title=name)
    fig.tight_layout()
    return fig


def plot_auc_ci(
    table_with_ci: pd.DataFrame,
    ax: Any = None,
    *,
    paper: Any = None,
    paper_label: str = "paper (Table 1)",
    title: str | None = "AUC with 95% bootstrap intervals",
) -> Any:
    """Forest plot: per-class AUC with its confidence interval, the paper's values marked.

    Args:
        table_with_ci: :func:`cral_lib.metrics.bootstrap_auc` output (``auc``, ``ci_low``,
            ``ci_high``; index = classes plus ``"Mean"``).
        ax: axes to draw in; a new figure when None.
        paper: optional class -> AUC to mark, e.g. :func:`cral_lib.metrics.paper_row`.
        paper_label: legend label of those marks.
        title: axes title.

    Returns:
        The Figure.
    """
    missing = [c for c in ("auc", "ci_low", "ci_high") if c not in table_with_ci.columns]
    if missing:
        raise DataError(f"the table lacks {missing}; pass the output of metrics.bootstrap_auc.")
    t = table_with_ci
    n = len(t)
    own = ax is None
    fig, ax = fig_ax(ax, (6, 0.32 * n + 1.2))
    ypos = np.arange(n)[::-1].astype(float)
    is_mean = np.array([str(i) == "Mean" for i in t.index])
    ypos[is_mean] -= 0.5  # a little gap before the mean
    auc = t["auc"].to_numpy(dtype=float)
    lo = t["ci_low"].to_numpy(dtype=float)
    hi = t["ci_high"].to_numpy(dtype=float)
    err = np.vstack([auc - lo, hi - auc])
    ok = ~np.isnan(auc)
    ax.errorbar(auc[ok & ~is_mean], ypos[ok & ~is_mean], xerr=err[:, ok & ~is_mean], fmt="o", color="black",
                ecolor="grey", capsize=2, ms=4, label="this run")
    if (ok & is_mean).any():
        ax.errorbar(auc[ok & is_mean], ypos[ok & is_mean], xerr=err[:, ok & is_mean], fmt="D", color="black",
                    ecolor="grey", capsize=2, ms=5)
    for yy, name, good in zip(ypos, t.index, ok):
        if not good:
            ax.text(0.5, yy, "undefined", va="center", fontsize=7, color="grey")
    if paper is not None:
        xs, ys = [], []
        for yy, name in zip(ypos, t.index):
            v = _auc_lookup(paper, str(name))
            if v is not None:
                xs.append(v)
                ys.append(yy)
        ax.scatter(xs, ys, marker="x", color=TRUE_COLOR, s=30, zorder=3, label=paper_label)
    ax.set_yticks(ypos)
    ax.set_yticklabels([str(i) for i in t.index], fontsize=8)
    ax.axvline(0.5, color="lightgrey", lw=0.8, ls=":")
    ax.set_xlabel("AUC")
    ax.set_xlim(max(0.0, np.nanmin(np.append(lo, 0.5)) - 0.02), 1.0)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(loc="lower left", fontsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    if own:
        fig.tight_layout()
    return fig


def plot_training_curves(metrics: pd.DataFrame, x: str | None = None, *, fig: Any = None) -> Any:
    """Training curves: losses, validation AUC and learning rate, one panel each.

    Columns are grouped by name: any with "loss" in it, any with "auc" in it, and
    ``lr``/``learning_rate``. Rows where a column is empty (a metrics log mixes per-step and
    per-epoch rows) are skipped for that column.

    Args:
        metrics: the run's metrics (e.g. ``pd.read_json("metrics.jsonl", lines=True)``).
        x: the x column; default ``epoch`` if present, else ``step``, else the row number.
        fig: an existing figure to draw into.

    Returns:
        The Figure, one axes per group found.
    """
    if not isinstance(metrics, pd.DataFrame) or metrics.empty:
        raise DataError("metrics is empty; give the run's metrics as a DataFrame (one row per step or epoch).")
    if x is None:
        x = next((c for c in ("epoch", "step") if c in metrics.columns), None)
    elif x not in metrics.columns:
        raise ConfigError(f"x={x!r} is not a column of metrics ({list(metrics.columns)}).")
    xs = metrics[x] if x else pd.Series(np.arange(len(metrics)), index=metrics.index)
    numeric = [c for c in metrics.columns if c != x and pd.api.types.is_numeric_dtype(metrics[c])]
    groups = {
        "loss": [c for c in numeric if "loss" in c.lower()],
        "AUC": [c for c in numeric if "auc" in c.lower()],
        "learning rate": [c for c in numeric if c.lower() in ("lr", "learning_rate")],
    }
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        raise DataError(
            f"metrics has no loss, auc or lr column (columns: {list(metrics.columns)}); "
            "name them e.g. train_loss, val_auc, lr."
        )
    fig, axes = grid(len(groups), len(groups), (4.2, 3.2), fig=fig)
    for ax, (group, cols) in zip(axes, groups.items()):
        for col in cols:
            ok = metrics[col].notna()
            ax.plot(xs[ok], metrics.loc[ok, col], marker="o" if ok.sum() < 40 else None, ms=3, label=col,
                    drawstyle="steps-post" if group == "learning rate" else "default")
        ax.set_xlabel(x or "row")
        ax.set_title(group, fontsize=10)
        if group == "learning rate" and (metrics[cols].dropna() > 0).all().all():
            ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


__all__ = ['plot_auc_ci', 'plot_roc_curves', 'plot_roc_grid', 'plot_training_curves']
