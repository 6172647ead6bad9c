"""Figures of the learning-curve study: learning curves, regret, learned vs true scales."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bayesmoe.files import atomic_write

__all__ = ["DEFAULT_CURVES", "plot_learning_curves", "plot_regret", "plot_scales"]

#: Models drawn by default: both OLS, the fixed choices that win somewhere, the
#: adaptive sklearn baselines and the learned-scale models.
DEFAULT_CURVES = (
    "ols_base",
    "ols_interaction",
    "ridge_10",
    "bayes_base_-1_int_-3",
    "ridge_cv",
    "bayesian_ridge",
    "learned_half_cauchy",
    "learned_gamma",
    "empirical_bayes",
)


def _panels(n: int):
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def _style(model: str) -> dict:
    if model.startswith(("learned", "empirical")):
        return {"lw": 2.2, "ls": "-"}
    if model.startswith("ols"):
        return {"lw": 1.4, "ls": "--"}
    return {"lw": 1.2, "ls": ":" if model.startswith(("ridge_", "bayes_")) else "-."}


def _curves(df, value: str, models, path, ylabel, title, log_y=True, band=True):
    ok = df[(df["status"] == "ok") & (df["n_train"] > 0)]
    scenarios = list(dict.fromkeys(ok["scenario"]))
    if not scenarios:
        raise ValueError("no successful cells to plot")
    models = [m for m in (models or DEFAULT_CURVES) if m in set(ok["model"])]
    fig, axes = _panels(len(scenarios))
    colors = dict(zip(models, plt.cm.tab10(np.linspace(0, 1, 10)), strict=False))
    for ax, scen in zip(axes, scenarios, strict=False):
        sub = ok[ok["scenario"] == scen]
        for m in models:
            g = sub[sub["model"] == m].groupby("n_train")[value]
            mean, se = g.mean(), g.std(ddof=1) / np.sqrt(g.count())
            ax.plot(mean.index, mean.values, label=m, color=colors[m], **_style(m))
            if band:  # mean +- 2 replicate standard errors
                lo = (mean - 2 * se.fillna(0)).clip(lower=mean * 0.05 if log_y else None)
                ax.fill_between(
                    mean.index, lo, mean + 2 * se.fillna(0), color=colors[m], alpha=0.15
                )
        if value == "mse":
            noise = float(sub["noise_level"].iloc[0]) ** 2
            ax.axhline(noise, color="k", lw=0.8, alpha=0.6)
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
        ax.set_title(scen, fontsize=10)
        ax.set_xlabel("training rows")
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def plot_learning_curves(
    df: pd.DataFrame,
    path: str | Path | None = None,
    models: Sequence[str] | None = None,
    metric: str = "mse",
):
    """Test MSE (or ``metric="excess_mse"``) vs training rows, log axes, one panel per
    scenario: mean over replicates with a band of two replicate standard errors. The
    black line is the noise variance (the best possible MSE)."""
    if metric not in ("mse", "excess_mse"):
        raise ValueError(f"metric must be 'mse' or 'excess_mse', got {metric!r}")
    label = "test MSE" if metric == "mse" else "excess MSE  mean (f̂ - f)²"
    return _curves(df, metric, models, path, label, f"Learning curves ({label}; band: ±2 s.e.)")


def plot_regret(df: pd.DataFrame, path: str | Path | None = None, models=None):
    """Cumulative regret (excess squared error summed over the data-size sequence)."""
    return _curves(
        df,
        "regret",
        models,
        path,
        "cumulative regret",
        "Cumulative regret over the data-size sequence (band: ±2 s.e.)",
    )


def plot_scales(
    df: pd.DataFrame,
    path: str | Path | None = None,
    models: Sequence[str] = ("learned_half_cauchy", "learned_gamma", "empirical_bayes"),
):
    """Learned prior scales vs training rows (median over replicates, 10-90% band), with
    the true scales (root mean square of the generating weights) as flat lines."""
    ok = df[(df["status"] == "ok") & (df["n_train"] > 0) & df["model"].isin(models)]
    scenarios = list(dict.fromkeys(ok["scenario"]))
    if not scenarios:
        raise ValueError("no learned-scale results to plot")
    fig, axes = _panels(len(scenarios))
    styles = {"tau_base": "tab:blue", "tau_interaction": "tab:red"}
    marks = dict(zip(models, ["-", "--", ":"], strict=False))
    for ax, scen in zip(axes, scenarios, strict=False):
        sub = ok[ok["scenario"] == scen]
        for col, color in styles.items():
            for m in models:
                g = sub[sub["model"] == m].groupby("n_train")[col]
                if g.count().sum() == 0:
                    continue
                med = g.median()
                ax.plot(med.index, med.values, marks[m], color=color, label=f"{col} {m}")
                ax.fill_between(
                    med.index, g.quantile(0.1), g.quantile(0.9), color=color, alpha=0.08
                )
            true = sub[f"true_{col}"].mean()
            if np.isfinite(true) and true > 0:
                ax.axhline(true, color=color, lw=2.5, alpha=0.4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(scen, fontsize=10)
        ax.set_xlabel("training rows")
        ax.set_ylabel("prior sd (original scale)")
    axes[0].legend(fontsize=6)
    fig.suptitle("Learned vs true scales (thick lines: truth, RMS of the weights)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path):
    if path is None:
        return fig
    path = Path(path)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100), suffix=path.suffix or ".png")
    finally:
        plt.close(fig)
    return path
