"""Mixtures fitted with more components than the data have (issue 20's bar).

For K_true in {1, 2} (``make_mixture_data``: one feature, constant weights, intercepts
``--separation`` apart, noise sd 0.5; K_true = 2 is well separated at the default 3.0) and
``--seeds`` seeds, ``MixtureRegression`` is fitted with the defaults (NUTS, 4 x 1000,
Dirichlet(alpha) weights, ``--alpha`` default the library's, 0.1) at K = K_true,
K_true + 1 and K_true + 2 on ``--n`` rows, and scored on 2000 fresh rows of the same
truth. Per fit:

* ``max R-hat`` / ``min ESS``: the fit's diagnostics on the identified quantities: the
  relabelled components, or (``on density``) the mixture density at 20 training rows
  when the component diagnosis finds fewer components fit as well; ``component R-hat``
  is the components' own max R-hat either way;
* ``components``: the emptied/coinciding-components sentence of the diagnostics (with
  the supported K), '' when none;
* ``outcome``: for K > K_true, ``converged`` (R-hat <= 1.01), ``named`` (R-hat above
  1.01 but the warning names the components and the supported K) or ``SILENT`` (neither:
  the failure the bar forbids); for K = K_true, ``clean`` or ``FALSE FLAG`` (a
  components message on a fit of the true K);
* ``lpd``: held-out log predictive density per row; ``d lpd / se`` its paired difference
  to the K_true fit of the same seed over the paired s.e. of that difference, and
  ``d lpd / se(lpd)`` the same difference over the s.e. of the K_true fit's held-out lpd
  (bar: within 2).

Bar: for each (K_true, K > K_true), >= 9 of 10 seeds ``converged`` or ``named``, none
``SILENT``; no ``FALSE FLAG``; every |d lpd| within 2 s.e.

    python benchmarks/overfitted.py              # the default alpha (0.1): 2 x 10 seeds x 3 fits
    python benchmarks/overfitted.py --alpha 1    # the uniform Dirichlet, for comparison
    python benchmarks/overfitted.py --model gated  # GatedExperts (linear gate; K_true = 2
                                                   # is a linearly gated truth)

Writes ``overfitted.csv``, ``overfitted.txt`` and ``overfitted.png`` to ``--out``
(default ``benchmarks/results/overfitted/alpha<alpha>``); about 5 minutes each here.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import bayesmoe as bm
from bayesmoe.builders.mixture import DEFAULT_ALPHA
from bayesmoe.experiments import make_mixture_data

RHAT_MAX = 1.01


def one_seed(k_true: int, seed: int, args) -> list[dict]:
    gate = "linear" if args.model == "gated" and k_true > 1 else None
    data = make_mixture_data(
        args.n, k_true, 1, gate=gate, noise=0.5, separation=args.separation, seed=seed
    )
    test = data.new_rows(2000, seed=10_000 + seed)
    rows, lpd = [], {}
    for k in (k_true, k_true + 1, k_true + 2):
        if args.model == "gated":
            est = bm.GatedExperts(n_experts=k, random_seed=seed, progressbar=False)
        else:
            est = bm.MixtureRegression(
                n_components=k, alpha=args.alpha, random_seed=seed, progressbar=False
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            est.fit(data.X, data.y)
            seconds = time.perf_counter() - t0
        diag = json.loads(est.idata_.attrs["bayesmoe_diagnostics"])
        lpd[k] = est.pointwise_log_predictive_density(test.X, test.y)
        said = " | ".join(str(w.message) for w in caught)
        components = diag.get("components", "")
        if k == k_true:
            outcome = "FALSE FLAG" if components else "clean"
        elif diag["max_rhat"] <= RHAT_MAX:
            outcome = "converged"
        elif "the data support K" in said:  # the diagnostics warning, with the components
            outcome = "named"
        else:
            outcome = "SILENT"
        d = lpd[k] - lpd[k_true]
        rows.append(
            {
                "K_true": k_true,
                "seed": seed,
                "K": k,
                "max R-hat": round(diag["max_rhat"], 4),
                "on density": bool(diag.get("identified")),
                "component R-hat": round(diag.get("component_max_rhat") or diag["max_rhat"], 4),
                "min ESS": round(diag["min_ess_bulk"]),
                "divergences": diag["divergences"],
                "outcome": outcome,
                "lpd": round(float(lpd[k].mean()), 5),
                "d lpd / se": (
                    0.0 if k == k_true else round(d.mean() / (d.std(ddof=1) / np.sqrt(d.size)), 2)
                ),
                # the same difference over the s.e. of the K_true fit's held-out lpd
                "d lpd / se(lpd)": round(
                    d.mean() / (lpd[k_true].std(ddof=1) / np.sqrt(d.size)), 2
                ),
                "components": components,
                "fit s": round(seconds, 1),
            }
        )
    return rows


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    over = df[df["K"] > df["K_true"]]
    table = over.groupby(["K_true", "K"]).agg(
        seeds=("seed", "size"),
        converged=("outcome", lambda s: int((s == "converged").sum())),
        named=("outcome", lambda s: int((s == "named").sum())),
        silent=("outcome", lambda s: int((s == "SILENT").sum())),
        max_rhat=("max R-hat", "max"),
        max_abs_dlpd_se=("d lpd / se", lambda s: float(np.abs(s).max())),
        max_abs_dlpd_se_lpd=("d lpd / se(lpd)", lambda s: float(np.abs(s).max())),
    )
    exact = (
        df[df["K"] == df["K_true"]]
        .groupby("K_true")
        .agg(
            seeds=("seed", "size"),
            false_flag=("outcome", lambda s: int((s == "FALSE FLAG").sum())),
            max_rhat=("max R-hat", "max"),
        )
    )
    return table, exact


def plot(df: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    colours = {"converged": "tab:green", "clean": "tab:green", "named": "tab:orange"}
    for ax, k_true in zip(axes, (1, 2), strict=True):
        sub = df[df["K_true"] == k_true]
        for k, part in sub.groupby("K"):
            x = k + np.linspace(-0.25, 0.25, len(part))
            c = [colours.get(o, "tab:red") for o in part["outcome"]]
            ax.scatter(x, part["max R-hat"], c=c, s=25)
        ax.axhline(RHAT_MAX, color="grey", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_xticks(sorted(sub["K"].unique()))
        ax.set_xlabel("K fitted")
        ax.set_title(f"K_true = {k_true}")
    axes[0].set_ylabel("max R-hat (identified quantities)")
    fig.suptitle(
        "green: converged / clean; orange: components named with the supported K; red: silent "
        "or false",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA)
    parser.add_argument("--separation", type=float, default=3.0)
    parser.add_argument("--k-true", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--model", choices=["mixture", "gated"], default="mixture")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    docs = Path(__file__).parent.parent / "benchmarks/results/overfitted"
    default = "gated" if args.model == "gated" else f"alpha{args.alpha:g}"
    out = Path(args.out) if args.out else docs / default
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    cells = [(k, s) for k in args.k_true for s in range(args.seeds)]
    for k_true, seed in tqdm(cells, desc="K_true x seed"):
        rows += one_seed(k_true, seed, args)
        df = pd.DataFrame(rows)
        df.to_csv(out / "overfitted.csv", index=False)
    table, exact = summarise(df)
    text = (
        f"{args.model}: alpha = {args.alpha if args.model == 'mixture' else '-'}, "
        f"n = {args.n}, separation = {args.separation}, "
        f"{args.seeds} seeds\n\nK > K_true:\n{table.to_string()}\n\nK = K_true:\n"
        f"{exact.to_string()}\n\nper fit:\n"
        f"{df.drop(columns='components').to_string(index=False)}\n\nmessages:\n"
        + "\n".join(
            f"K_true={r['K_true']} seed={r['seed']} K={r['K']}: {r['components']}"
            for r in rows
            if r["components"]
        )
    )
    (out / "overfitted.txt").write_text(text + "\n")
    plot(df, out / "overfitted.png")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
