"""Simulation-based calibration of every model: ranks, band check, PNG plots.

    python benchmarks/sbc.py                      # 200 simulations of every case
    python benchmarks/sbc.py --sims 50 --cases interaction_half_cauchy mixture

For each case (bayesmoe.experiments.calibration.sbc_cases) it prints one row per
quantity: the mean and sd of the ranks against their values under uniformity (the
reference computed in the same run: L/2 and sqrt(((L+1)^2-1)/12) for L posterior draws)
and whether the rank ECDF stays inside ArviZ's 99% simultaneous band. It writes
``OUT/sbc_<case>.png`` (Δ-ECDF with the band),
``OUT/sbc_ranks_<case>.png`` (rank histograms), ``OUT/sbc_ranks_<case>.csv`` and
``OUT/sbc_summary.csv``. The same runs, at fewer simulations, are the ``sbc``-marked
tests (tests/test_calibration.py).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bayesmoe.experiments.calibration import (
    SBC_BAND_PROB,
    ecdf_band,
    run_sbc,
    sbc_cases,
)


def plot_result(result, out: Path) -> None:
    """Δ-ECDF of each quantity's PIT values inside the band the test uses, and rank bars.

    (arviz_plots.plot_ecdf_pit(method="envelope") fails in arviz_plots 1.3.2, so the
    band from arviz_stats.ecdf_utils.ecdf_pit is drawn here directly.)
    """
    names = list(result.ranks)
    cols = 4
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        x, ecdf, lower, upper = ecdf_band(result.pit[name])
        ax.fill_between(x, lower - x, upper - x, color="0.85", step="post")
        ax.step(x, ecdf - x, where="post", color="C3" if result.outside[name] else "C0")
        ax.axhline(0, color="0.5", lw=0.5)
        ax.set_title(name, fontsize=8)
    for ax in axes.ravel()[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(
        f"SBC {result.case}: Δ-ECDF of {len(result.ranks[names[0]])} ranks "
        f"(grey: {SBC_BAND_PROB:.0%} simultaneous band; red: leaves it)"
    )
    fig.tight_layout()
    fig.savefig(out / f"sbc_{result.case}.png", dpi=80)
    plt.close(fig)

    names = list(result.ranks)
    cols = 4
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    bins = np.linspace(-0.5, result.n_posterior + 0.5, 21)
    for ax, name in zip(axes.ravel(), names, strict=False):
        r = result.ranks[name]
        ax.hist(r, bins=bins, color="C0", alpha=0.8)
        expected = len(r) / (len(bins) - 1)
        sd = np.sqrt(expected * (1 - 1 / (len(bins) - 1)))
        ax.axhspan(expected - 2.58 * sd, expected + 2.58 * sd, color="0.8", zorder=0)
        ax.set_title(name, fontsize=8)
    for ax in axes.ravel()[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(f"SBC ranks, {result.case} (grey: pointwise 99% band per bin)")
    fig.tight_layout()
    fig.savefig(out / f"sbc_ranks_{result.case}.png", dpi=80)
    plt.close(fig)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cases = sbc_cases()
    parser.add_argument("--sims", type=int, default=200)
    parser.add_argument("--cases", nargs="*", default=list(cases), choices=list(cases))
    parser.add_argument("--draws", type=int, default=250)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--thin", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("sbc_results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = run_sbc(
                cases[name],
                args.sims,
                draws=args.draws,
                tune=args.tune,
                chains=args.chains,
                thin=args.thin,
                seed=args.seed,
            )
        table = pd.DataFrame(result.table())
        table["seconds"] = result.seconds
        table["failed_fits"] = result.failed
        table["fits_rhat_gt_1.01"] = int(np.sum(result.max_rhat > 1.01))
        table["fits_with_divergences"] = int(np.sum(result.divergences > 0))
        rows.append(table)
        pd.DataFrame(result.ranks).to_csv(args.out / f"sbc_ranks_{name}.csv", index=False)
        plot_result(result, args.out)
        print(table.drop(columns=["case"]).to_string(index=False, float_format="%.3g"))
        print(f"{name}: {'PASS' if result.ok else 'FAIL'} in {result.seconds:.0f} s\n", flush=True)
    summary = pd.concat(rows, ignore_index=True)
    summary.to_csv(args.out / "sbc_summary.csv", index=False)
    return summary


if __name__ == "__main__":
    main()
