"""The chapters' door (cral_lib/book.py): setup, the recipes defined once, run folders found by config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cral_lib import book
from cral_lib.errors import ConfigError
from cral_lib.synthetic import make_synthetic, resolve_data_dir
from cral_lib.train import fast_recipe, paper_recipe, run_name


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("book") / "data", 40, 32, seed=2, workers=1, progress=False)


def test_setup_takes_the_parameter_then_the_environment(release, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CRAL_DATA_DIR", str(release))
    monkeypatch.setenv("CRAL_RUNS_DIR", str(tmp_path / "runs"))
    env = book.setup("", runs_dir="", device="cpu")
    assert env.data_dir == resolve_data_dir("") == release
    assert env.runs_dir == tmp_path / "runs" and env.device == torch.device("cpu")
    assert book.setup(str(release), runs_dir=tmp_path / "mine").runs_dir == tmp_path / "mine"
    monkeypatch.delenv("CRAL_RUNS_DIR")
    assert book.runs_folder("") == Path("runs")
    printed = capsys.readouterr().out
    assert "Data:" in printed and "Runs:" in printed and "device: cpu" in printed


def test_recipes_are_the_train_configs_own(tmp_path):
    fast = book.recipe("fast", data_dir="d", runs_dir=tmp_path)
    assert fast.to_dict() == fast_recipe(data_dir="d", out_dir=fast.out_dir).to_dict()
    paper = book.recipe("paper", data_dir="d", runs_dir=tmp_path)
    assert paper.to_dict() == paper_recipe(data_dir="d", out_dir=paper.out_dir).to_dict()
    # None keeps the recipe's value; anything else overrides it
    assert book.recipe("fast", data_dir="d", backbone=None, epochs=None).to_dict() == book.recipe(
        "fast", data_dir="d").to_dict()
    assert book.recipe("paper", data_dir="d", epochs=2).epochs == 2
    with pytest.raises(ConfigError, match="'slow'"):
        book.recipe("slow", data_dir="d")
    with pytest.raises(ConfigError, match="unknown config fields \\['epoch'\\]"):
        book.recipe("fast", data_dir="d", epoch=3)


def test_baseline_recipe_is_the_fast_one_on_a_subset_and_the_paper_s_as_it_is():
    base = book.recipe("fast", baseline=True, data_dir="d")
    assert base.to_dict() == fast_recipe(data_dir="d", out_dir=base.out_dir, **book.BASELINE_FAST).to_dict()
    assert base.epochs == fast_recipe().epochs and base.max_train_images == book.BASELINE_FAST["max_train_images"]
    assert book.recipe("paper", baseline=True, data_dir="d").to_dict() == book.recipe("paper", data_dir="d").to_dict()
    with pytest.raises(ConfigError, match="not both"):
        book.recipe("fast", ablation=True, baseline=True)


def test_ablation_recipe_is_the_fast_one_with_fewer_steps():
    grid = book.recipe("fast", ablation=True, data_dir="d")
    assert grid.to_dict() == fast_recipe(data_dir="d", out_dir=grid.out_dir, **book.ABLATION_FAST).to_dict()
    assert book.recipe("fast", ablation=True, data_dir="d", epochs=2).epochs == 2
    assert book.recipe("paper", ablation=True, data_dir="d").to_dict() == book.recipe("paper", data_dir="d").to_dict()


def test_run_dir_is_the_config_s_name_in_the_runs_folder(tmp_path, release):
    env = book.Setup(data_dir=release, runs_dir=tmp_path, device=torch.device("cpu"))
    config = env.recipe("fast", seed=0, attention="att1")
    assert Path(config.out_dir) == env.run_dir(config) == tmp_path / run_name(config)
    # another chapter with the same parameters finds the same folder; other parameters, another one
    assert env.recipe("fast", seed=0, backbone=None, epochs=None).out_dir == config.out_dir
    baseline = env.recipe("fast", ablation=True, attention="none", variant="no_attention", seed=0)
    assert baseline.out_dir != config.out_dir and Path(baseline.out_dir).parent == tmp_path


def test_test_images_go_through_the_test_transform(release):
    batch = book.test_images(release, 3, 24, "cpu")
    assert batch.x.shape == (3, 3, 24, 24) and batch.labels.shape == (3, 14) and len(batch.names) == 3
    assert batch.images.shape[0] == 3 and len(batch.boxes) == 3
    assert batch.rows[: len({r for b in batch.boxes for r in b["row"]})] == sorted(
        {int(r) for b in batch.boxes for r in b["row"]}, key=batch.rows.index)
