"""sampler="auto"'s cold and warm paths (bayesmoe.inference.settings.is_cold_start).

Cold path (a structure not yet compiled into the disk cache): numpyro samples and a
background process compiles the nutpie code; warm path: nutpie, the draws of
``sampler="nutpie"``. The two paths draw the same posterior, not the same draws: their
means are held within Monte Carlo error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import bayesmoe as bm
import bayesmoe.cache
from bayesmoe.inference import settings
from bayesmoe.inference.backends import background

numpyro = pytest.importorskip("numpyro")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty compile cache for this test, and no structure on the cold path yet."""
    monkeypatch.setenv(bayesmoe.cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(background.BACKGROUND_ENV, raising=False)
    monkeypatch.setattr(settings, "_COLD_STRUCTURES", set())
    return tmp_path / "cache"


@pytest.fixture
def no_spawn(monkeypatch):
    """Background starts recorded instead of run."""
    started = []

    monkeypatch.setattr(background, "_start", started.append)
    return started


@pytest.fixture(scope="module")
def collapsed_model(small_data):
    return bm.interaction_regression(small_data.X, small_data.y, collapsed=True)


def test_auto_takes_the_cold_path_until_the_structure_is_recorded(
    fresh_cache, collapsed_model, monkeypatch
):
    assert settings.resolve_sampler(collapsed_model, "auto") == "numpyro"
    assert settings.resolve_sampler(collapsed_model, "nutpie") == "nutpie"
    key = collapsed_model.bayesmoe_spec.cache_key
    # recorded (a background compile finished): a new process takes the warm path ...
    bayesmoe.cache.mark_compiled(key)
    assert bayesmoe.cache.is_compiled(key)
    # ... but this process keeps the path its first fit of the structure took
    assert settings.resolve_sampler(collapsed_model, "auto") == "numpyro"
    monkeypatch.setattr(settings, "_COLD_STRUCTURES", set())
    assert settings.resolve_sampler(collapsed_model, "auto") == "nutpie"


@pytest.mark.parametrize(
    ("env", "value"),
    [(bayesmoe.cache.CACHE_ENV, "off"), (background.BACKGROUND_ENV, "0")],
)
def test_no_cold_path_without_a_cache_or_a_background_compile(
    fresh_cache, collapsed_model, monkeypatch, env, value
):
    monkeypatch.setenv(env, value)
    assert settings.resolve_sampler(collapsed_model, "auto") == "nutpie"


def test_a_model_without_a_structure_key_stays_on_nutpie(fresh_cache, small_data):
    rows = bm.interaction_regression(small_data.X, small_data.y, collapsed=False)
    assert rows.bayesmoe_spec.cache_key is None
    assert settings.resolve_sampler(rows, "auto") == "nutpie"


def test_compile_later_queues_structures_for_one_runner(
    fresh_cache, collapsed_model, small_data, no_spawn
):
    key = collapsed_model.bayesmoe_spec.cache_key
    assert background.compile_later(collapsed_model, key)
    other = bm.interaction_regression(small_data.X[["x1", "x2"]], small_data.y, collapsed=True)
    assert background.compile_later(other, other.bayesmoe_spec.cache_key)
    assert len(no_spawn) == 1  # one runner for the queue
    queue = bayesmoe.cache.usable_cache_dir() / "pending"
    assert len(list(queue.glob("*.pkl"))) == 2
    # a runner lock left by a runner that died long ago is taken over
    lock = queue / background.RUNNER_LOCK
    old = time.time() - background.STALE_SECONDS - 1
    os.utime(lock, (old, old))
    assert background.compile_later(collapsed_model, key)
    assert len(no_spawn) == 2
    bayesmoe.cache.mark_compiled(key)
    assert not background.compile_later(collapsed_model, key)  # already compiled


@pytest.mark.slow
def test_fit_on_the_cold_path_records_numpyro_and_starts_the_compile(
    fresh_cache, small_data, no_spawn
):
    est = bm.InteractionRegression(
        collapsed=True, draws=100, tune=100, chains=2, random_seed=3, progressbar=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 100 draws may fail a diagnostic
        est.fit(small_data.X, small_data.y)
    assert est.idata_.attrs["bayesmoe_sampler"] == "numpyro"
    assert len(no_spawn) == 1


def _mean_and_mcse(idata, name):
    import arviz_stats

    da = idata["posterior"][name]
    return float(da.mean()), float(arviz_stats.mcse(da, sample_dims=["chain", "draw"]))


@pytest.mark.slow
def test_cold_and_warm_paths_agree_within_monte_carlo_error(small_data, monkeypatch):
    """numpyro (cold) and nutpie (warm) posterior means within 4 MCSE (about 60 s)."""
    kw = dict(collapsed=True, draws=1000, tune=500, chains=2, random_seed=5, progressbar=False)
    fits = {}
    for sampler in ("numpyro", "nutpie"):
        fits[sampler] = bm.InteractionRegression(sampler=sampler, **kw).fit(
            small_data.X, small_data.y
        )
    for name in ("sigma", "tau_base", "tau_interaction", "intercept"):
        m1, s1 = _mean_and_mcse(fits["numpyro"].idata_, name)
        m2, s2 = _mean_and_mcse(fits["nutpie"].idata_, name)
        assert abs(m1 - m2) <= 4 * np.hypot(s1, s2), (name, m1, m2, s1, s2)


# full tier (a cold numba compile in a background process, 1-2 minutes): the slow tier
# keeps the cold-path fit and the Monte Carlo agreement of the two paths
@pytest.mark.full
def test_the_background_compile_opens_the_warm_path(tmp_path):
    """A fresh process fits on the cold path; after its background compile, the next
    fresh process takes the warm path, with the draws of sampler="nutpie" (a cold numba
    compile: 1-2 minutes)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTENSOR_FLAGS", background.BACKGROUND_ENV)
    }
    env[bayesmoe.cache.CACHE_ENV] = str(tmp_path)
    code = """
import hashlib, sys, warnings
warnings.simplefilter("ignore")
import bayesmoe as bm
from bayesmoe.experiments import make_interaction_data
d = make_interaction_data(120, 3, 0.5, 0.5, seed=3)
est = bm.InteractionRegression(collapsed=True, draws=100, tune=100, chains=2,
                               random_seed=3, progressbar=False, sampler=sys.argv[1])
est.fit(d.X, d.y)
print(est.idata_.attrs["bayesmoe_sampler"],
      hashlib.sha256(est.idata_["posterior"]["sigma"].values.tobytes()).hexdigest())
"""

    def run(sampler):
        out = subprocess.run(
            [sys.executable, "-c", code, sampler], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.split()

    assert run("auto")[0] == "numpyro"
    deadline = time.time() + 300
    while any(tmp_path.glob("*/pending/runner.lock")) and time.time() < deadline:
        time.sleep(1)
    assert any(tmp_path.glob("*/compiled/*")), "the background compile recorded nothing"
    warm = run("auto")
    assert warm[0] == "nutpie"
    assert warm == run("nutpie")
