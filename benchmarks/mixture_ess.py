"""Sampling efficiency of the mixtures at the defaults: min bulk ESS per draw (issue 17).

Issue 17's bar: a mixture of K = 3 linear regressions (n = 1000, 2 features, intercepts 4
apart, noise sd 0.5) reaches min bulk ESS >= 0.8 x draws at the defaults (4 x 1000) with
R-hat <= 1.01, and gated experts K = 2, 3 keep >= 0.7. For each configuration and seed the
script fits with the defaults (nutpie with its low-rank modified mass matrix) and, as the
in-run reference, with ``adaptation="diag"`` (the diagonal mass matrix the library used
before), and prints min bulk ESS / draws over the identified quantities,
max R-hat, divergences and the sampling seconds (``bayesmoe_fit_seconds``), with the
ratio of ESS per second of the two, and whether the component diagnosis flagged the fit
(every fit here has the true K: a flag would be false).

The mixture of regressions is fitted at the library's default ``alpha`` (0.1) and at the
issue's Dirichlet(1).

Usage::

    python benchmarks/mixture_ess.py                 # 5 seeds, about 4 minutes here
    python benchmarks/mixture_ess.py --seeds 2 --configs mixture-K3
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import pandas as pd

import bayesmoe as bm
from bayesmoe.experiments import make_mixture_data

#: name -> (estimator, K, features, rows, extra keyword arguments)
CONFIGS = {
    "mixture-K3": ("MixtureRegression", 3, 2, 1000, {}),
    "mixture-K3-alpha1": ("MixtureRegression", 3, 2, 1000, {"alpha": 1.0}),
    "gated-linear-K2": ("GatedExperts", 2, 3, 2000, {"gate": "linear"}),
    "gated-linear-K3": ("GatedExperts", 3, 3, 2000, {"gate": "linear"}),
}
BARS = {
    "mixture-K3": 0.8,
    "mixture-K3-alpha1": 0.8,
    "gated-linear-K2": 0.7,
    "gated-linear-K3": 0.7,
}


def one(config: str, seed: int, low_rank: bool) -> dict:
    name, K, p, n, extra = CONFIGS[config]
    if name == "MixtureRegression":
        data = make_mixture_data(n, K, p, gate=None, noise=0.5, separation=4.0, seed=seed)
        est = bm.MixtureRegression(n_components=K, **extra, random_seed=seed, progressbar=False)
    else:
        data = make_mixture_data(n, K, p, gate=extra["gate"], seed=seed)
        est = bm.GatedExperts(n_experts=K, **extra, random_seed=seed, progressbar=False)
    if not low_rank:
        est.set_params(fit_kwargs={"adaptation": "diag"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(data.X, data.y)
    report = est.check()
    seconds = est.idata_.attrs["bayesmoe_fit_seconds"]
    draws = est.idata_["posterior"].sizes["chain"] * est.idata_["posterior"].sizes["draw"]
    return {
        "config": config,
        "seed": seed,
        "mass matrix": "low-rank (default)" if low_rank else "diagonal",
        "min ESS / draw": round(report.min_ess_bulk / draws, 3),
        "max R-hat": round(report.max_rhat, 4),
        "divergences": report.divergences,
        "fit s": round(seconds, 1),
        "ESS/s": round(report.min_ess_bulk / seconds, 1),
        # a fit of the true K: any component message would be a false flag
        "flagged": bool(report.components),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent.parent / "benchmarks/results/mixture_ess"
    )
    args = parser.parse_args(argv)
    rows = []
    for config in args.configs:
        for seed in range(args.seeds):
            for low_rank in (True, False):
                rows.append(one(config, seed, low_rank))
                print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    table = df.groupby(["config", "mass matrix"]).agg(
        seeds=("seed", "size"),
        min_ess_per_draw_min=("min ESS / draw", "min"),
        min_ess_per_draw_median=("min ESS / draw", "median"),
        max_rhat=("max R-hat", "max"),
        divergences=("divergences", "sum"),
        ess_per_s_median=("ESS/s", "median"),
        flagged=("flagged", "sum"),
    )
    lines = []
    for config in args.configs:
        sub = df[df["config"] == config]
        lr = sub[sub["mass matrix"] != "diagonal"]
        diag = sub[sub["mass matrix"] == "diagonal"]
        ratio = (lr["ESS/s"].to_numpy() / diag["ESS/s"].to_numpy()).round(2)
        ok = (lr["min ESS / draw"] >= BARS[config]) & (lr["max R-hat"] <= 1.01)
        lines.append(
            f"{config}: bar min ESS/draw >= {BARS[config]} with R-hat <= 1.01 at the defaults: "
            f"{int(ok.sum())}/{len(lr)} seeds; ESS/s low-rank / diagonal per seed {ratio.tolist()}"
        )
    text = (
        f"{table.to_string()}\n\n"
        + "\n".join(lines)
        + f"\n\nper fit:\n{df.to_string(index=False)}\n"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mixture_ess.txt").write_text(text)
    df.to_csv(args.out / "mixture_ess.csv", index=False)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
