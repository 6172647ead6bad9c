"""Prior and posterior predictive checks of the estimators, drawn in row blocks.

Every estimator's predictive at a row is a mixture of normals, ``_components(X_work) ->
(log_weights, means, sds)`` (dims chain, draw, obs, expert). A predictive draw of y picks
expert :math:`k` with probability :math:`\\pi_k(x)` and then draws
:math:`y \\sim N(\\mu_k(x), \\sigma_k^2)`, for every posterior (or prior) draw. Rows are
drawn in the blocks of ``_row_blocks`` (sized by ``PREDICT_BLOCK_BYTES``), so the memory
beyond the output does not grow with the number of rows. Draws are stored as ArviZ's
standard groups (``posterior_predictive``, ``observed_data``, ``prior_predictive``), so the
arviz-plots checks (``plot_ppc_dist``, ``plot_ppc_pit``, ``plot_loo_pit``) read them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from sklearn.utils.validation import check_is_fitted

from bayesmoe.builders.terms.likelihood import Family, get_family
from bayesmoe.data import Standardizer, validate_features, validate_target
from bayesmoe.estimators.scale import SAMPLE_DIMS

__all__ = [
    "PPC_KINDS",
    "FamilyPredictions",
    "PredictiveChecks",
    "draw_from_components",
    "per_obs",
]

#: the ``kind`` values of :meth:`PredictiveChecks.plot_ppc`
PPC_KINDS = ("dist", "pit", "loo_pit")


def per_obs(sd: xr.DataArray, like: xr.DataArray) -> xr.DataArray:
    """Broadcast component sds (chain, draw[, obs], expert) to the shape of ``like``."""
    if "obs" not in sd.dims:
        sd = sd.expand_dims(obs=like.sizes["obs"], axis=-2)
    return sd.transpose(*like.dims)


def draw_from_components(logw, mu, sd, rng: np.random.Generator) -> np.ndarray:
    """One y per (chain, draw, obs) from the mixture of normals, on the components' scale.

    The expert is the first whose cumulative weight reaches a uniform draw; then
    :math:`y = \\mu_k + \\sigma_k z` with :math:`z \\sim N(0, 1)`.
    """
    w = np.exp(logw.values)
    u = rng.uniform(size=(*w.shape[:-1], 1))
    k = np.minimum((u > np.cumsum(w, axis=-1)).sum(axis=-1), w.shape[-1] - 1)
    mu_k = np.take_along_axis(mu.values, k[..., None], axis=-1)[..., 0]
    sd_k = np.take_along_axis(per_obs(sd, mu).values, k[..., None], axis=-1)[..., 0]
    return mu_k + sd_k * rng.standard_normal(mu_k.shape)


def _draw_index(size: int, draws: int | None) -> np.ndarray:
    """``draws`` indices evenly spread over ``size`` (all of them when ``draws`` is None)."""
    if draws is None:
        return np.arange(size)
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 1:
        raise ValueError(f"draws must be a positive integer or None, got {draws!r}")
    return (np.arange(min(int(draws), size)) * size) // min(int(draws), size)


def _var_names(var_names) -> list[str]:
    names = (
        ["y"]
        if var_names is None
        else [var_names]
        if isinstance(var_names, str)
        else list(var_names)
    )
    unknown = [n for n in names if n not in ("y", "mu")]
    if unknown or not names:
        raise ValueError(f"var_names may hold 'y' and 'mu', got {var_names!r}")
    return names


def _rows(values, rows):
    return None if values is None else np.asarray(values)[rows]


def _column(X, value, name: str):
    """A per-row argument given as the name of a column of the data frame ``X``."""
    if not isinstance(value, str):
        return value
    if not isinstance(X, pd.DataFrame) or value not in X.columns:
        raise ValueError(f"{name}={value!r} names no column of X")
    return X[value].to_numpy()


class FamilyPredictions:
    """Predictions of a non-Gaussian likelihood family on the response scale (a mixin).

    The host provides ``_family_terms(X_work) -> (eta, params)`` (the linear predictor,
    dims chain, draw, obs; the family's parameters as arrays of shape (chain, draw, 1) or
    numbers), ``_row_blocks``, ``standardizer_`` and ``idata_``; the family is the
    estimator's ``family`` setting (:mod:`bayesmoe.builders.terms.likelihood`). Binomial
    predictions take ``trials``, count families an ``exposure`` (default 1): arrays, or
    the name of a column of the data frame ``X``.
    """

    def _likelihood(self) -> Family:
        return get_family(self.get_params(deep=False).get("family", "gaussian"))

    def _require_gaussian(self, what: str, alternative: str) -> None:
        """Refuse ``what`` for a non-Gaussian family (its one-line message)."""
        if not self._likelihood().is_gaussian:
            self._likelihood().refuse(what, alternative)

    def _standardizer_for(self, Xv: np.ndarray, yv: np.ndarray) -> Standardizer:
        """Features standardised as always; ``y`` only on the identity link (counts and
        binary outcomes stay as they are)."""
        y = None if self._likelihood().discrete else yv
        return Standardizer.fit(Xv, y, enabled=self.standardize)

    def _extras_at(self, X, n: int, trials, exposure, *, need_trials: bool = True):
        """``(trials, offset)`` of ``n`` new rows, checked; trials optional for a mean."""
        trials, exposure = _column(X, trials, "trials"), _column(X, exposure, "exposure")
        family = self._likelihood()
        if family.needs_trials and trials is None and not need_trials:
            return None, family.check_extras(n, exposure=exposure)[1]
        return family.check_extras(n, trials=trials, exposure=exposure)

    def _store_training_extras(self, trials, offset) -> None:
        """Keep the training rows' trials / offset in ``constant_data`` (saved with it)."""
        const = self.idata_["constant_data"].to_dataset()
        for name, values in (("trials", trials), ("offset", offset)):
            if values is not None:
                const[name] = ("obs", np.asarray(values, float))
        self.idata_["constant_data"] = const

    def _family_inputs(self, frame, Xv, yv, extras):
        """Check a family's ``y`` and ``(trials, exposure)`` at fit; set ``standardizer_``.

        Returns ``(y, build keyword arguments, (trials, offset))``.
        """
        trials, offset = self._extras_at(frame, Xv.shape[0], *extras)
        yv = self._likelihood().check_y(yv, trials=trials)
        self.standardizer_ = self._standardizer_for(Xv, yv)
        build = {"extras": (trials, None if offset is None else np.exp(offset))}
        return yv, build, (trials, offset)

    def _loglik_function(self, X, yv, trials, exposure):
        """``(f(Xw, yw, rows) -> log p per draw and row, y)`` for held-out rows ``X``:
        the mixture-of-normals density, or the family's with the rows' trials/offset."""
        family = self._likelihood()
        if family.is_gaussian:
            return (lambda Xw, yw, rows: self._pointwise_loglik(Xw, yw)), yv
        extras = self._extras_at(X, yv.shape[0], trials, exposure)
        yv = family.check_y(yv, trials=extras[0])

        def loglik(Xw, yw, rows):
            return self._family_loglik(Xw, yw, *(_rows(e, rows) for e in extras))

        return loglik, yv

    def _training_extras(self):
        """``(trials, offset)`` of the training rows (``constant_data``), or Nones."""
        const = self.idata_["constant_data"]
        return tuple(const[k].values if k in const else None for k in ("trials", "offset"))

    def _family_mean(self, Xw, trials, offset, return_std: bool = False):
        """:math:`E[y]` (and its sd, noise included) per row on the user's scale."""
        family, std = self._likelihood(), self.standardizer_
        mean, second = np.empty(Xw.shape[0]), np.empty(Xw.shape[0])
        for rows in self._row_blocks(Xw.shape[0]):
            eta, params = self._family_terms(Xw[rows])
            extras = {"trials": _rows(trials, rows), "offset": _rows(offset, rows)}
            m = family.mean(eta.values, params, **extras)
            mean[rows] = m.mean(axis=(0, 1))
            if return_std:
                var = family.variance(eta.values, params, **extras)
                second[rows] = (var + m**2).mean(axis=(0, 1))
        out = std.inverse_y(mean)
        if not return_std:
            return out
        return out, np.sqrt(np.maximum(second - mean**2, 0.0)) * std.y_scale

    def _family_draws(self, Xw, trials, offset, rng, keep=None, var_names=("y",)):
        """Draws of ``y`` (and ``mu``, the mean of each draw) per row, user's scale."""
        family, std, out, coords = self._likelihood(), self.standardizer_, {}, None
        for rows in self._row_blocks(Xw.shape[0]):
            eta, params = self._family_terms(Xw[rows])
            if keep is None:
                keep = np.arange(eta.sizes["draw"])
            if coords is None:
                coords = {"chain": eta["chain"].values, "draw": eta["draw"].values[keep]}
                shape = (eta.sizes["chain"], keep.size, Xw.shape[0])
                out = {n: np.empty(shape) for n in var_names}
            params = {k: v[:, keep] if np.ndim(v) else v for k, v in params.items()}
            extras = {"trials": _rows(trials, rows), "offset": _rows(offset, rows)}
            eta = eta.values[:, keep]
            if "y" in out:
                out["y"][..., rows] = std.inverse_y(family.draw(rng, eta, params, **extras))
            if "mu" in out:
                out["mu"][..., rows] = std.inverse_y(family.mean(eta, params, **extras))
        return {
            n: xr.DataArray(v, dims=(*SAMPLE_DIMS, "obs"), coords=coords, name=n)
            for n, v in out.items()
        }

    def _family_loglik(self, Xw, yw, trials, offset) -> xr.DataArray:
        """Pointwise :math:`\\log p(y_i \\mid \\theta)` per draw, working scale."""
        eta, params = self._family_terms(Xw)
        ll = self._likelihood().logpdf(yw, eta.values, params, trials=trials, offset=offset)
        return eta.copy(data=ll)


