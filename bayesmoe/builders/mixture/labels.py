r"""Labels of a mixture's experts: the ordering decision, relabelling and permutation.

A plain Gaussian mixture orders its means; a mixture of regressions orders its intercepts
only when the EM solution shows them separated by ``ORDER_SEPARATION`` standard errors
(ordering intercepts that coincide, e.g. crossing lines, would cut through the posterior).
Binary, binomial and count experts follow the same rule on the link scale: a mixture
without features orders its intercepts (the logits or log rates of the components), a
mixture of regressions orders them when the EM intercepts are separated by
``ORDER_SEPARATION`` standard errors from the weighted Fisher information
(``EMResult.intercept_se``), and is relabelled otherwise.
Gated models need no ordering: the reference gate separates them. Unordered draws are
relabelled after sampling: every draw's classification probabilities are matched to the EM
pivot (ECR) and refined with Stephens' KL algorithm (:mod:`bayesmoe.numerics.relabel`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from bayesmoe.builders.mixture.constants import ORDER_SEPARATION, RELABEL_ROWS, SAMPLE_DIMS
from bayesmoe.numerics.em import EMResult
from bayesmoe.numerics.lse import log_softmax_last
from bayesmoe.numerics.relabel import apply_permutations, relabel

__all__ = ["decide_order", "permute", "permuted", "relabel_draws", "sorted_point"]


def decide_order(order_by, spec, width: int, intercept_fixed: bool) -> bool:
    """Whether the intercepts get an ordering constraint (``order_by`` of the builders)."""
    if order_by is None or intercept_fixed or spec.gate is not None:
        if order_by == "intercept" and spec.gate is not None:
            raise ValueError(
                "order_by='intercept' is for MixtureRegression; gated experts are "
                "identified by the reference gate"
            )
        return False
    if order_by == "intercept" or width == 0:
        return True
    pt_ = spec.point
    share = pt_.responsibilities.sum(axis=0)
    se = pt_.sigma / np.sqrt(np.maximum(share, 1.0))
    if pt_.intercept_se is not None:  # GLM experts: the Fisher information's
        se = pt_.intercept_se
    order = np.argsort(pt_.intercept)
    gaps = np.diff(pt_.intercept[order])
    pooled = np.sqrt(se[order][1:] ** 2 + se[order][:-1] ** 2)
    return bool(np.all(gaps > ORDER_SEPARATION * pooled))


def sorted_point(res: EMResult) -> EMResult:
    """The EM point with its experts in the order of their intercepts (in place)."""
    order = np.argsort(res.intercept)
    res.intercept = res.intercept[order]
    res.beta = res.beta[order]
    res.sigma = res.sigma[order]
    res.responsibilities = res.responsibilities[:, order]
    for name in ("alpha", "intercept_se"):
        if getattr(res, name) is not None:
            setattr(res, name, getattr(res, name)[order])
    if res.weights is not None:
        res.weights = res.weights[order]
    return res


def relabel_draws(spec, posterior: xr.Dataset, X_base: np.ndarray) -> xr.Dataset:
    """Align the labels of all draws (ECR to the EM pivot, then Stephens' KL refinement).

    Ordered models are already identified and are returned unchanged.
    """
    if spec.n_experts == 1 or spec.ordered:
        return posterior
    n = X_base.shape[0]
    rows = np.arange(n)
    if n > RELABEL_ROWS:
        rows = np.sort(np.random.default_rng(0).choice(n, RELABEL_ROWS, replace=False))
    extras = spec.row_extras(rows)
    joint = spec.joint_log_density(posterior, X_base[rows], spec.y[rows], **extras).values
    C, D = joint.shape[:2]
    log_probs = log_softmax_last(joint)
    probs = np.exp(log_probs).reshape(C * D, len(rows), spec.n_experts)
    pivot = spec.point.responsibilities[rows] if spec.point is not None else None
    perms = relabel(probs, pivot=pivot, method="stephens")
    if np.all(perms == np.arange(spec.n_experts)):
        return posterior
    return permute(spec, posterior, perms.reshape(C, D, -1))


def permute(spec, posterior: xr.Dataset, perms: np.ndarray) -> xr.Dataset:
    """Relabel draws: new expert j = old expert ``perms[c, d, j]``.

    Gate parameters are re-referenced, because the reference expert may change: with
    logits :math:`\\eta_k` (reference :math:`\\eta_K = 0`), the relabelled logits are
    :math:`\\eta'_j = \\eta_{\\sigma(j)} - \\eta_{\\sigma(K)}`, which is linear in the gate's
    output-layer parameters. The mlp gate's hidden layer is unchanged.
    """
    C, D, K = perms.shape
    flat = perms.reshape(C * D, K)
    out = posterior.copy()
    for name, da in posterior.data_vars.items():
        if "expert" in da.dims and name != "gate_probability_grid":
            out[name] = permuted(da, "expert", flat)
    if "gate_probability_grid" in posterior:
        out["gate_probability_grid"] = permuted(posterior["gate_probability_grid"], "expert", flat)
    if spec.gate is not None:
        for name in ("gate_intercept", "gate_weights"):
            da = posterior[name]
            full = xr.concat(
                [da, xr.zeros_like(da.isel(gate_expert=[0]))], dim="gate_expert"
            ).rename(gate_expert="_k")
            moved = permuted(full, "_k", flat)
            ref = moved.isel(_k=K - 1)
            out[name] = (
                (moved.isel(_k=slice(0, K - 1)) - ref)
                .rename(_k="gate_expert")
                .assign_coords(gate_expert=da["gate_expert"])
                .transpose(*da.dims)
            )
    return out


def permuted(da: xr.DataArray, dim: str, flat_perms: np.ndarray) -> xr.DataArray:
    """``da`` with ``dim`` permuted per draw (``flat_perms``: (chain * draw, K))."""
    da = da.transpose(*SAMPLE_DIMS, ...)
    C, D = da.sizes["chain"], da.sizes["draw"]
    axis = da.dims.index(dim) - 1  # after flattening chain and draw into one axis
    values = da.values.reshape(C * D, *da.shape[2:])
    moved = apply_permutations(values, flat_perms, axis=axis)
    return da.copy(data=moved.reshape(da.shape))
