r"""Which components of a fitted mixture the data actually support (issue 20).

An overfitted mixture (more components asked for than the data hold; Rousseau & Mengersen
2011) has components that either *coincide* (two components describe the same cluster, so
the posterior puts mass on every split of it) or *empty* (a weight near zero, so its
parameters are drawn from the prior). Neither is made identifiable by ordering or
relabelling, and chains then disagree on the per-component quantities. This module names
such components from posterior draws, with numbers, so that a diagnostics message can say
"components 0 and 2 coincide (overlap 0.93); the data support K = 1-2".

Inputs are draws on a common label set (after relabelling), flattened over chains:

* ``weights[s, i, k]`` -- mixing weight :math:`\pi_k(x_i)` of draw :math:`s` (constant in
  :math:`i` for a mixture of regressions, the gate for gated experts);
* ``means[s, i, k]`` and ``sds[s, k]`` (or ``sds[s, i, k]``) -- the component's predictive
  normal :math:`\mathcal N(\mu_k(x_i), \sigma_k^2)`.

**Occupancy** of component :math:`k` is the posterior mean of its average weight,
:math:`\bar\pi_k = \frac{1}{S n}\sum_{s,i} \pi_{sk}(x_i)`.

**Overlap** of components :math:`j, k` is the posterior mean of the Bhattacharyya
coefficient of their predictive normals, averaged over rows,

.. math::

    \mathrm{BC}_{jk} = \frac{1}{S n}\sum_{s,i} \exp\Big(-\frac{(\mu_j - \mu_k)^2}{4(\sigma_j^2
    + \sigma_k^2)} - \frac12 \log\frac{\sigma_j^2 + \sigma_k^2}{2 \sigma_j \sigma_k}\Big),

which is 1 for identical components and :math:`e^{-d^2/8}` for equal sds and means
:math:`d` sds apart. The default threshold ``OVERLAP_MIN = 0.9`` flags means closer than
about 0.92 sd (equal sds): two such normals cannot be told apart by a mixture fit of a
realistic size, while a well-separated truth (means >= 2 sd apart, BC <= 0.61) is never
flagged.

numpy only: this module must not import PyMC, PyTensor or xarray.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "EMPTY_WEIGHT_MAX",
    "OVERLAP_MIN",
    "ComponentDiagnosis",
    "diagnose_components",
    "occupancy",
    "overlap",
]

#: Two components coincide when their mean Bhattacharyya overlap is at least this
#: (equal sds: means closer than sqrt(-8 log 0.9) = 0.92 sd).
OVERLAP_MIN = 0.9

#: A component is emptied when its posterior mean occupancy is below this. A heuristic
#: (not yet calibrated by measurement): 2% of the rows is below what a component of a
#: realistic fit needs to have its mean and sd pinned down by the data.
EMPTY_WEIGHT_MAX = 0.02


def occupancy(weights: np.ndarray) -> np.ndarray:
    r"""Posterior mean occupancy :math:`\bar\pi_k` of every component.

    Parameters
    ----------
    weights : ndarray, shape (S, n, K) or (S, K)
        Mixing weights per draw (and row).

    Returns
    -------
    ndarray, shape (K,)
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim not in (2, 3):
        raise ValueError(f"weights must have shape (S, K) or (S, n, K), got {w.shape}")
    return w.reshape(-1, w.shape[-1]).mean(axis=0)


def overlap(means: np.ndarray, sds: np.ndarray) -> np.ndarray:
    r"""Posterior mean Bhattacharyya overlap :math:`\mathrm{BC}_{jk}` of every pair.

    Parameters
    ----------
    means : ndarray, shape (S, n, K)
        Component means per draw and row.
    sds : ndarray, shape (S, K) or (S, n, K)
        Component sds (positive).

    Returns
    -------
    ndarray, shape (K, K)
        Symmetric, with ones on the diagonal.
    """
    mu = np.asarray(means, dtype=float)
    sd = np.asarray(sds, dtype=float)
    if mu.ndim != 3:
        raise ValueError(f"means must have shape (S, n, K), got {mu.shape}")
    if sd.ndim == 2:
        sd = sd[:, None, :]
    if sd.ndim != 3 or sd.shape[0] != mu.shape[0] or sd.shape[-1] != mu.shape[-1]:
        raise ValueError(
            f"sds must have shape (S, K) or (S, n, K) matching means {mu.shape}, got {sd.shape}"
        )
    if not np.all(sd > 0):
        raise ValueError("sds must be positive")
    K = mu.shape[-1]
    bc = np.eye(K)
    for j in range(K):
        for k in range(j + 1, K):
            v = sd[..., j] ** 2 + sd[..., k] ** 2
            log_bc = -((mu[..., j] - mu[..., k]) ** 2) / (4 * v) - 0.5 * np.log(
                v / (2 * sd[..., j] * sd[..., k])
            )
            bc[j, k] = bc[k, j] = float(np.exp(log_bc).mean())
    return bc


