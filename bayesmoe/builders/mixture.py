r"""Finite mixtures of regressions and gated mixtures of experts.

.. math::

    y_i \mid x_i &\sim \sum_{k=1}^K \pi_k(x_i)\, N\big(b_k + w_k^\top x_i
        [+ v_k^\top z_i],\ \sigma_k^2\big) \\
    w_k &\sim N(0, \tau_\text{base}^2 I),\quad v_k \sim N(0, \tau_\text{int}^2 I),\quad
    \tau \sim \text{hyperprior} \\
    \pi(x) &= \pi \sim \mathrm{Dirichlet}(\alpha 1_K)
        \quad\text{(mixture of regressions, seed eqs. 7-11)} \\
    \pi(x) &= \mathrm{softmax}(V^\top x + c)
        \quad\text{or}\quad \mathrm{softmax}(V^\top \tanh(W^\top x + a) + c)
        \quad\text{(gated experts, seed eqs. 17-19)}

The discrete assignments :math:`z_i` are summed out (``pm.NormalMixture``), so NUTS and
ADVI apply. Label switching is handled by four defaults, each with a reason:

1. **Reference gate.** The last expert's logit is fixed at 0, removing the softmax's
   additive non-identifiability (one free logit too many).
2. **One good starting point for every chain.** A multi-start MAP-EM fit
   (:mod:`bayesmoe.numerics.em`, closed-form expert updates, scipy for the gate) is computed
   when the model is built; :func:`bayesmoe.fit` starts all chains there. Chains then
   explore one labelling instead of landing in different relabelled modes, the failure
   measured on these models (2 of 5 seeds with R-hat 1.5-1.7 from PyMC's default start).
3. **Ordering where it separates.** A plain Gaussian mixture orders its means; a mixture of
   regressions orders its intercepts only when the EM solution shows them separated by
   many standard errors (ordering intercepts that coincide, e.g. crossing lines, would
   cut through the posterior). Gated models need no ordering: the gate separates them.
4. **Post-hoc relabelling.** After sampling, every draw's classification probabilities are
   matched to the EM pivot (ECR) and refined with Stephens' KL algorithm
   (:mod:`bayesmoe.numerics.relabel`); parameters are permuted (and the gate re-referenced)
   before diagnostics, so R-hat and ESS are computed on label-invariant draws.

For the mlp gate the hidden units are exchangeable and sign-symmetric, so its raw weights
are not identified; the identified gate quantity is :math:`\pi(x)` on a fixed grid,
stored as the deterministic ``gate_probability_grid``.
"""

from __future__ import annotations

import hashlib
import numbers
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pymc_extras.prior import Prior

from bayesmoe.builders.contract import ModelSpec
from bayesmoe.builders.interaction import mark_scales
from bayesmoe.data import (
    interaction_design,
    resolve_interactions,
    validate_features,
    validate_target,
    warn_constant_features,
)
from bayesmoe.numerics.em import EMResult, fit_mixture_em
from bayesmoe.numerics.loglik import mixture_gaussian_linear, output_array, softmax_gate
from bayesmoe.numerics.lse import log_softmax_last, logsumexp_last, softmax_last
from bayesmoe.numerics.relabel import apply_permutations, relabel
from bayesmoe.numerics.rescale import linear_layer_to_user_scale, regression_to_user_scale
from bayesmoe.numerics.vem import VEMResult, fit_mixture_vem, sample_coefficients
from bayesmoe.priors import (
    GATE_HIDDEN_SD,
    GATE_SD,
    HORSESHOE_SLAB,
    merge_priors,
    mixture_defaults,
)

__all__ = ["GATES", "MixtureSpec", "gated_experts", "mixture_regression"]

