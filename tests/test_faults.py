"""Fault injection through the `cral` command, as a user meets the faults: kills, damaged files,
crafted inputs, bad values.

Every case runs `cral` (``python -m cral_lib``) in a subprocess with a time limit, and every
process a test starts is killed at its end (its whole process group), so that a failing test
leaves nothing running either. What each class of fault must give:

- a kill (``kill -9``, at several moments): no process left a few seconds later, and the next
  run resumes and ends with the same bytes as a clean build;
- a damaged or foreign file: one line naming it and a fix, and the fix (the command the message
  names) works;
- a bad value: one line naming it, exit status 2, no traceback, nothing left behind;
- a finished result: never replaced without being asked.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write_release

psutil = pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parents[1]
#: A command of these tests never takes longer than this (seconds).
LIMIT = 240


# --------------------------------------------------------------------------- running cral


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.update(PYTHONPATH=str(ROOT), CRAL_NO_NETWORK="1", PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    return e


def cral(*args: str, timeout: float = LIMIT, prelude: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run ``cral ARGS`` as a user does and wait for it (``prelude``: Python run first, in the same process)."""
    argv = _argv(args, prelude)
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env(), cwd=cwd,
                              start_new_session=True)
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - a hang is a failure, and leaves nothing running
        pytest.fail(f"cral {' '.join(map(str, args))} did not end within {timeout} s: {exc.stderr}")


def _argv(args, prelude: str | None) -> list[str]:
    if prelude is None:
        return [sys.executable, "-m", "cral_lib", *map(str, args)]
    code = f"{prelude}\nimport sys\nfrom cral_lib.cli import main\nsys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *map(str, args)]


