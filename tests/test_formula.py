"""bayesmoe.formula: Wilkinson formulas -> base design columns and interaction pairs.

Pure data (formulaic + pandas), no PyMC fitting: every test here runs in milliseconds.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayesmoe.formula import FormulaDesign, design_from_formula

N = 60


def _data(seed: int = 0, n: int = N) -> pd.DataFrame:
    """Three numeric columns, a 3-level string column g and a 2-level categorical h."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x1": rng.normal(size=n),
            "x2": rng.normal(size=n),
            "x3": rng.uniform(0.5, 2.0, size=n),
            # every level present in every seed's first rows
            "g": np.resize(np.array(["a", "b", "c"]), n),
            "h": pd.Categorical(np.resize(np.array(["lo", "hi"]), n), categories=["lo", "hi"]),
        }
    )
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _formulaic_rhs(formula: str, data: pd.DataFrame) -> pd.DataFrame:
    """Formulaic's own full right-hand-side matrix (with its Intercept and product columns)."""
    return model_matrix(formula, data, context={}).rhs


def _roundtrip(design: FormulaDesign) -> FormulaDesign:
    return FormulaDesign.from_dict(json.loads(json.dumps(design.to_dict())))


# ----------------------------------------------------------------------- formula shapes
def test_all_pairs_of_three_numeric_columns():
    df = _data()
    design, X, y = design_from_formula("y ~ (x1 + x2 + x3)**2", df)
    assert design.target == "y"
    assert design.columns == ["x1", "x2", "x3"]
    assert design.interactions == [("x1", "x2"), ("x1", "x3"), ("x2", "x3")]
    assert design.interaction_columns == ["x1:x2", "x1:x3", "x2:x3"]
    assert design.gate_columns is None
    assert list(X.columns) == ["x1", "x2", "x3"]
    assert all(X.dtypes == np.float64)
    np.testing.assert_array_equal(X.to_numpy(), df[["x1", "x2", "x3"]].to_numpy())
    np.testing.assert_array_equal(y, df["y"].to_numpy())
    assert y.dtype == np.float64 and y.ndim == 1


def test_star_gives_main_effects_and_their_product():
    df = _data()
    design, X, _ = design_from_formula("y ~ x1 * x2", df)
    assert design.columns == ["x1", "x2"]
    assert design.interactions == [("x1", "x2")]
    assert "Intercept" not in X.columns


def test_numeric_by_categorical_interaction_maps_each_column_to_its_dummy():
    df = _data()
    design, X, _ = design_from_formula("y ~ x1 + g + x1:g", df)
    assert design.columns == ["x1", "g[T.b]", "g[T.c]"]
    assert design.interactions == [("x1", "g[T.b]"), ("x1", "g[T.c]")]
    assert design.interaction_columns == ["x1:g[T.b]", "x1:g[T.c]"]
    full = _formulaic_rhs("y ~ x1 + g + x1:g", df)
    for (a, b), col in zip(design.interactions, design.interaction_columns, strict=True):
        np.testing.assert_allclose(X[a] * X[b], full[col])
    assert design.levels == {"g": ["a", "b", "c"]}


def test_one_sided_formula_has_no_target():
    df = _data()
    design, X, y = design_from_formula("~ x1 + x2", df)
    assert design.target is None and y is None
    assert list(X.columns) == ["x1", "x2"]
    with pytest.raises(ValueError, match="no left-hand side"):
        design.target_values(df)


