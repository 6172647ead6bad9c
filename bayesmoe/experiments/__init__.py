"""Simulators with known truth; the learning-curve study is in
:mod:`bayesmoe.experiments.convergence` (imported on demand: it pulls in scikit-learn)."""

from bayesmoe.experiments.regional import RegionalData, make_regional_data
from bayesmoe.experiments.simulate import (
    InteractionData,
    MixtureData,
    align_truth,
    make_interaction_data,
    make_mixture_data,
)

__all__ = [
    "InteractionData",
    "MixtureData",
    "RegionalData",
    "align_truth",
    "make_interaction_data",
    "make_mixture_data",
    "make_regional_data",
]
