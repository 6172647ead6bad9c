"""Plain model builders: data in, :class:`pymc.Model` out, with named coords."""

from bayesmoe.builders.interaction import InteractionSpec, interaction_regression

__all__ = ["InteractionSpec", "interaction_regression"]
