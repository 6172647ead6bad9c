"""Does LOO hold when Pareto k is high? PSIS-LOO, its fixes, and exact K-fold CV.

Data: two linear regimes (``y = 1 + 2x`` and ``y = -1 - x``, noise sd 0.3, half the rows
each) with a few gross outliers, ``n`` rows. Models: :class:`~bayesmoe.MixtureRegression`
with K = 4 (overfitted: spare components take the outliers, whose leave-one-out
posteriors then differ from the full posterior, so their Pareto k is high) and K = 2.

For each model the table gives plain PSIS-LOO (elpd, se, rows with k above ArviZ's
threshold), the elpd ``bm.compare(..., fix="auto")`` reports with the method it chose and
the rows still above the threshold, and the exact K-fold CV elpd (``bm.kfold``, ``k``
refits). ``z = |fixed - kfold| / se_diff``, with ``se_diff`` the paired standard error
``sqrt(n var(elpd_i^fixed - elpd_i^kfold))`` (Vehtari et al. 2017, eq. 24). K-fold fits
each model on (k-1)/k of the rows, so it is expected a little below LOO.

    python benchmarks/loo_fixes.py            # n = 80 and 40, 4 chains x 500 draws, k = 10
    python benchmarks/loo_fixes.py --quick    # small settings, a smoke run
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

import bayesmoe as bm
from bayesmoe.comparison import format_table
from bayesmoe.inference.diagnostics import pareto_k_threshold


def make_data(n: int, n_outliers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1))
    first = rng.random(n) < 0.5
    y = np.where(first, 1.0 + 2.0 * X[:, 0], -1.0 - X[:, 0]) + 0.3 * rng.normal(size=n)
    signs = np.resize([1.0, -1.0], n_outliers)
    y[:n_outliers] += signs * rng.uniform(5.0, 8.0, size=n_outliers)
    return X, y


def run_case(n: int, outliers: int, args) -> bool:
    """Fit, compare plain and fixed, run K-fold; print the table; True if the bar holds."""
    X, y = make_data(n, outliers, args.seed)
    settings = dict(
        draws=args.draws, tune=args.draws, chains=args.chains,
        random_seed=args.seed, progressbar=False,
    )  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fit diagnostics of overfitted K
        models = {
            f"K={K}": bm.MixtureRegression(n_components=K, **settings).fit(X, y) for K in (4, 2)
        }
    fit_s = time.perf_counter() - start
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plain = bm.compare(models, plot=False)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # refits' own fit diagnostics
        fixed = bm.compare(models, plot=False, fix="auto", k=args.k)
    fix_s = time.perf_counter() - start
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        folds = {
            name: bm.kfold(est, k=args.k, random_seed=args.seed, progressbar=False)
            for name, est in models.items()
        }
    kfold_s = time.perf_counter() - start
    rows = []
    for name in models:
        p, f, kf = plain.elpd[name], fixed.elpd[name], folds[name]
        diff = np.asarray(f.elpd_i).ravel() - np.asarray(kf.elpd_i).ravel()
        se_diff = float(np.sqrt(diff.size * np.var(diff)))
        rows.append(
            {
                "model": name,
                "psis_elpd": p.elpd,
                "psis_se": p.se,
                "n_k_high": int(plain.table.loc[name, "n_high_k"]),
                "threshold": pareto_k_threshold(p.n_samples),
                "fixed_elpd": f.elpd,
                "fixed_se": f.se,
                "method": fixed.table.loc[name, "elpd_method"],
                "still_high": int(fixed.table.loc[name, "n_high_k"]),
                "kfold_elpd": kf.elpd,
                "kfold_se": kf.se,
                "diff": abs(f.elpd - kf.elpd),
                "se_diff": se_diff,
                "z": abs(f.elpd - kf.elpd) / se_diff if se_diff > 0 else 0.0,
            }
        )
    table = pd.DataFrame(rows).set_index("model")
    formats = {c: "{:.1f}" for c in table.columns if c.endswith(("elpd", "se", "diff"))}
    formats.update({"threshold": "{:.2f}", "z": "{:.2f}"})
    print(
        f"\n## n = {n} ({outliers} outliers), {args.chains} chains x {args.draws} draws, "
        f"K-fold k = {args.k}, seed {args.seed}\n"
    )
    print(format_table(table, formats))
    print(f"\ncompare(fix='auto') table:\n{format_table(fixed.table)}")
    for name, record in fixed.fixes.items():
        print(f"{name}: {record.message()}")
    n_psis_warned = sum("Pareto k" in str(w.message) for w in caught)
    print(f"plain compare: {n_psis_warned} Pareto-k warning(s)")
    holds = all(r["still_high"] == 0 and r["z"] <= 2.0 for r in rows if r["n_k_high"] > 0) and any(
        r["n_k_high"] > 0 for r in rows
    )
    print(
        f"rows above the threshold after the fix: {[r['still_high'] for r in rows]}; "
        f"|fixed - kfold| / se_diff: {[round(float(r['z']), 2) for r in rows]} (need <= 2)"
    )
    print(f"bar {'holds' if holds else 'FAILS'} on this data set")
    print(f"time: fits {fit_s:.0f} s, compare(fix) {fix_s:.0f} s, K-fold {kfold_s:.0f} s")
    return holds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="80:4,40:4", help="n:outliers,...")
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.cases, args.draws, args.chains, args.k = "40:4", 200, 2, 4
    cases = [tuple(int(v) for v in c.split(":")) for c in args.cases.split(",")]
    results = [run_case(n, outliers, args) for n, outliers in cases]
    print(f"\nbar {'holds' if all(results) else 'FAILS'} on {sum(results)} of {len(results)}")


if __name__ == "__main__":
    main()
