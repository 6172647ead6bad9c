"""compare / predict_averaged / select_experts: delegation to ArviZ, checks, bad input."""

from __future__ import annotations

import copy
import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr

import bayesmoe as bm
from bayesmoe.comparison import select_experts
from bayesmoe.numerics.waic import waic_pointwise


def _tree(ll: np.ndarray, y: np.ndarray | None = None) -> xr.DataTree:
    groups = {
        "posterior": xr.Dataset({"a": (("chain", "draw"), np.zeros(ll.shape[:2]))}),
        "log_likelihood": xr.Dataset({"y": (("chain", "draw", "obs"), ll)}),
    }
    if y is not None:
        groups["observed_data"] = xr.Dataset({"y": ("obs", y)})
    return xr.DataTree.from_dict(groups)


def test_table_and_weights_are_arviz(regional_members, tmp_path):
    _, members = regional_members
    result = bm.compare(members)
    expected = az.compare({k: m.idata_ for k, m in members.items()}, round_to="none")
    assert list(result.table.index) == list(expected.index)
    np.testing.assert_allclose(result.table["elpd"], expected["elpd"])
    np.testing.assert_allclose(result.weights, expected["weight"], atol=1e-6)
    assert result.weights.sum() == pytest.approx(1.0)
    path = result.savefig(tmp_path / "compare.png")
    assert path.stat().st_size > 1000
    assert set(result.elpd) == set(members)


@pytest.mark.parametrize("method", ["bb-pseudo-bma", "pseudo-bma"])
def test_pseudo_bma_weights(regional_members, method):
    _, members = regional_members
    table = bm.compare(members, method=method, plot=False).table
    assert table["weight"].sum() == pytest.approx(1.0)
    if method == "pseudo-bma":  # weights proportional to exp(elpd)
        w = np.exp(table["elpd"] - table["elpd"].max())
        np.testing.assert_allclose(table["weight"], w / w.sum(), rtol=1e-9)


def test_waic_pointwise_formula():
    rng = np.random.default_rng(0)
    ll = rng.normal(-1.0, 0.3, size=(4000, 5))
    elpd_i, p_i = waic_pointwise(ll)
    lppd = np.log(np.mean(np.exp(ll), axis=0))
    np.testing.assert_allclose(p_i, ll.var(axis=0, ddof=1))
    np.testing.assert_allclose(elpd_i, lppd - p_i)
    # a constant log-likelihood has no effective parameters
    e, p = waic_pointwise(np.full((10, 3), -2.0))
    np.testing.assert_allclose(p, 0.0, atol=1e-12)
    np.testing.assert_allclose(e, -2.0)


def test_waic_table_close_to_loo(regional_members):
    _, members = regional_members
    waic = bm.compare(members, ic="waic", plot=False).table
    loo = bm.compare(members, ic="loo", plot=False).table
    # for well-behaved regressions WAIC and PSIS-LOO agree to a fraction of their se
    for name in members:
        assert abs(waic.loc[name, "elpd"] - loo.loc[name, "elpd"]) < 0.25 * loo.loc[name, "se"]


def test_high_pareto_k_names_the_observations():
    rng = np.random.default_rng(0)
    ll = rng.normal(-1.0, 0.1, size=(2, 200, 30))
    ll[:, :, 7] = -1 + 3 * rng.standard_t(1.5, size=(2, 200))  # one wildly influential row
    y = np.zeros(30)
    good = _tree(rng.normal(-1.0, 0.1, size=(2, 200, 30)), y)
    with pytest.warns(UserWarning, match=r"model 'bad'.*obs 7 \(k="):
        result = bm.compare({"bad": _tree(ll, y), "good": good}, plot=False)
    assert 7 in result.unreliable["bad"].tolist()
    assert result.unreliable["good"].size == 0


def test_models_fitted_on_different_data_are_refused():
    rng = np.random.default_rng(1)
    a = _tree(rng.normal(size=(2, 50, 40)), np.arange(40.0))
    b = _tree(rng.normal(size=(2, 50, 30)), np.arange(30.0))
    with pytest.raises(
        ValueError, match=r"models 'a' and 'b' were fitted on different data.*40 vs 30"
    ):
        bm.compare({"a": a, "b": b})
    c = _tree(rng.normal(size=(2, 50, 40)), np.arange(40.0) + 1.0)
    with pytest.raises(ValueError, match=r"models 'a' and 'c' were fitted on different data.*y"):
        bm.compare({"a": a, "c": c})


