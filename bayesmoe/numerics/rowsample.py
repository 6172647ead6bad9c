r"""A uniform random sample of rows, drawn chunk by chunk and merged pairwise.

A streamed fit cannot store the pointwise log-likelihood of every row, so LOO is estimated
from a simple random sample of rows (the subsampling LOO of Magnusson et al. 2019). The
sample is a *bottom-k* sample (Cohen & Kaplan 2007): every row carries an independent
uniform key :math:`U_i`, and the sample is the :math:`k` rows with the smallest keys. That
is a uniform :math:`k`-subset of the rows without replacement, whatever the chunking, and
two chunks' samples merge exactly by keeping the :math:`k` smallest keys of the two.

A chunk of :math:`n` rows never draws its :math:`n` keys. It draws only its
:math:`m = \min(k, n)` smallest, in increasing order, from the sequential form of the
uniform order statistics (Devroye 1986, ch. V),

.. math::

    1 - U_{(i)} = \prod_{j \le i} V_j^{1/(n - j + 1)}, \qquad V_j \sim \mathcal U(0, 1)
    \text{ i.i.d.},

and gives them to distinct rows drawn one after another uniformly among those not yet drawn
(a uniformly random order of the rows, of which the first :math:`m` are needed). Both draws
are prefixes of one random stream per chunk, so a sample of :math:`k_1 < k_2` rows with
the same seeds is the first :math:`k_1` rows of the :math:`k_2` sample: the models of one
data set fitted with different sample sizes share their smallest-key rows, which is what
lets :func:`bayesmoe.compare` pair their subsampled LOO on the same rows.

Row positions are counted over the rows seen, chunk after chunk in merge order (``a``'s
rows before ``b``'s), so merging neighbours in order gives every row its position in the
whole data set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RowSample", "chunk_sample", "merge_samples", "sample_rng"]

#: Where every chunk's random-number stream starts (with the chunk's index), fixed so that every
#: model of the same data, partitioned the same way, draws the same rows.
SAMPLE_SEED = 20_161_204

#: Candidate rows drawn per round when drawing distinct rows (a fixed batch, so the stream
#: is consumed the same way whatever the sample size).
_BATCH = 1024


@dataclass(frozen=True)
class RowSample:
    """A uniform sample of ``min(k, n_seen)`` rows out of ``n_seen``, smallest key first.

    ``rows`` are their positions among the rows seen, ``keys`` their uniform keys (the
    sample is the rows with the smallest keys), ``chunk_rows`` the number of rows of each
    chunk behind it, in order.
    """

    n_seen: int
    X: np.ndarray
    y: np.ndarray
    rows: np.ndarray
    keys: np.ndarray
    chunk_rows: tuple[int, ...]


def sample_rng(chunk: int) -> np.random.Generator:
    """The random stream of chunk number ``chunk`` (see ``SAMPLE_SEED``)."""
    return np.random.default_rng(np.random.SeedSequence([SAMPLE_SEED, int(chunk)]))


def _distinct_rows(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """The first ``m`` distinct values of a stream of uniform draws from ``0..n-1``."""
    seen = np.empty(0, dtype=np.int64)
    while seen.size < m:
        draws = rng.integers(0, n, size=_BATCH)
        candidates = np.concatenate([seen, draws])
        _, first = np.unique(candidates, return_index=True)
        seen = candidates[np.sort(first)]  # first occurrences, in draw order
    return seen[:m]


def chunk_sample(X: np.ndarray, y: np.ndarray, k: int, rng: np.random.Generator) -> RowSample:
    """The bottom-``k`` sample of one chunk's rows (``rng``: its stream, :func:`sample_rng`)."""
    n = X.shape[0]
    m = min(int(k), n)
    key_rng, row_rng = rng.spawn(2)
    j = np.arange(m)
    keys = -np.expm1(np.cumsum(np.log(key_rng.random(m)) / (n - j)))
    rows = _distinct_rows(n, m, row_rng) if m else np.zeros(0, dtype=np.int64)
    X = np.asarray(X, float)
    y = np.asarray(y, float)
    return RowSample(n, X[rows], y[rows], rows, keys, (n,))


def merge_samples(a: RowSample, b: RowSample, k: int) -> RowSample:
    """The bottom-``k`` sample of the union of the rows behind ``a`` then ``b``."""
    keys = np.concatenate([a.keys, b.keys])
    take = np.argsort(keys, kind="stable")[: int(k)]
    return RowSample(
        a.n_seen + b.n_seen,
        np.concatenate([a.X, b.X])[take],
        np.concatenate([a.y, b.y])[take],
        np.concatenate([a.rows, b.rows + a.n_seen])[take],
        keys[take],
        a.chunk_rows + b.chunk_rows,
    )
