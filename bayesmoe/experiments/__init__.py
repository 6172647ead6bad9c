"""Simulators with known truth (and, later, the learning-curve study)."""

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
