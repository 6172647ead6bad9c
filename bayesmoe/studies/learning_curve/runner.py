"""The learning-curve study on dask.distributed: one task per cell, saved as it finishes.

Each (scenario, replicate, model) cell is a dask task. Cells are saved one Parquet file
each as they finish (atomically), so an interrupted study resumes where it stopped, and a
cell that raises is saved with its error instead of stopping the others.

Every cell file records, in its Parquet metadata (key ``bayesmoe.study``), the settings
its rows depend on and the code version (:func:`cell_record`). A run into a folder that
holds cells recorded with other settings stops with a ``ValueError`` naming them before
any cell runs, so one folder never mixes results of different settings.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from bayesmoe.files import atomic_write
from bayesmoe.studies.learning_curve.cells import failed_cell, run_cell, tidy
from bayesmoe.studies.learning_curve.scenarios import (
    ALL_SCENARIOS,
    SCENARIOS,
    Scenario,
    StudySettings,
)
from bayesmoe.studies.learning_curve.zoo import MODELS, NUTS_MODELS, STUDY_MODELS

__all__ = [
    "RECORD_KEY",
    "WORKER_ENV",
    "cell_path",
    "cell_record",
    "check_resume",
    "gather",
    "read_cell_record",
    "run_study",
    "write_cell",
    "write_parquet_atomic",
]

#: The Parquet metadata key under which a cell file records its :func:`cell_record`.
RECORD_KEY = b"bayesmoe.study"

#: How a cell's data and fit seeds derive from the study seed (see
#: :func:`~bayesmoe.studies.learning_curve.cells.data_seed`); part of every cell record.
SEED_SCHEME = "SeedSequence([seed, crc32(scenario), replicate(, crc32(model))])"

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
    """Write ``df`` to ``path`` atomically (:func:`bayesmoe.files.atomic_write`),
    creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def cell_record(scenario: Scenario, model, settings: StudySettings) -> dict:
    """What a cell's rows depend on: the scenario's definition, the model, the sampler
    settings, the random-number streams and the code version (``bayesmoe_version``), with
    ``settings_hash``, the SHA-256 of all of these.

    A user model ``(name, callable)`` is recorded by the callable's module and qualified
    name; a change inside its body is not seen.
    """
    import bayesmoe

    name = _model_name(model)
    fn = MODELS[model] if isinstance(model, str) else model[1]
    scen = {k: v for k, v in asdict(scenario).items() if k != "description"}
    record = {f"scenario.{k}": v for k, v in scen.items()}
    record["model"] = name
    record["model_callable"] = (
        f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
    )
    record.update(asdict(settings))
    record["seed_scheme"] = SEED_SCHEME
    record["bayesmoe_version"] = bayesmoe.__version__
    text = json.dumps(record, sort_keys=True, default=str)
    record["settings_hash"] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return record


def write_cell(df: pd.DataFrame, path: Path, record: dict) -> Path:
    """Write a cell's table atomically with ``record`` in its Parquet metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[RECORD_KEY] = json.dumps(record, default=str).encode()
    table = table.replace_schema_metadata(meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_cell_record(path: Path) -> dict | None:
    """The :func:`cell_record` saved in a cell file; None when it holds none (a file
    written before cells recorded their settings, or one that cannot be read)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta[RECORD_KEY])
    except (OSError, KeyError, ValueError):
        return None


def check_resume(out: Path, cells: Iterable) -> None:
    """Refuse to resume into ``out`` if a saved cell of ``cells`` (``(scenario,
    replicate, model, settings)`` tuples) was run with other settings.

    Raises
    ------
    ValueError
        Naming each setting that differs, with the saved and the requested value, and
        the first cell file that holds it.
    """
    differ: dict[str, tuple] = {}
    for s, r, m, settings in cells:
        path = cell_path(out, s.name, r, _model_name(m))
        if not path.exists():
            continue
        # compared as saved: through JSON (numpy scalars and tuples as JSON has them)
        new = json.loads(json.dumps(cell_record(s, m, settings), default=str))
        old = read_cell_record(path)
        if old is None:
            differ.setdefault("settings", ("not recorded", "recorded", path))
            continue
        for key in sorted(set(old) | set(new)):
            if key != "settings_hash" and old.get(key) != new.get(key):
                differ.setdefault(key, (old.get(key, "absent"), new.get(key, "absent"), path))
    if differ:
        lines = "; ".join(
            f"{k}: {old!r} saved vs {new!r} now (e.g. {p})" for k, (old, new, p) in differ.items()
        )
        raise ValueError(
            f"out={str(out)!r} holds cells run with other settings ({lines}); resume with "
            "the same settings, or write to another folder (or delete those cells)"
        )


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

    from bayesmoe.streaming import unguarded_script

    if scheduler is not None:
        return Client(scheduler), None
    script = unguarded_script()
    if script is not None:  # spawned workers would re-run the script and never start
        raise RuntimeError(
            f"run_study starts worker processes, which re-run {script!r} from the top; "
            'put the study under `if __name__ == "__main__":` or pass client= or scheduler='
        )
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
    check_resume(out, [(s, r, m, settings) for s, r, m in cells])
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
    manifest = {
        "scenarios": [asdict(s) for s in scen],
        "replicates": replicates,
        "models": [_model_name(m) for m in model_list],
        "settings": asdict(settings),
    }
    text = json.dumps(manifest, indent=1)
    atomic_write(out / "manifest.json", lambda tmp: tmp.write_text(text))


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
            record = cell_record(s, m, settings)
            write_cell(df, cell_path(out, s.name, r, _model_name(m)), record)
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
