r"""The learning-curve study of the seed notebook, run cell by cell on dask.distributed.

How fast do models with interaction terms converge as the training set grows, and does a
model that *learns* its prior scales get the best of both worlds: the base model's speed
on little data and the interaction model's accuracy on a lot?

For a scenario (a configuration of :func:`~bayesmoe.experiments.make_interaction_data`)
and a replicate :math:`r`, one data set of ``n`` rows is drawn; the first half is the
training pool and the second half the test set, as in the seed. Each model is fitted to
the first :math:`n_k` training rows for every :math:`n_k` of the seed's log grid
(:func:`training_sizes`) and scored on the test half by

.. math::

    \text{mse}_k = \frac1{m}\sum_{i \in \text{test}} (\hat y_i - y_i)^2, \qquad
    \text{excess}_k = \frac1{m}\sum_{i \in \text{test}} (\hat y_i - f(x_i))^2,

where :math:`f` is the true mean, so :math:`\text{mse} \approx \text{excess} + \sigma^2`.
The cumulative regret (the seed's TODO) prices every training row at the excess risk of
the model fitted on the grid block that contains it:

.. math::

    \text{regret}_k = \sum_{j \le k} (n_j - n_{j-1})\, \text{excess}_j, \qquad n_0 = 0,

i.e. the total excess squared error if rows arrived one by one and the model were
refitted at every grid size.

A *cell* is one (scenario, replicate, model): it fits all grid sizes of one data set and
is the unit of work sent to a dask worker. Cells are saved one Parquet file each as they
finish (atomically), so an interrupted study resumes where it stopped, and a cell that
raises is saved with its error instead of stopping the others.

The learned-hyperprior models are :func:`~bayesmoe.builders.interaction_regression` in its
collapsed form, fitted by :func:`bayesmoe.fit` with nutpie: the compiled sampler is cached
by model structure, so each worker compiles once per (design shape, hyperprior family) and
every later fit swaps its sufficient statistics in; a fit's cost does not grow with
:math:`n`.
"""

from __future__ import annotations

import numbers
import os
import time
import traceback
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bayesmoe.data import interaction_design
from bayesmoe.experiments.simulate import make_interaction_data
from bayesmoe.numerics.blas import single_threaded_blas
from bayesmoe.priors import LOCAL_GLOBAL_FAMILIES, Prior, horseshoe_global_scale

__all__ = [
    "ADAPTIVE_MODELS",
    "ALL_SCENARIOS",
    "FIXED_MODELS",
    "LEARNED_MODELS",
    "MODELS",
    "SCENARIOS",
    "STUDY_MODELS",
    "WORKER_ENV",
    "Scenario",
    "StudySettings",
    "cell_path",
    "compile_designs",
    "gather",
    "grid_average",
    "headline",
    "run_cell",
    "run_study",
    "summary_text",
    "training_sizes",
    "write_parquet_atomic",
    "write_report",
]


# -- scenarios --------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    """One configuration of the seed's generator (``n`` rows, half train, half test)."""

    name: str
    x_dim: int
    noise_level: float
    interaction_scale: float
    n: int = 10_000
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Scenario name must be a non-empty string, got {self.name!r}")
        for arg in ("x_dim", "n"):
            value = getattr(self, arg)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"Scenario {arg} must be a positive integer, got {value!r}")
        if self.n < 4:
            raise ValueError(f"Scenario n must be >= 4 (half is the test set), got {self.n}")
        if not (np.isfinite(self.noise_level) and self.noise_level > 0):
            raise ValueError(f"Scenario noise_level must be positive, got {self.noise_level!r}")
        if not (np.isfinite(self.interaction_scale) and self.interaction_scale >= 0):
            raise ValueError(
                f"Scenario interaction_scale must be >= 0, got {self.interaction_scale!r}"
            )

    @property
    def n_train(self) -> int:
        return self.n // 2


