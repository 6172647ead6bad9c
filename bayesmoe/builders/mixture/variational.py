"""A mixture model's priors as variational EM arguments, and VEM results as draws.

VEM (:mod:`bayesmoe.numerics.vem`) has closed-form updates for Gaussian coefficient priors
only; :func:`vem_arguments` translates the model's priors or refuses them,
:func:`run_vem` runs it from the builder's EM point, :func:`vem_posterior` turns its
:math:`q(\\theta)\\,q(\\pi)` into a posterior Dataset.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from pymc_extras.prior import Prior

from bayesmoe.numerics.gate import gate_logits
from bayesmoe.numerics.lse import softmax_last
from bayesmoe.numerics.vem import VEMResult, fit_mixture_vem, sample_coefficients

__all__ = ["run_vem", "vem_arguments", "vem_posterior"]


def _failure(priors: dict):
    def fail(key: str, why: str):
        raise ValueError(
            f"method='vem' cannot use priors[{key!r}] = {priors.get(key)!r}: {why}. Use "
            "method='nuts' or 'advi' for this prior"
        )

    return fail


def _normal(priors: dict, fail, key: str, *, zero_mean: bool = False) -> Prior:
    v = priors.get(key)
    if not isinstance(v, Prior) or v.distribution != "Normal":
        fail(key, "closed-form updates need a Normal prior")
    mu = v.parameters.get("mu", 0.0)
    if isinstance(mu, Prior) or np.ndim(mu) > 0 or (zero_mean and mu != 0):
        kind = "zero" if zero_mean else "scalar"
        fail(key, f"closed-form updates need a {kind} mean")
    if isinstance(v.parameters.get("sigma"), Prior) and key in ("intercept",):
        fail(key, "closed-form updates need a fixed sd")
    return v


def _gate_sd(priors: dict, keys: tuple[str, str], fail) -> float:
    sds = []
    for key in keys:
        v = priors.get(key)
        if not isinstance(v, Prior) or v.distribution != "Normal":
            fail(key, "the gate step needs a Normal prior")
        mu, sd = v.parameters.get("mu", 0.0), v.parameters.get("sigma", 1.0)
        if isinstance(sd, Prior) or np.ndim(sd) > 0 or np.ndim(mu) > 0 or mu != 0:
            fail(key, "the gate step needs a zero-mean Normal with one scalar sd")
        sds.append(float(sd))
    if sds[0] != sds[1]:
        fail(keys[1], f"the gate step needs the same sd for {keys[0]} and {keys[1]}")
    return sds[0]


def _weight_priors(spec, fail) -> tuple[list, list, list]:
    """Group of every slope, each group's prior sd and whether VEM learns it."""
    pr = spec.priors
    groups, sds, learn = [], [], []
    p, q = len(spec.expert_idx), len(spec.pairs)
    for key, width, group in (("beta", p, "base"), ("beta_interaction", q, "interaction")):
        if not width:
            continue
        prior = _normal(pr, fail, key, zero_mean=True)
        gid = len(sds)
        groups += [gid] * width
        if "sigma" in prior.parameters:
            sd = prior.parameters["sigma"]
            if isinstance(sd, Prior) or np.ndim(sd) > 0:
                fail(key, "closed-form updates need a scalar sd or the learned scale")
            sds.append(float(sd))
            learn.append(False)
        elif isinstance(pr.get(f"tau_{group}"), Prior) or isinstance(
            pr.get(f"lambda_{group}"), Prior
        ):
            sds.append(1.0)  # start of the learned scale (standardised features)
            learn.append(True)
        else:
            sds.append(float(pr[f"tau_{group}"]))
            learn.append(False)
    return groups, sds, learn


def vem_arguments(spec) -> dict:
    """The model's priors as :func:`bayesmoe.numerics.vem.fit_mixture_vem` arguments.

    VEM's updates are closed-form for Gaussian coefficient priors only: it takes the
    intercept's Normal prior, the slopes' zero-mean Normal prior with a learned scale
    per group (base, interaction) when the builder learns one (the hyperprior is then
    replaced by type-II maximum likelihood, the M-step of the scale) or a fixed one, the
    Dirichlet concentration, and the gate's Gaussian prior sds. Noise sds are
    maximum-likelihood point estimates unless fixed. Anything else raises.
    """
    pr = spec.priors
    fail = _failure(pr)
    if spec.family == "horseshoe":
        key = "lambda_local_base" if spec.expert_idx else "lambda_local_interaction"
        fail(key, "closed-form updates need one Gaussian prior scale per group, and the "
             "horseshoe gives every weight its own")  # fmt: skip
    if "intercept" in spec.fixed:
        fail("intercept", "a fixed intercept is not supported")
    icpt = _normal(pr, fail, "intercept")
    sd_b = icpt.parameters.get("sigma", 1.0)
    if np.ndim(sd_b) > 0:
        fail("intercept", "closed-form updates need one scalar sd")
    groups, sds, learn = _weight_priors(spec, fail)
    out = dict(
        gate=spec.gate,
        gate_hidden=spec.gate_hidden,
        shared_noise=spec.shared_noise,
        intercept_mean=float(icpt.parameters.get("mu", 0.0)),
        intercept_sd=float(sd_b),
        weight_sd=np.asarray(sds) if sds else 1.0,
        weight_groups=np.asarray(groups, int) if groups else None,
        learn_scales=np.asarray(learn, bool) if learn else False,
        sigma=spec.fixed.get("sigma"),
    )
    if spec.n_experts > 1 and spec.gate is None:
        w = pr.get("weights")
        if not isinstance(w, Prior) or w.distribution != "Dirichlet":
            fail("weights", "closed-form updates need a Dirichlet prior")
        out["alpha"] = np.asarray(w.parameters["a"], float)
    if spec.gate is not None:
        out["gate_sd"] = _gate_sd(pr, ("gate_intercept", "gate_weights"), fail)
        if spec.gate == "mlp":
            out["hidden_sd"] = _gate_sd(pr, ("gate_hidden_weights", "gate_hidden_bias"), fail)
    return out


