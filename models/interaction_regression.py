"""Hierarchical interaction regression on the seed's simulated data.

Fits base effects plus all pairwise interactions with learned (half-Cauchy) prior scales
and prints the ArviZ summary of the scales and the noise, next to the true values.

    python models/interaction_regression.py --draws 1000 --tune 1000
"""

import argparse

import numpy as np

import bayesmoe as bm
from bayesmoe.experiments import make_interaction_data


def main(args: argparse.Namespace) -> None:
    data = make_interaction_data(
        args.n,
        x_dim=args.x_dim,
        noise_level=args.noise,
        interaction_scale=args.interaction_scale,
        seed=args.seed,
    )
    est = bm.InteractionRegression(
        prior=args.prior,
        standardize=False,  # keep the raw scale so the scales compare with the truth
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        sampler=args.sampler,
        random_seed=args.seed,
    ).fit(data.X, data.y)
    print(est.summary(var_names=["tau_base", "tau_interaction", "sigma"]).to_string())
    print(
        f"true: rms base weight {np.sqrt(np.mean(data.w_base**2)):.3f}, rms interaction weight "
        f"{np.sqrt(np.mean(data.w_interaction**2)):.3f}, noise {data.noise_level:.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--sampler", default="nutpie")
    parser.add_argument("--prior", default="half_cauchy")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--x-dim", type=int, default=6)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--interaction-scale", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    main(parser.parse_args())
