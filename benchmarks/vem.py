"""Variational EM against ADVI and NUTS: speed, held-out density, recovery, starts, memory.

Four parts, each printing a table (and appending its rows to a CSV under ``--out``):

``speed``
    Gated mixtures of experts (linear gate, K = 3, 5 features, well separated,
    ``make_mixture_data``) at n = 1e3, 1e4, 1e5. For ``vem``, full-batch ``advi`` (PyMC
    defaults: 20 000 iterations) and ``nuts`` (nutpie, 4 x 1000 + 1000): wall time of
    ``GatedExperts.fit`` and its fit seconds (inference only: the model build, which
    includes the MAP-EM start every method shares, is left out), and the mean held-out
    log predictive density per row on 5 000 new rows. Ratios are against ``vem`` in the same run.
``minibatch``
    Minibatch ADVI (``fit_kwargs={"minibatch": 1000}``) at n = 1e6 in a child process,
    whose peak resident memory (``ru_maxrss``) is reported, with n = 1e4 in another child
    for reference.
``recovery``
    The mixture issue's problems (n = 2000, 3 features; linear and mlp gate; K = 2, 3) on
    ``--seeds`` seeds: VEM's posterior means against the truth in units of q's posterior
    sd (intercepts, slopes), and held-out density against NUTS on the first
    ``--nuts-seeds`` seeds, where the truth is also measured in NUTS posterior sds.
``starts``
    NUTS (nutpie, defaults) with PyMC's default jittered start (``initvals=None``) vs
    ``init="vem"`` on linear-gate K = 2 seeds: max R-hat, min bulk ESS, divergences.

Usage::

    python benchmarks/vem.py                          # everything (about an hour here)
    python benchmarks/vem.py --parts speed --sizes 1000,10000
    python benchmarks/vem.py --parts recovery --seeds 10 --nuts-seeds 2
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "vem"
K_SPEED, P_SPEED, N_TEST = 3, 5, 5000
PARTS = ("speed", "minibatch", "recovery", "starts")


def _mixtures_benchmark():
    name = "_bayesmoe_benchmark_mixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "mixtures.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _fit(est, X, y) -> float:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    return time.perf_counter() - start


def _lpd(est, test) -> float:
    return est.log_predictive_density(test.X, test.y) / len(test.y)


def _print(df: pd.DataFrame, title: str) -> None:
    print(f"\n## {title}\n")
    print(df.to_markdown(index=False, floatfmt=".4g"))
    sys.stdout.flush()


def _save(df: pd.DataFrame, out: Path, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.csv.tmp"
    df.to_csv(tmp, index=False)
    tmp.replace(out / f"{name}.csv")


# ----------------------------------------------------------------------------- speed
def part_speed(
    sizes: list[int], methods: list[str], nuts_max_n: int, seed: int, out: Path
) -> pd.DataFrame:
    """One row per (n, method); rows already in ``out/speed.csv`` are kept, not refitted."""
    import bayesmoe as bm
    from bayesmoe.experiments import make_mixture_data

    path = out / "speed.csv"
    rows = pd.read_csv(path).to_dict("records") if path.exists() else []
    done = {(int(r["n"]), r["method"]) for r in rows}
    for n in sizes:
        data = make_mixture_data(n, K_SPEED, P_SPEED, gate="linear", seed=seed)
        test = data.new_rows(N_TEST, seed=seed + 1)
        for method in methods:
            if (method == "nuts" and n > nuts_max_n) or (n, method) in done:
                continue
            est = bm.GatedExperts(
                n_experts=K_SPEED,
                method=method,
                random_seed=seed,
                progressbar=False,
                log_likelihood=False,  # n x 4000 draws; held-out density is what we compare
            )
            wall = _fit(est, data.X, data.y)
            fit_s = float(est.idata_.attrs["bayesmoe_fit_seconds"])
            row = dict(n=n, method=method, wall_s=wall, fit_s=fit_s, heldout_lpd=_lpd(est, test))
            rows.append(row)
            _save(pd.DataFrame(rows), out, "speed")
            print(row, flush=True)
    df = pd.DataFrame(rows)
    df = df[df.n.isin(sizes) & df.method.isin(methods)].sort_values(["n", "method"])
    ref = df[df.method == "vem"].set_index("n")
    df["fit_s / vem"] = df.fit_s / df.n.map(ref.fit_s)
    df["wall_s / vem"] = df.wall_s / df.n.map(ref.wall_s)
    df["lpd - vem"] = df.heldout_lpd - df.n.map(ref.heldout_lpd)
    return df


# ----------------------------------------------------------------------------- minibatch
def _minibatch_child(n: int, batch: int, seed: int, queue) -> None:
    import bayesmoe as bm
    from bayesmoe.experiments import make_mixture_data

    data = make_mixture_data(n, K_SPEED, P_SPEED, gate="linear", seed=seed)
    test = data.new_rows(N_TEST, seed=seed + 1)
    est = bm.GatedExperts(
        n_experts=K_SPEED,
        method="advi",
        random_seed=seed,
        progressbar=False,
        log_likelihood=False,
        fit_kwargs={"minibatch": batch},
    )
    wall = _fit(est, data.X, data.y)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    queue.put(
        dict(
            n=n,
            batch=batch,
            wall_s=wall,
            fit_s=float(est.idata_.attrs["bayesmoe_fit_seconds"]),
            heldout_lpd=_lpd(est, test),
            peak_rss_gib=peak,
        )
    )


def part_minibatch(sizes: list[int], batch: int, seed: int) -> pd.DataFrame:
    ctx = mp.get_context("spawn")
    rows = []
    for n in sizes:
        queue = ctx.Queue()
        proc = ctx.Process(target=_minibatch_child, args=(n, batch, seed, queue))
        proc.start()
        proc.join()
        row = queue.get() if proc.exitcode == 0 else dict(n=n, batch=batch, error=proc.exitcode)
        rows.append(row)
        print(row, flush=True)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- recovery
def part_recovery(configs: list[str], seeds: int, nuts_seeds: int) -> pd.DataFrame:
    from bayesmoe.experiments import make_mixture_data

    mix = _mixtures_benchmark()
    rows = []
    for config in configs:
        K, gate = mix.CONFIGS[config]
        for seed in range(seeds):
            data = make_mixture_data(mix.N_ROWS, K, mix.N_FEATURES, gate=gate, seed=seed)
            test = data.new_rows(N_TEST, seed=seed + 1000)
            est = mix.make_estimator(config, "nutpie", seed, 1000, 1000, 4)
            est.set_params(method="vem")
            wall = _fit(est, data.X, data.y)
            truth = mix.identified_truth(est, data)
            post = est.working_view()["posterior"]
            z = []
            for name in ("intercept", "beta"):
                m = post[name].mean(("chain", "draw")).values
                s = post[name].std(("chain", "draw")).values
                z.append(np.abs(m - truth[name]).ravel() / s.ravel())
            z = np.concatenate(z)
            row = dict(
                config=config,
                seed=seed,
                vem_s=wall,
                n_coef=z.size,
                max_z_q=z.max(),
                beyond_3sd_q=int((z > 3).sum()),
                vem_lpd=_lpd(est, test),
            )
            if seed < nuts_seeds:
                nuts = mix.make_estimator(config, "nutpie", seed, 1000, 1000, 4)
                row["nuts_s"] = _fit(nuts, data.X, data.y)
                row["nuts_lpd"] = _lpd(nuts, test)
                row["lpd_rel_diff_%"] = (
                    100 * (row["vem_lpd"] - row["nuts_lpd"]) / abs(row["nuts_lpd"])
                )
                # VEM means in units of the exact (NUTS) posterior sd, labels matched.
                npost = nuts.working_view()["posterior"]
                nb = {k: npost[k].mean(("chain", "draw")).values for k in ("intercept", "beta")}
                perm = mix._expert_permutation(
                    nb, post["intercept"].mean(("chain", "draw")).values,
                    post["beta"].mean(("chain", "draw")).values,
                )  # fmt: skip
                inv = np.argsort(perm)
                zn, zt = [], []
                truth_n = mix.identified_truth(nuts, data)
                for name in ("intercept", "beta"):
                    m = post[name].mean(("chain", "draw")).values[inv]
                    sn = npost[name].std(("chain", "draw")).values
                    zn.append(np.abs(m - truth_n[name]).ravel() / sn.ravel())
                    zt.append(np.abs(nb[name] - truth_n[name]).ravel() / sn.ravel())
                row["max_z_vem_nuts_sd"] = np.concatenate(zn).max()
                row["max_z_nuts"] = np.concatenate(zt).max()
                row["q_sd / nuts_sd (median)"] = float(
                    np.median(
                        np.concatenate(
                            [
                                post[k].std(("chain", "draw")).values[inv].ravel()
                                / npost[k].std(("chain", "draw")).values.ravel()
                                for k in ("intercept", "beta")
                            ]
                        )
                    )
                )
            rows.append(row)
            print(row, flush=True)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- starts
def part_starts(seeds: int, config: str = "linear-K2") -> pd.DataFrame:
    mix = _mixtures_benchmark()
    rows = []
    for seed in range(seeds):
        starts = (("pymc default (jitter)", {"initvals": None}), ("vem", {"init": "vem"}))
        for label, kwargs in starts:
            r = mix.run_seed(config, "nutpie", seed, fit_kwargs=kwargs)
            row = {
                "config": config,
                "seed": seed,
                "start": label,
                **{k: r[k] for k in ("fit_s", "max_rhat", "min_ess_bulk", "divergences")},
                "passed": r["passed"],
                "coverage": f"{r['covered']}/{r['n_truth']}",
            }
            rows.append(row)
            print(row, flush=True)
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--methods", default="vem,advi,nuts")
    p.add_argument("--nuts-max-n", type=int, default=100_000)
    p.add_argument("--minibatch-sizes", default="10000,1000000")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--configs", default="linear-K2,linear-K3,mlp-K2,mlp-K3")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--nuts-seeds", type=int, default=2)
    p.add_argument("--start-seeds", type=int, default=5)
    p.add_argument("--start-config", default="linear-K2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    parts = [s for s in args.parts.split(",") if s]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"unknown parts {unknown}; choose from {list(PARTS)}")
    ints = lambda text: [int(float(s)) for s in text.split(",") if s]  # noqa: E731
    if "speed" in parts:
        df = part_speed(
            ints(args.sizes), args.methods.split(","), args.nuts_max_n, args.seed, args.out
        )
        _print(df, "Speed and held-out log predictive density per row (K=3, 5 features)")
        big = df[df.n == df.n.max()].set_index("method")
        if {"vem", "advi"} <= set(big.index):
            fit_ratio = big.fit_s["advi"] / big.fit_s["vem"]
            wall_ratio = big.wall_s["advi"] / big.wall_s["vem"]
            print(
                f"\nn = {df.n.max()}: vem is {fit_ratio:.0f}x faster than full-batch ADVI "
                f"(fit seconds; {wall_ratio:.0f}x end to end), held-out lpd "
                f"{big.heldout_lpd['vem']:.4f} vs "
                f"{big.heldout_lpd['advi']:.4f} (target: >= 50x, lpd >=)"
            )
    if "minibatch" in parts:
        df = part_minibatch(ints(args.minibatch_sizes), args.batch, args.seed)
        _save(df, args.out, "minibatch")
        _print(df, f"Minibatch ADVI (batch {args.batch}): peak memory (target < 4 GiB at 1e6)")
    if "recovery" in parts:
        df = part_recovery(args.configs.split(","), args.seeds, args.nuts_seeds)
        _save(df, args.out, "recovery")
        _print(df, "VEM recovery on the mixture issue's problems (n = 2000, 3 features)")
    if "starts" in parts:
        df = part_starts(args.start_seeds, args.start_config)
        _save(df, args.out, f"starts_{args.start_config}")
        _print(df, "NUTS from PyMC's default start vs init='vem'")


if __name__ == "__main__":
    main()
