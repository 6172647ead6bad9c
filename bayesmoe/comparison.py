"""Comparing fitted models: LOO/WAIC tables and weights via ArviZ, averaging, choosing K.

Everything statistical is ArviZ's: :func:`arviz.loo` for PSIS-LOO, :func:`arviz.compare`
for the table and the stacking / pseudo-BMA weights, :func:`arviz.plot_compare` for the
figure and :func:`arviz.weight_predictions` for averaged predictive draws. This module
checks that the models can be compared at all (same observations, pointwise
log-likelihood present), names the rows whose LOO estimate is unreliable, and runs the
screening-then-NUTS search over the number of experts.

References
----------
* PSIS-LOO and WAIC: Vehtari, Gelman & Gabry (2017), "Practical Bayesian model evaluation
  using leave-one-out cross-validation and WAIC", *Statistics and Computing* 27, 1413-1432;
  Pareto k: Vehtari, Simpson, Gelman, Yao & Gabry (2024), "Pareto smoothed importance
  sampling", *JMLR* 25(72).
* Subsampled LOO (the difference estimator with a cheap approximation of every row):
  Magnusson, Andersen, Jonasson & Vehtari (2019), "Bayesian leave-one-out
  cross-validation for large data", *ICML*, PMLR 97.
* Stacking and (Bayesian-bootstrap) pseudo-BMA weights: Yao, Vehtari, Simpson & Gelman
  (2018), "Using stacking to average Bayesian predictive distributions", *Bayesian
  Analysis* 13(3), 917-1007.
"""

from __future__ import annotations

import copy
import numbers
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from arviz_stats.utils import ELPDData, ELPDDataLOOSubsample
from xarray.backends import BackendArray
from xarray.core import indexing

from bayesmoe.inference.loglik import SUBSAMPLE_GROUP, log_likelihood_group, subsample_apart
from bayesmoe.numerics.waic import P_WAIC_MAX, waic_pointwise

__all__ = [
    "ICS",
    "TABLE_FORMATS",
    "WEIGHT_METHODS",
    "Comparison",
    "ExpertSelection",
    "compare",
    "format_table",
    "pointwise_elpd",
    "predict_averaged",
    "select_experts",
]

ICS = ("loo", "waic")
WEIGHT_METHODS = ("stacking", "bb-pseudo-bma", "pseudo-bma")
SCREEN_METHODS = ("vem", "advi", "fullrank_advi", "nuts")
SELECTION_RULES = ("one_se", "best")
SAMPLE_DIMS = ("chain", "draw")
#: Fewest rows that subsampled models must share to be compared: the difference
#: estimator's SE is a sample sd over these rows.
MIN_SHARED_ROWS = 100
#: How :func:`format_table` prints the columns of a comparison table (ArviZ's names):
#: log densities and their standard errors to 0.1, weights and probabilities to 0.01,
#: a per-row log density to 0.001. Other columns print as pandas does.
TABLE_FORMATS = {
    "elpd": "{:.1f}",
    "elpd_diff": "{:.1f}",
    "se": "{:.1f}",
    "dse": "{:.1f}",
    "subsampling_dse": "{:.1f}",
    "p": "{:.1f}",
    "weight": "{:.2f}",
    "p_worse": "{:.2f}",
    "p_better": "{:.2f}",
    "heldout_lpd_per_row": "{:.3f}",
}


# ---------------------------------------------------------------------------- inputs
def _check_choice(name: str, value, options: Iterable[str]) -> str:
    options = tuple(options)
    if not isinstance(value, str) or value.lower() not in options:
        raise ValueError(f"{name}={value!r} is not known; choose one of {list(options)}")
    return value.lower()


def _check_models(models, *, minimum: int = 1) -> dict:
    if not isinstance(models, Mapping):
        raise TypeError(
            f"models must be a dict of name -> fitted estimator or DataTree, "
            f"got {type(models).__name__}"
        )
    if len(models) < minimum:
        raise ValueError(f"models needs at least {minimum} entries, got {len(models)}")
    for name in models:
        if not isinstance(name, str):
            raise TypeError(f"models keys must be strings (model names), got {name!r}")
    return dict(models)


def _tree(name: str, model) -> xr.DataTree:
    """The fit of one model, with its pointwise log-likelihood."""
    from bayesmoe.estimators import BayesianRegressor

    if isinstance(model, BayesianRegressor):
        if not hasattr(model, "idata_"):
            raise ValueError(
                f"models[{name!r}] is an unfitted {type(model).__name__}; fit it first"
            )
        if log_likelihood_group(model.idata_) is None:
            model.add_log_likelihood()  # fitted with log_likelihood=False: compute it now
        return model.idata_
    if not isinstance(model, xr.DataTree):
        raise TypeError(
            f"models[{name!r}] must be a fitted bayesmoe estimator or an xarray.DataTree, "
            f"got {type(model).__name__}"
        )
    subsample_apart(model)  # a tree written before SUBSAMPLE_GROUP
    if log_likelihood_group(model) is None:
        raise ValueError(
            f"models[{name!r}] has no log_likelihood group, which LOO/WAIC need. Add it with "
            "bayesmoe.add_log_likelihood(idata, model) (idata from bayesmoe.fit), "
            "estimator.add_log_likelihood() for a bayesmoe estimator, or "
            "pymc.compute_log_likelihood(idata, model=model) for any PyMC model"
        )
    if "posterior" not in model.children:
        raise ValueError(f"models[{name!r}] has no posterior group")
    return model


