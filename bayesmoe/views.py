r"""What a fitted model says, read from its posterior: conditional effects, slopes,
comparisons and the gate-and-experts picture.

Every number here is a function of the posterior draws of the expected response

.. math::

    m_s(x) = \sum_k \pi_{k,s}(x)\, \mu_{k,s}(x)

(one term with :math:`\pi = 1` for :class:`~bayesmoe.InteractionRegression`; for
:class:`~bayesmoe.HierarchicalStacking` the members' :math:`m(x)` weighted by the
stacking weights :math:`w_s(x)`, member draws paired with stacking draws as in
:meth:`HierarchicalStacking.predict`), on the user's scale of ``y``. Bands are central
posterior intervals of probability ``prob`` (equal-tailed quantiles of the draws).

The variables not varied are held at their means (numeric) or reference, i.e. first,
levels (categorical from a formula); each result's ``attrs["held"]`` names those values
and the figure's caption repeats them. Slopes and comparisons average over the data rows
instead (Bambi's ``interpret`` module; Arel-Bundock's *marginaleffects*): the average
derivative :math:`\frac1n \sum_i \partial m_s(x_i) / \partial a` by central finite
differences, and the average change :math:`\frac1n \sum_i m_s(x_i; a=hi) - m_s(x_i;
a=lo)`, each a posterior of draws summarised by its mean and band.

Each function returns a :class:`ViewFrame`: a tidy :class:`pandas.DataFrame` whose
``figure`` (a matplotlib Figure, when drawn) and ``draws`` (the posterior draws behind
slopes and comparisons) are attributes, not ``attrs``: pandas deep-copies ``attrs`` in
every operation, which would copy (and, in Jupyter, show again) the figure each time.

Functions never change the estimator (nothing is stored in its ``idata_``), except
:func:`plot_gate`, which calls :meth:`responsibilities` (that stores its posterior mean
as the estimator's ``predictions`` group).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayesmoe.estimators import GatedExperts, InteractionRegression, MixtureRegression
from bayesmoe.stacking import HierarchicalStacking

__all__ = [
    "ViewFrame",
    "comparisons",
    "conditional_effects",
    "mean_draws",
    "plot_effects",
    "plot_gate",
    "slopes",
]

#: rows evaluated at once when averaging over data rows (bounds draws x rows temporaries)
ROW_BLOCK = 2000

_MIXTURES = (MixtureRegression, GatedExperts)


class ViewFrame(pd.DataFrame):
    """A tidy table of a view, carrying its ``figure`` and ``draws`` by reference.

    A :class:`pandas.DataFrame` in every respect; ``figure`` is the matplotlib Figure of
    the view (None when ``plot=False`` or for slopes and comparisons) and ``draws`` the
    posterior draws summarised by a slope or a comparison (None otherwise). Results of
    pandas operations on it keep both (pandas' ``_metadata`` mechanism, by reference).
    """

    _metadata = ["figure", "draws"]  # noqa: RUF012 - pandas' subclassing protocol

    figure = None
    draws = None

    @property
    def _constructor(self):
        return ViewFrame


# ---------------------------------------------------------------------- the posterior
def _design(est, frame: pd.DataFrame) -> np.ndarray:
    """The estimator's raw design matrix for ``frame`` (formula-coded when fitted so)."""
    design = getattr(est, "formula_design_", None)
    if design is not None:
        return design.transform(frame).to_numpy(float)
    return frame[list(est.feature_names_in_)].to_numpy(float)


def _pair(values: np.ndarray, S: int) -> np.ndarray:
    """Member draws (S_m, ...) spread onto S stacking draws: draw s takes floor(s S_m / S)."""
    return values[(np.arange(S) * values.shape[0]) // S]


def _mixture_parts(est, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Gate probabilities and expert means on the user's scale, each (S, n, K)."""
    spec = est.model_.bayesmoe_spec
    post = est.working_view()["posterior"].to_dataset()
    Xw = est.standardizer_.transform_X(_design(est, frame))
    pi = np.exp(spec.log_weights(post, Xw).values)
    mu = est.standardizer_.inverse_y(spec.component_means(post, Xw).values)
    S = pi.shape[0] * pi.shape[1]
    return pi.reshape(S, *pi.shape[2:]), np.asarray(mu).reshape(S, *pi.shape[2:])


def mean_draws(est, frame: pd.DataFrame) -> np.ndarray:
    r"""Posterior draws of the expected response :math:`m_s(x_i)`, shape (draws, rows).

    On the user's scale of ``y``; ``frame`` holds the columns the estimator was fitted on
    (the formula's variables for a formula fit).
    """
    if isinstance(est, HierarchicalStacking):
        spec = est.model_.bayesmoe_spec
        post = est.idata_["posterior"].to_dataset()
        Xw = est.standardizer_.transform_X(_design(est, frame))
        names = list(est.feature_names_in_)
        gate_X = Xw[:, [names.index(c) for c in est.gate_columns_]]
        w = np.exp(spec.log_weights(post, gate_X).values)
        S = w.shape[0] * w.shape[1]
        w = w.reshape(S, *w.shape[2:])
        out = np.zeros(w.shape[:2])
        for k, member in enumerate(est.members_.values()):
            out += w[..., k] * _pair(mean_draws(member, frame), S)
        return out
    if isinstance(est, _MIXTURES):
        pi, mu = _mixture_parts(est, frame)
        return (pi * mu).sum(axis=-1)
    if isinstance(est, InteractionRegression):
        post = est.working_view()["posterior"].to_dataset()
        Xw = est.standardizer_.transform_X(_design(est, frame))
        # E[y | x] per draw: the linear predictor through the family's inverse link
        eta = est.model_.bayesmoe_spec.response_mean(post, Xw).values
        eta = np.asarray(est.standardizer_.inverse_y(eta))
        return eta.reshape(eta.shape[0] * eta.shape[1], -1)
    raise TypeError(f"no conditional effects for {type(est).__name__}")


# ---------------------------------------------------------------------- the data
def _training_frame(est) -> pd.DataFrame:
    """The (stored) training rows on the user's scale; formula fits need ``data=``."""
    if getattr(est, "formula_design_", None) is not None:
        raise ValueError(
            "this model was fitted with a formula: pass data= (a DataFrame with the "
            "formula's variables) to say over which rows to read it"
        )
    const = est.idata_["constant_data"]
    Xw = const["X_full" if "X_full" in const.data_vars else "X_base"].values
    names = list(est.feature_names_in_)
    if Xw.shape[1] != len(names):
        raise ValueError("the stored training rows lack some features: pass data=")
    std = est.standardizer_
    return pd.DataFrame(Xw * std.x_scale + std.x_mean, columns=names)


def _inputs(est, data) -> pd.DataFrame:
    """The columns of ``data`` the estimator reads (the formula's variables, or its
    features); default the stored training rows."""
    if data is None:
        return _training_frame(est)
    frame = pd.DataFrame(data)
    design = getattr(est, "formula_design_", None)
    names = design.variables if design is not None else list(est.feature_names_in_)
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise ValueError(f"data lacks the columns {missing}")
    return frame[names]


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _levels(est, frame: pd.DataFrame, var: str) -> list:
    design = getattr(est, "formula_design_", None)
    if design is not None:
        for key, levels in design.levels.items():
            if key == var or key in (f"C({var})",):
                return list(levels)
    return sorted(pd.unique(frame[var]).tolist())


def _held(est, frame: pd.DataFrame, varied: list[str]) -> dict:
    """Each other variable's held value: its mean, or its reference (first) level."""
    held = {}
    for col in frame.columns:
        if col in varied:
            continue
        values = frame[col]
        held[col] = float(values.mean()) if _is_numeric(values) else _levels(est, frame, col)[0]
    return held


def _values(est, frame: pd.DataFrame, var: str, points: int, quantiles=None) -> list:
    if var not in frame.columns:
        raise ValueError(f"{var!r} is not a column of the data ({list(frame.columns)})")
    values = frame[var]
    if not _is_numeric(values):
        return _levels(est, frame, var)
    if quantiles is not None:
        return [float(q) for q in np.quantile(values, quantiles)]
    lo, hi = np.quantile(values, [0.01, 0.99])
    return np.linspace(lo, hi, points).tolist()


def _summary(draws: np.ndarray, prob: float) -> dict[str, np.ndarray]:
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    tail = (1 - prob) / 2
    lower, upper = np.quantile(draws, [tail, 1 - tail], axis=0)
    return {"mean": draws.mean(axis=0), "lower": lower, "upper": upper}


def _caption(held: dict, prob: float) -> str:
    shown = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in held.items()
    )
    return f"posterior mean, {prob:.0%} band; held at means / reference levels: {shown or 'none'}"


# ---------------------------------------------------------------------- effects
def conditional_effects(
    est,
    term: str,
    *,
    data=None,
    prob: float = 0.9,
    points: int = 50,
    plot: bool = True,
    surface: bool = False,
) -> ViewFrame:
    r"""The expected response as ``a`` varies (``"a"``), at a few values of ``b``
    (``"a:b"``), or over both (``"a:b"``, ``surface=True``), the other variables held at
    their means / reference levels.

    Parameters
    ----------
    est : fitted InteractionRegression, MixtureRegression, GatedExperts or
        HierarchicalStacking
    term : str
        ``"a"`` or ``"a:b"``. A numeric ``a`` runs over ``points`` values spanning the
        data's 1-99 % quantiles, a categorical one over its levels; a numeric ``b`` takes
        its 10/50/90 % quantiles, a categorical one its levels.
    data : DataFrame, optional
        The rows that set the ranges and the held values; default the stored training
        rows (required for formula fits).
    prob : float
        Probability of the central credible band.
    points : int
        Number of values of a numeric ``a`` (and, for a surface, of ``b``: a ``points``
        x ``points`` grid).
    plot : bool
        Also draw the figure (the result's ``figure``, a matplotlib Figure).
    surface : bool
        For ``term="a:b"`` with two numeric variables: both run over ``points`` values
        spanning their 1-99 % quantiles, and the figure shows two filled-contour panels,
        the posterior mean of :math:`m(x)` with the data points overlaid and the band width
        ``upper - lower``.

    Returns
    -------
    ViewFrame
        Columns: the varied variables, ``mean``, ``lower``, ``upper`` (user's scale of
        ``y``); a surface has one row per grid point, ``b`` varying fastest.
        ``attrs``: ``term``, ``prob``, ``held`` (variable -> held value), ``surface``;
        ``figure`` when ``plot``.

    Raises
    ------
    ValueError
        A malformed ``term``, a column not in the data, or ``surface=True`` with other
        than two numeric variables.
    """
    frame = _inputs(est, data)
    varied = term.split(":")
    if len(varied) not in (1, 2) or len(set(varied)) != len(varied):
        raise ValueError(f"term must be 'a' or 'a:b' with distinct names, got {term!r}")
    if surface:
        _check_surface(frame, term, varied)
    grid_a = _values(est, frame, varied[0], points)
    if len(varied) == 1:
        pairs = [(a, None) for a in grid_a]
    elif surface:
        pairs = [(a, b) for a in grid_a for b in _values(est, frame, varied[1], points)]
    else:
        grid_b = _values(est, frame, varied[1], 3, [0.1, 0.5, 0.9])
        pairs = [(a, b) for b in grid_b for a in grid_a]
    held = _held(est, frame, varied)
    rows = []
    for a, b in pairs:
        row = dict(held)
        row[varied[0]] = a
        if b is not None:
            row[varied[1]] = b
        rows.append(row)
    grid = pd.DataFrame(rows, columns=list(frame.columns))
    for col in frame.columns:  # keep categorical dtypes (and their level order)
        if not _is_numeric(frame[col]):
            grid[col] = grid[col].astype(frame[col].dtype)
    out = ViewFrame(grid[varied].reset_index(drop=True))
    for key, value in _blocked_summary(lambda rows: mean_draws(est, rows), grid, prob).items():
        out[key] = value
    out.attrs.update(term=term, prob=prob, held=held, surface=bool(surface))
    if plot:
        out.figure = _surface_figure(out, frame) if surface else plot_effects(out)
    return out


def _check_surface(frame: pd.DataFrame, term: str, varied: list[str]) -> None:
    """A surface needs ``term="a:b"`` of two numeric columns of the data."""
    if len(varied) != 2:
        raise ValueError(f"surface=True needs term='a:b' (two variables), got term={term!r}")
    for var in varied:
        if var not in frame.columns:
            raise ValueError(f"term: {var!r} is not a column of the data ({list(frame.columns)})")
        if not _is_numeric(frame[var]):
            raise ValueError(
                f"surface=True needs two numeric variables; {var!r} of term={term!r} is "
                "categorical (use surface=False: a at each level)"
            )


def _blocked_summary(values, grid: pd.DataFrame, prob: float) -> dict[str, np.ndarray]:
    """:func:`_summary` of ``values(rows)`` (draws x rows [x ...]) over ``grid`` in blocks
    of :data:`ROW_BLOCK` rows (bounds the draws x rows temporaries)."""
    parts = [
        _summary(values(grid.iloc[start : start + ROW_BLOCK]), prob)
        for start in range(0, len(grid), ROW_BLOCK)
    ]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _surface_figure(effects: pd.DataFrame, frame: pd.DataFrame):
    """Two filled-contour panels of a surface: the posterior mean with the data points,
    and the band width ``upper - lower``; a colour bar each."""
    import matplotlib.pyplot as plt

    a, b = effects.attrs["term"].split(":")
    wide = effects.assign(width=effects["upper"] - effects["lower"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True, layout="constrained")
    panels = (("mean", "posterior mean of m(x)", "viridis"), ("width", "band width", "magma"))
    for ax, (column, title, cmap) in zip(axes, panels, strict=True):
        table = wide.pivot(index=b, columns=a, values=column)
        filled = ax.contourf(table.columns, table.index, table.to_numpy(), levels=20, cmap=cmap)
        fig.colorbar(filled, ax=ax, label=title)
        ax.scatter(frame[a], frame[b], s=6, c="white", edgecolors="black", linewidths=0.3)
        ax.set_xlim(table.columns.min(), table.columns.max())
        ax.set_ylim(table.index.min(), table.index.max())
        ax.set_xlabel(a)
        ax.set_title(f"{title}" if column == "mean" else f"{title} ({effects.attrs['prob']:.0%})")
    axes[0].set_ylabel(b)
    fig.text(
        0.01, 0.0, _caption(effects.attrs["held"], effects.attrs["prob"]), fontsize=7, va="bottom"
    )
    fig.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))
    return fig


def plot_effects(effects: pd.DataFrame):
    """The figure of a :func:`conditional_effects` result: lines (numeric ``a``) or points
    with error bars (categorical ``a``), one per value of ``b``, with their bands."""
    import matplotlib.pyplot as plt

    varied = effects.attrs["term"].split(":")
    a = varied[0]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    groups = (
        [(None, effects)] if len(varied) == 1 else list(effects.groupby(varied[1], sort=False))
    )
    numeric = _is_numeric(effects[a])
    for i, (b, part) in enumerate(groups):
        label = (
            None
            if b is None
            else f"{varied[1]} = {b:.3g}"
            if isinstance(b, float)
            else f"{varied[1]} = {b}"
        )
        color = f"C{i}"
        if numeric:
            ax.plot(part[a], part["mean"], color=color, label=label)
            ax.fill_between(part[a], part["lower"], part["upper"], color=color, alpha=0.25)
        else:
            x = np.arange(len(part)) + 0.1 * (i - (len(groups) - 1) / 2)
            err = [part["mean"] - part["lower"], part["upper"] - part["mean"]]
            ax.errorbar(x, part["mean"], yerr=err, fmt="o", color=color, label=label, capsize=3)
            ax.set_xticks(np.arange(len(part)), [str(v) for v in part[a]])
    ax.set_xlabel(a)
    ax.set_ylabel("expected response")
    if len(varied) == 2:
        ax.legend()
    fig.text(
        0.01, 0.0, _caption(effects.attrs["held"], effects.attrs["prob"]), fontsize=7, va="bottom"
    )
    fig.get_layout_engine().set(rect=(0, 0.04, 1, 0.96))
    return fig


def _averaged(est, frame: pd.DataFrame, change) -> np.ndarray:
    """Posterior draws of (1/n) sum_i change(m, rows_i), in row blocks."""
    total = 0.0
    for start in range(0, len(frame), ROW_BLOCK):
        total = total + change(frame.iloc[start : start + ROW_BLOCK]).sum(axis=1)
    return total / len(frame)


def _one_row(term: str, draws: np.ndarray, prob: float, **extra) -> ViewFrame:
    out = ViewFrame(
        [{"term": term, **extra, **{k: float(v) for k, v in _summary(draws, prob).items()}}]
    )
    out.attrs.update(prob=prob)
    out.draws = draws
    return out


def slopes(est, var: str, *, data=None, prob: float = 0.9, eps: float | None = None) -> ViewFrame:
    r"""Average derivative of the expected response with respect to a numeric ``var``.

    :math:`\frac1n \sum_i [m_s(x_i + h e_a) - m_s(x_i - h e_a)] / 2h` for every draw,
    over the rows of ``data`` (default the stored training rows), with ``h = eps``
    (default :math:`10^{-4}` times the sd of ``var``). Returns one row: ``term``,
    ``mean``, ``lower``, ``upper``; its ``draws`` attribute holds the draws.
    """
    frame = _inputs(est, data)
    if var not in frame.columns or not _is_numeric(frame[var]):
        raise ValueError(f"slopes need a numeric column of the data, got {var!r}")
    h = float(eps) if eps is not None else 1e-4 * (float(frame[var].std()) or 1.0)

    def change(rows):
        up, down = rows.copy(), rows.copy()
        up[var] = rows[var] + h
        down[var] = rows[var] - h
        return (mean_draws(est, up) - mean_draws(est, down)) / (2 * h)

    return _one_row(var, _averaged(est, frame, change), prob)


def comparisons(est, var: str, values=None, *, data=None, prob: float = 0.9) -> ViewFrame:
    r"""Average change of the expected response when ``var`` goes from ``lo`` to ``hi``.

    :math:`\frac1n \sum_i m_s(x_i; var=hi) - m_s(x_i; var=lo)` for every draw, over the
    rows of ``data`` (default the stored training rows). ``values=(lo, hi)``; default
    the 10 and 90 % quantiles of a numeric ``var``, the first two levels of a
    categorical one. Returns one row: ``term``, ``lo``, ``hi``, ``mean``, ``lower``,
    ``upper``; its ``draws`` attribute holds the draws.
    """
    frame = _inputs(est, data)
    if values is None:
        values = _values(est, frame, var, 0, [0.1, 0.9])[:2]
    lo, hi = values

    def change(rows):
        at_lo, at_hi = rows.copy(), rows.copy()
        at_lo[var] = lo
        at_hi[var] = hi
        if not _is_numeric(frame[var]):
            at_lo[var] = at_lo[var].astype(frame[var].dtype)
            at_hi[var] = at_hi[var].astype(frame[var].dtype)
        return mean_draws(est, at_hi) - mean_draws(est, at_lo)

    return _one_row(var, _averaged(est, frame, change), prob, lo=lo, hi=hi)


# ---------------------------------------------------------------------- gate view
def plot_gate(
    est,
    var: str | list[str],
    *,
    data=None,
    y=None,
    prob: float = 0.9,
    points: int | None = None,
    plot: bool = True,
) -> ViewFrame:
    r"""Experts and gate along one input or over two: each expert's mean
    :math:`\mu_k(x)` and the gate probabilities :math:`\pi_k(x)`, with bands, the other
    variables at their means / reference levels, and the data coloured by posterior
    responsibility.

    Parameters
    ----------
    est : fitted MixtureRegression or GatedExperts
    var : str or list of two str
        The numeric input(s). One input: on the x axis, its grid of ``points`` values
        spanning the data's 1-99 % quantiles. Two inputs ``[v1, v2]``: a ``points`` x
        ``points`` grid over both ranges.
    data, y : optional
        The rows shown (and that set the range and held values) with their targets;
        default the stored training rows and ``y``.
    points : int, optional
        Grid values per input; default 100 for one input, 40 for two.

    Returns
    -------
    ViewFrame
        One input, tidy: ``var``, ``expert``, ``quantity`` (``"expert_mean"`` or
        ``"gate"``), ``mean``, ``lower``, ``upper``; ``figure`` (two panels: experts over
        the data, gate probabilities) when ``plot``. Two inputs: ``v1``, ``v2``,
        ``expert``, ``quantity`` (``"expert_mean"`` or ``"gate"``), ``mean``, ``lower``,
        ``upper``, ``v2`` varying fastest; ``figure``: two rows of one panel per expert,
        the posterior mean of :math:`\pi_k(x)` on a shared 0-1 colour scale and of
        :math:`\mu_k(x)` on a shared scale, the data points coloured by their most
        responsible expert. ``attrs``: ``prob``, ``held``.

    Raises
    ------
    TypeError
        ``est`` is not a mixture.
    ValueError
        ``var`` names other than one or two distinct numeric columns of the data.
    """
    if not isinstance(est, _MIXTURES):
        raise TypeError(
            f"plot_gate needs a MixtureRegression or GatedExperts, got {type(est).__name__}"
        )
    names = [var] if isinstance(var, str) else list(var)
    if len(names) not in (1, 2) or len(set(names)) != len(names):
        raise ValueError(f"var must be one input or a list of two distinct ones, got {var!r}")
    frame = _inputs(est, data)
    if y is None:
        if data is not None:
            raise ValueError("pass y= with data=")
        y = est.idata_["observed_data"]["y"].values
    y = np.asarray(y, float)
    for name in names:
        if name not in frame.columns or not _is_numeric(frame[name]):
            raise ValueError(f"var: plot_gate needs a numeric column of the data, got {name!r}")
    if len(names) == 2:
        return _gate_surface(est, frame, y, names, prob, 40 if points is None else points, plot)
    var, points = names[0], 100 if points is None else points
    grid_x = np.asarray(_values(est, frame, var, points))
    held = _held(est, frame, [var])
    grid = pd.DataFrame([{**held, var: x} for x in grid_x], columns=list(frame.columns))
    pi, mu = _mixture_parts(est, grid)
    experts = list(est.model_.coords["expert"])
    parts = []
    for quantity, draws in (("expert_mean", mu), ("gate", pi)):
        for k, name in enumerate(experts):
            part = pd.DataFrame({var: grid_x, "expert": name, "quantity": quantity})
            for key, value in _summary(draws[..., k], prob).items():
                part[key] = value
            parts.append(part)
    out = ViewFrame(pd.concat(parts, ignore_index=True))
    out.attrs.update(prob=prob, held=held)
    if plot:
        resp = est.responsibilities(frame, y)
        out.figure = _gate_figure(out, var, frame[var].to_numpy(float), y, resp, experts)
    return out


def _gate_figure(out: pd.DataFrame, var: str, x, y, resp: np.ndarray, experts: list):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(6.4, 6.4), height_ratios=(2, 1), layout="constrained"
    )
    colors = np.array([to_rgb(f"C{k}") for k in range(len(experts))])
    top.scatter(x, y, c=np.clip(resp @ colors, 0, 1), s=10, alpha=0.6, linewidths=0)
    for k, name in enumerate(experts):
        for ax, quantity in ((top, "expert_mean"), (bottom, "gate")):
            part = out[(out["expert"] == name) & (out["quantity"] == quantity)]
            ax.plot(part[var], part["mean"], color=f"C{k}", label=f"expert {name}")
            ax.fill_between(part[var], part["lower"], part["upper"], color=f"C{k}", alpha=0.25)
    top.set_ylabel("y; expert means")
    top.legend(fontsize=8)
    bottom.set_ylabel(r"gate $\pi_k(x)$")
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_xlabel(var)
    caption = (
        _caption(out.attrs["held"], out.attrs["prob"]) + "; points coloured by responsibility"
    )
    fig.text(0.01, 0.0, caption, fontsize=7, va="bottom")
    fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))
    return fig


