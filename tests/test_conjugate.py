"""The closed-form Gaussian regression, checked against brute-force linear algebra."""

import numpy as np
import pytest
from scipy import stats

from bayesmoe.numerics.conjugate import (
    ConjugateLinearRegression,
    log_marginal_likelihood,
    sample_conditional_weights,
)


def _data(rng, n=40, p=3):
    X = rng.normal(size=(n, p))
    y = 0.3 + X @ rng.normal(size=p) + 0.5 * rng.normal(size=n)
    return X, y


def test_posterior_matches_textbook_formula(rng):
    X, y = _data(rng)
    m0, sd0, sigma = np.array([0.1, 0, 0, 0]), np.array([2.0, 1, 1, 0.5]), 0.5
    model = ConjugateLinearRegression(m0, sd0, sigma).fit(X, y)
    A = np.column_stack([np.ones(len(y)), X])
    cov = np.linalg.inv(np.diag(sd0**-2) + A.T @ A / sigma**2)
    mean = cov @ (np.diag(sd0**-2) @ m0 + A.T @ y / sigma**2)
    np.testing.assert_allclose(model.mean_, mean, rtol=1e-10)
    np.testing.assert_allclose(model.cov_, cov, rtol=1e-10)


def test_partial_fit_equals_one_shot_fit(rng):
    X, y = _data(rng, n=90)
    one = ConjugateLinearRegression(np.zeros(4), np.ones(4), 0.7).fit(X, y)
    seq = ConjugateLinearRegression(np.zeros(4), np.ones(4), 0.7)
    for chunk in np.array_split(np.arange(90), 7):
        seq.partial_fit(X[chunk], y[chunk])
    np.testing.assert_allclose(seq.mean_, one.mean_, rtol=1e-10)
    np.testing.assert_allclose(seq.cov_, one.cov_, rtol=1e-10)
    assert seq.log_marginal_likelihood() == pytest.approx(one.log_marginal_likelihood(), rel=1e-10)


def test_log_marginal_likelihood_matches_multivariate_normal(rng):
    X, y = _data(rng, n=25)
    m0, sd0, sigma = np.array([0.2, -0.1, 0, 0.3]), np.array([1.5, 0.8, 0.8, 0.3]), 0.6
    A = np.column_stack([np.ones(len(y)), X])
    cov = sigma**2 * np.eye(len(y)) + A @ np.diag(sd0**2) @ A.T
    expected = stats.multivariate_normal(A @ m0, cov).logpdf(y)
    got = log_marginal_likelihood(A.T @ A, A.T @ y, y @ y, len(y), m0, sd0**-2, sigma)
    assert got == pytest.approx(expected, rel=1e-10)


def test_flat_prior_is_limit_of_wide_prior(rng):
    X, y = _data(rng)
    flat = ConjugateLinearRegression(np.zeros(4), np.full(4, np.inf), 0.5).fit(X, y)
    wide = ConjugateLinearRegression(np.zeros(4), np.full(4, 1e8), 0.5).fit(X, y)
    np.testing.assert_allclose(flat.mean_, wide.mean_, rtol=1e-6)
    ols = np.linalg.lstsq(np.column_stack([np.ones(len(y)), X]), y, rcond=None)[0]
    np.testing.assert_allclose(flat.mean_, ols, rtol=1e-8)


def test_conditional_draws_have_posterior_moments(rng):
    X, y = _data(rng)
    A = np.column_stack([np.ones(len(y)), X])
    prec = np.full((20_000, 4), 1.0)
    sigma = np.full(20_000, 0.5)
    draws = sample_conditional_weights(A.T @ A, A.T @ y, np.zeros(4), prec, sigma, rng)
    exact = ConjugateLinearRegression(np.zeros(4), np.ones(4), 0.5).fit(X, y)
    sd = np.sqrt(np.diag(exact.cov_))
    # iid draws: the sample mean has standard error sd / sqrt(S)
    assert np.all(np.abs(draws.mean(0) - exact.mean_) < 4 * sd / np.sqrt(20_000))
    # the sample sd has standard error ~ sd / sqrt(2 S)
    assert np.all(np.abs(draws.std(0) - sd) < 4 * sd / np.sqrt(2 * 20_000))


def test_predict_std_includes_noise(rng):
    X, y = _data(rng)
    model = ConjugateLinearRegression(np.zeros(4), np.ones(4), 0.5).fit(X, y)
    mean, std = model.predict(X[:5], return_std=True)
    assert mean.shape == (5,) and np.all(std > 0.5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(prior_mean=np.zeros(2), prior_sd=np.ones(3), noise_sd=1.0), "same shape"),
        (dict(prior_mean=np.zeros(2), prior_sd=-np.ones(2), noise_sd=1.0), "positive"),
        (dict(prior_mean=np.zeros(2), prior_sd=np.ones(2), noise_sd=0.0), "noise_sd"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConjugateLinearRegression(**kwargs)
