"""What an estimator takes as input: a formula's design, or the arrays as given, checked.

With ``formula=...`` the data frame is coded by :func:`bayesmoe.formula.design_from_formula`
at fit time and the fitted design (``formula_design_``) codes new frames the same way;
without, features and target are validated by :mod:`bayesmoe.data`. Rows to predict at
are checked against the fitted features (names, order, count).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from bayesmoe.data import validate_features, validate_predict_features
from bayesmoe.formula import design_from_formula

__all__ = ["DesignInputs"]


class DesignInputs:
    """Training design and prediction rows (a mixin of ``BayesianRegressor``)."""

    #: whether the model can be fitted without features (``X=None``)
    _allows_no_features = False
    #: settings a formula decides, with their defaults (they must be left at them)
    _formula_decides: ClassVar[dict] = {}

    def _formula_design(self, X, y):
        """``(X, y, design)``: the formula's design matrix and target, or the inputs as given."""
        formula = getattr(self, "formula", None)
        if formula is None:
            return X, y, None
        if y is not None:
            raise ValueError(
                "with formula=..., pass the data frame alone (fit(data)): the formula names "
                "the target"
            )
        if not isinstance(X, pd.DataFrame):
            raise TypeError(
                f"with formula=..., X must be a pandas DataFrame holding the formula's "
                f"columns, got {type(X).__name__}"
            )
        self._check_formula_settings(formula)
        design, Xd, yv = design_from_formula(
            formula, X, gate=getattr(self, "gate_formula", None), name="formula"
        )
        if yv is None:
            raise ValueError(f"formula={formula!r} has no target; write 'y ~ ...'")
        return Xd, yv, design

    def _check_formula_settings(self, formula: str) -> None:
        for name, default in self._formula_decides.items():
            if getattr(self, name) != default:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} and formula={formula!r} both choose the "
                    f"design; give the terms in the formula and leave {name} at {default!r}"
                )

    def _design_interactions(self):
        """The interactions the model uses: the formula's, else the ``interactions`` setting."""
        design = getattr(self, "formula_design_", None)
        return self.interactions if design is None else list(design.interactions)

    def _target(self, X, y):
        """``y`` as given, or the formula's target column of the data frame ``X``."""
        design = getattr(self, "formula_design_", None)
        if y is None and design is not None and isinstance(X, pd.DataFrame):
            return design.target_values(X)
        return y

    def _features(self, X, y) -> tuple[np.ndarray, list[str]]:
        if X is None and self._allows_no_features:
            n = len(y) if hasattr(y, "__len__") else 0
            return np.zeros((n, 0)), []
        return validate_features(X, name="X")

    def _raw(self, X) -> np.ndarray:
        check_is_fitted(self, "idata_")
        if X is None and self._allows_no_features and self.n_features_in_ == 0:
            return np.zeros((1, 0))  # a model without features predicts one new draw
        design = getattr(self, "formula_design_", None)
        if design is not None:
            if not isinstance(X, pd.DataFrame):
                raise TypeError(
                    f"this model was fitted with formula={design.formula!r}: X must be a "
                    f"DataFrame with its columns, got {type(X).__name__}"
                )
            X = design.transform(X)
        return validate_predict_features(X, list(self.feature_names_in_), name="X")

    def _work_X(self, X) -> np.ndarray:
        raw = self._raw(X)  # checks fittedness before standardizer_ is touched
        return self.standardizer_.transform_X(raw)
