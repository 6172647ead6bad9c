"""Prior specifications: defaults per model, merged with the user's ``priors={...}``.

Priors are data: pymc-extras :class:`~pymc_extras.prior.Prior` objects (or a plain
number, meaning "fixed at this value"), keyed by the model's variable names. Defaults
are set on the model's *working scale* (standardised data unless
``standardize=False``), using the spread of the working target so that they stay
weakly informative whatever the units.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np
from pymc_extras.prior import Prior

__all__ = [
    "HYPERPRIOR_FAMILIES",
    "Prior",
    "interaction_defaults",
    "merge_priors",
    "mixture_defaults",
]

#: Families for the two scales (base, interaction) of :func:`interaction_defaults`.
HYPERPRIOR_FAMILIES = ("half_cauchy", "gamma", "half_normal", "fixed")

#: Variables that may be fixed to a number instead of given a prior.
_FIXABLE = {"tau_base", "tau_interaction", "lambda_base", "lambda_interaction", "sigma"}

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
      (the seed's suggestion of a gamma prior on the precision; with shape 1/2 and rate
      :math:`c^2/2`, :math:`c = 0.1 s`, a single weight is marginally Cauchy with scale
      :math:`0.1 s`. The exponential tail in :math:`\lambda` keeps :math:`\tau` above about
      :math:`0.05 s`, so this family shrinks less aggressively towards zero than the
      half-Cauchy; a shape-1 / rate-:math:`s^2` choice was tried and rejected because it
      ruled out scales below :math:`s/3`.)
    * ``prior="fixed"``: :math:`\tau_b, \tau_i` fixed at ``base_scale``, ``interaction_scale``
      (standard deviations, not the seed's variances)
    * ``sigma`` :math:`\sim \mathrm{HalfNormal}(s)`
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
    """
    base = interaction_defaults(
        prior,
        y_location=y_location,
        y_scale=y_scale,
        # a Gaussian mixture (no features) has no weights, so a fixed scale is moot
        base_scale=1.0 if prior == "fixed" and not n_features else base_scale,
        interaction_scale=interaction_scale,
        has_interactions=has_interactions,
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


def merge_priors(
    defaults: Mapping[str, Prior | float], user: Mapping[str, Prior | float] | None
) -> dict[str, Prior | float]:
    """Overlay the user's priors on the defaults, refusing unknown keys and bad values.

    A value is a :class:`Prior` or, for scale-type variables and ``intercept``, a number
    that fixes the variable. Numbers given for scales must be positive.
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
            merged[key] = value
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            if key in _FIXABLE:
                _check_positive(f"priors[{key!r}]", value)
            elif key != "intercept":
                raise TypeError(
                    f"priors[{key!r}] must be a Prior; only {sorted(_FIXABLE | {'intercept'})} "
                    "can be fixed to a number"
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
