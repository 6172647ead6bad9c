r"""Multi-start MAP-EM for mixtures of linear regressions and gated mixtures of experts.

The model, for :math:`n` rows, an expert design :math:`X \in \mathbb{R}^{n \times d}` (no
intercept column; :math:`d = 0` gives a plain Gaussian mixture) and :math:`K` experts, is

.. math::

    y_i \sim \sum_{k=1}^{K} \pi_{ik}\, N\!\left(b_k + w_k^\top x_i,\ \sigma_k^2\right),

with one shared :math:`\sigma` when ``shared_noise=True``. The mixing weights are

* ``gate=None``: constant, :math:`\pi_{ik} = \pi_k`, with :math:`\pi \sim
  \mathrm{Dirichlet}(\alpha \mathbf{1})`;
* ``gate="linear"``: :math:`\pi_{i\cdot} = \mathrm{softmax}(\eta_{i\cdot})`,
  :math:`\eta_{ik} = c_k + G_i^\top V_k` for :math:`k < K`, :math:`\eta_{iK} = 0`
  (the last expert is the reference);
* ``gate="mlp"``: as linear but on hidden features,
  :math:`h_i = \tanh(G_i^\top W_h + b_h)`, :math:`\eta_{ik} = c_k + h_i^\top V_k`.

The priors that make this a MAP (rather than maximum-likelihood) problem are

.. math::

    b_k \sim N(0, s_b^2), \quad w_{kj} \sim N(0, s_w^2), \quad
    c_k, V_{jk} \sim N(0, s_g^2), \quad W_{h}, b_h \sim N(0, s_h^2),

a flat prior on :math:`\sigma_k` restricted to :math:`\sigma_k \ge \sigma_{\min}` (the floor
removes the unbounded likelihood of a component collapsing onto one point). The maximised
objective is the log posterior up to a constant,

.. math::

    \mathcal{L}(\theta) = \sum_i \log \sum_k \pi_{ik} N(y_i \mid \mu_{ik}, \sigma_k^2)
        + \log p(\theta).

EM alternates the E-step :math:`r_{ik} \propto \pi_{ik} N(y_i \mid \mu_{ik}, \sigma_k^2)` with
an M-step that increases :math:`\sum_{ik} r_{ik} [\log \pi_{ik} + \log N(\cdot)] + \log
p(\theta)`: closed-form weighted ridge regression and variance per expert (an ECM step:
coefficients given the current :math:`\sigma_k`, then :math:`\sigma_k` given the new
coefficients), closed-form Dirichlet MAP weights, or a warm-started, bounded L-BFGS-B run on
the gate's softmax cross-entropy. Every step is a conditional maximisation or an improvement,
so :math:`\mathcal{L}` never decreases (exactly so for ``gate=None`` with
:math:`\alpha \ge 1`).

EM only finds a local mode, so :func:`fit_mixture_em` restarts from several partitions of the
rows (greedy growth, OLS residual quantiles, k-means, random lines, random labels) and keeps
the start with the highest :math:`\mathcal{L}`. The result initialises NUTS chains at one
mode and is the pivot for relabelling draws. This module deliberately depends on numpy,
scipy and scikit-learn only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from bayesmoe.numerics.blas import single_threaded_blas
from bayesmoe.numerics.gate import gate_logits
from bayesmoe.numerics.gate_fit import (
    GATE_INNER_MAXITER,
    gate_neg_objective_t,
    gate_pack,
    gate_unpack,
    linear_gate_at,
    linear_gate_terms,
    newton_descent,
    newton_step,
    with_linear_gate_prior,
)
from bayesmoe.numerics.glm import fit_glm, glm_log_density, glm_mean
from bayesmoe.numerics.lse import log_softmax_last, logsumexp_last, softmax_last
from bayesmoe.numerics.multistart import (
    best_first,
    initial_labels,
    positive,
    small_change,
    start_kinds,
)

__all__ = [
    "EMResult",
    "GLMExperts",
    "Params",
    "Settings",
    "check_problem",
    "fit_mixture_em",
    "gate_logits",
    "greedy_labels",
    "initial_params",
    "linear_gate_terms",
    "mixing_weights",
    "newton_descent",
    "newton_step",
    "with_linear_gate_prior",
]

_GATES = (None, "linear", "mlp")
#: The first gate fit starts from zero logits and a hard partition, so it gets longer.
_GATE_INIT_MAXITER = 200
#: Newton steps of the linear gate (``newton_descent``): a step is halved at most this
#: often, and the steps stop when the predicted gain is below ``_NEWTON_GAIN`` per row
#: (the EM's own tolerance is relative to a log-likelihood of order n).
_NEWTON_HALVINGS = 30
_NEWTON_GAIN = 1e-12
#: Starts are first run to this relative change, and only the best ``_N_REFINE`` of them
#: on to ``tol`` (see ``_multi_start``).
_SCREEN_TOL = 1e-5
_N_REFINE = 3
#: Seed sizes (fractions of the rows) tried for each expert added by the greedy start, and
#: its EM iteration cap per candidate.
_GREEDY_FRACTIONS = (0.02, 0.1, 0.3)
_GREEDY_MAX_ITER = 200
#: Components with less total responsibility than this keep their previous sigma: the
#: variance M-step is 0/0 there and the objective does not depend on it anyway.
_MIN_MASS = 1e-8
#: Lower clip of the Dirichlet MAP weights before renormalising (see ``_update_weights``).
_MIN_WEIGHT = 1e-12
_LOG_2PI = float(np.log(2.0 * np.pi))
#: IRLS steps per GLM expert and EM iteration (a generalised M-step)
_GLM_INNER_STEPS = 3


@dataclass
class EMResult:
    r"""Point estimate of a mixture of regressions or mixture of experts.

    Attributes
    ----------
    intercept : (K,) array
        Expert intercepts :math:`b_k`.
    beta : (K, d) array
        Expert slopes :math:`w_k`.
    sigma : (K,) array
        Expert noise standard deviations (all equal when ``shared_noise``).
    weights : (K,) array or None
        Constant mixing weights :math:`\pi` (``gate=None`` or ``K = 1``), else None.
    gate_intercept : (K-1,) array or None
        Gate intercepts :math:`c`; the last expert is the reference with logit 0.
    gate_weights : (g, K-1) or (H, K-1) array or None
        Gate output weights :math:`V` on ``G`` (linear) or on the hidden features (mlp).
    gate_hidden_weights : (g, H) array or None
        :math:`W_h` (mlp only).
    gate_hidden_bias : (H,) array or None
        :math:`b_h` (mlp only).
    responsibilities : (n, K) array
        :math:`r_{ik}` at the returned parameters.
    log_likelihood : float
        :math:`\sum_i \log \sum_k \pi_{ik} N(y_i \mid \mu_{ik}, \sigma_k^2)` (no prior).
    objective : float
        The penalised log-likelihood (log posterior up to a constant) that was maximised.
    n_iter : int
        EM iterations (M-steps) of the winning start.
    converged : bool
        Whether the winning start met the relative tolerance before ``max_iter``.
    history : (n_iter + 1,) array
        Objective at the initial parameters and after each iteration of the winning start.
    alpha : (K,) array or None
        The negative binomial experts' dispersions (GLM experts only).
    intercept_se : (K,) array or None
        Standard errors of the GLM experts' intercepts at the point, from the weighted
        Fisher information :math:`(\sum_i r_{ik} V'(\eta_{ik}))^{-1/2}` (GLM experts only;
        Gaussian experts' are :math:`\sigma_k / \sqrt{N_k}`).
    """

    intercept: np.ndarray
    beta: np.ndarray
    sigma: np.ndarray
    weights: np.ndarray | None
    gate_intercept: np.ndarray | None
    gate_weights: np.ndarray | None
    gate_hidden_weights: np.ndarray | None
    gate_hidden_bias: np.ndarray | None
    responsibilities: np.ndarray
    log_likelihood: float
    objective: float
    n_iter: int
    converged: bool
    history: np.ndarray
    alpha: np.ndarray | None = None
    intercept_se: np.ndarray | None = None


@dataclass(frozen=True)
class GLMExperts:
    """Non-Gaussian experts for :func:`fit_mixture_em`: a family of
    :mod:`bayesmoe.numerics.glm` with its per-row trials and offset.

    ``alpha`` is the negative binomial's starting dispersion (then updated per expert by
    the weighted method of moments); ``pseudo_sigma`` the value reported as every
    expert's ``sigma`` (GLM experts have none; the horseshoe's prior sds use it).
    """

    family: str
    trials: np.ndarray | None = None
    offset: np.ndarray | None = None
    alpha: float = 1.0
    pseudo_sigma: float = 1.0

    def log_density(self, Z: np.ndarray, y: np.ndarray, params: Params) -> np.ndarray:
        """(n, K) :math:`\\log p(y_i \\mid \\eta_{ik})`; ``params.sigma`` holds the
        negative binomial's alphas."""
        eta = Z @ params.coef.T
        if self.offset is not None:
            eta = eta + self.offset[:, None]
        trials = None if self.trials is None else self.trials[:, None]
        return glm_log_density(
            self.family, y[:, None], eta, trials=trials, alpha=params.sigma[None, :]
        )


