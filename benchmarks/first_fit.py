"""Time to first posterior: a fresh process to a finished 4 x 1000 fit, cold and warm, vs Stan.

For each model and each NUTS backend, fresh subprocesses share one temporary cache folder
(``BAYESMOE_CACHE_DIR``): the first starts with it empty (cold), the next ones find what
the earlier ones wrote (warm). Backends: ``nutpie`` (numba), ``nutpie_jax``
(``nutpie.compile_pymc_model(model, backend="jax", gradient_backend="jax")``), ``pymc``
(PyMC's NUTS), ``numpyro``, ``auto`` (bayesmoe's ``sampler="auto"``: its cold and warm
path) and ``stan`` (PyStan 3 on the programs in ``benchmarks/stan/``, the same data, the
same priors and bayesmoe's shared start for every chain; its cold run compiles the program
into an empty httpstan cache, its warm run finds it there). Reported per run: the whole
process's wall time, the fit's split into sampling and the rest (compilation, model
building, post-processing; for Stan: compile and sample), the min bulk ESS over the
identified parameters, ESS/s of the sampling and ESS per whole-process second (compile
included), and whether a warm run's draws equal the cold run's (a digest of the draws).

    python benchmarks/first_fit.py                       # demo sizes, every backend
    python benchmarks/first_fit.py --sizes issue --samplers auto stan
    python benchmarks/first_fit.py --models interaction_collapsed gated_linear \
        --samplers auto --warm-runs 5 --reference /work/main

``--sizes demo``: ``bayesmoe demo``'s 300 rows (interaction: 6 features; mixtures: 2
features, K = 2, except ``gated_linear_k3`` and ``mixture`` at K = 3). ``--sizes issue``:
issue 39's table (interaction 2000 rows, 6 features + 15 interactions; mixture K = 3 on
1000 rows; gated K = 2 / 3 on 2000 rows with 3 features). ``--warm-runs`` warm
processes per cell (medians reported); ``--gc-freeze`` runs them with
``BAYESMOE_GC_FREEZE`` off, on or both; ``--reference`` runs another checkout of bayesmoe
in the same cells, alternating with this one, and reports each variant's wall time over
the first's, paired round by round.

Writes ``benchmarks/results/first_fit/first_fit.csv`` and ``first_fit.txt`` (``--out``).
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

MODELS = (
    "interaction_collapsed",
    "interaction_rows",
    "mixture",
    "gated_linear",
    "gated_linear_k3",
    "gated_mlp",
)
SAMPLERS = ("nutpie", "nutpie_jax", "pymc", "numpyro", "auto", "stan")
HERE = Path(__file__).parent

#: Shared by both children: the data and the estimator of a model at a size.
SETUP = r"""
import sys
from bayesmoe.experiments import make_interaction_data, make_mixture_data
model, sampler, sizes = sys.argv[1], sys.argv[2], sys.argv[3]
kw = dict(draws=1000, tune=1000, chains=4, random_seed=1, progressbar=False)
issue = sizes == "issue"
if model.startswith("interaction"):
    d = make_interaction_data(2000 if issue else 300, 6, 1.0, 0.3, seed=0)
    est = bm.InteractionRegression(
        standardize=False, collapsed=(model == "interaction_collapsed"), **kw
    )
else:
    k = 3 if model in ("mixture", "gated_linear_k3") else 2
    n = (1000 if model == "mixture" else 2000) if issue else 300
    gate = None if model == "mixture" else model.split("_")[1]
    d = make_mixture_data(n, k, 3 if issue else 2, gate=gate or "linear", seed=0)
    if model == "mixture":
        est = bm.MixtureRegression(n_components=k, **kw)
    else:
        hidden = {"gate_hidden": 3} if gate == "mlp" else {}
        est = bm.GatedExperts(n_experts=k, gate=gate, **hidden, **kw)
"""

CHILD = (
    r"""
import hashlib, json, sys, time
t0 = time.perf_counter()
import bayesmoe as bm
import numpy as np
t_import = time.perf_counter() - t0
"""
    + SETUP
    + r"""
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
used = est.idata_.attrs["bayesmoe_sampler"]
if used in ("pymc", "numpyro"):
    sampling[0] = float(stats.get("sampling_time", float("nan")))
post = est.idata_["posterior"]
digest = hashlib.sha256()
for name in sorted(post.data_vars):
    digest.update(np.ascontiguousarray(post[name].values).tobytes())
diag = json.loads(est.idata_.attrs["bayesmoe_diagnostics"])
print(json.dumps(dict(import_s=t_import, fit_s=t_fit, sampling_s=sampling[0],
                      wall_s=time.perf_counter() - t0, ess=diag["min_ess_bulk"],
                      rhat=diag["max_rhat"], divergences=diag["divergences"],
                      used=used, draws=digest.hexdigest()[:12])))
