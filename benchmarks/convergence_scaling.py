"""Throughput of the convergence study on dask: cells/s with 1 and 2 workers, compile vs
sampling time of the NUTS cells, and the cost of a fit against the training size.

    python benchmarks/convergence_scaling.py                      # default workload
    (from a checkout that is not the installed one: PYTHONPATH=. python benchmarks/...)
    python benchmarks/convergence_scaling.py --replicates 1 --repeats 1 \
        --scenarios few_features_low_noise
    python benchmarks/convergence_scaling.py --study .study/r20   # + total time of a study

Every run compares against its own 1-worker reference (a ratio, not absolute seconds).
Each cluster's workers compile the NUTS models first (``compile_designs`` on every worker,
timed), so the throughput is that of a warm study; the load average of the machine is
printed next to every timing, because other work on the machine shifts the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bayesmoe.studies import learning_curve as conv


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def run_with_workers(n_workers: int, args, out: Path) -> dict:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=n_workers, threads_per_worker=1, dashboard_address=":0", env=conv.WORKER_ENV
    )
    client = Client(cluster)
    try:
        x_dims = sorted({conv.SCENARIOS[s].x_dim for s in args.scenarios})
        t0 = time.perf_counter()
        compile_times = client.run(conv.compile_designs, x_dims)
        compile_wall = time.perf_counter() - t0
        load_before = _load()
        t0 = time.perf_counter()
        df = conv.run_study(
            args.scenarios,
            args.replicates,
            out,
            settings=conv.StudySettings(draws=args.draws, tune=args.draws),
            client=client,
            progress=False,
        )
        wall = time.perf_counter() - t0
    finally:
        client.close()
        cluster.close()
    cells = df.groupby(["scenario", "replicate", "model"]).ngroups
    per_worker = pd.DataFrame(compile_times).T
    return {
        "workers": n_workers,
        "cells": cells,
        "wall_s": wall,
        "cells_per_s": cells / wall,
        "compile_wall_s": compile_wall,
        "compile_s_per_worker": per_worker.sum(axis=1).mean(),
        "compile_table": per_worker.mean(axis=0),
        "load_before": load_before,
        "load_after": _load(),
        "df": df,
    }


def fit_cost_table(df: pd.DataFrame) -> pd.DataFrame:
    """Median seconds per fit of the NUTS models by training-size band (compiled fits
    excluded): flat in n if the collapsed form works."""
    nuts = df[df["model"].isin(["learned_half_cauchy", "learned_gamma"]) & (df["status"] == "ok")]
    nuts = nuts[nuts["compiled"] == False]  # noqa: E712 (pandas nullable boolean)
    bands = pd.cut(nuts["n_train"], [0, 50, 500, 5000], labels=["n<=50", "50<n<=500", "n>500"])
    x_dim = nuts["scenario"].map(lambda s: conv.SCENARIOS[s].x_dim)
    return (
        nuts.assign(band=bands, x_dim=x_dim)
        .groupby(["x_dim", "model", "band"], observed=True)["sample_seconds"]
        .median()
        .unstack("band")
        .round(3)
    )


def study_total(study: Path) -> None:
    runs = study / "runs.jsonl"
    res = pd.read_parquet(study / "results.parquet")
    cells = res.groupby(["scenario", "replicate", "model"]).ngroups
    R = res["replicate"].nunique()
    print(f"\nstudy {study}: {cells} cells, R = {R}, scenarios {res['scenario'].nunique()}")
    nuts = res.loc[res["model"].str.startswith("learned"), "fit_seconds"].sum()
    print(
        f"  summed fit time (one core's work): {res['fit_seconds'].sum() / 60:.1f} min "
        f"(NUTS models {nuts / 60:.1f})"
    )
    if runs.exists():
        for line in runs.read_text().splitlines():
            r = json.loads(line)
            print(
                f"  run started {r['started_utc']}: {r['cells_run']} cells in "
                f"{r['wall_seconds'] / 60:.1f} min on {r['workers']} workers, load "
                f"{r['loadavg_start']} -> {r['loadavg_end']}"
            )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--scenarios", nargs="+", default=["strong_interaction", "few_features_low_noise"]
    )
    p.add_argument("--replicates", type=int, default=4)
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--repeats", type=int, default=2, help="rounds of 1 then 2 workers")
    p.add_argument("--study", type=Path, help="an existing study folder to report the time of")
    args = p.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, load average (1/5/15 min) {_load()}")
    results = []
    # 1 and 2 workers alternate, ``--repeats`` rounds: a background job that slows one run
    # shows up as a spread between rounds instead of as a speedup.
    for round_ in range(args.repeats):
        for n in (1, 2):
            out = Path(tempfile.mkdtemp(prefix=f"conv_bench_{n}w_"))
            try:
                results.append({"round": round_, **run_with_workers(n, args, out)})
            finally:
                shutil.rmtree(out, ignore_errors=True)
            r = results[-1]
            print(
                f"  round {round_}, {n} worker(s): {r['cells']} cells in {r['wall_s']:.1f} s, "
                f"load {r['load_before']} -> {r['load_after']}",
                flush=True,
            )
    one = [r for r in results if r["workers"] == 1]
    ref = np.mean([r["cells_per_s"] for r in one])
    table = pd.DataFrame(
        [
            {
                "round": r["round"],
                "workers": r["workers"],
                "cells": r["cells"],
                "wall_s": round(r["wall_s"], 1),
                "cells_per_s": round(r["cells_per_s"], 3),
                "speedup_vs_mean_1": round(r["cells_per_s"] / ref, 2),
                "compile_s_per_worker": round(r["compile_s_per_worker"], 1),
                "load_before": r["load_before"],
                "load_after": r["load_after"],
            }
            for r in results
        ]
    )
    pairs = zip(results[::2], results[1::2], strict=True)
    per_round = [b["cells_per_s"] / a["cells_per_s"] for a, b in pairs]
    print("\nthroughput (target: speedup >= 1.7 on 2 free cores)")
    print(table.to_string(index=False))
    two = np.mean([r["cells_per_s"] for r in results if r["workers"] == 2])
    print(
        f"speedup, mean 2-worker rate / mean 1-worker rate: {two / ref:.2f}; per round: "
        + ", ".join(f"{x:.2f}" for x in per_round)
    )
    print("\ncompile seconds per (design, family), mean over workers (1-worker run)")
    print(results[0]["compile_table"].round(1).to_string())
    df = results[0]["df"]
    nuts = df[df["model"].str.startswith("learned") & (df["status"] == "ok")]
    print(
        f"\nNUTS fits in the timed runs: {len(nuts)}, compiled during the run: "
        f"{int(nuts['compiled'].sum())} (0 = every fit reused a worker's compilation)"
    )
    print("median sampling seconds per NUTS fit by training size (1-worker run):")
    print(fit_cost_table(df).to_string())
    same = np.array_equal(
        results[0]["df"].sort_values(["scenario", "model", "replicate", "n_train"])["mse"],
        results[1]["df"].sort_values(["scenario", "model", "replicate", "n_train"])["mse"],
    )
    print(f"\n1- and 2-worker results identical: {same}")
    if args.study:
        study_total(args.study)


if __name__ == "__main__":
    main()
