"""Plain model builders: data in, :class:`pymc.Model` out, with named coords."""

from bayesmoe.builders.interaction import (
    InteractionSpec,
    interaction_regression,
    interaction_regression_from_statistics,
)
from bayesmoe.builders.mixture import MixtureSpec, gated_experts, mixture_regression
from bayesmoe.builders.stacking import StackingSpec, hierarchical_stacking

__all__ = [
    "InteractionSpec",
    "MixtureSpec",
    "StackingSpec",
    "gated_experts",
    "hierarchical_stacking",
    "interaction_regression",
    "interaction_regression_from_statistics",
    "mixture_regression",
]
