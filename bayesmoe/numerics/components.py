r"""Which components of a fitted mixture the data actually support.

An overfitted mixture (more components asked for than the data hold; Rousseau & Mengersen
2011) has components that either *coincide* (two components describe the same cluster, so
the posterior puts mass on every split of it) or *empty* (a weight near zero, so its
parameters are drawn from the prior). Neither is made identifiable by ordering or
relabelling, and chains then disagree on the per-component quantities.

The test here asks of every posterior draw whether fewer components fit the rows as
well (:func:`reduce_components`): a component is *dropped* (its weight given to the
others) or two are *merged* into one normal with their weight, mean and variance, while
the log-likelihood lost is below ``penalty``, the parameter count of a component
(Akaike's criterion: a component stays when it buys more log-likelihood than it has
parameters). The count :math:`K_+` left is invariant to labels, so it is defined where
the per-component quantities are not. On simulated overfitted fits
(``benchmarks/overfitted.py``) a superfluous component's cheapest reduction costs a few
log-likelihood units, a real cluster's far more than its parameter count.

Descriptive numbers go with the names: the **occupancy** of component :math:`k`, the
posterior mean of its average weight :math:`\bar\pi_k = \frac{1}{S n}\sum_{s,i}
\pi_{sk}(x_i)`, and the **overlap** of components :math:`j, k`, the posterior mean
Bhattacharyya coefficient of their predictive normals averaged over rows,

.. math::

    \mathrm{BC}_{jk} = \frac{1}{S n}\sum_{s,i} \exp\Big(-\frac{(\mu_j - \mu_k)^2}{4(\sigma_j^2
    + \sigma_k^2)} - \frac12 \log\frac{\sigma_j^2 + \sigma_k^2}{2 \sigma_j \sigma_k}\Big),

which is 1 for identical components and :math:`e^{-d^2/8}` for equal sds and means
:math:`d` sds apart.

Inputs are draws flattened over chains:

* ``weights[s, i, k]`` -- mixing weight :math:`\pi_k(x_i)` of draw :math:`s` (constant in
  :math:`i` for a mixture of regressions, the gate for gated experts);
* ``means[s, i, k]`` and ``sds[s, k]`` (or ``sds[s, i, k]``) -- the component's predictive
  normal :math:`\mathcal N(\mu_k(x_i), \sigma_k^2)`;
* ``y[i]`` -- the rows fitted (or a uniform sample of them, with ``scale``).

numpy only: this module must not import PyMC, PyTensor or xarray.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "COLLAPSE_SD",
    "NAME_SHARE",
    "SUPPORT_LEVEL",
    "ComponentDiagnosis",
    "diagnose_components",
    "occupancy",
    "overlap",
    "reduce_components",
]

#: A reduction (dropping component k, merging j and k) is named only when at least this
#: share of the draws takes it.
NAME_SHARE = 0.2

#: The supported K is the central ``1 - 2 * SUPPORT_LEVEL`` interval of the draws' K_+:
#: a fit is flagged when more than this share of its draws need fewer components.
SUPPORT_LEVEL = 0.05

#: A component's noise sd collapses when its posterior median is below this times the sd
#: of y: no measurement scale of real data is that fine, but a component through tied
#: rows (rounded data) can shrink its sd without bound, each tie multiplying the
#: likelihood by 1/sd (seen on iris, sklearn: petal length on petal width, 107 of 150
#: values of y repeated, K = 2: a component of sd ~0 on the setosa ties, chains apart).
COLLAPSE_SD = 1e-3

#: Draws the reduction runs on (evenly thinned above this): (draws x rows x K) arrays.
MAX_DRAWS = 1000


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


def _log_likelihood(w: np.ndarray, mu: np.ndarray, var: np.ndarray, y: np.ndarray) -> np.ndarray:
    r""":math:`\sum_i \log \sum_k w_{sik} N(y_i \mid \mu_{sik}, v_{sik})` per draw, shape (S,)."""
    with np.errstate(divide="ignore"):
        logw = np.log(w)
    logn = -0.5 * ((y[None, :, None] - mu) ** 2 / var + np.log(2 * np.pi * var))
    joint = np.where(w > 0, logw + logn, -np.inf)
    top = joint.max(axis=-1, keepdims=True)
    return (top[..., 0] + np.log(np.exp(joint - top).sum(axis=-1))).sum(axis=-1)


def _dropped(w, mu, var, k):
    """Component ``k`` removed and the other weights renormalised."""
    w = w.copy()
    w[..., k] = 0.0
    return w / w.sum(axis=-1, keepdims=True), mu, var


def _merged(w, mu, var, j, k):
    """Components ``j`` and ``k`` replaced by one normal with their first two moments (in j)."""
    w, mu, var = w.copy(), mu.copy(), var.copy()
    total = w[..., j] + w[..., k]
    safe = np.where(total > 0, total, 1.0)
    a, b = w[..., j] / safe, w[..., k] / safe
    m = a * mu[..., j] + b * mu[..., k]
    second = a * (var[..., j] + mu[..., j] ** 2) + b * (var[..., k] + mu[..., k] ** 2)
    w[..., j], w[..., k] = total, 0.0
    mu[..., j], var[..., j] = m, np.maximum(second - m**2, var[..., j] * 1e-12)
    return w, mu, var


def _move(w, mu, var, j, k):
    return _dropped(w, mu, var, k) if j == k else _merged(w, mu, var, j, k)


def reduce_components(
    weights: np.ndarray,
    means: np.ndarray,
    sds: np.ndarray,
    y: np.ndarray,
    *,
    penalty: float,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Per draw, the fewest components that fit the rows as well: greedy drops and merges.

    For every draw :math:`s` the mixture :math:`p_s(y_i) = \sum_k \pi_{sik}
    N(y_i \mid \mu_{sik}, \sigma_{sik}^2)` is reduced one component at a time, by the
    cheapest of: dropping a component (the other weights renormalised) or merging a pair
    into one normal with the pair's weight, mean and variance. The cost of a step is the
    log-likelihood it loses, :math:`\Delta_s = \text{scale} \sum_i [\log p_s(y_i) -
    \log p'_s(y_i)]`; a step is taken while :math:`\Delta_s <` ``penalty``, the
    log-likelihood a component must buy to pay for its parameters (Akaike's criterion:
    its parameter count). Labels never enter: the count :math:`K_+(s)` is invariant to
    label switching within and between chains, so it is defined where the per-component
    quantities are not (Malsiner-Walli, Frühwirth-Schnatter & Grün 2016 read the same
    count off sampled allocations).

    Parameters
    ----------
    weights : ndarray, shape (S, n, K)
    means : ndarray, shape (S, n, K)
    sds : ndarray, shape (S, n, K)
    y : ndarray, shape (n,)
        The rows the draws were fitted to (or a uniform sample of them).
    penalty : float
        Log-likelihood a component must buy to stay.
    scale : float
        Rows represented per row given (``n_total / n`` for a row sample).

    Returns
    -------
    counts : ndarray of int, shape (S,)
        :math:`K_+(s)`.
    steps : ndarray of int, shape (S, K, K)
        ``steps[s, j, k]``: 1 when draw ``s`` merged ``k`` into ``j`` (``j != k``) or
        dropped ``k`` (``j == k``).
    """
    w = np.array(weights, dtype=float)  # copies: the draws are reduced in place
    mu = np.array(means, dtype=float)
    var = np.array(sds, dtype=float) ** 2
    if not (w.ndim == 3 and w.shape == mu.shape == var.shape):
        raise ValueError(
            f"weights, means and sds must have one shape (S, n, K), got {w.shape}, "
            f"{mu.shape}, {var.shape}"
        )
    S, _, K = w.shape
    y = np.asarray(y, dtype=float)
    counts = np.full(S, K)
    steps = np.zeros((S, K, K), dtype=int)
    ll = _log_likelihood(w, mu, var, y)
    active = np.ones(S, dtype=bool)
    for _ in range(K - 1):
        idx = np.flatnonzero(active & (counts > 1))
        if idx.size == 0:
            break
        cw, cmu, cvar = w[idx], mu[idx], var[idx]
        alive = cw.max(axis=1) > 0  # (s, K)
        moves = [(j, k) for j in range(K) for k in range(j, K)]
        costs = np.empty((idx.size, len(moves)))
        for m, (j, k) in enumerate(moves):
            state = _move(cw, cmu, cvar, j, k)
            cost = scale * (ll[idx] - _log_likelihood(*state, y))
            costs[:, m] = np.where(alive[:, j] & alive[:, k], cost, np.inf)
        best = costs.argmin(axis=1)
        take = costs[np.arange(idx.size), best] < penalty
        for m, (j, k) in enumerate(moves):
            sel = take & (best == m)
            if sel.any():  # the chosen move again, on its draws only (memory stays bounded)
                rows = idx[sel]
                w[rows], mu[rows], var[rows] = _move(w[rows], mu[rows], var[rows], j, k)
                ll[rows] = ll[rows] - costs[sel, m] / scale
                steps[rows, j, k] += 1
        counts[idx[take]] -= 1
        active[idx[~take]] = False
    return counts, steps


