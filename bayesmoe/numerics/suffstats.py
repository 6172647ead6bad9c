r"""Sufficient statistics of the standardised interaction design, one chunk at a time.

The collapsed :func:`bayesmoe.interaction_regression` needs only
:math:`n,\ \tilde X^\top \tilde X,\ \tilde X^\top \tilde y,\ \tilde y^\top \tilde y` of the
standardised design :math:`\tilde X = [1, \tilde x, (\tilde x_a \tilde x_b)_{(a,b)}]`,
:math:`\tilde x_j = (x_j - m_j)/s_j`, :math:`\tilde y = (y - m_y)/s_y`. The means and scales
are only known after seeing every row, so a chunk cannot standardise itself. Instead each
chunk summarises the vector

.. math::

    u = \big(x - k,\ ((x_a - k_a)(x_b - k_b))_{(a,b)},\ y - k_y\big)

around a shift :math:`k` near its rows (by default the mean of its first rows) by its
count, mean and centred cross-product matrix :math:`C = \sum_i (u_i - \bar u)(u_i - \bar u)^\top`.
Moments around one shift map exactly to another (:func:`reshift`: every coordinate of
:math:`u` is affine in those of the other), and chunks combine with the pairwise formula of
Chan, Golub & LeVeque (1979):

.. math::

    n = n_a + n_b, \quad \bar u = \bar u_a + \delta\, n_b / n, \quad
    C = C_a + C_b + \delta \delta^\top n_a n_b / n, \qquad \delta = \bar u_b - \bar u_a.

Raw moments are formed only within a chunk, around its own shift, and only where that
cancels fewer than ~4 digits (checked; see :func:`chunk_moments`), so nothing cancels at
1e8 rows. Every standardised column
is an affine function :math:`a^\top u + c` of :math:`u` (with :math:`d = m - k` the small
distance between the true means and the shift,
:math:`\tilde x_a \tilde x_b = (u_{ab} - d_b u_a - d_a u_b + d_a d_b)/(s_a s_b)`), so
:math:`\sum_i \tilde X_i \tilde X_i^\top = A C A^\top + n\, (A \bar u + c)(A \bar u + c)^\top`
exactly; the shift keeps the coefficients :math:`d` of order :math:`s`, which is what makes
this well conditioned when the features sit far from zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DesignMoments", "chunk_moments", "combine", "reshift", "standardized_statistics"]


@dataclass(frozen=True)
class DesignMoments:
    """Count, mean and centred cross-products of ``u`` (see module docstring) for some rows."""

    n: int
    shift: np.ndarray  # (p + 1,): the shift of x then y
    mean: np.ndarray  # (p + q + 1,)
    comoment: np.ndarray  # (p + q + 1, p + q + 1)
    pairs: tuple[tuple[int, int], ...]

    @property
    def n_features(self) -> int:
        return self.shift.size - 1


#: Rows per block inside a chunk: the block's shifted design stays in cache (8192 rows x
#: 22 columns is 1.4 MB for 6 features) and one ``syrk`` adds its cross-products to the
#: chunk's. Accumulating the blocks around the chunk's shift is the fast path; blocks each
#: centred at their own mean and combined pairwise are the exact path, kept for
#: ill-conditioned chunks.
BLOCK_ROWS = 8192

#: Rows whose mean is a chunk's own shift when none is given.
LOCAL_SHIFT_ROWS = 1024

#: The fast path forms ``C = sum(v v^T) - n vbar vbar^T``; it is kept when every column's
#: ``n vbar_j^2`` is at most this multiple of ``C_jj`` (at most ~4 of 16 digits lost, so
#: 1e-12 relative at worst); otherwise the chunk is redone block-centred.
CANCELLATION_LIMIT = 1e4


def _product_runs(pairs: tuple[tuple[int, int], ...]) -> list[tuple[int, int, int, int]]:
    """The pairs as runs ``(a, b0, b1, k0)``: pairs ``k0 ..`` are ``(a, b0) .. (a, b1 - 1)``.

    All pairs of 6 features make 5 runs, so a block's 15 product columns take 5
    broadcast multiplications instead of 15.
    """
    runs: list[list[int]] = []
    for k, (a, b) in enumerate(pairs):
        if runs and runs[-1][0] == a and runs[-1][2] == b and runs[-1][3] + b - runs[-1][1] == k:
            runs[-1][2] = b + 1
        else:
            runs.append([a, b, b + 1, k])
    return [(a, b0, b1, k0) for a, b0, b1, k0 in runs]


def _shifted_block(u, X, y, shift, runs):
    """Fill ``u`` (Fortran order: contiguous columns, no temporaries) with the shifted design."""
    p = X.shape[1]
    np.subtract(X, shift[:-1], out=u[:, :p])
    for a, b0, b1, k0 in runs:
        np.multiply(u[:, a : a + 1], u[:, b0:b1], out=u[:, p + k0 : p + k0 + b1 - b0])
    np.subtract(y, shift[-1], out=u[:, -1])


def chunk_moments(
    X: np.ndarray,
    y: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    shift: np.ndarray | None = None,
) -> DesignMoments:
    """The moments of one chunk of rows (float64 arrays ``X`` (n, p), ``y`` (n,)).

    ``shift`` defaults to the mean of the chunk's first ``LOCAL_SHIFT_ROWS`` rows; chunks
    with different shifts still :func:`combine`. Blocks of ``BLOCK_ROWS`` rows add their
    cross-products around the shift with one BLAS ``syrk`` each (the symmetric half only).
    A chunk whose rows sit so far from the shift that the centring would cancel more than
    ``CANCELLATION_LIMIT`` allows (rows drifting far from the first ones, a constant
    interaction column) is redone with every block centred at its own mean and combined
    pairwise, which loses nothing whatever the rows.
    """
    from scipy.linalg.blas import dsyrk

    pairs = tuple((int(a), int(b)) for a, b in pairs)
    X = np.asarray(X, float)
    y = np.asarray(y, float)
    if shift is None:
        head = slice(0, LOCAL_SHIFT_ROWS)
        shift = np.concatenate([X[head].mean(axis=0), [y[head].mean()]]) if y.size else None
        shift = np.zeros(X.shape[1] + 1) if shift is None else shift
    shift = np.asarray(shift, float)
    D = shift.size + len(pairs)
    n = X.shape[0]
    if n == 0:
        return DesignMoments(0, shift, np.zeros(D), np.zeros((D, D)), pairs)
    runs = _product_runs(pairs)
    p = X.shape[1]
    buffer = np.empty((min(BLOCK_ROWS, n), D), order="F")
    gram = np.zeros((D, D), order="F")  # upper triangle of sum(v v^T)
    total = np.zeros(D)
    for start in range(0, n, BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, n)
        u = buffer[: stop - start]
        _shifted_block(u, X[start:stop], y[start:stop], shift, runs)
        total[:p] += u[:, :p].sum(axis=0)
        total[-1] += u[:, -1].sum()
        gram = dsyrk(1.0, u, beta=1.0, c=gram, trans=1, overwrite_c=1)
    gram = np.triu(gram) + np.triu(gram, 1).T
    # a product column's sum is a cross-product of two shifted features, already in gram
    for k, (a, b) in enumerate(pairs):
        total[p + k] = gram[a, b]
    mean = total / n
    comoment = gram - n * np.outer(mean, mean)
    with np.errstate(over="ignore", invalid="ignore"):
        lost = n * mean**2
        fine = np.all(np.isfinite(comoment)) and np.all(
            lost <= CANCELLATION_LIMIT * np.diag(comoment)
        )
    if fine:
        return DesignMoments(n, shift, mean, comoment, pairs)
    return _centred_chunk_moments(X, y, pairs, shift)


def _centred_chunk_moments(X, y, pairs, shift) -> DesignMoments:
    """The exact path: every block centred at its own mean, blocks combined pairwise."""
    from scipy.linalg.blas import dsyrk

    D = shift.size + len(pairs)
    runs = _product_runs(pairs)
    total = DesignMoments(0, shift, np.zeros(D), np.zeros((D, D)), pairs)
    buffer = np.empty((min(BLOCK_ROWS, X.shape[0]), D), order="F")
    for start in range(0, X.shape[0], BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, X.shape[0])
        u = buffer[: stop - start]
        _shifted_block(u, X[start:stop], y[start:stop], shift, runs)
        mean = u.mean(axis=0)
        u -= mean
        upper = dsyrk(1.0, u, trans=1)
        cross = np.triu(upper) + np.triu(upper, 1).T
        total = combine(total, DesignMoments(stop - start, shift, mean, cross, pairs))
    return total


def reshift(m: DesignMoments, shift: np.ndarray) -> DesignMoments:
    r"""The same rows' moments around another shift :math:`k'`.

    With :math:`d = k - k'` every coordinate of :math:`u' = u(k')` is affine in
    :math:`u = u(k)`: :math:`u'_j = u_j + d_j` and
    :math:`u'_{ab} = u_{ab} + d_b u_a + d_a u_b + d_a d_b`, so with that map
    :math:`u' = A u + c`, :math:`\bar u' = A \bar u + c` and :math:`C' = A C A^\top`
    exactly.
    """
    shift = np.asarray(shift, float)
    if shift.shape != m.shift.shape:
        raise ValueError(f"shift must have shape {m.shift.shape}, got {shift.shape}")
    if np.array_equal(shift, m.shift):
        return m
    p, D = m.n_features, m.mean.size
    d = m.shift - shift
    A = np.eye(D)
    c = np.zeros(D)
    c[:p], c[-1] = d[:-1], d[-1]
    for k, (a, b) in enumerate(m.pairs):
        A[p + k, a] += d[b]
        A[p + k, b] += d[a]
        c[p + k] = d[a] * d[b]
    comoment = A @ m.comoment @ A.T
    return DesignMoments(m.n, shift, A @ m.mean + c, (comoment + comoment.T) / 2, m.pairs)


def combine(a: DesignMoments, b: DesignMoments) -> DesignMoments:
    """Moments of the union of two sets of rows (Chan, Golub & LeVeque's pairwise update).

    ``b`` is first moved to ``a``'s shift (:func:`reshift`) when they differ.
    """
    if a.pairs != b.pairs or a.shift.shape != b.shift.shape:
        raise ValueError("moments to combine must share their features and interaction pairs")
    if b.n == 0:
        return a
    if a.n == 0:
        return b
    b = reshift(b, a.shift)
    n = a.n + b.n
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.n / n)
    comoment = a.comoment + b.comoment + np.outer(delta, delta) * (a.n * b.n / n)
    return DesignMoments(n, a.shift, mean, comoment, a.pairs)


def standardized_statistics(
    m: DesignMoments, *, standardize: bool = True
) -> dict[str, np.ndarray | float]:
    r"""Means, scales and the collapsed model's statistics of the standardised design.

    Returns a dict with ``n``, ``x_mean``, ``x_scale`` (population sd, 1 for a constant
    column, as :class:`bayesmoe.data.Standardizer`), ``y_mean``, ``y_scale`` and ``xtx``
    (``(1 + p + q)``-square, the intercept column first), ``xty``, ``yty`` of
    :math:`[1, \tilde x, \tilde x_a \tilde x_b]` and :math:`\tilde y`. With
    ``standardize=False`` the map is the identity (means 0, scales 1: the raw design, as
    ``Standardizer(enabled=False)``), and ``y_location``/``y_spread`` still give the
    target's mean and sd (for default priors, which use the spread of the working ``y``).
    """
    if m.n < 1:
        raise ValueError("no rows: the statistics of an empty data set are undefined")
    p, q = m.n_features, len(m.pairs)
    n = float(m.n)
    var = np.diag(m.comoment) / n
    y_location = float(m.shift[-1] + m.mean[-1])
    y_spread = float(np.sqrt(var[-1]))
    if standardize:
        x_mean = m.shift[:-1] + m.mean[:p]
        x_scale = np.sqrt(var[:p])
        x_scale = np.where(x_scale > 0, x_scale, 1.0)
        y_mean, y_scale = y_location, (y_spread if y_spread > 0 else 1.0)
    else:
        x_mean, x_scale, y_mean, y_scale = np.zeros(p), np.ones(p), 0.0, 1.0
    d = x_mean - m.shift[:-1]  # the working centre, relative to the shift
    # rows of A (and entries of c): each standardised column as a^T u + c
    D = p + q + 1
    A = np.zeros((p + q + 1, D))
    c = np.zeros(p + q + 1)
    for j in range(p):
        A[j, j] = 1.0 / x_scale[j]
        c[j] = -d[j] / x_scale[j]
    for k, (a, b) in enumerate(m.pairs):
        s = x_scale[a] * x_scale[b]
        A[p + k, p + k] = 1.0 / s
        A[p + k, a] -= d[b] / s
        A[p + k, b] -= d[a] / s
        c[p + k] = d[a] * d[b] / s
    A[-1, -1] = 1.0 / y_scale
    c[-1] = -(y_mean - m.shift[-1]) / y_scale
    mean_std = A @ m.mean + c
    second = A @ m.comoment @ A.T + n * np.outer(mean_std, mean_std)
    xtx = np.empty((1 + p + q, 1 + p + q))
    xtx[0, 0] = n
    xtx[0, 1:] = xtx[1:, 0] = n * mean_std[:-1]
    xtx[1:, 1:] = second[:-1, :-1]
    xty = np.concatenate([[n * mean_std[-1]], second[:-1, -1]])
    return {
        "n": n,
        "x_mean": x_mean,
        "x_scale": x_scale,
        "y_mean": y_mean,
        "y_scale": y_scale,
        "y_location": y_location,
        "y_spread": y_spread,
        "xtx": (xtx + xtx.T) / 2,
        "xty": xty,
        "yty": float(second[-1, -1]),
    }