"""
)

#: The Stan side: the same data, priors and start point, PyStan 3 (compile, then sample).
CHILD_STAN = (
    r"""
import hashlib, json, sys, time
t0 = time.perf_counter()
import functools
import aiohttp
import numpy as np
# PyStan talks to httpstan through aiohttp, whose default 300 s request limit a compile on
# a loaded machine exceeds; the benchmark's own --timeout bounds the process instead.
aiohttp.ClientSession = functools.partial(
    aiohttp.ClientSession, timeout=aiohttp.ClientTimeout(total=None)
)
import stan
import bayesmoe as bm
from bayesmoe.builders.contract import spec_of
from pathlib import Path
"""
    + SETUP
    + r"""
stan_dir = Path(sys.argv[4])
t_setup0 = time.perf_counter()
X, y = np.asarray(d.X, float), np.asarray(d.y, float)
if model.startswith("interaction"):
    m = bm.interaction_regression(d.X, d.y, collapsed=(model == "interaction_collapsed"))
else:
    k = est.n_components if model == "mixture" else est.n_experts
    if model == "mixture":
        m = bm.mixture_regression(d.X, d.y, n_components=k)
    else:
        m = bm.gated_experts(d.X, d.y, n_experts=k, gate=est.gate, **hidden)
spec = spec_of(m)
pr = spec.priors
s_y = float(pr["sigma"].parameters["sigma"])
m0 = float(np.ravel(pr["intercept"].parameters["mu"])[0])
s0 = float(np.ravel(pr["intercept"].parameters["sigma"])[0])
start = spec.initial_values() if spec.has_start_point else {}
start = {k_: np.asarray(v, float).tolist() for k_, v in (start or {}).items()}
if model.startswith("interaction"):
    from itertools import combinations
    pairs = list(combinations(range(X.shape[1]), 2))
    Xi = np.column_stack([X[:, a] * X[:, b] for a, b in pairs])
    data = dict(n=len(y), p=X.shape[1], q=len(pairs), y=y, m0=m0, s0=s0, s_y=s_y)
    if model == "interaction_collapsed":
        D = np.column_stack([np.ones(len(y)), X, Xi])
        data.update(xtx=D.T @ D, xty=D.T @ y, yty=float(y @ y))
        names, program = ["tau_base", "tau_interaction", "sigma"], "interaction_collapsed"
        start = {k_: v for k_, v in start.items() if k_ in names}
    else:
        data.update(X=X, X_int=Xi)
        names, program = ["intercept", "tau_base", "tau_interaction", "sigma"], "interaction_rows"
        start = {}
elif model == "mixture":
    data = dict(n=len(y), p=X.shape[1], K=k, X=X, y=y, m0=m0, s0=s0, s_y=s_y,
                alpha=float(np.ravel(pr["weights"].parameters["a"])[0]))
    names, program = ["intercept", "beta", "sigma", "weights"], "mixture"
else:
    H = 3 if est.gate == "mlp" else 0
    data = dict(n=len(y), p=X.shape[1], K=k, H=H, X=X, y=y, m0=m0, s0=s0, s_y=s_y)
    names, program = ["intercept", "beta", "sigma"], "gated"
    if not H:
        start["gate_hidden_weights"] = np.zeros((X.shape[1], 0)).tolist()
        start["gate_hidden_bias"] = []
t_setup = time.perf_counter() - t_setup0
code = (stan_dir / f"{program}.stan").read_text()
t1 = time.perf_counter()
posterior = stan.build(code, data=data, random_seed=1)
t_compile = time.perf_counter() - t1
t2 = time.perf_counter()
inits = {"init": [start] * 4} if start else {}
fit = posterior.sample(num_chains=4, num_samples=1000, num_warmup=1000, **inits)
t_sample = time.perf_counter() - t2
import arviz_stats, xarray as xr
ds = xr.Dataset({
    nm: xr.DataArray(np.moveaxis(fit[nm].reshape(-1, 1000, 4), -1, 0).reshape(4, 1000, -1),
                     dims=("chain", "draw", f"{nm}_dim"))
    for nm in names
})
ess = float(min(arviz_stats.ess(ds[nm], sample_dims=["chain", "draw"]).min() for nm in names))
rhat = float(max(arviz_stats.rhat(ds[nm], sample_dims=["chain", "draw"]).max() for nm in names))
digest = hashlib.sha256(np.ascontiguousarray(ds[names[0]].values).tobytes()).hexdigest()[:12]
print(json.dumps(dict(import_s=0.0, setup_s=t_setup, fit_s=t_compile + t_sample,
                      compile_s=t_compile, sampling_s=t_sample,
                      wall_s=time.perf_counter() - t0, ess=ess, rhat=rhat,
                      divergences=int(np.sum(fit["divergent__"])), used="stan",
                      draws=digest)))
