"""Mixture of regressions and gated experts: graph structure, API, bad input (fast tier)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.special import log_softmax
from scipy.stats import norm

import bayesmoe as bm
from bayesmoe.experiments import make_mixture_data
from bayesmoe.priors import Prior
from tests.conftest import FAST


@pytest.fixture(scope="module")
def gated_data():
    return make_mixture_data(300, 2, 2, gate="linear", seed=4)


@pytest.fixture(scope="module")
def gated_fit(gated_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bm.GatedExperts(n_experts=2, **FAST).fit(gated_data.X, gated_data.y)


def _finite_logp_and_grad(model):
    point = model.initial_point()
    logp = model.compile_logp()(point)
    grad = model.compile_dlogp()(point)
    return np.isfinite(logp) and np.all(np.isfinite(grad))


# ---------------------------------------------------------------- builders
@pytest.mark.parametrize("gate", ["linear", "mlp"])
def test_gated_builder_structure(gate):
    d = make_mixture_data(200, 3, 3, gate=gate, seed=1)
    model = bm.gated_experts(
        d.X, d.y, n_experts=3, gate=gate, gate_hidden=4 if gate == "mlp" else None
    )
    free = {v.name for v in model.free_RVs}
    expected = {"intercept", "beta", "sigma", "tau_base", "gate_intercept", "gate_weights"}
    if gate == "mlp":
        expected |= {"gate_hidden_weights", "gate_hidden_bias"}
    assert free == expected
    # reference gate: K - 1 free logits
    assert list(model.coords["gate_expert"]) == [0, 1]
    assert model.named_vars_to_dims["gate_weights"] == (
        ("gate_feature" if gate == "linear" else "gate_hidden"),
        "gate_expert",
    )
    assert model.named_vars_to_dims["gate_probability_grid"] == ("grid", "expert")
    assert _finite_logp_and_grad(model)
    spec = model.bayesmoe_spec
    start = spec.initial_values()
    assert set(start) == expected
    if gate == "mlp":
        assert "gate_weights" not in spec.identified_vars
        assert "gate_probability_grid" in spec.identified_vars


def test_feature_subsets_and_interactions():
    d = make_mixture_data(150, 2, 3, gate="linear", seed=2)
    model = bm.gated_experts(
        d.X, d.y, expert_features=["x0", "x1"], gate_features=["x2"], interactions="all"
    )
    assert list(model.coords["expert_feature"]) == ["x0", "x1"]
    assert list(model.coords["gate_feature"]) == ["x2"]
    assert list(model.coords["interaction"]) == ["x0:x1"]
    assert "beta_interaction" in {v.name for v in model.free_RVs}
    assert _finite_logp_and_grad(model)


def test_gaussian_mixture_orders_means_and_keeps_order_with_user_prior(rng):
    y = np.concatenate([rng.normal(-3, 0.5, 100), rng.normal(2, 0.5, 100)])
    for priors in (None, {"intercept": Prior("Normal", mu=0, sigma=3, dims="expert")}):
        model = bm.mixture_regression(None, y, n_components=2, priors=priors)
        assert model.bayesmoe_spec.ordered
        transform = model.rvs_to_transforms[model["intercept"]]
        assert type(transform).__name__ == "Ordered"
        assert "beta" not in model.named_vars
        assert _finite_logp_and_grad(model)
    unordered = bm.mixture_regression(None, y, n_components=2, order_by=None)
    assert unordered.rvs_to_transforms[unordered["intercept"]] is None


def test_crossing_lines_are_not_ordered_by_intercept(rng):
    # equal intercepts, different slopes: ordering intercepts would cut the posterior
    x = rng.normal(size=(400, 1))
    z = rng.integers(0, 2, 400)
    y = np.where(z == 0, 2.0, -2.0) * x[:, 0] + 0.2 * rng.normal(size=400)
    model = bm.mixture_regression(x, y, n_components=2)
    assert not model.bayesmoe_spec.ordered


def test_dirichlet_alpha_reaches_prior(rng):
    model = bm.mixture_regression(rng.normal(size=(50, 1)), rng.normal(size=50), alpha=0.3)
    a = model["weights"].owner.inputs[-1].eval()
    np.testing.assert_allclose(a, [0.3, 0.3])


def test_relabel_undoes_a_permutation_and_preserves_gate_probabilities(gated_fit):
    spec = gated_fit.model_.bayesmoe_spec
    post = gated_fit.idata_["posterior_working"].to_dataset()
    Xw = gated_fit.idata_["constant_data"]["X_base"].values
    C, D = post.sizes["chain"], post.sizes["draw"]
    perms = np.tile([0, 1], (C, D, 1))
    perms[1, ::3] = [1, 0]  # swap labels in every third draw of chain 1
    swapped = spec.permute(post, perms)
    # the mixture is unchanged by relabelling: same mixing weights per expert, permuted
    lw0 = spec.log_weights(post, Xw).values
    lw1 = spec.log_weights(swapped, Xw).values
    np.testing.assert_allclose(lw1[1, ::3], lw0[1, ::3][..., ::-1], atol=1e-10)
    np.testing.assert_allclose(
        spec.log_likelihood(swapped, Xw, spec.y).values,
        spec.log_likelihood(post, Xw, spec.y).values,
        atol=1e-10,
    )
    restored = spec.relabel(swapped, Xw)
    for name in ("intercept", "beta", "sigma", "gate_intercept", "gate_weights"):
        np.testing.assert_allclose(restored[name].values, post[name].values, atol=1e-10)


# ---------------------------------------------------------------- estimator API
def test_gated_fit_api_and_predictions_group(gated_fit, gated_data):
    est, d = gated_fit, gated_data
    new = d.new_rows(40, seed=9)
    mean, sd = est.predict(new.X, return_std=True)
    assert mean.shape == sd.shape == (40,) and np.all(sd > 0)
    draws = est.predict_dist(new.X)
    assert draws.dims == ("chain", "draw", "obs")
    # Each predictive draw y_s comes from the mixture p(y | x, theta_s), so its
    # probability integral transform u_s = F_s(y_s) is exactly Uniform(0, 1) and
    # independent across draws given the posterior, whatever the mixture's skew (a CLT
    # bound on the mean of y failed once at |z| = 4.13 on a far, rare component).
    # Hoeffding: P(|mean(u) - 1/2| > t) <= 2 exp(-2 S t^2); t is set so that a false
    # failure over all rows has probability below 1e-6.
    logw, mu, sd = est._components(est.standardizer_.transform_X(new.X.to_numpy()))
    yw = est.standardizer_.transform_y(draws.values)[..., None]
    u = (np.exp(logw.values) * norm.cdf((yw - mu.values) / sd.values[:, :, None, :])).sum(-1)
    S, rows = u.shape[0] * u.shape[1], u.shape[2]
    t = np.sqrt(np.log(2 * rows / 1e-6) / (2 * S))
    assert np.all(np.abs(u.mean(axis=(0, 1)) - 0.5) <= t)
    # and the exact mean from predict() is the mean of the per-draw mixture means
    exact = est.standardizer_.inverse_y((np.exp(logw.values) * mu.values).sum(-1).mean((0, 1)))
    np.testing.assert_allclose(mean, exact, rtol=1e-12)
    proba = est.predict_proba(new.X)
    assert proba.shape == (40, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    pdraws = est.predict_proba(new.X, return_draws=True)
    assert pdraws.dims == ("chain", "draw", "obs", "expert")
    resp = est.responsibilities(new.X, new.y)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0)
    experts = est.expert_predictions(new.X)
    assert experts.dims == ("chain", "draw", "obs", "expert")
    preds = est.idata_["predictions"]
    assert {"y", "gate_probability", "responsibilities", "expert_mean"} <= set(preds.data_vars)
    assert preds["gate_probability"].dims == ("chain", "draw", "obs", "expert")
    # the gate learned the regions: responsibilities agree with the true expert mostly
    truth_match = max(np.mean(resp.argmax(axis=1) == new.z), np.mean(resp.argmax(axis=1) != new.z))
    assert truth_match > 0.9
    assert np.isfinite(est.log_predictive_density(new.X, new.y))


def test_loglik_matches_pymc(gated_fit):
    """Our closed-form pointwise log-likelihood equals PyMC's for the same draws."""
    import pymc as pm

    idata = gated_fit.idata_
    sub = xr.DataTree.from_dict(
        {"posterior": idata["posterior_working"].to_dataset().isel(draw=slice(0, 5))}
    )
    with gated_fit.model_:
        pm.compute_log_likelihood(sub, progressbar=False)
    ours = gated_fit.idata_["log_likelihood"]["y"].isel(draw=slice(0, 5)).values
    jacobian = np.log(gated_fit.standardizer_.y_scale)
    np.testing.assert_allclose(ours, sub["log_likelihood"]["y"].values - jacobian, atol=1e-8)


