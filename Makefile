# Set-up is automatic: the first `make demo` or `make test` creates .venv with a
# Python >= 3.12 found on PATH (python3.13, python3.12, python3, python in that order;
# pyenv users get the version named in .python-version) and installs the package.
PYTHON_CANDIDATES := python3.13 python3.12 python3 python
PYTHON ?= $(shell for p in $(PYTHON_CANDIDATES); do \
	  if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; \
	  then echo $$p; break; fi; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: demo test test-slow test-all test-full sbc lint bench clean docs docs-linkcheck docs-screenshots

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: bayesmoe needs Python >= 3.12 on PATH (python3.12 or python3.13)"; exit 1; }
	@echo "creating $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,jax,docs]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bayesmoe demo --out bayesmoe_demo

# Fast tier, notebooks and model scripts (small draws), then the bounded slow tier.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Not in CI (about an hour on 2 cores): 200-simulation SBC of every model and the full
# estimator x fit-method persistence/determinism matrix.
test-full: $(STAMP)
	$(BIN)/python -m pytest -m full $(PYTEST_ARGS)

# The 200-simulation SBC with its tables and PNG rank plots (writes ./sbc_results/).
sbc: $(STAMP)
	$(BIN)/python benchmarks/sbc.py --out sbc_results

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/interaction_regression.py

# The documentation site (docs/_build/html), warnings as errors; the notebooks' stored
# outputs are rendered, not re-executed (docs/conf.py says why). Then every public name of
# the API modules must have its page.
SPHINXOPTS ?=
docs: $(STAMP)
	$(BIN)/python -m sphinx -b html -W --keep-going $(SPHINXOPTS) docs docs/_build/html
	$(BIN)/python docs/check_api_pages.py docs/_build/html

# Internal links and anchors only: the build has no network, external links are not checked.
docs-linkcheck: $(STAMP)
	$(BIN)/python -m sphinx -b linkcheck -W --keep-going $(SPHINXOPTS) docs docs/_build/linkcheck

# PNGs of the site's main pages, read offline (headless Chromium: apt-get install chromium;
# math with Debian's MathJax when installed: apt-get install libjs-mathjax).
MATHJAX_LOCAL := $(wildcard /usr/share/javascript/mathjax/MathJax.js)
docs-screenshots: $(STAMP)
	BAYESMOE_DOCS_MATHJAX=$(MATHJAX_LOCAL) $(BIN)/python -m sphinx -b html -W --keep-going $(SPHINXOPTS) docs docs/_build/html-offline
	$(BIN)/python docs/screenshots.py docs/_build/html-offline docs/_build/screenshots

clean:
	rm -rf $(VENV) bayesmoe_demo .pytest_cache docs/_build docs/api docs/gallery/*.ipynb
