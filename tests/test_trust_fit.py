"""A fit either completes or changes nothing; ``partial_fit``'s stream survives fit,
save and load as documented (docs/trust.md, "Fitting is a transaction")."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import bayesmoe as bm
import bayesmoe.estimators.base as base
from bayesmoe.fitting import DiagnosticsError

TINY = dict(sampler="pymc", draws=50, tune=50, chains=1, progressbar=False, random_seed=1)


@pytest.fixture(scope="module")
def data():
    from bayesmoe.experiments import make_interaction_data

    return make_interaction_data(150, 3, 0.5, 0.5, seed=3)


def _fitted(data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bm.InteractionRegression(**{**TINY, **kw}).fit(data.X, data.y)


def _snapshot(est):
    return dict(vars(est))


def _assert_unchanged(est, before, data, predictions):
    assert vars(est).keys() == before.keys()
    for k, v in before.items():
        assert vars(est)[k] is v, k
    np.testing.assert_array_equal(est.predict(data.X), predictions)


def test_refused_refit_leaves_the_fit(data):
    """An unknown priors key is refused after the new columns were standardised: the
    old standardiser, feature names and posterior stay together."""
    est = _fitted(data)
    before, pred = _snapshot(est), est.predict(data.X)
    est.set_params(priors={"no_such_variable": 1.0})
    with pytest.raises(ValueError, match="no_such_variable"):
        est.fit(data.X[["x1", "x2"]], data.y)
    est.set_params(priors=None)
    _assert_unchanged(est, before, data, pred)


@pytest.mark.parametrize(
    "error",
    [RuntimeError("sampler failed"), KeyboardInterrupt(), DiagnosticsError("r-hat", None, None)],
)
def test_failure_in_sampling_leaves_the_fit(data, monkeypatch, error):
    est = _fitted(data)
    before, pred = _snapshot(est), est.predict(data.X)

    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(base, "fit", failing)
    with pytest.raises(type(error)):
        est.fit(data.X[["x1", "x2"]] * 3.0, data.y + 1.0)
    _assert_unchanged(est, before, data, pred)


def test_strict_diagnostics_failure_leaves_the_fit(data):
    est = _fitted(data)
    before, pred = _snapshot(est), est.predict(data.X)
    est.set_params(draws=30, tune=5, chains=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DiagnosticsError):
            est.fit(data.X[["x1", "x2"]], data.y, strict=True)
    est.set_params(**{k: TINY[k] for k in ("draws", "tune", "chains")})
    _assert_unchanged(est, before, data, pred)


def test_failed_first_fit_leaves_no_fitted_attribute(data, monkeypatch):
    monkeypatch.setattr(base, "fit", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    est = bm.InteractionRegression(**TINY)
    with pytest.raises(KeyboardInterrupt):
        est.fit(data.X, data.y)
    assert not [k for k in vars(est) if k.endswith("_")]


# ---------------------------------------------------------------- partial_fit's stream
def _partial(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.partial_fit(X, y)


def _assert_same_statistics(a, b, rtol=1e-12):
    ma, mb = a.moments_, b.moments_
    assert ma.n == mb.n and ma.pairs == mb.pairs
    for field in ("shift", "mean", "comoment"):
        x, y = getattr(ma, field), getattr(mb, field)
        assert np.max(np.abs(x - y)) <= rtol * np.max(np.abs(x)), field
    assert a._row_sample.n_seen == b._row_sample.n_seen
    np.testing.assert_array_equal(a._row_sample.rows, b._row_sample.rows)


def test_partial_fit_continues_after_save_and_load(data, tmp_path):
    A, B = slice(0, 70), slice(70, 150)
    memory = _partial(bm.InteractionRegression(**TINY), data.X[A], data.y[A])
    path = memory.save(tmp_path / "stream.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = bm.load(path)
    _assert_same_statistics(loaded, memory, rtol=0.0)  # bit for bit through the file
    _partial(memory, data.X[B], data.y[B])
    _partial(loaded, data.X[B], data.y[B])
    _assert_same_statistics(loaded, memory)
    assert loaded.moments_.n == 150
    np.testing.assert_allclose(loaded.predict(data.X), memory.predict(data.X), rtol=1e-12)


def test_fit_starts_a_new_stream_that_partial_fit_continues(data):
    """partial_fit(A); fit(B); partial_fit(C) is partial_fit(B); partial_fit(C): A is
    forgotten, B is not."""
    A, B, C = slice(0, 50), slice(50, 100), slice(100, 150)
    est = _partial(bm.InteractionRegression(**TINY), data.X[A], data.y[A])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(data.X[B], data.y[B])
    assert getattr(est, "moments_", None) is None  # fit dropped A's statistics
    _partial(est, data.X[C], data.y[C])
    ref = bm.InteractionRegression(**TINY)
    _partial(ref, data.X[B], data.y[B])
    _partial(ref, data.X[C], data.y[C])
    assert est.moments_.n == 100
    # B's rows come back from the fit's standardised design: equal to rounding
    _assert_same_statistics(est, ref, rtol=1e-10)


def test_failed_partial_fit_leaves_the_stream(data, monkeypatch):
    est = _partial(bm.InteractionRegression(**TINY), data.X[:70], data.y[:70])
    before, pred = _snapshot(est), est.predict(data.X)
    monkeypatch.setattr(base, "fit", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        est.partial_fit(data.X[70:], data.y[70:])
    _assert_unchanged(est, before, data, pred)
    assert est.moments_.n == 70


def test_damaged_stream_state_is_refused(data, tmp_path):
    from bayesmoe.estimators.io import load_tree

    est = _partial(bm.InteractionRegression(**TINY), data.X[:70], data.y[:70])
    tree = est._saved_tree()
    state = tree["partial_fit_state"].to_dataset()
    tree["partial_fit_state"] = state.assign_attrs(n=5)
    with pytest.raises(ValueError, match="partial_fit_state"):
        load_tree(tree)
