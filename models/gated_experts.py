"""Gated mixture of experts on simulated data whose mixing weights depend on x.

Simulates K linear experts mixed by a softmax gate (linear or a one-layer tanh network,
``bayesmoe.experiments.make_mixture_data``), fits ``bayesmoe.GatedExperts`` and prints

* the sampling diagnostics (R-hat, bulk ESS, divergences),
* the posterior summary (working scale) next to the true values, with the simulated
  experts relabelled to match the fit (the mlp gate's hidden weights are not identified:
  its summary is pi(x) at the model's grid rows, ``gate_probability_grid``, against the
  true pi(x) there),
* the held-out log predictive density against a single ``InteractionRegression`` and the
  generating model itself,

and writes ``gated_experts.png`` (data coloured by responsibility, expert lines with 94%
bands, gate probabilities pi(x) with 94% bands, truth dashed) into ``--out``.

    python models/gated_experts.py --draws 1000 --tune 1000
    python models/gated_experts.py --gate mlp --experts 3 --hidden 4
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp
from scipy.stats import norm

import bayesmoe as bm
from bayesmoe.experiments import align_truth, make_mixture_data

SAMPLE_DIMS = ("chain", "draw")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--sampler", default="nutpie")
    parser.add_argument("--gate", choices=["linear", "mlp"], default="linear")
    parser.add_argument("--experts", type=int, default=2, help="K, for data and model")
    parser.add_argument("--hidden", type=int, default=3, help="mlp gate units (data and model)")
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


def truth_labels(post, truth: dict) -> dict[str, float]:
    """True values under the row labels of ``az.summary`` (e.g. ``beta[0, x0]``)."""
    out = {}
    for name, value in truth.items():
        if name not in post:
            continue
        da = post[name]
        dims = [d for d in da.dims if d not in SAMPLE_DIMS]
        value = np.asarray(value).reshape(da.shape[2:])
        for idx in np.ndindex(value.shape):
            coords = [str(da[d].values[i]) for d, i in zip(dims, idx, strict=True)]
            out[f"{name}[{', '.join(coords)}]" if coords else name] = float(value[idx])
    return out


def match_experts(est, data) -> tuple[np.ndarray, dict]:
    """Fit expert j <-> true expert ``perm[j]``, and the truth aligned on the working scale."""
    std = est.standardizer_
    working = data.working_truth(std.x_mean, std.x_scale, std.y_mean, std.y_scale)
    post = est.working_view()["posterior"]
    intercept = post["intercept"].mean(SAMPLE_DIMS).values
    beta = post["beta"].mean(SAMPLE_DIMS).values
    # the same assignment align_truth makes, kept to permute the original-scale truth
    cost = np.column_stack([intercept, beta])[:, None, :]
    cost = ((cost - np.column_stack([working["intercept"], working["beta"]])[None]) ** 2).sum(-1)
    perm = linear_sum_assignment(cost)[1]
    return perm, align_truth(working, intercept, beta)


def true_log_density(data, X, y) -> float:
    """Held-out log density of the generating model (the ceiling for any fit)."""
    X = np.asarray(X, float)
    mu = data.expert_means(X)
    logp = np.log(data.gate_probabilities(X)) + norm.logpdf(y[:, None], mu, data.truth["sigma"])
    return float(logsumexp(logp, axis=1).sum())


def heldout_table(fits: dict, data, test) -> pd.DataFrame:
    rows = {}
    for name, est in fits.items():
        lpd = est.log_predictive_density(test.X, test.y)
        rmse = np.sqrt(np.mean((est.predict(test.X) - test.y) ** 2))
        rows[name] = {"lpd": lpd, "lpd / row": lpd / len(test.y), "RMSE": rmse}
    lpd = true_log_density(data, test.X, test.y)
    rows["generating model"] = {"lpd": lpd, "lpd / row": lpd / len(test.y), "RMSE": np.nan}
    return pd.DataFrame(rows).T


def plot_fit(est, data, perm: np.ndarray, path: Path, title: str) -> Path:
    """Data and experts along x0 (other features at their mean, 0) and the mixing weights."""
    K = perm.size
    colours = np.array([to_rgb(f"C{k}") for k in range(K)])
    x = data.X.to_numpy()[:, 0]
    lo, hi = x.min(), x.max()
    grid = np.zeros((200, data.X.shape[1]))
    grid[:, 0] = np.linspace(lo, hi, 200)
    G = pd.DataFrame(grid, columns=data.X.columns)
    experts = est.expert_predictions(G)
    gate = est.predict_proba(G, return_draws=True)
    resp = est.responsibilities(data.X, data.y)

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax.scatter(x, data.y, c=resp @ colours, s=8, alpha=0.6, lw=0)
    for k in range(K):
        band = experts.isel(expert=k).quantile([0.03, 0.97], dim=SAMPLE_DIMS).values
        ax.fill_between(grid[:, 0], band[0], band[1], color=f"C{k}", alpha=0.3)
        ax.plot(grid[:, 0], experts.isel(expert=k).mean(SAMPLE_DIMS), color=f"C{k}", lw=2)
        ax.plot(grid[:, 0], data.expert_means(grid)[:, perm[k]], "k--", lw=1)
        band = gate.isel(expert=k).quantile([0.03, 0.97], dim=SAMPLE_DIMS).values
        bx.fill_between(grid[:, 0], band[0], band[1], color=f"C{k}", alpha=0.3)
        bx.plot(
            grid[:, 0],
            gate.isel(expert=k).mean(SAMPLE_DIMS),
            color=f"C{k}",
            lw=2,
            label=f"expert {k}",
        )
        bx.plot(grid[:, 0], data.gate_probabilities(grid)[:, perm[k]], "k--", lw=1)
    bx.plot([], [], "k--", lw=1, label="truth")
    other = " (other features at 0)" if data.X.shape[1] > 1 else ""
    ax.set(
        xlabel=f"{data.X.columns[0]}{other}",
        ylabel="y",
        title="data (colour: responsibility), experts: mean, 94% band",
    )
    bx.set(
        xlabel=data.X.columns[0],
        ylabel=r"$\pi_k(x)$",
        ylim=(-0.02, 1.02),
        title="gate probabilities: mean, 94% band",
    )
    bx.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(est, baseline, name: str, data, test, perm, truth, args, title: str) -> None:
    """Diagnostics, posterior summary against the truth, held-out density, and the figure."""
    diag = est.check()
    print(
        f"\nDiagnostics: max R-hat {diag.max_rhat:.3f}, min bulk ESS {diag.min_ess_bulk:.0f}, "
        f"{diag.divergences} divergences over {diag.chains} chains -> {diag.message()}"
    )
    # the identified quantities on the working scale, where the simulator's truth is known
    # (est.summary() gives them on the data's scale)
    working = est.working_view()
    names = est._summary_vars()
    summary = pd.concat([az.summary(working, var_names=[n], round_to="none") for n in names])
    summary.insert(0, "true", summary.index.map(truth_labels(working["posterior"], truth)))
    print("\nPosterior summary (working scale; truth relabelled to the fit's experts)")
    print(summary.round(3).to_string())

    print(f"\nHeld-out log predictive density ({args.n_test} new rows)")
    table = heldout_table({name: est, "single regression": baseline}, data, test)
    print(table.round(3).to_string())

    slug = name.replace(" ", "_")
    out = args.out or Path(tempfile.mkdtemp(prefix=f"bayesmoe_{slug}_"))
    out.mkdir(parents=True, exist_ok=True)
    path = plot_fit(est, data, perm, out / f"{slug}.png", title)
    print(f"\nfigure: {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = make_mixture_data(
        args.n,
        args.experts,
        args.x_dim,
        gate=args.gate,
        noise=args.noise,
        gate_hidden=args.hidden,
        seed=args.seed,
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
    est = bm.GatedExperts(
        n_experts=args.experts,
        gate=args.gate,
        gate_hidden=args.hidden if args.gate == "mlp" else None,
        **settings,
    ).fit(data.X, data.y)
    baseline = bm.InteractionRegression(**settings).fit(data.X, data.y)

    perm, truth = match_experts(est, data)
    if "gate_probability_grid" in est.idata_["posterior"]:  # pi(x) at the grid rows
        std = est.standardizer_
        grid = est.idata_["constant_data"]["X_grid"].values * std.x_scale + std.x_mean
        truth["gate_probability_grid"] = data.gate_probabilities(grid)[:, perm]
    title = f"GatedExperts: K={args.experts}, {args.gate} gate, n={args.n}"
    report(est, baseline, "gated experts", data, test, perm, truth, args, title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
