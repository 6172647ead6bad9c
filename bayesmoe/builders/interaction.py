r"""Hierarchical regression with base effects, pairwise interactions and learned prior scales.

.. math::

    y_i &\sim N(b_0 + x_i^\top w_\text{base} + z_i^\top w_\text{int}, \sigma^2),
    \qquad z_i = (x_{ia} x_{ib})_{(a,b) \in \mathcal{P}} \\
    w_\text{base} &\sim N(0, \tau_\text{base}^2 I), \qquad
    w_\text{int} \sim N(0, \tau_\text{int}^2 I), \qquad
    \tau_\text{base}, \tau_\text{int} \sim \text{hyperprior}

or, with the local-global priors (``prior="horseshoe"`` or ``"r2d2"``), one prior sd per
weight, :math:`w_j \sim N(0, s_j^2)` with :math:`s_j = \sigma \tau_g \tilde\lambda_j` built
from a global scale per group :math:`g` (base, interaction) and local scales
(:func:`bayesmoe.priors.interaction_defaults` writes both out).

Two equivalent forms are built:

* **per-row** (``collapsed=False``): the textbook model above, one likelihood term per row,
  weights non-centred. Cost per gradient O(n d).
* **collapsed** (``collapsed=True``): given :math:`(\tau, \sigma)` the weights
  :math:`\beta = (b_0, w_\text{base}, w_\text{int})` are Gaussian, so they are integrated
  out analytically. NUTS then runs over the few hyperparameters with the log marginal
  likelihood

  .. math::

      \log p(y \mid \tau, \sigma) = -\tfrac n2 \log 2\pi\sigma^2 + \tfrac12 \log|\Lambda_0|
      - \tfrac12 \log|\Lambda_n| - \tfrac12 \big(y^\top y/\sigma^2 + m_0^\top \Lambda_0 m_0
      - h^\top \Lambda_n^{-1} h\big),

  :math:`\Lambda_n = \Lambda_0 + \tilde X^\top \tilde X/\sigma^2`,
  :math:`h = \Lambda_0 m_0 + \tilde X^\top y / \sigma^2`, which needs only the sufficient
  statistics :math:`\tilde X^\top \tilde X, \tilde X^\top y, y^\top y, n` and one Cholesky of a
  d x d matrix per gradient, whatever n is. After sampling, :func:`bayesmoe.fit` draws the
  weights exactly from :math:`p(\beta \mid \tau, \sigma, y)` for every posterior draw
  (:meth:`InteractionSpec.complete`), so both forms return the same variables.

  The local-global priors are Gaussian given their scales too, so they collapse the same
  way with :math:`\Lambda_0 = \mathrm{diag}(s_j^{-2})`: NUTS then runs over the
  :math:`D` local scales, the global ones, the slab (or :math:`R^2` and its split) and
  :math:`\sigma`, free of the funnel between the weights and their scales that makes the
  per-row horseshoe diverge; the cost is still one Cholesky of a d x d matrix per gradient.
  The per-row form is needed only where the weight prior is not Gaussian given the scales
  (e.g. a user's Laplace or Student-t ``beta_*``), or when a weight prior is a hierarchical
  ``Prior`` whose location is itself a random variable.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pymc_extras.prior import Prior

from bayesmoe.builders.contract import ModelSpec
from bayesmoe.builders.terms.horseshoe import regularised_log_sd
from bayesmoe.builders.terms.likelihood import Family, get_family
from bayesmoe.data import (
    interaction_design,
    resolve_interactions,
    validate_features,
    validate_target,
    warn_constant_features,
)
from bayesmoe.numerics.conjugate import sample_conditional_weights
from bayesmoe.numerics.loglik import gaussian_linear, output_array
from bayesmoe.numerics.rescale import regression_to_user_scale
from bayesmoe.priors import LOCAL_GLOBAL_FAMILIES, interaction_defaults, merge_priors

__all__ = ["InteractionSpec", "interaction_regression", "interaction_regression_from_statistics"]

SAMPLE_DIMS = ("chain", "draw")


@dataclass
class _Block:
    """How one group of Gaussian coefficients gets its prior, for the collapsed form."""

    name: str
    width: int
    mean: np.ndarray
    kind: str  # "flat" | "const" | "var"
    sd: np.ndarray | None = None  # for "const"
    # posterior variable holding the sd, for "var": a scalar (one learned scale for the
    # block) or one value per coefficient (``beta_*_scale`` of the local-global priors)
    scale_var: str | None = None


@dataclass
class InteractionSpec(ModelSpec):
    """What :func:`bayesmoe.fit` and the estimators need to know about a built model.

    Attached to the model as ``model.bayesmoe_spec``; no optional capability of
    :class:`~bayesmoe.builders.contract.ModelSpec` beyond exact draws of the collapsed
    weights in :meth:`complete`.
    """

    feature_names: list[str]
    interaction_names: list[str]
    pairs: list[tuple[int, int]]
    collapsed: bool
    priors: dict
    blocks: list[_Block] = field(default_factory=list)
    sigma_fixed: float | None = None
    intercept_fixed: float | None = None
    y: np.ndarray | None = None  # working-scale target, for observed_data and log-likelihood
    family: str = "half_cauchy"  # the ``prior=`` the model was built with
    likelihood: str = "gaussian"  # the outcome's family (builders/terms/likelihood.py)
    trials: np.ndarray | None = None  # binomial trials of the training rows
    offset: np.ndarray | None = None  # log exposure of the training rows

    @property
    def supports_row_subsample(self) -> bool:
        """Per-row trials or exposure are held for the training rows only."""
        return self.trials is None and self.offset is None

    @property
    def kind(self) -> str:
        return "interaction_collapsed" if self.collapsed else "interaction_rows"

    @property
    def cache_key(self) -> tuple | None:
        """Everything the collapsed graph is built from except its pm.Data containers.

        Two collapsed models with equal keys have identical graphs, so a compiled sampler
        can be reused with the other's data (see ``bayesmoe.inference.backends.nutpie``). With
        ``standardize=True`` the data-dependent default priors are the same for every data
        set, so fits of one design shape share one compilation.
        """
        if not self.collapsed:
            return None
        import bayesmoe

        def key(name, spec):
            # the horseshoe's default global scale ~ 1/sqrt(n) is a pm.Data (_global_scale)
            if self.family == "horseshoe" and name.startswith("tau_"):
                if _half_cauchy_scale(spec) is not None:
                    return "HalfCauchy(beta=<pm.Data>)"
            return repr(spec)

        priors = tuple(sorted((k, key(k, v)) for k, v in self.priors.items()))
        return (
            "interaction-collapsed",
            bayesmoe.__version__,
            tuple(self.feature_names),
            tuple(self.interaction_names),
            priors,
        )

    @property
    def sampler_defaults(self) -> dict:
        """NUTS settings this model needs by default (the user's ``fit_kwargs`` win).

        R2-D2's Dirichlet split of the explained variance and the horseshoe's local scales
        leave funnels the default step size does not always follow; both sample at target
        acceptance 0.9 (``benchmarks/target_accept.py``,
        ``benchmarks/convergence_local_global.py``).
        """
        return {"target_accept": 0.9} if self.family in ("r2d2", "horseshoe") else {}

    # -- design ---------------------------------------------------------------------------
    def design(self, X_base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return X_base, interaction_design(X_base, self.pairs)

    # -- predictions on the working scale ---------------------------------------------------
    def linear_predictor(self, posterior: xr.Dataset, X_base: np.ndarray) -> xr.DataArray:
        """:math:`\\mu_i` for every posterior draw, dims (chain, draw, obs)."""
        Xb, Xi = self.design(X_base)
        mu = xr.DataArray(Xb, dims=("obs", "feature")).dot(
            posterior["beta_base"].drop_vars("feature"), dim="feature"
        )
        if self.interaction_names:
            mu = mu + xr.DataArray(Xi, dims=("obs", "interaction")).dot(
                posterior["beta_interaction"].drop_vars("interaction"), dim="interaction"
            )
        intercept = (
            self.intercept_fixed if self.intercept_fixed is not None else posterior["intercept"]
        )
        return (mu + intercept).transpose(*SAMPLE_DIMS, "obs")

    def response_mean(self, posterior: xr.Dataset, X_base: np.ndarray) -> xr.DataArray:
        """:math:`E[y_i \\mid \\theta]` per draw, working scale, dims (chain, draw, obs).

        The linear predictor through the family's inverse link (the linear predictor
        itself for the identity link); binomial: per trial, count families: per unit of
        exposure.
        """
        eta = self.linear_predictor(posterior, X_base)
        if self.likelihood == "gaussian":
            return eta
        return eta.copy(data=get_family(self.likelihood).mean(eta.values, {}))

    def noise_sd(self, posterior: xr.Dataset):
        return self.sigma_fixed if self.sigma_fixed is not None else posterior["sigma"]

    def family_params(self, posterior: xr.Dataset) -> dict[str, xr.DataArray | float]:
        """The likelihood family's parameters: draws (chain, draw) or fixed numbers."""
        out = {}
        for name in get_family(self.likelihood).params:
            value = self.priors[name]
            out[name] = posterior[name] if isinstance(value, Prior) else float(value)
        return out

    def log_likelihood(
        self, posterior: xr.Dataset, X_base: np.ndarray, y: np.ndarray, *, trials=None, offset=None
    ):
        """Pointwise :math:`\\log p(y_i \\mid \\theta)`, dims (chain, draw, obs).

        Gaussian: computed by :func:`bayesmoe.numerics.loglik.gaussian_linear` (one BLAS
        product per cache-sized block, no full-size temporaries), so its cost is about
        that of writing the result. Other families: the family's
        :meth:`~bayesmoe.builders.terms.likelihood.Family.logpdf` of the linear
        predictor; ``trials`` / ``offset`` default to the training rows'.
        """
        if self.likelihood != "gaussian":
            return self._family_log_likelihood(posterior, X_base, y, trials, offset)
        n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
        S = n_chain * n_draw

        def draws(value, *dims):
            if not isinstance(value, xr.DataArray):
                return value  # fixed in the prior: a scalar
            return value.transpose(*SAMPLE_DIMS, *dims).values.reshape(S, -1)

        Xb, Xi = self.design(X_base)
        coef = [draws(posterior["beta_base"], "feature")]
        if self.interaction_names:
            coef.append(draws(posterior["beta_interaction"], "interaction"))
            X = np.concatenate([Xb, Xi], axis=1)
        else:
            X = Xb
        intercept = (
            self.intercept_fixed if self.intercept_fixed is not None else posterior["intercept"]
        )
        out = output_array((n_chain, n_draw, X.shape[0]))
        gaussian_linear(
            X,
            y,
            np.concatenate(coef, axis=1),
            np.ravel(draws(self.noise_sd(posterior))),
            np.ravel(draws(intercept)),
            out=out.reshape(S, -1),
        )
        coords = {d: posterior[d].values for d in SAMPLE_DIMS if d in posterior.coords}
        return xr.DataArray(out, dims=(*SAMPLE_DIMS, "obs"), coords=coords)

    def _family_log_likelihood(self, posterior, X_base, y, trials, offset) -> xr.DataArray:
        eta = self.linear_predictor(posterior, X_base)
        params = {
            k: v.transpose(*SAMPLE_DIMS).values[..., None] if isinstance(v, xr.DataArray) else v
            for k, v in self.family_params(posterior).items()
        }
        ll = get_family(self.likelihood).logpdf(
            y,
            eta.values,
            params,
            trials=self.trials if trials is None else trials,
            offset=self.offset if offset is None else offset,
        )
        return eta.copy(data=ll)

    # -- the user's scale -------------------------------------------------------------------
    def to_user_scale(self, posterior: xr.Dataset, standardizer) -> xr.Dataset:
        """The posterior with coefficients and ``sigma`` on the user's scale.

        ``intercept``, ``beta_base`` and ``beta_interaction`` become the coefficients of
        the raw features and of their raw products (:mod:`bayesmoe.numerics.rescale`),
        ``sigma`` is multiplied by the scale of ``y``. Prior scales (``tau_*``,
        ``lambda_*``, the local-global priors' ``beta_*_scale``, ``c2``, ``r2``,
        ``phi*``) stay as they are: they belong to the standardised weights.
        """
        std = standardizer
        base = posterior["beta_base"].transpose(*SAMPLE_DIMS, "feature")
        shape = base.shape[:-1]
        inter = (
            posterior["beta_interaction"].transpose(*SAMPLE_DIMS, "interaction").values
            if self.interaction_names
            else np.zeros((*shape, 0))
        )
        intercept = (
            np.full(shape, self.intercept_fixed)
            if self.intercept_fixed is not None
            else posterior["intercept"].transpose(*SAMPLE_DIMS).values
        )
        b0, w, v = regression_to_user_scale(
            intercept, base.values, inter, self.pairs, std.x_mean, std.x_scale,
            std.y_mean, std.y_scale,
        )  # fmt: skip
        out = posterior.copy()
        out["intercept"] = (SAMPLE_DIMS, b0)
        out["beta_base"] = base.copy(data=w)
        if self.interaction_names:
            out["beta_interaction"] = (
                posterior["beta_interaction"].transpose(*SAMPLE_DIMS, "interaction").copy(data=v)
            )
        if "sigma" in posterior:
            out["sigma"] = posterior["sigma"] * std.y_scale
        user = ("intercept", "beta_base", "beta_interaction", "sigma")
        return mark_scales(out, posterior, user)

    # -- completing a collapsed fit ---------------------------------------------------------
    def complete(self, posterior: xr.Dataset, model: pm.Model, rng: np.random.Generator):
        """Draw the integrated-out weights exactly; returns them as a Dataset."""
        if not self.collapsed:
            return xr.Dataset()
        stats_ = {k: model[k].get_value() for k in ("xtx", "xty")}
        n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
        S = n_chain * n_draw
        precisions, means = [], []
        for b in self.blocks:
            means.append(np.broadcast_to(b.mean, (b.width,)))
            if b.kind == "flat":
                precisions.append(np.zeros((S, b.width)))
            elif b.kind == "const":
                precisions.append(np.broadcast_to(1.0 / b.sd**2, (S, b.width)))
            else:
                sd = posterior[b.scale_var].transpose(*SAMPLE_DIMS, ...).values.reshape(S, -1)
                precisions.append(np.broadcast_to(1.0 / sd**2, (S, b.width)))
        sigma = self.noise_sd(posterior)
        sigma = np.full(S, sigma) if np.isscalar(sigma) else sigma.values.reshape(S)
        w = sample_conditional_weights(
            stats_["xtx"],
            stats_["xty"],
            np.concatenate(means),
            np.concatenate(precisions, axis=1),
            sigma,
            rng,
        ).reshape(n_chain, n_draw, -1)
        coords = {"chain": posterior["chain"], "draw": posterior["draw"]}
        p = len(self.feature_names)
        out = {
            "intercept": xr.DataArray(w[..., 0], dims=SAMPLE_DIMS, coords=coords),
            "beta_base": xr.DataArray(
                w[..., 1 : 1 + p],
                dims=(*SAMPLE_DIMS, "feature"),
                coords={**coords, "feature": self.feature_names},
            ),
        }
        if self.interaction_names:
            out["beta_interaction"] = xr.DataArray(
                w[..., 1 + p :],
                dims=(*SAMPLE_DIMS, "interaction"),
                coords={**coords, "interaction": self.interaction_names},
            )
        return xr.Dataset(out)


