"""Mixtures and gated experts of non-Gaussian experts (``family=``): fast, tiny checks."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pymc_extras.prior import Prior

import bayesmoe as bm
from bayesmoe.builders.mixture import gated_experts, mixture_regression
from bayesmoe.numerics.em import GLMExperts, fit_mixture_em

B = np.array([[0.5, 1.0], [2.0, -0.5]])  # two Poisson experts: (intercept, slope)


def _poisson(seed=0, n=300):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1))
    z = rng.integers(2, size=n)
    return x, rng.poisson(np.exp(B[z, 0] + B[z, 1] * x[:, 0])).astype(float)


def _binary(seed=0, n=120):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    z = (rng.uniform(size=n) < 1 / (1 + np.exp(-3 * X[:, 1]))).astype(int)
    eta = np.where(z == 1, -1.0 + 2.0 * X[:, 0], 1.0 - 2.0 * X[:, 0])
    return X, rng.binomial(1, 1 / (1 + np.exp(-eta))).astype(float)


def test_glm_em_recovers_poisson_experts():
    x, y = _poisson()
    res = fit_mixture_em(x, y, 2, experts=GLMExperts("poisson"), random_state=0)
    order = np.argsort(res.intercept)
    got = np.column_stack([res.intercept[order], res.beta[order, 0]])
    # MAP of 300 rows: the coefficients' standard errors are ~0.05-0.1; 4 of them
    np.testing.assert_allclose(got, B, atol=0.3)
    assert res.intercept_se is not None and np.all(res.intercept_se < 0.2)


def _one_draw(model, point: dict) -> xr.Dataset:
    """A posterior of one draw at ``point`` (constrained values)."""
    return xr.Dataset(
        {
            k: xr.DataArray(
                np.asarray(v)[None, None],
                dims=("chain", "draw", *model.named_vars_to_dims.get(k, ())),
            )
            for k, v in point.items()
        }
    )


@pytest.mark.parametrize(
    ("family", "gated"),
    [("poisson", False), ("negative_binomial", True), ("bernoulli", True), ("binomial", False)],
)
def test_pytensor_density_equals_numpy_log_likelihood(family, gated):
    """The graph's CustomDist (Family.logp, log-sum-exp) and the spec's numpy
    log-likelihood (Family.logpdf) are one density."""
    rng = np.random.default_rng(1)
    n = 40
    X = rng.normal(size=(n, 2))
    extras = {}
    if family == "binomial":
        extras["trials"] = rng.integers(1, 6, size=n)
        y = rng.binomial(extras["trials"], 0.4).astype(float)
    elif family == "bernoulli":
        y = rng.binomial(1, 0.4, size=n).astype(float)
    else:
        extras["exposure"] = rng.uniform(0.5, 2.0, size=n)
        y = rng.poisson(2.0, size=n).astype(float)
    build = gated_experts if gated else mixture_regression
    k = {"n_experts": 2} if gated else {"n_components": 2}
    model = build(X, y, family=family, **k, **extras)
    spec = model.bayesmoe_spec
    start = spec.initial_values()
    for name, value in start.items():
        model.set_initval(model[name], value)
    graph = float(model.compile_logp(vars=[model["y"]])(model.initial_point()))
    post = _one_draw(model, {name: start[name] for name in start})
    numpy_ll = float(spec.log_likelihood(post, X, y).sum())
    np.testing.assert_allclose(graph, numpy_ll, rtol=1e-9)


def test_declarations_and_gaussian_default_unchanged():
    x, y = _poisson()
    spec = mixture_regression(x, y, family="poisson").bayesmoe_spec
    assert not spec.supports_vem and not spec.supports_minibatch
    assert not spec.has_component_diag
    assert "sigma" not in spec.expert_vars and "alpha" not in spec.expert_vars
    gauss = mixture_regression(x, y).bayesmoe_spec
    assert gauss.supports_vem and gauss.supports_minibatch and gauss.has_component_diag
    assert gauss.likelihood == "gaussian"
    assert gauss.cache_key == mixture_regression(x, y, family="gaussian").bayesmoe_spec.cache_key
    nb = gated_experts(x, y, family="negative_binomial").bayesmoe_spec
    assert nb.expert_vars[-1] == "alpha" and nb.priors["alpha"].dims == ("expert",)


def test_family_priors_overridable_and_checked():
    x, y = _poisson()
    model = mixture_regression(
        x,
        y,
        family="negative_binomial",
        priors={"alpha": Prior("Gamma", alpha=2, beta=0.2, dims="expert")},
    )
    assert model.bayesmoe_spec.priors["alpha"].distribution == "Gamma"
    with pytest.raises(ValueError, match="alpha"):
        mixture_regression(x, y, family="negative_binomial", priors={"alpha": Prior("Normal")})


def test_bad_family_input_named_before_compilation():
    x, y = _poisson()
    with pytest.raises(ValueError, match="family="):
        mixture_regression(x, y, family="gamma")
    with pytest.raises(ValueError, match="y must be a whole number"):
        mixture_regression(x, y + 0.5, family="poisson")
    with pytest.raises(ValueError, match="trials="):
        mixture_regression(x, y, family="binomial")
    with pytest.raises(ValueError, match="exposure"):
        mixture_regression(x, y, family="bernoulli", exposure=np.ones(y.size))
    with pytest.raises(ValueError, match="y must be a whole number"):
        bm.MixtureRegression(family="poisson").fit(x, y + 0.5)


@pytest.mark.parametrize(
    ("settings", "what"),
    [
        ({"method": "vem"}, "method='vem' (closed-form variational EM)"),
        ({"method": "advi", "fit_kwargs": {"minibatch": 50}}, "minibatch ADVI"),
    ],
)
def test_gaussian_only_methods_refused_with_the_family_message(settings, what):
    x, y = _poisson()
    est = bm.GatedExperts(family="poisson", **settings)
    prefix = re.escape(f'family="poisson" does not support {what}; use ')
    with pytest.raises(ValueError, match=prefix):
        est.fit(x, y)
    assert not hasattr(est, "model_")  # refused before any build


def test_streamed_fit_refused():
    dd = pytest.importorskip("dask.dataframe")
    x, y = _poisson()
    frame = dd.from_pandas(pd.DataFrame({"x": x[:, 0], "y": y}), npartitions=2)
    with pytest.raises(ValueError, match='family="poisson" does not support streamed fits'):
        bm.MixtureRegression(family="poisson").fit(frame[["x"]], frame["y"])


@pytest.fixture(scope="module")
def logistic_fit():
    X, y = _binary()
    est = bm.GatedExperts(
        family="bernoulli", draws=40, tune=60, chains=1, random_seed=3, progressbar=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diagnostics of 40 draws
        return est.fit(X, y), X, y


# One NUTS fit of 120 rows (40 draws): ~30 s with a warm compile cache, 2-3 min cold.
@pytest.mark.slow
def test_bernoulli_predictions_on_the_response_scale(logistic_fit):
    est, X, y = logistic_fit
    proba = est.predict_proba(X[:7])
    assert proba.shape == (7, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 1], est.predict(X[:7]))
    assert np.all((proba > 0) & (proba < 1))
    draws = est.predict_dist(X[:7]).values
    assert set(np.unique(draws)) <= {0.0, 1.0}
    # a binary outcome's predictive sd is sqrt(p (1 - p)) exactly (law of total variance)
    _, sd = est.predict(X[:7], return_std=True)
    np.testing.assert_allclose(sd, np.sqrt(proba[:, 1] * (1 - proba[:, 1])), rtol=1e-9)
    # E[y] is the mean of the predictive: 40 draws x 7 rows of 0/1, sd <= 0.5/sqrt(40)
    np.testing.assert_allclose(draws.mean(axis=(0, 1)), proba[:, 1], atol=4 * 0.5 / np.sqrt(40))
    # the held-out density is the Bernoulli density of the predictive mean (exact, by
    # linearity of the mixture in the draws)
    lpd = est.pointwise_log_predictive_density(X[:7], y[:7])
    np.testing.assert_allclose(lpd, np.log(np.where(y[:7] == 1, proba[:, 1], proba[:, 0])))
    comps = est.predict_components(X[:7])
    assert comps.shape == (7, 2)
    np.testing.assert_allclose(comps.sum(axis=1), 1.0)
    r = est.responsibilities(X[:7], y[:7])
    np.testing.assert_allclose(r.sum(axis=1), 1.0)
    assert "log_likelihood" in est.idata_.children
    np.testing.assert_allclose(
        est.idata_["log_likelihood"]["y"].values.sum(), _loglik_by_hand(est, X, y), rtol=1e-10
    )


def _loglik_by_hand(est, X, y):
    post = est.working_view()["posterior"]
    spec = est.model_.bayesmoe_spec
    joint = spec.joint_log_density(post, est.standardizer_.transform_X(X), y).values
    top = joint.max(axis=-1, keepdims=True)
    return float((top[..., 0] + np.log(np.exp(joint - top).sum(axis=-1))).sum())


@pytest.mark.slow
def test_predict_proba_of_other_families_warns_and_equals_predict_components(logistic_fit):
    est, X, _ = logistic_fit
    est = bm.GatedExperts(family="gaussian")
    est.__dict__.update({k: v for k, v in logistic_fit[0].__dict__.items() if k.endswith("_")})
    with pytest.warns(DeprecationWarning, match="predict_components"):
        old = est.predict_proba(X[:4])
    np.testing.assert_array_equal(old, est.predict_components(X[:4]))


# ------------------------------------------------------------------------ SBC (full tier)
def _family_sbc_case(family: str, gated: bool, n_obs: int = 80):
    """A K = 2 mixture (or linear-gate experts) of one-feature ``family`` experts under fixed
    link-scale priors, with label-invariant quantities: the experts' intercepts and slopes
    ranked by intercept, the weights (or the lowest expert's gate probability) and the
    mixture's mean response at three x."""
    from bayesmoe.experiments.calibration import SBCCase
    from bayesmoe.priors import mixture_defaults

    gate = "linear" if gated else None
    # half-normal weight scales: the half-Cauchy's tails give log rates whose counts
    # overflow numpy's Poisson sampler in forward draws
    priors = mixture_defaults(
        "half_normal", y_location=0.0, y_scale=1.0, n_components=2, n_features=1,
        has_interactions=False, shared_noise=False, alpha=1.0, gate=gate,
    )  # fmt: skip
    priors = {k: v for k, v in priors.items() if k != "sigma"}
    xs = np.array([-1.0, 0.0, 1.0])

    def build(X, y, fit_form):
        y = y if fit_form else np.zeros(len(y))  # the generative form's y is a placeholder
        kw = dict(prior="half_normal", priors=priors, random_seed=0, family=family)
        if gated:
            return gated_experts(X, y, n_experts=2, **kw)
        return mixture_regression(X, y, n_components=2, order_by=None, **kw)

    def quantities(ds):
        b = ds["intercept"].transpose("sample", "expert").values
        w = ds["beta"].transpose("sample", "expert", "expert_feature").values[:, :, 0]
        order = np.argsort(b, axis=1)
        out = {}
        for r in range(2):
            out[f"intercept[rank {r}]"] = np.take_along_axis(b, order, 1)[:, r]
            out[f"beta[rank {r}]"] = np.take_along_axis(w, order, 1)[:, r]
        eta = b[:, None, :] + xs[None, :, None] * w[:, None, :]
        if gated:
            c = ds["gate_intercept"].values.reshape(-1)
            v = ds["gate_weights"].values.reshape(-1)
            free = c[:, None] + v[:, None] * xs[None, :]
            p0 = 1 / (1 + np.exp(-free))
            pi = np.stack([p0, 1 - p0], axis=-1)
        else:
            weights = ds["weights"].transpose("sample", "expert").values
            pi = np.broadcast_to(weights[:, None, :], eta.shape)
            out["weight[rank 0]"] = np.take_along_axis(weights, order, 1)[:, 0]
        m = 1 / (1 + np.exp(-eta)) if family == "bernoulli" else np.exp(eta)
        for j, x in enumerate(xs):
            out[f"mean[x={x:g}]"] = (pi * m)[:, j].sum(axis=-1)
        if "tau_base" in ds:
            out["tau_base"] = ds["tau_base"].values.reshape(-1)
        return out

    name = f"{'gated' if gated else 'mixture'}_{family}"
    return SBCCase(name, n_obs, 1, build, quantities)


# 200 simulations x 2 chains x 550 steps per case: ~1 h per case on one core.
@pytest.mark.full
@pytest.mark.parametrize(
    ("family", "gated"),
    [("bernoulli", False), ("poisson", False), ("bernoulli", True), ("poisson", True)],
)
def test_sbc_family_mixtures(family, gated):
    from bayesmoe.experiments.calibration import run_sbc

    result = run_sbc(_family_sbc_case(family, gated), 200, progressbar=False)
    assert result.failed == 0
    assert result.ok, result.table()


def test_a_builder_model_of_non_gaussian_experts_refuses_vem_naming_the_family():
    """bm.fit on a builder's model: the family's one-line refusal, before any compile."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(60, 2)), columns=["a", "b"])
    y = rng.poisson(2.0, size=60).astype(float)
    model = mixture_regression(X, y, n_components=2, family="poisson")
    with pytest.raises(ValueError, match=r'^family="poisson" does not support method=.vem.'):
        bm.fit(model, method="vem")
