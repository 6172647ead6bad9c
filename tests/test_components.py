"""Emptied / coinciding component diagnosis (bayesmoe.numerics.components)."""

import numpy as np
import pytest

from bayesmoe.numerics.components import (
    OVERLAP_MIN,
    diagnose_components,
    overlap,
)


def _draws(mus, sds, weights, S=200, n=50, jitter=0.02, seed=0):
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


def test_overlap_matches_closed_form_equal_sds():
    # Equal sds, means d apart: BC = exp(-d^2 / 8) exactly (no jitter).
    d = 1.5
    means = np.array([0.0, d])[None, None, :] * np.ones((3, 4, 2))
    bc = overlap(means, np.ones((3, 2)))
    assert bc[0, 1] == pytest.approx(np.exp(-(d**2) / 8), rel=1e-12)
    assert np.allclose(np.diag(bc), 1.0)


def test_well_separated_components_are_not_flagged():
    # Means 3 sd apart (BC 0.32): the K = K_true fit must never say "coincide".
    d = diagnose_components(*_draws([0.0, 3.0], [1.0, 1.0], [0.5, 0.5]))
    assert d.ok and d.message() == "" and d.supported == (2, 2)


def test_coinciding_and_emptied_are_named_with_numbers():
    # K_true = 2 fitted with K = 4: components 0 and 2 describe the same cluster, 3 is empty.
    w, mu, sd = _draws([0.0, 4.0, 0.1, 9.0], [1.0, 1.0, 1.0, 1.0], [0.3, 0.5, 0.195, 0.005])
    d = diagnose_components(w, mu, sd)
    assert [(j, k) for j, k, _ in d.coinciding] == [(0, 2)]
    assert d.coinciding[0][2] >= OVERLAP_MIN
    assert d.emptied == [3]
    assert d.supported == (2, 3)
    msg = d.message()
    assert f"components 0 and 2 coincide (overlap {d.coinciding[0][2]:.2f})" in msg
    assert f"component 3 is emptied (occupancy {d.occupancy[3]:.3f})" in msg
    assert "K = 2-3: see select_experts" in msg


def test_gated_weights_per_row():
    # Per-row gate weights: component 1 is used by no row.
    S, n = 50, 40
    w = np.zeros((S, n, 2))
    w[..., 0] = 0.995
    w[..., 1] = 0.005
    mu = np.zeros((S, n, 2))
    mu[..., 1] = 5.0
    d = diagnose_components(w, mu, np.ones((S, 2)))
    assert d.emptied == [1] and d.supported == (1, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"overlap_min": 0.0}, "overlap_min"), ({"empty_max": 1.0}, "empty_max")],
)
def test_bad_thresholds_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        diagnose_components(*_draws([0.0, 3.0], [1.0, 1.0], [0.5, 0.5]), **kwargs)


def test_bad_shapes_named():
    with pytest.raises(ValueError, match="means"):
        overlap(np.zeros((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="sds"):
        overlap(np.zeros((3, 4, 2)), -np.ones((3, 2)))


@pytest.mark.parametrize(("k_true", "k_fit"), [(1, 3), (2, 2), (2, 4)])
def test_vem_fit_names_emptied_components(k_true, k_fit):
    # Simulated K_true = 1 (one line) or 2 (well separated: intercepts 6 noise sds apart)
    # fitted by VEM: the extra components are named emptied, the true ones never flagged.
    import bayesmoe
    from bayesmoe.builders.mixture import mixture_regression

    rng = np.random.default_rng(0)
    n = 400
    X = rng.uniform(-1, 1, (n, 1))
    if k_true == 1:
        y = 1 + 2 * X[:, 0] + 0.5 * rng.standard_normal(n)
    else:
        z = rng.random(n) < 0.5
        y = np.where(z, 3 + 2 * X[:, 0], -3 - X[:, 0]) + 0.5 * rng.standard_normal(n)
    model = mixture_regression(X, y, n_components=k_fit)
    idata = bayesmoe.fit(model, method="vem", random_seed=1)
    d = model.bayesmoe_spec.component_diagnosis(
        idata["posterior"].to_dataset(), model["X_base"].get_value()
    )
    assert d.supported == (k_true, k_true)
    assert len(d.emptied) == k_fit - k_true and not d.coinciding
    assert (d.message() == "") == (k_fit == k_true)


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
    with pytest.warns(UserWarning, match=r"emptied \(occupancy .*the data support K = 1"):
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