class PredictiveChecks:
    """Prior and posterior predictive draws and their arviz-plots checks (a mixin).

    The host provides ``_components``, ``_row_blocks``, ``_rng``, ``_build``,
    ``standardizer_``, ``idata_`` and ``model_`` (see ``BayesianRegressor``).
    """

    # ------------------------------------------------------------------ posterior
    def _training_rows(self) -> np.ndarray:
        """The working-scale rows of the fit (the rows its ``observed_data`` holds)."""
        return self.idata_["constant_data"]["X_base"].values

    def _blocked_draws(
        self, Xw: np.ndarray, components: Callable, rng, draws=None, var_names=("y",), extras=None
    ) -> dict[str, xr.DataArray]:
        """Predictive draws at every row of ``Xw``, user's scale, computed block by block.

        A non-Gaussian family draws from its own predictive (``extras``: the rows'
        ``(trials, offset)``, default the training rows').
        """
        if not self._likelihood().is_gaussian:
            size = self._working_posterior().sizes["draw"]
            extras = self._training_extras() if extras is None else extras
            return self._family_draws(Xw, *extras, rng, _draw_index(size, draws), var_names)
        out, coords, std = {}, None, self.standardizer_
        for rows in self._row_blocks(Xw.shape[0]):
            logw, mu, sd = components(Xw[rows])
            if coords is None:
                keep = _draw_index(mu.sizes["draw"], draws)
                coords = {"chain": mu["chain"].values, "draw": mu["draw"].values[keep]}
                shape = (mu.sizes["chain"], keep.size, Xw.shape[0])
                out = {n: np.empty(shape) for n in var_names}
            logw, mu, sd = (a.isel(draw=keep) for a in (logw, mu, sd))
            if "y" in out:
                out["y"][..., rows] = std.inverse_y(draw_from_components(logw, mu, sd, rng))
            if "mu" in out:
                out["mu"][..., rows] = std.inverse_y((np.exp(logw.values) * mu.values).sum(-1))
        return {
            n: xr.DataArray(v, dims=(*SAMPLE_DIMS, "obs"), coords=coords, name=n)
            for n, v in out.items()
        }

    def sample_posterior_predictive(
        self, X=None, y=None, *, var_names=None, random_seed=None, draws=None, trials=None,
        exposure=None,
    ) -> xr.DataTree:  # fmt: skip
        """Posterior predictive draws of ``y`` (user's scale), stored as ArviZ groups.

        Parameters
        ----------
        X, y : optional
            Default: the training rows; ``idata_["posterior_predictive"]`` gets the draws
            (``observed_data`` already holds the training y) and ``idata_`` is returned.
            With new rows ``X`` (and optionally their ``y``), the draws also go to
            ``idata_["predictions"]`` and a separate DataTree is returned with the
            ``posterior``, ``posterior_predictive`` and (with ``y``) ``observed_data`` of
            those rows; the fit's training groups are left as they are.
        var_names : str or list, optional
            ``"y"`` (default): replicated observations; ``"mu"``: the predictive mean
            :math:`\\sum_k \\pi_k(x) \\mu_k(x)` of each draw.
        random_seed : int, optional
            Seed of the draws (default: derived from the estimator's ``random_seed``).
        draws : int, optional
            Draws per chain, evenly spread over the posterior's (default: all).
        trials, exposure : array-like or str, optional
            With new rows ``X`` of a binomial / count family: their trials / exposure.
        """
        check_is_fitted(self, "idata_")
        names = _var_names(var_names)
        rng = self._rng(2) if random_seed is None else np.random.default_rng(random_seed)
        if X is None:
            if y is not None:
                raise ValueError(
                    "y is given without X; pass both, or neither for the training rows"
                )
            pp = self._blocked_draws(self._training_rows(), self._components, rng, draws, names)
            obs = self.idata_["observed_data"]["obs"].values
            self.idata_["posterior_predictive"] = xr.Dataset(
                {n: v.assign_coords(obs=obs) for n, v in pp.items()}
            )
            return self.idata_
        raw = self._raw(X)
        extras = (
            None
            if self._likelihood().is_gaussian
            else self._extras_at(X, raw.shape[0], trials, exposure)
        )
        pp = self._blocked_draws(
            self.standardizer_.transform_X(raw), self._components, rng, draws, names, extras
        )
        pp = {n: v.assign_coords(obs=np.arange(raw.shape[0])) for n, v in pp.items()}
        self._store_predictions(raw, **pp)
        groups = {"posterior": self.idata_["posterior"].to_dataset()}
        groups["posterior_predictive"] = xr.Dataset(pp)
        if y is not None:
            yv = validate_target(self._target(X, y), raw.shape[0], name="y")
            obs = np.arange(raw.shape[0])
            groups["observed_data"] = xr.Dataset({"y": ("obs", yv)}, coords={"obs": obs})
        return xr.DataTree.from_dict(groups)

    # ------------------------------------------------------------------ prior
    def _prior_model(self, Xw: pd.DataFrame, yw: np.ndarray) -> pm.Model:
        """The generative (per-row) model of ``y`` at working-scale rows ``Xw``."""
        return self._build(Xw, yw)

    def sample_prior_predictive(
        self, X=None, y=None, draws: int = 500, random_seed=None
    ) -> xr.DataTree:
        """Prior and prior predictive draws (``prior_predictive`` on the user's scale of y).

        ``X, y`` default to the fit's training rows (and its standardisation). The
        default priors depend on the spread of ``y``, so new rows need their ``y``; only
        its mean and sd are used. ``prior`` holds the parameters on the user's scale (the
        working draws are in ``prior_working``), ``observed_data`` the ``y``.
        """
        seed = self.random_seed if random_seed is None else random_seed
        if X is None:
            check_is_fitted(self, "idata_")
            std = self.standardizer_
            yv = self.idata_["observed_data"]["y"].values
            Xw = pd.DataFrame(self._training_rows(), columns=list(self.feature_names_in_))
        else:
            Xv, names = validate_features(X, name="X")
            yv = validate_target(y, Xv.shape[0], name="y")
            std = self._standardizer_for(Xv, yv)
            Xw = pd.DataFrame(std.transform_X(Xv), columns=names)
        model = self._prior_model(Xw, std.transform_y(yv))
        with model:
            prior = pm.sample_prior_predictive(draws=draws, random_seed=seed)
        pp = prior["prior_predictive"].to_dataset()
        prior["prior_predictive"] = pp.assign(y=std.inverse_y(pp["y"]))
        working = prior["prior"].to_dataset()
        prior["prior"] = model.bayesmoe_spec.to_user_scale(working, std)
        prior["prior_working"] = working
        prior["observed_data"] = xr.Dataset({"y": ("obs", yv)})
        return prior

    # ------------------------------------------------------------------ plots
    def plot_ppc(self, kind: str = "dist", **kwargs):
        """Posterior predictive check of the training rows through arviz-plots.

        ``kind="dist"``: :func:`arviz_plots.plot_ppc_dist` (densities of replicated y
        against the data's); ``"pit"``: :func:`arviz_plots.plot_ppc_pit` (probability
        integral transform of the data under the posterior predictive); ``"loo_pit"``:
        :func:`arviz_plots.plot_loo_pit` (the same with leave-one-out predictives; needs
        the pointwise log-likelihood, which is added when missing). Draws the posterior
        predictive when ``idata_`` lacks it; keyword arguments go to the plot function.
        Returns its ``PlotCollection``.
        """
        import arviz_plots as azp

        if kind not in PPC_KINDS:
            raise ValueError(f"kind must be one of {PPC_KINDS}, got {kind!r}")
        check_is_fitted(self, "idata_")
        if "posterior_predictive" not in self.idata_.children:
            self.sample_posterior_predictive()
        if kind == "loo_pit" and "log_likelihood" not in self.idata_.children:
            self.add_log_likelihood()
        kwargs.setdefault("var_names", ["y"])
        plot = {"dist": azp.plot_ppc_dist, "pit": azp.plot_ppc_pit, "loo_pit": azp.plot_loo_pit}
        return plot[kind](self.idata_, **kwargs)
