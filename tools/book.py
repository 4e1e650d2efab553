"""Build the CRAL Book: sync the notebooks, make the data, execute, build, look at it.

Usage (from the repository root, inside the project's environment)::

    python tools/book.py sync         # rewrite the paired .ipynb (and badges), and editions/README.md's table
    python tools/book.py check        # fail if a pair, a badge or that table is out of date (no writes)
    python tools/book.py figures      # redraw book/figures/ (the architecture diagram)
    python tools/book.py data         # the embedded synthetic dataset and its cache, once
    python tools/book.py execute      # run every chapter with papermill in its fast mode
    python tools/book.py build        # stage the executed chapters and run `jb build -W -n`
    python tools/book.py screenshots  # headless Chromium: one screenshot per page, figure count
    python tools/book.py all          # check, data, execute, build, and screenshots if Chromium is found
    python tools/book.py profiles     # the fast and the full profile side by side (editions/README.md)

Everything it makes lives under ``_build/`` (or ``$CRAL_BOOK_BUILD``):

- ``_build/data/``: the synthetic release folder and its cache (reused when complete);
- ``_build/runs/``: training runs that later chapters reuse (``CRAL_RUNS_DIR``);
- ``_build/src/``: the staged book (``_config.yml``, ``_toc.yml``, ``book/``, executed notebooks);
- ``_build/logs/``: each chapter's execution log (its cells' printed output, as it runs);
- ``_build/html/``: the HTML book; ``_build/screenshots/``: the browser check;
- ``_build/notebook_times.json``: how long each chapter took to execute.

Each chapter runs in a process of its own under a cell limit and a chapter limit (``LIMITS``;
``--limits full`` for chapters run with the paper's parameters); a chapter that passes one is
stopped, retried once in a fresh kernel, and stops the build the second time, with a message
naming the chapter and the cell.

The notebooks are executed with the parameters they carry (their fast mode); pass
``--param name=value`` to override one in every notebook that has it.

A full-scale edition (the paper's parameters, on a GPU; see editions/README.md)::

    python tools/book.py profiles                               # the fast and full profiles, chapter by chapter
    python tools/book.py execute --profile full --dry-run       # the plan: runs, estimated time, disk
    python tools/book.py execute --profile full [--data DIR] [--weights none] [--out DIR]
    python tools/book.py build --from-executed DIR              # the HTML book from stored notebooks
    python tools/book.py screenshots                            # the browser check, on that book

``--profile full`` executes each chapter with the parameters of ``FULL`` in tools/edition.py,
on ``--data DIR`` or a 20,000-image ``cral synth`` set, with its runs in ``_build/full/runs``
(shared between chapters by their config, resumed when interrupted) and the edition (executed
notebooks with ``metadata.cral_edition``, ``results/``, ``manifest.json``) in
``_build/full/edition``. A second call executes only the chapters whose digest (source,
parameters, profile, data, the runs they used) changed. ``--shrink`` is for tests only: the
same code path on a tiny set, one epoch, in ``_build/full-shrunk``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cral_lib.synthetic.default import BOOK_SYNTHETIC


def _load_edition():
    """tools/edition.py (the profiles, the plan, the digests, the banners), beside this file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cral_book_edition", Path(__file__).with_name("edition.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


edition = _load_edition()

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("CRAL_BOOK_BUILD") or ROOT / "_build")  # where everything is made
NOTEBOOKS = ROOT / "notebooks"
DATA_DIR = BUILD / "data" / "synthetic"
RUNS_DIR = BUILD / "runs"
SRC = BUILD / "src"
HTML = BUILD / "html"
SHOTS = BUILD / "screenshots"

#: The embedded synthetic dataset the book is built on (see `cral synth --help`): the library's
#: :data:`cral_lib.synthetic.default.BOOK_SYNTHETIC`, which a chapter run on its own makes too.
BOOK_DATA = dict(BOOK_SYNTHETIC)

COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
_BADGE_RE = re.compile(
    r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]\([^)]*\)"
)
_GIT_URL_RE = re.compile(r"git\+https://github\.com/[\w.-]+/[\w.-]+?(?:\.git)?(?=[\"' @#\]])")


# ----------------------------------------------------------------------------- config


def book_config() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "_config.yml").read_text())


def repository() -> tuple[str, str]:
    """Return (``owner/name``, branch) of the repository named in ``_config.yml``."""
    repo = book_config()["repository"]
    url = repo["url"].rstrip("/")
    m = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?", url)
    if not m:
        raise SystemExit(f"_config.yml: repository.url {url!r} is not a https://github.com/OWNER/NAME address")
    return m.group(1), repo.get("branch", "main")


def chapters(strict: bool = True) -> list[Path]:
    """The notebook sources (``notebooks/NN_name.py``) in the order of ``_toc.yml``.

    Args:
        strict: fail when ``_toc.yml`` lists a notebook that does not exist (else skip it).
    """
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    out = []
    for f in files:
        if f.startswith("notebooks/"):
            src = ROOT / (f + ".py")
            if not src.exists():
                if strict:
                    raise SystemExit(f"_toc.yml lists {f} but {src.relative_to(ROOT)} does not exist")
                continue
            out.append(src)
    return out


def badge(stem: str) -> str:
    """The "Open in Colab" badge of one notebook, derived from ``_config.yml``."""
    slug, branch = repository()
    target = f"https://colab.research.google.com/github/{slug}/blob/{branch}/notebooks/{stem}.ipynb"
    return f"[![Open In Colab]({COLAB_BADGE})]({target})"


