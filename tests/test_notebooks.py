"""Every notebook follows the book's opening standard and its Colab copy is in sync.

The standard (see README, "Writing a chapter"):

1. a title and an "Open in Colab" badge derived from ``_config.yml``;
2. a set-up cell that installs ``cral_lib`` only when it is missing, tagged so that the built
   book hides its output;
3. an imports cell that ends with ``cral_lib.print_config()``;
4. exactly one cell tagged ``parameters``, holding ``data_dir`` among the knobs;
5. the data folder taken from that parameter or ``CRAL_DATA_DIR`` through the chapters' door,
   ``cral_lib.book.setup`` (which calls ``resolve_data_dir``; tests/test_book_module.py).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def _book_tools():
    spec = importlib.util.spec_from_file_location("book_tools", ROOT / "tools" / "book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


book = _book_tools()


def test_pairs_and_badges_in_sync():
    problems = book.check(verbose=False)
    assert not problems, "\n".join(problems) + "\nrun: python tools/book.py sync"


def test_toc_lists_every_notebook():
    listed = [p.stem for p in book.chapters()]
    present = [p.stem for p in NOTEBOOKS]
    assert listed == present, f"_toc.yml lists {listed}, notebooks/ holds {present}"


def test_repository_url_lives_only_in_config():
    slug, _ = book.repository()
    offenders = []
    for path in list(ROOT.glob("*.md")) + list(ROOT.glob("*.toml")) + list((ROOT / "cral_lib").rglob("*.py")):
        if slug in path.read_text():
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"the repository address {slug} is written outside _config.yml: {offenders}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_opening_standard(path):
    nb = jupytext.read(path)
    cells = nb.cells
    first = cells[0]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith("# "), "first cell: a '# Title'"
    assert book.badge(path.stem) in first.source, "first cell: the Open in Colab badge (python tools/book.py sync)"

    code = [c for c in cells if c.cell_type == "code"]
    setup = [c for c in code if 'find_spec("cral_lib")' in c.source]
    assert setup, 'a set-up cell that installs cral_lib only when importlib.util.find_spec("cral_lib") is None'
    assert "pip" in setup[0].source and book.install_url() in setup[0].source
    assert {"remove-output", "hide-output"} & set(setup[0].metadata.get("tags", [])), (
        "the set-up cell is tagged remove-output (or hide-output), so the built book hides pip's output"
    )

    imports = [c for c in code if c.source.rstrip().endswith("cral_lib.print_config()")]
    assert imports, "an imports cell ending with cral_lib.print_config()"
    assert code.index(setup[0]) < code.index(imports[0]), "set-up comes before the imports"

    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"exactly one cell tagged 'parameters' (found {len(params)})"
    assert re.search(r"^data_dir\s*=", params[0].source, re.M), "the parameters cell defines data_dir"
    assert code.index(imports[0]) < code.index(params[0]), "imports come before the parameters"

    body = "\n".join(c.source for c in code)
    assert "book.setup(data_dir" in body, "the data folder comes from book.setup(data_dir) (parameter or CRAL_DATA_DIR)"
    assert "sys.path" not in body, "notebooks import the installed cral_lib; no sys.path patching"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_figures_have_captions(path):
    """A cell that draws a figure carries a caption (cell metadata mystnb.figure.caption)."""
    nb = jupytext.read(path)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        draws = re.search(r"\b(plt\.(show|subplots|figure)|viz\.(plot_|overlay_|draw_|static_)|sns\.)", cell.source)
        if draws:
            caption = cell.metadata.get("mystnb", {}).get("figure", {}).get("caption")
            assert caption, f"{path.name}: a figure without a caption:\n{cell.source[:200]}"


@pytest.mark.parametrize("path", NOTEBOOKS + sorted((ROOT / "book").glob("*.md")), ids=lambda p: p.name)
def test_no_control_characters(path):
    """No stray control characters (a ``\\a`` of ``\\approx`` turned into a bell by an editor, say)."""
    text = path.read_text(encoding="utf-8")
    bad = [(n, line) for n, line in enumerate(text.splitlines(), 1) if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", line)]
    assert not bad, f"{path.name}: control characters on line(s) {[n for n, _ in bad]}"
