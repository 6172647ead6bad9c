"""The pointwise log-likelihood a fit stores: every row, a fixed row subsample, or none.

``log_likelihood="auto"`` keeps every row while rows x draws x experts x 8 bytes is at
most :data:`LOG_LIKELIHOOD_AUTO_BYTES`; above it, the fixed subsample of
:data:`LOO_SUBSAMPLE_ROWS` rows (:func:`subsample_rows`) plus a posterior-mean
approximation of every row (``loo_approximation``), what
:func:`arviz_stats.loo_subsample` needs.

The subsample's values are stored in the group :data:`SUBSAMPLE_GROUP`, not in
``log_likelihood``: :func:`arviz.loo` reads ``log_likelihood`` and would otherwise report the
elpd of the 2,000 stored rows as if they were the data. Under another name ``arviz.loo``
of such a fit refuses ("log likelihood not found") instead of giving a silently wrong
number; ``est.loo()`` (the PSIS-LOO of every row, computed block by block) and
:func:`bayesmoe.compare` (subsampled LOO, :func:`arviz_stats.loo_subsample`) are the ways
to its elpd. :func:`log_likelihood_group` says which group a fit has.

The values come from the spec's closed form
(:meth:`bayesmoe.builders.contract.ModelSpec.log_likelihood`), or from
:func:`pymc.compute_log_likelihood` for a plain PyMC model.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
import pymc as pm
import xarray as xr

from bayesmoe.builders.contract import spec_of
from bayesmoe.inference.settings import check_count

__all__ = [
    "LOG_LIKELIHOOD_AUTO_BYTES",
    "LOG_LIKELIHOOD_MAX_BYTES",
    "LOO_SUBSAMPLE_ROWS",
    "LOO_SUBSAMPLE_SEED",
    "SUBSAMPLE_GROUP",
    "SubsampledLogLikelihoodWarning",
    "add_log_likelihood",
    "log_likelihood_group",
    "log_likelihood_plan",
    "subsample_apart",
    "subsample_rows",
]

#: Largest pointwise log-likelihood ``log_likelihood=True`` computes (rows x draws x
#: experts x 8 bytes); above it, fit refuses before sampling and says what to pass instead.
LOG_LIKELIHOOD_MAX_BYTES = 2 * 1024**3
#: ``log_likelihood="auto"`` stores every row's pointwise log-likelihood up to this size
#: (rows x draws x experts x 8 bytes) and a row subsample above it. Writing the values is
#: cheap; PSIS-LOO over them in :func:`bayesmoe.compare` is what this bounds
#: (``benchmarks/loglik.py`` measures both).
LOG_LIKELIHOOD_AUTO_BYTES = 256 * 1024**2
#: Rows of the subsample kept above LOG_LIKELIHOOD_AUTO_BYTES: with the posterior-mean
#: approximation of every row (``loo_approximation``), enough for a subsampling SE small
#: against the SE of a difference of two models (``benchmarks/loglik.py``).
LOO_SUBSAMPLE_ROWS = 2000
#: Seed of the subsample's rows. Fixed, not the fit's seed: models fitted on the same rows
#: then share the subsample, which lets arviz compare them with the paired difference
#: estimator (with different subsamples it falls back to sqrt(se_a^2 + se_b^2)).
LOO_SUBSAMPLE_SEED = 20_190_611


#: The group holding the pointwise log-likelihood of a row subsample (``log_likelihood``
#: holds every row's): ArviZ does not read it, so ``arviz.loo`` cannot mistake it for the data.
SUBSAMPLE_GROUP = "log_likelihood_subsample"


def log_likelihood_group(tree: xr.DataTree) -> str | None:
    """The group holding a fit's pointwise log-likelihood: ``"log_likelihood"`` (every
    row), :data:`SUBSAMPLE_GROUP` (a row subsample) or None (not stored)."""
    for name in ("log_likelihood", SUBSAMPLE_GROUP):
        if name in tree.children:
            return name
    return None


def subsample_apart(tree: xr.DataTree) -> xr.DataTree:
    """Move a subsample's log-likelihood stored as ``log_likelihood`` (files written
    before :data:`SUBSAMPLE_GROUP` existed) to :data:`SUBSAMPLE_GROUP`, in place."""
    marked = tree.attrs.get("bayesmoe_log_likelihood") == "subsample"
    if marked and "log_likelihood" in tree.children and SUBSAMPLE_GROUP not in tree.children:
        if "row" in tree["log_likelihood"].coords:
            tree[SUBSAMPLE_GROUP] = tree["log_likelihood"].to_dataset()
            del tree["log_likelihood"]
    return tree


class SubsampledLogLikelihoodWarning(UserWarning):
    """``log_likelihood="auto"`` stored the pointwise log-likelihood of a row subsample."""


def _log_likelihood_bytes(model: pm.Model, n_draws: int) -> tuple[int, int, int] | None:
    """(bytes, rows, experts) of a fit's pointwise log-likelihood; None without a spec."""
    spec = spec_of(model)
    if spec is None or spec.y is None:
        return None
    y, width = spec.y, spec.n_outputs
    return y.size * n_draws * width * 8, y.size, width


