"""A uniform random sample of rows, drawn chunk by chunk and merged pairwise.

A streamed fit cannot store the pointwise log-likelihood of every row, so LOO is estimated
from a simple random sample of rows (Magnusson et al.'s subsampling LOO). Each chunk keeps
a uniform sample of at most ``k`` of its rows; two such samples merge into a uniform
``k``-sample of the union by drawing how many rows come from each side from the
hypergeometric distribution (the count a uniform ``k``-subset of the union would take from
each) and subsampling each side uniformly. By induction the final sample is a uniform
``k``-subset without replacement of all rows, whatever the chunking, in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RowSample", "chunk_sample", "merge_samples"]


@dataclass(frozen=True)
class RowSample:
    """A uniform sample (``X``, ``y``) of ``min(k, n_seen)`` rows out of ``n_seen``."""

    n_seen: int
    X: np.ndarray
    y: np.ndarray


def chunk_sample(X: np.ndarray, y: np.ndarray, k: int, rng: np.random.Generator) -> RowSample:
    """A uniform sample of at most ``k`` rows of one chunk (in the chunk's row order)."""
    n = X.shape[0]
    if n <= k:
        return RowSample(n, np.array(X, float), np.array(y, float))
    idx = np.sort(rng.choice(n, size=k, replace=False))
    return RowSample(n, np.asarray(X, float)[idx], np.asarray(y, float)[idx])


def merge_samples(a: RowSample, b: RowSample, k: int, rng: np.random.Generator) -> RowSample:
    """A uniform sample of at most ``k`` rows of the union of the rows behind ``a``, ``b``."""
    n = a.n_seen + b.n_seen
    if n <= k:  # both hold every row they have seen
        return RowSample(n, np.concatenate([a.X, b.X]), np.concatenate([a.y, b.y]))
    from_a = int(rng.hypergeometric(a.n_seen, b.n_seen, k))

    def take(s: RowSample, m: int):
        idx = np.sort(rng.choice(s.y.size, size=m, replace=False))
        return s.X[idx], s.y[idx]

    Xa, ya = take(a, from_a)
    Xb, yb = take(b, k - from_a)
    return RowSample(n, np.concatenate([Xa, Xb]), np.concatenate([ya, yb]))
