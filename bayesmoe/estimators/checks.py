"""The fit's checks: its diagnostics report, its pointwise log-likelihood and its LOO.

A mixin of :class:`bayesmoe.estimators.base.BayesianRegressor`; the statistics are
ArviZ's (:mod:`bayesmoe.inference.diagnostics`) and :mod:`bayesmoe.validation`'s.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from sklearn.utils.validation import check_is_fitted

from bayesmoe.builders.contract import spec_of
from bayesmoe.inference import Diagnostics, diagnose
from bayesmoe.inference.loglik import SUBSAMPLE_GROUP, log_likelihood_group

__all__ = ["FitChecks"]


class FitChecks:
    """``check``, ``loo`` and ``add_log_likelihood`` of a fitted estimator."""

    def add_log_likelihood(self) -> xr.DataTree:
        """Compute the pointwise log-likelihood of every training row (user's scale of y).

        For a fit made with ``log_likelihood=False``, or to replace a subsampled one by the
        full one (``attrs["bayesmoe_log_likelihood"]`` becomes ``"full"``). Streamed fits
        hold a row sample only (``observed_data``), so this is that sample's, stored as
        a subsample of the data (group ``log_likelihood_subsample``, with the rows'
        positions, which ``arviz.loo`` does not read).
        """
        check_is_fitted(self, "idata_")
        Xw = self.idata_["constant_data"]["X_base"].values
        yw = self.standardizer_.transform_y(self.idata_["observed_data"]["y"].values)
        # the spec's blocked kernels (numerics.loglik), part of every spec's contract
        if self._likelihood().is_gaussian:
            ll = spec_of(self.model_).log_likelihood(self._working_posterior(), Xw, yw)
        else:
            ll = self._family_loglik(Xw, yw, *self._training_extras())
        ll = ll - np.log(self.standardizer_.y_scale)
        observed = self.idata_["observed_data"]
        ll = ll.assign_coords(obs=observed["obs"].values)
        for stale in ("loo_approximation", SUBSAMPLE_GROUP, "log_likelihood"):
            if stale in self.idata_.children:
                del self.idata_[stale]
        if self.idata_.attrs.get("bayesmoe_streamed") and "row" in observed.coords:
            ll = ll.assign_coords(row=("obs", observed["row"].values))
            self.idata_[SUBSAMPLE_GROUP] = xr.Dataset({"y": ll})
            return self.idata_
        self.idata_["log_likelihood"] = xr.Dataset({"y": ll})
        if not self.idata_.attrs.get("bayesmoe_streamed"):
            self.idata_.attrs["bayesmoe_log_likelihood"] = "full"
        return self.idata_

    def check(self, loo: bool | None = None) -> Diagnostics:
        """Diagnostics report of the fit: R-hat, bulk ESS, divergences, BFMI, Pareto k.

        ``loo`` (default: whenever the pointwise log-likelihood is stored) adds the Pareto
        k of PSIS-LOO. ``report.ok`` is False if any check fails its threshold (the
        constants of :mod:`bayesmoe.fitting`); ``print(report)`` shows the table and
        ``report.to_frame()`` returns it.
        """
        check_is_fitted(self, "idata_")
        if loo is None:
            loo = log_likelihood_group(self.idata_) is not None
        if not isinstance(loo, bool | np.bool_):
            raise TypeError(f"loo must be True, False or None, got {loo!r}")
        return self._diagnose(bool(loo))

    def loo(
        self,
        X=None,
        y=None,
        *,
        fix: str | None = "auto",
        k: int = 10,
        max_refits: int = 10,
        random_seed: int | None = None,
        progressbar: bool | None = None,
    ):
        """PSIS-LOO of the fit, with rows of high Pareto k fixed: the documented way.

        Rows whose Pareto k exceeds ArviZ's threshold (min(1 - 1/log10(S), 0.7) for S
        draws) are fixed by ``fix``: ``"moment_match"`` (:func:`arviz_stats.loo_moment_match`
        from the model's PyMC graph, where it reproduces the stored log-likelihood),
        ``"reloo"`` (exact refits without each row, :func:`arviz_stats.reloo`),
        ``"kfold"`` (:func:`bayesmoe.kfold` with ``k`` folds), ``"auto"`` (moment
        matching, then refits of at most ``max_refits`` rows left, else K-fold) or None
        (PSIS-LOO only). Rows still above the threshold are named in a warning. A fit
        storing its log-likelihood for a row subsample gets the PSIS-LOO of every
        training row, computed block by block (what ``arviz.loo(est.idata_)`` cannot
        give). ``X, y``: the training rows for refits (default: rebuilt from the fit; a
        formula fit needs its data frame). See :mod:`bayesmoe.validation`.

        Returns
        -------
        arviz_stats.utils.ELPDData
            ArviZ's result (``ELPDDataLOO``, or ``ELPDDataLOOKFold`` after K-fold) with
            ``.bayesmoe_fix``, a :class:`bayesmoe.validation.LooFix` (method, threshold,
            rows flagged / fixed / still high).
        """
        from bayesmoe.validation import FitAccess, estimator_loo

        check_is_fitted(self, "idata_")
        access = FitAccess(self._training_rows, self._pointwise_loglik, self._prior_model)
        show = self.progressbar if progressbar is None else progressbar
        return estimator_loo(
            self, access, X, y, fix=fix, k=k, max_refits=max_refits,
            random_seed=random_seed, progressbar=bool(show),
        )  # fmt: skip

    def _diagnose(self, loo: bool) -> Diagnostics:
        return diagnose(self.working_view(), var_names=self._summary_vars(), loo=loo)