def mark_scales(out: xr.Dataset, working: xr.Dataset, user_vars) -> xr.Dataset:
    """Say in each variable's attrs which scale it is on ("user" or "working")."""
    for name in out.data_vars:
        scale = "user" if name in user_vars else "working"
        attrs = working[name].attrs if name in working else {}
        out[name].attrs = {**attrs, "bayesmoe_scale": scale}
    return out.assign_attrs(working.attrs, bayesmoe_scale="user")


def _block_for_collapse(name: str, spec, width: int, scale_var: str | None) -> _Block | None:
    """Translate a coefficient prior into a Gaussian block, or None if not Gaussian."""
    if isinstance(spec, Prior) and spec.distribution == "Flat":
        return _Block(name, width, np.zeros(width), "flat")
    if not isinstance(spec, Prior) or spec.distribution != "Normal":
        return None
    params = spec.parameters
    if set(params) - {"mu", "sigma"}:
        return None
    mu = params.get("mu", 0.0)
    if isinstance(mu, Prior):
        return None
    mean = np.broadcast_to(np.asarray(mu, float), (width,)).copy()
    sigma = params.get("sigma")
    if sigma is None and scale_var is None:  # no learned scale (intercept): PyMC's sigma=1
        sigma = 1.0
    if sigma is None:
        return _Block(name, width, mean, "var", scale_var=scale_var)
    if isinstance(sigma, Prior):
        return _Block(name, width, mean, "var", scale_var=f"{name}_sigma")
    return _Block(
        name, width, mean, "const", sd=np.broadcast_to(np.asarray(sigma, float), (width,))
    )


