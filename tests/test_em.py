"""Multi-start MAP-EM for mixtures of regressions and gated mixtures of experts."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import check_grad, linear_sum_assignment
from scipy.special import logsumexp, softmax

from bayesmoe.numerics import gate_fit
from bayesmoe.numerics.em import EMResult, fit_mixture_em, gate_logits, mixing_weights

N = 2000


def _simulate(seed, n=N, K=3, d=3, gate=None, intercepts=None, slopes=None, noise=0.3):
    """Well-separated experts; a true linear gate on a separate 2-column G when gated.

    Returns X, y, G, true intercepts (K,), true slopes (K, d) and true mixing probs (n, K).
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    b = np.linspace(-3.0, 3.0, K) if intercepts is None else np.asarray(intercepts, float)
    W = rng.uniform(-1.0, 1.0, size=(K, d)) if slopes is None else np.asarray(slopes, float)
    G = rng.normal(size=(n, 2))
    if gate is None:
        probs = np.full((n, K), 1.0 / K)
    else:
        V = rng.normal(scale=1.5, size=(2, K - 1))
        c = rng.normal(scale=0.5, size=K - 1)
        probs = softmax(gate_logits(G, c, V), axis=1)
    z = np.minimum((probs.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1), K - 1)
    y = b[z] + np.einsum("ij,ij->i", X, W[z]) + noise * rng.normal(size=n)
    return X, y, G, b, W, probs


