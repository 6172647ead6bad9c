"""One fitting path: ``fit(model, method=...) -> xarray.DataTree`` for every model and method.

Whatever ran (NUTS through nutpie, PyMC or numpyro; mean-field or full-rank ADVI), the
result has the same groups: ``posterior``, ``sample_stats``, ``observed_data``,
``constant_data`` and, unless skipped, pointwise ``log_likelihood``. Builders that
integrate variables out (the collapsed interaction regression) get them drawn back here,
so no method-specific result type leaks out.
"""

from __future__ import annotations

import json
import numbers
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

import bayesmoe.cache
from bayesmoe.builders.contract import model_kind, spec_of
from bayesmoe.numerics.blas import single_threaded_blas

__all__ = [
    "AUTO_SAMPLERS",
    "BFMI_MIN",
    "DIVERGENCES_MAX",
    "ESS_MIN_PER_CHAIN",
    "LOG_LIKELIHOOD_AUTO_BYTES",
    "LOO_SUBSAMPLE_ROWS",
    "METHODS",
    "PARETO_K_MAX",
    "RHAT_MAX",
    "SAMPLERS",
    "Diagnostics",
    "DiagnosticsError",
    "SubsampledLogLikelihoodWarning",
    "add_log_likelihood",
    "diagnose",
    "fit",
    "model_diagnostics",
    "resolve_sampler",
    "subsample_rows",
]

METHODS = ("nuts", "advi", "fullrank_advi", "vem")
#: nutpie's arguments that choose the mass matrix (``adaptation`` and its deprecated flags)
_NUTPIE_MASS_MATRIX_ARGS = {
    "adaptation",
    "low_rank_modified_mass_matrix",
    "transform_adapt",
    "use_grad_based_mass_matrix",
}
SAMPLERS = ("nutpie", "pymc", "numpyro")
#: What ``sampler="auto"`` runs, per kind of model (:func:`model_kind`), chosen from
#: ``benchmarks/first_fit.py`` (fresh process, demo size, 4 x 1000 draws, whole-process
#: seconds warm / cold, 2-core machine; ``docs/first_fit/first_fit.txt``):
#:
#: ======================  ==============  ==============  ==============
#: model                   nutpie          PyMC (C)        numpyro
#: ======================  ==============  ==============  ==============
#: interaction, collapsed  **6.9** / 51.0  8.8 / 43.4      9.1 / 14.0
#: interaction, per row    **5.7** / 18.5  -               7.8 / 12.4
#: mixture                 **8.0** / 60.1  -               8.3 / 12.5
#: gated, linear gate      10.0 / 96.6     14.2 / 84.0     **8.8** / 12.3
#: ======================  ==============  ==============  ==============
#:
#: A cold compile is paid once per model structure and machine (the on-disk cache), so
#: the warm figures are the steady state, and there nutpie is fastest except for gated
#: experts (numpyro 1.2 s faster). nutpie stays the choice there too: numpyro needs the
#: optional JAX extra, and it recompiles for every new data set in a process, where nutpie
#: swaps the data into one compiled model (``select_experts``, cross-validation and the
#: studies refit one structure many times). Every backend reached R-hat <= 1.01.
AUTO_SAMPLERS = {
    "interaction_collapsed": "nutpie",
    "interaction_rows": "nutpie",
    "mixture": "nutpie",
    "gated_linear": "nutpie",
    "gated_mlp": "nutpie",
    "other": "nutpie",
}

#: Largest acceptable rank-normalised split R-hat (Vehtari et al. 2021).
RHAT_MAX = 1.01
#: Smallest acceptable bulk ESS per chain (so 400 for 4 chains).
ESS_MIN_PER_CHAIN = 100
#: Largest pointwise log-likelihood ``log_likelihood=True`` computes (rows x draws x
#: experts x 8 bytes); above it, fit refuses before sampling and says what to pass instead.
LOG_LIKELIHOOD_MAX_BYTES = 2 * 1024**3
#: ``log_likelihood="auto"`` stores every row's pointwise log-likelihood up to this size
#: (rows x draws x experts x 8 bytes) and a row subsample above it. Writing is cheap
#: (2-3e8 values/s for one expert, 1e8 for three, bayesmoe.numerics.loglik), but what
#: the values are for is not: ArviZ's PSIS-LOO ran at 1.4-3.5e6 values/s on a 2-core
#: machine (benchmarks/loglik.py), so 256 MiB (3.4e7 values, e.g. 8000 rows x 4000 draws)
#: is 10-25 s of LOO per model in bayesmoe.compare, while 1 GiB would be 40-100 s.
LOG_LIKELIHOOD_AUTO_BYTES = 256 * 1024**2
#: Rows of the subsample kept above LOG_LIKELIHOOD_AUTO_BYTES. With the posterior-mean
#: approximation of every row (``loo_approximation``), 2e5 rows and 1000 draws, 2000 rows
#: gave subsampling SEs of 0.73 (interaction model) and 0.21 (base model) against a total
#: SE of 320 and an SE of the two models' difference of 130 (1000 rows: 1.05 and 0.25;
#: 4000 rows: 0.52 and 0.15), at 0.9 s of loo_subsample per model (benchmarks/loglik.py).
LOO_SUBSAMPLE_ROWS = 2000
#: Seed of the subsample's rows. Fixed, not the fit's seed: models fitted on the same rows
#: then share the subsample, which lets arviz compare them with the paired difference
#: estimator (with different subsamples it falls back to sqrt(se_a^2 + se_b^2), 470
#: instead of 130 in the measurement above).
LOO_SUBSAMPLE_SEED = 20_190_611
#: Settings of method="vem" (passed as keyword arguments of fit, or in fit_kwargs).
VEM_OPTIONS = ("n_init", "max_iter", "tol", "rows")
#: Most divergent transitions accepted (any divergence means NUTS missed part of the
#: posterior, so the default is none).
DIVERGENCES_MAX = 0
#: Smallest acceptable energy BFMI of any chain (Betancourt 2016: below 0.3 the momentum
#: resampling explores the energy distribution poorly, e.g. in funnels).
BFMI_MIN = 0.3
#: Largest acceptable Pareto k of PSIS-LOO (Vehtari et al. 2017/2024): above 0.7 the
#: importance-sampling estimate of that row's LOO density is unreliable.
PARETO_K_MAX = 0.7


