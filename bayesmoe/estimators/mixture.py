"""Mixture estimators: ``MixtureRegression`` (Dirichlet weights) and ``GatedExperts``
(weights from a softmax gate of x), over :func:`bayesmoe.builders.mixture_regression` and
:func:`bayesmoe.builders.gated_experts`.

Their shared base predicts through the spec's gate, component means and sds, and adds what
only mixtures have: mixing probabilities, responsibilities, each expert's predictions and
the diagnosis of the components the data support. Streamed fits run the variational EM
over dask partitions (:class:`bayesmoe.estimators.streamed.StreamedVEM`).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import ClassVar

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from sklearn.utils.validation import check_is_fitted

from bayesmoe.builders.mixture import DEFAULT_ALPHA, gated_experts, mixture_regression
from bayesmoe.builders.mixture.predictions import family_params
from bayesmoe.builders.terms.likelihood import Family, get_family
from bayesmoe.data import Standardizer, validate_target
from bayesmoe.estimators.base import SAMPLE_DIMS, BayesianRegressor
from bayesmoe.estimators.io import register
from bayesmoe.estimators.streamed import StreamedVEM
from bayesmoe.inference.diagnostics import Diagnostics, model_diagnostics
from bayesmoe.numerics.lse import log_softmax_last, logsumexp_last

__all__ = ["GatedExperts", "MixtureRegression"]


class _FamilyPredictions:
    """Predictions of non-Gaussian experts on the response scale, through the family.

    The experts' linear predictors :math:`\\eta_{ik}` and mixing weights come from the
    spec; :math:`E[y] = E_\\theta[\\sum_k \\pi_k(x) m_k(x)]` with the family's mean
    :math:`m_k`, predictive draws pick an expert by :math:`\\pi(x)` and draw from the
    family, log densities are the family's (``Family.logpdf``). ``trials`` and
    ``exposure`` of the rows are keyword arguments, checked like ``y``.
    """

    def _fam(self) -> Family:
        return get_family(self.family)

    def _row_extras(self, n: int, trials, exposure) -> dict:
        t, o = self._fam().check_extras(n, trials=trials, exposure=exposure)
        return {k: v for k, v in (("trials", t), ("offset", o)) if v is not None}

    def _expert_parts(self, Xw, extras: dict):
        """(weights, expert means, params, trials, offset) as (chain, draw, obs, expert)."""
        spec, post = self.model_.bayesmoe_spec, self._working_posterior()
        logw = spec.log_weights(post, Xw)
        eta = spec.linear_predictors(post, Xw)
        params = family_params(spec, post)
        t = extras.get("trials")
        o = extras.get("offset")
        t = None if t is None else t[:, None]
        o = None if o is None else o[:, None]
        mean = self._fam().mean(eta.values, params, trials=t, offset=o)
        return np.exp(logw.values), eta, mean, params, t, o

    def _family_predict(self, X, return_std, trials, exposure):
        Xw = self._work_X(X)
        extras = self._row_extras(Xw.shape[0], trials, exposure)
        mean, sd = np.empty(Xw.shape[0]), np.empty(Xw.shape[0])
        for rows in self._row_blocks(Xw.shape[0]):
            sub = {k: v[rows] for k, v in extras.items()}
            w, eta, m, params, t, o = self._expert_parts(Xw[rows], sub)
            mean[rows] = (w * m).sum(axis=-1).mean(axis=(0, 1))
            if return_std:
                var = self._fam().variance(eta, params, trials=t, offset=o)
                second = (w * (var + m**2)).sum(axis=-1).mean(axis=(0, 1))
                sd[rows] = np.sqrt(np.maximum(second - mean[rows] ** 2, 0.0))
        out = self.standardizer_.inverse_y(mean)
        return (out, sd * self.standardizer_.y_scale) if return_std else out

    def _family_draws(self, Xw, extras: dict, rng) -> xr.DataArray:
        w, eta, _, params, t, o = self._expert_parts(Xw, extras)
        u = rng.uniform(size=(*w.shape[:-1], 1))
        k = np.minimum((np.cumsum(w, axis=-1) < u).sum(axis=-1), w.shape[-1] - 1)[..., None]
        shape = eta.shape

        def pick(a):
            return np.take_along_axis(np.broadcast_to(a, shape), k, axis=-1)[..., 0]

        chosen = {name: pick(v) for name, v in params.items()}
        y = self._fam().draw(
            rng,
            pick(eta.values),
            chosen,
            trials=None if t is None else t[:, 0],
            offset=None if o is None else o[:, 0],
        )
        coords = {d: eta[d].values for d in SAMPLE_DIMS if d in eta.coords}
        draws = xr.DataArray(y, dims=(*SAMPLE_DIMS, "obs"), coords=coords)
        return self.standardizer_.inverse_y(draws).rename("y")

    def _family_target(self, X, y, n: int, trials) -> np.ndarray:
        yv = validate_target(self._target(X, y), n, name="y")
        fam = self._fam()
        if fam.link == "identity":
            return self.standardizer_.transform_y(yv)
        return fam.check_y(yv, trials=trials)

    def _family_joint(self, Xw, yw, extras: dict) -> xr.DataArray:
        spec = self.model_.bayesmoe_spec
        return spec.joint_log_density(self._working_posterior(), Xw, yw, **extras)

    def _family_pointwise(self, X, y, trials, exposure) -> np.ndarray:
        Xw = self._work_X(X)
        extras = self._row_extras(Xw.shape[0], trials, exposure)
        yw = self._family_target(X, y, Xw.shape[0], extras.get("trials"))
        out = np.empty(Xw.shape[0])
        for rows in self._row_blocks(Xw.shape[0]):
            sub = {k: v[rows] for k, v in extras.items()}
            ll = logsumexp_last(self._family_joint(Xw[rows], yw[rows], sub).values)
            S = ll.shape[0] * ll.shape[1]
            flat = ll.reshape(S, -1)
            top = flat.max(axis=0)
            out[rows] = top + np.log(np.exp(flat - top).sum(axis=0)) - np.log(S)
        return out - np.log(self.standardizer_.y_scale)


class _MixtureEstimator(_FamilyPredictions, StreamedVEM, BayesianRegressor):
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
        r"""Which components the data support: emptied and coinciding ones.

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

    # ------------------------------------------------------------------ families
    def fit(self, X, y=None, *, trials=None, exposure=None, strict: bool = False, client=None):
        """Validate the data, build the model and sample its posterior.

        As :meth:`BayesianRegressor.fit`; ``trials`` (``family="binomial"``) and
        ``exposure`` (``"poisson"``, ``"negative_binomial"``) are per-row arrays, or with a
        formula the names of their columns, checked like ``y``.
        """
        if isinstance(trials, str) or isinstance(exposure, str):
            frame = X if isinstance(X, pd.DataFrame) else None
            if frame is None:
                raise TypeError("trials / exposure as a column name need a DataFrame X")
            trials = frame[trials].to_numpy() if isinstance(trials, str) else trials
            exposure = frame[exposure].to_numpy() if isinstance(exposure, str) else exposure
        self._family_rows = {"trials": trials, "exposure": exposure}
        try:
            return super().fit(X, y, strict=strict, client=client)
        finally:
            self.__dict__.pop("_family_rows", None)

    def _params_json(self) -> dict:
        """The saved settings; ``family`` only when not the default ``"gaussian"``, so that
        Gaussian fits' files stay as they were (and files without it load as Gaussian)."""
        params = super()._params_json()
        if params.get("family") == "gaussian":
            del params["family"]
        return params

    def _check_settings(self) -> None:
        super()._check_settings()
        fam = get_family(self.family)
        if fam.is_gaussian:
            return
        if self.method == "vem":
            fam.refuse("method='vem' (closed-form variational EM)", "method='nuts' or 'advi'")
        options = self.fit_kwargs or {}
        if options.get("minibatch") is not None:
            fam.refuse("minibatch ADVI", "method='advi' on all rows (no minibatch)")
        if options.get("initvals") == "vem" or options.get("init") == "vem":
            fam.refuse("a variational EM start", "the default EM start (initvals='auto')")

    def _fit_streamed(self, X, y, *, strict: bool, client):
        fam = get_family(self.family)
        if not fam.is_gaussian:
            fam.refuse("streamed fits (dask inputs)", "an in-memory fit (e.g. of a row sample)")
        return super()._fit_streamed(X, y, strict=strict, client=client)

    def _family_inputs(self, frame, Xv, yv, extras):
        """The mixtures hand ``family``, ``trials`` and ``exposure`` to their builder
        themselves (:meth:`_family_build_args`, checked there): here the inputs are
        standardised as for the Gaussian family, and nothing is added to the build."""
        self.standardizer_ = Standardizer.fit(Xv, yv, enabled=self.standardize)
        return yv, {}, (None, None)

    def _family_build_args(self, yw: np.ndarray) -> tuple[np.ndarray, dict]:
        """The target and ``family`` / ``trials`` / ``exposure`` of the builder.

        Logit- and log-link families model the raw ``y``: the standardiser's ``y`` part
        becomes the identity (features stay standardised)."""
        fam = get_family(self.family)
        extras = dict(getattr(self, "_family_rows", None) or {})
        if fam.is_gaussian:
            return yw, {}
        if fam.link != "identity":
            # back to the raw values; whole numbers exactly (the family checks the rest)
            raw = self.standardizer_.inverse_y(yw)
            whole = np.rint(raw)
            yw = np.where(np.abs(raw - whole) <= 1e-9 * np.maximum(1.0, np.abs(whole)), whole, raw)
            self.standardizer_ = dataclasses.replace(self.standardizer_, y_mean=0.0, y_scale=1.0)
        return yw, {"family": fam.name, **{k: v for k, v in extras.items() if v is not None}}

    def predict(self, X, return_std: bool = False, *, trials=None, exposure=None):
        """Posterior predictive mean :math:`E[y \\mid x]` on the response scale (for a
        binary outcome the probability of 1); with ``return_std`` its sd. See
        :meth:`BayesianRegressor.predict`; other families through their means."""
        if get_family(self.family).is_gaussian:
            return super().predict(X, return_std)
        return self._family_predict(X, return_std, trials, exposure)

    def predict_dist(self, X, *, trials=None, exposure=None) -> xr.DataArray:
        """Posterior predictive draws of ``y`` at ``X``, dims (chain, draw, obs)."""
        if get_family(self.family).is_gaussian:
            return super().predict_dist(X)
        raw = self._raw(X)
        Xw = self.standardizer_.transform_X(raw)
        draws = self._family_draws(
            Xw, self._row_extras(raw.shape[0], trials, exposure), self._rng(1)
        )
        self._store_predictions(raw, y=draws)
        return draws.assign_coords(obs=np.arange(raw.shape[0]))

    def pointwise_log_predictive_density(self, X, y=None, *, trials=None, exposure=None):
        """Held-out :math:`\\log \\frac1S \\sum_s p(y_i \\mid \\theta_s)` per row."""
        if get_family(self.family).is_gaussian:
            return super().pointwise_log_predictive_density(X, y)
        return self._family_pointwise(X, y, trials, exposure)

    def log_predictive_density(self, X, y=None, *, trials=None, exposure=None) -> float:
        """Held-out log pointwise predictive density, summed over rows."""
        if get_family(self.family).is_gaussian:
            return super().log_predictive_density(X, y)
        return float(np.sum(self._family_pointwise(X, y, trials, exposure)))

    def predict_components(self, X, return_draws: bool = False):
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

    def predict_proba(self, X, return_draws: bool = False, **rows):
        r"""Class probabilities for ``family="bernoulli"``, shape (n, 2) (columns: y = 0, 1).

        For the other families, the mixing probabilities of :meth:`predict_components`
        (deprecated under this name: it warns with a ``DeprecationWarning``).
        """
        if get_family(self.family).name == "bernoulli":
            if return_draws:
                raise ValueError(
                    "return_draws is for predict_components; predict_proba of a binary "
                    "outcome returns the posterior mean probabilities"
                )
            p = self.predict(X, **rows)
            return np.column_stack([1.0 - p, p])
        warnings.warn(
            "predict_proba of a mixture returns the mixing (gate) probabilities and is "
            "deprecated under this name; use predict_components",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.predict_components(X, return_draws)

    def responsibilities(self, X, y=None, *, trials=None, exposure=None) -> np.ndarray:
        r"""Posterior probability that row i came from expert k, shape (n, K).

        :math:`E_\theta\big[p(z_i = k \mid x_i, y_i, \theta)\big]`, with
        :math:`p(z_i = k \mid x_i, y_i, \theta) \propto \pi_k(x_i) N(y_i \mid \mu_{ik},
        \sigma_k^2)`, for training rows or new labelled rows. Stored (posterior mean, dims
        obs, expert) as ``idata_["predictions"]["responsibilities"]``.
        """
        raw = self._raw(X)
        if get_family(self.family).is_gaussian:
            yv = validate_target(self._target(X, y), raw.shape[0], name="y")
            joint = self._joint(
                self.standardizer_.transform_X(raw), self.standardizer_.transform_y(yv)
            )
        else:
            extras = self._row_extras(raw.shape[0], trials, exposure)
            yw = self._family_target(X, y, raw.shape[0], extras.get("trials"))
            joint = self._family_joint(self.standardizer_.transform_X(raw), yw, extras)
        log_r = log_softmax_last(joint.values)
        mean = np.exp(log_r).mean(axis=(0, 1))
        self._store_predictions(
            raw,
            responsibilities=xr.DataArray(
                mean, dims=("obs", "expert"), coords={"expert": list(self.model_.coords["expert"])}
            ),
        )
        return mean

    def expert_predictions(self, X, *, trials=None, exposure=None) -> xr.DataArray:
        """Each expert's mean prediction at ``X``, dims (chain, draw, obs, expert).

        On the original scale of ``y`` (the response scale: the family's mean);
        stored as ``idata_["predictions"]["expert_mean"]``.
        """
        raw = self._raw(X)
        _, mu, _ = self._components(self.standardizer_.transform_X(raw))
        if get_family(self.family).link != "identity":
            extras = self._row_extras(raw.shape[0], trials, exposure)
            mu = mu.copy(data=self._expert_parts(self.standardizer_.transform_X(raw), extras)[2])
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
        see ``bayesmoe.builders.mixture.DEFAULT_ALPHA``). ``alpha=1`` is uniform.
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
    family : str
        The experts' likelihood: ``"gaussian"`` (default), ``"student_t"``,
        ``"bernoulli"``, ``"binomial"`` (``fit(..., trials=)``), ``"poisson"`` or
        ``"negative_binomial"`` (optional ``fit(..., exposure=)``); see
        :func:`bayesmoe.mixture_regression`. Predictions are on the response scale;
        ``predict_proba`` gives class probabilities for ``"bernoulli"``. Non-Gaussian
        experts are fitted by NUTS or ADVI (no VEM, minibatches or streamed fits).

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
        family: str = "gaussian",
    ):
        self.family = family
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
        yw, family = self._family_build_args(yw)
        return mixture_regression(
            Xw,
            yw,
            **extra,
            **family,
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
    family : str
        As in :class:`MixtureRegression`.

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
        family: str = "gaussian",
    ):
        self.family = family
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
        yw, family = self._family_build_args(yw)
        return gated_experts(
            Xw,
            yw,
            **extra,
            **family,
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


register(MixtureRegression)
register(GatedExperts)