def install_url() -> str:
    slug, _ = repository()
    return f"git+https://github.com/{slug}"


# ----------------------------------------------------------------------------- sync / check


def expected_pair(src: Path):
    """Return (the .py text with badge and install URL up to date, the paired notebook)."""
    import jupytext

    text = src.read_text()
    text = _BADGE_RE.sub(lambda _: badge(src.stem), text)
    text = _GIT_URL_RE.sub(lambda _: install_url(), text)
    nb = jupytext.reads(text, fmt="py:percent")
    nb.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
    # jupytext lists the cell metadata keys it saw in set order, which changes from run to run
    keys = nb.metadata["jupytext"].get("cell_metadata_filter")
    if keys:
        keys = keys.split(",")
        nb.metadata["jupytext"]["cell_metadata_filter"] = ",".join(
            sorted(k for k in keys if not k.startswith("-")) + [k for k in keys if k.startswith("-")]
        )
    nb.metadata.setdefault(
        "kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"}
    )
    nb.metadata["colab"] = {"provenance": [], "toc_visible": True}
    nb.metadata["accelerator"] = "GPU"
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:03d}"  # jupytext draws random ids: fixed ones keep the pair comparable
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return text, nb


def _notebook_text(nb) -> str:
    import nbformat

    return nbformat.writes(nb) + "\n"


def check(verbose: bool = True) -> list[str]:
    """List the notebooks whose badge, install URL or paired .ipynb is out of date."""
    problems = []
    sources = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    for src in sources:
        text, nb = expected_pair(src)
        if text != src.read_text():
            problems.append(f"{src.relative_to(ROOT)}: Colab badge or install URL differs from _config.yml")
        ipynb = src.with_suffix(".ipynb")
        if not ipynb.exists():
            problems.append(f"{ipynb.relative_to(ROOT)}: missing (the Colab copy of {src.name})")
        elif ipynb.read_text() != _notebook_text(nb):
            problems.append(f"{ipynb.relative_to(ROOT)}: out of sync with {src.name}")
    for ipynb in sorted(NOTEBOOKS.glob("*.ipynb")):
        if not ipynb.with_suffix(".py").exists():
            problems.append(f"{ipynb.relative_to(ROOT)}: has no .py source")
    if EDITIONS_README.exists() and EDITIONS_README.read_text() != editions_readme():
        problems.append(f"{EDITIONS_README.relative_to(ROOT)}: the table of the two profiles is out of date")
    if verbose:
        for p in problems:
            print(p)
        if problems:
            print("run `python tools/book.py sync` to rewrite the pairs from the .py sources")
    return problems


#: The editions' README, whose table of the two profiles `sync` writes.
EDITIONS_README = ROOT / "editions" / "README.md"
_PROFILES_BLOCK = re.compile(r"(<!-- profiles:[^\n]*-->\n).*?(<!-- end of profiles -->)", re.S)


def editions_readme() -> str:
    """editions/README.md with its table of the two profiles written from the current sources."""
    text = EDITIONS_README.read_text()
    return _PROFILES_BLOCK.sub(lambda m: m.group(1) + edition.profile_table(chapters(strict=False)) + m.group(2), text)


def sync() -> None:
    if EDITIONS_README.exists():
        new = editions_readme()
        if new != EDITIONS_README.read_text():
            EDITIONS_README.write_text(new)
            print(f"updated {EDITIONS_README.relative_to(ROOT)}")
    for src in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py")):
        text, nb = expected_pair(src)
        if text != src.read_text():
            src.write_text(text)
            print(f"updated {src.relative_to(ROOT)}")
        ipynb = src.with_suffix(".ipynb")
        new = _notebook_text(nb)
        if not ipynb.exists() or ipynb.read_text() != new:
            ipynb.write_text(new)
            print(f"wrote {ipynb.relative_to(ROOT)}")


# ----------------------------------------------------------------------------- data


def _stale_book_data() -> str:
    """What the book's data folder holds when it is a synthetic dataset of other parameters, else ''."""
    from cral_lib.synthetic import MARKER, SYNTH_VERSION

    try:
        marker = json.loads((DATA_DIR / MARKER).read_text())
    except (OSError, ValueError):
        return ""
    made = {k: marker.get(k) for k in (*BOOK_DATA, "version")}
    if made == {**BOOK_DATA, "version": SYNTH_VERSION}:
        return ""  # the same dataset, interrupted: make_synthetic resumes it
    return ", ".join(f"{k}={v}" for k, v in made.items())


def data() -> Path:
    """Make the embedded synthetic dataset and its cache (both reused when complete)."""
    from cral_lib.data import build_cache
    from cral_lib.synthetic import is_synthetic_complete, make_synthetic

    if not is_synthetic_complete(DATA_DIR, **BOOK_DATA):
        shown = DATA_DIR.relative_to(ROOT) if DATA_DIR.is_relative_to(ROOT) else DATA_DIR  # CRAL_BOOK_BUILD elsewhere
        replace = _stale_book_data()
        if replace:
            # this folder is the book tool's own: a dataset it made for other parameters (or an older
            # generator) is replaced with its caches, and the runs trained on it go with it
            print(f"the book's dataset is now {BOOK_DATA}; {shown} holds {replace}: replacing it and its "
                  f"caches, and clearing {RUNS_DIR.name}/ (its runs were trained on the old images)")
            shutil.rmtree(DATA_DIR)
            shutil.rmtree(RUNS_DIR, ignore_errors=True)
        print(f"writing the synthetic dataset into {shown} {BOOK_DATA}")
        make_synthetic(DATA_DIR, **BOOK_DATA)
    build_cache(DATA_DIR)
    return DATA_DIR


