"""The fitting path: NUTS against the closed form, collapsed against per-row, all methods."""

import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr

import bayesmoe as bm
from bayesmoe import Prior
from bayesmoe.numerics.conjugate import ConjugateLinearRegression

from .conftest import FAST

COEFS = ["intercept", "beta_base", "beta_interaction"]


def _flat(post: xr.Dataset, names) -> np.ndarray:
    return np.concatenate(
        [post[n].values.reshape(post.sizes["chain"] * post.sizes["draw"], -1) for n in names],
        axis=1,
    )


def _fixed_model(small_data, collapsed):
    # Fixed prior scales and noise: the posterior of the weights is exactly Gaussian.
    return bm.interaction_regression(
        small_data.X,
        small_data.y,
        prior="fixed",
        base_scale=1.0,
        interaction_scale=0.5,
        priors={"intercept": Prior("Normal", mu=0.0, sigma=2.0), "sigma": 0.5},
        collapsed=collapsed,
    )


def _oracle(small_data):
    Xv = small_data.X.to_numpy()
    inter = np.column_stack([Xv[:, 0] * Xv[:, 1], Xv[:, 0] * Xv[:, 2], Xv[:, 1] * Xv[:, 2]])
    sd = np.r_[2.0, np.full(3, 1.0), np.full(3, 0.5)]
    return ConjugateLinearRegression(np.zeros(7), sd, 0.5).fit(
        np.column_stack([Xv, inter]), small_data.y
    )


def test_nuts_matches_closed_form_within_mc_error(small_data):
    exact = _oracle(small_data)
    idata = bm.fit(_fixed_model(small_data, collapsed=False), **{**FAST, "draws": 1000})
    summ = az.summary(idata, var_names=COEFS, round_to="none")
    sd = np.sqrt(np.diag(exact.cov_))
    # Tolerance: 4 Monte Carlo standard errors as estimated by ArviZ from the chains' ESS.
    assert np.all(np.abs(summ["mean"].values - exact.mean_) <= 4 * summ["mcse_mean"].values)
    assert np.all(np.abs(summ["sd"].values - sd) <= 4 * summ["mcse_sd"].values)


def test_exact_draws_when_nothing_is_left_to_sample(small_data):
    model = _fixed_model(small_data, collapsed=True)
    assert not model.free_RVs
    idata = bm.fit(model, draws=5000, chains=2, random_seed=3, progressbar=False)
    draws = _flat(idata["posterior"].to_dataset(), COEFS)
    exact = _oracle(small_data)
    sd = np.sqrt(np.diag(exact.cov_))
    S = draws.shape[0]
    # iid draws: standard errors sd/sqrt(S) for the mean and ~sd/sqrt(2S) for the sd
    assert np.all(np.abs(draws.mean(0) - exact.mean_) <= 4 * sd / np.sqrt(S))
    assert np.all(np.abs(draws.std(0) - sd) <= 4 * sd / np.sqrt(2 * S))
    assert set(idata.children) >= {"posterior", "log_likelihood", "observed_data", "constant_data"}


def test_collapsed_and_rowwise_posteriors_agree(small_data):
    settings = {**FAST, "draws": 1000, "tune": 1000}
    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for collapsed in (True, False):
            model = bm.interaction_regression(small_data.X, small_data.y, collapsed=collapsed)
            idata = bm.fit(model, **settings)
            post = idata["posterior"].to_dataset()
            post = post.assign(
                log_tau_base=np.log(post["tau_base"]),
                log_tau_interaction=np.log(post["tau_interaction"]),
            )
            idata["posterior"] = post
            names = [*COEFS, "sigma", "log_tau_base", "log_tau_interaction"]
            fits[collapsed] = az.summary(idata, var_names=names, round_to="none")
    a, b = fits[True], fits[False]
    mcse = np.sqrt(a["mcse_mean"] ** 2 + b["mcse_mean"] ** 2)
    bad = (a["mean"] - b["mean"]).abs() > 4 * mcse
    assert not bad.any(), f"collapsed and per-row disagree on {list(a.index[bad])}"


def test_result_groups_and_log_likelihood_for_loo(small_data):
    model = bm.interaction_regression(small_data.X, small_data.y, collapsed=True)
    idata = bm.fit(model, **FAST)
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data"} <= set(idata.children)
    assert idata["log_likelihood"]["y"].dims == ("chain", "draw", "obs")
    assert np.isfinite(az.loo(idata).elpd)


def test_log_likelihood_can_be_skipped_and_added_later(small_data):
    model = bm.interaction_regression(small_data.X, small_data.y, collapsed=True)
    idata = bm.fit(model, log_likelihood=False, **FAST)
    assert "log_likelihood" not in idata.children
    bm.add_log_likelihood(idata, model)
    assert idata["log_likelihood"]["y"].shape == (2, 200, len(small_data.y))


@pytest.mark.parametrize("method", ["advi", "fullrank_advi"])
def test_variational_methods_return_same_shape(small_data, method):
    model = bm.interaction_regression(small_data.X, small_data.y, collapsed=True)
    idata = bm.fit(
        model,
        method=method,
        draws=100,
        chains=2,
        random_seed=0,
        progressbar=False,
        advi_iterations=2000,
    )
    post = idata["posterior"]
    assert post.sizes["draw"] == 200 and "beta_base" in post
    assert idata["log_likelihood"]["y"].shape[-1] == len(small_data.y)
    assert idata.attrs["bayesmoe_method"] == method


