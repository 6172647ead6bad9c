"""Checks of ``fit``'s arguments, made before anything is compiled, and the sampler choice.

Every refusal here is a ``ValueError``/``TypeError`` naming the argument. Method-specific
options are checked against the model's declared capabilities
(:class:`bayesmoe.builders.contract.ModelSpec`), never by probing the spec.
"""

from __future__ import annotations

import importlib.util
import numbers

import pymc as pm

import bayesmoe.cache
from bayesmoe.builders.contract import model_kind, spec_of
from bayesmoe.builders.terms.likelihood import get_family
from bayesmoe.inference.backends import background
from bayesmoe.inference.backends import nutpie as nutpie_backend

__all__ = [
    "AUTO_SAMPLERS",
    "COLD_SAMPLER",
    "METHODS",
    "NUTPIE_MASS_MATRIX_ARGS",
    "SAMPLERS",
    "VEM_OPTIONS",
    "check_count",
    "check_method_options",
    "init_synonym",
    "initial_values",
    "is_cold_start",
    "resolve_sampler",
    "validate_fit_settings",
]

METHODS = ("nuts", "advi", "fullrank_advi", "vem")
SAMPLERS = ("nutpie", "pymc", "numpyro")
#: nutpie's arguments that choose the mass matrix (``adaptation`` and its deprecated flags)
NUTPIE_MASS_MATRIX_ARGS = frozenset(
    {
        "adaptation",
        "low_rank_modified_mass_matrix",
        "transform_adapt",
        "use_grad_based_mass_matrix",
    }
)
#: What ``sampler="auto"`` runs, per kind of model (:func:`model_kind`), once the model's
#: structure is compiled (the warm path): nutpie for every kind. It needs no optional
#: extra, and it swaps new data into one compiled model, so repeated fits of one
#: structure (``select_experts``, cross-validation, the studies) compile once. Before
#: that, the cold path (:func:`is_cold_start`) runs :data:`COLD_SAMPLER`.
#: ``benchmarks/first_fit.py`` compares the samplers (``docs/benchmarks/first_fit.md``).
AUTO_SAMPLERS = {
    "interaction_collapsed": "nutpie",
    "interaction_rows": "nutpie",
    "mixture": "nutpie",
    "gated_linear": "nutpie",
    "gated_mlp": "nutpie",
    "other": "nutpie",
}
#: What ``sampler="auto"`` runs on the cold path (:func:`is_cold_start`).
COLD_SAMPLER = "numpyro"
#: Structures (``cache_key``) this process fitted on the cold path: they stay on it.
_COLD_STRUCTURES: set = set()
#: Settings of method="vem" (passed as keyword arguments of fit, or in fit_kwargs).
VEM_OPTIONS = ("n_init", "max_iter", "tol", "rows")


def check_count(name: str, value, minimum: int) -> int:
    """``value`` as an int, refused unless it is an integer (not a bool) >= ``minimum``."""
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
    check_count("draws", draws, 1)
    check_count("tune", tune, 0)
    check_count("chains", chains, 1)
    check_count("advi_iterations", advi_iterations, 1)
    if random_seed is not None:
        check_count("random_seed", random_seed, 0)


def is_cold_start(model: pm.Model) -> bool:
    """Whether ``sampler="auto"`` takes the cold path for ``model`` (no compiling here).

    The cold path: :data:`COLD_SAMPLER` (numpyro) samples, and the structure's nutpie
    code is compiled by a background process
    (:mod:`bayesmoe.inference.backends.background`) for the fits after it. Taken when
    all of these hold: the model's spec has a ``cache_key`` (a structure that can be
    recorded); this process holds no compiled nutpie model of it and the disk cache has
    not recorded it (:func:`bayesmoe.cache.is_compiled`); the disk cache is on and usable;
    background compiles are allowed (``BAYESMOE_BACKGROUND_COMPILE``); numpyro is
    installed (the ``jax`` extra). A structure that took the cold path in this process
    keeps it for the rest of the process, so that one process's fits of a structure all
    use one sampler. The warm path (:data:`AUTO_SAMPLERS`) gives the same draws as
    ``sampler="nutpie"``; the two paths give draws of the same posterior, not the same
    draws (``tests/test_cold_start.py`` holds their means within Monte Carlo error).
    """
    spec = spec_of(model)
    key = None if spec is None else spec.cache_key
    if key is None:
        return False
    if key in _COLD_STRUCTURES:
        return True
    if nutpie_backend.is_compiled(key) or bayesmoe.cache.is_compiled(key):
        return False
    if bayesmoe.cache.usable_cache_dir() is None or not background.enabled():
        return False
    if importlib.util.find_spec("numpyro") is None:
        return False
    _COLD_STRUCTURES.add(key)
    return True


def resolve_sampler(model: pm.Model, sampler: str) -> str:
    """The NUTS implementation ``sampler`` means for ``model``.

    ``"auto"``: :data:`COLD_SAMPLER` on the cold path (:func:`is_cold_start`), else the
    :data:`AUTO_SAMPLERS` table.
    """
    if sampler != "auto":
        return sampler
    choice = AUTO_SAMPLERS.get(model_kind(model), AUTO_SAMPLERS["other"])
    if choice == "nutpie" and is_cold_start(model):
        return COLD_SAMPLER
    if choice == "numpyro":
        try:
            import numpyro  # noqa: F401
        except ImportError:  # the jax extra is optional: the next best needs nothing more
            return "nutpie"
    return choice


def init_synonym(initvals, sampler_kwargs: dict):
    """``init="em"|"vem"`` means our start; any other ``init`` is PyMC's and passes on."""
    init = sampler_kwargs.get("init")
    if init not in ("em", "vem"):
        return initvals
    sampler_kwargs.pop("init")
    if isinstance(initvals, dict) or initvals not in ("auto", init):
        raise ValueError(f"init={init!r} and initvals={initvals!r} disagree; give one of them")
    return init


def _check_vem_options(spec, initvals, sampler_kwargs: dict) -> dict:
    if spec is not None and spec.likelihood != "gaussian":
        get_family(spec.likelihood).refuse(
            "method='vem' (closed-form variational EM)", "method='nuts' or 'advi'"
        )
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
        check_count("n_init", options["n_init"], 1)
    if "max_iter" in options:
        check_count("max_iter", options["max_iter"], 1)
    if "tol" in options:
        tol = options["tol"]
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0:
            raise ValueError(f"tol must be a non-negative number, got {tol!r}")
    sampler_kwargs.clear()
    return options


def check_method_options(model, method, minibatch, initvals, sampler_kwargs) -> dict:
    """Method-specific arguments, checked before anything is built or compiled.

    Returns the ``method="vem"`` settings (moved out of ``sampler_kwargs``, which is then
    empty), or ``{}`` for the other methods.
    """
    spec = spec_of(model)
    if method == "vem":
        return _check_vem_options(spec, initvals, sampler_kwargs)
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
        check_count("minibatch", minibatch, 1)
        if minibatch > n:
            raise ValueError(f"minibatch={minibatch} is more than the number of rows ({n})")
    return {}


def initial_values(model: pm.Model, initvals) -> dict | None:
    """Where every chain starts (constrained values by name), or None for PyMC's default.

    A dict is checked against the model's free variables; ``"auto"``/``"em"`` is the
    spec's shared start point, ``"vem"`` its start at the variational EM solution.
    """
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
    spec = spec_of(model)
    if spec is None or not spec.has_start_point:
        return None
    if initvals == "vem":
        return spec.initial_values(spec.vem_point(model["X_base"].get_value()))
    return spec.initial_values()
