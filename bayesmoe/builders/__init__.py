"""Plain model builders: data in, :class:`pymc.Model` out, with named coords."""

from bayesmoe.builders.interaction import InteractionSpec, interaction_regression
from bayesmoe.builders.mixture import MixtureSpec, gated_experts, mixture_regression

__all__ = [
    "InteractionSpec",
    "MixtureSpec",
    "gated_experts",
    "interaction_regression",
    "mixture_regression",
]
