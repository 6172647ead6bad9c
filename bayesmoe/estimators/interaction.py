"""``InteractionRegression``: base effects, pairwise interactions, learned prior scales.

The estimator over :func:`bayesmoe.builders.interaction_regression` (rows in memory) and
:func:`bayesmoe.builders.interaction.interaction_regression_from_statistics` (streamed or
chunked fits: :mod:`bayesmoe.estimators.streamed`), with ``partial_fit`` adding chunks of
rows to the sufficient statistics.
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from sklearn.utils.metaestimators import available_if

from bayesmoe.builders.interaction import interaction_regression, refuse_unsupported
from bayesmoe.data import validate_features, validate_target
from bayesmoe.estimators.base import BayesianRegressor
from bayesmoe.estimators.io import register
from bayesmoe.estimators.streamed import StreamedStatistics

__all__ = ["InteractionRegression"]


class InteractionRegression(StreamedStatistics, BayesianRegressor):
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
        Prior standard deviations when ``prior="fixed"`` (the conjugate model with
        hand-set prior variances).
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
    family : str, default "gaussian"
        One of ``"gaussian"``, ``"student_t"``, ``"bernoulli"``, ``"binomial"``,
        ``"poisson"``, ``"negative_binomial"``: the outcome's distribution given the
        linear predictor (the right-hand side above): Gaussian (the model above),
        Student-t (``nu`` learned), Bernoulli and binomial (logit link;
        ``fit(..., trials=)`` for the binomial), Poisson and negative binomial (log link,
        optional ``fit(..., exposure=)``); see
        :mod:`bayesmoe.builders.terms.likelihood` and ``docs/user_guide/families.md``.
        Outcomes of the logit and log links are not standardised (the features are);
        predictions are on the response scale (``predict``: probability or expected
        count). Only the Gaussian has the collapsed form, ``partial_fit`` and streamed
        fits; the others refuse them in one line naming the alternative.
    method : {"nuts", "advi", "fullrank_advi"}
    sampler : {"auto", "nutpie", "pymc", "numpyro"}
        ``"auto"`` (default): the NUTS implementation ``bayesmoe.fitting.AUTO_SAMPLERS``
        names for the model (see ``benchmarks/results/first_fit/``).
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
        family: str = "gaussian",
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
        self.family = family
        self.method = method
        self.sampler = sampler
        self.draws = draws
        self.tune = tune
        self.chains = chains
        self.random_seed = random_seed
        self.progressbar = progressbar
        self.log_likelihood = log_likelihood
        self.fit_kwargs = fit_kwargs

    def _check_settings(self) -> None:
        super()._check_settings()
        refuse_unsupported(
            self._likelihood(), prior=self.prior, collapsed=self.collapsed, method=self.method
        )

    def _build(self, Xw: pd.DataFrame, yw: np.ndarray, collapsed=None, *, extras=None) -> pm.Model:
        """The model; a non-Gaussian family's ``extras = (trials, exposure)`` default to
        those of the fit's training rows (``constant_data``: a loaded fit, the prior model).
        """
        family = {}
        if not self._likelihood().is_gaussian:
            if extras is None:
                trials, offset = self._training_extras()
                extras = (trials, None if offset is None else np.exp(offset))
            family = {"family": self.family, "trials": extras[0], "exposure": extras[1]}
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
            **family,
        )

    def _family_terms(self, Xw: np.ndarray):
        """The linear predictor (chain, draw, obs) and the family's parameters per draw."""
        spec = self.model_.bayesmoe_spec
        post = self._working_posterior()
        params = {
            k: v.transpose("chain", "draw").values[..., None] if isinstance(v, xr.DataArray) else v
            for k, v in spec.family_params(post).items()
        }
        return spec.linear_predictor(post, Xw), params

    def _is_bernoulli(self) -> bool:
        return self._likelihood().name == "bernoulli"

    @property
    def classes_(self) -> np.ndarray:
        """The class labels ``[0, 1]`` of a fitted Bernoulli model (scikit-learn's order)."""
        if not self._is_bernoulli() or "idata_" not in vars(self):
            raise AttributeError("classes_ exists for a fitted family='bernoulli' model only")
        return np.array([0, 1])

    @available_if(_is_bernoulli)
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of a Bernoulli model, shape (n, 2), columns ``classes_``.

        Posterior means of :math:`P(y = 0 \\mid x)` and :math:`P(y = 1 \\mid x)` (the
        second column is ``predict(X)``), as a scikit-learn classifier returns them.
        """
        p = self.predict(X)
        return np.column_stack([1 - p, p])

    @available_if(_is_bernoulli)
    def predict_label(self, X, threshold: float = 0.5) -> np.ndarray:
        """Labels of a Bernoulli model: 1 where :math:`P(y = 1 \\mid x) >` ``threshold``.

        ``predict`` stays the expected value (a probability), as for every family;
        ``predict_label`` is what a scikit-learn classifier's ``predict`` returns.
        """
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
        return (self.predict(X) > threshold).astype(int)

    def _components(self, Xw: np.ndarray):
        """One normal per row and draw: the Gaussian model's predictive; for another
        family the normal with its mean and variance (unit exposure, per trial), which
        only a Gaussian summary uses (densities and draws take the family's own; the
        Student-t's sd is its scale)."""
        if not self._likelihood().is_gaussian:
            eta, params = self._family_terms(Xw)
            family = self._likelihood()
            mu = eta.copy(data=family.mean(eta.values, params))
            if "sigma" in params:  # the Student-t's scale (its variance may be infinite)
                sd = eta.copy(data=np.broadcast_to(params["sigma"], eta.shape))
            else:
                sd = eta.copy(data=np.sqrt(family.variance(eta.values, params)))
            mu, sd = (a.expand_dims(expert=1, axis=-1) for a in (mu, sd))
            return xr.zeros_like(mu), mu, sd
        spec = self.model_.bayesmoe_spec
        post = self._working_posterior()
        mu = spec.linear_predictor(post, Xw).expand_dims(expert=1, axis=-1)
        sd = spec.noise_sd(post) * xr.ones_like(post["chain"] + post["draw"], dtype=float)
        return xr.zeros_like(mu), mu, sd.expand_dims(expert=1, axis=-1)

    _coef_vars = ("beta_base", "beta_interaction")
    _formula_decides: ClassVar[dict] = {"interactions": "all"}

    def partial_fit(self, X, y, *, strict: bool = False) -> InteractionRegression:
        """Add a chunk of rows to the sufficient statistics and refit the posterior.

        The statistics of every chunk seen so far are combined exactly as the partitions
        of a streamed fit (:mod:`bayesmoe.numerics.suffstats`), so after the last chunk the
        fit equals ``fit`` on all rows (the standardisation uses all rows seen). Each call
        samples the posterior of the data so far (the collapsed model's cost does not
        grow with n). A uniform sample of the rows seen is kept for the
        pointwise log-likelihood.

        As in scikit-learn, ``partial_fit`` continues from the fitted state: after
        ``fit(B)`` (rows in memory or a dask frame, no formula) the next chunk ``C`` is
        combined with ``B``'s statistics, so ``fit(B); partial_fit(C)`` equals
        ``partial_fit(B); partial_fit(C)``; ``fit`` starts a new stream. ``save`` writes
        the stream's statistics and ``load`` restores them, so a loaded estimator
        continues where it stopped. A failed call leaves the estimator as it was.
        """
        from bayesmoe.data import resolve_interactions
        from bayesmoe.inference.loglik import LOO_SUBSAMPLE_ROWS
        from bayesmoe.numerics.rowsample import chunk_sample, merge_samples, sample_rng
        from bayesmoe.numerics.suffstats import chunk_moments, combine

        self._check_settings()
        if not self._likelihood().is_gaussian:
            self._likelihood().refuse(
                "partial_fit (it updates Gaussian sufficient statistics)", "fit on all rows"
            )
        if self.formula is not None or self.collapsed is False:
            raise ValueError("partial_fit needs the collapsed form and no formula")
        start = time.perf_counter()
        Xv, names = validate_features(X, name="X", min_rows=1)
        yv = validate_target(y, Xv.shape[0], name="y")
        pairs, _ = resolve_interactions(names, self.interactions)
        with self._transaction():
            self.__dict__.pop("formula_design_", None)
            state = self._stream_state()
            # the chunk's fixed stream, as a streamed fit's partitions: the same rows, in order
            chunks = 0 if state is None else state[2]
            part = chunk_sample(Xv, yv, LOO_SUBSAMPLE_ROWS, sample_rng(chunks))
            moments = chunk_moments(Xv, yv, pairs)
            if state is not None:
                if names != state[3]:
                    raise ValueError(f"X columns {names} differ from the first chunk's {state[3]}")
                # each chunk centred at its own first rows; combine moves it to the first's
                moments = combine(state[0], moments)
                part = merge_samples(state[1], part, LOO_SUBSAMPLE_ROWS)
            self._fit_from_moments(moments, part, names, pairs, bool(strict), start)
            self.moments_, self._row_sample = moments, part
            self._chunks, self._partial_names = chunks + 1, names
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

    def _params_json(self) -> dict:
        """The saved settings; ``family`` only when not the default, so a Gaussian fit's
        file is what it was before families existed (and loads in older versions)."""
        params = super()._params_json()
        if params.get("family") == "gaussian":
            del params["family"]
        return params

    def _summary_vars(self) -> list[str]:
        post = self.idata_["posterior"]
        names = ["intercept", "beta_base", "beta_interaction", "tau_base", "tau_interaction"]
        names += ["lambda_base", "lambda_interaction", "sigma", "nu", "alpha"]
        return [n for n in names if n in post.data_vars]

    def _prior_model(self, Xw: pd.DataFrame, yw: np.ndarray) -> pm.Model:
        """The per-row form of the model (the collapsed form has no generative ``y``)."""
        return self._build(Xw, yw, collapsed=False)


register(InteractionRegression)