def _takes_learned_scale(spec) -> bool:
    """A Normal weight prior given without ``sigma`` takes the learned tau as its scale."""
    return (
        isinstance(spec, Prior)
        and spec.distribution == "Normal"
        and "sigma" not in spec.parameters
    )


def _with_dims(spec: Prior, dims: tuple[str, ...]) -> Prior:
    if spec.dims:
        return spec
    return Prior(
        spec.distribution,
        dims=dims,
        centered=spec.centered,
        transform=spec.transform,
        **spec.parameters,
    )


def _fixed_tau(scale_var: str, priors: dict) -> float | None:
    """The value of tau_<group> when the user or prior='fixed' pinned it, else None."""
    group = scale_var.removeprefix("tau_")
    lam = priors.get(f"lambda_{group}")
    if isinstance(lam, float):
        return lam**-0.5
    tau = priors.get(f"tau_{group}")
    return tau if isinstance(tau, float) else None


def _scale_variable(group: str, priors: dict):
    """Create tau_<group> (directly, or from the precision lambda_<group>)."""
    if f"lambda_{group}" in priors:
        lam = priors[f"lambda_{group}"]
        lam_var = lam.create_variable(f"lambda_{group}") if isinstance(lam, Prior) else lam
        # the gamma family puts its prior on the precision lambda = tau^-2; tau is reported too
        return pm.Deterministic(f"tau_{group}", lam_var**-0.5)
    tau = priors[f"tau_{group}"]
    return tau.create_variable(f"tau_{group}") if isinstance(tau, Prior) else pt.constant(tau)


