"""The book tool itself (tools/book.py), on tiny stub notebooks and builds: `make book` needs no
browser, and no chapter can hang the build (cell and chapter limits, one retry, a clear stop)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import psutil
import pytest
from conftest import book_tools
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
BOOK_PY = ROOT / "tools" / "book.py"


def _book_tools(build: Path, monkeypatch):
    """tools/book.py loaded as a module whose _build/ is ``build``."""
    return book_tools(build, monkeypatch, "book_tools_stub")


def _no_browser_path(tmp_path: Path) -> str:
    """A PATH with this interpreter and nothing else: no Chromium, whatever the machine has."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").symlink_to(sys.executable)
    return str(bin_dir)


def _stub_html(build: Path) -> None:
    (build / "html").mkdir(parents=True)
    (build / "html" / "index.html").write_text("<html><body>stub</body></html>")


def test_make_book_needs_no_browser(tmp_path, monkeypatch, capsys):
    """`tools/book.py all` (what `make book` runs) ends with exit 0 on a machine without Chromium."""
    build = tmp_path / "_build"
    book = _book_tools(build, monkeypatch)
    _stub_html(build)
    ran = []
    for step in ("check", "data", "execute", "build"):
        monkeypatch.setattr(book, step, lambda *a, _s=step, **k: ran.append(_s) or [])
    monkeypatch.setenv("PATH", _no_browser_path(tmp_path))
    monkeypatch.delenv("CRAL_CHROMIUM", raising=False)
    assert book.find_chromium() is None
    assert book.main(["all"]) == 0
    assert ran == ["check", "data", "execute", "build"]
    assert "screenshots skipped: no Chromium" in capsys.readouterr().out


def test_screenshots_step_without_browser(tmp_path):
    """The final step through the command line, on a stub build, with a PATH that has no browser."""
    build = tmp_path / "_build"
    _stub_html(build)
    env = {k: v for k, v in os.environ.items() if k != "CRAL_CHROMIUM"}
    env.update(PATH=_no_browser_path(tmp_path), CRAL_BOOK_BUILD=str(build))
    optional = subprocess.run([sys.executable, str(BOOK_PY), "screenshots", "--if-browser"],
                              capture_output=True, text=True, env=env, cwd=tmp_path)
    assert optional.returncode == 0, optional.stderr
    assert "screenshots skipped" in optional.stdout
    required = subprocess.run([sys.executable, str(BOOK_PY), "screenshots"],
                              capture_output=True, text=True, env=env, cwd=tmp_path)
    assert required.returncode == 1
    assert "Chromium not found: run `bash tools/ensure_chromium.sh`" in required.stderr
    assert "Traceback" not in required.stderr


