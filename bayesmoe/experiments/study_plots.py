"""The learning-curve study's figures' former import path: they live in
:mod:`bayesmoe.studies.learning_curve.plots`, whose names this module re-exports."""

from bayesmoe.studies.learning_curve.plots import (
    DEFAULT_CURVES,
    plot_learning_curves,
    plot_regret,
    plot_scales,
)

__all__ = ["DEFAULT_CURVES", "plot_learning_curves", "plot_regret", "plot_scales"]