def interaction_regression(
    X,
    y,
    *,
    interactions="all",
    prior: str = "half_cauchy",
    base_scale: float | None = None,
    interaction_scale: float | None = None,
    priors: dict | None = None,
    collapsed: bool | str = False,
    centered: bool = False,
    family: str = "gaussian",
    trials=None,
    exposure=None,
) -> pm.Model:
    r"""Build the base-plus-pairwise-interaction regression with learned prior scales.

    .. math::

        y_i \sim N\Big(b_0 + \sum_j w_j x_{ij} + \sum_{(a,b)} v_{ab} x_{ia} x_{ib},\ \sigma^2\Big),
        \quad w_j \sim N(0, \tau_\text{base}^2),\quad v_{ab} \sim N(0, \tau_\text{int}^2)

    Parameters
    ----------
    X : array-like or DataFrame, shape (n, p)
        Base features (used as given: standardise beforehand, or use the estimator).
    y : array-like, shape (n,)
    interactions : "all", None, or sequence of pairs / ``"a:b"`` names
        Which pairwise products enter. ``None`` gives the base-effects model.
    prior : {"half_cauchy", "gamma", "half_normal", "fixed", "horseshoe", "r2d2"}
        Hyperprior family for :math:`(\tau_\text{base}, \tau_\text{int})`, or a
        local-global prior with one scale per weight inside each group (the regularised
        horseshoe, R2-D2); see :func:`bayesmoe.priors.interaction_defaults`.
    base_scale, interaction_scale : float, optional
        Fixed prior standard deviations, with ``prior="fixed"`` only.
    priors : dict, optional
        Overrides keyed by variable name: ``intercept``, ``beta_base``,
        ``beta_interaction``, ``tau_base``, ``tau_interaction`` (``lambda_base``,
        ``lambda_interaction`` for the gamma family) and ``sigma``; the horseshoe adds
        ``lambda_local_base``, ``lambda_local_interaction``, ``c2`` (one slab for both
        groups, or one per group with ``dims="scale_group"``), R2-D2 has ``r2``,
        ``phi``, ``phi_base``, ``phi_interaction`` instead of ``tau_*``. Values are
        :class:`pymc_extras.prior.Prior` (``Flat``/``HalfFlat`` included) or a number that
        fixes a scale (or ``r2``). A ``Normal`` weight prior without ``sigma`` takes the
        learned ``tau`` (local-global: the per-weight ``beta_*_scale``) as its scale.
    collapsed : bool or "auto"
        Integrate the weights out (see module docstring). ``"auto"`` collapses whenever
        the intercept and weight priors are Normal or Flat.
    centered : bool
        Per-row form only: parametrisation of weights whose scale is a learned ``tau``.
        Non-centred (default) avoids the funnel between ``tau`` and the weights when the
        data inform them weakly; centred is better when they are strongly identified.
    family : str, default "gaussian"
        One of ``"gaussian"``, ``"student_t"``, ``"bernoulli"``, ``"binomial"``,
        ``"poisson"``, ``"negative_binomial"``.
        The outcome's distribution given the linear predictor :math:`\eta_i` above
        (:mod:`bayesmoe.builders.terms.likelihood`): the Gaussian is the model above;
        the others replace :math:`N(\eta_i, \sigma^2)` by their own density with their
        link (identity, logit, log) and add their parameters to ``priors`` (``nu``,
        ``alpha``; ``sigma`` only where the family has it). Only the Gaussian collapses;
        ``collapsed="auto"`` builds the per-row form for the others, ``collapsed=True``
        is refused. R2-D2 needs a noise sd for its :math:`R^2` (gaussian, student_t);
        the horseshoe measures the weights' scales in a pseudo noise sd (2 for the logit
        link, 1 for the log link; Piironen & Vehtari 2017).
    trials : array-like of shape (n,), optional
        Binomial trials per row (``family="binomial"`` only, required there).
    exposure : array-like of shape (n,), optional
        Positive exposure per row, entering as the offset :math:`\log(\text{exposure})`
        (``family="poisson"`` or ``"negative_binomial"``).

    Returns
    -------
    pymc.Model
        Coords ``obs``, ``feature``, ``interaction`` (and ``coef`` when collapsed); data
        containers ``X_base`` (and ``xtx``, ``xty``, ``yty``, ``n_obs`` when collapsed);
        the fitting metadata is in ``model.bayesmoe_spec``. The local-global priors add the
        deterministic prior sd of every weight, ``beta_base_scale`` (dims ``feature``) and
        ``beta_interaction_scale`` (``interaction``), and R2-D2 (or a horseshoe with a
        slab per group) the coord ``scale_group``.
    """
    likelihood = get_family(family)
    Xv, names = validate_features(X, name="X")
    if Xv.shape[1] == 0:
        raise ValueError("X has no columns; InteractionRegression needs at least one feature")
    yv = validate_target(y, Xv.shape[0], name="y")
    warn_constant_features(Xv, names)
    pairs, int_names = resolve_interactions(names, interactions)
    if likelihood.is_gaussian and trials is None and exposure is None:
        location, spread = float(yv.mean()), float(yv.std())
        return _build(
            Xv, yv, None, names, pairs, int_names, location, spread, Xv.shape[0], prior,
            base_scale, interaction_scale, priors, collapsed, centered,
        )  # fmt: skip
    extras = likelihood.check_extras(Xv.shape[0], trials=trials, exposure=exposure)
    yv = likelihood.check_y(yv, trials=extras[0])
    refuse_unsupported(likelihood, prior=prior, collapsed=collapsed)
    return _build(
        Xv, yv, None, names, pairs, int_names, *_family_location(likelihood, yv, extras),
        Xv.shape[0], prior, base_scale, interaction_scale, priors, collapsed, centered,
        likelihood=(likelihood, *extras),
    )  # fmt: skip


