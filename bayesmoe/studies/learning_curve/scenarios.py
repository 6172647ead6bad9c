"""The learning-curve study's designs: scenarios, the training-size grid, sampler settings."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["ALL_SCENARIOS", "SCENARIOS", "Scenario", "StudySettings", "training_sizes"]


@dataclass(frozen=True)
class Scenario:
    """One configuration of :func:`~bayesmoe.experiments.make_interaction_data` (``n``
    rows: the first half is the training pool, the second half the test set)."""

    name: str
    x_dim: int
    noise_level: float
    interaction_scale: float
    n: int = 10_000
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Scenario name must be a non-empty string, got {self.name!r}")
        for arg in ("x_dim", "n"):
            value = getattr(self, arg)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"Scenario {arg} must be a positive integer, got {value!r}")
        if self.n < 4:
            raise ValueError(f"Scenario n must be >= 4 (half is the test set), got {self.n}")
        if not (np.isfinite(self.noise_level) and self.noise_level > 0):
            raise ValueError(f"Scenario noise_level must be positive, got {self.noise_level!r}")
        if not (np.isfinite(self.interaction_scale) and self.interaction_scale >= 0):
            raise ValueError(
                f"Scenario interaction_scale must be >= 0, got {self.interaction_scale!r}"
            )

    @property
    def n_train(self) -> int:
        return self.n // 2


#: The named scenarios of the interaction learning-curve design (all with n = 10 000, so
#: 5 000 training rows at most).
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("no_interaction", 6, 2.0, 0.0, description="no interactions at all"),
        Scenario("weak_interaction", 6, 2.0, 0.01, description="the generator's default"),
        Scenario("strong_interaction", 6, 2.0, 1.0, description="interactions as big as base"),
        Scenario("very_strong_interaction", 6, 2.0, 3.0, description="interactions dominate"),
        Scenario("many_features", 10, 0.5, 0.05, description="45 interactions, low noise"),
        Scenario("few_features_low_noise", 2, 0.1, 1.0, description="regularisation should hurt"),
        # Two further configurations; run them by name (not part of "all").
        Scenario("low_noise", 6, 0.5, 0.05, description="low noise, small interactions"),
        Scenario("few_features_high_noise", 2, 2.0, 0.05, description="heavy regularisation"),
    )
}
#: The six scenarios of ``--scenario all`` (interaction scale 0 .. 3, noise 0.1 .. 2,
#: 2, 6 or 10 features).
ALL_SCENARIOS: tuple[str, ...] = (
    "no_interaction",
    "weak_interaction",
    "strong_interaction",
    "very_strong_interaction",
    "many_features",
    "few_features_low_noise",
)


def training_sizes(n_train: int, n_points: int = 20) -> np.ndarray:
    """The study's grid: ``n_points`` log-spaced sizes from 10 to the next power of ten,
    clipped to ``n_train`` and deduplicated (18 sizes for ``n_train = 5000``)."""
    if n_train < 2:
        raise ValueError(f"n_train must be >= 2, got {n_train}")
    top = np.ceil(np.log10(n_train))
    grid = np.logspace(1, max(top, 1.0), n_points).astype(int)
    return np.unique(np.clip(grid, 2, n_train))


@dataclass(frozen=True)
class StudySettings:
    """Sampler settings of the NUTS models and the study's master seed."""

    draws: int = 500
    tune: int = 500
    chains: int = 2
    n_points: int = 20
    seed: int = 0
    max_n_train: int | None = None  # cap the grid (tests, quick looks)

    def __post_init__(self):
        for arg, low in (("draws", 1), ("tune", 0), ("chains", 1), ("n_points", 2), ("seed", 0)):
            value = getattr(self, arg)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{arg} must be an integer >= {low}, got {value!r}")
        if self.max_n_train is not None and self.max_n_train < 10:
            raise ValueError(f"max_n_train must be >= 10, got {self.max_n_train}")

    def sizes(self, scenario: Scenario) -> np.ndarray:
        grid = training_sizes(scenario.n_train, self.n_points)
        if self.max_n_train is not None:
            grid = grid[grid <= self.max_n_train]
        return grid
