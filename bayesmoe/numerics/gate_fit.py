r"""The softmax gate's M-step pieces shared by MAP-EM and variational EM.

For a gate with logits :math:`\eta_{ik} = c_k + f_i^\top V_k` (:math:`k < K`,
:math:`\eta_{iK} = 0`; :math:`f_i = G_i` or :math:`\tanh(G_i^\top W_h + b_h)`), the
objective :math:`\sum_{ik} r_{ik} \log \pi_{ik}` under Gaussian priors: packing of the
parameters into one flat vector, the objective with its gradient (L-BFGS for the mlp
gate), and the linear gate's exact Hessian with checked Newton steps. Numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "GATE_INNER_MAXITER",
    "NEWTON_HALVINGS",
    "gate_neg_objective",
    "gate_neg_objective_t",
    "gate_pack",
    "gate_unpack",
    "linear_gate_at",
    "linear_gate_terms",
    "newton_descent",
    "newton_step",
    "with_linear_gate_prior",
]

#: Inner L-BFGS-B iterations per EM gate update. A partial M-step is enough for a
#: generalised EM (it only has to improve), and warm starts make later ones cheap. The mlp
#: gate has flat directions, and with few inner iterations EM needs many more (costlier)
#: outer iterations.
GATE_INNER_MAXITER = 50
#: A Newton step of the linear gate (``newton_descent``) is halved at most this often.
NEWTON_HALVINGS = 30


def gate_pack(params) -> np.ndarray:
    """The flat gate vector ``[c, V, W_h, b_h]`` of parameters with those attributes."""
    parts = [params.c, params.V.ravel()]
    if params.Wh is not None:
        parts += [params.Wh.ravel(), params.bh]
    return np.concatenate(parts)


def gate_unpack(theta: np.ndarray, g: int, K: int, hidden: int):
    """Split a flat gate vector into (c, V, Wh, bh); Wh, bh are None for a linear gate."""
    m = K - 1
    c = theta[:m]
    if hidden == 0:
        return c, theta[m:].reshape(g, m), None, None
    pos = m + hidden * m
    V = theta[m:pos].reshape(hidden, m)
    Wh = theta[pos : pos + g * hidden].reshape(g, hidden)
    bh = theta[pos + g * hidden :]
    return c, V, Wh, bh


def gate_neg_objective(
    theta: np.ndarray,
    G: np.ndarray,
    R: np.ndarray,
    hidden: int,
    gate_sd: float,
    hidden_sd: float,
) -> tuple[float, np.ndarray]:
    r"""Negative gate M-step objective and its gradient, for L-BFGS-B.

    .. math::

        Q(\theta) = \sum_i \sum_k r_{ik} \log \mathrm{softmax}(\eta_i)_k
            - \frac{\|c\|^2 + \|V\|^2}{2 s_g^2} - \frac{\|W_h\|^2 + \|b_h\|^2}{2 s_h^2}.

    With :math:`\sum_k r_{ik} = 1`, :math:`\partial Q / \partial \eta_{ik} = r_{ik} - \pi_{ik}`
    (softmax cross-entropy), which is back-propagated to :math:`c, V` and, for the mlp,
    through :math:`\tanh' = 1 - h^2` to :math:`W_h, b_h`. The reference column has no
    parameters, so its derivative is dropped.

    Parameters
    ----------
    theta : array
        Flat gate parameters ``[c, V, W_h, b_h]`` (the last two for the mlp only).
    G : (n, g) array
        Gate design.
    R : (n, K) array
        Responsibilities; rows must sum to one.
    hidden : int
        :math:`H` (0 for the linear gate).
    gate_sd, hidden_sd : float
        Prior sds :math:`s_g, s_h`.

    Returns
    -------
    (-Q, -grad Q)
    """
    return gate_neg_objective_t(
        theta, np.ascontiguousarray(G.T), np.ascontiguousarray(R.T), hidden, gate_sd, hidden_sd
    )


def gate_neg_objective_t(theta, GT, RT, hidden, gate_sd, hidden_sd):
    """:func:`gate_neg_objective` on transposed, C-contiguous ``GT`` (g, n), ``RT`` (K, n).

    This is the inner loop of every gated fit. With the short K and H axes first, the
    reductions over them run along contiguous rows and the products are wide BLAS calls;
    a row-wise max over a C-ordered (n, K) array is much slower in numpy.
    """
    K, n = RT.shape
    g = GT.shape[0]
    c, V, Wh, bh = gate_unpack(theta, g, K, hidden)
    features = GT if Wh is None else np.tanh(Wh.T @ GT + bh[:, None])  # (g or H, n)
    eta = np.zeros((K, n))
    eta[:-1] = V.T @ features + c[:, None]
    shifted = eta - eta.max(axis=0)
    exp_shifted = np.exp(shifted)
    norm = exp_shifted.sum(axis=0)
    # sum_k r_ik log p_ik = sum_k r_ik shifted_ik - log norm_i, because rows of R sum to one.
    value = float(np.vdot(RT, shifted) - np.log(norm).sum())
    penalty = (c @ c + np.vdot(V, V)) / (2.0 * gate_sd**2)
    # d/d eta of sum_k r_k log p_k is r - p (again using sum_k r_k = 1).
    delta = RT[:-1] - exp_shifted[:-1] / norm  # (K-1, n)
    grad_c = delta.sum(axis=1) - c / gate_sd**2
    grad_V = features @ delta.T - V / gate_sd**2
    grads = [grad_c, grad_V.ravel()]
    if Wh is not None:
        penalty += (np.vdot(Wh, Wh) + bh @ bh) / (2.0 * hidden_sd**2)
        d_pre = (V @ delta) * (1.0 - features**2)  # back through tanh, (H, n)
        grad_Wh = GT @ d_pre.T - Wh / hidden_sd**2
        grads += [grad_Wh.ravel(), d_pre.sum(axis=1) - bh / hidden_sd**2]
    return -(value - penalty), -np.concatenate(grads)


def linear_gate_terms(GT, RT, log_PT) -> tuple[float, np.ndarray, np.ndarray]:
    r"""Minus :math:`\sum_{ik} r_{ik}\log\pi_{ik}` of a linear gate, its gradient, Hessian.

    For the gate parameters :math:`\theta = [c, \mathrm{vec}\,V]` (the order of
    :func:`gate_pack`: row :math:`j` of :math:`W = [c; V]`, then
    expert :math:`a`) and :math:`\tilde g_i = [1, G_i]`: the gradient
    :math:`-\sum_i \tilde g_{ij} (r_{ia} - \pi_{ia})` and the Hessian
    :math:`\sum_i \tilde g_{ij}\tilde g_{il}\,\pi_{ia}(\delta_{ab} - \pi_{ib})`, over the
    experts :math:`a, b < K` (the reference has no parameters). A pure numpy function of
    one chunk, ``GT`` (g, n), responsibilities ``RT`` (K, n) and the gate's
    log-probabilities ``log_PT`` (K, n); the sums of chunks add.
    """
    m, g = RT.shape[0] - 1, GT.shape[0]
    P = np.exp(log_PT[:m])
    value = -float(np.vdot(RT, log_PT))
    delta = RT[:m] - P  # (m, n)
    grad = -np.concatenate([delta.sum(axis=1), (GT @ delta.T).ravel()])
    H = np.empty((g + 1, m, g + 1, m))
    for a in range(m):
        for b in range(a, m):
            w = P[a] * (float(a == b) - P[b])
            Gw = GT * w
            block = np.empty((g + 1, g + 1))
            block[0, 0] = w.sum()
            block[1:, 0] = block[0, 1:] = Gw.sum(axis=1)
            block[1:, 1:] = Gw @ GT.T
            H[:, a, :, b] = block
            H[:, b, :, a] = block
    return value, grad, H.reshape((g + 1) * m, (g + 1) * m)


def linear_gate_at(GT, RT, theta) -> tuple[float, np.ndarray, np.ndarray]:
    """:func:`linear_gate_terms` at the flat linear-gate parameters ``theta``."""
    K = RT.shape[0]
    c, V, _, _ = gate_unpack(theta, GT.shape[0], K, 0)
    log_PT = np.zeros((K, GT.shape[1]))
    log_PT[:-1] = V.T @ GT + c[:, None]
    log_PT -= log_PT.max(axis=0)
    log_PT -= np.log(np.exp(log_PT).sum(axis=0))
    return linear_gate_terms(GT, RT, log_PT)


def newton_step(grad, hess, min_gain: float) -> np.ndarray | None:
    r"""The Newton step :math:`H^{-1}g` (to subtract), or None when the Newton decrement
    :math:`\tfrac12 g^\top H^{-1} g` (the quadratic model's predicted gain) is at most
    ``min_gain`` or ``hess`` is singular."""
    try:
        step = np.linalg.solve(hess, grad)
    except np.linalg.LinAlgError:
        return None
    return step if 0.5 * float(grad @ step) > min_gain else None


def with_linear_gate_prior(theta, terms, gate_sd: float) -> tuple:
    """:func:`linear_gate_terms` (value, gradient, Hessian) plus the gate's Gaussian prior."""
    value, grad, hess = terms
    return (
        value + float(theta @ theta) / (2.0 * gate_sd**2),
        grad + theta / gate_sd**2,
        hess + np.eye(theta.size) / gate_sd**2,
    )


def newton_descent(fun, theta, start, *, max_steps: int, min_gain: float) -> np.ndarray:
    r"""Newton's method on a smooth convex function, every step checked.

    ``fun(theta) -> (value, gradient, Hessian)``; ``start`` is its value at ``theta``
    (often already known). A step (:func:`newton_step`) is halved (at most
    ``NEWTON_HALVINGS`` times) until the value does not increase, so the value never
    increases; the steps stop after ``max_steps`` or when the Newton decrement is at most
    ``min_gain``. Returns the last accepted point.
    """
    f, grad, hess = start
    for _ in range(max_steps):
        step = newton_step(grad, hess, min_gain)
        if step is None:
            break
        t = 1.0
        for _ in range(NEWTON_HALVINGS):
            cand = theta - t * step
            f_new, grad_new, hess_new = fun(cand)
            if np.isfinite(f_new) and f_new <= f:
                break
            t *= 0.5
        else:
            break
        theta, f, grad, hess = cand, f_new, grad_new, hess_new
    return theta
