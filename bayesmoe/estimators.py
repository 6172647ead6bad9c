"""Thin scikit-learn-style estimators over a builder and :func:`bayesmoe.fit`.

``__init__`` only stores keyword-only settings; ``fit`` validates, standardises, builds
and fits, and returns ``self``; fitted attributes end in ``_``. Everything the user gets
back is on the original scale of ``y``. Estimators work with :func:`sklearn.base.clone`,
pipelines and :func:`sklearn.model_selection.cross_val_score`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from bayesmoe.builders.interaction import interaction_regression
from bayesmoe.builders.mixture import DEFAULT_ALPHA, gated_experts, mixture_regression
from bayesmoe.data import (
    Standardizer,
    validate_features,
    validate_predict_features,
    validate_target,
)
from bayesmoe.fitting import Diagnostics, diagnose, fit, model_diagnostics, validate_fit_settings
from bayesmoe.formula import FormulaDesign, design_from_formula
from bayesmoe.numerics.lse import log_softmax_last, logsumexp_first, logsumexp_last
from bayesmoe.priors import priors_from_json, priors_to_json

__all__ = [
    "BayesianRegressor",
    "GatedExperts",
    "InteractionRegression",
    "MixtureRegression",
    "load",
]

#: 2: ``posterior`` on the user's scale, ``posterior_working`` the sampled draws (files of
#: format 1 held the working-scale draws as ``posterior`` and are converted on load)
_FORMAT_VERSION = 2
SAMPLE_DIMS = ("chain", "draw")


def _per_obs(sd: xr.DataArray, like: xr.DataArray) -> xr.DataArray:
    """Broadcast component sds (chain, draw[, obs], expert) to the shape of ``like``."""
    if "obs" not in sd.dims:
        sd = sd.expand_dims(obs=like.sizes["obs"], axis=-2)
    return sd.transpose(*like.dims)


#: Target size of the (draws x rows x experts) temporaries of one block of predictions.
PREDICT_BLOCK_BYTES = 64 * 2**20


def _sample_coords(da: xr.DataArray) -> dict:
    return {d: da[d].values for d in SAMPLE_DIMS if d in da.coords}


@dataclass(frozen=True)
class _PointDensity:
    """``log p(y_i | x_i, theta_bar)`` on the user's scale, for one chunk of raw rows."""

    spec: object
    standardizer: Standardizer
    point: xr.Dataset

    def __call__(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        Xs = self.standardizer.transform_X(X)
        ys = self.standardizer.transform_y(y)
        ll = self.spec.log_likelihood(self.point, Xs, ys).values[0, 0]
        return ll - np.log(self.standardizer.y_scale)


class BayesianRegressor(RegressorMixin, BaseEstimator):
    """Shared machinery of the bayesmoe estimators (not used directly).

    Subclasses implement ``_build(X_work: DataFrame, y_work) -> pm.Model`` and
    ``_components(X_work) -> (log_weights, means, sds)``: the predictive at each row as a
    mixture of normals on the working scale (dims chain, draw, obs, expert; ``sds`` may
    lack ``obs``). A single regression is the one-expert case, so prediction, predictive
    draws and log densities have one implementation for every model.
    """

    #: names of the fit settings every estimator takes
    _fit_settings = (
        "method",
        "sampler",
        "draws",
        "tune",
        "chains",
        "random_seed",
        "progressbar",
        "log_likelihood",
        "fit_kwargs",
    )

    # ------------------------------------------------------------------ fitting
    def _check_settings(self) -> None:
        if self.fit_kwargs is not None and not isinstance(self.fit_kwargs, dict):
            raise TypeError(f"fit_kwargs must be a dict, got {type(self.fit_kwargs).__name__}")
        validate_fit_settings(
            self.method,
            self.sampler,
            self.draws,
            self.tune,
            self.chains,
            self.random_seed,
            (self.fit_kwargs or {}).get("advi_iterations", 1),
        )

    def _sample_model(self, **options):
        """Fit ``self.model_`` with the estimator's sampler settings (``fit_kwargs`` last)."""
        log_likelihood = options.pop("log_likelihood", self.log_likelihood)
        return fit(
            self.model_,
            self.method,
            sampler=self.sampler,
            draws=self.draws,
            tune=self.tune,
            chains=self.chains,
            random_seed=self.random_seed,
            progressbar=self.progressbar,
            log_likelihood=log_likelihood,
            **options,
            **(self.fit_kwargs or {}),
        )

    @classmethod
    def from_formula(cls, formula: str, data: pd.DataFrame, **params) -> BayesianRegressor:
        """Fit the model a Wilkinson formula describes, on ``data``.

        ``cls.from_formula("y ~ (a + b + c)**2", df, draws=500)`` is
        ``cls(formula="y ~ (a + b + c)**2", draws=500).fit(df)``; see ``formula`` in the
        class docstring for what formulas mean here.
        """
        return cls(formula=formula, **params).fit(data)

    def fit(self, X, y=None, *, strict: bool = False, client=None) -> BayesianRegressor:
        """Validate the data, build the model and sample its posterior.

        Parameters
        ----------
        X : array-like, DataFrame or dask DataFrame of shape (n, p)
            With ``formula``: the DataFrame holding the formula's columns. A dask
            DataFrame (e.g. :func:`bayesmoe.read_parquet`) is fitted without loading it
            (models that support it: see ``_fit_streamed``).
        y : array-like of shape (n,), optional
            Not given with ``formula`` (the formula names the target). With a dask ``X``:
            the name of its target column, or a dask Series.
        strict : bool
            Raise :class:`bayesmoe.fitting.DiagnosticsError` if any diagnostic fails its
            threshold (see :func:`bayesmoe.fit`); the estimator then stays unfitted.
        client : distributed.Client, optional
            With a dask ``X``: where the pass over the data runs (default: the active
            client, else a ``LocalCluster`` started for the pass and closed after it).

        Returns
        -------
        self
        """
        self._check_settings()
        if not isinstance(strict, bool | np.bool_):
            raise TypeError(f"strict must be True or False, got {strict!r}")
        if _is_dask(X) or _is_dask(y):
            return self._fit_streamed(X, y, strict=bool(strict), client=client)
        start = time.perf_counter()
        X, y, design = self._formula_design(X, y)
        if design is None:
            self.__dict__.pop("formula_design_", None)
        else:
            self.formula_design_ = design
        Xv, names = self._features(X, y)
        yv = validate_target(y, Xv.shape[0], name="y")
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = Xv.shape[1]
        self.standardizer_ = Standardizer.fit(Xv, yv, enabled=self.standardize)
        Xw = pd.DataFrame(self.standardizer_.transform_X(Xv), columns=names)
        yw = self.standardizer_.transform_y(yv)
        self.model_ = self._build(Xw, yw)
        data_seconds = time.perf_counter() - start
        self.idata_ = self._sample_model(strict=bool(strict))
        self._to_original_scale(yv)
        self._posterior_to_user_scale()
        self.idata_.attrs["bayesmoe_estimator"] = type(self).__name__
        # validation, standardisation, design and sufficient statistics: the O(n d^2) pass
        self.idata_.attrs["bayesmoe_data_seconds"] = data_seconds
        return self

    def _fit_streamed(self, X, y, *, strict: bool, client) -> BayesianRegressor:
        raise TypeError(
            f"{type(self).__name__} does not fit dask inputs yet; InteractionRegression "
            "does (streamed sufficient statistics). Compute a sample (X.compute()) instead"
        )

    def _streamed_columns(self, X, y, client=None) -> tuple:
        """``(frame, target, features)`` of a dask input, refusing what cannot stream.

        With ``formula``: the frame of the formula's design columns and target, coded
        partition by partition (:func:`bayesmoe.streaming.formula_frame`), and the
        fitted design kept as ``formula_design_`` (predictions code new rows with it).
        """
        formula = getattr(self, "formula", None)
        self.__dict__.pop("formula_design_", None)
        if formula is not None:
            from bayesmoe import streaming

            if y is not None:
                raise ValueError(
                    "with formula=..., pass the dask frame alone (fit(ddf)): the formula "
                    "names the target"
                )
            if not _is_dask(X) or not hasattr(X, "columns"):
                raise TypeError(
                    "with formula=..., a dask X must be a dask DataFrame holding the "
                    f"formula's columns, got {type(X).__name__}"
                )
            self._check_formula_settings(formula)
            frame, target, features, design = streaming.formula_frame(
                X, formula, gate=getattr(self, "gate_formula", None), client=client
            )
            if design.target is None:
                raise ValueError(f"formula={formula!r} has no target; write 'y ~ ...'")
            self.formula_design_ = design
            return frame, target, features
        frame, target = _dask_frame_and_target(X, y)
        features = [str(c) for c in frame.columns if c != target]
        if not features and not self._allows_no_features:
            raise ValueError("X has no feature columns besides the target")
        return frame, target, features

    def _record_sample(self, sample, n_rows: int, stream=None) -> None:
        """Mark a fit whose pointwise log-likelihood holds a row sample of ``n_rows`` rows.

        The sample's positions in the data become the ``row`` coordinate of
        ``observed_data`` and ``log_likelihood``. With ``stream`` (the dask frame, its
        features and target) every row's log density at the posterior mean, the
        approximation :func:`arviz_stats.loo_subsample` corrects with the sample, becomes
        the ``loo_approximation`` group as a lazy dask array, one partition at a time:
        nothing is computed until :func:`bayesmoe.compare` (or a save) asks for it.
        """
        if sample.y.size >= n_rows or "log_likelihood" not in self.idata_.children:
            return
        positions = np.asarray(sample.rows, dtype=np.int64)
        observed = self.idata_["observed_data"].to_dataset()
        self.idata_["observed_data"] = observed.assign_coords(row=("obs", positions))
        ll = self.idata_["log_likelihood"].to_dataset()
        # rows stored within the sample (fit's own subsample of it), else all of it
        within = ll["row"].values if "row" in ll.coords else np.arange(ll.sizes["obs"])
        self.idata_["log_likelihood"] = ll.assign_coords(row=("obs", positions[within]))
        if "loo_approximation" in self.idata_.children:  # the sample's: replaced below
            del self.idata_["loo_approximation"]
        self.idata_.attrs["bayesmoe_log_likelihood"] = "subsample"
        if stream is None:
            return
        from bayesmoe import streaming

        frame, features, target = stream
        point = self._working_posterior().mean(("chain", "draw")).expand_dims(chain=[0], draw=[0])
        density = _PointDensity(self.model_.bayesmoe_spec, self.standardizer_, point)
        values = streaming.pointwise(frame, features, target, density, sample.chunk_rows)
        self.idata_["loo_approximation"] = xr.Dataset(
            {"y": ("obs", values)},
            attrs={"method": "plpd", "point": "posterior mean"},
        )

    def _stream_log_likelihood(self, sample):
        """``log_likelihood`` for a fit on a streamed row sample (smallest keys first).

        ``"auto"`` stores the sample's first ``LOO_SUBSAMPLE_ROWS`` rows: the bottom-k
        rows every streamed fit of the same frame holds, so that their subsampled LOO pair
        on the same rows (:func:`bayesmoe.compare`).
        """
        from bayesmoe.fitting import LOO_SUBSAMPLE_ROWS

        if isinstance(self.log_likelihood, str) and self.log_likelihood == "auto":
            return np.arange(min(LOO_SUBSAMPLE_ROWS, sample.y.size))
        return self.log_likelihood

    def _standardize_from_moments(self, moments, features) -> dict:
        """Standardisation and feature names of a streamed fit, from its design moments."""
        from bayesmoe.numerics.suffstats import standardized_statistics

        stats = standardized_statistics(moments, standardize=self.standardize)
        self.standardizer_ = Standardizer(
            stats["x_mean"], stats["x_scale"], stats["y_mean"], stats["y_scale"]
        )
        self.feature_names_in_ = np.asarray(features, dtype=object)
        self.n_features_in_ = len(features)
        return stats

    #: whether the model can be fitted without features (``X=None``)
    _allows_no_features = False
    #: settings a formula decides, with their defaults (they must be left at them)
    _formula_decides: ClassVar[dict] = {}

    def _formula_design(self, X, y):
        """``(X, y, design)``: the formula's design matrix and target, or the inputs as given."""
        formula = getattr(self, "formula", None)
        if formula is None:
            return X, y, None
        if y is not None:
            raise ValueError(
                "with formula=..., pass the data frame alone (fit(data)): the formula names "
                "the target"
            )
        if not isinstance(X, pd.DataFrame):
            raise TypeError(
                f"with formula=..., X must be a pandas DataFrame holding the formula's "
                f"columns, got {type(X).__name__}"
            )
        self._check_formula_settings(formula)
        design, Xd, yv = design_from_formula(
            formula, X, gate=getattr(self, "gate_formula", None), name="formula"
        )
        if yv is None:
            raise ValueError(f"formula={formula!r} has no target; write 'y ~ ...'")
        return Xd, yv, design

    def _check_formula_settings(self, formula: str) -> None:
        for name, default in self._formula_decides.items():
            if getattr(self, name) != default:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} and formula={formula!r} both choose the "
                    f"design; give the terms in the formula and leave {name} at {default!r}"
                )

    def _design_interactions(self):
        """The interactions the model uses: the formula's, else the ``interactions`` setting."""
        design = getattr(self, "formula_design_", None)
        return self.interactions if design is None else list(design.interactions)

    def _target(self, X, y):
        """``y`` as given, or the formula's target column of the data frame ``X``."""
        design = getattr(self, "formula_design_", None)
        if y is None and design is not None and isinstance(X, pd.DataFrame):
            return design.target_values(X)
        return y

    def _features(self, X, y) -> tuple[np.ndarray, list[str]]:
        if X is None and self._allows_no_features:
            n = len(y) if hasattr(y, "__len__") else 0
            return np.zeros((n, 0)), []
        return validate_features(X, name="X")

    def _to_original_scale(self, y: np.ndarray) -> None:
        """Observed data and pointwise log-likelihood on the scale of the user's ``y``.

        This keeps LOO/WAIC comparable between models fitted with and without
        standardisation (the Jacobian of y -> (y - m)/s is -log s per row).
        """
        obs = self.idata_["observed_data"].to_dataset()
        self.idata_["observed_data"] = obs.assign(y=("obs", y))
        shift = np.log(self.standardizer_.y_scale)
        for group in ("log_likelihood", "loo_approximation"):
            if group in self.idata_.children and shift != 0.0:
                # in place: at 2e5 rows x 4000 draws a copy is 6 GB of fresh pages
                for da in self.idata_[group].to_dataset(inherit=False).data_vars.values():
                    da.values -= shift

    def _posterior_to_user_scale(self) -> None:
        """``posterior`` on the user's scale; the sampled (working-scale) draws move to
        ``posterior_working``.

        The map is affine and the same for every draw (:mod:`bayesmoe.numerics.rescale`),
        so R-hat and ESS of a rescaled variable equal those of the quantity it is a
        function of, and LOO (computed from ``log_likelihood``) is untouched. Predictions
        and every method of the estimator use ``posterior_working``.
        """
        working = self.idata_["posterior"].to_dataset()
        user = self.model_.bayesmoe_spec.to_user_scale(working, self.standardizer_)
        self.idata_["posterior_working"] = working.assign_attrs(bayesmoe_scale="working")
        self.idata_["posterior"] = user
        self._set_point_estimates()

    def _working_posterior(self) -> xr.Dataset:
        """The draws the model's own functions take (files saved before 0.2: ``posterior``)."""
        group = "posterior_working" if "posterior_working" in self.idata_.children else "posterior"
        return self.idata_[group].to_dataset()

    def working_view(self) -> xr.DataTree:
        """The fit with the sampled working-scale draws as its ``posterior`` group.

        For diagnostics (what :meth:`check` reports) and for comparisons with truths on
        the working scale; other groups are the fit's own.
        """
        groups = {
            g: self.idata_[g].to_dataset()
            for g in self.idata_.children
            if g not in ("posterior", "posterior_working")
        }
        groups["posterior"] = self._working_posterior()
        return xr.DataTree.from_dict(groups)

    #: posterior variables that make up ``coef_`` (in this order)
    _coef_vars: tuple[str, ...] = ()

    def _set_point_estimates(self) -> None:
        """``coef_``, ``coef_names_`` and ``intercept_``: posterior means, user's scale."""
        post = self.idata_["posterior"]
        parts, labels = [], []
        for var in self._coef_vars:
            if var not in post.data_vars:
                continue
            da = post[var].mean(SAMPLE_DIMS)
            dim = da.dims[-1]  # the coefficient axis (feature, expert_feature, interaction)
            parts.append(da.values)
            labels += [str(c) for c in da[dim].values]
        first = post["intercept"].mean(SAMPLE_DIMS)
        self.intercept_ = float(first) if first.ndim == 0 else first.values
        width = (*np.shape(self.intercept_), 0)
        self.coef_ = np.concatenate(parts, axis=-1) if parts else np.zeros(width)
        self.coef_names_ = np.asarray(labels, dtype=object)

    def add_log_likelihood(self) -> xr.DataTree:
        """Compute the pointwise log-likelihood of every training row (user's scale of y).

        For a fit made with ``log_likelihood=False``, or to replace a subsampled one by the
        full one (``attrs["bayesmoe_log_likelihood"]`` becomes ``"full"``). Streamed fits
        hold a row sample only (``observed_data``), so this is that sample's.
        """
        check_is_fitted(self, "idata_")
        Xw = self.idata_["constant_data"]["X_base"].values
        yw = self.standardizer_.transform_y(self.idata_["observed_data"]["y"].values)
        spec = self.model_.bayesmoe_spec
        if hasattr(spec, "log_likelihood"):  # the fast blocked kernels (numerics.loglik)
            ll = spec.log_likelihood(self._working_posterior(), Xw, yw)
        else:
            ll = self._pointwise_loglik(Xw, yw)
        ll = ll - np.log(self.standardizer_.y_scale)
        self.idata_["log_likelihood"] = xr.Dataset(
            {"y": ll.assign_coords(obs=self.idata_["observed_data"]["obs"].values)}
        )
        if "loo_approximation" in self.idata_.children:
            del self.idata_["loo_approximation"]
        if not self.idata_.attrs.get("bayesmoe_streamed"):
            self.idata_.attrs["bayesmoe_log_likelihood"] = "full"
        return self.idata_

    def sample_posterior_predictive(self) -> xr.DataTree:
        """Add a ``posterior_predictive`` group of replicated training ``y`` (original scale)."""
        check_is_fitted(self, "idata_")
        rep = self._predictive_draws(self.idata_["constant_data"]["X_base"].values, salt=2)
        rep = rep.assign_coords(obs=self.idata_["observed_data"]["obs"].values)
        self.idata_["posterior_predictive"] = xr.Dataset({"y": rep})
        return self.idata_

    # ------------------------------------------------------------------ predictions
    def _raw(self, X) -> np.ndarray:
        check_is_fitted(self, "idata_")
        if X is None and self._allows_no_features and self.n_features_in_ == 0:
            return np.zeros((1, 0))  # a model without features predicts one new draw
        design = getattr(self, "formula_design_", None)
        if design is not None:
            if not isinstance(X, pd.DataFrame):
                raise TypeError(
                    f"this model was fitted with formula={design.formula!r}: X must be a "
                    f"DataFrame with its columns, got {type(X).__name__}"
                )
            X = design.transform(X)
        return validate_predict_features(X, list(self.feature_names_in_), name="X")

    def _work_X(self, X) -> np.ndarray:
        raw = self._raw(X)  # checks fittedness before standardizer_ is touched
        return self.standardizer_.transform_X(raw)

    def _predictive_draws(self, Xw: np.ndarray, salt: int) -> xr.DataArray:
        """y drawn from the (mixture) predictive for every posterior draw, original scale."""
        logw, mu, sd = self._components(Xw)
        rng = self._rng(salt)
        w = np.exp(logw.values)
        u = rng.uniform(size=(*w.shape[:-1], 1))
        k = np.minimum((u > np.cumsum(w, axis=-1)).sum(axis=-1), w.shape[-1] - 1)
        mu_k = np.take_along_axis(mu.values, k[..., None], axis=-1)[..., 0]
        sd_k = np.take_along_axis(_per_obs(sd, mu).values, k[..., None], axis=-1)[..., 0]
        y = mu_k + sd_k * rng.standard_normal(mu_k.shape)
        draws = xr.DataArray(y, dims=(*SAMPLE_DIMS, "obs"), coords=_sample_coords(mu))
        return self.standardizer_.inverse_y(draws).rename("y")

    def _rng(self, salt: int) -> np.random.Generator:
        seed = self.random_seed
        return np.random.default_rng(None if seed is None else [seed, salt])

    def _store_predictions(self, raw: np.ndarray, **variables: xr.DataArray) -> None:
        """Put prediction variables in ``idata_["predictions"]`` (obs = rows of ``raw``).

        Variables for the same ``X`` accumulate; a new ``X`` replaces the group.
        """
        obs = np.arange(raw.shape[0])
        new = xr.Dataset({k: v.assign_coords(obs=obs) for k, v in variables.items()})
        same_X = (
            "predictions_constant_data" in self.idata_.children
            and "predictions" in self.idata_.children
            and np.array_equal(self.idata_["predictions_constant_data"]["X"].values, raw)
        )
        if same_X:
            new = (
                self.idata_["predictions"]
                .to_dataset()
                .drop_vars(list(variables), errors="ignore")
                .merge(new)
            )
        self.idata_["predictions"] = new
        self.idata_["predictions_constant_data"] = xr.Dataset(
            {"X": (("obs", "feature"), raw)},
            coords={"obs": obs, "feature": list(self.feature_names_in_)},
        )

    # ------------------------------------------------------------------ dask inputs
    def _partition_copy(self) -> BayesianRegressor:
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

    def predict_dist(self, X) -> xr.DataArray:
        """Posterior predictive draws of ``y`` at ``X``, dims (chain, draw, obs).

        For a mixture this is the full mixture predictive (multimodal where experts
        disagree), not a Gaussian summary. Also stored as ``idata_["predictions"]["y"]``.
        """
        if _is_dask(X):
            raise TypeError(
                "predict_dist draws chains x draws values per row and is not offered for "
                "dask inputs; use predict / pointwise_log_predictive_density, or a sample "
                "of rows (X.sample(frac=...).compute())"
            )
        raw = self._raw(X)
        draws = self._predictive_draws(self.standardizer_.transform_X(raw), salt=1)
        self._store_predictions(raw, y=draws)
        return draws.assign_coords(obs=np.arange(raw.shape[0]))

    def predict(self, X, return_std: bool = False):
        r"""Posterior predictive mean; with ``return_std`` also its sd (noise included).

        Both are exact functions of the posterior draws (no predictive sampling noise).
        With mixing weights :math:`\pi_k`, means :math:`\mu_k` and sds :math:`\sigma_k`:
        :math:`E[y] = E_\theta[\sum_k \pi_k \mu_k]` and
        :math:`E[y^2] = E_\theta[\sum_k \pi_k (\sigma_k^2 + \mu_k^2)]`.

        For a dask DataFrame ``X`` the result is a lazy dask Series (the sd too), computed
        partition by partition on whatever scheduler is active.
        """
        if _is_dask(X):
            mean = self._dask_rows(X, None, "predict")
            if not return_std:
                return mean
            return mean, self._dask_rows(X, None, "predict_std")
        Xw = self._work_X(X)
        mean, second = np.empty(Xw.shape[0]), np.empty(Xw.shape[0])
        for rows in self._row_blocks(Xw.shape[0]):
            logw, mu, sd = self._components(Xw[rows])
            w = np.exp(logw.values)
            mean[rows] = (w * mu.values).sum(axis=-1).mean(axis=(0, 1))
            if return_std:
                sq = _per_obs(sd, mu).values ** 2 + mu.values**2
                second[rows] = (w * sq).sum(axis=-1).mean(axis=(0, 1))
        out = self.standardizer_.inverse_y(mean)
        if not return_std:
            return out
        var = np.maximum(second - mean**2, 0.0)
        return out, np.sqrt(var) * self.standardizer_.y_scale

    def _row_blocks(self, n: int) -> list[slice]:
        """Row blocks whose (draws x rows x experts) temporaries stay near
        ``PREDICT_BLOCK_BYTES``: predictions of many rows never hold all draws of all rows
        (at 1e5 rows, 4000 draws and 2 experts one such array is 6.4 GB)."""
        post = self._working_posterior()
        draws = post.sizes.get("chain", 1) * post.sizes.get("draw", 1)
        experts = len(self.model_.coords.get("expert", [0]))
        step = max(1, PREDICT_BLOCK_BYTES // (8 * draws * experts))
        return [slice(i, min(i + step, n)) for i in range(0, max(n, 1), step)]

    def log_predictive_density(self, X, y=None) -> float:
        r"""Held-out log pointwise predictive density, summed over rows.

        :math:`\sum_i \log \frac1S \sum_s p(y_i \mid \theta_s)`, computed with
        log-sum-exp on the original scale of ``y``. For a dask ``X`` (``y`` the name of its
        target column) a lazy dask scalar.
        """
        if _is_dask(X):
            return self.pointwise_log_predictive_density(X, y).sum()
        return float(np.sum(self.pointwise_log_predictive_density(X, y)))

    def pointwise_log_predictive_density(self, X, y=None) -> np.ndarray:
        r"""Held-out :math:`\log \frac1S \sum_s p(y_i \mid \theta_s)` per row, shape (n,).

        For a dask DataFrame ``X`` with its target column named by ``y``: a lazy dask
        Series, computed partition by partition.
        """
        if _is_dask(X):
            return self._dask_rows(X, y, "pointwise_log_predictive_density")
        Xw = self._work_X(X)
        yv = validate_target(self._target(X, y), Xw.shape[0], name="y")
        yw = self.standardizer_.transform_y(yv)
        out = np.empty(Xw.shape[0])
        for rows in self._row_blocks(Xw.shape[0]):
            ll = self._pointwise_loglik(Xw[rows], yw[rows]).values
            S = ll.shape[0] * ll.shape[1]
            out[rows] = logsumexp_first(ll.reshape(S, -1)) - np.log(S)
        return out - np.log(self.standardizer_.y_scale)  # Jacobian of the standardisation

    def _joint(self, Xw, yw) -> xr.DataArray:
        r""":math:`\log \pi_k + \log N(y_i \mid \mu_{ik}, \sigma_k)`, working scale."""
        logw, mu, sd = self._components(Xw)
        sd_ = _per_obs(sd, mu).values
        z = (np.asarray(yw)[None, None, :, None] - mu.values) / sd_
        return logw.copy(data=logw.values - 0.5 * z**2 - np.log(sd_) - 0.5 * np.log(2 * np.pi))

    def _pointwise_loglik(self, Xw, yw) -> xr.DataArray:
        joint = self._joint(Xw, yw)
        return xr.DataArray(
            logsumexp_last(joint.values), dims=joint.dims[:-1], coords=_sample_coords(joint)
        )

    # ------------------------------------------------------------------ reporting
    def summary(self, **kwargs) -> pd.DataFrame:
        """ArviZ summary of the model's parameters on the user's scale.

        Coefficients are those of the raw features (see ``posterior`` and
        :mod:`bayesmoe.numerics.rescale`); ``var_names`` and the other keyword arguments
        go to :func:`arviz.summary`. The sampled working-scale draws are in
        ``idata_["posterior_working"]``.
        """
        check_is_fitted(self, "idata_")
        names = kwargs.pop("var_names", None) or self._summary_vars()
        kwargs.setdefault("round_to", "none")
        # One variable at a time: ArviZ 1.3 mislabels the rows of a variable whose dims
        # appear in another order in an earlier variable (e.g. sigma[expert] before
        # gate_probability_grid[grid, expert]).
        names = [names] if isinstance(names, str) else list(names)
        return pd.concat([az.summary(self.idata_, var_names=[n], **kwargs) for n in names])

    def check(self, loo: bool | None = None) -> Diagnostics:
        """Diagnostics report of the fit: R-hat, bulk ESS, divergences, BFMI, Pareto k.

        ``loo`` (default: whenever the pointwise log-likelihood is stored) adds the Pareto
        k of PSIS-LOO. ``report.ok`` is False if any check fails its threshold (the
        constants of :mod:`bayesmoe.fitting`); ``print(report)`` shows the table and
        ``report.to_frame()`` returns it.
        """
        check_is_fitted(self, "idata_")
        if loo is None:
            loo = "log_likelihood" in self.idata_.children
        if not isinstance(loo, bool | np.bool_):
            raise TypeError(f"loo must be True, False or None, got {loo!r}")
        return self._diagnose(bool(loo))

    def _diagnose(self, loo: bool) -> Diagnostics:
        return diagnose(self.working_view(), var_names=self._summary_vars(), loo=loo)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted estimator to one netCDF file, atomically.

        The file holds the DataTree (posterior draws bit for bit), the settings and the
        standardisation, plus the bayesmoe/PyMC/ArviZ versions. It is written to a
        temporary file in the same folder and renamed, so a crash never leaves a
        half-written file under ``path``.
        """
        check_is_fitted(self, "idata_")
        path = _as_path(path)
        if path.exists() and path.is_dir():
            raise OSError(f"path {str(path)!r} is a directory; give a file name")
        if not path.parent.exists():
            raise OSError(f"path {str(path)!r}: folder {str(path.parent)!r} does not exist")
        tree = self._saved_tree()
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as err:  # read-only folder, a file where a folder should be, ...
            raise OSError(f"path {str(path)!r} cannot be written: {err}") from err
        os.close(fd)
        try:
            tree.to_netcdf(tmp, engine="h5netcdf")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def _saved_tree(self) -> xr.DataTree:
        """What ``save`` writes: the fit plus everything needed to rebuild the estimator."""
        tree = _storable(self.idata_)
        if "loo_approximation" in tree.children:  # a streamed fit's is lazy: one more pass
            from bayesmoe.streaming import computed, is_dask

            approx = tree["loo_approximation"].to_dataset()
            if is_dask(approx["y"].data):
                tree["loo_approximation"] = approx.copy(data={"y": computed(approx["y"].data)})
        tree.attrs.update(
            bayesmoe_format=_FORMAT_VERSION,
            bayesmoe_estimator=type(self).__name__,
            bayesmoe_params=json.dumps(self._params_json()),
            bayesmoe_standardizer=json.dumps(self.standardizer_.to_dict()),
            bayesmoe_feature_names=json.dumps([str(c) for c in self.feature_names_in_]),
            **_versions(),
        )
        if getattr(self, "formula_design_", None) is not None:
            tree.attrs["bayesmoe_formula_design"] = json.dumps(self.formula_design_.to_dict())
        return tree

    def _params_json(self) -> dict:
        params = self.get_params(deep=False)
        params["priors"] = priors_to_json(params.get("priors"))
        return params

    @classmethod
    def _from_saved(cls, tree: xr.DataTree) -> BayesianRegressor:
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


class InteractionRegression(BayesianRegressor):
    r"""Linear regression with base effects, pairwise interactions and learned prior scales.

    .. math::

        y_i &\sim N\Big(b_0 + \sum_j w_j x_{ij}
              + \sum_{(a,b)} v_{ab}\, x_{ia} x_{ib},\ \sigma^2\Big) \\
        w_j &\sim N(0, \tau_\text{base}^2), \quad v_{ab} \sim N(0, \tau_\text{int}^2), \quad
        \tau_\text{base}, \tau_\text{int} \sim \text{hyperprior}

    The two prior scales are learned, so the model can act like the base-effects model
    on little data (small :math:`\tau_\text{int}`) and like the full interaction model on
    a lot. By default NUTS runs on the collapsed form (weights integrated out, cost per
    gradient independent of n) and the weights are then drawn exactly; see
    :func:`bayesmoe.builders.interaction_regression`.

    Parameters
    ----------
    formula : str, optional
        A Wilkinson formula (formulaic, as in Bambi), e.g. ``"y ~ (a + b + c)**2"`` or
        ``"y ~ x1 * g"``; then ``fit(data)`` takes the data frame alone and ``predict``
        applies the same coding to new frames. Categorical columns become treatment
        (reduced-rank) dummies named as formulaic names them (``g[T.b]``); main effects
        form the base group, pairwise interaction terms the interaction group with its
        own learned scale. An interaction needs both main effects; higher-order terms
        are refused. ``interactions`` must stay at its default.
    interactions : "all", None or sequence of pairs / "a:b" names
        Interactions to include; ``None`` gives the base-effects model.
    prior : {"half_cauchy", "gamma", "half_normal", "fixed", "horseshoe", "r2d2"}
        Hyperprior family of the two scales (gamma: on the precisions :math:`\tau^{-2}`),
        or a local-global prior that keeps the two groups: the regularised horseshoe (a
        global scale per group, a local scale per weight, a shared slab) or R2-D2 (a prior
        on :math:`R^2` split over the groups, then within them); see
        :func:`bayesmoe.priors.interaction_defaults` for the math and defaults.
    base_scale, interaction_scale : float, optional
        Prior standard deviations when ``prior="fixed"`` (the seed's fixed-prior model).
    priors : dict, optional
        Overrides keyed by variable name: ``intercept``, ``beta_base``, ``beta_interaction``,
        ``tau_base``, ``tau_interaction`` (``lambda_base``, ``lambda_interaction`` for
        gamma), ``sigma``; for the horseshoe also ``lambda_local_base``,
        ``lambda_local_interaction``, ``c2`` (with ``dims="scale_group"``: a slab per
        group); for R2-D2 ``r2``, ``phi``, ``phi_base``, ``phi_interaction``. Values are
        :class:`pymc_extras.prior.Prior` or numbers (fixed), checked before anything is
        built (support, parameters, dims: a prior without dims is broadcast over the
        variable's elements).
    standardize : bool, default True
        Centre and scale each feature and ``y`` before modelling (interactions are formed
        from the standardised features; default priors are set on that scale). The
        ``posterior`` group, ``summary()``, ``coef_`` and predictions are always on the
        user's scale; the sampled standardised draws are in ``posterior_working``.
    collapsed : bool or "auto", default "auto"
        Sample the collapsed form (weights integrated out); "auto" does so whenever the
        weight priors are Normal/Flat.
    centered : bool, default False
        Per-row form only: centred instead of non-centred weights under a learned scale
        (better when the data identify the weights strongly, e.g. large n).
    method : {"nuts", "advi", "fullrank_advi"}
    sampler : {"auto", "nutpie", "pymc", "numpyro"}
        ``"auto"`` (default): per model the NUTS implementation measured fastest to a
        converged fit in a fresh process (``bayesmoe.fitting.AUTO_SAMPLERS``,
        ``docs/first_fit/``).
    draws, tune, chains : int
    random_seed : int, optional
    progressbar : bool
    log_likelihood : {"auto", True, False}
        Store the pointwise log-likelihood for LOO/WAIC. ``"auto"`` (default): every row
        while it is small (``bayesmoe.fitting.LOG_LIKELIHOOD_AUTO_BYTES``), else a row
        subsample that :func:`bayesmoe.compare` uses through subsampled PSIS-LOO, with its
        subsampling SE; the choice is named in a warning and in
        ``idata_.attrs["bayesmoe_log_likelihood"]``. See :func:`bayesmoe.fit`.
    fit_kwargs : dict, optional
        Passed to :func:`bayesmoe.fit` (e.g. ``target_accept``, ``advi_iterations``).

    Attributes
    ----------
    model_ : pymc.Model
    idata_ : xarray.DataTree
        ``posterior`` on the user's scale: ``intercept``, ``beta_base`` (per feature),
        ``beta_interaction`` (per raw product ``a:b``), ``sigma``, plus the prior scales
        ``tau_*`` of the standardised weights; ``posterior_working``: the sampled draws.
    coef_ : ndarray of shape (n_features + n_interactions,)
        Posterior means of ``beta_base`` then ``beta_interaction``, user's scale
        (names in ``coef_names_``).
    intercept_ : float
        Posterior mean of ``intercept``, user's scale.
    coef_names_ : ndarray of str
    feature_names_in_ : ndarray of str
    standardizer_ : bayesmoe.data.Standardizer
    """

    def __init__(
        self,
        *,
        formula: str | None = None,
        interactions="all",
        prior: str = "half_cauchy",
        base_scale: float | None = None,
        interaction_scale: float | None = None,
        priors: dict | None = None,
        standardize: bool = True,
        collapsed: bool | str = "auto",
        centered: bool = False,
        method: str = "nuts",
        sampler: str = "auto",
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        random_seed: int | None = None,
        progressbar: bool = True,
        log_likelihood: bool | str = "auto",
        fit_kwargs: dict | None = None,
    ):
        self.formula = formula
        self.interactions = interactions
        self.prior = prior
        self.base_scale = base_scale
        self.interaction_scale = interaction_scale
        self.priors = priors
        self.standardize = standardize
        self.collapsed = collapsed
        self.centered = centered
        self.method = method
        self.sampler = sampler
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.random_seed = random_seed
        self.progressbar = progressbar
        self.log_likelihood = log_likelihood
        self.fit_kwargs = fit_kwargs

    def _build(self, Xw: pd.DataFrame, yw: np.ndarray, collapsed=None) -> pm.Model:
        return interaction_regression(
            Xw,
            yw,
            interactions=self._design_interactions(),
            prior=self.prior,
            base_scale=self.base_scale,
            interaction_scale=self.interaction_scale,
            priors=self.priors,
            collapsed=self.collapsed if collapsed is None else collapsed,
            centered=self.centered,
        )

    def _components(self, Xw: np.ndarray):
        spec = self.model_.bayesmoe_spec
        post = self._working_posterior()
        mu = spec.linear_predictor(post, Xw).expand_dims(expert=1, axis=-1)
        sd = spec.noise_sd(post) * xr.ones_like(post["chain"] + post["draw"], dtype=float)
        return xr.zeros_like(mu), mu, sd.expand_dims(expert=1, axis=-1)

    _coef_vars = ("beta_base", "beta_interaction")
    _formula_decides: ClassVar[dict] = {"interactions": "all"}

    def _fit_streamed(self, X, y, *, strict: bool, client) -> InteractionRegression:
        r"""Fit a dask DataFrame in one validated pass over its partitions.

        The collapsed model needs only the sufficient statistics of the standardised design
        (:mod:`bayesmoe.numerics.suffstats`, combined pairwise across partitions on a
        ``dask.distributed`` client, :func:`bayesmoe.streaming.design_pass`), so memory does
        not grow with the number of rows and the posterior is the one the rows in memory
        would give. The same pass draws a uniform sample of
        ``bayesmoe.fitting.LOO_SUBSAMPLE_ROWS`` rows: the model's ``observed_data`` /
        ``constant_data`` and the rows of the pointwise log-likelihood (subsampled LOO).
        """
        from bayesmoe import streaming
        from bayesmoe.data import resolve_interactions
        from bayesmoe.fitting import LOO_SUBSAMPLE_ROWS

        if self.collapsed is False:
            raise ValueError(
                "collapsed=False needs every row in memory; a dask input is fitted in the "
                "collapsed form (collapsed='auto' or True)"
            )
        start = time.perf_counter()
        with streaming.dask_client(client) as c:  # one cluster for the levels and the pass
            frame, target, features = self._streamed_columns(X, y, c)
            pairs, _ = resolve_interactions(features, self._design_interactions())
            moments, sample = streaming.design_pass(
                frame, features, target, pairs, sample_rows=LOO_SUBSAMPLE_ROWS, client=c
            )
        self.__dict__.pop("moments_", None)  # a full fit starts the statistics afresh
        stream = (frame, features, target)
        return self._fit_from_moments(moments, sample, features, pairs, strict, start, stream)

    def partial_fit(self, X, y, *, strict: bool = False) -> InteractionRegression:
        """Add a chunk of rows to the sufficient statistics and refit the posterior.

        The statistics of every chunk seen so far are combined exactly as the partitions
        of a streamed fit (:mod:`bayesmoe.numerics.suffstats`), so after the last chunk the
        fit equals ``fit`` on all rows (the standardisation uses all rows seen). Each call
        samples the posterior of the data so far (a few seconds: the collapsed model's
        cost does not grow with n). A uniform sample of the rows seen is kept for the
        pointwise log-likelihood. Call ``fit`` to start afresh.
        """
        from bayesmoe.data import resolve_interactions
        from bayesmoe.fitting import LOO_SUBSAMPLE_ROWS
        from bayesmoe.numerics.rowsample import chunk_sample, merge_samples, sample_rng
        from bayesmoe.numerics.suffstats import chunk_moments, combine

        self._check_settings()
        if self.formula is not None or self.collapsed is False:
            raise ValueError("partial_fit needs the collapsed form and no formula")
        self.__dict__.pop("formula_design_", None)
        start = time.perf_counter()
        Xv, names = validate_features(X, name="X", min_rows=1)
        yv = validate_target(y, Xv.shape[0], name="y")
        pairs, _ = resolve_interactions(names, self.interactions)
        # the chunk's fixed stream, as a streamed fit's partitions: the same rows, in order
        chunks = getattr(self, "_chunks", 0) if getattr(self, "moments_", None) is not None else 0
        part = chunk_sample(Xv, yv, LOO_SUBSAMPLE_ROWS, sample_rng(chunks))
        if getattr(self, "moments_", None) is None:
            self.moments_ = chunk_moments(Xv, yv, pairs)
            self._row_sample, self._chunks, self._partial_names = part, 1, names
        else:
            if names != self._partial_names:
                raise ValueError(
                    f"X columns {names} differ from the first chunk's {self._partial_names}"
                )
            # each chunk centred at its own first rows; combine moves it to the first's
            self.moments_ = combine(self.moments_, chunk_moments(Xv, yv, pairs))
            self._row_sample = merge_samples(self._row_sample, part, LOO_SUBSAMPLE_ROWS)
            self._chunks += 1
        return self._fit_from_moments(
            self.moments_, self._row_sample, names, pairs, bool(strict), start
        )

    def _fit_from_moments(self, moments, sample, features, pairs, strict, start, stream=None):
        """Standardise, build from the statistics and sample (streamed and partial fits)."""
        from bayesmoe.builders.interaction import interaction_regression_from_statistics

        if moments.n < 2:
            raise ValueError(f"X has {moments.n} rows; at least 2 are needed")
        const = [f for f, v in zip(features, np.diag(moments.comoment), strict=False) if v == 0]
        if const:
            warnings.warn(
                f"X has constant columns {const}: their weights are confounded with the "
                "intercept and informed only by the prior",
                UserWarning,
                stacklevel=3,
            )
        stats = self._standardize_from_moments(moments, features)
        Xs = self.standardizer_.transform_X(sample.X)
        self.model_ = interaction_regression_from_statistics(
            stats, features, sample=(Xs, self.standardizer_.transform_y(sample.y)),
            interactions=pairs, prior=self.prior, base_scale=self.base_scale,
            interaction_scale=self.interaction_scale, priors=self.priors,
        )  # fmt: skip
        data_seconds = time.perf_counter() - start
        self.idata_ = self._sample_model(strict=strict)
        self._to_original_scale(sample.y)
        self._posterior_to_user_scale()
        # the statistics the likelihood used: saved with the fit, so load rebuilds this model
        const = self.idata_["constant_data"].to_dataset()
        self.idata_["constant_data"] = const.assign(
            xtx=(("coef", "coef_"), stats["xtx"]),
            xty=("coef", stats["xty"]),
            yty=stats["yty"],
            n_obs=stats["n"],
        )
        self.idata_.attrs.update(
            bayesmoe_estimator=type(self).__name__,
            bayesmoe_data_seconds=data_seconds,
            bayesmoe_streamed=1,
            bayesmoe_n_rows=int(moments.n),
            # observed_data, constant_data and log_likelihood hold a uniform row sample
            bayesmoe_sample_rows=int(sample.y.size),
        )
        self._record_sample(sample, moments.n, stream)
        return self

    def _build_from_saved_statistics(self, tree, Xs, ys) -> pm.Model:
        """The statistics-based model of a saved streamed fit (its row sample as ``obs``)."""
        from bayesmoe.builders.interaction import interaction_regression_from_statistics

        const = tree["constant_data"]
        stats = {k: const[k].values for k in ("xtx", "xty", "yty", "n_obs")}
        stats["n"] = stats.pop("n_obs")
        return interaction_regression_from_statistics(
            stats, list(self.feature_names_in_), sample=(Xs, ys),
            interactions=self._design_interactions(), prior=self.prior,
            base_scale=self.base_scale, interaction_scale=self.interaction_scale,
            priors=self.priors,
        )  # fmt: skip

    def _summary_vars(self) -> list[str]:
        post = self.idata_["posterior"]
        names = ["intercept", "beta_base", "beta_interaction", "tau_base", "tau_interaction"]
        names += ["lambda_base", "lambda_interaction", "sigma"]
        return [n for n in names if n in post.data_vars]

    def sample_prior_predictive(self, X, y, draws: int = 500) -> xr.DataTree:
        """Prior and prior predictive draws (original scale of ``y`` in ``prior_predictive``).

        The default priors depend on the spread of ``y``, so ``y`` is needed; only its
        mean and sd are used. Uses the per-row form of the model (the collapsed form has
        no generative ``y``).
        """
        Xv, names = validate_features(X, name="X")
        yv = validate_target(y, Xv.shape[0], name="y")
        std = Standardizer.fit(Xv, yv, enabled=self.standardize)
        model = self._build(
            pd.DataFrame(std.transform_X(Xv), columns=names), std.transform_y(yv), collapsed=False
        )
        with model:
            prior = pm.sample_prior_predictive(draws=draws, random_seed=self.random_seed)
        pp = prior["prior_predictive"].to_dataset()
        prior["prior_predictive"] = pp.assign(y=std.inverse_y(pp["y"]))
        # the prior on the user's scale, as the posterior of a fit (working draws kept)
        working = prior["prior"].to_dataset()
        prior["prior"] = model.bayesmoe_spec.to_user_scale(working, std)
        prior["prior_working"] = working
        prior["observed_data"] = xr.Dataset({"y": ("obs", yv)})
        return prior


class _MixtureEstimator(BayesianRegressor):
    """Shared predictions of the mixture estimators: gate, responsibilities, experts."""

    _formula_decides: ClassVar[dict] = {"interactions": None}

    def _components(self, Xw: np.ndarray):
        spec = self.model_.bayesmoe_spec
        post = self._working_posterior()
        return (
            spec.log_weights(post, Xw),
            spec.component_means(post, Xw),
            spec.component_sd(post),
        )

    _coef_vars = ("beta", "beta_interaction")

    def _summary_vars(self) -> list[str]:
        post = self.idata_["posterior"]
        return [n for n in self.model_.bayesmoe_spec.identified_vars if n in post.data_vars]

    def component_diagnosis(self):
        r"""Which components the data support: emptied and coinciding ones (issue 20).

        For every posterior draw on the training rows, the fewest components that fit
        them as well: a component is dropped, or two merged into one normal, while the
        log-likelihood lost is below the component's parameter count (Akaike's
        criterion); the count left, :math:`K_+`, does not depend on labels. The
        reductions most draws take are named, with the occupancy
        :math:`\bar\pi_k = E[\frac1n \sum_i \pi_k(x_i)]` and the Bhattacharyya overlap
        of the predictive normals :math:`N(\mu_k(x_i), \sigma_k^2)`; see
        :mod:`bayesmoe.numerics.components`.

        Returns
        -------
        bayesmoe.numerics.components.ComponentDiagnosis
            ``.supported`` is the range of K the fit itself supports, ``.message()`` the
            sentence that :meth:`check` and the fit's warning show.
        """
        check_is_fitted(self, "idata_")
        spec = self.model_.bayesmoe_spec
        return spec.component_diagnosis(
            self._working_posterior(),
            self.model_["X_base"].get_value(),
            n_rows=self.idata_.attrs.get("bayesmoe_n_rows"),
        )

    def check(self, loo: bool | None = None) -> Diagnostics:
        """Diagnostics report of the fit, with the emptied/coinciding components named.

        As :meth:`BayesianRegressor.check`; for K >= 2 the report's ``components`` holds
        the sentence of :meth:`component_diagnosis` ('' when every component is occupied
        and distinct), which ``print(report)`` and ``report.message()`` show. When fewer
        components fit as well, the components are not identified: R-hat and ESS are
        then those of the mixture density (``report.identified`` says so; the components'
        own max R-hat is ``report.component_max_rhat``), as in the fit's own diagnostics
        (:func:`bayesmoe.fitting.model_diagnostics`).
        """
        return super().check(loo)

    def _diagnose(self, loo: bool) -> Diagnostics:
        return model_diagnostics(
            self.working_view(),
            self.model_,
            loo=loo,
            n_rows=self.idata_.attrs.get("bayesmoe_n_rows"),
        )

    #: rows of the uniform sample a streamed fit builds its model on: the variational
    #: EM's screening sample and the rows of the pointwise log-likelihood
    STREAM_SAMPLE_ROWS = 5000

    def _fit_streamed(self, X, y, *, strict: bool, client) -> _MixtureEstimator:
        r"""Fit a dask DataFrame by variational EM streamed over its partitions.

        One validated pass (:func:`bayesmoe.streaming.design_pass`) gives the
        standardisation and a uniform sample of ``STREAM_SAMPLE_ROWS`` rows; the model is
        built on that sample (its MAP-EM start, the starts' screening, ``observed_data``
        and the pointwise log-likelihood), and the variational EM then runs its E- and
        M-steps as map-reduce over all partitions on a ``dask.distributed`` client
        (:class:`bayesmoe.streaming.PartitionRows`): the same iterations as in memory.
        Only ``method="vem"`` streams; NUTS and ADVI need the rows in memory.
        """
        from bayesmoe import streaming

        if self.method != "vem":
            raise ValueError(
                f"method={self.method!r} needs every row in memory; a dask input is fitted "
                "by method='vem' (variational EM streamed over the partitions), or pass a "
                "sample (X.sample(frac=...).compute()) for NUTS"
            )
        start = time.perf_counter()
        with streaming.dask_client(client) as c:
            frame, target, features = self._streamed_columns(X, y, c)
            moments, sample = streaming.design_pass(
                frame, features, target, [], sample_rows=self.STREAM_SAMPLE_ROWS, client=c
            )
            if moments.n < 2:
                raise ValueError(f"X has {moments.n} rows; at least 2 are needed")
            stats = self._standardize_from_moments(moments, features)
            Xw = pd.DataFrame(self.standardizer_.transform_X(sample.X), columns=features)
            # the default priors from all rows' moments of y, not the sample's
            y_moments = (
                (stats["y_location"] - self.standardizer_.y_mean) / self.standardizer_.y_scale,
                stats["y_spread"] / self.standardizer_.y_scale,
            )
            self.model_ = self._build(
                Xw, self.standardizer_.transform_y(sample.y), y_moments=y_moments
            )
            design = self.model_.bayesmoe_spec.working_design(self.standardizer_)
            rows = streaming.PartitionRows(
                frame, features, target, design, client=c, n_rows=moments.n
            )
            data_seconds = time.perf_counter() - start
            try:
                self.idata_ = self._sample_model(
                    strict=strict, rows=rows, log_likelihood=self._stream_log_likelihood(sample)
                )
            finally:
                rows.close()
        self._to_original_scale(sample.y)
        self._posterior_to_user_scale()
        self.idata_.attrs.update(
            bayesmoe_estimator=type(self).__name__,
            bayesmoe_data_seconds=data_seconds,
            bayesmoe_streamed=1,
            bayesmoe_n_rows=int(moments.n),
            # observed_data, constant_data and log_likelihood hold a uniform row sample
            bayesmoe_sample_rows=int(sample.y.size),
            bayesmoe_vem_persisted=int(rows.persisted),
        )
        self._record_sample(sample, moments.n, stream=(frame, features, target))
        return self

    def predict_proba(self, X, return_draws: bool = False):
        r"""Mixing probabilities :math:`\pi(x)` at ``X``, shape (n, K).

        The posterior mean, or with ``return_draws=True`` the draws as a DataArray with
        dims (chain, draw, obs, expert). For :class:`MixtureRegression` the weights do not
        depend on x, so every row is the same Dirichlet weight vector. Stored as
        ``idata_["predictions"]["gate_probability"]``.
        """
        raw = self._raw(X)
        logw, _, _ = self._components(self.standardizer_.transform_X(raw))
        draws = np.exp(logw).assign_coords(expert=list(self.model_.coords["expert"]))
        self._store_predictions(raw, gate_probability=draws)
        if return_draws:
            return draws.assign_coords(obs=np.arange(raw.shape[0]))
        return draws.mean(SAMPLE_DIMS).values

    def responsibilities(self, X, y=None) -> np.ndarray:
        r"""Posterior probability that row i came from expert k, shape (n, K).

        :math:`E_\theta\big[p(z_i = k \mid x_i, y_i, \theta)\big]`, with
        :math:`p(z_i = k \mid x_i, y_i, \theta) \propto \pi_k(x_i) N(y_i \mid \mu_{ik},
        \sigma_k^2)`, for training rows or new labelled rows. Stored (posterior mean, dims
        obs, expert) as ``idata_["predictions"]["responsibilities"]``.
        """
        raw = self._raw(X)
        yv = validate_target(self._target(X, y), raw.shape[0], name="y")
        joint = self._joint(
            self.standardizer_.transform_X(raw), self.standardizer_.transform_y(yv)
        )
        log_r = log_softmax_last(joint.values)
        mean = np.exp(log_r).mean(axis=(0, 1))
        self._store_predictions(
            raw,
            responsibilities=xr.DataArray(
                mean, dims=("obs", "expert"), coords={"expert": list(self.model_.coords["expert"])}
            ),
        )
        return mean

    def expert_predictions(self, X) -> xr.DataArray:
        """Each expert's mean prediction at ``X``, dims (chain, draw, obs, expert).

        On the original scale of ``y``; stored as ``idata_["predictions"]["expert_mean"]``.
        """
        raw = self._raw(X)
        _, mu, _ = self._components(self.standardizer_.transform_X(raw))
        mu = self.standardizer_.inverse_y(mu).assign_coords(
            expert=list(self.model_.coords["expert"])
        )
        self._store_predictions(raw, expert_mean=mu.rename("expert_mean"))
        return mu.assign_coords(obs=np.arange(raw.shape[0]))


class MixtureRegression(_MixtureEstimator):
    r"""Finite mixture of regressions with Dirichlet mixing weights.

    .. math::

        y_i &\sim \sum_{k=1}^K \pi_k\, N(b_k + w_k^\top x_i, \sigma_k^2), \qquad
        \pi \sim \mathrm{Dirichlet}(\alpha 1_K) \\
        w_k &\sim N(0, \tau_\text{base}^2 I), \quad
        \tau_\text{base} \sim \text{hyperprior}, \quad
        b_k \sim N(\bar y, (2.5 s_y)^2), \quad \sigma_k \sim \mathrm{HalfNormal}(s_y)

    The assignments are summed out (``pm.NormalMixture``). With no features (``X=None``
    or zero columns) it is a plain Gaussian mixture. Every expert may be an interaction
    regression (``interactions=``), sharing the learned scales across experts. The
    identifiability defaults (one EM start for all chains, intercept ordering where the
    intercepts are separated, post-hoc relabelling) are described in
    :mod:`bayesmoe.builders.mixture`.

    Parameters
    ----------
    formula : str, optional
        The experts' formula, e.g. ``"y ~ x1 + x2"`` (see :class:`InteractionRegression`);
        ``fit(data)`` then takes the data frame alone.
    n_components : int
        K, from 1 to the number of rows.
    alpha : float
        Dirichlet concentration; the default 0.1 (sparse: unneeded components empty, so a
        K larger than the data support still converges on the identified quantities;
        measured in ``bayesmoe.builders.mixture.DEFAULT_ALPHA``). ``alpha=1`` is uniform.
    interactions, prior, base_scale, interaction_scale
        As in :class:`InteractionRegression`, for every expert.
    priors : dict, optional
        Overrides: ``intercept``, ``beta``, ``beta_interaction``, ``tau_*``/``lambda_*``,
        ``sigma``, ``weights`` (Prior objects, or numbers for scales).
    shared_noise : bool
        One noise sd for all components.
    order_by : {"auto", "intercept", None}
        Ordering constraint on the intercepts (see :func:`bayesmoe.mixture_regression`).
    standardize, centered, method, sampler, draws, tune, chains, random_seed,
    progressbar, log_likelihood, fit_kwargs
        As in :class:`InteractionRegression`.

    Attributes
    ----------
    idata_ : xarray.DataTree
        ``posterior`` on the user's scale (per expert: ``intercept``, ``beta``,
        ``beta_interaction``, ``sigma``; ``weights``), ``posterior_working`` the sampled
        draws.
    coef_ : ndarray of shape (n_components, n_expert_features + n_interactions)
        Posterior means of each expert's weights, user's scale (names in ``coef_names_``).
    intercept_ : ndarray of shape (n_components,)
    model_, feature_names_in_, standardizer_
        As in :class:`InteractionRegression`.
    """

    def __init__(
        self,
        *,
        formula: str | None = None,
        n_components: int = 2,
        alpha: float = DEFAULT_ALPHA,
        interactions=None,
        prior: str = "half_cauchy",
        base_scale: float | None = None,
        interaction_scale: float | None = None,
        priors: dict | None = None,
        shared_noise: bool = False,
        order_by: str | None = "auto",
        standardize: bool = True,
        centered: bool = True,
        method: str = "nuts",
        sampler: str = "auto",
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        random_seed: int | None = None,
        progressbar: bool = True,
        log_likelihood: bool | str = "auto",
        fit_kwargs: dict | None = None,
    ):
        self.formula = formula
        self.n_components = n_components
        self.alpha = alpha
        self.interactions = interactions
        self.prior = prior
        self.base_scale = base_scale
        self.interaction_scale = interaction_scale
        self.priors = priors
        self.shared_noise = shared_noise
        self.order_by = order_by
        self.standardize = standardize
        self.centered = centered
        self.method = method
        self.sampler = sampler
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.random_seed = random_seed
        self.progressbar = progressbar
        self.log_likelihood = log_likelihood
        self.fit_kwargs = fit_kwargs

    _allows_no_features = True

    def _build(self, Xw: pd.DataFrame, yw: np.ndarray, **extra) -> pm.Model:
        return mixture_regression(
            Xw,
            yw,
            **extra,
            n_components=self.n_components,
            alpha=self.alpha,
            interactions=self._design_interactions(),
            prior=self.prior,
            base_scale=self.base_scale,
            interaction_scale=self.interaction_scale,
            priors=self.priors,
            shared_noise=self.shared_noise,
            order_by=self.order_by,
            centered=self.centered,
            random_seed=self.random_seed,
        )


class GatedExperts(_MixtureEstimator):
    r"""Mixture of experts whose mixing weights depend on x through a softmax gate.

    .. math::

        y_i &\sim \sum_{k=1}^K \pi_k(x_i)\, N(b_k + w_k^\top x_i, \sigma_k^2), \qquad
        \pi(x) = \mathrm{softmax}(\eta(x)),\ \eta_K(x) = 0 \\
        \eta_k(x) &= c_k + V_k^\top x \quad (\texttt{gate="linear"}), \qquad
        \eta_k(x) = c_k + V_k^\top \tanh(W^\top x + a) \quad (\texttt{gate="mlp"})

    with expert priors as in :class:`MixtureRegression` and gate parameters
    :math:`c, V \sim N(0, 2.5^2)`, :math:`W, a \sim N(0, 1)` (standardised features).
    The last expert is the reference of the gate. Expert and gate may see different
    columns (``expert_features``, ``gate_features``).

    Parameters
    ----------
    formula : str, optional
        The experts' formula, e.g. ``"y ~ x1 + x2"`` (see :class:`InteractionRegression`).
    gate_formula : str, optional
        The gate's inputs as a one-sided formula, e.g. ``"~ x1"`` (main effects only);
        default: the experts' columns. ``from_formula`` also takes it as ``gate="~ x1"``.
    n_experts : int
        K, from 1 to the number of rows.
    gate : {"linear", "mlp"}
    gate_hidden : int, optional
        Hidden units of the mlp gate (required for ``gate="mlp"``).
    expert_features, gate_features : list of column names or indices, optional
        Columns seen by the experts and by the gate (default: all).
    interactions, prior, base_scale, interaction_scale, shared_noise, standardize,
    centered, method, sampler, draws, tune, chains, random_seed, progressbar,
    log_likelihood, fit_kwargs
        As in :class:`MixtureRegression`.
    priors : dict, optional
        Overrides: expert keys as in :class:`MixtureRegression` (no ``weights``) plus
        ``gate_intercept``, ``gate_weights``, ``gate_hidden_weights``, ``gate_hidden_bias``.

    Attributes
    ----------
    idata_ : xarray.DataTree
        ``posterior`` on the user's scale: experts as in :class:`MixtureRegression`; the
        gate's input layer (``gate_intercept``/``gate_weights`` of the linear gate,
        ``gate_hidden_bias``/``gate_hidden_weights`` of the mlp) in the raw gate features.
        ``posterior_working`` holds the sampled draws.
    coef_, intercept_, coef_names_, model_, feature_names_in_, standardizer_
        As in :class:`MixtureRegression`.
    """

    def __init__(
        self,
        *,
        formula: str | None = None,
        gate_formula: str | None = None,
        n_experts: int = 2,
        gate: str = "linear",
        gate_hidden: int | None = None,
        expert_features=None,
        gate_features=None,
        interactions=None,
        prior: str = "half_cauchy",
        base_scale: float | None = None,
        interaction_scale: float | None = None,
        priors: dict | None = None,
        shared_noise: bool = False,
        standardize: bool = True,
        centered: bool = True,
        method: str = "nuts",
        sampler: str = "auto",
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        random_seed: int | None = None,
        progressbar: bool = True,
        log_likelihood: bool | str = "auto",
        fit_kwargs: dict | None = None,
    ):
        self.formula = formula
        self.gate_formula = gate_formula
        self.n_experts = n_experts
        self.gate = gate
        self.gate_hidden = gate_hidden
        self.expert_features = expert_features
        self.gate_features = gate_features
        self.interactions = interactions
        self.prior = prior
        self.base_scale = base_scale
        self.interaction_scale = interaction_scale
        self.priors = priors
        self.shared_noise = shared_noise
        self.standardize = standardize
        self.centered = centered
        self.method = method
        self.sampler = sampler
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.random_seed = random_seed
        self.progressbar = progressbar
        self.log_likelihood = log_likelihood
        self.fit_kwargs = fit_kwargs

    _formula_decides: ClassVar[dict] = {
        "interactions": None,
        "expert_features": None,
        "gate_features": None,
    }

    @classmethod
    def from_formula(cls, formula: str, data: pd.DataFrame, **params) -> GatedExperts:
        """Fit from formulas: ``GatedExperts.from_formula("y ~ x1 + x2", df, gate="~ x1")``.

        ``gate`` is the gate's one-sided formula when it contains ``~`` (the same as
        ``gate_formula=``), otherwise the gate type (``"linear"``, ``"mlp"``).
        """
        gate = params.get("gate")
        if isinstance(gate, str) and "~" in gate:
            if params.get("gate_formula") is not None:
                raise ValueError("give the gate's formula once: gate='~ ...' or gate_formula=")
            params["gate_formula"] = params.pop("gate")
        return cls(formula=formula, **params).fit(data)

    def _formula_columns(self, part: str, chosen):
        """Expert or gate columns: the formula's when there is one, else the setting."""
        design = getattr(self, "formula_design_", None)
        return chosen if design is None else getattr(design, part)

    def _build(self, Xw: pd.DataFrame, yw: np.ndarray, **extra) -> pm.Model:
        return gated_experts(
            Xw,
            yw,
            **extra,
            n_experts=self.n_experts,
            gate=self.gate,
            gate_hidden=self.gate_hidden,
            expert_features=self._formula_columns("columns", self.expert_features),
            gate_features=self._formula_columns("gate_columns", self.gate_features),
            interactions=self._design_interactions(),
            prior=self.prior,
            base_scale=self.base_scale,
            interaction_scale=self.interaction_scale,
            priors=self.priors,
            shared_noise=self.shared_noise,
            centered=self.centered,
            random_seed=self.random_seed,
        )


