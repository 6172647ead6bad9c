r"""Simulation-based calibration (SBC, Talts et al. 2018) of bayesmoe's fitting path.

For each simulation: draw parameters from the prior, simulate data from them, fit the
model with :func:`bayesmoe.fit` (the same path users get: nutpie with its compilation
cache, the EM start and relabelling of the mixtures), and record the rank of the true
value of each quantity among thinned posterior draws:

.. math::

    \tilde\theta \sim p(\theta), \quad \tilde y \sim p(y \mid \tilde\theta), \quad
    \theta_1, \dots, \theta_L \sim p(\theta \mid \tilde y), \quad
    r = \#\{l : f(\theta_l) < f(\tilde\theta)\}.

If the posterior is computed correctly, :math:`r` is uniform on :math:`\{0, \dots, L\}`
for every function :math:`f` (Talts et al. 2018, theorem 1); the check is ArviZ's
simultaneous ECDF band of the randomised PIT :math:`(r + U)/(L + 1)`
(:func:`arviz_stats.ecdf_utils.ecdf_pit`, Säilynoja et al. 2022) at ``SBC_BAND_PROB``,
and the plot is :func:`arviz_plots.plot_ecdf_pit`.

Why not ``simuk.SBC``: it refits with :func:`pymc.sample` on a ``pm.observe``-d copy of
the model, which compiles anew each simulation and bypasses what should be calibrated
here (the collapsed form and its exact weight draws, the shared EM start, relabelling).
The rank and band logic it would have provided is a few lines; the band itself is
ArviZ's.

Mixtures are calibrated on label-invariant quantities (functions of the parameters that
do not change when components are permuted): parameters of the component at each rank
of the intercept, gate probabilities of the lowest-intercept component at fixed x, and
the mixture density at fixed points.

Priors are given explicitly as the package defaults for a standardised target
(``y_location=0, y_scale=1``): the defaults otherwise depend on the spread of the data,
and a prior that depends on the simulated data would not be the prior the data were
drawn from.

References
----------
* Talts, Betancourt, Simpson, Vehtari & Gelman (2018), "Validating Bayesian inference
  algorithms with simulation-based calibration", arXiv:1804.06788.
* Säilynoja, Bürkner & Vehtari (2022), "Graphical test for discrete uniformity and its
  applications in goodness-of-fit evaluation and multiple sample comparison",
  *Statistics and Computing* 32, 32.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pymc as pm
import xarray as xr

from bayesmoe.numerics.lse import logsumexp_last, softmax_last

__all__ = [
    "SBC_BAND_PROB",
    "SBCCase",
    "SBCResult",
    "run_sbc",
    "sbc_cases",
]

#: Probability of the simultaneous ECDF band a calibrated quantity's ranks stay inside.
SBC_BAND_PROB = 0.99
#: Monte Carlo trials ArviZ uses to find the simultaneous band's pointwise level.
SBC_BAND_TRIALS = 2000

#: Fixed points where the mixture density is compared: (x, y) on the working scale.
_DENSITY_POINTS = np.array([[-1.0, -1.5], [0.0, 0.0], [1.0, 1.5]])
#: Fixed x where the gate probability of the lowest-intercept expert is compared.
_GATE_POINTS = np.array([-1.0, 0.0, 1.0])


@dataclass
class SBCCase:
    """One model to calibrate.

    ``build(X, y, fit_form)`` returns the model (``fit_form=False``: the generative form
    used to draw the prior, e.g. the per-row interaction model; ``True``: the form that is
    fitted). ``quantities(ds)`` maps a Dataset of draws (any sample dims first, flattened
    to one ``sample`` dim beforehand) to ``{name: array (sample,)}``.
    """

    name: str
    n_obs: int
    n_features: int
    build: Callable[[np.ndarray, np.ndarray, bool], pm.Model]
    quantities: Callable[[xr.Dataset], dict[str, np.ndarray]]
    fit_kwargs: dict = field(default_factory=dict)


@dataclass
class SBCResult:
    """Ranks, PIT values and the band check of one case."""

    case: str
    ranks: dict[str, np.ndarray]
    n_posterior: int
    pit: dict[str, np.ndarray]
    outside: dict[str, int]  # evaluation points where the ECDF leaves the band
    seconds: float
    max_rhat: np.ndarray
    divergences: np.ndarray
    failed: int = 0

    @property
    def ok(self) -> bool:
        return not any(self.outside.values())

    def table(self) -> list[dict]:
        """One row per quantity: ranks' mean/sd (uniform: L/2, ~L/sqrt(12)) and the band."""
        L = self.n_posterior
        return [
            {
                "case": self.case,
                "quantity": name,
                "sims": len(r),
                "rank_mean": float(np.mean(r)),
                "rank_mean_expected": L / 2,
                "rank_sd": float(np.std(r)),
                "rank_sd_expected": float(np.sqrt(((L + 1) ** 2 - 1) / 12)),
                "points_outside_band": self.outside[name],
                "inside_band": self.outside[name] == 0,
            }
            for name, r in self.ranks.items()
        ]

    def to_datatree(self) -> xr.DataTree:
        """PIT values in a ``prior_sbc`` group, as :func:`arviz_plots.plot_ecdf_pit` reads."""
        ds = xr.Dataset(
            {k: (("chain", "draw"), v[None, :]) for k, v in self.pit.items()},
            coords={"chain": [0], "draw": np.arange(len(next(iter(self.pit.values()))))},
        )
        return xr.DataTree.from_dict({"prior_sbc": ds})