#: The seed's scenarios (all with n = 10 000, so 5 000 training rows at most).
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("no_interaction", 6, 2.0, 0.0, description="no interactions at all"),
        Scenario("weak_interaction", 6, 2.0, 0.01, description="the seed's default"),
        Scenario("strong_interaction", 6, 2.0, 1.0, description="interactions as big as base"),
        Scenario("very_strong_interaction", 6, 2.0, 3.0, description="interactions dominate"),
        Scenario("many_features", 10, 0.5, 0.05, description="45 interactions, low noise"),
        Scenario("few_features_low_noise", 2, 0.1, 1.0, description="regularisation should hurt"),
        # The seed's two other cells; run them by name (not part of "all").
        Scenario("low_noise", 6, 0.5, 0.05, description="low noise, small interactions"),
        Scenario("few_features_high_noise", 2, 2.0, 0.05, description="heavy regularisation"),
    )
}
#: The six scenarios of ``--scenario all`` (interaction scale 0 .. 3, noise 0.1 .. 2,
#: 2, 6 or 10 features).
ALL_SCENARIOS: tuple[str, ...] = (
    "no_interaction",
    "weak_interaction",
    "strong_interaction",
    "very_strong_interaction",
    "many_features",
    "few_features_low_noise",
)


def training_sizes(n_train: int, n_points: int = 20) -> np.ndarray:
    """The seed's grid: ``n_points`` log-spaced sizes from 10 to the next power of ten,
    clipped to ``n_train`` and deduplicated (18 sizes for ``n_train = 5000``)."""
    if n_train < 2:
        raise ValueError(f"n_train must be >= 2, got {n_train}")
    top = np.ceil(np.log10(n_train))
    grid = np.logspace(1, max(top, 1.0), n_points).astype(int)
    return np.unique(np.clip(grid, 2, n_train))


@dataclass(frozen=True)
class StudySettings:
    """Sampler settings of the NUTS models and the study's master seed."""

    draws: int = 500
    tune: int = 500
    chains: int = 2
    n_points: int = 20
    seed: int = 0
    max_n_train: int | None = None  # cap the grid (tests, quick looks)

    def __post_init__(self):
        for arg, low in (("draws", 1), ("tune", 0), ("chains", 1), ("n_points", 2), ("seed", 0)):
            value = getattr(self, arg)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{arg} must be an integer >= {low}, got {value!r}")
        if self.max_n_train is not None and self.max_n_train < 10:
            raise ValueError(f"max_n_train must be >= 10, got {self.max_n_train}")

    def sizes(self, scenario: Scenario) -> np.ndarray:
        grid = training_sizes(scenario.n_train, self.n_points)
        if self.max_n_train is not None:
            grid = grid[grid <= self.max_n_train]
        return grid


# -- models ----------------------------------------------------------------------------
@dataclass
class _Fit:
    """What a model returns for one training size."""

    y_pred: np.ndarray
    extras: dict = field(default_factory=dict)


class _Working:
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
    """Base features and their raw pairwise products (the seed's PolynomialFeatures)."""
    return np.column_stack([X, interaction_design(X, _pairs(X.shape[1]))])


def _sklearn(make: Callable, interactions: bool = True):
    def fit_predict(X, y, X_test, **_):
        model = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ARD/BayesianRidge convergence chatter at tiny n
            if interactions:
                model.fit(_full_design(X), y)
                return _Fit(model.predict(_full_design(X_test)))
            model.fit(X, y)
            return _Fit(model.predict(X_test))

    return fit_predict


def _conjugate(base_var: float, interaction_var: float):
    """The seed's ``BayesLinearRegressor`` at its prior variances, noise sd 1, intercept
    prior variance 1, on the raw design (exactly the seed's settings)."""

    def fit_predict(X, y, X_test, **_):
        from bayesmoe.numerics.conjugate import ConjugateLinearRegression

        p = X.shape[1]
        q = p * (p - 1) // 2
        sd = np.sqrt(np.concatenate([[1.0], np.full(p, base_var), np.full(q, interaction_var)]))
        reg = ConjugateLinearRegression(np.zeros(sd.size), sd, 1.0).fit(_full_design(X), y)
        return _Fit(reg.predict(_full_design(X_test)))

    return fit_predict


#: Intercept prior sd on the working scale, as in the builder's defaults.
_INTERCEPT_SD = 2.5