def _check_log_likelihood_size(model: pm.Model, n_draws: int) -> None:
    size = _log_likelihood_bytes(model, n_draws)
    if size is None:
        return
    need, n_rows, width = size
    if need > LOG_LIKELIHOOD_MAX_BYTES:
        raise ValueError(
            f"log_likelihood=True would need about {need / 1024**3:.1f} GiB "
            f"({n_rows} rows x {n_draws} draws x {width} experts); pass "
            "log_likelihood='auto' (a row subsample for arviz_stats.loo_subsample), "
            "log_likelihood=False (then bayesmoe.add_log_likelihood on a subset of draws), or "
            "fewer draws"
        )


def _given_rows(model: pm.Model, log_likelihood, n_draws: int) -> np.ndarray:
    rows = np.unique(np.asarray(log_likelihood))
    size = _log_likelihood_bytes(model, n_draws)
    n_rows = None if size is None else size[1]
    if (
        rows.dtype.kind not in "iu"
        or rows.size == 0
        or rows[0] < 0
        or (n_rows is not None and rows[-1] >= n_rows)
    ):
        raise ValueError(
            "log_likelihood as row positions must be integers in 0.."
            f"{'n - 1' if n_rows is None else n_rows - 1}, got {log_likelihood!r}"
        )
    return rows.astype(np.int64)


def log_likelihood_plan(model: pm.Model, log_likelihood, n_draws: int):
    """What fit stores: None (nothing), "all" (every row) or the subsample's row positions.

    Decided and checked before sampling, so a refusal costs nothing. Called by
    :func:`bayesmoe.fit` through its plan; the subsample warning names fit's caller.
    """
    if isinstance(log_likelihood, bool | np.bool_):
        if not log_likelihood:
            return None
        _check_log_likelihood_size(model, n_draws)
        return "all"
    if isinstance(log_likelihood, np.ndarray | list | tuple):
        return _given_rows(model, log_likelihood, n_draws)
    if not (isinstance(log_likelihood, str) and log_likelihood == "auto"):
        raise ValueError(f"log_likelihood must be 'auto', True or False, got {log_likelihood!r}")
    size = _log_likelihood_bytes(model, n_draws)
    if (
        size is None
        or size[0] <= LOG_LIKELIHOOD_AUTO_BYTES
        or size[1] <= LOO_SUBSAMPLE_ROWS
        or not spec_of(model).supports_row_subsample
    ):
        return "all"
    need, n_rows, width = size
    rows = subsample_rows(n_rows)
    warnings.warn(
        f"log_likelihood='auto': the pointwise log-likelihood of {n_rows} rows x {n_draws} "
        f"draws x {width} experts would take {need / 1024**3:.2f} GiB (more than "
        f"LOG_LIKELIHOOD_AUTO_BYTES = {LOG_LIKELIHOOD_AUTO_BYTES / 1024**3:.2f} GiB), so it "
        f"is stored for a random subsample of {rows.size} rows "
        f"in group {SUBSAMPLE_GROUP!r} (attrs['bayesmoe_log_likelihood'] = 'subsample', "
        "positions in its 'row' coordinate) with a point-estimate approximation for "
        "every row (group loo_approximation). arviz.loo does not read that group; "
        "est.loo() gives the PSIS-LOO of every row (computed in blocks) and "
        "bayesmoe.compare estimates LOO with arviz_stats.loo_subsample. Pass "
        "log_likelihood=True to store every row",
        SubsampledLogLikelihoodWarning,
        stacklevel=4,  # fit's caller: this <- plan.make_plan <- fit <- caller
    )
    return rows