def test_two_categorical_three_numeric_equals_hand_built_design():
    df = _data(seed=3)
    formula = "y ~ x1 + x2 + x3 + g + h + x1:g + x2:x3 + g:h + x3:h"
    design, X, y = design_from_formula(formula, df)

    g = pd.get_dummies(df["g"], prefix="g", prefix_sep="", drop_first=True, dtype=float)
    g.columns = [f"g[T.{c[1:]}]" for c in g.columns]
    h = pd.get_dummies(df["h"], prefix="h", prefix_sep="", drop_first=True, dtype=float)
    h.columns = [f"h[T.{c[1:]}]" for c in h.columns]
    expected = pd.concat([df[["x1", "x2", "x3"]].astype(float), g, h], axis=1)
    assert list(expected.columns) == ["x1", "x2", "x3", "g[T.b]", "g[T.c]", "h[T.hi]"]
    assert design.columns == list(expected.columns)
    pd.testing.assert_frame_equal(X, expected)

    assert design.interactions == [
        ("x1", "g[T.b]"),
        ("x1", "g[T.c]"),
        ("x2", "x3"),
        ("g[T.b]", "h[T.hi]"),
        ("g[T.c]", "h[T.hi]"),
        ("x3", "h[T.hi]"),
    ]
    # each interaction column formulaic computes is the product of its pair
    full = _formulaic_rhs(formula, df)
    assert set(design.interaction_columns) == set(full.columns) - {"Intercept", *X.columns}
    for (a, b), col in zip(design.interactions, design.interaction_columns, strict=True):
        np.testing.assert_allclose(expected[a] * expected[b], full[col], err_msg=col)
    np.testing.assert_array_equal(y, df["y"].to_numpy())
    assert design.levels == {"g": ["a", "b", "c"], "h": ["lo", "hi"]}


def test_removing_the_intercept_keeps_reduced_rank_coding():
    df = _data()
    _, X_ref, _ = design_from_formula("y ~ g + x1", df)
    for formula in ("y ~ 0 + g + x1", "y ~ g + x1 - 1", "y ~ 1 + g + x1"):
        design, X, _ = design_from_formula(formula, df)
        assert design.columns == ["g[T.b]", "g[T.c]", "x1"], formula
        pd.testing.assert_frame_equal(X, X_ref)


def test_squares_and_explicit_products_are_base_columns():
    df = _data()
    design, X, _ = design_from_formula("y ~ x1 + I(x1**2) + I(x1 * x2)", df)
    assert design.columns == ["x1", "I(x1 ** 2)", "I(x1 * x2)"]
    assert design.interactions == []
    np.testing.assert_allclose(X["I(x1 ** 2)"], df["x1"] ** 2)
    np.testing.assert_allclose(X["I(x1 * x2)"], df["x1"] * df["x2"])


def test_c_and_category_order_and_integer_codes():
    df = _data().assign(k=lambda d: np.resize([2, 0, 1], len(d)))
    design, X, _ = design_from_formula("y ~ C(k) + h", df)
    # levels sorted for integers; the categorical's own order ("lo" first) for h
    assert design.columns == ["C(k)[T.1]", "C(k)[T.2]", "h[T.hi]"]
    np.testing.assert_array_equal(X["C(k)[T.2]"], (df["k"] == 2).astype(float))
    np.testing.assert_array_equal(X["h[T.hi]"], (df["h"] == "hi").astype(float))


@pytest.mark.parametrize("dtype", [object, "str", "string", "category"])
def test_every_string_dtype_is_coded_as_categorical(dtype):
    df = _data().astype({"g": dtype})
    design, X, _ = design_from_formula("y ~ x1 * g", df)
    assert design.columns == ["x1", "g[T.b]", "g[T.c]"]
    np.testing.assert_array_equal(X["g[T.c]"], (df["g"] == "c").astype(float))
    # new data may come with another string dtype
    new = df.iloc[:6].astype({"g": object})
    pd.testing.assert_frame_equal(design.transform(new), X.iloc[:6])


def test_single_level_categorical_gives_no_columns():
    df = _data().assign(one="q")
    with pytest.raises(ValueError, match="formula: 'y ~ one' gives no design columns"):
        design_from_formula("y ~ one", df)
    _, X, _ = design_from_formula("y ~ x1 + one", df)
    assert list(X.columns) == ["x1"]


def test_log_target_and_dot_shorthand():
    df = _data().assign(y=lambda d: np.exp(d["y"]))
    design, X, y = design_from_formula("log(y) ~ .", df)
    assert design.target == "log(y)"
    np.testing.assert_allclose(y, np.log(df["y"]))
    # "." is every other column, y excluded
    assert design.columns == ["x1", "x2", "x3", "g[T.b]", "g[T.c]", "h[T.hi]"]
    np.testing.assert_allclose(design.target_values(df.iloc[:5]), np.log(df["y"].iloc[:5]))
    back = _roundtrip(design)
    pd.testing.assert_frame_equal(back.transform(df.drop(columns="y")), X)


