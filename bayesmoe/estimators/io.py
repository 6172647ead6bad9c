"""Persistence of fitted estimators: one netCDF file per fit, written atomically.

A saved file is the fit's DataTree (posterior draws bit for bit) made storable
(:func:`storable`), with the estimator's name, settings, standardisation, feature names,
formula design and the bayesmoe/PyMC/ArviZ versions in its root attributes. The
``predictions`` groups that ``predict_*`` calls leave in ``idata_`` are written only with
``save(path, include_predictions=True)``; the statistics of ``partial_fit`` are written
as the ``partial_fit_state`` group, so a loaded estimator continues its stream.

A model file is data. :func:`load` reads it without executing anything from it: the
class comes from a fixed allow-list of bayesmoe's estimators (:data:`LOADABLE`, imported
by module name on first use, and whatever :func:`register` added), and every attribute it
reads is checked (types, shapes against the feature names, the format version, finite
positive scales, settings the class knows, well-formed JSON, the member files of a
stacking fit) before the estimator is rebuilt, model included, without sampling. A
damaged or foreign file raises :class:`OSError` (not an HDF5/netCDF file, not bayesmoe's)
or :class:`ValueError` naming the attribute.

Format versions (``bayesmoe_format``): 2 holds ``posterior`` on the user's scale and the
sampled draws as ``posterior_working``; files of format 1 held the working-scale draws as
``posterior`` and are converted on load.
"""

from __future__ import annotations

import importlib
import json
import numbers
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
from bayesmoe.inference.loglik import subsample_apart
from bayesmoe.priors import priors_from_json, priors_to_json

__all__ = [
    "FORMAT_VERSION",
    "LOADABLE",
    "PREDICTION_GROUPS",
    "Persistence",
    "as_path",
    "estimator_class",
    "load",
    "load_tree",
    "register",
    "storable",
    "versions",
]

#: 2: ``posterior`` on the user's scale, ``posterior_working`` the sampled draws (files of
#: format 1 held the working-scale draws as ``posterior`` and are converted on load)
FORMAT_VERSION = 2

#: estimator class name -> class, for :func:`load`
_REGISTRY: dict[str, type] = {}

#: the estimator classes a file may name, and the module that defines each: :func:`load`
#: imports that module (never a name taken from the file) when the class is not yet
#: registered, so every estimator loads in a fresh process
LOADABLE = {
    "InteractionRegression": "bayesmoe.estimators.interaction",
    "MixtureRegression": "bayesmoe.estimators.mixture",
    "GatedExperts": "bayesmoe.estimators.mixture",
    "HierarchicalStacking": "bayesmoe.stacking",
}

#: the groups ``predict_*`` calls add to ``idata_``: saved only when asked
PREDICTION_GROUPS = ("predictions", "predictions_constant_data")


def register(cls: type) -> type:
    """Make ``cls`` loadable: files whose ``bayesmoe_estimator`` is its name load as it."""
    _REGISTRY[cls.__name__] = cls
    return cls


def estimator_class(name) -> type | None:
    """The registered estimator class called ``name``; ``None`` if there is none.

    A bayesmoe estimator (:data:`LOADABLE`) is registered by importing its module.
    """
    if not isinstance(name, str):
        return None
    if name not in _REGISTRY and name in LOADABLE:
        importlib.import_module(LOADABLE[name])
    return _REGISTRY.get(name)


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


def saved_json(attrs, name: str, kind: type | tuple, where: str = ""):
    """The root attribute ``name`` of a saved file, parsed as JSON of type ``kind``.

    Raises ValueError naming the attribute when it is missing, not a string, not
    well-formed JSON or not of ``kind``; ``where`` prefixes the message (a member's path).
    """
    if name not in attrs:
        raise ValueError(f"{where}attribute {name!r} is missing")
    text = attrs[name]
    if not isinstance(text, str):
        raise ValueError(
            f"{where}attribute {name!r} must be a JSON string, got {type(text).__name__}"
        )
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{where}attribute {name!r} is not well-formed JSON: {err}") from None
    if not isinstance(value, kind):
        raise ValueError(f"{where}attribute {name!r} must hold a JSON {_kind_name(kind)}")
    return value


