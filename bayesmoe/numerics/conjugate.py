r"""Closed-form Gaussian linear regression (numpy only, no PyMC).

The model, for a design matrix :math:`X` (intercept column included by the caller) is

.. math::

    w \sim N(m_0, \Lambda_0^{-1}), \qquad y \mid w \sim N(X w, \sigma^2 I),

with :math:`\Lambda_0` diagonal. A zero prior precision means a flat prior on that
coefficient. The posterior is :math:`N(m_n, \Lambda_n^{-1})` with

.. math::

    \Lambda_n = \Lambda_0 + X^\top X / \sigma^2, \qquad
    m_n = \Lambda_n^{-1} (\Lambda_0 m_0 + X^\top y / \sigma^2),

which depends on the data only through :math:`X^\top X, X^\top y`. This module is the
test oracle for the fixed-scale interaction model and the engine of the collapsed one:
given draws of the prior scales and :math:`\sigma`, it draws the weights exactly.

Reference: Bishop (2006), *Pattern Recognition and Machine Learning*, secs. 3.3 (the
posterior) and 3.5 (the evidence).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

__all__ = ["ConjugateLinearRegression", "log_marginal_likelihood", "sample_conditional_weights"]


def _batched_posterior(xtx, xty, prior_mean, prior_precision, sigma):
    """Posterior precision (S, d, d) and natural mean (S, d) for S settings at once."""
    prior_precision = np.atleast_2d(prior_precision)
    sigma = np.atleast_1d(np.asarray(sigma, dtype=float))
    inv_var = 1.0 / sigma**2
    S, d = prior_precision.shape
    precision = xtx[None, :, :] * inv_var[:, None, None]
    precision[:, np.arange(d), np.arange(d)] += prior_precision
    natural = (
        prior_precision * np.broadcast_to(prior_mean, (S, d)) + xty[None, :] * inv_var[:, None]
    )
    return precision, natural


def sample_conditional_weights(
    xtx: np.ndarray,
    xty: np.ndarray,
    prior_mean: np.ndarray,
    prior_precision: np.ndarray,
    sigma: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw ``w`` from its Gaussian conditional, one draw per row of ``prior_precision``.

    Parameters
    ----------
    xtx : (d, d) array
    xty : (d,) array
    prior_mean : (d,) or (S, d) array
    prior_precision : (S, d) array
        Diagonal of :math:`\\Lambda_0` for each of S hyperparameter draws (0 = flat).
    sigma : (S,) array
        Noise standard deviation for each draw.
    rng : numpy.random.Generator

    Returns
    -------
    (S, d) array of exact draws from :math:`p(w \\mid \\tau, \\sigma, y)`.
    """
    precision, natural = _batched_posterior(xtx, xty, prior_mean, prior_precision, sigma)
    chol = np.linalg.cholesky(precision)  # Λ_n = L Lᵀ
    mean = np.linalg.solve(precision, natural[..., None])[..., 0]
    z = rng.standard_normal(mean.shape)
    # w = m + L⁻ᵀ z has covariance L⁻ᵀ L⁻¹ = Λ_n⁻¹
    return mean + np.linalg.solve(np.swapaxes(chol, -1, -2), z[..., None])[..., 0]


def log_marginal_likelihood(
    xtx: np.ndarray,
    xty: np.ndarray,
    yty: float,
    n: int,
    prior_mean: np.ndarray,
    prior_precision: np.ndarray,
    sigma: float,
) -> float:
    r""":math:`\log p(y \mid \Lambda_0, \sigma)` with ``w`` integrated out.

    .. math::

        \log p(y) = -\tfrac n2 \log(2\pi\sigma^2) + \tfrac12 \log|\Lambda_0|
            - \tfrac12 \log|\Lambda_n|
            - \tfrac12 \big(y^\top y/\sigma^2 + m_0^\top \Lambda_0 m_0
            - m_n^\top \Lambda_n m_n\big),

    i.e. the density of :math:`y \sim N(X m_0, \sigma^2 I + X \Lambda_0^{-1} X^\top)`.
    Flat coefficients (zero precision) contribute the improper-prior constant 1, so the
    result is defined up to that convention, as for any flat prior.
    """
    prior_mean = np.asarray(prior_mean, float)
    prior_precision = np.asarray(prior_precision, float)
    precision, natural = _batched_posterior(xtx, xty, prior_mean, prior_precision[None], sigma)
    precision, natural = precision[0], natural[0]
    chol = linalg.cholesky(precision, lower=True)
    u = linalg.solve_triangular(chol, natural, lower=True)
    proper = prior_precision > 0
    quad = yty / sigma**2 + np.sum(prior_precision * prior_mean**2) - u @ u
    d_flat = int((~proper).sum())
    return float(
        -0.5 * n * np.log(2 * np.pi * sigma**2)
        + 0.5 * np.sum(np.log(prior_precision[proper]))
        + 0.5 * d_flat * np.log(2 * np.pi)
        - np.sum(np.log(np.diag(chol)))
        - 0.5 * quad
    )


