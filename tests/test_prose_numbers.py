"""The prose of chapters 6-11 types no result of a run: such numbers are printed by code.

A decimal in a markdown cell of a chapter that trains or reads runs is allowed only when it is
a fixed fact (the paper's reported values and settings, statistical conventions); anything a
run produces must come from a cell's output, so that the text cannot drift from the figures.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p for p in (ROOT / "notebooks").glob("*.py") if re.match(r"(0[6-9]|1\d)_", p.name))

#: Decimals that are facts, not results: the recipes' settings (lr 0.01 and its decay 0.1, weight
#: decay 0.0001, momentum 0.9), Table 2's AUCs, statistical conventions (0.05, 0.95, z = 1.96),
#: the 0-to-1 scale's ends and middle, and the size of the real release's cache (7.3 GB).
FIXED = {"0.01", "0.001", "0.0001", "0.1", "0.9", "0.95", "0.05", "0.5", "0.8136", "0.8034", "1.0", "0.0",
         "1.96", "7.3"}
#: A decimal that is not part of a word, a version, or a reference to one of the paper's sections.
DECIMAL = re.compile(r"(?<![\w.])(?<!Section )(?<!Sections )\d+\.\d+(?![\w.])")


def markdown_lines(path: Path):
    """(line number, text) of every line inside a markdown cell of a py:percent notebook."""
    in_markdown = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("# %%"):
            in_markdown = "[markdown]" in line
            continue
        if in_markdown and line.startswith("#"):
            yield number, line[1:]


def test_there_are_chapters_to_check():
    assert len(CHAPTERS) >= 5


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_no_typed_results_in_the_prose(path):
    typed = [f"{path.name}:{n}: {m}" for n, text in markdown_lines(path) for m in DECIMAL.findall(text)
             if m not in FIXED]
    assert not typed, "decimals typed in the prose (print them from a cell instead):\n" + "\n".join(typed)


def test_the_check_finds_a_typed_result(tmp_path):
    fake = tmp_path / "06_fake.py"
    fake.write_text("# %% [markdown]\n# The model reached a mean AUC of 0.734 here.\n\n# %%\nx = 0.734\n")
    found = [m for _, text in markdown_lines(fake) for m in DECIMAL.findall(text) if m not in FIXED]
    assert found == ["0.734"]
