"""Where do the mlp gate's coverage misses come from? Fit the gate with the labels known.

``benchmarks/mixtures.py`` finds that on some seeds the 94% intervals of the mlp gate's
probabilities pi(x) miss the truth at many grid points at once. Two explanations:

* the mixture fit is wrong (labels switched, a sampler stuck in one mode), or
* the data themselves point elsewhere: each row's expert is a random draw from pi(x), and a
  data set whose draws happen to fall one way moves the whole posterior gate that way.

This script removes the mixture: it fits the gate alone, a Bayesian softmax network on the
*true* assignments z (the same architecture, priors, working scale and grid as
``GatedExperts(gate="mlp", gate_hidden=3)``), by NUTS. If this posterior misses the truth at
the same points, the misses come from the data and the prior, not from the mixture fit.
It also prints how far the realised count of each expert is from its expectation
sum_i pi_k(x_i), in binomial standard deviations.

Usage::

    python benchmarks/gate_known_assignments.py 5 2 7      # seeds (the bad ones in mixtures.py)
    python benchmarks/gate_known_assignments.py 5 2 --prior generator   # the generator's scales
    python benchmarks/gate_known_assignments.py 5 2 --adaptation low_rank --chains 8
    python benchmarks/gate_known_assignments.py --seed-range 0 30 --adaptation low_rank \\
        --csv benchmarks/results/mixtures/gate_known_assignments.csv  # resumable; prints total
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import arviz as az
import numpy as np
import nutpie
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from bayesmoe.builders.mixture import _gate_grid
from bayesmoe.experiments import make_mixture_data
from bayesmoe.priors import GATE_HIDDEN_SD, GATE_SD

N_ROWS, N_FEATURES, HIDDEN, PROB = 2000, 3, 3, 0.94


#: Prior sds of the gate: the library's defaults, or the generator's own scales
#: (``make_mixture_data``: hidden weights N(0, 1), hidden bias N(0, 0.5^2), output weights
#: N(0, 2^2), output intercept N(0, 0.5^2)), under which coverage is nominal on average over
#: data sets if the sampler is right.
PRIORS = {
    "default": {"W": GATE_HIDDEN_SD, "a": GATE_HIDDEN_SD, "V": GATE_SD, "c": GATE_SD},
    "generator": {"W": 1.0, "a": 0.5, "V": 2.0, "c": 0.5},
}


def gate_posterior(
    seed: int,
    draws: int = 1000,
    tune: int = 1000,
    *,
    chains: int = 4,
    prior: str = "default",
    adaptation: str = "diag",
) -> dict:
    data = make_mixture_data(N_ROWS, 2, N_FEATURES, gate="mlp", seed=seed)
    X = data.X.to_numpy()
    mean, scale = X.mean(0), X.std(0)
    G = (X - mean) / scale
    grid = _gate_grid(G)
    truth = data.gate_probabilities(grid * scale + mean)[:, 0]
    with pm.Model() as model:
        sd = PRIORS[prior]
        W = pm.Normal("W", 0, sd["W"], shape=(N_FEATURES, HIDDEN))
        a = pm.Normal("a", 0, sd["a"], shape=HIDDEN)
        V = pm.Normal("V", 0, sd["V"], shape=(HIDDEN, 1))
        c = pm.Normal("c", 0, sd["c"], shape=1)

        def logits(Z):
            free = pt.tanh(Z @ W + a) @ V + c
            return pt.concatenate([free, pt.zeros((Z.shape[0], 1))], axis=1)  # reference expert

        pm.Categorical("z", logit_p=logits(pt.as_tensor(G)), observed=data.z)
        pm.Deterministic("p", pt.special.softmax(logits(pt.as_tensor(grid)), axis=-1)[:, 0])
    start = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    idata = nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        target_accept=0.95,
        adaptation=adaptation,
        progress_bar=False,
    )
    steps = idata.sample_stats["n_steps"].values
    p = idata.posterior["p"].values.reshape(-1, len(grid))
    lo, hi = np.quantile(p, [(1 - PROB) / 2, (1 + PROB) / 2], axis=0)
    pi = data.gate_probabilities(X)[:, 0]
    return {
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "max_rhat": float(az.rhat(idata, var_names=["p"])["p"].max()),
        "truth": truth,
        "mean": p.mean(0),
        "z": (p.mean(0) - truth) / p.std(0),
        "misses": int(((truth < lo) | (truth > hi)).sum()),
        # each draw as a pseudo-truth: the reference for clustered misses (mixtures.py)
        "ref_hist": np.bincount(((p < lo) | (p > hi)).sum(axis=1), minlength=len(grid) + 1),
        "mean_steps": float(steps.mean()),
        "min_ess": float(az.ess(idata, var_names=["p"])["p"].min()),
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "grid": len(grid),
        "count_dev_sd": float(((data.z == 0).sum() - pi.sum()) / np.sqrt((pi * (1 - pi)).sum())),
    }


def _read_csv(path: Path | None) -> pd.DataFrame:
    if path is None or not path.exists():
        return pd.DataFrame()
    return pd.read_csv(path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("seeds", type=int, nargs="*", default=[5, 2, 7])
    p.add_argument("--seed-range", type=int, nargs=2, metavar=("FIRST", "STOP"))
    p.add_argument("--prior", choices=sorted(PRIORS), default="default")
    p.add_argument("--adaptation", choices=["diag", "low_rank"], default="diag")
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--csv", type=Path, help="append one row per seed; seeds already there skip")
    args = p.parse_args(argv)
    seeds = list(range(*args.seed_range)) if args.seed_range else args.seeds
    np.set_printoptions(precision=3, suppress=True, linewidth=160)
    done = _read_csv(args.csv)
    same = ["prior", "adaptation", "chains"]
    if not done.empty:
        mine = (done[same] == pd.Series(vars(args))[same]).all(axis=1)
        done = done[mine]
    for seed in seeds:
        if not done.empty and seed in set(done["seed"]):
            continue
        r = gate_posterior(seed, chains=args.chains, prior=args.prior, adaptation=args.adaptation)
        print(
            f"seed {seed}: {r['misses']}/{r['grid']} grid points outside the {PROB:.0%} ETI "
            f"(gate fitted on the TRUE assignments, prior {args.prior}, {args.chains} chains, "
            f"{args.adaptation} mass matrix; max R-hat {r['max_rhat']:.4f}, min ESS "
            f"{r['min_ess']:.0f}, {r['divergences']} div, {r['mean_steps']:.0f} leapfrog steps "
            f"per draw, {r['seconds']:.0f} s); expert-1 count - expected = "
            f"{r['count_dev_sd']:+.2f} sd"
        )
        print("  true pi_1(x) ", r["truth"])
        print("  posterior mean", r["mean"])
        print("  z-score       ", r["z"], flush=True)
        row = {k: r[k] for k in ("seed", "misses", "grid", "max_rhat", "min_ess")}
        row |= {k: r[k] for k in ("divergences", "mean_steps", "seconds", "count_dev_sd")}
        row |= {k: getattr(args, k) for k in same}
        row["ref_hist"] = " ".join(map(str, r["ref_hist"]))
        done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
        if args.csv is not None:
            header = not args.csv.exists()
            pd.DataFrame([row]).to_csv(args.csv, mode="a", header=header, index=False)
    summarise(done[done["seed"].isin(seeds)] if not done.empty else done)


def summarise(df: pd.DataFrame) -> None:
    """Total misses over seeds against the clustered reference (see ``mixtures.py``)."""
    if df.empty:
        return
    from mixtures import coverage_p_value

    hists = [np.array(h.split(), int) for h in df["ref_hist"]]
    misses, grid = int(df["misses"].sum()), int(df["grid"].sum())
    p_value, expected = coverage_p_value(misses, hists)
    print(
        f"\n{len(df)} seeds: {misses}/{grid} grid points missed, ETI coverage "
        f"{1 - misses / grid:.1%} (nominal {PROB:.0%}); reference (posterior draws as "
        f"truths) expects {expected:.1f} misses, P(>= {misses}) = {p_value:.3f}; seeds with "
        f"|count deviation| > 2 sd: {int((df['count_dev_sd'].abs() > 2).sum())} "
        f"(expected {0.0455 * len(df):.1f}); max R-hat {df['max_rhat'].max():.4f}, "
        f"{int(df['divergences'].sum())} divergences"
    )


if __name__ == "__main__":
    main()