def _check_count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def validate_fit_settings(
    method: str, sampler: str, draws, tune, chains, random_seed, advi_iterations
) -> None:
    """Refuse bad fit settings before anything is compiled."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not known; choose one of {list(METHODS)}")
    if method == "nuts" and sampler != "auto" and sampler not in SAMPLERS:
        raise ValueError(
            f"sampler={sampler!r} is not known; choose 'auto' or one of {list(SAMPLERS)}"
        )
    _check_count("draws", draws, 1)
    _check_count("tune", tune, 0)
    _check_count("chains", chains, 1)
    _check_count("advi_iterations", advi_iterations, 1)
    if random_seed is not None:
        _check_count("random_seed", random_seed, 0)


_spec = spec_of


def resolve_sampler(model: pm.Model, sampler: str) -> str:
    """The NUTS implementation ``sampler`` means for ``model`` (``"auto"``: the table)."""
    if sampler != "auto":
        return sampler
    choice = AUTO_SAMPLERS.get(model_kind(model), AUTO_SAMPLERS["other"])
    if choice == "numpyro":
        try:
            import numpyro  # noqa: F401
        except ImportError:  # the jax extra is optional: the next best needs nothing more
            return "nutpie"
    return choice


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
        ``docs/first_fit/``). ``numpyro`` needs the ``jax`` extra. nutpie fits of bayesmoe
        models keep their compiled code in the on-disk cache of :mod:`bayesmoe.cache`.
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
        (``"full"`` / ``"subsample"``; the subsample's row positions are the ``row``
        coordinate of ``log_likelihood``); subsampling also warns
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
        log-likelihood is stored, the Pareto k of PSIS-LOO (``PARETO_K_MAX``).
    **sampler_kwargs
        Passed to :func:`pymc.sample` (e.g. ``target_accept``) or :func:`pymc.fit`; the
        ``method="vem"`` settings listed above.

    Returns
    -------
    xarray.DataTree
        Its ``attrs["bayesmoe_diagnostics"]`` holds the diagnostics (JSON, see
        :meth:`Diagnostics.as_dict`).
    """
    if not isinstance(model, pm.Model):
        raise TypeError(f"model must be a pymc.Model, got {type(model).__name__}")
    validate_fit_settings(method, sampler, draws, tune, chains, random_seed, advi_iterations)
    if not isinstance(strict, bool | np.bool_):
        raise TypeError(f"strict must be True or False, got {strict!r}")
    spec = _spec(model)
    sampler = resolve_sampler(model, sampler) if method == "nuts" else sampler
    initvals = _init_synonym(initvals, sampler_kwargs)
    vem_options = _check_method_options(model, method, minibatch, initvals, sampler_kwargs)
    ll_rows = _log_likelihood_plan(model, log_likelihood, draws * chains)
    _load_sampler(method, sampler)
    start_point = None if method == "vem" else _initial_values(model, initvals)
    if method == "nuts":
        for key, value in (spec.sampler_defaults if spec else {}).items():
            sampler_kwargs.setdefault(key, value)
        # a user's own choice of nutpie's mass matrix (its older flags included) wins
        if sampler == "nutpie" and not _NUTPIE_MASS_MATRIX_ARGS & set(sampler_kwargs):
            for key, value in (spec.nutpie_defaults if spec else {}).items():
                sampler_kwargs.setdefault(key, value)
    seeds = np.random.SeedSequence(random_seed).spawn(2)
    sample_seed = int(seeds[0].generate_state(1)[0])
    start = time.perf_counter()
    relabel = True
    # Built outside the full model's context, so that it is a model of its own.
    fit_model = spec.minibatch_model(minibatch) if minibatch else model
    # One BLAS thread per process: chains already run in parallel, and the matrices are
    # small. Multithreaded OpenBLAS made a 56-coefficient collapsed model 30-100x slower
    # per gradient on a busy 2-core machine (measured in the convergence study).
    with model, single_threaded_blas(), bayesmoe.cache.reproducible_numba():
        if method == "vem":
            idata = _fit_vem(model, draws * chains, sample_seed, vem_options, progressbar)
            relabel = False  # one labelling by construction
        elif not model.free_RVs:
            idata = _exact_only(model, draws, chains)
        elif method == "nuts" and sampler == "nutpie" and spec is not None:
            idata = _sample_nutpie_cached(
                model, draws, tune, chains, sample_seed, progressbar, start_point, **sampler_kwargs
            )
        elif method == "nuts":
            if start_point:
                sampler_kwargs.setdefault("initvals", start_point)
                if sampler == "pymc":
                    sampler_kwargs.setdefault("init", "adapt_diag")  # no jitter off the start
                elif sampler == "numpyro":
                    sampler_kwargs.setdefault("nuts", {}).setdefault("jitter", False)
            if sampler == "numpyro":
                bayesmoe.cache.configure_jax()
            idata = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                random_seed=sample_seed,
                progressbar=progressbar,
                nuts_sampler=sampler,
                compute_convergence_checks=False,
                **sampler_kwargs,
            )
        else:
            if start_point:
                sampler_kwargs.setdefault("start", start_point)
            approx = pm.fit(
                n=advi_iterations,
                method=method,
                model=fit_model,
                random_seed=sample_seed,
                progressbar=progressbar,
                **sampler_kwargs,
            )
            idata = approx.sample(draws * chains, random_seed=sample_seed)
            if minibatch:  # the minibatch model's data groups hold one random batch
                idata = xr.DataTree.from_dict(
                    {g: idata[g].to_dataset() for g in ("posterior", "sample_stats")}
                )
                idata["posterior"].attrs["bayesmoe_minibatch"] = int(minibatch)
            loss = np.asarray(approx.hist)
            idata["sample_stats"] = (
                idata["sample_stats"]
                .to_dataset()
                .assign_attrs(final_loss=float(loss[-100:].mean()) if loss.size else float("nan"))
            )
    _complete(model, idata, np.random.default_rng(seeds[1]), relabel=relabel)
    if ll_rows is not None:
        add_log_likelihood(idata, model, rows=None if isinstance(ll_rows, str) else ll_rows)
    idata.attrs.update(
        bayesmoe_method=method,
        bayesmoe_sampler=sampler if method == "nuts" else "",
        bayesmoe_fit_seconds=time.perf_counter() - start,
        bayesmoe_random_seed=-1 if random_seed is None else int(random_seed),
    )
    if model.free_RVs:
        _gate(idata, model, method, strict, warn_diagnostics)
    return idata