def _is_blank(value) -> bool:
    return isinstance(value, str) and value == ""


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(
        {dict: "object", list: "array", str: "string"}.get(k, k.__name__) for k in kinds
    )


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_)


def finite_numbers(values, name: str, where: str = "", *, n: int | None = None) -> np.ndarray:
    """``values`` as a float array of finite numbers (``n`` of them when given)."""
    ok = isinstance(values, list) and all(_is_real(v) for v in values)
    arr = np.asarray(values, float) if ok else None
    if arr is None or (n is not None and arr.shape != (n,)) or not np.all(np.isfinite(arr)):
        size = "" if n is None else f"{n} "
        per = "" if n is None else " (one per name in 'bayesmoe_feature_names')"
        raise ValueError(f"{where}{name} must be a list of {size}finite numbers{per}")
    return arr


def check_standardizer(d: dict, n_features: int, where: str = "") -> None:
    """A saved standardisation: ``n_features`` finite means and positive finite scales."""
    name = "attribute 'bayesmoe_standardizer'"
    if set(d) != {"x_mean", "x_scale", "y_mean", "y_scale"}:
        raise ValueError(f"{where}{name} must have the keys x_mean, x_scale, y_mean, y_scale")
    finite_numbers(d["x_mean"], f"{name}: x_mean", where, n=n_features)
    scale = finite_numbers(d["x_scale"], f"{name}: x_scale", where, n=n_features)
    if np.any(scale <= 0):
        raise ValueError(f"{where}{name}: x_scale must be positive")
    for key in ("y_mean", "y_scale"):
        if not _is_real(d[key]) or not np.isfinite(d[key]):
            raise ValueError(f"{where}{name}: {key} must be a finite number")
    if d["y_scale"] <= 0:
        raise ValueError(f"{where}{name}: y_scale must be positive")


def check_feature_names(names: list, where: str = "") -> None:
    """Saved feature names: a non-empty list of distinct strings."""
    if not names or not all(isinstance(c, str) for c in names) or len(set(names)) < len(names):
        raise ValueError(
            f"{where}attribute 'bayesmoe_feature_names' must be a non-empty list of "
            "distinct strings"
        )


def check_priors(priors, where: str = "") -> None:
    """Saved priors: ``{name: {"fixed": number} | Prior dict}`` naming PyMC distributions."""
    name = "attribute 'bayesmoe_params': priors"
    if priors is None:
        return
    if not isinstance(priors, dict):
        raise ValueError(f"{where}{name} must be an object or null")
    for key, spec in priors.items():
        if isinstance(spec, dict) and set(spec) == {"fixed"} and _is_real(spec["fixed"]):
            continue
        _check_prior_dict(spec, f"{where}{name}[{key!r}]")


def _check_prior_dict(spec, name: str) -> None:
    dist = spec.get("dist") if isinstance(spec, dict) else None
    cls = getattr(pm, dist, None) if isinstance(dist, str) and dist.isidentifier() else None
    if not (isinstance(cls, type) and issubclass(cls, pm.Distribution)):
        raise ValueError(f"{name} must be a fixed number or a prior of a PyMC distribution")
    for value in (spec.get("kwargs") or {}).values():
        if isinstance(value, dict):
            _check_prior_dict(value, name)


def check_variable(
    group, var: str, dims: tuple, sizes: dict, where: str = "", *, sized_by: str = ""
) -> np.ndarray:
    """``group[var]``: finite numbers with ``dims`` (``sizes``: the sizes they must have,
    taken from what ``sized_by`` names)."""
    name = f"{where}variable {var!r} of group {group.path.lstrip('/')!r}"
    if var not in group.data_vars:
        raise ValueError(f"{name} is missing")
    da = group[var]
    if da.dims != dims or any(da.sizes[d] != n for d, n in sizes.items()):
        raise ValueError(
            f"{name} has dims {dict(da.sizes)}; expected {dims} with {sizes} (from "
            f"{sized_by or 'bayesmoe_feature_names'})"
        )
    if not np.issubdtype(da.dtype, np.number) or not np.all(np.isfinite(da.values)):
        raise ValueError(f"{name} must hold finite numbers")
    return da.values


