"""Constants of the mixture builders (dims, gates, row budgets, the ordering threshold)."""

from __future__ import annotations

from bayesmoe.builders.terms.gate import GATES, GRID_QUANTILES

__all__ = [
    "DEFAULT_ALPHA",
    "DENSITY_POINTS",
    "EM_ROWS",
    "GATES",
    "GRID_QUANTILES",
    "ORDER_SEPARATION",
    "RELABEL_ROWS",
    "SAMPLE_DIMS",
]

SAMPLE_DIMS = ("chain", "draw")
#: Default Dirichlet concentration of a mixture's weights: sparse, so that components the
#: data do not need empty out (Rousseau & Mengersen 2011; Malsiner-Walli et al. 2016).
#: Overfitted K then converge on the identified quantities, at the price of divergences in
#: the superfluous components, which the diagnostics report.
DEFAULT_ALPHA = 0.1
#: Training rows at which the mixture density stands in for the components' R-hat and ESS
#: when they are not identified (too many components for the data).
DENSITY_POINTS = 20
#: Rows used to relabel draws and to find the EM starting point (subsampled above this).
RELABEL_ROWS = 1000
EM_ROWS = 5000
#: Intercepts are ordered by default when EM separates them by this many standard errors.
ORDER_SEPARATION = 5.0
