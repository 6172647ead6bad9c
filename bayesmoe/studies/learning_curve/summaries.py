r"""Summaries of a learning-curve study: paired comparisons per cell, grid averages, report.

The criterion of the study: at every (scenario, training size) the learned-scale model's
test MSE is within two paired standard errors of the best fixed choice's,

.. math::

    \bar\Delta \le 2\, \mathrm{sd}(\Delta_r) / \sqrt R, \qquad
    \Delta_r = \text{mse}_r(\text{learned}) - \text{mse}_r(\text{best fixed}),

over the :math:`R` replicate data sets (every model sees the same data, so differences
are paired).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bayesmoe.studies.learning_curve.zoo import FIXED_MODELS, LEARNED_MODELS

__all__ = ["grid_average", "headline", "successful_rows", "summary_text", "write_report"]


def successful_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of fits that succeeded (``status == "ok"``, a real training size)."""
    return df[(df["status"] == "ok") & (df["n_train"] > 0)]


def headline(
    df: pd.DataFrame,
    learned: str = "learned_half_cauchy",
    rivals: Sequence[str] | None = None,
) -> pd.DataFrame:
    r"""Per (scenario, n_train): the learned model against the best rival and both OLS.

    The best rival is the model in ``rivals`` (default: every fixed choice,
    :data:`FIXED_MODELS`) with the lowest mean test MSE at that cell. Differences are
    paired over replicates (same data for every model), with standard error
    :math:`\mathrm{sd}(\Delta_r)/\sqrt R`; ``holds`` is ``mean diff <= 2 se``.
    """
    rivals = list(rivals or FIXED_MODELS)
    ok = successful_rows(df)
    wide = ok.pivot_table(
        index=["scenario", "n_train", "replicate"], columns="model", values="mse"
    )
    if learned not in wide:
        raise ValueError(f"learned={learned!r} has no results; models are {list(wide.columns)}")
    rivals = [r for r in rivals if r in wide.columns]
    rows = []
    for (scen, n), g in wide.groupby(level=["scenario", "n_train"]):
        g = g.dropna(subset=[learned])
        means = g[rivals].mean()
        best = str(means.idxmin())
        row = {"scenario": scen, "n_train": n, "R": len(g), learned: g[learned].mean()}
        for label, rival in (
            ("best", best),
            ("ols_base", "ols_base"),
            ("ols_int", "ols_interaction"),
        ):
            if rival not in g:
                continue
            d = (g[learned] - g[rival]).dropna()
            row[f"{label}_model"] = rival
            row[f"{label}_mse"] = g[rival].mean()
            row[f"diff_vs_{label}"] = d.mean()
            row[f"se_vs_{label}"] = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.nan
        row["holds"] = bool(row["diff_vs_best"] <= 2 * np.nan_to_num(row["se_vs_best"]))
        rows.append(row)
    return pd.DataFrame(rows)


def grid_average(df: pd.DataFrame, normalise: bool = True) -> pd.Series:
    r"""Each model's test MSE averaged over every (scenario, n_train) cell of the grid.

    With ``normalise`` each MSE is divided by the scenario's noise variance
    :math:`\sigma^2` first (the Bayes risk, so 1 is perfect), which stops the high-noise
    scenarios from dominating the average. Sorted, best first; only cells where every
    model has a result count.
    """
    ok = successful_rows(df).copy()
    value = ok["mse"] / ok["noise_level"] ** 2 if normalise else ok["mse"]
    ok = ok.assign(value=value)
    cell = ok.groupby(["scenario", "n_train", "model"])["value"].mean().unstack("model")
    return cell.dropna().mean().sort_values()


def write_report(df: pd.DataFrame, out: str | os.PathLike, learned: str = "learned_half_cauchy"):
    """Write the plots (PNG), the headline table and the grid averages (CSV) into ``out``.

    Returns a dict of what was written, keyed by short names.
    """
    from bayesmoe.studies.learning_curve import plots as study_plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {
        "learning_curves": study_plots.plot_learning_curves(df, out / "learning_curves.png"),
        "excess_curves": study_plots.plot_learning_curves(
            df, out / "excess_curves.png", metric="excess_mse"
        ),
        "regret": study_plots.plot_regret(df, out / "regret.png"),
    }
    if df["model"].isin(LEARNED_MODELS).any():
        written["scales"] = study_plots.plot_scales(df, out / "scales.png")
    if learned in set(df["model"]):
        table = headline(df, learned=learned)
        table.to_csv(out / "headline.csv", index=False)
        written["headline"] = out / "headline.csv"
    grid = grid_average(df)
    grid.rename("mse_over_noise_var").to_csv(out / "grid_average.csv")
    written["grid_average"] = out / "grid_average.csv"
    return written


def summary_text(df: pd.DataFrame, learned: str = "learned_half_cauchy") -> str:
    """A few lines stating, with numbers, at how many cells the learned model meets the
    criterion (:func:`headline`), the grid averages and the cells where it does not."""
    table = headline(df, learned=learned)
    grid = grid_average(df)
    fixed = grid[[m for m in FIXED_MODELS if m in grid.index]]
    lines = [
        f"cells (scenario x size): {len(table)}, replicates per cell: {int(table['R'].min())}"
        f"-{int(table['R'].max())}",
        f"{learned} within 2 s.e. of the best fixed choice at {int(table['holds'].sum())}"
        f"/{len(table)} cells",
        f"grid-averaged MSE/sigma^2: {learned} {grid.get(learned, np.nan):.4f}; best fixed "
        f"{fixed.idxmin()} {fixed.min():.4f}; worst fixed {fixed.idxmax()} {fixed.max():.4f}",
    ]
    bad = table[~table["holds"]]
    for _, r in bad.head(12).iterrows():
        lines.append(
            f"  worse at {r['scenario']} n={r['n_train']}: {r[learned]:.4g} vs "
            f"{r['best_model']} {r['best_mse']:.4g} (diff {r['diff_vs_best']:.3g}, "
            f"se {r['se_vs_best']:.2g})"
        )
    return "\n".join(lines)