def _log_lik(name: str, tree: xr.DataTree) -> xr.DataArray:
    ll = tree[log_likelihood_group(tree)]
    names = list(ll.data_vars)
    if not names:
        raise ValueError(f"models[{name!r}]: the log_likelihood group is empty")
    if len(names) > 1:
        raise ValueError(
            f"models[{name!r}] has several observed variables in log_likelihood {names}; "
            "compare them one at a time with arviz.compare(var_name=...)"
        )
    return ll[names[0]]


def _observed(tree: xr.DataTree) -> np.ndarray | None:
    if "observed_data" not in tree.children or not tree["observed_data"].data_vars:
        return None
    return np.asarray(next(iter(tree["observed_data"].data_vars.values())).values, float)


def _n_obs(name: str, tree: xr.DataTree) -> int:
    if _subsample_rows(name, tree) is not None:
        return int(tree["loo_approximation"]["y"].size)
    ll = _log_lik(name, tree)
    return int(np.prod([size for d, size in ll.sizes.items() if d not in SAMPLE_DIMS]))


def _subsample_rows(name: str, tree: xr.DataTree) -> np.ndarray | None:
    """Row positions of a fit that stores its log-likelihood for a subsample, else None.

    ``bayesmoe.fit(log_likelihood="auto")`` above ``LOG_LIKELIHOOD_AUTO_BYTES`` stores the
    subsample's rows in ``SUBSAMPLE_GROUP`` (their positions as its ``row`` coordinate) and
    every row's approximation in ``loo_approximation``. A group recomputed for every row
    since (as many rows as the data) makes the fit a full one again.
    """
    if tree.attrs.get("bayesmoe_log_likelihood") != "subsample":
        return None
    ll = _log_lik(name, tree)
    m = int(np.prod([size for d, size in ll.sizes.items() if d not in SAMPLE_DIMS]))
    approx = tree["loo_approximation"] if "loo_approximation" in tree.children else None
    n = _observed(tree).size if approx is None else int(approx["y"].size)
    if m == n:
        return None
    if "row" not in ll.coords or approx is None or ll["row"].size != m:
        raise ValueError(
            f"models[{name!r}] is marked as a subsampled log-likelihood, but its "
            f"{SUBSAMPLE_GROUP} group ({m} rows) has no subsample record (its 'row' "
            "coordinate and the loo_approximation group); recompute it with "
            "bayesmoe.add_log_likelihood"
        )
    return np.asarray(ll["row"].values, dtype=np.int64).ravel()