def _empirical_bayes(X, y, X_test, **_):
    r"""Type-II maximum likelihood: :math:`(\tau_b, \tau_i, \sigma)` maximise the collapsed
    marginal likelihood :func:`~bayesmoe.numerics.conjugate.log_marginal_likelihood` (the
    same priors as the NUTS models on the working scale); predict with the posterior mean
    of the weights at the optimum."""
    from scipy import optimize

    from bayesmoe.numerics.conjugate import log_marginal_likelihood

    w = _Working(X, y)
    D = w.design(X)
    xtx, xty, yty, n = D.T @ D, D.T @ w.y, float(w.y @ w.y), len(w.y)
    p = X.shape[1]
    q = D.shape[1] - 1 - p
    mean = np.zeros(D.shape[1])

    def precision(log_tb, log_ti):
        return np.concatenate(
            [[_INTERCEPT_SD**-2], np.full(p, np.exp(-2 * log_tb)), np.full(q, np.exp(-2 * log_ti))]
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
    return _Fit(
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
        from bayesmoe import fitting
        from bayesmoe.builders.interaction import interaction_regression

        w = _Working(X, y)
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
        compiled = not fitting.is_compiled(model.bayesmoe_spec.cache_key)
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
        report = fitting.diagnose(idata, var_names=hyper)
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
        return _Fit(
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
        # the seed's BayesLinearRegressor settings: prior variances (base, interaction)
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
    # Issue 18's rows, by name only (not in the default study: two more NUTS fits per
    # cell): the local-global priors and the lasso baseline.
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
#: Fixed choices (one prior / penalty / model for every scenario and size): the bar's rivals.
FIXED_MODELS: tuple[str, ...] = tuple(_FIXED)
#: Baselines that tune their penalty on the data (scikit-learn).
ADAPTIVE_MODELS: tuple[str, ...] = tuple(_ADAPTIVE)
#: Models with learned prior scales for base and interaction weights.
LEARNED_MODELS: tuple[str, ...] = tuple(_LEARNED)
#: Every model the study knows by name; ``run_study(models=None)`` runs
#: :data:`STUDY_MODELS` (all but the opt-in local-global rows and ``lasso_cv``).
MODELS: dict[str, Callable] = {**_FIXED, **_ADAPTIVE, **_LEARNED, **_EXTRA}
STUDY_MODELS: tuple[str, ...] = (*_FIXED, *_ADAPTIVE, *_LEARNED)
_NUTS_MODELS = (
    "learned_half_cauchy",
    "learned_gamma",
    "learned_horseshoe",
    "learned_r2d2",
    "learned_horseshoe_dense",
    "learned_horseshoe_group_slab",
)


# -- one cell ---------------------------------------------------------------------------
def _stable_id(text: str) -> int:
    return zlib.crc32(text.encode())


def _data_seed(
    settings: StudySettings, scenario: Scenario, replicate: int
) -> np.random.SeedSequence:
    return np.random.SeedSequence([settings.seed, _stable_id(scenario.name), replicate])


def _call_model(fn, X, y, X_test, settings, seed) -> _Fit:
    if fn in MODELS.values():
        return fn(X, y, X_test, settings=settings, seed=seed)
    out = fn(X, y, X_test)  # a user model: the seed's f(x_train, y_train, x_test) -> y_pred
    if isinstance(out, _Fit):
        return out
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping):
        return _Fit(np.asarray(out[0], float), dict(out[1]))
    return _Fit(np.asarray(out, float))


def run_cell(
    scenario: Scenario,
    replicate: int,
    model: str | tuple[str, Callable],
    settings: StudySettings | None = None,
) -> pd.DataFrame:
    """Fit one model on every grid size of one replicate data set; one row per size.

    Parameters
    ----------
    scenario : Scenario
    replicate : int
        Replicate index; with ``settings.seed`` and the scenario name it fixes the data,
        so every model of a (scenario, replicate) sees the same rows.
    model : str or (name, callable)
        A name of :data:`MODELS`, or a user model ``f(X_train, y_train, X_test) ->
        y_pred`` (base features only; build interactions inside) given with its name.
    settings : StudySettings, optional

    Returns
    -------
    pandas.DataFrame
        Columns ``scenario, replicate, n_train, model, mse, excess_mse, regret,
        fit_seconds, status, error`` and model extras (learned ``tau_base``,
        ``tau_interaction``, ``sigma`` on the original scale; NUTS diagnostics), plus
        the truth ``true_tau_base``, ``true_tau_interaction`` (root mean square of the
        generating weights) and ``noise_level``. A size whose fit raises gets
        ``status="error"`` and the traceback's last line in ``error``.
    """
    settings = settings or StudySettings()
    name, fn = (model, MODELS[model]) if isinstance(model, str) else model
    data = make_interaction_data(
        scenario.n,
        scenario.x_dim,
        scenario.noise_level,
        scenario.interaction_scale,
        seed=np.random.default_rng(_data_seed(settings, scenario, replicate)),
    )
    X, y = data.X.to_numpy(), data.y
    half = scenario.n // 2
    split = (X[:half], y[:half], X[half:], y[half:], data.signal[half:])
    sizes = settings.sizes(scenario)
    fit_seeds = np.random.SeedSequence(
        [settings.seed, _stable_id(scenario.name), replicate, _stable_id(name)]
    ).generate_state(len(sizes))
    truth = {
        "true_tau_base": float(np.sqrt(np.mean(data.w_base**2))),
        "true_tau_interaction": float(np.sqrt(np.mean(data.w_interaction**2)))
        if data.w_interaction.size
        else np.nan,
        "noise_level": scenario.noise_level,
    }
    rows = []
    with single_threaded_blas():
        for n_k, seed in zip(sizes, fit_seeds, strict=True):
            rows.append(_fit_row(name, fn, scenario, replicate, n_k, seed, truth, settings, split))
    df = pd.DataFrame(rows)
    block = np.diff(np.concatenate([[0], df["n_train"].to_numpy()]))
    df["regret"] = np.cumsum(block * df["excess_mse"].to_numpy())
    return _tidy(df)


def _fit_row(name, fn, scenario, replicate, n_k, seed, truth, settings, split) -> dict:
    X_train, y_train, X_test, y_test, signal_test = split
    row = {
        "scenario": scenario.name,
        "replicate": int(replicate),
        "n_train": int(n_k),
        "model": name,
        "status": "ok",
        "error": "",
        **truth,
    }
    start = time.perf_counter()
    try:
        out = _call_model(fn, X_train[:n_k], y_train[:n_k], X_test, settings, int(seed))
        y_pred = np.asarray(out.y_pred, float).ravel()
        if y_pred.shape != y_test.shape or not np.all(np.isfinite(y_pred)):
            raise ValueError(
                f"model {name!r} returned {y_pred.shape} predictions "
                f"(finite: {bool(np.all(np.isfinite(y_pred)))}); need {y_test.shape}"
            )
        row["mse"] = float(np.mean((y_pred - y_test) ** 2))
        row["excess_mse"] = float(np.mean((y_pred - signal_test) ** 2))
        row.update(out.extras)
    except Exception as err:  # a failed fit is a result to record, not a crash
        row.update(status="error", error=_one_line(err), mse=np.nan, excess_mse=np.nan)
    row["fit_seconds"] = time.perf_counter() - start
    return row


def _one_line(err: BaseException) -> str:
    tb = traceback.extract_tb(err.__traceback__)
    where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(err).__name__}: {err}{where}"[:500]


_COLUMNS = [
    "scenario",
    "replicate",
    "n_train",
    "model",
    "mse",
    "excess_mse",
    "regret",
    "fit_seconds",
    "tau_base",
    "tau_interaction",
    "sigma",
    "true_tau_base",
    "true_tau_interaction",
    "noise_level",
    "rhat_max",
    "ess_bulk_min",
    "divergences",
    "compiled",
    "sample_seconds",
    "status",
    "error",
]


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    for col in _COLUMNS:
        if col not in df:
            df[col] = np.nan
    floats = [c for c in _COLUMNS if c not in ("scenario", "model", "status", "error")]
    floats = [c for c in floats if c not in ("replicate", "n_train", "compiled")]
    df[floats] = df[floats].astype(float)
    df["compiled"] = df["compiled"].astype("boolean")
    extra = [c for c in df.columns if c not in _COLUMNS]
    return df[_COLUMNS + extra]


# -- the study --------------------------------------------------------------------------
#: One thread per BLAS/numba pool in each worker: a worker is one core's worth of work.
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


def _resolve_scenarios(scenarios) -> list[Scenario]:
    if isinstance(scenarios, Scenario):
        return [scenarios]
    if isinstance(scenarios, str):
        scenarios = ALL_SCENARIOS if scenarios == "all" else [scenarios]
    out = []
    for s in scenarios:
        if isinstance(s, Scenario):
            out.append(s)
        elif s in SCENARIOS:
            out.append(SCENARIOS[s])
        else:
            raise ValueError(
                f"scenario {s!r} is not known; choose 'all' or one of {sorted(SCENARIOS)}"
            )
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"scenarios must have distinct names, got {names}")
    return out