def test_ensure_chromium_finds_one_on_the_path(tmp_path):
    fake = tmp_path / "bin" / "chromium"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho Chromium 1.0\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake.parent}:/usr/bin:/bin")
    env.pop("CRAL_CHROMIUM", None)
    res = subprocess.run(["bash", str(ROOT / "tools" / "ensure_chromium.sh")], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert f"chromium: {fake}" in res.stdout


def _notebook(path: Path, *sources: str) -> Path:
    nb = new_notebook(cells=[new_code_cell(s) for s in sources],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)
    return path


def _run(book, nb: Path, tmp_path: Path, cell: float, chapter: float, retry: bool = True):
    call = book.execute_chapter if retry else book.run_chapter
    return call(nb, tmp_path / "out" / nb.name, tmp_path, limits={"cell": cell, "chapter": chapter},
                log=tmp_path / "logs" / f"{nb.stem}.log")


def test_stuck_chapter_is_retried_once_in_a_fresh_kernel(tmp_path, monkeypatch, capsys):
    book = _book_tools(tmp_path / "_build", monkeypatch)
    marker = tmp_path / "first_attempt_done"
    nb = _notebook(
        tmp_path / "91_flaky.ipynb",
        "import pathlib, time",
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n    marker.touch()\n    time.sleep(120)  # stuck the first time only",
    )
    assert _run(book, nb, tmp_path, cell=4, chapter=60) == 2
    out = capsys.readouterr().out
    assert "91_flaky: cell 2 of 2 (`marker = pathlib.Path(" in out
    assert "4 s cell limit; retrying once in a fresh kernel" in out
    done = nbformat.read(tmp_path / "out" / nb.name, as_version=4)
    assert all(c.metadata.papermill.status == "completed" for c in done.cells)


def test_stuck_twice_stops_the_build_naming_chapter_and_cell(tmp_path, monkeypatch):
    book = _book_tools(tmp_path / "_build", monkeypatch)
    nb = _notebook(tmp_path / "92_stuck.ipynb", "x = 1", "import time\ntime.sleep(120)", "y = 2")
    with pytest.raises(SystemExit) as err:
        _run(book, nb, tmp_path, cell=3, chapter=60)
    msg = str(err.value)
    assert msg.startswith("92_stuck: cell 2 of 3 (`import time`) ran past the 3 s cell limit")
    assert "for the second time: the build stops here" in msg


def test_chapter_limit_kills_the_kernel(tmp_path, monkeypatch):
    book = _book_tools(tmp_path / "_build", monkeypatch)
    pid_file = tmp_path / "kernel.pid"
    nb = _notebook(tmp_path / "93_slow.ipynb",
                   f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))",
                   "time.sleep(120)")
    with pytest.raises(book.ChapterStuck, match=r"93_slow: cell 2 of 2 \(`time.sleep\(120\)`\) was still running "
                                                r"when the chapter reached its 8 s limit"):
        _run(book, nb, tmp_path, cell=100, chapter=8, retry=False)
    kernel = int(pid_file.read_text())
    try:
        assert psutil.Process(kernel).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        pass  # gone, as it should be


def test_failing_cell_is_reported_not_retried(tmp_path, monkeypatch, capsys):
    book = _book_tools(tmp_path / "_build", monkeypatch)
    nb = _notebook(tmp_path / "94_error.ipynb", "x = 1", "raise ValueError('a broken chapter')")
    with pytest.raises(RuntimeError, match=r"94_error: cell 2 of 2 \(`raise ValueError") as err:
        _run(book, nb, tmp_path, cell=60, chapter=120)
    assert "ValueError: a broken chapter" in str(err.value)
    assert "retrying" not in capsys.readouterr().out


def test_book_data_of_other_parameters_is_replaced_with_its_runs(tmp_path, monkeypatch, capsys):
    """The book's own data folder, made for an older size or generator, is replaced, and the runs trained
    on it are cleared; an interrupted folder of the same parameters is resumed, not replaced."""
    import json

    from cral_lib.synthetic import MARKER, SYNTH_VERSION

    book = _book_tools(tmp_path / "build", monkeypatch)
    monkeypatch.setattr(book, "BOOK_DATA", {"n_images": 12, "image_size": 32, "seed": 0})
    assert book._stale_book_data() == ""  # nothing there yet
    book.DATA_DIR.mkdir(parents=True)
    marker = book.DATA_DIR / MARKER
    marker.write_text(json.dumps({"generator": "cral_lib.synthetic.v0", "n_images": 12, "image_size": 32,
                                  "seed": 0, "version": SYNTH_VERSION}))
    assert book._stale_book_data() == ""  # the same dataset: resumed
    marker.write_text(json.dumps({"n_images": 8, "image_size": 32, "seed": 0, "version": SYNTH_VERSION - 1}))
    assert book._stale_book_data() == f"n_images=8, image_size=32, seed=0, version={SYNTH_VERSION - 1}"

    made = {}
    monkeypatch.setattr("cral_lib.synthetic.make_synthetic", lambda root, **kw: made.update(kw, left=sorted(
        p.name for p in root.iterdir()) if root.exists() else None))
    monkeypatch.setattr("cral_lib.synthetic.is_synthetic_complete", lambda root, **kw: False)
    monkeypatch.setattr("cral_lib.data.build_cache", lambda root: None)
    (book.RUNS_DIR / "old_run").mkdir(parents=True)
    (book.DATA_DIR / "cache" / "32").mkdir(parents=True)  # the old images' cache goes too
    book.data()
    assert made == {"n_images": 12, "image_size": 32, "seed": 0, "left": None}
    assert not book.RUNS_DIR.exists()
    assert "replacing it" in capsys.readouterr().out
