"""Argument checks of the mixture builders: rows, K, gate, columns, interactions."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from bayesmoe.builders.mixture.constants import GATES
from bayesmoe.data import (
    resolve_interactions,
    validate_features,
    validate_target,
    warn_constant_features,
)

__all__ = ["Checked", "check_arguments", "check_k", "resolve_columns"]


@dataclass(frozen=True)
class Checked:
    """The validated data and structure of a mixture model."""

    X: np.ndarray
    y: np.ndarray
    names: list
    K: int
    expert_idx: list
    gate_idx: list
    pairs: list
    interaction_names: list


def check_k(name: str, value, n_rows: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    if value > n_rows:
        raise ValueError(f"{name}={value} is more than the number of rows ({n_rows})")
    return int(value)


def resolve_columns(arg: str, chosen, names: list[str]) -> list[int]:
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


def _check_options(gate, gate_hidden, alpha, order_by, shared_noise) -> None:
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


def check_arguments(
    X, y, *, n_components, arg_k, gate, gate_hidden, expert_features, gate_features,
    interactions, alpha, order_by, shared_noise,
) -> Checked:  # fmt: skip
    """Validate a builder's arguments (in the order the errors are raised) and resolve columns."""
    if X is None:
        yv0 = validate_target(y, np.asarray(y).shape[0] if y is not None else 0, name="y")
        Xv, names = np.zeros((yv0.size, 0)), []
    else:
        Xv, names = validate_features(X, name="X")
    yv = validate_target(y, Xv.shape[0], name="y")
    if yv.size < 2:
        raise ValueError(f"y has {yv.size} rows; at least 2 are needed")
    K = check_k(arg_k, n_components, yv.size)
    _check_options(gate, gate_hidden, alpha, order_by, shared_noise)
    expert_idx = resolve_columns("expert_features", expert_features, names)
    gate_idx = resolve_columns("gate_features", gate_features, names) if gate else []
    if gate and not gate_idx:
        raise ValueError("gate_features is empty: a gate needs at least one feature")
    warn_constant_features(Xv, names)
    expert_names = [names[j] for j in expert_idx]
    pairs, int_names = resolve_interactions(expert_names, interactions) if expert_idx else ([], [])
    if interactions not in (None, "none") and not expert_idx:
        raise ValueError("interactions need expert features; X has none")
    return Checked(Xv, yv, names, K, expert_idx, gate_idx, pairs, int_names)
