"""Prior specifications: defaults per model, merged with the user's ``priors={...}``.

Priors are data: pymc-extras :class:`~pymc_extras.prior.Prior` objects (or a plain
number, meaning "fixed at this value"), keyed by the model's variable names. Defaults
are set on the model's *working scale* (standardised data unless
``standardize=False``), using the spread of the working target so that they stay
weakly informative whatever the units.

References
----------
* Half-Cauchy priors on group scales: Gelman (2006), "Prior distributions for variance
  parameters in hierarchical models", *Bayesian Analysis* 1(3), 515-534.
* Regularised horseshoe: Piironen & Vehtari (2017), "Sparsity information and
  regularization in the horseshoe and other shrinkage priors", *Electronic Journal of
  Statistics* 11(2), 5018-5051.
* R2-D2: Zhang, Naughton, Bondell & Reich (2022), "Bayesian regression using a prior on
  the model fit: the R2-D2 shrinkage prior", *JASA* 117(538), 862-874.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np
from pymc_extras.prior import Prior

__all__ = [
    "HORSESHOE_RELEVANT_FRACTION",
    "HYPERPRIOR_FAMILIES",
    "LOCAL_GLOBAL_FAMILIES",
    "POSITIVE_FAMILIES",
    "R2D2_DEFAULTS",
    "REAL_FAMILIES",
    "UNIT_FAMILIES",
    "Prior",
    "check_prior",
    "horseshoe_global_scale",
    "interaction_defaults",
    "merge_priors",
    "mixture_defaults",
]

#: Families of :func:`interaction_defaults`: one learned scale per group (the first four)
#: or local-global priors with one scale per coefficient inside each group.
HYPERPRIOR_FAMILIES = ("half_cauchy", "gamma", "half_normal", "fixed", "horseshoe", "r2d2")
#: The families with a prior scale per coefficient (global scale per group times local ones).
LOCAL_GLOBAL_FAMILIES = ("horseshoe", "r2d2")

#: Prior guess of the fraction of relevant coefficients, p0 / D, per group, for the
#: regularised horseshoe's global scales (Piironen & Vehtari 2017, sec. 3.3). Most base
#: effects of a chosen feature set matter; few of the pairwise products do.
HORSESHOE_RELEVANT_FRACTION = {"base": 0.5, "interaction": 0.1}
#: Slab of the regularised horseshoe: c^2 ~ InvGamma(df/2, df scale^2/2), scale in units of
#: the working target's sd (Piironen & Vehtari 2017; brms' horseshoe(scale_slab=2, df_slab=4)).
HORSESHOE_SLAB = {"df": 4.0, "scale": 2.0}
#: R2-D2 (Zhang et al. 2022): R^2 ~ Beta with this mean and precision (mean_R2, prec_R2 of
#: brms' R2D2(): Beta(1, 1)); the share of each group ~ Dirichlet(group_concentration); the
#: share of each coefficient within its group ~ Dirichlet(concentration) (brms' cons_D2).
R2D2_DEFAULTS = {
    "r2_mean": 0.5,
    "r2_precision": 2.0,
    "group_concentration": 1.0,
    "concentration": 0.5,
}

#: Variables that may be fixed to a number instead of given a prior.
_FIXABLE = {"tau_base", "tau_interaction", "lambda_base", "lambda_interaction", "sigma", "c2"}
#: Variables on (0, 1) that may be fixed to a number in that interval.
_FIXABLE_UNIT = {"r2"}
#: Scalar variables whose prior may instead have the dim ``scale_group`` (one value per
#: weight group), where the model has that coord: the horseshoe's slab.
_PER_GROUP = {"c2"}

#: Default prior sd of the gate's output-layer parameters (logits, standardised features):
#: a change of 2.5 in a log-odds per sd of x is a steep but not a hard switch.
GATE_SD = 2.5
#: Default prior sd of the mlp gate's hidden-layer parameters: tanh units stay in their
#: curved range for standardised inputs.
GATE_HIDDEN_SD = 1.0


def interaction_defaults(
    prior: str,
    *,
    y_location: float,
    y_scale: float,
    base_scale: float | None = None,
    interaction_scale: float | None = None,
    has_interactions: bool = True,
    n_obs: int | None = None,
    n_features: int | None = None,
    n_interactions: int | None = None,
) -> dict[str, Prior | float]:
    r"""Default priors of :func:`bayesmoe.builders.interaction_regression`.

    With :math:`s` the standard deviation of the (working-scale) target:

    * ``intercept`` :math:`\sim N(\bar y, (2.5 s)^2)`
    * ``beta_base`` :math:`\sim N(0, \tau_b^2)`, ``beta_interaction`` :math:`\sim N(0, \tau_i^2)`
      (no ``sigma`` in the spec: the scale is the learned ``tau``)
    * ``prior="half_cauchy"``: :math:`\tau_b, \tau_i \sim \mathrm{HalfCauchy}(s)`
    * ``prior="half_normal"``: :math:`\tau_b, \tau_i \sim \mathrm{HalfNormal}(s)`
    * ``prior="gamma"``: precisions
      :math:`\lambda = \tau^{-2} \sim \mathrm{Gamma}(1/2,\ 0.005 s^2)`
      (a gamma prior on the precision; with shape 1/2 and rate :math:`c^2/2`,
      :math:`c = 0.1 s`, a single weight is marginally Cauchy with scale :math:`0.1 s`.
      The exponential tail in :math:`\lambda` keeps :math:`\tau` above about
      :math:`0.05 s`, so this family shrinks less aggressively towards zero than the
      half-Cauchy; a shape-1 / rate-:math:`s^2` gamma would rule out scales below
      :math:`s/3`.)
    * ``prior="fixed"``: :math:`\tau_b, \tau_i` fixed at ``base_scale``, ``interaction_scale``
      (standard deviations, not variances)
    * ``sigma`` :math:`\sim \mathrm{HalfNormal}(s)`

    The local-global families give every weight its own prior sd inside its group
    (:math:`g \in \{\text{base}, \text{int}\}`, :math:`D_g` weights); both are Gaussian
    given the scales, and the scales are relative to the noise sd :math:`\sigma`:

    * ``prior="horseshoe"``, the regularised horseshoe (Piironen & Vehtari 2017) with a
      global scale per group and one slab shared by both groups:

      .. math::

          w_j \sim N(0, \sigma^2 \tau_g^2 \tilde\lambda_j^2), \quad
          \tilde\lambda_j^2 = \frac{c^2 \lambda_j^2}{c^2 + \sigma^2 \tau_g^2 \lambda_j^2},
          \quad \lambda_j \sim C^+(0, 1), \quad
          \tau_g \sim C^+\Big(0, \frac{p_{0,g}}{D_g - p_{0,g}} \frac{1}{\sqrt n}\Big),
          \quad c^2 \sim \text{Inv-Gamma}(\nu/2, \nu s_c^2/2)

      with the guess of the relevant fraction :math:`p_{0,g}/D_g` =
      :data:`HORSESHOE_RELEVANT_FRACTION` (1/2 of the base effects, 1/10 of the
      interactions), slab :math:`\nu = 4`, :math:`s_c = 2 s` (:data:`HORSESHOE_SLAB`).
      Keys ``tau_base``, ``tau_interaction``, ``lambda_local_base``,
      ``lambda_local_interaction`` (dims ``feature`` / ``interaction``) and ``c2``; a
      user's ``c2`` prior with ``dims="scale_group"`` gives each group its own slab
      :math:`c_g` (models with interactions).
      :math:`\sigma \tau_g` is the absolute global scale (Piironen and Vehtari's
      :math:`\tau_0 = p_0/(D - p_0)\, \sigma/\sqrt n`); :func:`horseshoe_global_scale`
      gives the prior for another guess :math:`p_0`.
    * ``prior="r2d2"``, the R2-D2 prior (Zhang et al. 2022) with the explained variance
      split over the groups first and then within each group:

      .. math::

          w_j \sim N\Big(0, \sigma^2 \frac{R^2}{1 - R^2} \phi_g \phi_{g,j}\Big), \quad
          R^2 \sim \mathrm{Beta}(\mu_R \nu_R, (1 - \mu_R) \nu_R), \quad
          \phi \sim \mathrm{Dir}(a_G, a_G), \quad
          \phi_{g,\cdot} \sim \mathrm{Dir}(a 1_{D_g})

      with :math:`\mu_R = 1/2, \nu_R = 2` (a uniform :math:`R^2`), :math:`a_G = 1`,
      :math:`a = 1/2` (:data:`R2D2_DEFAULTS`). Keys ``r2``, ``phi`` (dims
      ``scale_group``, only with interactions), ``phi_base`` and ``phi_interaction``
      (only for groups of two or more weights). For unit-variance design columns
      :math:`R^2` is the prior's share of the explained variance. A flat Dirichlet over
      all :math:`D` weights would aggregate to :math:`\phi \sim \mathrm{Dir}(a p, a q)`,
      giving the (many) interactions most of :math:`R^2` a priori; the two-level split
      keeps the groups' shares separate and learnable. Every Dirichlet here is sampled as
      normalised gamma variables, :math:`\phi_j = \gamma_j / \sum_k \gamma_k`,
      :math:`\gamma_j \sim \mathrm{Gamma}(a_j, 1)` (the same prior; ``phi*`` are
      Deterministics, ``phi*_gamma`` the sampled variables).
    """
    if prior not in HYPERPRIOR_FAMILIES:
        raise ValueError(
            f"prior={prior!r} is not known; choose one of {list(HYPERPRIOR_FAMILIES)}"
        )
    for arg, value in (("base_scale", base_scale), ("interaction_scale", interaction_scale)):
        if value is not None:
            if prior != "fixed":
                raise ValueError(f"{arg} is only used with prior='fixed' (got prior={prior!r})")
            _check_positive(arg, value)
    # Rounded to 12 significant digits so that standardised data (mean 1e-17, sd
    # 0.9999999999999999) give exactly the same priors, hence the same compiled graph.
    s = float(f"{y_scale:.12g}") if y_scale > 0 else 1.0
    y_location = float(f"{y_location:.12g}") if abs(y_location) > 1e-12 * s else 0.0
    out: dict[str, Prior | float] = {
        "intercept": Prior("Normal", mu=float(y_location), sigma=2.5 * s),
        "beta_base": Prior("Normal", mu=0.0, dims="feature"),
        "sigma": Prior("HalfNormal", sigma=s),
    }
    groups = ["base"] + (["interaction"] if has_interactions else [])
    if has_interactions:
        out["beta_interaction"] = Prior("Normal", mu=0.0, dims="interaction")
    if prior in LOCAL_GLOBAL_FAMILIES:
        sizes = {"base": n_features, "interaction": n_interactions if has_interactions else 0}
        out.update(_local_global_defaults(prior, s, groups, sizes, n_obs))
        return out
    for g in groups:
        if prior == "half_cauchy":
            out[f"tau_{g}"] = Prior("HalfCauchy", beta=s)
        elif prior == "half_normal":
            out[f"tau_{g}"] = Prior("HalfNormal", sigma=s)
        elif prior == "gamma":
            out[f"lambda_{g}"] = Prior("Gamma", alpha=0.5, beta=0.5 * (0.1 * s) ** 2)
        else:
            value = base_scale if g == "base" else interaction_scale
            if value is None:
                raise ValueError(
                    f"prior='fixed' needs {'base_scale' if g == 'base' else 'interaction_scale'}"
                    " (a positive standard deviation)"
                )
            out[f"tau_{g}"] = float(value)
    return out


def horseshoe_global_scale(p0: float, n_coefficients: int, n_obs: int) -> Prior:
    r"""Prior of a regularised-horseshoe global scale ``tau_<group>`` for a guess ``p0``.

    :math:`\tau \sim C^+(0, \tau_0)`, :math:`\tau_0 = \frac{p_0}{D - p_0} \frac{1}{\sqrt n}`
    (Piironen & Vehtari 2017, eq. 3.12, in units of the noise sd :math:`\sigma`, as
    ``interaction_regression(prior="horseshoe")`` uses it), e.g.
    ``priors={"tau_interaction": horseshoe_global_scale(3, 45, len(y))}``.
    """
    _check_positive("p0", p0)
    _check_positive("n_obs", n_obs)
    if not isinstance(n_coefficients, numbers.Integral) or n_coefficients < 1:
        raise ValueError(f"n_coefficients must be a positive integer, got {n_coefficients!r}")
    if p0 >= n_coefficients:
        raise ValueError(f"p0 must be below n_coefficients={n_coefficients}, got p0={p0!r}")
    return Prior("HalfCauchy", beta=float(f"{p0 / (n_coefficients - p0) / np.sqrt(n_obs):.12g}"))


def _local_global_defaults(
    prior: str, s: float, groups: list[str], sizes: dict[str, int | None], n_obs: int | None
) -> dict[str, Prior]:
    """The horseshoe / R2-D2 keys of :func:`interaction_defaults` (documented there)."""
    dims = {"base": "feature", "interaction": "interaction"}
    out: dict[str, Prior] = {}
    if prior == "horseshoe":
        if n_obs is None:
            raise ValueError("prior='horseshoe' needs n_obs (its global scale is ~ 1/sqrt(n))")
        _check_positive("n_obs", n_obs)
        for g in groups:
            f = HORSESHOE_RELEVANT_FRACTION[g]
            out[f"tau_{g}"] = Prior(
                "HalfCauchy", beta=float(f"{f / (1 - f) / np.sqrt(n_obs):.12g}")
            )
            out[f"lambda_local_{g}"] = Prior("HalfCauchy", beta=1.0, dims=dims[g])
        df, scale = HORSESHOE_SLAB["df"], HORSESHOE_SLAB["scale"] * s
        out["c2"] = Prior("InverseGamma", alpha=df / 2, beta=df * scale**2 / 2)
        return out
    d = R2D2_DEFAULTS
    mean, precision = d["r2_mean"], d["r2_precision"]
    out["r2"] = Prior("Beta", alpha=mean * precision, beta=(1 - mean) * precision)
    if len(groups) > 1:
        out["phi"] = Prior("Dirichlet", a=np.full(2, d["group_concentration"]), dims="scale_group")
    for g in groups:
        width = sizes[g]
        if width is None:
            raise ValueError(f"prior='r2d2' needs the number of {dims[g]}s (n_{dims[g]}s)")
        if width > 1:  # one weight takes its whole group's share
            out[f"phi_{g}"] = Prior(
                "Dirichlet", a=np.full(width, d["concentration"]), dims=dims[g]
            )
    return out


def mixture_defaults(
    prior: str,
    *,
    y_location: float,
    y_scale: float,
    n_components: int,
    n_features: int,
    has_interactions: bool,
    shared_noise: bool,
    alpha: float,
    gate: str | None,
    base_scale: float | None = None,
    interaction_scale: float | None = None,
    n_obs: int | None = None,
    n_interactions: int | None = None,
) -> dict[str, Prior | float]:
    r"""Default priors of the mixture builders (:mod:`bayesmoe.builders.mixture`).

    Every expert is an interaction regression: its weights get the priors of
    :func:`interaction_defaults` (``beta`` plays the role of ``beta_base``, with one
    learned scale ``tau_base`` shared by all experts, so experts pool their information
    about how large effects are), with a per-expert intercept and noise sd:

    * ``intercept`` :math:`\sim N(\bar y, (2.5 s)^2)` per expert
    * ``beta`` :math:`\sim N(0, \tau_\text{base}^2)`, dims (expert, expert_feature)
    * ``sigma`` :math:`\sim \mathrm{HalfNormal}(s)` per expert (one if ``shared_noise``)
    * ``weights`` :math:`\sim \mathrm{Dirichlet}(\alpha 1_K)` (``gate=None`` only)
    * linear gate: ``gate_intercept``, ``gate_weights`` :math:`\sim N(0, 2.5^2)`
    * mlp gate: additionally ``gate_hidden_weights``, ``gate_hidden_bias``
      :math:`\sim N(0, 1)`

    ``prior="horseshoe"``: each expert's weights get the regularised horseshoe of
    :func:`interaction_defaults` in units of that expert's noise sd, with the global
    scales ``tau_base``, ``tau_interaction`` and the slab ``c2`` shared by the experts and
    a local scale per expert and coefficient (``lambda_local_base``, dims (expert,
    expert_feature); ``lambda_local_interaction``, dims (expert, interaction)):

    .. math::

        w_{kj} \sim N(0, \sigma_k^2 \tau_g^2 \tilde\lambda_{kj}^2), \quad
        \tilde\lambda_{kj}^2 = \frac{c^2 \lambda_{kj}^2}{c^2 + \sigma_k^2 \tau_g^2
        \lambda_{kj}^2}, \quad \lambda_{kj} \sim C^+(0, 1), \quad
        \tau_g \sim C^+\Big(0, \frac{f_g}{1 - f_g} \frac{1}{\sqrt{n / K}}\Big)

    :math:`n / K` is the rows an expert sees on average (the horseshoe's :math:`\tau_0`
    shrinks as :math:`1/\sqrt n` with the rows informing the weights). ``prior="r2d2"``
    is not available: its prior is on the :math:`R^2` of one regression, and in a mixture
    the explained variance is split between the experts' lines, their intercepts and the
    weights, so that one :math:`R^2` does not define the experts' scales.
    """
    if prior == "r2d2":
        raise ValueError(
            "prior='r2d2' is not available for mixtures: R2-D2 puts its prior on the R^2 of "
            "one regression, which a mixture does not have; prior='horseshoe' gives the "
            "experts local-global scales"
        )
    if prior == "horseshoe":
        if n_obs is None:
            raise ValueError("prior='horseshoe' needs n_obs (its global scale is ~ 1/sqrt(n))")
        _check_positive("n_obs", n_obs)
    base = interaction_defaults(
        prior,
        y_location=y_location,
        y_scale=y_scale,
        # a Gaussian mixture (no features) has no weights, so a fixed scale is moot
        base_scale=1.0 if prior == "fixed" and not n_features else base_scale,
        interaction_scale=interaction_scale,
        has_interactions=has_interactions,
        n_obs=None if n_obs is None else n_obs / n_components,
        n_features=n_features,
        n_interactions=n_interactions,
    )
    if prior == "horseshoe":
        slab = base.pop("c2")
        for g, dims in (("base", "expert_feature"), ("interaction", "interaction")):
            local = base.pop(f"lambda_local_{g}", None)
            if local is not None:
                base[f"lambda_local_{g}"] = Prior(
                    local.distribution, **local.parameters, dims=("expert", dims)
                )
    sigma = base.pop("sigma")
    out: dict[str, Prior | float] = {
        "intercept": Prior("Normal", **base.pop("intercept").parameters, dims="expert"),
        "sigma": sigma if shared_noise else Prior("HalfNormal", **sigma.parameters, dims="expert"),
    }
    beta = base.pop("beta_base")
    if n_features:
        out["beta"] = Prior("Normal", **beta.parameters, dims=("expert", "expert_feature"))
        out.update({k: v for k, v in base.items() if k.endswith("_base")})
    if has_interactions:
        out["beta_interaction"] = Prior(
            "Normal", **base.pop("beta_interaction").parameters, dims=("expert", "interaction")
        )
        out.update({k: v for k, v in base.items() if k.endswith("_interaction")})
    if prior == "horseshoe" and (n_features or has_interactions):
        out["c2"] = slab
    if gate is None:
        out["weights"] = Prior("Dirichlet", a=np.full(n_components, float(alpha)), dims="expert")
    else:
        out["gate_intercept"] = Prior("Normal", mu=0.0, sigma=GATE_SD, dims="gate_expert")
        rows = "gate_feature" if gate == "linear" else "gate_hidden"
        out["gate_weights"] = Prior("Normal", mu=0.0, sigma=GATE_SD, dims=(rows, "gate_expert"))
    if gate == "mlp":
        out["gate_hidden_weights"] = Prior(
            "Normal", mu=0.0, sigma=GATE_HIDDEN_SD, dims=("gate_feature", "gate_hidden")
        )
        out["gate_hidden_bias"] = Prior("Normal", mu=0.0, sigma=GATE_HIDDEN_SD, dims="gate_hidden")
    return out


def _check_positive(name: str, value) -> None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive number, got {value!r}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


#: Families with support on the positive reals, for scale variables (sigma, tau, lambda).
POSITIVE_FAMILIES = (
    "HalfNormal",
    "HalfCauchy",
    "HalfStudentT",
    "Gamma",
    "InverseGamma",
    "Exponential",
    "LogNormal",
    "Weibull",
    "ChiSquared",
    "HalfFlat",
)
#: Families with support on the real line, for locations, weights and gate parameters.
REAL_FAMILIES = (
    "Normal",
    "StudentT",
    "Cauchy",
    "Laplace",
    "Logistic",
    "SkewNormal",
    "Gumbel",
    "Flat",
)
#: Families with support on (0, 1), for a proportion such as the R-squared of R2-D2.
UNIT_FAMILIES = ("Beta", "Kumaraswamy", "LogitNormal")
#: Parameters that must be positive, by family (the rest need only be finite).
_POSITIVE_PARAMS = {
    "Normal": {"sigma", "tau"},
    "HalfNormal": {"sigma", "tau"},
    "LogNormal": {"sigma", "tau"},
    "StudentT": {"nu", "sigma", "lam"},
    "HalfStudentT": {"nu", "sigma", "lam"},
    "Cauchy": {"beta"},
    "HalfCauchy": {"beta"},
    "Laplace": {"b"},
    "Logistic": {"s"},
    "SkewNormal": {"sigma", "tau"},
    "Gumbel": {"beta"},
    "Gamma": {"alpha", "beta", "mu", "sigma"},
    "InverseGamma": {"alpha", "beta", "mu", "sigma"},
    "Exponential": {"lam", "scale"},
    "Weibull": {"alpha", "beta"},
    "ChiSquared": {"nu"},
    "Dirichlet": {"a"},
    "Beta": {"alpha", "beta", "sigma", "nu"},
    "Kumaraswamy": {"a", "b"},
    "LogitNormal": {"sigma", "tau"},
}
#: Parameters a family needs, as alternative parametrisations (one set must be given).
_REQUIRED_PARAMS = {
    "HalfCauchy": [{"beta"}],
    "Cauchy": [{"alpha", "beta"}],
    "StudentT": [{"nu"}],
    "HalfStudentT": [{"nu"}],
    "Laplace": [{"mu", "b"}],
    "Gumbel": [{"mu", "beta"}],
    "Gamma": [{"alpha", "beta"}, {"mu", "sigma"}],
    "InverseGamma": [{"alpha"}, {"mu", "sigma"}],
    "Exponential": [{"lam"}, {"scale"}],
    "Weibull": [{"alpha", "beta"}],
    "ChiSquared": [{"nu"}],
    "Dirichlet": [{"a"}],
    "Uniform": [{"lower", "upper"}],
    "Beta": [{"alpha", "beta"}, {"mu", "sigma"}, {"mu", "nu"}],
    "Kumaraswamy": [{"a", "b"}],
}
#: pymc-extras transforms (applied to the draw) whose output is positive.
_POSITIVE_TRANSFORMS = ("exp", "softplus", "sigmoid")


def _family_error(key: str, prior: Prior, allowed: tuple[str, ...], what: str):
    return ValueError(
        f"priors[{key!r}]: {prior.distribution} is not a {what} family; use one of {list(allowed)}"
    )


def check_prior(
    key: str,
    prior: Prior,
    default,
    *,
    sizes: Mapping[str, int] | None = None,
    improper_ok: frozenset[str] | set[str] = frozenset(),
) -> Prior:
    """Check one user prior against the variable it replaces; return it with its dims.

    * **support**: a scale variable (default with positive support) needs a positive
      family (:data:`POSITIVE_FAMILIES`, or a real family with a positive ``transform``),
      a proportion (default ``Beta``) one on (0, 1) (:data:`UNIT_FAMILIES`, a real family
      with a ``sigmoid`` transform, or a ``Uniform`` inside [0, 1]), a location/weight
      variable a real one (:data:`REAL_FAMILIES`), mixing weights and variance shares a
      ``Dirichlet``;
    * **improper priors** (``Flat``, ``HalfFlat``) only where the posterior stays proper
      (``improper_ok``, decided by the builder);
    * **parameters**: finite numbers, positive where the family needs it; nested priors
      are checked the same way (a scale parameter needs a positive prior);
    * **dims**: a prior without dims for a variable with dims means the same prior for
      each element (it gets the default's dims); other dims than the default's are
      refused; numeric parameters must broadcast to the variable's shape (``sizes``).
    """
    where = f"priors[{key!r}]"
    target_dims = tuple(default.dims or ()) if isinstance(default, Prior) else ()
    dims = tuple(prior.dims or ())
    if dims and dims != target_dims:
        raise ValueError(
            f"{where} has dims {dims}; this variable's dims are {target_dims or '() (a scalar)'}"
            f"{'' if not target_dims else ' (or give no dims: one prior for every element)'}"
        )
    family = prior.distribution
    options = _REQUIRED_PARAMS.get(family)
    if options and not any(need <= set(prior.parameters) for need in options):
        choices = " or ".join(str(sorted(need)) for need in options)
        raise ValueError(f"{where}: a {family} prior needs the parameters {choices}")
    default_family = default.distribution if isinstance(default, Prior) else "HalfNormal"
    positive_var = default_family in POSITIVE_FAMILIES
    unit_var = default_family in UNIT_FAMILIES
    if default_family == "Dirichlet":
        if family != "Dirichlet":
            raise ValueError(f"{where} must be a Dirichlet prior (mixing weights), got {family}")
    elif family == "Uniform":
        lower, upper = prior.parameters.get("lower"), prior.parameters.get("upper")
        if any(isinstance(v, Prior) or v is None for v in (lower, upper)) or not all(
            np.all(np.isfinite(np.asarray(v, float))) for v in (lower, upper)
        ):
            raise ValueError(f"{where}: a Uniform prior needs finite numeric lower and upper")
        try:
            ordered = np.all(np.asarray(lower, float) < np.asarray(upper, float))
        except ValueError:  # shapes that do not broadcast: reported with the shape check
            ordered = True
        if not ordered:
            raise ValueError(f"{where}: Uniform lower must be below upper, got {lower}, {upper}")
        if (positive_var or unit_var) and not np.all(np.asarray(lower, float) >= 0):
            raise ValueError(f"{where}: a scale variable needs lower >= 0, got lower={lower}")
        if unit_var and not np.all(np.asarray(upper, float) <= 1):
            raise ValueError(f"{where}: a proportion needs upper <= 1, got upper={upper}")
    elif unit_var:
        if not (
            family in UNIT_FAMILIES or (family in REAL_FAMILIES and prior.transform == "sigmoid")
        ):
            raise _family_error(key, prior, UNIT_FAMILIES, "(0, 1) (proportion)")
    elif positive_var:
        # a transform on a positive family must keep the values positive (exp, softplus,
        # sigmoid map every real to a positive number); "neg" or any other would not
        if family in POSITIVE_FAMILIES and prior.transform not in (None, *_POSITIVE_TRANSFORMS):
            raise ValueError(
                f"{where}: transform={prior.transform!r} on a {family} prior does not keep a "
                f"scale positive; use no transform or one of {list(_POSITIVE_TRANSFORMS)}"
            )
        positive = family in POSITIVE_FAMILIES or (
            family in REAL_FAMILIES and prior.transform in _POSITIVE_TRANSFORMS
        )
        if not positive:
            raise _family_error(key, prior, POSITIVE_FAMILIES, "positive (scale)")
    elif family not in REAL_FAMILIES:
        raise _family_error(key, prior, REAL_FAMILIES, "real-valued")
    if family in ("Flat", "HalfFlat") and key not in improper_ok:
        allowed = f" (Flat/HalfFlat are fine for {sorted(improper_ok)})" if improper_ok else ""
        raise ValueError(
            f"{where}: an improper {family} prior here gives an improper posterior for this "
            f"model; use a proper prior{allowed}"
        )
    shape = (
        tuple(sizes[d] for d in target_dims)
        if sizes and all(d in sizes for d in target_dims)
        else None
    )
    params = dict(prior.parameters)
    for name, value in params.items():
        label = f"{where} parameter {name!r}"
        if isinstance(value, Prior):
            if value.dims and not set(value.dims) <= set(target_dims):
                raise ValueError(
                    f"{label} has dims {tuple(value.dims)}, not among the variable's {target_dims}"
                )
            must_be_positive = name in _POSITIVE_PARAMS.get(family, ())
            inner = "HalfNormal" if must_be_positive else "Normal"
            inner_default = Prior(inner, dims=value.dims or None)
            check_prior(f"{key}.{name}", value, inner_default, improper_ok=frozenset())
            continue
        if not isinstance(value, numbers.Real | np.ndarray | list | tuple) or isinstance(
            value, bool
        ):
            raise TypeError(f"{label} must be a number, an array or a Prior, got {value!r}")
        arr = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{label} must be finite, got {value!r}")
        if name in _POSITIVE_PARAMS.get(family, ()) and not np.all(arr > 0):
            raise ValueError(f"{label} must be positive, got {value!r}")
        if shape is not None and arr.ndim:
            try:
                ok = np.broadcast_shapes(arr.shape, shape) == shape
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(
                    f"{label} has shape {arr.shape}, which does not fit the variable's shape "
                    f"{shape} (dims {target_dims})"
                )
    if family == "Dirichlet":
        a = params.get("a")
        if a is None or isinstance(a, Prior):
            raise ValueError(f"{where}: a Dirichlet needs a numeric concentration 'a'")
        if shape is not None:
            params["a"] = np.broadcast_to(np.asarray(a, float), shape).copy()
    unchanged = params.keys() == prior.parameters.keys() and all(
        params[k] is prior.parameters[k] for k in params
    )  # identity, not ==: array parameters (a Dirichlet's a) have no single truth value
    if dims == target_dims and unchanged:
        return prior
    return Prior(
        family, dims=target_dims or None, centered=prior.centered, transform=prior.transform,
        **params,
    )  # fmt: skip


def merge_priors(
    defaults: Mapping[str, Prior | float],
    user: Mapping[str, Prior | float] | None,
    *,
    sizes: Mapping[str, int] | None = None,
    improper_ok: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Prior | float]:
    """Overlay the user's priors on the defaults, refusing unknown keys and bad values.

    A value is a :class:`Prior` or, for scale-type variables and ``intercept``, a number
    that fixes the variable. Numbers given for scales must be positive. Each Prior is
    checked by :func:`check_prior` (support, improper priors, parameters, dims) before
    any graph is built; ``sizes`` are the model's dim lengths, ``improper_ok`` the keys
    where a Flat/HalfFlat prior keeps the posterior proper.
    """
    merged = dict(defaults)
    if user is None:
        return merged
    if not isinstance(user, Mapping):
        raise TypeError(f"priors must be a dict of name -> Prior, got {type(user).__name__}")
    for key, value in user.items():
        if key not in defaults:
            raise ValueError(
                f"priors has unknown key {key!r}; valid keys for this model are {sorted(defaults)}"
            )
        if isinstance(value, Prior):
            default = defaults[key]
            if (
                key in _PER_GROUP
                and tuple(value.dims or ()) == ("scale_group",)
                and "scale_group" in (sizes or {})
                and isinstance(default, Prior)
            ):  # one value per weight group instead of one shared
                default = Prior(default.distribution, dims="scale_group", **default.parameters)
            merged[key] = check_prior(key, value, default, sizes=sizes, improper_ok=improper_ok)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            if key in _FIXABLE:
                _check_positive(f"priors[{key!r}]", value)
            elif key in _FIXABLE_UNIT:
                if not 0 < value < 1:
                    raise ValueError(f"priors[{key!r}] must lie in (0, 1), got {value!r}")
            elif key != "intercept":
                fixable = sorted(_FIXABLE | _FIXABLE_UNIT | {"intercept"})
                raise TypeError(
                    f"priors[{key!r}] must be a Prior; only {fixable} can be fixed to a number"
                )
            elif not np.isfinite(value):
                raise ValueError(f"priors['intercept'] must be finite, got {value!r}")
            merged[key] = float(value)
        else:
            raise TypeError(
                f"priors[{key!r}] must be a pymc_extras.prior.Prior or a number, "
                f"got {type(value).__name__}"
            )
    return merged


def priors_to_json(priors: Mapping[str, Prior | float] | None) -> dict | None:
    """Serialisable form of a priors dict (for saving estimators)."""
    if priors is None:
        return None
    return {
        k: (v.to_dict() if isinstance(v, Prior) else {"fixed": float(v)})
        for k, v in priors.items()
    }


def priors_from_json(d: Mapping | None) -> dict[str, Prior | float] | None:
    if d is None:
        return None
    return {k: (v["fixed"] if "fixed" in v else Prior.from_dict(v)) for k, v in d.items()}
