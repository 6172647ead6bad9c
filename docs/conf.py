"""Sphinx configuration of the bayesmoe documentation site.

Build: ``make docs`` (HTML in ``docs/_build/html``, warnings are errors);
``make docs-linkcheck`` checks the internal links.

Notebooks. The gallery renders the notebooks' *stored* outputs (``nb_execution_mode =
"off"``) and does not execute them again: the test suite already executes every notebook
(``tests/test_examples.py::test_notebook_executes``, small draws through ``BAYESMOE_FAST=1``),
so CI runs each notebook once instead of twice, and the site shows the outputs of the full
run (normal draws), which is what the notebooks' prose describes. ``tests/test_docs.py``
checks that every notebook stores its outputs and that none of them holds an error, so a
notebook that stops running, or was committed without outputs, fails CI either way. Set
``BAYESMOE_DOCS_EXECUTE=1`` to have myst-nb execute them during the build instead (small
draws: the variable sets ``BAYESMOE_FAST=1`` too).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import bayesmoe  # noqa: E402

project = "bayesmoe"
author = "bayesmoe contributors"
copyright = "2026, bayesmoe contributors"  # noqa: A001
release = bayesmoe.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_nb",
    "sphinx_copybutton",
]

# ---------------------------------------------------------------- sources
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "jupyter_execute"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# The gallery is the repository's notebooks folder, read in place (docs/gallery/ links to it).
EXECUTE = bool(os.environ.get("BAYESMOE_DOCS_EXECUTE"))
if EXECUTE:
    os.environ["BAYESMOE_FAST"] = "1"
nb_execution_mode = "force" if EXECUTE else "off"
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_in_temp = False  # notebooks resolve their data from their own folder



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


copy_notebooks()

# ---------------------------------------------------------------- API reference
#: the modules whose every public name (``__all__``) gets an API page
API_MODULES = (
    "bayesmoe",
    "bayesmoe.builders",
    "bayesmoe.fitting",
    "bayesmoe.comparison",
    "bayesmoe.streaming",
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
    ``Prior``): their page shows the class docstring, not its members."""
    return {full for full, cls in _api_classes() if not cls.__module__.startswith("bayesmoe")}


write_api_pages()
templates_path = ["_templates"]
autosummary_context = {
    "duplicates": duplicate_names(),
    # scikit-learn's generic estimator API (documented by scikit-learn)
    "sklearn_members": ", ".join(sorted(sklearn_members())),
    "foreign": foreign_classes(),
}
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": False}
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()
add_module_names = False

intersphinx_mapping: dict = {}  # no network in the build; external names stay plain text

# ---------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"bayesmoe {release}"
html_static_path = ["_static"]
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": []}
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True

# ---------------------------------------------------------------- checks
nitpicky = False  # see docs/README.md: numpydoc types name numpy/pandas/PyMC objects
linkcheck_ignore = [r"https?://.*"]  # no network here: only internal links are checked
suppress_warnings = ["mystnb.unknown_mime_type"]