def _match(result: EMResult, b, W):
    """Estimated component matched to each true one, and the worst coefficient error."""
    true = np.column_stack([b, W])
    est = np.column_stack([result.intercept, result.beta])
    cost = np.linalg.norm(true[:, None, :] - est[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    return cols, float(np.abs(true[rows] - est[cols]).max())


@cache
def _recovery_fit(gate, K):
    X, y, G, b, W, probs = _simulate(10 + K, K=K, gate=gate)
    # Fewer starts for the mlp only to keep the file fast; they still cover every start type.
    kw = dict(gate_hidden=3, n_init=4) if gate == "mlp" else {}
    result = fit_mixture_em(X, y, K, gate=gate, G=G, random_state=0, **kw)
    return result, (X, y, G, b, W, probs)


# --------------------------------------------------------------------------- recovery


@pytest.mark.parametrize("K", [2, 3])
@pytest.mark.parametrize("gate", [None, "linear", "mlp"])
def test_recovers_well_separated_experts(gate, K):
    result, (_, _, G, b, W, probs) = _recovery_fit(gate, K)
    perm, error = _match(result, b, W)
    assert error < 0.1
    np.testing.assert_allclose(result.sigma[perm], 0.3, atol=0.05)
    assert result.converged
    assert result.beta.shape == (K, 3) and result.responsibilities.shape == (N, K)
    if gate is None:
        np.testing.assert_allclose(result.weights[perm], 1.0 / K, atol=0.05)
    else:
        assert result.weights is None
        fitted = mixing_weights(result, G, N)[:, perm]
        assert np.mean(np.abs(fitted - probs)) < 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "intercepts, slopes",
    [
        # parallel lines: k-means on (x, y) tends to cut across them, residual quantiles not
        ([-1.5, 0.0, 1.5], [[1.0], [1.0], [1.0]]),
        # crossing lines through one point: only the slopes tell the experts apart
        ([0.0, 0.0, 0.0], [[-2.0], [0.0], [2.0]]),
    ],
    ids=["parallel", "crossing"],
)
def test_recovers_parallel_and_crossing_lines(intercepts, slopes, seed):
    X, y, _, b, W, _ = _simulate(seed, K=3, d=1, intercepts=intercepts, slopes=slopes)
    result = fit_mixture_em(X, y, 3, random_state=seed)
    assert _match(result, b, W)[1] < 0.1


def test_recovers_a_small_expert():
    # 3% of the rows. Without the greedy start, this seed ends at a mode with the small
    # expert merged away (coefficient error > 2); equal-sized partitions cannot isolate it.
    rng = np.random.default_rng(11)
    X = rng.normal(size=(N, 3))
    b, W = np.array([-3.0, 0.0, 3.0]), rng.uniform(-1, 1, size=(3, 3))
    z = rng.choice(3, size=N, p=[0.9, 0.07, 0.03])
    y = b[z] + np.einsum("ij,ij->i", X, W[z]) + 0.3 * rng.normal(size=N)
    result = fit_mixture_em(X, y, 3, random_state=0)
    perm, error = _match(result, b, W)
    assert error < 0.25
    np.testing.assert_allclose(result.weights[perm], [0.9, 0.07, 0.03], atol=0.02)


def test_gaussian_mixture_without_covariates():
    rng = np.random.default_rng(5)
    z = rng.choice(3, size=N, p=[0.5, 0.3, 0.2])
    y = np.array([-3.0, 0.0, 3.0])[z] + np.array([0.3, 0.5, 0.8])[z] * rng.normal(size=N)
    result = fit_mixture_em(np.empty((N, 0)), y, 3, random_state=0)
    order = np.argsort(result.intercept)
    np.testing.assert_allclose(result.intercept[order], [-3, 0, 3], atol=0.1)
    np.testing.assert_allclose(result.sigma[order], [0.3, 0.5, 0.8], atol=0.05)
    np.testing.assert_allclose(result.weights[order], [0.5, 0.3, 0.2], atol=0.03)
    assert result.beta.shape == (3, 0)
    same = fit_mixture_em(None, y, 3, random_state=0)
    np.testing.assert_array_equal(same.intercept, result.intercept)


@pytest.mark.parametrize("gate", [None, "linear"])
def test_single_expert_is_the_map_ridge_regression(gate):
    X, y, G, *_ = _simulate(3, n=300, K=1, d=2)
    result = fit_mixture_em(X, y, 1, gate=gate, G=G, intercept_sd=2.0, weight_sd=0.5)
    Z = np.column_stack([np.ones(len(y)), X])
    # MAP fixed point: ridge with the prior precision scaled by the MAP variance ...
    ridge = np.diag([2.0**-2, 0.5**-2, 0.5**-2]) * result.sigma[0] ** 2
    coef = np.linalg.solve(Z.T @ Z + ridge, Z.T @ y)
    np.testing.assert_allclose(np.r_[result.intercept, result.beta[0]], coef, rtol=1e-6)
    # ... and the variance is the mean squared residual.
    np.testing.assert_allclose(result.sigma[0] ** 2, np.mean((y - Z @ coef) ** 2), rtol=1e-6)
    # With a vague prior it is ordinary least squares.
    vague = fit_mixture_em(X, y, 1, gate=gate, G=G, intercept_sd=1e4, weight_sd=1e4)
    ols = np.linalg.lstsq(Z, y, rcond=None)[0]
    np.testing.assert_allclose(np.r_[vague.intercept, vague.beta[0]], ols, rtol=1e-6)
    np.testing.assert_array_equal(result.responsibilities, 1.0)
    np.testing.assert_array_equal(mixing_weights(result, G, len(y)), 1.0)


# --------------------------------------------------------------------------- EM properties


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"shared_noise": True}, {"alpha": 3.0}, {"intercept_sd": 0.5, "weight_sd": 0.2}],
    ids=["default", "shared", "dirichlet", "strong-prior"],
)
def test_objective_history_never_decreases(kwargs):
    X, y, *_ = _simulate(7, n=500, K=3)
    result = fit_mixture_em(X, y, 3, n_init=4, random_state=1, **kwargs)
    h = result.history
    assert len(h) == result.n_iter + 1 and h[-1] == result.objective
    assert np.all(np.diff(h) >= -1e-10 * np.abs(h[1:]))
    if kwargs.get("shared_noise"):
        assert np.all(result.sigma == result.sigma[0])


def test_gated_history_never_decreases():
    # A generalised EM: each gate M-step only has to improve, and L-BFGS-B is kept if it does.
    X, y, G, *_ = _simulate(8, n=500, K=3, gate="linear")
    result = fit_mixture_em(X, y, 3, gate="linear", G=G, n_init=3, random_state=0)
    h = result.history
    assert np.all(np.diff(h) >= -1e-8 * np.abs(h[1:]))


