"""Estimator API: sklearn conventions, predictions, persistence and bad input."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.model_selection import cross_val_score

import bayesmoe as bm
import bayesmoe.estimators.base as estimator_base
import bayesmoe.estimators.io as estimator_io

from .conftest import FAST


def test_fit_returns_self_with_fitted_attributes(fitted, small_data):
    assert fitted.model_ is not None and "posterior" in fitted.idata_.children
    assert list(fitted.feature_names_in_) == ["x0", "x1", "x2"]
    assert list(fitted.idata_["posterior"]["beta_interaction"].coords["interaction"].values) == [
        "x0:x1",
        "x0:x2",
        "x1:x2",
    ]


def test_predict_mean_std_and_dist_agree(fitted, small_data):
    X = small_data.X.iloc[:20]
    mean, std = fitted.predict(X, return_std=True)
    np.testing.assert_array_equal(mean, fitted.predict(X))
    draws = fitted.predict_dist(X)
    assert draws.dims == ("chain", "draw", "obs") and draws.shape[-1] == 20
    S = draws.shape[0] * draws.shape[1]
    # predictive draws vs exact predictive moments: standard errors std/sqrt(S), std/sqrt(2S)
    assert np.all(np.abs(draws.mean(("chain", "draw")).values - mean) <= 4.5 * std / np.sqrt(S))
    assert np.all(np.abs(draws.std(("chain", "draw")).values - std) <= 4.5 * std / np.sqrt(2 * S))
    assert "predictions" in fitted.idata_.children


def test_predictions_are_on_the_original_scale(small_data):
    X, y = small_data.X, 1000.0 + 50.0 * small_data.y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bm.InteractionRegression(**FAST).fit(X, y)
    assert abs(est.predict(X).mean() - y.mean()) < 5.0
    assert est.score(X, y) > 0.5


def test_log_predictive_density_matches_direct_computation(fitted, small_data):
    X, y = small_data.X.iloc[:30], small_data.y[:30]
    got = fitted.log_predictive_density(X, y)
    post = fitted.idata_["posterior_working"]
    std = fitted.standardizer_
    mu = fitted.model_.bayesmoe_spec.linear_predictor(
        post.to_dataset(), std.transform_X(X.to_numpy())
    )
    mu = std.inverse_y(mu.values.reshape(-1, 30))
    sd = post["sigma"].values.reshape(-1, 1) * std.y_scale
    ll = stats.norm.logpdf(y, mu, sd)
    expected = np.sum(logsumexp(ll, axis=0) - np.log(ll.shape[0]))
    assert got == pytest.approx(expected, rel=1e-10)


def test_loo_is_on_the_original_scale(small_data):
    """A standardised and a raw-scale fit of the same data get comparable LOO."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = bm.InteractionRegression(standardize=True, **FAST).fit(small_data.X, small_data.y)
        b = bm.InteractionRegression(standardize=False, **FAST).fit(small_data.X, small_data.y)
    la, lb = az.loo(a.idata_), az.loo(b.idata_)
    assert abs(la.elpd - lb.elpd) < 3 * max(la.se, lb.se) / np.sqrt(len(small_data.y)) + 2.0


def test_summary_and_check(fitted):
    summary = fitted.summary()
    assert {"tau_base", "tau_interaction", "sigma"} <= set(summary.index)
    report = fitted.check()
    assert report.max_rhat > 0.9 and report.chains == 2


