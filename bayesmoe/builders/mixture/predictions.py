r"""A mixture's components, weights and densities for posterior draws, on the working scale.

Every function takes a :class:`~bayesmoe.builders.mixture.spec.MixtureSpec` (the model's
structure), the posterior Dataset and the working-scale features ``X_base``:
:math:`\mu_{ik} = b_k + w_k^\top x_i`, :math:`\sigma_k`, :math:`\log \pi_k(x_i)`, the
pointwise mixture log-likelihood, and the posterior on the user's scale.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from bayesmoe.builders.interaction import mark_scales
from bayesmoe.builders.mixture.constants import DENSITY_POINTS, SAMPLE_DIMS
from bayesmoe.data import interaction_design
from bayesmoe.numerics.gate import posterior_draw_logits
from bayesmoe.numerics.loglik import mixture_gaussian_linear, output_array, softmax_gate
from bayesmoe.numerics.lse import log_softmax_last, logsumexp_last
from bayesmoe.numerics.rescale import linear_layer_to_user_scale, regression_to_user_scale

__all__ = [
    "component_means",
    "component_sd",
    "family_params",
    "gate_logits",
    "joint_log_density",
    "linear_predictors",
    "log_likelihood",
    "log_weights",
    "logsumexp_over_experts",
    "mixture_log_density",
    "to_user_scale",
    "value",
]


def value(spec, posterior: xr.Dataset, name: str) -> xr.DataArray:
    """A variable's draws, or a value the user fixed broadcast over the draws."""
    if name in spec.fixed:
        shape = {"chain": posterior["chain"], "draw": posterior["draw"]}
        fixed = np.broadcast_to(spec.fixed[name], (spec.n_experts,))
        return xr.DataArray(fixed, dims="expert", coords={"expert": spec.experts}).expand_dims(
            shape
        )
    return posterior[name]


def component_means(spec, posterior: xr.Dataset, X_base: np.ndarray) -> xr.DataArray:
    """Each expert's mean response, dims (chain, draw, obs, expert): the linear predictor
    :math:`b_k + w_k^\\top x_i` for the identity link, else the family's mean at it
    (a probability per trial for the logit link, a rate per unit exposure for the log
    link)."""
    eta = linear_predictors(spec, posterior, X_base)
    if spec.likelihood_family.link == "identity":
        return eta
    return eta.copy(data=spec.likelihood_family.mean(eta.values, {}))


def linear_predictors(spec, posterior: xr.Dataset, X_base: np.ndarray) -> xr.DataArray:
    """:math:`\\eta_{ik} = b_k + w_k^\\top x_i`, dims (chain, draw, obs, expert)."""
    Xe = X_base[:, spec.expert_idx]
    mu = value(spec, posterior, "intercept").expand_dims(obs=X_base.shape[0], axis=-2)
    if spec.expert_idx:
        beta = posterior["beta"].rename(expert_feature="_f").drop_vars("_f", errors="ignore")
        mu = mu + xr.DataArray(Xe, dims=("obs", "_f")).dot(beta, dim="_f")
    if spec.pairs:
        Xi = interaction_design(Xe, spec.pairs)
        v = posterior["beta_interaction"].drop_vars("interaction", errors="ignore")
        mu = mu + xr.DataArray(Xi, dims=("obs", "interaction")).dot(v, dim="interaction")
    return mu.drop_vars("obs", errors="ignore").transpose(*SAMPLE_DIMS, "obs", "expert")


def component_sd(spec, posterior: xr.Dataset) -> xr.DataArray:
    """:math:`\\sigma_k`, dims (chain, draw, expert) (NaN for a family without one)."""
    if "sigma" not in spec.likelihood_family.params:
        shape = (posterior.sizes["chain"], posterior.sizes["draw"], spec.n_experts)
        return xr.DataArray(np.full(shape, np.nan), dims=(*SAMPLE_DIMS, "expert"))
    sd = value(spec, posterior, "sigma")
    if "expert" not in sd.dims:
        sd = sd.expand_dims(expert=spec.experts, axis=-1)
    return sd.transpose(*SAMPLE_DIMS, "expert")


def gate_logits(spec, posterior: xr.Dataset, X_base: np.ndarray) -> np.ndarray:
    """The gate's logits of every draw with the reference column, (chain, draw, obs, K)."""

    free = posterior_draw_logits(
        posterior,
        spec.gate_design(X_base),
        spec.gate,
        feature_dim="gate_feature",
        free_dim="gate_expert",
        intercept="gate_intercept",
        sample_dims=SAMPLE_DIMS,
    )
    return np.concatenate([free, np.zeros((*free.shape[:3], 1))], axis=-1)


