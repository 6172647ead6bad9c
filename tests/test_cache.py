"""The on-disk compile cache: where it lives, and that it never changes a draw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bayesmoe import cache
from tests.conftest import python_output

#: One fit in a fresh process; prints the draws' checksum and whether numba loaded the
#: wrappers from disk (a cfunc's cache hits).
FIT_SCRIPT = """
import json, sys
import numpy as np
import bayesmoe as bm
from bayesmoe.experiments import make_interaction_data
import bayesmoe.cache as cache
import nutpie

hits = []
orig = cache._cached_cfunc
def spy(*a, **k):
    c = orig(*a, **k)
    hits.append(c.cache_hits)
    return c
cache._cached_cfunc = spy
settings = dict(sampler="nutpie", draws=100, tune=100, chains=2, random_seed=7, progressbar=False)
if sys.argv[1] == "mixture":  # its logp is where fastmath made cold and warm draws differ
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = np.where(rng.random(300) < 0.5, 2 + X @ [1.0, -0.5], -2 + X @ [0.3, 0.8])
    est = bm.MixtureRegression(n_components=2, **settings).fit(X, y + 0.5 * rng.normal(size=300))
    names = ("sigma", "intercept", "weights")
else:
    d = make_interaction_data(120, 3, 1.0, 0.3, seed=0)
    est = bm.InteractionRegression(**settings).fit(d.X, d.y)
    names = ("tau_base", "tau_interaction", "sigma")
post = est.idata_["posterior_working"]
draws = {k: post[k].values.ravel().tolist() for k in names}
import gc
print(json.dumps({"draws": draws, "hits": hits, "gc_enabled": gc.isenabled(),
                  "frozen": gc.get_freeze_count()}))
"""


def _run(tmp: Path, model: str = "interaction", freeze: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", cache.GC_FREEZE_ENV)}
    env[cache.CACHE_ENV] = str(tmp)
    if freeze:
        env[cache.GC_FREEZE_ENV] = "1"
    out = subprocess.run(
        [sys.executable, "-c", FIT_SCRIPT, model],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cache_dir_follows_env_and_versions(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    folder = cache.cache_dir()
    assert folder.parent == tmp_path
    assert folder.name.startswith("v-")
    monkeypatch.setattr(cache, "_version", lambda name: "9.9" if name == "numba" else "1")
    assert cache.cache_dir() != folder  # another numba version, another folder
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    assert cache.cache_dir() is None


def test_configure_keeps_a_users_compiledir(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("PYTENSOR_FLAGS", "base_compiledir=/somewhere")
    assert cache.configure() is None  # PyTensor is imported here, and the user chose one
    assert os.environ["PYTENSOR_FLAGS"] == "base_compiledir=/somewhere"


@pytest.mark.slow
def test_cold_and_warm_cache_give_identical_draws(tmp_path):
    cold = _run(tmp_path)
    warm = _run(tmp_path)
    assert cold["hits"] == [0, 0]  # compiled, then written
    assert warm["hits"] == [1, 1]  # both wrappers read back from disk
    assert warm["draws"] == cold["draws"]
    assert any(tmp_path.glob("v-*/pytensor/numba/*bayesmoe_logp*"))
    # the collector is back on after the fit's pauses, and nothing was frozen unasked
    # (the interpreter itself may freeze a few hundred objects at start-up)
    assert warm["gc_enabled"] and warm["frozen"] < 10_000
    # BAYESMOE_GC_FREEZE=1 (what the bayesmoe command sets): frozen, the same draws
    frozen = _run(tmp_path, freeze=True)
    assert frozen["frozen"] > 100_000 and frozen["gc_enabled"]
    assert frozen["draws"] == cold["draws"]


# full tier (a cold numba compile of the mixture, 2-3 minutes): the slow tier keeps the
# interaction model's cold-vs-warm test of the same guarantee
@pytest.mark.full
def test_a_mixture_draws_the_same_from_a_cold_and_a_warm_cache(tmp_path):
    """With fastmath kernels the mixture's draws differed (bayesmoe.cache.NUMBA_FASTMATH)."""
    cold = _run(tmp_path, "mixture")
    warm = _run(tmp_path, "mixture")
    assert warm["hits"] == [1, 1]
    assert warm["draws"] == cold["draws"]


def test_paused_gc_nests_and_restores_the_collectors_state():
    import gc

    was = gc.isenabled()
    try:
        gc.enable()
        with cache.paused_gc():
            assert not gc.isenabled()
            with cache.paused_gc():
                assert not gc.isenabled()
            assert not gc.isenabled()  # the outer pause still holds
        assert gc.isenabled()
        gc.disable()  # a user's own choice survives the pause
        with cache.paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
        gc.enable()
        with pytest.raises(RuntimeError), cache.paused_gc():
            raise RuntimeError("boom")
        assert gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


def test_freeze_imports_freezes_once_and_only_when_asked(monkeypatch):
    code = (
        "import gc, bayesmoe.cache as c; n = gc.get_freeze_count(); "
        "print(c.freeze_requested(), c.freeze_imports(), gc.get_freeze_count() > n, "
        "c.freeze_imports())"
    )
    env = {k: v for k, v in os.environ.items() if k != cache.GC_FREEZE_ENV}
    assert python_output(code, env).split() == ["False", "True", "True", "False"]
    monkeypatch.setenv(cache.GC_FREEZE_ENV, "1")
    assert cache.freeze_requested()
    monkeypatch.setenv(cache.GC_FREEZE_ENV, "0")
    assert not cache.freeze_requested()


def test_import_loads_neither_pymc_nor_arviz():
    # A CLI call, a dask worker or `bm.__version__` should not pay PyMC's and ArviZ's
    # ~2 s of imports; the public names load their modules on first use.
    code = (
        "import sys, bayesmoe as bm; "
        "heavy = sorted(m for m in ('pymc', 'pytensor', 'arviz', 'arviz_stats', 'nutpie', "
        "'matplotlib') if m in sys.modules); print(','.join(heavy)); "
        "f = bm.compare; print(f.__module__, callable(f))"
    )
    out = python_output(code).split("\n")
    assert out[0] == ""
    assert out[1] == "bayesmoe.comparison True"
