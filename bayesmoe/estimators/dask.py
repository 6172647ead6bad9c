"""Predictions of a fitted estimator mapped over the partitions of a dask DataFrame.

``predict``, ``predict(return_std=True)`` and the pointwise log predictive density of a
dask frame are lazy dask Series: each partition is a task that calls the same method on a
light copy of the estimator (the working draws and the model's spec, without the
training data or the PyMC graph), on whatever scheduler is active.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.utils.validation import check_is_fitted

__all__ = ["DaskPredictions", "is_dask"]


def is_dask(obj) -> bool:
    """Whether ``obj`` is a dask collection (:func:`bayesmoe.streaming.is_dask`)."""
    from bayesmoe.streaming import is_dask as streaming_is_dask

    return streaming_is_dask(obj)


def _partition_method(part: pd.DataFrame, est, method: str, target, kwargs) -> pd.Series:
    """One partition's predictions (run in a dask task on a light estimator copy)."""
    if target is not None:
        y = part[target].to_numpy()
        part = part.drop(columns=[target])
        values = getattr(est, method)(part, y)
    elif method == "predict_std":
        values = est.predict(part, return_std=True)[1]
    else:
        values = getattr(est, method)(part, **kwargs)
    return pd.Series(np.asarray(values, float), index=part.index, name=method)


class DaskPredictions:
    """Row-wise methods over dask partitions (a mixin of ``BayesianRegressor``)."""

    def _partition_copy(self):
        """A light copy for dask tasks: the working draws and the spec, no data or graph."""
        import copy
        import dataclasses
        from types import SimpleNamespace

        spec = self.model_.bayesmoe_spec
        drop = {f.name: None for f in dataclasses.fields(spec) if f.name in ("y", "_vem")}
        if any(f.name == "rebuild" for f in dataclasses.fields(spec)):
            drop["rebuild"] = {}
        light = copy.copy(self)
        light.model_ = SimpleNamespace(
            bayesmoe_spec=dataclasses.replace(spec, **drop), coords=dict(self.model_.coords)
        )
        light.idata_ = xr.DataTree.from_dict({"posterior_working": self._working_posterior()})
        return light

    def _dask_rows(self, X, y, method: str, **kwargs):
        """``method`` of each partition of a dask frame, as a lazy dask Series or scalar."""
        check_is_fitted(self, "idata_")
        light = self._partition_copy()
        if y is not None:
            if not isinstance(y, str):
                raise TypeError(
                    "with a dask X, y must be the name of its target column, "
                    f"got {type(y).__name__}"
                )
            if y not in X.columns:
                raise ValueError(f"y={y!r} is not a column of X; columns are {list(X.columns)}")
        meta = pd.Series(dtype=float, name=method)
        return X.map_partitions(_partition_method, light, method, y, kwargs, meta=meta)
