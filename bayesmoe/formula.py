"""Wilkinson formulas for the estimators, via :mod:`formulaic`.

A formula such as ``"y ~ (a + b + g)**2"`` is turned into what the estimators take: a
numeric *base* design (main-effect columns, categorical columns dummy-coded with
reduced-rank treatment contrasts, no intercept column) and the list of pairwise
interactions, each given as the pair of base columns whose product it is. The models
form the interaction columns themselves, so the returned design holds only the base
columns. This module is pure data: it does not import PyMC.

Design decisions
----------------
* **Intercept.** Every model in this library has its own intercept, so formulaic's
  ``Intercept`` column is always dropped, and a formula that removes it (``0 + ...`` or
  ``... - 1``) is accepted but coded exactly as if it had one: categorical columns
  always get ``k - 1`` treatment dummies. Removing the intercept from the formula does
  not remove it from the model.
* **Marginality.** An interaction ``a:b`` needs both main effects ``a`` and ``b`` in
  the same formula (write ``a * b``). The models standardise the base columns before
  forming products, and the product of standardised columns spans the same space as
  the raw product only when the main effects are in the model.
* **Pairwise only.** Three-way and higher interactions are rejected. A product written
  inside a single factor, e.g. ``I(a * b)`` or ``I(a**2)``, is an ordinary base column.
* **Categorical columns.** category, object and string columns (any pandas string
  dtype) and ``C(...)`` terms are categorical; bool columns are numeric 0/1. Column names
  are formulaic's (``g[T.b]``, ``C(k)[T.2]``). A categorical with unobserved categories
  (a pandas category dtype) keeps them, as an all-zero dummy column.
* **Missing values.** Formulaic drops rows with missing values by default; here a
  missing (or infinite) value in any column the formula uses is an error naming the
  column.
* **Gate.** ``gate="~ x1 + g"`` is a one-sided formula giving the gate's inputs, coded
  like the experts' formula. It may not have interactions (the gate is linear in its
  columns); write an explicit product column such as ``I(a * b)`` instead.
* **Evaluation context.** Formulas are evaluated against the data columns and
  formulaic's built-in transforms only (``C``, ``I``, ``np``, ``log``, ``center``,
  ``scale``, ``bs``, ``poly``, ...), never against the caller's variables, so a saved
  design means the same thing when it is loaded elsewhere. ``.`` ("all other
  columns") is supported.
* **No code runs from a formula.** formulaic evaluates terms as Python, so every
  formula that reaches it (estimators, gate formulas, the command line, a design
  restored by :meth:`FormulaDesign.from_dict` from a model file, dask partitions) is
  first checked by :func:`check_formula` against an allow-list: data columns (plain or
  backtick-quoted), the formula operators ``~ + - * : / ** ^ |``, parentheses, ``.``,
  numeric literals; inside terms arithmetic and comparisons of columns and numbers;
  calls of ``I``, ``C``, ``center``, ``scale``, ``standardize``, ``lag``, ``poly``,
  ``bs``, ``cr``/``cs``/``cc``, ``hashed``, ``log``/``log10``/``log2``/``exp``/
  ``exp2``/``exp10`` and ``np.<name>`` for the numpy functions in
  :data:`NUMPY_FUNCTIONS`, with literal (number, string, list) non-data arguments and
  only their documented keywords; contrasts ``contr.<name>`` and
  ``Treatment``/``Sum``/``Poly``/``Helmert``/``Diff``. Anything else (other
  attributes, ``__`` names, builtins, subscripts, lambdas, comprehensions, f-strings,
  calls of call results, string literals in arithmetic, multistage formulas) is
  refused with a one-line ValueError naming the term, before formulaic runs. See
  ``docs/trust.md``.
* **Persistence.** :meth:`FormulaDesign.to_dict` stores the formula text and the
  fitted formulaic state (categorical levels, stateful-transform parameters such as
  spline knots or centring constants) as plain JSON values; no pickle.
  :meth:`FormulaDesign.from_dict` rebuilds a design that transforms new data exactly
  as the original did.
"""

from __future__ import annotations

import ast
import builtins
import json
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from formulaic import Formula, ModelSpec, SimpleFormula
from formulaic.errors import DataMismatchWarning
from formulaic.parser.algos.sanitize_tokens import sanitize_python_code
from formulaic.parser.algos.tokenize import tokenize
from formulaic.parser.types import Factor, Term, Token
from formulaic.transforms import TRANSFORMS
from formulaic.utils.code import sanitize_variable_names

__all__ = ["FormulaDesign", "check_formula", "design_from_formula"]

#: format tag written by :meth:`FormulaDesign.to_dict`
FORMAT = "bayesmoe.formula"
#: version of the dictionary layout written by :meth:`FormulaDesign.to_dict`
VERSION = 1
_INTERCEPT = "Intercept"
#: rows of the fit data transformed again at fit time to check the saved state
_SELF_CHECK_ROWS = 256
_SAVED_KEYS = (
    "formula",
    "gate",
    "name",
    "target",
    "columns",
    "interactions",
    "interaction_columns",
    "gate_columns",
    "state",
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(exc: BaseException) -> str:
    """An exception's message without the terminal colour codes formulaic adds."""
    return _ANSI.sub("", str(exc)).strip()


# ----------------------------------------------------------------------- JSON codec
def _encode(obj: Any, where: str) -> Any:
    """Encode formulaic state as JSON values (tagged dicts for tuples, arrays, ...)."""
    if isinstance(obj, np.generic) and isinstance(obj.item(), bool | int | float | str):
        return _encode(obj.item(), where)
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else {"__float__": repr(float(obj))}
    if isinstance(obj, np.ndarray) and obj.dtype.kind in "biuf":
        return {"__ndarray__": _encode(obj.tolist(), where), "dtype": obj.dtype.str}
    if isinstance(obj, list):
        return [_encode(v, where) for v in obj]
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, where) for v in obj]}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, where) for k, v in obj.items()}
        return {"__items__": [[_encode(k, where), _encode(v, where)] for k, v in obj.items()]}
    raise TypeError(f"{where}: a value of type {type(obj).__name__} cannot be stored as JSON")


def _decode(obj: Any) -> Any:
    """Invert :func:`_encode`."""
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__float__" in obj:
        return float(obj["__float__"])
    if "__ndarray__" in obj:
        return np.asarray(_decode(obj["__ndarray__"]), dtype=np.dtype(obj["dtype"]))
    if "__tuple__" in obj:
        return tuple(_decode(v) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_as_key(_decode(k)): _decode(v) for k, v in obj["__items__"]}
    return {k: _decode(v) for k, v in obj.items()}


