"""bayesmoe: Bayesian interaction regressions and mixtures of experts on PyMC."""

__version__ = "0.1.0"

from bayesmoe.builders import (
    gated_experts,
    hierarchical_stacking,
    interaction_regression,
    mixture_regression,
)
from bayesmoe.compare import compare, predict_averaged, select_experts
from bayesmoe.estimators import GatedExperts, InteractionRegression, MixtureRegression, load
from bayesmoe.fitting import DiagnosticsError, add_log_likelihood, diagnose, fit
from bayesmoe.prior_transfer import prior_from_posterior
from bayesmoe.priors import Prior
from bayesmoe.stacking import HierarchicalStacking
from bayesmoe.streaming import read_parquet

__all__ = [
    "DiagnosticsError",
    "GatedExperts",
    "HierarchicalStacking",
    "InteractionRegression",
    "MixtureRegression",
    "Prior",
    "__version__",
    "add_log_likelihood",
    "compare",
    "diagnose",
    "fit",
    "gated_experts",
    "hierarchical_stacking",
    "interaction_regression",
    "load",
    "mixture_regression",
    "predict_averaged",
    "prior_from_posterior",
    "read_parquet",
    "select_experts",
]
