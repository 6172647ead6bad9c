r"""The learning-curve study's models: fixed choices, adaptive baselines, learned scales.

Every model is ``fit_predict(X, y, X_test, *, settings, seed) -> ModelFit`` on the base
features (interaction columns are built inside):

* fixed choices (one prior / penalty / model for every scenario and size): OLS on the base
  features and with all pairwise products, ridge at three penalties, and the conjugate
  Gaussian regression :math:`w \sim N(0, \mathrm{diag}(1, v_b 1_p, v_i 1_q))`,
  :math:`y \mid w \sim N(Xw, 1)` at five fixed prior variances :math:`(v_b, v_i)` on the
  raw design;
* adaptive baselines that tune their penalty on the data (scikit-learn ``RidgeCV``,
  ``BayesianRidge``, ``ARDRegression``);
* learned scales: :func:`~bayesmoe.builders.interaction_regression` in its collapsed form
  with half-Cauchy or gamma hyperpriors, sampled by NUTS through :func:`bayesmoe.fit`, and
  its empirical-Bayes (type-II maximum likelihood) variant.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bayesmoe.data import interaction_design
from bayesmoe.numerics.blas import single_threaded_blas
from bayesmoe.priors import LOCAL_GLOBAL_FAMILIES, Prior, horseshoe_global_scale
from bayesmoe.studies.learning_curve.scenarios import StudySettings

__all__ = [
    "ADAPTIVE_MODELS",
    "FIXED_MODELS",
    "INTERCEPT_SD",
    "LEARNED_MODELS",
    "MODELS",
    "NUTS_MODELS",
    "STUDY_MODELS",
    "ModelFit",
    "WorkingScale",
    "compile_designs",
]


@dataclass
class ModelFit:
    """What a model returns for one training size: test predictions and extras (learned
    scales, sampler diagnostics) that become columns of the cell's table."""

    y_pred: np.ndarray
    extras: dict = field(default_factory=dict)


