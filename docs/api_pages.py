"""The generated parts of the documentation site: the API pages (one autosummary page per
module, listing its ``__all__``), the gallery's copies of the notebooks, and the names the
class template treats specially. Used by ``conf.py``, ``check_api_pages.py`` and
``tests/test_docs.py``; it imports bayesmoe, never Sphinx.
"""

from __future__ import annotations

import importlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def copy_notebooks(out: Path = HERE / "gallery") -> list[Path]:
    """The repository's notebooks, copied into the gallery folder (Sphinx reads only its
    source folder; the copies are ignored by git). Unchanged copies are left alone."""
    written = []
    for src in sorted((ROOT / "notebooks").glob("*.ipynb")):
        dst = out / src.name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            dst.write_bytes(src.read_bytes())
        written.append(dst)
    return written


#: the modules whose every public name (``__all__``) gets an API page
API_MODULES = (
    "bayesmoe",
    "bayesmoe.builders",
    "bayesmoe.fitting",
    "bayesmoe.comparison",
    "bayesmoe.streaming",
    "bayesmoe.views",
)


def api_names(module: str) -> list[str]:
    """The public names of ``module`` that get a page (``__version__`` is shown on the
    index, not as a page)."""
    mod = importlib.import_module(module)
    return [n for n in mod.__all__ if not n.startswith("__")]


def write_api_pages(out: Path = HERE / "api") -> list[Path]:
    """One reStructuredText page per module, an autosummary table of its public names
    (each name then gets its own generated page). New names join at the next build."""
    out.mkdir(exist_ok=True)
    written = []
    for module in API_MODULES:
        names = api_names(module)
        title = f"``{module}``"
        lines = [
            title,
            "=" * len(title),
            "",
            f".. automodule:: {module}",
            "   :no-members:",
            "",
            f".. currentmodule:: {module}",
            "",
            ".. autosummary::",
            "   :toctree: generated",
            "",
            *(f"   {name}" for name in names),
            "",
        ]
        path = out / f"{module}.rst"
        text = "\n".join(lines)
        if not path.exists() or path.read_text() != text:  # keep Sphinx's cache warm
            path.write_text(text)
        written.append(path)
    return written


def _api_classes():
    for module in API_MODULES:
        mod = importlib.import_module(module)
        for name in api_names(module):
            obj = getattr(mod, name)
            if isinstance(obj, type):
                yield f"{module}.{name}", obj


def sklearn_members() -> set[str]:
    """scikit-learn's generic estimator API on the estimators (metadata routing,
    ``set_*_request``): documented by scikit-learn, not repeated here."""
    names = {"get_metadata_routing"}
    for _, cls in _api_classes():
        names |= {n for n in dir(cls) if n.startswith("set_") and n.endswith("_request")}
    return names


def duplicate_names() -> dict[str, str]:
    """Classes already documented under an earlier API module (the same class
    re-exported, e.g. ``bayesmoe.fitting.DiagnosticsError``), mapped to that first full
    name: their page points there, so each class has one description and one link target."""
    first: dict[int, str] = {}
    duplicates = {}
    for full, cls in _api_classes():
        if id(cls) in first:
            duplicates[full] = first[id(cls)]
        else:
            first[id(cls)] = full
    return duplicates


def foreign_classes() -> set[str]:
    """Public names that are another package's class (``bayesmoe.Prior`` is pymc-extras'
    ``Prior``), or a thin subclass of one (``ViewFrame`` is a pandas DataFrame): their
    page shows the class docstring, not the other package's members."""
    import pandas as pd

    return {
        full
        for full, cls in _api_classes()
        if not cls.__module__.startswith("bayesmoe") or issubclass(cls, pd.DataFrame)
    }