# ----------------------------------------------------------------------------- figures


def figures(out_dir: Path = ROOT / "book" / "figures") -> list[Path]:
    """Draw the figures of the book's own pages (committed, so the README can show them)."""
    import matplotlib

    matplotlib.use("Agg")
    from cral_lib import viz

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "architecture.png"
    fig = viz.draw_architecture()
    fig.savefig(path, dpi=110, bbox_inches="tight", facecolor="white", metadata={"Software": None})
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return [path]


# ----------------------------------------------------------------------------- execute


def _env(data_dir: Path | None = None, runs_dir: Path | None = None) -> dict:
    env = dict(os.environ)
    env["CRAL_DATA_DIR"] = str(data_dir or DATA_DIR)
    env["CRAL_RUNS_DIR"] = str(runs_dir or RUNS_DIR)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.pop("MPLBACKEND", None)  # plots must stay inline, or they vanish from the book
    # progress bars are widgets in a notebook, which a static page cannot show: the chapters
    # print one line per epoch instead (readers running a chapter themselves get the bars)
    env["TQDM_DISABLE"] = "1"
    return env


#: How long one cell and one whole chapter may run before the build calls them stuck, in
#: seconds. "fast" is the chapters' own parameters on a CPU (the longest cell, chapter 8's grid,
#: takes about 6 minutes on a 2-core machine; the longest chapter about 6.5); "full" is for
#: chapters run with the paper's parameters on a GPU (30 epochs of ResNet-50 or DenseNet-121 at
#: 224 px). A chapter that passes a limit is stopped, and retried once in a fresh kernel.
LIMITS = {
    "fast": {"cell": 20 * 60, "chapter": 45 * 60},
    "full": {"cell": 12 * 3600, "chapter": 48 * 3600},
}

#: Longest a wait for one kernel message may block before the executor looks at the socket again
#: (seconds); see `_bounded_kernel_polls`.
POLL_SLICE_S = 1.0


#: Exit status of the chapter's child process when a cell passed the cell limit.
EXIT_CELL_TIMEOUT = 3


class ChapterStuck(RuntimeError):
    """A chapter passed its cell or chapter time limit."""


def _bounded_kernel_polls() -> None:
    """Make every wait for a kernel message poll in slices of ``POLL_SLICE_S`` seconds.

    Why: nbclient waits for a cell's ``execute_reply`` with an unbounded ``poll()`` of the
    asyncio ZMQ shell socket. Now and then the reply arrives and sits in the socket
    (``ZMQ_EVENTS`` says POLLIN) but the socket's edge-triggered file descriptor never becomes
    readable, so the event loop never looks at it: the kernel is idle and the executor waits
    for ever. Measured on the 2-core machine (pyzmq 27.3 and 26.4, jupyter_client 8.10,
    nbclient 0.11, ipykernel 7.4 and 6.31): a cell that shows an ipywidgets explorer hung in 1
    of 4 to 1 of 46 executions; with a 600 s cell timeout the same cell returned, with its
    outputs, after exactly 600 s. A bounded poll re-reads the socket's events when its slice
    ends, which re-arms the descriptor, so a missed wake-up costs at most one slice.
    """
    from queue import Empty

    from jupyter_client.channels import AsyncZMQSocketChannel

    async def get_msg(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL_SLICE_S if deadline is None else min(POLL_SLICE_S, deadline - time.monotonic())
            if await self.socket.poll(max(0, int(left * 1000))):
                return await self._recv()
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty

    AsyncZMQSocketChannel.get_msg = get_msg


def _execute_one(ipynb: str, out: str, cwd: str, params: str, cell_timeout: str) -> int:
    """Execute one notebook with papermill in this process (the child of `run_chapter`).

    Returns the exit status: 0 done, 1 a cell raised or the kernel died, 3 a cell timed out.
    """
    import logging

    import papermill as pm
    from nbclient.exceptions import CellTimeoutError

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the cells' output, into the log
    _bounded_kernel_polls()
    try:
        pm.execute_notebook(
            ipynb,
            out,
            parameters=json.loads(params),
            kernel_name="python3",
            cwd=cwd,
            execution_timeout=int(cell_timeout),
            progress_bar=False,
            log_output=True,
            report_mode=False,
        )
    except CellTimeoutError as exc:
        print(f"CellTimeoutError: {exc}", flush=True)
        return EXIT_CELL_TIMEOUT
    except Exception as exc:  # papermill's PapermillExecutionError names the cell's error
        print(f"{type(exc).__name__}: {exc}", flush=True)
        return 1
    return 0


def _die_with_parent() -> None:
    """In a child process: get SIGTERM when the parent dies, even by ``kill -9`` (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill a process and everything it started (the kernel runs in a session of its own)."""
    import psutil

    try:
        family = [psutil.Process(proc.pid)]
        family += family[0].children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)
    proc.wait()