def refuse_unsupported(likelihood: Family, *, prior=None, collapsed=None, method=None) -> None:
    """Refuse, before anything is built, what a non-Gaussian family cannot do.

    The collapsed form (conjugate Gaussian weights), R2-D2 without a noise sd to define
    :math:`R^2` by, and the closed-form VEM; one message each (:meth:`Family.refuse`).
    """
    if likelihood.is_gaussian:
        return
    if collapsed is True:
        likelihood.refuse(
            "the collapsed form (collapsed=True)", "collapsed=False or 'auto' (per-row likelihood)"
        )
    if prior == "r2d2" and "sigma" not in likelihood.params:
        likelihood.refuse(
            "prior='r2d2' (its R-squared prior needs a noise variance)", "prior='horseshoe'"
        )
    if method == "vem":
        likelihood.refuse("method='vem' (closed-form variational EM)", "method='nuts' or 'advi'")


def _family_location(likelihood: Family, yv: np.ndarray, extras) -> tuple[float, float]:
    """Centre and spread of the linear predictor that the default priors are set in."""
    if likelihood.link == "identity":
        return float(yv.mean()), float(yv.std())
    return likelihood.eta_location(yv, trials=extras[0], offset=extras[1]), 1.0


def interaction_regression_from_statistics(
    statistics: dict,
    feature_names,
    *,
    sample: tuple[np.ndarray, np.ndarray] | None = None,
    interactions="all",
    prior: str = "half_cauchy",
    base_scale: float | None = None,
    interaction_scale: float | None = None,
    priors: dict | None = None,
) -> pm.Model:
    r"""The collapsed model of :func:`interaction_regression`, from sufficient statistics.

    For data that are never in memory: ``statistics`` holds ``n``, ``xtx`` (of the design
    :math:`[1, x, (x_a x_b)_{(a,b)}]`, intercept first), ``xty`` and ``yty`` of the data the
    model sees (standardised or not), as
    :func:`bayesmoe.numerics.suffstats.standardized_statistics` returns them from one
    streamed pass. The likelihood is the same function of these statistics as in the
    collapsed form, so the posterior is the same as with the rows in memory; the default
    priors use the target's mean :math:`x_{y,0}/n` and sd
    :math:`\sqrt{y^	op y/n - ar y^2}` read off the statistics.

    Parameters
    ----------
    statistics : dict
    feature_names : sequence of str
    sample : (X, y), optional
        Rows of the same data (same scale), e.g. a uniform row sample drawn in the same
        pass: they become the model's ``obs``, ``X_base`` and ``observed_data``, i.e. the
        rows a pointwise log-likelihood is computed for. They do not enter the likelihood.
    interactions, prior, base_scale, interaction_scale, priors
        As in :func:`interaction_regression`; the weight priors must allow the collapsed
        form (Normal or Flat).
    """
    names = [str(c) for c in feature_names]
    if not names:
        raise ValueError("feature_names is empty; InteractionRegression needs a feature")
    pairs, int_names = resolve_interactions(names, interactions)
    d = 1 + len(names) + len(pairs)
    xtx = np.asarray(statistics["xtx"], float)
    xty = np.asarray(statistics["xty"], float)
    if xtx.shape != (d, d) or xty.shape != (d,):
        raise ValueError(
            f"statistics hold xtx {xtx.shape} and xty {xty.shape}; {len(names)} features and "
            f"{len(pairs)} interactions need {(d, d)} and {(d,)}"
        )
    n, yty = float(statistics["n"]), float(statistics["yty"])
    location = float(xty[0] / n)
    spread = float(np.sqrt(max(yty / n - location**2, 0.0)))
    if sample is None:
        sample = (np.zeros((0, len(names))), np.zeros(0))
    Xs = np.asarray(sample[0], float).reshape(-1, len(names))
    ys = np.asarray(sample[1], float).ravel()
    return _build(
        Xs, ys, (xtx, xty, yty, n), names, pairs, int_names, location, spread, int(n), prior,
        base_scale, interaction_scale, priors, True, False,
    )  # fmt: skip


