"""Every prior override a user may write (issue 19): built and finite, or refused clearly.

A hypothesis property test over every model, every ``priors[...]`` key it accepts, many
families (valid and not), parameter values (valid, zero, negative, non-finite, vectors of
right and wrong length, nested priors) and dims (none, the right ones, wrong ones). Each
case must either build a model whose log density and gradient are finite at PyMC's
initial point and at the sampler's EM start, or be refused with a ``ValueError`` /
``TypeError`` naming the ``priors[...]`` key, before anything is compiled. Anything else
(a PyTensor ``IndexError``, a NaN, a shape error from PyMC) fails.

``BAYESMOE_PRIOR_CASES`` sets the number of generated cases (80 in the fast tier; the
1000-case run is recorded in docs/priors/).
"""

from __future__ import annotations

import functools
import os
import warnings

import numpy as np
import pytensor
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from pymc.initial_point import make_initial_point_fn

import bayesmoe as bm
from bayesmoe.priors import POSITIVE_FAMILIES, Prior
from tests.conftest import FAST

CASES = int(os.environ.get("BAYESMOE_PRIOR_CASES", "80"))
#: Evaluating a log density needs no optimised C code: the Python linker compiles nothing.
PY_MODE = pytensor.compile.mode.Mode(linker="py", optimizer="fast_compile")

_rng = np.random.default_rng(0)
X3 = _rng.normal(size=(40, 3))
Y = X3[:, 0] - X3[:, 1] + np.where(X3[:, 2] > 0, 2.0, -2.0) + 0.3 * _rng.normal(size=40)

CONFIGS = {
    # collapsed="auto" as in the estimator (collapsed where the weight priors allow it)
    "interaction": lambda p: bm.interaction_regression(X3, Y, collapsed="auto", priors=p),
    "interaction_gamma": lambda p: bm.interaction_regression(
        X3, Y, prior="gamma", collapsed="auto", priors=p
    ),
    "interaction_rowwise": lambda p: bm.interaction_regression(X3, Y, collapsed=False, priors=p),
    "interaction_horseshoe": lambda p: bm.interaction_regression(
        X3, Y, prior="horseshoe", priors=p
    ),
    "interaction_r2d2": lambda p: bm.interaction_regression(X3, Y, prior="r2d2", priors=p),
    "interaction_r2d2_rowwise": lambda p: bm.interaction_regression(
        X3, Y, prior="r2d2", collapsed=False, priors=p
    ),
    "mixture": lambda p: bm.mixture_regression(X3[:, :2], Y, n_components=2, priors=p),
    "mixture_shared_noise": lambda p: bm.mixture_regression(
        X3[:, :2], Y, n_components=2, shared_noise=True, priors=p
    ),
    "gaussian_mixture": lambda p: bm.mixture_regression(None, Y, n_components=2, priors=p),
    "gated_linear": lambda p: bm.gated_experts(X3[:, :2], Y, n_experts=2, priors=p),
    "gated_mlp": lambda p: bm.gated_experts(
        X3[:, :2], Y, n_experts=2, gate="mlp", gate_hidden=2, priors=p
    ),
}

PARAMS = {
    "Normal": ("mu", "sigma"),
    "HalfNormal": ("sigma",),
    "HalfCauchy": ("beta",),
    "HalfStudentT": ("nu", "sigma"),
    "StudentT": ("nu", "mu", "sigma"),
    "Cauchy": ("alpha", "beta"),
    "Laplace": ("mu", "b"),
    "Gamma": ("alpha", "beta"),
    "InverseGamma": ("alpha", "beta"),
    "Exponential": ("lam",),
    "LogNormal": ("mu", "sigma"),
    "Uniform": ("lower", "upper"),
    "Dirichlet": ("a",),
    "Beta": ("alpha", "beta"),
    "Poisson": ("mu",),
    "Flat": (),
    "HalfFlat": (),
}