class DiagnosticsError(RuntimeError):
    """A ``strict=True`` fit failed a diagnostic threshold; ``.idata`` holds the fit."""

    def __init__(self, message: str, diagnostics: Diagnostics, idata: xr.DataTree):
        super().__init__(message)
        self.diagnostics = diagnostics
        self.idata = idata


def model_diagnostics(
    idata: xr.DataTree, model: pm.Model, *, loo: bool = False, n_rows: int | None = None
) -> Diagnostics:
    """:func:`diagnose` on the quantities of ``model`` that are identified.

    ``idata``'s posterior holds the working-scale draws. For a mixture (K >= 2) the
    component diagnosis runs first (:meth:`MixtureSpec.component_diagnosis`); when fewer
    components fit the rows as well in more than 5% of the draws, the components are not
    identified (no relabelling makes a superfluous component's parameters agree between
    chains), so R-hat and ESS are computed on what is: the mixture's log density at
    ``DENSITY_POINTS`` training rows and the prior scales. The per-component max R-hat
    is kept in the report (``component_max_rhat``) and the message says what was
    dropped. ``n_rows``: the rows a streamed fit's sample stands for.
    """
    report = diagnose(idata, var_names=_identified(model, idata), loo=loo)
    spec = _spec(model)
    if spec is None or not spec.has_component_diag or spec.n_outputs < 2:
        return report
    posterior = idata["posterior"].to_dataset()
    if n_rows is None:
        n_rows = posterior.attrs.get("bayesmoe_vem_rows")
    X_base = model["X_base"].get_value()
    found = spec.component_diagnosis(posterior, X_base, n_rows=n_rows)
    report.components = found.message()
    if found.ok:
        return report
    density = spec.mixture_log_density(posterior, X_base, spec.y)
    scales = [n for n in _identified(model, idata) or [] if n.startswith(("tau_", "lambda_"))]
    groups = {"posterior": posterior[scales].assign(mixture_log_density=density)}
    if "sample_stats" in idata.children:
        groups["sample_stats"] = idata["sample_stats"].to_dataset()
    on_density = diagnose(xr.DataTree.from_dict(groups))  # PSIS-LOO: the report's already
    on_density.max_pareto_k, on_density.n_high_pareto_k = (
        report.max_pareto_k,
        report.n_high_pareto_k,
    )
    on_density.components = report.components
    on_density.component_max_rhat = report.max_rhat
    on_density.identified = (
        f"the mixture density at {density.sizes['density_row']} training rows"
        + (f" and {', '.join(scales)}" if scales else "")
        + f" (the {spec.n_experts} components' parameters, not identified here, dropped: "
        f"their max R-hat {report.max_rhat:.3f})"
    )
    return on_density


