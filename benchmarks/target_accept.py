"""Divergences and R-hat of the local-global priors at the defaults, by NUTS target_accept.

Issue 18 asks for R-hat <= 1.01 and at most 0.1 % divergent transitions at the defaults,
and for the ``target_accept`` default of the horseshoe and R2-D2 families to come from a
measurement. This runs ``InteractionRegression(prior=...)`` at the estimator's defaults
(nutpie, 4 chains x 1000 draws after 1000 tuning steps, collapsed form) on the three real
data sets of ``benchmarks/real_data.py`` (the same 75/25 splits, first ``--splits`` of
them), once per ``target_accept`` in ``--targets`` (nutpie's default is 0.8), and reports
per (data set, prior, target_accept) the worst max R-hat, the divergent fraction over all
draws of all splits, the smallest bulk ESS and the mean fit time, next to the one-scale
half-Cauchy model as the reference.

Usage::

    python benchmarks/target_accept.py                       # 3 splits, 0.8 / 0.9 / 0.95
    python benchmarks/target_accept.py --splits 1 --targets 0.8 0.95

Writes ``target_accept.csv`` and ``target_accept.txt`` to ``--out``
(default ``benchmarks/results/local_global``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import DATASETS, TEST_FRACTION

PRIORS = ("horseshoe", "r2d2", "half_cauchy")


def one_fit(X, y, prior: str, target: float | None, seed: int) -> dict:
    """One fit at the estimator's defaults (``target=None``: its own target_accept too)."""
    import bayesmoe as bm
    from bayesmoe.fitting import diagnose

    est = bm.InteractionRegression(
        prior=prior,
        random_seed=seed,
        progressbar=False,
        fit_kwargs=None if target is None else {"target_accept": target},
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    report = diagnose(est.idata_)
    post = est.idata_["posterior"]
    return {
        "rhat_max": report.max_rhat,
        "ess_bulk_min": report.min_ess_bulk,
        "divergences": report.divergences,
        "draws": post.sizes["chain"] * post.sizes["draw"],
        "seconds": time.perf_counter() - start,
    }


def convergence_table(
    df: pd.DataFrame, by: list[str], count: tuple[str, str], **extra: tuple[str, str]
) -> pd.DataFrame:
    """Per group of fits: their number (``count``: name, column), the worst R-hat, the
    divergent share of all draws in %, the smallest bulk ESS, ``extra`` aggregations, and
    whether the issue's bar (R-hat <= 1.01, <= 0.1 % divergent) holds."""
    table = df.groupby(by).agg(
        **{count[0]: (count[1], "size")},
        rhat_max=("rhat_max", "max"),
        divergent_pct=("divergences", "sum"),
        draws=("draws", "sum"),
        ess_bulk_min=("ess_bulk_min", "min"),
        **extra,
    )
    table["divergent_pct"] = 100 * table["divergent_pct"] / table.pop("draws")
    table["bar_met"] = (table["rhat_max"] <= 1.01) & (table["divergent_pct"] <= 0.1)
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--targets", type=float, nargs="+", default=[0.8, 0.9, 0.95])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--priors", nargs="+", default=list(PRIORS), choices=PRIORS)
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent.parent / "benchmarks/results/local_global"),
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.datasets:
        X, y = DATASETS[name]()
        yv = y.to_numpy(float)
        n_test = round(TEST_FRACTION * len(yv))
        for s in range(args.splits):
            order = np.random.default_rng([0, s]).permutation(len(yv))  # real_data's splits
            tr = order[n_test:]
            for prior in args.priors:
                targets = args.targets if prior != "half_cauchy" else args.targets[:1]
                for target in targets:
                    row = one_fit(X.iloc[tr], yv[tr], prior, target, seed=1000 * s + 7)
                    row.update(dataset=name, split=s, prior=prior, target_accept=target)
                    rows.append(row)
                    print(
                        f"{name} split {s} {prior} ta={target}: R-hat {row['rhat_max']:.4f} "
                        f"div {row['divergences']} ESS {row['ess_bulk_min']:.0f} "
                        f"({row['seconds']:.1f} s)",
                        flush=True,
                    )
                    pd.DataFrame(rows).to_csv(out / "target_accept.csv", index=False)
    df = pd.DataFrame(rows)
    table = convergence_table(
        df, ["dataset", "prior", "target_accept"], ("splits", "split"),
        seconds_mean=("seconds", "mean"),
    )  # fmt: skip
    text = (
        f"InteractionRegression at the defaults (nutpie, 4 x 1000, collapsed), {args.splits} "
        f"split(s) of real_data.py per data set; bar: R-hat <= 1.01 and <= 0.1 % divergent\n\n"
        + table.round(4).to_string()
    )
    (out / "target_accept.txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
