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
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from bayesmoe.builders.interaction import interaction_regression
from bayesmoe.data import (
    Standardizer,
    validate_features,
    validate_predict_features,
    validate_target,
)
from bayesmoe.fitting import diagnose, fit, validate_fit_settings
from bayesmoe.priors import priors_from_json, priors_to_json

__all__ = ["BayesianRegressor", "InteractionRegression", "load"]

_FORMAT_VERSION = 1


class BayesianRegressor(RegressorMixin, BaseEstimator):
    """Shared machinery of the bayesmoe estimators (not used directly).

    Subclasses implement ``_build(X_work: DataFrame, y_work) -> pm.Model`` and
    ``_mean_and_sd(X_work) -> (mu, sd)`` (working scale, dims chain/draw/obs).
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

    def fit(self, X, y) -> BayesianRegressor:
        """Validate the data, build the model and sample its posterior.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n, p)
        y : array-like of shape (n,)

        Returns
        -------
        self
        """
        self._check_settings()
        start = time.perf_counter()
        Xv, names = validate_features(X, name="X")
        yv = validate_target(y, Xv.shape[0], name="y")
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = Xv.shape[1]
        self.standardizer_ = Standardizer.fit(Xv, yv, enabled=self.standardize)
        Xw = pd.DataFrame(self.standardizer_.transform_X(Xv), columns=names)
        yw = self.standardizer_.transform_y(yv)
        self.model_ = self._build(Xw, yw)
        data_seconds = time.perf_counter() - start
        self.idata_ = fit(
            self.model_,
            self.method,
            sampler=self.sampler,
            draws=self.draws,
            tune=self.tune,
            chains=self.chains,
            random_seed=self.random_seed,
            progressbar=self.progressbar,
            log_likelihood=self.log_likelihood,
            **(self.fit_kwargs or {}),
        )
        self._to_original_scale(yv)
        self.idata_.attrs["bayesmoe_estimator"] = type(self).__name__
        # validation, standardisation, design and sufficient statistics: the O(n d^2) pass
        self.idata_.attrs["bayesmoe_data_seconds"] = data_seconds
        return self

    def _to_original_scale(self, y: np.ndarray) -> None:
        """Observed data and pointwise log-likelihood on the scale of the user's ``y``.

        This keeps LOO/WAIC comparable between models fitted with and without
        standardisation (the Jacobian of y -> (y - m)/s is -log s per row).
        """
        obs = self.idata_["observed_data"].to_dataset()
        self.idata_["observed_data"] = obs.assign(y=("obs", y))
        if "log_likelihood" in self.idata_.children:
            ll = self.idata_["log_likelihood"].to_dataset()
            self.idata_["log_likelihood"] = ll - np.log(self.standardizer_.y_scale)

    def add_log_likelihood(self) -> xr.DataTree:
        """Compute the pointwise log-likelihood of a fit made with ``log_likelihood=False``."""
        check_is_fitted(self, "idata_")
        Xw = self.idata_["constant_data"]["X_base"].values
        yw = self.standardizer_.transform_y(self.idata_["observed_data"]["y"].values)
        ll = self._pointwise_loglik(Xw, yw) - np.log(self.standardizer_.y_scale)
        self.idata_["log_likelihood"] = xr.Dataset(
            {"y": ll.assign_coords(obs=self.idata_["observed_data"]["obs"].values)}
        )
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
        return validate_predict_features(X, list(self.feature_names_in_), name="X")

    def _work_X(self, X) -> np.ndarray:
        raw = self._raw(X)  # checks fittedness before standardizer_ is touched
        return self.standardizer_.transform_X(raw)

    def _predictive_draws(self, Xw: np.ndarray, salt: int) -> xr.DataArray:
        """y ~ N(mu, sd) for every posterior draw, on the original scale."""
        mu, sd = self._mean_and_sd(Xw)
        eps = mu.copy(data=self._rng(salt).standard_normal(mu.shape))
        return self.standardizer_.inverse_y(mu + sd * eps).rename("y")

    def _rng(self, salt: int) -> np.random.Generator:
        seed = self.random_seed
        return np.random.default_rng(None if seed is None else [seed, salt])

    def predict_dist(self, X) -> xr.DataArray:
        """Posterior predictive draws of ``y`` at ``X``, dims (chain, draw, obs).

        Also stored as ``idata_["predictions"]`` (with ``predictions_constant_data``).
        """
        raw = self._raw(X)
        obs = np.arange(raw.shape[0])
        draws = self._predictive_draws(self.standardizer_.transform_X(raw), salt=1)
        draws = draws.assign_coords(obs=obs)
        self.idata_["predictions"] = xr.Dataset({"y": draws})
        self.idata_["predictions_constant_data"] = xr.Dataset(
            {"X": (("obs", "feature"), raw)},
            coords={"obs": obs, "feature": list(self.feature_names_in_)},
        )
        return draws

    def predict(self, X, return_std: bool = False):
        """Posterior predictive mean; with ``return_std`` also its sd (noise included).

        Both are exact functions of the posterior draws (no predictive sampling noise):
        :math:`E[y] = E_\\theta[\\mu]` and
        :math:`\\mathrm{Var}[y] = \\mathrm{Var}_\\theta[\\mu] + E_\\theta[\\sigma^2]`.
        """
        Xw = self._work_X(X)
        mu, sd = self._mean_and_sd(Xw)
        mean = mu.mean(("chain", "draw")).values
        out = self.standardizer_.inverse_y(mean)
        if not return_std:
            return out
        var = (
            mu.var(("chain", "draw")).values
            + (sd**2 * xr.ones_like(mu)).mean(("chain", "draw")).values
        )
        return out, np.sqrt(var) * self.standardizer_.y_scale

    def log_predictive_density(self, X, y) -> float:
        """Held-out log pointwise predictive density, summed over rows.

        :math:`\\sum_i \\log \\frac1S \\sum_s p(y_i \\mid \\theta_s)`, computed with
        log-sum-exp on the original scale of ``y``.
        """
        Xw = self._work_X(X)
        yv = validate_target(y, Xw.shape[0], name="y")
        ll = self._pointwise_loglik(Xw, self.standardizer_.transform_y(yv))
        ll = ll - np.log(self.standardizer_.y_scale)  # Jacobian of the standardisation
        S = ll.shape[0] * ll.shape[1]
        flat = ll.values.reshape(S, -1)
        return float(np.sum(logsumexp(flat, axis=0) - np.log(S)))

    def _pointwise_loglik(self, Xw, yw) -> xr.DataArray:
        from scipy import stats

        mu, sd = self._mean_and_sd(Xw)
        return xr.apply_ufunc(stats.norm.logpdf, xr.DataArray(yw, dims="obs"), mu, sd).transpose(
            "chain", "draw", "obs"
        )

    # ------------------------------------------------------------------ reporting
    def summary(self, **kwargs) -> pd.DataFrame:
        """ArviZ summary of the model's parameters (working scale)."""
        check_is_fitted(self, "idata_")
        kwargs.setdefault("var_names", self._summary_vars())
        kwargs.setdefault("round_to", "none")
        return az.summary(self.idata_, **kwargs)

    def check(self):
        """R-hat, bulk ESS and divergences of the fit (see :func:`bayesmoe.diagnose`)."""
        check_is_fitted(self, "idata_")
        return diagnose(self.idata_, var_names=self._summary_vars())

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted estimator to one netCDF file, atomically.

        The file holds the DataTree (posterior draws bit for bit), the settings and the
        standardisation, plus the bayesmoe/PyMC/ArviZ versions. It is written to a
        temporary file in the same folder and renamed, so a crash never leaves a
        half-written file under ``path``.
        """
        check_is_fitted(self, "idata_")
        path = Path(path)
        if path.exists() and path.is_dir():
            raise OSError(f"path {str(path)!r} is a directory; give a file name")
        if not path.parent.exists():
            raise OSError(f"path {str(path)!r}: folder {str(path.parent)!r} does not exist")
        tree = _storable(self.idata_)
        tree.attrs.update(
            bayesmoe_format=_FORMAT_VERSION,
            bayesmoe_estimator=type(self).__name__,
            bayesmoe_params=json.dumps(self._params_json()),
            bayesmoe_standardizer=json.dumps(self.standardizer_.to_dict()),
            bayesmoe_feature_names=json.dumps([str(c) for c in self.feature_names_in_]),
            **_versions(),
        )
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            tree.to_netcdf(tmp, engine="h5netcdf")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

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
        Xw = pd.DataFrame(
            tree["constant_data"]["X_base"].values, columns=list(est.feature_names_in_)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant-feature warnings were given at fit time
            est.model_ = est._build(
                Xw, est.standardizer_.transform_y(tree["observed_data"]["y"].values)
            )
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
    interactions : "all", None or sequence of pairs / "a:b" names
        Interactions to include; ``None`` gives the base-effects model.
    prior : {"half_cauchy", "gamma", "half_normal", "fixed"}
        Hyperprior family of the two scales (gamma: on the precisions :math:`\tau^{-2}`).
    base_scale, interaction_scale : float, optional
        Prior standard deviations when ``prior="fixed"`` (the seed's fixed-prior model).
    priors : dict, optional
        Overrides keyed by variable name: ``intercept``, ``beta_base``, ``beta_interaction``,
        ``tau_base``, ``tau_interaction`` (``lambda_base``, ``lambda_interaction`` for
        gamma), ``sigma``; values are :class:`pymc_extras.prior.Prior` or numbers (fixed).
    standardize : bool, default True
        Centre and scale each feature and ``y`` before modelling (interactions are formed
        from the standardised features). Parameters are then on the standardised scale;
        predictions are always returned on the original scale.
    collapsed : bool or "auto", default "auto"
        Sample the collapsed form (weights integrated out); "auto" does so whenever the
        weight priors are Normal/Flat.
    centered : bool, default False
        Per-row form only: centred instead of non-centred weights under a learned scale
        (better when the data identify the weights strongly, e.g. large n).
    method : {"nuts", "advi", "fullrank_advi"}
    sampler : {"nutpie", "pymc", "numpyro"}
    draws, tune, chains : int
    random_seed : int, optional
    progressbar : bool
    log_likelihood : bool
        Store pointwise log-likelihood for LOO/WAIC (skip for very large n).
    fit_kwargs : dict, optional
        Passed to :func:`bayesmoe.fit` (e.g. ``target_accept``, ``advi_iterations``).

    Attributes
    ----------
    model_ : pymc.Model
    idata_ : xarray.DataTree
    feature_names_in_ : ndarray of str
    standardizer_ : bayesmoe.data.Standardizer
    """

    def __init__(
        self,
        *,
        interactions="all",
        prior: str = "half_cauchy",
        base_scale: float | None = None,
        interaction_scale: float | None = None,
        priors: dict | None = None,
        standardize: bool = True,
        collapsed: bool | str = "auto",
        centered: bool = False,
        method: str = "nuts",
        sampler: str = "nutpie",
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        random_seed: int | None = None,
        progressbar: bool = True,
        log_likelihood: bool = True,
        fit_kwargs: dict | None = None,
    ):
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
            interactions=self.interactions,
            prior=self.prior,
            base_scale=self.base_scale,
            interaction_scale=self.interaction_scale,
            priors=self.priors,
            collapsed=self.collapsed if collapsed is None else collapsed,
            centered=self.centered,
        )

    def _mean_and_sd(self, Xw: np.ndarray):
        spec = self.model_.bayesmoe_spec
        post = self.idata_["posterior"].to_dataset()
        return spec.linear_predictor(post, Xw), spec.noise_sd(post)

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
        prior["observed_data"] = xr.Dataset({"y": ("obs", yv)})
        return prior


_ESTIMATORS = {"InteractionRegression": InteractionRegression}


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


def load(path: str | os.PathLike):
    """Load an estimator written by ``save``; warns when library versions differ."""
    path = Path(path)
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
