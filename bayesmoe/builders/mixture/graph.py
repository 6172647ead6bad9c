r"""The PyMC graph of a mixture: experts' means, their weights' priors, the mixing weights.

The discrete assignments are summed out (``pm.NormalMixture``); a gate's logits come from
the shared gate term (:mod:`bayesmoe.builders.terms.gate`) with the last expert's logit
fixed at 0; the horseshoe's prior sds from :mod:`bayesmoe.builders.terms.horseshoe`.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc_extras.prior import Prior

from bayesmoe.builders.terms.gate import free_logits
from bayesmoe.builders.terms.horseshoe import regularised_log_sd
from bayesmoe.builders.terms.likelihood import Family

__all__ = ["create", "gate_graph", "model_graph"]


def create(spec, name: str, dims=None, transform=None, initval=None):
    """Create a variable from a Prior (or a constant for a number)."""
    if not isinstance(spec, Prior):
        return pt.constant(np.asarray(spec, float))
    if transform is None:
        return spec.create_variable(name)
    # An ordered transform is a bijection of the variable's support, which Prior's own
    # ``transform`` (a deterministic function) is not: build the distribution directly.
    params = {
        k: (v.create_variable(f"{name}_{k}") if isinstance(v, Prior) else v)
        for k, v in spec.parameters.items()
    }
    dist = getattr(pm, spec.distribution)
    return dist(name, **params, dims=dims or spec.dims, transform=transform, initval=initval)


def gate_graph(G, gate_vars: dict, gate: str):
    """The gate's logits with the reference (last) expert's column fixed at 0."""
    hidden = {}
    if gate == "mlp":
        hidden = dict(
            hidden_weights=gate_vars["gate_hidden_weights"],
            hidden_bias=gate_vars["gate_hidden_bias"],
        )
    free = free_logits(G, gate_vars["gate_weights"], gate_vars["gate_intercept"], **hidden)
    return pt.concatenate([free, pt.zeros((free.shape[0], 1))], axis=1)


def _scales(merged: dict, group: str):
    lam = merged.get(f"lambda_{group}")
    if lam is not None:
        lam_var = create(lam, f"lambda_{group}")
        return pm.Deterministic(f"tau_{group}", lam_var**-0.5)
    return create(merged[f"tau_{group}"], f"tau_{group}")


def _weights(spec, name: str, tau, dims: tuple[str, str], centered: bool):
    """Expert weights; a Normal without ``sigma`` takes the learned scale ``tau``."""
    if (
        isinstance(spec, Prior)
        and spec.distribution == "Normal"
        and "sigma" not in spec.parameters
    ):
        spec = Prior(
            "Normal",
            dims=spec.dims or dims,
            centered=centered,
            transform=spec.transform,
            sigma=tau,
            **{"mu": 0.0, **spec.parameters},  # non-centred Normals need an explicit mu
        )
    return spec.create_variable(name)


def _horseshoe_weights(merged: dict, name: str, group: str, sigma, log_c2, dims):
    r"""Non-centred expert weights :math:`w_{kj} = s_{kj} z_{kj}` under the regularised horseshoe.

    :math:`s_{kj}` is :func:`~bayesmoe.builders.terms.horseshoe.regularised_log_sd` at
    :math:`u = \sigma_k \tau_g \lambda_{kj}`. A user's own ``priors[name]`` other than a
    zero-mean Normal without ``sigma`` is refused by ``merge_priors``' checks upstream or
    used as given.
    """
    spec = merged[name]
    if not (isinstance(spec, Prior) and spec.distribution == "Normal"
            and "sigma" not in spec.parameters):  # fmt: skip
        return spec.create_variable(name) if isinstance(spec, Prior) else pt.constant(spec)
    tau = create(merged[f"tau_{group}"], f"tau_{group}")
    lam = create(merged[f"lambda_local_{group}"], f"lambda_local_{group}")
    log_sigma = pt.log(sigma)
    if log_sigma.ndim == 1:  # one noise sd per expert
        log_sigma = log_sigma[:, None]
    sd = pt.exp(regularised_log_sd(log_sigma, tau, lam, log_c2))
    weights = Prior("Normal", mu=0.0, sigma=sd, dims=spec.dims or dims, centered=False)
    return weights.create_variable(name)


def _expert_means(spec, merged, X_rows, Xi_rows, n_rows, centered: bool):
    """``(mu, sigma)``: the experts' means (rows, K) and noise sd (None unless horseshoe)."""
    prior, K = spec.family, spec.n_experts
    intercept = create(
        merged["intercept"],
        "intercept",
        dims="expert",
        transform=pm.distributions.transforms.ordered if spec.ordered else None,
        initval=spec.point.intercept if spec.ordered else None,
    )
    # The row count from the data (symbolic), not a constant, so the compiled graph does
    # not depend on n.
    mu = pt.broadcast_to(intercept, (n_rows, K))
    # the horseshoe's prior sds are in units of each expert's noise sd (a family without
    # one: its pseudo sd, Piironen & Vehtari 2017)
    sigma = None
    if prior == "horseshoe":
        sigma = (
            create(merged["sigma"], "sigma")
            if "sigma" in merged
            else pt.constant(np.full(K, float(spec.likelihood_family.pseudo_sigma)))
        )
    log_c2 = None
    if prior == "horseshoe" and (spec.expert_idx or spec.pairs):
        log_c2 = pt.log(create(merged["c2"], "c2"))
    if spec.expert_idx:
        dims = ("expert", "expert_feature")
        if prior == "horseshoe":
            beta = _horseshoe_weights(merged, "beta", "base", sigma, log_c2, dims)
        else:
            beta = _weights(merged["beta"], "beta", _scales(merged, "base"), dims, centered)
        mu = mu + pt.dot(X_rows[:, spec.expert_idx], beta.T)
    if spec.pairs:
        dims = ("expert", "interaction")
        if prior == "horseshoe":
            v = _horseshoe_weights(merged, "beta_interaction", "interaction", sigma, log_c2, dims)
        else:
            taus = _scales(merged, "interaction")
            v = _weights(merged["beta_interaction"], "beta_interaction", taus, dims, centered)
        mu = mu + pt.dot(Xi_rows, v.T)
    return mu, sigma