@dataclass(frozen=True)
class ComponentDiagnosis:
    """Which components a fit supports.

    Attributes
    ----------
    occupancy : ndarray, shape (K,)
        Posterior mean occupancy per component.
    overlap : ndarray, shape (K, K)
        Posterior mean Bhattacharyya overlap per pair.
    emptied : list of int
        Components with occupancy below the threshold.
    coinciding : list of (int, int, float)
        Pairs of occupied components whose overlap is at least the threshold.
    supported : (int, int)
        The range of K the data support: the occupied components merged along every
        coinciding pair (lower), and the occupied ones (upper).
    """

    occupancy: np.ndarray
    overlap: np.ndarray
    emptied: list[int] = field(default_factory=list)
    coinciding: list[tuple[int, int, float]] = field(default_factory=list)
    supported: tuple[int, int] = (0, 0)

    @property
    def ok(self) -> bool:
        """True when no component is emptied or coincides with another."""
        return not self.emptied and not self.coinciding

    def message(self) -> str:
        """One sentence naming the problems with numbers ('' when :attr:`ok`)."""
        if self.ok:
            return ""
        parts = [
            f"components {j} and {k} coincide (overlap {o:.2f})" for j, k, o in self.coinciding
        ]
        parts += [
            f"component {k} is emptied (occupancy {self.occupancy[k]:.3f})" for k in self.emptied
        ]
        lo, hi = self.supported
        k_range = f"{lo}" if lo == hi else f"{lo}-{hi}"
        return "; ".join(parts) + f"; the data support K = {k_range}: see select_experts"


def diagnose_components(
    weights: np.ndarray,
    means: np.ndarray,
    sds: np.ndarray,
    *,
    overlap_min: float = OVERLAP_MIN,
    empty_max: float = EMPTY_WEIGHT_MAX,
) -> ComponentDiagnosis:
    """Name the emptied and coinciding components of a fitted mixture.

    Parameters
    ----------
    weights : ndarray, shape (S, n, K) or (S, K)
        Mixing weights per draw (and row), on relabelled draws.
    means : ndarray, shape (S, n, K)
        Component means per draw and row.
    sds : ndarray, shape (S, K) or (S, n, K)
        Component sds.
    overlap_min : float
        Overlap at or above which two occupied components coincide, in (0, 1].
    empty_max : float
        Occupancy below which a component is emptied, in [0, 1).

    Returns
    -------
    ComponentDiagnosis
    """
    if not 0 < overlap_min <= 1:
        raise ValueError(f"overlap_min must be in (0, 1], got {overlap_min}")
    if not 0 <= empty_max < 1:
        raise ValueError(f"empty_max must be in [0, 1), got {empty_max}")
    occ = occupancy(weights)
    bc = overlap(means, sds)
    if occ.shape[0] != bc.shape[0]:
        raise ValueError(f"weights have {occ.shape[0]} components but means have {bc.shape[0]}")
    K = occ.shape[0]
    emptied = [k for k in range(K) if occ[k] < empty_max]
    occupied = [k for k in range(K) if k not in emptied]
    coinciding = [
        (j, k, float(bc[j, k]))
        for a, j in enumerate(occupied)
        for k in occupied[a + 1 :]
        if bc[j, k] >= overlap_min
    ]
    # Lower end of the supported K: occupied components merged along coinciding pairs
    # (connected components of the "coincide" graph, by union-find).
    parent = {k: k for k in occupied}

    def root(k: int) -> int:
        while parent[k] != k:
            k = parent[k]
        return k

    for j, k, _ in coinciding:
        parent[root(j)] = root(k)
    lo = len({root(k) for k in occupied})
    return ComponentDiagnosis(occ, bc, emptied, coinciding, (max(lo, 1), max(len(occupied), 1)))
