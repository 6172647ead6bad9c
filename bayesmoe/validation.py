r"""Leave-one-out that holds when Pareto k is high: moment matching, exact refits, K-fold.

PSIS-LOO (:func:`arviz.loo`) estimates each row's leave-one-out density
:math:`\log p(y_i \mid y_{-i})` by importance sampling the full posterior. Its Pareto k
diagnostic says, row by row, whether that estimate can be trusted: above
:func:`bayesmoe.inference.diagnostics.pareto_k_threshold` (:math:`\min(1 - 1/\log_{10}
S, 0.7)` for S draws) it cannot. Overfitted mixtures routinely have such rows: a component
that serves a handful of points moves when one of them is left out. Three ways of fixing
those rows, all ArviZ's (arviz-stats):

* **moment matching** (:func:`arviz_stats.loo_moment_match`, Paananen et al. 2021): the
  draws, in the unconstrained parameter space, are moved by affine maps towards the
  leave-one-out posterior of the row, and importance sampling is repeated from them. It
  needs the log posterior density and the row's log-likelihood as functions of the
  unconstrained parameters; they are compiled from the model's own PyMC graph (its
  per-row form: the interaction model's collapsed form is swapped for the per-row one,
  which has the same parameters). It is used only where that graph reproduces the stored
  log-likelihood (checked on a row) and has no potentials or discrete variables.
* **exact refits** of the flagged rows (:func:`arviz_stats.reloo`): the estimator, with its
  own settings, is refitted without the row, and the row's held-out density computed
  (:meth:`~bayesmoe.estimators.BayesianRegressor.pointwise_log_predictive_density`). Used
  for at most ``max_refits`` rows.
* **K-fold cross-validation** (:func:`kfold`, :func:`arviz_stats.loo_kfold`): the
  estimator is refitted ``k`` times, each without one fold, and every row's held-out
  density computed; it replaces PSIS-LOO entirely. Its estimate is exact (no importance
  sampling) but of a model fitted on :math:`(k-1)/k` of the rows, so slightly pessimistic.

``fix="auto"`` tries them in that order, each on the rows the previous one left above
the threshold. The returned ELPD object carries a :class:`LooFix` as ``.bayesmoe_fix``
saying what was done: the method, the threshold, the rows flagged, fixed and still high;
no row above the threshold is ever left unmentioned (a warning names their count and the
largest k).

A fit that stores its log-likelihood for a row subsample (``log_likelihood="auto"`` on
large data) keeps it in the group ``log_likelihood_subsample``, which :func:`arviz.loo`
does not read (``arviz.loo(est.idata_)`` then refuses rather than report the subsample's
elpd as the data's; :mod:`bayesmoe.inference.loglik`). :func:`estimator_loo` computes the
PSIS-LOO of *every* training row instead, block by block (the log-likelihood of one
block of rows at a time, never all rows at once), so its elpd is the full data's.

References
----------
* Vehtari, Gelman & Gabry (2017), "Practical Bayesian model evaluation using leave-one-out
  cross-validation and WAIC", *Statistics and Computing* 27, 1413-1432.
* Vehtari, Simpson, Gelman, Yao & Gabry (2024), "Pareto smoothed importance sampling",
  *JMLR* 25(72).
* Paananen, Piironen, Bürkner & Vehtari (2021), "Implicitly adaptive importance sampling",
  *Statistics and Computing* 31, 16.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from arviz_stats import loo_kfold, loo_moment_match, reloo
from arviz_stats.loo import SamplingWrapper
from arviz_stats.utils import ELPDData
from tqdm.auto import tqdm

from bayesmoe.inference.diagnostics import pareto_k_threshold
from bayesmoe.inference.loglik import log_likelihood_group

__all__ = [
    "FIXES",
    "MAX_REFITS",
    "FitAccess",
    "LooFix",
    "RefitWrapper",
    "estimator_loo",
    "kfold",
]

#: What ``est.loo(fix=...)`` and ``compare(fix=...)`` accept (and None: PSIS-LOO only).
FIXES = ("auto", "moment_match", "reloo", "kfold")
#: Most rows ``fix="auto"`` refits one by one (reloo); with more, it runs K-fold instead.
MAX_REFITS = 10
#: Target size of one block of the blocked PSIS-LOO of a subsampled fit (draws x rows).
LOO_BLOCK_BYTES = 64 * 2**20
SAMPLE_DIMS = ("chain", "draw")


@dataclass
class LooFix:
    """What :func:`estimator_loo` did about rows of high Pareto k.

    Attributes
    ----------
    method : str
        ``"psis"`` (PSIS-LOO as is), ``"psis (every row, blocked)"`` for a subsampled
        fit, ``"moment_match"``, ``"reloo"``, ``"moment_match+reloo"`` or
        ``"kfold(k)"``.
    threshold : float
        The Pareto k threshold used (:func:`~bayesmoe.inference.diagnostics.pareto_k_threshold`).
    flagged : ndarray of int
        Rows (positions) with Pareto k above it in plain PSIS-LOO.
    fixed : ndarray of int
        Rows whose estimate a fix replaced (every row for K-fold).
    still_high : ndarray of int
        Rows still above the threshold after the fix (empty after K-fold).
    max_k : float
        Largest Pareto k of plain PSIS-LOO.
    max_k_after : float
        Largest Pareto k after the fix (0 after K-fold or reloo of every flagged row).
    notes : list of str
        Why a method was not used or did not finish the job.
    """

    method: str
    threshold: float
    flagged: np.ndarray
    fixed: np.ndarray
    still_high: np.ndarray
    max_k: float
    max_k_after: float
    notes: list[str] = field(default_factory=list)

    def message(self) -> str:
        """One line: what was flagged, what was done, what is left."""
        if self.flagged.size == 0 and np.isnan(self.threshold):
            return f"{self.method}: exact K-fold cross-validation of every row"
        if self.flagged.size == 0:
            return f"{self.method}: no Pareto k above {self.threshold:.2f}"
        text = (
            f"{self.flagged.size} rows with Pareto k > {self.threshold:.2f} "
            f"(max {self.max_k:.2f}); {self.method}"
        )
        if self.method != "psis":
            text += f" replaced {self.fixed.size} rows' estimates"
        if self.still_high.size:
            text += (
                f"; {self.still_high.size} rows still above it "
                f"(max {self.max_k_after:.2f}): their estimate is unreliable"
            )
        return text + (f" [{'; '.join(self.notes)}]" if self.notes else "")


@dataclass
class FitAccess:
    """What :func:`estimator_loo` needs of a fitted estimator beyond its public API.

    Built by ``BayesianRegressor.loo``.

    Attributes
    ----------
    training_rows : callable () -> ndarray (n, p)
        The working-scale rows of the fit.
    loglik : callable (Xw, yw) -> DataArray (chain, draw, obs)
        Pointwise log-likelihood on the working scale of ``y``.
    per_row_model : callable (Xw DataFrame, yw) -> pymc.Model
        The per-row (generative) PyMC model at those rows.
    """

    training_rows: Callable
    loglik: Callable
    per_row_model: Callable


# ---------------------------------------------------------------------------- inputs
def _check_fix(fix):
    if fix is None:
        return None
    if not isinstance(fix, str) or fix not in FIXES:
        raise ValueError(f"fix={fix!r} is not known; choose None or one of {list(FIXES)}")
    return fix


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _is_subsampled(tree: xr.DataTree) -> bool:
    return tree.attrs.get("bayesmoe_log_likelihood") == "subsample"


def training_data(est, X=None, y=None) -> tuple[object, np.ndarray]:
    """The rows to refit ``est`` on: ``X, y`` as given, or rebuilt from the fit.

    Without ``X``: the stored rows mapped back to the user's scale (exact up to rounding),
    as a DataFrame with the fit's feature names; a formula fit needs its data frame
    (``X``), a streamed fit holds a row sample only. ``y`` must equal the fit's observed
    ``y`` (the rows refitted are the rows the elpd is about).
    """
    tree = est.idata_
    observed = np.asarray(tree["observed_data"]["y"].values, dtype=float).ravel()
    if tree.attrs.get("bayesmoe_streamed"):
        raise ValueError(
            "this fit was streamed and holds a row sample only; refits need every row "
            "(use bayesmoe.kfold on data in memory)"
        )
    if X is None:
        if _formula(est) is not None:
            raise ValueError(
                "X is needed to refit a formula fit: pass the data frame it was fitted on"
            )
        std = est.standardizer_
        raw = est.idata_["constant_data"]["X_base"].values * std.x_scale + std.x_mean
        X = pd.DataFrame(raw, columns=[str(c) for c in est.feature_names_in_])
        y = observed if y is None else y
    elif y is None and _formula(est) is None:
        raise ValueError("y is needed with X (the target the model was fitted on)")
    if _formula(est) is not None and y is None:
        return X, observed
    yv = np.asarray(y, dtype=float).ravel()
    if yv.shape != observed.shape or not np.allclose(yv, observed, rtol=1e-9, atol=0):
        raise ValueError(
            f"y ({yv.size} values) is not the y the estimator was fitted on "
            f"({observed.size} values); LOO and K-fold refit on the fit's own rows"
        )
    return X, yv


def _formula(est):
    return est.get_params(deep=False).get("formula")


def _rows(X, index: np.ndarray):
    return X.iloc[index] if isinstance(X, pd.DataFrame) else np.asarray(X)[index]


# ---------------------------------------------------------------------------- refits
class RefitWrapper(SamplingWrapper):
    r"""ArviZ's refitting interface (:class:`arviz_stats.loo.SamplingWrapper`) for an estimator.

    ``sample`` refits a :func:`sklearn.base.clone` of the estimator (its own settings,
    progress bar off, no stored log-likelihood) on the training rows;
    ``log_likelihood__i`` returns the held-out rows' log predictive density
    :math:`\log \frac1S \sum_s p(y_i \mid \theta_s)` as one "draw" per row (what
    :func:`arviz_stats.reloo` and :func:`arviz_stats.loo_kfold` average over draws, so
    the result is that density exactly).
    """

    def __init__(self, est, X, y, tree: xr.DataTree, bar=None):
        super().__init__(model=est, idata_orig=tree)
        self.X, self.y, self.bar = X, np.asarray(y, dtype=float), bar

    def sel_observations(self, idx):
        test = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        train = np.setdiff1d(np.arange(self.y.size), test)
        return (_rows(self.X, train), self.y[train]), (_rows(self.X, test), self.y[test])

    def sample(self, modified_observed_data):
        from sklearn.base import clone

        refit = clone(self.model).set_params(progressbar=False, log_likelihood=False)
        refit.fit(*modified_observed_data)
        if self.bar is not None:
            self.bar.update(1)
        return refit

    def get_inference_data(self, fitted_model):
        return fitted_model

    def log_likelihood__i(self, excluded_obs, idata__i):
        lpd = idata__i.pointwise_log_predictive_density(*excluded_obs)
        return xr.DataArray(np.asarray(lpd)[None, None, :], dims=(*SAMPLE_DIMS, "obs"))


def _folds(n: int, k: int, stratify, groups, random_seed) -> np.ndarray:
    """Fold of each row (1..k) from scikit-learn's splitters."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    if stratify is not None and groups is not None:
        raise ValueError("pass stratify or groups, not both")
    index = np.arange(n)
    if groups is not None:
        labels = np.asarray(groups).ravel()
        if labels.size != n:
            raise ValueError(f"groups has {labels.size} values for {n} rows")
        splits = GroupKFold(n_splits=k, shuffle=True, random_state=random_seed).split(
            index, groups=labels
        )
    elif stratify is not None:
        labels = np.asarray(stratify).ravel()
        if labels.size != n:
            raise ValueError(f"stratify has {labels.size} values for {n} rows")
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=random_seed)
        splits = splitter.split(index, labels)
    else:
        splits = KFold(n_splits=k, shuffle=True, random_state=random_seed).split(index)
    folds = np.zeros(n, dtype=np.int64)
    for fold, (_, test) in enumerate(splits, start=1):
        folds[test] = fold
    return folds


