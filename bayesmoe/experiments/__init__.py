"""Simulators with known truth, and simulation-based calibration of the fitting path.

:func:`make_interaction_data` (uniform features, all pairwise interactions),
:func:`make_mixture_data` (experts mixed by a gate, with :func:`align_truth` to match a
fit's labels) and :func:`make_regional_data` (a different model right in each region of x)
return the generating parameters with the data. :mod:`bayesmoe.experiments.calibration`
(imported on demand: it imports PyMC) checks the fitting path by simulation-based
calibration. The learning-curve study is research, in :mod:`bayesmoe.studies`;
:mod:`bayesmoe.experiments.convergence` and :mod:`bayesmoe.experiments.study_plots`
re-export it under its former import paths (imported on demand: it pulls in
scikit-learn).
"""

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
