r"""Closed-form variational EM for mixtures of regressions and gated mixtures of experts.

The model (variational Bayes for mixtures of experts: Waterhouse, MacKay & Robinson 1996;
Ueda & Ghahramani 2002; Bishop 2006, sec. 10.2), for an expert design :math:`Z_i = [1, x_i]`
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
:math:`\tau_g^2` and the gate parameters are point estimates (an M-step), recorded
as such by the callers. One iteration is coordinate ascent on the evidence lower bound
:math:`\mathcal{L}`:

* :math:`q(\theta_k)`: :math:`S_k^{-1} = \mathrm{diag}(v)^{-1} + \sigma_k^{-2} \sum_i r_{ik}
  Z_i Z_i^\top`, :math:`m_k = S_k(\mathrm{diag}(v)^{-1}\mu_0 + \sigma_k^{-2}\sum_i r_{ik}
  Z_i y_i)`;
* :math:`\sigma_k^2 = \sum_i r_{ik} e_{ik} / \sum_i r_{ik}` with the expected squared
  residual :math:`e_{ik} = (y_i - m_k^\top Z_i)^2 + Z_i^\top S_k Z_i`;
* :math:`\tau_g^2 = \frac{1}{K |g|}\sum_k \sum_{j \in g} (m_{kj}^2 + S_{k,jj})` (type-II
  maximum likelihood of the shared scale: :math:`A = E\,ww^\top` restricted to
  the builders' diagonal, grouped prior);
* :math:`q(\pi) = \mathrm{Dir}(\alpha + \gamma)`, :math:`\gamma_k = \sum_i r_{ik}`; or, for a
  gate, an ascent step on :math:`Q(V) = \sum_{ik} r_{ik}\log\pi_k(x_i) + \log p(V)`
  (the gate's :math:`\arg\max_V`, with the builders' Gaussian prior on :math:`V`). The
  linear gate's :math:`Q` is concave and its gradient and Hessian are sums over rows,
  :math:`\nabla Q = \sum_i (r_i - \pi_i)_{<K} \otimes \tilde g_i - V/s_g^2` and
  :math:`-\nabla^2 Q = \sum_i (\mathrm{diag}\,\pi_i - \pi_i\pi_i^\top)_{<K} \otimes
  \tilde g_i \tilde g_i^\top + I/s_g^2` with :math:`\tilde g_i = [1, G_i]`: the E-step
  computes both at the current gate in its own pass, and the M-step takes one Newton
  step, checked by the bound after the next E-step (no pass of its own), or none when the
  Newton decrement is negligible against ``tol``; should the bound fall, the gate is
  restored and checked Newton steps (halved until :math:`Q` increases, one pass each)
  run instead. The mlp gate (not concave) takes a warm-started L-BFGS-B step;
* :math:`q(z_i)`: :math:`r_{ik} \propto \exp\{E\log\pi_{ik} - \log\sigma_k -
  e_{ik}/(2\sigma_k^2)\}`, with :math:`E\log\pi_k = \psi(\alpha_k + \gamma_k) -
  \psi(\sum_j \alpha_j + \gamma_j)`.

Each step maximises :math:`\mathcal{L}` (plus the gate's log prior) over its block with the
others fixed, so the objective never decreases; the tests check this for the mixture of
regressions. Restarts use the partitions of :mod:`bayesmoe.numerics.em`; with many rows
they are screened on a subsample and only the best are refined on all rows.

This module depends on numpy and scipy only (and reuses :mod:`bayesmoe.numerics.em`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize
from scipy.special import digamma, gammaln

from bayesmoe.numerics import em, gate_fit, multistart
from bayesmoe.numerics.blas import single_threaded_blas
from bayesmoe.numerics.gate import gate_logits
from bayesmoe.numerics.lse import log_softmax_last, softmax_last

__all__ = [
    "Moments",
    "RowData",
    "StepParams",
    "VEMResult",
    "e_step_chunk",
    "fit_mixture_vem",
    "gate_chunk",
    "sample_coefficients",
    "weighted_moments",
]

_LOG_2PI = float(np.log(2.0 * np.pi))
#: Starts are screened to this relative change, and only the best ``_N_REFINE`` are run on
#: to ``tol`` (on all rows when screening used a subsample).
_SCREEN_TOL = 1e-5
_N_REFINE = 2
#: The linear gate's M-step: at most this many Newton steps, while the Newton decrement
#: exceeds ``_NEWTON_GAIN * tol`` relative to the objective (well below what the
#: convergence test can see).
_NEWTON_STEPS = 5
_NEWTON_GAIN = 1e-2
#: A bound lower than the last by at most this (relative) is rounding, not a failed step.
_BOUND_SLACK = 1e-12
#: Bytes of one row-length temporary of the chunk kernels (a block of rows times the widest
#: of Z, G and K). Below glibc's 128 KiB mmap threshold, temporaries are reused from the
#: heap instead of being mapped and first touched afresh: dask workers run with
#: MALLOC_TRIM_THRESHOLD_=65536 (distributed's default), which pins that threshold.
BLOCK_BYTES = 1 << 16
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
        Point estimates of the gate (see :func:`bayesmoe.numerics.gate.gate_logits`).
    responsibilities : (n, K) array or None
        :math:`q(z_i = k)`; None when the rows were streamed (``rows=``), which keep them
        on the workers.
    mass : (K,) array
        :math:`\gamma_k = \sum_i q(z_i = k)`, the expected rows per component.
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
    responsibilities: np.ndarray | None
    mass: np.ndarray
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
class Moments:
    r"""Responsibility-weighted moments of one E-step, summed over rows (a chunk or all).

    For the E-step at means :math:`m_k` (``_State.ref``), with responsibilities
    :math:`r_{ik}` and residuals :math:`u_{ik} = y_i - m_k^\top Z_i`:

    * ``n`` rows and ``loglik`` :math:`= \sum_i \log\sum_k e^{a_{ik}}`, the E-step's part
      of the bound;
    * ``mass`` :math:`\gamma_k = \sum_i r_{ik}`, ``zz`` :math:`\sum_i r_{ik} Z_i Z_i^\top`,
      ``zu`` :math:`\sum_i r_{ik} u_{ik} Z_i`, ``uu`` :math:`\sum_i r_{ik} u_{ik}^2`.

    They are all the M-step needs: :math:`\sum_i r_{ik} Z_i y_i = zu_k + zz_k m_k`, and the
    expected squared residuals at new means are expanded about :math:`m_k` (see
    ``_update_sigma``). Residuals about the E-step's own means, rather than raw
    :math:`\sum r y^2`, keep that expansion free of cancellation near convergence, where
    the new means barely move. Moments of chunks add (``+``), so the E-step is a
    map-reduce over partitions (:class:`bayesmoe.streaming.PartitionRows`).
    """

    n: int
    loglik: float
    mass: np.ndarray  # (K,)
    zz: np.ndarray  # (K, p, p)
    zu: np.ndarray  # (K, p)
    uu: np.ndarray  # (K,)
    #: A linear gate's value, gradient and Hessian (:func:`~bayesmoe.numerics.gate_fit.
    #: linear_gate_terms`) at the E-step's gate and responsibilities.
    gate: tuple | None = None

    def __add__(self, other: Moments) -> Moments:
        gate = None
        if self.gate is not None and other.gate is not None:
            gate = tuple(a + b for a, b in zip(self.gate, other.gate, strict=True))
        return Moments(
            self.n + other.n,
            self.loglik + other.loglik,
            self.mass + other.mass,
            self.zz + other.zz,
            self.zu + other.zu,
            self.uu + other.uu,
            gate,
        )


@dataclass(frozen=True)
class StepParams:
    """What an E-step needs: small, so it is sent to every chunk of a streamed fit."""

    mean: np.ndarray  # (K, p)
    cov: np.ndarray  # (K, p, p)
    sigma: np.ndarray  # (K,)
    log_pi: np.ndarray | None  # (K,) E log pi_k under q(pi) (no gate)
    gate: tuple | None  # (c, V, Wh, bh) of the gate


def weighted_moments(Z, y, R, mean) -> Moments:
    """:class:`Moments` of responsibilities ``R`` (n, K) about ``mean`` (``loglik`` 0)."""
    ZT = np.ascontiguousarray(Z.T)
    return _moments_t(ZT, y, np.ascontiguousarray(R.T), y - mean @ ZT)


def _moments_t(ZT, y, RT, residT) -> Moments:
    """:class:`Moments` from the transposed design (p, n), RT (K, n) and residuals (K, n)."""
    ruT = RT * residT
    return Moments(
        n=len(y),
        loglik=0.0,
        mass=RT.sum(axis=1),
        zz=np.stack([(ZT * r) @ ZT.T for r in RT]),
        zu=ruT @ ZT.T,
        uu=(ruT * residT).sum(axis=1),
    )


def _blocks(n: int, width: int) -> list[slice]:
    """Row blocks whose temporaries (``width`` values a row) take ``BLOCK_BYTES`` each."""
    step = max(64, BLOCK_BYTES // (8 * max(width, 1)))
    return [slice(i, i + step) for i in range(0, max(n, 1), step)]


def e_step_chunk(Z, y, G, params: StepParams) -> tuple[Moments, np.ndarray]:
    r"""The E-step on one chunk of rows: its :class:`Moments` and responsibilities (n, K).

    :math:`r_{ik} \propto \exp a_{ik}`, :math:`a_{ik} = E\log\pi_{ik} - \tfrac12\log 2\pi
    - \log\sigma_k - e_{ik}/(2\sigma_k^2)`, with the expected squared residual
    :math:`e_{ik} = u_{ik}^2 + Z_i^\top S_k Z_i`. With a linear gate the
    :class:`Moments` also hold the gate's M-step terms at the current gate
    (:func:`bayesmoe.numerics.gate_fit.linear_gate_terms`). A pure numpy function of the chunk,
    run in blocks of rows (``BLOCK_BYTES``) with the short expert axis first (reductions over
    K then add a few contiguous rows); the responsibilities come back as an (n, K) view
    of a (K, n) array.
    """
    n, K = len(y), len(params.sigma)
    RT = np.empty((K, n))
    total = None
    width = max(Z.shape[1], K, 0 if G is None else G.shape[1])
    for b in _blocks(n, width):
        m = _e_step_block(Z[b], y[b], None if G is None else G[b], params, RT[:, b])
        total = m if total is None else total + m
    return total, RT.T


def _e_step_block(Z, y, G, params: StepParams, out_RT) -> Moments:
    ZT = np.ascontiguousarray(Z.T)
    residT = y - params.mean @ ZT  # (K, n)
    quadT = np.stack([((S @ ZT) * ZT).sum(axis=0) for S in params.cov])
    GT = None
    if params.gate is None:
        log_piT = params.log_pi[:, None]
    else:
        c, V, Wh, bh = params.gate
        GT = np.ascontiguousarray(G.T)
        feats = GT if Wh is None else np.tanh(Wh.T @ GT + bh[:, None])
        log_piT = np.zeros((len(params.sigma), len(y)))
        log_piT[:-1] = V.T @ feats + c[:, None]
        log_piT -= log_piT.max(axis=0)
        log_piT -= np.log(np.exp(log_piT).sum(axis=0))
    sig = params.sigma[:, None]
    aT = log_piT - (0.5 * _LOG_2PI + np.log(sig)) - 0.5 * (residT**2 + quadT) / sig**2
    top = aT.max(axis=0)
    log_norm = top + np.log(np.exp(aT - top).sum(axis=0))
    np.exp(aT - log_norm, out=out_RT)
    m = _moments_t(ZT, y, out_RT, residT)
    # With r at its optimum, E[log p(y, z | .)] + H[q(z)] = sum_i logsumexp_k a_ik.
    m.loglik = float(log_norm.sum())
    if GT is not None and params.gate[2] is None:
        # The linear gate's M-step terms at the current gate, from this pass's r.
        m.gate = gate_fit.linear_gate_terms(GT, out_RT, log_piT)
    return m


def gate_chunk(G, R, theta, hidden: int, hessian: bool = False) -> tuple:
    r"""Minus :math:`\sum_{ik} r_{ik}\log\pi_k(G_i; \theta)` on one chunk, and its gradient.

    The gate's M-step objective without its prior (added once, by the caller); with
    ``hessian=True`` (linear gate only) also its Hessian, as
    :func:`bayesmoe.numerics.gate_fit.linear_gate_terms`. A pure numpy function of the chunk,
    summed over blocks of rows (``BLOCK_BYTES``).
    """
    parts = []
    for b in _blocks(len(R), max(R.shape[1], G.shape[1])):
        GT, RT = np.ascontiguousarray(G[b].T), np.ascontiguousarray(R[b].T)
        if hessian:
            parts.append(gate_fit.linear_gate_at(GT, RT, theta))
        else:
            parts.append(gate_fit.gate_neg_objective_t(theta, GT, RT, hidden, np.inf, np.inf))
    return tuple(sum(p[i] for p in parts) for i in range(len(parts[0])))


def _gate_penalty(theta, g: int, K: int, hidden: int, gate_sd: float, hidden_sd: float):
    """Minus the gate's Gaussian log prior (up to a constant) and its gradient."""
    c, V, Wh, bh = gate_fit.gate_unpack(theta, g, K, hidden)
    value = (c @ c + np.vdot(V, V)) / (2.0 * gate_sd**2)
    grads = [c / gate_sd**2, V.ravel() / gate_sd**2]
    if Wh is not None:
        value += (np.vdot(Wh, Wh) + bh @ bh) / (2.0 * hidden_sd**2)
        grads += [Wh.ravel() / hidden_sd**2, bh / hidden_sd**2]
    return float(value), np.concatenate(grads)