def _gate(idata: xr.DataTree, model: pm.Model, method: str, strict: bool, warn: bool) -> None:
    """Run the diagnostics, store them in ``idata.attrs``, then warn or raise."""
    loo = strict and "log_likelihood" in idata.children
    report = model_diagnostics(idata, model, loo=loo)
    idata.attrs["bayesmoe_diagnostics"] = json.dumps(report.as_dict())
    if report.ok:
        # Emptied / coinciding components do not fail a fit (the mixture density may be
        # well estimated), but the user is told which K the data support (issue 20).
        if report.components and warn:
            warnings.warn(f"Mixture components: {report.components}", UserWarning, stacklevel=3)
        return
    if strict:
        raise DiagnosticsError(report.message() + " (strict=True)", report, idata)
    if warn and method == "nuts":
        warnings.warn(report.message(), UserWarning, stacklevel=3)


#: Compiled nutpie models by structural key (most recent last); see _sample_nutpie_cached.
_NUTPIE_CACHE: OrderedDict = OrderedDict()
_NUTPIE_CACHE_SIZE = 16


def is_compiled(cache_key) -> bool:
    """Whether this process holds a compiled nutpie model for ``cache_key`` (read-only)."""
    return cache_key is not None and cache_key in _NUTPIE_CACHE


def _init_synonym(initvals, sampler_kwargs: dict):
    """``init="em"|"vem"`` means our start; any other ``init`` is PyMC's and passes on."""
    init = sampler_kwargs.get("init")
    if init not in ("em", "vem"):
        return initvals
    sampler_kwargs.pop("init")
    if isinstance(initvals, dict) or initvals not in ("auto", init):
        raise ValueError(f"init={init!r} and initvals={initvals!r} disagree; give one of them")
    return init


def _check_method_options(model, method, minibatch, initvals, sampler_kwargs) -> dict:
    """Method-specific arguments, checked before anything is built or compiled."""
    spec = _spec(model)
    if method == "vem":
        if spec is None or not spec.supports_vem:
            raise ValueError(
                "method='vem' (closed-form variational EM) is available for mixture models "
                "(MixtureRegression, GatedExperts, bayesmoe.mixture_regression/gated_experts); "
                "use method='nuts' or 'advi' for this model"
            )
        unknown = sorted(set(sampler_kwargs) - set(VEM_OPTIONS))
        if unknown:
            raise TypeError(
                f"method='vem' does not take {unknown}; its settings are {list(VEM_OPTIONS)}"
            )
        if isinstance(initvals, dict):
            raise ValueError(
                "initvals (a dict) is for NUTS and ADVI; method='vem' has its own n_init starts"
            )
        spec.vem_arguments()  # refuses priors it cannot use, naming them
        options = dict(sampler_kwargs)
        if "n_init" in options:
            _check_count("n_init", options["n_init"], 1)
        if "max_iter" in options:
            _check_count("max_iter", options["max_iter"], 1)
        if "tol" in options:
            tol = options["tol"]
            if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0:
                raise ValueError(f"tol must be a non-negative number, got {tol!r}")
        sampler_kwargs.clear()
        return options
    if initvals == "vem" and (spec is None or not spec.supports_vem):
        raise ValueError("initvals='vem' needs a mixture model (it starts from variational EM)")
    if minibatch is not None:
        if method not in ("advi", "fullrank_advi"):
            raise ValueError(
                f"minibatch is for method='advi' or 'fullrank_advi', not method={method!r}"
            )
        if spec is None or not spec.supports_minibatch:
            raise ValueError(
                "minibatch applies to per-row mixture models (MixtureRegression, "
                "GatedExperts); InteractionRegression's collapsed form does not grow with n"
            )
        n = spec.y.size
        _check_count("minibatch", minibatch, 1)
        if minibatch > n:
            raise ValueError(f"minibatch={minibatch} is more than the number of rows ({n})")
    return {}


class SubsampledLogLikelihoodWarning(UserWarning):
    """``log_likelihood="auto"`` stored the pointwise log-likelihood of a row subsample."""


def _log_likelihood_bytes(model: pm.Model, n_draws: int) -> tuple[int, int, int] | None:
    """(bytes, rows, experts) of a fit's pointwise log-likelihood; None without a spec."""
    spec = _spec(model)
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


