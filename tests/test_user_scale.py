"""Posteriors on the user's scale (issue 19): the affine map, the bars, old files, formulas."""

from __future__ import annotations

import json
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import BayesianRidge

import bayesmoe as bm
from bayesmoe.data import Standardizer, interaction_design
from bayesmoe.numerics.rescale import linear_layer_to_user_scale, regression_to_user_scale
from tests.conftest import FAST

SAMPLE_DIMS = ("chain", "draw")


# ---------------------------------------------------------------- the map itself
@settings(max_examples=60, deadline=None)
@given(
    p=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
    log_scale=st.floats(-3, 3),
)
def test_user_scale_coefficients_give_the_same_predictions(p, seed, log_scale):
    """b + w'x + v'(x_a x_b) on raw x equals the working predictor mapped back, exactly."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(30, p)) * 10.0 ** rng.uniform(-3, 3, p) + rng.normal(0, 50, p)
    y_mean, y_scale = rng.normal(0, 100), 10.0**log_scale
    std = Standardizer(X.mean(0), X.std(0), y_mean, y_scale)
    pairs = [(a, b) for a in range(p) for b in range(a + 1, p)]
    b0, w, v = rng.normal(size=(4,)), rng.normal(size=(4, p)), rng.normal(size=(4, len(pairs)))
    Xw = std.transform_X(X)
    working = b0[:, None] + w @ Xw.T + v @ interaction_design(Xw, pairs).T
    expected = std.inverse_y(working)
    bu, wu, vu = regression_to_user_scale(
        b0, w, v, pairs, std.x_mean, std.x_scale, std.y_mean, std.y_scale
    )
    Z = interaction_design(X, pairs)
    got = bu[:, None] + wu @ X.T + vu @ Z.T
    # Features far from zero make the raw form cancel (|w_j x_j| >> |y|): float64 rounding
    # is then eps times the sum of the terms' magnitudes, the bound used here (x 100).
    magnitude = np.abs(bu)[:, None] + np.abs(wu) @ np.abs(X).T + np.abs(vu) @ np.abs(Z).T
    assert np.all(np.abs(got - expected) <= 100 * np.finfo(float).eps * magnitude + 1e-12)


def test_linear_layer_in_raw_features(rng):
    X = rng.normal(size=(20, 3)) * [1e-2, 1.0, 1e2] + [1.0, -5.0, 300.0]
    m, s = X.mean(0), X.std(0)
    c, V = rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 5, 3, 4))  # (chain, draw, f, h)
    working = np.einsum("of,cdfh->cdoh", (X - m) / s, V) + c[:, :, None, :]
    cu, Vu = linear_layer_to_user_scale(c, V, m, s, axis=-2)
    np.testing.assert_allclose(np.einsum("of,cdfh->cdoh", X, Vu) + cu[:, :, None, :], working)


# ---------------------------------------------------------------- the bars
@pytest.fixture(scope="module")
def wide_scales():
    """2000 rows, features on scales 1e-3 to 1e3 (far from zero), real interactions."""
    rng = np.random.default_rng(0)
    n, scales, means = 2000, np.array([1e-3, 1e-1, 1e1, 1e3]), np.array([5e-3, 2, -30, 4e3])
    Z = rng.normal(size=(n, 4))
    pairs = [(a, b) for a in range(4) for b in range(a + 1, 4)]
    y = 3 + Z @ [1.0, -0.5, 0.3, 0.8] + interaction_design(Z, pairs) @ rng.normal(0, 0.5, 6)
    y = y + rng.normal(scale=0.5, size=n)
    X = pd.DataFrame(Z * scales + means, columns=[f"x{j}" for j in range(4)])
    return X, y, pairs


def test_coef_matches_bayesian_ridge_on_raw_features(wide_scales):
    """Bar: coef_ within 2 posterior sd of sklearn's BayesianRidge on the raw design."""
    X, y, pairs = wide_scales
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bm.InteractionRegression(**{**FAST, "draws": 500}).fit(X, y)
    design = np.column_stack([X.to_numpy(), interaction_design(X.to_numpy(), pairs)])
    ridge = BayesianRidge().fit(design, y)
    post = est.idata_["posterior"]
    sd = np.concatenate([post[k].std(SAMPLE_DIMS).values for k in est._coef_vars])
    assert list(est.coef_names_) == [*X.columns, *[f"x{a}:x{b}" for a, b in pairs]]
    assert np.all(np.abs(est.coef_ - ridge.coef_) <= 2 * sd), (est.coef_ - ridge.coef_) / sd
    assert abs(est.intercept_ - ridge.intercept_) <= 2 * float(post["intercept"].std())
    # the user-scale coefficients are what predict() uses, exactly
    np.testing.assert_allclose(est.predict(X.iloc[:50]), est.intercept_ + design[:50] @ est.coef_)
    # split R-hat is invariant to the per-draw affine map of a single variable (ArviZ's
    # rank-folded default differs in the 5th digit: its folding is not exactly scale-free)
    working = est.working_view()
    np.testing.assert_allclose(
        az.rhat(est.idata_, var_names=["sigma"], method="split")["sigma"].values,
        az.rhat(working, var_names=["sigma"], method="split")["sigma"].values,
        rtol=1e-10,
    )
    assert est.idata_["posterior"]["sigma"].attrs["bayesmoe_scale"] == "user"
    assert est.idata_["posterior"]["tau_base"].attrs["bayesmoe_scale"] == "working"


