"""Time to first posterior: ``import bayesmoe`` to a finished 4 x 1000 fit, in a fresh process.

For each model at the demo's sizes (``bayesmoe demo``: 300 rows; the interaction model on
the seed's 6 features, the mixtures on two-regime data with 2 features) and each NUTS
backend, two fresh subprocesses share one temporary cache folder (``BAYESMOE_CACHE_DIR``):
the first starts with it empty (cold), the second finds what the first wrote (warm).
Reported per run: import, the fit's wall time split into sampling (inside the sampler
call) and the rest (compilation, model building, post-processing), bulk ESS/s of the
sampling (min over identified parameters), and the warm/cold ratio of the same run.

    python benchmarks/first_fit.py                       # everything (bounded, ~30 min)
    python benchmarks/first_fit.py --models interaction_collapsed --samplers nutpie
    python benchmarks/first_fit.py --models interaction_collapsed gated_linear \
        --samplers nutpie --warm-runs 7 --gc-freeze both --reference ../old-checkout

``--warm-runs`` warm processes per cell (medians reported); ``--gc-freeze`` runs them with
``BAYESMOE_GC_FREEZE`` off, on (what the ``bayesmoe`` command sets) or both;
``--reference`` runs another checkout of bayesmoe in the same cells, alternating with this
one, and reports each variant's wall time over the first's, paired round by round.

Writes ``docs/first_fit/first_fit.csv`` and ``first_fit.txt`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

MODELS = ("interaction_collapsed", "interaction_rows", "mixture", "gated_linear", "gated_mlp")
SAMPLERS = ("nutpie", "nutpie_jax", "pymc", "numpyro")

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import bayesmoe as bm
import numpy as np
t_import = time.perf_counter() - t0
model, sampler = sys.argv[1], sys.argv[2]
from bayesmoe.experiments import make_interaction_data, make_mixture_data
kw = dict(draws=1000, tune=1000, chains=4, random_seed=1, progressbar=False)
if model.startswith("interaction"):
    d = make_interaction_data(300, 6, 1.0, 0.3, seed=0)
    est = bm.InteractionRegression(
        standardize=False, collapsed=(model == "interaction_collapsed"), **kw
    )
else:
    d = make_mixture_data(300, 2, 2, gate="linear", seed=0)
    if model == "mixture":
        est = bm.MixtureRegression(n_components=2, **kw)
    else:
        gate = model.split("_")[1]
        hidden = {"gate_hidden": 3} if gate == "mlp" else {}
        est = bm.GatedExperts(n_experts=2, gate=gate, **hidden, **kw)
sampling = [0.0]
if sampler == "nutpie_jax":
    import nutpie
    orig_compile = nutpie.compile_pymc_model
    import bayesmoe.cache as cache
    cache.compile_nutpie = lambda m, **k: orig_compile(m, backend="jax", gradient_backend="jax")
    cache.configure_jax()
    est.sampler = "nutpie"
else:
    est.sampler = sampler
import nutpie
orig_sample = nutpie.sample
def timed(*a, **k):
    s = time.perf_counter(); r = orig_sample(*a, **k); sampling[0] += time.perf_counter() - s
    return r
nutpie.sample = timed
t1 = time.perf_counter()
est.fit(d.X, d.y)
t_fit = time.perf_counter() - t1
stats = est.idata_["sample_stats"].attrs
if sampler in ("pymc", "numpyro"):
    sampling[0] = float(stats.get("sampling_time", float("nan")))
diag = json.loads(est.idata_.attrs["bayesmoe_diagnostics"])
print(json.dumps(dict(import_s=t_import, fit_s=t_fit, sampling_s=sampling[0],
                      wall_s=time.perf_counter() - t0, ess=diag["min_ess_bulk"],
                      rhat=diag["max_rhat"], divergences=diag["divergences"])))
"""