def _resolve_models(models) -> list[str | tuple[str, Callable]]:
    if models is None:
        return list(STUDY_MODELS)
    if isinstance(models, str):
        models = [models]
    items: Iterable = models.items() if isinstance(models, Mapping) else models
    out = []
    for m in items:
        if isinstance(m, str):
            if m not in MODELS:
                raise ValueError(f"model {m!r} is not known; choose from {list(MODELS)}")
            out.append(m)
        elif isinstance(m, tuple) and len(m) == 2 and isinstance(m[0], str) and callable(m[1]):
            out.append(m[0] if m[1] is MODELS.get(m[0]) else m)
        else:
            raise TypeError(
                f"models entries must be model names or (name, callable) pairs, got {m!r}"
            )
    return out


def _model_name(m) -> str:
    return m if isinstance(m, str) else m[0]


def cell_path(out: Path, scenario: str, replicate: int, model: str) -> Path:
    """Where a cell is saved: ``out/cells/<scenario>/<model>/r<replicate>.parquet``."""
    return Path(out) / "cells" / scenario / model / f"r{replicate:04d}.parquet"


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> Path:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _done(path: Path, retry_failed: bool) -> bool:
    if not path.exists():
        return False
    if not retry_failed:
        return True
    try:
        status = pd.read_parquet(path, columns=["status"])["status"]
    except Exception:  # unreadable: redo the cell
        return False
    return bool((status == "ok").all())