def subsample_rows(n_rows: int, size: int | None = None) -> np.ndarray:
    """The sorted row positions of the LOO subsample of a fit on ``n_rows`` rows.

    ``size`` rows (default ``LOO_SUBSAMPLE_ROWS``, at most ``n_rows``) drawn without
    replacement with the fixed ``LOO_SUBSAMPLE_SEED``: every fit on the same number of rows
    gets the same subsample, so subsampled fits compare pairwise.
    """
    size = LOO_SUBSAMPLE_ROWS if size is None else check_count("rows", size, 1)
    size = min(size, n_rows)
    rng = np.random.default_rng(LOO_SUBSAMPLE_SEED)
    return np.sort(rng.choice(n_rows, size=size, replace=False)).astype(np.int64)


def add_log_likelihood(idata: xr.DataTree, model: pm.Model, *, rows=None) -> xr.DataTree:
    """Add (or replace) the pointwise ``log_likelihood`` group of a fit, in place.

    Uses the builder's closed form where there is one (fast, and the only way for a
    collapsed model), otherwise :func:`pymc.compute_log_likelihood`.

    Parameters
    ----------
    idata : xarray.DataTree
        A fit of ``model`` by :func:`fit` (working scale, as ``fit`` returns it).
    model : pymc.Model
    rows : int or array of int, optional
        Store it for a row subsample only: that many rows (the fixed subsample of
        :func:`subsample_rows`) or these row positions. The ``log_likelihood`` group then
        holds those rows, ``loo_approximation`` holds :math:`\\log p(y_i \\mid \\bar\\theta)`
        at the posterior mean for every row (the approximation
        :func:`arviz_stats.loo_subsample` corrects with the subsample), and the group's
        ``row`` coordinate the positions (a coordinate, not an attribute, so that it
        survives arithmetic on the group and saving), stored as the group
        :data:`SUBSAMPLE_GROUP` (which :func:`arviz.loo` does not read). Needs a
        bayesmoe builder.

    Returns
    -------
    xarray.DataTree
        ``idata``, with ``attrs["bayesmoe_log_likelihood"]`` set to ``"full"`` or
        ``"subsample"``.
    """
    spec = spec_of(model)
    if rows is not None and (spec is None or not spec.supports_row_subsample):
        raise ValueError(
            "rows (a subsampled log-likelihood) needs a model built by "
            "bayesmoe.interaction_regression, mixture_regression or gated_experts"
        )
    for stale in ("loo_approximation", SUBSAMPLE_GROUP, "log_likelihood"):
        if stale in idata.children:  # of the subsample or full group this replaces
            del idata[stale]
    if spec is None:
        with model:
            pm.compute_log_likelihood(idata, progressbar=False)
        idata.attrs["bayesmoe_log_likelihood"] = "full"
        return idata
    posterior = idata["posterior"].to_dataset()
    obs = idata["observed_data"]["obs"]
    X = idata["constant_data"]["X_base"].values
    y = idata["observed_data"]["y"].values
    if rows is None:
        ll = spec.log_likelihood(posterior, X, y).assign_coords(obs=obs)
        idata["log_likelihood"] = xr.Dataset({"y": ll})
        idata.attrs["bayesmoe_log_likelihood"] = "full"
        return idata
    if isinstance(rows, numbers.Integral) and not isinstance(rows, bool):
        rows = subsample_rows(y.size, int(rows))
    rows = np.unique(np.asarray(rows))
    if rows.dtype.kind not in "iu" or rows.size == 0 or rows[0] < 0 or rows[-1] >= y.size:
        raise ValueError(
            f"rows must be a count or positions of rows in 0..{y.size - 1}, got {rows!r}"
        )
    ll = spec.log_likelihood(posterior, X[rows], y[rows]).assign_coords(
        obs=obs.values[rows], row=("obs", rows.astype(np.int64))
    )
    # The approximation of every row's lpd that loo_subsample's difference estimator
    # corrects with the subsample: the density at the posterior mean (no Monte Carlo
    # noise per row, one "draw" per row).
    point = posterior.mean(("chain", "draw")).expand_dims(chain=[0], draw=[0])
    approx = spec.log_likelihood(point, X, y).values[0, 0]
    idata[SUBSAMPLE_GROUP] = xr.Dataset({"y": ll})
    idata["loo_approximation"] = xr.Dataset(
        {"y": ("obs", approx)},
        coords={"obs": obs.values},
        attrs={"method": "plpd", "point": "posterior mean"},
    )
    idata.attrs["bayesmoe_log_likelihood"] = "subsample"
    return idata