def test_mixture_summary_reports_the_regimes_on_the_data_scale():
    """Bar: intercepts within 2 posterior sd of the true -3 and 3 (raw two-regime y)."""
    rng = np.random.default_rng(11)
    y = np.concatenate([rng.normal(-3, 0.5, 200), rng.normal(3, 0.5, 200)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bm.MixtureRegression(n_components=2, **{**FAST, "draws": 500}).fit(None, y)
    table = est.summary()
    for k, truth in enumerate((-3.0, 3.0)):
        row = table.loc[f"intercept[{k}]"]
        assert abs(row["mean"] - truth) <= 2 * row["sd"], (k, row["mean"], row["sd"])
    np.testing.assert_allclose(est.intercept_, table.loc[["intercept[0]", "intercept[1]"], "mean"])
    assert est.coef_.shape == (2, 0)


def test_gated_gate_weights_are_in_raw_features():
    from bayesmoe.experiments import make_mixture_data

    d = make_mixture_data(200, 2, 2, gate="linear", seed=3)
    X = d.X * [100.0, 0.01] + [50.0, -3.0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bm.GatedExperts(n_experts=2, method="vem", draws=50, chains=2, random_seed=1)
        est.fit(X, d.y * 10 + 4)
    post = est.idata_["posterior"]
    c = post["gate_intercept"].transpose(*SAMPLE_DIMS, "gate_expert").values
    V = post["gate_weights"].transpose(*SAMPLE_DIMS, "gate_feature", "gate_expert").values
    logits = np.einsum("of,cdfk->cdok", X.to_numpy()[:10], V) + c[:, :, None, :]
    logits = np.concatenate([logits, np.zeros((*logits.shape[:3], 1))], axis=-1)
    proba = np.exp(logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True))
    np.testing.assert_allclose(proba.mean(axis=(0, 1)), est.predict_proba(X[:10]))
    # expert intercepts and slopes: the user-scale mean of expert k at x is b_k + w_k'x
    mean_k = est.expert_predictions(X[:10]).mean(SAMPLE_DIMS).values
    np.testing.assert_allclose(mean_k, est.intercept_ + X.to_numpy()[:10] @ est.coef_.T)


def test_files_of_the_previous_layout_still_load(fitted, tmp_path, small_data):
    """A format-1 file (working-scale posterior, no posterior_working) loads converted."""
    path = fitted.save(tmp_path / "new.nc")
    tree = xr.open_datatree(path, engine="h5netcdf").load()
    tree.close()
    groups = {node.path: node.to_dataset(inherit=False) for node in tree.subtree}
    groups["/posterior"] = groups.pop("/posterior_working")
    old = xr.DataTree.from_dict(groups)
    old.attrs.update(tree.attrs, bayesmoe_format=1)
    old.to_netcdf(tmp_path / "old.nc", engine="h5netcdf")
    loaded = bm.load(tmp_path / "old.nc")
    for name in ("intercept", "beta_base", "beta_interaction", "sigma"):
        np.testing.assert_allclose(
            loaded.idata_["posterior"][name].values, fitted.idata_["posterior"][name].values
        )
    np.testing.assert_allclose(loaded.coef_, fitted.coef_)
    np.testing.assert_allclose(loaded.predict(small_data.X), fitted.predict(small_data.X))


def test_prior_predictive_prior_is_on_the_user_scale(small_data):
    est = bm.InteractionRegression(**FAST)
    prior = est.sample_prior_predictive(small_data.X * 1000.0, small_data.y, draws=50)
    assert "prior_working" in prior.children
    ratio = prior["prior"]["sigma"].values / prior["prior_working"]["sigma"].values
    np.testing.assert_allclose(ratio, small_data.y.std())


# ---------------------------------------------------------------- formulas
@pytest.fixture(scope="module")
def mixed_frame():
    """Three numeric and two categorical columns, with one numeric interaction."""
    rng = np.random.default_rng(1)
    n = 400
    df = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(2, 3, size=n),
            "c": rng.uniform(size=n),
            "g": rng.choice(list("pqr"), n),
            "h": rng.choice(["u", "v"], n),
        }
    )
    effect = df.g.map({"p": 0.0, "q": 1.0, "r": -1.0}) + 0.8 * (df.h == "v")
    df["y"] = 1 + df.a - 0.5 * df.b + effect + 0.2 * df.a * df.b + rng.normal(0, 0.5, n)
    return df