class RowData:
    """Rows in memory: the row source of in-memory fits and of the screening subsample.

    A row source runs the E-step over all its rows (``e_step``: summed :class:`Moments`
    and a handle on the responsibilities), the gate's objective for those
    responsibilities (``gate_objective``) and returns the responsibilities where it keeps
    them (``responsibilities``). :class:`bayesmoe.streaming.PartitionRows` is the same
    on the partitions of a dask frame.
    """

    def __init__(self, Z: np.ndarray, y: np.ndarray, G: np.ndarray | None):
        self.Z, self.y, self.G = Z, y, G

    @property
    def n(self) -> int:
        return int(self.y.size)

    def e_step(self, params: StepParams) -> tuple[Moments, np.ndarray]:
        return e_step_chunk(self.Z, self.y, self.G, params)

    def gate_objective(self, R: np.ndarray, theta, hidden: int, hessian: bool = False) -> tuple:
        return gate_chunk(self.G, R, theta, hidden, hessian)

    def responsibilities(self, R: np.ndarray) -> np.ndarray:
        return R


@dataclass
class _State:
    mean: np.ndarray
    cov: np.ndarray
    sigma: np.ndarray
    prior_var: np.ndarray
    moments: Moments | None = None  # of the last E-step, about the means ``ref``
    ref: np.ndarray | None = None
    resp: object = None  # the row source's handle on that E-step's responsibilities
    conc: np.ndarray | None = None  # Dirichlet concentrations of q(pi) (no gate)
    gate: em.Params | None = None  # c, V, Wh, bh of the gate (coef unused)
    history: list[float] = field(default_factory=list)
    converged: bool = False

    @property
    def objective(self) -> float:
        return self.history[-1]


