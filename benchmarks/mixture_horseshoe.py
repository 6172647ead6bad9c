"""Issue 18 for the mixtures' experts: the regularised horseshoe against one learned scale.

A mixture of two regressions on 8 standardised features in which each expert uses one or
two of them (3 of the 16 expert weights non-zero: 1.5; -1.5 and 0.8), intercepts -2 and
2, noise sd 0.5, equal weights. ``MixtureRegression(n_components=2)`` at its defaults
(NUTS by nutpie, 4 x 1000 draws) with ``prior="half_cauchy"`` (one learned scale shared by
the experts' weights, the default) and ``prior="horseshoe"`` (per-expert local scales,
shared global scale and slab; target acceptance 0.99 by default), on the same data sets.
Per fit: the RMSE of the posterior-mean weights against the truth (experts matched by
their intercepts), the held-out log density per row on 4000 fresh rows, max R-hat over
the identified quantities, divergent transitions and the wall time. Differences are
paired by data set (same seed), with their standard errors over seeds.

    python benchmarks/mixture_horseshoe.py                    # n = 200, 1000; 10 seeds
    python benchmarks/mixture_horseshoe.py --seeds 2 --n 200  # smoke

Writes ``benchmarks/results/local_global/mixture_horseshoe.{txt,csv,png}`` (``--out``).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayesmoe as bm

ROOT = Path(__file__).resolve().parents[1]
PRIORS = ("half_cauchy", "horseshoe")
N_FEATURES = 8


def truth() -> tuple[np.ndarray, np.ndarray]:
    """Intercepts and weights (2 x 8) of the two experts: 3 of 16 weights non-zero."""
    W = np.zeros((2, N_FEATURES))
    W[0, 0], W[1, 1], W[1, 2] = 1.5, -1.5, 0.8
    return np.array([-2.0, 2.0]), W


def simulate(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    b0, W = truth()
    X = rng.normal(size=(n, N_FEATURES))
    z = rng.integers(0, 2, n)
    y = b0[z] + np.einsum("ij,ij->i", X, W[z]) + 0.5 * rng.normal(size=n)
    return pd.DataFrame(X, columns=[f"x{j}" for j in range(N_FEATURES)]), y


def one_fit(n: int, seed: int, prior: str) -> dict:
    from bayesmoe.inference.diagnostics import identified_names  # what diagnostics use

    X, y = simulate(n, seed)
    X_test, y_test = simulate(4000, 10_000 + seed)
    est = bm.MixtureRegression(
        n_components=2, prior=prior, interactions=None, random_seed=seed, progressbar=False
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    seconds = time.perf_counter() - start
    post = est.idata_["posterior"]
    W = truth()[1]
    order = np.argsort(post["intercept"].mean(("chain", "draw")).values)
    beta = post["beta"].mean(("chain", "draw")).values[order]
    from arviz_stats import rhat

    names = identified_names(est.model_, est.idata_) or ["intercept", "beta", "sigma"]
    return {
        "n": n,
        "seed": seed,
        "prior": prior,
        "weight_rmse": float(np.sqrt(np.mean((beta - W) ** 2))),
        "zero_weight_rmse": float(np.sqrt(np.mean(beta[W == 0] ** 2))),
        "heldout_lpd": est.log_predictive_density(X_test, y_test) / len(y_test),
        "rhat_max": max(float(rhat(post[v]).max()) for v in names if v in post),
        "divergences": int(est.idata_["sample_stats"]["diverging"].sum()),
        "draws": int(post.sizes["chain"] * post.sizes["draw"]),
        "seconds": seconds,
    }


def paired(diff: pd.Series, prior: str) -> str:
    """Mean paired difference and its standard error over seeds ('' for the reference)."""
    if prior == "half_cauchy":
        return ""
    se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.nan
    return f"{diff.mean():+.4f} ({se:.4f})"


def summary(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for n, g in df.groupby("n"):
        wide = g.pivot(index="seed", columns="prior")
        for prior in PRIORS:
            d_rmse = wide["weight_rmse"][prior] - wide["weight_rmse"]["half_cauchy"]
            d_lpd = wide["heldout_lpd"][prior] - wide["heldout_lpd"]["half_cauchy"]
            k = len(wide)
            fits = g[g["prior"] == prior]
            rows.append(
                {
                    "n": n,
                    "prior": prior,
                    "seeds": k,
                    "weight RMSE": fits["weight_rmse"].mean(),
                    "zero-weight RMSE": fits["zero_weight_rmse"].mean(),
                    "RMSE - one scale (paired s.e.)": paired(d_rmse, prior),
                    "held-out lpd/row": fits["heldout_lpd"].mean(),
                    "lpd - one scale (paired s.e.)": paired(d_lpd, prior),
                    "max R-hat": fits["rhat_max"].max(),
                    "fits R-hat > 1.01": int((fits["rhat_max"] > 1.01).sum()),
                    "divergent %": 100 * fits["divergences"].sum() / fits["draws"].sum(),
                    "fits with > 0.1% divergent": int(
                        (fits["divergences"] > 0.001 * fits["draws"]).sum()
                    ),
                    "median s": fits["seconds"].median(),
                }
            )
    return pd.DataFrame(rows)


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, col, label in (
        (axes[0], "weight_rmse", "weight RMSE"),
        (axes[1], "heldout_lpd", "held-out log density per row"),
    ):
        for n, g in df.groupby("n"):
            wide = g.pivot(index="seed", columns="prior")[col]
            ax.scatter(wide["half_cauchy"], wide["horseshoe"], s=14, label=f"n = {n}")
        lo = min(ax.get_xlim()[0], ax.get_ylim()[0])
        hi = max(ax.get_xlim()[1], ax.get_ylim()[1])
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set(xlabel=f"one learned scale: {label}", ylabel=f"horseshoe: {label}")
    axes[0].legend(fontsize=8)
    axes[0].set_title("lower is better", fontsize=9)
    axes[1].set_title("higher is better", fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--n", type=int, nargs="+", default=[200, 1000])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "local_global")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "mixture_horseshoe.csv"
    done = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
    rows = done.to_dict("records")
    have = {(r["n"], r["seed"], r["prior"]) for r in rows}
    from tqdm.auto import tqdm

    cells = [(n, s, pr) for n in args.n for s in range(args.seeds) for pr in PRIORS]
    for n, seed, prior in tqdm(cells, desc="fits", unit="fit"):
        if (n, seed, prior) in have:
            continue
        rows.append(one_fit(n, seed, prior))
        pd.DataFrame(rows).to_csv(csv.with_suffix(".tmp.csv"), index=False)
        csv.with_suffix(".tmp.csv").replace(csv)  # resumable, and nothing half-written
    df = pd.DataFrame(rows)
    df = df[df["n"].isin(args.n) & (df["seed"] < args.seeds)]
    table = summary(df)
    text = "\n".join(
        [
            f"MixtureRegression(n_components=2) defaults, 4 x 1000 draws; {args.seeds} seeds; "
            "3 of 16 expert weights non-zero",
            "",
            table.to_markdown(index=False, floatfmt=".4f"),
        ]
    )
    print(text)
    (args.out / "mixture_horseshoe.txt").write_text(text + "\n")
    plot(df, args.out / "mixture_horseshoe.png")
    print(f"\nwrote {args.out}/mixture_horseshoe.txt, .csv, .png")


if __name__ == "__main__":
    main()