def test_formula_equals_the_hand_built_design(mixed_frame):
    """Bar: from_formula gives the posterior of the equivalent hand-built design matrix."""
    df = mixed_frame
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_formula = bm.InteractionRegression.from_formula("y ~ a * b + c + g + h", df, **FAST)
        X = pd.DataFrame(
            {
                "a": df.a,
                "b": df.b,
                "c": df.c,
                "g[T.q]": (df.g == "q") * 1.0,
                "g[T.r]": (df.g == "r") * 1.0,
                "h[T.v]": (df.h == "v") * 1.0,
            }
        )
        by_hand = bm.InteractionRegression(interactions=[("a", "b")], **FAST).fit(X, df.y)
        other_seed = bm.InteractionRegression(
            interactions=[("a", "b")], **{**FAST, "random_seed": 7}
        ).fit(X, df.y)
    assert list(by_formula.coef_names_) == list(by_hand.coef_names_)
    assert by_formula.model_.coords["interaction"] == ("a:b",)
    # same design, same seed: the same draws; another seed agrees within Monte Carlo error
    for name in ("intercept", "beta_base", "beta_interaction", "sigma"):
        np.testing.assert_array_equal(
            by_formula.idata_["posterior"][name].values, by_hand.idata_["posterior"][name].values
        )
    summ = by_formula.summary(var_names=["beta_base", "beta_interaction"])
    other = other_seed.summary(var_names=["beta_base", "beta_interaction"])
    mcse = np.hypot(summ["mcse_mean"], other["mcse_mean"])
    assert np.all(np.abs(summ["mean"] - other["mean"]) <= 4 * mcse)
    np.testing.assert_allclose(by_formula.predict(df.iloc[:20]), by_hand.predict(X.iloc[:20]))
    assert np.isfinite(by_formula.log_predictive_density(df.iloc[:20]))


def test_formula_model_saves_and_predicts_new_frames(mixed_frame, tmp_path):
    df = mixed_frame
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bm.MixtureRegression(formula="y ~ a + g", n_components=2, method="vem", draws=50)
        est.fit(df)
    assert list(est.model_.coords["expert_feature"]) == ["a", "g[T.q]", "g[T.r]"]
    back = bm.load(est.save(tmp_path / "m.nc"))
    np.testing.assert_array_equal(back.predict(df.iloc[:7]), est.predict(df.iloc[:7]))
    assert json.loads(back.idata_.attrs["bayesmoe_formula_design"])["formula"] == "y ~ a + g"
    with pytest.raises(ValueError, match="level"):
        est.predict(df.iloc[:3].assign(g="zzz"))
    with pytest.raises(TypeError, match="DataFrame"):
        est.predict(df[["a"]].to_numpy())


def test_formula_errors_name_the_argument(mixed_frame):
    df = mixed_frame
    with pytest.raises(ValueError, match="formula"):
        bm.InteractionRegression(formula="y ~ a + b", **FAST).fit(df, df.y)
    with pytest.raises(ValueError, match="interactions"):
        bm.InteractionRegression(formula="y ~ a + b", interactions=None, **FAST).fit(df)
    with pytest.raises(ValueError, match="nope"):
        bm.InteractionRegression(formula="y ~ a + nope", **FAST).fit(df)
    with pytest.raises(TypeError, match="DataFrame"):
        bm.InteractionRegression(formula="y ~ a", **FAST).fit(df.to_numpy())


def test_gated_experts_take_a_gate_formula(mixed_frame):
    df = mixed_frame
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bm.GatedExperts.from_formula(
            "y ~ a + b", df, gate="~ c + h", method="vem", draws=50, random_seed=2
        )
    assert list(est.model_.coords["expert_feature"]) == ["a", "b"]
    assert list(est.model_.coords["gate_feature"]) == ["c", "h[T.v]"]
    assert est.get_params()["gate"] == "linear"
    assert est.responsibilities(df.iloc[:5]).shape == (5, 2)
