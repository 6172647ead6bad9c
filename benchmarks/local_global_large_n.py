"""The local-global priors at the defaults from 1e3 to 1e6 rows: divergences, R-hat, time.

A default that converges at toy size and not at real size is a bug. This fits
``InteractionRegression(prior=...)`` at the estimator's defaults (nutpie, 4 chains x 1000
draws after 1000 tuning steps, collapsed form, each family's own ``target_accept``) on
simulated data of ``--sizes`` rows, 6 uniform features, noise sd 1, in two scenarios:

* ``sparse``: 2 of the 15 interactions non-zero (0.8 and -0.5), base weights
  (0.5, -0.4, 0.3, 0, 0.2, -0.6);
* ``dense``: the same base weights, every interaction drawn from U(-0.5, 0.5).

Per (scenario, prior, rows) over ``--seeds`` data sets: the worst max R-hat, the divergent
fraction of all draws, the smallest bulk ESS, and the median fit time as a ratio to the
one-scale half-Cauchy model on the same data (the reference, fitted in the same run).
``--targets`` adds fits of the local-global priors at other target acceptances.

Usage::

    python benchmarks/local_global_large_n.py                         # 1e3 .. 1e6, 3 seeds
    python benchmarks/local_global_large_n.py --sizes 1000 1000000 --seeds 1   # quick

Writes ``large_n.csv``, ``large_n.txt`` and ``large_n.png`` to ``--out`` (default
``benchmarks/results/local_global``); ``--before CSV`` overlays an earlier run in the figure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from target_accept import convergence_table, one_fit

PRIORS = ("half_cauchy", "horseshoe", "r2d2")
BASE = np.array([0.5, -0.4, 0.3, 0.0, 0.2, -0.6])


def simulate(scenario: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, n])
    X = rng.uniform(-1, 1, size=(n, BASE.size))
    a, b = np.triu_indices(BASE.size, k=1)
    if scenario == "sparse":
        w_int = np.zeros(a.size)
        w_int[[0, 9]] = 0.8, -0.5  # x0:x1 and x2:x3
    else:
        w_int = np.random.default_rng(seed).uniform(-0.5, 0.5, a.size)
    y = X @ BASE + (X[:, a] * X[:, b]) @ w_int + rng.normal(size=n)
    return X, y


def plot(df: pd.DataFrame, path: Path, before: pd.DataFrame | None = None) -> None:
    """Divergent % and time over the one-scale model's by rows, per scenario and prior at
    its default target acceptance (``before``: an earlier run's CSV, dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    runs = [(df, "-", "")] + ([(before, "--", " (before)")] if before is not None else [])
    for run, style, label in runs:
        run = run[run["target_accept"].astype(str) == "default"]
        for (scenario, prior), g in run.groupby(["scenario", "prior"]):
            if prior == "half_cauchy":
                continue
            color = {"horseshoe": "C0", "r2d2": "C1"}.get(prior, "C2")
            marker = "o" if scenario == "sparse" else "s"
            by_n = g.groupby("n")
            pct = 100 * by_n["divergences"].sum() / by_n["draws"].sum()
            axes[0].plot(pct.index, pct, style, color=color, marker=marker,
                         label=f"{prior}, {scenario}{label}")  # fmt: skip
            if "time_ratio" in g:
                ratio = by_n["time_ratio"].median()
                axes[1].plot(ratio.index, ratio, style, color=color, marker=marker)
    axes[0].axhline(0.1, color="k", lw=0.8, ls=":")
    axes[0].set_ylabel("divergent transitions (%)")
    axes[1].set_ylabel("fit time / one-scale model's (median)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("rows")
    axes[0].legend(fontsize=7)
    fig.suptitle("local-global priors at the defaults (4 x 1000 draws); dotted: the 0.1 % bar",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000]
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scenarios", nargs="+", default=["sparse", "dense"])
    parser.add_argument("--priors", nargs="+", default=list(PRIORS[1:]), choices=PRIORS[1:])
    parser.add_argument("--targets", type=float, nargs="*", default=[])
    parser.add_argument("--before", type=Path, help="an earlier run's large_n.csv to overlay")
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent.parent / "benchmarks/results/local_global"),
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for scenario in args.scenarios:
        for n in args.sizes:
            for seed in range(args.seeds):
                X, y = simulate(scenario, n, seed)
                for prior in ("half_cauchy", *args.priors):  # the reference first
                    extra = args.targets if prior != "half_cauchy" else []
                    for target in (None, *extra):
                        row = one_fit(X, y, prior, target, seed=seed)
                        row.update(
                            scenario=scenario, n=n, seed=seed, prior=prior,
                            target_accept="default" if target is None else target,
                        )  # fmt: skip
                        rows.append(row)
                        print(
                            f"{scenario} n={n} seed {seed} {prior} ta={row['target_accept']}: "
                            f"R-hat {row['rhat_max']:.4f} div {row['divergences']} "
                            f"ESS {row['ess_bulk_min']:.0f} ({row['seconds']:.1f} s)",
                            flush=True,
                        )
                        pd.DataFrame(rows).to_csv(out / "large_n.csv", index=False)
    df = pd.DataFrame(rows)
    ref = df[df["prior"] == "half_cauchy"].set_index(["scenario", "n", "seed"])["seconds"]
    df["time_ratio"] = (
        df["seconds"].to_numpy()
        / ref.loc[list(zip(df["scenario"], df["n"], df["seed"], strict=True))].to_numpy()
    )
    table = convergence_table(
        df, ["scenario", "prior", "target_accept", "n"], ("seeds", "seed"),
        seconds_median=("seconds", "median"), time_vs_one_scale=("time_ratio", "median"),
    )  # fmt: skip
    text = (
        f"InteractionRegression at the defaults (nutpie, 4 x 1000, collapsed), {args.seeds} "
        f"data seed(s) per cell; bar: R-hat <= 1.01 and <= 0.1 % divergent; time as a ratio "
        f"to the one-scale model on the same data (median over seeds)\n\n"
        + table.round(4).to_string()
    )
    (out / "large_n.txt").write_text(text + "\n")
    plot(df, out / "large_n.png", pd.read_csv(args.before) if args.before else None)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
