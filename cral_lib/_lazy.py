"""Names imported on first use: what keeps ``import cral_lib.data`` from importing torch.

A package (or a module kept for an old import path) lists its names and the module that
defines each; :func:`lazy_exports` gives it the module-level ``__getattr__`` and ``__dir__``
(PEP 562) that import that module when the name is first asked for.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_exports(package: str,
                 names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Return ``(__getattr__, __dir__, __all__)`` for a module whose names live in other modules.

    Args:
        package: the module's ``__name__``.
        names: name -> the module that defines it: relative to ``package``'s package (``".nih"``)
            or absolute (``"cral_lib.synthetic.writer"``).

    Returns:
        The two functions to assign to ``__getattr__`` and ``__dir__``, and the sorted names.
    """
    anchor = package if hasattr(sys.modules.get(package), "__path__") else package.rpartition(".")[0]

    def __getattr__(name: str) -> Any:
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(target, anchor), name)

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__, sorted(names)


__all__ = ["lazy_exports"]
