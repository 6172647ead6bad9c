"""prior_from_posterior: exact moment matching, expert mapping, use in builders, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesmoe as bm
from bayesmoe.priors import priors_from_json, priors_to_json


@pytest.fixture(scope="module")
def tree():
    rng = np.random.default_rng(0)
    C, D = 2, 500
    post = xr.Dataset(
        {
            "intercept": (("chain", "draw"), rng.normal(0.3, 0.1, size=(C, D))),
            "beta_base": (
                ("chain", "draw", "feature"),
                rng.normal([1.0, -2.0, 0.5], [0.1, 0.2, 0.3], size=(C, D, 3)),
            ),
            "sigma": (("chain", "draw"), rng.lognormal(-1.0, 0.05, size=(C, D))),
        },
        coords={"feature": ["a", "b", "c"]},
    )
    return xr.DataTree.from_dict({"posterior": post})


def test_moments_match_the_draws(tree):
    priors = bm.prior_from_posterior(tree, ["intercept", "beta_base", "sigma"], inflate=2.0)
    post = tree["posterior"]
    b = post["beta_base"].values.reshape(-1, 3)
    assert priors["beta_base"].distribution == "Normal"
    assert priors["beta_base"].dims == ("feature",)
    np.testing.assert_allclose(priors["beta_base"].parameters["mu"], b.mean(axis=0))
    np.testing.assert_allclose(priors["beta_base"].parameters["sigma"], 2 * b.std(axis=0, ddof=1))
    log_sigma = np.log(post["sigma"].values.ravel())
    assert priors["sigma"].distribution == "LogNormal"
    assert priors["sigma"].parameters["mu"] == pytest.approx(log_sigma.mean())
    assert priors["sigma"].parameters["sigma"] == pytest.approx(2 * log_sigma.std(ddof=1))
    assert priors["intercept"].parameters["mu"] == pytest.approx(post["intercept"].values.mean())


def test_expert_priors_have_an_expert_dim(tree):
    priors = bm.prior_from_posterior(tree, ["intercept", "beta_base", "sigma"], n_experts=3)
    assert set(priors) == {"intercept", "beta", "sigma"}
    assert priors["beta"].dims == ("expert", "expert_feature")
    mu = np.asarray(priors["beta"].parameters["mu"])
    assert mu.shape == (3, 3) and np.allclose(mu, mu[0])
    assert priors["sigma"].dims == ("expert",) and priors["intercept"].dims == ("expert",)


def test_priors_build_interaction_and_gated_models(tree):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.4 * rng.normal(size=80)
    X = pd.DataFrame(X, columns=["a", "b", "c"])
    seed = bm.prior_from_posterior(tree, ["intercept", "beta_base", "sigma"])
    model = bm.interaction_regression(X, y, priors=seed, collapsed="auto")
    assert model.bayesmoe_spec.collapsed  # Normal priors keep the fast collapsed form
    assert np.isfinite(model.compile_logp(mode="FAST_COMPILE")(model.initial_point()))
    experts = bm.prior_from_posterior(tree, ["intercept", "beta_base", "sigma"], n_experts=2)
    gated = bm.gated_experts(X, y, n_experts=2, priors=experts, random_seed=0)
    assert np.isfinite(gated.compile_logp(mode="FAST_COMPILE")(gated.initial_point()))
    # saved estimators store priors as JSON: array parameters survive the round trip
    back = priors_from_json(priors_to_json(experts))
    np.testing.assert_allclose(back["beta"].parameters["mu"], experts["beta"].parameters["mu"])


def test_accepts_a_fitted_estimator(fitted):
    priors = bm.prior_from_posterior(fitted, "sigma")
    assert priors["sigma"].distribution == "LogNormal"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(var_names=["beta"]), ValueError, r"var_names \['beta'\] are not in the posterior"),
        (dict(var_names=[]), ValueError, "var_names is empty"),
        (dict(var_names="sigma", inflate=0), ValueError, "inflate must be a positive"),
        (dict(var_names="sigma", n_experts=0), ValueError, "n_experts must be >= 1"),
        (dict(var_names="sigma", n_experts=2.5), TypeError, "n_experts must be an integer"),
        (dict(var_names=["beta_base"], positive=["beta_base"]), ValueError, "non-positive draws"),
        (dict(var_names=["a"], n_experts=2), ValueError, "not in the posterior"),
    ],
)
def test_bad_input(tree, kwargs, error, message):
    names = kwargs.pop("var_names")
    with pytest.raises(error, match=message):
        bm.prior_from_posterior(tree, names, **kwargs)


def test_expert_mapping_refuses_mixture_variables():
    post = xr.Dataset({"gate_weights": (("chain", "draw"), np.ones((1, 5)))})
    tree = xr.DataTree.from_dict({"posterior": post})
    with pytest.raises(ValueError, match="with n_experts, var_names must come from a single"):
        bm.prior_from_posterior(tree, ["gate_weights"], n_experts=2)


def test_bad_idata():
    with pytest.raises(TypeError, match="DataTree with a posterior group"):
        bm.prior_from_posterior({"posterior": 1}, "sigma")
    with pytest.raises(ValueError, match="unfitted estimator"):
        bm.prior_from_posterior(bm.InteractionRegression(), "sigma")
