"""``BayesianRegressor``: the contract every bayesmoe estimator keeps.

``__init__`` only stores keyword-only settings; ``fit`` validates, standardises, builds
and fits, and returns ``self``; fitted attributes end in ``_``. Everything the user gets
back is on the original scale of ``y``. Estimators work with :func:`sklearn.base.clone`,
pipelines and :func:`sklearn.model_selection.cross_val_score`.

A subclass provides ``_build(X_work, y_work) -> pm.Model`` and ``_components(X_work)``,
the predictive at each row as a mixture of normals; every prediction, predictive draw and
log density is computed here from ``_components``. The other jobs are mixins, one module
each: the inputs (:mod:`.design`), the user's and the working scale (:mod:`.scale`),
streamed fits (:mod:`.streamed`), predictions over dask partitions (:mod:`.dask`) and
persistence (:mod:`.io`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from bayesmoe.data import Standardizer, validate_target
from bayesmoe.estimators.checks import FitChecks
from bayesmoe.estimators.dask import DaskPredictions, is_dask
from bayesmoe.estimators.design import DesignInputs
from bayesmoe.estimators.io import Persistence
from bayesmoe.estimators.predictive import (
    FamilyPredictions,
    PredictiveChecks,
    draw_from_components,
    per_obs,
)
from bayesmoe.estimators.scale import SAMPLE_DIMS, UserScale
from bayesmoe.estimators.streamed import StreamedFit
from bayesmoe.inference import fit, validate_fit_settings
from bayesmoe.numerics.lse import logsumexp_first, logsumexp_last

__all__ = ["PREDICT_BLOCK_BYTES", "SAMPLE_DIMS", "BayesianRegressor", "per_obs"]

#: Target size of the (draws x rows x experts) temporaries of one block of predictions.
PREDICT_BLOCK_BYTES = 64 * 2**20


def _sample_coords(da: xr.DataArray) -> dict:
    return {d: da[d].values for d in SAMPLE_DIMS if d in da.coords}


class BayesianRegressor(
    DesignInputs,
    FitChecks,
    UserScale,
    StreamedFit,
    DaskPredictions,
    Persistence,
    PredictiveChecks,
    FamilyPredictions,
    RegressorMixin,
    BaseEstimator,
):
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
        standardize = self.get_params(deep=False).get("standardize", True)
        if not isinstance(standardize, bool | np.bool_):
            raise TypeError(f"standardize must be True or False, got {standardize!r}")
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

    def fit(
        self, X, y=None, *, strict: bool = False, client=None, trials=None, exposure=None
    ) -> BayesianRegressor:
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
            threshold (see :func:`bayesmoe.fit`); the estimator then stays as it was
            (unfitted, or with its previous fit).
        client : distributed.Client, optional
            With a dask ``X``: where the pass over the data runs (default: the active
            client, else a ``LocalCluster`` started for the pass and closed after it).
        trials, exposure : array-like of shape (n,) or str, optional
            Binomial trials per row (``family="binomial"``), positive exposure per row
            (``family="poisson"`` / ``"negative_binomial"``, the offset
            :math:`\\log(\\text{exposure})`); with a formula also the name of a column.

        Returns
        -------
        self

        Notes
        -----
        The fit is a transaction: when it raises (invalid settings or data, a sampler
        failure, a ``strict`` diagnostics failure, ``KeyboardInterrupt``), the estimator
        is left exactly as it was, earlier fit included. A successful fit starts a fresh
        ``partial_fit`` stream (see ``partial_fit`` where an estimator has it).
        """
        with self._transaction():
            self._check_settings()
            if not isinstance(strict, bool | np.bool_):
                raise TypeError(f"strict must be True or False, got {strict!r}")
            for name in self._stream_attributes:
                self.__dict__.pop(name, None)
            if is_dask(X) or is_dask(y):
                self._require_gaussian("streamed fits (a dask X)", "a fit of the rows in memory")
                return self._fit_streamed(X, y, strict=bool(strict), client=client)
            if trials is None and exposure is None and self._likelihood().is_gaussian:
                return self._fit_in_memory(X, y, strict=bool(strict))
            return self._fit_in_memory(X, y, strict=bool(strict), extras=(trials, exposure))

    #: fitted attributes of a ``partial_fit`` stream, dropped by ``fit``
    _stream_attributes: tuple[str, ...] = ()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """Run a fit as a transaction: on any exception the estimator is restored.

        The attributes are snapshotted (a shallow copy of ``vars(self)``) and put back
        when the block raises, ``KeyboardInterrupt`` included. A fit only rebinds
        attributes to new objects (it never changes a previous fit's objects in place),
        so the shallow copy restores the previous fit exactly.
        """
        saved = dict(vars(self))
        try:
            yield
        except BaseException:
            vars(self).clear()
            vars(self).update(saved)
            raise

    def _fit_in_memory(self, X, y, *, strict: bool, extras=None) -> BayesianRegressor:
        """``fit`` of data in memory: validate, standardise, build, sample.

        ``extras`` is ``(trials, exposure)`` of a non-Gaussian family (None: Gaussian).
        """
        start = time.perf_counter()
        frame = X
        X, y, design = self._formula_design(X, y)
        if design is None:
            self.__dict__.pop("formula_design_", None)
        else:
            self.formula_design_ = design
        Xv, names = self._features(X, y)
        yv = validate_target(y, Xv.shape[0], name="y")
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = Xv.shape[1]
        if extras is None:
            self.standardizer_ = Standardizer.fit(Xv, yv, enabled=self.standardize)
            build = {}
        else:
            yv, build, (trials, offset) = self._family_inputs(frame, Xv, yv, extras)
        Xw = pd.DataFrame(self.standardizer_.transform_X(Xv), columns=names)
        yw = self.standardizer_.transform_y(yv)
        self.model_ = self._build(Xw, yw, **build)
        data_seconds = time.perf_counter() - start
        self.idata_ = self._sample_model(strict=strict)
        if extras is not None:
            self._store_training_extras(trials, offset)
        self._to_original_scale(yv)
        self._posterior_to_user_scale()
        self.idata_.attrs["bayesmoe_estimator"] = type(self).__name__
        # validation, standardisation, design and sufficient statistics: the O(n d^2) pass
        self.idata_.attrs["bayesmoe_data_seconds"] = data_seconds
        return self

    # ------------------------------------------------------------------ predictions
    def _predictive_draws(self, Xw: np.ndarray, salt: int) -> xr.DataArray:
        """y drawn from the (mixture) predictive for every posterior draw, original scale."""
        logw, mu, sd = self._components(Xw)
        y = draw_from_components(logw, mu, sd, self._rng(salt))
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

    def predict_dist(self, X, *, trials=None, exposure=None) -> xr.DataArray:
        """Posterior predictive draws of ``y`` at ``X``, dims (chain, draw, obs).

        For a mixture this is the full mixture predictive (multimodal where experts
        disagree), not a Gaussian summary. Also stored as ``idata_["predictions"]["y"]``.
        A non-Gaussian family draws from its own distribution (0/1, counts); ``trials``
        (binomial, required) and ``exposure`` (count families, default 1) as in ``fit``.
        """
        if is_dask(X):
            raise TypeError(
                "predict_dist draws chains x draws values per row and is not offered for "
                "dask inputs; use predict / pointwise_log_predictive_density, or a sample "
                "of rows (X.sample(frac=...).compute())"
            )
        raw = self._raw(X)
        if self._likelihood().is_gaussian:
            draws = self._predictive_draws(self.standardizer_.transform_X(raw), salt=1)
        else:
            extras = self._extras_at(X, raw.shape[0], trials, exposure)
            Xw = self.standardizer_.transform_X(raw)
            draws = self._family_draws(Xw, *extras, self._rng(1))["y"]
        self._store_predictions(raw, y=draws)
        return draws.assign_coords(obs=np.arange(raw.shape[0]))

    def predict(self, X, return_std: bool = False, *, trials=None, exposure=None):
        r"""Posterior predictive mean; with ``return_std`` also its sd (noise included).

        Both are exact functions of the posterior draws (no predictive sampling noise).
        With mixing weights :math:`\pi_k`, means :math:`\mu_k` and sds :math:`\sigma_k`:
        :math:`E[y] = E_\theta[\sum_k \pi_k \mu_k]` and
        :math:`E[y^2] = E_\theta[\sum_k \pi_k (\sigma_k^2 + \mu_k^2)]`.

        For a dask DataFrame ``X`` the result is a lazy dask Series (the sd too), computed
        partition by partition on whatever scheduler is active.

        A non-Gaussian family predicts on the response scale: :math:`E[y]` is the
        probability of a 1 (bernoulli), the expected count (count families, at
        ``exposure``, default 1) or successes (binomial at ``trials``; without ``trials``
        the probability per trial).
        """
        if not self._likelihood().is_gaussian:
            if is_dask(X):
                self._require_gaussian("predictions on a dask X", "rows in memory")
            raw = self._raw(X)
            extras = self._extras_at(X, raw.shape[0], trials, exposure, need_trials=False)
            return self._family_mean(self.standardizer_.transform_X(raw), *extras, return_std)
        if is_dask(X):
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
                sq = per_obs(sd, mu).values ** 2 + mu.values**2
                second[rows] = (w * sq).sum(axis=-1).mean(axis=(0, 1))
        out = self.standardizer_.inverse_y(mean)
        if not return_std:
            return out
        var = np.maximum(second - mean**2, 0.0)
        return out, np.sqrt(var) * self.standardizer_.y_scale

    def _row_blocks(self, n: int) -> list[slice]:
        """Row blocks whose (draws x rows x experts) temporaries stay near
        ``PREDICT_BLOCK_BYTES``: predictions of many rows never hold all draws of all rows
        at once."""
        post = self._working_posterior()
        draws = post.sizes.get("chain", 1) * post.sizes.get("draw", 1)
        experts = len(self.model_.coords.get("expert", [0]))
        step = max(1, PREDICT_BLOCK_BYTES // (8 * draws * experts))
        return [slice(i, min(i + step, n)) for i in range(0, max(n, 1), step)]

    def log_predictive_density(self, X, y=None, *, trials=None, exposure=None) -> float:
        r"""Held-out log pointwise predictive density, summed over rows.

        :math:`\sum_i \log \frac1S \sum_s p(y_i \mid \theta_s)`, computed with
        log-sum-exp on the original scale of ``y``. For a dask ``X`` (``y`` the name of its
        target column) a lazy dask scalar.
        """
        if is_dask(X):
            return self.pointwise_log_predictive_density(X, y).sum()
        return float(
            np.sum(self.pointwise_log_predictive_density(X, y, trials=trials, exposure=exposure))
        )

    def pointwise_log_predictive_density(
        self, X, y=None, *, trials=None, exposure=None
    ) -> np.ndarray:
        r"""Held-out :math:`\log \frac1S \sum_s p(y_i \mid \theta_s)` per row, shape (n,).

        For a dask DataFrame ``X`` with its target column named by ``y``: a lazy dask
        Series, computed partition by partition.
        """
        if is_dask(X):
            return self._dask_rows(X, y, "pointwise_log_predictive_density")
        Xw = self._work_X(X)
        yv = validate_target(self._target(X, y), Xw.shape[0], name="y")
        loglik, yv = self._loglik_function(X, yv, trials, exposure)
        yw = self.standardizer_.transform_y(yv)
        out = np.empty(Xw.shape[0])
        for rows in self._row_blocks(Xw.shape[0]):
            ll = loglik(Xw[rows], yw[rows], rows).values
            S = ll.shape[0] * ll.shape[1]
            out[rows] = logsumexp_first(ll.reshape(S, -1)) - np.log(S)
        return out - np.log(self.standardizer_.y_scale)  # Jacobian of the standardisation

    def _joint(self, Xw, yw) -> xr.DataArray:
        r""":math:`\log \pi_k + \log N(y_i \mid \mu_{ik}, \sigma_k)`, working scale."""
        logw, mu, sd = self._components(Xw)
        sd_ = per_obs(sd, mu).values
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