@dataclass
class Params:
    """Mutable working state of one EM run (expert coefficients include the intercept)."""

    coef: np.ndarray  # (K, d + 1): [b_k, w_k]
    sigma: np.ndarray  # (K,)
    log_pi: np.ndarray | None = None  # (K,) for gate=None
    c: np.ndarray | None = None  # (K-1,)
    V: np.ndarray | None = None  # (g or H, K-1)
    Wh: np.ndarray | None = None  # (g, H)
    bh: np.ndarray | None = None  # (H,)


@dataclass
class Settings:
    """Everything about the problem that stays fixed during EM."""

    K: int
    gate: str | None
    hidden: int
    shared_noise: bool
    alpha: float
    prior_precision: np.ndarray  # (d + 1,) ridge precision on [b_k, w_k]
    gate_sd: float
    hidden_sd: float
    floor: float
    glm: GLMExperts | None = None


# --------------------------------------------------------------------------- gate


def _update_gate(
    params: Params, G: np.ndarray, R: np.ndarray, settings: Settings, maxiter: int
) -> None:
    """Generalised M-step for the gate, never lowering its objective.

    The linear gate's objective is concave: Newton steps (:func:`newton_descent`) on
    its exact Hessian reach the optimum in a few iterations; the mlp gate's is not, and it
    takes a warm-started L-BFGS-B, kept only if it improves.
    """
    theta0 = gate_pack(params)
    GT, RT = np.ascontiguousarray(G.T), np.ascontiguousarray(R.T)
    if settings.hidden == 0:
        g = G.shape[1]

        def fun(theta):
            return with_linear_gate_prior(theta, linear_gate_at(GT, RT, theta), settings.gate_sd)

        theta = newton_descent(
            fun, theta0, fun(theta0), max_steps=maxiter, min_gain=_NEWTON_GAIN * GT.shape[1]
        )
        params.c, params.V = (a.copy() for a in gate_unpack(theta, g, settings.K, 0)[:2])
        return
    args = (GT, RT, settings.hidden, settings.gate_sd, settings.hidden_sd)
    f0, _ = gate_neg_objective_t(theta0, *args)
    res = optimize.minimize(
        gate_neg_objective_t,
        theta0,
        args=args,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": maxiter},
    )
    # L-BFGS-B only accepts sufficient-decrease steps, but a failed line search can leave
    # it anywhere; the guard keeps EM monotone whatever the optimiser reports.
    if np.isfinite(res.fun) and res.fun <= f0:
        c, V, Wh, bh = gate_unpack(np.asarray(res.x), G.shape[1], settings.K, settings.hidden)
        params.c, params.V = c.copy(), V.copy()
        if Wh is not None:
            params.Wh, params.bh = Wh.copy(), bh.copy()