def _failed_cell(scenario: Scenario, replicate: int, name: str, err: BaseException):
    df = pd.DataFrame(
        [
            {
                "scenario": scenario.name,
                "replicate": int(replicate),
                "n_train": -1,
                "model": name,
                "status": "error",
                "error": _one_line(err),
            }
        ]
    )
    return _tidy(df)


def _open_client(scheduler: str | None, n_workers: int):
    from distributed import Client, LocalCluster

    if scheduler is not None:
        return Client(scheduler), None
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        env=WORKER_ENV,
    )
    return Client(cluster), cluster


def run_study(
    scenarios: str | Sequence[str | Scenario] = "all",
    replicates: int = 20,
    out: str | os.PathLike = "convergence_study",
    *,
    models: Sequence | Mapping | None = None,
    settings: StudySettings | None = None,
    scheduler: str | None = None,
    n_workers: int = 2,
    client=None,
    progress: bool = True,
    retry_failed: bool = True,
) -> pd.DataFrame:
    """Run (or resume) the learning-curve study on dask.distributed.

    Every (scenario, replicate, model) cell is a dask task. Results stream back as they
    finish (tqdm bar) and each is saved to :func:`cell_path` at once, atomically; cells
    already saved are skipped, so re-running the same command resumes an interrupted
    study. At the end all requested cells are gathered into ``out/results.parquet``.

    Parameters
    ----------
    scenarios : "all", a name, or a sequence of names / :class:`Scenario`
    replicates : int
        Data sets per scenario (R).
    out : path
        Output folder.
    models : sequence of names, mapping name -> callable, or None (all of :data:`MODELS`)
    settings : StudySettings, optional
    scheduler : str, optional
        Address of an existing dask scheduler (``tcp://host:port``); default is a
        ``LocalCluster`` of ``n_workers`` single-threaded worker processes.
    n_workers : int
        Workers of the local cluster.
    client : distributed.Client, optional
        Use this client (and leave it open).
    progress : bool
    retry_failed : bool
        Re-run cells saved with an error (default) rather than keep them.

    Returns
    -------
    pandas.DataFrame
        The tidy table of :func:`run_cell` rows for all requested cells.
    """
    scen = _resolve_scenarios(scenarios)
    if isinstance(replicates, bool) or not isinstance(replicates, numbers.Integral):
        raise TypeError(f"replicates must be an integer, got {replicates!r}")
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {replicates}")
    if isinstance(n_workers, bool) or not isinstance(n_workers, numbers.Integral) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
    if scheduler is not None and not (isinstance(scheduler, str) and "://" in scheduler):
        raise ValueError(f"scheduler must be an address like 'tcp://host:8786', got {scheduler!r}")
    model_list = _resolve_models(models)
    settings = settings or StudySettings()
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(f"out={str(out)!r} cannot be created: {err}") from err

    cells = [(s, r, m) for s in scen for r in range(replicates) for m in model_list]
    # Replicate by replicate (a stopped study holds complete replicates), and within one
    # longest first: the NUTS cells, the widest designs among them, so that cheap cells
    # fill the gaps and no worker is left finishing a long cell alone at the end.
    cells.sort(key=lambda c: (c[1], _model_name(c[2]) not in _NUTS_MODELS, -c[0].x_dim))
    todo = [
        c
        for c in cells
        if not _done(cell_path(out, c[0].name, c[1], _model_name(c[2])), retry_failed)
    ]
    _write_manifest(out, scen, replicates, model_list, settings)
    if todo:
        start = time.time()
        load = os.getloadavg()
        _run_cells(todo, out, settings, scheduler, n_workers, client, progress)
        _log_run(out, start, len(todo), len(cells), scheduler, n_workers, client, load)
    return gather(out, scen, replicates, model_list)


