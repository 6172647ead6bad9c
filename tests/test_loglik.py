"""Pointwise log-likelihood: block kernels, log_likelihood="auto", subsampled LOO in compare."""

from __future__ import annotations

import dataclasses
import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr
from arviz_stats import loo_subsample
from scipy import stats
from scipy.special import log_softmax, logsumexp

import bayesmoe as bm
from bayesmoe import fitting
from bayesmoe.builders.mixture import logsumexp_over_experts
from bayesmoe.comparison import _loo_subsample, pointwise_elpd
from bayesmoe.experiments import make_mixture_data
from bayesmoe.inference import loglik as inference_loglik
from bayesmoe.inference.loglik import SUBSAMPLE_GROUP
from bayesmoe.numerics import loglik

# Agreement with the reference formulas: relative 1e-12, plus 1e-12 absolute for values
# near 0, where the log density is a difference of two O(1) terms.
TOL = dict(rtol=1e-12, atol=1e-12)


def _reference_gaussian(X, y, coef, sigma, intercept):
    mu = coef @ X.T + np.reshape(intercept, (-1, 1))
    return stats.norm.logpdf(y, mu, np.reshape(sigma, (-1, 1)))


def _reference_mixture(X, y, coef, sigma, intercept, log_w):
    """log sum_k exp(log w_sik + log N(y_i | mu_sik, sigma_sk)), log_w (S, n, K)."""
    mu = np.einsum("id,skd->sik", X, coef) + intercept[:, None, :]
    dens = stats.norm.logpdf(y[None, :, None], mu, sigma[:, None, :])
    return logsumexp(log_w + dens, axis=-1)


@pytest.fixture(scope="module")
def draws():
    rng = np.random.default_rng(11)
    S, K, n, d = 37, 3, 1500, 4  # not multiples of the block sizes
    return dict(
        rng=rng,
        X=rng.normal(size=(n, d)),
        y=rng.normal(size=n) * 2,
        coef=rng.normal(size=(S, K, d)) * 0.5,
        sigma=rng.uniform(0.3, 2.0, (S, K)),
        intercept=rng.normal(size=(S, K)),
        weights=rng.dirichlet(np.ones(K), S),
    )


# ---------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("fixed", [False, True])
def test_gaussian_kernel_matches_norm_logpdf(draws, fixed, monkeypatch):
    monkeypatch.setattr(loglik, "BLOCK_ROWS", 256)  # several row and draw blocks
    monkeypatch.setattr(loglik, "BLOCK_VALUES", 4096)
    X, y, coef = draws["X"], draws["y"], draws["coef"][:, 0]
    sigma = 0.8 if fixed else draws["sigma"][:, 0]
    intercept = 0.3 if fixed else draws["intercept"][:, 0]
    out = np.full((coef.shape[0], X.shape[0]), np.nan)
    got = loglik.gaussian_linear(X, y, coef, sigma, intercept, out=out)
    assert got is out
    S = coef.shape[0]
    ref = _reference_gaussian(X, y, coef, np.broadcast_to(sigma, S), np.broadcast_to(intercept, S))
    np.testing.assert_allclose(got, ref, **TOL)


def test_mixture_kernel_matches_logsumexp(draws, monkeypatch):
    monkeypatch.setattr(loglik, "BLOCK_ROWS", 300)
    monkeypatch.setattr(loglik, "BLOCK_VALUES", 3000)
    d = draws
    S, n, K = d["coef"].shape[0], d["X"].shape[0], d["coef"].shape[1]
    log_w = np.log(d["weights"])
    got = loglik.mixture_gaussian_linear(
        d["X"], d["y"], d["coef"], d["sigma"], d["intercept"], log_w
    )
    ref = _reference_mixture(
        d["X"],
        d["y"],
        d["coef"],
        d["sigma"],
        d["intercept"],
        np.broadcast_to(log_w[:, None], (S, n, K)),
    )
    np.testing.assert_allclose(got, ref, **TOL)


