"""Simulators with known truth (and, later, the learning-curve study)."""

from bayesmoe.experiments.simulate import InteractionData, make_interaction_data

__all__ = ["InteractionData", "make_interaction_data"]
