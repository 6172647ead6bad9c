"""Property-based test: generated bad input at every public entry point of every estimator.

Every case must end in a ValueError, TypeError or OSError whose message names the
argument and the problem, before anything is compiled (``fit`` is replaced by a function
that fails the test if reached). Never a PyTensor/numba traceback, a hang (hypothesis
deadline) or a result with NaN in it. The number of cases tried is printed at the end.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayesmoe as bm
from bayesmoe.estimators import base as estimator_base
from bayesmoe.fitting import METHODS, SAMPLERS

N, P = 12, 2
COLUMNS = ["a", "b"]
ACCEPTED = (ValueError, TypeError, OSError)
#: cases tried per entry point, printed by the last test of this module
TRIED: Counter = Counter()
SETTINGS = settings(
    max_examples=60,
    deadline=5000,  # a hang or a compilation shows up as a deadline failure
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


def _good(seed: int = 0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.uniform(-1, 1, (N, P)), columns=COLUMNS), rng.normal(size=N)


# ---------------------------------------------------------------- strategies of bad data
@st.composite
def bad_X(draw, *, at_predict: bool = False):
    """A bad feature matrix, with the words its error message must contain."""
    X, _ = _good(draw(st.integers(0, 3)))
    as_array = draw(st.booleans())
    kind = draw(
        st.sampled_from(
            ["nonfinite", "ndim", "empty", "dtype", "strings", "huge", "tiny", "none"]
            + (["columns"] if at_predict else [])
        )
    )
    if kind == "nonfinite":
        values = X.to_numpy().copy()
        cells = draw(st.lists(st.tuples(st.integers(0, N - 1), st.integers(0, P - 1)), min_size=1))
        for r, c in cells:
            values[r, c] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        out = values if as_array else pd.DataFrame(values, columns=COLUMNS)
        return out, r"X contains \d+ NaN or infinite"
    if kind == "ndim":
        shape = draw(st.sampled_from([(N,), (N, P, 2), (), (1, N, P)]))
        return np.zeros(shape), r"X must be 2-D"
    if kind == "empty":
        rows = 0 if at_predict else draw(st.integers(0, 1))
        out = X.iloc[:rows]
        return (out.to_numpy() if as_array else out), r"X has \d+ rows"
    if kind == "dtype":
        col = draw(st.sampled_from(COLUMNS))
        values = {
            "object": X[col].astype(object).where(X[col] > 0, "n/a"),
            "string": X[col].astype(str),
            "categorical": pd.Categorical(np.where(X[col] > 0, "u", "v")),
            "datetime": pd.date_range("2020", periods=N),
            "timedelta": pd.to_timedelta(np.arange(N), unit="s"),
            "complex": X[col] + 1j,
        }[
            draw(
                st.sampled_from(
                    ["object", "string", "categorical", "datetime", "timedelta", "complex"]
                )
            )
        ]
        return X.assign(**{col: values}), r"X has non-numeric columns"
    if kind == "strings":
        return np.full((N, P), draw(st.text(min_size=1, max_size=3))), r"X must be numeric"
    if kind == "huge":
        values = X.to_numpy().copy()
        values[draw(st.integers(0, N - 1)), draw(st.integers(0, P - 1))] = draw(
            st.floats(1e151, 1e308) | st.floats(-1e308, -1e151)
        )
        return (values if as_array else pd.DataFrame(values, columns=COLUMNS)), "too large"
    if kind == "tiny":
        values = X.to_numpy().copy()
        values[:, draw(st.integers(0, P - 1))] *= draw(st.floats(1e-300, 1e-160))
        return (values if as_array else pd.DataFrame(values, columns=COLUMNS)), "too small"
    if kind == "columns":
        change = draw(st.sampled_from(["rename", "reorder", "drop", "extra"]))
        if change == "rename":
            return X.rename(columns={"b": draw(st.sampled_from(["c", "B", " b"]))}), "columns"
        if change == "reorder":
            return X[COLUMNS[::-1]], "different order"
        if change == "drop":
            return (X[["a"]].to_numpy() if as_array else X[["a"]]), "columns"
        return X.assign(c=1.0), "columns"
    return None, "X is None"


@st.composite
def bad_y(draw, n: int = N):
    _, y = _good(draw(st.integers(0, 3)))
    kind = draw(st.sampled_from(["nonfinite", "length", "ndim", "strings", "huge", "tiny"]))
    if kind == "nonfinite":
        y = y.copy()
        for i in draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4)):
            y[i] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return y, r"y contains \d+ NaN or infinite"
    if kind == "length":
        m = draw(st.integers(0, 2 * n).filter(lambda m: m != n))
        return np.zeros(m), "different lengths"
    if kind == "ndim":
        return np.c_[y, y], "y must be 1-D"
    if kind == "strings":
        return np.array(["1.0"] * n), "y must be numeric"
    if kind == "huge":
        y = y.copy()
        y[draw(st.integers(0, n - 1))] = draw(st.floats(1e151, 1e308))
        return y, "too large"
    return y * draw(st.floats(1e-300, 1e-160)), "too small"


def _check(exc_info, argument: str, problem: str) -> None:
    message = str(exc_info.value)
    assert re.search(rf"\b{re.escape(argument)}\b", message), message
    assert re.search(problem, message), message
    # never an internal traceback dressed up: the error comes from bayesmoe's own checks
    assert "pytensor" not in type(exc_info.value).__module__


def _estimator(name: str, **params):
    extra = {"MixtureRegression": {"n_components": 2}, "GatedExperts": {"n_experts": 2}}
    cls = getattr(bm, name)
    return cls(progressbar=False, **{**extra.get(name, {}), **params})


ESTIMATORS = ["InteractionRegression", "MixtureRegression", "GatedExperts"]


@pytest.fixture
def no_compile(monkeypatch):
    def reached(*args, **kwargs):
        raise AssertionError("bad input reached bayesmoe.fit (sampling/compilation)")

    monkeypatch.setattr(estimator_base, "fit", reached)


# ---------------------------------------------------------------- fit
@SETTINGS
@given(name=st.sampled_from(ESTIMATORS), bad=bad_X())
def test_fit_refuses_bad_X(no_compile, name, bad):
    X, problem = bad
    if X is None and name == "MixtureRegression":
        return  # X=None is a plain Gaussian mixture there, not an error
    TRIED["fit(X)"] += 1
    with warnings.catch_warnings(), pytest.raises(ACCEPTED) as info:
        warnings.simplefilter("ignore")
        _estimator(name).fit(X, _good()[1])
    _check(info, "X", problem)


@SETTINGS
@given(name=st.sampled_from(ESTIMATORS), bad=bad_y(), as_frame_X=st.booleans())
def test_fit_refuses_bad_y(no_compile, name, bad, as_frame_X):
    y, problem = bad
    X = _good()[0]
    TRIED["fit(y)"] += 1
    with warnings.catch_warnings(), pytest.raises(ACCEPTED) as info:
        warnings.simplefilter("ignore")
        _estimator(name).fit(X if as_frame_X else X.to_numpy(), y)
    _check(info, "y", problem)


def _bad_k():
    return st.one_of(
        st.integers(-5, 0).map(lambda k: (k, ">= 1")),
        st.integers(N + 1, 10 * N).map(lambda k: (k, "more than the number of rows")),
        st.floats(allow_nan=True, allow_infinity=True).map(lambda k: (k, "integer")),
        st.sampled_from([True, "2", None, [2]]).map(lambda k: (k, "integer")),
    )


@SETTINGS
@given(name=st.sampled_from(["MixtureRegression", "GatedExperts"]), bad=_bad_k())
def test_fit_refuses_bad_k(no_compile, name, bad):
    k, problem = bad
    arg = "n_components" if name == "MixtureRegression" else "n_experts"
    TRIED[f"fit({arg})"] += 1
    with warnings.catch_warnings(), pytest.raises(ACCEPTED) as info:
        warnings.simplefilter("ignore")
        _estimator(name, **{arg: k}).fit(*_good())
    _check(info, arg, problem)


def _bad_setting():
    word = st.text(min_size=0, max_size=8)
    return st.one_of(
        word.filter(lambda s: s not in METHODS).map(lambda s: ("method", s, "is not known")),
        word.filter(lambda s: s not in SAMPLERS).map(lambda s: ("sampler", s, "is not known")),
        st.sampled_from([0, -1, 2.5, "10", None]).map(lambda v: ("draws", v, "draws must")),
        st.sampled_from([0, -3, 1.5, True]).map(lambda v: ("chains", v, "chains must")),
        st.sampled_from([-1, 0.5, "7"]).map(lambda v: ("random_seed", v, "random_seed must")),
        st.sampled_from([-1, 2.5]).map(lambda v: ("tune", v, "tune must")),
    )


@SETTINGS
@given(name=st.sampled_from(ESTIMATORS), bad=_bad_setting())
def test_fit_refuses_bad_settings(no_compile, name, bad):
    arg, value, problem = bad
    TRIED[f"fit({arg})"] += 1
    with pytest.raises(ACCEPTED) as info:
        _estimator(name, **{arg: value}).fit(*_good())
    _check(info, arg, problem)


# ---------------------------------------------------------------- predict side
@pytest.fixture(scope="module")
def fitted_all():
    """One cheap fit of each estimator (a few ADVI steps: only the API is exercised)."""
    X, y = _good()
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ESTIMATORS:
            est = _estimator(
                name, method="advi", draws=20, random_seed=0, fit_kwargs={"advi_iterations": 30}
            )
            out[name] = est.fit(X, y)
    return out


def _predict_calls(est):
    calls = {
        "predict": lambda X, y: est.predict(X),
        "predict(return_std)": lambda X, y: est.predict(X, return_std=True),
        "predict_dist": lambda X, y: est.predict_dist(X),
        "log_predictive_density": lambda X, y: est.log_predictive_density(X, y),
    }
    if hasattr(est, "predict_proba"):
        calls.update(
            predict_proba=lambda X, y: est.predict_proba(X),
            responsibilities=lambda X, y: est.responsibilities(X, y),
            expert_predictions=lambda X, y: est.expert_predictions(X),
        )
    return calls


@SETTINGS
@given(data=st.data(), name=st.sampled_from(ESTIMATORS), bad=bad_X(at_predict=True))
def test_predict_side_refuses_bad_X(fitted_all, data, name, bad):
    X, problem = bad
    est = fitted_all[name]
    calls = _predict_calls(est)
    call = data.draw(st.sampled_from(sorted(calls)))
    if X is None and name == "MixtureRegression":
        X, problem = np.zeros((1, 1)), "columns"  # X=None is valid there; wrong width is not
    TRIED[f"{call}(X)"] += 1
    with pytest.raises(ACCEPTED) as info:
        calls[call](X, _good()[1][: len(X) if hasattr(X, "__len__") and np.ndim(X) else N])
    _check(info, "X", problem)


@SETTINGS
@given(data=st.data(), name=st.sampled_from(ESTIMATORS), bad=bad_y())
def test_predict_side_refuses_bad_y(fitted_all, data, name, bad):
    y, problem = bad
    est = fitted_all[name]
    calls = ["log_predictive_density"] + (
        ["responsibilities"] if name != "InteractionRegression" else []
    )
    call = data.draw(st.sampled_from(calls))
    TRIED[f"{call}(y)"] += 1
    with pytest.raises(ACCEPTED) as info:
        _predict_calls(est)[call](_good()[0], y)
    _check(info, "y", problem)


def test_valid_predictions_have_no_nan(fitted_all):
    X, y = _good(7)
    for name, est in fitted_all.items():
        for call, fn in _predict_calls(est).items():
            out = fn(X, y)
            values = [out] if not isinstance(out, tuple) else list(out)
            for v in values:
                assert np.all(np.isfinite(np.asarray(v))), (name, call)


# ---------------------------------------------------------------- save / load
@st.composite
def bad_save_path(draw, tmp):
    kind = draw(st.sampled_from(["type", "directory", "missing_parent", "parent_is_file", "proc"]))
    if kind == "type":
        return draw(st.sampled_from([None, 3, 2.5, b"\x00", ["m.nc"]])), "path"
    if kind == "directory":
        return tmp, "is a directory"
    if kind == "missing_parent":
        return tmp / draw(st.sampled_from(["no", "x y", "ü"])) / "m.nc", "does not exist"
    if kind == "parent_is_file":
        (tmp / "file.txt").write_text("x")
        return tmp / "file.txt" / "m.nc", "cannot be written"
    return "/proc/bayesmoe-test/m.nc", "does not exist"


@SETTINGS
@given(data=st.data(), name=st.sampled_from(ESTIMATORS))
def test_save_refuses_unwritable_paths(fitted_all, tmp_path, data, name):
    path, problem = data.draw(bad_save_path(tmp_path))
    TRIED["save(path)"] += 1
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ACCEPTED) as info:
        fitted_all[name].save(path)
    _check(info, "path", problem)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written


@pytest.fixture(scope="module")
def saved_bytes(fitted_all, tmp_path_factory):
    path = fitted_all["GatedExperts"].save(tmp_path_factory.mktemp("saved") / "g.nc")
    return path.read_bytes()


@SETTINGS
@given(data=st.data())
def test_load_refuses_bad_files(saved_bytes, tmp_path, data):
    kind = data.draw(
        st.sampled_from(["type", "missing", "directory", "truncated", "garbage", "empty"])
    )
    target = tmp_path / f"case-{TRIED['load(path)']}.nc"
    problem = "truncated or corrupted"
    if kind == "type":
        target, problem = data.draw(st.sampled_from([None, 1, 2.5])), "path"
    elif kind == "missing":
        target, problem = tmp_path / "nope.nc", "does not exist"
    elif kind == "directory":
        target, problem = tmp_path, "not a file"
    elif kind == "truncated":
        target.write_bytes(saved_bytes[: data.draw(st.integers(0, len(saved_bytes) - 1))])
    elif kind == "garbage":
        target.write_bytes(data.draw(st.binary(min_size=1, max_size=2000)))
    else:
        target.write_bytes(b"")
    TRIED["load(path)"] += 1
    with pytest.raises(ACCEPTED) as info:
        bm.load(target)
    message = str(info.value)
    assert "path" in message or str(target) in message, message
    assert re.search(problem, message) or "not written by bayesmoe" in message, message


def test_zz_report_cases_tried(request, capsys):
    """Print how many generated cases each entry point was given (runs last here)."""
    total = sum(TRIED.values())
    lines = [f"bad-input cases tried: {total}"] + [f"  {k}: {v}" for k, v in sorted(TRIED.items())]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    here = {item.name for item in request.session.items if item.module is request.module}
    if len(here) == len([n for n in globals() if n.startswith("test_")]):  # whole module ran
        for entry in ("fit(X)", "fit(y)", "predict(X)", "responsibilities(y)", "save(path)"):
            assert TRIED[entry] > 0, entry
        assert TRIED["load(path)"] > 0 and total >= 300
