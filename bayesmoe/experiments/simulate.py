"""Data generators with known truth: interaction regressions and mixtures of experts.

Each returns the data together with the parameters that generated them (and the
noise-free mean), so that fits can be scored against the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

__all__ = [
    "InteractionData",
    "MixtureData",
    "align_truth",
    "make_interaction_data",
    "make_mixture_data",
]


@dataclass
class InteractionData:
    """Simulated data set: base features ``X``, target ``y`` and the generating truth."""

    X: pd.DataFrame
    y: np.ndarray
    bias: float
    w_base: np.ndarray
    w_interaction: np.ndarray
    noise_level: float
    interaction_names: list[str]

    @property
    def signal(self) -> np.ndarray:
        """Noise-free mean of ``y``."""
        return _mean(self.X.to_numpy(), self.bias, self.w_base, self.w_interaction)

    def new_rows(self, n: int, *, seed=None) -> InteractionData:
        """Fresh rows from the same generating truth (a held-out test set)."""
        rng = np.random.default_rng(seed)
        X = rng.uniform(-1, 1, size=(n, self.w_base.size))
        y = _mean(X, self.bias, self.w_base, self.w_interaction)
        y = y + self.noise_level * rng.normal(size=n)
        return InteractionData(
            X=pd.DataFrame(X, columns=self.X.columns),
            y=y,
            bias=self.bias,
            w_base=self.w_base,
            w_interaction=self.w_interaction,
            noise_level=self.noise_level,
            interaction_names=self.interaction_names,
        )


def _mean(X: np.ndarray, bias: float, w_base: np.ndarray, w_int: np.ndarray) -> np.ndarray:
    pairs = list(combinations(range(X.shape[1]), 2))
    inter = (
        np.column_stack([X[:, a] * X[:, b] for a, b in pairs]) if pairs else np.zeros((len(X), 0))
    )
    return bias + X @ w_base + inter @ w_int


def make_interaction_data(
    n: int = 1000,
    x_dim: int = 6,
    noise_level: float = 2.0,
    interaction_scale: float = 0.01,
    *,
    seed: int | np.random.Generator | None = 0,
) -> InteractionData:
    r"""Uniform features with all pairwise interactions (the interaction learning-curve design).

    .. math::

        x_{ij} \sim U(-1, 1), \quad b, w_j, u_{ab} \sim U(-1, 1), \quad
        v_{ab} = s\, u_{ab}, \quad
        y_i = b + x_i^\top w + \sum_{a<b} v_{ab} x_{ia} x_{ib} + \epsilon_i,\
        \epsilon_i \sim N(0, \text{noise}^2)

    with :math:`s` = ``interaction_scale``. One generator draws, in this order, ``X`` (row
    by row), :math:`b`, then :math:`w` and :math:`u` together (base weights first, pairs in
    ``itertools.combinations`` order), then the noise.
    """
    if n < 1 or x_dim < 1:
        raise ValueError(f"n and x_dim must be positive, got n={n}, x_dim={x_dim}")
    rng = np.random.default_rng(seed)
    names = [f"x{j}" for j in range(x_dim)]
    X = rng.uniform(-1, 1, size=(n, x_dim))
    pairs = list(combinations(range(x_dim), 2))
    bias = float(rng.uniform(-1, 1))
    w = rng.uniform(-1, 1, size=x_dim + len(pairs))
    w_base, w_int = w[:x_dim], interaction_scale * w[x_dim:]
    y = _mean(X, bias, w_base, w_int) + noise_level * rng.normal(size=n)
    return InteractionData(
        X=pd.DataFrame(X, columns=names),
        y=y,
        bias=bias,
        w_base=w_base,
        w_interaction=w_int,
        noise_level=noise_level,
        interaction_names=[f"{names[a]}:{names[b]}" for a, b in pairs],
    )


@dataclass
class MixtureData:
    """Simulated mixture-of-experts data with the generating truth.

    ``truth`` holds the parameters under the names of the mixture builders (gate in the
    reference parametrisation: the last expert's logit is 0), on the original scale.
    """

    X: pd.DataFrame
    y: np.ndarray
    z: np.ndarray
    gate: str | None
    truth: dict[str, np.ndarray]
    family: str = "gaussian"
    trials: np.ndarray | None = None

    @property
    def n_experts(self) -> int:
        return self.truth["intercept"].size

    def gate_probabilities(self, X) -> np.ndarray:
        """True mixing probabilities pi(x), shape (n, K)."""
        X = np.asarray(X, float)
        return _softmax(_true_logits(self.truth, self.gate, X, self.n_experts))

    def expert_means(self, X) -> np.ndarray:
        X = np.asarray(X, float)
        return self.truth["intercept"] + X @ self.truth["beta"].T

    def new_rows(self, n: int, *, seed=None) -> MixtureData:
        """Fresh rows from the same truth (a held-out set)."""
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(n, self.X.shape[1]))
        trials = None if self.trials is None else np.full(n, int(self.trials[0]))
        y, z = _draw_mixture(rng, X, self.truth, self.gate, self.family, trials)
        frame = pd.DataFrame(X, columns=self.X.columns)
        return MixtureData(frame, y, z, self.gate, self.truth, self.family, trials)

    def working_truth(self, x_mean, x_scale, y_mean: float, y_scale: float) -> dict:
        r"""The truth on the working scale :math:`x_w = (x - m_x)/s_x`,
        :math:`y_w = (y - m_y)/s_y`.

        Experts: :math:`b^w = (b + w^\top m_x - m_y)/s_y`, :math:`w^w = w \odot s_x / s_y`,
        :math:`\sigma^w = \sigma / s_y`. Linear gate: :math:`V^w = V \odot s_x`,
        :math:`c^w = c + V^\top m_x`. (The mlp gate's hidden weights are not identified
        and are not returned.)
        """
        t = self.truth
        x_mean, x_scale = np.asarray(x_mean, float), np.asarray(x_scale, float)
        out = {
            "intercept": (t["intercept"] + t["beta"] @ x_mean - y_mean) / y_scale,
            "beta": t["beta"] * x_scale / y_scale,
        }
        if "sigma" in t:
            out["sigma"] = t["sigma"] / y_scale
        if self.gate is None:
            out["weights"] = t["weights"]
        elif self.gate == "linear":
            out["gate_weights"] = t["gate_weights"] * x_scale[:, None]
            out["gate_intercept"] = t["gate_intercept"] + x_mean @ t["gate_weights"]
        return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _true_logits(truth: dict, gate: str | None, X: np.ndarray, K: int) -> np.ndarray:
    n = X.shape[0]
    if gate is None:
        return np.tile(np.log(truth["weights"]), (n, 1))
    inputs = X
    if gate == "mlp":
        inputs = np.tanh(X @ truth["gate_hidden_weights"] + truth["gate_hidden_bias"])
    free = inputs @ truth["gate_weights"] + truth["gate_intercept"]
    return np.column_stack([free, np.zeros(n)])


def _draw_mixture(rng, X, truth, gate, family: str = "gaussian", trials=None):
    pi = _softmax(_true_logits(truth, gate, X, truth["intercept"].size))
    z = (rng.uniform(size=(X.shape[0], 1)) > np.cumsum(pi, axis=1)).sum(axis=1)
    z = np.minimum(z, pi.shape[1] - 1)
    mu = truth["intercept"][z] + np.einsum("ij,ij->i", X, truth["beta"][z])
    if family == "gaussian":
        return mu + truth["sigma"][z] * rng.normal(size=X.shape[0]), z
    if family in ("bernoulli", "binomial"):
        m = 1 if trials is None else trials
        return rng.binomial(m, 1.0 / (1.0 + np.exp(-mu))).astype(float), z
    rate = np.exp(mu)
    if family == "negative_binomial":
        a = truth["alpha"][z]
        rate = rng.gamma(a, rate / a)
    return rng.poisson(rate).astype(float), z


#: link-scale centre of the experts' intercepts and sd of their slopes, per link
_LINK_TRUTH = {"logit": (0.0, 1.5), "log": (1.0, 0.5)}
SIMULATED_FAMILIES = ("gaussian", "bernoulli", "binomial", "poisson", "negative_binomial")


def make_mixture_data(
    n: int = 2000,
    n_experts: int = 2,
    x_dim: int = 3,
    *,
    gate: str | None = "linear",
    noise: float = 0.3,
    separation: float = 3.0,
    gate_hidden: int = 3,
    min_share: float = 0.15,
    seed: int | np.random.Generator | None = 0,
    family: str = "gaussian",
    trials: int = 10,
) -> MixtureData:
    r"""Well-separated experts, each a linear regression, mixed by a gate.

    .. math::

        x_i \sim N(0, I_p),\quad z_i \mid x_i \sim \mathrm{Cat}(\pi(x_i)),\quad
        y_i = b_{z_i} + w_{z_i}^\top x_i + \sigma_{z_i} \epsilon_i

    Intercepts are evenly spaced ``separation`` apart, slopes :math:`N(0, 1)`, noise sd
    ``noise`` (per expert, times U(0.8, 1.25)). Gate: ``None`` constant weights
    (Dirichlet(5)); ``"linear"`` softmax of :math:`x^\top V_k + c_k` with
    :math:`V \sim N(0, 1.5^2)`; ``"mlp"`` softmax of :math:`V^\top \tanh(W^\top x + a) + c`
    with ``gate_hidden`` units. Parameters are redrawn until every expert's expected share
    of rows is at least ``min_share``.

    ``family`` other than ``"gaussian"`` draws :math:`y_i` from that family at the
    linear predictor :math:`\eta_i = b_{z_i} + w_{z_i}^\top x_i` (no ``noise``):
    ``"bernoulli"``, ``"binomial"`` (``trials`` per row, logit link; intercepts centred
    at 0, ``separation`` apart, slopes :math:`N(0, 1.5^2)`), ``"poisson"`` and
    ``"negative_binomial"`` (log link, intercepts centred at 1, slopes
    :math:`N(0, 0.5^2)`; dispersion :math:`\alpha_k \sim U(3, 8)`). ``truth`` then has no
    ``sigma``.
    """
    if family not in SIMULATED_FAMILIES:
        raise ValueError(f"family={family!r} is not simulated; choose one of {SIMULATED_FAMILIES}")
    if family != "gaussian":
        return _make_family_mixture(
            n, n_experts, x_dim, gate=gate, separation=separation, gate_hidden=gate_hidden,
            min_share=min_share, seed=seed, family=family, trials=trials,
        )  # fmt: skip
    if n < 1 or n_experts < 1 or x_dim < 0:
        raise ValueError(f"need n >= 1, n_experts >= 1, x_dim >= 0; got {n}, {n_experts}, {x_dim}")
    if gate not in (None, "linear", "mlp"):
        raise ValueError(f"gate must be None, 'linear' or 'mlp', got {gate!r}")
    rng = np.random.default_rng(seed)
    K = n_experts
    X = rng.normal(size=(n, x_dim))
    for _ in range(1000):
        truth = {
            "intercept": separation * (np.arange(K) - (K - 1) / 2),
            "beta": rng.normal(size=(K, x_dim)),
            "sigma": noise * rng.uniform(0.8, 1.25, size=K),
        }
        if gate is None:
            truth["weights"] = rng.dirichlet(np.full(K, 5.0))
        elif gate == "linear":
            truth["gate_weights"] = rng.normal(0, 1.5, size=(x_dim, K - 1))
            truth["gate_intercept"] = rng.normal(0, 0.5, size=K - 1)
        else:
            truth["gate_hidden_weights"] = rng.normal(0, 1.0, size=(x_dim, gate_hidden))
            truth["gate_hidden_bias"] = rng.normal(0, 0.5, size=gate_hidden)
            truth["gate_weights"] = rng.normal(0, 2.0, size=(gate_hidden, K - 1))
            truth["gate_intercept"] = rng.normal(0, 0.5, size=K - 1)
        share = _softmax(_true_logits(truth, gate, X, K)).mean(axis=0)
        if share.min() >= min(min_share, 1.0 / K):
            break
    y, z = _draw_mixture(rng, X, truth, gate)
    names = [f"x{j}" for j in range(x_dim)]
    return MixtureData(pd.DataFrame(X, columns=names), y, z, gate, truth)


def _make_family_mixture(
    n, K, x_dim, *, gate, separation, gate_hidden, min_share, seed, family, trials
) -> MixtureData:
    """:func:`make_mixture_data` of a non-Gaussian family (its docstring)."""
    if n < 1 or K < 1 or x_dim < 0:
        raise ValueError(f"need n >= 1, n_experts >= 1, x_dim >= 0; got {n}, {K}, {x_dim}")
    if gate not in (None, "linear"):
        raise ValueError(f"gate must be None or 'linear' for family={family!r}, got {gate!r}")
    rng = np.random.default_rng(seed)
    centre, slope_sd = _LINK_TRUTH["logit" if family in ("bernoulli", "binomial") else "log"]
    X = rng.normal(size=(n, x_dim))
    for _ in range(1000):
        truth = {
            "intercept": centre + separation * (np.arange(K) - (K - 1) / 2),
            "beta": rng.normal(0.0, slope_sd, size=(K, x_dim)),
        }
        if family == "negative_binomial":
            truth["alpha"] = rng.uniform(3.0, 8.0, size=K)
        if gate is None:
            truth["weights"] = rng.dirichlet(np.full(K, 5.0))
        else:
            truth["gate_weights"] = rng.normal(0, 1.5, size=(x_dim, K - 1))
            truth["gate_intercept"] = rng.normal(0, 0.5, size=K - 1)
        share = _softmax(_true_logits(truth, gate, X, K)).mean(axis=0)
        if share.min() >= min(min_share, 1.0 / K):
            break
    m = np.full(n, int(trials)) if family == "binomial" else None
    y, z = _draw_mixture(rng, X, truth, gate, family, m)
    names = [f"x{j}" for j in range(x_dim)]
    return MixtureData(pd.DataFrame(X, columns=names), y, z, gate, truth, family, m)


def align_truth(truth: dict, intercept: np.ndarray, beta: np.ndarray) -> dict:
    """Relabel a (working-scale) truth to match a fit's expert labels.

    Experts are matched by the distance between (intercept, slopes) of the truth and of
    the fit's posterior means (``scipy.optimize.linear_sum_assignment``); the gate is
    re-referenced to the fit's reference expert, :math:`\\eta'_j = \\eta_{\\sigma(j)} -
    \\eta_{\\sigma(K)}`.
    """
    from scipy.optimize import linear_sum_assignment

    true_coef = np.column_stack([truth["intercept"], truth["beta"]])
    fit_coef = np.column_stack([intercept, beta])
    cost = ((fit_coef[:, None, :] - true_coef[None, :, :]) ** 2).sum(axis=-1)
    _, sigma = linear_sum_assignment(cost)  # fit expert j <-> true expert sigma[j]
    out = {k: truth[k][sigma] for k in ("intercept", "beta", "sigma", "alpha") if k in truth}
    if "weights" in truth:
        out["weights"] = truth["weights"][sigma]
    if "gate_weights" in truth and "gate_intercept" in truth:
        K = sigma.size
        for name in ("gate_weights", "gate_intercept"):
            v = np.asarray(truth[name])
            full = np.concatenate([v, np.zeros_like(v[..., :1])], axis=-1)[..., sigma]
            out[name] = full[..., : K - 1] - full[..., K - 1 : K]
    return out
