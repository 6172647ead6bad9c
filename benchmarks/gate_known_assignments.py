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
"""

from __future__ import annotations

import sys
import time

import arviz as az
import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesmoe.builders.mixture import _gate_grid
from bayesmoe.experiments import make_mixture_data
from bayesmoe.priors import GATE_HIDDEN_SD, GATE_SD

N_ROWS, N_FEATURES, HIDDEN, PROB = 2000, 3, 3, 0.94


def gate_posterior(seed: int, draws: int = 1000, tune: int = 1000) -> dict:
    data = make_mixture_data(N_ROWS, 2, N_FEATURES, gate="mlp", seed=seed)
    X = data.X.to_numpy()
    mean, scale = X.mean(0), X.std(0)
    G = (X - mean) / scale
    grid = _gate_grid(G)
    truth = data.gate_probabilities(grid * scale + mean)[:, 0]
    with pm.Model() as model:
        W = pm.Normal("W", 0, GATE_HIDDEN_SD, shape=(N_FEATURES, HIDDEN))
        a = pm.Normal("a", 0, GATE_HIDDEN_SD, shape=HIDDEN)
        V = pm.Normal("V", 0, GATE_SD, shape=(HIDDEN, 1))
        c = pm.Normal("c", 0, GATE_SD, shape=1)

        def logits(Z):
            free = pt.tanh(Z @ W + a) @ V + c
            return pt.concatenate([free, pt.zeros((Z.shape[0], 1))], axis=1)  # reference expert

        pm.Categorical("z", logit_p=logits(pt.as_tensor(G)), observed=data.z)
        pm.Deterministic("p", pt.special.softmax(logits(pt.as_tensor(grid)), axis=-1)[:, 0])
    start = time.perf_counter()
    idata = pm.sample(
        draws,
        tune=tune,
        chains=4,
        target_accept=0.95,
        random_seed=seed,
        nuts_sampler="nutpie",
        progressbar=False,
        model=model,
    )
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
        "grid": len(grid),
        "count_dev_sd": float(((data.z == 0).sum() - pi.sum()) / np.sqrt((pi * (1 - pi)).sum())),
    }


def main(argv=None) -> None:
    seeds = [int(s) for s in (argv if argv is not None else sys.argv[1:])] or [5, 2, 7]
    np.set_printoptions(precision=3, suppress=True, linewidth=160)
    for seed in seeds:
        r = gate_posterior(seed)
        print(
            f"seed {seed}: {r['misses']}/{r['grid']} grid points outside the {PROB:.0%} ETI "
            f"(gate fitted on the TRUE assignments; max R-hat {r['max_rhat']:.4f}, "
            f"{r['seconds']:.0f} s); expert-1 count - expected = {r['count_dev_sd']:+.2f} sd"
        )
        print("  true pi_1(x) ", r["truth"])
        print("  posterior mean", r["mean"])
        print("  z-score       ", r["z"], flush=True)


if __name__ == "__main__":
    main()
