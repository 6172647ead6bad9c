"""Thin scikit-learn-style estimators over a builder and :func:`bayesmoe.fit`.

``__init__`` only stores keyword-only settings; ``fit`` validates, standardises, builds
and fits, and returns ``self``; fitted attributes end in ``_``. Everything the user gets
back is on the original scale of ``y``. Estimators work with :func:`sklearn.base.clone`,
pipelines and :func:`sklearn.model_selection.cross_val_score`.

The package: :mod:`.base` (the ``BayesianRegressor`` contract: settings, fit, predictions
from ``_components``), :mod:`.design` (inputs and formulas), :mod:`.scale` (user and
working scale), :mod:`.streamed` (dask and chunked fits), :mod:`.dask` (predictions over
dask partitions), :mod:`.io` (``save`` / :func:`load`), :mod:`.interaction` and
:mod:`.mixture` (the estimators).
"""

from __future__ import annotations

from bayesmoe.estimators.base import PREDICT_BLOCK_BYTES as PREDICT_BLOCK_BYTES
from bayesmoe.estimators.base import SAMPLE_DIMS as SAMPLE_DIMS
from bayesmoe.estimators.base import BayesianRegressor
from bayesmoe.estimators.interaction import InteractionRegression
from bayesmoe.estimators.io import load
from bayesmoe.estimators.mixture import GatedExperts, MixtureRegression

__all__ = [
    "BayesianRegressor",
    "GatedExperts",
    "InteractionRegression",
    "MixtureRegression",
    "load",
]
