"""Log-sum-exp over a short last axis (the experts), fast on large draw x row arrays.

bayesmoe's numpy code uses these rather than ``scipy.special.logsumexp`` / ``softmax``:
SciPy's array-API dispatch inspects ``sys.modules["jax"]``, where ArviZ puts a lazy
module when JAX is installed, and so imports all of JAX the
first time a mixture's EM start calls it; and it costs microseconds per call that the
EM's many small calls add up.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["log_softmax_last", "logsumexp_first", "logsumexp_last", "softmax_last"]


def logsumexp_last(a: np.ndarray, keepdims: bool = False) -> np.ndarray:
    r""":math:`\log \sum_k \exp a_{\dots k}` over the last axis.

    Mixture arrays are (chain, draw, obs, expert) with a handful of experts. numpy's
    reductions over a short contiguous last axis run one tiny reduction per element;
    working on the K strided slices elementwise instead does
    the same arithmetic in a few vectorised passes.
    """
    a = np.asarray(a, dtype=float)
    parts = [a[..., k] for k in range(a.shape[-1])]
    m = functools.reduce(np.maximum, parts)
    # Rows whose entries are all -inf stay -inf instead of becoming NaN.
    m_safe = np.where(np.isfinite(m), m, 0.0)
    total = functools.reduce(np.add, (np.exp(p - m_safe) for p in parts))
    with np.errstate(divide="ignore"):
        out = np.log(total) + m_safe
    return out[..., None] if keepdims else out


def logsumexp_first(a: np.ndarray) -> np.ndarray:
    r""":math:`\log \sum_s \exp a_{s \dots}` over the first (draw) axis, in plain numpy.

    Used per row of held-out data inside dask tasks: ``scipy.special.logsumexp`` goes
    through its array-API dispatch, which inspects ``sys.modules["jax"]`` and fails when
    another thread of the same worker is half-way through importing JAX.
    """
    a = np.asarray(a, dtype=float)
    m = a.max(axis=0)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a - m_safe).sum(axis=0)) + m_safe


def log_softmax_last(a: np.ndarray) -> np.ndarray:
    """:math:`a - \\log\\sum_k \\exp a_k` over the last axis (see :func:`logsumexp_last`)."""
    a = np.asarray(a, dtype=float)
    return a - logsumexp_last(a, keepdims=True)


def softmax_last(a: np.ndarray) -> np.ndarray:
    r""":math:`\exp a_k / \sum_j \exp a_j` over the last axis (see :func:`logsumexp_last`)."""
    return np.exp(log_softmax_last(a))