@dataclass(frozen=True)
class ComponentDiagnosis:
    """Which components a fit supports.

    Attributes
    ----------
    n_components : int
        K of the fit.
    occupancy : ndarray, shape (K,)
        Posterior mean occupancy per component.
    overlap : ndarray, shape (K, K)
        Posterior mean Bhattacharyya overlap per pair.
    k_plus : ndarray, shape (K + 1,)
        Share of the draws whose reduced count :math:`K_+` is 0, 1, ..., K.
    emptied : list of (int, float)
        Components dropped, with the share of draws that drop them.
    coinciding : list of (int, int, float)
        Pairs merged, with the share of draws that merge them. Together with
        ``emptied``: the K - median(K_+) most frequent reductions, each taken by at least
        ``NAME_SHARE`` of the draws.
    supported : (int, int)
        The central 90% interval of :math:`K_+` over the draws.
    penalty : float
        The log-likelihood a component had to buy.
    collapsed : list of (int, float)
        Occupied components whose noise sd collapses towards 0 (posterior median below
        ``COLLAPSE_SD`` times the sd of ``y``), with that ratio.
    repeated : int
        Rows of ``y`` that repeat an earlier value (ties: rounded measurements).
    """

    n_components: int
    occupancy: np.ndarray
    overlap: np.ndarray
    k_plus: np.ndarray
    emptied: list[tuple[int, float]]
    coinciding: list[tuple[int, int, float]]
    supported: tuple[int, int]
    penalty: float
    collapsed: list[tuple[int, float]] = field(default_factory=list)
    repeated: int = 0

    @property
    def ok(self) -> bool:
        """True when (nearly) every draw needs all K components and none collapses."""
        return self.supported[0] == self.n_components and not self.collapsed

    def message(self) -> str:
        """One sentence naming the redundant components with numbers ('' when :attr:`ok`)."""
        if self.ok:
            return ""
        collapse = "; ".join(
            f"component {k}'s noise sd collapses to 0 (posterior median {ratio:.2g} x the sd "
            f"of y; y has {self.repeated} repeated values)"
            for k, ratio in self.collapsed
        )
        if collapse:
            collapse += (
                ": on tied rows the likelihood is unbounded and a noise prior with mass at "
                "0 (such as the default HalfNormal) leaves the posterior improper; give "
                "sigma a prior that vanishes at 0, e.g. priors={'sigma': "
                "Prior('InverseGamma', alpha=3, beta=1, dims='expert')}"
            )
        if self.supported[0] == self.n_components:
            return collapse
        K = self.n_components
        parts = [
            f"components {j} and {k} coincide (merged in {share:.0%} of draws, overlap "
            f"{self.overlap[j, k]:.2f})"
            for j, k, share in self.coinciding
        ]
        parts += [
            f"component {k} is emptied (dropped in {share:.0%} of draws, occupancy "
            f"{self.occupancy[k]:.3f})"
            for k, share in self.emptied
        ]
        if not parts:  # labels switch so often that no single reduction dominates
            parts = ["no one component is redundant in most draws (labels switch)"]
        fewer = 1.0 - self.k_plus[K]
        lo, hi = self.supported
        k_range = f"{lo}" if lo == hi else f"{lo}-{hi}"
        text = (
            "; ".join(parts)
            + f"; fewer components fit as well in {fewer:.0%} of draws (a component must add "
            f"{self.penalty:g} to the log-likelihood, its parameter count); the data "
            f"support K = {k_range}: see select_experts"
        )
        return f"{collapse}; {text}" if collapse else text


