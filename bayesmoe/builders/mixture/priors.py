"""The mixture builders' priors: data-based defaults merged with the user's overrides."""

from __future__ import annotations

import numpy as np
from pymc_extras.prior import Prior

from bayesmoe.builders.mixture.checks import Checked
from bayesmoe.priors import merge_priors, mixture_defaults

__all__ = ["merged_priors"]


def merged_priors(
    c: Checked, *, prior, gate, gate_hidden, base_scale, interaction_scale, priors, alpha,
    shared_noise, y_moments,
) -> tuple[dict, dict]:  # fmt: skip
    """``(merged priors, fixed values)``: :func:`bayesmoe.priors.mixture_defaults` under the
    user's ``priors``; ``fixed`` holds a noise sd or intercept given as a number."""
    K, yv = c.K, c.y
    if y_moments is None:
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
    improper_ok = {"intercept", "beta", "beta_interaction", "sigma"} if K == 1 else set()
    merged = merge_priors(defaults, priors, sizes=sizes, improper_ok=improper_ok)
    fixed = {
        k: v for k, v in merged.items() if k in ("sigma", "intercept") and not isinstance(v, Prior)
    }
    return merged, fixed
