"""The contract between a builder's model and :func:`bayesmoe.fit` / the estimators.

Every builder attaches a *spec* to the ``pm.Model`` it returns (``model.bayesmoe_spec``):
what fitting, predictions and diagnostics need to know about the model that the PyMC graph
does not say. :class:`ModelSpec` is what every spec provides; the optional capabilities are
declared as class attributes (``supports_*``), so code that needs one asks the spec instead
of probing for methods. :func:`spec_of` is the one place that reads the attribute off a
model; a plain PyMC model has no spec.

========================  =======================================================
capability                what the spec then provides
========================  =======================================================
``supports_vem``          ``run_vem(X, rng, **options)``, ``vem_posterior(...)``
``supports_relabel``      ``relabel(posterior, X)`` (label switching of mixtures)
``supports_minibatch``    ``minibatch_model(batch_size)`` (a ``pm.Minibatch`` twin)
``has_start_point``       ``initial_values(point=None)`` (one shared chain start)
``has_component_diag``    ``component_diagnosis(...)`` (supported number of experts)
``supports_row_subsample``  ``log_likelihood`` may be asked for a subset of rows
========================  =======================================================
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

#: the model kinds a spec can declare (the keys of ``bayesmoe.inference.AUTO_SAMPLERS``)
MODEL_KINDS = (
    "interaction_collapsed",
    "interaction_rows",
    "mixture",
    "gated_linear",
    "gated_mlp",
    "stacking",
    "other",
)


class ModelSpec:
    """What every builder's spec provides; optional capabilities are declared, not probed.

    Subclasses are the builders' dataclasses. The defaults here describe a model with no
    optional capability: one output per row, no special sampler settings, no compiled-graph
    reuse, no relabelling, no closed-form variational fit.
    """

    #: closed-form variational EM: ``run_vem``, ``vem_posterior``
    supports_vem: ClassVar[bool] = False
    #: label switching is undone after sampling: ``relabel``
    supports_relabel: ClassVar[bool] = False
    #: ADVI on row minibatches: ``minibatch_model``
    supports_minibatch: ClassVar[bool] = False
    #: a point estimate every chain can start from: ``initial_values``
    has_start_point: ClassVar[bool] = False
    #: the number of components the draws support: ``component_diagnosis``
    has_component_diag: ClassVar[bool] = False
    #: the pointwise log-likelihood may be stored for a row subsample only
    supports_row_subsample: ClassVar[bool] = True

    #: working-scale target (``observed_data`` and the log-likelihood), if the spec keeps it
    y: np.ndarray | None
    #: the outcome's likelihood family (:mod:`bayesmoe.builders.terms.likelihood`); only
    #: ``"gaussian"`` has the closed-form methods
    likelihood: str = "gaussian"

    @property
    def kind(self) -> str:
        """One of :data:`MODEL_KINDS`: which model this is (picks the default sampler)."""
        return "other"

    @property
    def n_outputs(self) -> int:
        """Values per row and draw that the log-likelihood computation holds at once."""
        return 1

    @property
    def sampler_defaults(self) -> dict:
        """NUTS settings this model needs by default (the user's own settings win)."""
        return {}

    @property
    def nutpie_defaults(self) -> dict:
        """nutpie-only settings this model needs by default (the user's own settings win)."""
        return {}

    @property
    def cache_key(self) -> tuple | None:
        """Everything the graph is made of except its ``pm.Data``; ``None``: no reuse."""
        return None

    @property
    def identified_vars(self) -> list[str] | None:
        """Variables whose R-hat/ESS are meaningful (``None``: every variable)."""
        return None

    def complete(self, posterior, model, rng: np.random.Generator):
        """Variables to add to the posterior after sampling (e.g. collapsed weights)."""
        import xarray as xr

        return xr.Dataset()

    def log_likelihood(self, posterior, X_base: np.ndarray, y: np.ndarray):
        """Pointwise ``log p(y_i | theta)`` of every draw and row, dims ``(chain, draw, obs)``."""
        raise NotImplementedError

    def _missing(self, capability: str) -> Any:
        raise TypeError(f"{type(self).__name__} does not declare {capability}")

    def run_vem(self, X_base: np.ndarray, rng=None, **options):
        return self._missing("supports_vem")

    def relabel(self, posterior, X_base: np.ndarray):
        return self._missing("supports_relabel")

    def minibatch_model(self, batch_size: int):
        return self._missing("supports_minibatch")

    def initial_values(self, point=None) -> dict:
        return self._missing("has_start_point")


def spec_of(model) -> ModelSpec | None:
    """The spec a bayesmoe builder attached to ``model``; ``None`` for a plain PyMC model."""
    spec = getattr(model, "bayesmoe_spec", None)
    return spec if isinstance(spec, ModelSpec) else None


def model_kind(model) -> str:
    """The declared kind of ``model`` (``"other"`` for plain PyMC models)."""
    spec = spec_of(model)
    return "other" if spec is None else spec.kind