def test_save_load_round_trip(fitted, small_data, tmp_path):
    path = fitted.save(tmp_path / "model.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same versions: no warning
        loaded = bm.load(path)
    for name in ("beta_base", "beta_interaction", "tau_base", "sigma", "intercept"):
        np.testing.assert_array_equal(
            loaded.idata_["posterior"][name].values, fitted.idata_["posterior"][name].values
        )
    np.testing.assert_array_equal(loaded.predict(small_data.X), fitted.predict(small_data.X))
    assert loaded.get_params() == fitted.get_params()
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_load_warns_on_version_mismatch(fitted, tmp_path, monkeypatch):
    path = fitted.save(tmp_path / "model.nc")
    monkeypatch.setattr(
        estimator_io,
        "versions",
        lambda: {"bayesmoe_version": "99", "pymc_version": "x", "arviz_version": "y"},
    )
    with pytest.warns(UserWarning, match="other library versions"):
        bm.load(path)


def test_corrupted_and_missing_files(fitted, tmp_path):
    path = fitted.save(tmp_path / "model.nc")
    data = path.read_bytes()
    (tmp_path / "cut.nc").write_bytes(data[: len(data) // 3])
    with pytest.raises(OSError, match="truncated or corrupted"):
        bm.load(tmp_path / "cut.nc")
    with pytest.raises(OSError, match="does not exist"):
        bm.load(tmp_path / "nope.nc")
    with pytest.raises(OSError, match="does not exist"):
        fitted.save(tmp_path / "no_such_dir" / "m.nc")


def test_failed_save_leaves_previous_file_intact(fitted, tmp_path, monkeypatch):
    path = fitted.save(tmp_path / "model.nc")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(estimator_io.xr.DataTree, "to_netcdf", boom)
    with pytest.raises(RuntimeError):
        fitted.save(path)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*tmp"))


def test_clone_and_cross_val_score(small_data):
    est = bm.InteractionRegression(**FAST)
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "idata_")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = cross_val_score(est, small_data.X, small_data.y, cv=2)
    # the same folds with ordinary least squares on the same design: a Bayesian fit with
    # learned shrinkage should be about as good (it is the same model up to the prior)
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures

    ols = make_pipeline(PolynomialFeatures(2, interaction_only=True), LinearRegression())
    reference = cross_val_score(ols, small_data.X, small_data.y, cv=2)
    assert scores.shape == (2,) and np.all(scores > reference - 0.05), (scores, reference)


def test_base_only_model(small_data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bm.InteractionRegression(interactions=None, **FAST).fit(small_data.X, small_data.y)
    assert "beta_interaction" not in est.idata_["posterior"]
    assert est.predict(small_data.X).shape == (len(small_data.y),)


def test_prior_predictive(small_data):
    prior = bm.InteractionRegression(random_seed=0).sample_prior_predictive(
        small_data.X, small_data.y, draws=50
    )
    assert prior["prior_predictive"]["y"].shape == (1, 50, len(small_data.y))


def test_posterior_predictive_group(fitted):
    idata = fitted.sample_posterior_predictive()
    assert idata["posterior_predictive"]["y"].dims == ("chain", "draw", "obs")


# ----------------------------------------------------------------------------- bad input


def _frame(rng, n=20):
    return pd.DataFrame(rng.uniform(-1, 1, size=(n, 2)), columns=["a", "b"]), rng.normal(size=n)


def _bad_cases(rng):
    X, y = _frame(rng)
    Xnan = X.copy()
    Xnan.iloc[3, 1] = np.nan
    Xinf = X.copy()
    Xinf.iloc[0, 0] = np.inf
    ynan = y.copy()
    ynan[5] = np.nan
    Xstr = X.assign(c=["u"] * len(X))
    Xcat = X.assign(c=pd.Categorical(["u"] * len(X)))
    Xdate = X.assign(c=pd.date_range("2020", periods=len(X)))
    Xdup = pd.concat([X, X[["a"]]], axis=1)
    return [
        ("nan in X", dict(X=Xnan, y=y), ValueError, r"X contains 1 NaN or infinite values"),
        ("inf in X", dict(X=Xinf, y=y), ValueError, r"X contains 1 NaN"),
        ("nan in y", dict(X=X, y=ynan), ValueError, r"y contains 1 NaN"),
        ("length mismatch", dict(X=X, y=y[:-1]), ValueError, "different lengths"),
        ("2-D y", dict(X=X, y=np.c_[y, y]), ValueError, "y must be 1-D"),
        ("string column", dict(X=Xstr, y=y), TypeError, r"non-numeric columns \['c'\]"),
        ("categorical column", dict(X=Xcat, y=y), TypeError, "non-numeric"),
        ("datetime column", dict(X=Xdate, y=y), TypeError, "non-numeric"),
        ("duplicate names", dict(X=Xdup, y=y), ValueError, r"duplicate column names: \['a'\]"),
        ("one row", dict(X=X.iloc[:1], y=y[:1]), ValueError, "at least 2 are needed"),
        ("empty frame", dict(X=X.iloc[:0], y=y[:0]), ValueError, "at least 2"),
        ("1-D X", dict(X=y, y=y), ValueError, "X must be 2-D"),
        ("huge values", dict(X=X * 1e300, y=y), ValueError, "too large"),
        ("string y", dict(X=X, y=np.array(["a"] * len(y))), TypeError, "y must be numeric"),
    ]


@pytest.mark.parametrize("case", range(14))
def test_bad_fit_input_is_refused_before_compilation(case, rng, monkeypatch):
    _, data, exc, match = _bad_cases(rng)[case]

    def no_compile(*args, **kwargs):
        raise AssertionError("compilation reached")

    monkeypatch.setattr(estimator_base, "fit", no_compile)
    with pytest.raises(exc, match=match):
        bm.InteractionRegression(**FAST).fit(data["X"], data["y"])


@pytest.mark.parametrize(
    "params, exc, match",
    [
        (dict(prior="laplace"), ValueError, "prior='laplace' is not known"),
        (dict(prior="fixed", base_scale=-1.0, interaction_scale=1.0), ValueError, "base_scale"),
        (
            dict(prior="fixed", base_scale=1.0, interaction_scale=0.0),
            ValueError,
            "interaction_scale",
        ),
        (
            dict(priors={"tau": bm.Prior("HalfNormal")}),
            ValueError,
            r"unknown key 'tau'; valid keys",
        ),
        (dict(method="mcmc"), ValueError, "method='mcmc' is not known"),
        (dict(sampler="emcee"), ValueError, "sampler='emcee' is not known"),
        (dict(draws=-5), ValueError, "draws must be >= 1"),
        (dict(fit_kwargs=[1]), TypeError, "fit_kwargs must be a dict"),
    ],
)
def test_bad_settings_refused_before_compilation(params, exc, match, rng, monkeypatch):
    X, y = _frame(rng)
    monkeypatch.setattr(estimator_base, "fit", lambda *a, **k: pytest.fail("compiled"))
    with pytest.raises(exc, match=match):
        bm.InteractionRegression(**{**FAST, **params}).fit(X, y)


def test_constant_feature_warns(rng, monkeypatch):
    X, y = _frame(rng)
    X["c"] = 1.0

    class Reached(Exception):
        pass

    def stop(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(estimator_base, "fit", stop)
    with pytest.warns(UserWarning, match=r"constant columns \['c'\]"), pytest.raises(Reached):
        bm.InteractionRegression(**FAST).fit(X, y)


def test_predict_checks_columns(fitted, small_data):
    X = small_data.X
    with pytest.raises(ValueError, match="different order"):
        fitted.predict(X[["x1", "x0", "x2"]])
    with pytest.raises(ValueError, match="2 columns but the model was fitted on 3"):
        fitted.predict(X[["x0", "x1"]])
    with pytest.raises(ValueError, match="do not match the fitted columns"):
        fitted.predict(X.rename(columns={"x2": "z"}))
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict(X.assign(x0=np.nan))
    np.testing.assert_allclose(fitted.predict(X.to_numpy()), fitted.predict(X))


def test_unfitted_estimator_refuses_predict(small_data):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        bm.InteractionRegression().predict(small_data.X)