def _mixing_weights(spec, merged, X_rows):
    """The Dirichlet weights, or the gate's softmax (and its probabilities on the grid)."""
    if spec.gate is None:
        return create(merged["weights"], "weights")
    gate_vars = {k: create(merged[k], k) for k in spec.gate_vars}
    w = pt.special.softmax(gate_graph(X_rows[:, spec.gate_idx], gate_vars, spec.gate), axis=-1)
    X_grid = pm.Data("X_grid", spec.grid, dims=("grid", "gate_feature"))
    pm.Deterministic(
        "gate_probability_grid",
        pt.special.softmax(gate_graph(X_grid, gate_vars, spec.gate), axis=-1),
        dims=("grid", "expert"),
    )
    return w


def _family_params(fam: Family, merged: dict, sigma) -> dict:
    """The experts' family parameters (``sigma``, ``nu``, ``alpha``) as model variables."""
    out = {}
    for name in fam.params:
        if name == "sigma" and sigma is not None:
            out[name] = sigma  # the horseshoe created it already
        else:
            out[name] = create(merged[name], name)
    return out


def _family_likelihood(spec, merged, mu, sigma, X_rows, y_rows) -> None:
    r"""The observed ``y`` of non-Gaussian experts: a ``pm.CustomDist`` whose log density is
    :math:`\log \sum_k \pi_k(x_i) p(y_i \mid \eta_{ik}, \theta_k)`, the log-sum-exp over
    experts of the family's own PyTensor density (``Family.logp``), and whose draws pick
    an expert by its weight and draw from the family (``Family.draw``: prior and
    posterior predictive sampling); one expert is the family's observed variable itself.
    Trials and offset enter as data."""
    fam, K = spec.likelihood_family, spec.n_experts
    params = _family_params(fam, merged, sigma)
    extras = {}
    if spec.trials is not None:
        extras["trials"] = pm.Data("trials", spec.trials, dims="obs")
    if spec.offset is not None:
        extras["offset"] = pm.Data("offset", spec.offset, dims="obs")
    if K == 1:
        flat = {k: pt.flatten(v)[0] for k, v in params.items()}
        fam.observe("y", mu[:, 0], y_rows, flat, dims="obs", **extras)
        return
    w = _mixing_weights(spec, merged, X_rows)
    names = list(params)
    values = [pt.broadcast_to(pt.as_tensor(params[k]), (K,)) for k in names]
    extra_names = list(extras)

    def logp(value, log_w, eta, *rest):
        theta = dict(zip(names, rest[: len(names)], strict=True))
        more = {k: v[..., None] for k, v in zip(extra_names, rest[len(names) :], strict=True)}
        log_p = fam.logp(value[..., None], eta, theta, **more)
        return pt.logsumexp(log_w + log_p, axis=-1)

    def random(log_w, eta, *rest, rng=None, size=None):
        # an expert per row by its weight, then the family's draw at its predictor
        shape = np.broadcast_shapes(np.shape(log_w), np.shape(eta))
        u = rng.uniform(size=(*shape[:-1], 1))
        cum = np.cumsum(np.exp(np.broadcast_to(log_w, shape)), axis=-1)
        k = np.minimum((cum < u).sum(axis=-1), K - 1)[..., None]

        def pick(a):
            return np.take_along_axis(np.broadcast_to(a, shape), k, axis=-1)[..., 0]

        theta = {n: pick(v) for n, v in zip(names, rest[: len(names)], strict=True)}
        more = dict(zip(extra_names, rest[len(names) :], strict=True))
        return fam.draw(rng, pick(eta), theta, **more)

    signature = ",".join(["(k)"] * (2 + len(names)) + ["()"] * len(extras)) + "->()"
    pm.CustomDist(
        "y",
        pt.log(w),
        mu,
        *values,
        *extras.values(),
        logp=logp,
        random=random,
        signature=signature,
        observed=y_rows,
        dims="obs",
    )


