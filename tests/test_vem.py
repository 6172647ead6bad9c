"""Closed-form variational EM (numerics and ``method="vem"``), minibatch ADVI, init="vem"."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest
from scipy import stats
from scipy.optimize import minimize_scalar
from scipy.special import softmax

import bayesmoe as bm
from bayesmoe.inference import loglik as inference_loglik
from bayesmoe.inference import settings
from bayesmoe.numerics.em import gate_logits
from bayesmoe.numerics.vem import fit_mixture_vem, sample_coefficients
from tests.test_em import _match, _simulate

# --------------------------------------------------------------------------- numerics


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"shared_noise": True},
        {"alpha": 3.0},
        {"alpha": 0.3},
        {"sigma": 0.4},
        {"weight_groups": np.array([0, 0, 1]), "learn_scales": np.array([True, False])},
    ],
    ids=["default", "shared", "dirichlet", "sparse", "fixed-sigma", "groups"],
)
def test_elbo_never_decreases(kwargs):
    # Coordinate ascent: every block update maximises the bound with the others fixed.
    X, y, *_ = _simulate(7, n=500, K=3)
    r = fit_mixture_vem(X, y, 3, n_init=4, random_state=1, **kwargs)
    h = r.history
    assert r.converged and h[-1] == r.elbo
    assert np.all(np.diff(h) >= -1e-10 * np.abs(h[1:])), np.diff(h).min()


def test_gaussian_mixture_elbo_never_decreases():
    rng = np.random.default_rng(3)
    y = np.concatenate([rng.normal(-2, 0.5, 200), rng.normal(1.5, 0.3, 300)])
    r = fit_mixture_vem(None, y, 2, n_init=3, random_state=0)
    assert np.all(np.diff(r.history) >= -1e-10 * np.abs(r.history[1:]))
    np.testing.assert_allclose(np.sort(r.mean[:, 0]), [-2, 1.5], atol=0.1)


@pytest.mark.parametrize("gate", ["linear", "mlp"])
def test_gated_objective_never_decreases(gate):
    # The gate step (Newton for the linear gate, L-BFGS-B for the mlp) is kept only if it
    # improves.
    X, y, G, *_ = _simulate(8, n=500, K=3, gate="linear")
    r = fit_mixture_vem(X, y, 3, gate=gate, G=G, gate_hidden=2, n_init=3, random_state=0)
    assert np.all(np.diff(r.history) >= -1e-8 * np.abs(r.history[1:]))


def test_linear_gate_terms_are_the_derivatives_and_add_over_chunks():
    from bayesmoe.numerics.gate_fit import gate_neg_objective_t
    from bayesmoe.numerics.vem import gate_chunk

    rng = np.random.default_rng(4)
    n, g, K = 400, 3, 4
    G, R = rng.normal(size=(n, g)), rng.dirichlet(np.ones(K), size=n)
    theta = rng.normal(size=(K - 1) * (g + 1))
    value, grad, hess = gate_chunk(G, R, theta, 0, hessian=True)
    ref_value, ref_grad = gate_neg_objective_t(theta, G.T.copy(), R.T.copy(), 0, np.inf, np.inf)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-10)
    # Hessian against central differences of the gradient (error O(eps^2) ~ 1e-10 here)
    eps = 1e-5
    numeric = np.array(
        [
            (gate_chunk(G, R, theta + eps * e, 0)[1] - gate_chunk(G, R, theta - eps * e, 0)[1])
            / (2 * eps)
            for e in np.eye(theta.size)
        ]
    )
    np.testing.assert_allclose(hess, numeric, atol=1e-6 * np.abs(hess).max())
    assert np.all(np.linalg.eigvalsh(hess) > -1e-9)  # the negative objective is convex
    halves = [
        gate_chunk(G[s], R[s], theta, 0, hessian=True) for s in (slice(0, 150), slice(150, n))
    ]
    for whole, a, b in zip((value, grad, hess), *halves, strict=True):
        np.testing.assert_allclose(whole, a + b, rtol=1e-12, atol=1e-12)


def test_linear_gate_m_step_reaches_the_gate_optimum():
    # At convergence the gate maximises sum r log pi + log prior for the final r: its
    # gradient vanishes (relative to the gradient's scale at the zero gate).
    from bayesmoe.numerics.vem import _gate_penalty, gate_chunk

    X, y, G, *_ = _simulate(8, n=800, K=3, gate="linear")
    r = fit_mixture_vem(X, y, 3, gate="linear", G=G, n_init=3, random_state=0, tol=1e-12)
    theta = np.concatenate([r.gate_intercept, r.gate_weights.ravel()])
    R = r.responsibilities
    _, grad = gate_chunk(G, R, theta, 0)
    _, pen = _gate_penalty(theta, G.shape[1], 3, 0, 5.0, 2.0)
    _, grad0 = gate_chunk(G, R, np.zeros_like(theta), 0)
    assert np.abs(grad + pen).max() < 1e-5 * np.abs(grad0).max()


def test_elbo_matches_a_monte_carlo_estimate():
    """The closed-form bound equals E_q[log p(y, z, theta, pi) - log q] by simulation."""
    X, y, *_ = _simulate(11, n=60, K=2, d=1)
    alpha, mu_b, s_b = 1.5, 0.2, 3.0
    r = fit_mixture_vem(
        X, y, 2, alpha=alpha, intercept_mean=mu_b, intercept_sd=s_b, n_init=2, random_state=0
    )
    rng = np.random.default_rng(0)
    S = 20_000
    theta = sample_coefficients(r, S, rng)  # (S, K, p)
    pi = rng.dirichlet(r.dirichlet, S)
    Z = np.column_stack([np.ones(len(y)), X])
    R = r.responsibilities
    mu = np.einsum("ip,skp->sik", Z, theta)
    loglik = np.einsum("ik,sik->s", R, stats.norm.logpdf(y[None, :, None], mu, r.sigma))
    log_z = R.sum(axis=0) @ np.log(pi).T
    log_prior = stats.dirichlet.logpdf(pi.T, np.full(2, alpha))
    prior_mean = np.r_[mu_b, 0.0]
    for k in range(2):
        log_prior = log_prior + stats.multivariate_normal.logpdf(
            theta[:, k], prior_mean, np.diag(r.prior_var)
        )
        log_prior = log_prior - stats.multivariate_normal.logpdf(theta[:, k], r.mean[k], r.cov[k])
    log_prior = log_prior - stats.dirichlet.logpdf(pi.T, r.dirichlet)
    a = loglik + log_z + log_prior
    entropy_z = -np.sum(R * np.log(np.maximum(R, 1e-300)))
    estimate = a.mean() + entropy_z
    mcse = a.std() / np.sqrt(S)
    assert abs(estimate - r.elbo) < 4 * mcse, (estimate, r.elbo, mcse)


def test_single_expert_is_the_conjugate_posterior():
    """K = 1, fixed noise and prior: q is the exact posterior and the bound the evidence."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 2))
    y = 0.5 + X @ np.array([1.0, -2.0]) + 0.4 * rng.normal(size=80)
    r = fit_mixture_vem(
        X, y, 1, sigma=0.4, intercept_sd=2.0, weight_sd=1.5, learn_scales=False, tol=0
    )
    Z = np.column_stack([np.ones(80), X])
    V = np.diag([4.0, 2.25, 2.25])
    prec = np.linalg.inv(V) + Z.T @ Z / 0.16
    np.testing.assert_allclose(r.cov[0], np.linalg.inv(prec), rtol=1e-10)
    np.testing.assert_allclose(r.mean[0], np.linalg.solve(prec, Z.T @ y / 0.16), rtol=1e-10)
    evidence = stats.multivariate_normal.logpdf(y, np.zeros(80), Z @ V @ Z.T + 0.16 * np.eye(80))
    assert r.elbo == pytest.approx(evidence, rel=1e-10)


