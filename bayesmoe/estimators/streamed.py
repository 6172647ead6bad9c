r"""Fits of dask inputs (and of chunks of rows) that never hold all rows in memory.

One validated pass over the partitions (:func:`bayesmoe.streaming.design_pass`) gives the
design's moments (hence the standardisation) and a uniform row sample. The collapsed
interaction model is built from the moments alone (:class:`StreamedStatistics`, also the
tail of ``InteractionRegression.partial_fit``); mixtures run the variational EM as
map-reduce over the partitions (:class:`StreamedVEM`). Either way the fit's
``observed_data``, ``constant_data`` and pointwise log-likelihood hold the row sample, whose
positions in the data become the ``row`` coordinate, and every row's log density at the
posterior mean becomes the lazy ``loo_approximation`` that subsampled PSIS-LOO corrects
(:func:`arviz_stats.loo_subsample`, through :func:`bayesmoe.compare`).
"""

from __future__ import annotations

import json
import numbers
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from bayesmoe.data import Standardizer
from bayesmoe.estimators.io import check_variable
from bayesmoe.inference.loglik import SUBSAMPLE_GROUP, log_likelihood_group

__all__ = ["StreamedFit", "StreamedStatistics", "StreamedVEM"]


@dataclass(frozen=True)
class _PointDensity:
    """``log p(y_i | x_i, theta_bar)`` on the user's scale, for one chunk of raw rows."""

    spec: object
    standardizer: Standardizer
    point: xr.Dataset

    def __call__(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        Xs = self.standardizer.transform_X(X)
        ys = self.standardizer.transform_y(y)
        ll = self.spec.log_likelihood(self.point, Xs, ys).values[0, 0]
        return ll - np.log(self.standardizer.y_scale)


def _dask_frame_and_target(X, y):
    """A dask frame holding the features and the target, and the target's column name."""
    from bayesmoe.streaming import is_dask_frame, is_dask_series

    if not is_dask_frame(X):
        raise TypeError(f"with a dask y, X must be a dask DataFrame, got {type(X).__name__}")
    if isinstance(y, str):
        if y not in X.columns:
            raise ValueError(f"y={y!r} is not a column of X; columns are {list(X.columns)}")
        return X, y
    if is_dask_series(y):
        name = str(y.name) if y.name is not None else "y"
        if name in X.columns:
            raise ValueError(f"X already has a column {name!r}; name the target column instead")
        return X.assign(**{name: y}), name
    raise TypeError(
        "with a dask X, y must be the name of its target column or a dask Series, "
        f"got {type(y).__name__}"
    )


class StreamedFit:
    """What every streamed fit shares (a mixin of ``BayesianRegressor``): the columns of a
    dask input, the standardisation from moments, and the tail that turns the sampled
    fit into a fit of all rows held by a row sample."""

    def _fit_streamed(self, X, y, *, strict: bool, client):
        raise TypeError(
            f"{type(self).__name__} does not fit dask inputs yet; InteractionRegression "
            "does (streamed sufficient statistics). Compute a sample (X.compute()) instead"
        )

    def _streamed_columns(self, X, y, client=None) -> tuple:
        """``(frame, target, features)`` of a dask input, refusing what cannot stream.

        With ``formula``: the frame of the formula's design columns and target, coded
        partition by partition (:func:`bayesmoe.streaming.formula_frame`), and the
        fitted design kept as ``formula_design_`` (predictions code new rows with it).
        """
        formula = getattr(self, "formula", None)
        self.__dict__.pop("formula_design_", None)
        if formula is not None:
            from bayesmoe import streaming

            if y is not None:
                raise ValueError(
                    "with formula=..., pass the dask frame alone (fit(ddf)): the formula "
                    "names the target"
                )
            if not streaming.is_dask_frame(X):
                raise TypeError(
                    "with formula=..., a dask X must be a dask DataFrame holding the "
                    f"formula's columns, got {type(X).__name__}"
                )
            self._check_formula_settings(formula)
            frame, target, features, design = streaming.formula_frame(
                X, formula, gate=getattr(self, "gate_formula", None), client=client
            )
            if design.target is None:
                raise ValueError(f"formula={formula!r} has no target; write 'y ~ ...'")
            self.formula_design_ = design
            return frame, target, features
        frame, target = _dask_frame_and_target(X, y)
        features = [str(c) for c in frame.columns if c != target]
        if not features and not self._allows_no_features:
            raise ValueError("X has no feature columns besides the target")
        return frame, target, features

    def _standardize_from_moments(self, moments, features) -> dict:
        """Standardisation and feature names of a streamed fit, from its design moments."""
        from bayesmoe.numerics.suffstats import standardized_statistics

        stats = standardized_statistics(moments, standardize=self.standardize)
        self.standardizer_ = Standardizer(
            stats["x_mean"], stats["x_scale"], stats["y_mean"], stats["y_scale"]
        )
        self.feature_names_in_ = np.asarray(features, dtype=object)
        self.n_features_in_ = len(features)
        return stats

    def _stream_log_likelihood(self, sample):
        """``log_likelihood`` for a fit on a streamed row sample (smallest keys first).

        ``"auto"`` stores the sample's first ``LOO_SUBSAMPLE_ROWS`` rows: the bottom-k
        rows every streamed fit of the same frame holds, so that their subsampled LOO pair
        on the same rows (:func:`bayesmoe.compare`).
        """
        from bayesmoe.inference.loglik import LOO_SUBSAMPLE_ROWS

        if isinstance(self.log_likelihood, str) and self.log_likelihood == "auto":
            return np.arange(min(LOO_SUBSAMPLE_ROWS, sample.y.size))
        return self.log_likelihood

    def _finish_streamed(self, sample, n_rows: int, data_seconds: float, stream=None, **attrs):
        """The sampled fit of a row sample as the fit of all ``n_rows`` rows.

        ``observed_data`` and the log-likelihood on the user's scale, ``posterior`` too;
        the attributes that mark a streamed fit (``attrs`` added); the row bookkeeping of
        :meth:`_record_sample`. Returns the estimator.
        """
        self._to_original_scale(sample.y)
        self._posterior_to_user_scale()
        self.idata_.attrs.update(
            bayesmoe_estimator=type(self).__name__,
            bayesmoe_data_seconds=data_seconds,
            bayesmoe_streamed=1,
            bayesmoe_n_rows=int(n_rows),
            # observed_data, constant_data and log_likelihood hold a uniform row sample
            bayesmoe_sample_rows=int(sample.y.size),
            **attrs,
        )
        self._record_sample(sample, n_rows, stream)
        return self

    def _record_sample(self, sample, n_rows: int, stream=None) -> None:
        """Mark a fit whose pointwise log-likelihood holds a row sample of ``n_rows`` rows.

        The sample's positions in the data become the ``row`` coordinate of
        ``observed_data`` and of the log-likelihood, which moves to the group
        ``SUBSAMPLE_GROUP`` (a subsample of the data, which ``arviz.loo`` must not read).
        With ``stream`` (the dask frame, its features and target) every row's log density
        at the posterior mean, the approximation :func:`arviz_stats.loo_subsample`
        corrects with the sample, becomes the ``loo_approximation`` group as a lazy dask
        array, one partition at a time: nothing is computed until
        :func:`bayesmoe.compare` (or a save) asks for it.
        """
        stored = log_likelihood_group(self.idata_)
        if sample.y.size >= n_rows or stored is None:
            return
        positions = np.asarray(sample.rows, dtype=np.int64)
        observed = self.idata_["observed_data"].to_dataset()
        self.idata_["observed_data"] = observed.assign_coords(row=("obs", positions))
        ll = self.idata_[stored].to_dataset()
        # rows stored within the sample (fit's own subsample of it), else all of it
        within = ll["row"].values if "row" in ll.coords else np.arange(ll.sizes["obs"])
        if "log_likelihood" in self.idata_.children:
            del self.idata_["log_likelihood"]
        self.idata_[SUBSAMPLE_GROUP] = ll.assign_coords(row=("obs", positions[within]))
        if "loo_approximation" in self.idata_.children:  # the sample's: replaced below
            del self.idata_["loo_approximation"]
        self.idata_.attrs["bayesmoe_log_likelihood"] = "subsample"
        if stream is None:
            return
        from bayesmoe import streaming

        frame, features, target = stream
        point = self._working_posterior().mean(("chain", "draw")).expand_dims(chain=[0], draw=[0])
        density = _PointDensity(self.model_.bayesmoe_spec, self.standardizer_, point)
        values = streaming.pointwise(frame, features, target, density, sample.chunk_rows)
        self.idata_["loo_approximation"] = xr.Dataset(
            {"y": ("obs", values)},
            attrs={"method": "plpd", "point": "posterior mean"},
        )


class StreamedStatistics:
    """The collapsed interaction model from streamed sufficient statistics (a mixin of
    ``InteractionRegression``), and the ``partial_fit`` stream: its statistics
    (``moments_``), row sample, chunk count and column names, which ``fit`` replaces,
    ``save`` writes as the ``partial_fit_state`` group and ``load`` restores."""

    _stream_attributes = ("moments_", "_row_sample", "_chunks", "_partial_names")

    def _stream_state(self) -> tuple | None:
        """``(moments, sample, chunks, names)`` the next chunk continues; ``None``: none.

        After ``partial_fit`` or a streamed ``fit``: their statistics. After ``fit`` of
        rows in memory: the statistics of those rows (recovered from the fit's working
        design, to rounding), as if they had been the stream's first chunk.
        """
        from bayesmoe.data import resolve_interactions
        from bayesmoe.inference.loglik import LOO_SUBSAMPLE_ROWS
        from bayesmoe.numerics.rowsample import chunk_sample, sample_rng
        from bayesmoe.numerics.suffstats import chunk_moments

        if getattr(self, "moments_", None) is not None:
            return self.moments_, self._row_sample, self._chunks, self._partial_names
        if getattr(self, "idata_", None) is None:
            return None
        if self.idata_.attrs.get("bayesmoe_streamed"):
            warnings.warn(
                "this streamed fit's statistics were not kept (a file saved by an older "
                "bayesmoe): partial_fit starts a new stream from this chunk",
                UserWarning,
                stacklevel=3,
            )
            return None
        std = self.standardizer_
        X = self.idata_["constant_data"]["X_base"].values * std.x_scale + std.x_mean
        y = np.asarray(self.idata_["observed_data"]["y"].values, float)
        names = [str(c) for c in self.feature_names_in_]
        pairs, _ = resolve_interactions(names, self.interactions)
        sample = chunk_sample(X, y, LOO_SUBSAMPLE_ROWS, sample_rng(0))
        return chunk_moments(X, y, pairs), sample, 1, names

    def _partial_fit_state(self) -> xr.Dataset | None:
        moments = getattr(self, "moments_", None)
        if moments is None:
            return None
        sample = self._row_sample
        return xr.Dataset(
            {
                "shift": ("shifted", moments.shift),
                "mean": ("moment", moments.mean),
                "comoment": (("moment", "moment_"), moments.comoment),
                "pairs": (("pair", "two"), np.asarray(moments.pairs, np.int64).reshape(-1, 2)),
                "sample_X": (("sample", "feature"), sample.X),
                "sample_y": ("sample", sample.y),
                "sample_rows": ("sample", np.asarray(sample.rows, np.int64)),
                "sample_keys": ("sample", sample.keys),
                "chunk_rows": ("chunk", np.asarray(sample.chunk_rows, np.int64)),
            },
            attrs={
                "n": int(moments.n),
                "n_seen": int(sample.n_seen),
                "chunks": int(self._chunks),
                "names": json.dumps(list(self._partial_names)),
            },
        )

    @classmethod
    def _check_saved_state(cls, tree: xr.DataTree, params: dict, where: str = "") -> None:
        """Check the ``partial_fit_state`` group against the feature names."""
        if "partial_fit_state" not in tree.children:
            return
        state = tree["partial_fit_state"]
        name = f"{where}group 'partial_fit_state'"
        names = json.loads(tree.attrs["bayesmoe_feature_names"])
        try:
            saved = json.loads(state.attrs.get("names", ""))
        except (TypeError, ValueError, RecursionError):
            saved = None
        if saved != names:
            raise ValueError(f"{name}: attribute 'names' must be the feature names {names}")
        counts = [state.attrs.get(k) for k in ("n", "n_seen", "chunks")]
        if not all(isinstance(c, numbers.Integral) and c >= 1 for c in counts):
            raise ValueError(f"{name}: attributes 'n', 'n_seen', 'chunks' must be counts")
        p = len(names)
        pairs = check_variable(state, "pairs", ("pair", "two"), {"two": 2}, where)
        if not np.all((pairs >= 0) & (pairs < p)) or not np.issubdtype(pairs.dtype, np.integer):
            raise ValueError(f"{name}: variable 'pairs' must hold feature positions")
        u = p + pairs.shape[0] + 1
        k = state["sample_y"].shape[0] if "sample_y" in state.data_vars else -1
        check_variable(state, "shift", ("shifted",), {"shifted": p + 1}, where)
        check_variable(state, "mean", ("moment",), {"moment": u}, where)
        check_variable(
            state, "comoment", ("moment", "moment_"), {"moment": u, "moment_": u}, where
        )
        check_variable(
            state, "sample_X", ("sample", "feature"), {"sample": k, "feature": p}, where
        )
        for var in ("sample_y", "sample_rows", "sample_keys"):
            check_variable(state, var, ("sample",), {"sample": k}, where)
        rows = check_variable(state, "chunk_rows", ("chunk",), {}, where)
        if int(rows.sum()) != counts[1] or counts[0] != counts[1]:
            raise ValueError(f"{name}: the row counts 'n', 'n_seen' and 'chunk_rows' disagree")

    def _restore_partial_fit_state(self, tree: xr.DataTree) -> None:
        from bayesmoe.numerics.rowsample import RowSample
        from bayesmoe.numerics.suffstats import DesignMoments

        if "partial_fit_state" not in tree.children:
            return
        state = tree["partial_fit_state"].to_dataset()
        pairs = tuple((int(a), int(b)) for a, b in state["pairs"].values)
        self.moments_ = DesignMoments(
            int(state.attrs["n"]),
            state["shift"].values,
            state["mean"].values,
            state["comoment"].values,
            pairs,
        )
        self._row_sample = RowSample(
            int(state.attrs["n_seen"]),
            state["sample_X"].values,
            state["sample_y"].values,
            state["sample_rows"].values,
            state["sample_keys"].values,
            tuple(int(r) for r in state["chunk_rows"].values),
        )
        self._chunks = int(state.attrs["chunks"])
        self._partial_names = json.loads(state.attrs["names"])
        del self.idata_["partial_fit_state"]

    def _fit_streamed(self, X, y, *, strict: bool, client):
        r"""Fit a dask DataFrame in one validated pass over its partitions.

        The collapsed model needs only the sufficient statistics of the standardised design
        (:mod:`bayesmoe.numerics.suffstats`, combined pairwise across partitions on a
        ``dask.distributed`` client, :func:`bayesmoe.streaming.design_pass`), so memory does
        not grow with the number of rows and the posterior is the one the rows in memory
        would give. The same pass draws a uniform sample of
        ``bayesmoe.fitting.LOO_SUBSAMPLE_ROWS`` rows: the model's ``observed_data`` /
        ``constant_data`` and the rows of the pointwise log-likelihood (subsampled LOO).
        """
        from bayesmoe import streaming
        from bayesmoe.data import resolve_interactions
        from bayesmoe.inference.loglik import LOO_SUBSAMPLE_ROWS

        if self.collapsed is False:
            raise ValueError(
                "collapsed=False needs every row in memory; a dask input is fitted in the "
                "collapsed form (collapsed='auto' or True)"
            )
        start = time.perf_counter()
        with streaming.dask_client(client) as c:  # one cluster for the levels and the pass
            frame, target, features = self._streamed_columns(X, y, c)
            pairs, _ = resolve_interactions(features, self._design_interactions())
            moments, sample = streaming.design_pass(
                frame, features, target, pairs, sample_rows=LOO_SUBSAMPLE_ROWS, client=c
            )
        stream = (frame, features, target)
        self._fit_from_moments(moments, sample, features, pairs, strict, start, stream)
        if self.formula is None and sample is not None:  # partial_fit continues the stream
            self.moments_, self._row_sample = moments, sample
            self._chunks, self._partial_names = len(sample.chunk_rows), list(features)
        return self

    def _fit_from_moments(self, moments, sample, features, pairs, strict, start, stream=None):
        """Standardise, build from the statistics and sample (streamed and partial fits)."""
        from bayesmoe.builders.interaction import interaction_regression_from_statistics

        if moments.n < 2:
            raise ValueError(f"X has {moments.n} rows; at least 2 are needed")
        const = [f for f, v in zip(features, np.diag(moments.comoment), strict=False) if v == 0]
        if const:
            warnings.warn(
                f"X has constant columns {const}: their weights are confounded with the "
                "intercept and informed only by the prior",
                UserWarning,
                stacklevel=3,
            )
        stats = self._standardize_from_moments(moments, features)
        Xs = self.standardizer_.transform_X(sample.X)
        self.model_ = interaction_regression_from_statistics(
            stats, features, sample=(Xs, self.standardizer_.transform_y(sample.y)),
            interactions=pairs, prior=self.prior, base_scale=self.base_scale,
            interaction_scale=self.interaction_scale, priors=self.priors,
        )  # fmt: skip
        data_seconds = time.perf_counter() - start
        self.idata_ = self._sample_model(strict=strict)
        # the statistics the likelihood used: saved with the fit, so load rebuilds this model
        const = self.idata_["constant_data"].to_dataset()
        self.idata_["constant_data"] = const.assign(
            xtx=(("coef", "coef_"), stats["xtx"]),
            xty=("coef", stats["xty"]),
            yty=stats["yty"],
            n_obs=stats["n"],
        )
        return self._finish_streamed(sample, moments.n, data_seconds, stream)


class StreamedVEM:
    """Mixtures fitted by variational EM streamed over the partitions (a mixin of the
    mixture estimators)."""

    #: rows of the uniform sample a streamed fit builds its model on: the variational
    #: EM's screening sample and the rows of the pointwise log-likelihood
    STREAM_SAMPLE_ROWS = 5000

    def _fit_streamed(self, X, y, *, strict: bool, client):
        r"""Fit a dask DataFrame by variational EM streamed over its partitions.

        One validated pass (:func:`bayesmoe.streaming.design_pass`) gives the
        standardisation and a uniform sample of ``STREAM_SAMPLE_ROWS`` rows; the model is
        built on that sample (its MAP-EM start, the starts' screening, ``observed_data``
        and the pointwise log-likelihood), and the variational EM then runs its E- and
        M-steps as map-reduce over all partitions on a ``dask.distributed`` client
        (:class:`bayesmoe.streaming.PartitionRows`): the same iterations as in memory.
        Only ``method="vem"`` streams; NUTS and ADVI need the rows in memory.
        """
        from bayesmoe import streaming

        if self.method != "vem":
            raise ValueError(
                f"method={self.method!r} needs every row in memory; a dask input is fitted "
                "by method='vem' (variational EM streamed over the partitions), or pass a "
                "sample (X.sample(frac=...).compute()) for NUTS"
            )
        start = time.perf_counter()
        with streaming.dask_client(client) as c:
            frame, target, features = self._streamed_columns(X, y, c)
            moments, sample = streaming.design_pass(
                frame, features, target, [], sample_rows=self.STREAM_SAMPLE_ROWS, client=c
            )
            if moments.n < 2:
                raise ValueError(f"X has {moments.n} rows; at least 2 are needed")
            stats = self._standardize_from_moments(moments, features)
            Xw = pd.DataFrame(self.standardizer_.transform_X(sample.X), columns=features)
            # the default priors from all rows' moments of y, not the sample's
            y_moments = (
                (stats["y_location"] - self.standardizer_.y_mean) / self.standardizer_.y_scale,
                stats["y_spread"] / self.standardizer_.y_scale,
            )
            self.model_ = self._build(
                Xw, self.standardizer_.transform_y(sample.y), y_moments=y_moments
            )
            design = self.model_.bayesmoe_spec.working_design(self.standardizer_)
            rows = streaming.PartitionRows(
                frame, features, target, design, client=c, n_rows=moments.n
            )
            data_seconds = time.perf_counter() - start
            try:
                self.idata_ = self._sample_model(
                    strict=strict, rows=rows, log_likelihood=self._stream_log_likelihood(sample)
                )
            finally:
                rows.close()
        return self._finish_streamed(
            sample,
            moments.n,
            data_seconds,
            stream=(frame, features, target),
            bayesmoe_vem_persisted=int(rows.persisted),
        )
