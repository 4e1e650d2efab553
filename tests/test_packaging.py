"""The project installs as documented: dependencies, console script, package surface."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

import cral_lib

ROOT = Path(__file__).resolve().parents[1]

# conda package name -> PyPI name, where they differ
CONDA_TO_PYPI = {"pytorch": "torch"}


def _pyproject_requirements() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(data["dependencies"])
    for extra in data["optional-dependencies"].values():
        reqs += extra
    out = {}
    for r in reqs:
        req = Requirement(r)
        out[req.name.lower()] = str(req.specifier)
    return out


def _environment_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            if item.startswith("-e") or item in ("pip",) or item.startswith("python"):
                continue
            # conda specs use the same operators as pip for the floors we write
            req = Requirement(item)
            name = CONDA_TO_PYPI.get(req.name.lower(), req.name.lower())
            out[name] = str(req.specifier)
    return out


def test_environment_yml_matches_pyproject():
    py = _pyproject_requirements()
    env = _environment_requirements()
    assert set(env) == set(py), (
        f"only in environment.yml: {sorted(set(env) - set(py))}; "
        f"only in pyproject.toml: {sorted(set(py) - set(env))}"
    )
    for name, spec in py.items():
        assert env[name] == spec, f"{name}: pyproject.toml says {spec!r}, environment.yml says {env[name]!r}"


def test_dependencies_are_floors_not_pins():
    for name, spec in _pyproject_requirements().items():
        assert "==" not in spec, f"{name} is pinned ({spec}); use a floor such as >=X.Y"
        assert spec, f"{name} has no version floor"
    assert _pyproject_requirements()["torch"] == ">=2.2"


def test_classes_in_paper_order():
    assert cral_lib.CLASSES == (
        "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
        "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
    )


def test_print_config(capsys):
    cral_lib.print_config()
    out = capsys.readouterr().out
    import torch
    import torchvision

    for expected in (cral_lib.__version__, torch.__version__, torchvision.__version__, sys.version.split()[0]):
        assert expected in out
    assert re.search(r"^device\s+: (cpu|cuda|mps)", out, re.M)


def test_import_is_light():
    code = "import sys, cral_lib; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", "import cral_lib must not import torch"


#: the console script that pip installed beside this interpreter (the environment need not be activated)
_SCRIPT = Path(sys.executable).with_name("cral")
CRAL = str(_SCRIPT) if _SCRIPT.exists() else "cral"


@pytest.mark.parametrize("argv", [[CRAL, "--help"], [sys.executable, "-m", "cral_lib", "--help"]])
def test_console_script_help(argv):
    res = subprocess.run(argv, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "usage: cral" in res.stdout


def test_every_documented_command_exists():
    """The sub-commands named in the README exist and answer --help."""
    from cral_lib.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"`cral ([a-z][a-z-]*)", readme))
    assert documented, "README.md names no cral sub-command"
    missing = documented - set(sub.choices)
    assert not missing, f"README.md documents commands that do not exist: {sorted(missing)}"
    for name in sub.choices:
        res = subprocess.run([CRAL, name, "--help"], capture_output=True, text=True)
        assert res.returncode == 0 and "usage: cral " + name in res.stdout, res.stderr


def test_unknown_command_fails_with_one_line():
    res = subprocess.run([CRAL, "no-such-command"], capture_output=True, text=True)
    assert res.returncode == 2
    assert "invalid choice" in res.stderr
