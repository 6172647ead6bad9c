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

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import bayesmoe  # noqa: E402

sys.path.insert(0, str(HERE))
from api_pages import (  # noqa: E402
    copy_notebooks,
    duplicate_names,
    foreign_classes,
    sklearn_members,
    write_api_pages,
)

project = "bayesmoe"
author = "bayesmoe contributors"
copyright = "2026, bayesmoe contributors"
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

# The gallery: the repository's notebooks, copied into docs/gallery/ (api_pages.copy_notebooks).
EXECUTE = bool(os.environ.get("BAYESMOE_DOCS_EXECUTE"))
if EXECUTE:
    os.environ["BAYESMOE_FAST"] = "1"
nb_execution_mode = "force" if EXECUTE else "off"
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_in_temp = False  # notebooks resolve their data from their own folder


copy_notebooks()
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

# ---------------------------------------------------------------- math
# MathJax comes from its CDN unless BAYESMOE_DOCS_MATHJAX names a local MathJax 2 script
# (Debian's libjs-mathjax: /usr/share/javascript/mathjax/MathJax.js), for a site read
# offline; make docs-screenshots does that.
_LOCAL_MATHJAX = os.environ.get("BAYESMOE_DOCS_MATHJAX")
if _LOCAL_MATHJAX:
    mathjax_path = Path(_LOCAL_MATHJAX).resolve().as_uri() + "?config=TeX-AMS-MML_HTMLorMML"
    mathjax2_config = {
        "tex2jax": {
            "inlineMath": [["\\(", "\\)"]],
            "displayMath": [["\\[", "\\]"]],
            "processEscapes": True,
            # MyST marks its sections tex2jax_ignore and its math with these classes
            "processClass": "tex2jax_process|mathjax_process|math|output_area",
        }
    }

# ---------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"bayesmoe {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
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
# Not nitpicky: the docstrings cross-reference ArviZ, PyMC, arviz-plots and numpy objects
# and bayesmoe's internal modules (bayesmoe.numerics, bayesmoe.cache, ...), which have no
# targets without intersphinx inventories (the build has no network) or API pages for
# internal modules: about 100 warnings of that one kind. Broken internal links are caught
# by the link check (make docs-linkcheck) and by the documents' own references, which
# Sphinx checks either way.
nitpicky = False
linkcheck_ignore = [r"https?://.*"]  # no network here: only internal links are checked
suppress_warnings = ["mystnb.unknown_mime_type"]
