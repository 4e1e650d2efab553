"""Checks on the built book: every page exists, executed chapters are clean, and a real
browser (headless Chromium) shows each chapter's figures.

These run after ``python tools/book.py all`` (``make test`` does both); they are marked
``book`` so that ``pytest -m "not book"`` skips them before the book exists.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.book


def _book_tools():
    spec = importlib.util.spec_from_file_location("book_tools", ROOT / "tools" / "book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


book = _book_tools()


def _executed(stem: str):
    path = book.SRC / "notebooks" / f"{stem}.ipynb"
    assert path.exists(), f"{stem} was not executed: run python tools/book.py execute"
    return nbformat.read(path, as_version=4)


def _image_cells(nb) -> list:
    return [
        c for c in nb.cells
        if c.cell_type == "code" and any("image/png" in o.get("data", {}) for o in c.get("outputs", []))
    ]


@pytest.fixture(scope="module")
def report():
    assert (book.HTML / "index.html").exists(), "the book is not built: run python tools/book.py all"
    return book.screenshots()


def test_every_page_is_built():
    for page in book.pages():
        assert (book.HTML / page).exists(), f"missing page {page}"


@pytest.mark.parametrize("stem", [p.stem for p in book.chapters()])
def test_executed_chapter_is_clean(stem):
    nb = _executed(stem)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{stem}: a cell raised {out.get('ename')}"
    for cell in _image_cells(nb):
        caption = cell.metadata.get("mystnb", {}).get("figure", {}).get("caption")
        assert caption, f"{stem}: a figure without a caption: {cell.source[:120]}"


def test_browser_shows_every_page_and_its_figures(report):
    for page in book.pages():
        entry = report.get(page)
        assert entry is not None, f"{page} was not opened"
        assert entry["status"] == 200, f"{page}: HTTP {entry['status']}"
        assert not entry["broken_images"], f"{page}: images that did not load: {entry['broken_images']}"
        shot = ROOT / entry["screenshot"]
        assert shot.exists() and shot.stat().st_size > 10_000, f"{page}: no screenshot"
    for src in book.chapters():
        page = f"notebooks/{src.stem}.html"
        n_made = sum(
            sum("image/png" in o.get("data", {}) for o in c.outputs) for c in _image_cells(_executed(src.stem))
        )
        if n_made:
            assert report[page]["figures"] >= n_made, (
                f"{page}: the notebook makes {n_made} figures, the browser shows {report[page]['figures']}"
            )
    (book.SHOTS / "checked.json").write_text(json.dumps(sorted(report), indent=2))


def test_colab_launch_buttons():
    slug, branch = book.repository()
    for src in book.chapters():
        html = (book.HTML / "notebooks" / f"{src.stem}.html").read_text()
        target = f"colab.research.google.com/github/{slug}/blob/{branch}/notebooks/{src.stem}.ipynb"
        assert target in html, f"{src.stem}: no Colab launch button to {target}"
