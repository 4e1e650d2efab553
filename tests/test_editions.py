"""The full-scale edition of the book on this CPU: `tools/book.py execute --profile full` (the
profile, the plan, the weights check, resumption, the digests) and `build --from-executed`.

The full profile's code path runs shrunk (``--shrink``: a 240-image synthetic set at 64 px, one
epoch, the small backbone, random weights) on chapters 6 and 7, which share one run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest
from conftest import book_tools

ROOT = Path(__file__).resolve().parents[1]
BOOK_PY = ROOT / "tools" / "book.py"


def _book_tools(build: Path, monkeypatch):
    """tools/book.py loaded as a module whose _build/ is ``build``."""
    return book_tools(build, monkeypatch, "book_tools_editions")


@pytest.fixture
def book(tmp_path, monkeypatch):
    return _book_tools(tmp_path / "_build", monkeypatch)


def _sources(book, *prefixes):
    return [s for s in book.chapters() if s.stem.startswith(prefixes)]


def test_full_profile_parameters(book):
    ed = book.edition
    for src in book.chapters():
        cell = ed.cell_parameters(src.with_suffix(".ipynb"))
        assert set(ed.FULL[src.stem]) <= set(cell), f"{src.stem}: the full profile names a parameter the cell lacks"
    cell = ed.cell_parameters(ROOT / "notebooks" / "06_training.ipynb")
    assert cell["recipe"] == "fast" and cell["epochs"] is None
    assert ed.chapter_parameters("06_training", cell, "fast") == {}
    assert ed.chapter_parameters("06_training", cell, "full") == {"recipe": "paper", "checkpoint_every_steps": 200}
    assert ed.chapter_parameters("06_training", cell, "full", weights="none")["weights"] == "none"
    assert ed.chapter_parameters("06_training", cell, "full", overrides={"epochs": 3, "nonsense": 1})["epochs"] == 3
    assert "nonsense" not in ed.chapter_parameters("06_training", cell, "full", overrides={"nonsense": 1})
    ch4 = ed.cell_parameters(ROOT / "notebooks" / "04_att1.ipynb")
    assert ed.chapter_parameters("04_att1", ch4, "full", weights="none")["weights"] is None
    ch2 = ed.cell_parameters(ROOT / "notebooks" / "02_data_pipeline.ipynb")
    assert ed.chapter_parameters("02_data_pipeline", ch2, "full")["png_workers"] == os.cpu_count()
    shrunk = ed.chapter_parameters("03_features", ed.cell_parameters(ROOT / "notebooks" / "03_features.ipynb"),
                                   "full", shrink=True)
    assert "backbone" not in shrunk and shrunk["image_size"] == 64


def test_editions_readme_holds_the_current_profile_table(book):
    text = (ROOT / "editions" / "README.md").read_text()
    assert book.edition.profile_table(book.chapters()) in text, "run: python tools/book.py sync"
    assert sorted(p.name for p in (ROOT / "editions").iterdir()) == ["README.md"]


def _fake_rates(folder: Path, device: str) -> Path:
    folder.mkdir(parents=True)
    row = {"backbone": "resnet50", "attention": "att1", "precision": "bfloat16", "loop_images_per_s": 1000.0,
           "loop_val_images_per_s": 3000.0}
    (folder / "end_to_end.json").write_text(json.dumps({"device": device, "batch_size": 64, "image_size": 224,
                                                        "rows": [row]}))
    return folder


def test_plan_shares_runs_and_estimates_from_a_measured_rate(book, tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    plan = book.edition_plan(_sources(book, "06", "08", "10"), {}, tmp_path / "data", runs_dir)
    assert len(plan["runs"]) == 21  # the grid's seven models over three seeds; chapter 6's run is the grid's
    own = next(n for n, r in plan["runs"].items() if r["chapters"] == ["06_training", "08_ablations", "10_localization"])
    assert own.startswith("resnet50_att1_cral_224px-")
    base = next(n for n in plan["runs"] if n.startswith("resnet50_none_no_attention_224px-"))
    assert plan["runs"][base]["chapters"] == ["08_ablations", "10_localization"]
    (runs_dir / own).mkdir(parents=True)
    (runs_dir / own / "metrics.jsonl").write_text('{"epoch": 1}\n' * 3)
    data = {"path": str(tmp_path / "data"), "kind": "synthetic", "images": 20000, "size": 256,
            "train_val": 15000, "test": 5000}
    rates = _fake_rates(tmp_path / "results", "NVIDIA H200")
    totals = book.print_plan(plan, data, runs_dir, "NVIDIA H200", results_dir=rates)
    out = capsys.readouterr().out
    # 27 epochs left x (13,500 training images at 1000 img/s + 1,500 validation images at 3000 img/s)
    # + the 5,000 test images once
    seconds = 27 * (13500 / 1000 + 1500 / 3000) + 5000 / 3000
    assert f"{own}  partial (3/30 epochs), 13,500 training images; chapters 06 08 10; est. {seconds / 60:.0f} min " \
           "at 1,000 img/s (end_to_end resnet50 att1 bfloat16, batch 64" in out
    assert "measured on NVIDIA H200" in out and str(rates / "end_to_end.json") in out
    assert "new (0/30 epochs)" in out
    assert "image cache 1.3 GB (20,000 images x 256 x 256 bytes)" in out
    assert totals["seconds"] == pytest.approx(seconds + 20 * (30 * 14 + 5000 / 3000))  # the 20 new runs
    assert totals["disk_bytes"] > 21 * 4 * 23e6 + 20000 * 256 * 256  # 21 ResNet-50s, float32, and the cache
    totals = book.print_plan(plan, data, runs_dir, "NVIDIA B200", results_dir=rates)
    out = capsys.readouterr().out
    assert totals["seconds"] is None
    assert "no measured rate for NVIDIA B200 (resnet50 at 224 px)" in out
    assert "no measured rate for NVIDIA B200 for 21 run(s) still to train" in out


def test_weights_that_cannot_be_fetched_stop_the_full_profile(book, tmp_path, monkeypatch, capsys):
    import torch

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    plan = book.edition_plan(_sources(book, "06"), {}, tmp_path / "data", tmp_path / "runs")
    with pytest.raises(SystemExit) as stop:
        book.check_weights(plan)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "could not download the ImageNet weights of resnet50" in err
    assert "Fix it in one of three ways" in err and "`--weights none`" in err
    plan = book.edition_plan(_sources(book, "06"), {}, tmp_path / "data", tmp_path / "runs", weights="none")
    book.check_weights(plan)  # nothing to fetch


@pytest.mark.parametrize("args, message", [
    (["execute", "--profile", "full", "--data", "/no/such/folder", "--dry-run"], "tools/book.py: --data /no/such/folder"),
    (["build", "--weights", "none"], "tools/book.py: --weights is an option of `execute --profile full`"),
    (["build", "--from-executed", "."], "tools/book.py: --from-executed .: no manifest.json there"),
    (["data", "--profile", "full"], "tools/book.py: --profile full is an option of execute"),
])
def test_bad_input_is_one_line_and_status_2(tmp_path, args, message):
    env = dict(os.environ, CRAL_BOOK_BUILD=str(tmp_path / "_build"))
    res = subprocess.run([sys.executable, str(BOOK_PY), *args], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.startswith(message) and len(res.stderr.strip().splitlines()) == 1, res.stderr


def _stamp_copies(book, edition_dir: Path) -> None:
    """Stand-ins for the chapters this test does not execute: the Colab copies, stamped as stored."""
    ed = book.edition
    meta = ed.stored(edition_dir / "notebooks" / "06_training.ipynb")
    for src in book.chapters():
        target = edition_dir / "notebooks" / f"{src.stem}.ipynb"
        if not target.exists():
            shutil.copy(src.with_suffix(".ipynb"), target)
            ed.stamp(target, {**meta, "params": {}, "runs": []})


@pytest.mark.slow
def test_interrupted_full_edition_resumes_and_builds_from_executed(tmp_path, monkeypatch):
    build = tmp_path / "_build"
    env = dict(os.environ, CRAL_BOOK_BUILD=str(build), CRAL_HOME=str(tmp_path / "home"))
    env.pop("CRAL_DATA_DIR", None)
    cmd = [sys.executable, str(BOOK_PY), "execute", "--profile", "full", "--shrink", "--only", "06", "07"]
    edition_dir = build / "full-shrunk" / "edition"
    book = _book_tools(build, monkeypatch)
    log = tmp_path / "first.log"
    t0 = time.monotonic()
    with open(log, "w") as out:
        first = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        try:
            while "--- executing 07_evaluation" not in log.read_text():
                assert first.poll() is None, log.read_text()
                assert time.monotonic() - t0 < 900, log.read_text()
                time.sleep(0.5)
        finally:
            book._kill_tree(first)  # the tool, its chapter process and the kernel, killed while chapter 7 runs
    text = log.read_text()
    assert "small_resnet_att1_cral_64px-" in text and "new (0/1 epochs)" in text  # the plan, first
    assert book.edition.stored(edition_dir / "notebooks" / "06_training.ipynb")
    assert not book.edition.stored(edition_dir / "notebooks" / "07_evaluation.ipynb")

    second = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "done (1/1 epochs)" in second.stdout
    assert "--- 06_training: up to date" in second.stdout and "--- executing 06_training" not in second.stdout
    assert "--- executing 07_evaluation" in second.stdout
    manifest = json.loads((edition_dir / "manifest.json").read_text())
    assert manifest["profile"] == "full" and manifest["shrink"] and manifest["weights"] == "none"
    assert manifest["data"]["kind"] == "synthetic" and manifest["data"]["images"] == 240
    assert sorted(manifest["chapters"]) == ["06_training", "07_evaluation"]
    runs = sorted(p.name for p in (build / "full-shrunk" / "runs").iterdir())
    assert runs == sorted(manifest["runs"]) and manifest["runs"][runs[0]]["state"] == "done"
    assert manifest["chapters"]["07_evaluation"]["runs"] == runs  # chapter 7 used chapter 6's run
    assert (edition_dir / "results" / runs[0] / "auc_test.json").is_file()
    assert not list(edition_dir.rglob("*.pt")), "an edition holds no checkpoints"

    third = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.stdout.count("up to date") == 2 and "--- executing" not in third.stdout

    _stamp_copies(book, edition_dir)
    res = subprocess.run([sys.executable, str(BOOK_PY), "build", "--from-executed", str(edition_dir)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "jupyter-book failed" not in res.stdout
    html = build / "html"
    pages = [book.pages()[0]] + [p for p in book.pages() if p.startswith("notebooks/")]  # landing page, chapters
    assert len(pages) == 1 + len(book.chapters())
    for page in pages:
        text = (html / page).read_text()
        assert "This edition" in text and "240 images at 64 px" in text, page
        assert "random weights" in text and "GPU: none, executed on a CPU" in text, page
    executed = (html / "notebooks" / "07_evaluation.html").read_text()
    assert "best validation mean AUC" in executed  # the stored outputs, not executed again
    if book.find_chromium():
        shots = subprocess.run([sys.executable, str(BOOK_PY), "screenshots"], capture_output=True, text=True,
                               env=env, cwd=tmp_path, timeout=600)
        assert shots.returncode == 0, shots.stderr[-3000:]
        report = json.loads((build / "screenshots" / "report.json").read_text())
        assert sorted(report) == sorted(book.pages()) and all(e["status"] == 200 for e in report.values())


def test_digest_changes_with_each_input_and_banner_states_the_metadata(book, tmp_path):
    ed = book.edition
    src = tmp_path / "06_x.py"
    src.write_text("x = 1\n")
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    context = {"profile": "full", "shrink": False, "weights": "imagenet", "data": {"path": "d"}}
    first = ed.digest(src, {"epochs": 30}, context, {"r": ed.run_fingerprint(run)})
    assert ed.run_state(run, 30) == ("new", 0)
    (run / "config.yaml").write_text("seed: 0\n")  # rewritten by every chapter that resumes the run: no change
    assert ed.digest(src, {"epochs": 30}, context, {"r": ed.run_fingerprint(run)}) == first
    assert ed.digest(src, {"epochs": 31}, context, {"r": ed.run_fingerprint(run)}) != first
    assert ed.digest(src, {"epochs": 30}, {**context, "weights": "none"}, {"r": ed.run_fingerprint(run)}) != first
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')  # the run trained one more epoch
    assert ed.run_state(run, 30) == ("partial", 1)
    assert ed.digest(src, {"epochs": 30}, context, {"r": ed.run_fingerprint(run)}) != first
    src.write_text("x = 2\n")
    assert ed.digest(src, {"epochs": 30}, context, {"r": ed.run_fingerprint(run)}) != first

    meta = {"profile": "full", "shrink": False, "weights": "imagenet", "device": "NVIDIA H200",
            "date": "2027-03-04T05:06:07+00:00",
            "data": {"kind": "real", "images": 112120, "path": "x", "train_val": 86524, "test": 25596}}
    text = ed.banner(meta)
    assert ":class: note" in text and "**full (the paper's parameters)**" in text
    assert "real ChestX-ray14, 112,120 images" in text and "GPU: NVIDIA H200" in text
    assert "outputs made: 2027-03-04 (UTC)" in text and "ImageNet weights" in text
    assert "random weights" in ed.banner({**meta, "weights": "none"})
