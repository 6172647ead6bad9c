r"""Pointwise WAIC (Watanabe 2010), for ``bayesmoe.compare(ic="waic")``.

ArviZ 1.x dropped ``waic`` (PSIS-LOO is as cheap and comes with diagnostics; see the
ArviZ 1.0 migration guide), but its ``compare`` still ranks and weights any pointwise
ELPD. This module computes the pointwise terms; ArviZ does the rest.

With :math:`S` posterior draws of the pointwise log-likelihood :math:`\ell_{si}`:

.. math::

    \widehat{\mathrm{elpd}}_i = \log \frac1S \sum_s e^{\ell_{si}} - p_i, \qquad
    p_i = \operatorname{Var}_s(\ell_{si})

(Vehtari, Gelman and Gabry 2017, eqs. 11-12). A row with :math:`p_i > 0.4` makes the
WAIC estimate unreliable (same reference).
"""

from __future__ import annotations

import numpy as np

from bayesmoe.numerics.lse import logsumexp_first

__all__ = ["P_WAIC_MAX", "waic_pointwise"]

#: Pointwise effective number of parameters above which WAIC is flagged unreliable.
P_WAIC_MAX = 0.4


def waic_pointwise(log_lik: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise WAIC ELPD and effective number of parameters.

    Parameters
    ----------
    log_lik : ndarray, shape (S, n)
        Log-likelihood of each of ``n`` observations under each of ``S`` draws.

    Returns
    -------
    elpd_i, p_i : ndarray, shape (n,)
    """
    log_lik = np.asarray(log_lik, dtype=float)
    if log_lik.ndim != 2 or log_lik.shape[0] < 2:
        raise ValueError(f"log_lik must have shape (draws >= 2, n), got {log_lik.shape}")
    lppd_i = logsumexp_first(log_lik) - np.log(log_lik.shape[0])
    p_i = log_lik.var(axis=0, ddof=1)
    return lppd_i - p_i, p_i
