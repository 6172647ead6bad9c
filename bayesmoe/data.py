"""Validation and conversion of user data.

Every check on ``X`` and ``y`` lives here, so that each entry point refuses bad
input with one clear message *before* any PyTensor graph is built or compiled.
Arrays leave this module as contiguous float64 with feature names attached.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

__all__ = [
    "Standardizer",
    "interaction_design",
    "resolve_interactions",
    "validate_counts",
    "validate_features",
    "validate_positive",
    "validate_predict_features",
    "validate_target",
]


def _is_numeric_dtype(dtype) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)


def validate_features(X, *, name: str = "X", min_rows: int = 2) -> tuple[np.ndarray, list[str]]:
    """Check a feature matrix and return it as float64 with its column names.

    Parameters
    ----------
    X : array-like or pandas.DataFrame of shape (n_rows, n_features)
        Numeric features. A DataFrame's column names become the ``feature`` coordinate;
        arrays get ``x0, x1, ...``.
    name : str
        Argument name used in error messages.
    min_rows : int
        Fewest rows accepted.

    Returns
    -------
    values : numpy.ndarray of shape (n_rows, n_features)
    names : list of str

    Raises
    ------
    TypeError
        Non-numeric (object, string, categorical, datetime, complex) columns.
    ValueError
        Wrong dimensionality, too few rows, NaN or infinite values, duplicate column names.
    """
    if X is None:
        raise TypeError(f"{name} is None; pass a 2-D array or a pandas DataFrame")
    if isinstance(X, pd.Series):
        X = X.to_frame()
    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns]
        duplicated = sorted({c for c in names if names.count(c) > 1})
        if duplicated:
            raise ValueError(f"{name} has duplicate column names: {duplicated}")
        bad = [
            str(c) for c, dt in zip(X.columns, X.dtypes, strict=True) if not _is_numeric_dtype(dt)
        ]
        if bad:
            kinds = sorted({str(X[c].dtype) for c in X.columns if str(c) in bad})
            raise TypeError(
                f"{name} has non-numeric columns {bad} (dtypes {kinds}); "
                "encode them as numbers before fitting"
            )
        values = X.to_numpy(dtype=np.float64)
    else:
        arr = np.asarray(X)
        if (
            arr.dtype == object
            or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool)
            or np.iscomplexobj(arr)
        ):
            raise TypeError(f"{name} must be numeric, got an array of dtype {arr.dtype}")
        if arr.ndim != 2:
            raise ValueError(
                f"{name} must be 2-D (n_rows, n_features), got shape {arr.shape}; "
                "use X.reshape(-1, 1) for a single feature"
            )
        values = arr.astype(np.float64)
        names = [f"x{j}" for j in range(values.shape[1])]
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {values.shape}")
    if values.shape[0] < min_rows:
        raise ValueError(f"{name} has {values.shape[0]} rows; at least {min_rows} are needed")
    finite = np.isfinite(values)
    if not finite.all():
        rows, cols = np.nonzero(~finite)
        where = [(int(r), names[c]) for r, c in zip(rows[:5], cols[:5], strict=True)]
        raise ValueError(
            f"{name} contains {int((~finite).sum())} NaN or infinite values, "
            f"first at (row, column) {where}"
        )
    _check_magnitude(values, name, names)
    return np.ascontiguousarray(values), names


#: Magnitudes whose squares overflow (above) or underflow (below) float64 closely enough
#: to make X'X, standardisation and the likelihood meaningless.
_HUGE = 1e150
_TINY = 1e-150


def _check_magnitude(values: np.ndarray, name: str, names: Sequence[str] | None = None) -> None:
    # Squares of values beyond ~1e150 overflow float64 in X'X and in the likelihood;
    # refuse them here instead of returning a posterior full of inf.
    if values.size and np.max(np.abs(values)) > _HUGE:
        raise ValueError(
            f"{name} has values of magnitude {np.max(np.abs(values)):.3g}, too large to "
            "square in float64; rescale it"
        )
    # A column (or target) whose every value is below ~1e-150 has a variance that
    # underflows to 0: it would be standardised as a constant and silently ignored.
    if not values.size:
        return
    largest = np.max(np.abs(values.reshape(values.shape[0], -1)), axis=0)
    tiny = (largest > 0) & (largest < _TINY)
    if tiny.any():
        where = f" columns {[names[j] for j in np.nonzero(tiny)[0]]}" if names is not None else ""
        raise ValueError(
            f"{name}{where} has values too small to square in float64 (largest magnitude "
            f"{largest[tiny].max():.3g} < {_TINY:g}); rescale it"
        )


def validate_target(y, n_rows: int, *, name: str = "y") -> np.ndarray:
    """Check a 1-D numeric target of length ``n_rows`` and return it as float64."""
    if y is None:
        raise TypeError(f"{name} is None; pass a 1-D array or a pandas Series")
    if isinstance(y, pd.DataFrame):
        raise ValueError(
            f"{name} must be 1-D, got a DataFrame with {y.shape[1]} columns; pass a Series"
        )
    arr = np.asarray(y)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n_rows:
        raise ValueError(f"X and {name} have different lengths: {n_rows} rows vs {arr.shape[0]}")
    values = arr.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN or infinite values, first at rows "
            f"{np.nonzero(bad)[0][:5].tolist()}"
        )
    _check_magnitude(values, name)
    return np.ascontiguousarray(values)


def validate_counts(
    values: np.ndarray, *, name: str = "y", upper: np.ndarray | None = None, binary: bool = False
) -> np.ndarray:
    """Check that a validated target holds whole numbers for a discrete likelihood.

    ``binary=True`` asks for 0/1 (a Bernoulli outcome), ``upper`` for counts
    :math:`0 \\le y_i \\le` ``upper[i]`` (a binomial outcome and its trials); otherwise any
    count :math:`y_i \\in \\{0, 1, 2, \\dots\\}`. Returns ``values`` (float64).
    """
    what = "0 or 1" if binary else "a whole number >= 0"
    bad = (values < 0) | (values != np.round(values))
    if binary:
        bad |= values > 1
    if bad.any():
        rows = np.nonzero(bad)[0][:5].tolist()
        raise ValueError(
            f"{name} must be {what} for this family; {int(bad.sum())} values are not, "
            f"first at rows {rows} (e.g. {values[rows[0]]!r})"
        )
    if upper is not None:
        over = values > upper
        if over.any():
            rows = np.nonzero(over)[0][:5].tolist()
            raise ValueError(
                f"{name} exceeds trials at {int(over.sum())} rows, first at rows {rows}"
            )
    return values


def validate_positive(values, n_rows: int, *, name: str, whole: bool = False) -> np.ndarray:
    """A 1-D positive per-row array (``exposure``; ``trials`` with ``whole=True``), float64."""
    arr = validate_target(values, n_rows, name=name)
    bad = (arr <= 0) | ((arr != np.round(arr)) if whole else False)
    if np.any(bad):
        rows = np.nonzero(bad)[0][:5].tolist()
        what = "a whole number >= 1" if whole else "positive"
        raise ValueError(f"{name} must be {what}; {int(np.sum(bad))} values are not, rows {rows}")
    return arr


def validate_predict_features(X, feature_names: Sequence[str], *, name: str = "X") -> np.ndarray:
    """Check features passed at predict time against those seen at fit time.

    A DataFrame must have the same columns in the same order; an array the same count.
    """
    values, names = validate_features(X, name=name, min_rows=1)
    expected = list(feature_names)
    if values.shape[1] != len(expected):
        raise ValueError(
            f"{name} has {values.shape[1]} columns but the model was fitted on "
            f"{len(expected)}: {expected}"
        )
    if isinstance(X, pd.DataFrame) and names != expected:
        if sorted(names) == sorted(expected):
            raise ValueError(
                f"{name} has the fitted columns in a different order: got {names}, "
                f"expected {expected}"
            )
        raise ValueError(f"{name} columns {names} do not match the fitted columns {expected}")
    return values


def warn_constant_features(values: np.ndarray, names: Sequence[str], *, name: str = "X") -> None:
    """Warn about features with no variation: their weights are identified only by the prior."""
    if values.shape[0] < 2:
        return
    const = [names[j] for j in np.nonzero(np.ptp(values, axis=0) == 0)[0]]
    if const:
        warnings.warn(
            f"{name} has constant columns {const}: their weights are confounded with the "
            "intercept and informed only by the prior",
            UserWarning,
            stacklevel=3,
        )


def resolve_interactions(
    feature_names: Sequence[str], interactions
) -> tuple[list[tuple[int, int]], list[str]]:
    """Turn the ``interactions`` option into index pairs and ``a:b`` names.

    ``"all"`` gives every unordered pair; ``None`` or an empty sequence gives none
    (the base-effects model); otherwise a sequence of ``(a, b)`` pairs or ``"a:b"``
    strings naming features.
    """
    names = list(feature_names)
    if isinstance(interactions, str):
        if interactions == "all":
            pairs = list(combinations(range(len(names)), 2))
            return pairs, [f"{names[a]}:{names[b]}" for a, b in pairs]
        if interactions == "none":
            return [], []
        interactions = [interactions]
    if interactions is None:
        return [], []
    pairs: list[tuple[int, int]] = []
    for item in interactions:
        parts = item.split(":") if isinstance(item, str) else list(item)
        if len(parts) != 2:
            raise ValueError(
                "interactions entries must be pairs of feature names or 'a:b' strings, "
                f"got {item!r}"
            )
        idx = []
        for part in parts:
            if isinstance(part, int | np.integer) and 0 <= int(part) < len(names):
                idx.append(int(part))
            elif str(part) in names:
                idx.append(names.index(str(part)))
            else:
                raise ValueError(
                    f"interactions names {part!r}, which is not a feature; features are {names}"
                )
        if idx[0] == idx[1]:
            raise ValueError(f"interactions entry {item!r} pairs a feature with itself")
        pair = (min(idx), max(idx))
        if pair in pairs:
            raise ValueError(f"interactions lists {item!r} twice")
        pairs.append(pair)
    return pairs, [f"{names[a]}:{names[b]}" for a, b in pairs]


def interaction_design(X: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Columns ``X[:, a] * X[:, b]`` for each pair, shape (n_rows, len(pairs))."""
    out = np.empty((X.shape[0], len(pairs)), order="F")
    Xf = np.asfortranarray(X)  # contiguous columns: one streaming multiply per pair
    for k, (a, b) in enumerate(pairs):
        np.multiply(Xf[:, a], Xf[:, b], out=out[:, k])
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class Standardizer:
    """Affine map between the original scale and the model's working scale.

    ``x_work = (x - x_mean) / x_scale`` and ``y_work = (y - y_mean) / y_scale``.
    With ``enabled=False`` it is the identity, so downstream code has one path.
    """

    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: float
    y_scale: float

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray | None, *, enabled: bool) -> Standardizer:
        p = X.shape[1]
        if not enabled:
            return cls(np.zeros(p), np.ones(p), 0.0, 1.0)
        x_scale = X.std(axis=0)
        # A constant column keeps scale 1 (it is only centred) instead of dividing by zero.
        x_scale = np.where(x_scale > 0, x_scale, 1.0)
        y_mean = float(y.mean()) if y is not None else 0.0
        y_scale = float(y.std()) if y is not None else 1.0
        return cls(X.mean(axis=0), x_scale, y_mean, y_scale if y_scale > 0 else 1.0)

    def transform_X(self, X: np.ndarray) -> np.ndarray:
        return (X - self.x_mean) / self.x_scale

    def transform_y(self, y: np.ndarray) -> np.ndarray:
        return (y - self.y_mean) / self.y_scale

    def inverse_y(self, y_work):
        return y_work * self.y_scale + self.y_mean

    def to_dict(self) -> dict:
        return {
            "x_mean": self.x_mean.tolist(),
            "x_scale": self.x_scale.tolist(),
            "y_mean": self.y_mean,
            "y_scale": self.y_scale,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Standardizer:
        return cls(
            np.asarray(d["x_mean"], float),
            np.asarray(d["x_scale"], float),
            float(d["y_mean"]),
            float(d["y_scale"]),
        )
