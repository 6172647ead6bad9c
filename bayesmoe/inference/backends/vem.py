"""Closed-form variational EM of a mixture (the spec's ``run_vem``, :mod:`bayesmoe.numerics.vem`),
reported as ``chains * draws`` draws from :math:`q(\\theta)\\,q(\\pi)` with the point
estimates (noise sds, learned prior scales, gate) named in
``posterior.attrs["bayesmoe_point_estimates"]``. One labelling by construction, so the
draws are not relabelled.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pymc as pm
import xarray as xr

from bayesmoe.builders.contract import spec_of

if TYPE_CHECKING:
    from bayesmoe.inference.plan import FitPlan

__all__ = ["run"]


def run(model: pm.Model, plan: FitPlan) -> xr.DataTree:
    """The ``"vem"`` backend (a spec that ``supports_vem``).

    With ``progressbar`` a bar counts the iterations on all rows (each one a pass over the
    partitions when the rows are streamed) and shows the objective and its last change;
    the multi-start screening on the row sample runs before it. Its warnings (not
    converged, emptied components) name fit's caller.
    """
    spec = spec_of(model)
    rng = np.random.default_rng(plan.sample_seed)
    options = dict(plan.vem_options)
    bar = None
    if plan.progressbar and "progress" not in options:
        bar = _progress_bar(options)
    try:
        res = spec.run_vem(model["X_base"].get_value(), rng=rng, **options)
    finally:
        if bar is not None:
            bar.close()
    posterior, points = spec.vem_posterior(res, plan.draws * plan.chains, rng)
    info = dict(
        bayesmoe_point_estimates=",".join(points),
        bayesmoe_vem_elbo=res.elbo,
        bayesmoe_vem_n_iter=res.n_iter,
        bayesmoe_vem_converged=int(res.converged),
        bayesmoe_vem_last_change=res.last_change,
        bayesmoe_vem_empty=",".join(str(k) for k in res.empty),
    )
    if options.get("rows") is not None:  # streamed: the model holds a sample of the rows
        info["bayesmoe_vem_rows"] = int(options["rows"].n)
    posterior.attrs.update(info, inference_library="bayesmoe.numerics.vem")
    if not res.converged:
        warnings.warn(
            f"variational EM stopped at max_iter={options.get('max_iter', 1000)} without "
            f"converging: the last ELBO change was {res.last_change:.3g} "
            f"(ELBO {res.elbo:.6g}); raise max_iter or loosen tol",
            UserWarning,
            stacklevel=3,  # this <- fit <- fit's caller
        )
    if res.empty:
        detail = ", ".join(f"expert {k}: {res.mass[k]:.2g} rows" for k in res.empty)
        warnings.warn(
            f"variational EM emptied {len(res.empty)} of {spec.n_experts} components "
            f"({detail}); their coefficients are draws from the prior, not estimates. "
            "Fewer components (or a larger Dirichlet alpha) describe these data",
            UserWarning,
            stacklevel=3,
        )
    coords = {"chain": posterior["chain"], "draw": posterior["draw"]}
    stats = xr.Dataset(coords=coords, attrs={"elbo": res.elbo, "n_iter": res.n_iter})
    return xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})


def _progress_bar(options: dict):
    """A tqdm bar fed by the ``progress`` callback it puts into ``options``."""
    from tqdm.auto import tqdm

    # no total: it stops on the ELBO's change, usually long before max_iter
    bar = tqdm(desc="variational EM", unit="it")
    last = [None]

    def progress(iteration: int, objective: float) -> None:
        change = np.nan if last[0] is None else objective - last[0]
        last[0] = objective
        bar.update(1)
        bar.set_postfix_str(f"ELBO {objective:.8g}, change {change:.2g}", refresh=False)

    options["progress"] = progress
    return bar