def log_weights(spec, posterior: xr.Dataset, X_base: np.ndarray) -> xr.DataArray:
    """:math:`\\log \\pi_k(x_i)`, dims (chain, draw, obs, expert)."""
    n = X_base.shape[0]
    shape = (posterior.sizes["chain"], posterior.sizes["draw"], n, spec.n_experts)
    dims = (*SAMPLE_DIMS, "obs", "expert")
    if spec.n_experts == 1:
        return xr.DataArray(np.zeros(shape), dims=dims)
    if spec.gate is None:
        logw = np.log(posterior["weights"].transpose(*SAMPLE_DIMS, "expert").values)
        return xr.DataArray(np.broadcast_to(logw[:, :, None, :], shape), dims=dims)
    return xr.DataArray(log_softmax_last(gate_logits(spec, posterior, X_base)), dims=dims)


def _weight_arguments(spec, posterior: xr.Dataset, X_base: np.ndarray, S: int) -> dict:
    """The mixing weights as :func:`~bayesmoe.numerics.loglik.mixture_gaussian_linear` takes
    them: per-draw log weights, or a blocked gate."""
    K = spec.n_experts

    def arr(name, dim):
        return posterior[name].transpose(*SAMPLE_DIMS, dim).values.reshape(S, -1)

    if K == 1:
        return {"log_weights": np.zeros((S, 1))}
    if spec.gate is None:
        return {
            "log_weights": np.log(
                posterior["weights"].transpose(*SAMPLE_DIMS, "expert").values.reshape(S, K)
            )
        }
    hidden = {}
    inputs = "gate_feature"
    if spec.gate == "mlp":
        hidden = dict(
            hidden_weights=posterior["gate_hidden_weights"]
            .transpose(*SAMPLE_DIMS, "gate_feature", "gate_hidden")
            .values.reshape(S, len(spec.gate_idx), -1),
            hidden_bias=arr("gate_hidden_bias", "gate_hidden"),
        )
        inputs = "gate_hidden"
    return {
        "gate_logits": softmax_gate(
            spec.gate_design(X_base),
            posterior["gate_weights"]
            .transpose(*SAMPLE_DIMS, inputs, "gate_expert")
            .values.reshape(S, -1, K - 1),
            arr("gate_intercept", "gate_expert"),
            **hidden,
        )
    }


def log_likelihood(spec, posterior: xr.Dataset, X_base: np.ndarray, y: np.ndarray, **extras):
    """Pointwise :math:`\\log \\sum_k \\pi_k(x_i) N(y_i \\mid \\mu_{ik}, \\sigma_k^2)`.

    Dims (chain, draw, obs). Computed block by block by
    :func:`bayesmoe.numerics.loglik.mixture_gaussian_linear` (no (draw, obs, expert)
    array is formed); equal to log-sum-exp over experts of :func:`joint_log_density`.
    Non-Gaussian experts: log-sum-exp over experts of :func:`joint_log_density` with the
    family's density (``extras``: the rows' ``trials`` / ``offset``).
    """
    if spec.likelihood != "gaussian":
        joint = joint_log_density(spec, posterior, X_base, y, **extras)
        coords = {d: posterior[d].values for d in SAMPLE_DIMS if d in posterior.coords}
        return xr.DataArray(
            logsumexp_last(joint.values), dims=(*SAMPLE_DIMS, "obs"), coords=coords
        )
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    S, K = n_chain * n_draw, spec.n_experts
    Xe = spec.expert_design(X_base)
    coef = []
    if spec.expert_idx:
        coef.append(posterior["beta"].transpose(*SAMPLE_DIMS, "expert", ...).values)
    if spec.pairs:
        coef.append(posterior["beta_interaction"].transpose(*SAMPLE_DIMS, "expert", ...).values)
    coef = np.concatenate(coef, axis=-1) if coef else np.zeros((n_chain, n_draw, K, 0))
    intercept = value(spec, posterior, "intercept").transpose(*SAMPLE_DIMS, "expert").values
    sigma = component_sd(spec, posterior).values
    weights = _weight_arguments(spec, posterior, X_base, S)
    out = output_array((n_chain, n_draw, Xe.shape[0]))
    mixture_gaussian_linear(
        Xe,
        y,
        coef.reshape(S, K, -1),
        sigma.reshape(S, K),
        intercept.reshape(S, K),
        out=out.reshape(S, -1),
        **weights,
    )
    coords = {d: posterior[d].values for d in SAMPLE_DIMS if d in posterior.coords}
    return xr.DataArray(out, dims=(*SAMPLE_DIMS, "obs"), coords=coords)


def family_params(spec, posterior: xr.Dataset) -> dict:
    """The experts' family parameters as arrays (chain, draw, 1, expert) (``sigma``,
    ``nu``, ``alpha`` as the family has them), broadcasting against (chain, draw, obs,
    expert)."""
    out = {}
    for name in spec.likelihood_family.params:
        da = component_sd(spec, posterior) if name == "sigma" else posterior[name]
        out[name] = da.transpose(*SAMPLE_DIMS, "expert").values[:, :, None, :]
    return out


