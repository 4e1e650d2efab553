"""Build the CRAL Book: sync the notebooks, make the data, execute, build, look at it.

Usage (from the repository root, inside the project's environment)::

    python tools/book.py sync         # rewrite the paired .ipynb (and badges) from the .py sources
    python tools/book.py check        # fail if a pair or a badge is out of date (no writes)
    python tools/book.py figures      # redraw book/figures/ (the architecture diagram)
    python tools/book.py data         # the embedded synthetic dataset and its cache, once
    python tools/book.py execute      # run every chapter with papermill in its fast mode
    python tools/book.py build        # stage the executed chapters and run `jb build -W -n`
    python tools/book.py screenshots  # headless Chromium: one screenshot per page, figure count
    python tools/book.py all          # check, data, execute, build, screenshots

Everything it makes lives under ``_build/``:

- ``_build/data/``: the synthetic release folder and its cache (reused when complete);
- ``_build/runs/``: training runs that later chapters reuse (``CRAL_RUNS_DIR``);
- ``_build/src/``: the staged book (``_config.yml``, ``_toc.yml``, ``book/``, executed notebooks);
- ``_build/html/``: the HTML book; ``_build/screenshots/``: the browser check;
- ``_build/notebook_times.json``: how long each chapter took to execute.

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
BUILD = ROOT / "_build"
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
    from cral_lib.data import build_cache, is_synthetic_complete, make_synthetic

    if not is_synthetic_complete(DATA_DIR, **BOOK_DATA):
        print(f"writing the synthetic dataset into {DATA_DIR.relative_to(ROOT)} {BOOK_DATA}")
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


def execute(only: list[str] | None = None, params: dict | None = None) -> dict:
    """Execute each chapter with papermill into ``_build/src/notebooks``."""
    import papermill as pm

    out_dir = SRC / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    times_file = BUILD / "notebook_times.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    failures = []
    saved_env = dict(os.environ)
    os.environ.clear()
    os.environ.update(_env())
    try:
        for src in chapters(strict=not only):
            if only and not any(src.stem.startswith(o) for o in only):
                continue
            ipynb = src.with_suffix(".ipynb")
            work = BUILD / "work" / src.stem
            work.mkdir(parents=True, exist_ok=True)
            print(f"--- executing {src.stem}", flush=True)
            t0 = time.perf_counter()
            try:
                pm.execute_notebook(
                    str(ipynb),
                    str(out_dir / ipynb.name),
                    parameters=params or {},
                    kernel_name="python3",
                    cwd=str(work),
                    progress_bar=False,
                    log_output=False,
                    report_mode=False,
                )
            except Exception as exc:  # papermill re-raises the cell's error
                failures.append(f"{src.stem}: {type(exc).__name__}: {str(exc)[-2000:]}")
                print(failures[-1], flush=True)
            dt = time.perf_counter() - t0
            times[src.stem] = round(dt, 1)
            print(f"    {src.stem}: {dt:.1f} s", flush=True)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
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
    print(f"book written to {HTML.relative_to(ROOT)}/index.html")
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


def screenshots() -> dict:
    """Open every page in headless Chromium, screenshot it and count the figures shown.

    Writes ``_build/screenshots/*.png`` and ``_build/screenshots/report.json``: for each page,
    whether it loaded, its title, and how many images the browser actually rendered.
    """
    import functools
    import http.server
    import threading

    from playwright.sync_api import sync_playwright

    candidates = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    chromium = os.environ.get("CRAL_CHROMIUM") or next(filter(None, map(shutil.which, candidates)), None)
    if chromium is None:
        raise SystemExit("Chromium not found: run `bash tools/ensure_chromium.sh` (Debian: apt-get install chromium)")
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["sync", "check", "figures", "data", "execute", "build", "screenshots", "all"])
    parser.add_argument("--only", nargs="*", help="execute only the chapters whose name starts with these")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a notebook parameter (a Python literal), e.g. --param epochs=1")
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
        execute(args.only, params)
    elif args.step == "build":
        build()
    elif args.step == "screenshots":
        screenshots()
    elif args.step == "all":
        if check():
            return 1
        if chapters():
            data()
        execute(args.only, params)
        build()
        screenshots()
    print(f"tools/book.py {args.step}: done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
