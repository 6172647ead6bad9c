"""Multi-start schedule shared by MAP-EM and variational EM.

Both fitters start from several partitions of the rows and screen them: the kinds of
start in a fixed order (:func:`start_kinds`: greedy growth, OLS residual quantiles,
k-means on ``[X, y]`` and ``[G, y]``, nearest of K random-subset lines, random labels),
the partition of each kind (:func:`initial_labels`; greedy growth is the caller's, as it
runs EM), the ranking of screened starts (:func:`best_first`) and the convergence test
(:func:`small_change`). numpy and scikit-learn only.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "best_first",
    "initial_labels",
    "labels_kmeans",
    "labels_quantile",
    "labels_random_lines",
    "positive",
    "small_change",
    "standardise_columns",
    "start_kinds",
]


def standardise_columns(A: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit sd (constant columns only centred)."""
    sd = A.std(axis=0)
    return (A - A.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def labels_quantile(Z: np.ndarray, y: np.ndarray, K: int) -> np.ndarray:
    """Split rows into K equal groups by the residual of one least-squares line.

    Parallel lines leave residuals clustered by intercept, which k-means on (x, y) misses
    when x spreads more than the gaps between lines.
    """
    coef, *_ = np.linalg.lstsq(Z, y, rcond=None)
    order = np.argsort(y - Z @ coef, kind="stable")
    labels = np.empty(len(y), dtype=int)
    for k, idx in enumerate(np.array_split(order, K)):
        labels[idx] = k
    return labels


def labels_kmeans(features: np.ndarray, K: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    km = KMeans(n_clusters=K, n_init=1, random_state=seed)
    with warnings.catch_warnings():
        # Fewer distinct points than K (ties, discrete data) just leaves a group empty,
        # which the M-step handles (the prior keeps its expert defined).
        warnings.simplefilter("ignore", ConvergenceWarning)
        return km.fit_predict(standardise_columns(features)).astype(int)


def labels_random_lines(Z: np.ndarray, y: np.ndarray, K: int, rng) -> np.ndarray:
    """Assign each row to the nearest of K lines, each fitted to a few random rows.

    A small-subset (RANSAC-like) start has a fair chance of putting one line near each true
    expert, which breaks the symmetry that a uniformly random partition starts from (all of
    its groups fit nearly the same line).
    """
    n, p = Z.shape
    m = min(n, p + 1)
    lines = np.empty((K, p))
    ridge = 1e-6 * np.eye(p)
    for k in range(K):
        idx = rng.choice(n, size=m, replace=False)
        lines[k] = np.linalg.solve(Z[idx].T @ Z[idx] + ridge, Z[idx].T @ y[idx])
    return np.argmin(np.abs(y[:, None] - Z @ lines.T), axis=1)


def start_kinds(n_init: int, gated: bool) -> list[str]:
    """Deterministic schedule of start types (the first ones are the most reliable).

    Greedy growth comes first, the most reliable kind on simulated settings (parallel,
    crossing, unequal and tiny experts, d = 0); the others add diversity.
    """
    first = ["greedy", "quantile", "kmeans_xy"]
    first += (["kmeans_gy"] if gated else []) + ["lines", "random"]
    cycle = ["lines", "kmeans_xy", "random"] + (["kmeans_gy"] if gated else [])
    kinds = list(first)
    while len(kinds) < n_init:
        kinds += cycle
    return kinds[:n_init]


def initial_labels(kind: str, Z, y, G, K: int, rng, greedy) -> np.ndarray:
    """The start partition of one ``kind`` (:func:`start_kinds`); ``greedy()`` gives the
    greedy-growth partition, which runs the caller's EM."""
    if kind == "quantile":
        return labels_quantile(Z, y, K)
    if kind == "kmeans_xy":
        return labels_kmeans(np.column_stack([Z[:, 1:], y]), K, int(rng.integers(2**31)))
    if kind == "kmeans_gy":
        return labels_kmeans(np.column_stack([G, y]), K, int(rng.integers(2**31)))
    if kind == "lines":
        return labels_random_lines(Z, y, K, rng)
    if kind == "greedy":
        return greedy()
    return rng.integers(K, size=len(y))


def best_first(objectives: list[float], n: int) -> list[int]:
    """Indices of the ``n`` highest objectives, best first; a stable sort keeps the earliest
    of tied starts, so ties do not depend on noise."""
    return sorted(range(len(objectives)), key=lambda i: -objectives[i])[:n]


def small_change(history: list[float], tol: float) -> bool:
    """Whether the last step changed the objective by at most ``tol`` (relative)."""
    # Relative change, with an absolute floor of tol for objectives near zero.
    return len(history) > 1 and abs(history[-1] - history[-2]) <= tol * max(1.0, abs(history[-1]))


def positive(value, name: str) -> float:
    """``value`` as a float, or ValueError unless positive and finite."""
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value