_ESTIMATORS = {
    "InteractionRegression": InteractionRegression,
    "MixtureRegression": MixtureRegression,
    "GatedExperts": GatedExperts,
}


def _dask_frame_and_target(X, y):
    """A dask frame holding the features and the target, and the target's column name."""
    from bayesmoe.streaming import is_dask

    if not is_dask(X) or not hasattr(X, "columns"):
        raise TypeError(f"with a dask y, X must be a dask DataFrame, got {type(X).__name__}")
    if isinstance(y, str):
        if y not in X.columns:
            raise ValueError(f"y={y!r} is not a column of X; columns are {list(X.columns)}")
        return X, y
    if is_dask(y) and not hasattr(y, "columns"):
        name = str(y.name) if y.name is not None else "y"
        if name in X.columns:
            raise ValueError(f"X already has a column {name!r}; name the target column instead")
        return X.assign(**{name: y}), name
    raise TypeError(
        "with a dask X, y must be the name of its target column or a dask Series, "
        f"got {type(y).__name__}"
    )


def _is_dask(obj) -> bool:
    from bayesmoe.streaming import is_dask

    return is_dask(obj)


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


def _versions() -> dict[str, str]:
    import bayesmoe

    return {
        "bayesmoe_version": bayesmoe.__version__,
        "pymc_version": pm.__version__,
        "arviz_version": az.__version__,
    }


