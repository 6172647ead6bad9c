"""Mean-field or full-rank ADVI (:func:`pymc.fit`), reported as ``chains * draws`` draws
from the approximation (``chain`` has length 1).

With ``minibatch`` the model given is the spec's minibatch twin (``pm.Minibatch`` with
``total_size``); its data groups would hold one random batch, so only ``posterior`` and
``sample_stats`` are kept (the full model's data are filled in by the completion step).
``sample_stats.attrs["final_loss"]`` is the mean loss of the last 100 steps.
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
    """The ``"advi"`` backend; ``model`` is the model optimised (the minibatch twin)."""
    kwargs = dict(plan.sampler_kwargs)
    if plan.start:
        kwargs.setdefault("start", plan.start)
    approx = pm.fit(
        n=plan.advi_iterations,
        method=plan.method,
        model=model,
        random_seed=plan.sample_seed,
        progressbar=plan.progressbar,
        **kwargs,
    )
    idata = approx.sample(plan.draws * plan.chains, random_seed=plan.sample_seed)
    if plan.minibatch:
        idata = xr.DataTree.from_dict(
            {g: idata[g].to_dataset() for g in ("posterior", "sample_stats")}
        )
        idata["posterior"].attrs["bayesmoe_minibatch"] = int(plan.minibatch)
    loss = np.asarray(approx.hist)
    idata["sample_stats"] = (
        idata["sample_stats"]
        .to_dataset()
        .assign_attrs(final_loss=float(loss[-100:].mean()) if loss.size else float("nan"))
    )
    return idata
