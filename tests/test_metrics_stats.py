"""The cluster (patient) bootstrap against a slow literal one, the rare classes' rule, and the
training-seed summaries against a literal computation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cral_lib import metrics
from cral_lib.errors import ConfigError, DataError
from cral_lib.metrics import bootstrap


def _patients(n_patients=60, c=3, seed=0, per=(1, 5), jitter=1.0):
    """Images of patients: each patient has 1-5 images sharing its labels and a patient-level score."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(per[0], per[1] + 1, n_patients)
    pid = np.repeat(rng.permutation(1000 + np.arange(n_patients)), sizes)  # IDs not in image order
    y_pat = (rng.random((n_patients, c)) < np.linspace(0.2, 0.5, c)).astype(int)
    s_pat = rng.normal(size=(n_patients, c)) + y_pat
    code = np.searchsorted(np.unique(pid), pid)
    # labels and scores follow the patient (by its position in the ID order)
    y = y_pat[code]
    s = s_pat[code] + jitter * rng.normal(size=(len(pid), c))
    return y, np.round(s, 1), pid  # rounded: with ties


def _literal_cluster_bootstrap(y, s, groups, n_boot, seed, ci=0.95):
    """One resample at a time: draw patients, take their images, sklearn's AUC; percentiles."""
    rng = np.random.default_rng(seed)
    ids = np.unique(groups)
    images_of = [np.flatnonzero(groups == g) for g in ids]
    aucs = np.full((n_boot, y.shape[1]), np.nan)
    for b in range(n_boot):
        drawn = rng.integers(0, len(ids), size=len(ids))
        rows = np.concatenate([images_of[g] for g in drawn])
        for c in range(y.shape[1]):
            if 0 < y[rows, c].sum() < len(rows):
                aucs[b, c] = roc_auc_score(y[rows, c], s[rows, c])
    mean = aucs.mean(axis=1)  # NaN when a class is undefined in the resample
    bounds = [np.quantile(v[~np.isnan(v)], [(1 - ci) / 2, (1 + ci) / 2]) for v in [*aucs.T, mean]]
    return aucs, mean, np.array(bounds)


def test_cluster_bootstrap_equals_a_slow_literal_one(monkeypatch):
    y, s, pid = _patients()
    monkeypatch.setattr(bootstrap, "_chunk_size", lambda n: 7)  # chunks do not change the draws
    table, samples = metrics.bootstrap_auc(y, s, n_boot=60, seed=5, classes=list("abc"), groups=pid,
                                           return_samples=True)
    aucs, mean, bounds = _literal_cluster_bootstrap(y, s, pid, 60, 5)
    np.testing.assert_allclose(samples[list("abc")].to_numpy(), aucs, atol=1e-12)
    np.testing.assert_allclose(samples["Mean"].to_numpy(), mean, atol=1e-12)
    np.testing.assert_allclose(table[["ci_low", "ci_high"]].to_numpy(), bounds, atol=1e-12)
    assert table.attrs["resample"] == "patients" and table.attrs["n_groups"] == 60
    assert table.attrs["n_images"] == len(y)


def test_paired_cluster_bootstrap_uses_the_same_patients_for_both_models():
    y, s, pid = _patients(seed=1)
    s2 = s + np.random.default_rng(2).normal(size=s.shape)
    _, sa = metrics.bootstrap_auc(y, s, n_boot=80, seed=9, classes=list("abc"), groups=pid, return_samples=True)
    _, sb = metrics.bootstrap_auc(y, s2, n_boot=80, seed=9, classes=list("abc"), groups=pid, return_samples=True)
    t = metrics.paired_bootstrap(y, s, s2, n_boot=80, seed=9, classes=list("abc"), groups=pid)
    d = sb - sa
    for col in ["a", "b", "c", "Mean"]:
        lo, hi = np.nanquantile(d[col], [0.025, 0.975])
        assert t.loc[col, "ci_low"] == pytest.approx(lo) and t.loc[col, "ci_high"] == pytest.approx(hi)
    assert t.attrs["resample"] == "patients"


