"""One fitting path: ``fit(model, method=...) -> xarray.DataTree`` for every model and method.

Whatever ran (NUTS through nutpie, PyMC or numpyro; mean-field or full-rank ADVI;
variational EM), the result has the same groups: ``posterior``, ``sample_stats``,
``observed_data``, ``constant_data`` and, unless skipped, pointwise ``log_likelihood``.
``fit`` is a dispatcher: the arguments become a :class:`~bayesmoe.inference.plan.FitPlan`,
one backend (:data:`~bayesmoe.inference.backends.BACKENDS`) fits, :func:`complete` draws
back what a builder integrated out (so no method-specific result type leaks out), then
the log-likelihood (:mod:`bayesmoe.inference.loglik`) and the diagnostics
(:mod:`bayesmoe.inference.diagnostics`).
"""

from __future__ import annotations

import time

import numpy as np
import pymc as pm
import xarray as xr

import bayesmoe.cache
from bayesmoe.builders.contract import spec_of
from bayesmoe.inference.backends import BACKENDS
from bayesmoe.inference.diagnostics import enforce
from bayesmoe.inference.loglik import add_log_likelihood
from bayesmoe.inference.plan import make_plan
from bayesmoe.numerics.blas import single_threaded_blas

__all__ = ["complete", "fit"]


def fit(
    model: pm.Model,
    method: str = "nuts",
    *,
    sampler: str = "auto",
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    random_seed: int | None = None,
    progressbar: bool = True,
    log_likelihood: bool | str = "auto",
    advi_iterations: int = 20_000,
    warn_diagnostics: bool = True,
    initvals: str | dict | None = "auto",
    minibatch: int | None = None,
    strict: bool = False,
    **sampler_kwargs,
) -> xr.DataTree:
    r"""Fit a model built by a :mod:`bayesmoe.builders` function (or any PyMC model).

    Parameters
    ----------
    model : pymc.Model
    method : {"nuts", "advi", "fullrank_advi", "vem"}
        NUTS gives exact MCMC; the ADVI methods fit a Gaussian approximation by stochastic
        optimisation and return ``chains * draws`` draws from it (``chain`` has length 1).
        ``"vem"`` (mixture models only) is the closed-form variational EM of
        :mod:`bayesmoe.numerics.vem`: ``chains * draws`` draws from
        :math:`q(\theta)\,q(\pi)`, with the noise sds, learned prior scales and gate as
        point estimates (named in ``posterior.attrs["bayesmoe_point_estimates"]``). Its
        settings ``n_init`` (starts, 10), ``max_iter`` (1000) and ``tol`` (1e-8) are
        keyword arguments.
    sampler : {"auto", "nutpie", "pymc", "numpyro"}
        NUTS implementation. ``"auto"`` picks per model the one measured fastest to a
        converged fit in a fresh process, cold and warm (:data:`AUTO_SAMPLERS`, figures in
        ``benchmarks/results/first_fit/``). ``numpyro`` needs the ``jax`` extra. nutpie fits
        of bayesmoe models keep their compiled code in the on-disk cache of :mod:`bayesmoe.cache`.
    draws, tune, chains : int
        Kept draws per chain, tuning steps per chain, and chains.
    random_seed : int, optional
        Same seed, same data -> identical draws for every method and sampler.
    progressbar : bool
        Show PyMC's / nutpie's progress bar.
    log_likelihood : {"auto", True, False}
        Store the pointwise log-likelihood (what LOO/WAIC need) in the ``log_likelihood``
        group. ``True``: every row (refused above ``LOG_LIKELIHOOD_MAX_BYTES``; 1e6 rows x
        4000 draws are 32 GB). ``"auto"``: every row while rows x draws x experts x 8 bytes
        is at most ``LOG_LIKELIHOOD_AUTO_BYTES``; above it ``LOO_SUBSAMPLE_ROWS`` random rows
        (the same rows for every fit on the same number of rows), plus a point-estimate
        approximation for every row in ``loo_approximation``, which is what
        :func:`arviz_stats.loo_subsample` needs; :func:`bayesmoe.compare` then uses it and
        reports the subsampling SE. The choice is in ``attrs["bayesmoe_log_likelihood"]``
        (``"full"`` / ``"subsample"``; a subsample is stored as the group
        ``log_likelihood_subsample``, which :func:`arviz.loo` does not read, its row
        positions as the ``row`` coordinate); subsampling also warns
        (:class:`SubsampledLogLikelihoodWarning`). ``False``: none
        (:func:`add_log_likelihood` adds it later). An array of row positions: those
        rows, as a subsample (how a streamed fit stores its LOO rows).
    advi_iterations : int
        Optimisation steps for the ADVI methods.
    warn_diagnostics : bool
        Warn, with numbers and parameter names, when R-hat, ESS or divergences fail.
    initvals : "auto", "em", "vem", dict or None
        Where every chain starts (constrained values by variable name), without jitter.
        ``"auto"`` (= ``"em"``) uses the builder's point estimate when it has one (the
        mixture builders' multi-start MAP-EM: one shared start keeps chains in one
        labelling) and PyMC's default otherwise; ``"vem"`` starts from the variational EM
        solution (mixtures); ``None`` always uses PyMC's default (jittered) start.
        ``init="em"`` / ``init="vem"`` are accepted as synonyms; any other ``init`` is
        PyMC's initialisation strategy and is passed on to :func:`pymc.sample`.
    minibatch : int, optional
        With ``method="advi"``/``"fullrank_advi"`` on a mixture model: rows per
        stochastic-gradient step (``pm.Minibatch`` with ``total_size``), for data too big
        for full-batch ADVI. Draws and diagnostics refer to the full model.
    strict : bool
        Raise :class:`DiagnosticsError` (with the numbers and the fit attached) when any
        check fails its threshold: R-hat (``RHAT_MAX``), bulk ESS (``ESS_MIN_PER_CHAIN``),
        divergences (``DIVERGENCES_MAX``), BFMI (``BFMI_MIN``) and, when the pointwise
        log-likelihood is stored, the Pareto k of PSIS-LOO (``pareto_k_threshold``).
    **sampler_kwargs
        Passed to :func:`pymc.sample` (e.g. ``target_accept``) or :func:`pymc.fit`; the
        ``method="vem"`` settings listed above.

    Returns
    -------
    xarray.DataTree
        Its ``attrs["bayesmoe_diagnostics"]`` holds the diagnostics (JSON, see
        :meth:`Diagnostics.as_dict`).
    """
    plan = make_plan(
        model,
        method,
        sampler=sampler,
        draws=draws,
        tune=tune,
        chains=chains,
        random_seed=random_seed,
        progressbar=progressbar,
        log_likelihood=log_likelihood,
        advi_iterations=advi_iterations,
        warn_diagnostics=warn_diagnostics,
        initvals=initvals,
        minibatch=minibatch,
        strict=strict,
        sampler_kwargs=sampler_kwargs,
    )
    start = time.perf_counter()
    # Built outside the full model's context, so that it is a model of its own.
    fit_model = plan.spec.minibatch_model(plan.minibatch) if plan.minibatch else model
    # One BLAS thread per process: chains already run in parallel, and the matrices are
    # small. Called here (not through a helper), so backends' warnings name fit's caller.
    with model, single_threaded_blas(), bayesmoe.cache.reproducible_numba():
        idata = BACKENDS[plan.backend](fit_model, plan)
    complete(model, idata, np.random.default_rng(plan.completion_seed), relabel=plan.relabel)
    rows = plan.log_likelihood_rows
    if rows is not None:
        add_log_likelihood(idata, model, rows=None if isinstance(rows, str) else rows)
    idata.attrs.update(
        bayesmoe_method=plan.method,
        bayesmoe_sampler=plan.sampler if plan.method == "nuts" else "",
        bayesmoe_fit_seconds=time.perf_counter() - start,
        bayesmoe_random_seed=-1 if random_seed is None else int(random_seed),
    )
    if model.free_RVs:
        enforce(idata, model, plan.method, plan.strict, plan.warn_diagnostics)
    return idata


