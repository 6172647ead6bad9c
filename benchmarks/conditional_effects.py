"""Do the views' credible bands cover the truth? Coverage of the true conditional mean and
of the true gate probabilities, over replicated simulated data sets.

* ``conditional_effects(est, "x0:x1")`` of an :class:`~bayesmoe.InteractionRegression` on
  the demo's interaction data (``make_interaction_data(n, 6, 1.0, 0.3)``): the true
  conditional mean at each grid point is the generating mean with ``x0``, ``x1`` at the
  grid values and the other features at the held values (their data means).
* ``plot_gate(est, "x0")`` of a :class:`~bayesmoe.GatedExperts` (K = 2) on two-regime data
  with one gate feature (``make_mixture_data(n, 2, 1, gate="linear")``): the true
  :math:`\\pi_k(x)` at each grid point, fit experts matched to true experts by their
  posterior-mean lines.

For each replicate the share of grid points whose band holds the truth; the table reports
the mean share over replicates with its Monte Carlo standard error (sd / sqrt(reps)) next
to the band's nominal probability (the expected coverage).

    python benchmarks/conditional_effects.py --reps 10
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings

import numpy as np
import pandas as pd

import bayesmoe as bm
from bayesmoe.experiments import make_interaction_data, make_mixture_data


def interaction_coverage(seed: int, n: int, settings: dict, prob: float) -> float:
    data = make_interaction_data(n, 6, 1.0, 0.3, seed=seed)
    est = bm.InteractionRegression(**settings).fit(data.X, data.y)
    ce = bm.conditional_effects(est, "x0:x1", prob=prob, plot=False)
    grid = pd.DataFrame({**ce.attrs["held"], "x0": ce["x0"], "x1": ce["x1"]})
    truth = dataclasses.replace(data, X=grid[list(data.X.columns)]).signal
    return float(np.mean((ce["lower"] <= truth) & (truth <= ce["upper"])))


def gate_coverage(seed: int, n: int, settings: dict, prob: float) -> float:
    data = make_mixture_data(n, 2, 1, gate="linear", seed=seed)
    est = bm.GatedExperts(n_experts=2, **settings).fit(data.X, data.y)
    view = bm.plot_gate(est, "x0", prob=prob, plot=False)
    experts = list(est.model_.coords["expert"])
    x = view.loc[view["quantity"] == "gate", "x0"].unique()
    X = pd.DataFrame({**view.attrs["held"], "x0": x})[list(data.X.columns)].to_numpy()
    true_pi, true_mu = data.gate_probabilities(X), data.expert_means(X)
    fit_mu = np.column_stack(
        [view.query("quantity == 'expert_mean' and expert == @k")["mean"] for k in experts]
    )
    # the fit's expert j is the true expert perm[j] (2 experts: identity or swap)
    perms = [(0, 1), (1, 0)]
    perm = min(perms, key=lambda p: ((fit_mu - true_mu[:, list(p)]) ** 2).sum())
    hits = []
    for j, k in enumerate(experts):
        band = view[(view["quantity"] == "gate") & (view["expert"] == k)]
        truth = true_pi[:, perm[j]]
        hits.append((band["lower"].to_numpy() <= truth) & (truth <= band["upper"].to_numpy()))
    return float(np.mean(hits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--prob", type=float, default=0.9)
    parser.add_argument("--draws", type=int, default=500)
    args = parser.parse_args()
    settings = dict(sampler="pymc", draws=args.draws, tune=args.draws, chains=2, progressbar=False)
    rows = []
    for name, run in (
        ("conditional_effects x0:x1", interaction_coverage),
        ("plot_gate pi(x0)", gate_coverage),
    ):
        shares = []
        for rep in range(args.reps):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                shares.append(run(rep, args.n, {**settings, "random_seed": rep}, args.prob))
        shares = np.array(shares)
        rows.append(
            {
                "view": name,
                "reps": args.reps,
                "expected": args.prob,
                "coverage": shares.mean(),
                "mcse": shares.std(ddof=1) / np.sqrt(args.reps),
                "min_rep": shares.min(),
            }
        )
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