def model_graph(spec, Xv, yv, Xe, merged, coords, *, centered, minibatch) -> pm.Model:
    """The model's variables and likelihood, on all rows or a random minibatch per step."""
    K = spec.n_experts
    with pm.Model(coords=coords) as model:
        X_base = pm.Data("X_base", Xv, dims=("obs", "feature"))
        y_obs = pm.Data("y_obs", yv, dims="obs")
        Xi = None
        if spec.pairs:
            Xi = pm.Data(
                "X_interaction", Xe[:, len(spec.expert_idx) :], dims=("obs", "interaction")
            )
        # Rows the likelihood sees: all of them, or a random minibatch per ADVI step (the
        # log-likelihood is then scaled by n / batch_size through total_size).
        X_rows, y_rows, Xi_rows, total = X_base, y_obs, Xi, None
        if minibatch:
            batch = pm.Minibatch(*[t for t in (X_base, y_obs, Xi) if t is not None],
                                 batch_size=int(minibatch))  # fmt: skip
            X_rows, y_rows = batch[0], batch[1]
            Xi_rows = batch[2] if spec.pairs else None
            total = yv.size
        mu, sigma = _expert_means(spec, merged, X_rows, Xi_rows, y_rows.shape[0], centered)
        if spec.likelihood != "gaussian":
            _family_likelihood(spec, merged, mu, sigma, X_rows, y_rows)
            return model
        if sigma is None:
            sigma = create(merged["sigma"], "sigma")
        obs_dims = None if minibatch else "obs"
        if K == 1:
            # a scalar sd: a length-1 "expert" vector broke ADVI's shape inference (PyMC
            # SpecifyShape(Exp, n) rewrite failure for K = 1)
            pm.Normal(
                "y",
                mu=mu[:, 0],
                sigma=pt.flatten(sigma)[0],
                observed=y_rows,
                dims=obs_dims,
                total_size=total,
            )
        else:
            w = _mixing_weights(spec, merged, X_rows)
            sd = sigma if spec.shared_noise else sigma[None, :]
            pm.NormalMixture(
                "y", w=w, mu=mu, sigma=sd, observed=y_rows, dims=obs_dims, total_size=total
            )
    return model