@pytest.mark.parametrize("gate", ["linear", "mlp"])
def test_gated_kernel_matches_log_softmax(draws, gate, monkeypatch):
    monkeypatch.setattr(loglik, "BLOCK_VALUES", 5000)
    d, rng = draws, draws["rng"]
    S, K = d["coef"].shape[:2]
    G = d["X"][:, :2]
    c = rng.normal(size=(S, K - 1))
    if gate == "linear":
        V = rng.normal(size=(S, 2, K - 1))
        fn = loglik.softmax_gate(G, V, c)
        inputs = np.broadcast_to(G, (S, *G.shape))
    else:
        W, a, V = (
            rng.normal(size=(S, 2, 5)),
            rng.normal(size=(S, 5)),
            rng.normal(size=(S, 5, K - 1)),
        )
        fn = loglik.softmax_gate(G, V, c, W, a)
        inputs = np.tanh(np.einsum("ig,sgh->sih", G, W) + a[:, None, :])
    eta = np.einsum("sih,shk->sik", inputs, V) + c[:, None, :]
    log_w = log_softmax(np.concatenate([eta, np.zeros((*eta.shape[:2], 1))], axis=-1), axis=-1)
    got = loglik.mixture_gaussian_linear(
        d["X"], d["y"], d["coef"], d["sigma"], d["intercept"], gate_logits=fn
    )
    ref = _reference_mixture(d["X"], d["y"], d["coef"], d["sigma"], d["intercept"], log_w)
    np.testing.assert_allclose(got, ref, **TOL)


def test_mixture_kernel_far_rows_and_zero_weights(draws):
    """Rows far from every expert (the sum of exponentials underflows) and zero weights."""
    d = draws
    y = d["y"].copy()
    y[:5] = [60.0, -80.0, 200.0, 1e3, -1e4]  # z^2 / 2 far beyond exp's range
    w = d["weights"].copy()
    w[:, 0] = 0.0  # an empty component: log weight -inf
    w /= w.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        log_w = np.log(w)
    S, n, K = d["coef"].shape[0], y.size, d["coef"].shape[1]
    got = loglik.mixture_gaussian_linear(d["X"], y, d["coef"], d["sigma"], d["intercept"], log_w)
    ref = _reference_mixture(
        d["X"],
        y,
        d["coef"],
        d["sigma"],
        d["intercept"],
        np.broadcast_to(log_w[:, None], (S, n, K)),
    )
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, **TOL)
    zero = np.full_like(log_w, -np.inf)
    gone = loglik.mixture_gaussian_linear(d["X"], y, d["coef"], d["sigma"], d["intercept"], zero)
    assert np.all(gone == -np.inf)  # no mass anywhere: density 0, not NaN


def test_kernel_bad_input(draws):
    X, y, coef = draws["X"], draws["y"], draws["coef"]
    with pytest.raises(ValueError, match="coef"):
        loglik.gaussian_linear(X, y, coef[:, 0, :2], 1.0)
    with pytest.raises(ValueError, match="y must have shape"):
        loglik.gaussian_linear(X, y[:-1], coef[:, 0], 1.0)
    with pytest.raises(ValueError, match="sigma"):
        loglik.gaussian_linear(X, y, coef[:, 0], np.ones(3))
    with pytest.raises(ValueError, match="out must be"):
        loglik.gaussian_linear(X, y, coef[:, 0], 1.0, out=np.empty((2, 2)))
    with pytest.raises(ValueError, match="exactly one"):
        loglik.mixture_gaussian_linear(X, y, coef, 1.0, 0.0)


# ---------------------------------------------------------------------------- specs
def _fake_posterior(rng, sizes: dict[str, int], shapes: dict[str, tuple[str, ...]], C=2, D=9):
    data = {}
    for name, dims in shapes.items():
        shape = (C, D, *(sizes[d] for d in dims))
        value = rng.normal(size=shape) * 0.4
        if name.startswith("sigma"):
            value = np.abs(value) + 0.3
        if name == "weights":
            value = rng.dirichlet(np.ones(shape[-1]), (C, D))
        data[name] = (("chain", "draw", *dims), value)
    return xr.Dataset(data, coords={"chain": np.arange(C), "draw": np.arange(D)})