def _storable(tree: xr.DataTree) -> xr.DataTree:
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


def _as_path(path) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def load(path: str | os.PathLike):
    """Load an estimator written by ``save``; warns when library versions differ.

    Raises
    ------
    OSError
        The path does not exist, or the file is truncated, corrupted or not bayesmoe's.
    """
    path = _as_path(path)
    if not path.is_file():
        raise OSError(f"path {str(path)!r} does not exist or is not a file")
    try:
        tree = xr.open_datatree(path, engine="h5netcdf").load()
        tree.close()
    except Exception as err:  # h5py/netCDF errors on a truncated or foreign file
        raise OSError(
            f"{str(path)!r} is not a readable bayesmoe file (truncated or corrupted?): {err}"
        ) from err
    name = tree.attrs.get("bayesmoe_estimator")
    if name not in _ESTIMATORS or "bayesmoe_params" not in tree.attrs:
        raise OSError(f"{str(path)!r} was not written by bayesmoe's save()")
    mismatched = {
        k: (tree.attrs.get(k), v) for k, v in _versions().items() if tree.attrs.get(k) != v
    }
    if mismatched:
        warnings.warn(
            f"{path.name} was saved with other library versions (saved, now): {mismatched}",
            UserWarning,
            stacklevel=2,
        )
    return _ESTIMATORS[name]._from_saved(tree)