def _log_likelihood_plan(model: pm.Model, log_likelihood, n_draws: int):
    """What fit stores: None (nothing), "all" (every row) or the subsample's row positions.

    Decided and checked before sampling, so a refusal costs nothing.
    """
    if isinstance(log_likelihood, bool | np.bool_):
        if not log_likelihood:
            return None
        _check_log_likelihood_size(model, n_draws)
        return "all"
    if isinstance(log_likelihood, np.ndarray | list | tuple):
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
    if not (isinstance(log_likelihood, str) and log_likelihood == "auto"):
        raise ValueError(f"log_likelihood must be 'auto', True or False, got {log_likelihood!r}")
    size = _log_likelihood_bytes(model, n_draws)
    if (
        size is None
        or size[0] <= LOG_LIKELIHOOD_AUTO_BYTES
        or size[1] <= LOO_SUBSAMPLE_ROWS
        or not _spec(model).supports_row_subsample
    ):
        return "all"
    need, n_rows, width = size
    rows = subsample_rows(n_rows)
    warnings.warn(
        f"log_likelihood='auto': the pointwise log-likelihood of {n_rows} rows x {n_draws} "
        f"draws x {width} experts would take {need / 1024**3:.2f} GiB (more than "
        f"LOG_LIKELIHOOD_AUTO_BYTES = {LOG_LIKELIHOOD_AUTO_BYTES / 1024**3:.2f} GiB), so it "
        f"is stored for a random subsample of {rows.size} rows "
        "(attrs['bayesmoe_log_likelihood'] = 'subsample', positions in the 'row' "
        "coordinate of log_likelihood) with a point-estimate approximation for "
        "every row (group loo_approximation). bayesmoe.compare estimates LOO from it with "
        "arviz_stats.loo_subsample and reports the subsampling SE; arviz.loo on this fit "
        "would see only the subsample. Pass log_likelihood=True to store every row",
        SubsampledLogLikelihoodWarning,
        stacklevel=3,
    )
    return rows


def subsample_rows(n_rows: int, size: int | None = None) -> np.ndarray:
    """The sorted row positions of the LOO subsample of a fit on ``n_rows`` rows.

    ``size`` rows (default ``LOO_SUBSAMPLE_ROWS``, at most ``n_rows``) drawn without
    replacement with the fixed ``LOO_SUBSAMPLE_SEED``: every fit on the same number of rows
    gets the same subsample, so subsampled fits compare pairwise.
    """
    size = LOO_SUBSAMPLE_ROWS if size is None else _check_count("rows", size, 1)
    size = min(size, n_rows)
    rng = np.random.default_rng(LOO_SUBSAMPLE_SEED)
    return np.sort(rng.choice(n_rows, size=size, replace=False)).astype(np.int64)


def _fit_vem(
    model: pm.Model, n_draws: int, seed: int, options: dict, progressbar: bool = False
) -> xr.DataTree:
    """Variational EM, reported as draws from q with the point estimates named.

    With ``progressbar`` a bar counts the iterations on all rows (each one a pass over the
    partitions when the rows are streamed) and shows the objective and its last change;
    the multi-start screening on the row sample runs before it.
    """
    from tqdm.auto import tqdm

    spec = _spec(model)
    rng = np.random.default_rng(seed)
    options = dict(options)
    bar = None
    if progressbar and "progress" not in options:
        # no total: it stops on the ELBO's change, usually long before max_iter
        bar = tqdm(desc="variational EM", unit="it")
        last = [None]

        def progress(iteration: int, objective: float) -> None:
            change = np.nan if last[0] is None else objective - last[0]
            last[0] = objective
            bar.update(1)
            bar.set_postfix_str(f"ELBO {objective:.8g}, change {change:.2g}", refresh=False)

        options["progress"] = progress
    try:
        res = spec.run_vem(model["X_base"].get_value(), rng=rng, **options)
    finally:
        if bar is not None:
            bar.close()
    posterior, points = spec.vem_posterior(res, n_draws, rng)
    info = dict(
        bayesmoe_point_estimates=",".join(points),
        bayesmoe_vem_elbo=res.elbo,
        bayesmoe_vem_n_iter=res.n_iter,
        bayesmoe_vem_converged=int(res.converged),
        bayesmoe_vem_last_change=res.last_change,
        bayesmoe_vem_empty=",".join(str(k) for k in res.empty),
    )
    if options.get("rows") is not None:  # streamed: the model holds a sample of the rows
        info["bayesmoe_vem_rows"] = int(options["rows"].n)
    posterior.attrs.update(info, inference_library="bayesmoe.numerics.vem")
    if not res.converged:
        warnings.warn(
            f"variational EM stopped at max_iter={options.get('max_iter', 1000)} without "
            f"converging: the last ELBO change was {res.last_change:.3g} "
            f"(ELBO {res.elbo:.6g}); raise max_iter or loosen tol",
            UserWarning,
            stacklevel=3,
        )
    if res.empty:
        detail = ", ".join(f"expert {k}: {res.mass[k]:.2g} rows" for k in res.empty)
        warnings.warn(
            f"variational EM emptied {len(res.empty)} of {spec.n_experts} components "
            f"({detail}); their coefficients are draws from the prior, not estimates. "
            "Fewer components (or a larger Dirichlet alpha) describe these data",
            UserWarning,
            stacklevel=3,
        )
    coords = {"chain": posterior["chain"], "draw": posterior["draw"]}
    stats = xr.Dataset(coords=coords, attrs={"elbo": res.elbo, "n_iter": res.n_iter})
    return xr.DataTree.from_dict({"posterior": posterior, "sample_stats": stats})


