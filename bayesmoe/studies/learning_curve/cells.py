r"""One cell of the learning-curve study: a model fitted at every size of one data set.

A cell is one (scenario, replicate, model). The replicate's data set of ``n`` rows is
split in half (training pool, test set); the model is fitted to the first :math:`n_k`
training rows for every size of the grid and scored on the test half by the test MSE, the
excess MSE against the true mean :math:`f` and the cumulative regret

.. math::

    \text{regret}_k = \sum_{j \le k} (n_j - n_{j-1})\, \text{excess}_j, \qquad n_0 = 0.
"""

from __future__ import annotations

import time
import traceback
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from bayesmoe.experiments.simulate import make_interaction_data
from bayesmoe.numerics.blas import single_threaded_blas
from bayesmoe.studies.learning_curve.scenarios import Scenario, StudySettings
from bayesmoe.studies.learning_curve.zoo import MODELS, ModelFit

__all__ = ["COLUMNS", "data_seed", "failed_cell", "one_line", "run_cell", "tidy"]


def _stable_id(text: str) -> int:
    return zlib.crc32(text.encode())


def data_seed(
    settings: StudySettings, scenario: Scenario, replicate: int
) -> np.random.SeedSequence:
    """The ``SeedSequence`` of a (scenario, replicate) data set: the same for every model."""
    return np.random.SeedSequence([settings.seed, _stable_id(scenario.name), replicate])


def _call_model(fn, X, y, X_test, settings, seed) -> ModelFit:
    if fn in MODELS.values():
        return fn(X, y, X_test, settings=settings, seed=seed)
    out = fn(X, y, X_test)  # a user model: f(x_train, y_train, x_test) -> y_pred
    if isinstance(out, ModelFit):
        return out
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping):
        return ModelFit(np.asarray(out[0], float), dict(out[1]))
    return ModelFit(np.asarray(out, float))


def run_cell(
    scenario: Scenario,
    replicate: int,
    model: str | tuple[str, Callable],
    settings: StudySettings | None = None,
) -> pd.DataFrame:
    """Fit one model on every grid size of one replicate data set; one row per size.

    Parameters
    ----------
    scenario : Scenario
    replicate : int
        Replicate index; with ``settings.seed`` and the scenario name it fixes the data,
        so every model of a (scenario, replicate) sees the same rows.
    model : str or (name, callable)
        A name of :data:`MODELS`, or a user model ``f(X_train, y_train, X_test) ->
        y_pred`` (base features only; build interactions inside) given with its name.
    settings : StudySettings, optional

    Returns
    -------
    pandas.DataFrame
        Columns ``scenario, replicate, n_train, model, mse, excess_mse, regret,
        fit_seconds, status, error`` and model extras (learned ``tau_base``,
        ``tau_interaction``, ``sigma`` on the original scale; NUTS diagnostics), plus
        the truth ``true_tau_base``, ``true_tau_interaction`` (root mean square of the
        generating weights) and ``noise_level``. A size whose fit raises gets
        ``status="error"`` and the traceback's last line in ``error``.
    """
    settings = settings or StudySettings()
    name, fn = (model, MODELS[model]) if isinstance(model, str) else model
    data = make_interaction_data(
        scenario.n,
        scenario.x_dim,
        scenario.noise_level,
        scenario.interaction_scale,
        seed=np.random.default_rng(data_seed(settings, scenario, replicate)),
    )
    X, y = data.X.to_numpy(), data.y
    half = scenario.n // 2
    split = (X[:half], y[:half], X[half:], y[half:], data.signal[half:])
    sizes = settings.sizes(scenario)
    fit_seeds = np.random.SeedSequence(
        [settings.seed, _stable_id(scenario.name), replicate, _stable_id(name)]
    ).generate_state(len(sizes))
    truth = {
        "true_tau_base": float(np.sqrt(np.mean(data.w_base**2))),
        "true_tau_interaction": float(np.sqrt(np.mean(data.w_interaction**2)))
        if data.w_interaction.size
        else np.nan,
        "noise_level": scenario.noise_level,
    }
    rows = []
    with single_threaded_blas():
        for n_k, seed in zip(sizes, fit_seeds, strict=True):
            rows.append(_fit_row(name, fn, scenario, replicate, n_k, seed, truth, settings, split))
    df = pd.DataFrame(rows)
    block = np.diff(np.concatenate([[0], df["n_train"].to_numpy()]))
    df["regret"] = np.cumsum(block * df["excess_mse"].to_numpy())
    return tidy(df)


def _fit_row(name, fn, scenario, replicate, n_k, seed, truth, settings, split) -> dict:
    X_train, y_train, X_test, y_test, signal_test = split
    row = {
        "scenario": scenario.name,
        "replicate": int(replicate),
        "n_train": int(n_k),
        "model": name,
        "status": "ok",
        "error": "",
        **truth,
    }
    start = time.perf_counter()
    try:
        out = _call_model(fn, X_train[:n_k], y_train[:n_k], X_test, settings, int(seed))
        y_pred = np.asarray(out.y_pred, float).ravel()
        if y_pred.shape != y_test.shape or not np.all(np.isfinite(y_pred)):
            raise ValueError(
                f"model {name!r} returned {y_pred.shape} predictions "
                f"(finite: {bool(np.all(np.isfinite(y_pred)))}); need {y_test.shape}"
            )
        row["mse"] = float(np.mean((y_pred - y_test) ** 2))
        row["excess_mse"] = float(np.mean((y_pred - signal_test) ** 2))
        row.update(out.extras)
    except Exception as err:  # a failed fit is a result to record, not a crash
        row.update(status="error", error=one_line(err), mse=np.nan, excess_mse=np.nan)
    row["fit_seconds"] = time.perf_counter() - start
    return row


def one_line(err: BaseException) -> str:
    """An exception as one line: type, message and where it was raised (500 characters)."""
    tb = traceback.extract_tb(err.__traceback__)
    where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(err).__name__}: {err}{where}"[:500]


#: The columns of a cell's table, in order (model extras beyond these follow them).
COLUMNS = [
    "scenario",
    "replicate",
    "n_train",
    "model",
    "mse",
    "excess_mse",
    "regret",
    "fit_seconds",
    "tau_base",
    "tau_interaction",
    "sigma",
    "true_tau_base",
    "true_tau_interaction",
    "noise_level",
    "rhat_max",
    "ess_bulk_min",
    "divergences",
    "compiled",
    "sample_seconds",
    "status",
    "error",
]


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """A cell table with every column of :data:`COLUMNS` (NaN where absent), typed."""
    for col in COLUMNS:
        if col not in df:
            df[col] = np.nan
    floats = [c for c in COLUMNS if c not in ("scenario", "model", "status", "error")]
    floats = [c for c in floats if c not in ("replicate", "n_train", "compiled")]
    df[floats] = df[floats].astype(float)
    df["compiled"] = df["compiled"].astype("boolean")
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + extra]


def failed_cell(scenario: Scenario, replicate: int, name: str, err: BaseException):
    """The one-row table of a cell whose task could not run at all."""
    df = pd.DataFrame(
        [
            {
                "scenario": scenario.name,
                "replicate": int(replicate),
                "n_train": -1,
                "model": name,
                "status": "error",
                "error": one_line(err),
            }
        ]
    )
    return tidy(df)
