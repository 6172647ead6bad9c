r"""Pointwise Gaussian log-likelihoods of linear predictors, for every draw, at memory speed.

The pointwise log-likelihood of a fit is a (draws x rows) array: 2e8 values for 4000 draws
of 5e4 rows. Written with xarray and :func:`scipy.stats.norm.logpdf` it ran at 4-6e6
values/s (full-size temporaries, scipy's argument checks and masks) and plain numpy on
full arrays at 3-8e7, while filling an array runs at 0.75-1.1e9 (2-core Xeon, two runs of
benchmarks/loglik.py). The kernels here produce it block by block, at 2.3-3.1e8 values/s
(one expert, 21 columns) and 1.0e8 (three experts, no gate; 4e7 with a linear gate):

* the design gets two extra columns, 1 and :math:`y_i`, and each draw's coefficients get
  :math:`b_s` and :math:`-1`, all scaled by :math:`1/(\sqrt2\,\sigma_s)`. One BLAS matrix
  product then gives the scaled residuals :math:`z_{si} = (\mu_{si} - y_i)/(\sqrt2\sigma_s)`
  of a whole block, and :math:`\log N(y_i \mid \mu_{si}, \sigma_s^2) = c_s - z_{si}^2`
  with :math:`c_s = -\log\sigma_s - \tfrac12\log 2\pi` is two more passes;
* blocks are ``BLOCK_VALUES`` values (draws x rows), so every temporary stays in the CPU
  cache and only the result is written to memory; memory use is bounded by the output;
* mixtures add, per expert, the log weight (per draw, or per draw and row for a softmax
  gate), then log-sum-exp over the experts on the block.

Nothing here imports PyMC; inputs are plain float64 arrays with draws flattened to one
leading axis.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable

import numpy as np

from bayesmoe.numerics.blas import single_threaded_blas

__all__ = [
    "BLOCK_VALUES",
    "gaussian_linear",
    "mixture_gaussian_linear",
    "output_array",
    "softmax_gate",
]

#: Values (draws x rows) per block: 32768 float64 = 256 KiB per temporary, so the K + 3
#: temporaries of a three-expert mixture stay inside a 2-4 MiB L2 cache; much smaller
#: blocks pay the per-call overhead of the small products (benchmarks/loglik.py).
BLOCK_VALUES = 1 << 15
#: Rows per block (the draws per block follow from BLOCK_VALUES): rows of the output are
#: contiguous, so each block writes runs of 1024 float64 (8 KiB) into it.
BLOCK_ROWS = 1024

_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
_SQRT_HALF = np.sqrt(0.5)

#: ``logits(rows, draws, out) -> out`` of a gate; see :func:`softmax_gate`.
GateFn = Callable[[slice, slice, np.ndarray], np.ndarray]


def _as_draws(name: str, value, n_draws: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """``value`` broadcast to (n_draws, *shape), float64 (a scalar means 'fixed')."""
    arr = np.asarray(value, dtype=np.float64)
    try:
        return np.broadcast_to(arr, (n_draws, *shape))
    except ValueError as err:
        raise ValueError(
            f"{name} has shape {arr.shape}; expected a scalar or ({n_draws}, *{shape})"
        ) from err


#: Outputs of at least this many bytes are anonymous memory maps (see ``output_array``).
MAP_BYTES = 1 << 26


def output_array(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float64 array for a pointwise log-likelihood, on plain pages.

    numpy asks the kernel for transparent huge pages on large arrays; where the kernel
    then compacts memory on the first touch (``defrag=madvise``, Ubuntu's default), a
    fresh process fills a large array slower than an anonymous memory map of 4 KiB pages.
    A fit writes its
    log-likelihood once, in a fresh array: arrays of ``MAP_BYTES`` or more are mapped.
    """
    n = int(np.prod(shape)) * 8
    if n < MAP_BYTES:
        return np.empty(shape, dtype=np.float64)
    return np.frombuffer(mmap.mmap(-1, n), dtype=np.float64).reshape(shape)


def _output(out, n_draws: int, n_rows: int) -> np.ndarray:
    if out is None:
        return output_array((n_draws, n_rows))
    if out.shape != (n_draws, n_rows) or out.dtype != np.float64:
        raise ValueError(
            f"out must be a float64 array of shape ({n_draws}, {n_rows}), got "
            f"{out.dtype} {out.shape}"
        )
    return out


