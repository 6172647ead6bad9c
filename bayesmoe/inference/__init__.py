"""Fitting bayesmoe models: :func:`fit` and what a fit stores and checks.

=====================  ================================================================
module                 owns
=====================  ================================================================
``settings``           argument checks, ``METHODS`` / ``SAMPLERS`` / ``AUTO_SAMPLERS``
``plan``               :class:`~bayesmoe.inference.plan.FitPlan`, built once per fit
``backends``           one ``run(model, plan)`` per way of fitting (nutpie, pymc, advi,
                       vem, exact)
``loglik``             the pointwise log-likelihood policy, :func:`add_log_likelihood`
``diagnostics``        :func:`diagnose`, :class:`Diagnostics`, thresholds, ``enforce``
``fit``                :func:`fit`, the dispatcher, and the completion step
=====================  ================================================================
"""

from __future__ import annotations

from bayesmoe.inference.backends.nutpie import is_compiled
from bayesmoe.inference.diagnostics import (
    BFMI_MIN,
    DIVERGENCES_MAX,
    ESS_MIN_PER_CHAIN,
    PARETO_K_MAX,
    RHAT_MAX,
    Diagnostics,
    DiagnosticsError,
    diagnose,
    model_diagnostics,
)
from bayesmoe.inference.fit import fit
from bayesmoe.inference.loglik import (
    LOG_LIKELIHOOD_AUTO_BYTES,
    LOG_LIKELIHOOD_MAX_BYTES,
    LOO_SUBSAMPLE_ROWS,
    LOO_SUBSAMPLE_SEED,
    SubsampledLogLikelihoodWarning,
    add_log_likelihood,
    subsample_rows,
)
from bayesmoe.inference.settings import (
    AUTO_SAMPLERS,
    METHODS,
    SAMPLERS,
    VEM_OPTIONS,
    resolve_sampler,
    validate_fit_settings,
)

__all__ = [
    "AUTO_SAMPLERS",
    "BFMI_MIN",
    "DIVERGENCES_MAX",
    "ESS_MIN_PER_CHAIN",
    "LOG_LIKELIHOOD_AUTO_BYTES",
    "LOG_LIKELIHOOD_MAX_BYTES",
    "LOO_SUBSAMPLE_ROWS",
    "LOO_SUBSAMPLE_SEED",
    "METHODS",
    "PARETO_K_MAX",
    "RHAT_MAX",
    "SAMPLERS",
    "VEM_OPTIONS",
    "Diagnostics",
    "DiagnosticsError",
    "SubsampledLogLikelihoodWarning",
    "add_log_likelihood",
    "diagnose",
    "fit",
    "is_compiled",
    "model_diagnostics",
    "resolve_sampler",
    "subsample_rows",
    "validate_fit_settings",
]