class WorkingScale:
    """Standardised working scale for the Bayesian models (as the estimators do).

    Features and target are centred and scaled by the training rows; the interaction
    columns are products of standardised features. With ``y`` standardised the default
    priors are the same for every data set, so the compiled sampler is shared.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray):
        self.x_mean, self.x_scale = X.mean(axis=0), X.std(axis=0)
        self.x_scale = np.where(self.x_scale > 0, self.x_scale, 1.0)
        self.y_mean, self.y_scale = float(y.mean()), float(y.std()) or 1.0
        self.X = (X - self.x_mean) / self.x_scale
        self.y = (y - self.y_mean) / self.y_scale
        self.pairs = _pairs(X.shape[1])

    def design(self, X: np.ndarray) -> np.ndarray:
        Xs = (X - self.x_mean) / self.x_scale
        return np.column_stack([np.ones(len(X)), Xs, interaction_design(Xs, self.pairs)])

    def predict(self, coef: np.ndarray, X: np.ndarray) -> np.ndarray:
        return self.y_mean + self.y_scale * (self.design(X) @ coef)

    def raw_scales(self, tau_base: float, tau_interaction: float) -> tuple[float, float]:
        """Working-scale prior sds as sds of the original-scale weights.

        A working weight :math:`w^w_j = w_j s_j / s_y`, so :math:`\\tau = \\tau^w s_y / s_x`
        (and :math:`s_y / s_x^2` for products), with :math:`s_x` the geometric mean of the
        feature sds (all about :math:`1/\\sqrt3` for U(-1, 1) features).
        """
        sx = float(np.exp(np.mean(np.log(self.x_scale))))
        return tau_base * self.y_scale / sx, tau_interaction * self.y_scale / sx**2


def _pairs(p: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(p) for b in range(a + 1, p)]


def _full_design(X: np.ndarray) -> np.ndarray:
    """Base features and their raw pairwise products (scikit-learn's
    ``PolynomialFeatures(degree=2, interaction_only=True, include_bias=False)``)."""
    return np.column_stack([X, interaction_design(X, _pairs(X.shape[1]))])


def _sklearn(make: Callable, interactions: bool = True):
    def fit_predict(X, y, X_test, **_):
        model = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ARD/BayesianRidge convergence chatter at tiny n
            if interactions:
                model.fit(_full_design(X), y)
                return ModelFit(model.predict(_full_design(X_test)))
            model.fit(X, y)
            return ModelFit(model.predict(X_test))

    return fit_predict


def _conjugate(base_var: float, interaction_var: float):
    """The conjugate Gaussian regression at fixed prior variances (base, interaction),
    noise sd 1, intercept prior variance 1, on the raw design."""

    def fit_predict(X, y, X_test, **_):
        from bayesmoe.numerics.conjugate import ConjugateLinearRegression

        p = X.shape[1]
        q = p * (p - 1) // 2
        sd = np.sqrt(np.concatenate([[1.0], np.full(p, base_var), np.full(q, interaction_var)]))
        reg = ConjugateLinearRegression(np.zeros(sd.size), sd, 1.0).fit(_full_design(X), y)
        return ModelFit(reg.predict(_full_design(X_test)))

    return fit_predict


#: Intercept prior sd on the working scale, as in the builder's defaults.
INTERCEPT_SD = 2.5


def _empirical_bayes(X, y, X_test, **_):
    r"""Type-II maximum likelihood: :math:`(\tau_b, \tau_i, \sigma)` maximise the collapsed
    marginal likelihood :func:`~bayesmoe.numerics.conjugate.log_marginal_likelihood` (the
    same priors as the NUTS models on the working scale); predict with the posterior mean
    of the weights at the optimum (the evidence approximation: MacKay 1992; Bishop 2006,
    sec. 3.5)."""
    from scipy import optimize

    from bayesmoe.numerics.conjugate import log_marginal_likelihood

    w = WorkingScale(X, y)
    D = w.design(X)
    xtx, xty, yty, n = D.T @ D, D.T @ w.y, float(w.y @ w.y), len(w.y)
    p = X.shape[1]
    q = D.shape[1] - 1 - p
    mean = np.zeros(D.shape[1])

    def precision(log_tb, log_ti):
        return np.concatenate(
            [[INTERCEPT_SD**-2], np.full(p, np.exp(-2 * log_tb)), np.full(q, np.exp(-2 * log_ti))]
        )

    def neg(theta):
        try:
            return -log_marginal_likelihood(
                xtx, xty, yty, n, mean, precision(theta[0], theta[1]), float(np.exp(theta[2]))
            )
        except np.linalg.LinAlgError:
            return np.inf

    # Several starts: the evidence is often flat or bimodal in tau_interaction (switched
    # on or off); bounds keep the search off the degenerate tau -> 0 / infinity edges.
    bounds = [(-9.0, 4.0), (-9.0, 4.0), (-7.0, 1.0)]
    best = None
    for start in ((0.0, 0.0, 0.0), (0.0, -4.0, 0.0), (-2.0, -2.0, -1.0)):
        res = optimize.minimize(neg, start, method="L-BFGS-B", bounds=bounds)
        if best is None or res.fun < best.fun:
            best = res
    prec = precision(best.x[0], best.x[1])
    sigma = float(np.exp(best.x[2]))
    post = xtx / sigma**2 + np.diag(prec)
    coef = np.linalg.solve(post, xty / sigma**2)
    tb, ti = w.raw_scales(float(np.exp(best.x[0])), float(np.exp(best.x[1])))
    return ModelFit(
        w.predict(coef, X_test),
        {"tau_base": tb, "tau_interaction": ti, "sigma": sigma * w.y_scale},
    )


def _learned(
    family: str,
    relevant_fraction: Mapping[str, float] | None = None,
    overrides: Mapping[str, Prior | float] | None = None,
):
    """InteractionRegression with learned hyperpriors (collapsed form, NUTS by nutpie).

    ``relevant_fraction`` (horseshoe only): another prior guess :math:`p_0/D` per group
    than :data:`bayesmoe.priors.HORSESHOE_RELEVANT_FRACTION`; ``overrides``: further
    overrides of the builder's defaults.
    """

    def fit_predict(X, y, X_test, *, settings: StudySettings, seed: int):
        import bayesmoe as bm
        from bayesmoe.builders.interaction import interaction_regression
        from bayesmoe.inference import diagnose, is_compiled

        w = WorkingScale(X, y)
        d = w.X.shape[1]
        widths = {"base": d, "interaction": d * (d - 1) // 2}
        priors = {
            f"tau_{g}": horseshoe_global_scale(f * widths[g], widths[g], len(w.y))
            for g, f in (relevant_fraction or {}).items()
        } | dict(overrides or {})
        model = interaction_regression(
            w.X, w.y, prior=family, collapsed=True, priors=priors or None
        )
        # Read-only look at fitting's compilation cache: was this structure compiled here?
        compiled = not is_compiled(model.bayesmoe_spec.cache_key)
        start = time.perf_counter()
        idata = bm.fit(
            model,
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            random_seed=seed,
            progressbar=False,
            log_likelihood=False,
            warn_diagnostics=False,
            cores=1,  # one dask worker = one core; chains run one after another
        )
        sample_seconds = time.perf_counter() - start
        hyper = ["tau_base", "tau_interaction", "sigma"]
        hyper = [h for h in hyper if h in idata["posterior"].data_vars]
        report = diagnose(idata, var_names=hyper)
        post = idata["posterior"]
        coef = np.concatenate(
            [
                np.atleast_1d(post["intercept"].mean(("chain", "draw")).values),
                post["beta_base"].mean(("chain", "draw")).values,
                post["beta_interaction"].mean(("chain", "draw")).values
                if "beta_interaction" in post
                else np.zeros(0),
            ]
        )
        tb = post["tau_base"]
        ti = post["tau_interaction"] if "tau_interaction" in post else None
        if family in LOCAL_GLOBAL_FAMILIES:  # their global scales are relative to sigma
            tb = tb * post["sigma"]
            ti = None if ti is None else ti * post["sigma"]
        tb = float(tb.median())
        ti = float(ti.median()) if ti is not None else np.nan
        tb, ti = w.raw_scales(tb, ti)
        return ModelFit(
            w.predict(coef, X_test),
            {
                "tau_base": tb,
                "tau_interaction": ti,
                "sigma": float(post["sigma"].median()) * w.y_scale,
                "rhat_max": report.max_rhat,
                "ess_bulk_min": report.min_ess_bulk,
                "divergences": report.divergences,
                "compiled": compiled,
                "sample_seconds": sample_seconds,
            },
        )

    return fit_predict


def _models():
    from sklearn import linear_model as lm

    ridge_alphas = np.logspace(-3, 3, 13)
    fixed = {
        "ols_base": _sklearn(lm.LinearRegression, interactions=False),
        "ols_interaction": _sklearn(lm.LinearRegression),
        "ridge_0.1": _sklearn(lambda: lm.Ridge(alpha=0.1)),
        "ridge_1": _sklearn(lambda: lm.Ridge(alpha=1.0)),
        "ridge_10": _sklearn(lambda: lm.Ridge(alpha=10.0)),
        # the conjugate regression at fixed prior variances (base, interaction)
        "bayes_wide": _conjugate(1e6, 1e6),
        "bayes_base_-1_int_-1": _conjugate(1e-1, 1e-1),
        "bayes_base_-1_int_-3": _conjugate(1e-1, 1e-3),
        "bayes_base_-1_int_1": _conjugate(1e-1, 1e1),
        "bayes_base_1_int_-1": _conjugate(1e1, 1e-1),
    }
    adaptive = {
        "ridge_cv": _sklearn(lambda: lm.RidgeCV(alphas=ridge_alphas)),
        "bayesian_ridge": _sklearn(lm.BayesianRidge),
        "ard": _sklearn(lm.ARDRegression),
    }
    learned = {
        "learned_half_cauchy": _learned("half_cauchy"),
        "learned_gamma": _learned("gamma"),
        "empirical_bayes": _empirical_bayes,
    }
    # Opt-in rows, by name only (not in the default study: two more NUTS fits per cell):
    # the local-global priors and the lasso baseline.
    extra = {
        "learned_horseshoe": _learned("horseshoe"),
        "learned_r2d2": _learned("r2d2"),
        # the horseshoe guessing that half the interactions matter (the default guesses
        # 1/10): how much of its loss on the study's dense truths is that guess
        "learned_horseshoe_dense": _learned("horseshoe", {"interaction": 0.5}),
        # ... and with a slab per group that may shrink to the size of the group's weights
        # (c_g^2 ~ HalfCauchy(1) in units of y's sd): as tau_g grows every weight's prior
        # sd tends to c_g, so this horseshoe contains the one-scale model as a limit
        "learned_horseshoe_group_slab": _learned(
            "horseshoe",
            {"interaction": 0.5},
            {"c2": Prior("HalfCauchy", beta=1.0, dims="scale_group")},
        ),
        "lasso_cv": _sklearn(lambda: lm.LassoCV(cv=5, max_iter=50_000, random_state=0)),
    }
    return fixed, adaptive, learned, extra


_FIXED, _ADAPTIVE, _LEARNED, _EXTRA = _models()
#: Fixed choices (one prior / penalty / model for every scenario and size): the rivals a
#: learned-scale model is compared with cell by cell (:func:`~.summaries.headline`).
FIXED_MODELS: tuple[str, ...] = tuple(_FIXED)
#: Baselines that tune their penalty on the data (scikit-learn).
ADAPTIVE_MODELS: tuple[str, ...] = tuple(_ADAPTIVE)
#: Models with learned prior scales for base and interaction weights.
LEARNED_MODELS: tuple[str, ...] = tuple(_LEARNED)
#: Every model the study knows by name; ``run_study(models=None)`` runs
#: :data:`STUDY_MODELS` (all but the opt-in local-global rows and ``lasso_cv``).
MODELS: dict[str, Callable] = {**_FIXED, **_ADAPTIVE, **_LEARNED, **_EXTRA}
STUDY_MODELS: tuple[str, ...] = (*_FIXED, *_ADAPTIVE, *_LEARNED)
#: The models sampled by NUTS (the longest cells: the runner schedules them first).
NUTS_MODELS: tuple[str, ...] = (
    "learned_half_cauchy",
    "learned_gamma",
    "learned_horseshoe",
    "learned_r2d2",
    "learned_horseshoe_dense",
    "learned_horseshoe_group_slab",
)


def compile_designs(
    x_dims: Sequence[int] = (2, 6, 10), families: Sequence[str] = ("half_cauchy", "gamma")
) -> dict[str, float]:
    """Compile the collapsed NUTS model for each (design shape, hyperprior family) in this
    process and return the seconds each took (0 if it was already cached here).

    Run on every dask worker (``client.run(compile_designs)``) to pay the compilation up
    front; later fits of the same shape only swap data into the cached sampler.
    """
    rng = np.random.default_rng(0)
    times = {}
    for p in x_dims:
        X = rng.uniform(-1, 1, size=(30, p))
        y = X.sum(axis=1) + rng.normal(size=30)
        for family in families:
            fn = _learned(family)
            start = time.perf_counter()
            with single_threaded_blas():
                out = fn(X, y, X, settings=StudySettings(draws=5, tune=5, chains=1), seed=0)
            times[f"x_dim={p} {family}"] = (
                time.perf_counter() - start if out.extras["compiled"] else 0.0
            )
    return times
