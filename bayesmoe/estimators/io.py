"""Persistence of fitted estimators: one netCDF file per fit, written atomically.

A saved file is the fit's DataTree (posterior draws bit for bit) made storable
(:func:`storable`), with the estimator's name, settings, standardisation, feature names,
formula design and the bayesmoe/PyMC/ArviZ versions in its root attributes.
:func:`load` finds the class by name in a registry (:func:`register`,
:func:`estimator_class`) and rebuilds the estimator, model included, without sampling.

Format versions (``bayesmoe_format``): 2 holds ``posterior`` on the user's scale and the
sampled draws as ``posterior_working``; files of format 1 held the working-scale draws as
``posterior`` and are converted on load.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from sklearn.utils.validation import check_is_fitted

from bayesmoe.data import Standardizer
from bayesmoe.files import atomic_write
from bayesmoe.formula import FormulaDesign
from bayesmoe.priors import priors_from_json, priors_to_json

__all__ = [
    "FORMAT_VERSION",
    "Persistence",
    "as_path",
    "estimator_class",
    "load",
    "register",
    "storable",
    "versions",
]

#: 2: ``posterior`` on the user's scale, ``posterior_working`` the sampled draws (files of
#: format 1 held the working-scale draws as ``posterior`` and are converted on load)
FORMAT_VERSION = 2

#: estimator class name -> class, for :func:`load`
_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Make ``cls`` loadable: files whose ``bayesmoe_estimator`` is its name load as it."""
    _REGISTRY[cls.__name__] = cls
    return cls


def estimator_class(name) -> type | None:
    """The registered estimator class called ``name``; ``None`` if there is none."""
    return _REGISTRY.get(name) if isinstance(name, str) else None


def versions() -> dict[str, str]:
    """The library versions a saved file records (and :func:`load` compares)."""
    import bayesmoe

    return {
        "bayesmoe_version": bayesmoe.__version__,
        "pymc_version": pm.__version__,
        "arviz_version": az.__version__,
    }


def storable(tree: xr.DataTree) -> xr.DataTree:
    """A copy netCDF can hold: object arrays as strings, attrs as plain scalars/strings."""

    def clean_attrs(attrs: dict) -> dict:
        out = {}
        for k, v in attrs.items():
            if isinstance(v, bool | np.bool_):
                out[k] = int(v)
            elif isinstance(v, str | int | float | np.integer | np.floating):
                out[k] = v
            elif v is None:
                out[k] = ""
            else:
                out[k] = json.dumps(v, default=str)
        return out

    groups = {}
    for node in tree.subtree:
        ds = node.to_dataset(inherit=False)
        for name, da in list(ds.variables.items()):
            if da.dtype == object:
                ds[name] = da.astype(str)
        groups[node.path] = ds.assign_attrs(clean_attrs(ds.attrs))
    return xr.DataTree.from_dict(groups)


