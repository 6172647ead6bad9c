"""The figures users look at, written as PNG. ArviZ draws the standard diagnostics."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib import ticker

__all__ = ["plot_diagnostics", "plot_predictions", "plot_scales"]


def plot_scales(
    fits: Mapping[str, xr.DataTree],
    *,
    truth: tuple[float, float] | None = None,
    path: str | Path | None = None,
):
    """Joint posterior of (tau_base, tau_interaction), one colour per fit, log axes.

    ``truth`` draws the generating scales (e.g. the root mean square of the true weights).
    """
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, idata in fits.items():
        post = idata["posterior"]
        if "tau_base" not in post or "tau_interaction" not in post:
            continue
        tb = post["tau_base"].values.ravel()
        ti = post["tau_interaction"].values.ravel()
        ax.scatter(tb, ti, s=4, alpha=0.3, label=name)
    if truth is not None:
        ax.axvline(truth[0], color="k", ls="--", lw=1, label="true base scale")
        ax.axhline(truth[1], color="k", ls=":", lw=1, label="true interaction scale")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        _log_ticks(axis, *limits)
    ax.set_xlabel(r"$\tau_\mathrm{base}$")
    ax.set_ylabel(r"$\tau_\mathrm{interaction}$")
    ax.set_title("Learned prior scales (posterior draws)")
    ax.legend(fontsize=8, markerscale=3)
    fig.tight_layout()
    return _finish(fig, path)


def plot_predictions(
    y_true: np.ndarray,
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    path: str | Path | None = None,
    max_points: int = 400,
):
    """Predicted mean (+/- 1 predictive sd) against the truth, one panel per model."""
    k = len(predictions)
    fig, axes = plt.subplots(1, k, figsize=(4 * k, 4), sharex=True, sharey=True, squeeze=False)
    idx = np.arange(len(y_true))[:max_points]
    lo, hi = float(np.min(y_true)), float(np.max(y_true))
    for ax, (name, (mean, sd)) in zip(axes[0], predictions.items(), strict=True):
        ax.errorbar(y_true[idx], mean[idx], yerr=sd[idx], fmt=".", ms=3, alpha=0.4, elinewidth=0.5)
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        mse = float(np.mean((mean - y_true) ** 2))
        ax.set_title(f"{name}\nMSE vs truth {mse:.3g}", fontsize=9)
        ax.set_xlabel("true mean of y")
    axes[0, 0].set_ylabel("posterior predictive mean")
    fig.tight_layout()
    return _finish(fig, path)


def plot_diagnostics(idata: xr.DataTree, var_names: list[str], out_dir: str | Path) -> list[Path]:
    """Rank plots and, if present, a posterior predictive check, as PNG files."""
    out_dir = Path(out_dir)
    written = []
    pc = az.plot_rank(idata, var_names=var_names)
    written.append(out_dir / "rank.png")
    pc.savefig(written[-1])
    pc = az.plot_trace_dist(idata, var_names=var_names)
    written.append(out_dir / "trace.png")
    pc.savefig(written[-1])
    if "posterior_predictive" in idata.children:
        pc = az.plot_ppc_dist(idata)
        written.append(out_dir / "ppc.png")
        pc.savefig(written[-1])
    plt.close("all")
    return written


def _log_ticks(axis, low: float, high: float) -> None:
    """Tick labels of a log-scaled axis spanning ``[low, high]`` that never overlap.

    Within a factor of five, at most six evenly spaced round numbers; up to two decades,
    1, 2 and 5 times powers of ten; both labelled as plain numbers (0.2, 0.5, 1). Over
    more decades at most six powers of ten, labelled :math:`10^k`. Minor ticks carry
    no label.
    """
    decades = np.log10(high / low)
    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    if decades <= 0.7:
        axis.set_major_locator(ticker.MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
        axis.set_major_formatter(plain)
    elif decades <= 2:
        axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(plain)
    else:
        axis.set_major_locator(ticker.LogLocator(base=10, numticks=6))
        axis.set_major_formatter(ticker.LogFormatterSciNotation(base=10))
    axis.set_minor_locator(ticker.LogLocator(base=10, subs="auto"))
    axis.set_minor_formatter(ticker.NullFormatter())


def _finish(fig, path):
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return Path(path)
    return fig