# --------------------------------------------------------------------------- updates


def _update_coefficients(state: _State, s: _Settings) -> None:
    """Gaussian :math:`q(\\theta_k)` given responsibilities, noise and prior."""
    m = state.moments
    prior_prec = 1.0 / state.prior_var
    for k in range(s.K):
        prec = m.zz[k] / state.sigma[k] ** 2
        prec[np.diag_indices_from(prec)] += prior_prec
        zy = m.zu[k] + m.zz[k] @ state.ref[k]  # sum_i r_ik Z_i y_i
        rhs = prior_prec * s.prior_mean + zy / state.sigma[k] ** 2
        chol = np.linalg.cholesky(prec)
        inv_chol = np.linalg.solve(chol, np.eye(len(rhs)))
        cov = inv_chol.T @ inv_chol
        state.cov[k] = 0.5 * (cov + cov.T)
        state.mean[k] = state.cov[k] @ rhs


def _update_sigma(state: _State, s: _Settings) -> None:
    r""":math:`\sigma_k^2 = \sum_i r_{ik} e_{ik} / \gamma_k` at the new :math:`q(\theta_k)`.

    With :math:`\delta_k = m_k - m_k^{\text{E-step}}`, :math:`\sum_i r_{ik} e_{ik} =
    uu_k - 2\delta_k^\top zu_k + \delta_k^\top zz_k \delta_k + \mathrm{tr}(S_k zz_k)`.
    """
    if s.sigma_fixed is not None:
        state.sigma[:] = s.sigma_fixed
        return
    m = state.moments
    d = state.mean - state.ref
    sq = (
        m.uu
        - 2.0 * np.einsum("kp,kp->k", d, m.zu)
        + np.einsum("kp,kpq,kq->k", d, m.zz, d)
        + np.einsum("kpq,kqp->k", state.cov, m.zz)
    )
    floor2 = s.floor**2
    if s.shared_noise:
        state.sigma[:] = np.sqrt(max(float(sq.sum()) / m.n, floor2))
        return
    for k in range(s.K):
        if m.mass[k] > _MIN_MASS:
            # The objective is unimodal in sigma_k^2, so the clipped maximiser is the
            # maximiser under the floor.
            state.sigma[k] = np.sqrt(max(float(sq[k]) / m.mass[k], floor2))