def _log_run(out, start, n_run, n_cells, scheduler, n_workers, client, load) -> None:
    """Append this run's wall time and machine load to ``out/runs.jsonl``."""
    import json

    record = {
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
        "wall_seconds": round(time.time() - start, 1),
        "cells_run": n_run,
        "cells_requested": n_cells,
        "workers": "client" if client is not None else scheduler or n_workers,
        "loadavg_start": [round(x, 2) for x in load],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    with open(out / "runs.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _write_manifest(out, scen, replicates, model_list, settings) -> None:
    import json

    manifest = {
        "scenarios": [asdict(s) for s in scen],
        "replicates": replicates,
        "models": [_model_name(m) for m in model_list],
        "settings": asdict(settings),
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / "manifest.json")


def _run_cells(todo, out, settings, scheduler, n_workers, client, progress) -> None:
    from distributed import as_completed
    from tqdm.auto import tqdm

    own_client = client is None
    cluster = None
    if own_client:
        client, cluster = _open_client(scheduler, n_workers)
    try:
        futures = {}
        for s, r, m in todo:
            fut = client.submit(
                run_cell, s, r, m, settings, pure=False, key=f"cell-{s.name}-{r}-{_model_name(m)}"
            )
            futures[fut] = (s, r, m)
        bar = tqdm(total=len(futures), desc="cells", unit="cell", disable=not progress)
        failed = 0
        for fut in as_completed(futures):
            s, r, m = futures[fut]
            try:
                df = fut.result()
            except Exception as err:  # the worker died or the task could not run at all
                df = _failed_cell(s, r, _model_name(m), err)
            failed += int((df["status"] != "ok").any())
            write_parquet_atomic(df, cell_path(out, s.name, r, _model_name(m)))
            fut.release()
            bar.update(1)
            bar.set_postfix(failed=failed)
        bar.close()
    finally:
        if own_client:
            client.close()
            if cluster is not None:
                cluster.close()


def gather(
    out: str | os.PathLike,
    scenarios: Sequence[Scenario] | None = None,
    replicates: int | None = None,
    models: Sequence | None = None,
) -> pd.DataFrame:
    """Collect saved cells into one table and write ``out/results.parquet`` atomically.

    With no selection, every saved cell under ``out/cells`` is collected.
    """
    out = Path(out)
    if scenarios is None:
        paths = sorted((out / "cells").glob("*/*/r*.parquet"))
    else:
        paths = [
            cell_path(out, s.name, r, _model_name(m))
            for s in scenarios
            for r in range(replicates)
            for m in models
        ]
        paths = [p for p in paths if p.exists()]
    if not paths:
        raise OSError(f"no saved cells under {out / 'cells'}")
    df = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    df = _tidy(df).sort_values(["scenario", "model", "replicate", "n_train"], ignore_index=True)
    write_parquet_atomic(df, out / "results.parquet")
    return df


# -- summaries --------------------------------------------------------------------------
def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["status"] == "ok") & (df["n_train"] > 0)]


