"""The learning-curve study on dask.distributed: one task per cell, saved as it finishes.

Each (scenario, replicate, model) cell is a dask task. Cells are saved one Parquet file
each as they finish (atomically), so an interrupted study resumes where it stopped, and a
cell that raises is saved with its error instead of stopping the others.
"""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from bayesmoe.studies.learning_curve.cells import failed_cell, run_cell, tidy
from bayesmoe.studies.learning_curve.scenarios import (
    ALL_SCENARIOS,
    SCENARIOS,
    Scenario,
    StudySettings,
)
from bayesmoe.studies.learning_curve.zoo import MODELS, NUTS_MODELS, STUDY_MODELS

__all__ = ["WORKER_ENV", "cell_path", "gather", "run_study", "write_parquet_atomic"]

#: One thread per BLAS/numba pool in each worker: a worker is one core's worth of work.
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


def _resolve_scenarios(scenarios) -> list[Scenario]:
    if isinstance(scenarios, Scenario):
        return [scenarios]
    if isinstance(scenarios, str):
        scenarios = ALL_SCENARIOS if scenarios == "all" else [scenarios]
    out = []
    for s in scenarios:
        if isinstance(s, Scenario):
            out.append(s)
        elif s in SCENARIOS:
            out.append(SCENARIOS[s])
        else:
            raise ValueError(
                f"scenario {s!r} is not known; choose 'all' or one of {sorted(SCENARIOS)}"
            )
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError(f"scenarios must have distinct names, got {names}")
    return out


def _resolve_models(models) -> list[str | tuple[str, Callable]]:
    if models is None:
        return list(STUDY_MODELS)
    if isinstance(models, str):
        models = [models]
    items: Iterable = models.items() if isinstance(models, Mapping) else models
    out = []
    for m in items:
        if isinstance(m, str):
            if m not in MODELS:
                raise ValueError(f"model {m!r} is not known; choose from {list(MODELS)}")
            out.append(m)
        elif isinstance(m, tuple) and len(m) == 2 and isinstance(m[0], str) and callable(m[1]):
            out.append(m[0] if m[1] is MODELS.get(m[0]) else m)
        else:
            raise TypeError(
                f"models entries must be model names or (name, callable) pairs, got {m!r}"
            )
    return out


def _model_name(m) -> str:
    return m if isinstance(m, str) else m[0]


def cell_path(out: Path, scenario: str, replicate: int, model: str) -> Path:
    """Where a cell is saved: ``out/cells/<scenario>/<model>/r<replicate>.parquet``."""
    return Path(out) / "cells" / scenario / model / f"r{replicate:04d}.parquet"


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> Path:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _done(path: Path, retry_failed: bool) -> bool:
    if not path.exists():
        return False
    if not retry_failed:
        return True
    try:
        status = pd.read_parquet(path, columns=["status"])["status"]
    except Exception:  # unreadable: redo the cell
        return False
    return bool((status == "ok").all())


def _open_client(scheduler: str | None, n_workers: int):
    from distributed import Client, LocalCluster

    if scheduler is not None:
        return Client(scheduler), None
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        env=WORKER_ENV,
    )
    return Client(cluster), cluster