# ----------------------------------------------------------------------- new data
def test_transform_of_new_rows_equals_design_of_the_same_rows():
    df = _data(seed=1)
    formula = "y ~ x1 * g + x2:x3 + x2 + x3 + h"
    design, X, _ = design_from_formula(formula, df)
    rows = df.iloc[[7, 3, 50, 11, 0]].drop(columns="y")  # no target, shuffled
    rows.index = ["r1", "r2", "r3", "r4", "r5"]
    out = design.transform(rows)
    assert list(out.index) == ["r1", "r2", "r3", "r4", "r5"]
    expected = X.iloc[[7, 3, 50, 11, 0]].set_axis(rows.index)
    pd.testing.assert_frame_equal(out, expected)
    # a single row with only one level of each categorical still gets every column
    one = design.transform(rows.iloc[:1])
    assert list(one.columns) == design.columns


def test_transform_keeps_fit_state_of_stateful_transforms():
    df = _data(seed=2)
    formula = "y ~ center(x1) + scale(x2) + bs(x3, df=4) + poly(x2, 2) + C(g, contr.sum)"
    design, X, _ = design_from_formula(formula, df)
    head = design.transform(df.iloc[:4])
    # centred with the fit mean, not the mean of the four new rows
    np.testing.assert_allclose(head["center(x1)"], df["x1"].iloc[:4] - df["x1"].mean())
    pd.testing.assert_frame_equal(head, X.iloc[:4])


def test_to_dict_from_dict_json_round_trip_transforms_identically():
    df = _data(seed=4)
    formula = "log(x3) ~ x1 * g + h + center(x2) + bs(x2, df=4) + poly(x1, 2) + g:h"
    design, X, y = design_from_formula(formula, df, gate="~ x2 + h + C(g, contr.sum)")
    d = design.to_dict()
    text = json.dumps(d, allow_nan=False)  # strict JSON
    back = FormulaDesign.from_dict(json.loads(text))
    assert back == design
    new = _data(seed=9)  # other rows, same levels
    pd.testing.assert_frame_equal(back.transform(new), design.transform(new))
    np.testing.assert_array_equal(back.target_values(new), design.target_values(new))
    pd.testing.assert_frame_equal(back.transform(df), X)
    np.testing.assert_array_equal(back.target_values(df), y)
    assert back.levels == design.levels
    assert back.interactions == design.interactions
    assert all(isinstance(p, tuple) for p in back.interactions)


def test_from_dict_rejects_other_dicts():
    with pytest.raises(ValueError, match="not a saved formula design"):
        FormulaDesign.from_dict({"formula": "y ~ x"})
    d = design_from_formula("y ~ x1", _data())[0].to_dict()
    with pytest.raises(ValueError, match="version 99"):
        FormulaDesign.from_dict({**d, "version": 99})
    with pytest.raises(ValueError, match="no fitted state"):
        FormulaDesign("y ~ x1", "y", ["x1"], [], None).transform(_data())


def test_transform_unseen_level_names_column_and_level():
    df = _data()
    design, _, _ = design_from_formula("y ~ x1 + g", df)
    new = df.iloc[:3].copy()
    new.loc[new.index[1], "g"] = "zebra"
    with pytest.raises(ValueError, match=r"formula: column 'g' has level\(s\) \['zebra'\]"):
        design.transform(new)
    # the same through C(g), and for a gate column
    design, _, _ = design_from_formula("y ~ x1 + C(g)", df, gate="~ h")
    with pytest.raises(ValueError, match=r"column 'g' has level\(s\) \['zebra'\]"):
        design.transform(new)
    new_h = df.iloc[:3].copy()
    new_h["h"] = ["lo", "mid", "hi"]
    with pytest.raises(ValueError, match=r"gate: column 'h' has level\(s\) \['mid'\]"):
        design.transform(new_h)


def test_transform_unseen_level_of_other_expression_is_an_error():
    df = _data()
    # an expression that is not a plain column (method calls such as g.str.upper() are
    # refused since formulas run no code: bayesmoe.formula.check_formula)
    design, _, _ = design_from_formula("y ~ x1 + C(g, levels=['a', 'b', 'c'])", df)
    new = df.iloc[:3].assign(g=["a", "b", "zebra"])
    with pytest.raises(ValueError, match="formula: new data has a categorical level not seen"):
        design.transform(new)