def test_learned_scale_maximises_the_evidence():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 4))
    y = X @ np.array([0.3, -0.2, 0.1, 0.0]) + 0.5 * rng.normal(size=60)
    r = fit_mixture_vem(X, y, 1, sigma=0.5, intercept_sd=1.0, tol=1e-13, max_iter=20_000)
    Z = np.column_stack([np.ones(60), X])

    def neg_evidence(log_tau):
        V = np.diag(np.r_[1.0, np.full(4, np.exp(2 * log_tau))])
        return -stats.multivariate_normal.logpdf(y, np.zeros(60), Z @ V @ Z.T + 0.25 * np.eye(60))

    best = minimize_scalar(neg_evidence, bounds=(-6, 2), method="bounded", options={"xatol": 1e-8})
    assert np.sqrt(r.prior_var[1]) == pytest.approx(np.exp(best.x), rel=1e-3)
    assert r.elbo == pytest.approx(-best.fun, abs=1e-6)


@pytest.mark.parametrize("gate", [None, "linear"])
def test_recovers_well_separated_experts(gate):
    X, y, G, b, W, probs = _simulate(13, K=3, gate=gate)
    r = fit_mixture_vem(X, y, 3, gate=gate, G=G, random_state=0)
    cols, err = _match(r, b, W)
    assert err < 0.05
    assert np.all(r.sigma == pytest.approx(0.3, abs=0.03))
    if gate is None:
        np.testing.assert_allclose(r.weights[cols], probs[0], atol=0.05)
    else:
        est = softmax(
            gate_logits(G, r.gate_intercept, r.gate_weights), axis=1
        )  # compare probabilities (labels differ)
        assert np.abs(est[:, cols] - probs).mean() < 0.05


