"""Formulas are data, not code: nothing in a formula (or a saved design) is executed.

Every hostile payload below would create a canary file if formulaic evaluated it; the
tests check that the file never appears, that each refusal is a one-line ValueError
naming the offending term, and that allowed formulas still give formulaic's design.
"""

from __future__ import annotations

import ast
import atexit
import json
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from formulaic import Formula
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayesmoe.formula import FormulaDesign, check_formula, design_from_formula

#: one canary per test session; every hostile payload writes it (or a file next to it)
CANARY_DIR = Path(tempfile.mkdtemp(prefix="bayesmoe-canary-"))
atexit.register(shutil.rmtree, CANARY_DIR, True)
CANARY = CANARY_DIR / "executed"
C = str(CANARY)


def _data(n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n) + 5,
            "a": rng.normal(size=n),
            "b": rng.uniform(1, 2, n),
            "g": rng.choice(["u", "v", "w"], n),
            "a b": rng.normal(size=n),
        }
    )


DATA = _data()

#: code that would create the canary (or reach Python's internals) if evaluated
PAYLOADS = [
    f"__import__('os').system('touch {C}')",
    f"__import__('os').system('touch {C}').__abs__()",
    f"open('{C}', 'w')",
    f"exec(\"open('{C}', 'w')\")",
    f"eval(\"open('{C}', 'w')\")",
    f"getattr(__builtins__, 'open')('{C}', 'w')",
    f"(lambda: open('{C}', 'w'))()",
    f"[open('{C}', 'w') for _ in [0]]",
    f"{{open('{C}', 'w') for _ in [0]}}",
    f"(x := open('{C}', 'w'))",
    f'f\'{{open("{C}", "w")}}\'',
    f"np.load.__globals__['__builtins__']['open']('{C}', 'w')",
    f"`__import_-`('os').system('touch {C}')",
    "a.__class__.__mro__[-1].__subclasses__()",
    "np.log(a).__class__",
    f"np.log(a).__array_wrap__(open('{C}', 'w'))",
    f"compile('open(\"{C}\", \"w\")', 'x', 'exec')",
    f"globals()['__builtins__']['open']('{C}', 'w')",
    f"np.save('{C}', a)",
    f"hashed(g, 2, hash_func=lambda s: open('{C}', 'w'))",
    f"C(g, contr.custom.__init__.__globals__['__builtins__']['open']('{C}', 'w'))",
    f"I(a)[open('{C}', 'w')]",
    f"(open if a else a)('{C}', 'w')",
    f"I(*[open('{C}', 'w')])",
]
#: where a payload is put in a formula; {p} is the payload
PLACES = [
    "y ~ a + I({p})",
    "y ~ a + np.log({p})",
    "y ~ a + center({p})",
    "y ~ a + C({p})",
    "y ~ a + {p}",
    "y ~ a + {{{p}}}",
    "I({p}) ~ a",
    "{p} ~ a",
    "y ~ a * I({p})",
    "y ~ C(g, {p}) + a",
    "y ~ bs(a, df={p})",
    "y ~ poly(a, degree={p})",
    "y ~ a + I(a + {p})",
]
#: terms that are allowed (a data column or a documented transform of one)
ALLOWED = [
    "a",
    "b",
    "g",
    "C(g)",
    "C(g, contr.sum)",
    "C(g, levels=['w', 'v', 'u'])",
    "C(g, contr.treatment('v'))",
    "I(a ** 2)",
    "I(a * b - 1.5)",
    "I(a > 0)",
    "np.log(b)",
    "np.sqrt(b + 1)",
    "log(b)",
    "exp(a / 4)",
    "center(a)",
    "scale(b)",
    "standardize(a)",
    "poly(a, 2)",
    "`a b`",
    "I(`a b` * 2)",
    "{a + b}",
]


def _clean():
    for path in CANARY_DIR.iterdir():
        path.unlink()


def _ran() -> list[str]:
    """The files hostile code created (np.save adds '.npy' to the canary's name)."""
    return sorted(p.name for p in CANARY_DIR.iterdir())


def _assert_refused(exc: ValueError, formula: str, payload: str) -> None:
    message = str(exc)
    assert len(message.splitlines()) == 1, message
    found = re.search(r"term (.+?) of ", message)
    assert found, message
    term = ast.literal_eval(found.group(1))
    start = formula.find(term)
    assert start >= 0, (term, formula)
    p_start = formula.find(payload)
    # the named term is (part of) the hostile code
    assert start < p_start + len(payload) and p_start < start + len(term), (term, payload)


