"""A model with nothing left to sample (all scales fixed, weights collapsed).

The backend returns empty ``posterior`` and ``sample_stats`` groups with ``chain`` and
``draw`` coordinates; the spec's ``complete`` then draws every variable exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pymc as pm
import xarray as xr

if TYPE_CHECKING:
    from bayesmoe.inference.plan import FitPlan

__all__ = ["run"]


def run(model: pm.Model, plan: FitPlan) -> xr.DataTree:
    """The ``"exact"`` backend."""
    coords = {"chain": np.arange(plan.chains), "draw": np.arange(plan.draws)}
    posterior = xr.Dataset(coords=coords)
    return xr.DataTree.from_dict(
        {"posterior": posterior, "sample_stats": xr.Dataset(coords=coords)}
    )
