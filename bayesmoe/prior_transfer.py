"""Posterior as prior: moment-matched ``Prior`` objects from a fitted model.

A "draw from the fitted parameter distribution" workflow: fit a base model, summarise its
posterior, and use it as the prior of a richer model (an interaction regression, or
every expert of a gated mixture), then fit again.

pymc-extras has ``pymc_extras.utils.prior.prior_from_idata``, which moment-matches a joint
MvNormal but creates the variables inside a model; bayesmoe's builders take priors as
data (``priors={name: Prior}``), so this module moment-matches each variable into a
:class:`pymc_extras.prior.Prior` instead (independent across variables and elements:
posterior correlations are not carried over).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import xarray as xr
from pymc_extras.prior import Prior

__all__ = ["prior_from_posterior"]

SAMPLE_DIMS = ("chain", "draw")
#: Variables moment-matched on the log scale (LogNormal): they are positive scales.
_POSITIVE_PREFIXES = ("sigma", "tau_", "lambda_")
#: How a single-regression variable is renamed / re-dimensioned for every expert.
_EXPERT_TARGET = {
    "intercept": ("intercept", ("expert",)),
    "beta_base": ("beta", ("expert", "expert_feature")),
    "beta_interaction": ("beta_interaction", ("expert", "interaction")),
    "sigma": ("sigma", ("expert",)),
}


def prior_from_posterior(
    idata,
    var_names: str | Sequence[str],
    *,
    n_experts: int | None = None,
    inflate: float = 1.0,
    positive: Sequence[str] | None = None,
) -> dict[str, Prior]:
    r"""Moment-matched priors from a posterior, for the ``priors={...}`` argument.

    For each variable, with posterior draws :math:`\theta^{(s)}` (elementwise):

    * unconstrained: :math:`\theta \sim N(\bar\theta,\ (c\, s_\theta)^2)`
    * positive scales (``sigma``, ``tau_*``, ``lambda_*``, or listed in ``positive``):
      :math:`\log\theta \sim N(\overline{\log\theta},\ (c\, s_{\log\theta})^2)`, a LogNormal

    with :math:`c` = ``inflate`` (>1 widens the prior: the new model may move away from
    the old posterior; 1 is exact moment matching). Parameters live on the fitted model's
    working scale (an estimator's ``posterior_working`` group), so use the result in a
    model fitted on the same data with the same ``standardize`` setting (the default for
    every bayesmoe estimator).

    Parameters
    ----------
    idata : DataTree or fitted bayesmoe estimator
    var_names : str or list of str
        Posterior variables to carry over, e.g. ``["intercept", "beta_base", "sigma"]``
        of a base-effects :class:`~bayesmoe.InteractionRegression`.
    n_experts : int, optional
        Give the priors of every expert of a mixture with this many experts instead:
        ``beta_base`` becomes ``beta`` (dims expert, expert_feature), and ``intercept``,
        ``beta_interaction``, ``sigma`` get an ``expert`` dim; all experts share the prior.
    inflate : float
        Factor on the matched standard deviations.
    positive : list of str, optional
        Further variables to match on the log scale.

    Returns
    -------
    dict of name -> pymc_extras.prior.Prior
    """
    from bayesmoe.estimators import BayesianRegressor

    if isinstance(idata, BayesianRegressor):
        if not hasattr(idata, "idata_"):
            raise ValueError("idata is an unfitted estimator; fit it first")
        idata = idata.idata_
    if not isinstance(idata, xr.DataTree) or "posterior" not in idata.children:
        raise TypeError(
            f"idata must be a DataTree with a posterior group or a fitted estimator, "
            f"got {type(idata).__name__}"
        )
    names = [var_names] if isinstance(var_names, str) else list(var_names)
    if not names:
        raise ValueError("var_names is empty")
    # priors are given on a model's working scale, so they are matched to the sampled
    # (working-scale) draws of an estimator's fit, not to its user-scale posterior
    post = idata["posterior_working" if "posterior_working" in idata.children else "posterior"]
    missing = [n for n in names if n not in post.data_vars]
    if missing:
        raise ValueError(
            f"var_names {missing} are not in the posterior; it has {sorted(post.data_vars)}"
        )
    if isinstance(inflate, bool) or not isinstance(inflate, numbers.Real) or not inflate > 0:
        raise ValueError(f"inflate must be a positive number, got {inflate!r}")
    if not np.isfinite(inflate):
        raise ValueError(f"inflate must be finite, got {inflate!r}")
    if n_experts is not None:
        if isinstance(n_experts, bool) or not isinstance(n_experts, numbers.Integral):
            raise TypeError(f"n_experts must be an integer, got {n_experts!r}")
        if n_experts < 1:
            raise ValueError(f"n_experts must be >= 1, got {n_experts}")
        unknown = [n for n in names if n not in _EXPERT_TARGET and not n.startswith("tau_")]
        if unknown:
            raise ValueError(
                f"with n_experts, var_names must come from a single regression "
                f"({sorted(_EXPERT_TARGET)} or tau_*), got {unknown}"
            )
    extra_positive = set(positive or ())

    out: dict[str, Prior] = {}
    for name in names:
        da = post[name]
        dims = tuple(d for d in da.dims if d not in SAMPLE_DIMS)
        draws = da.transpose(*SAMPLE_DIMS, *dims).values.reshape(-1, *[da.sizes[d] for d in dims])
        is_scale = name.startswith(_POSITIVE_PREFIXES) or name in extra_positive
        if is_scale:
            if np.any(draws <= 0):
                raise ValueError(f"{name} has non-positive draws; it cannot be matched as a scale")
            draws = np.log(draws)
        mean, sd = draws.mean(axis=0), draws.std(axis=0, ddof=1) * float(inflate)
        if np.any(~np.isfinite(sd)) or np.any(sd <= 0):
            raise ValueError(f"{name} has no posterior spread (fixed or a single draw)")
        target, target_dims = name, dims
        if n_experts is not None and name in _EXPERT_TARGET:
            target, target_dims = _EXPERT_TARGET[name]
            shape = (int(n_experts), *mean.shape)
            mean, sd = np.broadcast_to(mean, shape).copy(), np.broadcast_to(sd, shape).copy()
        params = {"mu": _plain(mean), "sigma": _plain(sd)}
        kwargs = {"dims": target_dims} if target_dims else {}
        out[target] = Prior("LogNormal" if is_scale else "Normal", **params, **kwargs)
    return out


def _plain(a: np.ndarray):
    """A float for a scalar (keeps priors readable and JSON-serialisable)."""
    return float(a) if np.ndim(a) == 0 else np.asarray(a, float)