# --------------------------------------------------------------------------- E / M steps


def _log_mixing(params: Params, G: np.ndarray | None, n: int) -> np.ndarray:
    """(n, K) log pi_ik, broadcast from (1, K) for constant weights."""
    if params.log_pi is not None:
        return params.log_pi[None, :]
    eta = gate_logits(G, params.c, params.V, params.Wh, params.bh)
    return log_softmax_last(eta)


def _e_step_rows(
    Z: np.ndarray, y: np.ndarray, G: np.ndarray | None, params: Params, glm=None
) -> tuple[np.ndarray, np.ndarray]:
    """Responsibilities (n, K) and each row's mixture log-likelihood (n,), via logsumexp."""
    if glm is not None:
        log_dens = glm.log_density(Z, y, params)
    else:
        resid = y[:, None] - Z @ params.coef.T
        log_dens = -0.5 * _LOG_2PI - np.log(params.sigma) - 0.5 * (resid / params.sigma) ** 2
    # Fortran order makes the reductions over the short K axis fast (see the gate objective).
    joint = np.asfortranarray(_log_mixing(params, G, len(y)) + log_dens)
    log_norm = logsumexp_last(joint)
    return np.exp(joint - log_norm[:, None]), log_norm


def _e_step(
    Z: np.ndarray, y: np.ndarray, G: np.ndarray | None, params: Params, glm=None
) -> tuple[np.ndarray, float]:
    """Responsibilities (n, K) and the mixture log-likelihood."""
    R, log_norm = _e_step_rows(Z, y, G, params, glm)
    return R, float(log_norm.sum())


