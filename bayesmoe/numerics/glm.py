r"""Weighted, ridge-penalised generalised linear models by iteratively reweighted least squares.

For a design :math:`Z \in \mathbb{R}^{n \times d}` (its intercept column included when the
caller wants one), row weights :math:`w_i \ge 0`, an offset :math:`o_i` and the linear
predictor :math:`\eta_i = z_i^\top \beta + o_i`, :func:`fit_glm` maximises

.. math::

    \ell(\beta) = \sum_i w_i \log p(y_i \mid \eta_i) - \tfrac12 \sum_j \lambda_j \beta_j^2

for the families

* ``"bernoulli"``: :math:`y_i \in \{0, 1\}`, :math:`p = \mathrm{logit}^{-1}(\eta)`;
* ``"binomial"``: :math:`y_i \in \{0, \dots, m_i\}` successes of :math:`m_i` trials,
  logit link;
* ``"poisson"``: :math:`y_i \in \{0, 1, \dots\}`, :math:`\mu = e^\eta` (an exposure
  :math:`E_i` enters as :math:`o_i = \log E_i`);
* ``"negative_binomial"``: :math:`\mu = e^\eta`,
  :math:`\mathrm{Var}(y) = \mu + \mu^2 / \alpha` (PyMC's ``NegativeBinomial(mu, alpha)``),
  with :math:`\alpha` fixed or updated by the weighted method of moments between the
  coefficient steps,
  :math:`\hat\alpha = \sum_i w_i \mu_i^2 / \sum_i w_i [(y_i - \mu_i)^2 - \mu_i]`.

Each iteration is a Newton step on :math:`\ell` (Fisher scoring, the same for the
canonical links; for the negative binomial the expected information
:math:`w_i \mu_i / (1 + \mu_i / \alpha)`), i.e. the weighted ridge least-squares solve
:math:`(Z^\top W Z + \Lambda)\beta = Z^\top W u` on the working response
:math:`u = \eta - o + (y - \mu) / V'(\eta)`. A step that lowers :math:`\ell` is halved
until it does not, so :math:`\ell` never decreases (for a fixed :math:`\alpha`). The
mixtures' EM start uses it as the M-step of each expert, with the responsibilities as
the weights (McCullagh & Nelder 1989, ch. 2; Green 1984; Jordan & Jacobs 1994 for its
use inside EM). numpy and scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["GLM_FAMILIES", "GLMResult", "fit_glm", "glm_log_density", "glm_mean"]

#: the families :func:`fit_glm` fits (logit link for the first two, log link after)
GLM_FAMILIES = ("bernoulli", "binomial", "poisson", "negative_binomial")
_LOGIT = ("bernoulli", "binomial")
#: bounds of the linear predictor inside IRLS (exp overflow / certain probabilities)
_ETA_BOUND = 30.0
#: range of the negative binomial's moment update of alpha
_ALPHA_RANGE = (1e-3, 1e6)
_HALVINGS = 30


@dataclass(frozen=True)
class GLMResult:
    """A penalised GLM fit: ``coef`` (d,), ``alpha`` (negative binomial, else None), the
    penalised weighted log-likelihood ``objective``, ``n_iter`` and ``converged``."""

    coef: np.ndarray
    alpha: float | None
    objective: float
    n_iter: int
    converged: bool


def _check_family(family: str) -> str:
    if family not in GLM_FAMILIES:
        raise ValueError(f"family={family!r} is not a GLM family; choose one of {GLM_FAMILIES}")
    return family


def glm_mean(family: str, eta, *, trials=None) -> np.ndarray:
    r""":math:`E[y \mid \eta]`: :math:`m\,\mathrm{logit}^{-1}(\eta)` or :math:`e^\eta`
    (``eta`` includes any offset)."""
    family = _check_family(family)
    eta = np.asarray(eta, float)
    if family in _LOGIT:
        m = 1.0 if trials is None else np.asarray(trials, float)
        return m * special.expit(eta)
    return np.exp(np.minimum(eta, 700.0))


def glm_log_density(family: str, y, eta, *, trials=None, alpha=None) -> np.ndarray:
    r"""Elementwise :math:`\log p(y \mid \eta)` (``eta`` includes any offset; broadcasting).

    Normalised densities (binomial coefficients and :math:`\log y!` included), so they
    equal the PyMC distributions' log densities.
    """
    family = _check_family(family)
    y = np.asarray(y, float)
    eta = np.asarray(eta, float)
    if family in _LOGIT:
        m = 1.0 if trials is None else np.asarray(trials, float)
        # y log p + (m - y) log(1 - p), with log p = -log(1 + e^-eta)
        out = -y * np.logaddexp(0.0, -eta) - (m - y) * np.logaddexp(0.0, eta)
        if family == "binomial":
            log_choose = special.gammaln(m + 1) - special.gammaln(m - y + 1)
            out = out + log_choose - special.gammaln(y + 1)
        return out
    if family == "poisson":
        return y * eta - np.exp(np.minimum(eta, 700.0)) - special.gammaln(y + 1)
    a = np.asarray(alpha, float)
    log_mu_a = np.logaddexp(eta, np.log(a))  # log(mu + alpha)
    return (
        special.gammaln(y + a)
        - special.gammaln(a)
        - special.gammaln(y + 1)
        + a * (np.log(a) - log_mu_a)
        + y * (eta - log_mu_a)
    )


def _working(family: str, y, eta, m, alpha):
    """IRLS weight :math:`V'(\\eta)` per unit row weight and the score per row."""
    if family in _LOGIT:
        p = special.expit(eta)
        return np.maximum(m * p * (1.0 - p), 1e-12), y - m * p
    mu = np.exp(eta)
    if family == "poisson":
        return np.maximum(mu, 1e-12), y - mu
    scale = 1.0 + mu / alpha
    return np.maximum(mu / scale, 1e-12), (y - mu) / scale


def _moment_alpha(y, mu, w) -> float:
    excess = np.sum(w * ((y - mu) ** 2 - mu))
    if excess <= 0:
        return _ALPHA_RANGE[1]
    return float(np.clip(np.sum(w * mu**2) / excess, *_ALPHA_RANGE))


def _penalty(ridge, d: int) -> np.ndarray:
    lam = np.broadcast_to(np.asarray(ridge, float), (d,)).copy()
    if np.any(lam < 0) or not np.all(np.isfinite(lam)):
        raise ValueError("ridge must be finite and >= 0")
    return lam


def fit_glm(
    Z,
    y,
    family: str,
    *,
    weights=None,
    trials=None,
    offset=None,
    ridge=0.0,
    alpha: float | None = None,
    update_alpha: bool = False,
    coef=None,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> GLMResult:
    r"""Maximise the penalised weighted log-likelihood of a GLM by IRLS (see the module).

    Parameters
    ----------
    Z : (n, d) array
        Design, with its intercept column if any (``ridge`` 0 there leaves it unpenalised).
    y : (n,) array
        Responses in the family's support (not checked here; the builders check them).
    family : {"bernoulli", "binomial", "poisson", "negative_binomial"}
    weights : (n,) array, optional
        Row weights :math:`w_i \ge 0` (EM responsibilities); default 1.
    trials : (n,) array, optional
        Binomial trials :math:`m_i` (default 1).
    offset : (n,) array, optional
        :math:`o_i` added to the linear predictor (the log exposure of count models).
    ridge : float or (d,) array
        Prior precisions :math:`\lambda_j` (a Gaussian prior :math:`N(0, 1/\lambda_j)`).
    alpha : float, optional
        The negative binomial's dispersion (required for it; the start of the update).
    update_alpha : bool
        Update ``alpha`` by the weighted method of moments after each coefficient step.
    coef : (d,) array, optional
        Start (default: zero slopes at the weighted mean response's link).
    max_iter, tol
        At most ``max_iter`` Newton steps; stop when the objective changes by at most
        ``tol`` relative to :math:`\max(1, |\ell|)`.

    Returns
    -------
    GLMResult
    """
    family = _check_family(family)
    Z = np.asarray(Z, float)
    y = np.asarray(y, float)
    n, d = Z.shape
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    m = np.ones(n) if trials is None else np.asarray(trials, float)
    o = np.zeros(n) if offset is None else np.asarray(offset, float)
    lam = _penalty(ridge, d)
    if family == "negative_binomial":
        if alpha is None or not alpha > 0:
            raise ValueError("the negative binomial needs a positive alpha")
        alpha = float(alpha)
    else:
        alpha, update_alpha = None, False
    tr = m if family == "binomial" else None

    def objective(beta, a):
        eta = np.clip(Z @ beta + o, -_ETA_BOUND, _ETA_BOUND)
        ll = glm_log_density(family, y, eta, trials=tr, alpha=a)
        return float(np.sum(w * ll) - 0.5 * np.sum(lam * beta**2))

    beta = np.zeros(d) if coef is None else np.asarray(coef, float).copy()
    if coef is None and d:
        beta[:] = np.linalg.lstsq(Z, _start_response(family, y, m, w, o), rcond=None)[0]
    current = objective(beta, alpha)
    converged, n_iter = False, 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        eta = np.clip(Z @ beta + o, -_ETA_BOUND, _ETA_BOUND)
        v, score = _working(family, y, eta, m if family in _LOGIT else None, alpha)
        W = w * v
        grad = Z.T @ (w * score) - lam * beta
        H = (Z * W[:, None]).T @ Z + np.diag(lam)
        try:
            step = np.linalg.solve(H + 1e-10 * np.eye(d), grad)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(H, grad, rcond=None)[0]
        for _ in range(_HALVINGS):
            new = objective(beta + step, alpha)
            if new >= current - 1e-12 * max(1.0, abs(current)):
                break
            step = step / 2
        else:
            converged = True  # no ascent direction left at this precision
            break
        beta = beta + step
        previous, current = current, new
        if update_alpha:
            mu = glm_mean(family, np.clip(Z @ beta + o, -_ETA_BOUND, _ETA_BOUND))
            alpha = _moment_alpha(y, mu, w)
            current = objective(beta, alpha)
        if abs(current - previous) <= tol * max(1.0, abs(current)) and not update_alpha:
            converged = True
            break
        if update_alpha and np.max(np.abs(step)) <= 1e-8:
            converged = True
            break
    return GLMResult(coef=beta, alpha=alpha, objective=current, n_iter=n_iter, converged=converged)


def _start_response(family: str, y, m, w, o) -> np.ndarray:
    """The link of the (slightly shrunk) weighted mean response, as a constant start."""
    if family in _LOGIT:
        p = (np.sum(w * y) + 0.5) / (np.sum(w * m) + 1.0)
        return np.full(y.shape, np.log(p / (1 - p)))
    mean = (np.sum(w * y) + 0.1) / (np.sum(w * np.exp(o)) + 0.1)
    return np.full(y.shape, np.log(mean))
