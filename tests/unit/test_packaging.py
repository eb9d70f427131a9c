"""Packaging facts a wheel depends on: every package is listed, and the Python floor fits the code."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_python_package_of_the_tree_is_in_the_wheel():
    """An unlisted subpackage works in an editable install and is missing from the wheel (the GPU check
    installs the wheel): list every folder holding an __init__.py."""
    st = PYPROJECT["tool"]["setuptools"]
    listed, dirs = set(st["packages"]), st["package-dir"]
    found = set()
    for name, folder in dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    missing = sorted(p for p in found if p not in listed)
    assert not missing, f"add to [tool.setuptools] packages: {missing}"


def test_requires_python_admits_no_version_without_tomllib():
    """tomllib (stdlib from 3.11) reads bundles and config files: the floor must be 3.11 or later."""
    uses_tomllib = [p for d in ("server", "client", "export", "proto", "benchmarks")
                    for p in (ROOT / d).rglob("*.py") if re.search(r"^\s*import tomllib", p.read_text(), re.M)]
    assert uses_tomllib  # the check below matters
    floor = re.match(r">=\s*3\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert floor and int(floor.group(1)) >= 11, PYPROJECT["project"]["requires-python"]
    assert "Python 3.11+" in (ROOT / "README.md").read_text()