def _log_prior(params: Params, settings: Settings) -> float:
    """log p(theta) up to a constant (Gaussian ridge terms, Dirichlet kernel)."""
    out = -0.5 * float(np.sum(params.coef**2 * settings.prior_precision))
    if params.log_pi is not None:
        out += (settings.alpha - 1.0) * float(params.log_pi.sum())
    if params.c is not None:
        out -= (params.c @ params.c + np.sum(params.V**2)) / (2.0 * settings.gate_sd**2)
    if params.Wh is not None:
        out -= (np.sum(params.Wh**2) + params.bh @ params.bh) / (2.0 * settings.hidden_sd**2)
    return float(out)


def _update_experts(
    Z: np.ndarray, y: np.ndarray, R: np.ndarray, params: Params, settings: Settings
) -> None:
    r"""ECM step for the experts: ridge coefficients given sigma, then sigma given them.

    Per expert, maximising :math:`-\sum_i r_{ik} (y_i - z_i^\top\beta_k)^2 / (2\sigma_k^2)
    - \beta_k^\top \Lambda_0 \beta_k / 2` gives
    :math:`(Z^\top R_k Z + \sigma_k^2 \Lambda_0)\beta_k = Z^\top R_k y`: the prior precision
    is scaled by the current variance, which is what makes this the exact conditional
    maximiser (and EM monotone) rather than a fixed-penalty ridge.
    """
    K = settings.K
    if settings.glm is not None:
        _update_glm_experts(Z, y, R, params, settings)
        return
    ridge = np.diag(settings.prior_precision)
    for k in range(K):
        rz = Z * R[:, k, None]
        lhs = Z.T @ rz + params.sigma[k] ** 2 * ridge
        rhs = rz.T @ y
        try:
            params.coef[k] = np.linalg.solve(lhs, rhs)
        except np.linalg.LinAlgError:
            # Only when sigma sits at a floor so small that the prior is lost in rounding
            # next to a rank-deficient Z'RZ (e.g. constant y, or an expert holding one
            # row): take the minimum-norm solution instead of failing.
            params.coef[k] = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    sq = (y[:, None] - Z @ params.coef.T) ** 2
    floor2 = settings.floor**2
    if settings.shared_noise:
        var = max(float(np.sum(R * sq)) / len(y), floor2)
        params.sigma[:] = np.sqrt(var)
        return
    mass = R.sum(axis=0)
    for k in range(K):
        if mass[k] > _MIN_MASS:
            # The unconstrained maximiser clipped at the floor is the constrained one,
            # because the objective is unimodal in sigma_k^2.
            params.sigma[k] = np.sqrt(max(float(R[:, k] @ sq[:, k]) / mass[k], floor2))


def _update_glm_experts(
    Z: np.ndarray, y: np.ndarray, R: np.ndarray, params: Params, settings: Settings
) -> None:
    """The GLM experts' M-step: a few responsibility-weighted ridge IRLS steps per
    expert from its current coefficients (:func:`bayesmoe.numerics.glm.fit_glm`), which
    never lower its weighted objective; the negative binomial's alpha by moments."""
    glm = settings.glm
    nb = glm.family == "negative_binomial"
    for k in range(settings.K):
        if R[:, k].sum() <= _MIN_MASS:
            continue
        res = fit_glm(
            Z, y, glm.family, weights=R[:, k], trials=glm.trials, offset=glm.offset,
            ridge=settings.prior_precision, alpha=params.sigma[k] if nb else None,
            update_alpha=nb, coef=params.coef[k], max_iter=_GLM_INNER_STEPS,
        )  # fmt: skip
        params.coef[k] = res.coef
        if nb:
            params.sigma[k] = res.alpha


def _update_weights(R: np.ndarray, params: Params, settings: Settings) -> None:
    r"""Dirichlet MAP weights :math:`\pi_k \propto \max(N_k + \alpha - 1, \epsilon)`.

    For :math:`\alpha \ge 1` this is the exact maximiser (the clip only acts when a component
    is empty and :math:`\alpha = 1`). For :math:`\alpha < 1` the posterior is unbounded at the
    simplex boundary; the clip keeps every weight strictly positive (so logs stay finite and a
    component can come back), at the cost of exact monotonicity.
    """
    w = np.maximum(R.sum(axis=0) + settings.alpha - 1.0, _MIN_WEIGHT)
    params.log_pi = np.log(w / w.sum())


