r"""Regression and gate coefficients from the standardised (working) scale to the user's.

The estimators fit on :math:`\tilde x_j = (x_j - m_j)/s_j` and
:math:`\tilde y = (y - m_y)/s_y`, with interactions formed from the standardised
features. The working-scale predictor

.. math::

    \tilde y = \tilde b + \sum_j \tilde w_j \tilde x_j
        + \sum_{(a,b)} \tilde v_{ab}\, \tilde x_a \tilde x_b

is, on the user's scale, the same function written in the raw features,
:math:`y = b + \sum_j w_j x_j + \sum_{(a,b)} v_{ab} x_a x_b`, with

.. math::

    v_{ab} &= \frac{s_y \tilde v_{ab}}{s_a s_b}, \qquad
    w_j = \frac{s_y \tilde w_j}{s_j} - \sum_{(a,b) \ni j} v_{ab}\, m_{\bar j}, \\
    b &= m_y + s_y \tilde b - \sum_j \frac{s_y \tilde w_j}{s_j} m_j
        + \sum_{(a,b)} v_{ab} m_a m_b,

where :math:`\bar j` is the other member of the pair. The map is exact and applied to
every posterior draw, so posterior means, intervals and R-hat of the user-scale
coefficients are those of the same model, not an approximation. A gate's linear layer
:math:`c + V^\top \tilde x` maps the same way without the :math:`y` scale.

All functions take arrays with any leading batch shape (chain, draw, expert, ...) and the
coefficient axis last.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["linear_layer_to_user_scale", "regression_to_user_scale"]


def regression_to_user_scale(
    intercept: np.ndarray,
    base: np.ndarray,
    interaction: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    x_mean: np.ndarray,
    x_scale: np.ndarray,
    y_mean: float,
    y_scale: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intercept, base and interaction weights on the user's scale (see module docstring).

    Parameters
    ----------
    intercept : array of shape (...)
    base : array of shape (..., p)
        Working-scale weights of the p features (p may be 0).
    interaction : array of shape (..., q)
        Working-scale weights of the q products ``x[:, a] * x[:, b]`` for ``pairs``.
    pairs : sequence of (a, b) feature indices, length q
    x_mean, x_scale : arrays of shape (p,)
    y_mean, y_scale : float

    Returns
    -------
    intercept, base, interaction : arrays of the input shapes
    """
    x_mean = np.asarray(x_mean, float)
    x_scale = np.asarray(x_scale, float)
    base_u = y_scale * np.asarray(base, float) / x_scale
    inter = np.asarray(interaction, float)
    if len(pairs):
        a, b = np.asarray(pairs, int).T
        inter_u = y_scale * inter / (x_scale[a] * x_scale[b])
    else:
        a = b = np.zeros(0, int)
        inter_u = inter.copy()
    intercept_u = y_mean + y_scale * np.asarray(intercept, float) - base_u @ x_mean
    intercept_u = intercept_u + inter_u @ (x_mean[a] * x_mean[b])
    # the centring of each factor of a product moves weight onto the other factor's slope
    base_u = base_u.copy()
    for k, (i, j) in enumerate(zip(a, b, strict=True)):
        base_u[..., i] -= inter_u[..., k] * x_mean[j]
        base_u[..., j] -= inter_u[..., k] * x_mean[i]
    return intercept_u, base_u, inter_u


def linear_layer_to_user_scale(
    bias: np.ndarray, weights: np.ndarray, x_mean: np.ndarray, x_scale: np.ndarray, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    r"""A linear layer :math:`c + \sum_j V_j \tilde x_j` written in the raw features.

    Returns :math:`(c - \sum_j V_j m_j / s_j,\ V_j / s_j)`.

    Parameters
    ----------
    bias : array of shape (..., h)
    weights : array whose ``axis`` runs over the features; the other non-batch axis is h
        (e.g. (chain, draw, feature, h) with ``axis=-2``)
    x_mean, x_scale : arrays of shape (n_features,)
    axis : int
        The feature axis of ``weights``.
    """
    weights = np.moveaxis(np.asarray(weights, float), axis, -1)  # (..., h, feature)
    scaled = weights / np.asarray(x_scale, float)
    bias_u = np.asarray(bias, float) - scaled @ np.asarray(x_mean, float)
    return bias_u, np.moveaxis(scaled, -1, axis)
