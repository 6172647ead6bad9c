"""Streamed fits take every input form the README and the ``fit`` docstrings document,
on the installed dask and dask.distributed; a script without a ``__main__`` guard either
fits (the implicit cluster's workers are then threads) or stops with one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import FAST

pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {**FAST, "draws": 100, "tune": 100, "chains": 1}


def _frame(n: int = 900, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X @ [1.0, -0.5, 0.3] + 0.4 * X[:, 0] * X[:, 1] + rng.normal(size=n)
    return pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=y)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """The frame in three Parquet files."""
    folder = tmp_path_factory.mktemp("parts")
    frame = _frame()
    files = []
    for i in range(3):
        files.append(folder / f"part-{i}.parquet")
        frame.iloc[i * 300 : (i + 1) * 300].to_parquet(files[-1])
    return folder, files, frame


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
    with Client(cluster, set_as_default=False) as c:  # passed as client=, never picked up
        yield c
    cluster.close()


def _fit(X, y, **kwargs):
    import bayesmoe as bm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bm.InteractionRegression(**SETTINGS).fit(X, y, **kwargs)


def _statistics(est) -> dict:
    return {k: np.asarray(est.model_[k].get_value()) for k in ("xtx", "xty", "yty", "n_obs")}


@pytest.fixture(scope="module")
def reference(parts, client):
    """The statistics of the frame's streamed fit from ``bm.read_parquet(folder)``."""
    import bayesmoe as bm

    folder, _, frame = parts
    est = _fit(bm.read_parquet(folder), "y", client=client)
    assert float(est.model_["n_obs"].get_value()) == len(frame)
    return _statistics(est)


def _same(est, reference) -> None:
    for name, value in _statistics(est).items():
        np.testing.assert_allclose(value, reference[name], rtol=1e-12, atol=0, err_msg=name)


@pytest.mark.parametrize("form", ["file list", "glob", "str folder", "dask from_pandas"])
def test_every_documented_path_form_fits_the_same_rows(parts, client, reference, form):
    import dask.dataframe as dd

    import bayesmoe as bm

    folder, files, frame = parts
    ddf = {
        "file list": lambda: bm.read_parquet(files),
        "glob": lambda: bm.read_parquet(str(folder / "*.parquet")),
        "str folder": lambda: bm.read_parquet(str(folder)),
        "dask from_pandas": lambda: dd.from_pandas(frame, npartitions=3),
    }[form]()
    _same(_fit(ddf, "y", client=client), reference)


def test_a_single_parquet_file_fits_its_rows(parts, client):
    import bayesmoe as bm

    _, files, _ = parts
    est = _fit(bm.read_parquet(files[0]), "y", client=client)
    assert float(est.model_["n_obs"].get_value()) == 300


def test_a_dask_frame_and_a_dask_series(parts, client, reference):
    import bayesmoe as bm

    folder, _, _ = parts
    ddf = bm.read_parquet(folder)
    _same(_fit(ddf.drop(columns="y"), ddf["y"], client=client), reference)


def test_frame_and_series_are_told_apart_on_the_installed_dask(parts):
    import bayesmoe as bm
    from bayesmoe.streaming import is_dask, is_dask_frame, is_dask_series

    ddf = bm.read_parquet(parts[0])
    assert is_dask_frame(ddf) and not is_dask_series(ddf)
    assert is_dask_series(ddf["y"]) and not is_dask_frame(ddf["y"])
    assert is_dask(ddf["y"]) and not is_dask_frame(parts[2]) and not is_dask_series(parts[2]["y"])


def test_the_active_client_and_the_implicit_cluster(parts, reference):
    """No ``client=``: an active client is used, else a LocalCluster is started and closed."""
    from distributed import Client, LocalCluster, get_client

    import bayesmoe as bm

    folder, _, _ = parts
    with pytest.raises(ValueError):
        get_client()  # no client is active
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as active:
            _same(_fit(bm.read_parquet(folder), "y"), reference)
            assert active.status == "running"
    _same(_fit(bm.read_parquet(folder), "y"), reference)  # a LocalCluster of its own
    with pytest.raises(ValueError):
        get_client()  # and closed again


def _run_script(tmp_path: Path, body: str, timeout: float = 240) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    env = {"PYTHONPATH": str(ROOT), "BAYESMOE_FAST": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_an_unguarded_script_fits_a_dask_frame_or_stops_with_one_line(parts, tmp_path):
    """A plain script, no ``if __name__ == "__main__":``, no client: the implicit cluster's
    spawned workers would re-run the script; it must fit, or say in one line what to do."""
    folder = parts[0]
    done = _run_script(
        tmp_path,
        f"""
        import bayesmoe as bm

        ddf = bm.read_parquet({str(folder)!r})
        est = bm.InteractionRegression(draws=100, tune=100, chains=1, progressbar=False)
        est.fit(ddf, "y")
        print("n_obs", float(est.model_["n_obs"].get_value()))
        """,
    )
    assert "Nanny failed" not in done.stderr and "bootstrapping" not in done.stderr
    if done.returncode == 0:
        assert "n_obs 900.0" in done.stdout
    else:
        last = done.stderr.strip().splitlines()[-1]
        assert "__main__" in last, done.stderr[-3000:]


def test_the_guard_is_read_from_the_script(tmp_path):
    done = _run_script(
        tmp_path,
        """
        from bayesmoe.streaming import unguarded_script

        def inner():
            return unguarded_script()

        print("top", unguarded_script() is not None)
        print("function", inner() is not None)
        if __name__ == "__main__":
            print("guarded", unguarded_script() is not None)
            print("guarded function", inner() is not None)
        """,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:4] == [
        "top True",
        "function True",
        "guarded False",
        "guarded function False",
    ]


def test_an_unguarded_study_stops_at_once_with_one_line(tmp_path):
    done = _run_script(
        tmp_path,
        """
        from bayesmoe.studies import learning_curve as conv

        tiny = conv.Scenario("tiny", x_dim=2, noise_level=0.5, interaction_scale=1.0, n=40)
        conv.run_study([tiny], 1, "study", models=["ols_base"], progress=False,
                       settings=conv.StudySettings(max_n_train=10))
        """,
        timeout=120,
    )
    assert done.returncode != 0 and "Nanny failed" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: run_study starts worker processes"), last
    assert 'if __name__ == "__main__":' in last
    assert not list((tmp_path / "study").glob("cells/*/*/*.parquet"))
