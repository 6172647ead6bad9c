"""NUTS through :func:`pymc.sample`: PyMC's own sampler, numpyro, or nutpie on a model
without a bayesmoe spec (``nuts_sampler=plan.sampler``).

A start point is passed as ``initvals`` without jitter (PyMC: ``init="adapt_diag"``;
numpyro: ``nuts={"jitter": False}``), unless the user chose otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pymc as pm
import xarray as xr

import bayesmoe.cache

if TYPE_CHECKING:
    from bayesmoe.inference.plan import FitPlan

__all__ = ["run"]


def run(model: pm.Model, plan: FitPlan) -> xr.DataTree:
    """The ``"pymc"`` backend (called inside ``with model``)."""
    kwargs = dict(plan.sampler_kwargs)
    if plan.start:
        kwargs.setdefault("initvals", plan.start)
        if plan.sampler == "pymc":
            kwargs.setdefault("init", "adapt_diag")  # no jitter off the start
        elif plan.sampler == "numpyro":
            kwargs.setdefault("nuts", {}).setdefault("jitter", False)
    if plan.sampler == "numpyro":
        bayesmoe.cache.configure_jax()
    return pm.sample(
        draws=plan.draws,
        tune=plan.tune,
        chains=plan.chains,
        random_seed=plan.sample_seed,
        progressbar=plan.progressbar,
        nuts_sampler=plan.sampler,
        compute_convergence_checks=False,
        **kwargs,
    )
