"""ARCHITECTURE.md's module table is executable: its "must not" column is checked here.

Each row names a module and what it must not do. The rules this file knows how to check:

* ``import PyMC``: importing the module in a fresh interpreter loads neither PyMC nor
  PyTensor (``sys.modules``);
* ``depend on estimators``: importing it does not load ``bayesmoe.estimators``;
* ``sample``: no call of ``pm.sample``, ``pm.fit`` or ``nutpie.sample`` in its source;
* ``build graphs``: no ``pm.Model(...)`` in its source;
* ``compute LOO``: no call of ``az.loo`` / ``loo`` in its source.

A row whose rule is none of these is checked only for the module's existence.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from tests.conftest import python_output

ROOT = Path(__file__).resolve().parents[1]


def _rows() -> list[tuple[str, str]]:
    rows = []
    for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines():
        m = re.match(r"^\| `(bayesmoe/[^`]*)` \|.*\| ([^|]*) \|$", line)
        if m:
            rows.append((m.group(1), m.group(2).strip()))
    return rows


ROWS = _rows()


def _module_name(path: str) -> str:
    return path.removesuffix("/").removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _sources(path: str) -> list[Path]:
    target = ROOT / path
    return sorted(target.rglob("*.py")) if target.is_dir() else [target]


def _calls(path: str) -> set[str]:
    """Dotted names of every call in the module's source (``pm.sample``, ``loo``, ...)."""
    names = set()
    for source in _sources(path):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call):
                names.add(ast.unparse(node.func))
    return names


def test_the_table_lists_modules():
    assert len(ROWS) >= 20
    for path, _ in ROWS:
        assert (ROOT / path).exists(), f"ARCHITECTURE.md names {path}, which does not exist"


@pytest.mark.parametrize(
    ("path", "rule"), [r for r in ROWS if "import PyMC" in r[1] or "depend on" in r[1]]
)
def test_import_boundaries(path, rule):
    forbidden = []
    if "import PyMC" in rule:
        forbidden += ["pymc", "pytensor"]
    if "depend on estimators" in rule:
        forbidden += ["bayesmoe.estimators"]
    code = (
        "import json, sys, importlib\n"
        f"importlib.import_module({_module_name(path)!r})\n"
        f"print(json.dumps([m for m in {forbidden!r} if m in sys.modules]))\n"
    )
    loaded = json.loads(python_output(code).strip().splitlines()[-1])
    assert loaded == [], f"{path} must not {rule}, yet importing it loads {loaded}"


SOURCE_RULES = {
    "sample": {"pm.sample", "pm.fit", "nutpie.sample"},
    "build graphs": {"pm.Model"},
    "compute LOO": {"az.loo", "loo", "arviz.loo"},
}


@pytest.mark.parametrize(
    ("path", "rule"), [r for r in ROWS if any(k in r[1] for k in SOURCE_RULES)]
)
def test_source_boundaries(path, rule):
    calls = _calls(path)
    for key, names in SOURCE_RULES.items():
        if key in rule:
            assert not calls & names, f"{path} must not {rule}: it calls {sorted(calls & names)}"
