r"""The user's scale and the working scale of a fit.

Models are sampled on the working scale: features and ``y`` centred and scaled by the
estimator's :class:`~bayesmoe.data.Standardizer` (``standardizer_``). Everything a user
gets back is on the original scale: ``observed_data`` and the pointwise log-likelihood
(the Jacobian of :math:`y \mapsto (y - m)/s` is :math:`-\log s` per row), the
``posterior`` group (an exact per-draw map, :mod:`bayesmoe.numerics.rescale`) and the
point estimates ``coef_``/``intercept_``. The sampled draws stay as ``posterior_working``,
which the model's own functions (predictions, diagnostics) take.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from bayesmoe.inference.loglik import SUBSAMPLE_GROUP

__all__ = ["SAMPLE_DIMS", "UserScale"]

SAMPLE_DIMS = ("chain", "draw")


class UserScale:
    """Working-scale draws to the user's scale (a mixin of ``BayesianRegressor``).

    Needs ``idata_``, ``model_`` (its ``bayesmoe_spec.to_user_scale``) and
    ``standardizer_``; sets ``coef_``, ``coef_names_`` and ``intercept_``.
    """

    #: posterior variables that make up ``coef_`` (in this order)
    _coef_vars: tuple[str, ...] = ()

    def _to_original_scale(self, y: np.ndarray) -> None:
        """Observed data and pointwise log-likelihood on the scale of the user's ``y``.

        This keeps LOO/WAIC comparable between models fitted with and without
        standardisation (the Jacobian of y -> (y - m)/s is -log s per row).
        """
        obs = self.idata_["observed_data"].to_dataset()
        self.idata_["observed_data"] = obs.assign(y=("obs", y))
        shift = np.log(self.standardizer_.y_scale)
        for group in ("log_likelihood", SUBSAMPLE_GROUP, "loo_approximation"):
            if group in self.idata_.children and shift != 0.0:
                # in place: a copy would hold a second log-likelihood in fresh memory
                for da in self.idata_[group].to_dataset(inherit=False).data_vars.values():
                    da.values -= shift

    def _posterior_to_user_scale(self) -> None:
        """``posterior`` on the user's scale; the sampled (working-scale) draws move to
        ``posterior_working``.

        The map is affine and the same for every draw (:mod:`bayesmoe.numerics.rescale`),
        so R-hat and ESS of a rescaled variable equal those of the quantity it is a
        function of, and LOO (computed from ``log_likelihood``) is untouched. Predictions
        and every method of the estimator use ``posterior_working``.
        """
        working = self.idata_["posterior"].to_dataset()
        user = self.model_.bayesmoe_spec.to_user_scale(working, self.standardizer_)
        self.idata_["posterior_working"] = working.assign_attrs(bayesmoe_scale="working")
        self.idata_["posterior"] = user
        self._set_point_estimates()

    def _working_posterior(self) -> xr.Dataset:
        """The draws the model's own functions take (files saved before 0.2: ``posterior``)."""
        group = "posterior_working" if "posterior_working" in self.idata_.children else "posterior"
        return self.idata_[group].to_dataset()

    def working_view(self) -> xr.DataTree:
        """The fit with the sampled working-scale draws as its ``posterior`` group.

        For diagnostics (what :meth:`check` reports) and for comparisons with truths on
        the working scale; other groups are the fit's own.
        """
        groups = {
            g: self.idata_[g].to_dataset()
            for g in self.idata_.children
            if g not in ("posterior", "posterior_working")
        }
        groups["posterior"] = self._working_posterior()
        return xr.DataTree.from_dict(groups)

    def _set_point_estimates(self) -> None:
        """``coef_``, ``coef_names_`` and ``intercept_``: posterior means, user's scale."""
        post = self.idata_["posterior"]
        parts, labels = [], []
        for var in self._coef_vars:
            if var not in post.data_vars:
                continue
            da = post[var].mean(SAMPLE_DIMS)
            dim = da.dims[-1]  # the coefficient axis (feature, expert_feature, interaction)
            parts.append(da.values)
            labels += [str(c) for c in da[dim].values]
        first = post["intercept"].mean(SAMPLE_DIMS)
        self.intercept_ = float(first) if first.ndim == 0 else first.values
        width = (*np.shape(self.intercept_), 0)
        self.coef_ = np.concatenate(parts, axis=-1) if parts else np.zeros(width)
        self.coef_names_ = np.asarray(labels, dtype=object)
