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


def test_the_tree_is_the_package():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    block = text.split("<!-- tree:", 1)[1].split("```", 2)[1]
    listed = sorted(line.strip() for line in block.splitlines() if line.strip())
    actual = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "bayesmoe").rglob("*.py"))
    assert listed == actual, (
        f"ARCHITECTURE.md's tree is stale: missing {sorted(set(actual) - set(listed))}, "
        f"gone {sorted(set(listed) - set(actual))}"
    )


def test_every_module_has_a_row():
    named = {path for path, _ in ROWS}
    folders = {path for path in named if path.endswith("/")}
    missing = []
    for path in sorted((ROOT / "bayesmoe").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if path.name == "__init__.py":
            if rel.removesuffix("__init__.py") in folders or rel in named:
                continue
            if rel.count("/") == 1 or path.parent == ROOT / "bayesmoe":
                continue  # the package itself and its lazy exports
            missing.append(rel)
        elif rel not in named and not any(rel.startswith(f) for f in folders):
            missing.append(rel)
    assert not missing, f"modules without a row in ARCHITECTURE.md: {missing}"
