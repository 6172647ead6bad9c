"""The mixture builders: ``mixture_regression`` and ``gated_experts`` (-> ``pm.Model``)."""

from __future__ import annotations

import numpy as np
import pymc as pm

from bayesmoe.builders.mixture.checks import check_arguments
from bayesmoe.builders.mixture.constants import DEFAULT_ALPHA, GATES
from bayesmoe.builders.mixture.graph import model_graph
from bayesmoe.builders.mixture.labels import decide_order, sorted_point
from bayesmoe.builders.mixture.priors import merged_priors
from bayesmoe.builders.mixture.spec import MixtureSpec
from bayesmoe.builders.mixture.start import point_estimate
from bayesmoe.builders.terms.gate import gate_grid
from bayesmoe.builders.terms.likelihood import get_family
from bayesmoe.numerics.em import EMResult

__all__ = ["build_mixture", "gated_experts", "mixture_regression"]


def build_mixture(
    X,
    y,
    *,
    n_components,
    arg_k: str,
    gate,
    gate_hidden,
    expert_features,
    gate_features,
    interactions,
    prior,
    base_scale,
    interaction_scale,
    priors,
    alpha,
    shared_noise,
    order_by,
    centered,
    random_seed,
    minibatch: int | None = None,
    point: EMResult | None = None,
    y_moments: tuple[float, float] | None = None,
    family="gaussian",
    trials=None,
    exposure=None,
) -> pm.Model:
    """The model of :func:`mixture_regression` / :func:`gated_experts` (``minibatch``: the
    ADVI twin of ``MixtureSpec.minibatch_model``; ``point``: a known EM start)."""
    # What a minibatch version of this model needs (see MixtureSpec.minibatch_model).
    rebuild = {k: v for k, v in locals().items() if k not in ("minibatch", "point")}
    fam = get_family(family)
    c = check_arguments(
        X, y, n_components=n_components, arg_k=arg_k, gate=gate, gate_hidden=gate_hidden,
        expert_features=expert_features, gate_features=gate_features,
        interactions=interactions, alpha=alpha, order_by=order_by, shared_noise=shared_noise,
    )  # fmt: skip
    K, Xv, yv, names = c.K, c.X, c.y, c.names
    trials_v, offset_v = fam.check_extras(yv.size, trials=trials, exposure=exposure)
    if not fam.is_gaussian:
        yv = fam.check_y(yv, trials=trials_v)
    merged, fixed = merged_priors(
        c, prior=prior, gate=gate, gate_hidden=gate_hidden, base_scale=base_scale,
        interaction_scale=interaction_scale, priors=priors, alpha=alpha,
        shared_noise=shared_noise, y_moments=y_moments, family=fam, trials=trials_v,
        offset=offset_v,
    )  # fmt: skip
    spec = MixtureSpec(
        n_experts=K,
        feature_names=names,
        expert_idx=c.expert_idx,
        gate_idx=c.gate_idx,
        pairs=c.pairs,
        interaction_names=c.interaction_names,
        gate=gate if K > 1 else None,
        gate_hidden=int(gate_hidden or 0) if gate == "mlp" else 0,
        shared_noise=bool(shared_noise),
        ordered=False,
        priors=merged,
        y=yv,
        fixed=fixed,
        seed=random_seed,
        rebuild=rebuild,
        family=prior,
        likelihood=fam.name,
        trials=trials_v,
        offset=offset_v,
    )
    Xe = spec.expert_design(Xv)
    G = spec.gate_design(Xv) if spec.gate else None
    if K > 1:
        spec.point = point or point_estimate(spec, Xe, G, yv, merged, alpha, random_seed)
        spec.ordered = decide_order(order_by, spec, Xe.shape[1], "intercept" in fixed)
        if spec.ordered:
            spec.point = sorted_point(spec.point)
    coords = {
        "obs": np.arange(yv.size),
        "feature": names,
        "expert": spec.experts,
        "expert_feature": [names[j] for j in c.expert_idx],
    }
    if c.pairs:
        coords["interaction"] = c.interaction_names
    if spec.gate:
        coords["gate_expert"] = spec.experts[:-1]
        coords["gate_feature"] = [names[j] for j in c.gate_idx]
        spec.grid = gate_grid(G)
        coords["grid"] = np.arange(len(spec.grid))
    if spec.gate == "mlp":
        coords["gate_hidden"] = np.arange(spec.gate_hidden)
    model = model_graph(spec, Xv, yv, Xe, merged, coords, centered=centered, minibatch=minibatch)
    model.bayesmoe_spec = spec
    return model


