"""HierarchicalStacking: builder graph, consistency with PyMC, estimator API, the bar."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from sklearn.base import clone

import bayesmoe as bm
from bayesmoe.builders.stacking import hierarchical_stacking
from tests.conftest import FAST


def _lpd(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    lpd = np.column_stack([-1 - (X[:, 0] > 0), -1 - (X[:, 0] < 0), np.full(n, -1.3)])
    return X, lpd + 0.1 * rng.normal(size=(n, 3))


@pytest.mark.parametrize("gate, hidden", [("linear", None), ("mlp", 2)])
def test_builder_graph_and_score_match_spec(gate, hidden):
    X, lpd = _lpd()
    model = hierarchical_stacking(
        X,
        lpd,
        model_names=["a", "b", "c"],
        global_weights=[0.2, 0.5, 0.3],
        gate=gate,
        gate_hidden=hidden,
    )
    spec = model.bayesmoe_spec
    assert spec.reference == 1  # the largest global weight
    assert model.coords["gate_model"] == ("a", "c")
    assert model.coords["model"] == ("a", "b", "c")
    point = model.initial_point()
    # FAST_COMPILE: no C compilation, the graph is only evaluated a few times
    logp = model.compile_logp(mode="FAST_COMPILE")(point)
    dlogp = model.compile_dlogp(mode="FAST_COMPILE")(point)
    assert np.isfinite(logp) and np.all(np.isfinite(dlogp))
    # the pointwise score of the spec (used for log_likelihood) sums to PyMC's potential
    rng = np.random.default_rng(1)
    point = {k: v + 0.3 * rng.normal(size=np.shape(v)) for k, v in point.items()}
    post = _posterior_from_point(model, point)
    score = spec.log_likelihood(post, X, np.zeros(len(X))).values.sum()
    potential = _evaluate(model, ["stacking_score"], point)["stacking_score"]
    assert score == pytest.approx(float(potential), rel=1e-10)


def _evaluate(model, names, point):
    """Values of model variables at a point of the (transformed) value space."""
    outs = model.replace_rvs_by_values([model[n] for n in names])
    fn = model.compile_fn(
        outs, inputs=model.value_vars, on_unused_input="ignore", mode="FAST_COMPILE"
    )
    return dict(zip(names, fn(point), strict=True))


def _posterior_from_point(model, point):
    import xarray as xr

    names = [v.name for v in model.free_RVs] + ["gate_weights"]
    values = _evaluate(model, names, point)
    return xr.Dataset(
        {
            n: (("chain", "draw", *model.named_vars_to_dims.get(n, ())), np.asarray(v)[None, None])
            for n, v in values.items()
        }
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lpd=np.zeros((60, 1))), "at least 2 models"),
        (dict(lpd=np.zeros((59, 2))), r"lpd must have shape \(n=60, K\)"),
        (dict(lpd=np.full((60, 2), np.nan)), "NaN or infinite"),
        (dict(gate="tree"), "gate='tree' is not known"),
        (dict(gate="mlp"), "positive integer gate_hidden"),
        (dict(gate_hidden=3), "gate_hidden is only used with gate='mlp'"),
        (dict(global_weights=[1.0, -1.0, 0.5]), "global_weights must be 3 non-negative"),
        (dict(model_names=["a", "a", "b"]), "3 distinct names"),
        (dict(priors={"gate_scale": 1.0}), "unknown key 'gate_scale'"),
    ],
)
def test_builder_bad_input(kwargs, message):
    X, lpd = _lpd()
    kwargs.setdefault("lpd", lpd)
    with pytest.raises(ValueError, match=message):
        hierarchical_stacking(X, **kwargs)


@pytest.fixture(scope="module")
def stacked(regional_members):
    data, members = regional_members
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bm.HierarchicalStacking(**FAST).fit(members, data.X, data.y)


def test_weights_follow_the_region(stacked):
    X = pd.DataFrame({"x1": [0.0, 0.0], "x2": [0.0, 0.0], "g": [-1.5, 1.5]})
    w = stacked.weights(X)
    assert list(w.columns) == ["x1_g", "x2_g"]
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    # y follows x1 for g < 0 and x2 for g > 0: each member wins its own side
    assert w.loc[0, "x1_g"] > 0.5 > w.loc[1, "x1_g"]
    draws = stacked.weights(X, return_draws=True)
    assert draws.dims == ("chain", "draw", "obs", "model")
    assert "stacking_weight" in stacked.idata_["predictions"]


def test_predictions_mix_member_draws(stacked, regional_members):
    data, members = regional_members
    X = data.X.iloc[:5]
    # every stacking draw is paired with one draw of each member (same count here:
    # the pairing is the identity), so the mean is an exact function of the draws
    w = stacked.weights(X, return_draws=True).values
    expected = 0.0
    for k, m in enumerate(members.values()):
        Xw = m.standardizer_.transform_X(X[list(m.feature_names_in_)].to_numpy())
        mu = m.standardizer_.inverse_y(m._components(Xw)[1].values[..., 0])
        expected = expected + (w[..., k] * mu).mean(axis=(0, 1))
    np.testing.assert_allclose(stacked.predict(X), expected, rtol=1e-10)
    _, sd = stacked.predict(X, return_std=True)
    assert np.all(sd > 0)
    assert stacked.predict_dist(X).dims == ("chain", "draw", "obs")
    # held-out density: log of the draw-averaged mixture density, row by row
    lp = stacked.pointwise_log_predictive_density(X, data.y[:5])
    assert lp.shape == (5,) and np.all(np.isfinite(lp))
    assert stacked.log_predictive_density(X, data.y[:5]) == pytest.approx(lp.sum())


def test_fit_result_has_standard_groups(stacked):
    tree = stacked.idata_
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data"):
        assert group in tree.children
    assert stacked.global_weights_.sum() == pytest.approx(1.0)
    assert stacked.loo_.shape == (120, 2)
    free = [m for m in stacked.members_ if m != stacked.global_weights_.idxmax()]
    assert set(stacked.summary().index) >= {f"global_logit[{free[0]}]"}
    # the stacking model's own LOO works through compare (its score is pointwise)
    assert np.isfinite(
        bm.compare({"stack": stacked.idata_, "x1": stacked.members_["x1_g"]}, plot=False).table[
            "elpd"
        ]
    ).all()


def test_save_load_round_trip(stacked, regional_members, tmp_path):
    data, _ = regional_members
    path = stacked.save(tmp_path / "stack.nc")
    loaded = bm.load(path)
    assert isinstance(loaded, bm.HierarchicalStacking)
    X = data.X.iloc[:7]
    np.testing.assert_array_equal(loaded.predict(X), stacked.predict(X))
    pd.testing.assert_frame_equal(loaded.weights(X), stacked.weights(X))
    assert loaded.log_predictive_density(X, data.y[:7]) == stacked.log_predictive_density(
        X, data.y[:7]
    )
    assert list(loaded.members_) == list(stacked.members_)
    assert clone(stacked).get_params() == stacked.get_params()


def test_bad_members(regional_members):
    data, members = regional_members
    est = bm.HierarchicalStacking(**FAST)
    with pytest.raises(TypeError, match="models must be a dict"):
        est.fit(list(members.values()), data.X, data.y)
    with pytest.raises(ValueError, match="at least 2 fitted"):
        est.fit({"a": members["x1_g"]}, data.X, data.y)
    with pytest.raises(TypeError, match=r"models\['b'\] must be a fitted bayesmoe estimator"):
        est.fit({"a": members["x1_g"], "b": "x"}, data.X, data.y)
    with pytest.raises(ValueError, match=r"models\['x1_g'\] was fitted on different data"):
        est.fit(members, data.X, data.y + 1.0)
    with pytest.raises(ValueError, match=r"models\['x1_g'\] was fitted on columns \['x1'\]"):
        est.fit(members, data.X[["x2", "g"]], data.y)
    with pytest.raises(ValueError, match="gate_features names 'z'"):
        bm.HierarchicalStacking(gate_features=["z"], **FAST).fit(members, data.X, data.y)
    with pytest.raises(ValueError, match="draws must be >= 1"):
        bm.HierarchicalStacking(draws=0).fit(members, data.X, data.y)


@pytest.mark.slow
def test_beats_best_single_model_and_global_stacking():
    """Held-out log predictive density: hierarchical > global stacking > best single model."""
    from bayesmoe.experiments import make_regional_data

    data = make_regional_data(300, seed=11)
    test = data.new_rows(2000, seed=12)
    settings = dict(FAST, draws=300, tune=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        members = {
            "x1_g": bm.InteractionRegression(**settings).fit(data.X[["x1", "g"]], data.y),
            "x2_g": bm.InteractionRegression(**settings).fit(data.X[["x2", "g"]], data.y),
            "additive": bm.InteractionRegression(interactions=None, **settings).fit(
                data.X[["x1", "x2"]], data.y
            ),
        }
        stack = bm.HierarchicalStacking(**settings).fit(members, data.X, data.y)
    single = {
        k: m.pointwise_log_predictive_density(test.X[list(m.feature_names_in_)], test.y)
        for k, m in members.items()
    }
    w = bm.compare(members, plot=False).weights.reindex(list(members)).to_numpy()
    global_stack = logsumexp(
        np.column_stack(list(single.values())) + np.log(np.maximum(w, 1e-300)), axis=1
    )
    hier = stack.pointwise_log_predictive_density(test.X, test.y)
    best = max(single, key=lambda k: single[k].sum())

    def z(a, b):  # paired z-score of the summed difference over held-out rows
        d = a - b
        return d.sum() / (d.std(ddof=1) * np.sqrt(d.size))

    assert z(hier, single[best]) > 4
    assert z(hier, global_stack) > 4


def test_mlp_gate_fits_and_predicts(regional_members):
    data, members = regional_members
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the API, not the sampler, is tested here: short ADVI keeps it fast (NUTS on the
        # mlp gate's curved posterior needs long trajectories)
        stack = bm.HierarchicalStacking(
            gate="mlp",
            gate_hidden=2,
            gate_features=["g"],
            method="advi",
            draws=100,
            chains=1,
            progressbar=False,
            random_seed=1,
            fit_kwargs={"advi_iterations": 500},
        ).fit(members, data.X, data.y)
    assert stack.idata_["posterior"].sizes["gate_hidden"] == 2
    assert stack.idata_["posterior"]["gate_weights"].dims[-2:] == ("gate_hidden", "gate_model")
    w = stack.weights(data.X.iloc[:5])
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    # the gate sees only g; replicated training y still use every member's columns
    assert stack.sample_posterior_predictive()["posterior_predictive"]["y"].sizes["obs"] == 120
    assert set(stack.summary().index) >= {"stacking_weight_grid[0, x1_g]"}
    assert np.isfinite(stack.log_predictive_density(data.X, data.y))