"""
)


def _wait_for_background(cache: Path, timeout: float) -> float:
    """Wait until no background compile runs in ``cache`` (``sampler="auto"``'s cold path)."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if not any(cache.glob("*/pending/runner.lock")):
            break
        time.sleep(0.5)
    return time.perf_counter() - start


def run_one(
    model: str,
    sampler: str,
    cache: Path,
    timeout: float,
    freeze: bool = False,
    code: str | None = None,
    sizes: str = "demo",
) -> dict:
    drop = ("PYTENSOR_FLAGS", "BAYESMOE_GC_FREEZE", "PYTHONPATH", "XDG_CACHE_HOME")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["BAYESMOE_CACHE_DIR"] = str(cache)
    env["BAYESMOE_GC_FREEZE"] = "1" if freeze else "0"
    env["XDG_CACHE_HOME"] = str(cache / "xdg")  # httpstan's compiled programs (Stan)
    # this checkout's bayesmoe, or another one's (the --reference)
    env["PYTHONPATH"] = code if code is not None else str(HERE.parent)
    args = [CHILD_STAN if sampler == "stan" else CHILD, model, sampler, sizes, str(HERE / "stan")]
    start = time.perf_counter()
    try:
        out = subprocess.run(
            [sys.executable, "-c", *args],
            env=env,
            cwd=cache.parent,  # not a checkout: `python -c` puts the cwd first on sys.path
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"status": f"timeout > {timeout:.0f} s"}
    process = time.perf_counter() - start
    if sampler == "auto":  # the next run is warm once the background compile is done
        _wait_for_background(cache, timeout)
    if out.returncode != 0:
        return {"status": "error: " + (out.stderr.strip().splitlines() or ["?"])[-1][:120]}
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["process_s"] = process
    row["other_s"] = row["fit_s"] - row["sampling_s"]  # compile, build, post-processing
    row["ess_per_s"] = (row["ess"] or 0.0) / row["sampling_s"] if row["sampling_s"] else None
    row["ess_per_process_s"] = (row["ess"] or 0.0) / process  # compile included
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
    parser.add_argument(
        "--sizes", choices=("demo", "issue"), default="demo", help="data sizes (module doc)"
    )
    parser.add_argument("--out", default=str(HERE / "results" / "first_fit"))
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
                        row = run_one(
                            model, sampler, cache, args.timeout, freeze, code, args.sizes
                        )
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
    cols = [
        "process_s",
        "import_s",
        "other_s",
        "sampling_s",
        "ess",
        "ess_per_s",
        "ess_per_process_s",
        "rhat",
    ]
    cols = [c for c in cols if c in df]
    keys = ["model", "sampler", "code", "gc_freeze", "cache"]
    # medians over the warm processes of a cell (one cold process each)
    table = df.groupby(keys, sort=False)[cols].median()
    table["runs"] = df.groupby(keys, sort=False).size()
    if "used" in df:
        table["used"] = df.groupby(keys, sort=False)["used"].agg(
            lambda v: ",".join(sorted(set(v.dropna())))
        )
    if "draws" in df:  # do a cell's warm runs give the draws of its cold run?
        cold = df[df["cache"] == "cold"].set_index(keys[:4])["draws"]
        same = df.groupby(keys, sort=False)["draws"].agg(lambda v: v.dropna().nunique() == 1)
        table["same_draws_as_cold"] = [
            (cold.get(k[:4]) == df.loc[df[keys].apply(tuple, axis=1) == k, "draws"]).all()
            and bool(same.get(k))
            for k in table.index
        ]
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
    stan = _stan_ratios(df)
    text = (
        f"sizes: {args.sizes}; {os.cpu_count()} CPUs\n"
        f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n\n"
        + table.to_string(float_format=lambda v: f"{v:.2f}")
        + f"\n\nwhole-process wall time / that of ({base_label}, gc_freeze={base_freeze}),"
        + " median over paired rounds:\n"
        + ratio.to_string(float_format=lambda v: f"{v:.3f}")
        + "\n"
        + stan
    )
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "first_fit.csv", index=False)
    (out / "first_fit.txt").write_text(text)
    return df


def _stan_ratios(df: pd.DataFrame) -> str:
    """Cold against cold: each backend's ESS per whole-process second over Stan's."""
    ok = df[(df["status"] == "ok") & (df["cache"] == "cold") & (df["code"] == "this")]
    if "stan" not in set(ok["sampler"]) or "ess_per_process_s" not in ok:
        return ""
    cell = ok.groupby(["model", "sampler"])["ess_per_process_s"].median().unstack()
    ratio = cell.drop(columns="stan").div(cell["stan"], axis=0)
    return (
        "\ncold vs cold: ESS per whole-process second (compile included) / Stan's:\n"
        + ratio.to_string(float_format=lambda v: f"{v:.2f}")
        + "\n"
    )


if __name__ == "__main__":
    main()
