r"""The softmax gate's forward pass in numpy: logits of a linear or one-hidden-layer gate.

.. math::

    \eta_{ik} = c_k + f_i^\top V_k \ (k < K), \qquad \eta_{iK} = 0, \qquad
    f_i = G_i \ \text{(linear)} \ \text{or} \ \tanh(G_i^\top W_h + b_h) \ \text{(mlp)}.

:func:`gate_logits` evaluates one parameter set (an EM or VEM point); :func:`draw_logits`
evaluates every posterior draw at once (arrays with leading (chain, draw) axes) and returns
the non-reference logits, which the caller places next to its reference output. The
blocked log-likelihood kernels (:func:`bayesmoe.numerics.loglik.softmax_gate`) and the
VEM E-step (rows on the last axis) keep their own memory layouts of the same formula.

This module depends on numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw_logits", "gate_logits"]


def gate_logits(
    G: np.ndarray,
    gate_intercept: np.ndarray,
    gate_weights: np.ndarray,
    gate_hidden_weights: np.ndarray | None = None,
    gate_hidden_bias: np.ndarray | None = None,
) -> np.ndarray:
    r"""Gate logits with the reference (last) expert's column fixed at zero.

    Parameters
    ----------
    G : (n, g) array
        Gate design.
    gate_intercept : (K-1,) array
        :math:`c`.
    gate_weights : (g, K-1) or (H, K-1) array
        :math:`V`.
    gate_hidden_weights : (g, H) array, optional
        :math:`W_h`; when None the gate is linear in ``G``.
    gate_hidden_bias : (H,) array, optional
        :math:`b_h`; required together with ``gate_hidden_weights``.

    Returns
    -------
    (n, K) array of logits; :math:`\mathrm{softmax}` of a row gives :math:`\pi_{i\cdot}`.
    """
    G = np.asarray(G, dtype=float)
    if G.ndim != 2:
        raise ValueError(f"G must be 2-D (n, g), got shape {G.shape}")
    if (gate_hidden_weights is None) != (gate_hidden_bias is None):
        raise ValueError("gate_hidden_weights and gate_hidden_bias must be given together")
    if gate_hidden_weights is None:
        features = G
    else:
        features = np.tanh(G @ np.asarray(gate_hidden_weights) + np.asarray(gate_hidden_bias))
    eta = features @ np.asarray(gate_weights, dtype=float) + np.asarray(gate_intercept)
    return np.column_stack([eta, np.zeros(G.shape[0])])


def draw_logits(G, weights, intercept, hidden_weights=None, hidden_bias=None) -> np.ndarray:
    r"""Non-reference logits :math:`c + V^\top f(G_i)` of every draw, (C, D, n, K-1).

    ``G`` is (n, g); ``weights`` (C, D, g or H, K-1); ``intercept`` (C, D, K-1); the mlp
    gate's ``hidden_weights`` (C, D, g, H) and ``hidden_bias`` (C, D, H).
    """
    inputs = G[None, None]
    if hidden_weights is not None:
        pre = np.einsum("og,cdgh->cdoh", G, hidden_weights)
        inputs = np.tanh(pre + hidden_bias[:, :, None, :])
    S = weights.shape[:2]
    free = np.einsum("cdoh,cdhk->cdok", np.broadcast_to(inputs, (*S, *inputs.shape[2:])), weights)
    return free + intercept[:, :, None, :]


def posterior_draw_logits(
    posterior,
    G: np.ndarray,
    gate: str,
    *,
    feature_dim: str,
    free_dim: str,
    intercept: str,
    sample_dims: tuple[str, str] = ("chain", "draw"),
) -> np.ndarray:
    """:func:`draw_logits` with the gate's parameters read from a posterior Dataset.

    ``gate_weights`` has dims (``feature_dim`` or ``gate_hidden``, ``free_dim``), the
    intercept variable ``intercept`` (``free_dim``), and an mlp gate's
    ``gate_hidden_weights`` / ``gate_hidden_bias`` (``feature_dim``, ``gate_hidden``) /
    (``gate_hidden``). Returns the free logits, (chain, draw, n, K - 1).
    """

    def values(name: str, *dims: str) -> np.ndarray:
        return posterior[name].transpose(*sample_dims, *dims).values

    hidden = {}
    rows = feature_dim
    if gate == "mlp":
        hidden = dict(
            hidden_weights=values("gate_hidden_weights", feature_dim, "gate_hidden"),
            hidden_bias=values("gate_hidden_bias", "gate_hidden"),
        )
        rows = "gate_hidden"
    return draw_logits(
        G, values("gate_weights", rows, free_dim), values(intercept, free_dim), **hidden
    )
