"""Likelihood families: the family term's densities, and the interaction model with them."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
from scipy import stats

from bayesmoe.builders.terms.likelihood import FAMILIES, get_family

RNG = np.random.default_rng(0)
ETA = RNG.normal(0.3, 1.0, size=(2, 3, 7))  # (chain, draw, obs)
TRIALS = RNG.integers(1, 9, size=7).astype(float)
OFFSET = np.log(RNG.uniform(0.5, 2.0, size=7))
PARAMS = {
    "sigma": RNG.uniform(0.5, 2.0, size=(2, 3, 1)),
    "nu": RNG.uniform(1.5, 30.0, size=(2, 3, 1)),
    "alpha": RNG.uniform(0.3, 5.0, size=(2, 3, 1)),
}


def _y(name):
    if name == "bernoulli":
        return RNG.integers(0, 2, size=7).astype(float)
    if name == "binomial":
        return np.floor(TRIALS * RNG.uniform(size=7))
    if name in ("poisson", "negative_binomial"):
        return RNG.poisson(2.0, size=7).astype(float)
    return RNG.normal(size=7)


def _scipy(name, y, eta):
    sigma, nu, alpha = PARAMS["sigma"], PARAMS["nu"], PARAMS["alpha"]
    if name == "gaussian":
        return stats.norm.logpdf(y, eta, sigma)
    if name == "student_t":
        return stats.t.logpdf(y, nu, eta, sigma)
    if name == "bernoulli":
        return stats.bernoulli.logpmf(y, 1 / (1 + np.exp(-eta)))
    if name == "binomial":
        return stats.binom.logpmf(y, TRIALS, 1 / (1 + np.exp(-eta)))
    mu = np.exp(eta + OFFSET)
    if name == "poisson":
        return stats.poisson.logpmf(y, mu)
    return stats.nbinom.logpmf(y, alpha, alpha / (alpha + mu))


def _extras(name):
    return {
        "trials": TRIALS if name == "binomial" else None,
        "offset": OFFSET if name in ("poisson", "negative_binomial") else None,
    }


@pytest.mark.parametrize("name", FAMILIES)
def test_logpdf_matches_scipy(name):
    fam = get_family(name)
    y = _y(name)
    got = fam.logpdf(y, ETA, PARAMS, **_extras(name))
    np.testing.assert_allclose(got, _scipy(name, y, ETA), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", FAMILIES)
def test_observe_and_logp_match_pymc(name):
    """The observed variable's logp, the PyTensor logp and the numpy logpdf agree."""
    fam = get_family(name)
    y = _y(name)
    eta = ETA[0, 0]
    params = {k: float(v[0, 0, 0]) for k, v in PARAMS.items()}
    extras = _extras(name)
    with pm.Model() as model:
        fam.observe("y", pm.Data("eta", eta), y, params, **extras)
    observed = model.compile_logp(sum=False)({})[0]
    tensor = fam.logp(y, eta, params, **extras).eval()
    expected = fam.logpdf(y, eta, params, **extras)
    np.testing.assert_allclose(observed, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(tensor, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", FAMILIES)
def test_draws_have_the_mean(name):
    fam = get_family(name)
    eta = np.full(40_000, 0.4)
    params = {"sigma": 1.3, "nu": 5.0, "alpha": 2.0}
    extras = {
        "trials": np.full(40_000, 6.0) if name == "binomial" else None,
        "offset": np.full(40_000, 0.2) if fam.takes_exposure else None,
    }
    draws = fam.draw(np.random.default_rng(1), eta, params, **extras)
    mean = fam.mean(eta, params, **extras)
    se = draws.std() / np.sqrt(draws.size)
    assert abs(draws.mean() - mean.mean()) < 4 * se
    assert fam.check_y(draws, trials=extras["trials"]).shape == draws.shape


@pytest.mark.parametrize(
    ("name", "y", "match"),
    [
        ("bernoulli", [0.0, 2.0, 1.0], "y must be 0 or 1"),
        ("bernoulli", [0.0, 0.5, 1.0], "y must be 0 or 1"),
        ("poisson", [0.0, -1.0, 1.0], "y must be a whole number"),
        ("negative_binomial", [0.0, 1.5, 1.0], "y must be a whole number"),
    ],
)
def test_check_y_names_y(name, y, match):
    with pytest.raises(ValueError, match=match):
        get_family(name).check_y(np.asarray(y))


def test_binomial_needs_trials_and_y_within_them():
    fam = get_family("binomial")
    with pytest.raises(ValueError, match="trials="):
        fam.check_y(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="y exceeds trials"):
        fam.check_y(np.array([1.0, 4.0]), trials=np.array([2.0, 3.0]))
    with pytest.raises(ValueError, match="trials must be a whole number"):
        fam.check_extras(2, trials=[1.5, 2])
    with pytest.raises(ValueError, match="exposure= is only used"):
        fam.check_extras(2, trials=[1, 2], exposure=[1.0, 1.0])


def test_unknown_family_and_refusal_message():
    with pytest.raises(ValueError, match=r"family='logistic' is not known; choose one of"):
        get_family("logistic")
    with pytest.raises(ValueError, match=r'^family="poisson" does not support VEM; use NUTS$'):
        get_family("poisson").refuse("VEM", "NUTS")


def test_default_priors_per_family():
    assert set(get_family("gaussian").default_priors(2.0)) == {"sigma"}
    assert set(get_family("student_t").default_priors(2.0)) == {"sigma", "nu"}
    assert get_family("bernoulli").default_priors(2.0) == {}
    assert set(get_family("negative_binomial").default_priors(2.0)) == {"alpha"}


# ---------------------------------------------------------------------------- the model
import time  # noqa: E402
import warnings  # noqa: E402

import pandas as pd  # noqa: E402
from pymc_extras.prior import Prior  # noqa: E402

import bayesmoe as bm  # noqa: E402
from bayesmoe.builders.interaction import interaction_regression  # noqa: E402
from bayesmoe.experiments.calibration import SBCCase  # noqa: E402
from bayesmoe.priors import interaction_defaults  # noqa: E402

FAST = {"draws": 150, "tune": 200, "chains": 2, "random_seed": 3, "progressbar": False}
TRUE_W = np.array([1.0, -0.7])


def family_data(family: str, n: int = 160, seed: int = 0):
    """Two features (the second on a large scale and shifted), one interaction."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 2))
    eta = 0.2 + Z @ TRUE_W + 0.3 * Z[:, 0] * Z[:, 1]
    X = pd.DataFrame({"a": Z[:, 0], "b": 10.0 * Z[:, 1] + 5.0})
    extras = {}
    if family == "gaussian":
        y = eta + 0.5 * rng.standard_normal(n)
    elif family == "student_t":
        y = eta + 0.5 * rng.standard_t(3, size=n)
    elif family == "bernoulli":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    elif family == "binomial":
        extras["trials"] = rng.integers(1, 8, size=n)
        y = rng.binomial(extras["trials"], 1 / (1 + np.exp(-eta)))
    else:
        extras["exposure"] = rng.uniform(0.5, 2.0, size=n)
        mu = extras["exposure"] * np.exp(0.5 * eta)
        y = rng.poisson(mu if family == "poisson" else rng.gamma(3.0, mu / 3.0))
    return X, y.astype(float), extras


@pytest.fixture(scope="module")
def fitted():
    """One fit per family (small draws), shared by the tests below."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in FAMILIES:
            X, y, extras = family_data(name)
            est = bm.InteractionRegression(family=name, **FAST).fit(X, y, **extras)
            out[name] = (est, X, y, extras)
    return out


@pytest.mark.parametrize("name", FAMILIES)
def test_family_fit_recovers_signs_and_scale(fitted, name):
    est, X, y, extras = fitted[name]
    post = est.idata_["posterior"]
    w = post["beta_base"].mean(("chain", "draw")).values
    sd = post["beta_base"].std(("chain", "draw")).values
    # user scale: b's coefficient is the standardised one / 10; the count families' truth
    # is half the linear predictor
    truth = TRUE_W * (0.5 if get_family(name).link == "log" else 1.0) / np.array([1.0, 10.0])
    assert np.all(np.sign(w) == np.sign(truth))
    assert np.all(np.abs(w - truth) < 4 * sd + 0.05 * np.abs(truth))
    # predictions on the response scale, draws in the family's support
    p = est.predict(X.iloc[:20], **{k: v[:20] for k, v in extras.items()})
    draws = est.predict_dist(X.iloc[:20], **{k: v[:20] for k, v in extras.items()}).values
    fam = get_family(name)
    if fam.discrete:
        assert np.all(draws == np.round(draws)) and np.all(draws >= 0)
        assert np.all(p >= 0)
        assert np.isclose(est.standardizer_.y_scale, 1.0) and est.standardizer_.y_mean == 0
    if name == "bernoulli":
        assert np.all((p > 0) & (p < 1)) and set(np.unique(draws)) <= {0.0, 1.0}
    ll = est.idata_["log_likelihood"]["y"]
    assert ll.shape[-1] == len(y)
    # the stored pointwise log-likelihood is the held-out density at the training rows
    lpd = est.pointwise_log_predictive_density(X, y, **extras)
    S = ll.sizes["chain"] * ll.sizes["draw"]
    from scipy.special import logsumexp

    expected = logsumexp(ll.values.reshape(S, -1), axis=0) - np.log(S)
    np.testing.assert_allclose(lpd, expected, rtol=1e-8)


def test_bernoulli_classifier_conventions(fitted):
    est, X, _, _ = fitted["bernoulli"]
    proba = est.predict_proba(X.iloc[:7])
    assert proba.shape == (7, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 1], est.predict(X.iloc[:7]))
    np.testing.assert_array_equal(est.classes_, [0, 1])
    np.testing.assert_array_equal(est.predict_label(X.iloc[:7]), (proba[:, 1] > 0.5).astype(int))
    gaussian = fitted["gaussian"][0]
    assert not hasattr(gaussian, "predict_proba") and not hasattr(gaussian, "classes_")


@pytest.mark.parametrize("name", ["bernoulli", "negative_binomial", "binomial"])
def test_family_save_load_round_trip(fitted, name, tmp_path):
    est, X, y, extras = fitted[name]
    path = est.save(tmp_path / "fit.nc")
    back = bm.load(path)
    assert back.family == name
    kw = {k: v[:9] for k, v in extras.items()}
    np.testing.assert_allclose(back.predict(X.iloc[:9], **kw), est.predict(X.iloc[:9], **kw))
    np.testing.assert_allclose(
        back.log_predictive_density(X, y, **extras), est.log_predictive_density(X, y, **extras)
    )


def test_compare_and_views_work_for_a_family(fitted):
    est, X, _, _ = fitted["bernoulli"]
    table = bm.compare({"a": est, "b": fitted["bernoulli"][0]}).table
    assert len(table) == 2
    effects = bm.conditional_effects(est, "a", data=X)
    # on the response scale: probabilities
    values = effects.select_dtypes("number").to_numpy()
    assert np.all(np.isfinite(values))


# ---------------------------------------------------------------------------- refusals
@pytest.fixture
def no_compile(monkeypatch):
    """Fail the test if anything reaches a model graph or a sampler."""

    def boom(*args, **kwargs):
        raise AssertionError("a model was built before the refusal")

    monkeypatch.setattr("bayesmoe.builders.interaction._build", boom)
    monkeypatch.setattr("bayesmoe.estimators.base.fit", boom)


@pytest.mark.parametrize(
    ("settings", "what", "alternative"),
    [
        ({"collapsed": True}, "collapsed form", "collapsed=False"),
        ({"prior": "r2d2"}, "prior='r2d2'", "prior='horseshoe'"),
        ({"method": "vem"}, "method='vem'", "method='nuts'"),
    ],
)
def test_refusals_are_one_line_before_compilation(no_compile, settings, what, alternative):
    X, y, _ = family_data("poisson", n=30)
    start = time.perf_counter()
    with pytest.raises(ValueError) as err:
        bm.InteractionRegression(family="poisson", **settings).fit(X, y)
    msg = str(err.value)
    assert "\n" not in msg and 'family="poisson"' in msg
    assert what in msg and f"use {alternative}" in msg
    assert time.perf_counter() - start < 2.0


def test_partial_fit_and_streamed_refused(no_compile):
    X, y, _ = family_data("bernoulli", n=30)
    est = bm.InteractionRegression(family="bernoulli")
    with pytest.raises(ValueError, match=r'^family="bernoulli" does not support partial_fit'):
        est.partial_fit(X, y)
    import dask.dataframe as dd

    frame = dd.from_pandas(X.assign(y=y), npartitions=2)
    with pytest.raises(ValueError, match=r'^family="bernoulli" does not support streamed fits'):
        est.fit(frame, "y")


def test_builder_auto_collapses_gaussian_only():
    X, y, _ = family_data("bernoulli", n=30)
    spec = interaction_regression(X, y, family="bernoulli", collapsed="auto").bayesmoe_spec
    assert not spec.collapsed and spec.likelihood == "bernoulli"
    with pytest.raises(ValueError, match=r'^family="bernoulli" does not support the collapsed'):
        interaction_regression(X, y, family="bernoulli", collapsed=True)
    student = interaction_regression(X, y, family="student_t", prior="r2d2")
    assert "nu" in student.named_vars and "sigma" in student.named_vars


@pytest.mark.parametrize(
    ("name", "y", "extras", "match"),
    [
        ("bernoulli", [0, 1, 2] * 10, {}, "y must be 0 or 1"),
        ("poisson", [0, 1, -1] * 10, {}, "y must be a whole number >= 0"),
        ("negative_binomial", [0, 1, 0.5] * 10, {}, "y must be a whole number >= 0"),
        ("binomial", [0, 1, 3] * 10, {"trials": [2] * 30}, "y exceeds trials"),
        ("binomial", [0, 1, 1] * 10, {}, "needs trials="),
        ("poisson", [0, 1, 1] * 10, {"exposure": [1, 0, 1] * 10}, "exposure must be positive"),
        ("bernoulli", [0, 1, 1] * 10, {"exposure": [1] * 30}, "exposure= is only used"),
        ("gaussian", [0, 1, 1] * 10, {"trials": [1] * 30}, "trials= is only used"),
    ],
)
def test_bad_y_per_family_names_the_argument(no_compile, name, y, extras, match):
    X, _, _ = family_data(name, n=30)
    with pytest.raises(ValueError, match=match):
        bm.InteractionRegression(family=name).fit(X, np.asarray(y, float), **extras)


def test_unknown_family_refused_before_build(no_compile):
    X, y, _ = family_data("gaussian", n=30)
    with pytest.raises(ValueError, match="family='logit' is not known"):
        bm.InteractionRegression(family="logit").fit(X, y)


def test_family_priors_overridable_and_checked():
    X, y, extras = family_data("negative_binomial", n=30)
    model = interaction_regression(
        X, y, family="negative_binomial", priors={"alpha": Prior("Gamma", alpha=2, beta=1)},
        **extras,
    )  # fmt: skip
    assert model.bayesmoe_spec.priors["alpha"].distribution == "Gamma"
    with pytest.raises(ValueError, match=r"priors\['alpha'\]: Normal is not a"):
        interaction_regression(X, y, family="negative_binomial", priors={"alpha": Prior("Normal")})
    with pytest.raises(ValueError, match="priors has unknown key 'sigma'"):
        interaction_regression(X, y, family="poisson", priors={"sigma": Prior("HalfNormal")})
    fixed = interaction_regression(X, y, family="student_t", priors={"nu": 4.0})
    assert "nu" not in fixed.named_vars and fixed.bayesmoe_spec.priors["nu"] == 4.0
    with pytest.raises(ValueError, match=r"priors\['nu'\] must be a positive"):
        interaction_regression(X, y, family="student_t", priors={"nu": -1.0})


# ---------------------------------------------------------------------------- SBC
def family_sbc_case(family: str, n_obs: int = 40) -> SBCCase:
    """The interaction model (2 features, 1 interaction) with ``family``, fixed priors.

    The priors do not depend on the simulated ``y`` (the defaults' centre would), and the
    weights' scales are half-normal so that simulated counts stay finite.
    """
    fam = get_family(family)
    priors = interaction_defaults("half_normal", y_location=0.0, y_scale=1.0)
    priors["intercept"] = Prior("Normal", mu=0.0, sigma=1.0)
    priors["tau_base"] = priors["tau_interaction"] = Prior("HalfNormal", sigma=0.7)
    if "sigma" not in fam.params:
        del priors["sigma"]
    priors |= {k: v for k, v in fam.default_priors(1.0).items() if k not in priors}
    extras = {}
    if fam.needs_trials:
        extras["trials"] = np.full(n_obs, 5.0)
    if fam.takes_exposure:
        extras["exposure"] = np.linspace(0.5, 2.0, n_obs)

    def build(X, y, fit_form):
        if not fit_form:  # the generative form: only the shapes of y matter
            y = np.zeros(n_obs)
        return interaction_regression(
            X, y, family=family, priors=priors, collapsed=False, **extras
        )

    def quantities(ds):
        out = {}
        for name in ("intercept", "beta_base", "beta_interaction", "tau_base", *fam.params):
            v = ds[name].transpose("sample", ...).values
            for j in range(v.shape[1]) if v.ndim > 1 else [None]:
                out[name if j is None else f"{name}[{j}]"] = v if j is None else v[:, j]
        return out

    return SBCCase(f"interaction_{family}", n_obs, 2, build, quantities)


@pytest.mark.full
@pytest.mark.parametrize("name", FAMILIES[1:])
def test_sbc_families(name):
    """The bar's check: 100 simulations per family, every quantity inside the 99 % band."""
    from bayesmoe.experiments.calibration import run_sbc

    result = run_sbc(family_sbc_case(name), 100, progressbar=False)
    assert result.failed == 0
    assert result.ok, result.table()


# ---------------------------------------------------------------------------- against PyMC
def _direct_pymc(family: str, Xw: np.ndarray, y: np.ndarray, exposure, location: float):
    """The same model written directly in PyMC (the default half-Cauchy priors)."""
    import pytensor.tensor as pt

    pairs = [(a, b) for a in range(Xw.shape[1]) for b in range(a + 1, Xw.shape[1])]
    Z = np.column_stack([Xw[:, a] * Xw[:, b] for a, b in pairs])
    with pm.Model() as model:
        b0 = pm.Normal("intercept", location, 2.5)
        tau_b = pm.HalfCauchy("tau_base", 1.0)
        tau_i = pm.HalfCauchy("tau_interaction", 1.0)
        w = pm.Deterministic("beta_base", tau_b * pm.Normal("zb", 0, 1, shape=Xw.shape[1]))
        v = pm.Deterministic("beta_interaction", tau_i * pm.Normal("zi", 0, 1, shape=len(pairs)))
        eta = b0 + pt.dot(Xw, w) + pt.dot(Z, v)
        if family == "bernoulli":
            pm.Bernoulli("y", logit_p=eta, observed=y)
        else:
            pm.Poisson("y", mu=pt.exp(eta + np.log(exposure)), observed=y)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bernoulli", "poisson"])
def test_posterior_means_agree_with_direct_pymc(name):
    """|mean difference| <= 4 combined MCSE for every weight (about 60 s per family)."""
    import arviz as az

    X, y, extras = family_data(name, n=120, seed=5)
    settings = {"draws": 1000, "tune": 1000, "chains": 2, "random_seed": 11, "progressbar": False}
    est = bm.InteractionRegression(family=name, **settings).fit(X, y, **extras)
    Xw = est.idata_["constant_data"]["X_base"].values
    location = float(est.model_.bayesmoe_spec.priors["intercept"].parameters["mu"])
    fam = get_family(name)
    offset = None if "exposure" not in extras else np.log(extras["exposure"])
    assert location == pytest.approx(fam.eta_location(y, offset=offset))
    with _direct_pymc(name, Xw, y, extras.get("exposure"), location):
        direct = pm.sample(1000, tune=1000, chains=2, random_seed=12, progressbar=False)
    names = ["intercept", "beta_base", "beta_interaction"]
    ours = az.summary(est.working_view(), var_names=names, round_to="none")
    theirs = az.summary(direct, var_names=names, round_to="none")
    diff = np.abs(ours["mean"].to_numpy() - theirs["mean"].to_numpy())
    mcse = np.hypot(ours["mcse_mean"].to_numpy(), theirs["mcse_mean"].to_numpy())
    assert np.all(diff <= 4 * mcse), pd.DataFrame({"diff": diff, "mcse": mcse})