def check_draws(tree: xr.DataTree, where: str = "") -> None:
    """The posterior groups: present, every variable finite numbers over (chain, draw)."""
    groups = [g for g in ("posterior", "posterior_working") if g in tree.children]
    if "posterior" not in groups:
        raise ValueError(f"{where}group 'posterior' is missing")
    if len(groups) == 2:
        differ = sorted(
            set(tree["posterior"].data_vars) ^ set(tree["posterior_working"].data_vars)
        )
        if differ:
            raise ValueError(
                f"{where}variables {differ} are in only one of the groups 'posterior' "
                "and 'posterior_working'"
            )
        for var, da in tree["posterior_working"].data_vars.items():
            user = tree["posterior"][var]
            if da.dims != user.dims or da.shape != user.shape:
                raise ValueError(
                    f"{where}variable {var!r} has dims {dict(da.sizes)} in group "
                    f"'posterior_working' but {dict(user.sizes)} in 'posterior'"
                )
    for g in groups:
        for var, da in tree[g].data_vars.items():
            if da.dims[:2] != ("chain", "draw") or not np.issubdtype(da.dtype, np.number):
                raise ValueError(f"{where}variable {var!r} of group {g!r} is not posterior draws")
            if not np.all(np.isfinite(da.values)):
                raise ValueError(f"{where}variable {var!r} of group {g!r} has non-finite draws")