def _build(
    Xv, yv, stats, names, pairs, int_names, y_location, y_scale, n_obs, prior, base_scale,
    interaction_scale, priors, collapsed, centered, likelihood=None,
) -> pm.Model:  # fmt: skip
    """The model from validated rows ``Xv, yv`` (and, streamed, their statistics ``stats``).

    ``likelihood`` is None for the Gaussian model, else ``(family, trials, offset)``.
    """
    defaults = interaction_defaults(
        prior,
        y_location=y_location,
        y_scale=y_scale,
        base_scale=base_scale,
        interaction_scale=interaction_scale,
        has_interactions=bool(pairs),
        n_obs=n_obs,
        n_features=len(names),
        n_interactions=len(pairs),
    )
    if likelihood is not None:
        defaults, priors, fixed_params = _family_priors(likelihood[0], defaults, priors, y_scale)
    # Flat weights and a HalfFlat noise sd keep the regression posterior proper (n > d);
    # a flat learned scale does not (p(tau | y) ~ tau^-p at infinity: improper for p = 1).
    merged = merge_priors(
        defaults,
        priors,
        sizes={"feature": len(names), "interaction": len(pairs)}
        | ({"scale_group": 2} if pairs else {}),
        improper_ok={"intercept", "beta_base", "beta_interaction", "sigma"},
    )
    if collapsed not in (True, False, "auto"):
        raise ValueError(f"collapsed must be True, False or 'auto', got {collapsed!r}")
    if likelihood is not None:
        merged.update(fixed_params)
        collapsed = False  # only the Gaussian weights are conjugate

    p, q = len(names), len(pairs)
    local_global = prior in LOCAL_GLOBAL_FAMILIES
    # The variable a weight group takes its prior sd from: one learned scale, or the
    # deterministic per-weight sds of a local-global prior.
    scale_of = {
        g: f"beta_{g}_scale" if local_global else f"tau_{g}" for g in ("base", "interaction")
    }
    groups = [
        ("intercept", merged["intercept"], 1, None),
        ("beta_base", merged["beta_base"], p, scale_of["base"]),
    ]
    if q:
        groups.append(("beta_interaction", merged["beta_interaction"], q, scale_of["interaction"]))
    blocks = []
    for name, spec, width, scale_var in groups:
        if name == "intercept" and isinstance(spec, float):
            blocks.append(None)  # a fixed intercept is not a Gaussian block
            continue
        block = _block_for_collapse(name, spec, width, scale_var)
        fixed = _fixed_tau(scale_var, merged) if scale_var and not local_global else None
        if block is not None and block.scale_var == scale_var and fixed is not None:
            block = _Block(name, width, block.mean, "const", sd=np.full(width, fixed))
        blocks.append(block)
    collapsible = all(b is not None for b in blocks)
    if collapsed is True and not collapsible:
        bad = [g[0] for g, b in zip(groups, blocks, strict=True) if b is None]
        raise ValueError(
            f"collapsed=True needs Normal or Flat priors on the weights; {bad} are not. "
            + (
                "Use collapsed=False (per-row likelihood) for other priors"
                if stats is None
                else "A streamed fit has no rows for a per-row likelihood"
            )
        )
    use_collapsed = collapsible and collapsed in (True, "auto")

    coords = {"obs": np.arange(Xv.shape[0]), "feature": names}
    if q:
        coords["interaction"] = int_names
    if "phi" in merged or _per_group_slab(merged):
        coords["scale_group"] = list(_SCALE_GROUPS)
    spec = InteractionSpec(
        feature_names=names,
        interaction_names=int_names,
        pairs=pairs,
        collapsed=use_collapsed,
        priors=merged,
        sigma_fixed=merged["sigma"] if isinstance(merged.get("sigma"), float) else None,
        intercept_fixed=merged["intercept"] if isinstance(merged["intercept"], float) else None,
        y=yv,
        family=prior,
    )
    if likelihood is not None:
        spec.likelihood, spec.trials, spec.offset = likelihood[0].name, *likelihood[1:]
    Xi = interaction_design(Xv, pairs)
    learned = [
        name.removeprefix("beta_") for name, s_, _, _ in groups[1:] if _takes_learned_scale(s_)
    ]
    with pm.Model(coords=coords) as model:
        pm.Data("X_base", Xv, dims=("obs", "feature"))
        if local_global:
            # sigma first: the local-global prior sds are relative to the noise sd
            sigma = _noise_sd(merged, likelihood)
            taus = _local_global_scales(prior, merged, sigma, learned)
        else:
            taus = {f"tau_{g}": _scale_variable(g, merged) for g in learned}
            sigma = _noise_sd(merged, likelihood)
        if use_collapsed:
            spec.blocks = blocks
            if stats is None:
                design = np.column_stack([np.ones(Xv.shape[0]), Xv, Xi])
                stats = (design.T @ design, design.T @ yv, float(yv @ yv), float(Xv.shape[0]))
            _collapsed_likelihood(model, stats, blocks, taus, sigma, groups)
        else:
            mu = _rowwise_likelihood(Xv, Xi, merged, taus, sigma, q, centered, scale_of)
            if likelihood is None:
                pm.Normal("y", mu=mu, sigma=sigma, observed=yv, dims="obs")
            else:
                _observe_family(likelihood, mu, yv, merged, sigma)
    model.bayesmoe_spec = spec
    return model


def _noise_sd(merged: dict, likelihood=None):
    """The noise sd variable; a family without one gets its pseudo noise sd (a constant)."""
    if likelihood is not None and "sigma" not in likelihood[0].params:
        return pt.constant(likelihood[0].pseudo_sigma)
    sigma = merged["sigma"]
    return sigma.create_variable("sigma") if isinstance(sigma, Prior) else pt.constant(sigma)