def as_path(path) -> Path:
    """``path`` as a :class:`~pathlib.Path`; a TypeError for anything but str/PathLike."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


class Persistence:
    """``save`` and the rebuild from a saved tree (a mixin of ``BayesianRegressor``).

    Subclasses with more to store extend ``_saved_tree`` and ``_from_saved``; a streamed
    fit's model is rebuilt by the subclass's ``_build_from_saved_statistics``.
    """

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted estimator to one netCDF file, atomically.

        The file holds the DataTree (posterior draws bit for bit), the settings and the
        standardisation, plus the bayesmoe/PyMC/ArviZ versions. It is written to a
        temporary file in the same folder and renamed, so a crash never leaves a
        half-written file under ``path``.
        """
        check_is_fitted(self, "idata_")
        path = as_path(path)
        if path.exists() and path.is_dir():
            raise OSError(f"path {str(path)!r} is a directory; give a file name")
        if not path.parent.exists():
            raise OSError(f"path {str(path)!r}: folder {str(path.parent)!r} does not exist")
        tree = self._saved_tree()
        return atomic_write(path, lambda tmp: tree.to_netcdf(tmp, engine="h5netcdf"))

    def _saved_tree(self) -> xr.DataTree:
        """What ``save`` writes: the fit plus everything needed to rebuild the estimator."""
        tree = storable(self.idata_)
        if "loo_approximation" in tree.children:  # a streamed fit's is lazy: one more pass
            from bayesmoe.streaming import computed, is_dask

            approx = tree["loo_approximation"].to_dataset()
            if is_dask(approx["y"].data):
                tree["loo_approximation"] = approx.copy(data={"y": computed(approx["y"].data)})
        tree.attrs.update(
            bayesmoe_format=FORMAT_VERSION,
            bayesmoe_estimator=type(self).__name__,
            bayesmoe_params=json.dumps(self._params_json()),
            bayesmoe_standardizer=json.dumps(self.standardizer_.to_dict()),
            bayesmoe_feature_names=json.dumps([str(c) for c in self.feature_names_in_]),
            **versions(),
        )
        if getattr(self, "formula_design_", None) is not None:
            tree.attrs["bayesmoe_formula_design"] = json.dumps(self.formula_design_.to_dict())
        return tree

    def _params_json(self) -> dict:
        params = self.get_params(deep=False)
        params["priors"] = priors_to_json(params.get("priors"))
        return params

    @classmethod
    def _from_saved(cls, tree: xr.DataTree):
        params = json.loads(tree.attrs["bayesmoe_params"])
        params["priors"] = priors_from_json(params.get("priors"))
        if isinstance(params.get("interactions"), list):
            params["interactions"] = [
                tuple(p) if isinstance(p, list) else p for p in params["interactions"]
            ]
        est = cls(**params)
        est.idata_ = tree
        est.feature_names_in_ = np.asarray(
            json.loads(tree.attrs["bayesmoe_feature_names"]), object
        )
        est.n_features_in_ = len(est.feature_names_in_)
        est.standardizer_ = Standardizer.from_dict(json.loads(tree.attrs["bayesmoe_standardizer"]))
        if tree.attrs.get("bayesmoe_formula_design"):
            est.formula_design_ = FormulaDesign.from_dict(
                json.loads(tree.attrs["bayesmoe_formula_design"])
            )
        Xw = pd.DataFrame(
            tree["constant_data"]["X_base"].values, columns=list(est.feature_names_in_)
        )
        yw = est.standardizer_.transform_y(tree["observed_data"]["y"].values)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant-feature warnings were given at fit time
            if tree.attrs.get("bayesmoe_streamed"):
                est.model_ = est._build_from_saved_statistics(tree, Xw.to_numpy(), yw)
            else:
                est.model_ = est._build(Xw, yw)
        if "posterior_working" in tree.children:
            est._set_point_estimates()
        else:  # format 1 (bayesmoe 0.1) stored the working-scale draws as posterior
            est._posterior_to_user_scale()
        return est


def load(path: str | os.PathLike):
    """Load an estimator written by ``save``; warns when library versions differ.

    Raises
    ------
    OSError
        The path does not exist, or the file is truncated, corrupted or not bayesmoe's.
    """
    path = as_path(path)
    if not path.is_file():
        raise OSError(f"path {str(path)!r} does not exist or is not a file")
    try:
        tree = xr.open_datatree(path, engine="h5netcdf").load()
        tree.close()
    except Exception as err:  # h5py/netCDF errors on a truncated or foreign file
        raise OSError(
            f"{str(path)!r} is not a readable bayesmoe file (truncated or corrupted?): {err}"
        ) from err
    cls = estimator_class(tree.attrs.get("bayesmoe_estimator"))
    if cls is None or "bayesmoe_params" not in tree.attrs:
        raise OSError(f"{str(path)!r} was not written by bayesmoe's save()")
    mismatched = {
        k: (tree.attrs.get(k), v) for k, v in versions().items() if tree.attrs.get(k) != v
    }
    if mismatched:
        warnings.warn(
            f"{path.name} was saved with other library versions (saved, now): {mismatched}",
            UserWarning,
            stacklevel=2,
        )
    return cls._from_saved(tree)
