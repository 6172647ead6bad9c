"""Prior and posterior predictive checks of every estimator (bayesmoe.estimators.predictive)."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmoe as bm
from bayesmoe.estimators import base

from .conftest import FAST

VEM = dict(method="vem", random_seed=1, progressbar=False)


def _quiet_fit(est, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(*args)


@pytest.fixture(scope="module")
def estimators(small_data, fitted, regional_members):
    """The four estimators, fitted on small data (the mixtures by variational EM)."""
    data, members = regional_members
    return {
        "interaction": (fitted, small_data.X, small_data.y),
        "mixture": (
            _quiet_fit(bm.MixtureRegression(n_components=2, **VEM), small_data.X, small_data.y),
            small_data.X,
            small_data.y,
        ),
        "gated": (
            _quiet_fit(bm.GatedExperts(n_experts=2, **VEM), small_data.X, small_data.y),
            small_data.X,
            small_data.y,
        ),
        "stacking": (
            _quiet_fit(bm.HierarchicalStacking(**FAST), members, data.X, data.y),
            data.X,
            data.y,
        ),
    }


NAMES = ["interaction", "mixture", "gated", "stacking"]


@pytest.mark.parametrize("name", NAMES)
def test_posterior_predictive_of_the_training_rows(estimators, name):
    est, _X, y = estimators[name]
    tree = est.sample_posterior_predictive()
    assert tree is est.idata_
    rep = tree["posterior_predictive"]["y"]
    post = est.idata_["posterior"]
    assert rep.dims == ("chain", "draw", "obs")
    assert rep.shape == (post.sizes["chain"], post.sizes["draw"], len(y))
    np.testing.assert_array_equal(rep["obs"].values, tree["observed_data"]["obs"].values)
    # the user's scale: replicated data centre on the data within Monte Carlo error
    # (the posterior predictive mean of the mean is the data mean up to the fit's bias)
    per_draw = rep.mean("obs").values.ravel()
    assert abs(per_draw.mean() - np.mean(y)) < 4 * per_draw.std() + 4 * np.std(y) / np.sqrt(
        rep.size
    )


@pytest.mark.parametrize("name", NAMES)
def test_posterior_predictive_of_new_rows(estimators, name):
    est, X, y = estimators[name]
    tree = est.sample_posterior_predictive(
        X.iloc[:7], y[:7], draws=3, random_seed=5, var_names=["y", "mu"]
    )
    chains = est.idata_["posterior"].sizes["chain"]
    assert tree["posterior_predictive"]["y"].shape == (chains, 3, 7)
    assert tree["posterior_predictive"]["mu"].shape == (chains, 3, 7)
    np.testing.assert_array_equal(tree["observed_data"]["y"].values, np.asarray(y)[:7])
    # the training groups are not replaced by the new rows'
    assert est.idata_["observed_data"].sizes["obs"] == len(y)
    np.testing.assert_allclose(
        est.idata_["predictions"]["y"].values, tree["posterior_predictive"]["y"].values
    )
    again = est.sample_posterior_predictive(X.iloc[:7], draws=3, random_seed=5)
    np.testing.assert_array_equal(
        again["posterior_predictive"]["y"].values, tree["posterior_predictive"]["y"].values
    )
    other = est.sample_posterior_predictive(X.iloc[:7], draws=3, random_seed=6)
    assert not np.array_equal(
        other["posterior_predictive"]["y"].values, tree["posterior_predictive"]["y"].values
    )
    assert "observed_data" not in other.children


@pytest.mark.parametrize("name", NAMES)
def test_prior_predictive(estimators, name):
    est, X, y = estimators[name]
    prior = est.sample_prior_predictive(draws=30, random_seed=2)
    pp = prior["prior_predictive"]["y"]
    assert pp.shape == (1, 30, len(y))
    assert np.isfinite(pp.values).all()
    np.testing.assert_array_equal(prior["observed_data"]["y"].values, np.asarray(y))
    same = est.sample_prior_predictive(draws=30, random_seed=2)
    np.testing.assert_array_equal(same["prior_predictive"]["y"].values, pp.values)
    new = est.sample_prior_predictive(X.iloc[:9], np.asarray(y)[:9], draws=10, random_seed=2)
    assert new["prior_predictive"]["y"].shape == (1, 10, 9)


@pytest.mark.parametrize("name", ["interaction", "mixture"])
def test_prior_predictive_is_on_the_user_scale(estimators, name):
    """y scaled by 1000 gives prior predictive draws 1000 times as spread (up to the mean)."""
    est, X, y = estimators[name]
    y = np.asarray(y)
    a = est.sample_prior_predictive(X, y, draws=40, random_seed=3)["prior_predictive"]["y"]
    b = est.sample_prior_predictive(X, 1000.0 * y, draws=40, random_seed=3)["prior_predictive"]
    np.testing.assert_allclose(b["y"].values, 1000.0 * a.values, rtol=1e-6, atol=1e-6)


def test_the_no_argument_call_keeps_its_draws(fitted):
    """One block of rows: the same draws as the unblocked draw of the training rows."""
    first = fitted.sample_posterior_predictive()["posterior_predictive"]["y"].values.copy()
    second = fitted.sample_posterior_predictive()["posterior_predictive"]["y"].values
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("kind", ["dist", "pit", "loo_pit"])
def test_plot_ppc(estimators, kind):
    import matplotlib.pyplot as plt

    est = estimators["mixture"][0]
    assert est.plot_ppc(kind) is not None
    plt.close("all")


def test_plot_ppc_rejects_an_unknown_kind(fitted):
    with pytest.raises(ValueError, match="kind must be one of"):
        fitted.plot_ppc("ecdf")


def test_var_names_are_checked(fitted):
    with pytest.raises(ValueError, match="var_names"):
        fitted.sample_posterior_predictive(var_names=["sigma"])


def test_memory_is_flat_in_the_rows(small_data, monkeypatch):
    """1e6 new rows x 4 draws: temporaries are those of one block, not of all rows.

    Bound: the output (n x S float64 = 32 MB), the caller's X copied twice (validated and
    standardised: 2 x n x p float64 = 48 MB) and the temporaries of one block of rows. A
    block's temporaries are about a dozen arrays of (S x rows x experts) float64, each at
    most ``PREDICT_BLOCK_BYTES`` (set to 1 MiB here), plus the block's slice of X: 32 MiB
    covers them. Without blocking the same temporaries are a dozen arrays of 32 MB each.
    """
    est = _quiet_fit(
        bm.InteractionRegression(**{**FAST, "draws": 2, "tune": 50}), small_data.X, small_data.y
    )
    monkeypatch.setattr(base, "PREDICT_BLOCK_BYTES", 2**20)
    n, p = 1_000_000, small_data.X.shape[1]
    X = pd.DataFrame(np.random.default_rng(0).normal(size=(n, p)), columns=small_data.X.columns)
    S = est.idata_["posterior"].sizes["chain"] * est.idata_["posterior"].sizes["draw"]
    assert S == 4
    tracemalloc.start()
    try:
        tree = est.sample_posterior_predictive(X, random_seed=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tree["posterior_predictive"]["y"].shape == (2, 2, n)
    bound = 8 * n * S + 2 * 8 * n * p + 32 * 2**20
    assert peak < bound, (peak / 2**20, bound / 2**20)