def _update_prior_var(state: _State, s: _Settings) -> None:
    """Type-II ML of the shared slope variances: mean second moment over each group."""
    if not s.learn.any():
        return
    second = state.mean**2 + np.diagonal(state.cov, axis1=1, axis2=2)  # (K, p)
    for g in np.flatnonzero(s.learn):
        cols = s.groups == g
        state.prior_var[cols] = max(float(second[:, cols].mean()), _MIN_PRIOR_VAR)


def _step_params(state: _State, s: _Settings) -> StepParams:
    if s.gate is None:
        conc = state.conc
        return StepParams(
            state.mean.copy(), state.cov.copy(), state.sigma.copy(),
            digamma(conc) - digamma(conc.sum()), None,
        )  # fmt: skip
    p = state.gate
    return StepParams(
        state.mean.copy(), state.cov.copy(), state.sigma.copy(), None, (p.c, p.V, p.Wh, p.bh)
    )


def _update_gate(rows, state: _State, s: _Settings, maxiter: int, tol: float) -> None:
    """Generalised M-step for the gate; it never lowers the objective.

    The linear gate takes Newton steps (:func:`_newton_gate`); the mlp gate a warm-started
    L-BFGS-B, kept only if it improves. Each evaluation is one pass of the row source
    (``gate_objective``) plus the prior.
    """
    p = state.gate
    g = p.V.shape[0] if p.Wh is None else p.Wh.shape[0]
    if s.hidden == 0:
        _newton_gate(rows, state, s, g, tol)
        return
    last = {}

    def objective(theta):
        # L-BFGS-B starts where the guard's f0 was taken: that pass is not repeated.
        if "theta" in last and np.array_equal(theta, last["theta"]):
            return last["value"]
        value, grad = rows.gate_objective(state.resp, theta, s.hidden)
        pen, pen_grad = _gate_penalty(theta, g, s.K, s.hidden, s.gate_sd, s.hidden_sd)
        last.update(theta=np.array(theta, copy=True), value=(value + pen, grad + pen_grad))
        return last["value"]

    theta0 = gate_fit.gate_pack(p)
    f0, _ = objective(theta0)
    res = optimize.minimize(
        objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": maxiter}
    )
    # L-BFGS-B only accepts sufficient-decrease steps, but a failed line search can leave
    # it anywhere; the guard keeps the ascent monotone whatever the optimiser reports.
    if np.isfinite(res.fun) and res.fun <= f0:
        c, V, Wh, bh = gate_fit.gate_unpack(np.asarray(res.x), g, s.K, s.hidden)
        p.c, p.V = c.copy(), V.copy()
        if Wh is not None:
            p.Wh, p.bh = Wh.copy(), bh.copy()