def _as_key(key: Any) -> Any:
    return tuple(_as_key(k) for k in key) if isinstance(key, list) else key


def _encode_state(spec: ModelSpec, arg: str) -> dict[str, Any]:
    """The fitted state of a materialised formulaic ModelSpec as JSON values."""
    encoder: dict[str, Any] = {}
    for expr, (kind, state) in spec.encoder_state.items():
        # "contrasts" is kept by formulaic for introspection only; "categories" is
        # the source of truth when encoding new data with a saved state.
        kept = {k: v for k, v in state.items() if k != "contrasts"}
        try:
            encoder[expr] = [Factor.Kind(kind).value, _encode(kept, f"{arg}: term '{expr}'")]
        except TypeError as exc:
            raise ValueError(f"{exc}; the fitted design could not be saved") from None
    transform: dict[str, Any] = {}
    for expr, state in spec.transform_state.items():
        try:
            transform[expr] = _encode(state, f"{arg}: transform '{expr}'")
        except TypeError as exc:
            raise ValueError(f"{exc}; the fitted design could not be saved") from None
    return {"encoder_state": encoder, "transform_state": transform}


def _decode_state(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    encoder = {
        expr: (Factor.Kind(kind), _decode(value))
        for expr, (kind, value) in state["encoder_state"].items()
    }
    transform = {expr: _decode(value) for expr, value in state["transform_state"].items()}
    return encoder, transform


# ----------------------------------------------------------------------- allowed grammar
#: Transforms a formula may call: name -> (data arguments, most positional arguments,
#: keywords). The first ``data arguments`` positional arguments are data expressions; the
#: others, and every keyword, are literals (or, for ``contrasts``, a contrast spec).
_TRANSFORM_ARGS: dict[str, tuple[int, int, frozenset[str]]] = {
    "I": (1, 1, frozenset()),
    "C": (1, 2, frozenset({"contrasts", "levels", "spans_intercept"})),
    "center": (1, 1, frozenset()),
    "scale": (1, 4, frozenset({"center", "scale", "ddof"})),
    "standardize": (1, 4, frozenset({"center", "rescale", "ddof"})),
    "lag": (1, 2, frozenset({"k"})),
    "poly": (1, 3, frozenset({"degree", "raw"})),
    "bs": (
        1,
        8,
        frozenset(
            {"df", "knots", "degree", "include_intercept", "lower_bound", "upper_bound"}
            | {"extrapolation"}
        ),
    ),
    **{
        name: (
            1,
            7,
            frozenset(
                {"df", "knots", "lower_bound", "upper_bound", "constraints", "extrapolation"}
            ),
        )
        for name in ("cr", "cs", "cc")
    },
    "hashed": (1, 3, frozenset({"levels", "contrasts", "spans_intercept"})),
    **{name: (1, 1, frozenset()) for name in ("log", "log10", "log2", "exp", "exp2", "exp10")},
}
#: the positional argument of a transform that is a contrast coding
_CONTRASTS_POSITION = {"C": 1, "hashed": 2}
_UNARY_NUMPY = (
    "log log1p log2 log10 exp expm1 exp2 sqrt cbrt square abs absolute sign sin cos tan "
    "arcsin arccos arctan sinh cosh tanh arcsinh arccosh arctanh floor ceil rint trunc"
).split()
#: ``np.<name>`` functions a formula may call, by number of (data) arguments.
NUMPY_FUNCTIONS: dict[str, int] = {
    **dict.fromkeys(_UNARY_NUMPY, 1),
    **dict.fromkeys(("power", "maximum", "minimum", "arctan2", "hypot", "round"), 2),
    "clip": 3,
}
#: Contrast codings ``C(g, ...)`` may name: ``contr.<name>`` and the patsy-style classes.
CONTRASTS = frozenset({"treatment", "sum", "helmert", "poly", "diff", "custom", "SAS"})
PATSY_CONTRASTS = frozenset({"Treatment", "Sum", "Poly", "Helmert", "Diff"})
#: Python names a formula term may not use as a value unless the data has such a column:
#: the builtins and formulaic's transform namespace (a formula sees only the data).
_RESERVED = frozenset(dir(builtins)) | frozenset(TRANSFORMS) | {"np", "contr"}
_OPERATOR_CHARS = frozenset("~+-*:/^|.")
_NUMBER = re.compile(r"^[0-9]*\.?[0-9]*$")
_ARITHMETIC = (
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow,
    ast.BitAnd, ast.BitOr, ast.BitXor,
)  # fmt: skip
_COMPARE = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)
_UNARY = (ast.USub, ast.UAdd, ast.Invert, ast.Not)