def _observed_rows(tree: xr.DataTree) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(rows, y)``: observed y and, for a fit that keeps a row sample, their positions."""
    y = _observed(tree)
    if y is None:
        return None, None
    obs = tree["observed_data"]
    rows = obs["row"].values if "row" in obs.coords else None
    return (None if rows is None else np.asarray(rows, dtype=np.int64).ravel()), y.ravel()


def check_same_data(trees: Mapping[str, xr.DataTree]) -> None:
    """Refuse models fitted on different data (different n or different observed y).

    A streamed fit keeps y for a sample of rows only (with their positions, the ``row``
    coordinate); it is compared with the others on the rows both hold.
    """
    names = list(trees)
    first = names[0]
    n0 = _n_obs(first, trees[first])
    rows0, y0 = _observed_rows(trees[first])
    for name in names[1:]:
        n = _n_obs(name, trees[name])
        if n != n0:
            raise ValueError(
                f"models {first!r} and {name!r} were fitted on different data "
                f"({n0} vs {n} observations); LOO/WAIC compare models on the same observations"
            )
        rows, y = _observed_rows(trees[name])
        if y0 is None or y is None:
            continue
        if rows0 is None and rows is None:
            a, b, at = y0, y, np.arange(y0.size)
        else:
            r0 = np.arange(y0.size) if rows0 is None else rows0
            r1 = np.arange(y.size) if rows is None else rows
            at, i0, i1 = np.intersect1d(r0, r1, return_indices=True)
            a, b = y0[i0], y[i1]
        scale = max(float(np.max(np.abs(y0))), 1.0) if y0.size else 1.0
        differ = np.flatnonzero(~np.isclose(a, b, rtol=1e-9, atol=1e-12 * scale))
        if differ.size:
            i = int(differ[0])
            raise ValueError(
                f"models {first!r} and {name!r} were fitted on different data: their "
                f"observed y differ at {differ.size} of {a.size} observations compared "
                f"(first at position {int(at[i])}: {a[i]!r} vs {b[i]!r})"
            )


def shared_subsample(trees: Mapping[str, xr.DataTree]) -> np.ndarray | None:
    """The rows every subsampled model holds (None when no model is subsampled).

    Streamed fits of one data set draw nested bottom-k samples
    (:mod:`bayesmoe.numerics.rowsample`), so the shared rows are the smallest model's;
    subsampled LOO then pairs the models on the same rows.
    """
    stored = [r for name, tree in trees.items() if (r := _subsample_rows(name, tree)) is not None]
    if not stored:
        return None
    shared = stored[0]
    for rows in stored[1:]:
        shared = np.intersect1d(shared, rows)
    if shared.size < MIN_SHARED_ROWS:
        sizes = ", ".join(f"{name!r}: {r.size}" for name, r in zip(trees, stored, strict=False))
        raise ValueError(
            f"the subsampled models share {shared.size} rows of their LOO subsamples "
            f"({sizes} rows each); at least {MIN_SHARED_ROWS} are needed to compare them. "
            "Fit them the same way (all streamed from the same partitions, or all in memory)"
        )
    return shared


# ---------------------------------------------------------------------------- ELPD
def _obs_labels(da: xr.DataArray, idx: np.ndarray) -> np.ndarray:
    dims = [d for d in da.dims if d not in SAMPLE_DIMS]
    if len(dims) == 1 and dims[0] in da.coords:
        return np.asarray(da[dims[0]].values)[idx]
    return idx


class _StoredRows(BackendArray):
    """A (chain, draw, obs) log-likelihood of every row that holds only the subsample's.

    :func:`arviz_stats.loo_subsample` takes the pointwise log-likelihood of all N rows but
    reads only the subsample's (the other rows enter through the approximation). Wrapped
    in xarray's lazy indexing (the backend-array protocol of xarray's file backends),
    selecting those rows returns the stored values, and nothing of size draws x N is ever
    formed; asking for any other row is an error rather than made-up numbers.
    """

    def __init__(self, values: np.ndarray, rows: np.ndarray, n_rows: int):
        self.values = values
        self.shape = (*values.shape[:-1], n_rows)
        self.dtype = values.dtype
        self.position = np.full(n_rows, -1, dtype=np.int64)
        self.position[rows] = np.arange(rows.size)

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER, self._outer
        )

    def _outer(self, key: tuple):
        *lead, last = key
        position = self.position[np.arange(self.shape[-1])[last]]
        if np.any(position < 0):
            raise ValueError(
                "the pointwise log-likelihood is stored for a row subsample only; a row "
                "outside it was requested"
            )
        out = self.values[..., position]
        for axis in reversed(range(len(lead))):  # outer indexing, one axis at a time
            out = out[(slice(None),) * axis + (lead[axis],)]
        return out


def _loo_subsample(
    tree: xr.DataTree, rows: np.ndarray, observations: np.ndarray | None = None
) -> ELPDData:
    """:func:`arviz_stats.loo_subsample` of a fit stored with a row subsample.

    ``rows`` are the stored rows, ``observations`` the ones to use (default: all stored).
    A streamed fit's approximation is a lazy dask array, computed here on a
    ``dask.distributed`` client (and kept in ``tree`` when it takes at most
    ``LOG_LIKELIHOOD_AUTO_BYTES``); its y is kept for the sample only, and ``observed_data``
    stands for every row by a placeholder (the "plpd" approximation never reads it).
    """
    from arviz_stats import loo_subsample

    from bayesmoe.inference.loglik import LOG_LIKELIHOOD_AUTO_BYTES
    from bayesmoe.streaming import computed, is_dask

    ll = tree[log_likelihood_group(tree)]["y"].transpose(*SAMPLE_DIMS, "obs")
    approx = tree["loo_approximation"]["y"]
    n = approx.size
    values = computed(approx.data)
    if is_dask(approx.data) and values.nbytes <= LOG_LIKELIHOOD_AUTO_BYTES:
        # kept (one float per row, up to the size a stored log-likelihood may take), so
        # the next compare of this fit does not make another pass over its data
        group = tree["loo_approximation"].to_dataset()
        tree["loo_approximation"] = group.copy(data={"y": values})
    lazy = xr.Variable(
        ll.dims, indexing.LazilyIndexedArray(_StoredRows(np.asarray(ll.values), rows, n))
    )
    coords = {d: ll[d].values for d in SAMPLE_DIMS if d in ll.coords}
    obs = approx["obs"].values
    full = xr.DataArray(lazy, coords={**coords, "obs": obs})
    observed = tree["observed_data"].to_dataset()
    if observed["y"].size != n:  # a streamed fit: y of every row is not kept
        observed = xr.Dataset({"y": ("obs", np.broadcast_to(np.nan, (n,)))}, coords={"obs": obs})
    data = xr.DataTree.from_dict(
        {
            "posterior": tree["posterior"].to_dataset(),
            "observed_data": observed,
            "log_likelihood": xr.Dataset({"y": full}),
        }
    )

    # "plpd" takes the approximation from a function; ours is the stored one (the density
    # at the posterior mean, computed by bayesmoe.fit from the model).
    def stored_approximation(_observed, _data):
        return xr.DataArray(values, dims=["obs"], coords={"obs": obs})

    return loo_subsample(
        data,
        observations=rows if observations is None else observations,
        pointwise=True,
        var_name="y",
        method="plpd",
        log_lik_fn=stored_approximation,
    )


def _loo(
    name: str, tree: xr.DataTree, shared: np.ndarray | None = None
) -> tuple[ELPDData, np.ndarray]:
    rows = _subsample_rows(name, tree)
    with warnings.catch_warnings():
        # ArviZ's generic Pareto-k warning is replaced by one naming model and rows
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        if rows is None:
            elpd = az.loo(as_every_row(tree), pointwise=True)
        else:
            elpd = _loo_subsample(tree, rows, shared)
    if rows is not None and shared is not None:
        rows = shared
    k = np.asarray(elpd.pareto_k.values).ravel()
    checked = np.arange(k.size) if rows is None else rows  # k is NaN off the subsample
    bad = checked[~(k[checked] <= elpd.good_k)]  # NaN k (no tail fit possible) too
    if bad.size:
        labels = _obs_labels(elpd.pareto_k, bad)
        shown = ", ".join(
            f"{lab} (k={k[i]:.2f})" for lab, i in zip(labels[:20], bad[:20], strict=False)
        )
        more = f" and {bad.size - 20} more" if bad.size > 20 else ""
        of = f"{checked.size} observations" if rows is None else f"{rows.size} subsampled rows"
        warnings.warn(
            f"PSIS-LOO of model {name!r} is unreliable at {bad.size} of {of} "
            f"with Pareto k > {elpd.good_k:.2f}: obs {shown}{more}. These rows are highly "
            "influential; check them, refit without them (arviz.reloo) or use K-fold CV.",
            UserWarning,
            stacklevel=4,
        )
        return elpd, labels
    return elpd, np.array([], dtype=int)


def as_every_row(tree: xr.DataTree) -> xr.DataTree:
    """The fit with its log-likelihood as ``log_likelihood``, for :func:`arviz.loo`.

    For a log-likelihood stored in ``SUBSAMPLE_GROUP`` that holds every row it is asked
    about (a streamed fit's row sample, recomputed): a shallow new tree, the fit unchanged.
    """
    group = log_likelihood_group(tree)
    if group == "log_likelihood":
        return tree
    groups = {g: tree[g].to_dataset() for g in tree.children if g != group}
    groups["log_likelihood"] = tree[group].to_dataset()
    return xr.DataTree.from_dict(groups)


def _waic(name: str, tree: xr.DataTree) -> tuple[ELPDData, np.ndarray]:
    rows = _subsample_rows(name, tree)
    if rows is not None:
        raise ValueError(
            f"ic='waic' needs the pointwise log-likelihood of every row; models[{name!r}] "
            f"stores it for a subsample of {rows.size} of {_n_obs(name, tree)} rows "
            "(log_likelihood='auto'). Use ic='loo' (subsampled PSIS-LOO) or refit with "
            "log_likelihood=True"
        )
    ll = _log_lik(name, tree)
    obs_dims = [d for d in ll.dims if d not in SAMPLE_DIMS]
    stacked = ll.transpose(*SAMPLE_DIMS, *obs_dims).values
    S = stacked.shape[0] * stacked.shape[1]
    elpd_i, p_i = waic_pointwise(stacked.reshape(S, -1))
    n = elpd_i.size
    bad = np.flatnonzero(p_i > P_WAIC_MAX)
    if bad.size:
        warnings.warn(
            f"WAIC of model {name!r} is unreliable at {bad.size} of {n} observations with "
            f"p_waic_i > {P_WAIC_MAX} (obs {_obs_labels(ll, bad)[:20].tolist()}); prefer ic='loo'",
            UserWarning,
            stacklevel=4,
        )
    coords = {d: ll[d].values for d in obs_dims if d in ll.coords}
    shape = [ll.sizes[d] for d in obs_dims]
    result = ELPDData(
        elpd=float(elpd_i.sum()),
        se=float(np.sqrt(n * np.var(elpd_i))),
        p=float(p_i.sum()),
        n_samples=S,
        n_data_points=n,
        scale="log",
        warning=bool(bad.size),
        good_k=None,
        elpd_i=xr.DataArray(elpd_i.reshape(shape), dims=obs_dims, coords=coords),
    )
    return result, _obs_labels(ll, bad) if bad.size else np.array([], dtype=int)


def pointwise_elpd(
    models: Mapping, ic: str = "loo", *, every_row: bool = False
) -> tuple[dict[str, ELPDData], dict]:
    """Pointwise ELPD (ArviZ ``ELPDData``) of each model, after the comparability checks.

    Returns the ELPD objects and, per model, the labels of the observations whose
    estimate is unreliable (Pareto k above ArviZ's threshold, or ``p_waic_i > 0.4``).
    A fit that stores its log-likelihood for a row subsample (``log_likelihood="auto"``
    on large data) gets :func:`arviz_stats.loo_subsample`'s ``ELPDDataLOOSubsample``,
    whose ``elpd_i`` is NaN off the subsample; ``every_row=True`` refuses such fits
    instead (for uses that need every row's LOO density).
    """
    ic = _check_choice("ic", ic, ICS)
    models = _check_models(models)
    trees = {name: _tree(name, m) for name, m in models.items()}
    if every_row:
        for name, tree in trees.items():
            rows = _subsample_rows(name, tree)
            if rows is not None:
                raise ValueError(
                    f"models[{name!r}] stores its pointwise log-likelihood for a subsample of "
                    f"{rows.size} of {_n_obs(name, tree)} rows (log_likelihood='auto'), but "
                    "every row's LOO density is needed here; fit it with log_likelihood=True"
                )
    check_same_data(trees)
    shared = shared_subsample(trees) if ic == "loo" else None
    elpds, flagged = {}, {}
    for name, tree in trees.items():
        result = _loo(name, tree, shared) if ic == "loo" else _waic(name, tree)
        elpds[name], flagged[name] = result
    return elpds, flagged


# ---------------------------------------------------------------------------- compare
def format_table(
    table: pd.DataFrame, formats: Mapping[str, str] | None = None, *, index_name: str = "model"
) -> str:
    """A table as text to print: a header row, then one line per row, columns aligned.

    Display only: the numbers of ``table`` are not changed (write the table itself, e.g.
    with ``table.to_csv``, to keep every digit). ``formats`` maps column names to format
    strings (default :data:`TABLE_FORMATS`); a missing value prints as an empty cell. The
    index becomes the first column, headed ``index_name`` unless the index has a name.
    """
    formats = TABLE_FORMATS if formats is None else formats
    name = str(table.index.name or index_name)
    width = max([len(name), *(len(str(v)) for v in table.index)])
    head = f"{name:<{width}}"  # row names and their header left-aligned
    frame = table.rename_axis(head).reset_index()
    formatters = {head: lambda v: f"{v!s:<{width}}"}
    formatters.update({c: formats[c].format for c in frame.columns if c in formats})
    return frame.to_string(index=False, formatters=formatters, na_rep="")


# ---------------------------------------------------------------------------- compare
@dataclass
class Comparison:
    """Result of :func:`compare`.

    Attributes
    ----------
    table : DataFrame
        ArviZ's comparison table (:func:`arviz.compare`), best model first.
    figure : matplotlib.figure.Figure
        :func:`arviz.plot_compare` of the table; ``savefig(path)`` writes it as PNG.
    elpd : dict of name -> ELPDData
        Pointwise ELPD of each model (``elpd_i``, and ``pareto_k`` for LOO).
    unreliable : dict of name -> ndarray
        Observation labels whose estimate is unreliable (Pareto k / p_waic), after the
        fix when one was asked for.
    ic, method : str
    fixes : dict of name -> LooFix
        With ``fix=``: what :meth:`~bayesmoe.estimators.BayesianRegressor.loo` did for
        each model (:class:`bayesmoe.validation.LooFix`); empty otherwise.
    """

    table: pd.DataFrame
    figure: object
    elpd: dict
    unreliable: dict
    ic: str
    method: str
    fixes: dict = field(default_factory=dict)

    @property
    def weights(self) -> pd.Series:
        """Model weights (stacking or pseudo-BMA), indexed by model name."""
        return self.table["weight"]

    def savefig(self, path, **kwargs):
        """Write the comparison plot (PNG by the file extension)."""
        if self.figure is None:
            raise ValueError("this comparison was made with plot=False; it has no figure")
        kwargs.setdefault("dpi", 110)
        kwargs.setdefault("bbox_inches", "tight")
        self.figure.savefig(path, **kwargs)
        return path

    def to_csv(self, path) -> object:
        """Write the table with every digit (a header row, the model names first)."""
        self.table.to_csv(path, index_label="model")
        return path

    def _repr_html_(self):
        return self.table._repr_html_()

    def __repr__(self) -> str:
        return f"Comparison(ic={self.ic!r}, method={self.method!r})\n{self.table!r}"

    def __str__(self) -> str:
        """The table as :func:`format_table` prints it (what ``print(result)`` shows)."""
        return f"{self.ic.upper()} comparison ({self.method} weights)\n{format_table(self.table)}"


def compare(
    models: Mapping,
    ic: str = "loo",
    method: str = "stacking",
    *,
    round_to: int | str = "none",
    plot: bool = True,
    fix: str | None = None,
    X=None,
    y=None,
    k: int = 10,
) -> Comparison:
    r"""Compare fitted models by their expected log predictive density, via ArviZ.

    .. math::

        \widehat{\mathrm{elpd}} = \sum_i \log p(y_i \mid y_{-i})

    estimated by PSIS-LOO (``ic="loo"``, :func:`arviz.loo`) or WAIC (``ic="waic"``;
    computed pointwise here since ArviZ 1.x dropped it, then ranked by ArviZ). Weights:
    ``"stacking"`` maximises :math:`\sum_i \log \sum_k w_k\, p(y_i \mid y_{-i}, M_k)`
    over the simplex (Yao et al. 2018); ``"bb-pseudo-bma"`` and ``"pseudo-bma"`` are
    Akaike-type weights :math:`\propto e^{\widehat{\mathrm{elpd}}_k}`, with or without
    Bayesian-bootstrap stabilisation.

    Parameters
    ----------
    models : dict of name -> fitted estimator or DataTree
        All fitted on the same observations, each with a pointwise ``log_likelihood``
        (an estimator fitted with ``log_likelihood=False`` gets it computed). A fit that
        stores it for a row subsample (``log_likelihood="auto"`` on large data) is
        estimated by :func:`arviz_stats.loo_subsample`; the table then has ArviZ's
        ``subsampling_dse`` column, fits on the same number of rows share their
        subsample (paired differences), and the weights use, off the subsample, the
        difference estimator's pointwise values (``ic="waic"`` needs every row).
    ic : {"loo", "waic"}
    method : {"stacking", "bb-pseudo-bma", "pseudo-bma"}
    round_to : int or "none"
        Passed to :func:`arviz.compare` (default: raw numbers).
    plot : bool
        Draw :func:`arviz.plot_compare` (``result.figure``).
    fix : {None, "auto", "moment_match", "reloo", "kfold"}
        For each model with rows of Pareto k above ArviZ's threshold
        (:func:`bayesmoe.inference.diagnostics.pareto_k_threshold`), use
        ``est.loo(X, y, fix=fix, k=k)`` (:mod:`bayesmoe.validation`: moment matching,
        exact refits of those rows, or K-fold CV) instead of plain PSIS-LOO. Models
        without such rows keep their PSIS-LOO result unchanged. None (default): PSIS-LOO
        only, high-k rows named in a warning. Needs fitted estimators and ``ic="loo"``.
    X, y : array-like, optional
        The training rows, for the refits of ``fix`` (default: rebuilt from each fit; a
        formula fit needs its data frame).
    k : int
        Folds of K-fold CV when ``fix`` comes to it.

    Returns
    -------
    Comparison
        ``.table`` (ArviZ's DataFrame plus ``elpd_method``, how each model's elpd was
        estimated: ``psis``, ``psis (subsample)``, ``moment_match``, ``reloo``,
        ``moment_match+reloo``, ``kfold(k)`` or ``waic``, and ``n_high_k``, its rows
        whose estimate is still unreliable), ``.figure``, ``.weights``, ``.elpd``,
        ``.unreliable`` (observations with high Pareto k, also given as a warning),
        ``.fixes``.

    Raises
    ------
    ValueError
        Models fitted on different data (naming the two), a DataTree without
        ``log_likelihood`` (saying how to add it), unknown ``ic``/``method``/``fix``,
        ``fix`` with ``ic="waic"`` or with a DataTree (nothing to refit).
    """
    method = _check_choice("method", method, WEIGHT_METHODS)
    ic = _check_choice("ic", ic, ICS)
    _check_models(models, minimum=2)
    _check_fix_models(models, fix, ic)
    if fix is None:
        elpds, flagged = pointwise_elpd(models, ic)
        fixes = {}
    else:
        elpds, flagged, fixes = _fixed_elpd(models, fix, X, y, k)
    table = az.compare(_every_row(elpds), method=method, round_to=round_to)
    table["elpd_method"] = [_method_name(ic, elpds[n], fixes.get(n)) for n in table.index]
    table["n_high_k"] = [len(flagged[n]) for n in table.index]
    figure = None
    if plot:
        import matplotlib.pyplot as plt

        pc = az.plot_compare(table, backend="matplotlib")
        figure = pc.viz["figure"].item()
        ax = figure.axes[0]
        ax.set_title(f"{ic.upper()} comparison ({method} weights)")
        ticks = [t.get_text() for t in ax.get_yticklabels()]
        if set(ticks) <= set(table.index):
            ax.set_yticks(
                ax.get_yticks(), [f"{t}\nw = {table.loc[t, 'weight']:.2f}" for t in ticks]
            )
        plt.close(figure)  # returned, not shown twice in notebooks
    return Comparison(table, figure, elpds, flagged, ic, method, fixes)


def _check_fix_models(models: Mapping, fix, ic: str) -> None:
    """``fix`` needs LOO and fitted estimators (their model and their refits)."""
    from bayesmoe.estimators import BayesianRegressor
    from bayesmoe.validation import FIXES

    if fix is None:
        return
    _check_choice("fix", fix, FIXES)
    if ic != "loo":
        raise ValueError(f"fix={fix!r} fixes PSIS-LOO; it needs ic='loo', got ic={ic!r}")
    for name, model in models.items():
        if not isinstance(model, BayesianRegressor):
            raise TypeError(
                f"fix={fix!r} needs fitted bayesmoe estimators (it may refit them); "
                f"models[{name!r}] is a {type(model).__name__}"
            )


def _fixed_elpd(models: Mapping, fix: str, X, y, k: int):
    """PSIS-LOO of every model, then ``est.loo(fix=...)`` for those with high-k rows."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        elpds, flagged = pointwise_elpd(models, "loo")
    for w in caught:  # the Pareto-k warnings are replaced by the fix's own
        if not str(w.message).startswith("PSIS-LOO of model"):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    fixes = {}
    for name, labels in flagged.items():
        if len(labels) == 0:
            continue
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="PSIS-LOO: ")  # named below
            result = models[name].loo(X, y, fix=fix, k=k)
        fixes[name] = record = result.bayesmoe_fix
        elpds[name] = result
        flagged[name] = _obs_labels(result.elpd_i, record.still_high)
        if record.still_high.size:
            warnings.warn(f"model {name!r}: {record.message()}", UserWarning, stacklevel=3)
    return elpds, flagged, fixes


def _method_name(ic: str, elpd: ELPDData, record) -> str:
    """How a model's elpd in the table was estimated."""
    if ic == "waic":
        return "waic"
    if record is not None:
        return record.method
    return "psis (subsample)" if isinstance(elpd, ELPDDataLOOSubsample) else "psis"


def _every_row(elpds: dict[str, ELPDData]) -> dict[str, ELPDData]:
    r"""Subsampled LOO results with every row's ``elpd_i`` estimated, for the weights.

    :func:`arviz.compare` ranks by ``elpd`` / ``se`` and pairs subsampled models by their
    shared rows, but computes stacking and Bayesian-bootstrap weights from ``elpd_i``,
    which ``loo_subsample`` leaves NaN off the subsample (the weights then come out as
    the optimiser's start or NaN). Off the subsample, row i gets the difference
    estimator's own pointwise value :math:`a_i + \overline{(e - a)}_\text{subsample}`
    (approximation plus the mean correction), so the filled values sum to the subsampled
    elpd estimate exactly; on the subsample it keeps the PSIS-LOO value.
    """
    out = {}
    for name, elpd in elpds.items():
        if not isinstance(elpd, ELPDDataLOOSubsample):
            out[name] = elpd
            continue
        exact = np.asarray(elpd.elpd_i.values, dtype=float)
        approx = np.asarray(elpd.elpd_loo_approx.values, dtype=float).reshape(exact.shape)
        known = np.isfinite(exact)
        correction = float(np.mean(exact[known] - approx[known]))
        filled = copy.copy(elpd)
        filled.elpd_i = elpd.elpd_i.copy(data=np.where(known, exact, approx + correction))
        out[name] = filled
    return out


# ---------------------------------------------------------------------------- averaging
def _weight_vector(names: list[str], weights) -> np.ndarray:
    if isinstance(weights, Comparison):
        weights = weights.weights
    if isinstance(weights, pd.Series | Mapping):
        keys = set(weights.keys())
        if keys != set(names):
            raise ValueError(
                f"weights name models {sorted(map(str, keys))}, but models are {sorted(names)}"
            )
        w = np.array([weights[n] for n in names], dtype=float)
    else:
        w = np.asarray(weights, dtype=float).ravel()
        if w.size != len(names):
            raise ValueError(f"weights has {w.size} entries for {len(names)} models")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {w}")
    return w / w.sum()


def predict_averaged(models: Mapping, weights, X, *, random_seed: int | None = None):
    """Weight-averaged posterior predictive draws at ``X``.

    Each model contributes a share of draws proportional to its weight
    (:func:`arviz.weight_predictions`), so the result is a sample from
    :math:`\\sum_k w_k\\, p(\\tilde y \\mid x, M_k)`.

    Parameters
    ----------
    models : dict of name -> fitted estimator
    weights : Comparison, Series/dict by model name, or sequence in ``models`` order
        E.g. ``compare(models).weights``.
    X : array-like or DataFrame
        New rows (each model takes the columns it was fitted on).
    random_seed : int, optional

    Returns
    -------
    DataArray, dims (sample, obs)
    """
    from bayesmoe.estimators import BayesianRegressor

    models = _check_models(models, minimum=1)
    for name, m in models.items():
        if not isinstance(m, BayesianRegressor) or not hasattr(m, "idata_"):
            raise TypeError(
                f"models[{name!r}] must be a fitted bayesmoe estimator (predictions need "
                f"the model), got {type(m).__name__}"
            )
    names = list(models)
    w = _weight_vector(names, weights)
    if random_seed is not None and (
        isinstance(random_seed, bool) or not isinstance(random_seed, numbers.Integral)
    ):
        raise TypeError(f"random_seed must be an integer, got {random_seed!r}")
    used = [n for n, wk in zip(names, w, strict=True) if wk > 0]
    trees = []
    for name in used:
        draws = models[name].predict_dist(_columns_for(models[name], X))
        trees.append(
            xr.DataTree.from_dict(
                {"posterior_predictive": xr.Dataset({"y": draws}), "observed_data": xr.Dataset()}
            )
        )
    if len(trees) == 1:  # ArviZ needs two; one model with all the weight is its own average
        y = trees[0]["posterior_predictive"]["y"].transpose(*SAMPLE_DIMS, ...)
        return xr.DataArray(
            y.values.reshape(-1, *y.shape[2:]), dims=("sample", *y.dims[2:]), name="y"
        )
    out = az.weight_predictions(
        trees, weights=[w[names.index(n)] for n in used], random_seed=random_seed
    )
    y = out["posterior_predictive"]["y"].transpose("sample", ...)
    coords = {d: y[d].values for d in y.dims[1:] if d in y.coords}
    return xr.DataArray(y.values, dims=y.dims, coords=coords, name="y")


def _columns_for(model, X):
    """The columns ``model`` was fitted on, when X is a DataFrame with more columns."""
    if isinstance(X, pd.DataFrame):
        missing = [c for c in model.feature_names_in_ if c not in X.columns]
        if missing:
            raise ValueError(f"X lacks columns {missing} that a model was fitted on")
        return X[list(model.feature_names_in_)]
    return X


# ---------------------------------------------------------------------------- choosing K
@dataclass
class ExpertSelection:
    """Result of :func:`select_experts`.

    Attributes
    ----------
    n_experts : int
        The chosen number of experts.
    comparison : Comparison
        LOO comparison of the final (NUTS) fits, names ``"K=1"``, ``"K=2"``, ...
    screening : Comparison
        LOO comparison of the screening fits.
    models : dict of name -> fitted estimator
        The final fits (``models[f"K={n_experts}"]`` is the chosen one).
    components : DataFrame
        The component diagnosis of every fit (the evidence of the fits' own warnings and
        ``check()``): rows ``K=<k>``, columns ``stage`` ("screening" / "final"),
        ``supported_min``, ``supported_max`` (the K the fit's posterior supports) and
        ``message`` ('' when every component is occupied and distinct).
    """

    n_experts: int
    comparison: Comparison
    screening: Comparison
    models: dict = field(repr=False)
    components: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    @property
    def table(self) -> pd.DataFrame:
        return self.comparison.table

    @property
    def best(self):
        return self.models[f"K={self.n_experts}"]


def _check_k_range(k_range) -> list[int]:
    try:
        ks = list(k_range)
    except TypeError:
        raise TypeError(f"k_range must be an iterable of integers, got {k_range!r}") from None
    if len(ks) < 2:
        raise ValueError(f"k_range needs at least two values of K to compare, got {ks}")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k_range must hold integers >= 1, got {k!r}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"k_range lists a K twice: {ks}")
    return sorted(int(k) for k in ks)


def _choose(table: pd.DataFrame, rule: str, allowed: Iterable[str] | None = None) -> int:
    """The chosen K from a comparison table with rows ``K=<k>``, among ``allowed`` rows.

    ``allowed`` (default all) are the fits whose posterior supports their own K; the
    others have emptied or coinciding components, so their K overstates what they fit.
    """
    allowed = set(table.index if allowed is None else allowed) or set(table.index)
    names = [n for n in table.index if n in allowed]
    ks = {name: int(name.split("=")[1]) for name in names}
    if rule == "best":
        return ks[names[0]]
    # one_se: the fewest experts whose elpd is within one standard error of the
    # difference from the best (an extra expert must earn its keep).
    close = [ks[n] for n in names if -table.loc[n, "elpd_diff"] <= table.loc[n, "dse"]]
    return min(close) if close else ks[names[0]]


def _supported(est) -> tuple[int, int, str]:
    """(min, max) of the K a fitted mixture's posterior supports, and the sentence."""
    k = est.model_.bayesmoe_spec.n_experts
    if k < 2:
        return 1, 1, ""
    d = est.component_diagnosis()
    lo, hi = d.supported if not d.ok else (k, k)
    return lo, hi, d.message()


def _components_table(fits: dict, stage: str) -> pd.DataFrame:
    keys = ("supported_min", "supported_max", "message")
    rows = {name: dict(zip(keys, _supported(est), strict=True)) for name, est in fits.items()}
    return pd.DataFrame.from_dict(rows, orient="index").assign(stage=stage)[
        ["stage", "supported_min", "supported_max", "message"]
    ]


def _self_consistent(components: pd.DataFrame) -> list[str]:
    """The fits whose posterior supports the K they were fitted with."""
    ks = {name: int(name.split("=")[1]) for name in components.index}
    return [n for n in components.index if components.loc[n, "supported_max"] >= ks[n]]


def select_experts(
    X,
    y,
    k_range: Iterable[int] = range(1, 6),
    *,
    gate: str | None = "linear",
    screen_method: str = "vem",
    n_final: int = 2,
    selection: str = "one_se",
    estimator_kwargs: dict | None = None,
    screen_kwargs: dict | None = None,
    final_kwargs: dict | None = None,
    progressbar: bool = True,
) -> ExpertSelection:
    r"""Choose the number of experts K by LOO: cheap screening fits, then NUTS.

    1. Fit a :class:`~bayesmoe.GatedExperts` (``gate=None``: a
       :class:`~bayesmoe.MixtureRegression`) for every K in ``k_range`` with
       ``screen_method`` and rank them by PSIS-LOO.
    2. Refit the best ``n_final`` with NUTS, compare them again, and choose K by
       ``selection``: ``"one_se"`` (default) the fewest experts whose ELPD is within one
       standard error of the difference from the best (the one-standard-error rule of
       Hastie, Tibshirani & Friedman 2009, sec. 7.10, on the paired ELPD difference),
       ``"best"`` the highest ELPD.

    Both stages use the evidence of the fits' own diagnosis
    (:meth:`~bayesmoe.MixtureRegression.component_diagnosis`, the sentence of their
    warnings and ``check()``): a fit whose components empty or coincide supports fewer
    than its K, so it is passed over for the finalists and for the choice while a fit
    that supports its own K remains. The choice and the diagnosis therefore agree: the
    chosen fit never reports "the data support K = ..." below its own K unless no
    candidate did better. ``result.components`` tabulates the diagnosis of every fit.

    Parameters
    ----------
    X, y : training data
    k_range : iterable of int
    gate : {"linear", "mlp"} or None
    screen_method : {"vem", "advi", "fullrank_advi", "nuts"}
        Fitting method of the screening fits (``"nuts"`` with few draws also works).
    n_final : int
        How many screened candidates are refitted with NUTS.
    selection : {"one_se", "best"}
    estimator_kwargs : dict, optional
        Settings of every estimator (e.g. ``gate_hidden``, ``random_seed``, ``sampler``).
    screen_kwargs, final_kwargs : dict, optional
        Estimator settings for the screening / final stage only (e.g. ``draws``).
    progressbar : bool

    Returns
    -------
    ExpertSelection
    """
    from tqdm.auto import tqdm

    from bayesmoe.estimators import GatedExperts, MixtureRegression

    ks = _check_k_range(k_range)
    screen_method = _check_choice("screen_method", screen_method, SCREEN_METHODS)
    selection = _check_choice("selection", selection, SELECTION_RULES)
    if isinstance(n_final, bool) or not isinstance(n_final, numbers.Integral) or n_final < 2:
        raise ValueError(
            f"n_final must be an integer >= 2 (candidates to compare), got {n_final!r}"
        )
    if gate not in (None, "linear", "mlp"):
        raise ValueError(f"gate={gate!r} is not known; choose one of ['linear', 'mlp', None]")
    for arg, value in (
        ("estimator_kwargs", estimator_kwargs),
        ("screen_kwargs", screen_kwargs),
        ("final_kwargs", final_kwargs),
    ):
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"{arg} must be a dict, got {type(value).__name__}")
    base = {"progressbar": False, **(estimator_kwargs or {})}

    def make(k: int, stage: dict):
        settings = {**base, **stage}
        if gate is None:
            return MixtureRegression(n_components=k, **settings)
        if k == 1:
            settings.pop("gate_hidden", None)
            return GatedExperts(n_experts=1, **settings)
        return GatedExperts(n_experts=k, gate=gate, **settings)

    # validate every setting before the first (slow) fit
    for k in ks:
        for stage in ({**(screen_kwargs or {}), "method": screen_method}, final_kwargs or {}):
            make(k, {**stage, "method": stage.get("method", "nuts")})._check_settings()

    screened = {}
    for k in tqdm(ks, desc=f"screening K ({screen_method})", disable=not progressbar):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # approximate fits: LOO ranks them, no diagnostics
            screened[f"K={k}"] = make(k, {**(screen_kwargs or {}), "method": screen_method}).fit(
                X, y
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pareto k of rough fits: only a ranking
        screening = compare(screened)
    # The same evidence as the fits' own diagnosis: a screened K whose fit
    # empties or merges components describes no more than a smaller K, so the finalists
    # are the best-ranked fits that support their own K (then the others, in rank order).
    screen_components = _components_table(screened, "screening")
    consistent = set(_self_consistent(screen_components))
    ranked = list(screening.table.index)
    finalists = (
        [n for n in ranked if n in consistent] + [n for n in ranked if n not in consistent]
    )[:n_final]

    final = {}
    for name in tqdm(finalists, desc="final fits (NUTS)", disable=not progressbar):
        k = int(name.split("=")[1])
        final[name] = make(k, {**(final_kwargs or {}), "method": "nuts"}).fit(X, y)
    comparison = compare(final)
    final_components = _components_table(final, "final")
    chosen = _choose(comparison.table, selection, _self_consistent(final_components))
    components = pd.concat([screen_components, final_components])
    return ExpertSelection(chosen, comparison, screening, final, components)