# ---------------------------------------------------------------------------- quantities
def _flat(ds: xr.Dataset, name: str) -> np.ndarray:
    da = ds[name]
    return da.transpose("sample", ...).values


def _interaction_quantities(ds: xr.Dataset) -> dict[str, np.ndarray]:
    out = {}
    names = ("intercept", "beta_base", "beta_interaction", "tau_base", "tau_interaction")
    # the local-global priors' global quantities: R^2 (R2-D2) and the slab (horseshoe)
    for name in (*names, "r2", "c2"):
        if name not in ds:
            continue
        v = _flat(ds, name)
        if v.ndim == 1:
            out[name] = v
        else:
            for j in range(v.shape[1]):
                out[f"{name}[{j}]"] = v[:, j]
    out["sigma"] = _flat(ds, "sigma")
    return out


def _gate_probabilities(ds: xr.Dataset, x: np.ndarray) -> np.ndarray:
    """π_k(x) of a linear gate with one feature, shape (sample, len(x), K)."""
    c = _flat(ds, "gate_intercept")  # (S, K-1)
    V = _flat(ds, "gate_weights")[:, 0, :]  # (S, K-1)
    logits = c[:, None, :] + x[None, :, None] * V[:, None, :]
    logits = np.concatenate([logits, np.zeros((*logits.shape[:2], 1))], axis=-1)
    return softmax_last(logits)


