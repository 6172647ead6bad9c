"""A fit's settings, checked and resolved once: the :class:`FitPlan` the backends read.

:func:`make_plan` runs every check before anything is compiled or sampled, in this order:
the settings, the sampler, the method's options, the log-likelihood's size, the backend's
import, the start point, the sampler's defaults (the spec's ``sampler_defaults``, then for
nutpie its ``nutpie_defaults`` unless the user chose the mass matrix), and last the seeds
(``SeedSequence(random_seed).spawn(2)``: the backend's, then the completion's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm

from bayesmoe.builders.contract import ModelSpec, spec_of
from bayesmoe.inference.backends import backend_for, background, load_sampler
from bayesmoe.inference.loglik import log_likelihood_plan
from bayesmoe.inference.settings import (
    NUTPIE_MASS_MATRIX_ARGS,
    check_method_options,
    init_synonym,
    initial_values,
    is_cold_start,
    resolve_sampler,
    validate_fit_settings,
)

__all__ = ["FitPlan", "make_plan"]


@dataclass(frozen=True, eq=False)
class FitPlan:
    """Everything a fit does, decided before it starts.

    ``sampler`` is the resolved NUTS implementation for ``method="nuts"`` (the argument as
    given otherwise); ``backend`` a key of :data:`bayesmoe.inference.backends.BACKENDS`;
    ``start`` the chains' start point (None: PyMC's default); ``sampler_kwargs`` what the
    sampler or :func:`pymc.fit` receives, defaults included; ``vem_options`` the settings
    of ``method="vem"``; ``log_likelihood_rows`` None, ``"all"`` or row positions
    (:func:`bayesmoe.inference.loglik.log_likelihood_plan`); ``sample_seed`` the backend's
    random-number seed and ``completion_seed`` that of the completion step's draws.
    """

    method: str
    sampler: str
    backend: str
    spec: ModelSpec | None
    draws: int
    tune: int
    chains: int
    random_seed: int | None
    sample_seed: int
    completion_seed: np.random.SeedSequence
    progressbar: bool
    advi_iterations: int
    start: dict | None
    sampler_kwargs: dict
    vem_options: dict
    log_likelihood_rows: object
    minibatch: int | None
    strict: bool
    warn_diagnostics: bool

    @property
    def relabel(self) -> bool:
        """Whether the completion step relabels (variational EM has one labelling)."""
        return self.backend != "vem"


def _with_defaults(spec: ModelSpec | None, sampler: str, sampler_kwargs: dict) -> dict:
    """NUTS settings: the user's, then the spec's defaults, then its nutpie defaults."""
    kwargs = dict(sampler_kwargs)
    for key, value in (spec.sampler_defaults if spec else {}).items():
        kwargs.setdefault(key, value)
    # a user's own choice of nutpie's mass matrix (its older flags included) wins
    if sampler == "nutpie" and not NUTPIE_MASS_MATRIX_ARGS & set(kwargs):
        for key, value in (spec.nutpie_defaults if spec else {}).items():
            kwargs.setdefault(key, value)
    return kwargs


def make_plan(
    model: pm.Model,
    method: str,
    *,
    sampler: str,
    draws: int,
    tune: int,
    chains: int,
    random_seed: int | None,
    progressbar: bool,
    log_likelihood,
    advi_iterations: int,
    warn_diagnostics: bool,
    initvals,
    minibatch: int | None,
    strict: bool,
    sampler_kwargs: dict,
) -> FitPlan:
    """Check ``fit``'s arguments and resolve them into a :class:`FitPlan`.

    ``sampler_kwargs`` (fit's own ``**`` dict) loses ``init="em"|"vem"`` and, for
    ``method="vem"``, its settings, which move to ``vem_options``.
    """
    if not isinstance(model, pm.Model):
        raise TypeError(f"model must be a pymc.Model, got {type(model).__name__}")
    validate_fit_settings(method, sampler, draws, tune, chains, random_seed, advi_iterations)
    if not isinstance(strict, bool | np.bool_):
        raise TypeError(f"strict must be True or False, got {strict!r}")
    spec = spec_of(model)
    requested = sampler
    sampler = resolve_sampler(model, sampler) if method == "nuts" else sampler
    initvals = init_synonym(initvals, sampler_kwargs)
    vem_options = check_method_options(model, method, minibatch, initvals, sampler_kwargs)
    ll_rows = log_likelihood_plan(model, log_likelihood, draws * chains)
    load_sampler(method, sampler)
    start = None if method == "vem" else initial_values(model, initvals)
    if method == "nuts":
        sampler_kwargs = _with_defaults(spec, sampler, sampler_kwargs)
    seeds = np.random.SeedSequence(random_seed).spawn(2)
    if method == "nuts" and requested == "auto" and is_cold_start(model):
        # the cold path: numpyro samples now, nutpie's code compiles for the next fits
        background.compile_later(model, spec.cache_key)
    return FitPlan(
        method=method,
        sampler=sampler,
        backend=backend_for(model, spec, method, sampler),
        spec=spec,
        draws=draws,
        tune=tune,
        chains=chains,
        random_seed=random_seed,
        sample_seed=int(seeds[0].generate_state(1)[0]),
        completion_seed=seeds[1],
        progressbar=progressbar,
        advi_iterations=advi_iterations,
        start=start,
        sampler_kwargs=dict(sampler_kwargs),
        vem_options=vem_options,
        log_likelihood_rows=ll_rows,
        minibatch=minibatch,
        strict=strict,
        warn_diagnostics=warn_diagnostics,
    )
