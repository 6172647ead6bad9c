r"""The softmax gate as a PyTensor graph, shared by the mixture and stacking builders.

.. math::

    \eta(x) = c + V^\top f(x), \qquad
    f(x) = x \ \text{(linear)} \quad\text{or}\quad \tanh(W^\top x + a) \ \text{(mlp)}

:func:`free_logits` gives the logits of the non-reference outputs; each builder places them
next to its reference output (fixed at 0). :func:`gate_grid` is the fixed set of gate
inputs at which the identified gate quantity (the gate's probabilities) is recorded.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt

__all__ = ["GATES", "GRID_QUANTILES", "free_logits", "gate_grid"]

GATES = ("linear", "mlp")
#: Quantiles of each gate feature at which the gate's probability grid is evaluated.
GRID_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def free_logits(X, weights, intercept, hidden_weights=None, hidden_bias=None):
    """:math:`c + V^\\top f(x)` for the rows of ``X``; an mlp gate when ``hidden_weights``."""
    inputs = X
    if hidden_weights is not None:
        inputs = pt.tanh(pt.dot(X, hidden_weights) + hidden_bias)
    return pt.dot(inputs, weights) + intercept


def gate_grid(G: np.ndarray) -> np.ndarray:
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
