"""``MixtureSpec``: what :func:`bayesmoe.fit` and the estimators need to know about a mixture.

The structure (experts, gate, variables, sampler settings, cache key) and the designs live
here; the computations are module functions the methods delegate to: predictions on the
working scale (:mod:`~bayesmoe.builders.mixture.predictions`), start points
(:mod:`~bayesmoe.builders.mixture.start`), variational EM
(:mod:`~bayesmoe.builders.mixture.variational`), labels
(:mod:`~bayesmoe.builders.mixture.labels`) and the component diagnosis
(:mod:`~bayesmoe.builders.mixture.diagnosis`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pymc as pm
import xarray as xr
from pymc_extras.prior import Prior

from bayesmoe.builders.contract import ModelSpec
from bayesmoe.builders.mixture import diagnosis, labels, predictions, start, variational
from bayesmoe.builders.mixture.constants import DENSITY_POINTS
from bayesmoe.builders.terms.likelihood import Family, get_family
from bayesmoe.data import interaction_design
from bayesmoe.numerics.em import EMResult
from bayesmoe.numerics.vem import VEMResult

__all__ = ["MixtureSpec", "WorkingDesign"]


@dataclass(frozen=True)
class WorkingDesign:
    """Raw rows to the variational EM's working-scale arrays ``(Z, y, G)``.

    ``Z = [1, x_e, x_e interactions]`` and ``G`` the gate columns of the standardised
    features, exactly as :meth:`MixtureSpec.expert_design` / ``gate_design`` build them in
    memory. Small and picklable: a streamed fit sends it to the workers
    (:class:`bayesmoe.streaming.PartitionRows`).
    """

    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: float
    y_scale: float
    expert_idx: tuple
    pairs: tuple
    gate_idx: tuple | None
    n_components: int

    def __call__(self, X: np.ndarray, y: np.ndarray):
        Xw = (X - self.x_mean) / self.x_scale
        Xe = Xw[:, list(self.expert_idx)]
        if self.pairs:
            Xe = np.column_stack([Xe, interaction_design(Xe, list(self.pairs))])
        Z = np.column_stack([np.ones(len(y)), Xe])
        G = None if self.gate_idx is None else np.ascontiguousarray(Xw[:, list(self.gate_idx)])
        return Z, (y - self.y_mean) / self.y_scale, G


@dataclass
class MixtureSpec(ModelSpec):
    """What :func:`bayesmoe.fit` and the estimators need to know about a mixture model.

    Attached as ``model.bayesmoe_spec``. All arrays are on the builder's (working) scale.
    Declares every optional capability of :class:`~bayesmoe.builders.contract.ModelSpec`:
    variational EM, relabelling, minibatch ADVI, a shared start point and the component
    diagnosis. A spec of non-Gaussian experts (``likelihood``) declares, per instance,
    no variational EM and no minibatch ADVI (closed forms and the ``pm.Minibatch`` twin
    are Gaussian), no component diagnosis (its reductions moment-match normals) and, when
    rows carry trials or an offset, no log-likelihood row subsample.
    """

    supports_vem: ClassVar[bool] = True
    supports_relabel: ClassVar[bool] = True
    supports_minibatch: ClassVar[bool] = True
    has_start_point: ClassVar[bool] = True
    has_component_diag: ClassVar[bool] = True

    n_experts: int
    feature_names: list[str]
    expert_idx: list[int]
    gate_idx: list[int]
    pairs: list[tuple[int, int]]
    interaction_names: list[str]
    gate: str | None
    gate_hidden: int
    shared_noise: bool
    ordered: bool
    priors: dict
    y: np.ndarray
    point: EMResult | None = None
    grid: np.ndarray | None = None
    fixed: dict = field(default_factory=dict)
    seed: int | None = None
    rebuild: dict = field(default_factory=dict, repr=False)
    family: str = "half_cauchy"  # the ``prior=`` the model was built with
    likelihood: str = "gaussian"  # the experts' likelihood family (``family=``)
    trials: np.ndarray | None = None  # binomial trials of the rows
    offset: np.ndarray | None = None  # log exposure of the rows (count families)
    _vem: VEMResult | None = field(default=None, repr=False)
    #: (fingerprint of the inputs, result) of the last component diagnosis: the fit's
    #: diagnostics, ``check()`` and ``select_experts`` ask for the same one
    _diagnosis_memo: tuple | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.likelihood != "gaussian":  # declared per instance: no probing anywhere
            self.supports_vem = False
            self.supports_minibatch = False
            self.has_component_diag = False
        if self.trials is not None or self.offset is not None:
            self.supports_row_subsample = False

    # -- structure -------------------------------------------------------------------------
    @property
    def likelihood_family(self) -> Family:
        """The experts' :class:`~bayesmoe.builders.terms.likelihood.Family`."""
        return get_family(self.likelihood)

    def row_extras(self, rows=None) -> dict:
        """``trials`` / ``offset`` of the training rows (``rows`` of them), as keywords."""
        out = {}
        for name in ("trials", "offset"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value if rows is None else value[rows]
        return out

    @property
    def kind(self) -> str:
        return "mixture" if self.gate is None else f"gated_{self.gate}"

    @property
    def n_outputs(self) -> int:
        return self.n_experts

    @property
    def experts(self) -> list[int]:
        return list(range(self.n_experts))

    @property
    def expert_vars(self) -> list[str]:
        names = ["intercept", "beta", "beta_interaction", *self.likelihood_family.params]
        return [n for n in names if n not in self.fixed and self._has(n)]

    def _has(self, name: str) -> bool:
        if name == "beta":
            return bool(self.expert_idx)
        if name == "beta_interaction":
            return bool(self.pairs)
        return True

    @property
    def gate_vars(self) -> list[str]:
        if self.gate is None:
            return ["weights"] if self.n_experts > 1 else []
        names = ["gate_intercept", "gate_weights"]
        if self.gate == "mlp":
            names += ["gate_hidden_weights", "gate_hidden_bias"]
        return names if self.n_experts > 1 else []

    @property
    def identified_vars(self) -> list[str]:
        """Variables whose R-hat/ESS are meaningful after relabelling."""
        scales = [
            k
            for k in ("tau_base", "tau_interaction", "lambda_base", "lambda_interaction", "c2")
            if isinstance(self.priors.get(k), Prior)
        ]
        gate = self.gate_vars
        if self.gate == "mlp":
            gate = ["gate_probability_grid"] if self.n_experts > 1 else []
        return self.expert_vars + scales + gate

    @property
    def sampler_defaults(self) -> dict:
        """NUTS settings this model needs by default (the user's ``fit_kwargs`` win).

        The horseshoe's funnels need target acceptance 0.99; the mlp gate's posterior has
        curved ridges (the scales of hidden and output weights trade off while tanh is
        near-linear), which smaller steps at 0.95 follow, at about twice the cost per draw.
        """
        if self.family == "horseshoe" and (self.expert_idx or self.pairs):
            return {"target_accept": 0.99}
        return {"target_accept": 0.95} if self.gate == "mlp" else {}

    @property
    def nutpie_defaults(self) -> dict:
        """nutpie settings this model needs by default (the user's ``fit_kwargs`` win).

        nutpie's low-rank modified mass matrix (``adaptation="low_rank"``: diagonal plus
        the leading eigenvectors of the draws' and gradients' covariance) follows the
        correlations that a diagonal one cannot, e.g. the ordered intercepts' transform
        couples the first intercept with the log-increments. The mlp gate keeps nutpie's
        diagonal mass matrix: its exchangeable hidden units give a posterior on which the
        low-rank estimate misleads the sampler.
        """
        if self.gate == "mlp":
            return {}
        return {"adaptation": "low_rank"}

    @property
    def cache_key(self) -> tuple:
        """Everything the graph is made of except its ``pm.Data`` (for compiled reuse)."""
        import bayesmoe

        priors = tuple(sorted((k, repr(v)) for k, v in self.priors.items()))
        return (
            "mixture",
            bayesmoe.__version__,
            self.n_experts,
            tuple(self.feature_names),
            tuple(self.expert_idx),
            tuple(self.gate_idx),
            tuple(self.pairs),
            self.gate,
            self.gate_hidden,
            self.shared_noise,
            self.ordered,
            self.y.size,
            priors,
        ) + (() if self.likelihood == "gaussian" else (
            self.likelihood, self.trials is not None, self.offset is not None,
        ))  # fmt: skip

    @property
    def params_per_component(self) -> int:
        """Free parameters one more expert adds: its coefficients, sd and weight (or gate)."""
        return diagnosis.params_per_component(self)

    # -- designs ---------------------------------------------------------------------------
    def expert_design(self, X_base: np.ndarray) -> np.ndarray:
        Xe = X_base[:, self.expert_idx]
        if self.pairs:
            Xe = np.column_stack([Xe, interaction_design(Xe, self.pairs)])
        return Xe

    def gate_design(self, X_base: np.ndarray) -> np.ndarray:
        return X_base[:, self.gate_idx]

    def working_design(self, standardizer) -> WorkingDesign:
        """The map from raw rows to this model's VEM arrays, to run on dask workers."""
        return WorkingDesign(
            x_mean=np.asarray(standardizer.x_mean, float),
            x_scale=np.asarray(standardizer.x_scale, float),
            y_mean=float(standardizer.y_mean),
            y_scale=float(standardizer.y_scale),
            expert_idx=tuple(self.expert_idx),
            pairs=tuple(tuple(p) for p in self.pairs),
            gate_idx=tuple(self.gate_idx) if self.gate else None,
            n_components=self.n_experts,
        )

    # -- predictions on the working scale (bayesmoe.builders.mixture.predictions) ----------
    def component_means(self, posterior: xr.Dataset, X_base: np.ndarray) -> xr.DataArray:
        """Experts' mean responses (:math:`b_k + w_k^\\top x_i` for the identity link, the
        family's mean at it otherwise), dims (chain, draw, obs, expert)."""
        return predictions.component_means(self, posterior, X_base)

    def linear_predictors(self, posterior: xr.Dataset, X_base: np.ndarray) -> xr.DataArray:
        """:math:`\\eta_{ik} = b_k + w_k^\\top x_i`, dims (chain, draw, obs, expert)."""
        return predictions.linear_predictors(self, posterior, X_base)

    def component_sd(self, posterior: xr.Dataset) -> xr.DataArray:
        """:math:`\\sigma_k`, dims (chain, draw, expert)."""
        return predictions.component_sd(self, posterior)

    def log_weights(self, posterior: xr.Dataset, X_base: np.ndarray) -> xr.DataArray:
        """:math:`\\log \\pi_k(x_i)`, dims (chain, draw, obs, expert)."""
        return predictions.log_weights(self, posterior, X_base)

    def log_likelihood(self, posterior: xr.Dataset, X_base: np.ndarray, y: np.ndarray, **extras):
        """Pointwise :math:`\\log \\sum_k \\pi_k(x_i) p(y_i \\mid \\eta_{ik}, \\theta_k)`
        (``extras``: ``trials`` / ``offset`` of the rows; default the training rows')."""
        return predictions.log_likelihood(self, posterior, X_base, y, **self._extras(y, extras))

    def joint_log_density(self, posterior, X_base, y, **extras) -> xr.DataArray:
        """:math:`\\log \\pi_k(x_i) + \\log p(y_i \\mid \\eta_{ik}, \\theta_k)`, per expert."""
        return predictions.joint_log_density(self, posterior, X_base, y, **self._extras(y, extras))

    def _extras(self, y, extras: dict) -> dict:
        if extras or self.likelihood == "gaussian":
            return extras
        if np.size(y) != self.y.size and self.row_extras():
            raise ValueError("trials / offset of these rows are needed (not the training rows)")
        return self.row_extras()

    def mixture_log_density(self, posterior, X_base, y, n_points: int = DENSITY_POINTS):
        """:math:`\\log p(y_i \\mid x_i, \\theta)` at ``n_points`` training rows, per draw."""
        return predictions.mixture_log_density(self, posterior, X_base, y, n_points)

    def to_user_scale(self, posterior: xr.Dataset, standardizer) -> xr.Dataset:
        """The posterior with expert coefficients, noise sds and gate on the user's scale."""
        return predictions.to_user_scale(self, posterior, standardizer)

    def component_diagnosis(
        self,
        posterior: xr.Dataset,
        X_base: np.ndarray,
        y: np.ndarray | None = None,
        n_rows: int | None = None,
    ):
        """Emptied and coinciding components of the draws (memoised on the inputs).

        See :func:`bayesmoe.builders.mixture.diagnosis.component_diagnosis`; ``y``
        defaults to the model's own.
        """
        y = self.y if y is None else np.asarray(y, dtype=float)
        key = diagnosis.diagnosis_key(posterior, X_base, y, n_rows)
        if self._diagnosis_memo is not None and self._diagnosis_memo[0] == key:
            return self._diagnosis_memo[1]
        found = diagnosis.component_diagnosis(self, posterior, X_base, y, n_rows)
        self._diagnosis_memo = (key, found)
        return found

    # -- fitting hooks ---------------------------------------------------------------------
    def initial_values(self, point: EMResult | VEMResult | None = None) -> dict[str, np.ndarray]:
        """A point estimate (default: the builder's MAP-EM one) as PyMC initial values."""
        return start.initial_values(self, point)

    def vem_arguments(self) -> dict:
        """The model's priors as :func:`bayesmoe.numerics.vem.fit_mixture_vem` arguments."""
        return variational.vem_arguments(self)

    def run_vem(self, X_base: np.ndarray, rng=None, **options) -> VEMResult:
        """Variational EM on all rows, started (among others) from the MAP-EM estimate."""
        return variational.run_vem(self, X_base, rng, **options)

    def vem_point(self, X_base: np.ndarray) -> VEMResult:
        """The variational EM solution (computed once per model), e.g. to start NUTS."""
        if self._vem is None:
            self._vem = self.run_vem(X_base)
        return self._vem

    def vem_posterior(
        self, res: VEMResult, draws: int, rng: np.random.Generator
    ) -> tuple[xr.Dataset, list[str]]:
        """Draws from :math:`q(\\theta)\\,q(\\pi)` as a posterior Dataset (one chain)."""
        return variational.vem_posterior(self, res, draws, rng)

    def minibatch_model(self, batch_size: int) -> pm.Model:
        """The same model whose likelihood sees a random minibatch of rows per evaluation.

        ``pm.Minibatch`` draws ``batch_size`` rows of ``X_base``/``y_obs`` each time the
        graph is evaluated and ``total_size`` rescales their log-likelihood by
        ``n / batch_size``, so stochastic ADVI on it targets the full-data posterior at a
        cost independent of n. Variable names and shapes are those of the full model (the
        EM start and the ordering decision are reused), so its draws fit the full model.
        """
        from bayesmoe.builders.mixture.build import build_mixture

        return build_mixture(**self.rebuild, minibatch=batch_size, point=self.point)

    def complete(self, posterior: xr.Dataset, model: pm.Model, rng: np.random.Generator):
        return xr.Dataset()

    # -- labels (bayesmoe.builders.mixture.labels) ----------------------------------------
    def relabel(self, posterior: xr.Dataset, X_base: np.ndarray) -> xr.Dataset:
        """Align the labels of all draws (ECR to the EM pivot, then Stephens' KL refinement)."""
        return labels.relabel_draws(self, posterior, X_base)

    def permute(self, posterior: xr.Dataset, perms: np.ndarray) -> xr.Dataset:
        """Relabel draws: new expert j = old expert ``perms[c, d, j]`` (gate re-referenced)."""
        return labels.permute(self, posterior, perms)