def test_mixture_regression_without_features_and_constant_proba(rng):
    y = np.concatenate([rng.normal(-2, 0.4, 80), rng.normal(2, 0.4, 120)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bm.MixtureRegression(n_components=2, **FAST).fit(None, y)
    proba = est.predict_proba(np.zeros((3, 0)))
    np.testing.assert_allclose(proba, np.tile(proba[0], (3, 1)))
    np.testing.assert_allclose(np.sort(proba[0]), [0.4, 0.6], atol=0.1)
    means = est.idata_["posterior"]["intercept"].mean(("chain", "draw")).values
    # ordered means, reported on the data's scale; the sampled ones are standardised
    np.testing.assert_allclose(means, [-2, 2], atol=0.2)
    working = est.idata_["posterior_working"]["intercept"].mean(("chain", "draw")).values
    np.testing.assert_allclose(est.standardizer_.inverse_y(working), means, rtol=1e-12)
    assert est.predict(None).shape == (1,)


def test_save_load_round_trip(gated_fit, gated_data, tmp_path):
    path = gated_fit.save(tmp_path / "gated.nc")
    loaded = bm.load(path)
    assert isinstance(loaded, bm.GatedExperts)
    np.testing.assert_array_equal(
        loaded.idata_["posterior"]["gate_weights"].values,
        gated_fit.idata_["posterior"]["gate_weights"].values,
    )
    X = gated_data.X.iloc[:10]
    np.testing.assert_allclose(loaded.predict(X), gated_fit.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), gated_fit.predict_proba(X))


def test_sklearn_clone(gated_fit):
    from sklearn.base import clone

    c = clone(gated_fit)
    assert c.get_params() == gated_fit.get_params()


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_experts": 0}, ValueError, "n_experts"),
        ({"n_experts": 1000}, ValueError, "n_experts"),
        ({"n_experts": 2.5}, TypeError, "n_experts"),
        ({"gate": "mlp"}, ValueError, "gate_hidden"),
        ({"gate": "mlp", "gate_hidden": 0}, ValueError, "gate_hidden"),
        ({"gate": "tree"}, ValueError, "gate"),
        ({"gate_hidden": 3}, ValueError, "gate_hidden"),
        ({"gate_features": ["nope"]}, ValueError, "gate_features"),
        ({"expert_features": ["x0", "zz"]}, ValueError, "expert_features"),
        ({"priors": {"weights": Prior("Dirichlet", a=[1, 1])}}, ValueError, "unknown key"),
        ({"sampler": "stan"}, ValueError, "sampler"),
    ],
)
def test_gated_bad_arguments(gated_data, kwargs, error, match):
    with pytest.raises(error, match=match):
        bm.GatedExperts(**{**FAST, **kwargs}).fit(gated_data.X, gated_data.y)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_components": 0}, "n_components"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1}, "alpha"),
        ({"order_by": "slope"}, "order_by"),
        ({"priors": {"gate_weights": 1.0}}, "unknown key"),
    ],
)
def test_mixture_bad_arguments(gated_data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        bm.MixtureRegression(**{**FAST, **kwargs}).fit(gated_data.X, gated_data.y)


def test_predict_inputs_are_checked(gated_fit, gated_data):
    with pytest.raises(ValueError, match="columns"):
        gated_fit.predict_proba(gated_data.X.iloc[:, :1])
    with pytest.raises(ValueError, match="NaN"):
        gated_fit.responsibilities(gated_data.X.iloc[:3], [1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="different lengths"):
        gated_fit.responsibilities(gated_data.X.iloc[:3], [1.0, 2.0])
    with pytest.raises(TypeError, match="non-numeric"):
        gated_fit.expert_predictions(pd.DataFrame({"x0": ["a"], "x1": [1.0]}))


def test_log_softmax_reference_gate_matches_builder_graph(gated_fit):
    """The numpy gate used for predictions equals the PyMC graph's softmax."""
    spec = gated_fit.model_.bayesmoe_spec
    post = gated_fit.idata_["posterior_working"].to_dataset().isel(draw=slice(0, 3))
    grid = gated_fit.model_["X_grid"].get_value()
    # the sampler's deterministic gate_probability_grid vs numpy on the same grid
    X_base = np.zeros((grid.shape[0], len(spec.feature_names)))
    X_base[:, spec.gate_idx] = grid
    ours = np.exp(spec.log_weights(post, X_base).values)
    np.testing.assert_allclose(ours, post["gate_probability_grid"].values, atol=1e-10)
    assert np.allclose(log_softmax(np.zeros(2)), np.log(0.5))


def test_summary_rows_are_labelled_correctly(gated_fit):
    """Regression test: ArviZ 1.3 mislabels rows when dims come in different orders."""
    table = gated_fit.summary(var_names=["sigma", "gate_probability_grid"])
    grid = gated_fit.idata_["posterior"]["gate_probability_grid"].mean(("chain", "draw"))
    for g in (0, 3):
        for k in (0, 1):
            assert table.loc[f"gate_probability_grid[{g}, {k}]", "mean"] == pytest.approx(
                float(grid.sel(grid=g, expert=k))
            )


def test_gate_grid_has_no_repeated_points():
    from bayesmoe.builders.mixture import GRID_QUANTILES, gate_grid

    G = np.random.default_rng(0).normal(size=(500, 3))
    grid = gate_grid(G)
    assert len(np.unique(grid, axis=0)) == len(grid) == 1 + 3 * (len(GRID_QUANTILES) - 1)
    np.testing.assert_allclose(grid[0], np.median(G, axis=0))


def test_nutpie_gets_the_low_rank_mass_matrix_unless_the_user_says_otherwise(monkeypatch):
    # MixtureSpec.nutpie_defaults reach nutpie (and only nutpie); a user's fit_kwargs win.
    import bayesmoe
    from bayesmoe.builders.mixture import mixture_regression
    from bayesmoe.inference.backends import nutpie as nutpie_backend

    seen = []

    class Stop(Exception):
        pass

    def capture(model, draws, tune, chains, seed, progressbar, start=None, **kwargs):
        seen.append(kwargs)
        raise Stop

    monkeypatch.setattr(nutpie_backend, "_sample_cached", capture)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 1))
    model = mixture_regression(X, X[:, 0] + rng.normal(size=60), n_components=2)
    for kwargs in ({}, {"adaptation": "diag"}, {"low_rank_modified_mass_matrix": False}):
        with pytest.raises(Stop):
            bayesmoe.fit(model, sampler="nutpie", **kwargs)
    assert seen[0]["adaptation"] == "low_rank"
    assert seen[1]["adaptation"] == "diag"
    # nutpie's older flag, set off by the user, is not overridden by the default
    assert "adaptation" not in seen[2] and seen[2]["low_rank_modified_mass_matrix"] is False
    # the mlp gate keeps nutpie's own (diagonal) default; the linear gate gets the low rank
    from bayesmoe.builders.mixture import gated_experts

    y = X[:, 0] + rng.normal(size=60)
    for gate, expected in (("mlp", None), ("linear", "low_rank")):
        hidden = {"gate_hidden": 2} if gate == "mlp" else {}
        gated = gated_experts(X, y, n_experts=2, gate=gate, **hidden)
        with pytest.raises(Stop):
            bayesmoe.fit(gated, sampler="nutpie")
        assert seen[-1].get("adaptation") == expected, gate
