"""Slow tier: the learned prior scales recover the scales that generated the weights."""

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

import bayesmoe as bm


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["half_cauchy", "gamma", "half_normal"])
def test_learned_scales_cover_true_scales(prior):
    rng = np.random.default_rng(2024)
    p, n, tau_base, tau_int, sigma = 8, 2000, 1.0, 0.25, 0.5
    X = rng.uniform(-1, 1, size=(n, p))
    pairs = [(a, b) for a in range(p) for b in range(a + 1, p)]
    # weights drawn from the model's own prior with known scales
    w = rng.normal(0, tau_base, size=p)
    v = rng.normal(0, tau_int, size=len(pairs))
    inter = np.column_stack([X[:, a] * X[:, b] for a, b in pairs])
    y = 0.3 + X @ w + inter @ v + sigma * rng.normal(size=n)
    est = bm.InteractionRegression(
        prior=prior,
        standardize=False,
        draws=1000,
        tune=1000,
        chains=4,
        random_seed=5,
        progressbar=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(pd.DataFrame(X, columns=[f"x{j}" for j in range(p)]), y)
    report = est.check()
    assert report.ok, report.message()
    hdi = az.hdi(est.idata_, var_names=["tau_base", "tau_interaction", "sigma"], prob=0.94)
    hdi = hdi.to_dataset() if hasattr(hdi, "to_dataset") else hdi
    for name, truth in (("tau_base", tau_base), ("tau_interaction", tau_int)):
        lo, hi = np.asarray(hdi[name].values).ravel()[:2]
        assert lo <= truth <= hi, f"{name}: true {truth} outside 94% HDI [{lo:.3f}, {hi:.3f}]"
    # sigma is pinned by 2000 rows; a single fixed seed lands outside a 94% interval 6% of
    # the time, so it is checked against 4 posterior sd (a 1-in-15,000 miss).
    draws = est.idata_["posterior"]["sigma"].values
    assert abs(draws.mean() - sigma) < 4 * draws.std()