def _blocks(n_draws: int, n_rows: int):
    """(row slice, draw slice) pairs covering the output, rows outermost."""
    rows = max(1, min(n_rows, BLOCK_ROWS))
    draws = max(1, min(n_draws, BLOCK_VALUES // rows))
    for i0 in range(0, n_rows, rows):
        r = slice(i0, min(i0 + rows, n_rows))
        yield r, [slice(s0, min(s0 + draws, n_draws)) for s0 in range(0, n_draws, draws)]


def _augmented(X: np.ndarray, y: np.ndarray, r: slice) -> np.ndarray:
    """``[X, 1, y]`` for the rows ``r``, transposed to (d + 2, rows) for the product."""
    Xr = X[r]
    aug = np.empty((Xr.shape[1] + 2, Xr.shape[0]))
    aug[:-2] = Xr.T
    aug[-2] = 1.0
    aug[-1] = y[r]
    return aug


def _scaled_coefficients(coef, intercept, sigma) -> tuple[np.ndarray, np.ndarray]:
    r"""Rows :math:`(w_s, b_s, -1)/(\sqrt2\sigma_s)` and constants :math:`c_s`.

    Works on any leading shape (draws, or draws x experts).
    """
    scale = _SQRT_HALF / sigma
    W = np.concatenate(
        [coef * scale[..., None], (intercept * scale)[..., None], -scale[..., None]], axis=-1
    )
    return W, -np.log(sigma) - _HALF_LOG_2PI


def _check_design(X, y) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-d (rows, columns), got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {y.shape}")
    return X, y


def gaussian_linear(X, y, coef, sigma, intercept=0.0, *, out=None) -> np.ndarray:
    r""":math:`\log N(y_i \mid b_s + x_i^\top w_s, \sigma_s^2)` for every draw s and row i.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Design (features and interaction columns; no intercept column).
    y : ndarray, shape (n,)
    coef : ndarray, shape (S, d)
        Coefficient draws, columns in the order of ``X``.
    sigma : float or ndarray, shape (S,)
        Noise sd per draw (a scalar when it is fixed).
    intercept : float or ndarray, shape (S,)
    out : ndarray, shape (S, n), optional
        Written in place (e.g. a (chain, draw, obs) array reshaped without a copy).

    Returns
    -------
    ndarray, shape (S, n)
    """
    X, y = _check_design(X, y)
    coef = np.asarray(coef, dtype=np.float64)
    if coef.ndim != 2 or coef.shape[1] != X.shape[1]:
        raise ValueError(f"coef must have shape (draws, {X.shape[1]}), got {coef.shape}")
    S, n = coef.shape[0], X.shape[0]
    W, const = _scaled_coefficients(
        coef, _as_draws("intercept", intercept, S), _as_draws("sigma", sigma, S)
    )
    out = _output(out, S, n)
    buf = np.empty(BLOCK_VALUES)
    with single_threaded_blas():  # the block products are small (see numerics.blas)
        for r, draw_blocks in _blocks(S, n):
            aug = _augmented(X, y, r)
            for d in draw_blocks:
                z = buf[: (d.stop - d.start) * aug.shape[1]].reshape(d.stop - d.start, -1)
                np.matmul(W[d], aug, out=z)
                np.square(z, out=z)
                np.subtract(const[d, None], z, out=out[d, r])
    return out


def softmax_gate(G, V, c, hidden_weights=None, hidden_bias=None) -> GateFn:
    r"""Logits of a softmax gate relative to its reference (last) expert, block by block.

    :math:`\eta_k(x) = V_k^\top h(x) + c_k` for the K - 1 free experts (the reference
    expert's logit is 0), with :math:`h(x) = x` (linear gate) or
    :math:`h(x) = \tanh(W^\top x + a)` (mlp gate). A block of draws and rows is one
    matrix product (linear), or one product for the hidden units and a batched one for
    the output (mlp).

    Parameters
    ----------
    G : ndarray, shape (n, g)
        Gate design.
    V : ndarray, shape (S, g, K - 1) (linear) or (S, h, K - 1) (mlp)
    c : ndarray, shape (S, K - 1)
    hidden_weights : ndarray, shape (S, g, h), optional
        The mlp gate's input-to-hidden weights (then ``hidden_bias`` too).
    hidden_bias : ndarray, shape (S, h), optional

    Returns
    -------
    callable
        ``fn(rows, draws, out)`` writing the logits of the rows and draws (slices) into
        ``out`` of shape (n_draws, K - 1, n_rows), and returning it.
    """
    G = np.asarray(G, dtype=np.float64)
    # (S, K - 1, inputs): a block of draws is then one (draws * (K - 1), inputs) matrix
    Vt = np.ascontiguousarray(np.swapaxes(np.asarray(V, dtype=np.float64), 1, 2))
    c = np.asarray(c, dtype=np.float64)
    free = Vt.shape[1]
    if hidden_weights is None:

        def logits(rows: slice, draws: slice, out: np.ndarray) -> np.ndarray:
            nd = draws.stop - draws.start
            flat = out.reshape(nd * free, -1)
            np.matmul(Vt[draws].reshape(nd * free, -1), G[rows].T, out=flat)
            out += c[draws, :, None]
            return out

        return logits

    Wt = np.ascontiguousarray(np.swapaxes(np.asarray(hidden_weights, dtype=np.float64), 1, 2))
    a = np.asarray(hidden_bias, dtype=np.float64)
    n_hidden = Wt.shape[1]

    def mlp_logits(rows: slice, draws: slice, out: np.ndarray) -> np.ndarray:
        nd = draws.stop - draws.start
        hidden = np.matmul(Wt[draws].reshape(nd * n_hidden, -1), G[rows].T)
        hidden = hidden.reshape(nd, n_hidden, -1)
        hidden += a[draws, :, None]
        np.tanh(hidden, out=hidden)
        np.matmul(Vt[draws], hidden, out=out)
        out += c[draws, :, None]
        return out

    return mlp_logits


#: Smallest sum of exponentials trusted without the maximum shift (far above subnormals).
_TINY = 1e-280


def _sum_exp_log(a: np.ndarray, out: np.ndarray, plus_one: bool = False) -> bool:
    r""":math:`\log(\,[1 +]\sum_k e^{a_{\cdot k \cdot}})` over the middle axis, unshifted.

    For exponents known to be moderate (see :func:`mixture_gaussian_linear`). ``a`` is
    overwritten. Returns False, with ``out`` unusable, when a sum under- or overflowed.
    """
    np.exp(a, out=a)
    np.sum(a, axis=1, out=out)
    if plus_one:
        out += 1.0
    if not (out.min() > _TINY and out.max() < np.inf):
        return False
    np.log(out, out=out)
    return True


def _logsumexp_middle(a: np.ndarray, top: np.ndarray, out: np.ndarray, zero: bool) -> None:
    r""":math:`\log\sum_k e^{a_{\cdot k \cdot}}` over the middle axis of (draws, K, rows).

    ``zero=True`` adds a term :math:`e^0` (a gate's reference logit) without storing it.
    ``a`` is overwritten; ``top`` is scratch of ``out``'s shape (draws, rows).
    """
    np.max(a, axis=1, out=top)
    if zero:
        np.maximum(top, 0.0, out=top)
    if not np.isfinite(top).all():
        # every term -inf (zero weights): the density is 0 (log -inf), not NaN
        top[~np.isfinite(top)] = 0.0
    np.subtract(a, top[:, None, :], out=a)
    np.exp(a, out=a)
    np.sum(a, axis=1, out=out)
    if zero:
        out += np.exp(-top)
    with np.errstate(divide="ignore"):
        np.log(out, out=out)
    out += top


def _expert_block(W, const, aug, d, joint, gate_logits=None, rows=None, eta=None) -> None:
    """Per-expert log densities (+ gate logits) of one block into ``joint`` (draws, K, rows).

    One BLAS product for all experts of the block: ``W[d]`` is (draws * K, d + 2).
    ``const=None`` leaves out the per-expert constants: ``joint`` is then :math:`-z^2`.
    """
    nd, K, n_rows = joint.shape
    flat = joint.reshape(nd * K, n_rows)
    np.matmul(W[d].reshape(nd * K, -1), aug, out=flat)
    np.square(flat, out=flat)
    if const is None:
        np.negative(flat, out=flat)
    else:
        np.subtract(const[d].reshape(nd * K, 1), flat, out=flat)
    if gate_logits is not None:
        gate_logits(rows, d, eta)
        joint[:, : K - 1] += eta


def mixture_gaussian_linear(
    X, y, coef, sigma, intercept, log_weights=None, *, gate_logits=None, out=None
) -> np.ndarray:
    r""":math:`\log \sum_k \pi_{sk}(x_i)\, N(y_i \mid b_{sk} + x_i^\top w_{sk}, \sigma_{sk}^2)`.

    Parameters
    ----------
    X : ndarray, shape (n, d)
        Expert design (shared by the experts).
    y : ndarray, shape (n,)
    coef : ndarray, shape (S, K, d)
    sigma : ndarray, shape (S, K) (or anything broadcasting to it)
    intercept : ndarray, shape (S, K) (or anything broadcasting to it)
    log_weights : ndarray, shape (S, K), optional
        Log mixing weights per draw (the same for every row).
    gate_logits : callable, optional
        Instead of ``log_weights``: row-dependent weights
        :math:`\pi(x) = \mathrm{softmax}(\eta_1(x), \dots, \eta_{K-1}(x), 0)`, as
        returned by :func:`softmax_gate`.
    out : ndarray, shape (S, n), optional

    Returns
    -------
    ndarray, shape (S, n)
    """
    X, y = _check_design(X, y)
    coef = np.asarray(coef, dtype=np.float64)
    if coef.ndim != 3 or coef.shape[2] != X.shape[1]:
        raise ValueError(f"coef must have shape (draws, experts, {X.shape[1]}), got {coef.shape}")
    if (log_weights is None) == (gate_logits is None):
        raise ValueError("give exactly one of log_weights and gate_logits")
    S, K = coef.shape[:2]
    n = X.shape[0]
    # (S, K, d + 2), C order: a block of draws is one (draws * K, d + 2) matrix, so each
    # block is a single BLAS product for all experts
    W, const = _scaled_coefficients(
        coef,
        _as_draws("intercept", intercept, S, (K,)),
        _as_draws("sigma", sigma, S, (K,)),
    )
    W = np.ascontiguousarray(W)
    gated = gate_logits is not None
    if not gated:
        # Row-independent weights fold into the per-draw constant of each expert.
        const = const + _as_draws("log_weights", log_weights, S, (K,))
    # Subtracting each draw's largest constant bounds every exponent of a gate-free block
    # by 0, so log-sum-exp needs no per-element maximum (two passes fewer); a block
    # whose sum underflows (a row far from every expert) is redone with the maximum.
    shift = const.max(axis=1)
    shift[~np.isfinite(shift)] = 0.0  # a draw without any weight: its density is 0
    const = np.ascontiguousarray(const - shift[:, None])
    weight = np.exp(const)  # e^{c_k} in [0, 1]: the gate-free blocks' mixing factors
    out = _output(out, S, n)
    buf = np.empty(K * BLOCK_VALUES)
    top = np.empty(BLOCK_VALUES)
    eta_buf = np.empty((K - 1) * BLOCK_VALUES if gated else 0)
    gate_lse = np.empty(BLOCK_VALUES if gated else 0)
    with single_threaded_blas():  # the block products are small (see numerics.blas)
        for r, draw_blocks in _blocks(S, n):
            aug = _augmented(X, y, r)
            rows = aug.shape[1]
            for d in draw_blocks:
                nd = d.stop - d.start
                joint = buf[: nd * K * rows].reshape(nd, K, rows)
                eta = eta_buf[: nd * (K - 1) * rows].reshape(nd, K - 1, rows) if gated else None
                res = out[d, r]
                if K == 1:
                    _expert_block(W, const, aug, d, joint)
                    np.add(joint[:, 0], shift[d, None], out=res)
                    continue
                lse = gate_lse[: nd * rows].reshape(nd, rows) if gated else None
                if gated:
                    _expert_block(W, const, aug, d, joint, gate_logits, r, eta)
                    ok = _sum_exp_log(joint, res) and _sum_exp_log(eta, lse, plus_one=True)
                else:
                    # sum_k e^{c_k} e^{-z_k^2} as a batched product with the per-draw weights
                    # e^{c_k}: replaces the broadcast subtraction and the sum
                    _expert_block(W, None, aug, d, joint)
                    np.exp(joint, out=joint)
                    total = top[: nd * rows].reshape(nd, 1, rows)  # contiguous: BLAS writes it
                    np.matmul(weight[d, None, :], joint, out=total)
                    ok = total.min() > _TINY and total.max() < np.inf
                    if ok:
                        np.log(total[:, 0], out=res)
                if not ok:
                    m = top[: nd * rows].reshape(nd, rows)
                    _expert_block(W, const, aug, d, joint, gate_logits, r, eta)
                    if gated:
                        _logsumexp_middle(eta, m, lse, zero=True)
                    _logsumexp_middle(joint, m, res, zero=False)
                res += shift[d, None]
                if gated:
                    res -= lse  # log of the softmax's denominator
    return out
