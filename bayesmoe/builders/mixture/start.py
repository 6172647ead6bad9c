"""Start points of a mixture: the multi-start MAP-EM point and PyMC initial values from it.

The EM point is computed when the model is built; every chain starts there, so chains
explore one labelling instead of landing in different relabelled modes. It is also the
pivot of the relabelling (:mod:`bayesmoe.builders.mixture.labels`).
"""

from __future__ import annotations

import numpy as np
from pymc_extras.prior import Prior

from bayesmoe.builders.mixture.constants import EM_ROWS
from bayesmoe.numerics.em import EMResult, GLMExperts, fit_mixture_em, mixing_weights
from bayesmoe.numerics.glm import glm_log_density
from bayesmoe.numerics.lse import softmax_last
from bayesmoe.numerics.vem import VEMResult
from bayesmoe.priors import GATE_HIDDEN_SD, GATE_SD, HORSESHOE_SLAB

__all__ = ["horseshoe_start", "initial_values", "into_support", "point_estimate"]

#: Student-t experts' degrees of freedom at the start (the EM point is Gaussian)
NU_START = 10.0
#: Negative-binomial experts' dispersion at the start when the point has none, and the
#: range its moment estimate is clipped to (a start in the prior's bulk)
NB_ALPHA_START = 10.0
NB_ALPHA_RANGE = (0.05, 100.0)


def point_estimate(spec, Xe, G, yv, merged, alpha, random_seed) -> EMResult:
    """Multi-start MAP-EM on (at most EM_ROWS) rows: the start and the relabelling pivot."""
    rng = np.random.default_rng(random_seed)
    rows = np.arange(yv.size)
    if yv.size > EM_ROWS:
        rows = np.sort(rng.choice(yv.size, EM_ROWS, replace=False))
    s = float(yv.std()) or 1.0
    experts = _glm_experts(spec, rows)
    if experts is not None:
        s = 1.0  # the link scale (the builder's priors are on it too)
    res = fit_mixture_em(
        Xe[rows],
        yv[rows],
        spec.n_experts,
        gate=spec.gate,
        G=None if G is None else G[rows],
        gate_hidden=spec.gate_hidden,
        shared_noise=spec.shared_noise,
        alpha=float(alpha),
        intercept_sd=2.5 * s,
        weight_sd=2.5 * s,
        gate_sd=GATE_SD,
        hidden_sd=GATE_HIDDEN_SD,
        random_state=rng,
        **({} if experts is None else {"experts": experts}),
    )
    if yv.size > EM_ROWS:  # responsibilities for every row, at the EM parameters
        res.responsibilities = _responsibilities(res, Xe, G, yv, _glm_experts(spec, None))
    return res


def _glm_experts(spec, rows) -> GLMExperts | None:
    """The EM's GLM experts for a logit- or log-link family (None: Gaussian EM, which is
    also the Student-t experts' start)."""
    fam = spec.likelihood_family
    if fam.link == "identity":
        return None
    extras = spec.row_extras(rows)
    return GLMExperts(
        fam.name,
        trials=extras.get("trials"),
        offset=extras.get("offset"),
        pseudo_sigma=float(fam.pseudo_sigma),
    )


def _responsibilities(res: EMResult, Xe, G, yv, experts=None) -> np.ndarray:
    pi = mixing_weights(res, G, yv.size)
    mu = res.intercept + Xe @ res.beta.T
    if experts is not None:
        eta = mu if experts.offset is None else mu + experts.offset[:, None]
        trials = None if experts.trials is None else experts.trials[:, None]
        alpha = None if res.alpha is None else res.alpha[None, :]
        log_dens = glm_log_density(experts.family, yv[:, None], eta, trials=trials, alpha=alpha)
        return softmax_last(np.log(np.maximum(pi, 1e-300)) + log_dens)
    log_joint = np.log(np.maximum(pi, 1e-300)) - 0.5 * ((yv[:, None] - mu) / res.sigma) ** 2
    log_joint -= np.log(res.sigma)
    return softmax_last(log_joint)