@pytest.mark.parametrize("gate", [None, "linear", "mlp"])
def test_objective_and_likelihood_match_the_model(gate):
    X, y, G, *_ = _simulate(4, n=300, K=3, gate=gate)
    kw = dict(intercept_sd=3.0, weight_sd=2.0, gate_sd=4.0, hidden_sd=1.5, alpha=2.0)
    r = fit_mixture_em(X, y, 3, gate=gate, G=G, gate_hidden=2, n_init=2, random_state=0, **kw)
    mu = r.intercept + X @ r.beta.T
    log_joint = np.log(mixing_weights(r, G, len(y))) + stats.norm.logpdf(y[:, None], mu, r.sigma)
    assert r.log_likelihood == pytest.approx(logsumexp(log_joint, axis=1).sum(), rel=1e-10)
    np.testing.assert_allclose(
        r.responsibilities, np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
    )
    log_prior = -np.sum(r.intercept**2) / (2 * 3.0**2) - np.sum(r.beta**2) / (2 * 2.0**2)
    if gate is None:
        log_prior += (2.0 - 1.0) * np.log(r.weights).sum()
    else:
        log_prior -= (np.sum(r.gate_intercept**2) + np.sum(r.gate_weights**2)) / (2 * 4.0**2)
    if gate == "mlp":
        assert r.gate_hidden_weights.shape == (2, 2) and r.gate_weights.shape == (2, 2)
        hidden = np.sum(r.gate_hidden_weights**2) + np.sum(r.gate_hidden_bias**2)
        log_prior -= hidden / (2 * 1.5**2)
    assert r.objective == pytest.approx(r.log_likelihood + log_prior, rel=1e-10)


@pytest.mark.parametrize("gate", [None, "mlp"])
def test_same_random_state_gives_identical_results(gate):
    X, y, G, *_ = _simulate(9, n=300, K=3, gate=gate)
    kw = dict(gate=gate, G=G, gate_hidden=2, n_init=4)
    first = fit_mixture_em(X, y, 3, random_state=123, **kw)
    second = fit_mixture_em(X, y, 3, random_state=123, **kw)
    from_generator = fit_mixture_em(X, y, 3, random_state=np.random.default_rng(123), **kw)
    for other in (second, from_generator):
        np.testing.assert_array_equal(first.beta, other.beta)
        np.testing.assert_array_equal(first.responsibilities, other.responsibilities)
        np.testing.assert_array_equal(first.history, other.history)


@pytest.mark.parametrize("hidden", [0, 3], ids=["linear", "mlp"])
def test_gate_gradient_matches_finite_differences(hidden):
    rng = np.random.default_rng(0)
    n, g, K = 60, 2, 4
    G = rng.normal(size=(n, g))
    R = rng.dirichlet(np.ones(K), size=n)
    size = (K - 1) * (1 + (hidden or g)) + (hidden * (g + 1))
    args = (G, R, hidden, 1.5, 0.7)

    def value(theta):
        return gate_fit.gate_neg_objective(theta, *args)[0]

    def grad(theta):
        return gate_fit.gate_neg_objective(theta, *args)[1]

    for theta in rng.normal(size=(3, size)):
        assert check_grad(value, grad, theta) < 1e-5 * max(1.0, np.linalg.norm(grad(theta)))


def test_gate_logits_reference_column_and_mixing_rows():
    rng = np.random.default_rng(1)
    G = rng.normal(size=(5, 2))
    c, V = rng.normal(size=2), rng.normal(size=(2, 2))
    eta = gate_logits(G, c, V)
    np.testing.assert_array_equal(eta[:, -1], 0.0)
    np.testing.assert_allclose(eta[:, :-1], G @ V + c)
    Wh, bh, Vh = rng.normal(size=(2, 4)), rng.normal(size=4), rng.normal(size=(4, 2))
    np.testing.assert_allclose(
        gate_logits(G, c, Vh, Wh, bh)[:, :-1], np.tanh(G @ Wh + bh) @ Vh + c
    )
    with pytest.raises(ValueError, match="gate_hidden_bias"):
        gate_logits(G, c, Vh, Wh)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"n_components": 0}, "n_components"),
        ({"n_components": 41}, "n_components"),
        ({"n_components": 2.5}, "n_components"),
        ({"gate": "softmax"}, "gate"),
        ({"gate": "linear"}, "G"),
        ({"gate": "linear", "G": np.ones((39, 2))}, "G"),
        ({"gate": "mlp", "G": np.ones((40, 2))}, "gate_hidden"),
        ({"alpha": 0.0}, "alpha"),
        ({"weight_sd": -1.0}, "weight_sd"),
        ({"sigma_floor": 0.0}, "sigma_floor"),
        ({"n_init": 0}, "n_init"),
        ({"X": np.ones((39, 2))}, "X"),
        ({"X": np.ones(40)}, "X"),
        ({"y": np.ones((40, 1))}, "y"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    args = {"X": np.random.default_rng(0).normal(size=(40, 2)), "y": np.arange(40.0)}
    args["n_components"] = 2
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        fit_mixture_em(args.pop("X"), args.pop("y"), args.pop("n_components"), **args)
