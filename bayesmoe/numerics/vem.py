r"""Closed-form variational EM for mixtures of regressions and gated mixtures of experts.

The model (seed ``002``, eqs. 9-16 and 18-23), for an expert design :math:`Z_i = [1, x_i]`
of width :math:`p = d + 1` and :math:`K` experts, is

.. math::

    y_i \mid z_i = k &\sim N(\theta_k^\top Z_i,\ \sigma_k^2), \qquad
    \theta_k = [b_k, w_k] \sim N(\mu_0, \mathrm{diag}(v)), \\
    p(z_i = k) &= \pi_k,\ \pi \sim \mathrm{Dirichlet}(\alpha)
        \quad\text{or}\quad \pi_k(x_i) = \mathrm{softmax}(\eta(G_i))_k,

with :math:`v = (s_b^2, \tau^2_{g(1)}, \dots, \tau^2_{g(d)})`: a fixed intercept variance and
one prior variance per group of slope columns (e.g. base effects and interactions), shared
by all experts, as in the PyMC builders.

Mean-field family and updates
-----------------------------
:math:`q(z, \theta, \pi) = \prod_i q(z_i) \prod_k N(\theta_k \mid m_k, S_k)\,
\mathrm{Dir}(\pi \mid \alpha + \gamma)`; the noise sds :math:`\sigma_k`, the prior variances
:math:`\tau_g^2` and the gate parameters are point estimates (the seed's M-step), recorded
as such by the callers. One iteration is coordinate ascent on the evidence lower bound
:math:`\mathcal{L}`:

* :math:`q(\theta_k)`: :math:`S_k^{-1} = \mathrm{diag}(v)^{-1} + \sigma_k^{-2} \sum_i r_{ik}
  Z_i Z_i^\top`, :math:`m_k = S_k(\mathrm{diag}(v)^{-1}\mu_0 + \sigma_k^{-2}\sum_i r_{ik}
  Z_i y_i)` (eq. 15);
* :math:`\sigma_k^2 = \sum_i r_{ik} e_{ik} / \sum_i r_{ik}` with the expected squared
  residual :math:`e_{ik} = (y_i - m_k^\top Z_i)^2 + Z_i^\top S_k Z_i` (eq. 16);
* :math:`\tau_g^2 = \frac{1}{K |g|}\sum_k \sum_{j \in g} (m_{kj}^2 + S_{k,jj})` (type-II
  maximum likelihood of the shared scale, the seed's :math:`A = E\,ww^\top` restricted to
  the builders' diagonal, grouped prior);
* :math:`q(\pi) = \mathrm{Dir}(\alpha + \gamma)`, :math:`\gamma_k = \sum_i r_{ik}`; or, for a
  gate, a warm-started L-BFGS-B step on :math:`\sum_{ik} r_{ik}\log\pi_k(x_i) + \log p(V)`
  (eq. 23's :math:`\arg\max_V`, with the builders' Gaussian prior on :math:`V`);
* :math:`q(z_i)`: :math:`r_{ik} \propto \exp\{E\log\pi_{ik} - \log\sigma_k -
  e_{ik}/(2\sigma_k^2)\}`, with :math:`E\log\pi_k = \psi(\alpha_k + \gamma_k) -
  \psi(\sum_j \alpha_j + \gamma_j)` (eq. 15).

Each step maximises :math:`\mathcal{L}` (plus the gate's log prior) over its block with the
others fixed, so the objective never decreases; the tests check this for the mixture of
regressions. Restarts use the partitions of :mod:`bayesmoe.numerics.em`; with many rows
they are screened on a subsample and only the best are refined on all rows.

This module depends on numpy and scipy only (and reuses :mod:`bayesmoe.numerics.em`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import digamma, gammaln, softmax

from bayesmoe.numerics import em as _em
from bayesmoe.numerics.blas import single_threaded_blas
from bayesmoe.numerics.lse import logsumexp_last

__all__ = ["VEMResult", "fit_mixture_vem", "sample_coefficients"]

_LOG_2PI = float(np.log(2.0 * np.pi))
#: Starts are screened to this relative change, and only the best ``_N_REFINE`` are run on
#: to ``tol`` (on all rows when screening used a subsample).
_SCREEN_TOL = 1e-5
_N_REFINE = 2
#: Components with less responsibility mass than this keep their previous sigma.
_MIN_MASS = 1e-8
#: Smallest prior variance of a slope group (type-II ML can shrink a scale to zero).
_MIN_PRIOR_VAR = 1e-10
#: A component holding less than this share of the rows is reported as empty.
EMPTY_SHARE = 1e-3


@dataclass
class VEMResult:
    r"""Variational posterior of a mixture of regressions / mixture of experts.

    Attributes
    ----------
    mean : (K, p) array
        :math:`m_k`, means of :math:`q(\theta_k)`, columns ``[intercept, slopes...]``.
    cov : (K, p, p) array
        :math:`S_k`, covariances of :math:`q(\theta_k)`.
    sigma : (K,) array
        Point estimates of the noise sds (all equal when ``shared_noise``).
    prior_var : (p,) array
        Prior variances :math:`v` at the optimum (learned per slope group).
    dirichlet : (K,) array or None
        Concentrations :math:`\alpha + \gamma` of :math:`q(\pi)` (no gate), else None.
    gate_intercept, gate_weights, gate_hidden_weights, gate_hidden_bias : arrays or None
        Point estimates of the gate (see :func:`bayesmoe.numerics.em.gate_logits`).
    responsibilities : (n, K) array
        :math:`q(z_i = k)`.
    elbo : float
        The lower bound (plus the gate's log prior) at the result.
    history : array
        The objective after each iteration of the winning start (on all rows).
    n_iter : int
        Iterations of the winning start on all rows.
    converged : bool
        Whether the relative change fell below ``tol`` before ``max_iter``.
    empty : list of int
        Components whose responsibility mass is below ``EMPTY_SHARE`` of the rows.
    """

    mean: np.ndarray
    cov: np.ndarray
    sigma: np.ndarray
    prior_var: np.ndarray
    dirichlet: np.ndarray | None
    gate_intercept: np.ndarray | None
    gate_weights: np.ndarray | None
    gate_hidden_weights: np.ndarray | None
    gate_hidden_bias: np.ndarray | None
    responsibilities: np.ndarray
    elbo: float
    history: np.ndarray
    n_iter: int
    converged: bool
    empty: list[int] = field(default_factory=list)

    # The EMResult-style view used for chain starts and relabelling pivots.
    @property
    def intercept(self) -> np.ndarray:
        return self.mean[:, 0]

    @property
    def beta(self) -> np.ndarray:
        return self.mean[:, 1:]

    @property
    def weights(self) -> np.ndarray | None:
        if self.dirichlet is None:
            return None
        return self.dirichlet / self.dirichlet.sum()

    @property
    def last_change(self) -> float:
        return float(self.history[-1] - self.history[-2]) if len(self.history) > 1 else 0.0


@dataclass
class _Settings:
    K: int
    gate: str | None
    hidden: int
    shared_noise: bool
    alpha: np.ndarray  # (K,)
    prior_mean: np.ndarray  # (p,)
    prior_var0: np.ndarray  # (p,) initial (or fixed) prior variances
    groups: np.ndarray  # (p,) group id per column, -1 = fixed variance (intercept)
    learn: np.ndarray  # (n_groups,) whether each group's variance is learned
    gate_sd: float
    hidden_sd: float
    floor: float
    sigma_fixed: np.ndarray | None


@dataclass
class _State:
    mean: np.ndarray
    cov: np.ndarray
    sigma: np.ndarray
    prior_var: np.ndarray
    R: np.ndarray
    conc: np.ndarray | None = None  # Dirichlet concentrations of q(pi) (no gate)
    gate: _em._Params | None = None  # c, V, Wh, bh of the gate (coef unused)
    history: list[float] = field(default_factory=list)
    converged: bool = False

    @property
    def objective(self) -> float:
        return self.history[-1]


# --------------------------------------------------------------------------- updates


def _update_coefficients(Z, y, state: _State, s: _Settings) -> None:
    """Gaussian :math:`q(\\theta_k)` given responsibilities, noise and prior (eq. 15)."""
    prior_prec = 1.0 / state.prior_var
    for k in range(s.K):
        rz = Z * state.R[:, k, None]
        prec = Z.T @ rz / state.sigma[k] ** 2
        prec[np.diag_indices_from(prec)] += prior_prec
        rhs = prior_prec * s.prior_mean + rz.T @ y / state.sigma[k] ** 2
        chol = np.linalg.cholesky(prec)
        inv_chol = np.linalg.solve(chol, np.eye(len(rhs)))
        cov = inv_chol.T @ inv_chol
        state.cov[k] = 0.5 * (cov + cov.T)
        state.mean[k] = state.cov[k] @ rhs


def _expected_sq_residuals(Z, y, state: _State) -> np.ndarray:
    """:math:`e_{ik} = (y_i - m_k^\\top Z_i)^2 + Z_i^\\top S_k Z_i`, shape (n, K)."""
    resid = y[:, None] - Z @ state.mean.T
    # (Z S_k) * Z summed over columns: one BLAS product per expert (einsum was 10x slower).
    quad = np.stack([np.einsum("ij,ij->i", Z @ S, Z) for S in state.cov], axis=1)
    return resid**2 + quad


def _update_sigma(E: np.ndarray, state: _State, s: _Settings) -> None:
    if s.sigma_fixed is not None:
        state.sigma[:] = s.sigma_fixed
        return
    floor2 = s.floor**2
    if s.shared_noise:
        state.sigma[:] = np.sqrt(max(float(np.sum(state.R * E)) / E.shape[0], floor2))
        return
    mass = state.R.sum(axis=0)
    for k in range(s.K):
        if mass[k] > _MIN_MASS:
            # The objective is unimodal in sigma_k^2, so the clipped maximiser is the
            # maximiser under the floor.
            state.sigma[k] = np.sqrt(max(float(state.R[:, k] @ E[:, k]) / mass[k], floor2))


def _update_prior_var(state: _State, s: _Settings) -> None:
    """Type-II ML of the shared slope variances: mean second moment over each group."""
    if not s.learn.any():
        return
    second = state.mean**2 + np.diagonal(state.cov, axis1=1, axis2=2)  # (K, p)
    for g in np.flatnonzero(s.learn):
        cols = s.groups == g
        state.prior_var[cols] = max(float(second[:, cols].mean()), _MIN_PRIOR_VAR)


def _expected_log_pi(state: _State, s: _Settings, G) -> np.ndarray:
    """(1, K) or (n, K) :math:`E_q \\log \\pi_{ik}`."""
    if s.gate is None:
        conc = state.conc
        return (digamma(conc) - digamma(conc.sum()))[None, :]
    p = state.gate
    eta = _em.gate_logits(G, p.c, p.V, p.Wh, p.bh)
    return _em._log_softmax_rows(np.asfortranarray(eta))


def _update_gate(G, state: _State, s: _Settings, maxiter: int) -> None:
    em_settings = _em_settings(s)
    _em._update_gate(state.gate, G, state.R, em_settings, maxiter)


def _e_step(Z, y, G, state: _State, s: _Settings) -> float:
    """Update :math:`q(z)` and return the objective at the new state."""
    E = _expected_sq_residuals(Z, y, state)
    log_pi = _expected_log_pi(state, s, G)
    a = log_pi - 0.5 * _LOG_2PI - np.log(state.sigma) - 0.5 * E / state.sigma**2
    log_norm = logsumexp_last(a)
    state.R = np.exp(a - log_norm[:, None])
    # With r at its optimum, E[log p(y, z | .)] + H[q(z)] = sum_i logsumexp_k a_ik.
    return float(log_norm.sum()) + _rest_of_bound(state, s)


def _rest_of_bound(state: _State, s: _Settings) -> float:
    r"""The terms of :math:`\mathcal{L}` that do not involve :math:`q(z)` directly."""
    out = 0.0
    v = state.prior_var
    for k in range(s.K):
        dev = state.mean[k] - s.prior_mean
        # E_q log N(theta_k | mu_0, diag v) + entropy of N(m_k, S_k)
        out += -0.5 * float(np.sum(np.log(2 * np.pi * v) + (dev**2 + np.diag(state.cov[k])) / v))
        _, logdet = np.linalg.slogdet(state.cov[k])
        out += 0.5 * (logdet + len(dev) * (1.0 + _LOG_2PI))
    if s.gate is None:
        # E log p(pi) - E log q(pi), with q(pi) = Dir(conc)
        conc = state.conc
        e_log_pi = digamma(conc) - digamma(conc.sum())
        log_prior = gammaln(s.alpha.sum()) - gammaln(s.alpha).sum()
        log_q = gammaln(conc.sum()) - gammaln(conc).sum()
        out += log_prior - log_q + float(((s.alpha - conc) * e_log_pi).sum())
    else:
        p = state.gate
        out -= (p.c @ p.c + np.sum(p.V**2)) / (2.0 * s.gate_sd**2)
        if p.Wh is not None:
            out -= (np.sum(p.Wh**2) + p.bh @ p.bh) / (2.0 * s.hidden_sd**2)
    return out


def _iterate(Z, y, G, state: _State, s: _Settings, gate_maxiter: int) -> float:
    """One coordinate-ascent sweep; returns the objective after it."""
    _update_coefficients(Z, y, state, s)
    _update_sigma(_expected_sq_residuals(Z, y, state), state, s)
    _update_prior_var(state, s)
    if s.gate is None:
        state.conc = s.alpha + state.R.sum(axis=0)  # q(pi) = Dir(alpha + gamma), eq. 15
    else:
        _update_gate(G, state, s, gate_maxiter)
    return _e_step(Z, y, G, state, s)


def _run(Z, y, G, state: _State, s: _Settings, max_iter: int, tol: float) -> _State:
    while len(state.history) - 1 < max_iter:
        state.history.append(_iterate(Z, y, G, state, s, _em._GATE_INNER_MAXITER))
        if _em._small_change(state.history, tol):
            state.converged = True
            break
    return state


# --------------------------------------------------------------------------- starts


def _em_settings(s: _Settings) -> _em._Settings:
    return _em._Settings(
        K=s.K,
        gate=s.gate,
        hidden=s.hidden,
        shared_noise=s.shared_noise,
        alpha=float(np.mean(s.alpha)),
        prior_precision=1.0 / s.prior_var0,
        gate_sd=s.gate_sd,
        hidden_sd=s.hidden_sd,
        floor=s.floor,
    )


def _initial_state(Z, y, G, R, s: _Settings, rng, gate: _em._Params | None = None) -> _State:
    """A state whose responsibilities are ``R``; coefficients, noise and gate fitted to them."""
    K, p = s.K, Z.shape[1]
    sd0 = max(float(y.std()), s.floor)
    state = _State(
        mean=np.zeros((K, p)),
        cov=np.zeros((K, p, p)),
        sigma=np.full(K, sd0) if s.sigma_fixed is None else s.sigma_fixed.copy(),
        prior_var=s.prior_var0.copy(),
        R=np.asarray(R, float),
    )
    if s.gate is None:
        state.conc = s.alpha + state.R.sum(axis=0)
    else:
        if gate is None:
            em_params = _em._initial_params(Z, y, G, state.R, _em_settings(s), rng)
            gate = _em._Params(
                coef=em_params.coef, sigma=em_params.sigma,
                c=em_params.c, V=em_params.V, Wh=em_params.Wh, bh=em_params.bh,
            )  # fmt: skip
        state.gate = _em._Params(
            coef=np.zeros((K, p)), sigma=np.ones(K),
            c=gate.c.copy(), V=gate.V.copy(),
            Wh=None if gate.Wh is None else gate.Wh.copy(),
            bh=None if gate.bh is None else gate.bh.copy(),
        )  # fmt: skip
    # Twice, so that the noise used to weigh the data against the prior is data-based.
    for _ in range(2):
        _update_coefficients(Z, y, state, s)
        _update_sigma(_expected_sq_residuals(Z, y, state), state, s)
    state.history.append(_e_step(Z, y, G, state, s))
    return state


def _rerun_on(Z, y, G, state: _State, s: _Settings) -> _State:
    """Continue a subsample's state on other rows: keep q(theta), noise, scales and gate."""
    new = _State(
        mean=state.mean.copy(),
        cov=state.cov.copy(),
        sigma=state.sigma.copy(),
        prior_var=state.prior_var.copy(),
        R=np.zeros((len(y), s.K)),
        gate=state.gate,
    )
    if s.gate is None:  # the subsample's counts, scaled up to all rows
        new.conc = s.alpha + len(y) * state.R.mean(axis=0)
    new.history.append(_e_step(Z, y, G, new, s))
    return new


def _start_gate_from_em(point, s: _Settings, K: int, p: int) -> _em._Params | None:
    if s.gate is None or point is None or point.gate_intercept is None:
        return None
    return _em._Params(
        coef=np.zeros((K, p)), sigma=np.ones(K),
        c=np.asarray(point.gate_intercept, float), V=np.asarray(point.gate_weights, float),
        Wh=None if point.gate_hidden_weights is None else np.asarray(point.gate_hidden_weights),
        bh=None if point.gate_hidden_bias is None else np.asarray(point.gate_hidden_bias),
    )  # fmt: skip


def _point_responsibilities(point, Z, y, G, s: _Settings) -> np.ndarray:
    """E-step of an EM point estimate (any object with intercept, beta, sigma, ...)."""
    coef = np.column_stack([point.intercept, point.beta])
    mu = Z @ coef.T
    if s.gate is None:
        log_pi = np.log(np.maximum(np.asarray(point.weights, float), 1e-300))[None, :]
    else:
        eta = _em.gate_logits(
            G,
            point.gate_intercept,
            point.gate_weights,
            point.gate_hidden_weights,
            point.gate_hidden_bias,
        )
        log_pi = _em._log_softmax_rows(eta)
    sig = np.asarray(point.sigma, float)
    a = log_pi - np.log(sig) - 0.5 * ((y[:, None] - mu) / sig) ** 2
    return softmax(a, axis=1)


# --------------------------------------------------------------------------- driver


def fit_mixture_vem(
    X: np.ndarray | None,
    y: np.ndarray,
    n_components: int,
    *,
    gate: str | None = None,
    G: np.ndarray | None = None,
    gate_hidden: int = 0,
    shared_noise: bool = False,
    alpha: float | np.ndarray = 1.0,
    intercept_mean: float = 0.0,
    intercept_sd: float = 10.0,
    weight_sd: float | np.ndarray = 1.0,
    weight_groups: np.ndarray | None = None,
    learn_scales: bool | np.ndarray = True,
    gate_sd: float = 5.0,
    hidden_sd: float = 2.0,
    sigma: float | np.ndarray | None = None,
    sigma_floor: float | None = None,
    n_init: int = 10,
    max_iter: int = 1000,
    tol: float = 1e-8,
    screen_rows: int = 5000,
    init=None,
    random_state: int | np.random.Generator | None = None,
) -> VEMResult:
    r"""Variational EM for a mixture of regressions or a gated mixture of experts.

    Maximises the evidence lower bound of the model in the module docstring over
    :math:`q(z)\,q(\theta)\,q(\pi)` and the point parameters, from several starts.

    Parameters
    ----------
    X : (n, d) array or None
        Expert design without an intercept column (None or ``d = 0``: Gaussian mixture).
    y : (n,) array
    n_components : int
        :math:`K`, between 1 and n.
    gate : {None, "linear", "mlp"}
        Dirichlet weights, or a softmax gate on ``G`` (reference expert last).
    G : (n, g) array, optional
        Gate design (required with a gate).
    gate_hidden : int
        Hidden units of the mlp gate.
    shared_noise : bool
        One noise sd for all experts.
    alpha : float or (K,) array
        Dirichlet prior concentration.
    intercept_mean, intercept_sd : float
        Prior of the intercepts, :math:`b_k \sim N(\mu_b, s_b^2)`.
    weight_sd : float or (n_groups,) array
        Prior sd of the slopes: the start of the learned scales, or their fixed value with
        ``learn_scales=False``; one value per group of ``weight_groups``.
    weight_groups : (d,) int array, optional
        Group of each slope column (0, 1, ...); columns in a group share a learned prior
        variance. Default: one group.
    learn_scales : bool or (n_groups,) bool array
        Learn each group's variance by type-II maximum likelihood (else keep ``weight_sd``).
    gate_sd, hidden_sd : float
        Gaussian prior sds of the gate's output layer and of the mlp's hidden layer.
    sigma : float or (K,) array, optional
        Fixed noise sds (not estimated).
    sigma_floor : float, optional
        Lower bound of the noise sds; default ``1e-3 * std(y)``.
    n_init : int
        Number of starts (the partitions of :func:`bayesmoe.numerics.em.fit_mixture_em`).
    max_iter : int
        Maximum iterations on all rows.
    tol : float
        Stop when the objective changes by less than ``tol * max(1, |objective|)``.
    screen_rows : int
        With more rows than this, starts are screened on a random subsample of this size
        and the best are refined on all rows.
    init : EMResult-like, optional
        An extra first start (e.g. the MAP-EM estimate): anything with ``intercept``,
        ``beta``, ``sigma`` and ``weights`` or the gate attributes.
    random_state : int or numpy.random.Generator, optional

    Returns
    -------
    VEMResult
        The start with the highest objective.
    """
    X, y, G, K = _em.check_problem(X, y, n_components, gate, G, gate_hidden)
    n = y.size
    gate = gate if K > 1 else None
    G = G if gate is not None else None
    d = X.shape[1]
    alpha = np.broadcast_to(np.asarray(alpha, float), (K,)).copy()
    if not np.all(np.isfinite(alpha) & (alpha > 0)):
        raise ValueError(f"alpha must be positive and finite, got {alpha}")
    groups = np.zeros(d, int) if weight_groups is None else np.asarray(weight_groups, int)
    if groups.shape != (d,) or np.any(groups < 0):
        raise ValueError(f"weight_groups must be {d} non-negative group ids, got {groups}")
    n_groups = int(groups.max()) + 1 if d else 0
    wsd = np.broadcast_to(np.asarray(weight_sd, float), (max(n_groups, 1),))
    if not np.all(np.isfinite(wsd) & (wsd > 0)):
        raise ValueError(f"weight_sd must be positive and finite, got {weight_sd}")
    intercept_sd = _em._positive(intercept_sd, "intercept_sd")
    gate_sd = _em._positive(gate_sd, "gate_sd")
    hidden_sd = _em._positive(hidden_sd, "hidden_sd")
    if sigma_floor is None:
        sigma_floor = max(1e-3 * float(y.std()), 1e-12)
    sigma_fixed = None
    if sigma is not None:
        sigma_fixed = np.broadcast_to(np.asarray(sigma, float), (K,)).copy()
        if not np.all(np.isfinite(sigma_fixed) & (sigma_fixed > 0)):
            raise ValueError(f"sigma must be positive and finite, got {sigma}")
    if int(n_init) < 1:
        raise ValueError(f"n_init must be >= 1, got {n_init!r}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    rng = np.random.default_rng(random_state)

    s = _Settings(
        K=K,
        gate=gate,
        hidden=int(gate_hidden) if gate == "mlp" else 0,
        shared_noise=bool(shared_noise),
        alpha=alpha,
        prior_mean=np.r_[float(intercept_mean), np.zeros(d)],
        prior_var0=np.r_[intercept_sd**2, wsd[groups] ** 2] if d else np.r_[intercept_sd**2],
        groups=np.r_[-1, groups],
        learn=np.broadcast_to(np.asarray(learn_scales, bool), (n_groups,)).copy(),
        gate_sd=gate_sd,
        hidden_sd=hidden_sd,
        floor=float(sigma_floor),
        sigma_fixed=sigma_fixed,
    )
    Z = np.column_stack([np.ones(n), X])
    with single_threaded_blas():
        best = _multi_start(Z, y, G, s, int(n_init), int(max_iter), float(tol), init, rng,
                            int(screen_rows))  # fmt: skip
    return _result(best, s, n)


def _multi_start(Z, y, G, s, n_init, max_iter, tol, init, rng, screen_rows) -> _State:
    n = y.size
    rows = np.arange(n)
    if n > screen_rows:
        rows = np.sort(rng.choice(n, screen_rows, replace=False))
    Zs, ys, Gs = Z[rows], y[rows], None if G is None else G[rows]
    screen_tol = max(tol, _SCREEN_TOL)
    states = []
    if init is not None and s.K > 1:
        R0 = _point_responsibilities(init, Zs, ys, Gs, s)
        gate0 = _start_gate_from_em(init, s, s.K, Z.shape[1])
        states.append(_initial_state(Zs, ys, Gs, R0, s, rng, gate0))
    kinds = _em._start_kinds(n_init + 1, s.gate is not None) if s.K > 1 else ["one"]
    if init is not None:
        # The given point is already the best of a multi-start EM that began with greedy
        # growth, by far the costliest start kind; the other kinds add diversity.
        kinds = [k for k in kinds if k != "greedy"]
    em_settings = _em_settings(s)
    for kind in kinds[: max(n_init - len(states), 1) if s.K > 1 else 1]:
        if s.K == 1:
            labels = np.zeros(len(ys), int)
        else:
            labels = _em._initial_labels(kind, Zs, ys, Gs, s.K, em_settings, rng)
        states.append(_initial_state(Zs, ys, Gs, np.eye(s.K)[labels], s, rng))
    for st in states:
        _run(Zs, ys, Gs, st, s, max_iter, screen_tol)
    order = sorted(range(len(states)), key=lambda i: -states[i].objective)
    best = None
    for i in order[:_N_REFINE]:
        st = states[i] if len(rows) == n else _rerun_on(Z, y, G, states[i], s)
        if len(rows) == n:
            st.converged = False
        st = _run(Z, y, G, st, s, max_iter, tol)
        if best is None or st.objective > best.objective:
            best = st
    return best


def _result(st: _State, s: _Settings, n: int) -> VEMResult:
    mass = st.R.sum(axis=0)
    gate = st.gate
    return VEMResult(
        mean=st.mean.copy(),
        cov=st.cov.copy(),
        sigma=st.sigma.copy(),
        prior_var=st.prior_var.copy(),
        dirichlet=None if st.conc is None else st.conc.copy(),
        gate_intercept=None if gate is None else gate.c.copy(),
        gate_weights=None if gate is None else gate.V.copy(),
        gate_hidden_weights=None if gate is None or gate.Wh is None else gate.Wh.copy(),
        gate_hidden_bias=None if gate is None or gate.bh is None else gate.bh.copy(),
        responsibilities=np.ascontiguousarray(st.R),
        elbo=float(st.objective),
        history=np.asarray(st.history),
        n_iter=len(st.history) - 1,
        converged=bool(st.converged),
        empty=[int(k) for k in np.flatnonzero(mass < EMPTY_SHARE * n)],
    )


def sample_coefficients(result: VEMResult, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Draws of :math:`\\theta_k \\sim q`, shape (draws, K, p)."""
    K, p = result.mean.shape
    chol = np.linalg.cholesky(result.cov)  # (K, p, p)
    eps = rng.standard_normal((draws, K, p))
    return result.mean[None] + np.einsum("kij,skj->ski", chol, eps)