def _lpd_tree(est, X, y) -> xr.DataTree:
    """A fit's log predictive density per row as a one-draw log-likelihood (for K-fold's
    ``p``), when the fit does not store every row's log-likelihood."""
    lpd = np.asarray(est.pointwise_log_predictive_density(X, y))
    obs = np.arange(lpd.size)
    return xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset({"lpd": (SAMPLE_DIMS, [[0.0]])}),
            "log_likelihood": xr.Dataset({"y": ((*SAMPLE_DIMS, "obs"), lpd[None, None])}),
            "observed_data": xr.Dataset({"y": ("obs", np.asarray(y, float))}, {"obs": obs}),
        }
    )


def kfold(
    est,
    X=None,
    y=None,
    k: int = 10,
    *,
    stratify=None,
    groups=None,
    random_seed: int | None = None,
    progressbar: bool = True,
) -> ELPDData:
    r"""Exact K-fold cross-validation elpd of a fitted estimator.

    .. math::

        \widehat{\mathrm{elpd}}_{K\text{-fold}} = \sum_i \log \frac1S \sum_s
        p\bigl(y_i \mid \theta_s^{(-f(i))}\bigr)

    where :math:`\theta^{(-f)}` are draws of the model refitted without fold :math:`f`.
    A :func:`sklearn.base.clone` of ``est`` (same settings) is refitted once per fold;
    the arithmetic is :func:`arviz_stats.loo_kfold`'s (Vehtari et al. 2017, section 4.2).

    Parameters
    ----------
    est : fitted bayesmoe estimator
    X, y : array-like, optional
        The rows ``est`` was fitted on (default: rebuilt from the fit; a formula fit needs
        its data frame ``X``).
    k : int
        Number of folds (2..n).
    stratify : array-like of labels, optional
        Folds keep the labels' proportions (:class:`sklearn.model_selection.StratifiedKFold`;
        for a numeric ``y``, pass binned values).
    groups : array-like, optional
        Rows of one group stay in one fold (:class:`sklearn.model_selection.GroupKFold`).
    random_seed : int, optional
        Seed of the fold assignment (random and stratified folds; groups are shuffled too).
    progressbar : bool

    Returns
    -------
    arviz_stats.utils.ELPDDataLOOKFold
        Comparable in :func:`bayesmoe.compare`; ``.bayesmoe_fix`` is a :class:`LooFix`
        with method ``"kfold(k)"``.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "idata_")
    X, yv = training_data(est, X, y)
    k = _check_int("k", k, 2)
    if k > yv.size:
        raise ValueError(f"k={k} is more folds than rows ({yv.size})")
    folds = _folds(yv.size, k, stratify, groups, random_seed)
    tree = est.idata_
    if _is_subsampled(tree) or "log_likelihood" not in tree.children:
        tree = _lpd_tree(est, X, yv)
    with tqdm(total=k, desc="K-fold refits", disable=not progressbar) as bar:
        result = loo_kfold(tree, RefitWrapper(est, X, yv, tree, bar), pointwise=True, folds=folds)
    every = np.arange(yv.size)
    result.bayesmoe_fix = LooFix(
        f"kfold({k})", float("nan"), every[:0], every, every[:0], float("nan"), 0.0
    )
    return result


# ---------------------------------------------------------------------------- PSIS
def _blocked_psis(est, access: FitAccess) -> ELPDData:
    """PSIS-LOO of every training row of a fit stored with a row subsample, block by block."""
    tree = est.idata_
    posterior = tree["posterior"].to_dataset()
    Xw = access.training_rows()
    yw = est.standardizer_.transform_y(np.asarray(tree["observed_data"]["y"].values, float))
    S = posterior.sizes["chain"] * posterior.sizes["draw"]
    # relative efficiency as arviz.loo takes it (mean ESS of the posterior / S), once
    ess = az.ess(posterior, method="mean")
    reff = float(np.mean(np.hstack([ess[v].values.ravel() for v in ess.data_vars]))) / S
    if posterior.sizes["chain"] == 1:
        reff = 1.0
    step = max(1, LOO_BLOCK_BYTES // (8 * S))
    parts = []
    shift = np.log(est.standardizer_.y_scale)
    for start in range(0, yw.size, step):
        rows = slice(start, min(start + step, yw.size))
        ll = access.loglik(Xw[rows], yw[rows]) - shift
        ll = ll.assign_coords(obs=np.arange(rows.start, rows.stop))
        block = xr.DataTree.from_dict(
            {"posterior": posterior, "log_likelihood": xr.Dataset({"y": ll})}
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
            parts.append(az.loo(block, pointwise=True, reff=reff))
    elpd_i = xr.concat([p.elpd_i for p in parts], dim="obs")
    pareto_k = xr.concat([p.pareto_k for p in parts], dim="obs")
    out = parts[0]
    out.elpd_i, out.pareto_k, out.log_weights = elpd_i, pareto_k, None
    out.elpd = float(elpd_i.sum())
    out.se = float(np.sqrt(elpd_i.size * np.var(elpd_i.values)))
    out.p = float(sum(p.p for p in parts))
    out.n_data_points = int(elpd_i.size)
    out.warning = bool(np.any(~(pareto_k.values <= out.good_k)))
    return out


def _high(elpd: ELPDData, threshold: float) -> np.ndarray:
    k = np.asarray(elpd.pareto_k.values, dtype=float).ravel()
    return np.flatnonzero(~(k <= threshold))  # NaN k (no tail fit possible) too


def _max_k(elpd: ELPDData, rows: np.ndarray) -> float:
    k = np.asarray(elpd.pareto_k.values, dtype=float).ravel()
    return float(np.nanmax(k[rows])) if rows.size else float(np.nanmax(k, initial=-np.inf))


# ---------------------------------------------------------------------------- moment matching
def _moment_match(est, access: FitAccess, elpd: ELPDData, threshold: float):
    """:func:`arviz_stats.loo_moment_match` from the model's per-row PyMC graph.

    Returns the new ELPD object, or ``(None, why)`` when the model does not allow it.
    """
    from arviz_stats.loo import mm_from_pymc

    tree = est.idata_
    working = xr.DataTree.from_dict(
        {
            "posterior": est.working_view()["posterior"].to_dataset(),
            "log_likelihood": tree["log_likelihood"].to_dataset(),
        }
    )
    yv = np.asarray(tree["observed_data"]["y"].values, dtype=float)
    Xw = pd.DataFrame(access.training_rows(), columns=[str(c) for c in est.feature_names_in_])
    shift = np.log(est.standardizer_.y_scale)
    try:
        model = access.per_row_model(Xw, est.standardizer_.transform_y(yv))
        log_prob, log_lik_i, upars = mm_from_pymc(working, model=model)
    except (NotImplementedError, KeyError, ValueError, TypeError) as err:
        return None, f"moment matching not available: {err}"

    def user_log_lik_i(u, i):  # the stored log-likelihood is on the user's scale of y
        return log_lik_i(u, i) - shift

    # the graph must reproduce the stored log-likelihood at the stored draws (a
    # collapsed model's conditional draws, relabelled mixtures' draws do)
    row = int(_high(elpd, threshold)[0])
    stored = tree["log_likelihood"]["y"].transpose(*SAMPLE_DIMS, ...).values[..., row]
    if not np.allclose(user_log_lik_i(upars, row).values, stored, rtol=1e-6, atol=1e-6):
        return None, "moment matching not available: the PyMC graph's log-likelihood differs"
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")  # its per-row messages: summarised by LooFix
        data = xr.DataTree.from_dict(
            {
                "posterior": tree["posterior"].to_dataset(),
                "log_likelihood": tree["log_likelihood"].to_dataset(),
            }
        )
        result = loo_moment_match(
            data,
            elpd,
            log_prob_upars_fn=log_prob,
            log_lik_i_upars_fn=user_log_lik_i,
            upars=upars,
            k_threshold=threshold,
            pointwise=True,
        )
    return result, ""


# ---------------------------------------------------------------------------- est.loo
def estimator_loo(
    est,
    access: FitAccess,
    X=None,
    y=None,
    *,
    fix: str | None = "auto",
    k: int = 10,
    max_refits: int = MAX_REFITS,
    random_seed: int | None = None,
    progressbar: bool = True,
) -> ELPDData:
    """PSIS-LOO of a fitted estimator, with its high-Pareto-k rows fixed (``est.loo()``).

    See the module docstring for the methods; ``fix="auto"`` runs moment matching where
    the model allows it, then exact refits of what is left (at most ``max_refits`` rows),
    else K-fold (``k`` folds). ``fix=None``: PSIS-LOO only (still warning about high k).
    The result carries a :class:`LooFix` as ``.bayesmoe_fix``.
    """
    fix = _check_fix(fix)
    k = _check_int("k", k, 2)
    max_refits = _check_int("max_refits", max_refits, 0)
    tree = est.idata_
    if log_likelihood_group(tree) is None:
        est.add_log_likelihood()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        elpd = _blocked_psis(est, access) if _is_subsampled(tree) else az.loo(tree, pointwise=True)
    threshold = pareto_k_threshold(elpd.n_samples)
    flagged = _high(elpd, threshold)
    plain = "psis (every row, blocked)" if _is_subsampled(tree) else "psis"
    record = LooFix(plain, threshold, flagged, flagged[:0], flagged, _max_k(elpd, flagged), 0.0)
    record.max_k_after = record.max_k if flagged.size else 0.0
    if flagged.size == 0 or fix is None:
        return _finish(elpd, record)
    steps = {"auto": ("moment_match", "reloo", "kfold")}.get(fix, (fix,))
    done = []
    for step in steps:
        high = _high(elpd, threshold)
        if high.size == 0:
            break
        if step == "moment_match":
            if _is_subsampled(tree):
                record.notes.append("moment matching needs every row's stored log-likelihood")
                continue
            result, why = _moment_match(est, access, elpd, threshold)
            if result is None:
                record.notes.append(why)
                continue
            elpd = result
        elif step == "reloo":
            if fix == "auto" and high.size > max_refits:
                record.notes.append(f"{high.size} rows left, more than max_refits={max_refits}")
                continue
            if _is_subsampled(tree):
                record.notes.append("refits of rows need every row's stored log-likelihood")
                continue
            Xr, yr = training_data(est, X, y)
            with tqdm(total=high.size, desc="refits (reloo)", disable=not progressbar) as bar:
                wrapper = RefitWrapper(est, Xr, yr, tree, bar)
                elpd = reloo(wrapper, loo_orig=elpd, k_threshold=threshold, pointwise=True)
        else:
            fold = kfold(est, X, y, k, random_seed=random_seed, progressbar=progressbar)
            fold.bayesmoe_fix = LooFix(
                f"kfold({k})", threshold, flagged, np.arange(fold.n_data_points),
                flagged[:0], record.max_k, 0.0, record.notes,
            )  # fmt: skip
            return _finish(fold, fold.bayesmoe_fix)
        done.append(step)
    still = _high(elpd, threshold)
    record.method = "+".join(done) or plain
    record.fixed = np.setdiff1d(flagged, still) if done else flagged[:0]
    record.still_high = still
    record.max_k_after = _max_k(elpd, still) if still.size else 0.0
    return _finish(elpd, record)


def _finish(elpd: ELPDData, record: LooFix) -> ELPDData:
    """Attach the record; warn (count and largest k) when rows are still above it."""
    elpd.bayesmoe_fix = record
    if record.still_high.size:
        warnings.warn(
            f"PSIS-LOO: {record.message()}. Use est.loo(fix='auto'), "
            "bayesmoe.kfold or compare(fix='auto').",
            UserWarning,
            stacklevel=4,  # the caller of est.loo: this <- estimator_loo <- est.loo
        )
    return elpd