def test_tree_without_log_likelihood_says_how_to_add_it(regional_members):
    _, members = regional_members
    bare = members["x1_g"].idata_.copy()
    del bare["log_likelihood"]
    with pytest.raises(
        ValueError, match=r"no log_likelihood.*bayesmoe.add_log_likelihood.*add_log_likelihood\(\)"
    ):
        bm.compare({"bare": bare, "other": members["x2_g"]})


def test_estimator_without_log_likelihood_gets_it(regional_members):
    _, members = regional_members
    est = copy.copy(members["x1_g"])
    est.idata_ = est.idata_.copy()
    expected = est.idata_["log_likelihood"]["y"].values.copy()
    del est.idata_["log_likelihood"]
    bm.compare({"a": est, "b": members["x2_g"]}, plot=False)
    np.testing.assert_allclose(est.idata_["log_likelihood"]["y"].values, expected)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(ic="dic"), ValueError, r"ic='dic' is not known.*'loo', 'waic'"),
        (dict(method="bma"), ValueError, r"method='bma' is not known.*stacking"),
    ],
)
def test_bad_choices(regional_members, kwargs, error, message):
    _, members = regional_members
    with pytest.raises(error, match=message):
        bm.compare(members, **kwargs)


def test_bad_models_argument(regional_members):
    _, members = regional_members
    with pytest.raises(TypeError, match="models must be a dict"):
        bm.compare([members["x1_g"], members["x2_g"]])
    with pytest.raises(ValueError, match="at least 2"):
        bm.compare({"a": members["x1_g"]})
    with pytest.raises(ValueError, match=r"models\['new'\] is an unfitted"):
        bm.compare({"a": members["x1_g"], "new": bm.InteractionRegression()})
    with pytest.raises(TypeError, match=r"models\['b'\] must be a fitted bayesmoe estimator or"):
        bm.compare({"a": members["x1_g"], "b": 3})


def test_predict_averaged_mixes_in_proportion(regional_members):
    data, members = regional_members
    X = data.X.iloc[:4]
    draws = bm.predict_averaged(members, {"x1_g": 0.25, "x2_g": 0.75}, X, random_seed=0)
    assert draws.dims == ("sample", "obs") and draws.sizes["obs"] == 4
    # the average of the mixed draws is the weighted average of the predictive means,
    # within Monte Carlo error of the mixed sample
    means = {k: m.predict(X[list(m.feature_names_in_)]) for k, m in members.items()}
    expected = 0.25 * means["x1_g"] + 0.75 * means["x2_g"]
    mcse = draws.std("sample").values / np.sqrt(draws.sizes["sample"])
    assert np.all(np.abs(draws.mean("sample").values - expected) < 5 * mcse)
    only = bm.predict_averaged(members, [1.0, 0.0], X)
    assert only.sizes["sample"] == 400


def test_predict_averaged_bad_weights(regional_members):
    data, members = regional_members
    with pytest.raises(ValueError, match="weights name models"):
        bm.predict_averaged(members, {"x1_g": 1.0}, data.X)
    with pytest.raises(ValueError, match="non-negative"):
        bm.predict_averaged(members, [1.0, -0.5], data.X)
    with pytest.raises(ValueError, match="3 entries for 2 models"):
        bm.predict_averaged(members, [0.2, 0.3, 0.5], data.X)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(k_range=[2]), "at least two values"),
        (dict(k_range=[0, 1]), "integers >= 1"),
        (dict(screen_method="em"), r"screen_method='em' is not known"),
        (dict(screen_method="advi", n_final=1), "n_final must be an integer >= 2"),
        (dict(screen_method="advi", selection="aic"), "selection='aic' is not known"),
        (dict(screen_method="advi", gate="tree"), "gate='tree' is not known"),
        (dict(screen_method="advi", final_kwargs={"draws": 0}), "draws must be >= 1"),
    ],
)
def test_select_experts_bad_input(kwargs, message, small_data):
    with pytest.raises(ValueError, match=message):
        select_experts(small_data.X, small_data.y, **kwargs)


