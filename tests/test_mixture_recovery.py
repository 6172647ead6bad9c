"""Slow tier: the mixture-of-experts convergence and calibration bar on a few seeds.

With nutpie and default settings (4 chains, 1000 + 1000 draws) on simulated data with
well-separated experts (n = 2000, 3 features), each fit must give max R-hat <= 1.01, bulk
ESS >= 400 for every identified quantity and no divergences, and its 94% HDIs must cover
the true identified quantities at about the nominal rate: at least the 0.1% quantile of
Binomial(c, 0.94) of the c quantities.

This runs the linear gate with K = 2 and K = 3 on a few seeds, to fit in the slow tier's
time. The full bar (10 seeds; linear and mlp gate; K = 2 and 3; nutpie, PyMC and numpyro,
with ESS/s) is ``benchmarks/mixtures.py``, whose per-seed check these tests share.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "mixtures.py"


def _load_benchmark():
    name = "_bayesmoe_benchmark_mixtures"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()

CASES = [("linear-K2", 0), ("linear-K2", 1), ("linear-K2", 2), ("linear-K3", 0), ("linear-K3", 1)]


@pytest.mark.slow
@pytest.mark.parametrize(("config", "seed"), CASES)
def test_mixture_bar_nutpie(config, seed):
    row = bench.run_seed(config, "nutpie", seed)
    where = f"{config} seed {seed}"
    assert row["max_rhat"] <= bench.RHAT_MAX, f"{where}: {row['why']}"
    assert row["min_ess_bulk"] >= bench.ESS_MIN, f"{where}: {row['why']}"
    assert row["divergences"] == 0, f"{where}: {row['why']}"
    floor = bench.coverage_floor(row["n_truth"])
    assert row["covered"] >= floor, (
        f"{where}: {row['covered']}/{row['n_truth']} true values in their 94% HDI "
        f"(floor {floor}); missed {row['missed']}"
    )
    _check_vem_against_nuts(row["estimator"], row["data"], where)


def _check_vem_against_nuts(nuts, data, where: str) -> None:
    """Variational EM on the same data: truth within 3 posterior sd, lpd within 1% of NUTS.

    The 3-sd check allows as many coefficients outside as a 1-in-1000 event would give for
    an exact posterior (Binomial(c, 0.0027) upper 0.1% quantile), because with c
    coefficients some exceed 3 sd by chance (NUTS itself does on some seeds).
    """
    import numpy as np
    from scipy.stats import binom

    vem = nuts.__class__(**{**nuts.get_params(), "method": "vem"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vem.fit(data.X, data.y)
    truth = bench.identified_truth(vem, data)
    post = vem.working_view()["posterior"]  # the truth is on the working scale
    z = np.concatenate(
        [
            (
                np.abs(post[k].mean(("chain", "draw")) - truth[k]) / post[k].std(("chain", "draw"))
            ).values.ravel()
            for k in ("intercept", "beta")
        ]
    )
    allowed = int(binom.ppf(0.999, z.size, 2 * 0.00135))
    assert (z > 3).sum() <= allowed, f"{where}: VEM |z| = {np.round(np.sort(z)[-3:], 2)}"
    test = data.new_rows(5000, seed=12345)
    lpd_vem = vem.log_predictive_density(test.X, test.y)
    lpd_nuts = nuts.log_predictive_density(test.X, test.y)
    assert abs(lpd_vem - lpd_nuts) <= 0.01 * abs(lpd_nuts), f"{where}: {lpd_vem} vs {lpd_nuts}"


def test_coverage_floor():
    from scipy.stats import binom

    assert bench.coverage_floor(14) == int(binom.ppf(0.001, 14, 0.94))
    assert bench.coverage_floor(14) <= 14 * 0.94
    assert bench.coverage_floor(60) < bench.coverage_floor(100)


def _fake_fit(values: dict):
    """An estimator stand-in: ``idata_`` (and ``working_view()``) hold the given draws."""
    import xarray as xr

    post = xr.Dataset(
        {k: (("chain", "draw", *[f"{k}_dim{i}" for i in range(v.ndim - 2)]), v)
        for k, v in values.items()}
    )  # fmt: skip
    tree = xr.DataTree.from_dict({"posterior": post})
    return type("Fit", (), {"idata_": tree, "working_view": lambda self: tree})()


def test_reference_misses_is_nominal_and_clustered():
    import numpy as np

    rng = np.random.default_rng(0)
    # 12 quantities that move together (one shared factor) and 12 independent ones
    shared = rng.normal(size=(4, 500, 1)) + 0.05 * rng.normal(size=(4, 500, 12))
    indep = rng.normal(size=(4, 500, 12))
    fit = _fake_fit({"a": shared, "b": indep})
    for kind in ("eti", "hdi"):
        ref_a = bench.reference_misses(fit, ["a"], kind)
        ref_b = bench.reference_misses(fit, ["b"], kind)
        assert ref_a.shape == ref_b.shape == (2000,)
        # a draw misses 6% of its quantities on average, clustered or not (2000 draws:
        # the mean count is within a few hundredths of 12 * 0.06 = 0.72)
        assert abs(ref_a.mean() - 0.72) < 0.1 and abs(ref_b.mean() - 0.72) < 0.1
        # clustered quantities miss all together or not at all: far larger variance
        assert ref_a.var() > 5 * ref_b.var()


def test_coverage_p_value():
    import numpy as np
    from scipy.stats import binom

    never = np.array([1.0, 0.0, 0.0])  # a seed whose draws never miss
    assert bench.coverage_p_value(1, [never, never])[0] == 0.0
    assert bench.coverage_p_value(0, [never, never]) == (1.0, 0.0)
    hist = binom.pmf(np.arange(41), 40, 0.06)  # 40 independent quantities
    p, mean = bench.coverage_p_value(int(10 * 40 * 0.06), [hist] * 10)
    assert abs(mean - 24.0) < 1e-9 and 0.3 < p < 0.7
    # 40 misses of 400 when 24 are expected: binomial tail P(X >= 40) ~ 0.001
    assert bench.coverage_p_value(40, [hist] * 10)[0] < 0.01