def _initial_values(model: pm.Model, initvals) -> dict | None:
    if initvals is None:
        return None
    if isinstance(initvals, dict):
        unknown = sorted(set(initvals) - {v.name for v in model.free_RVs})
        if unknown:
            raise ValueError(
                f"initvals names {unknown}, which are not free variables of the model; "
                f"these are {sorted(v.name for v in model.free_RVs)}"
            )
        return initvals
    if initvals not in ("auto", "em", "vem"):
        raise ValueError(f"initvals must be 'auto', 'em', 'vem', None or a dict, got {initvals!r}")
    spec = _spec(model)
    if spec is None or not spec.has_start_point:
        return None
    if initvals == "vem":
        return spec.initial_values(spec.vem_point(model["X_base"].get_value()))
    return spec.initial_values()


def _identified(model: pm.Model, idata: xr.DataTree) -> list[str] | None:
    """Variables whose diagnostics mean something (not a mixture's raw hidden units)."""
    spec = _spec(model)
    names = None if spec is None else spec.identified_vars
    if names is None:
        return None
    return [n for n in names if n in idata["posterior"].data_vars]


def _cache_key(model: pm.Model):
    spec = _spec(model)
    return None if spec is None else spec.cache_key


def _load_sampler(method: str, sampler: str) -> None:
    """Import the NUTS backend (the collector paused), then freeze if asked.

    nutpie imports all of ArviZ; the freeze (``BAYESMOE_GC_FREEZE``,
    :func:`bayesmoe.cache.freeze_imports`) comes after the last heavy import of every
    method, so later collections and the process's exit skip it all.
    """
    with bayesmoe.cache.paused_gc():
        if method == "nuts" and sampler == "nutpie":
            import nutpie  # noqa: F401
        elif method == "nuts" and sampler == "numpyro":
            try:
                import numpyro  # noqa: F401
            except ImportError as err:
                raise ImportError(
                    "sampler='numpyro' needs JAX and numpyro: pip install 'bayesmoe[jax]'"
                ) from err
    if bayesmoe.cache.freeze_requested():
        bayesmoe.cache.freeze_imports()


def _sample_nutpie_cached(model, draws, tune, chains, seed, progressbar, start=None, **kwargs):
    """Sample with nutpie, compiling each model *structure* once per process.

    Compilation goes through :func:`bayesmoe.cache.compile_nutpie`, whose numba code a
    fresh process reads back from the on-disk cache (35 s cold, 1.2 s warm for the
    demo's collapsed interaction model). Within a process, builders whose graph depends
    on the data only through ``pm.Data`` containers give a ``cache_key`` naming
    everything else the graph is made of (shapes, priors, names); a second model with
    the same key reuses the compiled sampler with its own data swapped in
    (``CompiledModel.with_data``), which skips the PyTensor graph work as well.
    """
    import nutpie  # loaded by _load_sampler

    key = _cache_key(model)
    compiled = None if key is None else _NUTPIE_CACHE.get(key)
    if compiled is None:
        with bayesmoe.cache.paused_gc():  # PyTensor's rewriting: 0.3 s sooner
            compiled = bayesmoe.cache.compile_nutpie(model)
    else:
        compiled = _with_model_data(compiled, model)
        _NUTPIE_CACHE.move_to_end(key)
    if key is not None:
        _NUTPIE_CACHE[key] = compiled
        while len(_NUTPIE_CACHE) > _NUTPIE_CACHE_SIZE:
            _NUTPIE_CACHE.popitem(last=False)
    if start:
        compiled = _with_start(compiled, model, start)
    idata = nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        progress_bar=progressbar,
        save_warmup=False,
        **kwargs,
    )
    idata["posterior"].attrs.update(
        inference_library="nutpie", inference_library_version=nutpie.__version__
    )
    return idata


def _with_model_data(compiled, model: pm.Model):
    """A compiled sampler of the same structure with ``model``'s data swapped in."""
    names = {var.name for var in compiled.shared_var_keys}
    return compiled.with_data(**{name: model[name].get_value() for name in names})


def _with_start(compiled, model: pm.Model, start: dict):
    """The compiled sampler with every chain starting at ``start`` (no jitter).

    The start is a property of nutpie's compiled model (its ``initial_point_func``), so
    swapping it in keeps the compiled code: a cached structure gets each fit's own start.
    """
    import dataclasses

    from pymc.initial_point import make_initial_point_fn

    point_fn = make_initial_point_fn(
        model=model, overrides=start, jitter_rvs=set(), return_transformed=True
    )
    names = [model.rvs_to_values[v].name for v in model.free_RVs]

    def flat(seed=None):
        point = point_fn(seed)
        return np.concatenate([np.asarray(point[n], np.float64).ravel() for n in names])

    x0 = _nonzero_gradient_start(compiled, flat())
    if x0 is None:
        warnings.warn(
            "the model's start point (initvals) has a non-finite log density or gradient "
            "on this data; the chains start from PyMC's default (jittered) point instead",
            UserWarning,
            stacklevel=2,
        )
        return compiled
    return dataclasses.replace(compiled, initial_point_func=lambda seed=None: x0.copy())


