"""Convergence diagnostics of a fit, and the check every fit passes through.

:func:`diagnose` computes R-hat, bulk ESS, divergences, BFMI and (optionally) the Pareto k
of PSIS-LOO with ArviZ; :func:`model_diagnostics` runs it on what the model identifies
(``spec.identified_vars``; for a mixture whose draws support fewer components, the mixture
density). :func:`enforce` stores the report with the fit, then warns or, with
``strict=True``, raises :class:`DiagnosticsError`.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from bayesmoe.builders.contract import spec_of
from bayesmoe.inference.loglik import SUBSAMPLE_GROUP, log_likelihood_group

__all__ = [
    "BFMI_MIN",
    "DIVERGENCES_MAX",
    "ESS_MIN_PER_CHAIN",
    "PARETO_K_MAX",
    "RHAT_MAX",
    "Diagnostics",
    "DiagnosticsError",
    "diagnose",
    "enforce",
    "identified_names",
    "model_diagnostics",
    "pareto_k_threshold",
]

#: Largest acceptable rank-normalised split R-hat (Vehtari et al. 2021).
RHAT_MAX = 1.01
#: Smallest acceptable bulk ESS per chain (so 400 for 4 chains).
ESS_MIN_PER_CHAIN = 100
#: Most divergent transitions accepted (any divergence means NUTS missed part of the
#: posterior, so the default is none).
DIVERGENCES_MAX = 0
#: Smallest acceptable energy BFMI of any chain (Betancourt 2016: below 0.3 the momentum
#: resampling explores the energy distribution poorly, e.g. in funnels).
BFMI_MIN = 0.3
#: Largest acceptable Pareto k of PSIS-LOO (Vehtari et al. 2017/2024): above 0.7 the
#: importance-sampling estimate of that row's LOO density is unreliable. With fewer than
#: about 2,200 draws the threshold is lower (:func:`pareto_k_threshold`); reports stored
#: without their threshold are read against this value.
PARETO_K_MAX = 0.7


def pareto_k_threshold(n_samples: int) -> float:
    r"""The Pareto k above which a row's PSIS-LOO estimate is unreliable, for S draws.

    :math:`\min(1 - 1/\log_{10} S,\ 0.7)` (Vehtari et al. 2024, section 3.2.4): with S
    draws, importance sampling whose tail has Pareto shape k reaches a useful accuracy only
    below :math:`1 - 1/\log_{10} S`, and never above :data:`PARETO_K_MAX`. It is ArviZ's
    ``good_k`` (:func:`arviz_stats.loo`), used by :func:`bayesmoe.compare` and
    ``est.loo()``. For S <= 1: :data:`PARETO_K_MAX`.
    """
    S = int(n_samples)
    return min(1.0 - 1.0 / float(np.log10(S)), PARETO_K_MAX) if S > 1 else PARETO_K_MAX


@dataclass
class Diagnostics:
    """Convergence summary of a fit; ``ok`` is False if any threshold fails.

    ``bfmi`` (lowest over chains) is None without NUTS energy statistics; ``max_pareto_k``,
    ``n_high_pareto_k`` and ``pareto_k_threshold`` (:func:`pareto_k_threshold` of the
    number of draws, the one :func:`bayesmoe.compare` and ``est.loo()`` use) are None
    unless PSIS-LOO was computed.
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
    pareto_k_threshold: float | None = None
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
        if self.max_pareto_k is not None and self.max_pareto_k > self.k_threshold:
            parts.append(
                f"{self.n_high_pareto_k} rows with Pareto k > {self.k_threshold:.2f} "
                f"(max {self.max_pareto_k:.2f}): PSIS-LOO unreliable"
            )
        return parts

    @property
    def k_threshold(self) -> float:
        """The Pareto-k threshold of this report (:data:`PARETO_K_MAX` if none was stored)."""
        thr = self.pareto_k_threshold
        return PARETO_K_MAX if thr is None else float(thr)

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
                    f"<= {self.k_threshold:.2f}",
                    self.max_pareto_k <= self.k_threshold,
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

    ``loo=True`` computes PSIS-LOO from the ``log_likelihood`` group (ignored without it);
    for a fit that stores a row subsample's, the Pareto k of those rows.
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
    max_k = n_high = k_thr = None
    if loo and log_likelihood_group(idata) is not None:
        if log_likelihood_group(idata) == SUBSAMPLE_GROUP:
            idata = xr.DataTree.from_dict(
                {"posterior": post, "log_likelihood": idata[SUBSAMPLE_GROUP].to_dataset()}
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # reported below, with the threshold
            k = np.asarray(az.loo(idata, pointwise=True).pareto_k).ravel()
        k_thr = pareto_k_threshold(chains * post.sizes["draw"])
        max_k, n_high = float(np.max(k)), int(np.sum(k > k_thr))
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
        pareto_k_threshold=k_thr,
    )


class DiagnosticsError(RuntimeError):
    """A ``strict=True`` fit failed a diagnostic threshold; ``.idata`` holds the fit."""

    def __init__(self, message: str, diagnostics: Diagnostics, idata: xr.DataTree):
        super().__init__(message)
        self.diagnostics = diagnostics
        self.idata = idata


def identified_names(model: pm.Model, idata: xr.DataTree) -> list[str] | None:
    """Variables whose diagnostics mean something (not a mixture's raw hidden units).

    The spec's ``identified_vars`` present in the posterior; None: every variable.
    """
    spec = spec_of(model)
    names = None if spec is None else spec.identified_vars
    if names is None:
        return None
    return [n for n in names if n in idata["posterior"].data_vars]


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
    report = diagnose(idata, var_names=identified_names(model, idata), loo=loo)
    spec = spec_of(model)
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
    scales = [n for n in identified_names(model, idata) or [] if n.startswith(("tau_", "lambda_"))]
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


def enforce(idata: xr.DataTree, model: pm.Model, method: str, strict: bool, warn: bool) -> None:
    """Run the diagnostics, store them in ``idata.attrs``, then warn or raise.

    Called by :func:`bayesmoe.fit` itself, so its warnings name fit's caller.
    """
    loo = strict and log_likelihood_group(idata) is not None
    report = model_diagnostics(idata, model, loo=loo)
    idata.attrs["bayesmoe_diagnostics"] = json.dumps(report.as_dict())
    if report.ok:
        # Emptied / coinciding components do not fail a fit (the mixture density may be
        # well estimated), but the user is told which K the data support.
        if report.components and warn:
            warnings.warn(f"Mixture components: {report.components}", UserWarning, stacklevel=3)
        return
    if strict:
        raise DiagnosticsError(report.message() + " (strict=True)", report, idata)
    if warn and method == "nuts":
        warnings.warn(report.message(), UserWarning, stacklevel=3)