def _mixture_quantities(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """Label-invariant summaries of a K-component mixture of 1-feature regressions."""
    b = _flat(ds, "intercept")  # (S, K)
    w = _flat(ds, "beta")[:, :, 0]  # (S, K)
    sigma = _flat(ds, "sigma")
    sigma = np.broadcast_to(sigma[:, None] if sigma.ndim == 1 else sigma, b.shape)
    order = np.argsort(b, axis=1)
    ranked = {
        "intercept": np.take_along_axis(b, order, 1),
        "beta": np.take_along_axis(w, order, 1),
        "sigma": np.take_along_axis(sigma, order, 1),
    }
    gated = "gate_intercept" in ds
    x, y = _DENSITY_POINTS[:, 0], _DENSITY_POINTS[:, 1]
    if gated:
        pi_dens = _gate_probabilities(ds, x)  # (S, P, K)
        pi_gate = _gate_probabilities(ds, _GATE_POINTS)
    else:
        pi = _flat(ds, "weights")
        ranked["weight"] = np.take_along_axis(pi, order, 1)
        pi_dens = np.broadcast_to(pi[:, None, :], (b.shape[0], len(x), b.shape[1]))
    out = {}
    for name, v in ranked.items():
        for r in range(v.shape[1]):
            out[f"{name}[rank {r}]"] = v[:, r]
    if gated:
        lowest = order[:, 0]
        for j, xj in enumerate(_GATE_POINTS):
            out[f"gate_prob_lowest[x={xj:g}]"] = pi_gate[np.arange(len(lowest)), j, lowest]
    if "tau_base" in ds:
        out["tau_base"] = _flat(ds, "tau_base")
    mu = b[:, None, :] + x[None, :, None] * w[:, None, :]
    z = (y[None, :, None] - mu) / sigma[:, None, :]
    logdens = logsumexp_last(
        np.log(pi_dens) - 0.5 * z**2 - np.log(sigma[:, None, :]) - 0.5 * np.log(2 * np.pi)
    )
    for j, (xj, yj) in enumerate(_DENSITY_POINTS):
        out[f"log_density[x={xj:g},y={yj:g}]"] = logdens[:, j]
    return out


# ---------------------------------------------------------------------------- cases
def _interaction_case(family: str, n_obs: int, n_features: int) -> SBCCase:
    from bayesmoe.builders.interaction import interaction_regression
    from bayesmoe.priors import interaction_defaults

    scales = {"base_scale": 1.0, "interaction_scale": 0.5} if family == "fixed" else {}
    q = n_features * (n_features - 1) // 2
    # the horseshoe's global scale depends on n, R2-D2's Dirichlets on the group sizes:
    # both are fixed by the case, so the prior is the same for every simulation
    sizes = dict(n_obs=n_obs, n_features=n_features, n_interactions=q)
    priors = interaction_defaults(family, y_location=0.0, y_scale=1.0, **scales, **sizes)

    def build(X, y, fit_form):
        # fitted in the collapsed form (the default); the prior is drawn from the per-row one
        return interaction_regression(
            X, y, prior=family, priors=priors, collapsed=fit_form, **scales
        )

    # The gamma family samples precisions; tau = lambda^(-1/2) is monotone in them, so
    # ranks of tau are the ranks of the precisions.
    return SBCCase(f"interaction_{family}", n_obs, n_features, build, _interaction_quantities)


def _mixture_case(kind: str, n_obs: int, n_experts: int = 2) -> SBCCase:
    from bayesmoe.builders.mixture import gated_experts, mixture_regression
    from bayesmoe.priors import mixture_defaults

    gate = "linear" if kind == "gated" else None
    priors = mixture_defaults(
        "half_cauchy",
        y_location=0.0,
        y_scale=1.0,
        n_components=n_experts,
        n_features=1,
        has_interactions=False,
        shared_noise=False,
        alpha=1.0,
        gate=gate,
    )

    def build(X, y, fit_form):
        # Ordering the intercepts would give a prior that forward sampling does not draw
        # from (the ordered transform only acts on the sampled space), so the mixture is
        # calibrated with exchangeable components and label-invariant quantities.
        kw = dict(interactions=None, priors=priors, random_seed=0)
        if gate:
            return gated_experts(X, y, n_experts=n_experts, gate=gate, **kw)
        return mixture_regression(X, y, n_components=n_experts, order_by=None, **kw)

    return SBCCase("gated_linear" if gate else "mixture", n_obs, 1, build, _mixture_quantities)


def sbc_cases(n_obs: int = 40, n_obs_mixture: int = 80) -> dict[str, SBCCase]:
    """The calibrated models: the interaction regression for every prior family
    (2 features, 1 interaction; the local-global ones with 3 features and 3 interactions,
    so that the Dirichlet splits of R2-D2 have two or more weights), a 2-component mixture
    of regressions and 2 gated experts with a linear gate (1 feature)."""
    cases = {}
    for family in ("half_cauchy", "gamma", "half_normal", "fixed", "horseshoe", "r2d2"):
        case = _interaction_case(family, n_obs, 3 if family in ("horseshoe", "r2d2") else 2)
        cases[case.name] = case
    for kind in ("mixture", "gated"):
        case = _mixture_case(kind, n_obs_mixture)
        cases[case.name] = case
    return cases


# ---------------------------------------------------------------------------- running
def _stack(ds: xr.Dataset) -> xr.Dataset:
    dims = [d for d in ("chain", "draw") if d in ds.dims]
    return ds.stack(sample=dims)


def ecdf_band(pit: np.ndarray, prob: float = SBC_BAND_PROB, seed: int = 0):
    """ECDF of ``pit`` and ArviZ's simultaneous ``prob`` band: (x, ecdf, lower, upper)."""
    from arviz_stats.ecdf_utils import ecdf_pit

    return ecdf_pit(pit, prob, SBC_BAND_TRIALS, rng=np.random.default_rng(seed))


def band_outside(pit: np.ndarray, prob: float = SBC_BAND_PROB, seed: int = 0) -> int:
    """Evaluation points where the ECDF of ``pit`` leaves the simultaneous band."""
    _, ecdf, lower, upper = ecdf_band(pit, prob, seed)
    return int(np.sum((ecdf < lower - 1e-12) | (ecdf > upper + 1e-12)))


def run_sbc(
    case: SBCCase,
    n_sims: int,
    *,
    draws: int = 250,
    tune: int = 300,
    chains: int = 2,
    thin: int = 5,
    sampler: str = "nutpie",
    seed: int = 0,
    progressbar: bool = True,
) -> SBCResult:
    """Run ``n_sims`` simulations of ``case`` and check its ranks against the band.

    Each fit keeps ``chains * draws / thin`` posterior draws (thinning to about the
    effective sample size: autocorrelated draws make the ranks non-uniform even for a
    correct sampler). A fit that raises counts as failed and is reported.
    """
    from tqdm.auto import tqdm

    from bayesmoe.inference import diagnose, fit

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((case.n_obs, case.n_features))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generative = case.build(X, rng.standard_normal(case.n_obs), False)
        with generative:
            prior = pm.sample_prior_predictive(draws=n_sims, random_seed=seed)
    truth = _stack(prior["prior"].to_dataset())
    ys = prior["prior_predictive"]["y"].values.reshape(n_sims, case.n_obs)
    ranks: dict[str, list] = {}
    rhat, divs = [], []
    failed = 0
    start = time.perf_counter()
    for s in tqdm(range(n_sims), desc=case.name, disable=not progressbar):
        true_q = case.quantities(truth.isel(sample=[s]))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = case.build(X, ys[s], True)
                idata = fit(
                    model,
                    sampler=sampler,
                    draws=draws,
                    tune=tune,
                    chains=chains,
                    random_seed=seed * 100_003 + s,
                    progressbar=False,
                    log_likelihood=False,
                    warn_diagnostics=False,
                    **case.fit_kwargs,
                )
        except Exception as err:  # reported, not hidden: the count is in the result
            warnings.warn(f"{case.name} simulation {s} failed: {err}", RuntimeWarning, 2)
            failed += 1
            continue
        post = idata["posterior"].to_dataset().isel(draw=slice(thin - 1, None, thin))
        report = diagnose(idata)
        rhat.append(report.max_rhat)
        divs.append(report.divergences)
        q = case.quantities(_stack(post))
        for name, values in q.items():
            ranks.setdefault(name, []).append(int(np.sum(values < true_q[name][0])))
    L = chains * len(range(thin - 1, draws, thin))
    u = np.random.default_rng(seed + 1)
    rank_arrays = {k: np.asarray(v) for k, v in ranks.items()}
    # randomised PIT: (rank + U) / (L + 1) is exactly uniform on (0, 1) under calibration
    pit = {k: (v + u.uniform(size=v.size)) / (L + 1) for k, v in rank_arrays.items()}
    outside = {k: band_outside(v, seed=seed) for k, v in pit.items()}
    return SBCResult(
        case=case.name,
        ranks=rank_arrays,
        n_posterior=L,
        pit=pit,
        outside=outside,
        seconds=time.perf_counter() - start,
        max_rhat=np.asarray(rhat),
        divergences=np.asarray(divs),
        failed=failed,
    )
