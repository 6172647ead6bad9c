"""Data larger than memory: Parquet files and Dask dataframes, reduced on dask.distributed.

The numerical kernels are numpy functions of one chunk (:mod:`bayesmoe.numerics.suffstats`);
this module only maps them over the partitions of a :class:`dask.dataframe.DataFrame` and
reduces the results pairwise, on a ``dask.distributed`` client: the user's (an active
``Client``, e.g. ``Client("tcp://scheduler:8786")``, is picked up) or a ``LocalCluster``
started here and closed afterwards (worker processes; worker threads when the call comes
from a script's top level without an ``if __name__ == "__main__":`` guard, see
:func:`unguarded_script`). Every partition is validated in the same pass (column
present, numeric, finite), and a failure names the column and the partition (and its file
for frames made by :func:`read_parquet`) before anything is sampled.
"""

from __future__ import annotations

import ast
import glob
import inspect
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from bayesmoe.numerics.rowsample import RowSample, chunk_sample, merge_samples, sample_rng
from bayesmoe.numerics.suffstats import DesignMoments, chunk_moments, combine

__all__ = [
    "PartitionError",
    "PartitionRows",
    "dask_client",
    "design_moments",
    "design_pass",
    "formula_frame",
    "is_dask",
    "is_dask_frame",
    "is_dask_series",
    "read_parquet",
    "unguarded_script",
]


class PartitionError(ValueError):
    """Bad data in one partition of a dask/Parquet input (names column and partition)."""


def is_dask(obj) -> bool:
    """Whether ``obj`` is a dask collection (DataFrame or Series)."""
    # A dask collection cannot exist before dask is imported, so asking need not import it.
    dask = sys.modules.get("dask")
    return dask is not None and dask.is_dask_collection(obj)


def is_dask_frame(obj) -> bool:
    """Whether ``obj`` is a dask DataFrame (not a Series: with current dask a Series also
    answers ``hasattr(obj, "columns")``, so that probe cannot tell them apart)."""
    if not is_dask(obj):
        return False
    import dask.dataframe as dd

    return isinstance(obj, dd.DataFrame)


def is_dask_series(obj) -> bool:
    """Whether ``obj`` is a dask Series."""
    if not is_dask(obj):
        return False
    import dask.dataframe as dd

    return isinstance(obj, dd.Series)


def _files(path) -> list[str]:
    if isinstance(path, str | os.PathLike):
        text = os.fspath(path)
        if any(ch in text for ch in "*?["):
            files = sorted(glob.glob(text))
        elif Path(text).is_dir():
            files = sorted(str(p) for p in Path(text).rglob("*.parquet"))
        elif Path(text).is_file():
            files = [text]
        else:
            raise OSError(f"path {text!r} does not exist")
    elif (
        isinstance(path, Sequence) and path and all(isinstance(p, str | os.PathLike) for p in path)
    ):
        files = [os.fspath(p) for p in path]
        missing = [p for p in files if not Path(p).is_file()]
        if missing:
            raise OSError(f"path lists files that do not exist: {missing[:5]}")
    else:
        raise TypeError(
            f"path must be a Parquet file, folder, glob or list of files, got {path!r}"
        )
    if not files:
        raise OSError(f"path {os.fspath(path)!r} matches no Parquet files")
    return files


def _read_one(path: str, columns: list[str] | None) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, KeyError, OSError) as err:
        # a missing column or a broken file: say which (the schema read only on failure)
        try:
            names = pq.read_schema(path).names
        except Exception as inner:  # pyarrow raises several types for a broken file
            raise OSError(f"{path!r} is not a readable Parquet file: {inner}") from err
        missing = [c for c in columns or () if c not in names]
        if missing:
            raise PartitionError(f"file {path!r} has no column(s) {missing}") from err
        raise OSError(f"{path!r} could not be read: {err}") from err
    frame = table.to_pandas()
    frame.attrs["bayesmoe_source"] = path
    return frame