@pytest.mark.slow
def test_select_experts_finds_true_k():
    from bayesmoe.experiments import make_mixture_data

    data = make_mixture_data(200, n_experts=2, x_dim=1, seed=4)
    fast = dict(sampler="pymc", draws=200, tune=200, chains=2, random_seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = select_experts(
            data.X,
            data.y,
            k_range=range(1, 4),
            screen_kwargs={"draws": 100},  # the default screen: variational EM
            estimator_kwargs={"random_seed": 2},
            final_kwargs=fast,
            progressbar=False,
        )
    assert result.n_experts == 2
    assert "K=1" in result.screening.table.index
    assert set(result.table.index) <= {"K=1", "K=2", "K=3"} and len(result.table) == 2
    assert result.best.n_experts == 2
    # the component diagnosis of every fit: the chosen K = 2 supports its own K, and a
    # screened K = 3 fit of K_true = 2 data does not (an emptied or merged component)
    comp = result.components
    assert set(comp["stage"]) == {"screening", "final"}
    final = comp[comp["stage"] == "final"]
    assert final.loc["K=2", "supported_max"] >= 2 and final.loc["K=2", "message"] == ""
    screen = comp[comp["stage"] == "screening"]
    assert screen.loc["K=3", "supported_max"] <= 2
    assert "the data support K" in screen.loc["K=3", "message"]


@pytest.mark.slow
def test_one_expert_fits_with_advi():
    """select_experts screens K = 1 too; a length-1 noise vector used to break ADVI there."""
    from bayesmoe.experiments import make_mixture_data

    data = make_mixture_data(60, n_experts=2, x_dim=1, seed=1)
    est = bm.GatedExperts(
        n_experts=1,
        method="advi",
        draws=20,
        chains=1,
        progressbar=False,
        random_seed=0,
        fit_kwargs={"advi_iterations": 200},
    ).fit(data.X, data.y)
    ll = est.idata_["log_likelihood"]["y"]
    assert ll.sizes["obs"] == 60 and np.isfinite(ll.values).all()


def test_choose_restricted_to_self_consistent_fits():
    import pandas as pd

    from bayesmoe.comparison import _choose, _self_consistent

    # ranked K=3 (best), K=2, K=1: K=2 within one SE, K=1 not
    table = pd.DataFrame(
        {"elpd_diff": [0.0, -1.0, -30.0], "dse": [0.0, 2.0, 5.0]}, index=["K=3", "K=2", "K=1"]
    )
    assert _choose(table, "best") == 3
    assert _choose(table, "one_se") == 2
    components = pd.DataFrame(
        {"supported_min": [1, 1, 2], "supported_max": [1, 1, 2]}, index=["K=1", "K=2", "K=3"]
    )
    # K=2 and K=3 empty components (they support fewer than their K): only K=1 remains
    allowed = _self_consistent(components)
    assert allowed == ["K=1"]
    assert _choose(table, "best", allowed) == 1
    # one_se with no allowed fit close to the best falls back to the best allowed one
    assert _choose(table, "one_se", allowed) == 1
    # K=3 supports its K: the best; within one SE of it among allowed: none but itself
    components.loc["K=3", "supported_max"] = 3
    assert _self_consistent(components) == ["K=1", "K=3"]
    assert _choose(table, "one_se", _self_consistent(components)) == 3
    # no fit supports its own K: the choice falls back to the whole table
    assert _choose(table, "one_se", []) == 2


def _close_models(n: int = 300) -> dict[str, xr.DataTree]:
    """Three models whose elpd (about -440) differ by less than ArviZ's 2-digit rounding."""
    rng = np.random.default_rng(5)
    y = rng.normal(size=n)
    base = rng.normal(-1.47, 0.3, size=n)
    return {
        name: _tree(base + shift + 0.01 * rng.normal(size=(2, 100, n)), y)
        for name, shift in (("base_only", -0.002), ("fixed_prior", -0.004), ("learned", 0.0))
    }


def test_printed_table_has_a_header_and_one_decimal():
    """elpd, elpd_diff, se, dse and p print to 0.1 and weights to 0.01 under a header row;
    the table itself keeps every digit."""
    from bayesmoe.comparison import format_table

    result = bm.compare(_close_models(), plot=False)
    table = result.table
    assert table["elpd"].nunique() == 3 and table["elpd"].round(-1).nunique() == 1
    lines = format_table(table).splitlines()
    header = lines[0].split()
    assert header[0] == "model" and {"elpd", "elpd_diff", "se", "dse", "p", "weight"} <= set(
        header
    )
    assert len(lines) == 1 + len(table)
    for line, (name, row) in zip(lines[1:], table.iterrows(), strict=True):
        assert line.startswith(name)
        for column, fmt in (("elpd", "{:.1f}"), ("se", "{:.1f}"), ("weight", "{:.2f}")):
            assert fmt.format(row[column]) in line.split()
    elpds = {f"{v:.1f}" for v in table["elpd"]}
    assert len(elpds) == 3, elpds  # distinct at 0.1, where 2 digits print -440 thrice
    assert str(result).splitlines()[1:] == lines
    assert "nan" not in format_table(table).lower()  # the best model's p_worse: empty cell