def _newton_gate(rows, state: _State, s: _Settings, g: int, tol: float, checked=True) -> bool:
    r"""The linear gate's M-step: Newton steps on its concave objective.

    The gradient and Hessian at the current gate come with the last E-step (its
    :class:`Moments` ``gate``). Checked (``checked=True``), a step costs one pass, that of
    its check, which also returns the derivatives at the new point; a step is halved
    until the objective improves. The steps stop when the Newton decrement
    :math:`\tfrac12 g^\top H^{-1} g` (the quadratic model's gain) falls below
    ``_NEWTON_GAIN`` x ``tol`` x the objective's scale, so that near convergence the
    M-step costs no pass at all. Unchecked, one full step is taken with no pass (the
    caller checks the bound after its E-step, :func:`_iterate`). Returns whether the
    gate moved.
    """
    p = state.gate

    def with_prior(theta, terms):
        return gate_fit.with_linear_gate_prior(theta, terms, s.gate_sd)

    start = gate_fit.gate_pack(p)
    terms = state.moments.gate
    if terms is None:  # a start's moments, not from a row source's E-step
        terms = rows.gate_objective(state.resp, start, 0, hessian=True)
    scale = max(1.0, abs(state.history[-1])) if state.history else 1.0
    min_gain = _NEWTON_GAIN * tol * scale
    if checked:
        theta = gate_fit.newton_descent(
            lambda th: with_prior(th, rows.gate_objective(state.resp, th, 0, hessian=True)),
            start,
            with_prior(start, terms),
            max_steps=_NEWTON_STEPS,
            min_gain=min_gain,
        )
    else:
        _, grad, hess = with_prior(start, terms)
        step = gate_fit.newton_step(grad, hess, min_gain)
        if step is None:
            return False
        theta = start - step
    c, V, _, _ = gate_fit.gate_unpack(theta, g, s.K, 0)
    p.c, p.V = c.copy(), V.copy()
    return not np.array_equal(theta, start)