def test_interaction_spec_matches_the_xarray_formula(rng):
    X = rng.normal(size=(300, 3))
    y = X[:, 0] - X[:, 1] * X[:, 2] + rng.normal(size=300)
    spec = bm.interaction_regression(X, y).bayesmoe_spec
    sizes = {"feature": 3, "interaction": 3}
    post = _fake_posterior(
        rng,
        sizes,
        {
            "intercept": (),
            "beta_base": ("feature",),
            "beta_interaction": ("interaction",),
            "sigma": (),
        },
    )
    post = post.assign_coords(feature=spec.feature_names, interaction=spec.interaction_names)
    for s in (spec, dataclasses.replace(spec, sigma_fixed=0.7, intercept_fixed=-0.2)):
        old = xr.apply_ufunc(
            stats.norm.logpdf,
            xr.DataArray(y, dims="obs"),
            s.linear_predictor(post, X),
            s.noise_sd(post),
        ).transpose("chain", "draw", "obs")
        new = s.log_likelihood(post, X, y)
        assert new.dims == ("chain", "draw", "obs")
        np.testing.assert_allclose(new.values, old.values, **TOL)
        np.testing.assert_array_equal(new["draw"].values, post["draw"].values)


@pytest.mark.parametrize(
    "build",
    [
        lambda X, y: bm.mixture_regression(X, y, n_components=3, interactions="all"),
        lambda X, y: bm.gated_experts(X, y, n_experts=3, gate="linear", shared_noise=True),
        lambda X, y: bm.gated_experts(X, y, n_experts=2, gate="mlp", gate_hidden=3),
        lambda X, y: bm.mixture_regression(X, y, n_components=1),
        lambda X, y: bm.mixture_regression(None, y, n_components=2),
    ],
    ids=["mixture-interactions", "linear-gate", "mlp-gate", "one-expert", "no-features"],
)
def test_mixture_spec_matches_joint_log_density(build, rng):
    data = make_mixture_data(400, 2, 2, gate="linear", seed=4)
    X, y = np.asarray(data.X), np.asarray(data.y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = build(X, y).bayesmoe_spec
    K = spec.n_experts
    sizes = {
        "expert": K,
        "expert_feature": len(spec.expert_idx),
        "interaction": len(spec.pairs),
        "gate_feature": len(spec.gate_idx),
        "gate_expert": K - 1,
        "gate_hidden": spec.gate_hidden,
    }
    shapes = {"intercept": ("expert",), "beta": ("expert", "expert_feature")}
    shapes["sigma"] = () if spec.shared_noise else ("expert",)
    if spec.pairs:
        shapes["beta_interaction"] = ("expert", "interaction")
    if spec.gate is None and K > 1:
        shapes["weights"] = ("expert",)
    if spec.gate == "linear":
        shapes.update(
            gate_intercept=("gate_expert",), gate_weights=("gate_feature", "gate_expert")
        )
    if spec.gate == "mlp":
        shapes.update(
            gate_intercept=("gate_expert",),
            gate_weights=("gate_hidden", "gate_expert"),
            gate_hidden_weights=("gate_feature", "gate_hidden"),
            gate_hidden_bias=("gate_hidden",),
        )
    post = _fake_posterior(rng, sizes, shapes).assign_coords(expert=spec.experts)
    old = logsumexp_over_experts(spec.joint_log_density(post, X, y))
    new = spec.log_likelihood(post, X, y)
    assert new.dims == ("chain", "draw", "obs")
    np.testing.assert_allclose(new.values, old.values, **TOL)


# ---------------------------------------------------------------------------- auto
def _data(n=800, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X @ [1.0, -1.0, 0.5] + 0.8 * X[:, 0] * X[:, 1] + rng.normal(size=n)
    return X, y


def _exact_model(X, y, interactions="all"):
    """A model with nothing to sample (fixed scales and noise): exact draws, no MCMC."""
    return bm.interaction_regression(
        X,
        y,
        interactions=interactions,
        prior="fixed",
        base_scale=1.0,
        interaction_scale=0.5,
        collapsed=True,
        priors={"sigma": 1.0},
    )


@pytest.fixture
def small_threshold(monkeypatch):
    """Subsample above 500 rows x 400 draws; keep 150 rows."""
    for module in (inference_loglik, fitting):  # where fit reads them; the old path too
        monkeypatch.setattr(module, "LOG_LIKELIHOOD_AUTO_BYTES", 500 * 400 * 8)
        monkeypatch.setattr(module, "LOO_SUBSAMPLE_ROWS", 150)


def test_auto_stores_small_fits_in_full(small_threshold):
    X, y = _data(500)
    with warnings.catch_warnings():
        warnings.simplefilter("error", fitting.SubsampledLogLikelihoodWarning)
        idata = bm.fit(_exact_model(X, y), draws=200, chains=2, random_seed=1)
    assert idata.attrs["bayesmoe_log_likelihood"] == "full"
    assert idata["log_likelihood"]["y"].shape == (2, 200, 500)
    assert "loo_approximation" not in idata.children
    assert "row" not in idata["log_likelihood"].coords


def test_auto_subsamples_large_fits_and_says_so(small_threshold):
    X, y = _data(800)
    with pytest.warns(fitting.SubsampledLogLikelihoodWarning, match=r"subsample of 150 rows"):
        idata = bm.fit(_exact_model(X, y), draws=200, chains=2, random_seed=1)
    # stored apart from log_likelihood: arviz.loo cannot mistake the subsample for the data
    assert "log_likelihood" not in idata.children
    with pytest.raises(TypeError, match="log likelihood not found"):
        az.loo(idata)
    rows = idata[SUBSAMPLE_GROUP]["row"].values
    assert idata.attrs["bayesmoe_log_likelihood"] == "subsample"
    np.testing.assert_array_equal(rows, fitting.subsample_rows(800))
    assert rows.size == 150 and np.all(np.diff(rows) > 0)
    ll = idata[SUBSAMPLE_GROUP]["y"]
    assert ll.shape == (2, 200, 150)
    np.testing.assert_array_equal(ll["obs"].values, idata["observed_data"]["obs"].values[rows])
    # the stored rows are exactly the full computation's rows
    full = bm.add_log_likelihood(idata.copy(), _exact_model(X, y))
    assert full.attrs["bayesmoe_log_likelihood"] == "full"
    assert "loo_approximation" not in full.children and SUBSAMPLE_GROUP not in full.children
    np.testing.assert_array_equal(ll.values, full["log_likelihood"]["y"].values[..., rows])
    # the approximation is the density at the posterior mean, for every row
    approx = idata["loo_approximation"]["y"]
    assert approx.shape == (800,)
    mean = idata["posterior"].to_dataset().mean(("chain", "draw"))
    mu = float(mean["intercept"]) + X @ mean["beta_base"].values
    mu = (
        mu
        + bm.data.interaction_design(X, [(0, 1), (0, 2), (1, 2)]) @ mean["beta_interaction"].values
    )
    np.testing.assert_allclose(approx, stats.norm.logpdf(y, mu, 1.0), rtol=1e-10)
    # same number of rows, same subsample: models pair up in compare
    with pytest.warns(fitting.SubsampledLogLikelihoodWarning):
        other = bm.fit(_exact_model(X, y, None), draws=300, chains=2, random_seed=9)
    np.testing.assert_array_equal(other[SUBSAMPLE_GROUP]["row"].values, rows)


def test_true_still_refuses_and_bad_values(monkeypatch):
    X, y = _data(300)
    monkeypatch.setattr(inference_loglik, "LOG_LIKELIHOOD_MAX_BYTES", 1000)
    with pytest.raises(ValueError, match="log_likelihood=True would need"):
        bm.fit(_exact_model(X, y), draws=10, chains=1, log_likelihood=True)
    with pytest.raises(ValueError, match="log_likelihood must be 'auto', True or False"):
        bm.fit(_exact_model(X, y), draws=10, chains=1, log_likelihood="subsample")
    idata = bm.fit(_exact_model(X, y), draws=10, chains=1, log_likelihood=False)
    assert "log_likelihood" not in idata.children
    with pytest.raises(ValueError, match="rows must be"):
        bm.add_log_likelihood(idata, _exact_model(X, y), rows=np.array([0, 300]))


# ---------------------------------------------------------------------------- LOO, compare
@pytest.fixture
def subsampled_pair(small_threshold):
    X, y = _data(800, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fitting.SubsampledLogLikelihoodWarning)
        fits = {
            "interactions": bm.fit(_exact_model(X, y), draws=200, chains=2, random_seed=1),
            "base": bm.fit(_exact_model(X, y, None), draws=200, chains=2, random_seed=2),
        }
    return X, y, fits


def test_subsampled_loo_is_arviz_loo_subsample_on_the_full_matrix(subsampled_pair):
    """The lazily indexed log-likelihood gives loo_subsample exactly what the full one does."""
    X, y, fits = subsampled_pair
    idata = fits["interactions"]
    rows = idata[SUBSAMPLE_GROUP]["row"].values
    ours = _loo_subsample(idata, rows)
    full = bm.add_log_likelihood(idata.copy(), _exact_model(X, y))
    approx = idata["loo_approximation"]["y"]

    def fn(observed, data):
        return xr.DataArray(approx.values, dims=["obs"], coords={"obs": observed["obs"].values})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        theirs = loo_subsample(
            full, observations=rows, pointwise=True, method="plpd", log_lik_fn=fn, var_name="y"
        )
    assert ours.elpd == theirs.elpd and ours.se == theirs.se
    assert ours.subsampling_se == theirs.subsampling_se and ours.subsampling_se > 0
    np.testing.assert_array_equal(ours.elpd_i.values, theirs.elpd_i.values)
    # and the estimate is within a few subsampling SEs of PSIS-LOO on every row
    exact = az.loo(full)
    assert abs(ours.elpd - exact.elpd) < 4 * ours.subsampling_se + 0.5


def test_compare_ranks_subsampled_fits_with_a_subsampling_se(subsampled_pair):
    fits = subsampled_pair[2]
    result = bm.compare(fits, plot=False)
    table = result.table
    assert list(table.index) == ["interactions", "base"]  # the true model wins
    assert "subsampling_dse" in table.columns
    assert table.loc["base", "subsampling_dse"] > 0
    assert table.loc["base", "elpd_diff"] < -4 * table.loc["base", "dse"]
    assert np.all(np.isfinite(table["weight"])) and table["weight"].sum() == pytest.approx(1)
    assert table.loc["interactions", "weight"] > 0.9
    # pointwise values stay arviz's (NaN off the subsample)
    rows = fits["base"][SUBSAMPLE_GROUP]["row"].values
    elpd_i = result.elpd["base"].elpd_i.values
    assert np.isfinite(elpd_i[rows]).all() and np.isnan(elpd_i).sum() == 800 - rows.size
    for method in ("bb-pseudo-bma", "pseudo-bma"):
        weights = bm.compare(fits, method=method, plot=False).weights
        assert np.all(np.isfinite(weights)) and weights["interactions"] > 0.9
    assert bm.compare(fits).figure is not None


def test_compare_a_subsampled_fit_with_a_full_one(subsampled_pair):
    X, y, fits = subsampled_pair
    full = bm.fit(
        _exact_model(X, y, None), draws=200, chains=2, random_seed=2, log_likelihood=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # arviz: diff on the shared rows
        table = bm.compare({"interactions": fits["interactions"], "base": full}, plot=False).table
    assert list(table.index) == ["interactions", "base"]
    assert table.loc["base", "subsampling_dse"] > 0


def test_subsampled_fits_refused_where_every_row_is_needed(subsampled_pair):
    fits = subsampled_pair[2]
    with pytest.raises(ValueError, match="ic='waic' needs the pointwise log-likelihood of every"):
        bm.compare(fits, ic="waic", plot=False)
    with pytest.raises(ValueError, match="every row's LOO density is needed"):
        pointwise_elpd(fits, every_row=True)
    broken = fits["base"].copy()
    broken[SUBSAMPLE_GROUP] = broken[SUBSAMPLE_GROUP].to_dataset().drop_vars("row")
    with pytest.raises(ValueError, match="has no subsample record"):
        bm.compare({"a": fits["interactions"], "b": broken}, plot=False)


def test_diagnose_loo_on_a_subsampled_fit(subsampled_pair):
    _, _, fits = subsampled_pair
    report = bm.diagnose(fits["interactions"], loo=True)
    assert report.max_pareto_k is not None and report.max_pareto_k < fitting.PARETO_K_MAX


def test_vem_mixture_subsampled_and_compared(small_threshold):
    """The issue's case: a VEM mixture on data too large for a full log-likelihood."""
    data = make_mixture_data(900, 2, 2, gate=None, seed=2)
    X, y = np.asarray(data.X), np.asarray(data.y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mixture = bm.fit(
            bm.mixture_regression(X, y, n_components=2), method="vem", draws=100, chains=2
        )
        single = bm.fit(_exact_model(X, y, None), draws=200, chains=2, random_seed=1)
    assert mixture.attrs["bayesmoe_log_likelihood"] == "subsample"
    assert single.attrs["bayesmoe_log_likelihood"] == "subsample"
    table = bm.compare({"mixture": mixture, "single": single}, plot=False).table
    assert table.index[0] == "mixture"
    assert table.loc["single", "subsampling_dse"] > 0


def test_subsampled_estimator_survives_save_and_load(small_threshold, tmp_path):
    X, y = _data(800, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bm.InteractionRegression(
            prior="fixed",
            base_scale=1.0,
            interaction_scale=0.5,
            priors={"sigma": 1.0},
            collapsed=True,
            draws=200,
            chains=2,
            random_seed=1,
            log_likelihood="auto",
        ).fit(X, y)
    assert est.idata_.attrs["bayesmoe_log_likelihood"] == "subsample"
    est.save(tmp_path / "fit.nc")
    back = bm.load(tmp_path / "fit.nc")
    np.testing.assert_array_equal(
        back.idata_[SUBSAMPLE_GROUP]["row"].values, est.idata_[SUBSAMPLE_GROUP]["row"].values
    )
    a = pointwise_elpd({"a": est})[0]["a"]
    b = pointwise_elpd({"b": back})[0]["b"]
    assert a.elpd == pytest.approx(b.elpd, rel=1e-12)


def test_stacking_models_are_never_subsampled(small_threshold):
    """The stacking score is tied to every row's stored lpd: "auto" keeps all rows."""
    rng = np.random.default_rng(2)
    model = bm.hierarchical_stacking(rng.normal(size=(900, 1)), rng.normal(size=(900, 2)) - 1)
    assert inference_loglik.log_likelihood_plan(model, "auto", 10_000) == "all"
    idata = xr.DataTree.from_dict({"posterior": xr.Dataset()})
    with pytest.raises(ValueError, match=r"rows .* needs a model built by"):
        bm.add_log_likelihood(idata, model, rows=10)


def test_large_outputs_are_memory_maps_with_the_same_values(monkeypatch):
    import mmap

    from bayesmoe.numerics import loglik

    def memory(a):  # what finally owns an array's buffer
        while isinstance(a, np.ndarray) and a.base is not None:
            a = a.base
        return a.obj if isinstance(a, memoryview) else a

    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(300, 4)), rng.normal(size=300)
    coef, sigma = rng.normal(size=(50, 4)), rng.uniform(0.5, 2, 50)
    plain = loglik.gaussian_linear(X, y, coef, sigma)
    assert not isinstance(memory(plain), mmap.mmap)
    monkeypatch.setattr(loglik, "MAP_BYTES", 8)
    mapped = loglik.gaussian_linear(X, y, coef, sigma)
    assert isinstance(memory(mapped), mmap.mmap) and mapped.flags.writeable
    np.testing.assert_array_equal(mapped, plain)


@pytest.mark.parametrize("hidden", [None, 3])
def test_blocked_gate_kernel_equals_the_gate_module(hidden):
    """loglik.softmax_gate (blocked, in place) computes numerics.gate.draw_logits."""
    from bayesmoe.numerics.gate import draw_logits

    rng = np.random.default_rng(4)
    S, n, g, K = 6, 40, 3, 3
    G = rng.normal(size=(n, g))
    width = g if hidden is None else hidden
    V = rng.normal(size=(S, width, K - 1))
    c = rng.normal(size=(S, K - 1))
    W = None if hidden is None else rng.normal(size=(S, g, hidden))
    a = None if hidden is None else rng.normal(size=(S, hidden))
    fn = loglik.softmax_gate(G, V, c, W, a)
    blocked = fn(slice(0, n), slice(0, S), np.empty((S, K - 1, n)))
    whole = draw_logits(
        G, V[None], c[None], None if W is None else W[None], None if a is None else a[None]
    )[0]
    np.testing.assert_allclose(blocked, np.swapaxes(whole, 1, 2), rtol=1e-12, atol=1e-12)