def _log_density(compiled, x: np.ndarray) -> tuple[float, np.ndarray] | None:
    """Log density and gradient at ``x`` as nutpie evaluates them: the compiled C callback
    on the sampler's *current* data (``with_data`` swaps only that; the PyTensor function
    nutpie also keeps still holds the data it was compiled with). None on an error code.
    """
    import ctypes

    x = np.ascontiguousarray(x, dtype=np.float64)
    grad = np.empty_like(x)
    logp = np.empty((), dtype=np.float64)
    double = ctypes.POINTER(ctypes.c_double)
    code = compiled.compiled_logp_func.ctypes(
        x.size,
        x.ctypes.data_as(double),
        grad.ctypes.data_as(double),
        logp.ctypes.data_as(double),
        ctypes.c_void_p(compiled.user_data.ctypes.data),
    )
    return None if code else (float(logp), grad)


def _nonzero_gradient_start(compiled, x: np.ndarray) -> np.ndarray | None:
    """Move a start off coordinates where the log density's gradient is exactly zero.

    nutpie scales its initial mass matrix by the gradient at the start and refuses a start
    with a zero gradient entry ("bad initial gradient"). An EM/MAP start sits at a
    stationary point, and symmetric ones give exact zeros: equal mixing weights of a
    Gaussian mixture put ``weights_simplex__`` at 0 with gradient 0.0, so every chain of
    ``MixtureRegression(n_components=2).fit(None, y)`` failed to start; so does an
    emptied component (weight 1e-14: its responsibilities underflow and its coefficients'
    gradients are 0.0). A step of 1e-6 (relative) along those coordinates leaves the
    start in the same mode. The gradient is evaluated on the data the sampler will use
    (a structure reused from the process cache carries the data it was compiled with
    in its PyTensor function). Returns None for a start with a non-finite log density
    or gradient.
    """
    x = np.array(x, dtype=np.float64)
    for step in (1e-6, 1e-4, 1e-2):
        density = _log_density(compiled, x)
        if density is None or not np.isfinite(density[0]):
            return None
        zero = density[1] == 0.0
        if not zero.any():
            return x
        x[zero] += step * np.maximum(1.0, np.abs(x[zero]))
    return x


def _exact_only(model: pm.Model, draws: int, chains: int) -> xr.DataTree:
    """A model with nothing left to sample (all scales fixed, weights collapsed)."""
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    posterior = xr.Dataset(coords=coords)
    return xr.DataTree.from_dict(
        {"posterior": posterior, "sample_stats": xr.Dataset(coords=coords)}
    )


def _complete(
    model: pm.Model, idata: xr.DataTree, rng: np.random.Generator, relabel: bool = True
) -> None:
    """Draw back integrated-out variables, relabel mixtures, fill observed/constant data."""
    spec = _spec(model)
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
        survives arithmetic on the group and saving). Needs a bayesmoe builder.

    Returns
    -------
    xarray.DataTree
        ``idata``, with ``attrs["bayesmoe_log_likelihood"]`` set to ``"full"`` or
        ``"subsample"``.
    """
    spec = _spec(model)
    if rows is not None and (spec is None or not spec.supports_row_subsample):
        raise ValueError(
            "rows (a subsampled log-likelihood) needs a model built by "
            "bayesmoe.interaction_regression, mixture_regression or gated_experts"
        )
    if "loo_approximation" in idata.children:  # of a subsample this replaces
        del idata["loo_approximation"]
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
    # corrects with the subsample: the density at the posterior mean. Measured against
    # lpd from 100 thinned draws, its subsampling SE was 7x smaller (no Monte Carlo noise
    # per row), and it costs one "draw" per row.
    point = posterior.mean(("chain", "draw")).expand_dims(chain=[0], draw=[0])
    approx = spec.log_likelihood(point, X, y).values[0, 0]
    idata["log_likelihood"] = xr.Dataset({"y": ll})
    idata["loo_approximation"] = xr.Dataset(
        {"y": ("obs", approx)},
        coords={"obs": obs.values},
        attrs={"method": "plpd", "point": "posterior mean"},
    )
    idata.attrs["bayesmoe_log_likelihood"] = "subsample"
    return idata


@dataclass
class Diagnostics:
    """Convergence summary of a fit; ``ok`` is False if any threshold fails.

    ``bfmi`` (lowest over chains) is None without NUTS energy statistics; ``max_pareto_k``
    and ``n_high_pareto_k`` are None unless PSIS-LOO was computed.
    """

    max_rhat: float
    min_ess_bulk: float
    divergences: int
    chains: int
    worst_rhat: list[str]
    worst_ess: list[str]
    bfmi: float | None = None
    max_pareto_k: float | None = None
    n_high_pareto_k: int | None = None
    components: str = ""
    component_max_rhat: float | None = None
    identified: str = ""

    def failures(self) -> list[str]:
        """One line, with numbers, for each check that fails its threshold."""
        parts = []
        if self.max_rhat > RHAT_MAX:
            parts.append(f"max R-hat {self.max_rhat:.3f} > {RHAT_MAX} for {self.worst_rhat}")
        if self.min_ess_bulk < ESS_MIN_PER_CHAIN * self.chains:
            parts.append(
                f"min bulk ESS {self.min_ess_bulk:.0f} < {ESS_MIN_PER_CHAIN * self.chains} "
                f"for {self.worst_ess}"
            )
        if self.divergences > DIVERGENCES_MAX:
            parts.append(f"{self.divergences} divergent transitions > {DIVERGENCES_MAX}")
        if self.bfmi is not None and self.bfmi < BFMI_MIN:
            parts.append(f"min BFMI {self.bfmi:.2f} < {BFMI_MIN}")
        if self.max_pareto_k is not None and self.max_pareto_k > PARETO_K_MAX:
            parts.append(
                f"{self.n_high_pareto_k} rows with Pareto k > {PARETO_K_MAX} "
                f"(max {self.max_pareto_k:.2f}): PSIS-LOO unreliable"
            )
        return parts

    @property
    def ok(self) -> bool:
        return not self.failures()

    def message(self) -> str:
        parts = self.failures()
        text = "Sampling diagnostics failed: " + "; ".join(parts) if parts else "diagnostics ok"
        if self.identified:
            text += f" (R-hat and ESS on {self.identified})"
        return f"{text}; {self.components}" if self.components else text

    def as_dict(self) -> dict:
        """Plain values (JSON-able), as stored in ``idata.attrs["bayesmoe_diagnostics"]``."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["min_ess_bulk"] = None if not np.isfinite(self.min_ess_bulk) else self.min_ess_bulk
        out["ok"] = self.ok
        return out

    def to_frame(self):
        """The report as a small table: value, threshold and pass/fail per check."""
        import pandas as pd

        rows = [
            ("max R-hat", self.max_rhat, f"<= {RHAT_MAX}", self.max_rhat <= RHAT_MAX),
            (
                "min bulk ESS",
                self.min_ess_bulk,
                f">= {ESS_MIN_PER_CHAIN * self.chains}",
                self.min_ess_bulk >= ESS_MIN_PER_CHAIN * self.chains,
            ),
            ("divergences", self.divergences, f"<= {DIVERGENCES_MAX}", self.divergences == 0),
        ]
        if self.bfmi is not None:
            rows.append(("min BFMI", self.bfmi, f">= {BFMI_MIN}", self.bfmi >= BFMI_MIN))
        if self.max_pareto_k is not None:
            rows.append(
                (
                    "max Pareto k",
                    self.max_pareto_k,
                    f"<= {PARETO_K_MAX}",
                    self.max_pareto_k <= PARETO_K_MAX,
                )
            )
        return pd.DataFrame(rows, columns=["check", "value", "threshold", "ok"]).set_index("check")

    def __str__(self) -> str:
        return self.to_frame().to_string() + "\n" + self.message()