def headline(
    df: pd.DataFrame,
    learned: str = "learned_half_cauchy",
    rivals: Sequence[str] | None = None,
) -> pd.DataFrame:
    r"""Per (scenario, n_train): the learned model against the best rival and both OLS.

    The best rival is the model in ``rivals`` (default: every fixed choice,
    :data:`FIXED_MODELS`) with the lowest mean test MSE at that cell. Differences are
    paired over replicates (same data for every model), with standard error
    :math:`\mathrm{sd}(\Delta_r)/\sqrt R`; ``holds`` is ``mean diff <= 2 se``.
    """
    rivals = list(rivals or FIXED_MODELS)
    ok = _ok(df)
    wide = ok.pivot_table(
        index=["scenario", "n_train", "replicate"], columns="model", values="mse"
    )
    if learned not in wide:
        raise ValueError(f"learned={learned!r} has no results; models are {list(wide.columns)}")
    rivals = [r for r in rivals if r in wide.columns]
    rows = []
    for (scen, n), g in wide.groupby(level=["scenario", "n_train"]):
        g = g.dropna(subset=[learned])
        means = g[rivals].mean()
        best = str(means.idxmin())
        row = {"scenario": scen, "n_train": n, "R": len(g), learned: g[learned].mean()}
        for label, rival in (
            ("best", best),
            ("ols_base", "ols_base"),
            ("ols_int", "ols_interaction"),
        ):
            if rival not in g:
                continue
            d = (g[learned] - g[rival]).dropna()
            row[f"{label}_model"] = rival
            row[f"{label}_mse"] = g[rival].mean()
            row[f"diff_vs_{label}"] = d.mean()
            row[f"se_vs_{label}"] = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.nan
        row["holds"] = bool(row["diff_vs_best"] <= 2 * np.nan_to_num(row["se_vs_best"]))
        rows.append(row)
    return pd.DataFrame(rows)


def grid_average(df: pd.DataFrame, normalise: bool = True) -> pd.Series:
    r"""Each model's test MSE averaged over every (scenario, n_train) cell of the grid.

    With ``normalise`` each MSE is divided by the scenario's noise variance
    :math:`\sigma^2` first (the Bayes risk, so 1 is perfect), which stops the high-noise
    scenarios from dominating the average. Sorted, best first; only cells where every
    model has a result count.
    """
    ok = _ok(df).copy()
    value = ok["mse"] / ok["noise_level"] ** 2 if normalise else ok["mse"]
    ok = ok.assign(value=value)
    cell = ok.groupby(["scenario", "n_train", "model"])["value"].mean().unstack("model")
    return cell.dropna().mean().sort_values()


def write_report(df: pd.DataFrame, out: str | os.PathLike, learned: str = "learned_half_cauchy"):
    """Write the plots (PNG), the headline table and the grid averages (CSV) into ``out``.

    Returns a dict of what was written, keyed by short names.
    """
    from bayesmoe.experiments import study_plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {
        "learning_curves": study_plots.plot_learning_curves(df, out / "learning_curves.png"),
        "excess_curves": study_plots.plot_learning_curves(
            df, out / "excess_curves.png", metric="excess_mse"
        ),
        "regret": study_plots.plot_regret(df, out / "regret.png"),
    }
    if df["model"].isin(LEARNED_MODELS).any():
        written["scales"] = study_plots.plot_scales(df, out / "scales.png")
    if learned in set(df["model"]):
        table = headline(df, learned=learned)
        table.to_csv(out / "headline.csv", index=False)
        written["headline"] = out / "headline.csv"
    grid = grid_average(df)
    grid.rename("mse_over_noise_var").to_csv(out / "grid_average.csv")
    written["grid_average"] = out / "grid_average.csv"
    return written


def summary_text(df: pd.DataFrame, learned: str = "learned_half_cauchy") -> str:
    """A few lines stating the bar's outcome with numbers."""
    table = headline(df, learned=learned)
    grid = grid_average(df)
    fixed = grid[[m for m in FIXED_MODELS if m in grid.index]]
    lines = [
        f"cells (scenario x size): {len(table)}, replicates per cell: {int(table['R'].min())}"
        f"-{int(table['R'].max())}",
        f"{learned} within 2 s.e. of the best fixed choice at {int(table['holds'].sum())}"
        f"/{len(table)} cells",
        f"grid-averaged MSE/sigma^2: {learned} {grid.get(learned, np.nan):.4f}; best fixed "
        f"{fixed.idxmin()} {fixed.min():.4f}; worst fixed {fixed.idxmax()} {fixed.max():.4f}",
    ]
    bad = table[~table["holds"]]
    for _, r in bad.head(12).iterrows():
        lines.append(
            f"  worse at {r['scenario']} n={r['n_train']}: {r[learned]:.4g} vs "
            f"{r['best_model']} {r['best_mse']:.4g} (diff {r['diff_vs_best']:.3g}, "
            f"se {r['se_vs_best']:.2g})"
        )
    return "\n".join(lines)


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
