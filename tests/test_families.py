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
