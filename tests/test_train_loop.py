"""Training and evaluation end to end on a small synthetic release: files, resume after a real
kill, NaN stop, refusals, evaluation outputs, the command line, and two processes with DDP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from cral_lib.errors import CheckpointError, ConfigError, TrainingError
from cral_lib.train import TrainConfig, evaluate_run, read_history, train
from cral_lib.train import checkpoint as ckpt

from conftest import train_config


def _env() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cral_lib", *args]


def _flags(cfg: TrainConfig) -> list[str]:
    return [
        "--data", cfg.data_dir, "--out", cfg.out_dir, "--backbone", cfg.backbone, "--attention", cfg.attention,
        "--weights", "none", "--image-size", str(cfg.image_size), "--cache-size", str(cfg.cache_size),
        "--batch-size", str(cfg.batch_size), "--eval-batch-size", str(cfg.eval_batch_size), "--lr", str(cfg.lr),
        "--epochs", str(cfg.epochs), "--lr-milestones", *map(str, cfg.lr_milestones),
        "--max-train-images", str(cfg.max_train_images), "--log-every", "1", "--no-progress",
    ]


@pytest.fixture(scope="session")
def finished_run(train_release, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "base"
    torch.set_num_threads(1)
    result = train(train_config(train_release, out), progress=False, verbose=False)
    return out, result


def test_run_folder_contents(finished_run):
    out, result = finished_run
    assert (out / "config.yaml").exists() and (out / "metrics.jsonl").exists()
    assert (out / "checkpoints" / "last.pt").exists() and (out / "checkpoints" / "best.pt").exists()
    hist = read_history(out)
    assert list(hist["epoch"]) == [1, 2]
    assert list(hist["lr"]) == pytest.approx([0.05, 0.005])  # divided by 10 after the milestone
    assert np.isfinite(hist["train_loss"]).all() and hist["val_auc"].between(0, 1).all()
    assert result.best_epoch == int(hist["val_auc"].idxmax()) + 1
    assert result.best_val_auc == pytest.approx(hist["val_auc"].max())
    state = ckpt.load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and state["batch"] == 0 and state["step"] == 2 * (64 // 16)
    assert state["model_config"]["backbone"] == "resnet18"
    assert not any(k.startswith("module.") for k in state["model"])
    assert TrainConfig.load(out / "config.yaml").to_dict() == state["config"]


def test_existing_run_is_refused_and_finished_run_resumes_as_noop(finished_run, train_release):
    out, _ = finished_run
    before = (out / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(CheckpointError, match="already holds a run"):
        train(train_config(train_release, out), progress=False, verbose=False)
    result = train(train_config(train_release, out), resume=True, progress=False, verbose=False)
    assert len(result.history) == 2
    assert (out / "checkpoints" / "last.pt").read_bytes() == before


def test_resume_refuses_other_config_and_other_data(finished_run, train_release, tmp_path):
    out, _ = finished_run
    with pytest.raises(CheckpointError, match="another config \\(lr"):
        train(train_config(train_release, out, lr=0.2), resume=True, progress=False, verbose=False)
    from cral_lib.data import build_cache, make_synthetic

    other = tmp_path / "other"  # the same config on another release folder
    make_synthetic(other, n_images=240, image_size=64, seed=4, progress=False)
    build_cache(other, size=56, progress=False, workers=1)
    with pytest.raises(CheckpointError, match="another dataset"):
        train(train_config(other, out), resume=True, progress=False, verbose=False)


def test_nan_loss_stops_with_last_good_checkpoint_intact(finished_run, train_release, tmp_path, monkeypatch):
    out = tmp_path / "nan"
    shutil.copytree(finished_run[0], out)
    last, best = out / "checkpoints" / "last.pt", out / "checkpoints" / "best.pt"
    before = (last.read_bytes(), best.read_bytes(), (out / "metrics.jsonl").read_text())

    import cral_lib.models as models

    real_build = models.build_model

    def poisoned(**kwargs):
        model = real_build(**kwargs)
        model.forward = lambda x, return_maps=False: torch.full((x.shape[0], 14), float("nan"), requires_grad=True)
        return model

    monkeypatch.setattr(models, "build_model", poisoned)
    with pytest.raises(TrainingError, match="the loss became nan .* last good checkpoint"):
        train(train_config(train_release, out, epochs=3, checkpoint_every_steps=1), resume=True, progress=False, verbose=False)
    assert (last.read_bytes(), best.read_bytes(), (out / "metrics.jsonl").read_text()) == before


def test_bad_inputs_fail_early(train_release, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="not writable"):
        train(train_config(train_release, blocker / "run"), progress=False, verbose=False)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(train_config(train_release, tmp_path / "fresh"), resume=True, progress=False, verbose=False)
    with pytest.raises(ConfigError, match="image_size=64 is larger than cache_size=56"):
        train(train_config(train_release, tmp_path / "x", image_size=64), progress=False, verbose=False)


def test_bf16_autocast_on_cpu(train_release, tmp_path):
    result = train(train_config(train_release, tmp_path / "bf16", amp="bf16", epochs=1, image_size=32, max_train_images=32),
                   progress=False, verbose=False)
    assert np.isfinite(result.history["train_loss"]).all()


def test_evaluate_writes_tables_and_predictions(finished_run):
    out, _ = finished_run
    res = evaluate_run(out, "test", n_boot=50, progress=False, device="cpu")
    for name in ("predictions_test.csv", "auc_test.csv", "auc_test.json", "table1_test.csv"):
        assert (out / name).exists(), name
    pred = pd.read_csv(out / "predictions_test.csv")
    assert len(pred) == len(res.labels) and pred["Image Index"].is_unique
    assert {"label_Atelectasis", "prob_Hernia", "Patient ID"} <= set(pred.columns)
    assert pred.filter(like="prob_").stack().between(0, 1).all()
    summary = json.loads((out / "auc_test.json").read_text())
    assert summary["n_images"] == len(pred) and summary["split"] == "test"
    assert {"ci_low", "ci_high"} <= set(res.auc.columns)
    assert "paper" in res.table1.index.get_level_values(0)


def test_cli_train_evaluate_compare(finished_run, train_release, tmp_path):
    run_b = tmp_path / "b"
    cfg = train_config(train_release, run_b, epochs=1)
    res = subprocess.run(_cli("train", *_flags(cfg)), capture_output=True, text=True, env=_env())
    assert res.returncode == 0, res.stderr[-2000:]
    assert "val AUC" in res.stdout and "best validation mean AUC" in res.stdout
    for run in (finished_run[0], run_b):
        res = subprocess.run(_cli("evaluate", "--run", str(run), "--bootstrap", "20", "--no-progress"),
                             capture_output=True, text=True, env=_env())
        assert res.returncode == 0, res.stderr[-2000:]
        assert "Mean" in res.stdout
    res = subprocess.run(_cli("compare", str(finished_run[0]), str(run_b), "--bootstrap", "50"),
                         capture_output=True, text=True, env=_env())
    assert res.returncode == 0, res.stderr[-2000:]
    assert "p_value" in res.stdout
    bad = subprocess.run(_cli("train", *_flags(cfg)), capture_output=True, text=True, env=_env())
    assert bad.returncode == 2 and "already holds a run" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run(_cli("evaluate", "--run", str(tmp_path / "nope")), capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(finished_run, train_release, tmp_path):
    """A run killed (SIGKILL) in the middle of an epoch and resumed ends like an uninterrupted one."""
    reference = read_history(finished_run[0])
    out = tmp_path / "killed"
    cfg = train_config(train_release, out)
    cmd = _cli("train", *_flags(cfg), "--checkpoint-every-steps", "1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    last = out / "checkpoints" / "last.pt"
    killed_at = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            try:
                state = ckpt.load_checkpoint(last)
            except CheckpointError:
                state = None
            if state and state["epoch"] == 1 and state["batch"] >= 2:  # in the middle of epoch 2
                proc.send_signal(signal.SIGKILL)
                killed_at = (state["epoch"], state["batch"])
                break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed_at is not None, "the run finished before it could be killed mid-epoch"
    assert proc.returncode == -signal.SIGKILL
    assert len(read_history(out)) == 1, "only the first epoch was logged before the kill"
    res = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=_env())
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming" in res.stdout
    resumed = read_history(out)
    assert list(resumed["epoch"]) == list(reference["epoch"])
    for col in ("train_loss", "val_loss", "val_auc"):
        np.testing.assert_allclose(resumed[col], reference[col], rtol=1e-4, atol=1e-4, err_msg=col)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_with_ddp_agree_with_one(finished_run, train_release, tmp_path):
    """torchrun with 2 CPU processes (gloo): training agrees with one process, evaluation is identical."""
    reference = read_history(finished_run[0])
    out = tmp_path / "ddp"
    cfg = train_config(train_release, out)

    def torchrun(*args: str) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                f"--master_port={_free_port()}", "-m", "cral_lib", *args]

    res = subprocess.run(torchrun("train", *_flags(cfg)), capture_output=True, text=True, env=_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    ddp = read_history(out)
    assert list(ddp["epoch"]) == list(reference["epoch"])
    # The same global batches and gradients; only BatchNorm's batch statistics differ (per process).
    np.testing.assert_allclose(ddp["train_loss"], reference["train_loss"], rtol=0.15)
    assert np.all(np.abs(ddp["val_auc"] - reference["val_auc"]) < 0.15)

    # Evaluation of one checkpoint: the gathered predictions of 2 processes equal those of one.
    single = evaluate_run(out, "test", n_boot=0, progress=False, device="cpu", write=False)
    res = subprocess.run(torchrun("evaluate", "--run-dir", str(out), "--bootstrap", "0", "--no-progress"),
                         capture_output=True, text=True, env=_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    pred = pd.read_csv(out / "predictions_test.csv")
    assert list(pred["Image Index"]) == list(single.predictions["Image Index"])
    np.testing.assert_allclose(pred.filter(like="prob_").to_numpy(), single.probs, rtol=1e-5, atol=1e-6)


def test_trains_from_a_cache_only_folder(train_release, tmp_path, monkeypatch):
    """A `cral download --cache-only` folder (CSVs, lists, cache; no PNG) is a data folder."""
    from cral_lib.data import resolve_data_dir

    only = tmp_path / "cache_only"
    shutil.copytree(train_release, only, ignore=shutil.ignore_patterns("images_*"))
    assert not list(only.glob("images_*"))
    monkeypatch.delenv("CRAL_DATA_DIR", raising=False)
    assert resolve_data_dir(str(only)) == only.absolute()
    result = train(train_config(only, tmp_path / "run", epochs=1), progress=False, verbose=False)
    assert len(result.history) == 1
