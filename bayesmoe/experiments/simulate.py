"""The seed notebook's data generator, with the truth returned alongside the data."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

__all__ = ["InteractionData", "make_interaction_data"]


@dataclass
class InteractionData:
    """Simulated data set: base features ``X``, target ``y`` and the generating truth."""

    X: pd.DataFrame
    y: np.ndarray
    bias: float
    w_base: np.ndarray
    w_interaction: np.ndarray
    noise_level: float
    interaction_names: list[str]

    @property
    def signal(self) -> np.ndarray:
        """Noise-free mean of ``y``."""
        return _mean(self.X.to_numpy(), self.bias, self.w_base, self.w_interaction)

    def new_rows(self, n: int, *, seed=None) -> InteractionData:
        """Fresh rows from the same generating truth (a held-out test set)."""
        rng = np.random.default_rng(seed)
        X = rng.uniform(-1, 1, size=(n, self.w_base.size))
        y = _mean(X, self.bias, self.w_base, self.w_interaction)
        y = y + self.noise_level * rng.normal(size=n)
        return InteractionData(
            X=pd.DataFrame(X, columns=self.X.columns),
            y=y,
            bias=self.bias,
            w_base=self.w_base,
            w_interaction=self.w_interaction,
            noise_level=self.noise_level,
            interaction_names=self.interaction_names,
        )


def _mean(X: np.ndarray, bias: float, w_base: np.ndarray, w_int: np.ndarray) -> np.ndarray:
    pairs = list(combinations(range(X.shape[1]), 2))
    inter = (
        np.column_stack([X[:, a] * X[:, b] for a, b in pairs]) if pairs else np.zeros((len(X), 0))
    )
    return bias + X @ w_base + inter @ w_int


def make_interaction_data(
    n: int = 1000,
    x_dim: int = 6,
    noise_level: float = 2.0,
    interaction_scale: float = 0.01,
    *,
    seed: int | np.random.Generator | None = 0,
) -> InteractionData:
    r"""Uniform features with all pairwise interactions, as in the seed notebook.

    .. math::

        x_{ij} \sim U(-1, 1), \quad b, w_j, u_{ab} \sim U(-1, 1), \quad
        v_{ab} = s\, u_{ab}, \quad
        y_i = b + x_i^\top w + \sum_{a<b} v_{ab} x_{ia} x_{ib} + \epsilon_i,\
        \epsilon_i \sim N(0, \text{noise}^2)

    with :math:`s` = ``interaction_scale``.
    """
    if n < 1 or x_dim < 1:
        raise ValueError(f"n and x_dim must be positive, got n={n}, x_dim={x_dim}")
    rng = np.random.default_rng(seed)
    names = [f"x{j}" for j in range(x_dim)]
    X = rng.uniform(-1, 1, size=(n, x_dim))
    pairs = list(combinations(range(x_dim), 2))
    bias = float(rng.uniform(-1, 1))
    w = rng.uniform(-1, 1, size=x_dim + len(pairs))
    w_base, w_int = w[:x_dim], interaction_scale * w[x_dim:]
    y = _mean(X, bias, w_base, w_int) + noise_level * rng.normal(size=n)
    return InteractionData(
        X=pd.DataFrame(X, columns=names),
        y=y,
        bias=bias,
        w_base=w_base,
        w_interaction=w_int,
        noise_level=noise_level,
        interaction_names=[f"{names[a]}:{names[b]}" for a, b in pairs],
    )
