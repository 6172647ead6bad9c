"""The fitting API under its original import path; it lives in :mod:`bayesmoe.inference`.

``bayesmoe.fitting.fit``, ``Diagnostics``, ``AUTO_SAMPLERS``, ``is_compiled``, the
thresholds and the log-likelihood constants are the same objects as in the inference
package (a constant set here does not change what ``fit`` uses).
"""

from __future__ import annotations

from bayesmoe.inference import (
    AUTO_SAMPLERS,
    BFMI_MIN,
    DIVERGENCES_MAX,
    ESS_MIN_PER_CHAIN,
    LOG_LIKELIHOOD_AUTO_BYTES,
    LOO_SUBSAMPLE_ROWS,
    METHODS,
    PARETO_K_MAX,
    RHAT_MAX,
    SAMPLERS,
    Diagnostics,
    DiagnosticsError,
    SubsampledLogLikelihoodWarning,
    add_log_likelihood,
    diagnose,
    fit,
    model_diagnostics,
    resolve_sampler,
    subsample_rows,
)

# importable here as before, though not in __all__ (the redundant aliases re-export them)
from bayesmoe.inference import (
    LOG_LIKELIHOOD_MAX_BYTES as LOG_LIKELIHOOD_MAX_BYTES,
)
from bayesmoe.inference import (
    LOO_SUBSAMPLE_SEED as LOO_SUBSAMPLE_SEED,
)
from bayesmoe.inference import (
    VEM_OPTIONS as VEM_OPTIONS,
)
from bayesmoe.inference import (
    is_compiled as is_compiled,
)
from bayesmoe.inference import (
    validate_fit_settings as validate_fit_settings,
)

__all__ = [
    "AUTO_SAMPLERS",
    "BFMI_MIN",
    "DIVERGENCES_MAX",
    "ESS_MIN_PER_CHAIN",
    "LOG_LIKELIHOOD_AUTO_BYTES",
    "LOO_SUBSAMPLE_ROWS",
    "METHODS",
    "PARETO_K_MAX",
    "RHAT_MAX",
    "SAMPLERS",
    "Diagnostics",
    "DiagnosticsError",
    "SubsampledLogLikelihoodWarning",
    "add_log_likelihood",
    "diagnose",
    "fit",
    "model_diagnostics",
    "resolve_sampler",
    "subsample_rows",
]