def mixture_regression(
    X,
    y,
    *,
    n_components: int = 2,
    alpha: float = DEFAULT_ALPHA,
    interactions=None,
    prior: str = "half_cauchy",
    base_scale: float | None = None,
    interaction_scale: float | None = None,
    priors: dict | None = None,
    shared_noise: bool = False,
    order_by: str | None = "auto",
    centered: bool = True,
    random_seed: int | None = 0,
    y_moments: tuple[float, float] | None = None,
    family: str = "gaussian",
    trials=None,
    exposure=None,
) -> pm.Model:
    r"""Build a finite mixture of (interaction) regressions with Dirichlet weights.

    .. math::

        y_i \sim \sum_k \pi_k N(b_k + w_k^\top x_i, \sigma_k^2), \quad
        \pi \sim \mathrm{Dirichlet}(\alpha 1_K), \quad
        w_k \sim N(0, \tau_\text{base}^2 I), \quad \tau_\text{base} \sim \text{hyperprior}

    Parameters
    ----------
    X : array-like or DataFrame of shape (n, p), or None
        Features (used as given: standardise beforehand, or use the estimator). ``None``
        or zero columns gives a plain Gaussian mixture.
    y : array-like of shape (n,)
    n_components : int
        K, between 1 and n.
    alpha : float
        Dirichlet concentration; the default ``DEFAULT_ALPHA = 0.1`` (below 1) favours
        sparse weights, so that components the data do not need empty out and an
        overfitted K still converges on the identified quantities; ``alpha=1`` is the
        uniform prior on the simplex.
    interactions : "all", None or pairs
        Pairwise interactions inside every expert (as in InteractionRegression).
    prior : {"half_cauchy", "gamma", "half_normal", "fixed", "horseshoe"}
        Hyperprior of the weight scales (shared across experts), or the regularised
        horseshoe: a local scale per expert and weight under global scales and a slab
        shared by the experts, in units of each expert's noise sd, non-centred, sampled at
        target acceptance 0.99 (see :func:`bayesmoe.priors.mixture_defaults`; NUTS and
        ADVI only, not ``method="vem"``). ``"r2d2"`` is refused: a mixture has no one
        :math:`R^2`.
    base_scale, interaction_scale : float, optional
        Fixed scales with ``prior="fixed"``.
    priors : dict, optional
        Overrides: ``intercept``, ``beta``, ``beta_interaction``, ``tau_base``,
        ``tau_interaction`` (``lambda_*`` for gamma), ``sigma``, ``weights``; for the
        horseshoe also ``lambda_local_base``, ``lambda_local_interaction`` and ``c2``.
    shared_noise : bool
        One noise sd for all components instead of one each.
    order_by : {"auto", "intercept", None}
        Ordering constraint on the intercepts. ``"auto"`` orders them for a Gaussian
        mixture, and for regressions when the EM estimate separates them by at least
        ``ORDER_SEPARATION`` standard errors; otherwise labels are aligned by relabelling.
    centered : bool
        Centred weights under the learned scale (each expert usually sees many rows).
    random_seed : int, optional
        Seed of the multi-start EM that finds the starting point.
    y_moments : (float, float), optional
        Mean and sd of ``y`` for the data-based default priors (default: those of
        ``y``). A streamed fit builds on a row sample and passes the whole data's.
    family : str
        The experts' likelihood (:mod:`bayesmoe.builders.terms.likelihood`): ``"gaussian"``
        (the model above), ``"student_t"``, ``"bernoulli"``, ``"binomial"``, ``"poisson"``
        or ``"negative_binomial"``. Each expert k then has the linear predictor
        :math:`\eta_{ik} = b_k + w_k^\top x_i (+ o_i)` and its own family parameters
        (``sigma``, ``nu``, ``alpha``: dims ``expert``, overridable in ``priors``); the
        density is :math:`\log \sum_k \pi_k(x_i) p(y_i \mid \eta_{ik}, \theta_k)`.
        Non-Gaussian experts are fitted by NUTS or full-batch ADVI (no VEM, no
        minibatches); the intercepts' prior is centred on the link of the mean response
        with sd 2.5, the weights' scales are on the link scale, and ``y`` must be raw (not
        standardised) for the discrete families.
    trials : array-like of shape (n,), optional
        Binomial trials per row (``family="binomial"`` only, required there).
    exposure : array-like of shape (n,), optional
        Exposure per row of the count families (offset :math:`o_i = \log` exposure).

    Returns
    -------
    pymc.Model
        Coords ``obs``, ``feature``, ``expert``, ``expert_feature`` (``interaction``);
        data ``X_base``, ``y_obs``; metadata in ``model.bayesmoe_spec``.
    """
    return build_mixture(
        X,
        y,
        n_components=n_components,
        arg_k="n_components",
        gate=None,
        gate_hidden=None,
        expert_features=None,
        gate_features=None,
        interactions=interactions,
        prior=prior,
        base_scale=base_scale,
        interaction_scale=interaction_scale,
        priors=priors,
        alpha=alpha,
        shared_noise=shared_noise,
        order_by=order_by,
        centered=centered,
        random_seed=random_seed,
        y_moments=y_moments,
        family=family,
        trials=trials,
        exposure=exposure,
    )


