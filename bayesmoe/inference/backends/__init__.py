"""One function per way of fitting: ``backend(model, plan) -> xarray.DataTree``.

=========  ==========================================================================
backend    what runs
=========  ==========================================================================
``vem``    the spec's closed-form variational EM (mixtures), draws from q
``exact``  nothing (no free variables): the completion step draws everything exactly
``nutpie`` nutpie on a bayesmoe model, each structure compiled once per process
``pymc``   :func:`pymc.sample` (PyMC's NUTS, numpyro, or nutpie on a plain PyMC model)
``advi``   :func:`pymc.fit` (``"advi"`` / ``"fullrank_advi"``), draws from the fit
=========  ==========================================================================

Each returns at least ``posterior`` and ``sample_stats``; :func:`backend_for` picks one
from the method, the sampler and the model, and :func:`load_sampler` imports what it needs
before the plan is complete.
"""

from __future__ import annotations

import pymc as pm

import bayesmoe.cache
from bayesmoe.builders.contract import ModelSpec
from bayesmoe.inference.backends import advi, exact, nutpie, pymc, vem

__all__ = ["BACKENDS", "backend_for", "load_sampler"]

#: backend name -> ``run(model, plan)``
BACKENDS = {
    "vem": vem.run,
    "exact": exact.run,
    "nutpie": nutpie.run,
    "pymc": pymc.run,
    "advi": advi.run,
}


def backend_for(model: pm.Model, spec: ModelSpec | None, method: str, sampler: str) -> str:
    """The name of the backend that fits ``model`` by ``method`` (and NUTS ``sampler``)."""
    if method == "vem":
        return "vem"
    if not model.free_RVs:
        return "exact"
    if method == "nuts":
        return "nutpie" if sampler == "nutpie" and spec is not None else "pymc"
    return "advi"


def load_sampler(method: str, sampler: str) -> None:
    """Import the NUTS backend (the collector paused), then freeze if asked.

    nutpie imports all of ArviZ; the freeze (``BAYESMOE_GC_FREEZE``,
    :func:`bayesmoe.cache.freeze_imports`) comes after the last heavy import of every
    method, so later collections and the process's exit skip it all.
    """
    with bayesmoe.cache.paused_gc():
        if method == "nuts" and sampler == "nutpie":
            import nutpie  # noqa: F401
        elif method == "nuts" and sampler == "numpyro":
            try:
                import numpyro  # noqa: F401
            except ImportError as err:
                raise ImportError(
                    "sampler='numpyro' needs JAX and numpyro: pip install 'bayesmoe[jax]'"
                ) from err
    if bayesmoe.cache.freeze_requested():
        bayesmoe.cache.freeze_imports()