def test_transform_missing_column_and_bad_values():
    df = _data()
    design, _, _ = design_from_formula("y ~ x1 + g", df, gate="~ x2")
    with pytest.raises(ValueError, match="formula: unknown column 'x1'"):
        design.transform(df.drop(columns="x1"))
    with pytest.raises(ValueError, match="gate: unknown column 'x2'"):
        design.transform(df.drop(columns="x2"))
    with pytest.raises(ValueError, match="column 'x1' has 1 missing"):
        design.transform(df.assign(x1=lambda d: d["x1"].where(d.index != 4)))
    with pytest.raises(TypeError, match="column 'x1' was numeric at fit"):
        design.transform(df.assign(x1="a"))
    with pytest.raises(TypeError, match="DataFrame"):
        design.transform(df.to_numpy())
    with pytest.raises(ValueError, match="target column 'y' is missing"):
        design.target_values(df.drop(columns="y"))


# ----------------------------------------------------------------------- the gate
def test_gate_formula_gives_union_of_columns():
    df = _data()
    design, X, _ = design_from_formula("y ~ x1 * x2 + g", df, gate="~ x2 + x3 + h")
    assert design.columns == ["x1", "x2", "g[T.b]", "g[T.c]"]
    assert design.gate_columns == ["x2", "x3", "h[T.hi]"]
    assert design.all_columns == ["x1", "x2", "g[T.b]", "g[T.c]", "x3", "h[T.hi]"]
    assert list(X.columns) == design.all_columns
    np.testing.assert_array_equal(X["x3"], df["x3"])
    np.testing.assert_array_equal(X["h[T.hi]"], (df["h"] == "hi").astype(float))
    assert design.interactions == [("x1", "x2")]
    assert design.variables == ["g", "x1", "x2", "h", "x3"]
    pd.testing.assert_frame_equal(design.transform(df.drop(columns="y")), X)
    # a gate sharing every column adds none
    design, X, _ = design_from_formula("y ~ x1 + g", df, gate="~ g")
    assert design.gate_columns == ["g[T.b]", "g[T.c]"] and list(X.columns) == design.columns


def test_gate_errors():
    df = _data()
    with pytest.raises(ValueError, match=r"gate: interaction term 'x1:x2' is not supported"):
        design_from_formula("y ~ x1", df, gate="~ x1 * x2")
    with pytest.raises(ValueError, match=r"gate: .*one-sided"):
        design_from_formula("y ~ x1", df, gate="y ~ x2")
    with pytest.raises(ValueError, match="gate: unknown column 'nope'"):
        design_from_formula("y ~ x1", df, gate="~ nope")
    with pytest.raises(ValueError, match="gate: empty right-hand side"):
        design_from_formula("y ~ x1", df, gate="~ 0")
    with pytest.raises(ValueError, match="gate: column 'x2' has 2 missing"):
        holes = df.assign(x2=lambda d: d["x2"].where(d.index > 1))
        design_from_formula("y ~ x1", holes, gate="~ x2")
    with pytest.raises(ValueError, match="gate: the target column 'y' is also used"):
        design_from_formula("y ~ x1", df, gate="~ y")
    with pytest.raises(TypeError, match="gate must be None or a str"):
        design_from_formula("y ~ x1", df, gate=["x1"])


