"""Graph structure, dims, priors and the collapsed likelihood of the interaction builder."""

import numpy as np
import pandas as pd
import pymc as pm
import pytest

from bayesmoe import Prior, interaction_regression
from bayesmoe.numerics.conjugate import log_marginal_likelihood


@pytest.fixture
def frame(small_data):
    return small_data.X, small_data.y


@pytest.mark.parametrize("collapsed", [False, True])
def test_coords_and_finite_logp_and_gradient(frame, collapsed):
    X, y = frame
    model = interaction_regression(X, y, collapsed=collapsed)
    assert list(model.coords["feature"]) == ["x0", "x1", "x2"]
    assert list(model.coords["interaction"]) == ["x0:x1", "x0:x2", "x1:x2"]
    point = model.initial_point()
    assert np.isfinite(model.compile_logp()(point))
    grad = model.compile_dlogp()(point)
    assert np.all(np.isfinite(grad))
    assert model.bayesmoe_spec.collapsed is collapsed
    names = {v.name for v in model.free_RVs}
    if collapsed:
        assert names == {"tau_base", "tau_interaction", "sigma"}
    else:
        assert {"intercept", "beta_base_offset", "beta_interaction_offset"} <= names


def test_collapsed_potential_equals_numpy_marginal_likelihood(frame):
    X, y = frame
    model = interaction_regression(X, y, collapsed=True)
    tau_b, tau_i, sigma = 0.8, 0.3, 0.6
    point = model.initial_point()
    point.update(
        tau_base_log__=np.log(tau_b),
        tau_interaction_log__=np.log(tau_i),
        sigma_log__=np.log(sigma),
    )
    potential = model.replace_rvs_by_values([model.potentials[0]])[0]
    fn = model.compile_fn(potential, inputs=model.value_vars, point_fn=True)
    got = float(fn(point))
    Xv = X.to_numpy()
    inter = np.column_stack([Xv[:, 0] * Xv[:, 1], Xv[:, 0] * Xv[:, 2], Xv[:, 1] * Xv[:, 2]])
    A = np.column_stack([np.ones(len(y)), Xv, inter])
    spec = model.bayesmoe_spec.priors["intercept"]
    m0 = np.r_[spec.parameters["mu"], np.zeros(6)]
    prec = np.r_[spec.parameters["sigma"] ** -2, np.full(3, tau_b**-2), np.full(3, tau_i**-2)]
    expected = log_marginal_likelihood(A.T @ A, A.T @ y, y @ y, len(y), m0, prec, sigma)
    assert got == pytest.approx(expected, rel=1e-9)


def test_base_only_and_explicit_interactions(frame):
    X, y = frame
    base = interaction_regression(X, y, interactions=None)
    assert "interaction" not in base.coords
    assert "tau_interaction" not in base.named_vars
    some = interaction_regression(X, y, interactions=[("x0", "x2"), "x1:x2"])
    assert list(some.coords["interaction"]) == ["x0:x2", "x1:x2"]


@pytest.mark.parametrize("prior", ["half_cauchy", "gamma", "half_normal"])
def test_hyperprior_families_build(frame, prior):
    X, y = frame
    model = interaction_regression(X, y, prior=prior, collapsed=True)
    assert "tau_base" in model.named_vars
    if prior == "gamma":
        assert {"lambda_base", "lambda_interaction"} <= {v.name for v in model.free_RVs}


def test_fixed_prior_has_no_scale_variables(frame):
    X, y = frame
    model = interaction_regression(X, y, prior="fixed", base_scale=1.0, interaction_scale=0.1)
    names = {v.name for v in model.free_RVs}
    assert not {"tau_base", "tau_interaction"} & names
    assert {"intercept", "sigma"} <= names


def test_priors_override_and_flat_priors(frame):
    X, y = frame
    model = interaction_regression(
        X,
        y,
        priors={
            "intercept": Prior("Flat"),
            "sigma": Prior("HalfFlat"),
            "tau_base": Prior("HalfNormal", sigma=0.5),
        },
        collapsed=True,
    )
    assert model.bayesmoe_spec.blocks[0].kind == "flat"
    assert np.isfinite(model.compile_logp()(model.initial_point()))


def test_non_gaussian_weight_prior_falls_back_to_rowwise(frame):
    X, y = frame
    laplace = Prior("Laplace", mu=0, b=1, dims="feature")
    model = interaction_regression(X, y, priors={"beta_base": laplace}, collapsed="auto")
    assert not model.bayesmoe_spec.collapsed
    with pytest.raises(ValueError, match="collapsed=True needs Normal or Flat"):
        interaction_regression(X, y, priors={"beta_base": laplace}, collapsed=True)


def test_prior_predictive_runs(frame):
    X, y = frame
    with interaction_regression(X, y):
        prior = pm.sample_prior_predictive(draws=20, random_seed=1)
    assert prior["prior_predictive"]["y"].shape == (1, 20, len(y))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(prior="cauchy"), ValueError, "prior='cauchy' is not known"),
        (dict(prior="fixed"), ValueError, "needs base_scale"),
        (dict(prior="fixed", base_scale=-1.0, interaction_scale=1.0), ValueError, "base_scale"),
        (
            dict(prior="fixed", base_scale=1.0, interaction_scale=0.0),
            ValueError,
            "interaction_scale",
        ),
        (dict(base_scale=1.0), ValueError, "only used with prior='fixed'"),
        (dict(priors={"beta": Prior("Normal")}), ValueError, "unknown key 'beta'"),
        (dict(priors={"sigma": -1.0}), ValueError, "sigma"),
        (dict(priors={"sigma": "wide"}), TypeError, "sigma"),
        (dict(collapsed="yes"), ValueError, "collapsed"),
        (dict(interactions=[("x0", "x9")]), ValueError, "x9"),
    ],
)
def test_bad_builder_arguments(frame, kwargs, exc, match):
    X, y = frame
    with pytest.raises(exc, match=match):
        interaction_regression(X, y, **kwargs)


def test_array_input_gets_default_names(rng):
    X = rng.normal(size=(30, 2))
    model = interaction_regression(X, X[:, 0] + rng.normal(size=30))
    assert list(model.coords["feature"]) == ["x0", "x1"]
    assert list(model.coords["interaction"]) == ["x0:x1"]
    assert isinstance(pd.Index(model.coords["obs"]), pd.Index)