def run_one(
    model: str,
    sampler: str,
    cache: Path,
    timeout: float,
    freeze: bool = False,
    code: str | None = None,
) -> dict:
    drop = ("PYTENSOR_FLAGS", "BAYESMOE_GC_FREEZE", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["BAYESMOE_CACHE_DIR"] = str(cache)
    env["BAYESMOE_GC_FREEZE"] = "1" if freeze else "0"
    if code is not None:  # another checkout of bayesmoe (the --reference)
        env["PYTHONPATH"] = code
    start = time.perf_counter()
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, model, sampler],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"status": f"timeout > {timeout:.0f} s"}
    process = time.perf_counter() - start
    if out.returncode != 0:
        return {"status": "error: " + (out.stderr.strip().splitlines() or ["?"])[-1][:120]}
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["process_s"] = process
    row["other_s"] = row["fit_s"] - row["sampling_s"]  # compile, build, post-processing
    row["ess_per_s"] = (row["ess"] or 0.0) / row["sampling_s"] if row["sampling_s"] else None
    row["status"] = "ok"
    return row


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per process")
    parser.add_argument(
        "--warm-runs", type=int, default=1, help="warm processes per cell (median reported)"
    )
    parser.add_argument(
        "--gc-freeze",
        choices=("off", "on", "both"),
        default="off",
        help="children with BAYESMOE_GC_FREEZE=1 (what the bayesmoe command sets)",
    )
    parser.add_argument(
        "--reference",
        help="a checkout of another bayesmoe version (its root folder), run in the same "
        "cells, its warm processes alternating with this code's; ratios are taken per round",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent.parent / "docs/first_fit"))
    args = parser.parse_args(argv)
    freezes = {"off": (False,), "on": (True,), "both": (False, True)}[args.gc_freeze]
    # (label, PYTHONPATH, BAYESMOE_GC_FREEZE); the first is the baseline of the ratios
    variants = [("this", None, f) for f in freezes]
    if args.reference:
        variants.insert(0, ("reference", str(Path(args.reference).resolve()), False))
    rows = []
    for model in args.models:
        for sampler in args.samplers:
            with tempfile.TemporaryDirectory(prefix="bayesmoe-cache-") as tmp:
                caches = [Path(tmp) / str(i) for i in range(len(variants))]
                states = ["cold"] + ["warm"] * args.warm_runs
                for round_, state in enumerate(states):
                    for (label, code, freeze), cache in zip(variants, caches, strict=True):
                        row = run_one(model, sampler, cache, args.timeout, freeze, code)
                        rows.append(
                            {
                                "model": model,
                                "sampler": sampler,
                                "code": label,
                                "gc_freeze": freeze,
                                "cache": state,
                                "round": round_,
                                **row,
                            }
                        )
                        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    cols = ["process_s", "import_s", "other_s", "sampling_s", "ess", "ess_per_s", "rhat"]
    cols = [c for c in cols if c in df]
    keys = ["model", "sampler", "code", "gc_freeze", "cache"]
    # medians over the warm processes of a cell (one cold process each)
    table = df.groupby(keys, sort=False)[cols].median()
    table["runs"] = df.groupby(keys, sort=False).size()
    table["status"] = df.groupby(keys, sort=False)["status"].agg(
        lambda v: ",".join(sorted(set(v)))
    )
    # whole-process wall time over the baseline variant's, round by round (the machine's
    # speed drifts; a pair run back to back does not), then the median over rounds
    base_label, _, base_freeze = variants[0]
    wide = df.pivot_table(
        index=["model", "sampler", "cache", "round"],
        columns=["code", "gc_freeze"],
        values="process_s",
    )
    ratios = wide.div(wide[(base_label, base_freeze)], axis=0)
    ratio = ratios.groupby(level=["model", "sampler", "cache"]).median()
    load = os.getloadavg()
    text = (
        f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n\n"
        + table.to_string(float_format=lambda v: f"{v:.2f}")
        + f"\n\nwhole-process wall time / that of ({base_label}, gc_freeze={base_freeze}),"
        + " median over paired rounds:\n"
        + ratio.to_string(float_format=lambda v: f"{v:.3f}")
        + "\n"
    )
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "first_fit.csv", index=False)
    (out / "first_fit.txt").write_text(text)
    return df


if __name__ == "__main__":
    main()
