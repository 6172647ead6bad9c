"""How often would the convergence study's per-cell bar fail for a model that ties the best?

Issue 6's bar, part 1: at *every* (scenario, training size) cell the learned-hyperprior
model's mean test MSE is within two paired replicate standard errors of the best fixed
choice there. This script measures what that test can and cannot tell, on a saved study
(default: the committed R = 20 study):

* **Multiplicity.** A model whose expected MSE *equals* the best fixed choice's at every
  cell still exceeds ``2 se`` at a cell with probability ``P(t_{R-1} > 2)`` (3.0 % at
  R = 20), so over 114 cells it fails about 3.4 of them and passes them all with
  probability about 3 %. The script prints this, and the count of failing cells at
  the Bonferroni threshold (family-wise 5 %), which does allow for it.
* **Selection.** The best fixed choice is picked per cell *after* seeing its mean, so its
  mean is biased low (winner's curse). The script estimates this bias by splitting the
  replicates: pick the best on one half, score it on the other.
* **Size.** Statistical significance is not practical significance: paired differences at
  large n are consistent over replicates, so a 0.1 % excess can be many standard errors.
  The script prints the relative excess of every failing cell.

Everything is computed from the saved per-replicate MSEs; nothing is refitted::

    python benchmarks/convergence_bar_calibration.py
    python benchmarks/convergence_bar_calibration.py --study .study/r20/results.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bayesmoe.studies import learning_curve as conv
from bayesmoe.studies.learning_curve.summaries import successful_rows

STUDY = Path(__file__).resolve().parents[1] / "notebooks" / "data" / "convergence_study.parquet"


def split_half_bias(df: pd.DataFrame, n_splits: int = 200, seed: int = 0) -> pd.DataFrame:
    """Winner's curse of the per-cell best fixed choice, by random half splits.

    For each cell and split, the fixed model with the lowest mean on half A is scored on
    half A (in-sample, as the bar does) and on half B (out of sample). The mean of
    ``(in - out) / out`` over splits is the relative optimism of the picked best.
    """
    ok = successful_rows(df)  # the same rows headline() uses
    rivals = [m for m in conv.FIXED_MODELS if m in set(ok["model"])]
    wide = ok.pivot_table(
        index=["scenario", "n_train", "replicate"], columns="model", values="mse"
    )
    rng = np.random.default_rng(seed)
    rows = []
    for (scen, n), g in wide.groupby(level=["scenario", "n_train"]):
        v = g[rivals].to_numpy()
        R = len(v)
        opt = []
        for _ in range(n_splits):
            perm = rng.permutation(R)
            a, b = perm[: R // 2], perm[R // 2 :]
            best = np.argmin(v[a].mean(axis=0))
            opt.append((v[a, best].mean() - v[b, best].mean()) / v[b, best].mean())
        rows.append({"scenario": scen, "n_train": n, "optimism": float(np.mean(opt))})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", type=Path, default=STUDY, help="results Parquet of a study")
    ap.add_argument(
        "--learned",
        nargs="+",
        default=["learned_half_cauchy", "learned_gamma", "empirical_bayes"],
    )
    args = ap.parse_args(argv)
    df = pd.read_parquet(args.study)

    tables = {m: conv.headline(df, learned=m) for m in args.learned}
    first = next(iter(tables.values()))
    m, R = len(first), int(first["R"].min())
    p_cell = stats.t.sf(2.0, R - 1)
    t_bonf = stats.t.isf(0.05 / m, R - 1)
    print(f"study: {args.study}  cells: {m}  replicates per cell: {R}")
    print(
        f"a model tying the best fixed choice at every cell: P(fail a cell) = "
        f"P(t_{R - 1} > 2) = {p_cell:.4f}; expected failing cells {m * p_cell:.2f}; "
        f"P(no cell fails) = {(1 - p_cell) ** m:.3f}"
    )
    print(f"Bonferroni threshold for {m} cells at family-wise 5 %: t > {t_bonf:.2f}\n")

    rows = []
    for name, t in tables.items():
        z = t["diff_vs_best"] / t["se_vs_best"]
        rel = t["diff_vs_best"] / t["best_mse"]
        rows.append(
            {
                "model": name,
                "fail at 2 se": int((z > 2).sum()),
                "fail at 3 se": int((z > 3).sum()),
                f"fail at Bonferroni ({t_bonf:.2f} se)": int((z > t_bonf).sum()),
                "failing with excess > 1 %": int(((z > 2) & (rel > 0.01)).sum()),
                "failing with excess > 10 %": int(((z > 2) & (rel > 0.10)).sum()),
                "median excess of failing cells": f"{rel[z > 2].median():+.2%}",
                "max excess": f"{rel.max():+.1%}",
            }
        )
    print(pd.DataFrame(rows).set_index("model").T.to_markdown())

    bias = split_half_bias(df)
    small = bias[bias["n_train"] <= 200]["optimism"]
    print(
        f"\nwinner's curse of the per-cell best fixed choice (split halves, {R // 2} "
        f"replicates each): its in-sample mean MSE is {-bias['optimism'].mean():.2%} below "
        f"its out-of-sample mean on average over the grid, {-small.mean():.2%} at n <= 200 "
        f"(max {-bias['optimism'].min():.2%})"
    )


if __name__ == "__main__":
    main()
