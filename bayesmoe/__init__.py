"""bayesmoe: Bayesian interaction regressions and mixtures of experts on PyMC."""

__version__ = "0.1.0"

from bayesmoe.builders import interaction_regression
from bayesmoe.estimators import InteractionRegression, load
from bayesmoe.fitting import add_log_likelihood, diagnose, fit
from bayesmoe.priors import Prior

__all__ = [
    "InteractionRegression",
    "Prior",
    "__version__",
    "add_log_likelihood",
    "diagnose",
    "fit",
    "interaction_regression",
    "load",
]
