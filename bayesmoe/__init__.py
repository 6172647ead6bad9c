"""bayesmoe: Bayesian interaction regressions and mixtures of experts on PyMC."""

__version__ = "0.1.0"

from bayesmoe.builders import gated_experts, interaction_regression, mixture_regression
from bayesmoe.estimators import GatedExperts, InteractionRegression, MixtureRegression, load
from bayesmoe.fitting import DiagnosticsError, add_log_likelihood, diagnose, fit
from bayesmoe.priors import Prior

__all__ = [
    "DiagnosticsError",
    "GatedExperts",
    "InteractionRegression",
    "MixtureRegression",
    "Prior",
    "__version__",
    "add_log_likelihood",
    "diagnose",
    "fit",
    "gated_experts",
    "interaction_regression",
    "load",
    "mixture_regression",
]
