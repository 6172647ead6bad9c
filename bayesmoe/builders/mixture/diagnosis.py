"""The component diagnosis of a mixture's draws: emptied and coinciding components."""

from __future__ import annotations

import hashlib

import numpy as np
import xarray as xr

from bayesmoe.builders.mixture.constants import RELABEL_ROWS

__all__ = ["component_diagnosis", "diagnosis_key", "fingerprint", "params_per_component"]


def fingerprint(*parts) -> str:
    """A digest of arrays (values, dtypes and shapes) and scalars, for memoising."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        a = np.ascontiguousarray(part if part is not None else np.nan)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def params_per_component(spec) -> int:
    """Free parameters one more expert adds: its coefficients, sd and weight (or gate)."""
    n = 1 + len(spec.expert_idx) + len(spec.pairs)  # intercept, slopes, interactions
    n += 0 if spec.shared_noise else 1
    if spec.gate is None:
        return n + 1  # its Dirichlet weight
    if spec.gate == "mlp":
        return n + spec.gate_hidden + 1  # its output weights on the hidden units
    return n + len(spec.gate_idx) + 1  # its gate intercept and weights


def diagnosis_key(posterior: xr.Dataset, X_base: np.ndarray, y: np.ndarray, n_rows) -> str:
    """The memo key of a component diagnosis: a digest of all its inputs."""
    return fingerprint(
        *(posterior[name].values for name in sorted(posterior.data_vars)), X_base, y, n_rows
    )


def component_diagnosis(
    spec, posterior: xr.Dataset, X_base: np.ndarray, y: np.ndarray, n_rows: int | None = None
):
    """Emptied and coinciding components of the draws.

    :func:`bayesmoe.numerics.components.diagnose_components` on the working-scale
    weights :math:`\\pi_k(x_i)`, means and sds of every draw at the training rows
    ``(X_base, y)``, with the penalty of a component its :func:`params_per_component`.
    ``n_rows``: the rows the fit stands for when the model was built on a sample of them
    (a streamed fit).
    """
    from bayesmoe.numerics.components import diagnose_components

    flat = posterior.sizes["chain"] * posterior.sizes["draw"]
    n_all = X_base.shape[0]
    if n_all > RELABEL_ROWS:  # (draws x rows x K) arrays: bounded, as relabel
        rows = np.sort(np.random.default_rng(0).choice(n_all, RELABEL_ROWS, replace=False))
        X_base, y = X_base[rows], y[rows]
    n, K = X_base.shape[0], spec.n_experts
    w = np.exp(spec.log_weights(posterior, X_base).values).reshape(flat, n, K)
    mu = spec.component_means(posterior, X_base).values.reshape(flat, n, K)
    sd = spec.component_sd(posterior).values.reshape(flat, K)
    scale = max(n_rows or n_all, n_all) / n
    return diagnose_components(w, mu, sd, y, penalty=params_per_component(spec), scale=scale)