def test_one_patient_per_image_gives_the_image_bootstrap():
    y, s, _ = _patients(seed=3)
    plain = metrics.bootstrap_auc(y, s, n_boot=50, seed=2, classes=list("abc"))
    same = metrics.bootstrap_auc(y, s, n_boot=50, seed=2, classes=list("abc"), groups=np.arange(len(y)))
    pd.testing.assert_frame_equal(plain, same)
    assert plain.attrs["resample"] == "images" and same.attrs["resample"] == "patients"
    a = metrics.paired_bootstrap(y, s, -s, n_boot=50, seed=2, classes=list("abc"))
    b = metrics.paired_bootstrap(y, s, -s, n_boot=50, seed=2, classes=list("abc"), groups=np.arange(len(y)))
    pd.testing.assert_frame_equal(a, b)


def test_near_identical_images_of_a_patient_widen_the_interval():
    # 150 patients with 5 films each that differ by a little noise: 750 images but 150 patients'
    # worth of evidence. Resampling images treats them as 750 independent ones.
    y, s, pid = _patients(n_patients=150, c=2, seed=4, per=(5, 5), jitter=0.02)
    images = metrics.bootstrap_auc(y, s, n_boot=400, seed=0, classes=["a", "b"])
    patients = metrics.bootstrap_auc(y, s, n_boot=400, seed=0, classes=["a", "b"], groups=pid)
    width = lambda t: (t["ci_high"] - t["ci_low"]).to_numpy()  # noqa: E731
    assert (width(patients) > 1.6 * width(images)).all()  # about sqrt(5) wider
    # a second model that differs from the first patient by patient: its films move together too
    code = np.searchsorted(np.unique(pid), pid)
    s2 = s + np.random.default_rng(1).normal(0, 0.5, (150, 2))[code]
    same = metrics.paired_bootstrap(y, s, s2, n_boot=400, seed=0, classes=["a", "b"])
    same_p = metrics.paired_bootstrap(y, s, s2, n_boot=400, seed=0, classes=["a", "b"], groups=pid)
    assert (width(same_p) > 1.6 * width(same)).all()


def test_groups_errors_name_the_value_and_the_fix():
    y, s, pid = _patients()
    with pytest.raises(DataError, match=f"length {len(y)}"):
        metrics.bootstrap_auc(y, s, n_boot=5, classes=list("abc"), groups=pid[:-1])
    bad = pid.astype(float)
    bad[3] = np.nan
    with pytest.raises(DataError, match="1 missing IDs"):
        metrics.paired_bootstrap(y, s, s, n_boot=5, classes=list("abc"), groups=bad)
    strings = np.array([f"p{p}" for p in pid])  # string IDs work as well as numbers
    a = metrics.bootstrap_auc(y, s, n_boot=20, seed=1, classes=list("abc"), groups=strings)
    b = metrics.bootstrap_auc(y, s, n_boot=20, seed=1, classes=list("abc"), groups=pid)
    assert a.attrs["n_groups"] == b.attrs["n_groups"] == 60


# ----------------------------------------------------------------------------- rare classes


def test_class_table_flags_rare_classes_and_keeps_the_paper_mean():
    rng = np.random.default_rng(0)
    n = 400
    y = np.zeros((n, 4), int)
    for c, k in enumerate((40, 12, 9, 0)):  # d has no positive at all
        y[rng.choice(n, k, replace=False), c] = 1
    s = rng.normal(size=y.shape) + y
    table, samples = metrics.bootstrap_auc(y, s, n_boot=100, seed=0, classes=list("abcd"), return_samples=True)
    ct = metrics.class_table(table, samples=samples)
    auc = table["auc"]
    assert list(ct.index) == [*"abcd", metrics.MEAN_COUNTED, metrics.MEAN_ALL]
    assert ct.loc[metrics.MEAN_COUNTED, "auc"] == pytest.approx((auc["a"] + auc["b"]) / 2)
    assert ct.loc[metrics.MEAN_ALL, "auc"] == pytest.approx((auc["a"] + auc["b"] + auc["c"]) / 3)
    assert ct.loc[metrics.MEAN_ALL, "auc"] == pytest.approx(auc["Mean"])
    assert list(ct["flag"][:4]) == ["", "", "*", "*"] and ct.attrs["flagged"] == ["c", "d"]
    assert list(ct["n_pos"][:4]) == [40, 12, 9, 0]
    lo, hi = np.quantile(samples[["a", "b"]].mean(axis=1), [0.025, 0.975])
    assert ct.loc[metrics.MEAN_COUNTED, "ci_low"] == pytest.approx(lo)
    assert ct.loc[metrics.MEAN_COUNTED, "ci_high"] == pytest.approx(hi)
    assert ct.loc[metrics.MEAN_ALL, "ci_low"] == table.loc["Mean", "ci_low"]
    assert "fewer than 10" in ct.attrs["rule"] and "paper" in ct.loc[metrics.MEAN_ALL, "note"]
    assert "left out: c, d" in ct.loc[metrics.MEAN_COUNTED, "note"]
    # another minimum: b is left out too
    assert metrics.class_table(table, 13).attrs["counted"] == ["a"]
    # no interval without the resamples (the table's own mean interval stays on the paper's row)
    assert math.isnan(metrics.class_table(table).loc[metrics.MEAN_COUNTED, "ci_low"])


