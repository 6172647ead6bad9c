"""Emptied / coinciding component diagnosis (bayesmoe.numerics.components)."""

import warnings

import numpy as np
import pytest

from bayesmoe.numerics.components import diagnose_components, overlap, reduce_components


def _draws(mus, sds, weights, S=200, n=300, jitter=0.02, seed=0):
    """Posterior-like draws around given components, and rows from the true clusters."""
    rng = np.random.default_rng(seed)
    K = len(mus)
    means = (
        np.asarray(mus)[None, None, :]
        + jitter * rng.standard_normal((S, 1, K))
        + np.zeros((S, n, K))
    )
    sd = np.asarray(sds)[None, :] * np.exp(jitter * rng.standard_normal((S, K)))
    w = rng.dirichlet(1000 * np.asarray(weights) + 1e-3, size=S)
    return w, means, sd


def _rows(mus, sds, weights, n=300, seed=1):
    rng = np.random.default_rng(seed)
    z = rng.choice(len(mus), size=n, p=np.asarray(weights) / np.sum(weights))
    return np.asarray(mus)[z] + np.asarray(sds)[z] * rng.standard_normal(n)


def test_overlap_matches_closed_form_equal_sds():
    # Equal sds, means d apart: BC = exp(-d^2 / 8) exactly (no jitter).
    d = 1.5
    means = np.array([0.0, d])[None, None, :] * np.ones((3, 4, 2))
    bc = overlap(means, np.ones((3, 2)))
    assert bc[0, 1] == pytest.approx(np.exp(-(d**2) / 8), rel=1e-12)
    assert np.allclose(np.diag(bc), 1.0)


def test_well_separated_components_are_not_flagged():
    # Clusters 3 sd apart, 150 rows each: merging or dropping either loses ~100
    # log-likelihood units, far above a component's 3 parameters.
    truth = ([0.0, 3.0], [1.0, 1.0], [0.5, 0.5])
    d = diagnose_components(*_draws(*truth), _rows(*truth), penalty=3)
    assert d.ok and d.message() == "" and d.supported == (2, 2)
    assert d.k_plus[2] == 1.0 and not d.emptied and not d.coinciding


def test_coinciding_and_emptied_are_named_with_numbers():
    # Two clusters fitted with K = 4: components 0 and 2 split cluster 0 (means 0.1 sd
    # apart), component 3 sits far from every row with weight 0.005.
    truth = ([0.0, 4.0], [1.0, 1.0], [0.5, 0.5])
    fit = _draws([0.0, 4.0, 0.1, 9.0], [1.0, 1.0, 1.0, 1.0], [0.3, 0.5, 0.195, 0.005])
    d = diagnose_components(*fit, _rows(*truth), penalty=3)
    assert [(j, k) for j, k, _ in d.coinciding] == [(0, 2)]
    assert [k for k, _ in d.emptied] == [3]
    assert d.supported == (2, 2) and d.k_plus[2] > 0.95 and not d.ok
    msg = d.message()
    assert f"components 0 and 2 coincide (merged in {d.coinciding[0][2]:.0%} of draws" in msg
    assert f"overlap {d.overlap[0, 2]:.2f})" in msg
    assert f"component 3 is emptied (dropped in {d.emptied[0][1]:.0%} of draws" in msg
    assert f"occupancy {d.occupancy[3]:.3f})" in msg
    assert "the data support K = 2: see select_experts" in msg


def test_reduction_does_not_depend_on_labels():
    # Per-draw label permutations (label switching) give the same counts K_+.
    truth = ([0.0, 4.0], [1.0, 1.0], [0.5, 0.5])
    w, mu, sd = _draws([0.0, 4.0, 0.1], [1.0, 1.0, 1.0], [0.3, 0.5, 0.2])
    y = _rows(*truth)
    S, K = w.shape
    perm = np.argsort(np.random.default_rng(3).random((S, K)), axis=1)

    def counts(w, mu, sd):
        full = (np.broadcast_to(a[:, None, :], mu.shape) for a in (w, sd))
        w_full, sd_full = full
        return reduce_components(w_full, mu, sd_full, y, penalty=3)[0]

    original = counts(w, mu, sd)
    switched = counts(
        np.take_along_axis(w, perm, 1),
        np.take_along_axis(mu, perm[:, None, :], 2),
        np.take_along_axis(sd, perm, 1),
    )
    np.testing.assert_array_equal(original, switched)
    assert np.all(original == 2)