def _flat_stat(ds: xr.Dataset) -> dict[str, float]:
    out = {}
    for name, da in ds.data_vars.items():
        vals = np.atleast_1d(da.values).ravel()
        if da.ndim == 0:
            out[name] = float(vals[0])
            continue
        stacked = da.stack(_i=da.dims)
        for k, v in enumerate(vals):
            label = ",".join(str(c) for c in np.atleast_1d(stacked["_i"].values[k]))
            out[f"{name}[{label}]"] = float(v)
    return out


def diagnose(
    idata: xr.DataTree, var_names: list[str] | None = None, *, loo: bool = False
) -> Diagnostics:
    """R-hat, bulk ESS, divergences, BFMI and (``loo=True``) Pareto k of a fit, via ArviZ.

    ``loo=True`` computes PSIS-LOO from the ``log_likelihood`` group (ignored without it).
    """
    post = idata["posterior"].to_dataset()
    names = var_names or [v for v in post.data_vars if post[v].size > 0]
    chains = post.sizes["chain"]
    if chains < 2 or post.sizes["draw"] < 4 or not names:
        rhat = {}
    else:
        rhat = _flat_stat(az.rhat(idata, var_names=names).to_dataset())
    ess = _flat_stat(az.ess(idata, var_names=names, method="bulk").to_dataset()) if names else {}
    div = 0
    bfmi = None
    if "sample_stats" in idata.children:
        stats = idata["sample_stats"]
        if "diverging" in stats:
            div = int(stats["diverging"].values.sum())
        if "energy" in stats and post.sizes["draw"] > 1:
            bfmi = float(np.min(az.bfmi(idata)["energy"].values))
    max_k = n_high = None
    if loo and "log_likelihood" in idata.children:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # reported below, with the threshold
            k = np.asarray(az.loo(idata, pointwise=True).pareto_k).ravel()
        max_k, n_high = float(np.max(k)), int(np.sum(k > PARETO_K_MAX))
    finite_rhat = {k: v for k, v in rhat.items() if np.isfinite(v)}
    max_rhat = max(finite_rhat.values(), default=1.0)
    min_ess = min(ess.values(), default=float("inf"))
    return Diagnostics(
        max_rhat=max_rhat,
        min_ess_bulk=min_ess,
        divergences=div,
        chains=chains,
        worst_rhat=sorted(finite_rhat, key=finite_rhat.get, reverse=True)[:5]
        if max_rhat > RHAT_MAX
        else [],
        worst_ess=sorted(ess, key=ess.get)[:5] if min_ess < ESS_MIN_PER_CHAIN * chains else [],
        bfmi=bfmi,
        max_pareto_k=max_k,
        n_high_pareto_k=n_high,
    )
