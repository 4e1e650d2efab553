"""``cral synth``: help, a small run, bad values (one line, exit status 2)."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from cral_lib.cli import main
from cral_lib.data import is_synthetic_complete


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--out", "--images", "--size", "--seed", "--workers", "--overwrite"):
        assert option in out


def test_registered_as_a_sub_command():
    from cral_lib.cli import build_parser

    args = build_parser().parse_args(["synth", "--out", "somewhere"])
    assert args.command == "synth" and args.images == 1000 and args.size == 1024 and args.seed == 0


def test_small_run_in_process(tmp_path, capsys):
    out = tmp_path / "release"
    assert main(["synth", "--out", str(out), "--images", "12", "--size", "32", "--seed", "2",
                 "--workers", "1", "--quiet"]) == 0
    assert is_synthetic_complete(out, 12, 32, 2)
    frame = pd.read_csv(out / "Data_Entry_2017_v2020.csv")
    assert len(frame) == 12
    # the same command again reuses the dataset; a different one is refused
    assert main(["synth", "--out", str(out), "--images", "12", "--size", "32", "--seed", "2", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["synth", "--out", str(out), "--images", "13", "--size", "32", "--seed", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cral synth: error:") and "--overwrite" in err and "\n" not in err


@pytest.mark.parametrize(
    "args, word",
    [
        (["--images", "0"], "n_images"),
        (["--images", "-3"], "n_images"),
        (["--size", "8"], "image_size"),
        (["--size", "100000"], "image_size"),
        (["--seed", "-1"], "seed"),
        (["--workers", "0"], "workers"),
    ],
)
def test_bad_values_give_one_line_and_status_2(tmp_path, capsys, args, word):
    out = tmp_path / "never"
    assert main(["synth", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cral synth: error:") and word in err and "\n" not in err
    assert not out.exists()


def test_a_non_integer_is_an_argparse_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--out", str(tmp_path / "x"), "--images", "many"])
    assert exc.value.code == 2


def test_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["synth", "--out", str(tmp_path), "--images", "3", "--size", "32", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_subprocess(tmp_path):
    out = tmp_path / "sub"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-m", "cral_lib", "synth", "--out", str(out), "--images", "6", "--size", "32",
         "--workers", "1"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Wrote 6 synthetic images" in done.stdout
    assert is_synthetic_complete(out, 6, 32, 0)
    bad = subprocess.run(
        [sys.executable, "-m", "cral_lib", "synth", "--out", str(tmp_path / "bad"), "--size", "8"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "image_size" in bad.stderr
