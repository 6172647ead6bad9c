r"""The regularised horseshoe's prior sd of one weight (Piironen & Vehtari 2017).

.. math::

    s = \frac{u}{\sqrt{1 + u^2 / c^2}}, \qquad u = \sigma\,\tau\,\lambda, \qquad
    \log s = \log u - \tfrac12 \log\big(1 + e^{2 \log u - \log c^2}\big)

computed on the log scale (the half-Cauchy locals span many orders of magnitude, and
squaring them first overflows): :math:`s \to u` for small :math:`u` (the horseshoe),
:math:`s \to c` for large :math:`u` (the slab). The callers create the variables (noise
sd, global scale :math:`\tau`, locals :math:`\lambda`, slab :math:`c^2`) in their own order
and with their own parametrisation; this term is only the arithmetic.
"""

from __future__ import annotations

import pytensor.tensor as pt

__all__ = ["regularised_log_sd"]


def regularised_log_sd(log_sigma, tau, lam, log_c2):
    """:math:`\\log s` of the regularised horseshoe (broadcasting over the weights)."""
    log_u = log_sigma + pt.log(tau) + pt.log(lam)
    return log_u - 0.5 * pt.softplus(2.0 * log_u - log_c2)