def complete(
    model: pm.Model, idata: xr.DataTree, rng: np.random.Generator, relabel: bool = True
) -> None:
    """Draw back integrated-out variables, relabel mixtures, fill observed/constant data.

    In place, through the spec (nothing for a plain PyMC model): ``spec.complete``'s
    variables join the posterior; with ``relabel`` and a spec that ``supports_relabel``,
    the draws are relabelled (``attrs["bayesmoe_relabelled"] = "stephens"`` when any
    changed); ``observed_data.y`` and ``constant_data.X_base`` come from the model.
    """
    spec = spec_of(model)
    if spec is None:
        return
    posterior = idata["posterior"].to_dataset()
    extra = spec.complete(posterior, model, rng)
    if extra.data_vars:
        idata["posterior"] = posterior.merge(extra).assign_attrs(posterior.attrs)
    if relabel and spec.supports_relabel:
        relabelled = spec.relabel(posterior, model["X_base"].get_value())
        if relabelled is not posterior:
            idata["posterior"] = relabelled.assign_attrs(
                posterior.attrs, bayesmoe_relabelled="stephens"
            )
    if "observed_data" not in idata.children or "y" not in idata["observed_data"].data_vars:
        idata["observed_data"] = xr.Dataset(
            {"y": ("obs", spec.y)}, coords={"obs": np.asarray(model.coords["obs"])}
        )
    if "constant_data" not in idata.children:
        idata["constant_data"] = xr.Dataset(
            {"X_base": (("obs", "feature"), model["X_base"].get_value())},
            coords={
                "obs": np.asarray(model.coords["obs"]),
                "feature": list(model.coords["feature"]),
            },
        )
