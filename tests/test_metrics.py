"""Tests of cral_lib.metrics: AUC against scikit-learn, the bootstrap, the paper's tables."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from cral_lib import CLASSES, metrics
from cral_lib.errors import ConfigError, DataError
from cral_lib.metrics import bootstrap

SEED_TEXT = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "000_053b1262a9278dbb.txt"


def _data(n=400, c=14, seed=0, signal=1.0):
    rng = np.random.default_rng(seed)
    prevalence = np.linspace(0.05, 0.4, c)
    y = (rng.random((n, c)) < prevalence).astype(int)
    s = rng.normal(size=(n, c)) + signal * y
    return y, s


# ----------------------------------------------------------------------------- rank AUC


def test_rank_auc_equals_sklearn_on_many_random_cases_with_ties():
    rng = np.random.default_rng(123)
    for case in range(150):
        n = int(rng.integers(2, 80))
        y = rng.integers(0, 2, size=(n, 3))
        if case % 3 == 0:
            s = rng.integers(0, 4, size=(n, 3)).astype(float)  # many ties
        elif case % 3 == 1:
            s = rng.normal(size=(n, 3)).astype(np.float32).astype(float)
        else:
            s = np.round(rng.random((n, 3)), 1)
        got = metrics.rank_auc(y, s)
        for c in range(3):
            if 0 < y[:, c].sum() < n:
                assert got[c] == pytest.approx(roc_auc_score(y[:, c], s[:, c]), abs=1e-12)
            else:
                assert np.isnan(got[c])


def test_rank_auc_with_resample_weights_equals_sklearn_on_the_resample():
    rng = np.random.default_rng(7)
    for _ in range(40):
        n = int(rng.integers(5, 60))
        y = rng.integers(0, 2, size=(n, 2))
        s = rng.integers(0, 6, size=(n, 2)).astype(float)
        idx = rng.integers(0, n, size=(5, n))
        counts = np.stack([np.bincount(i, minlength=n) for i in idx])
        got = metrics.rank_auc(y, s, counts)
        assert got.shape == (5, 2)
        for b in range(5):
            for c in range(2):
                yy, ss = y[idx[b], c], s[idx[b], c]
                if 0 < yy.sum() < n:
                    assert got[b, c] == pytest.approx(roc_auc_score(yy, ss), abs=1e-12)
                else:
                    assert np.isnan(got[b, c])


# ----------------------------------------------------------------------------- auc_table


def test_auc_table_matches_sklearn_and_counts():
    y, s = _data()
    t = metrics.auc_table(y, s)
    assert list(t.index) == [*CLASSES, "Mean"]
    assert list(t.columns) == ["auc", "n_pos", "n_neg", "defined", "n_classes", "note"]
    for c, name in enumerate(CLASSES):
        assert t.loc[name, "auc"] == pytest.approx(roc_auc_score(y[:, c], s[:, c]))
        assert t.loc[name, "n_pos"] == y[:, c].sum()
        assert t.loc[name, "n_neg"] == len(y) - y[:, c].sum()
    assert t.loc["Mean", "auc"] == pytest.approx(t["auc"].iloc[:-1].mean())
    assert t.loc["Mean", "n_classes"] == 14
    assert t.attrs["n_images"] == len(y)


def test_auc_table_reports_undefined_classes_and_strict_mean():
    y, s = _data(n=80)
    y[:, 13] = 0  # Hernia: no positive
    y[:, 12] = 1  # Pleural_Thickening: no negative
    t = metrics.auc_table(y, s)
    assert np.isnan(t.loc["Hernia", "auc"]) and not t.loc["Hernia", "defined"]
    assert "no positive" in t.loc["Hernia", "note"]
    assert "no negative" in t.loc["Pleural_Thickening", "note"]
    assert t.loc["Mean", "n_classes"] == 12
    assert "12 of 14" in t.loc["Mean", "note"]
    assert t.loc["Mean", "auc"] == pytest.approx(t["auc"].iloc[:12].mean())
    strict = metrics.auc_table(y, s, strict=True)
    assert np.isnan(strict.loc["Mean", "auc"])
    assert "strict" in strict.loc["Mean", "note"]


def test_auc_table_accepts_torch_and_other_class_lists():
    torch = pytest.importorskip("torch")
    y, s = _data(n=60, c=3)
    t = metrics.auc_table(torch.tensor(y), torch.tensor(s, dtype=torch.float16), classes=["a", "b", "c"])
    assert list(t.index) == ["a", "b", "c", "Mean"]
    half = torch.tensor(s[:, 0], dtype=torch.float16).float()
    assert t.loc["a", "auc"] == pytest.approx(roc_auc_score(y[:, 0], half))


@pytest.mark.parametrize(
    "y_mod, s_mod, err, words",
    [
        (lambda y: y * 2, None, DataError, "only 0 and 1"),
        (lambda y: y[:-1], None, DataError, "same images"),
        (None, lambda s: np.where(np.arange(s.size).reshape(s.shape) == 5, np.nan, s), DataError, "NaN"),
        (lambda y: y[:, :3], lambda s: s[:, :3], ConfigError, "one name per column"),
    ],
)
def test_auc_table_errors_name_the_value_and_the_fix(y_mod, s_mod, err, words):
    y, s = _data(n=30)
    y = y_mod(y) if y_mod else y
    s = s_mod(s) if s_mod else s
    with pytest.raises(err, match=words):
        metrics.auc_table(y, s)


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_seeded_and_chunk_independent(monkeypatch):
    y, s = _data(n=300)
    a = metrics.bootstrap_auc(y, s, n_boot=60, seed=3)
    b = metrics.bootstrap_auc(y, s, n_boot=60, seed=3)
    pd.testing.assert_frame_equal(a, b)
    monkeypatch.setattr(bootstrap, "_chunk_size", lambda n: 7)
    c = metrics.bootstrap_auc(y, s, n_boot=60, seed=3)
    pd.testing.assert_frame_equal(a, c)
    d = metrics.bootstrap_auc(y, s, n_boot=60, seed=4)
    assert not np.allclose(a["ci_low"], d["ci_low"])


def test_bootstrap_resamples_equal_sklearn_on_the_drawn_images(monkeypatch):
    y, s = _data(n=120, c=4)
    s = np.round(s, 1)  # with ties
    monkeypatch.setattr(bootstrap, "_chunk_size", lambda n: 1000)
    table, samples = metrics.bootstrap_auc(y, s, n_boot=20, seed=11, classes=list("abcd"), return_samples=True)
    idx = np.random.default_rng(11).integers(0, len(y), size=(20, len(y)))
    for b in (0, 7, 19):
        expected = [roc_auc_score(y[idx[b], c], s[idx[b], c]) for c in range(4)]
        np.testing.assert_allclose(samples.iloc[b, :4].to_numpy(), expected, atol=1e-12)
        assert samples.iloc[b]["Mean"] == pytest.approx(np.mean(expected))
    lo, hi = np.quantile(samples["a"], [0.025, 0.975])
    assert table.loc["a", "ci_low"] == pytest.approx(lo) and table.loc["a", "ci_high"] == pytest.approx(hi)
    assert (table["ci_low"] <= table["auc"]).all() and (table["auc"] <= table["ci_high"]).all()
    assert table.attrs["n_boot"] == 20 and table.attrs["method"] == "percentile"


def test_bootstrap_skips_resamples_without_a_positive():
    y, s = _data(n=100, c=3)
    y[:, 0] = np.arange(100) % 2  # balanced: never skipped
    y[:, 2] = 0
    y[:2, 2] = 1  # two positives: many resamples miss both
    y[:, 1] = 0  # no positive at all
    t = metrics.bootstrap_auc(y, s, n_boot=200, seed=0, classes=list("abc"))
    skipped = t.loc["c", "n_boot_skipped"]
    assert 0 < skipped < 200 and t.loc["c", "n_boot_valid"] == 200 - skipped
    assert t.loc["b", "n_boot_valid"] == 0 and np.isnan(t.loc["b", "ci_low"])
    assert t.loc["Mean", "n_boot_valid"] == 200 - skipped  # mean over a and c


def test_bootstrap_argument_errors():
    y, s = _data(n=20)
    with pytest.raises(ConfigError, match="n_boot"):
        metrics.bootstrap_auc(y, s, n_boot=0)
    with pytest.raises(ConfigError, match="ci"):
        metrics.bootstrap_auc(y, s, ci=95)


def test_bootstrap_at_test_split_size_is_fast():
    # 25,596 images: the official ChestX-ray14 test split; 200 of the usual 1,000 resamples
    y, s = _data(n=25596, signal=0.8)
    t0 = time.perf_counter()
    t = metrics.bootstrap_auc(y, s, n_boot=200)
    elapsed = time.perf_counter() - t0
    assert elapsed < 20, f"bootstrap took {elapsed:.1f} s"
    assert (t["ci_high"] - t["ci_low"]).max() < 0.05


def test_paired_bootstrap_difference_ci_and_p_value():
    y, s = _data(n=400, signal=0.6)
    rng = np.random.default_rng(1)
    better = s + 1.0 * y + 0.1 * rng.normal(size=s.shape)
    t = metrics.paired_bootstrap(y, s, better, n_boot=300, seed=5)
    ta, tb = metrics.auc_table(y, s), metrics.auc_table(y, better)
    np.testing.assert_allclose(t["diff"], tb["auc"] - ta["auc"])
    assert (t["ci_low"] > 0).all()
    assert (t["p_value"] <= 2 / 301 + 1e-12).all()
    same = metrics.paired_bootstrap(y, s, s, n_boot=100, seed=5)
    assert (same["diff"] == 0).all() and (same["p_value"] == 1).all()


def test_paired_bootstrap_uses_the_same_resamples_for_both_models():
    y, s = _data(n=150, c=3)
    s2 = s + np.random.default_rng(2).normal(size=s.shape)
    _, sa = metrics.bootstrap_auc(y, s, n_boot=80, seed=9, classes=list("abc"), return_samples=True)
    _, sb = metrics.bootstrap_auc(y, s2, n_boot=80, seed=9, classes=list("abc"), return_samples=True)
    t = metrics.paired_bootstrap(y, s, s2, n_boot=80, seed=9, classes=list("abc"))
    d = sb - sa
    for col in ["a", "b", "c", "Mean"]:
        lo, hi = np.nanquantile(d[col], [0.025, 0.975])
        assert t.loc[col, "ci_low"] == pytest.approx(lo) and t.loc[col, "ci_high"] == pytest.approx(hi)


# ----------------------------------------------------------------------------- ROC


def test_roc_curves_match_sklearn_and_flag_undefined_classes():
    y, s = _data(n=200, c=3)
    y[:, 2] = 0
    curves = metrics.roc_curves(y, s, classes=list("abc"))
    fpr, tpr, thr = roc_curve(y[:, 0], s[:, 0])
    np.testing.assert_allclose(curves["a"]["fpr"], fpr)
    np.testing.assert_allclose(curves["a"]["tpr"], tpr)
    np.testing.assert_allclose(curves["a"]["threshold"], thr)
    assert list(curves["a"].columns) == ["fpr", "tpr", "threshold"]
    assert curves["c"].empty and "no positive" in curves["c"].attrs["note"]


# ----------------------------------------------------------------------------- the paper's tables


def test_classes_follow_the_column_order_of_table1():
    assert list(metrics.ABBREVIATIONS) == list(CLASSES)
    assert list(metrics.ABBREVIATIONS.values()) == [
        "Atel", "Card", "Effu", "Infi", "Mass", "Nodu", "Pne1", "Pne2", "Cons", "Edem", "Emph", "Fibr", "PT", "Hern"
    ]
    assert metrics.ABBREVIATIONS["Pneumonia"] == "Pne1" and metrics.ABBREVIATIONS["Pneumothorax"] == "Pne2"
    t1 = metrics.PAPER_TABLE1
    assert list(t1.columns) == ["method", "reference", "CNN", *metrics.ABBREVIATIONS.values(), "Mean"]


def test_paper_table1_cells():
    t1 = metrics.PAPER_TABLE1
    assert len(t1) == 11
    wang = t1[t1["reference"] == "[37]"].iloc[0]
    assert (wang["CNN"], wang["Atel"], wang["Hern"], wang["Mean"]) == ("R-50", 0.700, 0.872, 0.745)
    d121_att1 = t1[(t1["method"] == "CRAL (att1)") & (t1["CNN"] == "D-121")].iloc[0]
    assert (d121_att1["Pne2"], d121_att1["Hern"], d121_att1["Mean"]) == (0.866, 0.918, 0.816)
    assert t1[t1["reference"] == "[34]"].iloc[0]["Card"] == 0.887
    row = metrics.paper_row("resnet50", "att1")
    assert row["Fibrosis"] == 0.832 and row["Consolidation"] == 0.758 and row["Mean"] == 0.814


@pytest.mark.skipif(not SEED_TEXT.exists(), reason="the paper's text is not beside the repository")
def test_paper_table1_equals_the_seed_text_cell_by_cell():
    text = SEED_TEXT.read_text(encoding="utf-8")
    block = text[text.index("Method\tCNN\tAtel"):]
    lines = block.splitlines()[1:12]
    t1 = metrics.PAPER_TABLE1
    for line, (_, row) in zip(lines, t1.iterrows()):
        cells = [re.sub(r"</?b>", "", c) for c in line.split("\t")]
        assert cells[1] == row["CNN"]
        assert cells[0].startswith(row["method"].split(" [")[0])
        assert [float(v) for v in cells[2:]] == row.iloc[3:].tolist()
    # the footnote lists the classes in the order of the columns
    foot = re.search(r"The 14 pathologies are (.+?), respectively", text).group(1)
    names = [n.strip().replace(" ", "_") for n in re.split(r",| and ", foot) if n.strip()]
    assert names == list(CLASSES)


@pytest.mark.skipif(not SEED_TEXT.exists(), reason="the paper's text is not beside the repository")
def test_paper_table2_equals_the_seed_text():
    text = SEED_TEXT.read_text(encoding="utf-8")
    for method in metrics.PAPER_TABLE2.index:
        line = next(line for line in text.splitlines() if line.startswith(method + "\t"))
        values = [float(re.sub(r"</?b>", "", c)) for c in line.split("\t")[1:]]
        assert values == metrics.PAPER_TABLE2.loc[method].tolist()


def test_paper_table2_and_paper_auc():
    t2 = metrics.PAPER_TABLE2
    assert list(t2.index) == ["CRAL", "w/o category", "w/o residual", "w/o attention"]
    assert list(t2.columns) == ["R-50 att1", "R-50 att2", "D-121 att1", "D-121 att2"]
    assert t2.loc["CRAL", "R-50 att1"] == 0.8136 and t2.loc["w/o residual", "D-121 att2"] == 0.8073
    assert metrics.paper_auc("densenet121", "att2", "no_category") == 0.8136
    assert metrics.paper_auc("resnet50", "att1", "no_attention") == 0.8034
    with pytest.raises(ConfigError, match="variant"):
        metrics.paper_auc(variant="no_such")
    with pytest.raises(ConfigError, match="backbone"):
        metrics.paper_auc(backbone="vgg16")


def test_results_table_lays_runs_beside_the_paper():
    y, s = _data(n=200)
    y[:, 13] = 0
    run = metrics.auc_table(y, s)
    table = metrics.results_table({"R-50 att1 (synthetic)": run}, cnn={"R-50 att1 (synthetic)": "R-50"})
    assert table.index.names == ["source", "method"]
    assert list(table.columns) == ["CNN", *metrics.ABBREVIATIONS.values(), "Mean", "note"]
    assert (table.index.get_level_values("source") == "paper").sum() == 11
    mine = table.loc[("this run", "R-50 att1 (synthetic)")]
    assert mine["Atel"] == pytest.approx(run.loc["Atelectasis", "auc"])
    assert np.isnan(mine["Hern"]) and mine["Mean"] == pytest.approx(run.loc["Mean", "auc"])
    assert "13 of 14" in mine["note"]
    assert table.loc[("paper", "Wang et al. [37] (R-50)"), "Mean"] == 0.745
    only_cral = metrics.results_table({"abbr": pd.Series({"Atel": 0.7, "Pne1": 0.6})}, include_paper="cral")
    assert len(only_cral) == 5
    assert only_cral.loc[("this run", "abbr"), "Mean"] == pytest.approx(0.65)
    with pytest.raises(ConfigError, match="not one of the 14"):
        metrics.results_table({"x": {"Lung cancer": 0.5}})


def test_format_table_markdown_and_styler():
    table = metrics.results_table({"run": metrics.paper_row("resnet50", "att2")}, include_paper="cral")
    md = metrics.format_table(table, style="markdown")
    lines = md.splitlines()
    assert lines[0].startswith("| source | method | CNN | Atel")
    assert len(lines) == 2 + len(table)
    assert "**0.918**" in md  # the best Hernia value, as in the paper's bold
    assert "0.7770" not in md and "0.777" in md
    styler = metrics.format_table(table)
    html = styler.to_html()
    assert "font-weight: bold" in html and "0.918" in html


def test_paper_comparison():
    cmp_ = metrics.paper_comparison(metrics.paper_row("densenet121", "att1"), "densenet121", "att1")
    assert list(cmp_.columns) == ["this run", "paper", "difference"]
    assert (cmp_["difference"] == 0).all()
