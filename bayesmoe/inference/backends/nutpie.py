"""NUTS through nutpie for bayesmoe models, compiling each model structure once per process.

Compilation goes through :func:`bayesmoe.cache.compile_nutpie`, whose numba code a fresh
process reads back from the on-disk cache. Within a process, builders whose graph depends
on the data only through ``pm.Data`` containers give a ``cache_key`` naming everything else
the graph is made of (shapes, priors, names); a second model with the same key reuses the
compiled sampler with its own data swapped in (``CompiledModel.with_data``), which skips
the PyTensor graph work as well. Each compiled structure is recorded in the disk cache
(:func:`bayesmoe.cache.mark_compiled`), which is how ``sampler="auto"`` knows a fresh
process will find it warm. A start point is a property of the compiled model (its
``initial_point_func``), swapped in the same way.
"""

from __future__ import annotations

import ctypes
import dataclasses
import warnings
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
import pymc as pm
import xarray as xr

import bayesmoe.cache
from bayesmoe.builders.contract import spec_of

if TYPE_CHECKING:
    from bayesmoe.inference.plan import FitPlan

__all__ = ["is_compiled", "run"]

#: Compiled nutpie models by structural key (most recent last); see _sample_cached.
_NUTPIE_CACHE: OrderedDict = OrderedDict()
_NUTPIE_CACHE_SIZE = 16


def is_compiled(cache_key) -> bool:
    """Whether this process holds a compiled nutpie model for ``cache_key`` (read-only)."""
    return cache_key is not None and cache_key in _NUTPIE_CACHE


def run(model: pm.Model, plan: FitPlan) -> xr.DataTree:
    """The ``"nutpie"`` backend: a model with a spec, its structure compiled once."""
    return _sample_cached(
        model,
        plan.draws,
        plan.tune,
        plan.chains,
        plan.sample_seed,
        plan.progressbar,
        plan.start,
        **plan.sampler_kwargs,
    )


def _sample_cached(model, draws, tune, chains, seed, progressbar, start=None, **kwargs):
    """Sample with nutpie, reusing a compiled model of the same ``cache_key``."""
    import nutpie  # loaded by backends.load_sampler

    spec = spec_of(model)
    key = None if spec is None else spec.cache_key
    compiled = None if key is None else _NUTPIE_CACHE.get(key)
    if compiled is None:
        with bayesmoe.cache.paused_gc():  # no collector passes during PyTensor's rewriting
            compiled = bayesmoe.cache.compile_nutpie(model)
        if key is not None:  # sampler="auto" reads this: the structure's warm path is open
            bayesmoe.cache.mark_compiled(key)
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
    Gaussian mixture put ``weights_simplex__`` at 0 with gradient 0.0, and so does an
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