def _e_step(rows, state: _State, s: _Settings) -> float:
    """Update :math:`q(z)` on the row source and return the objective at the new state."""
    params = _step_params(state, s)
    state.moments, state.resp = rows.e_step(params)
    state.ref = params.mean
    return state.moments.loglik + _rest_of_bound(state, s)


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


def _iterate(rows, state: _State, s: _Settings, gate_maxiter: int, tol: float) -> float:
    """One coordinate-ascent sweep (M-step from the last E-step's moments, then E-step)."""
    _update_coefficients(state, s)
    _update_sigma(state, s)
    _update_prior_var(state, s)
    if s.gate is None:
        state.conc = s.alpha + state.moments.mass  # q(pi) = Dir(alpha + gamma)
    elif s.hidden == 0 and state.moments.gate is not None and state.history:
        # The linear gate: one Newton step checked by the E-step that follows (no pass of
        # its own). Should the bound fall, the gate and the last E-step's r are restored
        # and the checked steps run (the expert updates above are exact, so the bound
        # then cannot fall).
        saved = (state.gate.c.copy(), state.gate.V.copy(), state.resp, state.moments)
        g = state.gate.V.shape[0]
        if not _newton_gate(rows, state, s, g, tol, checked=False):
            return _e_step(rows, state, s)
        value = _e_step(rows, state, s)
        if value >= state.history[-1] - _BOUND_SLACK * abs(state.history[-1]):
            return value
        state.gate.c, state.gate.V, state.resp, state.moments = saved
        _newton_gate(rows, state, s, g, tol)
    else:
        _update_gate(rows, state, s, gate_maxiter, tol)
    return _e_step(rows, state, s)


