"""bayesmoe: Bayesian interaction regressions and mixtures of experts on PyMC."""

__version__ = "0.1.0"

from bayesmoe.builders import interaction_regression  # noqa: E402
from bayesmoe.estimators import InteractionRegression, load  # noqa: E402
from bayesmoe.fitting import add_log_likelihood, diagnose, fit  # noqa: E402
from bayesmoe.priors import Prior  # noqa: E402

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