def _m_step(
    Z: np.ndarray,
    y: np.ndarray,
    G: np.ndarray | None,
    R: np.ndarray,
    params: Params,
    settings: Settings,
    gate_maxiter: int = GATE_INNER_MAXITER,
) -> None:
    _update_experts(Z, y, R, params, settings)
    if params.log_pi is not None:
        _update_weights(R, params, settings)
    else:
        _update_gate(params, G, R, settings, gate_maxiter)


# --------------------------------------------------------------------------- initialisation


def greedy_labels(
    Z: np.ndarray, y: np.ndarray, settings: Settings, rng: np.random.Generator
) -> np.ndarray:
    """Add experts one at a time, each seeded on the rows the current fit explains worst.

    Equal-sized partitions (quantiles, k-means) and random lines rarely isolate a small
    expert (a few percent of the rows): its rows are swallowed by a big one and EM cannot
    pull them back out. Greedy growth (in the spirit of Verbeek, Vlassis & Krose, 2003,
    for Gaussian mixtures) finds it because those rows are exactly the worst explained by
    a fit with one expert fewer. Each step tries a few sizes for the new expert's seed set,
    from both sides of the fit and from either side alone, runs EM to the screening
    tolerance and keeps the best; the experts use constant weights here, even for a gated
    model, since only the partition is passed on.
    """
    n = len(y)
    sub = _replace_settings(settings, K=1)
    run = _start_run(Z, y, None, initial_params(Z, y, None, np.ones((n, 1)), sub, rng), sub)
    for k in range(2, settings.K + 1):
        sub = _replace_settings(settings, K=k)
        _, row_loglik = _e_step_rows(Z, y, None, run.params)
        order = np.argsort(row_loglik, kind="stable")
        # Residual sign at each row's own expert: an expert sitting between two others
        # explains both of them badly and symmetrically, and a seed drawn from both sides
        # would just land in the middle again (parallel lines, 1-D mixtures).
        own = np.argmax(run.R, axis=1)
        above = (y - np.einsum("ij,ij->i", Z, run.params.coef[own]))[order] > 0
        best = None
        for fraction, side in itertools.product(_GREEDY_FRACTIONS, (None, True, False)):
            pool = order if side is None else order[above == side]
            worst = pool[: max(int(fraction * n), Z.shape[1] + 1, 1)]
            if len(worst) == 0:
                continue
            R0 = np.zeros((n, k))
            R0[:, :-1] = run.R
            R0[worst] = 0.0
            R0[worst, -1] = 1.0
            cand = _start_run(Z, y, None, initial_params(Z, y, None, R0, sub, rng), sub)
            cand = _continue_run(cand, Z, y, None, sub, _GREEDY_MAX_ITER, _SCREEN_TOL)
            if best is None or cand.objective > best.objective:
                best = cand
        run = best
    return np.argmax(run.R, axis=1)


def _replace_settings(settings: Settings, K: int) -> Settings:
    """The same priors with K constant-weight experts (for the greedy start)."""
    return Settings(
        K=K,
        gate=None,
        hidden=0,
        shared_noise=settings.shared_noise,
        alpha=settings.alpha,
        prior_precision=settings.prior_precision,
        gate_sd=settings.gate_sd,
        hidden_sd=settings.hidden_sd,
        floor=settings.floor,
        glm=settings.glm,
    )


def initial_params(
    Z: np.ndarray,
    y: np.ndarray,
    G: np.ndarray | None,
    R: np.ndarray,
    settings: Settings,
    rng: np.random.Generator,
) -> Params:
    """Parameters from initial responsibilities: one M-step from a neutral state."""
    K, p = settings.K, Z.shape[1]
    params = Params(coef=np.zeros((K, p)), sigma=np.full(K, max(float(y.std()), settings.floor)))
    if settings.glm is not None:  # GLM experts: sigma holds the negative binomial's alpha
        params.sigma = np.full(K, float(settings.glm.alpha))
    if settings.gate is None:
        params.log_pi = np.full(K, -np.log(K))
    else:
        g = G.shape[1]
        m = K - 1
        params.c = np.zeros(m)
        if settings.gate == "linear":
            params.V = np.zeros((g, m))
        else:
            H = settings.hidden
            # N(0, 1/g) keeps the pre-activations of standardised inputs O(1), off tanh's
            # flat tails; a random draw also breaks the symmetry between hidden units.
            params.Wh = rng.normal(scale=np.sqrt(1.0 / max(g, 1)), size=(g, H))
            params.bh = np.zeros(H)
            params.V = np.zeros((H, m))
    # Experts twice so that the ridge scaling uses a data-based sigma on the second pass.
    _update_experts(Z, y, R, params, settings)
    _m_step(Z, y, G, R, params, settings, gate_maxiter=_GATE_INIT_MAXITER)
    return params


