"""IRLS of bayesmoe.numerics.glm against scikit-learn and statsmodels (unweighted, weighted)."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats
from sklearn.linear_model import LogisticRegression, PoissonRegressor

from bayesmoe.numerics.glm import fit_glm, glm_log_density, glm_mean

#: optimisers' agreement: both sides converge to ~1e-8 on these well-conditioned problems
TOL = 1e-5


def _data(seed, n=400, d=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    Z = np.column_stack([np.ones(n), X])
    coef = np.array([0.3, 0.8, -0.5, 0.2])[: d + 1]
    return rng, X, Z, Z @ coef


@pytest.mark.parametrize("weighted", [False, True])
def test_logistic_matches_sklearn(weighted):
    rng, X, Z, eta = _data(0)
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    w = rng.uniform(0.1, 2.0, size=y.size) if weighted else None
    C = 0.5
    sk = LogisticRegression(C=C, tol=1e-12, max_iter=10_000).fit(X, y, sample_weight=w)
    ridge = np.r_[0.0, np.full(X.shape[1], 1 / C)]  # sklearn leaves the intercept free
    res = fit_glm(Z, y, "bernoulli", weights=w, ridge=ridge)
    assert res.converged
    np.testing.assert_allclose(res.coef, np.r_[sk.intercept_, sk.coef_[0]], atol=TOL)


@pytest.mark.parametrize("weighted", [False, True])
def test_poisson_with_offset_matches_sklearn_and_statsmodels(weighted):
    rng, X, Z, eta = _data(1)
    exposure = rng.uniform(0.5, 3.0, size=eta.size)
    y = rng.poisson(exposure * np.exp(eta))
    w = rng.uniform(0.1, 2.0, size=y.size) if weighted else None
    # statsmodels: unpenalised, with the offset
    sw = np.ones(y.size) if w is None else w
    ref = sm.GLM(y, Z, family=sm.families.Poisson(), offset=np.log(exposure), var_weights=sw)
    res = fit_glm(Z, y, "poisson", weights=w, offset=np.log(exposure))
    np.testing.assert_allclose(res.coef, ref.fit(tol=1e-12).params, atol=TOL)
    # scikit-learn: ridge on the slopes, mean deviance (so the precision scales with sum(w))
    a = 0.05
    sk = PoissonRegressor(alpha=a, tol=1e-12, max_iter=10_000).fit(X, y, sample_weight=w)
    pen = fit_glm(Z, y, "poisson", weights=w, ridge=np.r_[0.0, np.full(3, a * sw.sum())])
    np.testing.assert_allclose(pen.coef, np.r_[sk.intercept_, sk.coef_], atol=TOL)


@pytest.mark.parametrize("weighted", [False, True])
def test_binomial_matches_statsmodels(weighted):
    rng, _, Z, eta = _data(2)
    m = rng.integers(1, 8, size=eta.size)
    y = rng.binomial(m, 1 / (1 + np.exp(-eta)))
    w = rng.uniform(0.1, 2.0, size=y.size) if weighted else np.ones(y.size)
    ref = sm.GLM(np.column_stack([y, m - y]), Z, family=sm.families.Binomial(), var_weights=w)
    res = fit_glm(Z, y, "binomial", weights=w, trials=m)
    np.testing.assert_allclose(res.coef, ref.fit(tol=1e-12).params, atol=TOL)


@pytest.mark.parametrize("weighted", [False, True])
def test_negative_binomial_fixed_alpha_matches_statsmodels(weighted):
    rng, _, Z, eta = _data(3)
    alpha = 2.0  # PyMC's: Var = mu + mu^2 / alpha; statsmodels' alpha is 1 / alpha
    mu = np.exp(eta)
    y = rng.negative_binomial(alpha, alpha / (alpha + mu))
    w = rng.uniform(0.1, 2.0, size=y.size) if weighted else np.ones(y.size)
    fam = sm.families.NegativeBinomial(alpha=1 / alpha)
    ref = sm.GLM(y, Z, family=fam, var_weights=w).fit(tol=1e-12)
    res = fit_glm(Z, y, "negative_binomial", weights=w, alpha=alpha)
    np.testing.assert_allclose(res.coef, ref.params, atol=TOL)


def test_negative_binomial_moment_update_recovers_alpha():
    rng, _, Z, eta = _data(4, n=20_000)
    alpha = 3.0
    mu = np.exp(eta)
    y = rng.negative_binomial(alpha, alpha / (alpha + mu))
    res = fit_glm(Z, y, "negative_binomial", alpha=1.0, update_alpha=True)
    assert res.converged
    # moment estimator's sd at n = 20 000 is ~0.1 here; 5 sd
    assert abs(res.alpha - alpha) < 0.5
    np.testing.assert_allclose(res.coef, [0.3, 0.8, -0.5, 0.2], atol=0.06)


def test_log_density_equals_scipy():
    rng = np.random.default_rng(5)
    eta = rng.normal(size=50)
    m = rng.integers(1, 9, size=50)
    p = 1 / (1 + np.exp(-eta))
    yb = rng.binomial(m, p)
    np.testing.assert_allclose(
        glm_log_density("binomial", yb, eta, trials=m), stats.binom.logpmf(yb, m, p)
    )
    np.testing.assert_allclose(
        glm_log_density("bernoulli", yb > 2, eta), stats.bernoulli.logpmf(yb > 2, p)
    )
    yc = rng.poisson(np.exp(eta))
    np.testing.assert_allclose(
        glm_log_density("poisson", yc, eta), stats.poisson.logpmf(yc, np.exp(eta))
    )
    a = 1.7
    mu = np.exp(eta)
    np.testing.assert_allclose(
        glm_log_density("negative_binomial", yc, eta, alpha=a),
        stats.nbinom.logpmf(yc, a, a / (a + mu)),
    )
    np.testing.assert_allclose(glm_mean("binomial", eta, trials=m), m * p)


def test_separable_data_stay_finite_with_a_ridge():
    x = np.r_[-np.ones(20), np.ones(20)]
    y = (x > 0).astype(float)
    Z = np.column_stack([np.ones(40), x])
    res = fit_glm(Z, y, "bernoulli", ridge=[0.0, 1.0])
    assert res.converged and np.all(np.isfinite(res.coef)) and 0 < res.coef[1] < 10


def test_bad_family_named():
    with pytest.raises(ValueError, match="family="):
        fit_glm(np.ones((3, 1)), np.ones(3), "gaussian")