def test_screening_on_a_subsample_reaches_the_full_data_optimum():
    X, y, *_ = _simulate(5, n=6000, K=3)
    sub = fit_mixture_vem(X, y, 3, n_init=4, screen_rows=1000, random_state=0)
    full = fit_mixture_vem(X, y, 3, n_init=4, screen_rows=10_000, random_state=0)
    assert sub.converged and full.converged
    assert sub.elbo == pytest.approx(full.elbo, abs=1e-3 * abs(full.elbo) * 1e-3)


def test_vem_bad_arguments():
    X, y, *_ = _simulate(1, n=50, K=2)
    with pytest.raises(ValueError, match="n_components"):
        fit_mixture_vem(X, y, 0)
    with pytest.raises(ValueError, match="weight_groups"):
        fit_mixture_vem(X, y, 2, weight_groups=[0, 1])
    with pytest.raises(ValueError, match="alpha"):
        fit_mixture_vem(X, y, 2, alpha=-1.0)
    with pytest.raises(ValueError, match="G"):
        fit_mixture_vem(X, y, 2, gate="linear")
    with pytest.raises(ValueError, match="n_init"):
        fit_mixture_vem(X, y, 2, n_init=0)


# --------------------------------------------------------------------------- method="vem"


@pytest.fixture(scope="module")
def gated_data():
    from bayesmoe.experiments import make_mixture_data

    return make_mixture_data(400, 2, 2, gate="linear", seed=3)


@pytest.fixture(scope="module")
def vem_fit(gated_data):
    est = bm.GatedExperts(n_experts=2, method="vem", draws=250, chains=2, random_seed=5)
    return est.fit(gated_data.X, gated_data.y)