def _cell_label(out: Path) -> str:
    """Name the cell a partial output notebook stopped in: its number and first line."""
    import nbformat

    try:
        nb = nbformat.read(out, as_version=4)
    except Exception:  # not written yet, or cut short mid-write
        return "a cell before the first save"
    # the chapter's own cells, numbered as in its source (without the cells papermill adds)
    added = {"injected-parameters", "papermill-error-cell-tag"}
    cells = [c for c in nb.cells if not added & set(c.metadata.get("tags", []))]
    # papermill stamps a start_time on each cell it starts (it marks the cells it never reached
    # "completed" when a run ends early, so the status cannot tell)
    started = [i for i, c in enumerate(cells) if c.metadata.get("papermill", {}).get("start_time")]
    if not started:
        return "its first cell"
    i = started[-1]
    lines = [ln for ln in cells[i].source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    first = (lines[0].strip() if lines else "")[:80]
    return f"cell {i + 1} of {len(cells)} (`{first}`)"


def run_chapter(
    ipynb: Path,
    out: Path,
    cwd: Path,
    params: dict | None = None,
    limits: dict | None = None,
    log: Path | None = None,
    env: dict | None = None,
) -> None:
    """Execute one chapter in a child process with a cell limit and a chapter limit.

    Raises:
        ChapterStuck: a cell ran past ``limits["cell"]`` or the chapter past ``limits["chapter"]``
            seconds (the child and its kernel are killed first); the message names the cell.
        RuntimeError: a cell raised, or the kernel died; the message has the end of the log.
    """
    limits = limits or LIMITS["fast"]
    log = log or out.with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # a partial notebook of an earlier attempt must not name the cell
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "_execute_one", str(ipynb), str(out),
        str(cwd), json.dumps(params or {}), str(int(limits["cell"])),
    ]
    with open(log, "w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_die_with_parent)
        try:
            rc = proc.wait(timeout=limits["chapter"])
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            raise ChapterStuck(
                f"{ipynb.stem}: {_cell_label(out)} was still running when the chapter reached its "
                f"{limits['chapter']} s limit"
            ) from None
        except BaseException:  # Ctrl-C or an error here: leave no kernel behind
            _kill_tree(proc)
            raise
    if rc == 0:
        return
    text = log.read_text(errors="replace")
    if rc == EXIT_CELL_TIMEOUT:
        raise ChapterStuck(f"{ipynb.stem}: {_cell_label(out)} ran past the {limits['cell']} s cell limit")
    raise RuntimeError(f"{ipynb.stem}: {_cell_label(out)} failed (log: {log}):\n{text[-2000:]}")


def execute_chapter(ipynb: Path, out: Path, cwd: Path, **kwargs) -> int:
    """`run_chapter`, retried once in a fresh kernel when it got stuck. Returns the attempts."""
    try:
        run_chapter(ipynb, out, cwd, **kwargs)
        return 1
    except ChapterStuck as exc:
        print(f"    {exc}; retrying once in a fresh kernel", flush=True)
    try:
        run_chapter(ipynb, out, cwd, **kwargs)
    except ChapterStuck as exc:
        raise SystemExit(f"{exc}, for the second time: the build stops here") from None
    return 2


def execute(only: list[str] | None = None, params: dict | None = None, limits: str = "fast") -> dict:
    """Execute each chapter with papermill into ``_build/src/notebooks``.

    Each chapter runs in a child process under the cell and chapter limits of ``LIMITS[limits]``;
    a stuck chapter is retried once, a second time stops the build. A chapter whose cell raises
    is reported and the others still run; the build fails at the end.
    """
    out_dir = SRC / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    times_file = BUILD / "notebook_times.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    failures = []
    for src in chapters(strict=not only):
        if only and not any(src.stem.startswith(o) for o in only):
            continue
        ipynb = src.with_suffix(".ipynb")
        work = BUILD / "work" / src.stem
        work.mkdir(parents=True, exist_ok=True)
        print(f"--- executing {src.stem}", flush=True)
        t0 = time.perf_counter()
        try:
            execute_chapter(ipynb, out_dir / ipynb.name, work, params=params, limits=LIMITS[limits],
                            log=BUILD / "logs" / f"{src.stem}.log", env=_env())
        except RuntimeError as exc:
            failures.append(str(exc))
            print(failures[-1], flush=True)
        dt = time.perf_counter() - t0
        times[src.stem] = round(dt, 1)
        print(f"    {src.stem}: {dt:.1f} s", flush=True)
        times_file.write_text(json.dumps(times, indent=2) + "\n")
    if failures:
        raise SystemExit("notebooks failed:\n" + "\n".join(failures))
    return times


# ----------------------------------------------------------------------------- the full-scale edition

#: Where the measured step rates of the plan come from (benchmarks/run_all.sh writes them).
BENCH_RESULTS = ROOT / "benchmarks" / "results"


def refuse(message: str) -> None:
    """Bad input: one line naming the value and the fix, exit status 2."""
    print(f"tools/book.py: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def edition_root(shrink: bool = False) -> Path:
    """Where the full profile keeps its data, runs, logs and (by default) its edition."""
    return BUILD / ("full-shrunk" if shrink else "full")


def edition_data(data: str | None, shrink: bool = False, make: bool = True) -> Path:
    """The full profile's release folder: ``--data DIR``, else its synthetic set (made once)."""
    from cral_lib.errors import CralError
    from cral_lib.synthetic import is_synthetic_complete, make_synthetic, resolve_data_dir

    if data:
        try:
            return resolve_data_dir(data)
        except CralError as exc:
            refuse(f"--data {data}: {exc}")
    spec = edition.SHRINK_DATA if shrink else edition.FULL_DATA
    folder = edition_root(shrink) / "data" / f"synthetic-{spec['n_images']}-{spec['image_size']}"
    if make and not is_synthetic_complete(folder, **spec):
        print(f"writing the synthetic dataset into {folder} {spec} (cral synth)", flush=True)
        make_synthetic(folder, **spec)
    return folder


def edition_plan(selected: list[Path], overrides: dict, data_dir: Path, runs_dir: Path, *,
                 profile: str = "full", weights: str = "imagenet", shrink: bool = False) -> dict:
    """Each chapter's parameters and runs, and each run's config (run folder -> config, chapters)."""
    from cral_lib import book as cral_book
    from cral_lib.errors import CralError

    chapters_, runs = [], {}
    for src in selected:
        cell = edition.cell_parameters(src.with_suffix(".ipynb"))
        params = edition.chapter_parameters(src.stem, cell, profile, weights=weights, shrink=shrink,
                                            overrides=overrides)
        names = []
        for call in edition.chapter_runs(src.stem, {**cell, **params}):
            recipe = call.pop("name")
            try:
                config = cral_book.recipe(recipe, runs_dir=runs_dir, data_dir=str(data_dir), **call)
            except CralError as exc:
                refuse(f"{src.stem}: {exc}")
            name = Path(config.out_dir).name
            runs.setdefault(name, {"config": config, "chapters": []})["chapters"].append(src.stem)
            names.append(name)
        chapters_.append({"src": src, "params": params, "runs": list(dict.fromkeys(names))})
    return {"chapters": chapters_, "runs": runs}


def _split_sizes(data: dict) -> tuple[int, int, bool]:
    """(train_val, test) images of the data, and whether they were counted (else estimated)."""
    if data.get("train_val") is not None:
        return data["train_val"], data["test"] or 0, True
    from cral_lib.synthetic.rows import OFFICIAL_TEST, OFFICIAL_TRAIN_VAL

    n = data.get("images") or 0
    train_val = round(n * OFFICIAL_TRAIN_VAL / (OFFICIAL_TRAIN_VAL + OFFICIAL_TEST))
    return train_val, n - train_val, False


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def print_plan(plan: dict, data: dict, runs_dir: Path, device: str, results_dir: Path | None = None) -> dict:
    """Print which runs will be trained, their estimated GPU time and the disk they need.

    Returns the totals (``seconds``: None when a run has no measured rate; ``disk_bytes``).
    """
    from cral_lib.models import build_model
    from cral_lib.train.loop import _checkpoint_bytes  # train()'s own estimate of its checkpoints

    results_dir = results_dir or BENCH_RESULTS
    train_val, test, counted = _split_sizes(data)
    print(f"plan: {len(plan['chapters'])} chapters; data {describe(data)}; runs in {runs_dir}; device {device}")
    if not counted:
        print(f"  (the data are not written yet: {train_val:,} train_val and {test:,} test images estimated from "
              "the real release's shares)")
    total_s, unknown, disk, sizes = 0.0, [], 0, {}
    print(f"runs ({len(plan['runs'])}):")
    for name, run in plan["runs"].items():
        cfg = run["config"]
        state, done = edition.run_state(runs_dir / name, cfg.epochs)
        n_val = round(train_val * cfg.val_fraction)
        n_train = min(train_val - n_val, cfg.max_train_images or train_val)
        left = max(cfg.epochs - done, 0)
        key = (cfg.backbone, cfg.attention, cfg.variant)
        if key not in sizes:
            sizes[key] = _checkpoint_bytes(build_model(**cfg.model_kwargs, weights=None))
        if state != "done":
            disk += sizes[key]
        rate = edition.measured_rate(results_dir, device, cfg.backbone, cfg.attention, cfg.image_size,
                                     edition.wanted_precision(device, cfg.amp))
        if rate is None:
            est = f"no measured rate for {device} ({cfg.backbone} at {cfg.image_size} px)"
            if left:
                unknown.append(name)
        else:
            seconds = left * (n_train / rate["rate"] + n_val / (rate["val_rate"] or rate["rate"]))
            seconds += test / (rate["val_rate"] or rate["rate"]) if state != "done" else 0
            total_s += seconds
            src = rate["file"].relative_to(ROOT) if rate["file"].is_relative_to(ROOT) else rate["file"]
            est = (f"est. {_hours(seconds)} at {rate['rate']:,.0f} img/s ({rate['kind']} {rate['backbone']} "
                   f"{rate['attention']} {rate['precision']}, batch {rate['batch_size']}, {src}, "
                   f"measured on {rate['device']})")
        print(f"  {name}  {state} ({done}/{cfg.epochs} epochs), {n_train:,} training images; chapters "
              f"{' '.join(c[:2] for c in run['chapters'])}; {est}")
    cache = {cfg.cache_size for cfg in (r["config"] for r in plan["runs"].values())}
    images = (data.get("images") or train_val + test)
    cache_bytes = sum(images * s * s for s in cache)
    free = shutil.disk_usage(_existing_parent(runs_dir)).free
    print(f"estimated time on {device}: {_hours(total_s)} for the runs with a measured rate"
          + (f"; no measured rate for {device} for {len(unknown)} run(s) still to train" if unknown else ""))
    print(f"disk: checkpoints {disk / 1e9:.1f} GB (train()'s own estimate: weights and SGD momentum in float32, "
          f"last.pt, best.pt and a temporary copy, for each run not done), image cache {cache_bytes / 1e9:.1f} GB "
          f"({images:,} images x {' and '.join(f'{s} x {s}' for s in sorted(cache)) or '-'} bytes); "
          f"{free / 1e9:.0f} GB free", flush=True)
    return {"seconds": None if unknown else total_s, "disk_bytes": disk + cache_bytes}


def _existing_parent(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def describe(data: dict) -> str:
    return f"{edition.describe_data(data)} ({data['path']})"


def check_weights(plan: dict) -> None:
    """Fetch the ImageNet weights of every backbone the plan starts from them; stop if one fails."""
    from cral_lib.errors import WeightsError
    from cral_lib.models import imagenet_weights
    from cral_lib.models.backbones import download_weights

    wanted = {r["config"].backbone for r in plan["runs"].values() if r["config"].weights == "imagenet"}
    for ch in plan["chapters"]:
        values = {**edition.cell_parameters(ch["src"].with_suffix(".ipynb")), **ch["params"]}
        if values.get("weights") == "imagenet" and values.get("backbone"):
            wanted.add(values["backbone"])
    for name in sorted(wanted):
        try:
            download_weights(name, imagenet_weights(name), progress=False)
        except WeightsError as exc:
            refuse(f"{exc} For the whole edition, that last way is `--weights none`; every page then says "
                   "that the backbones started from random weights.")


def _keep_results(runs_dir: Path, names: list[str], out: Path) -> None:
    """Copy each run's small result files (no checkpoints, no predictions) into the edition's ``results/``."""
    for name in names:
        for path in sorted((runs_dir / name).glob("*")):
            if (path.is_file() and path.suffix in (".json", ".jsonl", ".csv", ".yaml")
                    and not path.name.startswith("predictions_")):  # one row per test image: megabytes
                target = out / "results" / name / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)


def _write_manifest(out: Path, context: dict, plan: dict, runs_dir: Path) -> dict:
    """The edition's manifest.json: its context, and each stored chapter's metadata."""
    from cral_lib import __version__

    chapters_ = {}
    for ch in plan["chapters"]:
        meta = edition.stored(out / "notebooks" / f"{ch['src'].stem}.ipynb")
        if meta:
            chapters_[ch["src"].stem] = {k: meta[k] for k in ("digest", "date", "seconds", "params", "runs", "device")}
    runs = {}
    for name, run in plan["runs"].items():
        state, done = edition.run_state(runs_dir / name, run["config"].epochs)
        runs[name] = {"state": state, "epochs_done": done, "epochs": run["config"].epochs,
                      "chapters": run["chapters"]}
    dates = sorted(c["date"] for c in chapters_.values())
    manifest = {**context, "cral_lib": __version__, "dates": dates, "chapters": chapters_, "runs": runs}
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    os.replace(tmp, out / "manifest.json")
    return manifest


def execute_edition(only: list[str] | None = None, params: dict | None = None, *, data: str | None = None,
                    weights: str = "imagenet", shrink: bool = False, out: str | None = None,
                    dry_run: bool = False, force: bool = False, limits: str | None = None) -> dict:
    """Execute the chapters with the full profile into an edition folder (see editions/README.md).

    Prints the plan first; stops when the ImageNet weights cannot be had (unless ``weights="none"``);
    skips each chapter whose stored digest (source, parameters, profile, data, the runs it used)
    matches; continues the runs it finds (``train(..., resume="auto")`` in the chapters).
    """
    root = edition_root(shrink)
    weights = "none" if shrink else weights
    out_dir = Path(out) if out else root / "edition"
    runs_dir = root / "runs"
    data_dir = edition_data(data, shrink, make=False)
    selected = [s for s in chapters(strict=not only) if not only or any(s.stem.startswith(o) for o in only)]
    plan = edition_plan(selected, params or {}, data_dir, runs_dir, weights=weights, shrink=shrink)
    device = edition.device_name()
    described = edition.data_description(data_dir) if data_dir.exists() else {
        "path": str(data_dir), "kind": "synthetic", "train_val": None, "test": None,
        **{"images": (edition.SHRINK_DATA if shrink else edition.FULL_DATA)["n_images"],
           "size": (edition.SHRINK_DATA if shrink else edition.FULL_DATA)["image_size"]}}
    print_plan(plan, described, runs_dir, device)
    if dry_run:
        return plan
    if weights == "imagenet":
        check_weights(plan)
    data_dir = edition_data(data, shrink)
    context = {"profile": "full", "shrink": shrink, "weights": weights, "device": device,
               "data": edition.data_description(data_dir)}
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    runs_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    for ch in plan["chapters"]:
        src = ch["src"]
        target = out_dir / "notebooks" / f"{src.stem}.ipynb"
        before = edition.digest(src, ch["params"], context, {n: edition.run_fingerprint(runs_dir / n) for n in ch["runs"]})
        meta = edition.stored(target)
        if not force and meta and meta.get("digest") == before:
            print(f"--- {src.stem}: up to date (digest {before}), not executed again", flush=True)
            continue
        print(f"--- executing {src.stem} with the full profile {ch['params']}", flush=True)
        (root / "work" / src.stem).mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        try:
            execute_chapter(src.with_suffix(".ipynb"), target, root / "work" / src.stem, params=ch["params"],
                            limits=LIMITS[limits or ("fast" if shrink else "full")],
                            log=root / "logs" / f"{src.stem}.log", env=_env(data_dir, runs_dir))
        except RuntimeError as exc:
            failures.append(str(exc))
            print(failures[-1], flush=True)
            continue
        runs_after = {n: edition.run_fingerprint(runs_dir / n) for n in ch["runs"]}
        edition.stamp(target, {**context, "digest": edition.digest(src, ch["params"], context, runs_after),
                               "date": edition.now(), "seconds": round(time.perf_counter() - t0, 1),
                               "params": ch["params"], "runs": ch["runs"]})
        _keep_results(runs_dir, ch["runs"], out_dir)
        _write_manifest(out_dir, context, plan, runs_dir)
        print(f"    {src.stem}: {time.perf_counter() - t0:.1f} s", flush=True)
    manifest = _write_manifest(out_dir, context, plan, runs_dir)
    if failures:
        raise SystemExit("notebooks failed:\n" + "\n".join(failures))
    print(f"edition written to {out_dir} (build it: python tools/book.py build --from-executed {out_dir})")
    return manifest


# ----------------------------------------------------------------------------- build


def stage(src: Path | None = None) -> None:
    """Copy the book sources beside the executed notebooks in ``_build/src`` (or ``src``)."""
    src = src or SRC
    src.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, src / name)
    if (src / "book").exists():
        shutil.rmtree(src / "book")
    shutil.copytree(ROOT / "book", src / "book")
    missing = [s.stem for s in chapters() if not (src / "notebooks" / f"{s.stem}.ipynb").exists()]
    if missing:
        raise SystemExit(f"not executed yet: {', '.join(missing)} (run `python tools/book.py execute`)")


def stage_edition(edition_dir: Path, src: Path | None = None) -> dict:
    """Stage an edition's stored executed notebooks, each page under a banner from their metadata.

    Nothing is executed: the notebooks are copied from ``edition_dir/notebooks`` with one markdown
    cell inserted after the title (profile, data, GPU, date, weights), and the landing page gets the
    same banner for the whole edition (from ``edition_dir/manifest.json``).
    """
    import nbformat

    src = src or BUILD / "edition_src"
    edition_dir = Path(edition_dir)
    manifest_file = edition_dir / "manifest.json"
    if not manifest_file.is_file():
        refuse(f"--from-executed {edition_dir}: no manifest.json there; give the folder that "
               "`tools/book.py execute --profile full` wrote (its --out; default _build/full/edition)")
    try:
        manifest = json.loads(manifest_file.read_text())
    except ValueError as exc:
        refuse(f"--from-executed {edition_dir}: manifest.json is not JSON ({exc}); execute the edition again")
    missing = [s.stem for s in chapters() if not edition.stored(edition_dir / "notebooks" / f"{s.stem}.ipynb")]
    if missing:
        refuse(f"--from-executed {edition_dir}: no stored executed notebook for {', '.join(missing)}; run "
               "`python tools/book.py execute --profile full` again (it executes only what is missing)")
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    for s in chapters():
        nb = nbformat.read(edition_dir / "notebooks" / f"{s.stem}.ipynb", as_version=4)
        cell = nbformat.v4.new_markdown_cell(edition.banner(nb.metadata["cral_edition"]))
        cell.metadata["tags"] = ["cral-edition-banner"]
        nb.cells.insert(1, cell)
        nbformat.write(nb, src / "notebooks" / f"{s.stem}.ipynb")
    stage(src)
    intro = src / (book_config_root() + ".md")
    lines = intro.read_text().splitlines()
    title = next(i for i, ln in enumerate(lines) if ln.startswith("# "))
    lines[title + 1:title + 1] = ["", edition.banner(manifest, what="This book"), ""]
    intro.write_text("\n".join(lines) + "\n")
    return manifest


def book_config_root() -> str:
    """The landing page named by ``_toc.yml`` (``book/intro``)."""
    import yaml

    return yaml.safe_load((ROOT / "_toc.yml").read_text())["root"]


def build(from_executed: str | None = None) -> Path:
    """Build the HTML book with warnings as errors into ``_build/html``.

    Args:
        from_executed: an edition folder (``notebooks/`` and ``manifest.json``): build from its
            stored executed notebooks, with the banners, instead of ``_build/src``'s.
    """
    if from_executed:
        src = BUILD / "edition_src"
        stage_edition(Path(from_executed), src)
    else:
        src = SRC
        stage()
    jb = shutil.which("jb", path=str(Path(sys.executable).parent)) or shutil.which("jb")
    if jb is None:
        raise SystemExit("jupyter-book is not installed: pip install -e '.[book]'")
    tmp_out = BUILD / "jb"
    cmd = [jb, "build", str(src), "--path-output", str(tmp_out), "-W", "-n", "--keep-going"]
    print(" ".join(cmd), flush=True)
    res = subprocess.run(cmd, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"jupyter-book failed (exit {res.returncode}); see the warnings above")
    if HTML.exists():
        shutil.rmtree(HTML)
    shutil.copytree(tmp_out / "_build" / "html", HTML)
    print(f"book written to {HTML.relative_to(ROOT) if HTML.is_relative_to(ROOT) else HTML}/index.html")
    return HTML


# ----------------------------------------------------------------------------- browser check


def pages() -> list[str]:
    """The HTML pages of the book, landing page first, in the order of ``_toc.yml``."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc.get("parts", toc.get("chapters", [])))
    return [f + ".html" for f in files]


#: The names a Chromium goes by on the PATH (``CRAL_CHROMIUM`` overrides them with a path);
#: tools/ensure_chromium.sh looks for the same ones.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The Chromium to take the screenshots with, or None when there is none."""
    return os.environ.get("CRAL_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


def screenshots(if_browser: bool = False) -> dict:
    """Open every page in headless Chromium, screenshot it and count the figures shown.

    Writes ``_build/screenshots/*.png`` and ``_build/screenshots/report.json``: for each page,
    whether it loaded, its title, and how many images the browser actually rendered.

    Args:
        if_browser: when no Chromium is found, say so in one line and return ``{}`` instead of
            failing (``make book``: the book is built; the browser check belongs to ``make test``).
    """
    import functools
    import http.server
    import threading

    chromium = find_chromium()
    if chromium is None:
        if if_browser:
            print("screenshots skipped: no Chromium on the PATH (make test installs it; or run "
                  "`bash tools/ensure_chromium.sh && python tools/book.py screenshots`)", flush=True)
            return {}
        raise SystemExit("Chromium not found: run `bash tools/ensure_chromium.sh` (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    shutil.rmtree(SHOTS, ignore_errors=True)  # no stale pages from an earlier build
    SHOTS.mkdir(parents=True)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args, **kwargs):
            pass

    handler = functools.partial(Quiet, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    report = {}
    args = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
    ]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=args)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for rel in pages():
                shot = SHOTS / (rel.replace("/", "__").replace(".html", ".png"))
                entry = {"url": rel, "screenshot": str(shot.relative_to(ROOT) if shot.is_relative_to(ROOT) else shot)}
                resp = page.goto(base + rel, wait_until="load", timeout=60_000)
                entry["status"] = resp.status if resp else None
                entry["title"] = page.title()
                # Figures: images the browser rendered inside cell outputs or figures.
                entry["figures"] = page.evaluate(
                    "() => Array.from(document.querySelectorAll('.cell_output img, figure img'))"
                    ".filter(i => i.complete && i.naturalWidth > 0).length"
                )
                # Images of the book itself that failed to load (external badges need the
                # internet, so only same-origin images count as broken).
                entry["broken_images"] = page.evaluate(
                    "() => Array.from(document.querySelectorAll('img'))"
                    ".filter(i => i.src.startsWith(location.origin) && !(i.complete && i.naturalWidth > 0))"
                    ".map(i => i.src)"
                )
                page.screenshot(path=str(shot), full_page=True)
                report[rel] = entry
                print(f"{rel}: status {entry['status']}, {entry['figures']} figures", flush=True)
            browser.close()
    finally:
        server.shutdown()
    (SHOTS / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_execute_one"]:  # the child process of run_chapter
        return _execute_one(*argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["sync", "check", "figures", "data", "execute", "build", "screenshots", "all",
                                         "profiles"])
    parser.add_argument("--only", nargs="*", help="execute only the chapters whose name starts with these")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a notebook parameter (a Python literal), e.g. --param epochs=1")
    parser.add_argument("--limits", choices=sorted(LIMITS), default=None,
                        help="the cell and chapter time limits of execute (see LIMITS; default: the profile's)")
    parser.add_argument("--if-browser", action="store_true",
                        help="screenshots: skip with a message when no Chromium is found")
    parser.add_argument("--no-screenshots", action="store_true",
                        help="all: stop after the build (make test takes the screenshots in its browser check)")
    edition_args = parser.add_argument_group("the full-scale edition (execute --profile full; see editions/README.md)")
    edition_args.add_argument("--profile", choices=edition.PROFILES, default="fast",
                              help="execute: fast (the parameters cells; _build/src) or full (the paper's scale)")
    edition_args.add_argument("--data", metavar="DIR", help="full: a release folder (default: a synthetic set of "
                              f"{edition.FULL_DATA['n_images']:,} images, made once)")
    edition_args.add_argument("--weights", choices=("imagenet", "none"), default="imagenet",
                              help="full: the backbones' starting weights (none: random, and every page says so)")
    edition_args.add_argument("--out", metavar="DIR", help="full: the edition folder (default: _build/full/edition)")
    edition_args.add_argument("--dry-run", action="store_true", help="full: print the plan and stop")
    edition_args.add_argument("--force", action="store_true", help="full: execute even the chapters that are up to date")
    edition_args.add_argument("--shrink", action="store_true",
                              help="full, for tests only: the same code path on a tiny set, one epoch (edition.SHRINK)")
    edition_args.add_argument("--from-executed", metavar="DIR",
                              help="build: the HTML book from an edition's stored executed notebooks, executing nothing")
    args = parser.parse_args(argv)
    import ast

    params = {}
    for item in args.param:
        name, _, value = item.partition("=")
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value
    full_only = [f"--{k.replace('_', '-')}" for k in ("data", "out", "dry_run", "force", "shrink")
                 if getattr(args, k)] + (["--weights"] if args.weights != "imagenet" else [])
    if full_only and (args.step != "execute" or args.profile != "full"):
        refuse(f"{full_only[0]} is an option of `execute --profile full`; add --profile full, or leave it out")
    if args.profile != "fast" and args.step != "execute":
        refuse(f"--profile {args.profile} is an option of execute; build an edition with `build --from-executed DIR`")
    if args.from_executed and args.step != "build":
        refuse("--from-executed is an option of build: python tools/book.py build --from-executed DIR")
    t0 = time.perf_counter()
    if args.step == "sync":
        sync()
    elif args.step == "check":
        return 1 if check() else 0
    elif args.step == "figures":
        figures()
    elif args.step == "data":
        data()
    elif args.step == "execute" and args.profile == "full":
        execute_edition(args.only, params, data=args.data, weights=args.weights, shrink=args.shrink, out=args.out,
                        dry_run=args.dry_run, force=args.force, limits=args.limits)
    elif args.step == "execute":
        execute(args.only, params, args.limits or "fast")
    elif args.step == "build":
        build(args.from_executed)
    elif args.step == "profiles":
        print(edition.profile_table(chapters()), end="")
    elif args.step == "screenshots":
        screenshots(if_browser=args.if_browser)
    elif args.step == "all":
        if check():
            return 1
        if chapters():
            data()
        execute(args.only, params, args.limits or "fast")
        build()
        if not args.no_screenshots:
            screenshots(if_browser=True)  # the book is what `make book` promises; a browser is optional
    print(f"tools/book.py {args.step}: done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