def test_same_seed_same_draws_different_seed_different(small_data):
    model = bm.interaction_regression(small_data.X, small_data.y, collapsed=True)
    a = bm.fit(model, **FAST)["posterior"]["beta_base"].values
    b = bm.fit(model, **FAST)["posterior"]["beta_base"].values
    c = bm.fit(model, **{**FAST, "random_seed": 2})["posterior"]["beta_base"].values
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_diagnostics_warn_with_numbers(small_data):
    model = bm.interaction_regression(small_data.X, small_data.y, collapsed=False)
    with pytest.warns(UserWarning, match=r"min bulk ESS \d+ < 200"):
        bm.fit(
            model, sampler="pymc", draws=10, tune=10, chains=2, random_seed=0, progressbar=False
        )


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(method="gibbs"), ValueError, r"method='gibbs' is not known; choose one of \['nuts'"),
        (dict(sampler="stan"), ValueError, "sampler='stan' is not known"),
        (dict(draws=0), ValueError, "draws must be >= 1"),
        (dict(chains=1.5), TypeError, "chains must be an integer"),
        (dict(random_seed=-3), ValueError, "random_seed"),
    ],
)
def test_bad_fit_settings(small_data, kwargs, exc, match):
    model = bm.interaction_regression(small_data.X, small_data.y)
    with pytest.raises(exc, match=match):
        bm.fit(model, **kwargs)


def test_nutpie_default_sampler(small_data):
    """The default sampler end to end (one numba compilation in the suite)."""
    est = bm.InteractionRegression(draws=300, tune=300, chains=2, random_seed=0, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(small_data.X, small_data.y)
    assert est.idata_["posterior"].attrs.get("inference_library") == "nutpie"
    assert est.score(small_data.X, small_data.y) > 0.5


def test_numpyro_sampler(small_data):
    pytest.importorskip("numpyro")
    model = bm.interaction_regression(small_data.X, small_data.y, collapsed=True)
    idata = bm.fit(model, **{**FAST, "sampler": "numpyro"})
    assert "beta_interaction" in idata["posterior"]


def _collapsed_model(d, prior="half_cauchy"):
    std = bm.data.Standardizer.fit(d.X.to_numpy(), d.y, enabled=True)
    Xw = d.X.copy()
    Xw.loc[:, :] = std.transform_X(d.X.to_numpy())
    return bm.interaction_regression(Xw, std.transform_y(d.y), collapsed=True, prior=prior)


@pytest.mark.parametrize("prior", ["half_cauchy", "horseshoe"])
def test_nutpie_cache_reuses_compilation_and_gives_the_fresh_answer(
    small_data, monkeypatch, prior
):
    """A second same-shape collapsed fit (here with 150 rows, the first has 120) reuses
    the compiled sampler with its own data, and its draws equal those of a fresh
    compilation with the same seed. The horseshoe's default global scale depends on n
    (b = f / (1 - f) / sqrt(n)): it is data too, so a learning curve compiles once."""
    from bayesmoe.inference.backends import nutpie as nutpie_backend

    other = small_data.new_rows(150, seed=9)
    settings = dict(draws=200, tune=200, chains=2, random_seed=4, progressbar=False)

    def build(d):
        return _collapsed_model(d, prior)

    first, second = build(small_data), build(other)
    assert first.bayesmoe_spec.cache_key == second.bayesmoe_spec.cache_key
    if prior == "horseshoe":
        b1, b2 = (m["tau_base_beta"].get_value() for m in (first, second))
        assert b1 == pytest.approx(b2 * np.sqrt(150 / 120))  # n enters, through the data
    nutpie_backend._NUTPIE_CACHE.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bm.fit(first, **settings)
        assert len(nutpie_backend._NUTPIE_CACHE) == 1
        compiled_calls = []
        import bayesmoe.cache

        # Every compilation goes through bayesmoe.cache.compile_nutpie (which may not call
        # nutpie.compile_pymc_model at all when its numba code comes from the disk cache).
        original = bayesmoe.cache.compile_nutpie
        monkeypatch.setattr(
            bayesmoe.cache,
            "compile_nutpie",
            lambda *a, **k: compiled_calls.append(1) or original(*a, **k),
        )
        cached = bm.fit(second, **settings)
        assert not compiled_calls  # no new compilation
        nutpie_backend._NUTPIE_CACHE.clear()
        fresh = bm.fit(build(other), **settings)
        assert compiled_calls
    for name in ("sigma", "tau_base", "beta_base"):
        np.testing.assert_array_equal(
            cached["posterior"][name].values, fresh["posterior"][name].values
        )


def test_start_is_checked_on_the_data_the_sampler_uses(small_data):
    """A structure reused from the process cache gets the new data by ``with_data``,
    which nutpie's PyTensor function does not see: the start check (zero gradients,
    finite density) must evaluate what nutpie will, or an EM start whose gradient is
    exactly zero on the new data only reaches nutpie unmoved and every chain fails
    ("bad initial gradient"; seen as 1 of 200 mixture SBC fits)."""
    import bayesmoe.cache
    from bayesmoe.inference.backends.nutpie import _log_density, _with_model_data, _with_start

    first = _collapsed_model(small_data)
    second = _collapsed_model(small_data.new_rows(150, seed=9))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = bayesmoe.cache.compile_nutpie(first)
        fresh = bayesmoe.cache.compile_nutpie(second)
    swapped = _with_model_data(compiled, second)
    x = compiled.initial_point_func(0)
    logp, grad = _log_density(swapped, x)
    logp_fresh, grad_fresh = _log_density(fresh, x)
    assert logp == logp_fresh
    np.testing.assert_array_equal(grad, grad_fresh)
    assert _log_density(compiled, x)[0] != logp  # the data do enter
    # a start with a non-finite density falls back to the default start, and says so
    free = {v.name for v in second.free_RVs}
    assert "sigma" in free
    with pytest.warns(UserWarning, match="non-finite log density"):
        same = _with_start(swapped, second, {"sigma": np.array(0.0)})
    assert same is swapped