def run_study(
    scenarios: str | Sequence[str | Scenario] = "all",
    replicates: int = 20,
    out: str | os.PathLike = "convergence_study",
    *,
    models: Sequence | Mapping | None = None,
    settings: StudySettings | None = None,
    scheduler: str | None = None,
    n_workers: int = 2,
    client=None,
    progress: bool = True,
    retry_failed: bool = True,
) -> pd.DataFrame:
    """Run (or resume) the learning-curve study on dask.distributed.

    Every (scenario, replicate, model) cell is a dask task. Results stream back as they
    finish (tqdm shows the progress) and each is saved to :func:`cell_path` at once,
    atomically; cells already saved are skipped, so re-running the same command resumes
    an interrupted study. At the end all requested cells are gathered into
    ``out/results.parquet``.

    Parameters
    ----------
    scenarios : "all", a name, or a sequence of names / :class:`Scenario`
    replicates : int
        Data sets per scenario (R).
    out : path
        Output folder.
    models : sequence of names, mapping name -> callable, or None (all of :data:`STUDY_MODELS`)
    settings : StudySettings, optional
    scheduler : str, optional
        Address of an existing dask scheduler (``tcp://host:port``); default is a
        ``LocalCluster`` of ``n_workers`` single-threaded worker processes.
    n_workers : int
        Workers of the local cluster.
    client : distributed.Client, optional
        Use this client (and leave it open).
    progress : bool
    retry_failed : bool
        Re-run cells saved with an error (default) rather than keep them.

    Returns
    -------
    pandas.DataFrame
        The tidy table of :func:`run_cell` rows for all requested cells.
    """
    scen = _resolve_scenarios(scenarios)
    if isinstance(replicates, bool) or not isinstance(replicates, numbers.Integral):
        raise TypeError(f"replicates must be an integer, got {replicates!r}")
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {replicates}")
    if isinstance(n_workers, bool) or not isinstance(n_workers, numbers.Integral) or n_workers < 1:
        raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
    if scheduler is not None and not (isinstance(scheduler, str) and "://" in scheduler):
        raise ValueError(f"scheduler must be an address like 'tcp://host:8786', got {scheduler!r}")
    model_list = _resolve_models(models)
    settings = settings or StudySettings()
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(f"out={str(out)!r} cannot be created: {err}") from err

    cells = [(s, r, m) for s in scen for r in range(replicates) for m in model_list]
    # Replicate by replicate (a stopped study holds complete replicates), and within one
    # longest first: the NUTS cells, the widest designs among them, so that cheap cells
    # fill the gaps and no worker is left finishing a long cell alone at the end.
    cells.sort(key=lambda c: (c[1], _model_name(c[2]) not in NUTS_MODELS, -c[0].x_dim))
    todo = [
        c
        for c in cells
        if not _done(cell_path(out, c[0].name, c[1], _model_name(c[2])), retry_failed)
    ]
    _write_manifest(out, scen, replicates, model_list, settings)
    if todo:
        start = time.time()
        load = os.getloadavg()
        _run_cells(todo, out, settings, scheduler, n_workers, client, progress)
        _log_run(out, start, len(todo), len(cells), scheduler, n_workers, client, load)
    return gather(out, scen, replicates, model_list)


def _log_run(out, start, n_run, n_cells, scheduler, n_workers, client, load) -> None:
    """Append this run's wall time and machine load to ``out/runs.jsonl``."""
    import json

    record = {
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
        "wall_seconds": round(time.time() - start, 1),
        "cells_run": n_run,
        "cells_requested": n_cells,
        "workers": "client" if client is not None else scheduler or n_workers,
        "loadavg_start": [round(x, 2) for x in load],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    with open(out / "runs.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _write_manifest(out, scen, replicates, model_list, settings) -> None:
    import json

    manifest = {
        "scenarios": [asdict(s) for s in scen],
        "replicates": replicates,
        "models": [_model_name(m) for m in model_list],
        "settings": asdict(settings),
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / "manifest.json")


def _run_cells(todo, out, settings, scheduler, n_workers, client, progress) -> None:
    from distributed import as_completed
    from tqdm.auto import tqdm

    own_client = client is None
    cluster = None
    if own_client:
        client, cluster = _open_client(scheduler, n_workers)
    try:
        futures = {}
        for s, r, m in todo:
            fut = client.submit(
                run_cell, s, r, m, settings, pure=False, key=f"cell-{s.name}-{r}-{_model_name(m)}"
            )
            futures[fut] = (s, r, m)
        progress_bar = tqdm(total=len(futures), desc="cells", unit="cell", disable=not progress)
        failed = 0
        for fut in as_completed(futures):
            s, r, m = futures[fut]
            try:
                df = fut.result()
            except Exception as err:  # the worker died or the task could not run at all
                df = failed_cell(s, r, _model_name(m), err)
            failed += int((df["status"] != "ok").any())
            write_parquet_atomic(df, cell_path(out, s.name, r, _model_name(m)))
            fut.release()
            progress_bar.update(1)
            progress_bar.set_postfix(failed=failed)
        progress_bar.close()
    finally:
        if own_client:
            client.close()
            if cluster is not None:
                cluster.close()


def gather(
    out: str | os.PathLike,
    scenarios: Sequence[Scenario] | None = None,
    replicates: int | None = None,
    models: Sequence | None = None,
) -> pd.DataFrame:
    """Collect saved cells into one table and write ``out/results.parquet`` atomically.

    With no selection, every saved cell under ``out/cells`` is collected.
    """
    out = Path(out)
    if scenarios is None:
        paths = sorted((out / "cells").glob("*/*/r*.parquet"))
    else:
        paths = [
            cell_path(out, s.name, r, _model_name(m))
            for s in scenarios
            for r in range(replicates)
            for m in models
        ]
        paths = [p for p in paths if p.exists()]
    if not paths:
        raise OSError(f"no saved cells under {out / 'cells'}")
    df = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    df = tidy(df).sort_values(["scenario", "model", "replicate", "n_train"], ignore_index=True)
    write_parquet_atomic(df, out / "results.parquet")
    return df
