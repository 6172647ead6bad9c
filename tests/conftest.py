"""Shared fixtures: small simulated data and fast fit settings."""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
os.environ.setdefault("BAYESMOE_FAST", "1")
# sampler="auto" samples with numpyro until a structure's nutpie code is compiled, and
# compiles it in a background process (bayesmoe.inference.backends.background): tests pin
# the warm path; tests/test_cold_start.py switches the cold path on where it tests it.
os.environ.setdefault("BAYESMOE_BACKGROUND_COMPILE", "0")

from bayesmoe.experiments import make_interaction_data

#: PyMC's own NUTS compiles in seconds, so API tests use it; nutpie gets its own tests.
FAST = dict(sampler="pymc", draws=200, tune=200, chains=2, progressbar=False, random_seed=1)


@pytest.fixture(scope="session")
def small_data():
    return make_interaction_data(120, 3, 0.5, 0.5, seed=3)


@pytest.fixture(scope="session")
def fitted(small_data):
    import warnings

    from bayesmoe import InteractionRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return InteractionRegression(**FAST).fit(small_data.X, small_data.y)


def python_output(code: str, env: dict[str, str] | None = None) -> str:
    """What ``python -c code`` prints in a fresh interpreter (which must exit with 0)."""
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout


def mc_close(a: float, b: float, mcse: float, k: float = 4.0) -> bool:
    """|a - b| within k Monte Carlo standard errors."""
    return abs(a - b) <= k * mcse + 1e-12


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def regional_members():
    """Two fitted members on data where each is right in one region of g (stacking tests)."""
    import warnings

    from bayesmoe import InteractionRegression
    from bayesmoe.experiments import make_regional_data

    data = make_regional_data(120, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        members = {
            "x1_g": InteractionRegression(**FAST).fit(data.X[["x1", "g"]], data.y),
            "x2_g": InteractionRegression(**FAST).fit(data.X[["x2", "g"]], data.y),
        }
    return data, members