def _family_priors(likelihood: Family, defaults: dict, priors, y_scale: float):
    """Defaults with the family's parameters; the user's numbers for them taken apart.

    Returns ``(defaults, priors, fixed)``: ``sigma`` is dropped where the family has no
    noise sd, ``nu`` / ``alpha`` added with their documented priors; a positive number
    given for ``nu`` or ``alpha`` fixes it (``fixed``), a Prior is checked as every other.
    """
    out = {k: v for k, v in defaults.items() if k != "sigma" or "sigma" in likelihood.params}
    for k, v in likelihood.default_priors(y_scale).items():
        out.setdefault(k, v)
    user = dict(priors) if isinstance(priors, dict) else priors
    fixed = {}
    for name in ("nu", "alpha"):
        value = user.get(name) if isinstance(user, dict) else None
        if name in out and isinstance(value, numbers.Real) and not isinstance(value, bool):
            if not (np.isfinite(value) and value > 0):
                raise ValueError(
                    f"priors[{name!r}] must be a positive finite number, got {value!r}"
                )
            fixed[name] = float(user.pop(name))
    return out, user, fixed


def _observe_family(likelihood, mu, yv, merged: dict, sigma) -> None:
    """The observed ``y`` of a non-Gaussian family, its parameters created from ``merged``."""
    family, trials, offset = likelihood
    params = {}
    for name in family.params:
        params[name] = sigma if name == "sigma" else _create(merged[name], name)
    family.observe(
        "y",
        mu,
        yv,
        params,
        trials=None if trials is None else pm.Data("trials", trials, dims="obs"),
        offset=None if offset is None else pm.Data("offset", offset, dims="obs"),
        dims="obs",
    )


def _create(spec, name: str):
    """A model variable from a Prior, or a constant for a value fixed by the user."""
    return spec.create_variable(name) if isinstance(spec, Prior) else pt.constant(spec)


def _half_cauchy_scale(spec) -> float | None:
    """The scale of a plain scalar ``Prior("HalfCauchy", beta=b)``, else None."""
    if not isinstance(spec, Prior) or spec.distribution != "HalfCauchy":
        return None
    if spec.dims or spec.transform is not None or set(spec.parameters) != {"beta"}:
        return None
    beta = spec.parameters["beta"]
    return float(beta) if isinstance(beta, numbers.Real) else None


def _global_scale(spec, name: str):
    r"""The horseshoe's global scale: :math:`\tau = b\,t`, :math:`t \sim \mathrm{HalfCauchy}(1)`.

    This is the same prior as :math:`\tau \sim \mathrm{HalfCauchy}(b)` and the same NUTS
    geometry (:math:`\log\tau` is :math:`\log t` shifted). It is written this way because
    the default :math:`b` is a function of the number of rows (:math:`\propto 1/\sqrt n`):
    held in a ``pm.Data`` container it leaves the graph the same for every ``n``, so a
    learning curve compiles the model once (``InteractionSpec.cache_key``), and ``t``'s
    start point does not depend on ``n`` either, so a cached fit gives the draws of a fresh
    one. Any other hyperprior for ``tau`` is created as given.
    """
    b = _half_cauchy_scale(spec)
    if b is None:
        return _create(spec, name)
    unit = pm.HalfCauchy(f"{name}_unit", beta=1.0)
    return pm.Deterministic(name, pm.Data(f"{name}_beta", b) * unit)


#: The weight groups in the order of the ``scale_group`` coord (R2-D2's ``phi``, a
#: per-group slab ``c2``).
_SCALE_GROUPS = ("base", "interaction")


def _per_group_slab(merged: dict) -> bool:
    """Whether the horseshoe's slab ``c2`` has one value per weight group."""
    c2 = merged.get("c2")
    return isinstance(c2, Prior) and tuple(c2.dims or ()) == ("scale_group",)


def _local_global_scales(prior: str, merged: dict, sigma, groups: list[str]) -> dict:
    r"""The per-weight prior sds :math:`s_j` of a local-global prior, by ``beta_<g>_scale``.

    Each is registered as a Deterministic (dims of its group), together with the groups'
    global scales ``tau_<g>`` (a free variable for the horseshoe; for R2-D2
    :math:`\sqrt{\omega \phi_g}`, :math:`\omega = R^2/(1-R^2)`), both relative to
    :math:`\sigma`. The sds are computed on the log scale: the half-Cauchy locals and the
    Dirichlet shares span many orders of magnitude, and squaring them first overflows.
    """
    dims = {"base": "feature", "interaction": "interaction"}
    log_sigma = pt.log(sigma)
    out = {}
    if prior == "horseshoe":
        log_c2 = pt.log(_create(merged["c2"], "c2")) if groups else None
        per_group = _per_group_slab(merged)
        for g in groups:
            tau = _global_scale(merged[f"tau_{g}"], f"tau_{g}")
            lam = merged[f"lambda_local_{g}"].create_variable(f"lambda_local_{g}")
            # s_j at u = sigma tau_g lambda_j (bayesmoe.builders.terms.horseshoe)
            log_c2_g = log_c2[_SCALE_GROUPS.index(g)] if per_group else log_c2
            log_sd = regularised_log_sd(log_sigma, tau, lam, log_c2_g)
            out[f"beta_{g}_scale"] = pm.Deterministic(
                f"beta_{g}_scale", pt.exp(log_sd), dims=dims[g]
            )
        return out
    r2 = _create(merged["r2"], "r2")
    log_omega = pt.log(r2) - pt.log1p(-r2)
    log_phi = _log_dirichlet(merged["phi"], "phi") if "phi" in merged else None
    for g in groups:
        # groups may lack "base" (a base prior with its own sigma): index by the coord
        log_share = log_omega if log_phi is None else log_omega + log_phi[_SCALE_GROUPS.index(g)]
        pm.Deterministic(f"tau_{g}", pt.exp(0.5 * log_share))
        within = (
            _log_dirichlet(merged[f"phi_{g}"], f"phi_{g}")
            if f"phi_{g}" in merged
            else pt.zeros(1)  # a single weight takes its group's whole share
        )
        out[f"beta_{g}_scale"] = pm.Deterministic(
            f"beta_{g}_scale",
            pt.exp(log_sigma + 0.5 * (log_share + within)),
            dims=dims[g],
        )
    return out


