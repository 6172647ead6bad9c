"""Simulation-based calibration (bayesmoe.experiments.calibration).

Fast: the rank/band machinery and the label invariance of the mixture quantities.
Slow (CI): a 40-simulation SBC of the interaction model. Full (``-m full``): 200
simulations of every case, the issue's criterion; ``benchmarks/sbc.py`` runs the same
with tables and PNG plots.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bayesmoe.experiments.calibration import (
    SBC_BAND_PROB,
    _mixture_quantities,
    band_outside,
    run_sbc,
    sbc_cases,
)


def test_band_accepts_uniform_and_rejects_miscalibrated_ranks(rng):
    u = rng.uniform(size=200)
    assert band_outside(u) == 0
    # an overconfident posterior: true values land in the tails of the draws
    tails = np.concatenate([rng.uniform(0, 0.1, 100), rng.uniform(0.9, 1, 100)])
    assert band_outside(tails) > 0
    assert band_outside(rng.uniform(0, 0.8, size=200)) > 0  # biased upwards
    assert SBC_BAND_PROB == 0.99


def _mixture_draws(rng, gated: bool, S: int = 50, K: int = 3) -> xr.Dataset:
    ds = xr.Dataset(
        {
            "intercept": (("sample", "expert"), rng.normal(size=(S, K))),
            "beta": (("sample", "expert", "expert_feature"), rng.normal(size=(S, K, 1))),
            "sigma": (("sample", "expert"), rng.uniform(0.5, 2, size=(S, K))),
            "tau_base": ("sample", rng.uniform(size=S)),
        }
    )
    if gated:
        ds["gate_intercept"] = (("sample", "gate_expert"), rng.normal(size=(S, K - 1)))
        ds["gate_weights"] = (
            ("sample", "gate_feature", "gate_expert"),
            rng.normal(size=(S, 1, K - 1)),
        )
    else:
        ds["weights"] = (("sample", "expert"), rng.dirichlet(np.ones(K), size=S))
    return ds


def _permute(ds: xr.Dataset, perm: np.ndarray, gated: bool) -> xr.Dataset:
    out = ds.copy()
    for name in ("intercept", "beta", "sigma") + (() if gated else ("weights",)):
        out[name] = ds[name].isel(expert=perm)
    if gated:  # permute the logits (reference = last) and re-reference to the new last
        c = np.concatenate([ds["gate_intercept"].values, np.zeros((ds.sizes["sample"], 1))], 1)
        V = np.concatenate(
            [ds["gate_weights"].values[:, 0, :], np.zeros((ds.sizes["sample"], 1))], 1
        )
        c, V = c[:, perm], V[:, perm]
        out["gate_intercept"] = (("sample", "gate_expert"), (c - c[:, -1:])[:, :-1])
        out["gate_weights"] = (
            ("sample", "gate_feature", "gate_expert"),
            (V - V[:, -1:])[:, None, :-1],
        )
    return out


@pytest.mark.parametrize("gated", [False, True])
def test_mixture_quantities_are_label_invariant(rng, gated):
    ds = _mixture_draws(rng, gated)
    base = _mixture_quantities(ds)
    for perm in ([1, 0, 2], [2, 0, 1]):
        moved = _mixture_quantities(_permute(ds, np.array(perm), gated))
        assert moved.keys() == base.keys()
        for name in base:
            np.testing.assert_allclose(moved[name], base[name], rtol=1e-12, err_msg=name)
    # and they are not trivially constant
    assert np.std(base["log_density[x=0,y=0]"]) > 0


@pytest.mark.slow
def test_sbc_interaction_regression_ci():
    """40 simulations (nutpie, compilation cached: ~20 s) inside the 99% band."""
    result = run_sbc(sbc_cases()["interaction_half_cauchy"], 40, progressbar=False)
    assert result.failed == 0
    assert result.ok, {k: v for k, v in result.outside.items() if v}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["interaction_horseshoe", "interaction_r2d2"])
def test_sbc_local_global_priors_ci(case):
    """40 simulations of each local-global prior (collapsed, exact weight draws)."""
    result = run_sbc(sbc_cases()[case], 40, progressbar=False)
    assert result.failed == 0
    assert result.ok, {k: v for k, v in result.outside.items() if v}


@pytest.mark.full
@pytest.mark.parametrize("case", list(sbc_cases()))
def test_sbc_full(case):
    """The issue's criterion: 200 simulations, no quantity leaves the 99% band."""
    result = run_sbc(sbc_cases()[case], 200, progressbar=False)
    assert result.failed == 0
    assert result.ok, {k: v for k, v in result.outside.items() if v}
