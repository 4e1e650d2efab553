"""The benchmark scripts keep working: each runs in its smallest configuration and writes JSON.

These are smoke tests of the scripts' code paths (data, model, loop, JSON), not measurements:
the figures in benchmarks/README.md come from full runs on named machines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
pytestmark = pytest.mark.slow


def run(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{script}.json"
    res = subprocess.run([sys.executable, str(BENCH / f"{script}.py"), *args, "--json", str(out)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return json.loads(out.read_text())


def test_model_step(tmp_path):
    r = run("model_step", "--device", "cpu", "--batch-size", "2", "--image-size", "64", "--steps", "1",
            "--warmup", "0", "--backbones", "resnet18", "--precisions", "fp32", tmp_path=tmp_path)
    models = {(row["model"], row["head"]) for row in r["rows"]}
    assert ("plain GAP+FC", "-") in models and ("CRAL att1", "fast") in models and ("CRAL att1", "literal") in models
    assert all(row["images_per_s"] > 0 for row in r["rows"])


def test_loader(tmp_path):
    r = run("loader", "--images", "32", "--image-size", "128", "--batch-size", "16", "--crop", "64",
            "--cache-size", "73", "--repeats", "1", "--workers", "1", "--threads", "1", tmp_path=tmp_path)
    text = json.dumps(r)
    assert "ratio" in text


def test_end_to_end_smoke(tmp_path):
    r = run("end_to_end", "--smoke", "--workdir", str(tmp_path / "work"), tmp_path=tmp_path)
    row = r["rows"][0]
    assert row["model_images_per_s"] > 0 and row["loop_images_per_s"] > 0
    assert row["ratio"] == pytest.approx(row["loop_images_per_s"] / row["model_images_per_s"])
    assert row["projected_paper_recipe_minutes"] > 0


def test_synthetic_auc_smoke(tmp_path):
    r = run("synthetic_auc", "--images", "200", "--png-size", "64", "--image-size", "48", "--cache-size", "56",
            "--epochs", "1", "--batch-size", "16", "--bootstrap", "20", "--workdir", str(tmp_path / "work"),
            tmp_path=tmp_path)
    assert r["test_images"] > 0 and set(r["seconds"]) == {"data", "train", "evaluate"}
    assert r["mean_auc"] is None or 0 <= r["mean_auc"] <= 1
    # the defaults are the fast recipe's, not a copy
    from cral_lib.train import fast_recipe

    fast = fast_recipe()
    assert r["config"]["backbone"] == fast.backbone and r["config"]["attention_lr_scale"] == fast.attention_lr_scale
    assert r["config"]["lr"] == fast.lr and r["config"]["optimizer"] == fast.optimizer
    assert r["config"]["attention_optimizer"] == fast.attention_optimizer
    att = r["attention"]
    assert att["map_size"] == [3, 3] and att["drop_ci"][0] <= att["drop"] <= att["drop_ci"][1]


def test_attention_optimizer_smoke(tmp_path):
    r = run("attention_optimizer", "--candidates", "adamw:1", "sgd:10", "--images", "200", "--png-size", "64",
            "--image-size", "48", "--cache-size", "56", "--epochs", "1", "--batch-size", "16", "--bootstrap", "20",
            "--workdir", str(tmp_path / "work"), tmp_path=tmp_path)
    assert [(x["optimizer"], x["branch_lr"]) for x in r["rows"]] == [("adamw", pytest.approx(1e-3)),
                                                                     ("sgd", pytest.approx(1e-2))]
    for x in r["rows"]:
        assert x["units"] == [256, 256] and all(0 <= d <= 256 for d in x["dead_units"])
        assert 0 <= x["share_below_0.01"] + x["share_above_0.99"] <= 1
        assert x["attention"]["map_size"] == [3, 3]
    assert "attention_optimizer" not in r["config"] and r["config"]["optimizer"] == "adamw"
    bad = subprocess.run([sys.executable, str(BENCH / "attention_optimizer.py"), "--candidates", "rmsprop:1"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode != 0 and "write OPTIMIZER:SCALE" in bad.stderr


def test_fast_backbone(tmp_path):
    r = run("fast_backbone", "--steps", "1", "--warmup", "0", "--rounds", "1", "--batch-size", "2", "--candidates", "resnet18@64",
            "small_resnet@112", "--formats", "default", tmp_path=tmp_path)
    maps = {(row["candidate"], row["precision"]): row["map"] for row in r["rows"]}
    assert maps == {("resnet18@64", "fp32"): "2x2", ("resnet18@64", "bf16"): "2x2",
                    ("small_resnet@112", "fp32"): "7x7", ("small_resnet@112", "bf16"): "7x7"}
    assert all(row["images_per_s"] > 0 for row in r["rows"])


def test_step_breakdown(tmp_path):
    from cral_lib.data import make_synthetic

    data = make_synthetic(tmp_path / "data", n_images=60, image_size=64, seed=0)
    r = run("step_breakdown", "--data", str(data), "--device", "cpu", "--batch-size", "4", "--image-size", "32",
            "--cache-size", "40", "--steps", "2", "--warmup", "1", "--trace", str(tmp_path / "prof"), tmp_path=tmp_path)
    assert set(r["ms_per_step"]) == {"wait for batch", "augment", "forward", "backward + optimizer"}
    assert sum(r["share"].values()) == pytest.approx(1.0)
    assert (tmp_path / "prof" / "trace.json").stat().st_size > 0
    assert "convolution" in (tmp_path / "prof" / "operators.txt").read_text()
