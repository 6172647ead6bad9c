"""The documentation site's sources: every public name gets an API page, every notebook
stores its outputs (the site renders them; tests/test_examples.py executes the notebooks),
and the getting-started page runs the README's quick start.

The build itself (``make docs``: Sphinx with warnings as errors, then
``docs/check_api_pages.py`` on the built HTML) runs in CI (.ci/run).
"""

import importlib
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS))

import api_pages  # noqa: E402  (docs/api_pages.py)

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: the modules the site documents name by name
REQUIRED_MODULES = {
    "bayesmoe",
    "bayesmoe.builders",
    "bayesmoe.fitting",
    "bayesmoe.comparison",
    "bayesmoe.streaming",
}
#: one user-guide page per concept
CONCEPT_PAGES = (
    "interaction_models",
    "scale_and_formulas",
    "mixtures",
    "gated_experts",
    "reading_a_model",
    "fast_fits",
    "larger_than_memory",
    "comparing",
    "compile_cache",
    "cli",
    "guarantees",
)


def test_every_public_name_is_listed_for_an_api_page(tmp_path):
    assert REQUIRED_MODULES <= set(api_pages.API_MODULES)
    pages = api_pages.write_api_pages(tmp_path)
    for module, page in zip(api_pages.API_MODULES, pages, strict=True):
        text = page.read_text()
        listed = re.findall(r"^   (\w+)$", text, re.M)
        public = [n for n in importlib.import_module(module).__all__ if not n.startswith("__")]
        assert listed == public, module
        assert ":toctree: generated" in text


def test_check_api_pages_names_missing_pages(tmp_path):
    from check_api_pages import missing_pages

    (tmp_path / "api" / "generated").mkdir(parents=True)
    (tmp_path / "api" / "generated" / "bayesmoe.fit.html").write_text("")
    missing = missing_pages(tmp_path)
    assert "bayesmoe.fit" not in missing and "bayesmoe.GatedExperts" in missing


def test_reexported_classes_point_to_one_description():
    duplicates = api_pages.duplicate_names()
    assert duplicates["bayesmoe.fitting.DiagnosticsError"] == "bayesmoe.DiagnosticsError"
    assert "bayesmoe.Prior" in api_pages.foreign_classes()
    assert "set_fit_request" in api_pages.sklearn_members()


def test_user_guide_has_a_page_per_concept():
    for page in CONCEPT_PAGES:
        assert (DOCS / "user_guide" / f"{page}.md").is_file(), page
    index = (DOCS / "user_guide" / "index.md").read_text()
    assert ":glob:" in index  # pages added by others join without edits
    assert ":glob:" in (DOCS / "benchmarks" / "index.md").read_text()


def test_benchmark_pages_are_dated_with_machine_and_command():
    pages = [p for p in (DOCS / "benchmarks").glob("*.md") if p.name != "index.md"]
    assert len(pages) >= 8
    for page in pages:
        text = page.read_text()
        if "**Measured:**" not in text:  # pages other helpers add keep their own format
            continue
        assert re.search(r"\*\*Measured:\*\* 20\d\d-\d\d-\d\d", text), page.name
        assert "**Machine:**" in text and "**Reproduce:** `" in text, page.name


def test_getting_started_runs_the_readme_quick_start():
    def python_blocks(text):
        return re.findall(r"^```python\n(.*?)^```\n", text, re.S | re.M)

    readme = python_blocks((ROOT / "README.md").read_text())
    page = python_blocks((DOCS / "getting_started.md").read_text())
    assert readme and page == readme


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_stores_its_outputs(path):
    """The site shows the stored outputs: each code cell that ran has them, none is an
    error, and no notebook silences every warning."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "a code cell was not executed"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    source = "\n".join(c.source for c in code)
    if re.search(r"plt\.|plot|Image\(", source):
        assert any("image/png" in o.get("data", {}) for o in outputs), "no figure stored"
    assert not re.search(r"(filterwarnings|simplefilter)\(\s*[\"']ignore[\"']\s*\)", source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_no_path_relative_to_the_repository_root(path):
    """Jupyter may start in notebooks/ or at the root: paths like "notebooks/data/..." and
    "../docs/..." break in one of them."""
    nb = nbformat.read(path, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"[\"'](notebooks|\.\./\w+)/", source)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert not re.search(r"!\[[^\]]*\]\(\.\./", markdown)