def _gate_surface(
    est, frame: pd.DataFrame, y: np.ndarray, names: list[str], prob: float, points: int, plot
) -> ViewFrame:
    """:func:`plot_gate` over two inputs: the gate probabilities on a grid."""
    v1, v2 = names
    held = _held(est, frame, names)
    grid1, grid2 = _values(est, frame, v1, points), _values(est, frame, v2, points)
    grid = pd.DataFrame(
        [{**held, v1: a, v2: b} for a in grid1 for b in grid2], columns=list(frame.columns)
    )
    experts = list(est.model_.coords["expert"])
    parts = []
    for quantity, which in (("expert_mean", 1), ("gate", 0)):
        summary = _blocked_summary(lambda rows, i=which: _mixture_parts(est, rows)[i], grid, prob)
        for k, name in enumerate(experts):
            part = pd.DataFrame({v1: grid[v1], v2: grid[v2], "expert": name})
            part["quantity"] = quantity
            for key, value in summary.items():
                part[key] = value[:, k]
            parts.append(part)
    out = ViewFrame(pd.concat(parts, ignore_index=True))
    out.attrs.update(prob=prob, held=held)
    if plot:
        resp = est.responsibilities(frame, y)
        out.figure = _gate_surface_figure(out, names, frame, resp.argmax(axis=1), experts)
    return out