def diagnose_components(
    weights: np.ndarray,
    means: np.ndarray,
    sds: np.ndarray,
    y: np.ndarray,
    *,
    penalty: float,
    scale: float = 1.0,
) -> ComponentDiagnosis:
    """Name the emptied and coinciding components of a fitted mixture.

    Parameters
    ----------
    weights : ndarray, shape (S, n, K) or (S, K)
        Mixing weights per draw (and row).
    means : ndarray, shape (S, n, K)
        Component means per draw and row.
    sds : ndarray, shape (S, K) or (S, n, K)
        Component sds.
    y : ndarray, shape (n,)
        The rows the draws were fitted to (or a uniform sample of them).
    penalty : float
        The log-likelihood a component must buy to stay: its parameter count.
    scale : float
        Rows represented per row of ``y`` (``n_total / n`` for a sample), >= 1.

    Returns
    -------
    ComponentDiagnosis
    """
    mu = np.asarray(means, dtype=float)
    if mu.ndim != 3:
        raise ValueError(f"means must have shape (S, n, K), got {mu.shape}")
    S, n, K = mu.shape
    w = np.asarray(weights, dtype=float)
    if w.ndim == 2:
        w = w[:, None, :]
    if w.ndim != 3 or w.shape[0] != S or w.shape[-1] != K:
        raise ValueError(f"weights must have shape (S, K) or (S, n, K) matching {mu.shape}")
    sd = np.asarray(sds, dtype=float)
    yv = np.asarray(y, dtype=float)
    if yv.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {yv.shape}")
    if not (np.isfinite(penalty) and penalty > 0):
        raise ValueError(f"penalty must be positive and finite, got {penalty}")
    if not scale >= 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    occ = occupancy(w)
    bc = overlap(mu, sd)  # validates sds
    if sd.ndim == 2:
        sd = sd[:, None, :]
    keep = np.unique(np.linspace(0, S - 1, min(S, MAX_DRAWS)).round().astype(int))
    shape = (keep.size, n, K)
    counts, steps = reduce_components(
        np.broadcast_to(w[keep], shape),
        mu[keep],
        np.broadcast_to(sd[keep], shape),
        yv,
        penalty=penalty,
        scale=scale,
    )
    k_plus = np.bincount(counts, minlength=K + 1) / counts.size
    share = (steps > 0).mean(axis=0)  # (K, K): draws taking each reduction
    # Name as many reductions as the typical draw takes (K - median K_+), the most
    # frequent first: with labels switching, one redundancy shows up as several
    # reductions (a merge of 0 and 1 in some draws, a drop of 1 in others).
    n_named = K - int(np.median(counts))
    ranked = sorted(
        ((float(share[j, k]), j, k) for j in range(K) for k in range(j, K)), reverse=True
    )
    named = [(f, j, k) for f, j, k in ranked[:n_named] if f >= NAME_SHARE]
    emptied = [(k, f) for f, j, k in named if j == k]
    coinciding = [(j, k, f) for f, j, k in named if j != k]
    lo, hi = np.quantile(counts, [SUPPORT_LEVEL, 1 - SUPPORT_LEVEL], method="inverted_cdf")
    spread = float(np.std(yv))
    med_sd = np.median(sd.reshape(-1, K), axis=0)
    collapsed = [
        (k, float(med_sd[k] / spread))
        for k in range(K)
        if spread > 0 and med_sd[k] < COLLAPSE_SD * spread and occ[k] * n >= 1
    ]
    return ComponentDiagnosis(
        K, occ, bc, k_plus, emptied, coinciding, (int(lo), int(hi)), float(penalty),
        collapsed, int(n - np.unique(yv).size),
    )  # fmt: skip
