"""Tests of `cral prepare` (cral_lib/cli/prepare.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from conftest import image_path

from cral_lib.cli import main
from cral_lib.data import ImageCache


def test_prepare_builds_and_reports(make_release, capsys):
    root = make_release(n_images=14, size=16)
    assert main(["prepare", "--data", str(root), "--size", "8", "--workers", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    cache_dir = root / "cache" / "8"
    assert f"cache: {cache_dir}" in out and "14 images" in out and "8 x 8 px" in out and "on disk" in out
    assert ImageCache.open(root, size=8).images.shape == (14, 8, 8)
    # a second run reuses it
    assert main(["prepare", "--data", str(root), "--size", "8", "--no-progress"]) == 0
    assert "14 images" in capsys.readouterr().out


def test_prepare_out_and_lenient(make_release, tmp_path, capsys):
    root = make_release(n_images=10, size=16, layout="flat")
    image_path(root, "00000002_000.png").unlink()
    out = tmp_path / "elsewhere"
    status = main(["prepare", "--data", str(root), "--out", str(out), "--size", "8", "--workers", "0", "--no-progress"])
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cral prepare: error:")
    assert "00000002_000.png" in lines[0] and "--lenient" in lines[0]
    status = main(["prepare", "--data", str(root), "--out", str(out), "--size", "8", "--workers", "0",
                   "--no-progress", "--lenient"])
    captured = capsys.readouterr()
    assert status == 0
    assert "1 skipped" in captured.out and "skipped 1 of 10" in captured.err
    assert ImageCache(out).valid.sum() == 9 and not np.asarray(ImageCache(out).images)[3].any()


def test_prepare_bad_input_is_one_line(tmp_path, capsys):
    assert main(["prepare", "--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data folder not found" in err[0]
    assert main(["prepare", "--data", str(tmp_path), "--size", "0"]) == 2
    assert "--size 0" in capsys.readouterr().err


def test_prepare_help_and_entry_point():
    proc = subprocess.run([sys.executable, "-m", "cral_lib", "prepare", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "7.3 GB" in proc.stdout and "--lenient" in proc.stdout and "--workers" in proc.stdout