def _run(rows, state: _State, s: _Settings, max_iter: int, tol: float, progress=None) -> _State:
    while len(state.history) - 1 < max_iter:
        state.history.append(_iterate(rows, state, s, gate_fit.GATE_INNER_MAXITER, tol))
        if progress is not None:
            progress(len(state.history) - 1, state.history[-1])
        if multistart.small_change(state.history, tol):
            state.converged = True
            break
    return state


# --------------------------------------------------------------------------- starts


def _em_settings(s: _Settings) -> em.Settings:
    return em.Settings(
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


def _initial_state(rows: RowData, R, s: _Settings, rng, gate: em.Params | None = None) -> _State:
    """A state whose responsibilities are ``R``; coefficients, noise and gate fitted to them."""
    Z, y, G = rows.Z, rows.y, rows.G
    K, p = s.K, Z.shape[1]
    R = np.asarray(R, float)
    sd0 = max(float(y.std()), s.floor)
    state = _State(
        mean=np.zeros((K, p)),
        cov=np.zeros((K, p, p)),
        sigma=np.full(K, sd0) if s.sigma_fixed is None else s.sigma_fixed.copy(),
        prior_var=s.prior_var0.copy(),
        moments=weighted_moments(Z, y, R, np.zeros((K, p))),
        ref=np.zeros((K, p)),
        resp=R,
    )
    if s.gate is None:
        state.conc = s.alpha + state.moments.mass
    else:
        if gate is None:
            em_params = em.initial_params(Z, y, G, R, _em_settings(s), rng)
            gate = em.Params(
                coef=em_params.coef, sigma=em_params.sigma,
                c=em_params.c, V=em_params.V, Wh=em_params.Wh, bh=em_params.bh,
            )  # fmt: skip
        state.gate = em.Params(
            coef=np.zeros((K, p)), sigma=np.ones(K),
            c=gate.c.copy(), V=gate.V.copy(),
            Wh=None if gate.Wh is None else gate.Wh.copy(),
            bh=None if gate.bh is None else gate.bh.copy(),
        )  # fmt: skip
    # Twice, so that the noise used to weigh the data against the prior is data-based.
    for _ in range(2):
        _update_coefficients(state, s)
        _update_sigma(state, s)
    state.history.append(_e_step(rows, state, s))
    return state


def _rerun_on(rows, state: _State, s: _Settings) -> _State:
    """Continue a subsample's state on other rows: keep q(theta), noise, scales and gate."""
    new = _State(
        mean=state.mean.copy(),
        cov=state.cov.copy(),
        sigma=state.sigma.copy(),
        prior_var=state.prior_var.copy(),
        gate=state.gate,
    )
    if s.gate is None:  # the subsample's counts, scaled up to all rows
        new.conc = s.alpha + rows.n * state.moments.mass / state.moments.n
    new.history.append(_e_step(rows, new, s))
    return new


def _start_gate_from_em(point, s: _Settings, K: int, p: int) -> em.Params | None:
    if s.gate is None or point is None or point.gate_intercept is None:
        return None
    return em.Params(
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
        eta = gate_logits(
            G,
            point.gate_intercept,
            point.gate_weights,
            point.gate_hidden_weights,
            point.gate_hidden_bias,
        )
        log_pi = log_softmax_last(eta)
    sig = np.asarray(point.sigma, float)
    a = log_pi - np.log(sig) - 0.5 * ((y[:, None] - mu) / sig) ** 2
    return softmax_last(a)


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
    rows=None,
    progress=None,
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
    rows : row source, optional
        All rows, when they are not ``X, y, G``: e.g. a
        :class:`bayesmoe.streaming.PartitionRows` over the partitions of a dask frame, on
        the same working scale and design. ``X, y, G`` are then the screening sample (a
        uniform sample of those rows, used whole): starts are screened on it and the best
        refined on ``rows``, each iteration one map-reduce E-step (and one per gate
        objective evaluation). With the same sample as screening rows the result equals
        the in-memory fit's to rounding.
    progress : callable, optional
        Called as ``progress(iteration, objective)`` after each refinement iteration on
        all rows (e.g. to update a progress bar).

    Returns
    -------
    VEMResult
        The start with the highest objective.
    """
    X, y, G, K = em.check_problem(X, y, n_components, gate, G, gate_hidden)
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
    intercept_sd = multistart.positive(intercept_sd, "intercept_sd")
    gate_sd = multistart.positive(gate_sd, "gate_sd")
    hidden_sd = multistart.positive(hidden_sd, "hidden_sd")
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
        if rows is None:
            everything = RowData(Z, y, G)
            if n > screen_rows:
                pick = np.sort(rng.choice(n, int(screen_rows), replace=False))
                sample = RowData(Z[pick], y[pick], None if G is None else G[pick])
            else:
                sample = everything
        else:
            everything, sample = rows, RowData(Z, y, G)
        best = _multi_start(sample, everything, s, int(n_init), int(max_iter), float(tol),
                            init, rng, progress)  # fmt: skip
    return _result(best, s, everything)


def _multi_start(sample, everything, s, n_init, max_iter, tol, init, rng, progress) -> _State:
    screen_tol = max(tol, _SCREEN_TOL)
    states = []
    Zs, ys, Gs = sample.Z, sample.y, sample.G
    if init is not None and s.K > 1:
        R0 = _point_responsibilities(init, Zs, ys, Gs, s)
        gate0 = _start_gate_from_em(init, s, s.K, Zs.shape[1])
        states.append(_initial_state(sample, R0, s, rng, gate0))
    kinds = multistart.start_kinds(n_init + 1, s.gate is not None) if s.K > 1 else ["one"]
    if init is not None:
        # The given point is already the best of a multi-start EM that began with greedy
        # growth, by far the costliest start kind; the other kinds add diversity.
        kinds = [k for k in kinds if k != "greedy"]
    em_settings = _em_settings(s)
    for kind in kinds[: max(n_init - len(states), 1) if s.K > 1 else 1]:
        if s.K == 1:
            labels = np.zeros(len(ys), int)
        else:
            labels = multistart.initial_labels(
                kind, Zs, ys, Gs, s.K, rng,
                greedy=lambda: em.greedy_labels(Zs, ys, em_settings, rng),
            )  # fmt: skip
        states.append(_initial_state(sample, np.eye(s.K)[labels], s, rng))
    for st in states:
        _run(sample, st, s, max_iter, screen_tol)
    best = None
    for i in multistart.best_first([st.objective for st in states], _N_REFINE):
        if everything is sample:
            st = states[i]
            st.converged = False
            # the state's last E-step ran on these rows, but other starts ran since: the
            # responsibilities it holds are its own, so it continues as it stands
        else:
            st = _rerun_on(everything, states[i], s)
        st = _run(everything, st, s, max_iter, tol, progress)
        if best is None or st.objective > best.objective:
            best = st
    return best


def _result(st: _State, s: _Settings, rows) -> VEMResult:
    mass = np.asarray(st.moments.mass, float)
    gate = st.gate
    R = rows.responsibilities(st.resp)
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
        responsibilities=None if R is None else np.ascontiguousarray(R),
        mass=mass,
        elbo=float(st.objective),
        history=np.asarray(st.history),
        n_iter=len(st.history) - 1,
        converged=bool(st.converged),
        empty=[int(k) for k in np.flatnonzero(mass < EMPTY_SHARE * rows.n)],
    )


def sample_coefficients(result: VEMResult, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Draws of :math:`\\theta_k \\sim q`, shape (draws, K, p)."""
    K, p = result.mean.shape
    chol = np.linalg.cholesky(result.cov)  # (K, p, p)
    eps = rng.standard_normal((draws, K, p))
    return result.mean[None] + np.einsum("kij,skj->ski", chol, eps)
