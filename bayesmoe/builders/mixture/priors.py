"""The mixture builders' priors: data-based defaults merged with the user's overrides."""

from __future__ import annotations

import numpy as np
from pymc_extras.prior import Prior

from bayesmoe.builders.mixture.checks import Checked
from bayesmoe.priors import merge_priors, mixture_defaults

__all__ = ["merged_priors"]


def merged_priors(
    c: Checked, *, prior, gate, gate_hidden, base_scale, interaction_scale, priors, alpha,
    shared_noise, y_moments, family=None, trials=None, offset=None,
) -> tuple[dict, dict]:  # fmt: skip
    r"""``(merged priors, fixed values)``: :func:`bayesmoe.priors.mixture_defaults` under the
    user's ``priors``; ``fixed`` holds a noise sd or intercept given as a number.

    A non-Gaussian ``family`` (:class:`~bayesmoe.builders.terms.likelihood.Family`) with a
    logit or log link puts the defaults on the link scale: intercepts
    :math:`N(\eta_0, 2.5^2)` around the link of the mean response
    (``Family.eta_location``), weights' scales for a unit outcome scale; its own
    parameters get the family's default priors, one per expert."""
    K, yv = c.K, c.y
    link_scale = family is not None and family.link != "identity"
    if link_scale:
        y_moments = (family.eta_location(yv, trials=trials, offset=offset), 1.0)
    elif y_moments is None:
        y_moments = (float(yv.mean()), float(yv.std()))
    elif len(y_moments) != 2 or not np.all(np.isfinite(y_moments)) or not y_moments[1] >= 0:
        raise ValueError(f"y_moments must be (mean, sd) of y, finite, got {y_moments!r}")
    defaults = mixture_defaults(
        prior,
        y_location=float(y_moments[0]),
        y_scale=float(y_moments[1]),
        n_components=K,
        n_features=len(c.expert_idx),
        has_interactions=bool(c.pairs),
        shared_noise=bool(shared_noise),
        alpha=float(alpha),
        gate=gate if K > 1 else None,
        base_scale=base_scale,
        interaction_scale=interaction_scale,
        n_obs=yv.size,
        n_interactions=len(c.pairs),
    )
    if K == 1:
        defaults = {k: v for k, v in defaults.items() if k != "weights"}
    if family is not None and not family.is_gaussian:
        defaults = _family_defaults(defaults, family, float(y_moments[1]))
    sizes = {
        "expert": K,
        "expert_feature": len(c.expert_idx),
        "interaction": len(c.pairs),
        "gate_expert": K - 1,
        "gate_feature": len(c.gate_idx),
        "gate_hidden": int(gate_hidden or 0),
    }
    # With K > 1 a flat prior on any expert parameter gives an improper posterior: as a
    # component's mean or sd runs off to infinity the likelihood tends to that of the
    # other components, a positive constant. One component is a plain regression.
    own = set(family.params) if family is not None else {"sigma"}
    improper_ok = {"intercept", "beta", "beta_interaction", *own} if K == 1 else set()
    merged = merge_priors(defaults, priors, sizes=sizes, improper_ok=improper_ok)
    fixed = {
        k: v for k, v in merged.items() if k in ("sigma", "intercept") and not isinstance(v, Prior)
    }
    return merged, fixed


def _family_defaults(defaults: dict, family, y_scale: float) -> dict:
    """The Gaussian defaults with ``sigma`` kept only when the family has one, and the
    family's other parameters' default priors, one per expert."""
    out = {k: v for k, v in defaults.items() if k != "sigma" or "sigma" in family.params}
    for name, prior in family.default_priors(y_scale).items():
        if name != "sigma":
            out[name] = Prior(prior.distribution, **prior.parameters, dims="expert")
    return out
