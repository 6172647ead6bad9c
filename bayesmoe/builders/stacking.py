r"""Bayesian hierarchical stacking: input-dependent weights over already-fitted models.

Given the pointwise leave-one-out log predictive densities
:math:`\ell_{ik} = \log p(y_i \mid x_i, y_{-i}, M_k)` of :math:`K` fitted models
(PSIS-LOO), the stacked predictive at :math:`x` is
:math:`\sum_k w_k(x)\, p(\tilde y \mid x, M_k)` with weights learned from

.. math::

    \log p(\ell \mid \alpha) &= \sum_i \log \sum_k w_k(x_i)\, e^{\ell_{ik}}, \qquad
    w(x) = \mathrm{softmax}(\alpha(x)),\quad \alpha_r(x) = 0 \\
    \alpha_k(x) &= \mu_k + f(x)^\top \beta_k \quad (k \ne r), \qquad
    \mu_k \sim N(m_k, 1), \qquad
    \beta_{jk} \mid \sigma_k \sim N(0, \sigma_k^2), \quad \sigma_k \sim N^+(0, 1)

with :math:`f(x) = x` (``gate="linear"``, standardised features) or
:math:`f(x) = \tanh(W^\top x + a)`, :math:`W, a \sim N(0, 1)` (``gate="mlp"``). This is
the design of Yao, Pirš, Vehtari and Gelman (2022), "Bayesian hierarchical stacking: some
models are (somewhere) useful". Partial pooling: :math:`\sigma_k \to 0` makes the weights
constant in :math:`x`, i.e. global stacking, and the learned :math:`\sigma_k` decides how
far each model's weight may vary with :math:`x`. The constant part is centred on the
global (complete-pooling) stacking solution :math:`\hat w` from :func:`arviz.compare`:
:math:`m_k = \log(\hat w_k / \hat w_r)`, with :math:`\hat w` floored at
``WEIGHT_FLOOR`` so that a model stacking ignores keeps a finite prior logit. The
reference model :math:`r` (logit fixed at 0, which removes the softmax's redundant degree
of freedom) is the one with the largest global weight.

The weight-scale prior is on :math:`\beta`; the hierarchy is written non-centred
(pymc-extras ``Prior(..., centered=False)``), because the LOO densities inform the
:math:`x`-dependence weakly and a centred form would put NUTS in a funnel.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pymc_extras.prior import Prior

from bayesmoe.builders.contract import ModelSpec
from bayesmoe.builders.terms.gate import GATES, free_logits, gate_grid
from bayesmoe.data import validate_features
from bayesmoe.numerics.gate import posterior_draw_logits
from bayesmoe.numerics.lse import log_softmax_last, logsumexp_last
from bayesmoe.priors import merge_priors

__all__ = ["WEIGHT_FLOOR", "StackingSpec", "hierarchical_stacking", "stacking_defaults"]

SAMPLE_DIMS = ("chain", "draw")
#: Smallest global stacking weight used to centre the prior logits.
WEIGHT_FLOOR = 0.01


def stacking_defaults(
    global_logit: np.ndarray, gate: str, logit_sd: float = 1.0, scale_sd: float = 1.0
) -> dict[str, Prior]:
    """Default priors of :func:`hierarchical_stacking` (keys are the variable names)."""
    rows = "feature" if gate == "linear" else "gate_hidden"
    out = {
        "global_logit": Prior(
            "Normal", mu=np.asarray(global_logit, float), sigma=logit_sd, dims="gate_model"
        ),
        "gate_weights": Prior(
            "Normal",
            mu=0.0,
            sigma=Prior("HalfNormal", sigma=scale_sd, dims="gate_model"),
            dims=(rows, "gate_model"),
            centered=False,
        ),
    }
    if gate == "mlp":
        out["gate_hidden_weights"] = Prior(
            "Normal", mu=0.0, sigma=1.0, dims=("feature", "gate_hidden")
        )
        out["gate_hidden_bias"] = Prior("Normal", mu=0.0, sigma=1.0, dims="gate_hidden")
    return out


@dataclass
class StackingSpec(ModelSpec):
    """What :func:`bayesmoe.fit` and the estimator need to know about a stacking model.

    ``lpd`` (n, K) are the members' pointwise LOO log densities on the original scale of
    ``y``; ``y`` is kept for ``observed_data``. Attached as ``model.bayesmoe_spec``.
    """

    model_names: list[str]
    reference: int
    gate: str
    gate_hidden: int
    lpd: np.ndarray
    y: np.ndarray
    global_weights: np.ndarray
    #: the pointwise score is tied to the stored ``lpd`` of every row, so
    #: ``bayesmoe.fit(log_likelihood="auto")`` never stores it for a row subsample
    supports_row_subsample: ClassVar[bool] = False

    @property
    def kind(self) -> str:
        return "stacking"

    @property
    def free(self) -> list[int]:
        return [k for k in range(len(self.model_names)) if k != self.reference]

    @property
    def identified_vars(self) -> list[str]:
        """Variables whose R-hat/ESS mean something (mlp hidden units are exchangeable)."""
        if self.gate == "mlp":
            return ["stacking_weight_grid", "gate_weights_sigma"]
        return ["global_logit", "gate_weights", "gate_weights_sigma"]

    def complete(self, posterior, model, rng) -> xr.Dataset:
        return xr.Dataset()

    def logits(self, posterior: xr.Dataset, X: np.ndarray) -> np.ndarray:
        """:math:`\\alpha_k(x_i)`, shape (chain, draw, obs, model)."""

        free = posterior_draw_logits(
            posterior,
            np.asarray(X, float),
            self.gate,
            feature_dim="feature",
            free_dim="gate_model",
            intercept="global_logit",
            sample_dims=SAMPLE_DIMS,
        )
        out = np.zeros((*free.shape[:3], len(self.model_names)))
        out[..., self.free] = free
        return out

    def log_weights(self, posterior: xr.Dataset, X: np.ndarray) -> xr.DataArray:
        """:math:`\\log w_k(x_i)`, dims (chain, draw, obs, model)."""
        return xr.DataArray(
            log_softmax_last(self.logits(posterior, X)),
            dims=(*SAMPLE_DIMS, "obs", "model"),
            coords={"model": self.model_names},
        )

    def log_likelihood(self, posterior: xr.Dataset, X: np.ndarray, y: np.ndarray):
        r"""Pointwise stacking score :math:`\log \sum_k w_k(x_i) e^{\ell_{ik}}`."""
        logw = self.log_weights(posterior, X).values
        score = logsumexp_last(logw + self.lpd[None, None])
        return xr.DataArray(score, dims=(*SAMPLE_DIMS, "obs"))


def hierarchical_stacking(
    X,
    lpd,
    *,
    y=None,
    model_names: list[str] | None = None,
    global_weights=None,
    gate: str = "linear",
    gate_hidden: int | None = None,
    priors: dict | None = None,
) -> pm.Model:
    r"""Build the hierarchical stacking model over ``K`` fitted models.

    Parameters
    ----------
    X : array-like or DataFrame, shape (n, p)
        Gate inputs, standardised beforehand (or use :class:`bayesmoe.HierarchicalStacking`).
    lpd : array-like, shape (n, K)
        Pointwise LOO log predictive density of each model at each training row.
    y : array-like, shape (n,), optional
        The observations (kept as ``observed_data``; the likelihood uses ``lpd`` only).
    model_names : list of str, optional
    global_weights : array-like, shape (K,), optional
        Global stacking weights to centre the prior on (default: equal weights).
    gate : {"linear", "mlp"}
    gate_hidden : int, optional
        Hidden units of the mlp gate (required for ``gate="mlp"``).
    priors : dict, optional
        Overrides of ``global_logit``, ``gate_weights`` (its ``sigma`` is the pooling
        scale :math:`\sigma_k`), ``gate_hidden_weights``, ``gate_hidden_bias``
        (:class:`pymc_extras.prior.Prior`).

    Returns
    -------
    pymc.Model
        Coords ``obs``, ``feature``, ``model``, ``gate_model`` (the non-reference models),
        ``grid`` (and ``gate_hidden``); data ``X_base``, ``lpd``; the deterministic
        ``stacking_weight_grid`` (w(x) with each feature swept over its quantiles, the
        others at their medians: the identified quantity for diagnostics). Weights at
        any x come from the spec (``model.bayesmoe_spec.log_weights``).
    """
    Xv, names = validate_features(X, name="X")
    lpd = np.asarray(lpd, dtype=float)
    if lpd.ndim != 2 or lpd.shape[0] != Xv.shape[0]:
        raise ValueError(f"lpd must have shape (n={Xv.shape[0]}, K), got {lpd.shape}")
    K = lpd.shape[1]
    if K < 2:
        raise ValueError(f"stacking needs at least 2 models, lpd has {K} column(s)")
    if not np.all(np.isfinite(lpd)):
        raise ValueError("lpd has NaN or infinite values")
    if gate not in GATES:
        raise ValueError(f"gate={gate!r} is not known; choose one of {list(GATES)}")
    if gate == "mlp":
        if isinstance(gate_hidden, bool) or not isinstance(gate_hidden, numbers.Integral):
            raise ValueError(
                f"gate='mlp' needs a positive integer gate_hidden, got {gate_hidden!r}"
            )
        if gate_hidden < 1:
            raise ValueError(
                f"gate='mlp' needs a positive integer gate_hidden, got {gate_hidden!r}"
            )
    elif gate_hidden not in (None, 0):
        raise ValueError(f"gate_hidden is only used with gate='mlp' (got gate={gate!r})")
    model_names = [f"model_{k}" for k in range(K)] if model_names is None else list(model_names)
    if len(model_names) != K or len(set(model_names)) != K:
        raise ValueError(f"model_names must be {K} distinct names, got {model_names}")
    w = np.full(K, 1.0 / K) if global_weights is None else np.asarray(global_weights, float)
    if w.shape != (K,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"global_weights must be {K} non-negative numbers, got {global_weights}")
    w = w / w.sum()
    y = np.full(Xv.shape[0], np.nan) if y is None else np.asarray(y, float)

    reference = int(np.argmax(w))
    floored = np.maximum(w, WEIGHT_FLOOR)
    spec = StackingSpec(
        model_names=model_names,
        reference=reference,
        gate=gate,
        gate_hidden=int(gate_hidden or 0),
        lpd=lpd,
        y=y,
        global_weights=w,
    )
    prior_logit = np.log(floored[spec.free] / floored[reference])
    merged = merge_priors(stacking_defaults(prior_logit, gate), priors)

    grid = gate_grid(Xv)
    coords = {
        "obs": np.arange(Xv.shape[0]),
        "feature": names,
        "model": model_names,
        "gate_model": [model_names[k] for k in spec.free],
        "grid": np.arange(len(grid)),
    }
    if gate == "mlp":
        coords["gate_hidden"] = np.arange(spec.gate_hidden)

    def alpha(inputs, v):
        hidden = {}
        if gate == "mlp":
            hidden = dict(
                hidden_weights=v["gate_hidden_weights"], hidden_bias=v["gate_hidden_bias"]
            )
        free = free_logits(inputs, v["gate_weights"], v["global_logit"], **hidden)
        full = pt.zeros((inputs.shape[0], K))
        return pt.set_subtensor(full[:, spec.free], free)

    with pm.Model(coords=coords) as model:
        X_base = pm.Data("X_base", Xv, dims=("obs", "feature"))
        lpd_data = pm.Data("lpd", lpd, dims=("obs", "model"))
        v = {name: merged[name].create_variable(name) for name in merged}
        log_w = pt.special.log_softmax(alpha(X_base, v), axis=1)
        pm.Potential("stacking_score", pt.logsumexp(log_w + lpd_data, axis=1).sum())
        X_grid = pm.Data("X_grid", grid, dims=("grid", "feature"))
        pm.Deterministic(
            "stacking_weight_grid",
            pt.special.softmax(alpha(X_grid, v), axis=1),
            dims=("grid", "model"),
        )
    model.bayesmoe_spec = spec
    return model