class Started:
    """Processes started by a test; all of them (and their groups) are killed when the test ends."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.seen: set[int] = set()

    def start(self, *args: str, prelude: str | None = None) -> subprocess.Popen:
        proc = subprocess.Popen(_argv(args, prelude), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env(), cwd=ROOT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def family(self, proc: subprocess.Popen) -> list[int]:
        """The process and its descendants now (remembered, for :meth:`alive`)."""
        try:
            found = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            found = [proc.pid]
        self.seen.update(found)
        return found

    def kill9(self, proc: subprocess.Popen) -> list[int]:
        """``kill -9`` the process alone (not its children), as a user's ``kill -9 PID`` does; returns the family."""
        family = self.family(proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        return family

    def kill9_at(self, delays, *args: str, prelude: str | None = None) -> int:
        """Start the command and ``kill -9`` it after each delay in turn, checking that nothing of it survives.

        Stops early when a run finishes before its kill; returns how many runs were killed.
        """
        pending = iter(delays)

        def wait(proc):
            time.sleep(next(pending))

        return self._kill9_runs(len(delays), wait, args, prelude)

    def kill9_after_progress(self, progress, *args: str, kills: int, prelude: str | None = None,
                             timeout: float = 120.0) -> int:
        """Start the command and ``kill -9`` it once ``progress()`` has grown since its start, ``kills`` times.

        Kills follow saved work, not the clock, so a faster or slower machine interrupts the same way.
        Stops early when a run finishes first; returns how many runs were killed.
        """
        def wait(proc):
            before, deadline = progress(), time.monotonic() + timeout
            while proc.poll() is None and progress() <= before:
                assert time.monotonic() < deadline, f"cral {args[0]} saved no progress in {timeout:.0f} s"
                time.sleep(0.02)

        return self._kill9_runs(kills, wait, args, prelude)

    def _kill9_runs(self, runs: int, wait, args, prelude) -> int:
        """Up to ``runs`` times: start the command, ``wait(proc)``, then ``kill -9`` it unless it has finished."""
        killed = 0
        for _ in range(runs):
            proc = self.start(*args, prelude=prelude)
            wait(proc)
            if proc.poll() is not None:
                break
            family = self.kill9(proc)
            killed += 1
            assert not wait_gone(family), f"processes left after kill -9 of cral {args[0]}: {alive(family)}"
        return killed

    def cleanup(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        for pid in self.seen:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass


def alive(pids) -> list[int]:
    """Those of ``pids`` still running (zombies do not count: they run nothing)."""
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_gone(pids, seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    left = alive(pids)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = alive(left)
    return left


@pytest.fixture
def started():
    s = Started()
    yield s
    s.cleanup()


def one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    """Assert the run failed as promised: status 2, one line on stderr, no traceback; returns the line."""
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert_advice_exists(lines[0], _command_of(proc))
    return lines[0]


def _command_of(proc: subprocess.CompletedProcess) -> str:
    args = [a for a in proc.args if not a.startswith("-")] if isinstance(proc.args, list) else []
    for word in args:
        if word in _options_of_all():
            return word
    return ""


_OPTIONS: dict[str, set[str]] = {}


def _options_of_all() -> dict[str, set[str]]:
    if not _OPTIONS:
        from cral_lib.cli import build_parser

        parser = build_parser()
        sub = next(a for a in parser._actions if a.dest == "command")
        for name, p in sub.choices.items():
            _OPTIONS[name] = {s for a in p._actions for s in a.option_strings}
    return _OPTIONS


def assert_advice_exists(message: str, command: str) -> None:
    """Every flag a message advises exists: inside a quoted `cral X ...`, X's flags; elsewhere the command's own."""
    options = _options_of_all()
    quoted = re.findall(r"`cral ([a-z-]+)([^`]*)`", message)
    for sub, rest in quoted:
        assert sub in options, (sub, message)
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
            assert flag in options[sub], f"`cral {sub}` has no {flag}: {message}"
    outside = re.sub(r"`[^`]*`", "", message)
    for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", outside):
        if command:
            assert flag in options[command], f"`cral {command}` has no {flag}, yet the message advises it: {message}"


def run_advice(message: str) -> subprocess.CompletedProcess:
    """Run the first `cral ...` command a message names, as the user would copy it."""
    m = re.search(r"`(cral [^`]+)`", message)
    assert m, f"the message names no command to run: {message}"
    argv = shlex.split(m.group(1))[1:]
    return cral(*argv)


def synthetic_release(root: Path, n: int, size: int) -> Path:
    proc = cral("synth", "--out", root, "--images", n, "--size", size, "--workers", 1, "--quiet")
    assert proc.returncode == 0, proc.stderr
    return root


def same_cache(a: Path, b: Path) -> None:
    """Two caches hold the same bytes (cache.json: the same, but for the time of the last write)."""
    for name in ("images.npy", "index.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    meta_a, meta_b = (json.loads((p / "cache.json").read_text()) for p in (a, b))
    for meta in (meta_a, meta_b):
        meta.pop("updated", None)
    assert meta_a == meta_b
    assert not (a / "state.npy").exists()


# --------------------------------------------------------------------------- kills


@pytest.fixture(scope="module")
def big_release(tmp_path_factory) -> Path:
    """A synthetic release whose cache takes a few seconds to build with 2 workers."""
    return synthetic_release(tmp_path_factory.mktemp("faults") / "release", 500, 256)


@pytest.fixture(scope="module")
def clean_cache(big_release, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "cache"
    proc = cral("prepare", "--data", big_release, "--size", 64, "--out", out, "--workers", 0, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return out


def test_kill9_of_prepare_leaves_no_process_and_the_next_run_resumes_to_the_same_bytes(
        big_release, clean_cache, tmp_path, started):
    out = tmp_path / "cache"
    args = ("prepare", "--data", big_release, "--size", 64, "--out", out, "--workers", 2, "--no-progress")
    # Each image takes at least 20 ms more, so a run spans several of the 2 s progress saves on any machine.
    slow = ("import time\nimport cral_lib.data.cache.build as build\nload = build._load_resized\n"
            "build._load_resized = lambda task: (time.sleep(0.02), load(task))[1]")
    assert started.kill9_after_progress(lambda: _cache_rows_done(out), *args, kills=2, prelude=slow) == 2
    assert 0 < _cache_rows_done(out) < 500
    proc = cral(*args)
    assert proc.returncode == 0, proc.stderr
    same_cache(out, clean_cache)


def _cache_rows_done(out: Path) -> int:
    """How many rows the saved progress of a cache being built under ``out`` marks done."""
    from cral_lib.data.cache.layout import DONE, STATE_FILE
    states = list(out.rglob(STATE_FILE))
    if not states:
        return 0
    try:
        return int((np.load(states[0])[:, 0] == DONE).sum())
    except (OSError, ValueError, EOFError):  # replaced while being read
        return 0


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_message(make_release, tmp_path):
    root = make_release(n_images=12, size=16)
    out = tmp_path / "cache"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".lock").write_text(f"{dead.pid}\n")
    proc = cral("prepare", "--data", root, "--size", 8, "--out", out, "--workers", 0, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert f"process {dead.pid}, which no longer runs" in proc.stderr and "took over" in proc.stderr


def test_a_lock_held_by_a_live_process_is_one_line_naming_it(make_release, tmp_path, started):
    root = make_release(n_images=12, size=16)
    out = tmp_path / "cache"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, time\n"
         f"fd = os.open({str(out / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d\\n' % os.getpid())\n"
         "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env=env(), start_new_session=True)
    started.procs.append(holder)
    out.mkdir()
    assert holder.stdout.readline().strip() == "held"
    proc = cral("prepare", "--data", root, "--size", 8, "--out", out, "--workers", 0, "--no-progress")
    one_line_error(proc, f"another process (process {holder.pid}) is writing the cache")


def test_kill9_of_synth_leaves_no_process_and_the_next_run_finishes(tmp_path, started):
    out = tmp_path / "synth"
    args = ("synth", "--out", out, "--images", 300, "--size", 256, "--workers", 2, "--quiet")
    assert started.kill9_at((0.5, 2.0, 3.5), *args) >= 1
    proc = cral(*args, timeout=LIMIT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "SYNTHETIC.json").read_text())["complete"] is True


# --------------------------------------------------------------------------- damaged caches: the fix named works


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _edit_an_image(root: Path) -> None:
    from PIL import Image

    png = sorted(root.glob("images*/images/*.png"))[3]
    grey = np.asarray(Image.open(png).convert("L"))
    Image.fromarray(255 - grey).save(png)
    os.utime(png, ns=(time.time_ns(), time.time_ns() + 10**9))


DAMAGE = {
    "truncated images.npy": lambda root, cache: _truncate(cache / "images.npy", 0.5),
    "zero-byte images.npy": lambda root, cache: (cache / "images.npy").write_bytes(b""),
    "truncated index.csv": lambda root, cache: _truncate(cache / "index.csv", 0.6),
    "truncated cache.json": lambda root, cache: _truncate(cache / "cache.json", 0.5),
    "source changed": lambda root, cache: _edit_an_image(root),
}


@pytest.mark.parametrize("fault", list(DAMAGE))
def test_a_damaged_cache_is_repaired_by_the_command_its_message_names(fault, tmp_path):
    root = write_release(tmp_path / "release", n_images=30, size=32)
    build = ("prepare", "--data", root, "--size", 16, "--workers", 0, "--no-progress")
    assert cral(*build).returncode == 0
    cache = root / "cache" / "16"
    DAMAGE[fault](root, cache)
    proc = cral(*build)  # the user runs the same command again
    if proc.returncode != 0:
        line = one_line_error(proc, str(cache))
        proc = run_advice(line)
    assert proc.returncode == 0, proc.stderr
    clean = tmp_path / "clean"
    assert cral("prepare", "--data", root, "--size", 16, "--out", clean, "--workers", 0, "--no-progress").returncode == 0
    same_cache(cache, clean)
    # and the library reads it
    from cral_lib.data import ImageCache

    ImageCache.open(root, size=16)


# --------------------------------------------------------------------------- training and evaluation

TINY = ("--backbone", "resnet18", "--weights", "none", "--image-size", 48, "--cache-size", 56, "--batch-size", 16,
        "--eval-batch-size", 64, "--lr", 0.05, "--epochs", 2, "--lr-milestones", 1, "--max-train-images", 64,
        "--log-every", 1, "--device", "cpu", "--no-progress")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with ``release`` (240 synthetic images, its 56 px cache) and ``run`` (trained from it, evaluated)."""
    base = tmp_path_factory.mktemp("train")
    synthetic_release(base / "release", 240, 64)
    # trained from `base` with a relative --data, as a user in that folder would
    proc = cral("train", "--data", "release", "--out", base / "run", *TINY, cwd=base)
    assert proc.returncode == 0, proc.stderr
    proc = cral("evaluate", "--run", base / "run", "--bootstrap", 10, "--no-progress", "--device", "cpu", cwd=base)
    assert proc.returncode == 0, proc.stderr
    return base


def _no_run_files(folder: Path) -> bool:
    return not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()]


BAD_TRAIN = [
    (("--device", "banana"), "banana"),
    (("--num-classes", 3), "num_classes=3"),
    (("--lr", "inf"), "lr=inf"),
    (("--lr", "nan"), "lr=nan"),
    (("--lr", "1e30"), "lr=1e+30"),
    (("--weight-decay", "inf"), "weight_decay=inf"),
    (("--lr-milestones", -1), "-1"),
    (("--momentum", 1.5), "momentum=1.5"),
    (("--batch-size", 0), "batch_size=0"),
    (("--epochs", 0), "epochs=0"),
    (("--image-size", 16), "image_size=16"),
    (("--crop-scale", 0, 2), "crop_scale"),
    (("--val-fraction", 1), "val_fraction=1"),
    (("--weights", "no-such-file.pt"), "no-such-file.pt"),
    (("--backbone", "resnet9"), "resnet9"),
    (("--attention-optimizer", "rmsprop"), "rmsprop"),
    (("--attention-lr-scale", "1e6"), "attention_lr_scale=1000000.0"),
    (("--batch-size", "x"), "'x'"),
]


@pytest.mark.parametrize("flags, named", BAD_TRAIN, ids=[" ".join(map(str, f)) for f, _ in BAD_TRAIN])
def test_a_bad_train_value_is_one_line_and_leaves_nothing(work, tmp_path, flags, named):
    out = tmp_path / "run"
    base = [a for a in TINY]
    for flag in flags[:1]:
        if flag in base:  # the bad value replaces the tiny recipe's one
            i = base.index(flag)
            n = 2 if flag != "--crop-scale" else 3
            del base[i:i + n]
    proc = cral("train", "--data", work / "release", "--out", out, *base, *flags)
    one_line_error(proc, named)
    assert _no_run_files(out), sorted(out.rglob("*"))


def test_train_on_a_gpu_this_machine_lacks_is_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = cral("train", "--data", ROOT, "--device", "cuda", "--backbone", "resnet18", "--weights", "none")
    one_line_error(proc, "--device cuda", "torch finds none")


@pytest.mark.parametrize("args, named", [
    (("--batch-size", 0), "--batch-size 0"),
    (("--device", "banana"), "banana"),
    (("--bootstrap", -1), "--bootstrap -1"),
    (("--bootstrap", 10**9), "--bootstrap 1000000000"),
    (("--seed", -1), "--seed -1"),
    (("--split", "holdout"), "holdout"),
    (("--checkpoint", "missing.pt"), "missing.pt"),
])
def test_a_bad_evaluate_value_is_one_line(work, args, named):
    before = (work / "run" / "predictions_test.csv").read_bytes()
    proc = cral("evaluate", "--run", work / "run", "--no-progress", *args, cwd=work)
    one_line_error(proc, named)
    assert (work / "run" / "predictions_test.csv").read_bytes() == before


@pytest.mark.parametrize("args, named", [
    (("synth", "--out", "{tmp}/s", "--size", 16), "--size"),
    (("synth", "--out", "{tmp}/s", "--images", 0), "--images"),
    (("prepare", "--data", "{tmp}/nothing"), "nothing"),
    (("prepare", "--data", "{tmp}", "--size", 0), "--size 0"),
    (("prepare", "--data", "{tmp}", "--workers", -1), "--workers -1"),
    (("download", "--out", "{tmp}/d", "--archives", 13), "13"),
    (("download", "--out", "{tmp}/d", "--timeout", 0), "--timeout"),
    (("download", "--out", "{tmp}/d", "--size", 0), "--size 0"),
    (("compare", "{tmp}/a", "{tmp}/b", "--bootstrap", 0), "--bootstrap 0"),
])
def test_a_bad_value_of_another_command_is_one_line(tmp_path, args, named):
    proc = cral(*[str(a).format(tmp=tmp_path) for a in args])
    one_line_error(proc, named)


_SWEEP = r"""
import contextlib, io, json, sys
from cral_lib.cli import build_parser, main
tmp, cases = sys.argv[1], []
base = {
    "train": ["--data", f"{tmp}/no/such/release"],
    "prepare": ["--data", f"{tmp}/release", "--out", f"{tmp}/cache", "--no-progress"],
    "synth": ["--out", f"{tmp}/synth", "--images", "3", "--quiet"],
    "download": ["--out", f"{tmp}/download", "--metadata-only", "--no-space-check"],
    "evaluate": ["--run", f"{tmp}/no/such/run"],
    "compare": [f"{tmp}/no/such/a", f"{tmp}/no/such/b"],
    "predict": ["--run", f"{tmp}/no/such/run", f"{tmp}/no/such/image.png", "--out", f"{tmp}/predicted"],
    "export": ["--run", f"{tmp}/no/such/run", "--out", f"{tmp}/model.pt"],
    "info": [],
}
sub = next(a for a in build_parser()._actions if a.dest == "command")
for name, parser in sub.choices.items():
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or action.dest == "help":
            continue
        if action.choices:
            values = ["zzz"]
        elif action.type is int:
            values = ["-1", "0", "x", "99999999999"]
        elif action.type is float:
            values = ["nan", "inf", "-1", "0", "x"]
        else:
            values = ["", f"{tmp}/no/such/file"]
        for value in values:
            n = action.nargs if isinstance(action.nargs, int) else 1
            argv = [name, *base[name], action.option_strings[0], *[value] * n]
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    status = main(argv)
            except SystemExit as exc:
                status = exc.code
            cases.append((argv, status, err.getvalue()))
print(json.dumps(cases))
"""


def test_every_option_of_every_command_takes_a_bad_value_as_one_line_or_not_at_all(tmp_path):
    """Each option, with values of the wrong kind or out of range: status 0 or 2, at most one line, never a traceback."""
    write_release(tmp_path / "release", n_images=12, size=16)
    proc = subprocess.run([sys.executable, "-c", _SWEEP, str(tmp_path)], capture_output=True, text=True,
                          timeout=LIMIT, env=env(), cwd=tmp_path, start_new_session=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cases = json.loads(proc.stdout.splitlines()[-1])
    assert len(cases) > 150
    bad = []
    for argv, status, err in cases:
        lines = [line for line in err.strip().splitlines() if not line.startswith(("warning:", "note:"))]
        if status not in (0, 2) or len(lines) > 1 or "Traceback" in err or "internal error" in err:
            bad.append(f"cral {' '.join(argv)} -> {status}: {err.strip()[-300:]}")
    assert not bad, "\n".join(bad)
    assert not [p for p in tmp_path.iterdir() if p.is_file()]  # nothing written where the command ran


def test_synth_at_the_smallest_size_works(tmp_path):
    proc = cral("synth", "--out", tmp_path / "s", "--images", 600, "--size", 32, "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_csv_with_a_bad_byte_or_a_missing_column_is_named(tmp_path):
    root = write_release(tmp_path / "r", n_images=12, size=16)
    csv = root / "Data_Entry_2017.csv"
    text = csv.read_bytes()
    cut = text.index(b"\n") + 5
    csv.write_bytes(text[:cut] + b"\xff" + text[cut:])
    one_line_error(cral("prepare", "--data", root, "--size", 8, "--no-progress"), "not UTF-8", "0xff")
    lines = text.decode().splitlines()
    rows = [line.split(",") for line in lines]
    # without Patient ID (the 4th column)
    csv.write_text("\n".join(",".join(r[:3] + r[4:]) for r in rows) + "\n")
    one_line_error(cral("prepare", "--data", root, "--size", 8, "--no-progress"), "'Patient ID'")
    # columns reordered: read by name, the same cache as the original order
    csv.write_text("\n".join(",".join([r[1], r[0], *r[2:]]) for r in rows) + "\n")
    proc = cral("prepare", "--data", root, "--size", 8, "--no-progress", "--out", tmp_path / "c1")
    assert proc.returncode == 0, proc.stderr
    csv.write_bytes(text)
    proc = cral("prepare", "--data", root, "--size", 8, "--no-progress", "--out", tmp_path / "c2")
    assert proc.returncode == 0, proc.stderr
    same_cache(tmp_path / "c1", tmp_path / "c2")


def test_a_png_that_is_not_a_png_says_what_it_is_and_lenient_counts_it(tmp_path):
    from PIL import Image

    root = write_release(tmp_path / "r", n_images=12, size=16)
    pngs = sorted(root.glob("images*/images/*.png"))
    pngs[0].write_bytes(b"")
    Image.new("L", (16, 16)).save(pngs[1], format="JPEG")
    pngs[2].write_text("<!DOCTYPE html><html>quota exceeded</html>")
    proc = cral("prepare", "--data", root, "--size", 8, "--no-progress", "--workers", 0)
    one_line_error(proc, pngs[0].name, "empty (0 bytes)")
    pngs[0].write_text("just text")
    proc = cral("prepare", "--data", root, "--size", 8, "--no-progress", "--workers", 0)
    one_line_error(proc, pngs[0].name, "text")
    proc = cral("prepare", "--data", root, "--size", 8, "--no-progress", "--workers", 0, "--lenient")
    assert proc.returncode == 0, proc.stderr
    assert "3 skipped" in proc.stdout
    pngs[0].write_bytes(b"")
    for png, what in ((pngs[0], "empty (0 bytes)"), (pngs[1], "a JPEG image"), (pngs[2], "an HTML page")):
        from cral_lib.data.images import open_grey
        from cral_lib.errors import DataError

        with pytest.raises(DataError, match=re.escape(f"it is not a PNG, it is {what}")):
            open_grey(png)


def test_a_loss_that_is_not_finite_before_any_checkpoint_says_nothing_is_kept(work, tmp_path):
    out = tmp_path / "run"
    nan = ("import cral_lib.train.step as s\norig = s.TrainStep.__call__\n"
           "s.TrainStep.__call__ = lambda self, x, y: orig(self, x, y) * float('nan')")
    proc = cral("train", "--data", work / "release", "--out", out, *TINY, prelude=nan)
    line = one_line_error(proc, "no checkpoint was written yet")
    assert "last.pt" not in line
    assert _no_run_files(out)
    proc = cral("train", "--data", work / "release", "--out", out, *TINY, "--epochs", 1)  # the rerun is not refused
    assert proc.returncode == 0, proc.stderr


def test_kill9_of_training_leaves_no_process_and_resume_alone_continues(work, tmp_path, started):
    out = tmp_path / "run"
    proc = started.start("train", "--data", work / "release", "--out", out, *TINY, "--checkpoint-every-steps", 1,
                         "--epochs", 3)
    deadline = time.monotonic() + LIMIT
    while not (out / "checkpoints" / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read()
    time.sleep(0.5)
    family = started.kill9(proc)
    assert not wait_gone(family), f"processes left after kill -9 of cral train: {alive(family)}"
    (out / "checkpoints" / ".last.pt.abcdef.tmp").write_bytes(b"half a checkpoint")
    # --resume alone: the run's own config, no flag repeated, no other model built
    proc = cral("train", "--out", out, "--resume", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stdout and "partial file" in proc.stdout
    assert not list((out / "checkpoints").glob("*.tmp"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


@pytest.mark.parametrize("present", ["config.yaml", "metrics.jsonl", "checkpoints/best.pt", "predictions_test.csv"])
def test_a_folder_with_any_file_of_a_run_is_not_trained_over(work, tmp_path, present):
    out = tmp_path / "run"
    (out / present).parent.mkdir(parents=True, exist_ok=True)
    (out / present).write_bytes((work / "run" / present).read_bytes())
    proc = cral("train", "--data", work / "release", "--out", out, *TINY)
    one_line_error(proc, "already holds a run", present)
    assert (out / present).read_bytes() == (work / "run" / present).read_bytes()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [present]


def test_evaluate_on_other_data_writes_beside_the_runs_own_results(work, tmp_path):
    run = work / "run"
    own = {p.name: p.read_bytes() for p in [*run.glob("*_test.*"), run / "thresholds.json"]}
    assert len(own) == 6  # predictions, auc (csv, json), table1, operating, and the thresholds
    other = synthetic_release(tmp_path / "other", 120, 64)
    proc = cral("evaluate", "--run", run, "--data", other, "--bootstrap", 10, "--no-progress", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    # the run's own results untouched, the thresholds cral predict uses included
    assert {p.name: p.read_bytes() for p in [*run.glob("*_test.*"), run / "thresholds.json"]} == own
    written = sorted(p.name for p in [*run.glob("*_test_on_other-*"), *run.glob("thresholds_on_other-*")])
    assert len(written) == 6 and all(name in proc.stdout for name in written)
    for p in [*run.glob("*_test_on_other-*"), *run.glob("thresholds_on_other-*")]:
        p.unlink()


def test_a_relative_data_folder_is_found_or_the_message_says_pass_data(work):
    # the run was trained from `work` with --data release: from elsewhere that folder is not found
    proc = cral("evaluate", "--run", work / "run", "--bootstrap", 0, "--no-progress", "--device", "cpu")
    one_line_error(proc, "'release'", "--data")
    proc = cral("evaluate", "--run", work / "run", "--bootstrap", 10, "--no-progress", "--device", "cpu",
                "--data", work / "release")
    assert proc.returncode == 0, proc.stderr
    assert "predictions_test.csv" in proc.stdout  # the run's own data, under another path: the run's own names


def test_compare_says_how_many_images_two_runs_share_and_refuses_below_the_share(work, tmp_path):
    import pandas as pd

    pred = pd.read_csv(work / "run" / "predictions_test.csv")
    n = len(pred)
    for name, keep in (("most", n - max(1, n // 20)), ("half", n // 2)):
        (tmp_path / name).mkdir()
        part = pred.copy()
        part.loc[keep:, "Image Index"] = [f"9{i:07d}_000.png" for i in range(n - keep)]
        part.to_csv(tmp_path / name / "predictions_test.csv", index=False)
    proc = cral("compare", work / "run", tmp_path / "half", "--bootstrap", 20)
    one_line_error(proc, f"share {n // 2} of their {n} and {n} test images", "90%")
    proc = cral("compare", work / "run", tmp_path / "most", "--bootstrap", 20)
    assert proc.returncode == 0, proc.stderr
    assert f"share {n - max(1, n // 20)} of" in proc.stderr


def test_train_names_cral_prepare_for_a_cache_it_cannot_use_and_that_command_works(work, tmp_path):
    import shutil

    release = tmp_path / "release"
    shutil.copytree(work / "release", release)
    _edit_an_image(release)
    proc = cral("train", "--data", release, "--out", tmp_path / "run", *TINY)
    line = one_line_error(proc, "cral prepare")
    assert "--overwrite" in line
    assert run_advice(line).returncode == 0
    # the cache folder holds the cache of another release
    other = write_release(tmp_path / "other", n_images=12, size=16)
    proc = cral("prepare", "--data", other, "--size", 56, "--out", release / "cache" / "56", "--overwrite",
                "--no-progress", "--workers", 0)
    assert proc.returncode == 0, proc.stderr
    proc = cral("train", "--data", release, "--out", tmp_path / "run", *TINY)
    line = one_line_error(proc, "holds another cache", "cral prepare")
    assert "--overwrite" in line
    assert run_advice(line).returncode == 0
    proc = cral("train", "--data", release, "--out", tmp_path / "run", *TINY, "--epochs", 1)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- downloads: kills and crafted archives


class Server:
    """A local HTTP server with Range support, optionally slow (``rate`` bytes per second)."""

    def __init__(self, files: dict[str, bytes], rate: float | None = None) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.files, self.rate = files, rate
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                data = server.files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                step = 16384
                try:
                    for i in range(start, len(data), step):
                        self.wfile.write(data[i:i + step])
                        if server.rate:
                            time.sleep(step / server.rate)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _tar_gz(members) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes):
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _table_prelude(table: list[tuple], path: Path) -> str:
    """Python that swaps the downloader's archive table for ``table`` (a fake NIH of a few archives)."""
    path.write_text(json.dumps(table))
    return ("import json\nimport cral_lib.fetch.run as r\nfrom cral_lib.fetch.nih import Archive\n"
            f"r.NIH_ARCHIVES = tuple(Archive(*a) for a in json.load(open({str(path)!r})))\n"
            # the peak memory of this program: VmHWM of its own address space (ru_maxrss would count the
            # parent's pages, which it inherits across fork and exec)
            "import atexit, re, sys\n"
            "atexit.register(lambda: print('peak-rss-kB', re.search(r'VmHWM:\\s+(\\d+)', "
            "open('/proc/self/status').read()).group(1), file=sys.stderr))")


@pytest.fixture(scope="module")
def nih(tmp_path_factory):
    """A synthetic release of 45 images (256 px) cut like NIH's into 3 archives, and its metadata files."""
    root = synthetic_release(tmp_path_factory.mktemp("nih") / "release", 45, 256)
    names = sorted(p.name for p in (root / "images_001" / "images").glob("*.png"))
    table, blobs = [], {}
    for k in range(3):
        chunk = names[15 * k:15 * (k + 1)]
        blob = _tar_gz([_file(f"images/{n}", (root / "images_001" / "images" / n).read_bytes()) for n in chunk])
        table.append((k + 1, f"fake{k + 1:03d}", len(chunk), chunk[-1], len(blob)))
        blobs[f"/fake{k + 1:03d}.gz"] = blob
    return root, names, table, blobs


def _download_folder(root: Path, out: Path) -> Path:
    import shutil

    out.mkdir()
    for name in ("Data_Entry_2017_v2020.csv", "train_val_list.txt", "test_list.txt", "BBox_List_2017.csv"):
        shutil.copy(root / name, out / name)
    return out


def _rss_kb(stderr: str) -> int:
    m = re.search(r"peak-rss-kB (\d+)", stderr)
    assert m, stderr
    return int(m.group(1))


def test_kill9_of_download_cache_only_leaves_no_process_and_the_rerun_gives_the_prepared_cache(nih, tmp_path, started):
    root, names, table, blobs = nih
    out = _download_folder(root, tmp_path / "nih")
    prelude = _table_prelude(table, tmp_path / "table.json")
    args = ("download", "--out", out, "--cache-only", "--size", 64, "--workers", 2, "--no-progress",
            "--retries", 1, "--retry-wait", 0.01)
    slow = Server(blobs, rate=sum(map(len, blobs.values())) / 6)  # about 6 s for the three archives
    try:
        assert started.kill9_at((0.8, 2.0, 3.5), *args, "--base-url", slow.url, prelude=prelude) >= 2
    finally:
        slow.close()
    fast = Server(blobs)
    try:
        proc = cral(*args, "--base-url", fast.url, prelude=prelude)
    finally:
        fast.close()
    assert proc.returncode == 0, proc.stderr
    clean = tmp_path / "clean"
    assert cral("prepare", "--data", root, "--size", 64, "--out", clean, "--workers", 0, "--no-progress").returncode == 0
    cache = out / "cache" / "64"
    for name in ("images.npy", "index.csv"):
        assert (cache / name).read_bytes() == (clean / name).read_bytes(), name
    assert json.loads((cache / "cache.json").read_text())["complete"] is True


def _crafted_archive(name: str, declared: int, tmp_path: Path) -> bytes:
    """A gzip tar whose first member ``images/NAME`` declares ``declared`` bytes of zeros (and holds them)."""
    import tarfile
    import zlib

    info = tarfile.TarInfo(f"images/{name}")
    info.size = declared
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts = [comp.compress(info.tobuf(format=tarfile.GNU_FORMAT))]
    zeros = bytes(1 << 24)
    left = declared + (-declared % 512) + 1024
    while left:
        n = min(left, len(zeros))
        parts.append(comp.compress(zeros[:n]))
        left -= n
    parts.append(comp.flush())
    return b"".join(parts)


def test_a_crafted_archive_with_a_huge_member_is_refused_by_name_with_little_memory(nih, tmp_path):
    root, names, table, blobs = nih
    out = _download_folder(root, tmp_path / "nih")
    blob = _crafted_archive(names[0], 1_500_000_000, tmp_path)
    crafted = {**blobs, "/fake001.gz": blob}
    table = [(1, "fake001", 15, names[14], len(blob))] + table[1:]
    server = Server(crafted)
    try:
        proc = cral("download", "--out", out, "--cache-only", "--size", 64, "--archives", 1, "--no-progress",
                    "--retries", 0, "--base-url", server.url, prelude=_table_prelude(table, tmp_path / "t.json"))
    finally:
        server.close()
    assert _rss_kb(proc.stderr) < 1_000_000, f"peak memory {_rss_kb(proc.stderr)} kB"
    stderr = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("peak-rss-kB"))
    proc = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, stderr)
    one_line_error(proc, f"images/{names[0]} declares 1,500,000,000 bytes", "more than any ChestX-ray14 PNG")


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo", "chardev", "traversal", "absolute", "folder"])
def test_a_crafted_archive_member_is_refused_naming_its_type(nih, tmp_path, kind):
    import tarfile

    root, names, table, blobs = nih
    out = _download_folder(root, tmp_path / "nih")
    png = (root / "images_001" / "images" / names[0]).read_bytes()
    info = tarfile.TarInfo(f"images/{names[0]}")
    expected = {"symlink": "a symbolic link to '/etc/passwd'", "hardlink": "a hard link to '/etc/passwd'",
                "fifo": "a FIFO", "chardev": "a character device", "traversal": "outside the archive's folder",
                "absolute": "outside the archive's folder", "folder": "a folder"}[kind]
    data = None
    if kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
    elif kind == "fifo":
        info.type = tarfile.FIFOTYPE
    elif kind == "chardev":
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    elif kind == "traversal":
        info, data = _file(f"images/../../{names[0]}", png)
    elif kind == "absolute":
        info, data = _file(f"/images/{names[0]}", png)
    elif kind == "folder":
        info = tarfile.TarInfo(f"images/{names[0]}/x")
        info, data = _file(info.name, png)
        expected = "a file"
    blob = _tar_gz([(info, data)] + [_file(f"images/{n}", (root / "images_001" / "images" / n).read_bytes())
                                     for n in names[1:15]])
    table = [(1, "fake001", 15, names[14], len(blob))] + table[1:]
    server = Server({**blobs, "/fake001.gz": blob})
    try:
        proc = cral("download", "--out", out, "--cache-only", "--size", 64, "--archives", 1, "--no-progress",
                    "--retries", 0, "--base-url", server.url, prelude=_table_prelude(table, tmp_path / "t.json"))
    finally:
        server.close()
    stderr = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("peak-rss-kB"))
    line = one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, stderr), expected)
    assert "not an image" in line
    assert not list(Path("/etc").glob(f"{names[0]}*"))