def _meta(path: str, columns: list[str] | None) -> pd.DataFrame:
    """The empty frame of a file's schema (its footer only; the rows stay unread)."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
        if columns is not None and not set(columns) <= set(schema.names):
            raise KeyError(columns)
        table = schema.empty_table()
        return (table if columns is None else table.select(columns)).to_pandas()
    except Exception:  # name what is wrong the way a read of the file does
        return _read_one(path, columns).iloc[:0]


def read_parquet(path, *, columns: Sequence[str] | None = None):
    """A Parquet data set as a dask DataFrame with one partition per file.

    Parameters
    ----------
    path : str, path, glob or list of paths
        A file, a folder (every ``*.parquet`` below it), a glob such as ``"data/*.parquet"``,
        or a list of files.
    columns : list of str, optional
        Columns to read (all by default).

    Returns
    -------
    dask.dataframe.DataFrame
        Lazy; nothing is read until it is computed. Errors in a partition (a missing
        column, a non-numeric or non-finite value) name its file.
    """
    import dask.dataframe as dd

    files = _files(path)
    cols = None if columns is None else [str(c) for c in columns]
    meta = _meta(files[0], cols)
    ddf = dd.from_map(_read_one, files, columns=cols, meta=meta, enforce_metadata=False)
    return ddf


def _is_main_guard(node: ast.AST) -> bool:
    """Whether ``node`` is ``if __name__ == "__main__":`` (either operand order)."""
    if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    consts = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and consts == ["__main__"]


def unguarded_script() -> str | None:
    """The path of the running script when this call comes from its top level outside an
    ``if __name__ == "__main__":`` block; None otherwise.

    Worker processes of a ``LocalCluster`` are started by ``spawn``, which re-imports the
    script that started them: unguarded top-level code would run again in every worker and
    start a cluster there, which multiprocessing refuses (the workers never start). The
    answer is read from the call stack (the script's outermost frame) and the script's
    syntax tree; an interactive session, ``python -c`` or a script that cannot be read
    answers None.
    """
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if not main_file:
        return None
    main_file = os.path.realpath(main_file)
    frame = inspect.currentframe()
    top = None
    while frame is not None:
        code = frame.f_code
        if code.co_name == "<module>" and os.path.realpath(code.co_filename) == main_file:
            top = frame
        frame = frame.f_back
    if top is None:
        return None
    try:
        tree = ast.parse(Path(main_file).read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    line = top.f_lineno
    for node in ast.walk(tree):
        if _is_main_guard(node) and node.body[0].lineno <= line <= node.body[-1].end_lineno:
            return None
    return main_file


@contextmanager
def dask_client(client=None, *, n_workers: int = 2) -> Iterator:
    """The client to run on: ``client``, an active one, or a new ``LocalCluster``.

    A cluster started here (``n_workers`` single-threaded workers) is closed when the
    block ends, also on error. Its workers are processes, or threads of this process when
    the call comes from a script's top level without an ``if __name__ == "__main__":``
    guard (:func:`unguarded_script`: worker processes would re-run the script and never
    start). The numerical kernels release the GIL in their matrix products, so threads
    keep most of the processes' throughput.
    """
    from distributed import Client, LocalCluster, get_client

    if client is not None:
        yield client
        return
    try:
        active = get_client()
    except ValueError:  # no client is active: start a local cluster for this block
        active = None
    if active is not None:  # (the block's own errors are not caught here)
        yield active
        return
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=unguarded_script() is None,
        dashboard_address=None,
    )
    try:
        with Client(cluster) as new:
            yield new
    finally:
        cluster.close()


def _where(part: pd.DataFrame, index: int) -> str:
    source = part.attrs.get("bayesmoe_source")
    return f"partition {index}" + (f" (file {source!r})" if source else "")


def _partition_tasks(ddf, columns: Sequence[str], fn, *args) -> list:
    """``fn(part, index, *args)`` of every partition, as one dask Delayed per partition.

    Through ``map_partitions`` the read of a partition and ``fn`` fuse into one task, so a
    partition is processed on the worker that read it; with a separate task per step (a
    partition's ``to_delayed()`` fed to ``dask.delayed(fn)``) the scheduler could move
    whole partitions between workers to balance the second step.
    """
    mapped = ddf[list(columns)].map_partitions(
        _indexed_call,
        fn,
        *args,
        meta=(None, object),
        enforce_metadata=False,
        align_dataframes=False,
        partition_info=True,
    )
    return list(mapped.to_delayed())


def _indexed_call(part: pd.DataFrame, fn, *args, partition_info=None):
    return fn(part, (partition_info or {}).get("number", "?"), *args)


# ------------------------------------------------------------------------ formulas
#: rows of the first partition a formula's structure is read from on a dask frame
FORMULA_HEAD_ROWS = 1000
#: the target column of a formula's dask design frame (the formula names the target)
FORMULA_TARGET = "__target__"


def formula_frame(ddf, formula: str, *, gate: str | None = None, client=None):
    """A dask frame coded by a formula, partition by partition.

    The formula's structure (columns, kinds, interaction pairs) is read from the first
    partition's head; the levels of every categorical factor are the distinct values of
    its column over *all* partitions (one pass over those columns only), so the coding
    is the one :func:`bayesmoe.formula.design_from_formula` gives the whole frame in
    memory. Formulas with stateful transforms (``center``, ``scale``, ``bs``, ``poly``,
    ...) are refused: their state (means, knots) would come from one partition.

    Returns
    -------
    frame : dask.dataframe.DataFrame
        float64 design columns ``design.all_columns`` and the target ``FORMULA_TARGET``.
    target : str
    features : list of str
    design : bayesmoe.formula.FormulaDesign
    """
    from bayesmoe.formula import design_from_formula

    head = ddf.head(FORMULA_HEAD_ROWS, npartitions=1)
    if len(head) == 0:
        raise ValueError("formula: the first partition of the dask frame has no rows")
    design, _, _ = design_from_formula(formula, head, gate=gate, name="formula")
    parts = design.state["parts"]
    stateful = sorted({e for p in parts.values() if p for e in p.get("transform_state", {})})
    if stateful:
        raise ValueError(
            f"formula: {stateful} learn their state (means, scales, knots) from the data, "
            "which a dask frame does not hold in memory; compute those columns in the frame "
            "(map_partitions) or leave the transforms out (the models standardise columns)"
        )
    sources = sorted({c for p in parts.values() if p for c in p.get("level_sources", {}).values()})
    if sources:
        # each partition's distinct values, made distinct again here (no shuffle)
        meta = pd.DataFrame({"column": pd.Series(dtype=object), "value": pd.Series(dtype=object)})
        distinct = ddf[sources].map_partitions(_distinct, meta=meta)
        with dask_client(client) as c:
            found = pd.concat(c.compute(distinct.to_delayed(), sync=True), ignore_index=True)
        extra = []
        for col in sources:
            seen = set(pd.unique(head[col]))
            values = found.loc[found["column"] == col, "value"]
            for value in (v for v in pd.unique(values) if v not in seen):
                row = head.iloc[[0]].copy()
                if isinstance(row[col].dtype, pd.CategoricalDtype):
                    row[col] = row[col].cat.add_categories([value])
                row[col] = value
                extra.append(row)
        if extra:  # every level present once: formulaic then codes all of them
            rows = pd.concat([head, *extra], ignore_index=True)
            for col in sources:
                if isinstance(head[col].dtype, pd.CategoricalDtype):
                    levels = sorted(set(head[col].cat.categories) | set(rows[col].dropna()))
                    rows[col] = pd.Categorical(rows[col], categories=levels)
            design, _, _ = design_from_formula(formula, rows, gate=gate, name="formula")
    features = design.all_columns
    meta = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in [*features, FORMULA_TARGET]})
    frame = ddf.map_partitions(_formula_part, design, meta=meta, partition_info=True)
    return frame, FORMULA_TARGET, features, design


def _distinct(part: pd.DataFrame) -> pd.DataFrame:
    """The distinct non-missing values of each column of one partition (long format)."""
    return pd.concat(
        [
            pd.DataFrame({"column": col, "value": pd.unique(part[col].dropna().to_numpy())})
            for col in part.columns
        ],
        ignore_index=True,
    )


def _formula_part(part: pd.DataFrame, design, partition_info=None) -> pd.DataFrame:
    """One partition's design columns and target, or an error naming the partition."""
    index = (partition_info or {}).get("number", "?")
    try:
        out = design.transform(part)
        out[FORMULA_TARGET] = design.target_values(part)
    except (TypeError, ValueError) as err:
        raise PartitionError(f"{_where(part, index)}: {err}") from None
    out.attrs.update(part.attrs)
    return out


def _checked_arrays(part: pd.DataFrame, index: int, features, target, *, finite: bool = True):
    """Float64 ``X, y`` of one partition, or a PartitionError naming column and partition.

    ``finite=False`` leaves the NaN/inf check to the caller (:func:`_check_finite`), for
    kernels whose sums propagate a non-finite value anyway and can check once at the end.
    """
    where = _where(part, index)
    missing = [c for c in [*features, target] if c not in part.columns]
    if missing:
        raise PartitionError(f"{where} has no column(s) {missing}")
    for col in [*features, target]:
        dtype = part[col].dtype
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_complex_dtype(dtype):
            raise PartitionError(
                f"{where}: column {col!r} is not numeric (dtype {dtype}); encode it as numbers"
            )
    X = part[list(features)].to_numpy(dtype=np.float64)
    y = part[target].to_numpy(dtype=np.float64)
    if finite:
        _check_finite(X, y, where, features, target)
    return X, y


def _check_finite(X, y, where: str, features, target) -> None:
    """Raise a PartitionError naming the first column with a NaN or infinite value."""
    for j, col in enumerate([*features, target]):
        values = X[:, j] if j < len(features) else y
        bad = ~np.isfinite(values)
        if bad.any():
            kind = "NaN" if np.isnan(values[bad]).any() else "infinite"
            raise PartitionError(
                f"{where}: column {col!r} has {int(bad.sum())} {kind} value(s) "
                f"(first at row {int(np.argmax(bad))})"
            )


def _partition_pass(part: pd.DataFrame, index: int, features, target, pairs, k):
    X, y = _checked_arrays(part, index, features, target, finite=False)
    with np.errstate(invalid="ignore"):  # inf - inf of a bad value, reported below
        moments = chunk_moments(X, y, pairs)
    # A NaN or inf anywhere in X or y makes the column sums in ``moments.mean`` non-finite,
    # so one check of the means replaces a pass over every column; only then are the
    # columns searched, to name the culprit.
    if not np.isfinite(moments.mean).all():
        _check_finite(X, y, _where(part, index), features, target)
    sample = chunk_sample(X, y, k, sample_rng(index)) if k else None
    return moments, sample


def _merge(a, b, k):
    sample = None if a[1] is None else merge_samples(a[1], b[1], k)
    return combine(a[0], b[0]), sample


def check_columns(ddf, features: Sequence[str], target: str, *, name: str = "X") -> None:
    """Schema checks that need no data: the columns exist and have numeric dtypes."""
    missing = [c for c in [*features, target] if c not in ddf.columns]
    if missing:
        raise ValueError(f"{name} has no column(s) {missing}; it has {list(ddf.columns)}")
    bad = [
        c
        for c in [*features, target]
        if not pd.api.types.is_numeric_dtype(ddf.dtypes[c])
        or pd.api.types.is_complex_dtype(ddf.dtypes[c])
    ]
    if bad:
        raise TypeError(f"{name} has non-numeric columns {bad}; encode them as numbers")


def design_moments(
    ddf,
    features: Sequence[str],
    target: str,
    pairs: Sequence[tuple[int, int]],
    *,
    client=None,
) -> DesignMoments:
    """One validated pass over the partitions: the moments of the interaction design.

    Each partition's :func:`~bayesmoe.numerics.suffstats.chunk_moments` runs on a worker;
    the results are combined pairwise (a tree, so no worker holds more than two at once).
    Each partition centres its moments at its own first rows and the merge moves them to
    a common centre (:func:`~bayesmoe.numerics.suffstats.reshift`), so the pass reads
    every partition once and nothing else.
    """
    return design_pass(ddf, features, target, pairs, client=client)[0]


def design_pass(
    ddf,
    features: Sequence[str],
    target: str,
    pairs: Sequence[tuple[int, int]],
    *,
    sample_rows: int = 0,
    client=None,
) -> tuple[DesignMoments, RowSample | None]:
    """The moments of :func:`design_moments` and, in the same pass, a row sample.

    With ``sample_rows > 0`` every partition also keeps a uniform sample of its rows and
    the samples merge pairwise, neighbours in order (:mod:`bayesmoe.numerics.rowsample`),
    into a uniform sample of ``min(sample_rows, n)`` rows of the whole data set, with
    their positions in it. The sample depends only on the data and its partitioning (a
    fixed seed per partition), and a smaller ``sample_rows`` gives the first rows of a
    larger one: every model fitted to the same frame shares its LOO rows.
    """
    import dask

    features = [str(c) for c in features]
    check_columns(ddf, features, target)
    with dask_client(client) as c:
        k = int(sample_rows)
        tasks = _partition_tasks(
            ddf, [*features, target], _partition_pass, features, target, pairs, k
        )
        while len(tasks) > 1:  # pairwise tree reduction, neighbours in order
            tasks = [
                dask.delayed(_merge)(tasks[i], tasks[i + 1], k) if i + 1 < len(tasks) else tasks[i]
                for i in range(0, len(tasks), 2)
            ]
        return c.compute(tasks[0]).result()


def _pointwise_part(part: pd.DataFrame, index: int, features, target, fn) -> np.ndarray:
    X, y = _checked_arrays(part, index, features, target)
    out = np.asarray(fn(X, y), dtype=np.float64)
    if out.shape != y.shape:
        raise ValueError(f"{_where(part, index)}: {len(y)} rows gave {out.shape} values")
    return out


def pointwise(ddf, features: Sequence[str], target: str, fn, lengths: Sequence[int]):
    """``fn(X, y)``, one value per row, of every partition: a lazy dask array.

    ``fn`` is a numpy function of one partition's float64 arrays; ``lengths`` are the
    partitions' row counts (``RowSample.chunk_rows`` of the pass), which give the array
    its chunks, so that nothing is read until it is computed.
    """
    import dask.array as da

    features = [str(c) for c in features]
    parts = _partition_tasks(ddf, [*features, target], _pointwise_part, features, target, fn)
    if len(parts) != len(lengths):
        raise ValueError(f"{len(parts)} partitions but {len(lengths)} lengths")
    return da.concatenate(
        [
            da.from_delayed(part, shape=(int(n),), dtype=np.float64)
            for part, n in zip(parts, lengths, strict=True)
        ]
    )


def computed(array) -> np.ndarray:
    """A numpy array of ``array``; a dask one is computed on a ``dask.distributed`` client
    (an active one, or a ``LocalCluster`` started and closed for it)."""
    if not is_dask(array):
        return np.asarray(array)
    with dask_client() as c:
        return np.asarray(c.compute(array).result())


# --------------------------------------------------------------------------- streamed VEM

#: ``persist="auto"`` keeps the prepared partitions in the workers' memory when they (and
#: their responsibilities) take at most this share of it; otherwise every pass re-reads.
PERSIST_FRACTION = 0.25


def _prepared(part: pd.DataFrame, index: int, features, target, prepare):
    X, y = _checked_arrays(part, index, features, target)
    return prepare(X, y)


def _e_step_task(data, params):
    from bayesmoe.numerics.vem import e_step_chunk

    return e_step_chunk(*data, params)


def _gate_task(data, result, theta, hidden, hessian=False):
    from bayesmoe.numerics.vem import gate_chunk

    return gate_chunk(data[2], result[1], theta, hidden, hessian)


def _e_step_lane(data, params) -> list:
    return [_e_step_task(d, params) for d in data]


def _lane_moments(results) -> list:
    return [r[0] for r in results]


def _gate_lane(data, results, theta, hidden, hessian=False) -> list:
    return [_gate_task(d, r, theta, hidden, hessian) for d, r in zip(data, results, strict=True)]


def _e_step_part(part, index, features, target, prepare, params):
    return _e_step_task(_prepared(part, index, features, target, prepare), params)[0]


def _gate_part(part, index, features, target, prepare, params, theta, hidden, hessian=False):
    data = _prepared(part, index, features, target, prepare)
    return _gate_task(data, _e_step_task(data, params), theta, hidden, hessian)


def _thread_slots(client) -> list[str]:
    """A worker address per thread (one round over the workers per thread).

    Persisted partition ``i`` goes to slot ``i % len(slots)``: every E-step waits for its
    slowest worker, and left to the scheduler the first worker ready would take more of
    them, so the fit would run at the pace of the most loaded worker.
    """
    workers = client.scheduler_info()["workers"]
    threads = {addr: max(int(w.get("nthreads") or 1), 1) for addr, w in sorted(workers.items())}
    slots = [
        a for r in range(max(threads.values(), default=1)) for a, t in threads.items() if t > r
    ]
    if not slots:
        raise RuntimeError("the dask client has no workers")
    return slots


class PartitionRows:
    r"""The rows of a dask frame as the variational EM's row source, on a dask client.

    :func:`bayesmoe.numerics.vem.fit_mixture_vem` (``rows=``) runs every E-step as a map
    of :func:`~bayesmoe.numerics.vem.e_step_chunk` over the partitions, reduced on the
    client by adding their :class:`~bayesmoe.numerics.vem.Moments` in partition order
    (the expert statistics, Dirichlet counts, the bound and a linear gate's gradient and
    Hessian), and every other evaluation of the gate's objective (with its gradient, for
    the mlp gate's L-BFGS, or its Hessian too, for the linear gate's Newton steps) as a
    map of :func:`~bayesmoe.numerics.vem.gate_chunk`. Only these small sums travel.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        Holding ``features`` and ``target``.
    features, target
        Column names.
    prepare : callable
        ``prepare(X, y) -> (Z, y, G)``: one partition's raw arrays to the model's working
        scale and designs (expert design with its intercept column, gate design or None);
        picklable, it runs on the workers.
    client : distributed.Client
    n_rows : int
        Rows of ``ddf`` (known from the validating pass).
    persist : {"auto", True, False}
        Keep the prepared partitions, and each E-step's responsibilities, in the workers'
        memory (each pass reads memory; the data must fit) or re-read and re-prepare the
        partitions every pass (memory stays flat; a gate evaluation then recomputes the
        responsibilities). ``"auto"`` persists when they take at most
        ``PERSIST_FRACTION`` of the workers' memory.
    """

    def __init__(self, ddf, features, target, prepare, *, client, n_rows, persist="auto"):
        self.client = client
        self.features, self.target, self.prepare = list(features), target, prepare
        self._n = int(n_rows)
        self._ddf = ddf
        if persist == "auto":
            persist = self.prepared_bytes() <= PERSIST_FRACTION * self.worker_memory()
        elif not isinstance(persist, bool):
            raise ValueError(f"persist must be 'auto', True or False, got {persist!r}")
        self.persisted = bool(persist)
        self._data = None
        if self.persisted:
            tasks = self._tasks(_prepared)
            threads = _thread_slots(client)
            slots = [threads[i % len(threads)] for i in range(len(tasks))]
            self._data = [
                client.compute(task, workers=[slot], allow_other_workers=True)
                for task, slot in zip(tasks, slots, strict=True)
            ]
            # One task per worker thread ("lane") and pass, over the partitions placed
            # there: every pass is a round trip through the scheduler, so a round costs
            # one task per thread rather than one per partition. Partition i is in lane
            # i % len(threads), on the worker it was placed on.
            self._lanes = [
                (threads[j], list(range(j, len(tasks), len(threads))))
                for j in range(min(len(threads), len(tasks)))
            ]
            client.gather(client.map(len, self._data))  # surface errors here, not mid-fit

    def _tasks(self, fn, *args) -> list:
        """``fn(part, index, features, target, prepare, *args)`` per partition, read fused."""
        columns = [*self.features, self.target]
        return _partition_tasks(
            self._ddf, columns, fn, self.features, self.target, self.prepare, *args
        )

    @property
    def n(self) -> int:
        return self._n

    def prepared_bytes(self) -> int:
        """Bytes of the prepared arrays and responsibilities (estimated from one row)."""
        width = sum(
            0 if a is None else (a.shape[1] if a.ndim == 2 else 1)
            for a in self.prepare(np.zeros((1, len(self.features))), np.zeros(1))
        )
        return 8 * self._n * (width + getattr(self.prepare, "n_components", 1))

    def worker_memory(self) -> float:
        workers = self.client.scheduler_info()["workers"].values()
        limits = [w.get("memory_limit") or 0 for w in workers]
        return float(sum(limits)) if all(limits) else float("inf")

    def e_step(self, params):

        if self.persisted:
            handle = [
                self.client.submit(
                    _e_step_lane, [self._data[i] for i in parts], params, workers=[slot],
                    allow_other_workers=True, pure=False,
                )
                for slot, parts in self._lanes
            ]  # fmt: skip
            moments = self._in_order(
                self.client.gather(
                    [self.client.submit(_lane_moments, h, pure=False) for h in handle]
                )
            )
        else:
            tasks = self._tasks(_e_step_part, params)
            moments = self.client.gather(self.client.compute(tasks))
            handle = params
        total = moments[0]
        for m in moments[1:]:
            total = total + m
        return total, handle

    def gate_objective(self, handle, theta, hidden: int, hessian: bool = False):

        if self.persisted:
            futures = [
                self.client.submit(
                    _gate_lane, [self._data[i] for i in parts], h, theta, hidden, hessian,
                    workers=[slot], allow_other_workers=True, pure=False,
                )
                for (slot, parts), h in zip(self._lanes, handle, strict=True)
            ]  # fmt: skip
            parts = self._in_order(self.client.gather(futures))
        else:
            tasks = self._tasks(_gate_part, handle, theta, hidden, hessian)
            parts = self.client.gather(self.client.compute(tasks))
        # value, gradient (and Hessian): each a sum over the partitions
        return tuple(
            sum(part[i] for part in parts) if i == 0 else np.sum([p[i] for p in parts], axis=0)
            for i in range(len(parts[0]))
        )

    def _in_order(self, per_lane: list) -> list:
        """Per-lane lists of per-partition results, back in partition order: the sums
        then add in the same order whatever the number of workers."""
        out = [None] * len(self._data)
        for (_, parts), results in zip(self._lanes, per_lane, strict=True):
            for i, r in zip(parts, results, strict=True):
                out[i] = r
        return out

    def responsibilities(self, handle) -> None:
        """None: the responsibilities stay on the workers (n x K would not fit)."""
        return None

    def close(self) -> None:
        """Release the persisted partitions from the workers' memory."""
        if self._data is not None:
            self.client.cancel(self._data)
            self._data = None
