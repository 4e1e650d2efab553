"""The constant-attention check and the map statistics, on a tiny trained run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cral_lib.errors import ConfigError
from cral_lib.models import build_model
from cral_lib.train import attention_check, evaluate_run, train
from cral_lib.train.probe import constant_maps, map_statistics
from cral_lib.train.checkpoint import load_checkpoint, save_checkpoint

from conftest import train_config


def test_constant_maps_keep_each_maps_mean_and_lose_its_range():
    a = torch.rand(3, 14, 7, 7)
    flat = constant_maps(a)
    assert flat.shape == a.shape
    assert torch.allclose(flat.mean(dim=(2, 3)), a.mean(dim=(2, 3)))
    within, spread = map_statistics(flat)
    assert torch.all(within == 0)
    within, spread = map_statistics(a)
    expected = (a.amax(dim=(2, 3)) - a.amin(dim=(2, 3))).mean(dim=1)
    assert torch.allclose(within, expected)
    assert torch.allclose(spread, a.std(dim=1, unbiased=False).mean(dim=(1, 2)))
    # one map for every class: no spread between classes
    assert torch.all(map_statistics(a[:, :1])[1] == 0)


@pytest.fixture(scope="module")
def tiny_run(train_release, tmp_path_factory):
    """small_resnet (the fast backbone) trained for 2 short epochs on 48 px crops: 3 x 3 maps."""
    out = tmp_path_factory.mktemp("attention_check") / "run"
    train(train_config(train_release, out, backbone="small_resnet", lr=1e-3, optimizer="adamw"), progress=False)
    return out


def test_check_of_a_trained_run_matches_its_evaluation(tiny_run):
    check = attention_check(tiny_run, "test", device="cpu", n_boot=50)
    ev = evaluate_run(tiny_run, "test", device="cpu", n_boot=0, progress=False, write=False)
    assert check.map_size == (3, 3)
    assert check.n_images == len(ev.labels)
    assert check.auc == pytest.approx(float(ev.auc.loc["Mean", "auc"]), abs=1e-6)
    assert check.drop == pytest.approx(check.auc - check.auc_constant, abs=1e-9)
    assert check.ci[0] <= check.drop <= check.ci[1]
    assert 0 < check.within_map_range < 1 and 0 < check.between_class_spread < 1
    assert 0 < check.mean_attention < 1
    assert f"{check.auc:.4f}" in check.summary()
    assert check.table.attrs["resample"] == "patients"  # the paired interval draws patients, as evaluate_run
    by_image = attention_check(tiny_run, "test", device="cpu", n_boot=50, by_patient=False)
    assert by_image.table.attrs["resample"] == "images" and by_image.drop == pytest.approx(check.drop)


def test_flat_attention_changes_nothing(tiny_run, tmp_path):
    """A model whose last attention conv is zero has maps of 0.5 everywhere: range 0, drop exactly 0."""
    state = load_checkpoint(tiny_run / "checkpoints" / "best.pt")
    model = build_model(backbone="small_resnet", attention="att1", variant="cral")
    model.load_state_dict(state["model"])
    with torch.no_grad():
        model.attention.conv3.weight.zero_()
        model.attention.conv3.bias.zero_()
    flat = tmp_path / "flat.pt"
    save_checkpoint({**state, "model": model.state_dict()}, flat)
    check = attention_check(tiny_run, "test", which=str(flat), device="cpu", n_boot=50)
    assert check.within_map_range == 0 and check.between_class_spread == 0
    assert check.mean_attention == pytest.approx(0.5)
    assert check.drop == 0 and not check.matters
    assert np.allclose(check.table["diff"].dropna(), 0)


def test_baseline_without_attention_is_refused(train_release, tmp_path):
    out = tmp_path / "baseline"
    train(train_config(train_release, out, attention="none", variant="no_attention", epochs=1, lr_milestones=()),
          progress=False)
    with pytest.raises(ConfigError, match="no attention branch"):
        attention_check(out, device="cpu", n_boot=10)


@pytest.mark.parametrize("attention", ["att1", "att2"])
def test_flat_start_makes_every_attention_one_half(attention):
    model = build_model(backbone="small_resnet", attention=attention, variant="cral").eval()
    model.attention.flat_start()
    with torch.no_grad():
        a = model(torch.randn(2, 3, 112, 112), return_maps=True)["attention"]
    assert a.shape == (2, 14, 7, 7) and torch.all(a == 0.5)


def test_training_starts_the_attention_flat_when_asked(train_release, tmp_path):
    """With flat_attention_start and a learning rate too small to move a weight, the maps stay at 0.5."""
    out = tmp_path / "flat"
    train(train_config(train_release, out, backbone="small_resnet", optimizer="adamw", lr=1e-30, epochs=1,
                       lr_milestones=(), flat_attention_start=True), progress=False)
    check = attention_check(out, "test", device="cpu", n_boot=10)
    assert check.within_map_range == 0 and check.mean_attention == pytest.approx(0.5)


def test_branch_trace_shows_adamw_kill_att1_and_the_recipes_sgd_branch_keep_it_alive(train_release, tmp_path):
    """The fast recipe's reason for SGD in the branch, measured on a tiny release (48 px, 3 x 3 maps)."""
    from cral_lib.train import branch_trace, fast_recipe

    recipe = fast_recipe(data_dir=str(train_release), out_dir=str(tmp_path / "unused"), image_size=48, cache_size=56,
                         batch_size=8, epochs=1, lr_milestones=(), device="cpu")
    ours = branch_trace(recipe, steps=12, every=4)
    adamw = branch_trace(recipe.replace(attention_optimizer="same", attention_lr_scale=1.0), steps=12, every=4)
    assert list(ours.index) == [0, 4, 8, 12]
    assert list(ours.columns) == ["dead units", "units", "saturated", "mean |score|", "within-map range", "mean attention"]
    assert (ours["units"] == 512).all()
    # the same start: identical before the first step
    assert ours.iloc[0].to_dict() == pytest.approx(adamw.iloc[0].to_dict())
    last_ours, last_adamw = ours.iloc[-1], adamw.iloc[-1]
    assert last_adamw["dead units"] > 100 and last_ours["dead units"] < 20
    assert last_adamw["mean |score|"] > 10 * last_ours["mean |score|"]
    assert last_adamw["saturated"] > 0.3 > last_ours["saturated"]
    assert not (tmp_path / "unused").exists()  # nothing is written


def test_branch_trace_refuses_what_it_cannot_trace(train_release, tmp_path):
    from cral_lib.train import branch_trace, fast_recipe

    recipe = fast_recipe(data_dir=str(train_release), image_size=48, cache_size=56, batch_size=8, device="cpu")
    with pytest.raises(ConfigError, match="looks inside att1"):
        branch_trace(recipe.replace(attention="att2"))
    with pytest.raises(ConfigError, match="more than one epoch"):
        branch_trace(recipe, steps=10_000)