@functools.cache
def _keys(config: str) -> dict:
    """The config's prior keys with their default priors (all a user may override)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(CONFIGS[config](None).bayesmoe_spec.priors)


values = st.one_of(
    st.floats(0.2, 5.0),
    st.floats(0.2, 5.0),
    st.floats(-5.0, 5.0),
    st.sampled_from([0.0, -1.0, np.nan, np.inf, -np.inf]),
    st.lists(st.floats(0.2, 3.0), min_size=1, max_size=4).map(np.asarray),
    st.sampled_from(
        [
            Prior("HalfNormal", sigma=1.0),
            Prior("Normal", mu=0.0, sigma=1.0),
            Prior("Exponential", lam=1.0, dims="expert"),
        ]
    ),
)


#: Families a plausible override of each kind of variable uses (half the cases draw from
#: these with valid parameters, so that many cases build and are checked for finiteness).
PLAUSIBLE = {
    "positive": ("HalfNormal", "HalfCauchy", "Gamma", "Exponential", "LogNormal", "HalfStudentT"),
    "real": ("Normal", "StudentT", "Cauchy", "Laplace"),
    "simplex": ("Dirichlet",),
    "unit": ("Beta",),
}


def _kind(default) -> str:
    family = default.distribution if isinstance(default, Prior) else "HalfNormal"
    if family in ("Dirichlet",):
        return "simplex"
    if family in ("Beta",):
        return "unit"
    return "positive" if family in POSITIVE_FAMILIES else "real"


@st.composite
def cases(draw):
    config = draw(st.sampled_from(sorted(CONFIGS)))
    keys = _keys(config)
    key = draw(st.sampled_from(sorted(keys)))
    default = keys[key]
    own = tuple(default.dims or ()) if isinstance(default, Prior) else ()
    if draw(st.booleans()):  # a plausible override: the right kind of family, valid values
        family = draw(st.sampled_from(PLAUSIBLE[_kind(default)]))
        names = PARAMS[family]
        chosen = (
            [n for n in names if n != "mu" or family == "Normal"]
            if family != "Gamma"
            else ["alpha", "beta"]
        )
        params = {name: draw(st.floats(0.5, 4.0)) for name in chosen}
        if family == "Dirichlet":
            params = {"a": draw(st.floats(0.3, 3.0))}
        dims = draw(st.sampled_from([None, "own"]))
    else:  # anything: wrong families, values and dims
        family = draw(st.sampled_from(sorted(PARAMS)))
        names = PARAMS[family]
        chosen = draw(st.lists(st.sampled_from(names), unique=True)) if names else []
        params = {name: draw(values) for name in chosen}
        dims = draw(st.sampled_from([None, "own", ("feature",), ("expert",), ("grid", "expert")]))
    dims = (own or None) if dims == "own" else dims
    return config, key, family, params, dims


def _finite_at(model, point) -> bool:
    logp = model.compile_logp(mode=PY_MODE)(point)
    grad = model.compile_dlogp(mode=PY_MODE)(point)
    return bool(np.isfinite(logp) and np.all(np.isfinite(grad)))


def check_case(config, key, family, params, dims) -> str:
    """'refused' or 'built'; raises AssertionError on a bad outcome."""
    try:
        prior = Prior(family, dims=dims, **params)
    except Exception:  # pymc-extras refuses it itself (e.g. a string parameter)
        return "invalid"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = CONFIGS[config]({key: prior})
    except (ValueError, TypeError) as err:
        message = str(err)
        assert f"priors[{key!r}" in message or f"priors['{key}." in message, (
            f"{config} {key}={prior}: the error does not name the key: {message}"
        )
        return "refused"
    assert _finite_at(model, model.initial_point()), f"{config} {key}={prior}: initial point"
    spec = model.bayesmoe_spec
    if spec.has_start_point and spec.point is not None:
        start = make_initial_point_fn(
            model=model, overrides=spec.initial_values(), jitter_rvs=set(),
            return_transformed=True,
        )(0)  # fmt: skip
        assert _finite_at(model, start), f"{config} {key}={prior}: EM start"
    return "built"


@settings(
    max_examples=CASES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_every_prior_override_builds_finite_or_is_refused_by_name(case):
    outcome = check_case(*case)
    assume(outcome != "invalid")
    event(outcome)  # the built / refused split, in --hypothesis-show-statistics


# ---------------------------------------------------------------- fits with overrides
def _two_regimes():
    rng = np.random.default_rng(3)
    return np.concatenate([rng.normal(-3, 0.5, 100), rng.normal(3, 0.5, 100)])


def test_scalar_prior_for_a_per_component_parameter_broadcasts():
    """Regression: a scalar sigma prior crashed in PyTensor (sigma[None, :] on a scalar)."""
    est = bm.MixtureRegression(
        n_components=2, priors={"sigma": Prior("HalfNormal", sigma=2.0)}, **FAST
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(None, _two_regimes())
    assert est.model_.bayesmoe_spec.priors["sigma"].dims == ("expert",)
    assert est.idata_["posterior"]["sigma"].dims == ("chain", "draw", "expert")
    assert np.all(np.isfinite(est.predict(None)))


@pytest.mark.parametrize(
    ("estimator", "priors"),
    [
        ("interaction", {"tau_base": Prior("Exponential", lam=2.0)}),
        ("interaction", {"beta_interaction": Prior("StudentT", nu=3, mu=0, sigma=0.5)}),
        ("interaction", {"sigma": Prior("HalfFlat")}),
        ("mixture", {"intercept": Prior("Normal", mu=0, sigma=5)}),
        ("mixture", {"weights": Prior("Dirichlet", a=2.0)}),
        ("gated", {"gate_weights": Prior("Normal", mu=0, sigma=1.0)}),
    ],
)
def test_accepted_overrides_fit(estimator, priors):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(80, 2))
    y = X[:, 0] + np.where(X[:, 1] > 0, 2.0, -2.0) + 0.3 * rng.normal(size=80)
    make = {
        "interaction": lambda: bm.InteractionRegression(priors=priors, **FAST),
        "mixture": lambda: bm.MixtureRegression(n_components=2, priors=priors, **FAST),
        "gated": lambda: bm.GatedExperts(n_experts=2, priors=priors, **FAST),
    }[estimator]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = make().fit(X, y)
    assert np.all(np.isfinite(est.predict(X)))
    assert np.isfinite(est.log_predictive_density(X, y))


@pytest.mark.parametrize(
    ("priors", "match"),
    [
        ({"sigma": Prior("Normal", mu=0, sigma=1)}, r"priors\['sigma'\].*positive"),
        ({"sigma": Prior("HalfNormal", sigma=-2.0)}, r"priors\['sigma'\].*positive"),
        ({"sigma": Prior("HalfNormal", sigma=1.0, dims="feature")}, r"priors\['sigma'\].*dims"),
        ({"intercept": Prior("Flat")}, r"priors\['intercept'\].*improper"),
        ({"weights": Prior("Normal")}, r"priors\['weights'\].*Dirichlet"),
        ({"intercept": Prior("Normal", mu=[0.0, 1.0, 2.0])}, r"priors\['intercept'\].*shape"),
        ({"tau_base": Prior("Poisson", mu=1.0)}, r"priors\['tau_base'\]"),
        ({"sigma": Prior("HalfNormal", sigma=Prior("Normal"))}, r"priors\['sigma\.sigma'\]"),
    ],
)
def test_bad_overrides_are_refused_before_building(priors, match):
    X = np.random.default_rng(0).normal(size=(30, 1))
    with pytest.raises((ValueError, TypeError), match=match):
        bm.MixtureRegression(n_components=2, priors=priors, **FAST).fit(X, X[:, 0])