def group(tree: xr.DataTree, name: str, where: str = "") -> xr.DataTree:
    """The child group ``name`` of ``tree``; a ValueError naming it when it is missing."""
    if name not in tree.children:
        raise ValueError(f"{where}group {name!r} is missing")
    return tree[name]


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

    def save(self, path: str | os.PathLike, *, include_predictions: bool = False) -> Path:
        """Write the fitted estimator to one netCDF file, atomically.

        The file holds the DataTree (posterior draws bit for bit), the settings and the
        standardisation, plus the bayesmoe/PyMC/ArviZ versions, and the statistics of a
        ``partial_fit`` stream. It is written with :func:`bayesmoe.files.atomic_write`: a
        temporary file in the target's folder, flushed to disk and renamed, so a crash
        never leaves a half-written file under ``path``; a symbolic link is followed (the
        file it points to is replaced), and a new file's mode follows the umask.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write; its folder must exist.
        include_predictions : bool
            Also write the ``predictions`` and ``predictions_constant_data`` groups that
            ``predict_dist`` and the other ``predict_*`` methods keep in ``idata_`` (they
            hold the rows predicted at). By default they are left out of the file.
        """
        check_is_fitted(self, "idata_")
        path = as_path(path)
        if path.exists() and path.is_dir():
            raise OSError(f"path {str(path)!r} is a directory; give a file name")
        if not path.parent.exists():
            raise OSError(f"path {str(path)!r}: folder {str(path.parent)!r} does not exist")
        if not isinstance(include_predictions, bool | np.bool_):
            raise TypeError(
                f"include_predictions must be True or False, got {include_predictions!r}"
            )
        tree = self._saved_tree()
        if not include_predictions:
            tree = without_predictions(tree)
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
        state = self._partial_fit_state()
        if state is not None:
            tree["partial_fit_state"] = state
        return tree

    def _partial_fit_state(self) -> xr.Dataset | None:
        """The statistics a ``partial_fit`` stream continues from (``None``: no stream)."""
        return None

    def _params_json(self) -> dict:
        params = self.get_params(deep=False)
        params["priors"] = priors_to_json(params.get("priors"))
        return params

    @classmethod
    def _check_saved(cls, tree: xr.DataTree, where: str = "") -> None:
        """Check every attribute and group ``_from_saved`` reads (ValueError naming it)."""
        check_format(tree.attrs, where)
        params = check_params(cls, tree.attrs, where)
        names = saved_json(tree.attrs, "bayesmoe_feature_names", list, where)
        check_feature_names(names, where)
        std = saved_json(tree.attrs, "bayesmoe_standardizer", dict, where)
        check_standardizer(std, len(names), where)
        streamed = tree.attrs.get("bayesmoe_streamed", 0)
        if not isinstance(streamed, numbers.Integral) or streamed not in (0, 1):
            raise ValueError(f"{where}attribute 'bayesmoe_streamed' must be 0 or 1")
        if not _is_blank(tree.attrs.get("bayesmoe_formula_design", "")):
            design = saved_json(tree.attrs, "bayesmoe_formula_design", dict, where)
            try:
                FormulaDesign.from_dict(design)
            except Exception as err:
                raise ValueError(
                    f"{where}attribute 'bayesmoe_formula_design' is not a valid design: {err}"
                ) from None
        const = group(tree, "constant_data", where)
        rows = const["X_base"].shape[0] if "X_base" in const.data_vars else -1
        check_variable(const, "X_base", ("obs", "feature"), {"feature": len(names)}, where)
        check_variable(
            group(tree, "observed_data", where), "y", ("obs",), {"obs": rows}, where,
            sized_by="the rows of variable 'X_base' of group 'constant_data'",
        )  # fmt: skip
        check_draws(tree, where)
        if tree.attrs.get("bayesmoe_streamed"):
            coef = const["xtx"].shape[0] if "xtx" in const.data_vars else -1
            check_variable(const, "xtx", ("coef", "coef_"), {"coef_": coef}, where)
            check_variable(const, "xty", ("coef",), {"coef": coef}, where)
            check_variable(const, "yty", (), {}, where)
            check_variable(const, "n_obs", (), {}, where)
        cls._check_saved_state(tree, params, where)

    @classmethod
    def _check_saved_state(cls, tree: xr.DataTree, params: dict, where: str = "") -> None:
        """Check the ``partial_fit_state`` group (estimators with ``partial_fit``)."""

    @classmethod
    def _from_saved(cls, tree: xr.DataTree):
        params = json.loads(tree.attrs["bayesmoe_params"])
        params["priors"] = priors_from_json(params.get("priors"))
        if isinstance(params.get("interactions"), list):
            params["interactions"] = [
                tuple(p) if isinstance(p, list) else p for p in params["interactions"]
            ]
        est = cls(**params)
        est.idata_ = subsample_apart(tree)  # files written before SUBSAMPLE_GROUP
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
        est._check_draws_fit_model()
        if "posterior_working" in tree.children:
            est._set_point_estimates()
        else:  # format 1 (bayesmoe 0.1) stored the working-scale draws as posterior
            est._posterior_to_user_scale()
        est._restore_partial_fit_state(tree)
        return est

    def _check_draws_fit_model(self) -> None:
        """The saved draws of every model variable have the model's dims and sizes.

        Raises ValueError naming the variable (a damaged file); run after ``model_`` is
        rebuilt from a saved tree.
        """
        post = self._working_posterior()
        dims = self.model_.named_vars_to_dims
        for name, da in post.data_vars.items():
            want = ("chain", "draw", *dims.get(name, ()))
            sizes = {d: len(self.model_.coords[d]) for d in dims.get(name, ())}
            if name in self.model_.named_vars and (
                da.dims != want or any(da.sizes[d] != n for d, n in sizes.items())
            ):
                raise ValueError(
                    f"variable {name!r} of the saved posterior has dims {dict(da.sizes)}; "
                    f"the model's are {want} with {sizes}"
                )
        missing = [rv.name for rv in self.model_.free_RVs if rv.name not in post.data_vars]
        if missing:
            raise ValueError(f"variables {missing} of the model are missing from the posterior")

    def _check_rebuilt(self) -> None:
        """Predict two saved rows once: every draw the model reads exists and is finite."""
        parts = self._components(self._saved_rows()[:2])
        if not all(np.all(np.isfinite(np.asarray(part))) for part in parts):
            raise ValueError("the saved posterior draws give non-finite predictions")

    def _saved_rows(self) -> np.ndarray:
        """The fit's rows on the working scale (``constant_data``)."""
        return self.idata_["constant_data"]["X_base"].values

    def _restore_partial_fit_state(self, tree: xr.DataTree) -> None:
        """Take up the ``partial_fit`` stream a saved file holds (estimators that have one)."""