def test_rows_represented_count_as_evidence():
    # Two clusters 2 sds apart, 50 rows each at their normal quantiles (no sampling
    # noise): merging them loses 1.2 log-likelihood units, below the penalty, but the
    # same rows standing for 1e4 (a streamed fit's sample) make the difference real.
    from scipy.stats import norm

    truth = ([0.0, 0.6], [0.3, 0.3], [0.5, 0.5])
    q = norm.ppf((np.arange(50) + 0.5) / 50)
    fit, y = _draws(*truth, n=100, jitter=0.0), np.concatenate([0.3 * q, 0.6 + 0.3 * q])
    assert diagnose_components(*fit, y, penalty=3).supported[0] == 1
    assert diagnose_components(*fit, y, penalty=3, scale=100).ok


def test_a_collapsing_noise_sd_is_named():
    # A component through tied rows with its sd shrinking to ~0 (rounded real data):
    # named with its ratio to the sd of y and the number of repeated values, never ok.
    truth = ([0.0, 3.0], [1.0, 1.0], [0.5, 0.5])
    w, mu, sd = _draws([0.0, 3.0], [1.0, 1e-9], [0.5, 0.5])
    y = np.round(_rows(*truth), 1)
    d = diagnose_components(w, mu, sd, y, penalty=3)
    assert [k for k, _ in d.collapsed] == [1] and d.collapsed[0][1] < 1e-8
    assert d.repeated == y.size - np.unique(y).size > 0
    assert not d.ok
    msg = d.message()
    ratio = d.collapsed[0][1]
    assert f"component 1's noise sd collapses to 0 (posterior median {ratio:.2g}" in msg
    assert f"y has {d.repeated} repeated values" in msg and "InverseGamma" in msg


def test_gated_weights_per_row():
    # Per-row gate weights: component 1 is used by no row.
    S, n = 50, 40
    w = np.zeros((S, n, 2))
    w[..., 0] = 0.995
    w[..., 1] = 0.005
    mu = np.zeros((S, n, 2))
    mu[..., 1] = 5.0
    y = np.random.default_rng(0).standard_normal(n)
    d = diagnose_components(w, mu, np.ones((S, 2)), y, penalty=4)
    assert [k for k, _ in d.emptied] == [1] and d.supported == (1, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"penalty": 0.0}, "penalty"), ({"penalty": 3, "scale": 0.5}, "scale")],
)
def test_bad_arguments_named(kwargs, match):
    truth = ([0.0, 3.0], [1.0, 1.0], [0.5, 0.5])
    with pytest.raises(ValueError, match=match):
        diagnose_components(*_draws(*truth), _rows(*truth), **kwargs)


