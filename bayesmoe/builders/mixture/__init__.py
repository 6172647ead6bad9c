r"""Finite mixtures of regressions and gated mixtures of experts.

.. math::

    y_i \mid x_i &\sim \sum_{k=1}^K \pi_k(x_i)\, N\big(b_k + w_k^\top x_i
        [+ v_k^\top z_i],\ \sigma_k^2\big) \\
    w_k &\sim N(0, \tau_\text{base}^2 I),\quad v_k \sim N(0, \tau_\text{int}^2 I),\quad
    \tau \sim \text{hyperprior} \\
    \pi(x) &= \pi \sim \mathrm{Dirichlet}(\alpha 1_K)
        \quad\text{(mixture of regressions)} \\
    \pi(x) &= \mathrm{softmax}(V^\top x + c)
        \quad\text{or}\quad \mathrm{softmax}(V^\top \tanh(W^\top x + a) + c)
        \quad\text{(gated experts; Jordan \& Jacobs 1994)}

The discrete assignments :math:`z_i` are summed out (``pm.NormalMixture``), so NUTS and
ADVI apply. Label switching is handled by four defaults, each with a reason:

1. **Reference gate.** The last expert's logit is fixed at 0, removing the softmax's
   additive non-identifiability (one free logit too many).
2. **One good starting point for every chain.** A multi-start MAP-EM fit
   (:mod:`bayesmoe.numerics.em`, closed-form expert updates, scipy for the gate) is computed
   when the model is built; :func:`bayesmoe.fit` starts all chains there. Chains then
   explore one labelling instead of landing in different relabelled modes (from PyMC's
   default start they do, and R-hat fails).
3. **Ordering where it separates.** A plain Gaussian mixture orders its means; a mixture of
   regressions orders its intercepts only when the EM solution shows them separated by
   many standard errors (ordering intercepts that coincide, e.g. crossing lines, would
   cut through the posterior). Gated models need no ordering: the gate separates them.
4. **Post-hoc relabelling.** After sampling, every draw's classification probabilities are
   matched to the EM pivot (ECR) and refined with Stephens' KL algorithm
   (:mod:`bayesmoe.numerics.relabel`); parameters are permuted (and the gate re-referenced)
   before diagnostics, so R-hat and ESS are computed on label-invariant draws.

For the mlp gate the hidden units are exchangeable and sign-symmetric, so its raw weights
are not identified; the identified gate quantity is :math:`\pi(x)` on a fixed grid,
stored as the deterministic ``gate_probability_grid``.

Modules: :mod:`~bayesmoe.builders.mixture.checks` (arguments),
:mod:`~bayesmoe.builders.mixture.priors` (defaults and overrides),
:mod:`~bayesmoe.builders.mixture.spec` (``MixtureSpec``),
:mod:`~bayesmoe.builders.mixture.predictions` (working-scale components and densities),
:mod:`~bayesmoe.builders.mixture.graph` (the PyMC graph),
:mod:`~bayesmoe.builders.mixture.variational` (VEM),
:mod:`~bayesmoe.builders.mixture.start` (EM point, initial values),
:mod:`~bayesmoe.builders.mixture.labels` (ordering, relabelling),
:mod:`~bayesmoe.builders.mixture.diagnosis` (components),
:mod:`~bayesmoe.builders.mixture.build` (the builders).
"""

from bayesmoe.builders.mixture.build import build_mixture, gated_experts, mixture_regression
from bayesmoe.builders.mixture.constants import (
    DEFAULT_ALPHA,
    DENSITY_POINTS,
    EM_ROWS,
    GATES,
    GRID_QUANTILES,
    ORDER_SEPARATION,
    RELABEL_ROWS,
    SAMPLE_DIMS,
)
from bayesmoe.builders.mixture.predictions import logsumexp_over_experts
from bayesmoe.builders.mixture.spec import MixtureSpec, WorkingDesign
from bayesmoe.builders.terms.gate import gate_grid

__all__ = [
    "DEFAULT_ALPHA",
    "DENSITY_POINTS",
    "EM_ROWS",
    "GATES",
    "GRID_QUANTILES",
    "ORDER_SEPARATION",
    "RELABEL_ROWS",
    "SAMPLE_DIMS",
    "MixtureSpec",
    "WorkingDesign",
    "build_mixture",
    "gate_grid",
    "gated_experts",
    "logsumexp_over_experts",
    "mixture_regression",
]

#: The old private name of :func:`bayesmoe.builders.terms.gate.gate_grid` (benchmarks use it).
_gate_grid = gate_grid