def joint_log_density(spec, posterior, X_base, y, trials=None, offset=None) -> xr.DataArray:
    """:math:`\\log \\pi_k(x_i) + \\log p(y_i \\mid \\eta_{ik}, \\theta_k)`, per expert
    (the family's density at the experts' linear predictors; Gaussian: the normal)."""
    if spec.likelihood != "gaussian":
        eta = linear_predictors(spec, posterior, X_base)
        log_p = spec.likelihood_family.logpdf(
            np.asarray(y, float)[:, None],
            eta.values,
            family_params(spec, posterior),
            trials=None if trials is None else np.asarray(trials, float)[:, None],
            offset=None if offset is None else np.asarray(offset, float)[:, None],
        )
        return log_weights(spec, posterior, X_base) + log_p
    mu = component_means(spec, posterior, X_base)
    sd = component_sd(spec, posterior).expand_dims(obs=mu.sizes["obs"], axis=-2)
    resid = (y[None, None, :, None] - mu.values) / sd.values
    log_norm = -0.5 * resid**2 - np.log(sd.values) - 0.5 * np.log(2 * np.pi)
    return log_weights(spec, posterior, X_base) + log_norm


def mixture_log_density(spec, posterior, X_base, y, n_points: int = DENSITY_POINTS):
    r""":math:`\log p(y_i \mid x_i, \theta)` at ``n_points`` training rows, per draw.

    The rows sit at evenly spaced ranks of ``y`` (deterministic). The mixture density
    does not depend on the labels, so its R-hat and ESS mean something when the
    components themselves are not identified (dims chain, draw, density_row).
    """
    y = np.asarray(y, dtype=float)
    order = np.argsort(y, kind="stable")
    rows = order[np.unique(np.linspace(0, y.size - 1, min(n_points, y.size)).round().astype(int))]
    extras = spec.row_extras(rows) if y.size == spec.y.size else {}
    joint = joint_log_density(spec, posterior, X_base[rows], y[rows], **extras)
    top = joint.max("expert")
    out = top + np.log(np.exp(joint - top).sum("expert"))
    return out.rename(obs="density_row").assign_coords(density_row=rows)


def logsumexp_over_experts(joint: xr.DataArray) -> xr.DataArray:
    return xr.DataArray(logsumexp_last(joint.values), dims=joint.dims[:-1])


def _gate_to_user_scale(spec, posterior, out, std) -> list[str]:
    g = spec.gate_idx
    if spec.gate == "linear":
        names, dims = ("gate_intercept", "gate_weights"), ("gate_expert", "gate_feature")
    else:
        names = ("gate_hidden_bias", "gate_hidden_weights")
        dims = ("gate_hidden", "gate_feature")
    bias = posterior[names[0]].transpose(*SAMPLE_DIMS, dims[0])
    weights = posterior[names[1]].transpose(*SAMPLE_DIMS, "gate_feature", dims[0])
    c, V = linear_layer_to_user_scale(
        bias.values, weights.values, std.x_mean[g], std.x_scale[g], axis=-2
    )
    out[names[0]] = bias.copy(data=c)
    out[names[1]] = weights.copy(data=V)
    return list(names)


def to_user_scale(spec, posterior: xr.Dataset, standardizer) -> xr.Dataset:
    """The posterior with expert coefficients, noise sds and gate on the user's scale.

    Each expert's ``intercept``, ``beta`` and ``beta_interaction`` become coefficients
    of the raw features (and raw products), ``sigma`` is multiplied by the scale of
    ``y`` (:mod:`bayesmoe.numerics.rescale`). The gate's input layer (``gate_weights``
    and ``gate_intercept`` of the linear gate; ``gate_hidden_weights`` and
    ``gate_hidden_bias`` of the mlp gate) is written in the raw gate features; the
    mlp's output layer, the mixing ``weights``, ``gate_probability_grid`` and the prior
    scales ``tau_*``/``lambda_*`` are scale-free and stay as they are.
    """
    std = standardizer
    out = posterior.copy()
    user = ["intercept", "sigma"]
    lead = (*SAMPLE_DIMS, "expert")
    intercept = value(spec, posterior, "intercept").transpose(*lead)
    shape = intercept.shape
    p, q = len(spec.expert_idx), len(spec.pairs)
    base = (
        posterior["beta"].transpose(*lead, "expert_feature").values if p else np.zeros((*shape, 0))
    )
    inter = (
        posterior["beta_interaction"].transpose(*lead, "interaction").values
        if q
        else np.zeros((*shape, 0))
    )
    e = spec.expert_idx
    b0, w, v = regression_to_user_scale(
        intercept.values, base, inter, spec.pairs, std.x_mean[e], std.x_scale[e],
        std.y_mean, std.y_scale,
    )  # fmt: skip
    out["intercept"] = intercept.copy(data=b0)
    if p:
        out["beta"] = posterior["beta"].transpose(*lead, "expert_feature").copy(data=w)
        user.append("beta")
    if q:
        out["beta_interaction"] = (
            posterior["beta_interaction"].transpose(*lead, "interaction").copy(data=v)
        )
        user.append("beta_interaction")
    if "sigma" in posterior:
        out["sigma"] = posterior["sigma"] * std.y_scale
    if spec.gate is not None:
        user += _gate_to_user_scale(spec, posterior, out, std)
    return mark_scales(out, posterior, user)
