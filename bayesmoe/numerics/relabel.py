r"""Post-hoc relabelling of mixture MCMC draws (the label-switching problem).

A :math:`K`-component mixture posterior is invariant to permuting the component labels, so
MCMC draws :math:`\theta_1, \dots, \theta_S` carry arbitrary labels: chains settle in
different relabelled modes, or switch within a chain. Relabelling picks one permutation
:math:`\sigma_s` of :math:`\{0, \dots, K-1\}` per draw so that the relabelled draws agree.

Both algorithms here work on the per-draw classification probabilities

.. math::

    P_s[i, k] = p(z_i = k \mid y_i, \theta_s), \qquad s = 1..S,\ i = 1..n,\ k = 0..K-1,

and the convention throughout is that relabelled draw :math:`s` has new label :math:`j` equal
to old label :math:`\sigma_s(j)` (``perms[s, j]``), i.e.
``new_param[..., j] = old_param[..., perms[s, j]]`` and
:math:`P^{\sigma}_s[i, j] = P_s[i, \sigma_s(j)]`.

* :func:`ecr_permutations` -- pivot-based ECR (Papastamoulis & Iliopoulos 2010), soft
  version: maximise the agreement :math:`\sum_{i,j} P_s[i, \sigma_s(j)]\, \Pi[i, j]` with a
  reference :math:`\Pi`, independently per draw.
* :func:`stephens_permutations` -- Stephens (2000): alternate between the mean relabelled
  classification matrix and per-draw KL-optimal permutations.

Each per-draw step is a :math:`K \times K` linear assignment problem. All :math:`S` cost
matrices are built at once with a contraction over :math:`i` (chunked over draws to bound
memory), and only :func:`scipy.optimize.linear_sum_assignment` runs in a Python loop, which is
cheap for the small :math:`K` of a mixture.

numpy and scipy only: this module must not import PyMC, PyTensor or xarray.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "apply_permutations",
    "ecr_permutations",
    "relabel",
    "stephens_permutations",
]

#: Floor inside logarithms so that a zero probability gives a large finite cost, not -inf
#: (and 0 * log(floor) = 0 rather than 0 * -inf = nan).
_LOG_FLOOR = 1e-300

#: Float64 elements per block of draws (~4 MiB): bounds every temporary to about one block
#: besides ``probs`` itself, whatever S is, and keeps a converted float32 block cache-sized.
_CHUNK_ELEMENTS = 1 << 19

#: A draw's permutation changes only if the new one lowers its cost by more than this
#: (relative to the draw's total probability mass). Without it, exact ties or round-off can
#: make Stephens' iteration swap between equally good permutations forever.
_TIE_RTOL = 1e-12

_METHODS = ("stephens", "ecr")


# --------------------------------------------------------------------------- validation


def _check_probs(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs)
    if probs.ndim != 3:
        raise ValueError(f"probs must have shape (S, n, K); got ndim={probs.ndim}")
    if min(probs.shape) < 1:
        raise ValueError(f"probs must be non-empty in every axis; got shape {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        # Keep float32 as float32 (no full-size copy); promote anything else.
        probs = probs.astype(np.float64)
    # Reductions, so no probs-sized boolean temporary.
    lo, hi = probs.min(), probs.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("probs contains NaN or infinite values")
    if lo < 0:
        raise ValueError(f"probs must be non-negative; found minimum {lo}")
    return probs


def _check_pivot(pivot: np.ndarray, n: int, K: int) -> np.ndarray:
    """Return the pivot as an (n, K) float64 matrix (integer labels become one-hot rows)."""
    pivot = np.asarray(pivot)
    if pivot.ndim == 1:
        if pivot.shape[0] != n:
            raise ValueError(f"pivot labels must have length n={n}; got {pivot.shape[0]}")
        if not np.issubdtype(pivot.dtype, np.integer):
            raise ValueError(f"1-d pivot must hold integer labels; got dtype {pivot.dtype}")
        if n and (pivot.min() < 0 or pivot.max() >= K):
            raise ValueError(f"pivot labels must lie in [0, K={K})")
        onehot = np.zeros((n, K))
        onehot[np.arange(n), pivot] = 1.0
        return onehot
    if pivot.ndim != 2:
        raise ValueError(f"pivot must have shape (n, K) or (n,); got ndim={pivot.ndim}")
    if pivot.shape != (n, K):
        raise ValueError(
            f"pivot must have shape (n, K)={(n, K)} to match probs; got {pivot.shape}"
        )
    pivot = pivot.astype(np.float64)
    if not np.all(np.isfinite(pivot)):
        raise ValueError("pivot contains NaN or infinite values")
    return pivot


def _check_perms(perms: np.ndarray, S: int, K: int, name: str) -> np.ndarray:
    perms = np.asarray(perms)
    if perms.shape != (S, K):
        raise ValueError(f"{name} must have shape (S, K)={(S, K)}; got {perms.shape}")
    if not np.issubdtype(perms.dtype, np.integer):
        raise ValueError(f"{name} must be integer; got dtype {perms.dtype}")
    if not np.array_equal(np.sort(perms, axis=1), np.broadcast_to(np.arange(K), (S, K))):
        raise ValueError(f"every row of {name} must be a permutation of 0..K-1")
    return perms.astype(np.intp)


def _check_max_iter(max_iter: int) -> int:
    if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer; got {max_iter!r}")
    return int(max_iter)


# --------------------------------------------------------------------------- kernels


def _float64_chunks(probs: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(draws, probs[draws] as float64)`` over consecutive blocks of draws.

    float64 because float32 accumulation over n ~ 1000 rows loses enough digits to flip
    near-ties between permutations. float64 input is yielded as views (no copy); other input is
    converted into one reused buffer, as allocating a fresh block per chunk costs more in page
    faults than the conversion itself.
    """
    S, n, K = probs.shape
    step = max(1, _CHUNK_ELEMENTS // (n * K))
    buffer = None if probs.dtype == np.float64 else np.empty((min(step, S), n, K))
    for start in range(0, S, step):
        draws = slice(start, min(start + step, S))
        if buffer is None:
            yield draws, probs[draws]
        else:
            chunk = buffer[: draws.stop - draws.start]
            np.copyto(chunk, probs[draws])
            yield draws, chunk


def _gain_matrices(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    r"""``G[s, k, j] = \sum_i P_s[i, k] W[i, j]`` for all draws, as float64 (S, K, K).

    Assigning old label :math:`k` to new label :math:`j` in draw :math:`s` gains
    :math:`G_s[k, j]`; both ECR (:math:`W = \Pi`) and Stephens (:math:`W = \log Q`) reduce to
    maximising :math:`\sum_j G_s[\sigma_s(j), j]`.
    """
    S, _, K = probs.shape
    gains = np.empty((S, K, K))
    for draws, chunk in _float64_chunks(probs):
        # Batched (K, n) @ (n, K) products on transposed views: each P_s^T is a column-major
        # matrix that BLAS takes as is, whereas einsum would first copy the chunk to reorder it.
        np.matmul(chunk.transpose(0, 2, 1), weights, out=gains[draws])
    return gains


def _best_permutations(gains: np.ndarray) -> np.ndarray:
    r"""Per draw, :math:`\sigma_s = \arg\max_\sigma \sum_j G_s[\sigma(j), j]` (shape (S, K))."""
    S, K, _ = gains.shape
    perms = np.empty((S, K), dtype=np.intp)
    for s in range(S):
        # Rows of G_s^T are the new labels j, so col_ind[j] is the old label sent to j;
        # row_ind comes back sorted as 0..K-1.
        _, perms[s] = linear_sum_assignment(gains[s].T, maximize=True)
    return perms


def _assignment_value(gains: np.ndarray, perms: np.ndarray) -> np.ndarray:
    r""":math:`\sum_j G_s[\sigma_s(j), j]` for each draw (shape (S,))."""
    K = perms.shape[1]
    return gains[np.arange(len(perms))[:, None], perms, np.arange(K)].sum(axis=1)


def _mean_relabelled(probs: np.ndarray, perms: np.ndarray) -> np.ndarray:
    r""":math:`Q[i, j] = S^{-1} \sum_s P_s[i, \sigma_s(j)]` as float64 (n, K).

    Computed as :math:`Q = S^{-1} \sum_s P_s A_s` with the one-hot
    :math:`A_s[k, j] = 1[\sigma_s(j) = k]`: batched :math:`(n, K) \times (K, K)` products
    faster than gathering :math:`P_s[:, \sigma_s]` with fancy indexing,
    and, unlike one tall-skinny BLAS product over all draws, insensitive to BLAS threading on a
    busy machine.
    """
    S, n, K = probs.shape
    onehot = np.zeros((S, K, K))
    onehot[np.arange(S)[:, None], perms, np.arange(K)] = 1.0
    total = np.zeros((n, K))
    for draws, chunk in _float64_chunks(probs):
        total += np.matmul(chunk, onehot[draws]).sum(axis=0)
    return total / S


def _neg_entropy(probs: np.ndarray) -> float:
    r""":math:`\sum_s \sum_{i,k} P_s[i, k] \log P_s[i, k]` (invariant to relabelling)."""
    total = 0.0
    for _, chunk in _float64_chunks(probs):
        total += float(np.sum(chunk * np.log(np.maximum(chunk, _LOG_FLOOR))))
    return total


def _stephens_objective(probs: np.ndarray, perms: np.ndarray) -> float:
    r"""Stephens' loss at ``perms`` with :math:`Q` set to the mean relabelled matrix.

    .. math::

        L(\sigma) = \sum_s \sum_{i,j} P_s[i, \sigma_s(j)]
            \bigl(\log P_s[i, \sigma_s(j)] - \log Q_\sigma[i, j]\bigr),
        \qquad Q_\sigma = \frac1S \sum_s P^{\sigma}_s,

    the summed KL divergence of the relabelled rows from the mean. Used by the tests to check
    that each sweep of :func:`stephens_permutations` does not increase it.
    """
    probs = _check_probs(probs)
    S, _, K = probs.shape
    perms = _check_perms(perms, S, K, "perms")
    log_q = np.log(np.maximum(_mean_relabelled(probs, perms), _LOG_FLOOR))
    cross = _assignment_value(_gain_matrices(probs, log_q), perms).sum()
    return _neg_entropy(probs) - float(cross)


# --------------------------------------------------------------------------- public API


def ecr_permutations(probs: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    r"""Pivot-based relabelling: ECR of Papastamoulis & Iliopoulos (2010), soft version.

    For each draw independently,

    .. math::

        \sigma_s = \arg\max_{\sigma} \sum_{i=1}^n \sum_{j=0}^{K-1}
            P_s[i, \sigma(j)]\, \Pi[i, j],

    a :math:`K \times K` linear assignment problem on
    :math:`G_s[k, j] = \sum_i P_s[i, k]\, \Pi[i, j]`. With one-hot :math:`\Pi` (hard pivot
    labels :math:`c_i`) this is the original ECR criterion: maximise the expected number of
    observations whose relabelled allocation equals the pivot's, :math:`\sum_i P_s[i,
    \sigma(c_i)]`.

    Parameters
    ----------
    probs : (S, n, K) array of float
        Per-draw classification probabilities :math:`P_s[i, k]` (float32 or float64).
    pivot : (n, K) array of float, or (n,) array of int
        Reference probabilities :math:`\Pi` (e.g. from a point estimate such as the MAP draw),
        or hard reference labels in ``0..K-1``, which are one-hot encoded.

    Returns
    -------
    perms : (S, K) array of int
        Relabelled draw ``s`` has new label ``j`` = old label ``perms[s, j]``, i.e.
        ``new_param[..., j] = old_param[..., perms[s, j]]`` (see :func:`apply_permutations`).

    Raises
    ------
    ValueError
        If ``probs`` is not a finite, non-negative (S, n, K) array, or ``pivot`` does not match
        it.
    """
    probs = _check_probs(probs)
    return _ecr(probs, _check_pivot(pivot, *probs.shape[1:]))


def _ecr(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ECR on validated input."""
    S, _, K = probs.shape
    if K == 1:
        return np.zeros((S, 1), dtype=np.intp)
    return _best_permutations(_gain_matrices(probs, weights))


def _stephens(
    probs: np.ndarray, init: np.ndarray | None, max_iter: int, track: bool = False
) -> tuple[np.ndarray, int, list[float]]:
    """Stephens' iteration on validated input.

    With ``track``, also returns the loss :math:`L` (see :func:`_stephens_objective`) at the
    start of each sweep; it costs one entropy pass only, because the sweep's gains at the
    incumbent permutations are exactly the cross-entropy term of :math:`L`.
    """
    S, n, K = probs.shape
    perms = np.zeros((S, K), dtype=np.intp) + np.arange(K) if init is None else init.copy()
    if K == 1:
        return perms, 0, []
    neg_entropy = _neg_entropy(probs) if track else 0.0
    # Per-draw tolerance scaled by the draw's mass n (rows sum to one for probabilities).
    tol = _TIE_RTOL * n
    history: list[float] = []
    for it in range(1, max_iter + 1):
        log_q = np.log(np.maximum(_mean_relabelled(probs, perms), _LOG_FLOOR))
        gains = _gain_matrices(probs, log_q)
        current = _assignment_value(gains, perms)
        if track:
            history.append(neg_entropy - float(current.sum()))
        proposal = _best_permutations(gains)
        improved = _assignment_value(gains, proposal) > current + tol
        if not improved.any():
            return perms, it, history
        # Keep the incumbent on (near-)ties so the loss strictly drops whenever anything moves:
        # with finitely many labellings that guarantees termination.
        perms[improved] = proposal[improved]
    warnings.warn(
        f"Stephens relabelling did not converge in max_iter={max_iter} sweeps",
        RuntimeWarning,
        stacklevel=3,
    )
    return perms, max_iter, history


def stephens_permutations(
    probs: np.ndarray, init: np.ndarray | None = None, max_iter: int = 100
) -> tuple[np.ndarray, int]:
    r"""Relabel by Stephens' (2000) KL algorithm.

    Minimises the summed KL divergence of the relabelled classification matrices from their
    mean by coordinate descent. Starting from :math:`\sigma^{(0)}` (``init``), sweep
    :math:`t = 1, 2, \dots`:

    1. :math:`Q[i, j] = \frac1S \sum_s P_s[i, \sigma_s(j)]`;
    2. for every draw,

       .. math::

           \sigma_s \leftarrow \arg\min_\sigma \sum_{i,j} P_s[i, \sigma(j)]
               \bigl(\log P_s[i, \sigma(j)] - \log Q[i, j]\bigr)
           = \arg\max_\sigma \sum_{i,j} P_s[i, \sigma(j)] \log Q[i, j],

       (the entropy term does not depend on :math:`\sigma`), a :math:`K \times K` assignment
       problem on :math:`G_s[k, j] = \sum_i P_s[i, k] \log Q[i, j]`;

    until no permutation changes. Step 2 minimises the loss over :math:`\sigma` for fixed
    :math:`Q` and step 1 over :math:`Q` for fixed :math:`\sigma` (the row-wise mean minimises
    :math:`-\sum_s \sum_j P^\sigma_s[i, j] \log Q[i, j]` over the simplex), so the loss never
    increases. A draw keeps its permutation unless the new one is better by more than a
    round-off tolerance, which makes the loss strictly decrease on every sweep that changes
    anything, hence the iteration terminates.

    Parameters
    ----------
    probs : (S, n, K) array of float
        Per-draw classification probabilities :math:`P_s[i, k]` (float32 or float64).
    init : (S, K) array of int, optional
        Starting permutations in the convention of the result, e.g. from
        :func:`ecr_permutations`. Default: the identity for every draw. Without a pivot the
        result is determined only up to one global permutation of the labels.
    max_iter : int, default 100
        Maximum number of sweeps; a ``RuntimeWarning`` is issued if it is reached.

    Returns
    -------
    perms : (S, K) array of int
        New label ``j`` of draw ``s`` = old label ``perms[s, j]``.
    n_iterations : int
        Number of sweeps run, including the last one that changed nothing (0 when K = 1).

    Raises
    ------
    ValueError
        On malformed ``probs``, ``init`` or ``max_iter``.
    """
    probs = _check_probs(probs)
    S, _, K = probs.shape
    if init is not None:
        init = _check_perms(init, S, K, "init")
    perms, n_iter, _ = _stephens(probs, init, _check_max_iter(max_iter))
    return perms, n_iter


def apply_permutations(values: np.ndarray, perms: np.ndarray, axis: int) -> np.ndarray:
    r"""Relabel per-draw arrays: ``out[s, ..., j, ...] = values[s, ..., perms[s, j], ...]``.

    Parameters
    ----------
    values : (S, ...) array
        Draws flattened (e.g. chain x draw stacked) on axis 0, with the K components on
        ``axis``.
    perms : (S, K) array of int
        Permutations from :func:`ecr_permutations`, :func:`stephens_permutations` or
        :func:`relabel`.
    axis : int
        The component axis of ``values`` (negative values count from the end); must not be 0.

    Returns
    -------
    Array of the same shape and dtype as ``values``. For example
    ``apply_permutations(probs, perms, axis=2)`` gives the relabelled
    :math:`P^\sigma_s[i, j] = P_s[i, \sigma_s(j)]`.

    Raises
    ------
    ValueError
        If ``axis`` is out of range or 0, or ``perms`` does not match ``values``.
    """
    values = np.asarray(values)
    if values.ndim < 2:
        raise ValueError(
            f"values must have a draw axis and a component axis; got ndim={values.ndim}"
        )
    if not -values.ndim <= axis < values.ndim:
        raise ValueError(f"axis {axis} is out of range for values with ndim={values.ndim}")
    axis = axis % values.ndim
    if axis == 0:
        raise ValueError("axis must not be 0, which holds the draws")
    S, K = values.shape[0], values.shape[axis]
    perms = _check_perms(perms, S, K, "perms")
    # Index array of shape (S, 1, ..., K, ..., 1): take_along_axis broadcasts it over the
    # other axes, so no values-sized index is built.
    shape = [1] * values.ndim
    shape[0], shape[axis] = S, K
    return np.take_along_axis(values, perms.reshape(shape), axis=axis)


def relabel(
    probs: np.ndarray,
    pivot: np.ndarray | None = None,
    method: str = "stephens",
    max_iter: int = 100,
) -> np.ndarray:
    r"""Permutations that undo label switching in mixture draws.

    ``method="stephens"``: :func:`ecr_permutations` against ``pivot`` if one is given
    (otherwise the identity) as the starting point of :func:`stephens_permutations`. Starting
    from ECR both anchors the labels to the pivot's and usually leaves Stephens only a few
    sweeps. ``method="ecr"``: ECR alone (needs ``pivot``).

    Parameters
    ----------
    probs : (S, n, K) array of float
        Per-draw classification probabilities :math:`P_s[i, k]`; subsample rows ``i`` for
        large ``n`` (cost is :math:`O(S n K^2)` per sweep).
    pivot : (n, K) array of float or (n,) array of int, optional
        Reference probabilities or labels; required for ``method="ecr"``.
    method : {"stephens", "ecr"}
    max_iter : int, default 100
        Maximum Stephens sweeps.

    Returns
    -------
    perms : (S, K) array of int
        New label ``j`` of draw ``s`` = old label ``perms[s, j]``; apply with
        :func:`apply_permutations`.

    Raises
    ------
    ValueError
        On an unknown ``method``, ``method="ecr"`` without ``pivot``, or malformed inputs
        (the message names the argument).
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}; got {method!r}")
    if method == "ecr" and pivot is None:
        raise ValueError('pivot is required for method="ecr"')
    probs = _check_probs(probs)
    _, n, K = probs.shape
    weights = None if pivot is None else _check_pivot(pivot, n, K)
    max_iter = _check_max_iter(max_iter)
    init = None if weights is None else _ecr(probs, weights)
    if method == "ecr":
        return init
    return _stephens(probs, init, max_iter)[0]
