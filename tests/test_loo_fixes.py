"""LOO that holds when Pareto k is high: ``est.loo(fix=...)``, ``bm.kfold``, ``compare(fix=)``.

Fast tests use a variational (VEM) mixture, which fits in about a second, on 30 rows with
one gross high-leverage outlier: with K = 3 a spare component takes the outlier and its
Pareto k is far above ArviZ's threshold (about 1.3 against 0.62 for 400 draws). VEM with
a fixed seed is deterministic, so refits done by hand must give the same numbers exactly.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
from sklearn.base import clone

import bayesmoe as bm
from bayesmoe.inference.diagnostics import PARETO_K_MAX, pareto_k_threshold
from bayesmoe.inference.loglik import SUBSAMPLE_GROUP, subsample_apart
from bayesmoe.validation import LooFix

VEM = dict(method="vem", draws=200, chains=2, random_seed=1, progressbar=False)


@pytest.fixture(scope="module")
def outlier_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    y = 1.0 + X @ [1.0, -0.5] + 0.3 * rng.normal(size=30)
    X[0], y[0] = [6.0, 6.0], -8.0
    return X, y


def _fit(X, y, K, **extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bm.MixtureRegression(n_components=K, **VEM, **extra).fit(X, y)


@pytest.fixture(scope="module")
def overfitted(outlier_data):
    return _fit(*outlier_data, K=3)


@pytest.fixture(scope="module")
def two(outlier_data):
    return _fit(*outlier_data, K=2)


def _quiet_loo(est, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.loo(progressbar=False, **kwargs)


# ------------------------------------------------------------------ threshold
@pytest.mark.parametrize(("S", "want"), [(1, 0.7), (100, 0.5), (400, 1 - 1 / np.log10(400))])
def test_threshold_is_arviz_sample_size_dependent_one(S, want):
    assert pareto_k_threshold(S) == pytest.approx(want)
    assert pareto_k_threshold(10_000) == PARETO_K_MAX


def test_threshold_equals_arviz_good_k(fitted):
    result = az.loo(fitted.idata_, pointwise=True)
    assert pareto_k_threshold(result.n_samples) == pytest.approx(result.good_k)


# ------------------------------------------------------------------ est.loo
def test_plain_loo_is_arvizs_and_names_high_rows(overfitted):
    with pytest.warns(UserWarning, match=r"1 rows with Pareto k > 0\.62 \(max 1\.\d\d\)"):
        result = overfitted.loo(fix=None)
    want = az.loo(overfitted.idata_, pointwise=True)
    assert result.elpd == want.elpd and result.se == want.se
    record = result.bayesmoe_fix
    assert isinstance(record, LooFix) and record.method == "psis"
    assert record.flagged.tolist() == [0] and record.still_high.tolist() == [0]
    assert record.threshold == pytest.approx(want.good_k)


def test_loo_without_high_rows_changes_nothing(fitted):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        result = fitted.loo(fix="auto")
    want = az.loo(fitted.idata_, pointwise=True)
    assert result.bayesmoe_fix.flagged.size == 0
    assert result.elpd == want.elpd and result.bayesmoe_fix.method == "psis"


def test_reloo_replaces_the_row_by_its_exact_refit(overfitted, outlier_data):
    X, y = outlier_data
    result = _quiet_loo(overfitted, fix="reloo")
    record = result.bayesmoe_fix
    assert record.method == "reloo" and record.fixed.tolist() == [0]
    assert record.still_high.size == 0 and record.max_k_after == 0.0
    refit = clone(overfitted).set_params(log_likelihood=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refit.fit(X[1:], y[1:])
    held_out = refit.pointwise_log_predictive_density(X[:1], y[:1])[0]
    assert float(result.elpd_i[0]) == pytest.approx(held_out, rel=1e-12)
    plain = az.loo(overfitted.idata_, pointwise=True)
    rest = np.asarray(result.elpd_i)[1:]
    np.testing.assert_array_equal(rest, np.asarray(plain.elpd_i)[1:])
    assert result.elpd == pytest.approx(rest.sum() + held_out, rel=1e-12)


def test_kfold_fix_replaces_every_row(overfitted):
    result = _quiet_loo(overfitted, fix="kfold", k=3)
    record = result.bayesmoe_fix
    assert record.method == "kfold(3)" and record.still_high.size == 0
    assert record.flagged.tolist() == [0] and record.fixed.size == 30
    assert result.kind == "loo_kfold" and result.n_data_points == 30


def test_bad_arguments_are_named(overfitted):
    with pytest.raises(ValueError, match="fix='bogus'"):
        overfitted.loo(fix="bogus")
    with pytest.raises(ValueError, match="k must be an integer >= 2"):
        overfitted.loo(k=1)
    with pytest.raises(ValueError, match="max_refits"):
        overfitted.loo(max_refits=-1)
    with pytest.raises(ValueError, match="not the y the estimator was fitted on"):
        bm.kfold(overfitted, np.zeros((30, 2)), np.zeros(30), k=3)
    with pytest.raises(ValueError, match="more folds than rows"):
        bm.kfold(overfitted, k=31)


# ------------------------------------------------------------------ kfold
def test_kfold_is_the_refits_held_out_density(two, outlier_data):
    X, y = outlier_data
    result = bm.kfold(two, k=3, random_seed=5, progressbar=False)
    from sklearn.model_selection import KFold

    want = np.empty(30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for train, test in KFold(3, shuffle=True, random_state=5).split(X):
            refit = clone(two).set_params(log_likelihood=False).fit(X[train], y[train])
            want[test] = refit.pointwise_log_predictive_density(X[test], y[test])
    np.testing.assert_allclose(np.asarray(result.elpd_i), want, rtol=1e-12)
    assert result.elpd == pytest.approx(want.sum(), rel=1e-12)
    assert result.se == pytest.approx(np.sqrt(30 * np.var(want)), rel=1e-12)


def test_kfold_groups_and_strata(two):
    groups = np.repeat(np.arange(6), 5)
    result = bm.kfold(two, k=3, groups=groups, random_seed=0, progressbar=False)
    assert result.n_data_points == 30
    with pytest.raises(ValueError, match="stratify or groups, not both"):
        bm.kfold(two, k=3, groups=groups, stratify=groups)
    with pytest.raises(ValueError, match="groups has 4 values for 30 rows"):
        bm.kfold(two, k=3, groups=[1, 2, 3, 4])


# ------------------------------------------------------------------ compare
def test_compare_fix_names_the_method_and_leaves_no_high_row(overfitted, two):
    models = {"K=3": overfitted, "K=2": two}
    with pytest.warns(UserWarning, match="Pareto k"):
        plain = bm.compare(models, plot=False)
    assert plain.table.loc["K=3", "elpd_method"] == "psis"
    assert plain.table.loc["K=3", "n_high_k"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed = bm.compare(models, plot=False, fix="reloo")
    assert fixed.table.loc["K=3", "elpd_method"] == "reloo"
    assert fixed.table["n_high_k"].tolist() == [0, 0]
    assert fixed.fixes["K=3"].fixed.tolist() == [0]
    # a model without high-k rows keeps its PSIS-LOO numbers bit for bit
    k2_high = plain.table.loc["K=2", "n_high_k"]
    if k2_high == 0:
        assert fixed.table.loc["K=2", "elpd"] == plain.table.loc["K=2", "elpd"]
        assert fixed.table.loc["K=2", "elpd_method"] == "psis"


def test_compare_fix_refuses_waic_and_trees(overfitted, two):
    models = {"a": overfitted, "b": two}
    with pytest.raises(ValueError, match="needs ic='loo'"):
        bm.compare(models, ic="waic", fix="auto", plot=False)
    with pytest.raises(TypeError, match=r"models\['b'\] is a DataTree"):
        bm.compare({"a": overfitted, "b": two.idata_}, fix="auto", plot=False)
    with pytest.raises(ValueError, match="fix='x'"):
        bm.compare(models, fix="x", plot=False)


def test_compare_csv_has_the_method_column(overfitted, two, tmp_path):
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = bm.compare({"K=3": overfitted, "K=2": two}, plot=False)
    back = pd.read_csv(result.to_csv(tmp_path / "loo.csv"), index_col="model")
    assert back.loc["K=3", "elpd_method"] == "psis"
    assert back.loc["K=3", "elpd"] == result.table.loc["K=3", "elpd"]


# ------------------------------------------------------------------ subsampled fits
def test_loo_of_a_subsampled_fit_covers_every_row(outlier_data):
    X, y = outlier_data
    est = _fit(X, y, K=2, log_likelihood=np.arange(0, 30, 3))
    assert est.idata_.attrs["bayesmoe_log_likelihood"] == "subsample"
    with pytest.raises(TypeError, match="log likelihood not found"):
        az.loo(est.idata_)  # the subsample is not where arviz.loo looks: no silent elpd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = est.loo(fix=None)
    assert result.n_data_points == 30
    assert result.bayesmoe_fix.method == "psis (every row, blocked)"
    est.add_log_likelihood()  # every row: az.loo of it is the reference
    want = az.loo(est.idata_, pointwise=True)
    np.testing.assert_allclose(np.asarray(result.elpd_i), np.asarray(want.elpd_i), rtol=1e-9)
    assert result.elpd == pytest.approx(want.elpd, rel=1e-9)


# ------------------------------------------------------------------ slow
@pytest.mark.slow
def test_moment_matching_agrees_with_the_exact_refit(overfitted):
    """Moment matching of the mixture's outlier row from its PyMC graph (compiling the
    vectorised graph takes ~3 minutes on a cold PyTensor cache, ~10 s warm)."""
    mm = _quiet_loo(overfitted, fix="moment_match")
    exact = _quiet_loo(overfitted, fix="reloo")
    assert mm.bayesmoe_fix.method == "moment_match"
    assert mm.bayesmoe_fix.still_high.size == 0
    # the refit's held-out density is exact up to its own Monte Carlo error (~0.05 here)
    assert float(mm.elpd_i[0]) == pytest.approx(float(exact.elpd_i[0]), abs=0.1)


def test_files_of_the_earlier_layout_move_the_subsample_apart(outlier_data):
    X, y = outlier_data
    est = _fit(X, y, K=2, log_likelihood=np.arange(0, 30, 3))
    old = est.idata_.copy()
    old["log_likelihood"] = old[SUBSAMPLE_GROUP].to_dataset()  # as written before
    del old[SUBSAMPLE_GROUP]
    moved = subsample_apart(old)
    assert "log_likelihood" not in moved.children
    np.testing.assert_array_equal(
        moved[SUBSAMPLE_GROUP]["row"].values, est.idata_[SUBSAMPLE_GROUP]["row"].values
    )
    full = _fit(X, y, K=2)  # every row: nothing to move
    assert "log_likelihood" in subsample_apart(full.idata_).children
