"""The diagnostics gate: every fit stores its diagnostics, ``check()`` reports them,
``strict=True`` raises when a threshold fails."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

import bayesmoe as bm
from bayesmoe import fitting
from bayesmoe.fitting import Diagnostics, DiagnosticsError, diagnose
from tests.conftest import FAST


def _tree(posterior: dict, energy=None, diverging=None, loglik=None) -> xr.DataTree:
    groups = {"posterior": xr.Dataset({k: (("chain", "draw"), v) for k, v in posterior.items()})}
    stats = {}
    if energy is not None:
        stats["energy"] = (("chain", "draw"), energy)
    if diverging is not None:
        stats["diverging"] = (("chain", "draw"), diverging)
    if stats:
        groups["sample_stats"] = xr.Dataset(stats)
    if loglik is not None:
        groups["log_likelihood"] = xr.Dataset({"y": (("chain", "draw", "obs"), loglik)})
    return xr.DataTree.from_dict(groups)


def test_thresholds_are_documented_constants():
    assert fitting.RHAT_MAX == 1.01
    assert fitting.ESS_MIN_PER_CHAIN == 100
    assert fitting.DIVERGENCES_MAX == 0
    assert fitting.BFMI_MIN == 0.3
    assert fitting.PARETO_K_MAX == 0.7
    for name in ("RHAT_MAX", "ESS_MIN_PER_CHAIN", "DIVERGENCES_MAX", "BFMI_MIN", "PARETO_K_MAX"):
        assert name in fitting.__all__


def test_healthy_draws_pass_every_check(rng):
    S = 500
    tree = _tree(
        {"a": rng.normal(size=(4, S))},
        energy=rng.normal(size=(4, S)),
        diverging=np.zeros((4, S), bool),
        loglik=rng.normal(-1.0, 0.05, size=(4, S, 30)),
    )
    report = diagnose(tree, loo=True)
    assert report.ok, report.message()
    assert report.bfmi > 0.3 and report.max_pareto_k < 0.7 and report.n_high_pareto_k == 0
    assert set(report.to_frame().index) == {
        "max R-hat",
        "min bulk ESS",
        "divergences",
        "min BFMI",
        "max Pareto k",
    }


def test_each_failing_check_is_named_with_its_number(rng):
    S = 400
    stuck = rng.normal(size=(4, S)) + np.array([0, 0, 0, 3.0])[:, None]  # one chain elsewhere
    # energy as a slow random walk: its marginal spread dwarfs its step size -> low BFMI
    walk = np.cumsum(rng.normal(size=(4, S)), axis=1)
    diverging = np.zeros((4, S), bool)
    diverging[1, :7] = True
    loglik = rng.normal(-1.0, 0.05, size=(4, S, 20))
    # importance ratios exp(-loglik) = exp(2 E), E ~ Exp(1): a Pareto tail with k = 2
    loglik[..., 0] = -2.0 * rng.exponential(size=(4, S))
    report = diagnose(
        _tree({"a": stuck}, energy=walk, diverging=diverging, loglik=loglik), loo=True
    )
    failures = report.failures()
    text = " | ".join(failures)
    assert f"max R-hat {report.max_rhat:.3f} > 1.01 for ['a']" in text
    assert "7 divergent transitions > 0" in text
    assert f"min BFMI {report.bfmi:.2f} < 0.3" in text
    # the threshold of S = 4 x 400 draws: min(1 - 1/log10(1600), 0.7) = 0.688
    assert report.pareto_k_threshold == pytest.approx(1 - 1 / np.log10(1600))
    assert f"rows with Pareto k > {report.pareto_k_threshold:.2f}" in text
    assert report.n_high_pareto_k == int(report.max_pareto_k > report.pareto_k_threshold)
    assert not report.ok
    frame = report.to_frame()
    assert not frame.loc["max R-hat", "ok"] and not frame.loc["min BFMI", "ok"]
    assert "Sampling diagnostics failed" in str(report)


def test_low_ess_fails(rng):
    ar = np.zeros((2, 300))
    for t in range(1, 300):  # AR(1) with phi = 0.99: ESS of a few dozen
        ar[:, t] = 0.99 * ar[:, t - 1] + rng.normal(size=2)
    report = diagnose(_tree({"a": ar}))
    assert report.min_ess_bulk < 200
    assert any("min bulk ESS" in f and "< 200" in f for f in report.failures())


def test_as_dict_is_json_and_round_trips_the_numbers(rng):
    report = Diagnostics(
        1.02, 50.0, 3, 2, ["a"], ["a"], bfmi=0.2, max_pareto_k=0.9, n_high_pareto_k=2
    )
    d = json.loads(json.dumps(report.as_dict()))
    assert d["max_rhat"] == 1.02 and d["divergences"] == 3 and d["ok"] is False
    assert len(report.failures()) == 5


# ------------------------------------------------------------------ on real fits
def test_every_fit_stores_its_diagnostics(fitted):
    stored = json.loads(fitted.idata_.attrs["bayesmoe_diagnostics"])
    report = fitted.check(loo=False)
    assert stored["max_rhat"] == pytest.approx(report.max_rhat)
    assert stored["divergences"] == report.divergences
    assert stored["bfmi"] == pytest.approx(report.bfmi)
    full = fitted.check()  # log_likelihood stored -> Pareto k included by default
    assert full.max_pareto_k is not None and full.n_high_pareto_k >= 0
    assert "max Pareto k" in full.to_frame().index
    with pytest.raises(TypeError, match="loo must be"):
        fitted.check(loo="yes")


def test_strict_fit_raises_with_numbers_and_keeps_the_fit(small_data):
    model = bm.interaction_regression(small_data.X, small_data.y, collapsed=True)
    settings = {**FAST, "draws": 15, "tune": 15}  # 30 draws cannot reach ESS 200
    with pytest.raises(DiagnosticsError, match=r"min bulk ESS \d+ < 200") as info:
        bm.fit(model, strict=True, **settings)
    assert info.value.diagnostics.min_ess_bulk < 200
    assert "posterior" in info.value.idata.children
    stored = json.loads(info.value.idata.attrs["bayesmoe_diagnostics"])
    assert stored["ok"] is False and stored["max_pareto_k"] is not None  # LOO ran


def test_strict_estimator_fit_raises_and_stays_unfitted(small_data):
    from sklearn.exceptions import NotFittedError

    est = bm.InteractionRegression(**{**FAST, "draws": 15, "tune": 15})
    with pytest.raises(DiagnosticsError, match="strict=True"):
        est.fit(small_data.X, small_data.y, strict=True)
    with pytest.raises(NotFittedError):
        est.predict(small_data.X)
    with pytest.raises(TypeError, match="strict must be"):
        est.fit(small_data.X, small_data.y, strict="no")


def test_strict_fit_passes_when_every_check_passes(small_data):
    model = bm.interaction_regression(small_data.X, small_data.y, collapsed=True)
    idata = bm.fit(model, strict=True, **{**FAST, "draws": 600, "tune": 400})
    stored = json.loads(idata.attrs["bayesmoe_diagnostics"])
    assert stored["ok"] and stored["max_pareto_k"] is not None  # LOO ran under strict
