"""Build the CRAL Book: sync the notebooks, make the data, execute, build, look at it.

Usage (from the repository root, inside the project's environment)::

    python tools/book.py sync         # rewrite the paired .ipynb (and badges) from the .py sources
    python tools/book.py check        # fail if a pair or a badge is out of date (no writes)
    python tools/book.py figures      # redraw book/figures/ (the architecture diagram)
    python tools/book.py data         # the embedded synthetic dataset and its cache, once
    python tools/book.py execute      # run every chapter with papermill in its fast mode
    python tools/book.py build        # stage the executed chapters and run `jb build -W -n`
    python tools/book.py screenshots  # headless Chromium: one screenshot per page, figure count
    python tools/book.py all          # check, data, execute, build, and screenshots if Chromium is found

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

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("CRAL_BOOK_BUILD") or ROOT / "_build")  # where everything is made
NOTEBOOKS = ROOT / "notebooks"
DATA_DIR = BUILD / "data" / "synthetic"
RUNS_DIR = BUILD / "runs"
SRC = BUILD / "src"
HTML = BUILD / "html"
SHOTS = BUILD / "screenshots"

#: The embedded synthetic dataset the book is built on (see `cral synth --help`).
BOOK_DATA = {"n_images": 2000, "image_size": 256, "seed": 0}

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
    if verbose:
        for p in problems:
            print(p)
        if problems:
            print("run `python tools/book.py sync` to rewrite the pairs from the .py sources")
    return problems


def sync() -> None:
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


def data() -> Path:
    """Make the embedded synthetic dataset and its cache (both reused when complete)."""
    from cral_lib.data import build_cache
    from cral_lib.synthetic import is_synthetic_complete, make_synthetic

    if not is_synthetic_complete(DATA_DIR, **BOOK_DATA):
        shown = DATA_DIR.relative_to(ROOT) if DATA_DIR.is_relative_to(ROOT) else DATA_DIR  # CRAL_BOOK_BUILD elsewhere
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


def _env() -> dict:
    env = dict(os.environ)
    env["CRAL_DATA_DIR"] = str(DATA_DIR)
    env["CRAL_RUNS_DIR"] = str(RUNS_DIR)
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


# ----------------------------------------------------------------------------- build


def stage() -> None:
    """Copy the book sources beside the executed notebooks in ``_build/src``."""
    SRC.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, SRC / name)
    if (SRC / "book").exists():
        shutil.rmtree(SRC / "book")
    shutil.copytree(ROOT / "book", SRC / "book")
    missing = [s.stem for s in chapters() if not (SRC / "notebooks" / f"{s.stem}.ipynb").exists()]
    if missing:
        raise SystemExit(f"not executed yet: {', '.join(missing)} (run `python tools/book.py execute`)")


def build() -> Path:
    """Build the HTML book with warnings as errors into ``_build/html``."""
    stage()
    jb = shutil.which("jb", path=str(Path(sys.executable).parent)) or shutil.which("jb")
    if jb is None:
        raise SystemExit("jupyter-book is not installed: pip install -e '.[book]'")
    tmp_out = BUILD / "jb"
    cmd = [jb, "build", str(SRC), "--path-output", str(tmp_out), "-W", "-n", "--keep-going"]
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
                entry = {"url": rel, "screenshot": str(shot.relative_to(ROOT))}
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
    parser.add_argument("step", choices=["sync", "check", "figures", "data", "execute", "build", "screenshots", "all"])
    parser.add_argument("--only", nargs="*", help="execute only the chapters whose name starts with these")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a notebook parameter (a Python literal), e.g. --param epochs=1")
    parser.add_argument("--limits", choices=sorted(LIMITS), default="fast",
                        help="the cell and chapter time limits of execute (see LIMITS; default: fast)")
    parser.add_argument("--if-browser", action="store_true",
                        help="screenshots: skip with a message when no Chromium is found")
    parser.add_argument("--no-screenshots", action="store_true",
                        help="all: stop after the build (make test takes the screenshots in its browser check)")
    args = parser.parse_args(argv)
    import ast

    params = {}
    for item in args.param:
        name, _, value = item.partition("=")
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name] = value
    t0 = time.perf_counter()
    if args.step == "sync":
        sync()
    elif args.step == "check":
        return 1 if check() else 0
    elif args.step == "figures":
        figures()
    elif args.step == "data":
        data()
    elif args.step == "execute":
        execute(args.only, params, args.limits)
    elif args.step == "build":
        build()
    elif args.step == "screenshots":
        screenshots(if_browser=args.if_browser)
    elif args.step == "all":
        if check():
            return 1
        if chapters():
            data()
        execute(args.only, params, args.limits)
        build()
        if not args.no_screenshots:
            screenshots(if_browser=True)  # the book is what `make book` promises; a browser is optional
    print(f"tools/book.py {args.step}: done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