def run_vem(spec, X_base: np.ndarray, rng=None, **options) -> VEMResult:
    """Variational EM on all rows, started (among others) from the MAP-EM estimate."""
    args = vem_arguments(spec)
    Xe = spec.expert_design(X_base)
    G = spec.gate_design(X_base) if spec.gate else None
    res = fit_mixture_vem(
        Xe,
        spec.y,
        spec.n_experts,
        G=G,
        init=spec.point,
        random_state=np.random.default_rng(spec.seed) if rng is None else rng,
        **args,
        **options,
    )
    if spec.ordered:
        order = np.argsort(res.mean[:, 0])
        res.mean, res.cov, res.sigma = res.mean[order], res.cov[order], res.sigma[order]
        res.mass = res.mass[order]
        if res.responsibilities is not None:
            res.responsibilities = res.responsibilities[:, order]
        if res.dirichlet is not None:
            res.dirichlet = res.dirichlet[order]
        res.empty = sorted(int(np.flatnonzero(order == k)[0]) for k in res.empty)
    return res


def _gate_draws(spec, res: VEMResult, coords: dict, const) -> None:
    coords["gate_expert"] = spec.experts[:-1]
    coords["gate_feature"] = [spec.feature_names[j] for j in spec.gate_idx]
    coords["grid"] = np.arange(len(spec.grid))
    rows = "gate_feature"
    if spec.gate == "mlp":
        coords["gate_hidden"] = np.arange(spec.gate_hidden)
        rows = "gate_hidden"
        hidden_dims = ("gate_feature", "gate_hidden")
        const("gate_hidden_weights", res.gate_hidden_weights, hidden_dims)
        const("gate_hidden_bias", res.gate_hidden_bias, ("gate_hidden",))
    const("gate_intercept", res.gate_intercept, ("gate_expert",))
    const("gate_weights", res.gate_weights, (rows, "gate_expert"))
    grid = gate_logits(
        spec.grid,
        res.gate_intercept,
        res.gate_weights,
        res.gate_hidden_weights,
        res.gate_hidden_bias,
    )
    const("gate_probability_grid", softmax_last(grid), ("grid", "expert"))


def vem_posterior(
    spec, res: VEMResult, draws: int, rng: np.random.Generator
) -> tuple[xr.Dataset, list[str]]:
    """Draws from :math:`q(\\theta)\\,q(\\pi)` as a posterior Dataset (one chain).

    Point-estimated variables (noise sds, learned scales, gate) are constant over
    draws; their names are returned so the caller can record them.
    """
    K, p, q = spec.n_experts, len(spec.expert_idx), len(spec.pairs)
    theta = sample_coefficients(res, draws, rng)[None]  # (1, S, K, 1 + p + q)
    sd = ("chain", "draw")
    coords = {"chain": [0], "draw": np.arange(draws), "expert": spec.experts}
    data = {"intercept": ((*sd, "expert"), theta[..., 0])}
    if p:
        coords["expert_feature"] = [spec.feature_names[j] for j in spec.expert_idx]
        data["beta"] = ((*sd, "expert", "expert_feature"), theta[..., 1 : 1 + p])
    if q:
        coords["interaction"] = list(spec.interaction_names)
        data["beta_interaction"] = ((*sd, "expert", "interaction"), theta[..., 1 + p :])
    points = []

    def const(name, value, dims=()):
        value = np.asarray(value, float)
        data[name] = ((*sd, *dims), np.broadcast_to(value, (1, draws, *value.shape)).copy())
        points.append(name)

    if "sigma" not in spec.fixed:
        if spec.shared_noise:
            const("sigma", res.sigma[0])
        else:
            const("sigma", res.sigma, ("expert",))
    for group, cols in (("base", slice(1, 1 + p)), ("interaction", slice(1 + p, None))):
        var = res.prior_var[cols]
        if not var.size:
            continue
        if isinstance(spec.priors.get(f"lambda_{group}"), Prior):
            const(f"lambda_{group}", 1.0 / var[0])
            const(f"tau_{group}", np.sqrt(var[0]))
        elif isinstance(spec.priors.get(f"tau_{group}"), Prior):
            const(f"tau_{group}", np.sqrt(var[0]))
    if K > 1 and spec.gate is None:
        data["weights"] = ((*sd, "expert"), rng.dirichlet(res.dirichlet, draws)[None])
    elif K > 1:
        _gate_draws(spec, res, coords, const)
    return xr.Dataset(data, coords=coords), points
