"""Training one configuration over several seeds (tiny runs: 1 epoch on 64 images) and
comparing two methods seed by seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cral_lib.errors import ConfigError
from cral_lib.metrics import class_table, paired_bootstrap, seed_difference, seed_summary
from cral_lib.train import compare_seeds, run_name, train_seeds
from cral_lib.train.seeds import seed_config

from conftest import train_config


@pytest.fixture(scope="module")
def two_methods(train_release, tmp_path_factory):
    torch.set_num_threads(1)
    runs = tmp_path_factory.mktemp("seed_runs")
    base = train_config(train_release, runs / "placeholder", epochs=1, lr_milestones=())
    cral = train_seeds(base, [0, 1], n_boot=40, device="cpu", verbose=False, min_positives=3)
    other = train_seeds(base.replace(variant="no_category"), [1, 0], runs_dir=runs, n_boot=40, device="cpu",
                        verbose=False, min_positives=3)
    return runs, base, cral, other


def test_each_seed_has_its_own_run_folder_and_finished_runs_are_reused(two_methods):
    runs, base, cral, _ = two_methods
    dirs = {s: Path(r.run_dir) for s, r in cral.runs.items()}
    assert dirs == {s: runs / run_name(base.replace(seed=s)) for s in (0, 1)} and dirs[0] != dirs[1]
    assert all(r.config.seed == s for s, r in cral.runs.items())
    assert seed_config(base, 1).out_dir == str(dirs[1])
    before = {s: (d / "checkpoints" / "last.pt").stat().st_mtime_ns for s, d in dirs.items()}
    again = train_seeds(base, [0, 1], evaluate=False, verbose=False)
    assert {s: (Path(r.run_dir) / "checkpoints" / "last.pt").stat().st_mtime_ns for s, r in again.runs.items()} == before
    # the two seeds trained different models
    assert not np.allclose(cral.evals[0].probs, cral.evals[1].probs)


def test_summary_is_the_literal_mean_sd_and_t_interval_of_the_seeds(two_methods):
    _, _, cral, _ = two_methods
    names = class_table(cral.evals[0].auc, 3).attrs["counted"]
    assert names == cral.counted() and names
    values = [float(cral.evals[s].auc.loc[names, "auc"].mean()) for s in (0, 1)]
    assert list(cral.mean_auc()) == pytest.approx(values)
    assert list(cral.mean_auc(counted=False)) == pytest.approx([cral.evals[s].auc.loc["Mean", "auc"] for s in (0, 1)])
    s = cral.summary()
    half = 12.706204736174707 * np.std(values, ddof=1) / np.sqrt(2)  # t, 97.5th percentile, 1 degree of freedom
    assert s.mean == pytest.approx(np.mean(values)) and s.ci_high == pytest.approx(np.mean(values) + half)
    assert s.n_seeds == 2


def test_compare_seeds_pairs_each_seed_and_takes_the_t_interval_over_seeds(two_methods):
    _, _, cral, other = two_methods
    cmp = compare_seeds(cral, other, n_boot=40, seed=3)
    names = cral.counted()
    cols = [list(cral.evals[0].auc.index[:-1]).index(c) for c in names]
    for s in (0, 1):
        a, b = cral.evals[s], other.evals[s]
        direct = paired_bootstrap(a.labels[:, cols], a.probs[:, cols], b.probs[:, cols], n_boot=40, seed=3,
                                  classes=names, groups=a.predictions["Patient ID"]).loc["Mean"]
        row = cmp.per_seed.loc[s]
        assert (row["difference"], row["ci_low"], row["ci_high"]) == pytest.approx(
            (direct["diff"], direct["ci_low"], direct["ci_high"]))
    literal = seed_difference(cral.mean_auc(), other.mean_auc())
    assert (cmp.seeds.mean, cmp.seeds.ci_low) == pytest.approx((literal.mean, literal.ci_low))
    assert cmp.seeds.mean == pytest.approx(seed_summary(cmp.per_seed["difference"]).mean)
    assert cmp.resample == "patients"
    row = cmp.row()
    assert row["seeds"] == 2 and row["seed 0: difference"] == pytest.approx(cmp.per_seed.loc[0, "difference"])


def test_bad_seeds_are_refused(two_methods):
    _, base, cral, _ = two_methods
    for bad in ([], [0, 0], [-1], ["a"]):
        with pytest.raises(ConfigError, match="seeds="):
            train_seeds(base, bad)
    strict = train_seeds(base, [0], n_boot=10, device="cpu", verbose=False, min_positives=10_000)
    with pytest.raises(ConfigError, match="no class has 10000 positive test images"):
        strict.counted()
    unevaluated = train_seeds(base, [0, 1], evaluate=False, verbose=False)
    with pytest.raises(ConfigError, match="were not evaluated"):
        unevaluated.summary()


def test_evaluation_resamples_patients_by_default(two_methods):
    from cral_lib.metrics import bootstrap_auc

    _, _, cral, _ = two_methods
    ev = cral.evals[0]
    assert ev.auc.attrs["resample"] == "patients"
    assert ev.auc.attrs["n_groups"] == ev.predictions["Patient ID"].nunique() < len(ev.predictions)
    by_patient = bootstrap_auc(ev.labels, ev.probs, n_boot=40, seed=0, groups=ev.predictions["Patient ID"])
    np.testing.assert_allclose(ev.auc[["ci_low", "ci_high"]].to_numpy(float),
                               by_patient[["ci_low", "ci_high"]].to_numpy(float), equal_nan=True)
    assert list(ev.classes.index[-2:]) == ["Mean (counted classes)", "Mean (all classes, as the paper)"]