class ConjugateLinearRegression:
    r"""Bayesian linear regression with known noise and a Gaussian prior, updated in closed form.

    Written on sufficient statistics: :meth:`partial_fit` adds a batch's
    :math:`X^\top X, X^\top y`, so fitting in several batches gives exactly the one-shot
    posterior (Bishop 2006, sec. 3.3).

    Parameters
    ----------
    prior_mean : (d,) array
    prior_sd : (d,) array
        Prior standard deviations; ``np.inf`` gives a flat prior on that coefficient.
    noise_sd : float
        Known noise standard deviation :math:`\sigma`.
    fit_intercept : bool
        Prepend a column of ones to ``X`` (its prior is the first entry of the arrays).
    """

    def __init__(self, prior_mean, prior_sd, noise_sd: float, *, fit_intercept: bool = True):
        self.prior_mean = np.asarray(prior_mean, float)
        prior_sd = np.asarray(prior_sd, float)
        if prior_sd.shape != self.prior_mean.shape:
            raise ValueError("prior_mean and prior_sd must have the same shape")
        if np.any(prior_sd <= 0):
            raise ValueError("prior_sd must be positive (np.inf for a flat prior)")
        if not noise_sd > 0:
            raise ValueError(f"noise_sd must be positive, got {noise_sd}")
        self.prior_precision = 1.0 / prior_sd**2
        self.noise_sd = float(noise_sd)
        self.fit_intercept = fit_intercept
        d = self.prior_mean.size
        self.xtx_ = np.zeros((d, d))
        self.xty_ = np.zeros(d)
        self.yty_ = 0.0
        self.n_ = 0

    def _design(self, X):
        X = np.asarray(X, float)
        if X.ndim == 1:
            X = X[None, :]
        if self.fit_intercept:
            X = np.column_stack([np.ones(X.shape[0]), X])
        if X.shape[1] != self.prior_mean.size:
            raise ValueError(
                f"X has {X.shape[1]} columns (with intercept) but the prior has "
                f"{self.prior_mean.size} coefficients"
            )
        return X

    def partial_fit(self, X, y) -> ConjugateLinearRegression:
        """Update the posterior with one more batch of rows."""
        X = self._design(X)
        y = np.asarray(y, float).ravel()
        self.xtx_ = self.xtx_ + X.T @ X
        self.xty_ = self.xty_ + X.T @ y
        self.yty_ += float(y @ y)
        self.n_ += y.size
        return self

    def fit(self, X, y) -> ConjugateLinearRegression:
        """Reset to the prior and update with all rows."""
        d = self.prior_mean.size
        self.xtx_, self.xty_, self.yty_, self.n_ = np.zeros((d, d)), np.zeros(d), 0.0, 0
        return self.partial_fit(X, y)

    @property
    def posterior_precision_(self) -> np.ndarray:
        return _batched_posterior(
            self.xtx_, self.xty_, self.prior_mean, self.prior_precision[None], self.noise_sd
        )[0][0]

    @property
    def mean_(self) -> np.ndarray:
        precision, natural = _batched_posterior(
            self.xtx_, self.xty_, self.prior_mean, self.prior_precision[None], self.noise_sd
        )
        return linalg.solve(precision[0], natural[0], assume_a="pos")

    @property
    def cov_(self) -> np.ndarray:
        return linalg.inv(self.posterior_precision_)

    def predict(self, X, return_std: bool = False):
        """Posterior predictive mean; with ``return_std`` also its sd (noise included)."""
        X = self._design(X)
        mean = X @ self.mean_
        if not return_std:
            return mean
        var = np.einsum("ij,jk,ik->i", X, self.cov_, X) + self.noise_sd**2
        return mean, np.sqrt(var)

    def log_marginal_likelihood(self) -> float:
        """Log evidence of all rows seen so far."""
        return log_marginal_likelihood(
            self.xtx_,
            self.xty_,
            self.yty_,
            self.n_,
            self.prior_mean,
            self.prior_precision,
            self.noise_sd,
        )
