"""The arrows between the rooms of cral_lib point one way, as the table of ARCHITECTURE.md says.

The table ("Rooms and arrows") is read from ARCHITECTURE.md itself: it names each room's modules
and the rooms it may import. Every import of every module counts, those inside functions and
``TYPE_CHECKING`` blocks too, and so do the names a module imports on first use
(``lazy_exports(__name__, {...})``). The modules kept for old import paths (the second table)
may forward to the room they name, and must define nothing themselves.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cral_lib"
DOC = ROOT / "ARCHITECTURE.md"


def _table(heading: str) -> list[list[str]]:
    """The rows of the first markdown table after ``heading`` in ARCHITECTURE.md (cells, stripped)."""
    text = DOC.read_text()
    start = text.index(heading)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif rows:
            break
    return rows[1:]  # without the header


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def rooms() -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """(room -> its modules or folders, room -> the rooms it may import), from ARCHITECTURE.md."""
    modules, allowed = {}, {}
    for name, where, _job, may in _table("## Rooms and arrows"):
        room = _ticked(name)[0]
        modules[room] = _ticked(where)
        allowed[room] = set(_ticked(may))
    return modules, allowed


def aliases() -> dict[str, str]:
    """Module path (relative to cral_lib/) -> the room it forwards to."""
    return {_ticked(module)[0]: _ticked(target)[0] for module, target in _table("Modules kept only for an old import path")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel).with_suffix(".py").exists() or (ROOT / rel / "__init__.py").exists()


def _resolve(current: str, is_package: bool, level: int, module: str | None) -> str:
    base = current.split(".") if is_package else current.split(".")[:-1]
    if level:
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))
    return module or ""


def imported_modules(path: Path, name: str | None = None) -> set[str]:
    """Every cral_lib module that ``path`` (module ``name``) imports anywhere in it, or names for import on first use."""
    name = name or _module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, is_package, node.level, node.module)
            subs = [f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}")]
            found.update(subs or [target])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports":
            for value in ast.walk(node):
                if isinstance(value, ast.Constant) and isinstance(value.value, str) and (
                        value.value.startswith(".") or value.value.startswith("cral_lib")):
                    text = value.value
                    level = len(text) - len(text.lstrip("."))
                    found.add(_resolve(name, is_package, level, text.lstrip(".") or None) if level else text)
    return {m for m in found if m == "cral_lib" or m.startswith("cral_lib.")}


def room_of(module: str, modules: dict[str, list[str]]) -> str | None:
    """The room a dotted module name belongs to (a module of a folder belongs to the folder's room)."""
    rel = module.split(".")[1:]
    path = "/".join(rel)
    for room, places in modules.items():
        for place in places:
            if place == "__init__.py" and not rel:
                return room
            if place.endswith("/") and (path + "/").startswith(place):
                return room
            if place.endswith(".py") and path == place[:-3]:
                return room
    return None


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_table_is_complete_and_acyclic():
    modules, allowed = rooms()
    assert {"data", "synthetic", "fetch", "models", "train", "cli", "book", "device"} <= set(modules)
    for path in _sources():
        assert room_of(_module_name(path), modules), f"{path.relative_to(ROOT)} is in no room of ARCHITECTURE.md"
    for room, targets in allowed.items():
        unknown = targets - set(modules)
        assert not unknown, f"ARCHITECTURE.md: room {room} may import unknown rooms {unknown}"
    # a topological order exists: no room reaches itself through the arrows
    order, left = [], dict(allowed)
    while left:
        ready = [r for r, t in left.items() if (t - {r}) <= set(order)]
        assert ready, f"the arrows of ARCHITECTURE.md form a cycle among {sorted(left)}"
        order += ready
        for r in ready:
            del left[r]


def test_every_import_follows_an_arrow():
    modules, allowed = rooms()
    kept = aliases()
    wrong = []
    for path in _sources():
        rel = str(path.relative_to(PACKAGE))
        room = room_of(_module_name(path), modules)
        may = allowed[room] | {room}
        if rel in kept:
            may = {"base", room, kept[rel]}
        for target in sorted(imported_modules(path)):
            other = room_of(target, modules)
            if other not in may:
                wrong.append(f"{rel} ({room}) imports {target} ({other})")
    assert not wrong, "imports against the arrows of ARCHITECTURE.md:\n" + "\n".join(wrong)


def test_a_wrong_arrow_is_caught(tmp_path):
    """The check sees what it must refuse: data importing train, models importing data."""
    modules, allowed = rooms()
    assert "train" not in allowed["data"] and "data" not in allowed["models"]
    probe = tmp_path / "probe.py"
    probe.write_text("from ..train import loop\n\n\ndef f():\n    from ..models import build_model\n")
    targets = imported_modules(probe, "cral_lib.data.probe")
    assert {room_of(t, modules) for t in targets} == {"train", "models"}


def test_alias_modules_only_forward():
    for rel, room in aliases().items():
        tree = ast.parse((PACKAGE / rel).read_text())
        defined = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert not defined, f"{rel} is kept for an old import path and must only forward its names"
        forwarded = {room_of(m, rooms()[0]) for m in imported_modules(PACKAGE / rel)}
        assert room in forwarded, f"{rel} should forward to {room}"


@pytest.mark.parametrize("code, heavy", [
    ("from cral_lib.cli import build_parser; build_parser()", ("torch", "pandas")),
    ("import cral_lib.train.config, cral_lib.choices, cral_lib.data.files, cral_lib.fetch.nih", ("torch", "pandas")),
    ("import cral_lib.data, cral_lib.train, cral_lib.metrics, cral_lib.synthetic, cral_lib.fetch", ("torch",)),
])
def test_light_entry_points(code, heavy):
    """What `cral --help` and the lazily exported packages import: none of the heavy libraries."""
    check = f"import sys; {code}; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"{code} imports {out.strip()}"


#: Small rooms (STYLE.md): a longer file or function is split by job, unless it says why with
#: this marker in its first lines (a table of constants, say).
MAX_FILE_LINES, MAX_FUNCTION_LINES, LONG_ON_PURPOSE = 600, 120, "long on purpose:"


def test_files_and_functions_stay_small():
    too_long = []
    for path in _sources():
        text = path.read_text()
        rel = path.relative_to(ROOT)
        if len(text.splitlines()) > MAX_FILE_LINES and LONG_ON_PURPOSE not in "\n".join(text.splitlines()[:40]):
            too_long.append(f"{rel}: {len(text.splitlines())} lines")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                head = "\n".join(lines[node.lineno - 1 : node.lineno + 8])
                if size > MAX_FUNCTION_LINES and LONG_ON_PURPOSE not in head:
                    too_long.append(f"{rel}:{node.lineno} {node.name}(): {size} lines")
    assert not too_long, "split these by job (or say why not): " + "; ".join(too_long)
