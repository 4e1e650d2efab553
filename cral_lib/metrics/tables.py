"""Tables for the book: a run's AUCs laid out like the paper's Table 1, beside the paper's rows."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .. import CLASSES
from ..errors import ConfigError
from .paper import ABBREVIATIONS, MEAN, PAPER_TABLE1, T1_COLUMNS, paper_row


def _to_abbr(name: str) -> str:
    """Map a class name, its abbreviation or a spelling variant to the Table 1 column."""
    key = str(name)
    if key in T1_COLUMNS:
        return key
    if key in ABBREVIATIONS:
        return ABBREVIATIONS[key]
    norm = key.lower().replace(" ", "_")
    for full, abbr in ABBREVIATIONS.items():
        if norm == full.lower():
            return abbr
    if norm in ("infiltrate", "mean_auc", "average"):
        return "Infi" if norm == "infiltrate" else MEAN
    raise ConfigError(
        f"class {name!r} is not one of the 14 ChestX-ray14 findings ({', '.join(CLASSES)}) "
        f"nor their abbreviations ({', '.join(T1_COLUMNS)})."
    )


def _run_series(name: str, run: Any) -> tuple[pd.Series, str]:
    """A run's AUCs as a Series over the Table 1 columns, and a note on its mean."""
    if isinstance(run, pd.DataFrame):
        if "auc" not in run.columns:
            raise ConfigError(f"run {name!r}: a DataFrame must have an 'auc' column (as auc_table returns).")
        series = run["auc"]
    elif isinstance(run, Mapping):
        series = pd.Series(dict(run), dtype=float)
    elif isinstance(run, pd.Series):
        series = run
    else:
        raise ConfigError(
            f"run {name!r} is a {type(run).__name__}; pass a Series or dict class -> AUC, or an auc_table DataFrame."
        )
    values = {}
    for key, v in series.items():
        values[_to_abbr(key)] = float(v)
    row = pd.Series({col: values.get(col, math.nan) for col in T1_COLUMNS}, dtype=float)
    classes_only = row.iloc[:-1]
    n_def = int(classes_only.notna().sum())
    note = ""
    if MEAN not in values or math.isnan(values[MEAN]):
        if n_def:
            row[MEAN] = float(classes_only.mean())
    if isinstance(run, pd.DataFrame) and MEAN in run.index and "note" in run.columns and n_def < len(classes_only):
        note = str(run.loc[MEAN, "note"])
    elif n_def < len(classes_only):
        note = f"mean of {n_def} of {len(classes_only)} classes"
    return row, note


