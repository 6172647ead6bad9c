"""Data where different models are best in different regions of x (for stacking)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

__all__ = ["RegionalData", "make_regional_data"]


@dataclass
class RegionalData:
    r"""Features ``x1, x2, g``, target ``y``; which feature drives y depends on ``g``.

    .. math::

        x_1, x_2, g \sim N(0, 1), \quad s(g) = \mathrm{logistic}(g / h), \quad
        y = (1 - s(g))\, x_1 + s(g)\, x_2 + \epsilon, \quad \epsilon \sim N(0, \sigma^2)

    For :math:`g \ll 0` only :math:`x_1` matters, for :math:`g \gg 0` only :math:`x_2`
    (a switch of width ``h``), so a model of :math:`(x_1, g)` is right on one side and
    a model of :math:`(x_2, g)` on the other.
    """

    X: pd.DataFrame
    y: np.ndarray
    noise: float
    switch_width: float

    def mean(self, X) -> np.ndarray:
        X = pd.DataFrame(X, columns=["x1", "x2", "g"])
        s = expit(X["g"].to_numpy() / self.switch_width)
        return (1 - s) * X["x1"].to_numpy() + s * X["x2"].to_numpy()

    def new_rows(self, n: int, *, seed=None) -> RegionalData:
        """Fresh rows from the same truth (a held-out set)."""
        return make_regional_data(n, noise=self.noise, switch_width=self.switch_width, seed=seed)

    def log_density(self, X, y) -> np.ndarray:
        """True :math:`\\log p(y_i \\mid x_i)` per row."""
        r = (np.asarray(y) - self.mean(X)) / self.noise
        return -0.5 * r**2 - np.log(self.noise) - 0.5 * np.log(2 * np.pi)


def make_regional_data(
    n: int = 400, *, noise: float = 0.2, switch_width: float = 0.1, seed=0
) -> RegionalData:
    """Simulate :class:`RegionalData` (``n`` rows, noise sd ``noise``)."""
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    if not noise > 0 or not switch_width > 0:
        raise ValueError(f"noise and switch_width must be positive, got {noise}, {switch_width}")
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["x1", "x2", "g"])
    data = RegionalData(X, np.zeros(n), float(noise), float(switch_width))
    data.y = data.mean(X) + noise * rng.normal(size=n)
    return data
