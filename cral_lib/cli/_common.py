"""Argument types shared by the sub-commands (a module whose name starts with ``_`` is no command)."""

from __future__ import annotations

import argparse


#: The most bootstrap resamples `cral evaluate` and `cral compare` take (1,000 give intervals to about 0.005).
MAX_BOOTSTRAP = 100_000


def path_arg(text: str) -> str:
    """A folder or file argument: refused when empty (``--out ""`` would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a folder or file name (use . for the current folder)")
    return text


__all__ = ["MAX_BOOTSTRAP", "path_arg"]