def _log_dirichlet(spec: Prior, name: str):
    r"""The log of Dirichlet shares, sampled as normalised gamma variables.

    :math:`\phi = \gamma / \sum_k \gamma_k`, :math:`\gamma_j \sim \mathrm{Gamma}(a_j, 1)`
    independent, is exactly :math:`\phi \sim \mathrm{Dir}(a)`; the sum is an auxiliary
    variable independent of :math:`\phi` (``<name>_gamma`` in the posterior). NUTS then
    moves in the independent coordinates :math:`\log \gamma_j` instead of the coupled
    log-ratios of PyMC's simplex transform. With many rows the data pin each weight and
    its share's posterior gets a steep wall below (the likelihood falls like
    :math:`e^{-w_j^2/(2 v_j)}` as its prior variance :math:`v_j \to 0`); coupled through the
    simplex those walls make R2-D2 diverge with many rows
    (``benchmarks/results/local_global/large_n.txt``).
    ``phi`` stays in the posterior as a
    Deterministic.
    """
    a = spec.parameters["a"]
    gamma = pm.Gamma(f"{name}_gamma", alpha=a, beta=1.0, dims=spec.dims)
    log_gamma = pt.log(gamma)
    log_phi = log_gamma - pt.logsumexp(log_gamma, axis=-1, keepdims=True)
    pm.Deterministic(name, pt.exp(log_phi), dims=spec.dims)
    return log_phi


def _rowwise_likelihood(Xv, Xi, merged, taus, sigma, q, centered, scale_of):
    """The linear predictor of the per-row form (its weights created on the way)."""
    intercept_spec = merged["intercept"]
    intercept = (
        intercept_spec.create_variable("intercept")
        if isinstance(intercept_spec, Prior)
        else pt.constant(intercept_spec)
    )
    mu = intercept
    for name, X_, dim, scale_var in (
        ("beta_base", Xv, "feature", scale_of["base"]),
        ("beta_interaction", Xi, "interaction", scale_of["interaction"]),
    ):
        if name == "beta_interaction" and not q:
            continue
        s_ = _with_dims(merged[name], (dim,))
        if scale_var in taus:
            s_ = Prior(
                s_.distribution,
                dims=s_.dims,
                centered=centered,
                transform=s_.transform,
                sigma=taus[scale_var],
                # a non-centred Normal needs an explicit mu (pymc-extras refuses it without)
                **{"mu": 0.0, **s_.parameters},
            )
        beta = s_.create_variable(name)
        if name == "beta_base":
            data = pm.modelcontext(None)["X_base"]
        else:
            data = pm.Data("X_interaction", X_, dims=("obs", "interaction"))
        mu = mu + pt.dot(data, beta)
    return mu


def _collapsed_likelihood(model, stats, blocks, taus, sigma, groups):
    """The log marginal likelihood from ``stats = (xtx, xty, yty, n)`` (module docstring)."""
    model.add_coord(
        "coef", ["intercept", *model.coords["feature"], *model.coords.get("interaction", ())]
    )
    xtx = pm.Data("xtx", stats[0], dims=("coef", "coef_"))
    xty = pm.Data("xty", stats[1], dims="coef")
    yty = pm.Data("yty", stats[2])
    n_obs = pm.Data("n_obs", stats[3])
    sds, means, log_prec_terms = [], [], []
    for block, (_, spec, width, scale_var) in zip(blocks, groups, strict=True):
        means.append(block.mean)
        if block.kind == "flat":
            sds.append(pt.zeros(width))  # placeholder; precision set to 0 below
            continue
        if block.kind == "const":
            sd = pt.as_tensor(block.sd)
        elif block.scale_var == scale_var:
            sd = pt.ones(width) * taus[scale_var]
        else:  # a Prior on the block's sigma: create it under the name Prior would use
            sd = pt.ones(width) * spec.parameters["sigma"].create_variable(block.scale_var)
        sds.append(sd)
        log_prec_terms.append(-2.0 * pt.sum(pt.log(sd)))
    precision = pt.concatenate(
        [
            pt.zeros(b.width) if b.kind == "flat" else s**-2
            for b, s in zip(blocks, sds, strict=True)
        ]
    )
    prior_mean = pt.as_tensor(np.concatenate(means))
    inv_var = sigma**-2
    post_prec = xtx * inv_var + pt.diag(precision)
    chol = pt.linalg.cholesky(post_prec)
    natural = precision * prior_mean + xty * inv_var
    u = pt.linalg.solve_triangular(chol, natural, lower=True)
    quad = yty * inv_var + pt.sum(precision * prior_mean**2) - pt.dot(u, u)
    n_flat = sum(b.width for b in blocks if b.kind == "flat")
    logp = (
        -0.5 * n_obs * np.log(2 * np.pi)
        - n_obs * pt.log(sigma)
        + 0.5 * sum(log_prec_terms, pt.constant(0.0))
        + 0.5 * n_flat * np.log(2 * np.pi)
        - pt.sum(pt.log(pt.diag(chol)))
        - 0.5 * quad
    )
    pm.Potential("y_marginal", logp)