def test_class_table_on_a_plain_table_and_its_errors():
    plain = pd.DataFrame({"auc": [0.7, 0.9, 0.1], "n_pos": [30, 11, 1]}, index=["a", "b", "c"])
    ct = metrics.class_table(plain)
    assert ct.loc[metrics.MEAN_COUNTED, "auc"] == pytest.approx(0.8)
    assert ct.loc[metrics.MEAN_ALL, "auc"] == pytest.approx(1.7 / 3)
    assert "ci_low" not in ct.columns
    with pytest.raises(ConfigError, match="n_pos"):
        metrics.class_table(plain[["auc"]])
    with pytest.raises(ConfigError, match="min_positives=0"):
        metrics.class_table(plain, 0)
    assert metrics.MIN_POSITIVES == 10


# ----------------------------------------------------------------------------- training seeds


def test_seed_summary_against_a_literal_computation():
    values = {0: 0.61, 1: 0.65, 2: 0.58}
    out = metrics.seed_summary(values)
    x = np.array(list(values.values()))
    mean = sum(x) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / 2)
    t975_2 = 4.302652729911275  # Student's t, 97.5th percentile, 2 degrees of freedom
    assert out.mean == pytest.approx(mean) and out.sd == pytest.approx(sd)
    assert out.ci_low == pytest.approx(mean - t975_2 * sd / math.sqrt(3))
    assert out.ci_high == pytest.approx(mean + t975_2 * sd / math.sqrt(3))
    assert out.n_seeds == 3 and out.as_dict()["per_seed"] == values
    t90_4 = 2.131846786326649  # 95th percentile, 4 degrees of freedom: a 90% interval of 5 seeds
    five = metrics.seed_summary([1.0, 2.0, 4.0, 4.0, 9.0], ci=0.9)
    assert five.ci_high - five.mean == pytest.approx(t90_4 * np.std([1, 2, 4, 4, 9], ddof=1) / math.sqrt(5))
    one = metrics.seed_summary({7: 0.5})
    assert one.mean == 0.5 and math.isnan(one.sd) and math.isnan(one.ci_low)


def test_seed_difference_is_taken_seed_by_seed():
    ref = pd.Series({0: 0.70, 1: 0.60, 2: 0.65, 3: 0.9})
    other = pd.Series({2: 0.66, 0: 0.72, 1: 0.59})  # another order; seed 3 missing
    d = metrics.seed_difference(ref, other)
    np.testing.assert_allclose(d.values.loc[[0, 1, 2]].to_numpy(), [0.02, -0.01, 0.01])
    literal = metrics.seed_summary([0.02, -0.01, 0.01])
    assert (d.mean, d.sd, d.ci_low, d.ci_high) == pytest.approx((literal.mean, literal.sd, literal.ci_low,
                                                                 literal.ci_high))
    with pytest.raises(DataError, match="no seed in common"):
        metrics.seed_difference({0: 0.5}, {1: 0.5})
    with pytest.raises(DataError, match="seeds \\[1\\]"):
        metrics.seed_summary({0: 0.5, 1: float("nan")})
    with pytest.raises(ConfigError, match="ci=95"):
        metrics.seed_summary([0.5, 0.6], ci=95)