# --------------------------------------------------------------------------- driver


@dataclass
class _Run:
    """One EM run: parameters with the responsibilities and objective evaluated at them."""

    params: Params
    R: np.ndarray
    loglik: float
    history: list[float]
    converged: bool = False

    @property
    def objective(self) -> float:
        return self.history[-1]

    @property
    def n_iter(self) -> int:
        return len(self.history) - 1


def _start_run(Z, y, G, params: Params, settings: Settings) -> _Run:
    R, loglik = _e_step(Z, y, G, params, settings.glm)
    return _Run(params, R, loglik, [loglik + _log_prior(params, settings)])


def _continue_run(run: _Run, Z, y, G, settings: Settings, max_iter: int, tol: float) -> _Run:
    """EM iterations until the objective's relative change is below ``tol`` or ``max_iter``
    iterations in total; can be called again with a smaller ``tol`` to resume."""
    run.converged = small_change(run.history, tol)
    while run.n_iter < max_iter and not run.converged:
        _m_step(Z, y, G, run.R, run.params, settings)
        run.R, run.loglik = _e_step(Z, y, G, run.params, settings.glm)
        run.history.append(run.loglik + _log_prior(run.params, settings))
        run.converged = small_change(run.history, tol)
    return run


def _as_2d(A, name: str, n: int) -> np.ndarray:
    A = np.asarray(A, dtype=float)
    if A.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, columns), got shape {A.shape}")
    if A.shape[0] != n:
        raise ValueError(f"{name} has {A.shape[0]} rows but y has {n}")
    if not np.all(np.isfinite(A)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return A


def check_problem(X, y, n_components, gate, G, gate_hidden):
    """Validate the data and structure shared by the EM and VEM fitters.

    Returns ``(X, y, G, K)`` as float arrays (``X`` with zero columns when None).
    """
    y = np.asarray(y, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {y.shape}")
    n = len(y)
    if n == 0 or not np.all(np.isfinite(y)):
        raise ValueError("y must be non-empty and finite")
    X = np.empty((n, 0)) if X is None else _as_2d(X, "X", n)
    if isinstance(n_components, bool) or int(n_components) != n_components:
        raise ValueError(f"n_components must be an integer, got {n_components!r}")
    K = int(n_components)
    if not 1 <= K <= n:
        raise ValueError(f"n_components must be between 1 and n = {n}, got {K}")
    if gate not in _GATES:
        raise ValueError(f"gate must be one of None, 'linear', 'mlp'; got {gate!r}")
    if gate is not None:
        if G is None:
            raise ValueError(f"G (the gate design) is required when gate={gate!r}")
        G = _as_2d(G, "G", n)
    if gate == "mlp" and (isinstance(gate_hidden, bool) or int(gate_hidden) < 1):
        raise ValueError(f"gate_hidden must be >= 1 when gate='mlp', got {gate_hidden!r}")
    return X, y, G, K


def _multi_start(Z, y, G, settings, n_init, max_iter, tol, rng) -> _Run:
    """Screen every start at a loose tolerance, then finish the best few at ``tol``.

    Much of the cost of a fit is spent by starts creeping slowly along a ridge, sometimes
    toward a poor mode (with the mlp gate, sometimes up to ``max_iter``). Distinct modes of
    well-separated data differ by far more than what is left to gain once the relative
    change per iteration is below ``_SCREEN_TOL``, so the runs are ranked there and only
    the best ``_N_REFINE`` refined. The winner is the highest objective after refinement.
    """
    K = settings.K
    # K = 1 has a single mode: every start would give the same answer.
    kinds = start_kinds(n_init, settings.gate is not None) if K > 1 else ["quantile"]
    screen_tol = max(tol, _SCREEN_TOL)
    runs = []
    if settings.glm is not None:  # growth by residual sign is for Gaussian experts
        kinds = [kind for kind in kinds if kind != "greedy"] or ["quantile"]
    for kind in kinds:
        labels = initial_labels(
            kind, Z, y, G, K, rng, greedy=lambda: greedy_labels(Z, y, settings, rng)
        )
        params = initial_params(Z, y, G, np.eye(K)[labels], settings, rng)
        run = _start_run(Z, y, G, params, settings)
        runs.append(_continue_run(run, Z, y, G, settings, max_iter, screen_tol))
    best = None
    for i in best_first([run.objective for run in runs], _N_REFINE):
        run = _continue_run(runs[i], Z, y, G, settings, max_iter, tol)
        if best is None or run.objective > best.objective:
            best = run
    return best


def fit_mixture_em(
    X: np.ndarray | None,
    y: np.ndarray,
    n_components: int,
    *,
    gate: str | None = None,
    G: np.ndarray | None = None,
    gate_hidden: int = 0,
    shared_noise: bool = False,
    alpha: float = 1.0,
    intercept_sd: float = 10.0,
    weight_sd: float = 10.0,
    gate_sd: float = 5.0,
    hidden_sd: float = 2.0,
    sigma_floor: float | None = None,
    n_init: int = 10,
    max_iter: int = 500,
    tol: float = 1e-8,
    random_state: int | np.random.Generator | None = None,
    experts: GLMExperts | None = None,
) -> EMResult:
    r"""MAP point estimate of a mixture of regressions / mixture of experts by multi-start EM.

    Maximises the log posterior (up to a constant)

    .. math::

        \sum_i \log \sum_k \pi_{ik} N(y_i \mid b_k + w_k^\top x_i, \sigma_k^2)
        - \sum_k \Big(\frac{b_k^2}{2 s_b^2} + \frac{\|w_k\|^2}{2 s_w^2}\Big)
        + \log p(\text{mixing parameters}),

    with :math:`\sigma_k \ge` ``sigma_floor``; see the module docstring for the gates and
    their priors. All parameters are on the scale of the inputs.

    Parameters
    ----------
    X : (n, d) array or None
        Expert design without an intercept column; ``d = 0`` (or None) fits a Gaussian mixture.
    y : (n,) array
        Response.
    n_components : int
        Number of experts :math:`K`, ``1 <= K <= n``. ``K = 1`` ignores the gate
        (:math:`\pi = 1`) and returns the ridge regression.
    gate : {None, "linear", "mlp"}
        Constant weights, softmax-linear gate, or a one-hidden-layer tanh gate.
    G : (n, g) array, optional
        Gate design; required when ``gate`` is set.
    gate_hidden : int
        Hidden units :math:`H` of the mlp gate (``>= 1`` when ``gate="mlp"``).
    shared_noise : bool
        One :math:`\sigma` for all experts.
    alpha : float
        Symmetric Dirichlet concentration of the constant weights. For ``alpha < 1`` the
        weights are clipped away from zero, and the objective may then decrease slightly.
    intercept_sd, weight_sd : float
        Prior sds :math:`s_b, s_w` of expert intercepts and slopes.
    gate_sd, hidden_sd : float
        Prior sds :math:`s_g` of the gate output layer (:math:`c, V`) and :math:`s_h` of the
        mlp's hidden layer (:math:`W_h, b_h`).
    sigma_floor : float, optional
        Lower bound on every :math:`\sigma_k`; default ``1e-3 * std(y)`` (at least 1e-12).
    n_init : int
        Number of starts, in this order: greedy growth (experts added one at a time on the
        worst-explained rows), OLS residual quantiles, k-means on standardised ``[X, y]`` (and
        ``[G, y]`` when gated), nearest of K random-subset lines, random labels; then
        random-subset lines, k-means and random labels in turn.
    max_iter : int
        Maximum EM iterations per start.
    tol : float
        Stop when the objective's change is below ``tol * max(1, |objective|)``.
    random_state : int, numpy.random.Generator or None
        Seed for k-means, random starts and the mlp's hidden initialisation.
    experts : GLMExperts, optional
        Non-Gaussian experts: the densities :math:`N(y_i \mid \mu_{ik}, \sigma_k^2)` above
        become the family's :math:`p(y_i \mid \eta_{ik})` with
        :math:`\eta_{ik} = b_k + w_k^\top x_i + o_i`, and each expert's M-step is a few
        responsibility-weighted ridge IRLS steps (:mod:`bayesmoe.numerics.glm`; Jordan &
        Jacobs 1994). The greedy start (residual signs of Gaussian lines) is skipped.

    Returns
    -------
    EMResult
        The start with the highest penalised log-likelihood.
    """
    X, y, G, K = check_problem(X, y, n_components, gate, G, gate_hidden)
    n = len(y)
    alpha = positive(alpha, "alpha")
    intercept_sd = positive(intercept_sd, "intercept_sd")
    weight_sd = positive(weight_sd, "weight_sd")
    gate_sd = positive(gate_sd, "gate_sd")
    hidden_sd = positive(hidden_sd, "hidden_sd")
    if sigma_floor is None:
        sigma_floor = max(1e-3 * float(y.std()), 1e-12)
    else:
        sigma_floor = positive(sigma_floor, "sigma_floor")
    if int(n_init) < 1:
        raise ValueError(f"n_init must be >= 1, got {n_init!r}")
    if int(max_iter) < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    rng = np.random.default_rng(random_state)

    # One expert has nothing to gate: fall back to constant weights (pi = 1).
    gate_used = gate if K > 1 else None
    G_used = G if gate_used is not None else None
    d = X.shape[1]
    Z = np.column_stack([np.ones(n), X])
    settings = Settings(
        K=K,
        gate=gate_used,
        hidden=int(gate_hidden) if gate_used == "mlp" else 0,
        shared_noise=bool(shared_noise),
        alpha=alpha,
        prior_precision=np.r_[intercept_sd**-2, np.full(d, weight_sd**-2)],
        gate_sd=gate_sd,
        hidden_sd=hidden_sd,
        floor=sigma_floor,
        glm=experts,
    )

    with single_threaded_blas():
        run = _multi_start(Z, y, G_used, settings, int(n_init), int(max_iter), float(tol), rng)
    params = run.params
    glm = {} if experts is None else _glm_extras(Z, run.R, params, experts)
    return EMResult(
        intercept=params.coef[:, 0].copy(),
        beta=params.coef[:, 1:].copy(),
        sigma=glm.pop("sigma", params.sigma.copy()),
        weights=None if params.log_pi is None else np.exp(params.log_pi),
        gate_intercept=params.c,
        gate_weights=params.V,
        gate_hidden_weights=params.Wh,
        gate_hidden_bias=params.bh,
        responsibilities=np.ascontiguousarray(run.R),
        log_likelihood=run.loglik,
        objective=run.objective,
        n_iter=run.n_iter,
        converged=run.converged,
        history=np.asarray(run.history),
        **glm,
    )


def _glm_extras(Z, R, params: Params, experts: GLMExperts) -> dict:
    """GLM experts' ``sigma`` (the pseudo value), ``alpha`` and intercept standard errors."""
    K = params.coef.shape[0]
    eta = Z @ params.coef.T
    if experts.offset is not None:
        eta = eta + experts.offset[:, None]
    mean = glm_mean(experts.family, eta, trials=None)
    if experts.family in ("bernoulli", "binomial"):
        m = 1.0 if experts.trials is None else experts.trials[:, None]
        info = m * mean * (1.0 - mean)
    elif experts.family == "poisson":
        info = mean
    else:
        info = mean / (1.0 + mean / params.sigma[None, :])
    nb = experts.family == "negative_binomial"
    return {
        "sigma": np.full(K, float(experts.pseudo_sigma)),
        "alpha": params.sigma.copy() if nb else None,
        "intercept_se": 1.0 / np.sqrt(np.maximum((R * info).sum(axis=0), 1e-12)),
    }


def mixing_weights(result: EMResult, G: np.ndarray | None, n: int) -> np.ndarray:
    """(n, K) mixing probabilities of a result at gate design ``G``.

    Parameters
    ----------
    result : EMResult
    G : (n, g) array or None
        Gate design; ignored (may be None) for constant weights.
    n : int
        Number of rows.

    Returns
    -------
    (n, K) array whose rows sum to one (constant rows when the result has no gate).
    """
    if result.weights is not None:
        return np.tile(result.weights, (int(n), 1))
    if G is None:
        raise ValueError("G is required for a gated result")
    G = np.asarray(G, dtype=float)
    if G.ndim != 2 or G.shape[0] != n:
        raise ValueError(f"G must have shape (n={n}, g), got {G.shape}")
    eta = gate_logits(
        G,
        result.gate_intercept,
        result.gate_weights,
        result.gate_hidden_weights,
        result.gate_hidden_bias,
    )
    return softmax_last(eta)
