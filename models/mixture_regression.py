"""Finite mixture of linear regressions (constant mixing weights) on simulated data.

Simulates K linear experts mixed with Dirichlet weights that do not depend on x
(``bayesmoe.experiments.make_mixture_data(gate=None)``), fits
``bayesmoe.MixtureRegression`` and prints

* the sampling diagnostics (R-hat, bulk ESS, divergences),
* the posterior summary (working scale) next to the true values, with the simulated
  experts relabelled to match the fit,
* the held-out log predictive density against a single ``InteractionRegression`` and the
  generating model itself,

and writes ``mixture_regression.png`` (data coloured by responsibility, expert lines with
94% bands, mixing weights with 94% bands, truth dashed) into ``--out``.

    python models/mixture_regression.py --draws 1000 --tune 1000
    python models/mixture_regression.py --components 3 --x-dim 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

# the shared printing and plotting helpers live in the gated-experts script next door
from gated_experts import match_experts, report

import bayesmoe as bm
from bayesmoe.experiments import make_mixture_data

SAMPLE_DIMS = ("chain", "draw")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--sampler", default="nutpie")
    parser.add_argument("--components", type=int, default=2, help="K, for data and model")
    parser.add_argument("--alpha", type=float, default=1.0, help="Dirichlet concentration")
    parser.add_argument("--n", type=int, default=500, help="training rows")
    parser.add_argument("--n-test", type=int, default=2000, help="held-out rows")
    parser.add_argument("--x-dim", type=int, default=1)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="folder for the PNG (temp dir)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.x_dim < 1:
        parser.error("--x-dim must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = make_mixture_data(
        args.n, args.components, args.x_dim, gate=None, noise=args.noise, seed=args.seed
    )
    test = data.new_rows(args.n_test, seed=args.seed + 1)
    settings = dict(
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        sampler=args.sampler,
        random_seed=args.seed,
        progressbar=not args.no_progress,
    )
    est = bm.MixtureRegression(n_components=args.components, alpha=args.alpha, **settings).fit(
        data.X, data.y
    )
    baseline = bm.InteractionRegression(**settings).fit(data.X, data.y)

    perm, truth = match_experts(est, data)
    title = f"MixtureRegression: K={args.components}, n={args.n}"
    report(est, baseline, "mixture regression", data, test, perm, truth, args, title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