def _gate_surface_figure(out: pd.DataFrame, names: list[str], frame, owner, experts: list):
    import matplotlib.pyplot as plt

    v1, v2 = names
    fig, axes = plt.subplots(
        2,
        len(experts),
        figsize=(4.2 * len(experts) + 1, 8.0),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    means = out[out["quantity"] == "expert_mean"]["mean"]
    rows = (
        ("gate", np.linspace(0, 1, 21), "viridis", r"gate $\pi_k(x)$", "posterior mean gate"),
        (
            "expert_mean",
            np.linspace(means.min(), means.max(), 21),
            "cividis",
            r"expert mean $\mu_k(x)$",
            "posterior mean of the expert's y",
        ),
    )
    for row, (quantity, levels, cmap, title, label) in zip(axes, rows, strict=True):
        filled = _expert_panels(row, out[out["quantity"] == quantity], names, levels, cmap)
        for ax, name in zip(row, experts, strict=True):
            ax.set_title(f"{title}, expert {name}")
            limits = ax.get_xlim(), ax.get_ylim()
            _owner_points(ax, frame, names, owner, experts, legend=ax is axes[0, 0])
            ax.set_xlim(*limits[0])
            ax.set_ylim(*limits[1])
        fig.colorbar(filled, ax=row.tolist(), label=label)
    for ax in axes[1]:
        ax.set_xlabel(v1)
    for ax in axes[:, 0]:
        ax.set_ylabel(v2)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    caption = _caption(out.attrs["held"], out.attrs["prob"]) + (
        "; points coloured by their most responsible expert"
    )
    fig.text(0.01, 0.0, caption, fontsize=7, va="bottom")
    fig.get_layout_engine().set(rect=(0, 0.02, 1, 0.98))
    return fig


def _expert_panels(row, part: pd.DataFrame, names: list[str], levels, cmap):
    """One filled contour of ``part``'s posterior mean per expert, on shared ``levels``."""
    v1, v2 = names
    filled = None
    for ax, name in zip(row, part["expert"].unique(), strict=True):
        table = part[part["expert"] == name].pivot(index=v2, columns=v1, values="mean")
        filled = ax.contourf(
            table.columns, table.index, table.to_numpy(), levels=levels, cmap=cmap
        )
        ax.set_xlim(table.columns.min(), table.columns.max())
        ax.set_ylim(table.index.min(), table.index.max())
    return filled


def _owner_points(ax, frame, names: list[str], owner, experts: list, legend: bool) -> None:
    """The data points coloured by their most responsible expert."""
    v1, v2 = names
    for j in range(len(experts)):
        mine = owner == j
        ax.scatter(
            frame[v1][mine],
            frame[v2][mine],
            s=12,
            color=f"C{j}",
            edgecolors="black",
            linewidths=0.4,
            label=f"most responsible: {experts[j]}" if legend else None,
        )
