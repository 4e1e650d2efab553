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


def cral(*args: str, timeout: float = LIMIT, prelude: str | None = None) -> subprocess.CompletedProcess:
    """Run ``cral ARGS`` as a user does and wait for it (``prelude``: Python run first, in the same process)."""
    argv = _argv(args, prelude)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env(), cwd=ROOT,
                          start_new_session=True)


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
    killed = 0
    for delay in (0.2, 1.0, 2.0, 3.0, 4.5, 6.0, 8.0):
        proc = started.start(*args)
        time.sleep(delay)
        if proc.poll() is not None:
            break
        family = started.kill9(proc)
        killed += 1
        assert not wait_gone(family), f"processes left after kill -9 of cral prepare: {alive(family)}"
    assert killed >= 2
    proc = cral(*args)
    assert proc.returncode == 0, proc.stderr
    same_cache(out, clean_cache)


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
    killed = 0
    for delay in (0.5, 2.0, 3.5):
        proc = started.start(*args)
        time.sleep(delay)
        if proc.poll() is not None:
            break
        family = started.kill9(proc)
        killed += 1
        assert not wait_gone(family), f"processes left after kill -9 of cral synth: {alive(family)}"
    assert killed >= 1
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