def gated_experts(
    X,
    y,
    *,
    n_experts: int = 2,
    gate: str = "linear",
    gate_hidden: int | None = None,
    expert_features=None,
    gate_features=None,
    interactions=None,
    prior: str = "half_cauchy",
    base_scale: float | None = None,
    interaction_scale: float | None = None,
    priors: dict | None = None,
    shared_noise: bool = False,
    centered: bool = True,
    random_seed: int | None = 0,
    y_moments: tuple[float, float] | None = None,
    family: str = "gaussian",
    trials=None,
    exposure=None,
) -> pm.Model:
    r"""Build a mixture of experts whose weights depend on x through a softmax gate.

    .. math::

        y_i \sim \sum_k \pi_k(x_i) N(b_k + w_k^\top x_i, \sigma_k^2), \quad
        \pi(x) = \mathrm{softmax}(\eta(x)), \quad \eta_K(x) = 0, \\
        \eta_k(x) = c_k + V_k^\top x \ \text{(linear)}, \quad
        \eta_k(x) = c_k + V_k^\top \tanh(W^\top x + a) \ \text{(mlp)}

    Parameters
    ----------
    X : array-like or DataFrame of shape (n, p)
    y : array-like of shape (n,)
    n_experts : int
        K, between 1 and n.
    gate : {"linear", "mlp"}
    gate_hidden : int
        Hidden units H of the mlp gate (required, positive, for ``gate="mlp"``).
    expert_features, gate_features : sequence of column names or indices, optional
        Columns the experts and the gate see (default: all).
    interactions, prior, base_scale, interaction_scale, shared_noise, centered
        As in :func:`mixture_regression`.
    priors : dict, optional
        Overrides: ``intercept``, ``beta``, ``beta_interaction``, ``tau_*``/``lambda_*``,
        ``sigma``, ``gate_intercept``, ``gate_weights`` and, for mlp,
        ``gate_hidden_weights``, ``gate_hidden_bias``.
    random_seed : int, optional
        Seed of the multi-start EM that finds the starting point.
    y_moments : (float, float), optional
        Mean and sd of ``y`` for the data-based default priors (default: those of
        ``y``). A streamed fit builds on a row sample and passes the whole data's.
    family : str
        The experts' likelihood (:mod:`bayesmoe.builders.terms.likelihood`): ``"gaussian"``
        (the model above), ``"student_t"``, ``"bernoulli"``, ``"binomial"``, ``"poisson"``
        or ``"negative_binomial"``. Each expert k then has the linear predictor
        :math:`\eta_{ik} = b_k + w_k^\top x_i (+ o_i)` and its own family parameters
        (``sigma``, ``nu``, ``alpha``: dims ``expert``, overridable in ``priors``); the
        density is :math:`\log \sum_k \pi_k(x_i) p(y_i \mid \eta_{ik}, \theta_k)`.
        Non-Gaussian experts are fitted by NUTS or full-batch ADVI (no VEM, no
        minibatches); the intercepts' prior is centred on the link of the mean response
        with sd 2.5, the weights' scales are on the link scale, and ``y`` must be raw (not
        standardised) for the discrete families.
    trials : array-like of shape (n,), optional
        Binomial trials per row (``family="binomial"`` only, required there).
    exposure : array-like of shape (n,), optional
        Exposure per row of the count families (offset :math:`o_i = \log` exposure).

    Returns
    -------
    pymc.Model
        Coords ``obs``, ``feature``, ``expert``, ``expert_feature``, ``gate_expert`` (the
        non-reference experts), ``gate_feature``, ``grid`` (and ``gate_hidden``); data
        ``X_base``, ``y_obs``, ``X_grid``; metadata in ``model.bayesmoe_spec``.
    """
    if X is None:
        raise TypeError("X is None; GatedExperts needs features for its gate")
    if gate not in GATES:
        raise ValueError(f"gate={gate!r} is not known; choose one of {list(GATES)}")
    return build_mixture(
        X,
        y,
        n_components=n_experts,
        arg_k="n_experts",
        gate=gate,
        gate_hidden=gate_hidden,
        expert_features=expert_features,
        gate_features=gate_features,
        interactions=interactions,
        prior=prior,
        base_scale=base_scale,
        interaction_scale=interaction_scale,
        priors=priors,
        alpha=1.0,
        shared_noise=shared_noise,
        order_by=None,
        centered=centered,
        random_seed=random_seed,
        y_moments=y_moments,
        family=family,
        trials=trials,
        exposure=exposure,
    )
