"""bayesmoe: Bayesian interaction regressions and mixtures of experts on PyMC."""

from bayesmoe.fitting import add_log_likelihood, diagnose, fit

__version__ = "0.1.0"

__all__ = ["__version__", "add_log_likelihood", "diagnose", "fit"]
