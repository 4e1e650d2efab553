"""One fact, one place: the choices, the test-time resize, the run folder's name, the training step."""

from __future__ import annotations

import pytest
import torch

from cral_lib import choices, models
from cral_lib.cli import build_parser
from cral_lib.cli.train import config_from_args
from cral_lib.data import TestTransform, test_time_resize
from cral_lib.models import build_model, cral_loss
from cral_lib.train import TrainStep, fast_recipe, make_optimizer, paper_recipe, run_name
from cral_lib.train import config as train_config


def test_every_reader_takes_the_choices_from_one_module():
    assert tuple(models.BACKBONES) == choices.BACKBONES and models.BACKBONES is choices.BACKBONE_CHANNELS
    assert models.ATTENTIONS is choices.ATTENTIONS and models.VARIANTS is choices.VARIANTS
    for name in ("BACKBONES", "ATTENTIONS", "VARIANTS", "AMP_MODES", "OPTIMIZERS"):
        assert getattr(train_config, name) is getattr(choices, name)
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    flags = {a.dest: a.choices for a in sub._actions if a.choices}
    assert flags["backbone"] is choices.BACKBONES and flags["attention"] is choices.ATTENTIONS
    assert flags["variant"] is choices.VARIANTS and flags["amp"] is choices.AMP_MODES
    assert flags["optimizer"] is choices.OPTIMIZERS


def test_test_time_resize_is_the_papers_ratio():
    assert test_time_resize(224) == 256 and test_time_resize(64) == 73 and test_time_resize(128) == 146
    tf = TestTransform.for_crop(64)
    assert (tf.size, tf.resize) == (64, 73)


def test_run_name_follows_the_fields_a_resume_must_keep():
    base = fast_recipe(data_dir="a", out_dir="x")
    name = run_name(base)
    # the model and the crop, readable, from the recipe itself (the fast recipe's backbone and size may change)
    assert name.startswith(f"{base.backbone}_att1_cral_{base.image_size}px-") and len(name.split("-")[-1]) == 8
    # where and how long it runs do not change the run
    assert run_name(base.replace(data_dir="b", out_dir="y", device="cpu", epochs=9, compile=True)) == name
    # anything else does
    for change in ({"lr": 2e-3}, {"seed": 1}, {"max_train_images": 500}, {"attention": "att2"}):
        assert run_name(base.replace(**change)) != name
    assert run_name(paper_recipe(data_dir="a")).startswith("resnet50_att1_cral_224px-")


def test_cral_train_without_out_derives_the_folder(tmp_path):
    parser = build_parser()
    args = parser.parse_args(["train", "--data", "d", "--backbone", "resnet18", "--epochs", "2"])
    config = config_from_args(args)
    assert config.out_dir == f"runs/{run_name(config)}" and config.backbone == "resnet18"
    assert config_from_args(parser.parse_args(["train", "--data", "d", "--out", "mine"])).out_dir == "mine"
    file = tmp_path / "c.yaml"
    file.write_text("out_dir: from_file\nepochs: 3\n")
    assert config_from_args(parser.parse_args(["train", "--data", "d", "--config", str(file)])).out_dir == "from_file"
    file.write_text("epochs: 3\n")
    assert config_from_args(parser.parse_args(["train", "--data", "d", "--config", str(file)])).out_dir.startswith("runs/")


@pytest.mark.parametrize("attention", ["att1", "none"])
def test_train_step_is_forward_loss_backward_step(attention):
    """TrainStep (the loop's and the benchmarks' step) does what the loop did inline."""
    config = fast_recipe(data_dir="x", attention=attention, variant="cral" if attention != "none" else "no_attention")
    torch.manual_seed(0)
    a = build_model(**config.model_kwargs)
    b = build_model(**config.model_kwargs)
    b.load_state_dict(a.state_dict())
    x, y = torch.randn(4, 3, 32, 32), (torch.rand(4, 14) < 0.3).float()
    step = TrainStep(a, make_optimizer(a, config), torch.device("cpu"))
    loss = step(x, y)
    assert not loss.requires_grad

    opt = make_optimizer(b, config)
    manual = cral_loss(b(x), y)
    opt.zero_grad(set_to_none=True)
    manual.backward()
    opt.step()
    torch.testing.assert_close(loss, manual.detach())
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)


def test_old_import_paths_name_the_same_objects():
    from cral_lib import device
    from cral_lib.train import distributed, evaluate, loop

    assert loop.amp_settings is device.amp_settings and loop.native_bf16 is device.native_bf16
    assert loop.autocast is device.autocast and evaluate.eval_precision is device.eval_precision
    assert distributed.resolve_device is device.resolve_device and loop.make_optimizer is make_optimizer