def without_predictions(tree: xr.DataTree) -> xr.DataTree:
    """``tree`` without the groups of :data:`PREDICTION_GROUPS` (members' too)."""
    kept = {
        node.path: node.to_dataset(inherit=False)
        for node in tree.subtree
        if not set(node.path.split("/")) & set(PREDICTION_GROUPS)
    }
    out = xr.DataTree.from_dict(kept)
    out.attrs.update(tree.attrs)
    return out


def check_format(attrs, where: str = "") -> int:
    """The file's ``bayesmoe_format``: 1 or 2; a newer or unknown one is refused."""
    version = attrs.get("bayesmoe_format")
    if not isinstance(version, numbers.Integral) or isinstance(version, bool | np.bool_):
        raise ValueError(f"{where}attribute 'bayesmoe_format' must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{where}attribute 'bayesmoe_format' is {int(version)}: the file was written by "
            f"a newer bayesmoe (this one reads formats 1 to {FORMAT_VERSION}); upgrade bayesmoe"
        )
    if version < 1:
        raise ValueError(
            f"{where}attribute 'bayesmoe_format' is {int(version)}: not a known format"
        )
    return int(version)


def check_params(cls: type, attrs, where: str = "") -> dict:
    """The saved settings: a JSON object of ``cls``'s parameters (unknown keys refused)."""
    params = saved_json(attrs, "bayesmoe_params", dict, where)
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        raise ValueError(
            f"{where}attribute 'bayesmoe_params' has settings {unknown} that "
            f"{cls.__name__} does not take"
        )
    check_priors(params.get("priors"), where)
    try:
        est = cls(**{**params, "priors": priors_from_json(params.get("priors"))})
        est._check_settings()
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(
            f"{where}attribute 'bayesmoe_params' holds invalid settings: {err}"
        ) from None
    return params


def load(path: str | os.PathLike):
    """Load an estimator written by ``save``; warns when library versions differ.

    Nothing in the file is executed: the class is one of :data:`LOADABLE` (or
    registered), and every attribute read is checked before the estimator is rebuilt.

    Raises
    ------
    OSError
        The path does not exist, or the file is truncated, corrupted or not bayesmoe's.
    ValueError
        The file is bayesmoe's but an attribute or group is damaged (the message names
        it), or it was written in a newer format (``bayesmoe_format``) than this bayesmoe
        reads.
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
    return load_tree(tree, str(path), stacklevel=3)


def load_tree(tree: xr.DataTree, source: str = "the tree", *, stacklevel: int = 2):
    """The estimator a saved tree (``xr.open_datatree`` of a saved file) holds.

    :func:`load` after the file is read: the same checks, the same errors; ``source``
    names the file in messages.
    """
    name = tree.attrs.get("bayesmoe_estimator")
    cls = estimator_class(name)
    if cls is None:
        raise OSError(
            f"{source!r} was not written by bayesmoe's save() "
            f"(attribute 'bayesmoe_estimator' is {name!r})"
        )
    if "bayesmoe_params" not in tree.attrs:
        raise OSError(
            f"{source!r} was not written by bayesmoe's save() "
            "(attribute 'bayesmoe_params' is missing)"
        )
    try:
        cls._check_saved(tree)
    except ValueError as err:
        raise ValueError(f"{source!r} is a damaged bayesmoe file: {err}") from None
    mismatched = {
        k: (tree.attrs.get(k), v)
        for k, v in versions().items()
        if not (isinstance(tree.attrs.get(k), str) and tree.attrs.get(k) == v)
    }
    if mismatched:
        warnings.warn(
            f"{Path(source).name} was saved with other library versions (saved, now): "
            f"{mismatched}",
            UserWarning,
            stacklevel=stacklevel,
        )
    try:
        est = cls._from_saved(tree)
        est._check_rebuilt()
        return est
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        # every attribute and group was checked; what is left is the settings' model
        raise ValueError(
            f"{source!r}: the model does not rebuild from the saved settings "
            f"(attribute 'bayesmoe_params') and data: {type(err).__name__}: {err}"
        ) from None