def initial_values(spec, point: EMResult | VEMResult | None = None) -> dict[str, np.ndarray]:
    """A point estimate as PyMC initial values (constrained space).

    ``point`` defaults to the builder's MAP-EM estimate; ``MixtureSpec.vem_point`` gives
    the variational EM one (posterior means of the expert coefficients).
    """
    pt_ = spec.point if point is None else point
    if pt_ is None:
        return {}
    p = len(spec.expert_idx)
    out = {"intercept": pt_.intercept}
    if p:
        out["beta"] = pt_.beta[:, :p]
    if spec.pairs:
        out["beta_interaction"] = pt_.beta[:, p:]
    own = spec.likelihood_family.params
    if "sigma" in own:
        out["sigma"] = pt_.sigma[0] if spec.shared_noise else pt_.sigma
    if "nu" in own:
        out["nu"] = np.full(spec.n_experts, NU_START)
    if "alpha" in own:
        known = isinstance(pt_, EMResult) and pt_.alpha is not None
        alpha = pt_.alpha if known else NB_ALPHA_START
        out["alpha"] = np.clip(np.broadcast_to(alpha, (spec.n_experts,)), *NB_ALPHA_RANGE)
    if spec.n_experts > 1 and spec.gate is None:
        out["weights"] = pt_.weights
    elif spec.n_experts > 1:
        out["gate_intercept"] = pt_.gate_intercept
        out["gate_weights"] = pt_.gate_weights
        if spec.gate == "mlp":
            out["gate_hidden_weights"] = pt_.gate_hidden_weights
            out["gate_hidden_bias"] = pt_.gate_hidden_bias
    if spec.family == "horseshoe":
        out.update(horseshoe_start(spec, pt_, out))
    for group, width, cols in (("base", p, slice(0, p)), ("interaction", 1, slice(p, None))):
        if not width or (group == "interaction" and not spec.pairs):
            continue
        if spec.family == "horseshoe":
            continue
        rms = float(np.sqrt(np.mean(pt_.beta[:, cols] ** 2)))
        tau = max(rms, 0.05)
        if isinstance(spec.priors.get(f"tau_{group}"), Prior):
            out[f"tau_{group}"] = tau
        if isinstance(spec.priors.get(f"lambda_{group}"), Prior):
            out[f"lambda_{group}"] = tau**-2
    out = {k: np.asarray(v, float) for k, v in out.items() if k not in spec.fixed}
    return {k: into_support(v, spec.priors.get(k)) for k, v in out.items()}


def horseshoe_start(spec, pt_, start: dict) -> dict:
    r"""The horseshoe's scales and non-centred offsets at the point's weights.

    Local scales start at 1, the slab at its prior's mode-scale :math:`c^2 = (2 s)^2`
    and each group's global scale at the point's root-mean-square weight over its
    noise sd (at least 0.05), so the prior sds are of the weights' size and the
    offsets :math:`z = w / s` are of order one (the EM point's weights, not zero).
    ``start`` loses the weights themselves (Deterministics of the offsets).
    """
    p = len(spec.expert_idx)
    sigma = np.broadcast_to(np.asarray(pt_.sigma, float), (spec.n_experts,))
    c2 = spec.priors.get("c2")
    c2_start = float(c2) if not isinstance(c2, Prior) else (
        HORSESHOE_SLAB["scale"] * (float(np.std(spec.y)) or 1.0)
    ) ** 2  # fmt: skip
    out = {} if not isinstance(c2, Prior) else {"c2": c2_start}
    groups = (
        ("base", "beta", slice(0, p)),
        ("interaction", "beta_interaction", slice(p, None)),
    )
    for group, name, cols in groups:
        if name not in start:
            continue
        w = np.asarray(pt_.beta[:, cols], float)
        tau = spec.priors.get(f"tau_{group}")
        if isinstance(tau, Prior):
            tau_start = max(float(np.sqrt(np.mean((w / sigma[:, None]) ** 2))), 0.05)
            out[f"tau_{group}"] = tau_start
        else:
            tau_start = float(tau)
        lam = np.ones_like(w)
        if isinstance(spec.priors.get(f"lambda_local_{group}"), Prior):
            out[f"lambda_local_{group}"] = lam
        u = sigma[:, None] * tau_start * lam
        sd = u / np.sqrt(1.0 + u**2 / c2_start)
        out[f"{name}_offset"] = w / sd
        del start[name]  # a Deterministic of the offsets, not a free variable
    return out


def into_support(value: np.ndarray, prior) -> np.ndarray:
    """An EM start moved inside a bounded prior (a user's ``Uniform``); others unchanged.

    The EM point ignores the priors' supports, and a start outside one has log density
    -inf, on which every NUTS chain fails to initialise.
    """
    if not isinstance(prior, Prior) or prior.distribution != "Uniform":
        return value
    lower = np.asarray(prior.parameters["lower"], float)
    upper = np.asarray(prior.parameters["upper"], float)
    margin = 1e-3 * (upper - lower)
    return np.clip(value, lower + margin, upper - margin)
