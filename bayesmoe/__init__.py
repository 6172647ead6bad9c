"""bayesmoe: Bayesian interaction regressions and mixtures of experts on PyMC.

The public names are imported on first use (PEP 562), so ``import bayesmoe`` and the
numpy-only kernels that dask workers import (:mod:`bayesmoe.numerics`,
:mod:`bayesmoe.streaming`) do not load PyMC and PyTensor until a model is built.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# The on-disk compile cache must be set up before PyTensor is imported (its compiledir is
# read once, at import): bayesmoe.cache only sets PYTENSOR_FLAGS here, importing nothing.
from bayesmoe import cache as _cache

_cache.configure()

#: public name -> the module that defines it
_EXPORTS = {
    "DiagnosticsError": "bayesmoe.inference",
    "GatedExperts": "bayesmoe.estimators",
    "HierarchicalStacking": "bayesmoe.stacking",
    "InteractionRegression": "bayesmoe.estimators",
    "MixtureRegression": "bayesmoe.estimators",
    "Prior": "bayesmoe.priors",
    "add_log_likelihood": "bayesmoe.inference",
    "compare": "bayesmoe.comparison",
    "comparisons": "bayesmoe.views",
    "conditional_effects": "bayesmoe.views",
    "diagnose": "bayesmoe.inference",
    "fit": "bayesmoe.inference",
    "gated_experts": "bayesmoe.builders",
    "hierarchical_stacking": "bayesmoe.builders",
    "interaction_regression": "bayesmoe.builders",
    "kfold": "bayesmoe.validation",
    "load": "bayesmoe.estimators",
    "mixture_regression": "bayesmoe.builders",
    "plot_gate": "bayesmoe.views",
    "predict_averaged": "bayesmoe.comparison",
    "prior_from_posterior": "bayesmoe.prior_transfer",
    "read_parquet": "bayesmoe.streaming",
    "select_experts": "bayesmoe.comparison",
    "slopes": "bayesmoe.views",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


#: submodules reachable as attributes (``bm.data.Standardizer``) without an explicit import,
#: as in SciPy's lazy submodules
_SUBMODULES = frozenset(
    {
        "builders",
        "cli",
        "comparison",
        "data",
        "estimators",
        "experiments",
        "fitting",
        "formula",
        "inference",
        "numerics",
        "plots",
        "prior_transfer",
        "priors",
        "stacking",
        "streaming",
        "validation",
        "views",
    }
)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"bayesmoe.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bayesmoe' has no attribute {name!r}")
    # The first public name loads PyMC, PyTensor and ArviZ: the cyclic collector is paused
    # meanwhile (its passes over thousands of new modules only cost time).
    with _cache.paused_gc():
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)