# ----------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("formula", "match"),
    [
        ("y ~ x1 + nope", "formula: unknown column 'nope'"),
        ("y ~ x1 + log(nope)", "formula: unknown column 'nope'"),
        ("target ~ x1", "formula: target column 'target' is missing from data"),
        ("y ~ 0", "formula: empty right-hand side"),
        ("y ~ 1", "formula: empty right-hand side"),
        ("y ~ ", "formula: empty right-hand side"),
        ("y + x3 ~ x1", "formula: the left-hand side of 'y \\+ x3 ~ x1' must be a single column"),
        ("y ~ x1:x2:x3 + x1 + x2 + x3", "formula: term 'x1:x2:x3' .* pairwise interactions only"),
        ("y ~ (x1 + x2 + x3)**3", "formula: term 'x1:x2:x3' .* pairwise interactions only"),
        ("y ~ x1 + x1:g", "formula: interaction term 'x1:g' .* main effect of 'g' .* add '\\+ g'"),
        ("y ~ x1:x2", "formula: interaction term 'x1:x2' .* main effect of 'x1' and 'x2'"),
        ("y ~ x1 + C(g):x1 + g", "main effect of 'C\\(g\\)'"),
        ("y ~ x1 +", "formula: cannot parse 'y ~ x1 \\+'"),
        ("y ~ x1 | x2", "formula: .* not of the form 'y ~ terms'"),
        ("y ~ x1 + y", "formula: the target column 'y' is also used as an input"),
        ("y ~ log(x1 - 10)", "formula: could not evaluate .*log\\(x1 - 10\\)"),
    ],
)
def test_formula_errors_name_the_argument_and_the_offender(formula, match):
    with pytest.raises(ValueError, match=match):
        design_from_formula(formula, _data())


def test_non_numeric_target_and_non_string_formula():
    df = _data()
    with pytest.raises(TypeError, match="formula: target column 'g' must be numeric"):
        design_from_formula("g ~ x1", df)
    with pytest.raises(TypeError, match="formula: target column 'h' must be numeric"):
        design_from_formula("h ~ x1", df)
    with pytest.raises(TypeError, match="formula must be a str"):
        design_from_formula(["y", "x1"], df)
    with pytest.raises(TypeError, match="model must be a str"):
        design_from_formula(None, df, name="model")
    with pytest.raises(TypeError, match="data must be a pandas DataFrame"):
        design_from_formula("y ~ x1", df.to_dict())


def test_missing_values_raise_instead_of_dropping_rows():
    df = _data()
    df.loc[[2, 5], "g"] = None
    df.loc[3, "y"] = np.nan
    with pytest.raises(ValueError, match="formula: column 'y' has 1 missing"):
        design_from_formula("y ~ x1 + g", df)
    with pytest.raises(ValueError, match="formula: column 'g' has 2 missing"):
        design_from_formula("x1 ~ x2 + g", df)
    with pytest.raises(ValueError, match="formula: column 'x2' has 1 infinite"):
        design_from_formula("x1 ~ x2", df.assign(x2=lambda d: d["x2"].where(d.index != 0, np.inf)))
    # a column the formula does not use may have missing values
    _, X, _ = design_from_formula("x1 ~ x2 + h", df)
    assert len(X) == len(df)


def test_custom_name_is_used_in_messages():
    with pytest.raises(ValueError, match="expert_formula: unknown column 'nope'"):
        design_from_formula("y ~ nope", _data(), name="expert_formula")


def test_caller_variables_are_not_visible():
    df = _data()
    offset = 3.0  # noqa: F841  (a formula must not be able to see this)
    with pytest.raises(ValueError, match="formula: unknown column 'offset'"):
        design_from_formula("y ~ x1 + I(x1 + offset)", df)


# ----------------------------------------------------------------------- property
_POOL = ["x1", "x2", "x3", "g", "h"]


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(subset=st.lists(st.sampled_from(_POOL), min_size=2, max_size=5, unique=True))
def test_all_pairs_property(subset):
    """``(c1 + ... + ck)**2`` gives every pair; each product is formulaic's column."""
    df = _data(seed=5, n=30)
    formula = f"y ~ ({' + '.join(subset)})**2"
    design, X, _ = design_from_formula(formula, df)
    width = {"x1": 1, "x2": 1, "x3": 1, "g": 2, "h": 1}
    assert len(design.columns) == sum(width[c] for c in subset)
    n_pairs = sum(width[a] * width[b] for a, b in itertools.combinations(subset, 2))
    assert len(design.interactions) == n_pairs
    if all(width[c] == 1 for c in subset):
        assert n_pairs == math.comb(len(subset), 2)
    full = _formulaic_rhs(formula, df)
    assert len(full.columns) == 1 + len(design.columns) + n_pairs
    for (a, b), col in zip(design.interactions, design.interaction_columns, strict=True):
        assert a in design.columns and b in design.columns
        np.testing.assert_allclose(X[a] * X[b], full[col], err_msg=col)