def test_vem_fit_is_a_datatree_like_the_others(vem_fit, gated_data):
    idata = vem_fit.idata_
    post = idata["posterior"]
    assert dict(post.sizes)["chain"] == 1 and dict(post.sizes)["draw"] == 500
    for group in ("posterior", "sample_stats", "observed_data", "constant_data", "log_likelihood"):
        assert group in idata.children
    points = post.attrs["bayesmoe_point_estimates"].split(",")
    assert set(points) >= {"sigma", "gate_intercept", "gate_weights", "tau_base"}
    for name in points:  # point estimates are constant over draws
        assert bool((post[name] == post[name].isel(chain=0, draw=0)).all())
    assert float(post["beta"].std(("chain", "draw")).min()) > 0  # q(w) is a distribution
    assert post.attrs["bayesmoe_vem_converged"] == 1
    assert idata.attrs["bayesmoe_method"] == "vem"
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd)
    n = len(gated_data.y)
    assert vem_fit.predict(gated_data.X).shape == (n,)
    proba = vem_fit.predict_proba(gated_data.X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    resp = vem_fit.responsibilities(gated_data.X, gated_data.y)
    assert resp.shape == (n, 2)
    assert vem_fit.expert_predictions(gated_data.X).dims == ("chain", "draw", "obs", "expert")


def test_vem_same_seed_same_draws_and_other_seed_other_draws(vem_fit, gated_data):
    again = bm.GatedExperts(n_experts=2, method="vem", draws=250, chains=2, random_seed=5)
    again.fit(gated_data.X, gated_data.y)
    np.testing.assert_array_equal(
        vem_fit.idata_["posterior"]["beta"].values, again.idata_["posterior"]["beta"].values
    )
    other = bm.GatedExperts(n_experts=2, method="vem", draws=250, chains=2, random_seed=6)
    other.fit(gated_data.X, gated_data.y)
    assert not np.array_equal(
        vem_fit.idata_["posterior"]["beta"].values, other.idata_["posterior"]["beta"].values
    )


def test_vem_progress_bar_counts_the_iterations_and_shows_the_elbo(vem_fit, gated_data, capsys):
    est = bm.GatedExperts(n_experts=2, method="vem", draws=250, chains=2, random_seed=5)
    est.fit(gated_data.X, gated_data.y)  # progressbar=True is the default
    err = capsys.readouterr().err
    assert "variational EM" in err
    # The bar's last state: the refinement iterations on all rows (of the best starts, one
    # after the other) and the ELBO of the last; the result is the best start's ELBO.
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert int(last.split("variational EM: ")[1].split("it")[0]) >= 1
    shown = float(last.split("ELBO ")[1].split(",")[0])
    elbo = est.idata_["posterior"].attrs["bayesmoe_vem_elbo"]
    assert shown <= elbo + 1e-7 * abs(elbo)  # printed to 8 significant digits
    quiet = bm.GatedExperts(n_experts=2, method="vem", draws=250, chains=2, random_seed=5)
    quiet.set_params(progressbar=False).fit(gated_data.X, gated_data.y)
    assert "variational EM" not in capsys.readouterr().err


def test_vem_mixture_with_interactions_and_gamma_scales():
    from bayesmoe.experiments import make_mixture_data

    d = make_mixture_data(300, 2, 2, gate=None, seed=1)
    est = bm.MixtureRegression(
        n_components=2, interactions="all", prior="gamma", method="vem", draws=100, chains=1
    ).fit(d.X, d.y)
    post = est.idata_["posterior"]
    for name in ("beta", "beta_interaction", "weights", "lambda_base", "tau_interaction"):
        assert name in post
    np.testing.assert_allclose(post["weights"].sum("expert"), 1.0)
    np.testing.assert_allclose(post["lambda_base"], post["tau_base"] ** -2)


def test_vem_save_load_round_trip(vem_fit, tmp_path, gated_data):
    path = vem_fit.save(tmp_path / "vem.nc")
    back = bm.load(path)
    np.testing.assert_array_equal(
        back.idata_["posterior"]["beta"].values, vem_fit.idata_["posterior"]["beta"].values
    )
    np.testing.assert_array_equal(back.predict(gated_data.X), vem_fit.predict(gated_data.X))


def test_vem_reports_non_convergence_and_empty_components():
    rng = np.random.default_rng(0)
    y = rng.normal(size=300)
    with pytest.warns(UserWarning, match="last ELBO change"):
        bm.MixtureRegression(
            n_components=2, method="vem", draws=20, chains=1, fit_kwargs={"max_iter": 1}
        ).fit(None, y)
    with pytest.warns(UserWarning, match=r"emptied \d of 4 components"):
        bm.MixtureRegression(n_components=4, alpha=0.01, method="vem", draws=20, chains=1).fit(
            None, y
        )


def test_vem_refuses_what_it_cannot_fit(gated_data):
    X, y = gated_data.X, gated_data.y
    with pytest.raises(ValueError, match=r"method='vem'.*mixture"):
        bm.InteractionRegression(method="vem").fit(X, y)
    model = bm.gated_experts(X, y, n_experts=2)
    with pytest.raises(TypeError, match="target_accept"):
        bm.fit(model, "vem", target_accept=0.9)
    with pytest.raises(ValueError, match="n_init"):
        bm.fit(model, "vem", n_init=0)
    student = bm.Prior("StudentT", nu=3, mu=0, sigma=2, dims="expert")
    with pytest.raises(ValueError, match=r"priors\['intercept'\]"):
        bm.GatedExperts(n_experts=2, method="vem", priors={"intercept": student}).fit(X, y)
    with pytest.raises(ValueError, match="minibatch is for method='advi'"):
        bm.fit(model, "nuts", minibatch=10)
    with pytest.raises(ValueError, match="more than the number of rows"):
        bm.fit(model, "advi", minibatch=10**6)
    with pytest.raises(ValueError, match="minibatch applies"):
        bm.fit(bm.interaction_regression(X, y), "advi", minibatch=10)
    with pytest.raises(ValueError, match="disagree"):
        bm.fit(model, "nuts", init="vem", initvals="em")


def test_log_likelihood_size_is_refused_before_fitting(gated_data, monkeypatch):
    monkeypatch.setattr(inference_loglik, "LOG_LIKELIHOOD_MAX_BYTES", 1000)
    model = bm.gated_experts(gated_data.X, gated_data.y, n_experts=2)
    with pytest.raises(ValueError, match="log_likelihood=False"):
        bm.fit(model, "vem", draws=10, chains=1, log_likelihood=True)
    idata = bm.fit(model, "vem", draws=10, chains=1, log_likelihood=False)
    assert "log_likelihood" not in idata.children
    # the default ("auto") sizes it against LOG_LIKELIHOOD_AUTO_BYTES instead of refusing
    assert bm.fit(model, "vem", draws=10, chains=1).attrs["bayesmoe_log_likelihood"] == "full"


def test_nuts_starts_at_the_vem_solution(gated_data):
    model = bm.gated_experts(gated_data.X, gated_data.y, n_experts=2)
    spec = model.bayesmoe_spec
    start = settings.initial_values(model, "vem")
    vem = spec.vem_point(model["X_base"].get_value())
    np.testing.assert_allclose(start["intercept"], vem.mean[:, 0])
    np.testing.assert_allclose(start["gate_weights"], vem.gate_weights)
    # init="vem" is the same as initvals="vem"; PyMC's own init strategies pass through.
    kwargs = {"init": "vem"}
    assert settings.init_synonym("auto", kwargs) == "vem" and kwargs == {}
    kwargs = {"init": "jitter+adapt_diag"}
    assert settings.init_synonym("auto", kwargs) == "auto"
    assert kwargs["init"] == "jitter+adapt_diag"


def test_minibatch_model_sees_a_batch_scaled_to_all_rows(gated_data):
    model = bm.gated_experts(gated_data.X, gated_data.y, n_experts=2)
    mb = model.bayesmoe_spec.minibatch_model(64)
    assert [v.name for v in mb.free_RVs] == [v.name for v in model.free_RVs]
    assert mb["y"].type.shape == (64,)
    # total_size scales the batch's log-likelihood by n / batch_size
    point = mb.initial_point()
    n = len(gated_data.y)
    full = model.compile_logp(vars=[model["y"]], sum=True)(model.initial_point())
    logp_batch = mb.compile_logp(vars=[mb["y"]], sum=True)
    batch = np.array([logp_batch(point) for _ in range(400)])
    assert batch.std() > 0  # a new random batch per evaluation
    # unbiased for the full-data log-likelihood, within Monte Carlo error
    assert abs(batch.mean() - full) < 4 * batch.std() / np.sqrt(len(batch))
    assert n > 64


@pytest.mark.slow
def test_minibatch_advi_fits_the_full_model(gated_data):
    model = bm.gated_experts(gated_data.X, gated_data.y, n_experts=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = bm.fit(
            model, "advi", minibatch=64, advi_iterations=300, draws=50, chains=1, progressbar=False
        )
    assert idata["posterior"].attrs["bayesmoe_minibatch"] == 64
    n = len(gated_data.y)
    assert idata["observed_data"]["y"].size == n
    assert idata["log_likelihood"]["y"].shape == (1, 50, n)
    assert set(idata["posterior"].data_vars) >= {"intercept", "beta", "gate_weights"}


@pytest.mark.parametrize("gate", [None, "linear", "mlp"])
def test_e_step_in_blocks_equals_one_block(gate, monkeypatch):
    # The kernels run in blocks of rows; the sums must not depend on the block size.
    from bayesmoe.numerics import vem
    from bayesmoe.numerics.vem import StepParams, e_step_chunk, gate_chunk

    rng = np.random.default_rng(2)
    n, K, g = 1000, 3, 2
    Z = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    G, y = rng.normal(size=(n, g)), rng.normal(size=n)
    A = 0.1 * rng.normal(size=(K, 3, 3))
    gates = {
        None: None,
        "linear": (rng.normal(size=K - 1), rng.normal(size=(g, K - 1)), None, None),
        "mlp": (rng.normal(size=K - 1), rng.normal(size=(2, K - 1)), rng.normal(size=(g, 2)),
                rng.normal(size=2)),
    }  # fmt: skip
    params = StepParams(
        mean=rng.normal(size=(K, 3)), cov=A @ A.transpose(0, 2, 1), sigma=np.array([0.5, 1, 2]),
        log_pi=None if gate else np.log([0.2, 0.3, 0.5]), gate=gates[gate],
    )  # fmt: skip
    monkeypatch.setattr(vem, "BLOCK_BYTES", 1 << 30)  # one block
    whole, R = e_step_chunk(Z, y, G, params)
    monkeypatch.setattr(vem, "BLOCK_BYTES", 3 * 8 * 150)  # 150 rows: 7 blocks, one short
    blocked, R_blocked = e_step_chunk(Z, y, G, params)
    np.testing.assert_allclose(R_blocked, R, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(R.sum(axis=1), 1.0, rtol=1e-13)
    for name in ("loglik", "mass", "zz", "zu", "uu"):
        np.testing.assert_allclose(getattr(blocked, name), getattr(whole, name), rtol=1e-12)
    assert (whole.gate is None) == (gate != "linear")
    if gate == "linear":
        theta = rng.normal(size=(K - 1) * (g + 1))
        for a, b in zip(blocked.gate, whole.gate, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        one = gate_chunk(G, R, theta, 0, hessian=True)
        monkeypatch.setattr(vem, "BLOCK_BYTES", 1 << 30)
        for a, b in zip(one, gate_chunk(G, R, theta, 0, hessian=True), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_linear_gate_unchecked_newton_step_falls_back_to_checked_steps(monkeypatch):
    # Each iteration takes one unchecked Newton step, checked by the E-step after it; when
    # the bound falls the gate and r are restored and checked steps run. Forcing that
    # fallback every time must reach the same optimum with a bound that never falls.
    from bayesmoe.numerics import vem

    X, y, G, *_ = _simulate(8, n=800, K=3, gate="linear")
    kw = dict(gate="linear", G=G, n_init=3, random_state=0, tol=1e-12)
    fast = fit_mixture_vem(X, y, 3, **kw)
    calls = []
    checked = vem._newton_gate

    def spy(*a, **k):
        calls.append(k.get("checked", True))
        return checked(*a, **k)

    monkeypatch.setattr(vem, "_newton_gate", spy)
    monkeypatch.setattr(vem, "_BOUND_SLACK", -1.0)  # every unchecked step "fails"
    slow = fit_mixture_vem(X, y, 3, **kw)
    assert True in calls and False in calls
    assert slow.elbo == pytest.approx(fast.elbo, rel=1e-9)
    for r in (fast, slow):
        assert np.all(np.diff(r.history) >= -1e-12 * np.abs(r.history[1:]))