class _Refused(Exception):
    """A node of a formula term outside the allowed grammar (``what`` says which)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def check_formula(text: str, arg: str = "formula", columns: Sequence[str] = ()) -> str:
    """Refuse a formula that is not in the allowed grammar, before formulaic reads it.

    Formulaic evaluates formula terms as Python, and evaluates the callee of every call
    while it lists a term's variables; so every formula this module hands to formulaic
    passes through here first. The text is split into terms with formulaic's own
    tokenizer (no evaluation), and each Python term is parsed with :mod:`ast` (after
    formulaic's own handling of backtick-quoted names) and walked with an allow-list:

    * formula operators ``~ + - * : / ** ^ |``, parentheses, ``.``, and numeric literals;
    * data columns (plain or backtick-quoted names);
    * in a term: arithmetic (``+ - * / // % ** & | ^``, unary ``-``/``+``/``~``/``not``)
      and comparisons of columns and numbers;
    * calls of formulaic's transforms ``I``, ``C``, ``center``, ``scale``,
      ``standardize``, ``lag``, ``poly``, ``bs``, ``cr``/``cs``/``cc``, ``hashed``,
      ``log``, ``log10``, ``log2``, ``exp``, ``exp2``, ``exp10`` and of the
      numpy functions ``np.<name>`` in :data:`NUMPY_FUNCTIONS`; their first argument(s)
      are data expressions, the others literals (numbers, strings, ``True``/``False``/
      ``None``, lists, tuples and dicts of them); only the keywords each documents;
    * as ``C``'s or ``hashed``'s contrasts: ``contr.<name>`` (:data:`CONTRASTS`) or
      ``Treatment``/``Sum``/``Poly``/``Helmert``/``Diff``, called with literals or not.

    Anything else is refused: attributes other than the above, names starting with
    ``__``, Python builtins used as values, subscripts, lambdas, comprehensions,
    f-strings, starred arguments, ``**kwargs``, keywords starting with ``_``, calls of
    anything but the listed functions (so no call of a call's result), ``:=``,
    conditional expressions, string literals outside a transform's literal arguments,
    ``[ ]`` (multistage formulas) and ``%...%`` operators.

    Parameters
    ----------
    text : str
        The formula text.
    arg : str, default "formula"
        The argument name used in the error message.
    columns : sequence of str
        The data columns the formula may name; a column may shadow a Python builtin's
        name (``min``, ``id``) as a value.

    Returns
    -------
    str
        ``text``, unchanged.

    Raises
    ------
    TypeError
        If ``text`` is not a str.
    ValueError
        If the formula holds a term outside the grammar (one line naming the term), or
        cannot be split into terms.
    """
    if not isinstance(text, str):
        raise TypeError(f"{arg} must be a str, got {type(text).__name__}")
    known = frozenset(str(c) for c in columns)
    try:
        tokens = list(tokenize(text))
    except Exception as exc:  # formulaic's FormulaSyntaxError: unbalanced quotes, ...
        message = _plain(exc)
        first = message.splitlines()[0] if message else type(exc).__name__
        raise ValueError(
            f"{arg}: cannot parse term {_marked_term(text, message)!r} of {text!r}: {first}"
        ) from None
    for token in tokens:
        try:
            _check_token(token.kind, token.token, known)
        except _Refused as refused:
            raise ValueError(
                f"{arg}: term {token.token!r} of {text!r} is not allowed: {refused.what} "
                "(formulas may use data columns, formula operators, numbers and the "
                "transforms listed in bayesmoe.formula)"
            ) from None
    return text


def _marked_term(text: str, message: str) -> str:
    """The part of ``text`` a formulaic syntax error marks (with the word before it)."""
    context = message.splitlines()[-1] if message else ""
    start, end = context.find("\u29db"), context.find("\u29da")
    if text.count("\u29db") or start < 0 or end < start:
        return text
    while start > 0 and not (text[start - 1].isspace() or text[start - 1] in "~+*:/^|("):
        start -= 1
    return text[start : end - 1]


def _check_token(kind: Token.Kind, token: str, known: frozenset[str]) -> None:
    if kind is Token.Kind.OPERATOR:
        if not set(token) <= _OPERATOR_CHARS:
            raise _Refused(f"the operator {token!r}")
    elif kind is Token.Kind.CONTEXT:
        if token not in ("(", ")"):
            raise _Refused(f"{token!r} (multistage formulas are not supported)")
    elif kind is Token.Kind.VALUE:
        if token != "." and not _NUMBER.match(token):
            raise _Refused("a literal that is not a number")
    elif kind is Token.Kind.NAME:
        if any(part.startswith("__") for part in token.split(".")):
            raise _Refused(f"the name {token!r} (names starting with '__')")
    elif kind is Token.Kind.PYTHON:
        _check_python(token, known)
    else:  # pragma: no cover  (formulaic has no other token kinds)
        raise _Refused(f"a token of kind {kind}")


def _check_python(code: str, known: frozenset[str]) -> None:
    """Parse a Python term as formulaic evaluates it, and walk it with the allow-list."""
    aliases: dict[str, str] = {}
    try:
        # formulaic's own steps: tokenizer-time sanitising, then eval-time backtick aliases
        expr = sanitize_variable_names(sanitize_python_code(code), {}, aliases)
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError):
        raise _Refused("code that is not a Python expression") from None
    except RecursionError:
        raise _Refused("code nested too deeply") from None
    aliased = {name for name, original in aliases.items() if original in known}
    try:
        _data_expr(tree.body, known | aliased)
    except RecursionError:
        raise _Refused("code nested too deeply") from None


def _name(node: ast.Name, known: frozenset[str]) -> None:
    if node.id.startswith("__"):
        raise _Refused(f"the name {node.id!r} (names starting with '__')")
    if node.id in _RESERVED and node.id not in known:
        raise _Refused(f"{node.id!r} as a value (it is not a data column)")


def _data_expr(node: ast.AST, known: frozenset[str]) -> None:
    """A data expression: columns, numbers, arithmetic, comparisons, allowed calls."""
    if isinstance(node, ast.Name):
        _name(node, known)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise _Refused(f"the literal {node.value!r} outside a transform's arguments")
    elif isinstance(node, ast.BinOp) and isinstance(node.op, _ARITHMETIC):
        _data_expr(node.left, known)
        _data_expr(node.right, known)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, _UNARY):
        _data_expr(node.operand, known)
    elif isinstance(node, ast.Compare) and all(isinstance(op, _COMPARE) for op in node.ops):
        for part in (node.left, *node.comparators):
            _data_expr(part, known)
    elif isinstance(node, ast.Call):
        _call(node, known)
    else:
        raise _Refused(_describe(node))


def _call(node: ast.Call, known: frozenset[str]) -> None:
    func = node.func
    if isinstance(func, ast.Attribute):
        if not (
            isinstance(func.value, ast.Name)
            and func.value.id == "np"
            and func.attr in NUMPY_FUNCTIONS
        ):
            raise _Refused(f"the call of {_source(func)!r}")
        n_data = n_max = NUMPY_FUNCTIONS[func.attr]
        keywords: frozenset[str] = frozenset()
    elif isinstance(func, ast.Name) and func.id in _TRANSFORM_ARGS:
        n_data, n_max, keywords = _TRANSFORM_ARGS[func.id]
    else:
        raise _Refused(f"the call of {_source(func)!r}")
    name = _source(func)
    if len(node.args) < n_data or len(node.args) > n_max:
        raise _Refused(f"{name}() with {len(node.args)} positional argument(s)")
    for i, value in enumerate(node.args):
        if i < n_data:
            _data_expr(value, known)
        elif _CONTRASTS_POSITION.get(name) == i:
            _contrasts(value)
        else:
            _literal(value)
    for keyword in node.keywords:
        if keyword.arg is None or keyword.arg not in keywords:
            what = "**" if keyword.arg is None else f"the keyword {keyword.arg!r}"
            raise _Refused(f"{what} in {name}()")
        if keyword.arg == "contrasts":
            _contrasts(keyword.value)
        else:
            _literal(keyword.value)


def _contrasts(node: ast.AST) -> None:
    """A contrast coding: ``contr.<name>``, a patsy-style class, called with literals, or
    a literal matrix/dict."""
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
        if target.value.id != "contr" or target.attr not in CONTRASTS:
            raise _Refused(f"the contrasts {_source(target)!r}")
    elif isinstance(target, ast.Name):
        if target.id not in PATSY_CONTRASTS:
            raise _Refused(f"the contrasts {target.id!r}")
    elif target is node:
        _literal(node)
        return
    else:
        raise _Refused(_describe(target))
    if isinstance(node, ast.Call):
        for value in node.args:
            _literal(value)
        for keyword in node.keywords:
            if keyword.arg is None or keyword.arg.startswith("_"):
                raise _Refused(f"the keyword {keyword.arg!r} in {_source(target)}()")
            _literal(keyword.value)


def _literal(node: ast.AST) -> None:
    """A literal argument: a number, string, True/False/None, or a container of them."""
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, int | float | str | None):
            raise _Refused(f"the literal {node.value!r}")
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        if not (
            isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, int | float)
            and not isinstance(node.operand.value, bool)
        ):
            raise _Refused(_describe(node))
    elif isinstance(node, ast.List | ast.Tuple | ast.Set):
        for value in node.elts:
            _literal(value)
    elif isinstance(node, ast.Dict):
        for value in (*node.keys, *node.values):
            if value is None:  # {**other}
                raise _Refused("'**' in a dict")
            _literal(value)
    else:
        raise _Refused(_describe(node) + " where a literal argument is expected")


def _source(node: ast.AST) -> str:
    return ast.unparse(node).replace("\n", " ")


def _describe(node: ast.AST) -> str:
    kinds = {
        ast.Attribute: "the attribute",
        ast.Subscript: "the subscript",
        ast.Lambda: "a lambda",
        ast.ListComp: "a comprehension",
        ast.SetComp: "a comprehension",
        ast.DictComp: "a comprehension",
        ast.GeneratorExp: "a comprehension",
        ast.JoinedStr: "an f-string",
        ast.Starred: "a starred argument",
        ast.NamedExpr: "':='",
        ast.IfExp: "a conditional expression",
    }
    for kind, what in kinds.items():
        if isinstance(node, kind):
            return f"{what} {_source(node)!r}"
    return f"the expression {_source(node)!r} ({type(node).__name__})"


# ----------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class _Parsed:
    """A parsed formula: lhs terms (or None), rhs main-effect and interaction terms."""

    lhs: SimpleFormula | None
    mains: list[Term]
    pairs: list[Term]


def _formula(text: str, arg: str, available: Sequence[str], columns: Sequence[str]) -> Any:
    """formulaic's parse of ``text``, after :func:`check_formula` (the only way in)."""
    check_formula(text, arg, columns)
    return Formula(text, _context={"__formulaic_variables_available__": list(available)})


def _parse(
    text: str, arg: str, available: Sequence[str], columns: Sequence[str] | None = None
) -> _Parsed:
    """Parse and check a formula's structure (no data needed beyond column names).

    ``available``: what ``.`` expands to; ``columns``: the data columns the formula may
    name (default ``available``).
    """
    columns = available if columns is None else columns
    check_formula(text, arg, columns)
    try:
        parsed = _formula(text, arg, available, columns)
    except Exception as exc:  # formulaic raises several types for malformed formulas
        message = _plain(exc)
        first = message.splitlines()[0] if message else type(exc).__name__
        raise ValueError(f"{arg}: cannot parse {text!r}: {first}") from None
    if isinstance(parsed, SimpleFormula):
        lhs, rhs = None, parsed
    else:
        lhs, rhs = getattr(parsed, "lhs", None), getattr(parsed, "rhs", None)
        if not isinstance(lhs, SimpleFormula) or not isinstance(rhs, SimpleFormula):
            raise ValueError(
                f"{arg}: {text!r} is not of the form 'y ~ terms' or '~ terms' "
                "(multi-part formulas with '|' or multistage '[... ~ ...]' are not supported)"
            )
    if lhs is not None:
        terms = list(lhs)
        if len(terms) != 1 or len(terms[0].factors) != 1:
            raise ValueError(
                f"{arg}: the left-hand side of {text!r} must be a single column, got '{lhs}'"
            )
        if terms[0].factors[0].eval_method is Factor.EvalMethod.LITERAL:
            raise ValueError(f"{arg}: the left-hand side of {text!r} must be a column")
        if arg == "gate":
            raise ValueError(
                f"gate: {text!r} must be a one-sided formula such as '~ x1 + x2' (no left-hand "
                "side)"
            )
    mains: list[Term] = []
    pairs: list[Term] = []
    for term in rhs:
        factors = list(term.factors)
        if all(f.eval_method is Factor.EvalMethod.LITERAL for f in factors):
            if str(term) == "1":
                continue  # the intercept; the models always have their own
            raise ValueError(f"{arg}: constant term '{term}' in {text!r} is not supported")
        if len(factors) == 1:
            mains.append(term)
        elif len(factors) == 2:
            if arg == "gate":
                raise ValueError(
                    f"gate: interaction term '{term}' is not supported in the gate formula "
                    f"{text!r} (the gate is linear in its columns); use an explicit product "
                    f"column such as 'I({factors[0].expr} * {factors[1].expr})' instead"
                )
            pairs.append(term)
        else:
            raise ValueError(
                f"{arg}: term '{term}' in {text!r} is a {len(factors)}-way interaction; "
                "pairwise interactions only (at most two factors per term)"
            )
    main_exprs = {term.factors[0].expr for term in mains}
    for term in pairs:
        missing = [f.expr for f in term.factors if f.expr not in main_exprs]
        if missing:
            a, b = (f.expr for f in term.factors)
            raise ValueError(
                f"{arg}: interaction term '{term}' in {text!r} needs the main effect of "
                f"{' and '.join(repr(m) for m in missing)} in the formula (marginality): add "
                f"'+ {' + '.join(missing)}', or write '{a} * {b}'"
            )
    if not mains:
        raise ValueError(
            f"{arg}: empty right-hand side in {text!r}: give at least one column, e.g. "
            + ("'y ~ x1'" if arg != "gate" else "'~ x1'")
        )
    return _Parsed(lhs=lhs, mains=mains, pairs=pairs)


def _rhs_formula(parsed: _Parsed) -> SimpleFormula:
    """The rhs terms with formulaic's intercept (always), so coding is reduced-rank."""
    intercept = next(iter(Formula("1")))
    return SimpleFormula([intercept, *parsed.mains, *parsed.pairs])


def _required(formula: SimpleFormula | None) -> list[str]:
    """Data columns a formula side needs, in a stable order."""
    if formula is None:
        return []
    return sorted(str(v) for v in formula.required_variables)


def _categorical_source(expr: str, columns: set[str]) -> str | None:
    """The data column whose values a categorical factor codes (``g`` or ``C(g, ...)``)."""
    if expr in columns:
        return expr
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        return None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "C"
        and node.args
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id in columns
        and not any(kw.arg == "levels" for kw in node.keywords)
    ):
        return node.args[0].id
    return None


# ----------------------------------------------------------------------- data checks
def _check_frame(data: Any, arg: str) -> None:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"{arg}: data must be a pandas DataFrame, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"{arg}: data has 0 rows")


def _check_columns(
    data: pd.DataFrame, columns: Sequence[str], arg: str, *, what: str = "column"
) -> None:
    """Every named column is in ``data`` and has no missing or infinite values."""
    for col in columns:
        if col not in data.columns:
            if what == "target column":
                raise ValueError(f"{arg}: target column '{col}' is missing from data")
            raise ValueError(
                f"{arg}: unknown column '{col}': it is not a column of data "
                f"(columns: {[str(c) for c in data.columns][:20]})"
            )
    for col in columns:
        values = data[col]
        n_missing = int(values.isna().sum())
        if n_missing:
            raise ValueError(
                f"{arg}: column '{col}' has {n_missing} missing (NaN/None) value(s); "
                "drop or impute them before building the design"
            )
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            with np.errstate(invalid="ignore"):
                n_inf = int(np.isinf(values.to_numpy(dtype=np.float64)).sum())
            if n_inf:
                raise ValueError(f"{arg}: column '{col}' has {n_inf} infinite value(s)")


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_complex_dtype(values)


def _formulaic_frame(data: pd.DataFrame) -> pd.DataFrame:
    """``data`` with extension string columns as object, so formulaic codes them as categorical.

    Formulaic treats ``object``, ``str`` (pandas' default string dtype) and ``category``
    columns as categorical, but a nullable ``string`` / ``string[pyarrow]`` column as
    numerical; converting those to ``object`` gives them the same coding as ``str``.
    """
    convert = [
        col
        for col, dtype in data.dtypes.items()
        if pd.api.types.is_string_dtype(dtype)
        and not isinstance(dtype, pd.CategoricalDtype)
        and str(dtype) not in ("object", "str")
    ]
    if not convert:
        return data
    out = data.copy(deep=False)
    for col in convert:
        out[col] = data[col].astype(object)
    return out


def _materialize(
    formula: SimpleFormula,
    data: pd.DataFrame,
    arg: str,
    text: str,
    state: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, ModelSpec]:
    """Materialise one formula side with formulaic (optionally from a saved state)."""
    encoder, transform = _decode_state(state) if state is not None else ({}, {})
    spec = ModelSpec(
        formula=formula,
        materializer="pandas",
        output="pandas",
        ensure_full_rank=True,
        na_action="raise",
        encoder_state=encoder,
        transform_state=transform,
    )
    data = _formulaic_frame(data)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            # non-finite results (log of a non-positive value) are reported by name below
            warnings.simplefilter("error", DataMismatchWarning)
            matrix = spec.get_model_matrix(data, context={})
    except DataMismatchWarning as exc:
        raise ValueError(
            f"{arg}: new data has a categorical level not seen at fit: {_plain(exc)}"
        ) from None
    except Exception as exc:  # formulaic evaluation errors of user expressions
        raise ValueError(f"{arg}: could not evaluate {text!r} on data: {_plain(exc)}") from None
    return matrix, matrix.model_spec


def _float_frame(matrix: pd.DataFrame, columns: Sequence[str], arg: str) -> pd.DataFrame:
    out = pd.DataFrame(
        {c: np.asarray(matrix[c], dtype=np.float64) for c in columns}, index=matrix.index
    )
    for col in columns:
        n_bad = int((~np.isfinite(out[col].to_numpy())).sum())
        if n_bad:
            raise ValueError(
                f"{arg}: design column '{col}' has {n_bad} NaN or infinite value(s) after "
                "evaluation (e.g. log of a non-positive value)"
            )
    return out


# ----------------------------------------------------------------------- the design
@dataclass
class FormulaDesign:
    """A fitted formula: base design columns, interaction pairs and formulaic state.

    Build one with :func:`design_from_formula`; rebuild a saved one with
    :meth:`from_dict`.

    Attributes
    ----------
    formula : str
        The formula as given.
    target : str or None
        The left-hand-side column name as formulaic names it (``"y"``, ``"log(y)"``);
        None for a one-sided formula such as ``"~ x1"``.
    columns : list of str
        The experts' base (main-effect) design columns, in formulaic's order, without an
        intercept. Categorical columns appear as treatment dummies named by formulaic,
        e.g. ``"g[T.b]"``.
    interactions : list of tuple of (str, str)
        Each pairwise interaction column as the pair of base columns (both in
        ``columns``) whose product it is; ``a:g`` with a 3-level ``g`` gives
        ``("a", "g[T.b]")`` and ``("a", "g[T.c]")``.
    gate_columns : list of str or None
        The gate's base columns, or None when no gate formula was given.
    gate : str or None
        The gate formula as given.
    interaction_columns : list of str
        Formulaic's names of the interaction columns (``"a:g[T.b]"``), parallel to
        ``interactions``.
    name : str
        The argument name used in error messages about ``formula``.
    state : dict
        Opaque JSON-able fitted state (formulaic encoder/transform state per formula
        side, the data columns used and their kinds). Needed by :meth:`transform`.
    """

    formula: str
    target: str | None
    columns: list[str]
    interactions: list[tuple[str, str]]
    gate_columns: list[str] | None
    gate: str | None = None
    interaction_columns: list[str] = field(default_factory=list)
    name: str = "formula"
    state: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ properties
    @property
    def all_columns(self) -> list[str]:
        """Columns of the design matrix: expert columns, then gate-only columns.

        Returns
        -------
        list of str
            ``columns`` followed by the ``gate_columns`` not already in ``columns``.
        """
        gate_only = [c for c in (self.gate_columns or []) if c not in self.columns]
        return [*self.columns, *gate_only]

    @property
    def variables(self) -> list[str]:
        """Data columns that :meth:`transform` needs (the target is not among them).

        Returns
        -------
        list of str
            Column names of the input data used by the formula and gate right-hand sides.
        """
        return list(self._state()["kinds"])

    @property
    def levels(self) -> dict[str, list[Any]]:
        """Categorical levels learned at fit, by formulaic factor (``"g"``, ``"C(k)"``).

        Returns
        -------
        dict of str to list
            The levels in coding order; the first is the treatment-contrast baseline.
        """
        out: dict[str, list[Any]] = {}
        for part in ("rhs", "gate"):
            part_state = self._state()["parts"].get(part)
            if part_state is None:
                continue
            for expr, (kind, value) in part_state["encoder_state"].items():
                if kind == Factor.Kind.CATEGORICAL.value and "categories" in value:
                    out.setdefault(expr, list(_decode(value["categories"])))
        return out

    # ------------------------------------------------------------------ new data
    def transform(self, data: pd.DataFrame) -> pd.DataFrame:
        """New data -> base design columns, coded exactly as at fit.

        Parameters
        ----------
        data : pandas.DataFrame
            New rows with (at least) the columns in :attr:`variables`; the target column
            need not be present.

        Returns
        -------
        pandas.DataFrame
            float64 columns :attr:`all_columns` (expert base columns, then gate-only
            columns), with the index of ``data``.

        Raises
        ------
        TypeError
            If ``data`` is not a DataFrame, or a column that was numeric at fit is not.
        ValueError
            If a needed column is missing or has missing/infinite values, or a categorical
            column has a level not seen at fit.
        """
        parts = self._state()["parts"]
        _check_frame(data, self.name)
        _check_columns(data, parts["rhs"]["variables"], self.name)
        if self.gate is not None:
            _check_columns(data, parts["gate"]["variables"], "gate")
        self._check_kinds_and_levels(data)
        frames = [self._transform_part("rhs", self.formula, self.name, data)]
        if self.gate is not None:
            frames.append(self._transform_part("gate", self.gate, "gate", data))
        out = _union(frames, self.all_columns, self.name)
        out.index = data.index
        return out

    def target_values(self, data: pd.DataFrame) -> np.ndarray:
        """The target (left-hand side) evaluated on ``data``.

        Parameters
        ----------
        data : pandas.DataFrame
            Rows holding the target column(s).

        Returns
        -------
        numpy.ndarray
            1-D float64 array, one value per row.

        Raises
        ------
        ValueError
            If the formula is one-sided, the target column is missing or has missing or
            infinite values.
        TypeError
            If the target is not numeric.
        """
        state = self._state()
        if self.target is None:
            raise ValueError(f"{self.name}: {self.formula!r} has no left-hand side (target)")
        _check_frame(data, self.name)
        _check_columns(data, state["target_variables"], self.name, what="target column")
        parsed = self._parse(self.formula, self.name)
        return _target(parsed.lhs, data, self.name, self.formula, state["parts"]["lhs"])[1]

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description of the fitted design.

        Returns
        -------
        dict
            Plain JSON values (``json.dumps`` works on it); :meth:`from_dict` inverts it.
        """
        self._state()
        return {
            "format": FORMAT,
            "version": VERSION,
            "formula": self.formula,
            "gate": self.gate,
            "name": self.name,
            "target": self.target,
            "columns": list(self.columns),
            "interactions": [list(pair) for pair in self.interactions],
            "interaction_columns": list(self.interaction_columns),
            "gate_columns": None if self.gate_columns is None else list(self.gate_columns),
            "state": json.loads(json.dumps(self.state)),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FormulaDesign:
        """Rebuild a design from :meth:`to_dict` output (e.g. after a JSON round trip).

        Parameters
        ----------
        d : mapping
            The dictionary written by :meth:`to_dict`.

        Returns
        -------
        FormulaDesign
            A design whose :meth:`transform` codes new data as the original did.

        Raises
        ------
        ValueError
            If ``d`` is not a saved formula design of a supported version.
        """
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise ValueError(f"not a saved formula design (expected format {FORMAT!r})")
        missing = [k for k in _SAVED_KEYS if k not in d]
        if missing:
            raise ValueError(f"saved formula design is missing {missing}")
        if d.get("version") != VERSION:
            raise ValueError(
                f"saved formula design has version {d.get('version')!r}; this bayesmoe "
                f"reads version {VERSION}"
            )
        for key in ("formula", "gate"):
            if not isinstance(d[key], str) and not (key == "gate" and d[key] is None):
                raise ValueError(
                    f"saved formula design: {key!r} must be a str, got {type(d[key]).__name__}"
                )
        state = d["state"] if isinstance(d["state"], Mapping) else {}
        # refused here, before anything else reads the saved text
        check_formula(d["formula"], "formula", _known_columns(state, "formula"))
        if d["gate"] is not None:
            check_formula(d["gate"], "gate", _known_columns(state, "gate"))
        return cls(
            formula=d["formula"],
            target=d["target"],
            columns=list(d["columns"]),
            interactions=[(str(a), str(b)) for a, b in d["interactions"]],
            gate_columns=None if d["gate_columns"] is None else list(d["gate_columns"]),
            gate=d["gate"],
            interaction_columns=list(d["interaction_columns"]),
            name=d["name"],
            state=dict(d["state"]),
        )

    # ------------------------------------------------------------------ internals
    def _state(self) -> dict[str, Any]:
        if not self.state:
            raise ValueError(
                "this FormulaDesign has no fitted state: build it with design_from_formula "
                "or FormulaDesign.from_dict"
            )
        return self.state

    def _parse(self, text: str, arg: str) -> _Parsed:
        state = self._state()
        return _parse(text, arg, state["available"].get(arg, []), _known_columns(state, arg))

    def _check_kinds_and_levels(self, data: pd.DataFrame) -> None:
        state = self._state()
        for col, kind in state["kinds"].items():
            if kind == "numeric" and not _is_numeric(data[col]):
                raise TypeError(
                    f"{self.name}: column '{col}' was numeric at fit but has dtype "
                    f"{data[col].dtype} in the new data"
                )
        for part, arg in (("rhs", self.name), ("gate", "gate")):
            part_state = state["parts"].get(part)
            if part_state is None:
                continue
            for expr, col in part_state["level_sources"].items():
                known = _decode(part_state["encoder_state"][expr][1]["categories"])
                known_set = set(known)
                unseen = [v for v in pd.unique(data[col]) if v not in known_set]
                if unseen:
                    raise ValueError(
                        f"{arg}: column '{col}' has level(s) {[str(v) for v in unseen]} not "
                        f"seen at fit (known levels of '{expr}': {[str(v) for v in known]})"
                    )

    def _transform_part(self, part: str, text: str, arg: str, data: pd.DataFrame) -> pd.DataFrame:
        part_state = self._state()["parts"][part]
        parsed = self._parse(text, arg)
        matrix, _ = _materialize(_rhs_formula(parsed), data, arg, text, part_state)
        if list(matrix.columns) != part_state["columns"]:
            raise ValueError(
                f"{arg}: {text!r} gave columns {list(matrix.columns)} on the new data, but "
                f"{part_state['columns']} at fit"
            )
        return _float_frame(matrix, part_state["base"], arg)


def _known_columns(state: Mapping[str, Any], arg: str) -> list[str]:
    """The data columns a saved design's formula names (what it may name as values)."""
    names: list[str] = []
    for key in ("kinds", "target_variables"):
        value = state.get(key)
        if isinstance(value, Mapping | list):
            names.extend(str(v) for v in value)
    available = state.get("available")
    if isinstance(available, Mapping) and isinstance(available.get(arg), list):
        names.extend(str(v) for v in available[arg])
    return names


def _union(frames: Sequence[pd.DataFrame], columns: Sequence[str], arg: str) -> pd.DataFrame:
    """Join the expert and gate designs (shared columns must agree)."""
    out = frames[0].copy()
    for frame in frames[1:]:
        for col in frame.columns:
            if col in out.columns:
                if not np.array_equal(out[col].to_numpy(), frame[col].to_numpy()):
                    raise ValueError(
                        f"gate: column '{col}' is coded differently by {arg} and gate"
                    )
            else:
                out[col] = frame[col]
    return out[list(columns)]


def _target(
    lhs: SimpleFormula | None,
    data: pd.DataFrame,
    arg: str,
    text: str,
    state: Mapping[str, Any] | None,
) -> tuple[ModelSpec, np.ndarray, str]:
    """Evaluate the lhs: (fitted spec, 1-D float64 values, target name)."""
    assert lhs is not None
    source = str(next(iter(lhs)).factors[0].expr)
    if source in data.columns and not _is_numeric(data[source]):
        raise TypeError(
            f"{arg}: target column '{source}' must be numeric, got dtype {data[source].dtype}"
        )
    matrix, spec = _materialize(lhs, data, arg, text, state)
    if matrix.shape[1] != 1 or not _is_numeric(matrix.iloc[:, 0]):
        raise TypeError(
            f"{arg}: the target '{lhs}' must be a single numeric column, got columns "
            f"{list(matrix.columns)}"
        )
    target = str(matrix.columns[0])
    values = np.asarray(matrix.iloc[:, 0], dtype=np.float64)
    n_bad = int((~np.isfinite(values)).sum())
    if n_bad:
        raise ValueError(f"{arg}: target '{target}' has {n_bad} NaN or infinite value(s)")
    return spec, values, target


def _available(text: str, columns: Sequence[str], arg: str) -> list[str]:
    """The column list the formula's ``.`` expands to at fit; [] when it has no ``.``.

    The formula is parsed against all columns and against none: when the terms agree,
    the formula does not use ``.`` and the columns need not be saved.
    """
    check_formula(text, arg, columns)

    def terms(available: Sequence[str]) -> list[str] | None:
        try:
            parsed = _formula(text, arg, available, columns)
        except Exception:
            return None
        rhs = parsed if isinstance(parsed, SimpleFormula) else getattr(parsed, "rhs", None)
        return [str(t) for t in rhs] if isinstance(rhs, SimpleFormula) else None

    return [] if terms(list(columns)) == terms([]) else list(columns)


def design_from_formula(
    formula: str,
    data: pd.DataFrame,
    *,
    gate: str | None = None,
    name: str = "formula",
) -> tuple[FormulaDesign, pd.DataFrame, np.ndarray | None]:
    """Build a base design (and target) from a Wilkinson formula.

    Parameters
    ----------
    formula : str
        ``"y ~ terms"`` or one-sided ``"~ terms"``, in formulaic's syntax: ``a + b``,
        ``a * b`` (= ``a + b + a:b``), ``(a + b + c)**2``, ``C(g)``, ``I(a**2)``,
        ``log(x)``, ``center(x)``, ``bs(x, df=4)``, ``.`` for all other columns, ...
        Interactions must be pairwise and have both main effects in the formula.
        ``0 +``/``- 1`` are accepted but ignored (the models always have an intercept).
    data : pandas.DataFrame
        The fit data. Columns of category, object or string dtype, and anything wrapped in
        ``C()``, are categorical: coded with reduced-rank treatment contrasts (the first
        level is the baseline; explicit contrasts such as ``C(g, contr.sum)`` are honoured,
        still reduced-rank). Numeric and bool columns are used as they are (bool as 0/1).
    gate : str, optional
        One-sided formula (``"~ x1 + g"``) of the gate's inputs; no interactions.
    name : str, default "formula"
        The argument name used in error messages about ``formula``.

    Returns
    -------
    design : FormulaDesign
        The fitted design (columns, interaction pairs, state for new data and saving).
    X : pandas.DataFrame
        float64 base design with columns ``design.all_columns`` (expert base columns,
        then gate-only columns) and the index of ``data``. Interaction product columns
        are not included: the models form them from ``design.interactions``.
    y : numpy.ndarray or None
        The target as a 1-D float64 array, or None for a one-sided formula.

    Raises
    ------
    TypeError
        If ``formula``/``gate`` is not a string, ``data`` is not a DataFrame, or the
        target is not numeric.
    ValueError
        If a formula cannot be parsed, has an empty right-hand side, a non-pairwise
        interaction, an interaction without its main effects, a left-hand side of more
        than one column (or any in ``gate``), names an unknown column, or uses a column
        with missing or infinite values.

    Examples
    --------
    >>> df = pd.DataFrame({"y": [1.0, 2, 3, 4], "a": [0.1, 0.5, 0.2, 0.9], "g": list("uvwu")})
    >>> design, X, y = design_from_formula("y ~ a * g", df)
    >>> design.columns
    ['a', 'g[T.v]', 'g[T.w]']
    >>> design.interactions
    [('a', 'g[T.v]'), ('a', 'g[T.w]')]
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not isinstance(formula, str):
        raise TypeError(f"{name} must be a str such as 'y ~ a + b', got {type(formula).__name__}")
    if gate is not None and not isinstance(gate, str):
        raise TypeError(f"gate must be None or a str such as '~ x1', got {type(gate).__name__}")
    _check_frame(data, name)
    names = [c for c in data.columns if isinstance(c, str)]

    parsed = _parse(formula, name, names)
    target_vars = _required(parsed.lhs)
    available = {name: _available(formula, names, name)}
    parsed_gate: _Parsed | None = None
    if gate is not None:
        gate_names = [c for c in names if c not in target_vars]
        parsed_gate = _parse(gate, "gate", gate_names)
        available["gate"] = _available(gate, gate_names, "gate")

    rhs = _rhs_formula(parsed)
    rhs_vars = _required(rhs)
    gate_rhs = _rhs_formula(parsed_gate) if parsed_gate is not None else None
    gate_vars = _required(gate_rhs)
    # Column checks, before anything is evaluated: target first, then the inputs.
    _check_columns(data, target_vars, name, what="target column")
    _check_columns(data, rhs_vars, name)
    _check_columns(data, gate_vars, "gate")
    for arg, used in ((name, rhs_vars), ("gate", gate_vars)):
        leaked = sorted(set(used) & set(target_vars))
        if leaked:
            raise ValueError(
                f"{arg}: the target column '{leaked[0]}' is also used as an input; "
                "remove it from the right-hand side"
            )
    for col in target_vars:
        if not _is_numeric(data[col]) or pd.api.types.is_bool_dtype(data[col]):
            raise TypeError(
                f"{name}: target column '{col}' must be numeric, got dtype {data[col].dtype}"
            )

    parts: dict[str, Any] = {}
    y: np.ndarray | None = None
    target: str | None = None
    if parsed.lhs is not None:
        lhs_spec, y, target = _target(parsed.lhs, data, name, formula, None)
        parts["lhs"] = {**_encode_state(lhs_spec, name), "columns": [target]}

    matrix, spec = _materialize(rhs, data, name, formula, None)
    columns, interactions, interaction_columns = _structure(spec, name, formula)
    if not columns:
        raise ValueError(
            f"{name}: {formula!r} gives no design columns on this data (a categorical column "
            "with a single level codes to no dummy columns)"
        )
    parts["rhs"] = _part_state(spec, name, set(data.columns), rhs_vars, columns)
    X = _float_frame(matrix, columns, name)
    _check_products(matrix, interactions, interaction_columns)

    gate_columns: list[str] | None = None
    frames = [X]
    if gate_rhs is not None:
        gate_matrix, gate_spec = _materialize(gate_rhs, data, "gate", str(gate), None)
        gate_columns, _, _ = _structure(gate_spec, "gate", str(gate))
        if not gate_columns:
            raise ValueError(
                f"gate: {gate!r} gives no design columns on this data (a categorical column "
                "with a single level codes to no dummy columns)"
            )
        parts["gate"] = _part_state(gate_spec, "gate", set(data.columns), gate_vars, gate_columns)
        frames.append(_float_frame(gate_matrix, gate_columns, "gate"))

    kinds = {
        col: ("numeric" if _is_numeric(data[col]) else "categorical")
        for col in dict.fromkeys([*rhs_vars, *gate_vars])
    }
    design = FormulaDesign(
        formula=formula,
        target=target,
        columns=columns,
        interactions=interactions,
        gate_columns=gate_columns,
        gate=gate,
        interaction_columns=interaction_columns,
        name=name,
        state={
            "parts": parts,
            "kinds": kinds,
            "target_variables": target_vars,
            "available": available,
        },
    )
    X = _union(frames, design.all_columns, name)
    X.index = data.index
    _self_check(design, data, X)
    return design, X, y


def _structure(
    spec: ModelSpec, arg: str, text: str
) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """Base columns, interaction pairs and interaction names from formulaic's structure."""
    assert spec.structure is not None
    main_columns: dict[str, list[str]] = {}
    columns: list[str] = []
    interactions: list[tuple[str, str]] = []
    interaction_columns: list[str] = []
    for row in spec.structure:
        term, term_columns = row.term, list(row.columns)
        factors = list(term.factors)
        if term_columns == [_INTERCEPT] and str(term) == "1":
            continue
        if len(factors) == 1:
            main_columns[factors[0].expr] = term_columns
            columns.extend(term_columns)
            continue
        first, second = (main_columns[f.expr] for f in factors)
        # formulaic names a product column "<col of factor 1>:<col of factor 2>".
        products = {f"{b}:{a}": (a, b) for a in first for b in second}
        products.update({f"{a}:{b}": (a, b) for a in first for b in second})
        for col in term_columns:
            if col not in products:
                raise ValueError(
                    f"{arg}: interaction term '{term}' in {text!r} was coded as column "
                    f"'{col}', which is not a product of the main-effect columns {first} "
                    f"and {second}"
                )
            interactions.append(products[col])
            interaction_columns.append(col)
        if len(term_columns) != len(first) * len(second):
            raise ValueError(
                f"{arg}: interaction term '{term}' in {text!r} has {len(term_columns)} "
                f"columns, expected {len(first) * len(second)} products of {first} and {second}"
            )
    if len(set(columns)) != len(columns):
        raise ValueError(f"{arg}: {text!r} gives duplicate design columns {columns}")
    return columns, interactions, interaction_columns


def _part_state(
    spec: ModelSpec,
    arg: str,
    data_columns: set[str],
    variables: Sequence[str],
    base: Sequence[str],
) -> dict[str, Any]:
    state = _encode_state(spec, arg)
    level_sources = {}
    for expr, (kind, value) in spec.encoder_state.items():
        if kind is Factor.Kind.CATEGORICAL and "categories" in value:
            source = _categorical_source(expr, data_columns)
            if source is not None:
                level_sources[expr] = source
    return {
        **state,
        "columns": list(spec.column_names),
        "base": list(base),
        "variables": list(variables),
        "level_sources": level_sources,
    }


def _check_products(
    matrix: pd.DataFrame, interactions: Sequence[tuple[str, str]], names: Sequence[str]
) -> None:
    """Internal consistency: each interaction column is the product of its pair."""
    for (a, b), col in zip(interactions, names, strict=True):
        product = np.asarray(matrix[a], dtype=np.float64) * np.asarray(matrix[b], dtype=float)
        if not np.allclose(product, np.asarray(matrix[col], dtype=np.float64), equal_nan=True):
            raise RuntimeError(f"bayesmoe bug: column '{col}' is not '{a}' * '{b}'")


def _self_check(design: FormulaDesign, data: pd.DataFrame, X: pd.DataFrame) -> None:
    """The saved state (after a JSON round trip) reproduces the fit design."""
    rows = data.iloc[:_SELF_CHECK_ROWS]
    reloaded = FormulaDesign.from_dict(json.loads(json.dumps(design.to_dict())))
    again = reloaded.transform(rows)
    if list(again.columns) != list(X.columns) or not np.allclose(
        again.to_numpy(), X.iloc[:_SELF_CHECK_ROWS].to_numpy(), rtol=1e-12, atol=1e-12
    ):
        raise RuntimeError(
            f"bayesmoe bug: the saved state of {design.formula!r} does not reproduce its design"
        )