def test_bad_shapes_named():
    truth = ([0.0, 3.0], [1.0, 1.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="y must have shape"):
        diagnose_components(*_draws(*truth), _rows(*truth)[:10], penalty=3)
    with pytest.raises(ValueError, match="means"):
        overlap(np.zeros((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="sds"):
        overlap(np.zeros((3, 4, 2)), -np.ones((3, 2)))


@pytest.mark.parametrize("separation", [3.0, 1.0])
@pytest.mark.parametrize(("k_true", "k_fit"), [(1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (2, 4)])
def test_vem_fit_names_emptied_components(k_true, k_fit, separation):
    # Issue 20's grid, by VEM (no compilation, so every cell runs in the fast tier):
    # K_true = 1 (one line) or 2 (intercepts `separation` apart, noise sd 0.5: 6 noise sds
    # well separated, 2 overlapping), fitted with K = K_true, +1, +2 on 300 rows, the
    # generator of benchmarks/overfitted.py. Well separated: the extra components are
    # named and the supported K is the truth, the true ones never flagged. Overlapping:
    # 300 rows may not resolve the two lines, so a fit may support fewer than K_true
    # components, but an overfitted fit is never silent and never claims more than K_true.
    import bayesmoe
    from bayesmoe.builders.mixture import mixture_regression
    from bayesmoe.experiments import make_mixture_data

    for seed in range(2):
        data = make_mixture_data(
            300, k_true, 1, gate=None, noise=0.5, separation=separation, seed=seed
        )
        X, y = data.X.to_numpy(), data.y
        model = mixture_regression(X, y, n_components=k_fit)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the sentence is checked below
            idata = bayesmoe.fit(model, method="vem", random_seed=seed)
        d = model.bayesmoe_spec.component_diagnosis(
            idata["posterior"].to_dataset(), model["X_base"].get_value()
        )
        lo, hi = d.supported
        if separation == 3.0:
            assert d.supported == (k_true, k_true), (seed, d.message())
            # every superfluous component is named, emptied or coinciding with another
            assert len(d.emptied) + len(d.coinciding) >= k_fit - k_true, (seed, d.message())
            assert (d.message() == "") == (k_fit == k_true), (seed, d.message())
        else:
            assert hi <= k_true, (seed, d.message())
            if k_fit > k_true:
                assert f"the data support K = {lo}" in d.message(), (seed, d.message())


def test_fit_warns_and_stores_the_component_diagnosis():
    # The hook in fitting._gate: K_true = 1 fitted with K = 3 by VEM warns with the
    # sentence and stores it with the diagnostics; the message of the report carries it.
    import json

    import bayesmoe
    from bayesmoe.builders.mixture import mixture_regression

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (400, 1))
    y = 1 + 2 * X[:, 0] + 0.5 * rng.standard_normal(400)
    model = mixture_regression(X, y, n_components=3)
    with pytest.warns(UserWarning, match=r"emptied \(dropped in .*the data support K = 1"):
        idata = bayesmoe.fit(model, method="vem", random_seed=1)
    stored = json.loads(idata.attrs["bayesmoe_diagnostics"])
    assert "the data support K = 1: see select_experts" in stored["components"]


@pytest.mark.parametrize("estimator", ["MixtureRegression", "GatedExperts"])
def test_estimator_check_names_emptied_components(estimator):
    # K_true = 1 fitted with K = 3 by VEM: the estimator's check() (not only the fit's
    # warning) names the emptied components and the K the data support.
    import warnings

    import bayesmoe as bm

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (400, 1))
    y = 1 + 2 * X[:, 0] + 0.5 * rng.standard_normal(400)
    kwargs = {"n_components": 3} if estimator == "MixtureRegression" else {"n_experts": 3}
    est = getattr(bm, estimator)(method="vem", random_seed=1, progressbar=False, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        est.fit(X, y)
    d = est.component_diagnosis()
    assert d.supported == (1, 1) and len(d.emptied) == 2
    report = est.check()
    assert "emptied" in report.components
    assert "the data support K = 1" in report.components
    assert report.components in report.message()
    # the components are not identified: the report says R-hat/ESS are the density's
    assert report.identified.startswith("the mixture density at 20 training rows")
    assert report.component_max_rhat is not None
    assert f"(R-hat and ESS on {report.identified})" in report.message()


# full tier (about 2 minutes of NUTS on real data): the slow tier keeps the simulated
# cases of the same diagnosis
@pytest.mark.full
def test_real_data_with_ties_names_the_collapsing_component():
    # Iris (sklearn): petal length on petal width, 150 rows rounded to 0.1 cm (107 values of
    # y repeat). With the default HalfNormal noise prior a K = 2 fit puts a component of
    # sd ~1e-14 through the tied setosa rows and the chains disagree (R-hat ~3): the
    # warning names the collapse and the remedy. With the zero-avoiding prior it names,
    # the fit is no longer degenerate, and the diagnosis says what the data support.
    import warnings

    from pymc_extras.prior import Prior
    from sklearn.datasets import load_iris

    import bayesmoe as bm

    iris = load_iris(as_frame=True).frame
    X, y = iris[["petal width (cm)"]], iris["petal length (cm)"]
    est = bm.MixtureRegression(n_components=2, random_seed=0, progressbar=False)
    with pytest.warns(UserWarning, match=r"noise sd collapses to 0 .*InverseGamma"):
        est.fit(X, y)
    assert len(est.component_diagnosis().collapsed) == 1
    sigma = Prior("InverseGamma", alpha=3.0, beta=1.0, dims="expert")
    fixed = bm.MixtureRegression(
        n_components=2, random_seed=0, progressbar=False, priors={"sigma": sigma}
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fixed.fit(X, y)
    d = fixed.component_diagnosis()
    assert not d.collapsed
    report = fixed.check()
    said = " | ".join(str(w.message) for w in caught)
    assert report.max_rhat <= 1.01 or "the data support K" in said  # never silent


@pytest.mark.slow
def test_nuts_fit_of_too_many_components_is_diagnosed_on_the_density():
    # One line fitted with K = 2 by NUTS: the chains disagree on the
    # components (label-free K_+ = 1 in most draws), so the stored diagnostics are those
    # of the mixture density, the components' own R-hat kept, and the warning names
    # the supported K (never a silent pass).
    import json
    import warnings

    import bayesmoe as bm
    from bayesmoe.experiments import make_mixture_data

    data = make_mixture_data(300, 1, 1, gate=None, noise=0.5, separation=3.0, seed=2)
    # alpha = 1 (not the sparse default), where the chains disagree on the components
    est = bm.MixtureRegression(n_components=2, alpha=1.0, random_seed=2, progressbar=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(data.X, data.y)
    stored = json.loads(est.idata_.attrs["bayesmoe_diagnostics"])
    assert stored["identified"].startswith("the mixture density at 20 training rows")
    # the components' own R-hat is kept, and is worse than the density's: the chains
    # agree on the mixture density but not on what each component is
    assert stored["component_max_rhat"] > stored["max_rhat"]
    said = " | ".join(str(w.message) for w in caught)
    assert stored["max_rhat"] <= 1.01 or "the data support K = 1" in said
    assert est.component_diagnosis().supported == (1, 1)
    # a fit of the true K on well-separated clusters is not flagged
    two = make_mixture_data(300, 2, 1, gate=None, noise=0.5, separation=3.0, seed=2)
    est2 = bm.MixtureRegression(n_components=2, random_seed=2, progressbar=False)
    est2.fit(two.X, two.y)
    stored2 = json.loads(est2.idata_.attrs["bayesmoe_diagnostics"])
    assert stored2["identified"] == "" and stored2["components"] == ""
    assert est2.check().ok


def test_estimator_check_is_silent_on_distinct_components():
    # Two well-separated lines fitted with K = 2: nothing to report.
    import bayesmoe as bm

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (400, 1))
    z = rng.random(400) < 0.5
    y = np.where(z, 3 + 2 * X[:, 0], -3 - X[:, 0]) + 0.5 * rng.standard_normal(400)
    est = bm.MixtureRegression(n_components=2, method="vem", random_seed=1, progressbar=False)
    est.fit(X, y)
    assert est.component_diagnosis().ok
    assert est.check().components == ""


def test_the_fits_component_diagnosis_is_reused_not_recomputed(monkeypatch):
    # The fit's diagnostics, check(), component_diagnosis() and select_experts ask for
    # the same diagnosis (0.1-1 s each): one computation, until the draws change.
    import warnings

    import bayesmoe as bm
    import bayesmoe.numerics.components as components

    calls = []
    original = components.diagnose_components
    monkeypatch.setattr(
        components, "diagnose_components", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (400, 1))
    y = 1 + 2 * X[:, 0] + 0.5 * rng.standard_normal(400)
    est = bm.MixtureRegression(n_components=3, method="vem", random_seed=1, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        est.fit(X, y)
        assert len(calls) == 1
        first = est.component_diagnosis()
        est.check()
        assert len(calls) == 1
        spec = est.model_.bayesmoe_spec
        post = est.idata_["posterior_working"].to_dataset()
        moved = post.assign(sigma=post["sigma"] * 1.5)
        other = spec.component_diagnosis(moved, est.model_["X_base"].get_value())
    assert len(calls) == 2 and other is not first
