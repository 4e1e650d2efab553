"""The ``cral`` command line (also ``python -m cral_lib``).

Each sub-command lives in a module of this package that defines:

- ``HELP``: a one-line summary shown by ``cral --help``;
- ``ORDER``: an integer that places it in the help listing;
- ``add_arguments(parser)``: its options;
- ``run(args) -> int``: the work; returns the exit status.

Sub-commands are found by listing this package, so adding a module adds a command.
A :class:`cral_lib.errors.CralError` (or a missing file) raised by a command becomes
a one-line message on standard error and exit status 2, never a traceback. Any other error
(a bug) is one line too, with where it happened, and exit status 1; ``CRAL_TRACEBACK=1``
shows its traceback.

Building the parser imports every command module, so a command imports the library's heavy
parts (torch, pandas, the trainer) inside ``run``, where a comment says so: ``cral --help``
stays quick and loads none of them (tests/test_architecture.py checks it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Sequence

from .._version import __version__
from ..errors import CralError

PROG = "cral"
#: Set to 1 to see the traceback of an unexpected error instead of its one-line summary.
TRACEBACK_ENV = "CRAL_TRACEBACK"


def _command_modules() -> list[tuple[str, ModuleType]]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "run") and hasattr(module, "add_arguments"):
            found.append((info.name, module))
    found.sort(key=lambda item: (getattr(item[1], "ORDER", 100), item[0]))
    return found


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the value, what is wrong, where the help is)."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every sub-command attached."""
    parser = _Parser(
        prog=PROG,
        description=(
            "CRAL: category-wise residual attention learning for multi-label chest X-ray "
            "classification on ChestX-ray14 (real or synthetic)."
        ),
        epilog="Run 'cral COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module in _command_modules():
        doc = (module.__doc__ or "").strip()
        p = sub.add_parser(
            name.replace("_", "-"),
            help=module.HELP,
            description=doc or module.HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cral`` console script.

    Args:
        argv: the arguments (without the program name); ``sys.argv[1:]`` when None.

    Returns:
        The exit status: 0 on success, 2 on bad input, 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CralError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"{PROG} {args.command}: error: file not found: {exc.filename or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{PROG} {args.command}: error: out of memory (try a smaller --batch-size or fewer --workers)",
              file=sys.stderr)
        return 1
    except Exception as exc:  # a failure no check foresaw: still one line, and how to see where it happened
        if os.environ.get(TRACEBACK_ENV):
            raise
        where = traceback.extract_tb(exc.__traceback__)[-1]
        print(f"{PROG} {args.command}: internal error: {type(exc).__name__}: {str(exc)[:300]} (at "
              f"{Path(where.filename).name}:{where.lineno}; set {TRACEBACK_ENV}=1 for the traceback, and please "
              "report it)", file=sys.stderr)
        return 1


__all__ = ["build_parser", "main"]
