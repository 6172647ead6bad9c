r"""Sufficient statistics of the standardised interaction design, one chunk at a time.

The collapsed :func:`bayesmoe.interaction_regression` needs only
:math:`n,\ \tilde X^\top \tilde X,\ \tilde X^\top \tilde y,\ \tilde y^\top \tilde y` of the
standardised design :math:`\tilde X = [1, \tilde x, (\tilde x_a \tilde x_b)_{(a,b)}]`,
:math:`\tilde x_j = (x_j - m_j)/s_j`, :math:`\tilde y = (y - m_y)/s_y`. The means and scales
are only known after seeing every row, so a chunk cannot standardise itself. Instead each
chunk summarises the vector

.. math::

    u = \big(x - k,\ ((x_a - k_a)(x_b - k_b))_{(a,b)},\ y - k_y\big)

around a fixed shift :math:`k` (e.g. the first chunk's means) by its count, mean and centred
cross-product matrix :math:`C = \sum_i (u_i - \bar u)(u_i - \bar u)^\top`, and chunks combine
with the pairwise formula of Chan, Golub & LeVeque (1979):

.. math::

    n = n_a + n_b, \quad \bar u = \bar u_a + \delta\, n_b / n, \quad
    C = C_a + C_b + \delta \delta^\top n_a n_b / n, \qquad \delta = \bar u_b - \bar u_a.

No raw moments are ever formed, so nothing cancels at 1e8 rows. Every standardised column
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

__all__ = ["DesignMoments", "chunk_moments", "combine", "standardized_statistics"]


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


#: Rows per block inside a chunk: the block's shifted design stays in cache (4096 rows x
#: 22 columns is 0.7 MB for 6 features). Measured on one 1e6-row partition, one thread:
#: 0.25 s with 65536-row blocks, 0.18 s with 16384, 0.08 s with 4096 rows and the
#: symmetric rank-k update below (X^T X of the 7 raw columns alone: 0.01 s).
BLOCK_ROWS = 4096


def chunk_moments(
    X: np.ndarray, y: np.ndarray, pairs: Sequence[tuple[int, int]], shift: np.ndarray
) -> DesignMoments:
    """The moments of one chunk of rows (float64 arrays ``X`` (n, p), ``y`` (n,)).

    Blocks of ``BLOCK_ROWS`` rows are centred at their own means and combined with
    :func:`combine`, so a chunk whose rows drift far from the shift loses no accuracy.
    Each block's cross-products are one BLAS ``syrk`` (the symmetric half only).
    """
    from scipy.linalg.blas import dsyrk

    pairs = tuple((int(a), int(b)) for a, b in pairs)
    shift = np.asarray(shift, float)
    p = shift.size - 1
    D = shift.size + len(pairs)
    total = DesignMoments(0, shift, np.zeros(D), np.zeros((D, D)), pairs)
    X = np.asarray(X, float)
    y = np.asarray(y, float)
    a, b = np.asarray(pairs, int).T if pairs else (np.zeros(0, int), np.zeros(0, int))
    buffer = np.empty((min(BLOCK_ROWS, max(X.shape[0], 1)), D), order="F")
    for start in range(0, X.shape[0], BLOCK_ROWS):
        stop = min(start + BLOCK_ROWS, X.shape[0])
        u = buffer[: stop - start]
        np.subtract(X[start:stop], shift[:-1], out=u[:, :p])
        for k in range(len(pairs)):  # contiguous columns (Fortran order): no temporaries
            np.multiply(u[:, a[k]], u[:, b[k]], out=u[:, p + k])
        np.subtract(y[start:stop], shift[-1], out=u[:, -1])
        mean = u.mean(axis=0)
        u -= mean
        upper = dsyrk(1.0, u, trans=1)  # u^T u, upper triangle
        cross = np.triu(upper) + np.triu(upper, 1).T
        total = combine(total, DesignMoments(stop - start, shift, mean, cross, pairs))
    return total


def combine(a: DesignMoments, b: DesignMoments) -> DesignMoments:
    """Moments of the union of two sets of rows (Chan, Golub & LeVeque's pairwise update)."""
    if a.pairs != b.pairs or not np.array_equal(a.shift, b.shift):
        raise ValueError("moments to combine must share their interaction pairs and shift")
    if a.n == 0:
        return b
    if b.n == 0:
        return a
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