SAMPLE_DIMS = ("chain", "draw")
GATES = ("linear", "mlp")
#: Quantiles of each gate feature at which ``gate_probability_grid`` is evaluated.
GRID_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: Default Dirichlet concentration of a mixture's weights: sparse, so that components the
#: data do not need empty out (Rousseau & Mengersen 2011; Malsiner-Walli et al. 2016).
#: Measured (benchmarks/overfitted.py, 300 rows, K_true 1 or 2 fitted with K_true + 1
#: and + 2, 10 seeds each, NUTS 4 x 1000): R-hat <= 1.01 on the identified quantities in
#: 36 of 40 overfitted fits at 0.1 against 10 of 40 at 1, a held-out log density at most
#: 0.06 s.e. below the true-K fit's (1.43 s.e. at 1), and fits of the true K unchanged
#: (max R-hat 1.0035 vs 1.0049, no divergences). The price: superfluous components leave
#: divergences (median 44, up to 760 of 4000 draws) that the diagnostics report. With the
#: low-rank mass matrix (``nutpie_defaults``) the same seeds give 34 of 40 converged, the
#: other 6 named (docs/overfitted/README.md).
DEFAULT_ALPHA = 0.1
#: Training rows at which the mixture density stands in for the components' R-hat and ESS
#: when they are not identified (too many components for the data; issue 20).
DENSITY_POINTS = 20
#: Rows used to relabel draws and to find the EM starting point (subsampled above this).
RELABEL_ROWS = 1000
EM_ROWS = 5000
#: Intercepts are ordered by default when EM separates them by this many standard errors.
ORDER_SEPARATION = 5.0


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
    diagnosis.
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
    _vem: VEMResult | None = field(default=None, repr=False)
    #: (fingerprint of the inputs, result) of the last component diagnosis: the fit's
    #: diagnostics, ``check()`` and ``select_experts`` ask for the same one
    _diagnosis_memo: tuple | None = field(default=None, repr=False, compare=False)

    # -- structure -------------------------------------------------------------------------
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
        names = ["intercept", "beta", "beta_interaction", "sigma"]
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

        The mlp gate's posterior has curved ridges (the scales of hidden and output
        weights trade off while tanh is near-linear). At the default target acceptance of
        0.8, 4 of 5 simulated K=2 data sets had divergences and R-hat up to 1.04 on
        ``gate_probability_grid``; at 0.95 the smaller steps follow the ridges (measured:
        0 divergences, R-hat 1.003), at about twice the cost per draw.
        """
        if self.family == "horseshoe" and (self.expert_idx or self.pairs):
            return {"target_accept": 0.99}
        return {"target_accept": 0.95} if self.gate == "mlp" else {}

    @property
    def nutpie_defaults(self) -> dict:
        """nutpie settings this model needs by default (the user's ``fit_kwargs`` win).

        nutpie's low-rank modified mass matrix (``adaptation="low_rank"``: diagonal plus
        the leading eigenvectors of
        the draws' and gradients' covariance) follows the correlations that a diagonal
        one cannot: the ordered intercepts' transform couples the first intercept with
        the log-increments. Measured (4 x 1000, seed 0 unless noted): min bulk ESS per draw
        0.48 / 0.47 -> 1.36 / 1.33 for K = 3 linear regressions (n = 1000, 2 features,
        intercepts 4 apart; seeds 0, 1: issue 17's bar of 0.8), 1.12 -> 1.47 and
        0.96 -> 1.60 for linear-gated K = 2, 3 and 0.38 -> 0.45 for the mlp gate (n = 2000,
        3 features), with R-hat <= 1.005 and no divergences either way, at about the same
        sampling time (mlp: 138 -> 159 s, the same ESS per second).

        The mlp gate keeps nutpie's diagonal mass matrix: its exchangeable hidden units
        give a posterior where the low-rank estimate misled the sampler on
        ``benchmarks/mixtures.py`` mlp-K3 (2000 rows, 4 x 1000): seed 7 R-hat 1.051, min
        ESS 62, 79 divergences with the low-rank matrix against 1.003, 1173 and 0 with the
        diagonal one; seed 9 1.010 against 1.004; 8 of 10 seeds passed the mixtures' bar
        with the low-rank matrix, 10 of 10 with the diagonal one before it.
        """
        if self.gate == "mlp":
            return {}
        return {"adaptation": "low_rank"}

    @property
    def cache_key(self) -> tuple:
        """Everything the graph is made of except its ``pm.Data`` (see bayesmoe.fitting)."""
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
        )

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

    # -- mixture components on the working scale ------------------------------------------
    def component_means(self, posterior: xr.Dataset, X_base: np.ndarray) -> xr.DataArray:
        """:math:`b_k + w_k^\\top x_i`, dims (chain, draw, obs, expert)."""
        Xe = X_base[:, self.expert_idx]
        mu = self._value(posterior, "intercept").expand_dims(obs=X_base.shape[0], axis=-2)
        if self.expert_idx:
            beta = posterior["beta"].rename(expert_feature="_f").drop_vars("_f", errors="ignore")
            mu = mu + xr.DataArray(Xe, dims=("obs", "_f")).dot(beta, dim="_f")
        if self.pairs:
            Xi = interaction_design(Xe, self.pairs)
            v = posterior["beta_interaction"].drop_vars("interaction", errors="ignore")
            mu = mu + xr.DataArray(Xi, dims=("obs", "interaction")).dot(v, dim="interaction")
        return mu.drop_vars("obs", errors="ignore").transpose(*SAMPLE_DIMS, "obs", "expert")

    def component_sd(self, posterior: xr.Dataset) -> xr.DataArray:
        """:math:`\\sigma_k`, dims (chain, draw, expert)."""
        sd = self._value(posterior, "sigma")
        if "expert" not in sd.dims:
            sd = sd.expand_dims(expert=self.experts, axis=-1)
        return sd.transpose(*SAMPLE_DIMS, "expert")

    @property
    def params_per_component(self) -> int:
        """Free parameters one more expert adds: its coefficients, sd and weight (or gate)."""
        n = 1 + len(self.expert_idx) + len(self.pairs)  # intercept, slopes, interactions
        n += 0 if self.shared_noise else 1
        if self.gate is None:
            return n + 1  # its Dirichlet weight
        if self.gate == "mlp":
            return n + self.gate_hidden + 1  # its output weights on the hidden units
        return n + len(self.gate_idx) + 1  # its gate intercept and weights

    def component_diagnosis(
        self,
        posterior: xr.Dataset,
        X_base: np.ndarray,
        y: np.ndarray | None = None,
        n_rows: int | None = None,
    ):
        """Emptied and coinciding components of the draws (issue 20).

        :func:`bayesmoe.numerics.components.diagnose_components` on the working-scale
        weights :math:`\\pi_k(x_i)`, means and sds of every draw at the training rows
        (``y`` defaults to the model's own), with the penalty of a component its
        :attr:`params_per_component`. ``n_rows``: the rows the fit stands for when the
        model was built on a sample of them (a streamed fit).
        """
        from bayesmoe.numerics.components import diagnose_components

        y = self.y if y is None else np.asarray(y, dtype=float)
        key = _fingerprint(
            *(posterior[name].values for name in sorted(posterior.data_vars)), X_base, y, n_rows
        )
        if self._diagnosis_memo is not None and self._diagnosis_memo[0] == key:
            return self._diagnosis_memo[1]
        flat = posterior.sizes["chain"] * posterior.sizes["draw"]
        n_all = X_base.shape[0]
        if n_all > RELABEL_ROWS:  # (draws x rows x K) arrays: bounded, as relabel
            rows = np.sort(np.random.default_rng(0).choice(n_all, RELABEL_ROWS, replace=False))
            X_base, y = X_base[rows], y[rows]
        n, K = X_base.shape[0], self.n_experts
        w = np.exp(self.log_weights(posterior, X_base).values).reshape(flat, n, K)
        mu = self.component_means(posterior, X_base).values.reshape(flat, n, K)
        sd = self.component_sd(posterior).values.reshape(flat, K)
        scale = max(n_rows or n_all, n_all) / n
        found = diagnose_components(w, mu, sd, y, penalty=self.params_per_component, scale=scale)
        self._diagnosis_memo = (key, found)
        return found

    def _value(self, posterior: xr.Dataset, name: str) -> xr.DataArray:
        if name in self.fixed:
            shape = {"chain": posterior["chain"], "draw": posterior["draw"]}
            value = np.broadcast_to(self.fixed[name], (self.n_experts,))
            return xr.DataArray(value, dims="expert", coords={"expert": self.experts}).expand_dims(
                shape
            )
        return posterior[name]

    def log_weights(self, posterior: xr.Dataset, X_base: np.ndarray) -> xr.DataArray:
        """:math:`\\log \\pi_k(x_i)`, dims (chain, draw, obs, expert)."""
        n = X_base.shape[0]
        shape = (posterior.sizes["chain"], posterior.sizes["draw"], n, self.n_experts)
        dims = (*SAMPLE_DIMS, "obs", "expert")
        if self.n_experts == 1:
            return xr.DataArray(np.zeros(shape), dims=dims)
        if self.gate is None:
            logw = np.log(posterior["weights"].transpose(*SAMPLE_DIMS, "expert").values)
            return xr.DataArray(np.broadcast_to(logw[:, :, None, :], shape), dims=dims)
        return xr.DataArray(log_softmax_last(self._gate_logits(posterior, X_base)), dims=dims)

    def _gate_logits(self, posterior: xr.Dataset, X_base: np.ndarray) -> np.ndarray:
        G = self.gate_design(X_base)
        S = (posterior.sizes["chain"], posterior.sizes["draw"])

        def arr(name, *dims):
            return posterior[name].transpose(*SAMPLE_DIMS, *dims).values

        inputs = G[None, None]
        if self.gate == "mlp":
            W = arr("gate_hidden_weights", "gate_feature", "gate_hidden")
            a = arr("gate_hidden_bias", "gate_hidden")
            inputs = np.tanh(np.einsum("og,cdgh->cdoh", G, W) + a[:, :, None, :])
            V = arr("gate_weights", "gate_hidden", "gate_expert")
        else:
            V = arr("gate_weights", "gate_feature", "gate_expert")
        c = arr("gate_intercept", "gate_expert")
        free = np.einsum("cdoh,cdhk->cdok", np.broadcast_to(inputs, (*S, *inputs.shape[2:])), V)
        free = free + c[:, :, None, :]
        return np.concatenate([free, np.zeros((*free.shape[:3], 1))], axis=-1)

    def log_likelihood(self, posterior: xr.Dataset, X_base: np.ndarray, y: np.ndarray):
        """Pointwise :math:`\\log \\sum_k \\pi_k(x_i) N(y_i \\mid \\mu_{ik}, \\sigma_k^2)`.

        Dims (chain, draw, obs). Computed block by block by
        :func:`bayesmoe.numerics.loglik.mixture_gaussian_linear` (no (draw, obs, expert)
        array is formed); equal to log-sum-exp over experts of :meth:`joint_log_density`.
        """
        n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
        S, K = n_chain * n_draw, self.n_experts

        def arr(name, dim):
            return posterior[name].transpose(*SAMPLE_DIMS, dim).values.reshape(S, -1)

        Xe = self.expert_design(X_base)
        coef = []
        if self.expert_idx:
            coef.append(posterior["beta"].transpose(*SAMPLE_DIMS, "expert", ...).values)
        if self.pairs:
            coef.append(
                posterior["beta_interaction"].transpose(*SAMPLE_DIMS, "expert", ...).values
            )
        coef = np.concatenate(coef, axis=-1) if coef else np.zeros((n_chain, n_draw, K, 0))
        intercept = self._value(posterior, "intercept").transpose(*SAMPLE_DIMS, "expert").values
        sigma = self.component_sd(posterior).values
        weights = {}
        if K == 1:
            weights["log_weights"] = np.zeros((S, 1))
        elif self.gate is None:
            weights["log_weights"] = np.log(
                posterior["weights"].transpose(*SAMPLE_DIMS, "expert").values.reshape(S, K)
            )
        else:
            hidden = {}
            inputs = "gate_feature"
            if self.gate == "mlp":
                hidden = dict(
                    hidden_weights=posterior["gate_hidden_weights"]
                    .transpose(*SAMPLE_DIMS, "gate_feature", "gate_hidden")
                    .values.reshape(S, len(self.gate_idx), -1),
                    hidden_bias=arr("gate_hidden_bias", "gate_hidden"),
                )
                inputs = "gate_hidden"
            weights["gate_logits"] = softmax_gate(
                self.gate_design(X_base),
                posterior["gate_weights"]
                .transpose(*SAMPLE_DIMS, inputs, "gate_expert")
                .values.reshape(S, -1, K - 1),
                arr("gate_intercept", "gate_expert"),
                **hidden,
            )
        out = output_array((n_chain, n_draw, Xe.shape[0]))
        mixture_gaussian_linear(
            Xe,
            y,
            coef.reshape(S, K, -1),
            sigma.reshape(S, K),
            intercept.reshape(S, K),
            out=out.reshape(S, -1),
            **weights,
        )
        coords = {d: posterior[d].values for d in SAMPLE_DIMS if d in posterior.coords}
        return xr.DataArray(out, dims=(*SAMPLE_DIMS, "obs"), coords=coords)

    def joint_log_density(self, posterior, X_base, y) -> xr.DataArray:
        """:math:`\\log \\pi_k(x_i) + \\log N(y_i \\mid \\mu_{ik}, \\sigma_k^2)`, per expert."""
        mu = self.component_means(posterior, X_base)
        sd = self.component_sd(posterior).expand_dims(obs=mu.sizes["obs"], axis=-2)
        resid = (y[None, None, :, None] - mu.values) / sd.values
        log_norm = -0.5 * resid**2 - np.log(sd.values) - 0.5 * np.log(2 * np.pi)
        return self.log_weights(posterior, X_base) + log_norm

    def mixture_log_density(self, posterior, X_base, y, n_points: int = DENSITY_POINTS):
        r""":math:`\log p(y_i \mid x_i, \theta)` at ``n_points`` training rows, per draw.

        The rows sit at evenly spaced ranks of ``y`` (deterministic). The mixture density
        does not depend on the labels, so its R-hat and ESS mean something when the
        components themselves are not identified (dims chain, draw, density_row).
        """
        y = np.asarray(y, dtype=float)
        order = np.argsort(y, kind="stable")
        rows = order[
            np.unique(np.linspace(0, y.size - 1, min(n_points, y.size)).round().astype(int))
        ]
        joint = self.joint_log_density(posterior, X_base[rows], y[rows])
        top = joint.max("expert")
        out = top + np.log(np.exp(joint - top).sum("expert"))
        return out.rename(obs="density_row").assign_coords(density_row=rows)

    # -- the user's scale -------------------------------------------------------------------
    def to_user_scale(self, posterior: xr.Dataset, standardizer) -> xr.Dataset:
        """The posterior with expert coefficients, noise sds and gate on the user's scale.

        Each expert's ``intercept``, ``beta`` and ``beta_interaction`` become coefficients
        of the raw features (and raw products), ``sigma`` is multiplied by the scale of
        ``y`` (:mod:`bayesmoe.numerics.rescale`). The gate's input layer (``gate_weights``
        and ``gate_intercept`` of the linear gate; ``gate_hidden_weights`` and
        ``gate_hidden_bias`` of the mlp gate) is written in the raw gate features; the
        mlp's output layer, the mixing ``weights``, ``gate_probability_grid`` and the prior
        scales ``tau_*``/``lambda_*`` are scale-free and stay as they are.
        """
        std = standardizer
        out = posterior.copy()
        user = ["intercept", "sigma"]
        lead = (*SAMPLE_DIMS, "expert")
        intercept = self._value(posterior, "intercept").transpose(*lead)
        shape = intercept.shape
        p, q = len(self.expert_idx), len(self.pairs)
        base = (
            posterior["beta"].transpose(*lead, "expert_feature").values
            if p
            else np.zeros((*shape, 0))
        )
        inter = (
            posterior["beta_interaction"].transpose(*lead, "interaction").values
            if q
            else np.zeros((*shape, 0))
        )
        e = self.expert_idx
        b0, w, v = regression_to_user_scale(
            intercept.values, base, inter, self.pairs, std.x_mean[e], std.x_scale[e],
            std.y_mean, std.y_scale,
        )  # fmt: skip
        out["intercept"] = intercept.copy(data=b0)
        if p:
            out["beta"] = posterior["beta"].transpose(*lead, "expert_feature").copy(data=w)
            user.append("beta")
        if q:
            out["beta_interaction"] = (
                posterior["beta_interaction"].transpose(*lead, "interaction").copy(data=v)
            )
            user.append("beta_interaction")
        if "sigma" in posterior:
            out["sigma"] = posterior["sigma"] * std.y_scale
        if self.gate is not None:
            g = self.gate_idx
            if self.gate == "linear":
                names, dims = ("gate_intercept", "gate_weights"), ("gate_expert", "gate_feature")
            else:
                names = ("gate_hidden_bias", "gate_hidden_weights")
                dims = ("gate_hidden", "gate_feature")
            bias = posterior[names[0]].transpose(*SAMPLE_DIMS, dims[0])
            weights = posterior[names[1]].transpose(*SAMPLE_DIMS, "gate_feature", dims[0])
            c, V = linear_layer_to_user_scale(
                bias.values, weights.values, std.x_mean[g], std.x_scale[g], axis=-2
            )
            out[names[0]] = bias.copy(data=c)
            out[names[1]] = weights.copy(data=V)
            user += list(names)
        return mark_scales(out, posterior, user)

    # -- fitting hooks ----------------------------------------------------------------------
    def initial_values(self, point: EMResult | VEMResult | None = None) -> dict[str, np.ndarray]:
        """A point estimate as PyMC initial values (constrained space).

        ``point`` defaults to the builder's MAP-EM estimate; :meth:`vem_point` gives the
        variational EM one (posterior means of the expert coefficients).
        """
        pt_ = self.point if point is None else point
        if pt_ is None:
            return {}
        p = len(self.expert_idx)
        out = {"intercept": pt_.intercept}
        if p:
            out["beta"] = pt_.beta[:, :p]
        if self.pairs:
            out["beta_interaction"] = pt_.beta[:, p:]
        out["sigma"] = pt_.sigma[0] if self.shared_noise else pt_.sigma
        if self.n_experts > 1 and self.gate is None:
            out["weights"] = pt_.weights
        elif self.n_experts > 1:
            out["gate_intercept"] = pt_.gate_intercept
            out["gate_weights"] = pt_.gate_weights
            if self.gate == "mlp":
                out["gate_hidden_weights"] = pt_.gate_hidden_weights
                out["gate_hidden_bias"] = pt_.gate_hidden_bias
        if self.family == "horseshoe":
            out.update(self._horseshoe_start(pt_, out))
        for group, width, cols in (("base", p, slice(0, p)), ("interaction", 1, slice(p, None))):
            if not width or (group == "interaction" and not self.pairs):
                continue
            if self.family == "horseshoe":
                continue
            rms = float(np.sqrt(np.mean(pt_.beta[:, cols] ** 2)))
            tau = max(rms, 0.05)
            if isinstance(self.priors.get(f"tau_{group}"), Prior):
                out[f"tau_{group}"] = tau
            if isinstance(self.priors.get(f"lambda_{group}"), Prior):
                out[f"lambda_{group}"] = tau**-2
        out = {k: np.asarray(v, float) for k, v in out.items() if k not in self.fixed}
        return {k: _into_support(v, self.priors.get(k)) for k, v in out.items()}

    def _horseshoe_start(self, pt_, start: dict) -> dict:
        r"""The horseshoe's scales and non-centred offsets at the point's weights.

        Local scales start at 1, the slab at its prior's mode-scale :math:`c^2 = (2 s)^2`
        and each group's global scale at the point's root-mean-square weight over its
        noise sd (at least 0.05), so the prior sds are of the weights' size and the
        offsets :math:`z = w / s` are of order one (the EM point's weights, not zero).
        """
        p = len(self.expert_idx)
        sigma = np.broadcast_to(np.asarray(pt_.sigma, float), (self.n_experts,))
        c2 = self.priors.get("c2")
        c2_start = float(c2) if not isinstance(c2, Prior) else (
            HORSESHOE_SLAB["scale"] * (float(np.std(self.y)) or 1.0)
        ) ** 2  # fmt: skip
        out = {} if not isinstance(c2, Prior) else {"c2": c2_start}
        groups = (
            ("base", "beta", slice(0, p)),
            ("interaction", "beta_interaction", slice(p, None)),
        )
        for group, name, cols in groups:
            if name not in start:
                continue
            w = np.asarray(pt_.beta[:, cols], float)
            tau = self.priors.get(f"tau_{group}")
            if isinstance(tau, Prior):
                tau_start = max(float(np.sqrt(np.mean((w / sigma[:, None]) ** 2))), 0.05)
                out[f"tau_{group}"] = tau_start
            else:
                tau_start = float(tau)
            lam = np.ones_like(w)
            if isinstance(self.priors.get(f"lambda_local_{group}"), Prior):
                out[f"lambda_local_{group}"] = lam
            u = sigma[:, None] * tau_start * lam
            sd = u / np.sqrt(1.0 + u**2 / c2_start)
            out[f"{name}_offset"] = w / sd
            del start[name]  # a Deterministic of the offsets, not a free variable
        return out

    # -- variational EM ---------------------------------------------------------------------
    def vem_arguments(self) -> dict:
        """The model's priors as :func:`bayesmoe.numerics.vem.fit_mixture_vem` arguments.

        VEM's updates are closed-form for Gaussian coefficient priors only: it takes the
        intercept's Normal prior, the slopes' zero-mean Normal prior with a learned scale
        per group (base, interaction) when the builder learns one (the hyperprior is then
        replaced by type-II maximum likelihood, the seed's M-step) or a fixed one, the
        Dirichlet concentration, and the gate's Gaussian prior sds. Noise sds are
        maximum-likelihood point estimates unless fixed. Anything else raises.
        """
        pr = self.priors

        def fail(key: str, why: str):
            raise ValueError(
                f"method='vem' cannot use priors[{key!r}] = {pr.get(key)!r}: {why}. Use "
                "method='nuts' or 'advi' for this prior"
            )

        def normal(key: str, *, zero_mean: bool = False) -> Prior:
            v = pr.get(key)
            if not isinstance(v, Prior) or v.distribution != "Normal":
                fail(key, "closed-form updates need a Normal prior")
            mu = v.parameters.get("mu", 0.0)
            if isinstance(mu, Prior) or np.ndim(mu) > 0 or (zero_mean and mu != 0):
                kind = "zero" if zero_mean else "scalar"
                fail(key, f"closed-form updates need a {kind} mean")
            if isinstance(v.parameters.get("sigma"), Prior) and key in ("intercept",):
                fail(key, "closed-form updates need a fixed sd")
            return v

        if self.family == "horseshoe":
            key = "lambda_local_base" if self.expert_idx else "lambda_local_interaction"
            fail(key, "closed-form updates need one Gaussian prior scale per group, and the "
                 "horseshoe gives every weight its own")  # fmt: skip
        if "intercept" in self.fixed:
            fail("intercept", "a fixed intercept is not supported")
        icpt = normal("intercept")
        sd_b = icpt.parameters.get("sigma", 1.0)
        if np.ndim(sd_b) > 0:
            fail("intercept", "closed-form updates need one scalar sd")
        groups, sds, learn = [], [], []
        p, q = len(self.expert_idx), len(self.pairs)
        for key, width, group in (("beta", p, "base"), ("beta_interaction", q, "interaction")):
            if not width:
                continue
            prior = normal(key, zero_mean=True)
            gid = len(sds)
            groups += [gid] * width
            if "sigma" in prior.parameters:
                sd = prior.parameters["sigma"]
                if isinstance(sd, Prior) or np.ndim(sd) > 0:
                    fail(key, "closed-form updates need a scalar sd or the learned scale")
                sds.append(float(sd))
                learn.append(False)
            elif isinstance(pr.get(f"tau_{group}"), Prior) or isinstance(
                pr.get(f"lambda_{group}"), Prior
            ):
                sds.append(1.0)  # start of the learned scale (standardised features)
                learn.append(True)
            else:
                sds.append(float(pr[f"tau_{group}"]))
                learn.append(False)
        out = dict(
            gate=self.gate,
            gate_hidden=self.gate_hidden,
            shared_noise=self.shared_noise,
            intercept_mean=float(icpt.parameters.get("mu", 0.0)),
            intercept_sd=float(sd_b),
            weight_sd=np.asarray(sds) if sds else 1.0,
            weight_groups=np.asarray(groups, int) if groups else None,
            learn_scales=np.asarray(learn, bool) if learn else False,
            sigma=self.fixed.get("sigma"),
        )
        if self.n_experts > 1 and self.gate is None:
            w = pr.get("weights")
            if not isinstance(w, Prior) or w.distribution != "Dirichlet":
                fail("weights", "closed-form updates need a Dirichlet prior")
            out["alpha"] = np.asarray(w.parameters["a"], float)
        if self.gate is not None:
            out["gate_sd"] = self._gate_sd(("gate_intercept", "gate_weights"), fail)
            if self.gate == "mlp":
                out["hidden_sd"] = self._gate_sd(("gate_hidden_weights", "gate_hidden_bias"), fail)
        return out

    def _gate_sd(self, keys: tuple[str, str], fail) -> float:
        sds = []
        for key in keys:
            v = self.priors.get(key)
            if not isinstance(v, Prior) or v.distribution != "Normal":
                fail(key, "the gate step needs a Normal prior")
            mu, sd = v.parameters.get("mu", 0.0), v.parameters.get("sigma", 1.0)
            if isinstance(sd, Prior) or np.ndim(sd) > 0 or np.ndim(mu) > 0 or mu != 0:
                fail(key, "the gate step needs a zero-mean Normal with one scalar sd")
            sds.append(float(sd))
        if sds[0] != sds[1]:
            fail(keys[1], f"the gate step needs the same sd for {keys[0]} and {keys[1]}")
        return sds[0]

    def run_vem(self, X_base: np.ndarray, rng=None, **options) -> VEMResult:
        """Variational EM on all rows, started (among others) from the MAP-EM estimate."""
        args = self.vem_arguments()
        Xe = self.expert_design(X_base)
        G = self.gate_design(X_base) if self.gate else None
        res = fit_mixture_vem(
            Xe,
            self.y,
            self.n_experts,
            G=G,
            init=self.point,
            random_state=np.random.default_rng(self.seed) if rng is None else rng,
            **args,
            **options,
        )
        if self.ordered:
            order = np.argsort(res.mean[:, 0])
            res.mean, res.cov, res.sigma = res.mean[order], res.cov[order], res.sigma[order]
            res.mass = res.mass[order]
            if res.responsibilities is not None:
                res.responsibilities = res.responsibilities[:, order]
            if res.dirichlet is not None:
                res.dirichlet = res.dirichlet[order]
            res.empty = sorted(int(np.flatnonzero(order == k)[0]) for k in res.empty)
        return res

    def vem_point(self, X_base: np.ndarray) -> VEMResult:
        """The variational EM solution (computed once per model), e.g. to start NUTS."""
        if self._vem is None:
            self._vem = self.run_vem(X_base)
        return self._vem

    def vem_posterior(
        self, res: VEMResult, draws: int, rng: np.random.Generator
    ) -> tuple[xr.Dataset, list[str]]:
        """Draws from :math:`q(\\theta)\\,q(\\pi)` as a posterior Dataset (one chain).

        Point-estimated variables (noise sds, learned scales, gate) are constant over
        draws; their names are returned so the caller can record them.
        """
        K, p, q = self.n_experts, len(self.expert_idx), len(self.pairs)
        theta = sample_coefficients(res, draws, rng)[None]  # (1, S, K, 1 + p + q)
        sd = ("chain", "draw")
        coords = {"chain": [0], "draw": np.arange(draws), "expert": self.experts}
        data = {"intercept": ((*sd, "expert"), theta[..., 0])}
        if p:
            coords["expert_feature"] = [self.feature_names[j] for j in self.expert_idx]
            data["beta"] = ((*sd, "expert", "expert_feature"), theta[..., 1 : 1 + p])
        if q:
            coords["interaction"] = list(self.interaction_names)
            data["beta_interaction"] = ((*sd, "expert", "interaction"), theta[..., 1 + p :])
        points = []

        def const(name, value, dims=()):
            value = np.asarray(value, float)
            data[name] = ((*sd, *dims), np.broadcast_to(value, (1, draws, *value.shape)).copy())
            points.append(name)

        if "sigma" not in self.fixed:
            if self.shared_noise:
                const("sigma", res.sigma[0])
            else:
                const("sigma", res.sigma, ("expert",))
        for group, cols in (("base", slice(1, 1 + p)), ("interaction", slice(1 + p, None))):
            var = res.prior_var[cols]
            if not var.size:
                continue
            if isinstance(self.priors.get(f"lambda_{group}"), Prior):
                const(f"lambda_{group}", 1.0 / var[0])
                const(f"tau_{group}", np.sqrt(var[0]))
            elif isinstance(self.priors.get(f"tau_{group}"), Prior):
                const(f"tau_{group}", np.sqrt(var[0]))
        if K > 1 and self.gate is None:
            data["weights"] = ((*sd, "expert"), rng.dirichlet(res.dirichlet, draws)[None])
        elif K > 1:
            coords["gate_expert"] = self.experts[:-1]
            coords["gate_feature"] = [self.feature_names[j] for j in self.gate_idx]
            coords["grid"] = np.arange(len(self.grid))
            rows = "gate_feature"
            if self.gate == "mlp":
                coords["gate_hidden"] = np.arange(self.gate_hidden)
                rows = "gate_hidden"
                hidden_dims = ("gate_feature", "gate_hidden")
                const("gate_hidden_weights", res.gate_hidden_weights, hidden_dims)
                const("gate_hidden_bias", res.gate_hidden_bias, ("gate_hidden",))
            const("gate_intercept", res.gate_intercept, ("gate_expert",))
            const("gate_weights", res.gate_weights, (rows, "gate_expert"))
            from bayesmoe.numerics.em import gate_logits

            grid = gate_logits(
                self.grid,
                res.gate_intercept,
                res.gate_weights,
                res.gate_hidden_weights,
                res.gate_hidden_bias,
            )
            const("gate_probability_grid", softmax_last(grid), ("grid", "expert"))
        return xr.Dataset(data, coords=coords), points

    def minibatch_model(self, batch_size: int) -> pm.Model:
        """The same model whose likelihood sees a random minibatch of rows per evaluation.

        ``pm.Minibatch`` draws ``batch_size`` rows of ``X_base``/``y_obs`` each time the
        graph is evaluated and ``total_size`` rescales their log-likelihood by
        ``n / batch_size``, so stochastic ADVI on it targets the full-data posterior at a
        cost independent of n. Variable names and shapes are those of the full model (the
        EM start and the ordering decision are reused), so its draws fit the full model.
        """
        return _build_mixture(**self.rebuild, minibatch=batch_size, point=self.point)

    def complete(self, posterior: xr.Dataset, model: pm.Model, rng: np.random.Generator):
        return xr.Dataset()

    def relabel(self, posterior: xr.Dataset, X_base: np.ndarray) -> xr.Dataset:
        """Align the labels of all draws (ECR to the EM pivot, then Stephens' KL refinement).

        Ordered models are already identified and are returned unchanged.
        """
        if self.n_experts == 1 or self.ordered:
            return posterior
        n = X_base.shape[0]
        rows = np.arange(n)
        if n > RELABEL_ROWS:
            rows = np.sort(np.random.default_rng(0).choice(n, RELABEL_ROWS, replace=False))
        joint = self.joint_log_density(posterior, X_base[rows], self.y[rows]).values
        C, D = joint.shape[:2]
        log_probs = log_softmax_last(joint)
        probs = np.exp(log_probs).reshape(C * D, len(rows), self.n_experts)
        pivot = self.point.responsibilities[rows] if self.point is not None else None
        perms = relabel(probs, pivot=pivot, method="stephens")
        if np.all(perms == np.arange(self.n_experts)):
            return posterior
        return self.permute(posterior, perms.reshape(C, D, -1))

    def permute(self, posterior: xr.Dataset, perms: np.ndarray) -> xr.Dataset:
        """Relabel draws: new expert j = old expert ``perms[c, d, j]``.

        Gate parameters are re-referenced, because the reference expert may change: with
        logits :math:`\\eta_k` (reference :math:`\\eta_K = 0`), the relabelled logits are
        :math:`\\eta'_j = \\eta_{\\sigma(j)} - \\eta_{\\sigma(K)}`, which is linear in the gate's
        output-layer parameters. The mlp gate's hidden layer is unchanged.
        """
        C, D, K = perms.shape
        flat = perms.reshape(C * D, K)
        out = posterior.copy()
        for name, da in posterior.data_vars.items():
            if "expert" in da.dims and name != "gate_probability_grid":
                out[name] = _permuted(da, "expert", flat)
        if "gate_probability_grid" in posterior:
            out["gate_probability_grid"] = _permuted(
                posterior["gate_probability_grid"], "expert", flat
            )
        if self.gate is not None:
            for name in ("gate_intercept", "gate_weights"):
                da = posterior[name]
                full = xr.concat(
                    [da, xr.zeros_like(da.isel(gate_expert=[0]))], dim="gate_expert"
                ).rename(gate_expert="_k")
                moved = _permuted(full, "_k", flat)
                ref = moved.isel(_k=K - 1)
                out[name] = (
                    (moved.isel(_k=slice(0, K - 1)) - ref)
                    .rename(_k="gate_expert")
                    .assign_coords(gate_expert=da["gate_expert"])
                    .transpose(*da.dims)
                )
        return out


def _fingerprint(*parts) -> str:
    """A digest of arrays (values, dtypes and shapes) and scalars, for memoising."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        a = np.ascontiguousarray(part if part is not None else np.nan)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _into_support(value: np.ndarray, prior) -> np.ndarray:
    """An EM start moved inside a bounded prior (a user's ``Uniform``); others unchanged.

    The EM point ignores the priors' supports, and a start outside one has log density
    -inf, on which every NUTS chain fails to initialise.
    """
    if not isinstance(prior, Prior) or prior.distribution != "Uniform":
        return value
    lower = np.asarray(prior.parameters["lower"], float)
    upper = np.asarray(prior.parameters["upper"], float)
    margin = 1e-3 * (upper - lower)
    return np.clip(value, lower + margin, upper - margin)


def logsumexp_over_experts(joint: xr.DataArray) -> xr.DataArray:
    return xr.DataArray(logsumexp_last(joint.values), dims=joint.dims[:-1])


def _permuted(da: xr.DataArray, dim: str, flat_perms: np.ndarray) -> xr.DataArray:
    da = da.transpose(*SAMPLE_DIMS, ...)
    C, D = da.sizes["chain"], da.sizes["draw"]
    axis = da.dims.index(dim) - 1  # after flattening chain and draw into one axis
    values = da.values.reshape(C * D, *da.shape[2:])
    moved = apply_permutations(values, flat_perms, axis=axis)
    return da.copy(data=moved.reshape(da.shape))


# ---------------------------------------------------------------------------------------------
def _check_k(name: str, value, n_rows: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    if value > n_rows:
        raise ValueError(f"{name}={value} is more than the number of rows ({n_rows})")
    return int(value)


def _resolve_columns(arg: str, chosen, names: list[str]) -> list[int]:
    if chosen is None:
        return list(range(len(names)))
    if isinstance(chosen, str):
        chosen = [chosen]
    idx = []
    for c in chosen:
        if isinstance(c, numbers.Integral) and not isinstance(c, bool) and 0 <= c < len(names):
            idx.append(int(c))
        elif str(c) in names:
            idx.append(names.index(str(c)))
        else:
            raise ValueError(f"{arg} names {c!r}, which is not a column of X; columns are {names}")
    if len(set(idx)) != len(idx):
        raise ValueError(f"{arg} lists a column twice: {list(chosen)}")
    return idx


def _create(spec, name: str, dims=None, transform=None, initval=None):
    """Create a variable from a Prior (or a constant for a number)."""
    if not isinstance(spec, Prior):
        return pt.constant(np.asarray(spec, float))
    if transform is None:
        return spec.create_variable(name)
    # An ordered transform is a bijection of the variable's support, which Prior's own
    # ``transform`` (a deterministic function) is not: build the distribution directly.
    params = {
        k: (v.create_variable(f"{name}_{k}") if isinstance(v, Prior) else v)
        for k, v in spec.parameters.items()
    }
    dist = getattr(pm, spec.distribution)
    return dist(name, **params, dims=dims or spec.dims, transform=transform, initval=initval)


def _build_mixture(
    X,
    y,
    *,
    n_components,
    arg_k: str,
    gate,
    gate_hidden,
    expert_features,
    gate_features,
    interactions,
    prior,
    base_scale,
    interaction_scale,
    priors,
    alpha,
    shared_noise,
    order_by,
    centered,
    random_seed,
    minibatch: int | None = None,
    point: EMResult | None = None,
    y_moments: tuple[float, float] | None = None,
) -> pm.Model:
    # What a minibatch version of this model needs (see MixtureSpec.minibatch_model).
    rebuild = {k: v for k, v in locals().items() if k not in ("minibatch", "point")}
    if X is None:
        yv0 = validate_target(y, np.asarray(y).shape[0] if y is not None else 0, name="y")
        Xv, names = np.zeros((yv0.size, 0)), []
    else:
        Xv, names = validate_features(X, name="X")
    yv = validate_target(y, Xv.shape[0], name="y")
    if yv.size < 2:
        raise ValueError(f"y has {yv.size} rows; at least 2 are needed")
    K = _check_k(arg_k, n_components, yv.size)
    if gate is not None and gate not in GATES:
        raise ValueError(f"gate={gate!r} is not known; choose one of {list(GATES)}")
    if gate == "mlp":
        if (
            gate_hidden is None
            or isinstance(gate_hidden, bool)
            or not isinstance(gate_hidden, numbers.Integral)
            or gate_hidden < 1
        ):
            raise ValueError(
                f"gate='mlp' needs a positive integer gate_hidden, got {gate_hidden!r}"
            )
    elif gate_hidden not in (None, 0):
        raise ValueError(f"gate_hidden is only used with gate='mlp' (got gate={gate!r})")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha > 0:
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")
    if not np.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha!r}")
    if order_by not in ("auto", None, "intercept"):
        raise ValueError(f"order_by must be 'auto', 'intercept' or None, got {order_by!r}")
    if not isinstance(shared_noise, bool | np.bool_):
        raise TypeError(f"shared_noise must be True or False, got {shared_noise!r}")
    expert_idx = _resolve_columns("expert_features", expert_features, names)
    gate_idx = _resolve_columns("gate_features", gate_features, names) if gate else []
    if gate and not gate_idx:
        raise ValueError("gate_features is empty: a gate needs at least one feature")
    warn_constant_features(Xv, names)
    expert_names = [names[j] for j in expert_idx]
    pairs, int_names = resolve_interactions(expert_names, interactions) if expert_idx else ([], [])
    if interactions not in (None, "none") and not expert_idx:
        raise ValueError("interactions need expert features; X has none")

    if y_moments is None:
        y_moments = (float(yv.mean()), float(yv.std()))
    elif len(y_moments) != 2 or not np.all(np.isfinite(y_moments)) or not y_moments[1] >= 0:
        raise ValueError(f"y_moments must be (mean, sd) of y, finite, got {y_moments!r}")
    defaults = mixture_defaults(
        prior,
        y_location=float(y_moments[0]),
        y_scale=float(y_moments[1]),
        n_components=K,
        n_features=len(expert_idx),
        has_interactions=bool(pairs),
        shared_noise=bool(shared_noise),
        alpha=float(alpha),
        gate=gate if K > 1 else None,
        base_scale=base_scale,
        interaction_scale=interaction_scale,
        n_obs=yv.size,
        n_interactions=len(pairs),
    )
    if K == 1:
        defaults = {k: v for k, v in defaults.items() if k != "weights"}
    sizes = {
        "expert": K,
        "expert_feature": len(expert_idx),
        "interaction": len(pairs),
        "gate_expert": K - 1,
        "gate_feature": len(gate_idx),
        "gate_hidden": int(gate_hidden or 0),
    }
    # With K > 1 a flat prior on any expert parameter gives an improper posterior: as a
    # component's mean or sd runs off to infinity the likelihood tends to that of the
    # other components, a positive constant. One component is a plain regression.
    improper_ok = {"intercept", "beta", "beta_interaction", "sigma"} if K == 1 else set()
    merged = merge_priors(defaults, priors, sizes=sizes, improper_ok=improper_ok)
    fixed = {
        k: v for k, v in merged.items() if k in ("sigma", "intercept") and not isinstance(v, Prior)
    }

    spec = MixtureSpec(
        n_experts=K,
        feature_names=names,
        expert_idx=expert_idx,
        gate_idx=gate_idx,
        pairs=pairs,
        interaction_names=int_names,
        gate=gate if K > 1 else None,
        gate_hidden=int(gate_hidden or 0) if gate == "mlp" else 0,
        shared_noise=bool(shared_noise),
        ordered=False,
        priors=merged,
        y=yv,
        fixed=fixed,
        seed=random_seed,
        rebuild=rebuild,
        family=prior,
    )
    Xe = spec.expert_design(Xv)
    G = spec.gate_design(Xv) if spec.gate else None
    if K > 1:
        spec.point = point or _point_estimate(spec, Xe, G, yv, merged, alpha, random_seed)
        spec.ordered = _decide_order(order_by, spec, Xe.shape[1], "intercept" in fixed)
        if spec.ordered:
            spec.point = _sorted_point(spec.point)

    coords = {
        "obs": np.arange(yv.size),
        "feature": names,
        "expert": spec.experts,
        "expert_feature": expert_names,
    }
    if pairs:
        coords["interaction"] = int_names
    if spec.gate:
        coords["gate_expert"] = spec.experts[:-1]
        coords["gate_feature"] = [names[j] for j in gate_idx]
        spec.grid = _gate_grid(G)
        coords["grid"] = np.arange(len(spec.grid))
    if spec.gate == "mlp":
        coords["gate_hidden"] = np.arange(spec.gate_hidden)

    with pm.Model(coords=coords) as model:
        X_base = pm.Data("X_base", Xv, dims=("obs", "feature"))
        y_obs = pm.Data("y_obs", yv, dims="obs")
        Xi = None
        if pairs:
            Xi = pm.Data("X_interaction", Xe[:, len(expert_idx) :], dims=("obs", "interaction"))
        # Rows the likelihood sees: all of them, or a random minibatch per ADVI step (the
        # log-likelihood is then scaled by n / batch_size through total_size).
        X_rows, y_rows, Xi_rows, total = X_base, y_obs, Xi, None
        if minibatch:
            batch = pm.Minibatch(*[t for t in (X_base, y_obs, Xi) if t is not None],
                                 batch_size=int(minibatch))  # fmt: skip
            X_rows, y_rows = batch[0], batch[1]
            Xi_rows = batch[2] if pairs else None
            total = yv.size
        intercept = _create(
            merged["intercept"],
            "intercept",
            dims="expert",
            transform=pm.distributions.transforms.ordered if spec.ordered else None,
            initval=spec.point.intercept if spec.ordered else None,
        )
        # The row count from the data (symbolic), not a constant: a constant vector of n
        # ones tied the compiled graph to one n, so a data set of another size recompiled
        # it (3 numba graphs; none now, measured with NUMBA_DEBUG_CACHE)
        mu = pt.broadcast_to(intercept, (y_rows.shape[0], K))
        # the horseshoe's prior sds are in units of each expert's noise sd
        sigma = _create(merged["sigma"], "sigma") if prior == "horseshoe" else None
        log_c2 = None
        if prior == "horseshoe" and (expert_idx or pairs):
            log_c2 = pt.log(_create(merged["c2"], "c2"))
        if expert_idx:
            dims = ("expert", "expert_feature")
            if prior == "horseshoe":
                beta = _horseshoe_weights(merged, "beta", "base", sigma, log_c2, dims)
            else:
                beta = _weights(merged["beta"], "beta", _scales(merged, "base"), dims, centered)
            mu = mu + pt.dot(X_rows[:, expert_idx], beta.T)
        if pairs:
            dims = ("expert", "interaction")
            if prior == "horseshoe":
                v = _horseshoe_weights(
                    merged, "beta_interaction", "interaction", sigma, log_c2, dims
                )
            else:
                taus = _scales(merged, "interaction")
                v = _weights(merged["beta_interaction"], "beta_interaction", taus, dims, centered)
            mu = mu + pt.dot(Xi_rows, v.T)
        if sigma is None:
            sigma = _create(merged["sigma"], "sigma")
        obs_dims = None if minibatch else "obs"
        if K == 1:
            # a scalar sd: a length-1 "expert" vector broke ADVI's shape inference (PyMC
            # SpecifyShape(Exp, n) rewrite failure for K = 1)
            pm.Normal(
                "y",
                mu=mu[:, 0],
                sigma=pt.flatten(sigma)[0],
                observed=y_rows,
                dims=obs_dims,
                total_size=total,
            )
        else:
            if spec.gate is None:
                w = _create(merged["weights"], "weights")
            else:
                gate_vars = {k: _create(merged[k], k) for k in spec.gate_vars}
                w = pt.special.softmax(
                    _gate_graph(X_rows[:, gate_idx], gate_vars, spec.gate), axis=-1
                )
                X_grid = pm.Data("X_grid", spec.grid, dims=("grid", "gate_feature"))
                pm.Deterministic(
                    "gate_probability_grid",
                    pt.special.softmax(_gate_graph(X_grid, gate_vars, spec.gate), axis=-1),
                    dims=("grid", "expert"),
                )
            sd = sigma if shared_noise else sigma[None, :]
            pm.NormalMixture(
                "y", w=w, mu=mu, sigma=sd, observed=y_rows, dims=obs_dims, total_size=total
            )
    model.bayesmoe_spec = spec
    return model


def _gate_graph(G, gate_vars: dict, gate: str):
    inputs = G
    if gate == "mlp":
        inputs = pt.tanh(
            pt.dot(G, gate_vars["gate_hidden_weights"]) + gate_vars["gate_hidden_bias"]
        )
    free = pt.dot(inputs, gate_vars["gate_weights"]) + gate_vars["gate_intercept"]
    return pt.concatenate([free, pt.zeros((free.shape[0], 1))], axis=1)


def _scales(merged: dict, group: str):
    lam = merged.get(f"lambda_{group}")
    if lam is not None:
        lam_var = _create(lam, f"lambda_{group}")
        return pm.Deterministic(f"tau_{group}", lam_var**-0.5)
    return _create(merged[f"tau_{group}"], f"tau_{group}")


def _weights(spec, name: str, tau, dims: tuple[str, str], centered: bool):
    """Expert weights; a Normal without ``sigma`` takes the learned scale ``tau``."""
    if (
        isinstance(spec, Prior)
        and spec.distribution == "Normal"
        and "sigma" not in spec.parameters
    ):
        spec = Prior(
            "Normal",
            dims=spec.dims or dims,
            centered=centered,
            transform=spec.transform,
            sigma=tau,
            **{"mu": 0.0, **spec.parameters},  # non-centred Normals need an explicit mu
        )
    return spec.create_variable(name)


def _horseshoe_weights(merged: dict, name: str, group: str, sigma, log_c2, dims):
    r"""Non-centred expert weights :math:`w_{kj} = s_{kj} z_{kj}` under the regularised horseshoe.

    :math:`\log s_{kj} = \log u - \tfrac12 \log(1 + u^2 / c^2)`,
    :math:`u = \sigma_k \tau_g \lambda_{kj}` (on the log scale: the half-Cauchy locals span
    many orders of magnitude). A user's own ``priors[name]`` other than a zero-mean Normal
    without ``sigma`` is refused by ``merge_priors``' checks upstream or used as given.
    """
    spec = merged[name]
    if not (isinstance(spec, Prior) and spec.distribution == "Normal"
            and "sigma" not in spec.parameters):  # fmt: skip
        return spec.create_variable(name) if isinstance(spec, Prior) else pt.constant(spec)
    tau = _create(merged[f"tau_{group}"], f"tau_{group}")
    lam = _create(merged[f"lambda_local_{group}"], f"lambda_local_{group}")
    log_sigma = pt.log(sigma)
    if log_sigma.ndim == 1:  # one noise sd per expert
        log_sigma = log_sigma[:, None]
    log_u = log_sigma + pt.log(tau) + pt.log(lam)
    sd = pt.exp(log_u - 0.5 * pt.softplus(2.0 * log_u - log_c2))
    weights = Prior("Normal", mu=0.0, sigma=sd, dims=spec.dims or dims, centered=False)
    return weights.create_variable(name)


def _gate_grid(G: np.ndarray) -> np.ndarray:
    """Each gate feature swept over its quantiles, the others held at their medians.

    The all-median point is included once (not once per feature), so no gate probability
    is counted twice in diagnostics or coverage.
    """
    median = np.median(G, axis=0)
    rows = [median.copy()]
    for j in range(G.shape[1]):
        for q in np.quantile(G[:, j], [p for p in GRID_QUANTILES if p != 0.5]):
            r = median.copy()
            r[j] = q
            rows.append(r)
    return np.asarray(rows)


def _point_estimate(spec, Xe, G, yv, merged, alpha, random_seed) -> EMResult:
    """Multi-start MAP-EM on (at most EM_ROWS) rows: the start and the relabelling pivot."""
    rng = np.random.default_rng(random_seed)
    rows = np.arange(yv.size)
    if yv.size > EM_ROWS:
        rows = np.sort(rng.choice(yv.size, EM_ROWS, replace=False))
    s = float(yv.std()) or 1.0
    res = fit_mixture_em(
        Xe[rows],
        yv[rows],
        spec.n_experts,
        gate=spec.gate,
        G=None if G is None else G[rows],
        gate_hidden=spec.gate_hidden,
        shared_noise=spec.shared_noise,
        alpha=float(alpha),
        intercept_sd=2.5 * s,
        weight_sd=2.5 * s,
        gate_sd=GATE_SD,
        hidden_sd=GATE_HIDDEN_SD,
        random_state=rng,
    )
    if yv.size > EM_ROWS:  # responsibilities for every row, at the EM parameters
        res.responsibilities = _responsibilities(res, spec, Xe, G, yv)
    return res


def _responsibilities(res: EMResult, spec, Xe, G, yv) -> np.ndarray:
    from bayesmoe.numerics.em import mixing_weights

    pi = mixing_weights(res, G, yv.size)
    mu = res.intercept + Xe @ res.beta.T
    log_joint = np.log(np.maximum(pi, 1e-300)) - 0.5 * ((yv[:, None] - mu) / res.sigma) ** 2
    log_joint -= np.log(res.sigma)
    return softmax_last(log_joint)


def _decide_order(order_by, spec: MixtureSpec, width: int, intercept_fixed: bool) -> bool:
    if order_by is None or intercept_fixed or spec.gate is not None:
        if order_by == "intercept" and spec.gate is not None:
            raise ValueError(
                "order_by='intercept' is for MixtureRegression; gated experts are "
                "identified by the reference gate"
            )
        return False
    if order_by == "intercept" or width == 0:
        return True
    pt_ = spec.point
    share = pt_.responsibilities.sum(axis=0)
    se = pt_.sigma / np.sqrt(np.maximum(share, 1.0))
    order = np.argsort(pt_.intercept)
    gaps = np.diff(pt_.intercept[order])
    pooled = np.sqrt(se[order][1:] ** 2 + se[order][:-1] ** 2)
    return bool(np.all(gaps > ORDER_SEPARATION * pooled))


def _sorted_point(res: EMResult) -> EMResult:
    order = np.argsort(res.intercept)
    res.intercept = res.intercept[order]
    res.beta = res.beta[order]
    res.sigma = res.sigma[order]
    res.responsibilities = res.responsibilities[:, order]
    if res.weights is not None:
        res.weights = res.weights[order]
    return res


def mixture_regression(
    X,
    y,
    *,
    n_components: int = 2,
    alpha: float = DEFAULT_ALPHA,
    interactions=None,
    prior: str = "half_cauchy",
    base_scale: float | None = None,
    interaction_scale: float | None = None,
    priors: dict | None = None,
    shared_noise: bool = False,
    order_by: str | None = "auto",
    centered: bool = True,
    random_seed: int | None = 0,
    y_moments: tuple[float, float] | None = None,
) -> pm.Model:
    r"""Build a finite mixture of (interaction) regressions with Dirichlet weights.

    .. math::

        y_i \sim \sum_k \pi_k N(b_k + w_k^\top x_i, \sigma_k^2), \quad
        \pi \sim \mathrm{Dirichlet}(\alpha 1_K), \quad
        w_k \sim N(0, \tau_\text{base}^2 I), \quad \tau_\text{base} \sim \text{hyperprior}

    Parameters
    ----------
    X : array-like or DataFrame of shape (n, p), or None
        Features (used as given: standardise beforehand, or use the estimator). ``None``
        or zero columns gives a plain Gaussian mixture.
    y : array-like of shape (n,)
    n_components : int
        K, between 1 and n.
    alpha : float
        Dirichlet concentration; the default ``DEFAULT_ALPHA = 0.1`` (below 1) favours
        sparse weights, so that components the data do not need empty out and an
        overfitted K still converges on the identified quantities; ``alpha=1`` is the
        uniform prior on the simplex.
    interactions : "all", None or pairs
        Pairwise interactions inside every expert (as in InteractionRegression).
    prior : {"half_cauchy", "gamma", "half_normal", "fixed", "horseshoe"}
        Hyperprior of the weight scales (shared across experts), or the regularised
        horseshoe: a local scale per expert and weight under global scales and a slab
        shared by the experts, in units of each expert's noise sd, non-centred, sampled at
        target acceptance 0.99 (see :func:`bayesmoe.priors.mixture_defaults`; NUTS and
        ADVI only, not ``method="vem"``). ``"r2d2"`` is refused: a mixture has no one
        :math:`R^2`.
    base_scale, interaction_scale : float, optional
        Fixed scales with ``prior="fixed"``.
    priors : dict, optional
        Overrides: ``intercept``, ``beta``, ``beta_interaction``, ``tau_base``,
        ``tau_interaction`` (``lambda_*`` for gamma), ``sigma``, ``weights``; for the
        horseshoe also ``lambda_local_base``, ``lambda_local_interaction`` and ``c2``.
    shared_noise : bool
        One noise sd for all components instead of one each.
    order_by : {"auto", "intercept", None}
        Ordering constraint on the intercepts. ``"auto"`` orders them for a Gaussian
        mixture, and for regressions when the EM estimate separates them by at least
        ``ORDER_SEPARATION`` standard errors; otherwise labels are aligned by relabelling.
    centered : bool
        Centred weights under the learned scale (each expert usually sees many rows).
    random_seed : int, optional
        Seed of the multi-start EM that finds the starting point.
    y_moments : (float, float), optional
        Mean and sd of ``y`` for the data-based default priors (default: those of
        ``y``). A streamed fit builds on a row sample and passes the whole data's.

    Returns
    -------
    pymc.Model
        Coords ``obs``, ``feature``, ``expert``, ``expert_feature`` (``interaction``);
        data ``X_base``, ``y_obs``; metadata in ``model.bayesmoe_spec``.
    """
    return _build_mixture(
        X,
        y,
        n_components=n_components,
        arg_k="n_components",
        gate=None,
        gate_hidden=None,
        expert_features=None,
        gate_features=None,
        interactions=interactions,
        prior=prior,
        base_scale=base_scale,
        interaction_scale=interaction_scale,
        priors=priors,
        alpha=alpha,
        shared_noise=shared_noise,
        order_by=order_by,
        centered=centered,
        random_seed=random_seed,
        y_moments=y_moments,
    )


def gated_experts(
    X,
    y,
    *,
    n_experts: int = 2,
    gate: str = "linear",
    gate_hidden: int | None = None,
    expert_features=None,
    gate_features=None,
    interactions=None,
    prior: str = "half_cauchy",
    base_scale: float | None = None,
    interaction_scale: float | None = None,
    priors: dict | None = None,
    shared_noise: bool = False,
    centered: bool = True,
    random_seed: int | None = 0,
    y_moments: tuple[float, float] | None = None,
) -> pm.Model:
    r"""Build a mixture of experts whose weights depend on x through a softmax gate.

    .. math::

        y_i \sim \sum_k \pi_k(x_i) N(b_k + w_k^\top x_i, \sigma_k^2), \quad
        \pi(x) = \mathrm{softmax}(\eta(x)), \quad \eta_K(x) = 0, \\
        \eta_k(x) = c_k + V_k^\top x \ \text{(linear)}, \quad
        \eta_k(x) = c_k + V_k^\top \tanh(W^\top x + a) \ \text{(mlp)}

    Parameters
    ----------
    X : array-like or DataFrame of shape (n, p)
    y : array-like of shape (n,)
    n_experts : int
        K, between 1 and n.
    gate : {"linear", "mlp"}
    gate_hidden : int
        Hidden units H of the mlp gate (required, positive, for ``gate="mlp"``).
    expert_features, gate_features : sequence of column names or indices, optional
        Columns the experts and the gate see (default: all).
    interactions, prior, base_scale, interaction_scale, shared_noise, centered
        As in :func:`mixture_regression`.
    priors : dict, optional
        Overrides: ``intercept``, ``beta``, ``beta_interaction``, ``tau_*``/``lambda_*``,
        ``sigma``, ``gate_intercept``, ``gate_weights`` and, for mlp,
        ``gate_hidden_weights``, ``gate_hidden_bias``.
    random_seed : int, optional
        Seed of the multi-start EM that finds the starting point.
    y_moments : (float, float), optional
        Mean and sd of ``y`` for the data-based default priors (default: those of
        ``y``). A streamed fit builds on a row sample and passes the whole data's.

    Returns
    -------
    pymc.Model
        Coords ``obs``, ``feature``, ``expert``, ``expert_feature``, ``gate_expert`` (the
        non-reference experts), ``gate_feature``, ``grid`` (and ``gate_hidden``); data
        ``X_base``, ``y_obs``, ``X_grid``; metadata in ``model.bayesmoe_spec``.
    """
    if X is None:
        raise TypeError("X is None; GatedExperts needs features for its gate")
    if gate not in GATES:
        raise ValueError(f"gate={gate!r} is not known; choose one of {list(GATES)}")
    return _build_mixture(
        X,
        y,
        n_components=n_experts,
        arg_k="n_experts",
        gate=gate,
        gate_hidden=gate_hidden,
        expert_features=expert_features,
        gate_features=gate_features,
        interactions=interactions,
        prior=prior,
        base_scale=base_scale,
        interaction_scale=interaction_scale,
        priors=priors,
        alpha=1.0,
        shared_noise=shared_noise,
        order_by=None,
        centered=centered,
        random_seed=random_seed,
        y_moments=y_moments,
    )