def results_table(
    runs: Mapping[str, Any] | None = None,
    include_paper: bool | str = True,
    *,
    cnn: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Lay runs beside the paper's Table 1: rows are methods, columns the 14 classes and the mean.

    Args:
        runs: name -> the run's AUCs: an :func:`auc_table` / :func:`bootstrap_auc` DataFrame
            (its ``auc`` column is used), or a Series/dict indexed by class names or Table 1
            abbreviations, optionally with ``"Mean"`` (computed over the classes present when
            missing).
        include_paper: True for every row of Table 1, ``"cral"`` for the paper's four CRAL
            rows only, False for none.
        cnn: optional name -> backbone label (``"R-50"``) for the ``CNN`` column of the runs.

    Returns:
        A DataFrame with a two-level index (``source``: ``"paper"`` or ``"this run"``;
        ``method``: e.g. ``"Wang et al. [37] (R-50)"`` or the run's name) and columns ``CNN``,
        Atel ... Hern, ``Mean`` and ``note`` (what a run's mean covers, when not all 14 classes).
        The paper's numbers are quoted from Guan & Huang (2020), Table 1.
    """
    rows, index = [], []
    if include_paper:
        table = PAPER_TABLE1
        if include_paper == "cral":
            table = table[table["reference"] == "CRAL"]
        elif include_paper is not True:
            raise ConfigError(f"include_paper={include_paper!r}: use True, False or 'cral'.")
        for _, r in table.iterrows():
            ref = "" if r["reference"] == "CRAL" else f" {r['reference']}"
            index.append(("paper", f"{r['method']}{ref} ({r['CNN']})"))
            rows.append({"CNN": r["CNN"], **{c: r[c] for c in T1_COLUMNS}, "note": ""})
    for name, run in (runs or {}).items():
        series, note = _run_series(str(name), run)
        index.append(("this run", str(name)))
        rows.append({"CNN": (cnn or {}).get(name, ""), **series.to_dict(), "note": note})
    out = pd.DataFrame(rows, columns=["CNN", *T1_COLUMNS, "note"])
    out.index = pd.MultiIndex.from_tuples(index, names=["source", "method"]) if index else pd.MultiIndex.from_tuples(
        [], names=["source", "method"]
    )
    return out


def paper_comparison(run: Any, backbone: str = "resnet50", attention: str = "att1") -> pd.DataFrame:
    """One run's AUCs next to the paper's CRAL row of the same backbone and attention.

    Args:
        run: an :func:`auc_table` DataFrame, or a Series/dict class -> AUC.
        backbone: ``"resnet50"`` or ``"densenet121"`` (which paper row to compare with).
        attention: ``"att1"`` or ``"att2"``.

    Returns:
        A DataFrame indexed by the class names plus ``"Mean"`` with columns ``this run``,
        ``paper`` and ``difference`` (this run - paper).
    """
    series, _ = _run_series("run", run)
    paper = paper_row(backbone, attention)
    mine = pd.Series(series.to_numpy(), index=paper.index)
    return pd.DataFrame({"this run": mine, "paper": paper, "difference": mine - paper})


def _numeric_columns(df: pd.DataFrame) -> list:
    return [c for c in df.columns if pd.api.types.is_float_dtype(df[c])]


def format_table(
    df: pd.DataFrame,
    decimals: int = 3,
    *,
    highlight: str | None = "max",
    columns: Sequence | None = None,
    style: str = "styler",
) -> Any:
    """Format an AUC table for display: 3 decimals and the best value of each column in bold.

    Args:
        df: any table of this module (:func:`results_table`, :func:`auc_table`, ...).
        decimals: decimals of the float columns.
        highlight: ``"max"`` to bold the largest value of each float column (as the paper's
            Table 1 does), ``"min"``, or None.
        columns: which columns to highlight (default: every float column except counts).
        style: ``"styler"`` for a :class:`pandas.io.formats.style.Styler` (notebooks, HTML) or
            ``"markdown"`` for a GitHub-flavoured markdown string (see :func:`table_to_markdown`).

    Returns:
        A Styler or a markdown string.
    """
    if style == "markdown":
        return table_to_markdown(df, decimals, highlight=highlight, columns=columns)
    if style != "styler":
        raise ConfigError(f"style={style!r}: use 'styler' or 'markdown'.")
    floats = _numeric_columns(df)
    cols = list(columns) if columns is not None else [c for c in floats if c not in ("se",)]
    styler = df.style.format({c: f"{{:.{decimals}f}}" for c in floats}, na_rep="–")
    if highlight in ("max", "min"):
        fn = styler.highlight_max if highlight == "max" else styler.highlight_min
        styler = fn(subset=cols, props="font-weight: bold;", axis=0)
    elif highlight is not None:
        raise ConfigError(f"highlight={highlight!r}: use 'max', 'min' or None.")
    return styler


def table_to_markdown(
    df: pd.DataFrame, decimals: int = 3, *, highlight: str | None = "max", columns: Sequence | None = None
) -> str:
    """A GitHub-flavoured markdown table (no extra dependency), best values in bold.

    Args:
        df: the table; a MultiIndex is written as one column per level.
        decimals: decimals of the float columns; NaN is written as an en dash.
        highlight: ``"max"``, ``"min"`` or None (see :func:`format_table`).
        columns: the columns to highlight (default: every float column).

    Returns:
        The markdown text, one line per row.
    """
    floats = _numeric_columns(df)
    cols = set(columns) if columns is not None else set(floats)
    best: dict = {}
    if highlight in ("max", "min"):
        for c in cols & set(floats):
            v = df[c].max() if highlight == "max" else df[c].min()
            best[c] = None if pd.isna(v) else round(float(v), decimals)
    elif highlight is not None:
        raise ConfigError(f"highlight={highlight!r}: use 'max', 'min' or None.")
    names = [str(n) if n is not None else "" for n in df.index.names]
    header = [*names, *[str(c) for c in df.columns]]
    rule = ["---"] * len(names) + [":---:" if c in floats else "---" for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for idx, row in df.iterrows():
        keys = list(idx) if isinstance(idx, tuple) else [idx]
        cells = [str(k) for k in keys]
        for c in df.columns:
            v = row[c]
            if c in floats:
                if pd.isna(v):
                    text = "–"
                else:
                    text = f"{float(v):.{decimals}f}"
                    if c in best and best[c] is not None and round(float(v), decimals) == best[c]:
                        text = f"**{text}**"
            else:
                text = "" if (v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA) else str(v)
            cells.append(text.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["format_table", "paper_comparison", "results_table", "table_to_markdown"]