def _formulaic_columns(formula: str, data: pd.DataFrame) -> pd.DataFrame:
    """formulaic's own coding of the formula's right-hand side (the behaviour kept)."""
    rhs = formula.split("~", 1)[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Formula(rhs).get_model_matrix(data, context={})


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    terms=st.lists(st.sampled_from(ALLOWED), min_size=1, max_size=3, unique=True),
    hostile=st.one_of(
        st.none(),
        st.tuples(st.sampled_from(PAYLOADS), st.sampled_from(PLACES), st.booleans()),
        st.tuples(st.sampled_from(PAYLOADS), st.sampled_from(PLACES), st.booleans()),
        st.tuples(st.sampled_from(PAYLOADS), st.sampled_from(PLACES), st.booleans()),
    ),
    squared=st.booleans(),
)
def test_no_formula_runs_code(terms, hostile, squared):
    _clean()
    rhs = " + ".join(terms)
    if hostile is None:
        formula = f"y ~ ({rhs})**2" if squared and len(terms) > 1 else f"y ~ {rhs}"
        design, X, y = design_from_formula(formula, DATA)
        reference = _formulaic_columns(formula, DATA)
        for col in design.columns:  # the same coding as formulaic's
            np.testing.assert_allclose(X[col].to_numpy(), np.asarray(reference[col], float))
        np.testing.assert_array_equal(y, DATA["y"].to_numpy())
        return
    payload, place, in_gate = hostile
    formula = place.format(p=payload)
    gate = None
    if in_gate and place.startswith("y ~"):  # the same term in a gate formula
        gate, formula = formula.replace("y ~", "~", 1), f"y ~ {rhs}"
    with pytest.raises(ValueError) as info:
        design_from_formula(formula, DATA, gate=gate)
    _assert_refused(info.value, gate or formula, payload)
    assert not _ran(), f"{gate or formula!r} ran code"


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_saved_design_with_a_hostile_formula_is_refused_when_restored(payload):
    _clean()
    design, _, _ = design_from_formula("y ~ a + C(g)", DATA)
    saved = json.loads(json.dumps(design.to_dict()))
    for key, text in (
        ("formula", f"y ~ a + I({payload})"),
        ("formula", f"I({payload}) ~ a"),
        ("gate", f"~ I({payload})"),
    ):
        crafted = {**saved, key: text}
        with pytest.raises(ValueError) as info:
            FormulaDesign.from_dict(crafted)
        _assert_refused(info.value, text, payload)
        if key == "formula":  # a design built in memory with that text does not run it
            rebuilt = FormulaDesign(**{**vars(design), key: text})
            with pytest.raises(ValueError, match="is not allowed"):
                rebuilt.transform(DATA)
            with pytest.raises(ValueError, match="is not allowed"):
                rebuilt.target_values(DATA)
    assert not _ran()


def test_the_issue_payload_does_not_run(tmp_path):
    canary = tmp_path / "x"
    formula = f"y ~ a + I(__import__('os').system('touch {canary}').__abs__())"
    with pytest.raises(ValueError, match=r"term .*__import__.* is not allowed"):
        design_from_formula(formula, DATA)
    with pytest.raises(ValueError, match="is not allowed"):
        design_from_formula(f"__import__('os').system('touch {canary}') ~ a", DATA)
    with pytest.raises(ValueError, match="gate: term"):
        design_from_formula("y ~ a", DATA, gate=formula.replace("y ~", "~"))
    assert not canary.exists()


@pytest.mark.parametrize(
    ("formula", "offender"),
    [
        ("y ~ a + I(a.values)", "the attribute 'a.values'"),
        ("y ~ a + I(print)", "'print' as a value"),
        ("y ~ a + I('text')", "the literal 'text'"),
        ("y ~ a + hashed(g, 2, hash_func=len)", "the keyword 'hash_func'"),
        ("y ~ a + C(g, _state={})", "the keyword '_state'"),
        ("y ~ a + np.load(a)", "the call of 'np.load'"),
        ("y ~ a + a[0]", "the subscript 'a[0]'"),
        ("y ~ a %in% b", "the operator"),
        ("[y ~ a] ~ b", "multistage"),
        ("y ~ __class__", "names starting with '__'"),
    ],
)
def test_refusals_say_what_is_not_allowed(formula, offender):
    with pytest.raises(ValueError, match=re.escape(offender)):
        check_formula(formula)


def test_allowed_terms_and_column_names_that_shadow_builtins():
    assert check_formula("y ~ a + I(id * 2)", columns=["y", "a", "id"]) == "y ~ a + I(id * 2)"
    with pytest.raises(ValueError, match="'id' as a value"):
        check_formula("y ~ a + I(id * 2)", columns=["y", "a"])
    data = DATA.assign(id=np.arange(len(DATA), dtype=float))
    design, X, _ = design_from_formula("y ~ a + I(id * 2)", data)
    np.testing.assert_array_equal(X["I(id * 2)"], 2 * data["id"])
    # restored from its saved form, the design still codes new rows
    again = FormulaDesign.from_dict(json.loads(json.dumps(design.to_dict())))
    np.testing.assert_array_equal(again.transform(data).to_numpy(), X.to_numpy())
    with pytest.raises(TypeError, match="formula must be a str"):
        check_formula(3)


def test_a_saved_model_file_with_a_hostile_formula_does_not_run_it(tmp_path):
    """bm.load re-reads the formula text stored in a model file: a crafted file is refused."""
    import xarray as xr

    import bayesmoe as bm

    canary = tmp_path / "canary"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bm.InteractionRegression(
            formula="y ~ a + b", sampler="pymc", draws=20, tune=20, chains=1, progressbar=False
        ).fit(DATA)
    path = tmp_path / "model.nc"
    est.save(path)
    tree = xr.open_datatree(path)
    tree.load()
    tree.close()
    saved = json.loads(tree.attrs["bayesmoe_formula_design"])
    saved["formula"] = f"y ~ a + I(__import__('os').system('touch {canary}').__abs__())"
    tree.attrs["bayesmoe_formula_design"] = json.dumps(saved)
    crafted = tmp_path / "crafted.nc"
    tree.to_netcdf(crafted)
    with pytest.raises((ValueError, OSError), match="is not allowed"):
        bm.load(crafted).predict(DATA)
    assert not canary.exists()
