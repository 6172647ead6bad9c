"""Conditional effects, slopes, comparisons and the gate view (bayesmoe.views)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmoe as bm
from bayesmoe import views
from bayesmoe.experiments import make_interaction_data, make_mixture_data
from tests.conftest import FAST


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="module")
def gated():
    data = make_mixture_data(200, 2, 1, gate="linear", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return data, bm.GatedExperts(n_experts=2, **FAST).fit(data.X, data.y)


@pytest.fixture(scope="module")
def gated2():
    """A gate over two inputs."""
    data = make_mixture_data(200, 2, 2, gate="linear", seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return data, bm.GatedExperts(n_experts=2, **FAST).fit(data.X, data.y)


def test_exported_lazily():
    for name in ("conditional_effects", "slopes", "comparisons", "plot_gate"):
        assert getattr(bm, name) is getattr(views, name)


def test_conditional_effects_grid_and_band(fitted, small_data):
    ce = bm.conditional_effects(fitted, "x0:x1", prob=0.8)
    assert list(ce.columns) == ["x0", "x1", "mean", "lower", "upper"]
    x = small_data.X
    assert len(ce) == 150 and ce["x1"].nunique() == 3
    np.testing.assert_allclose(sorted(ce["x1"].unique()), np.quantile(x["x1"], [0.1, 0.5, 0.9]))
    np.testing.assert_allclose(
        [ce["x0"].min(), ce["x0"].max()], np.quantile(x["x0"], [0.01, 0.99])
    )
    assert ce.attrs["held"] == pytest.approx({"x2": x["x2"].mean()})
    assert (ce["lower"] <= ce["mean"]).all() and (ce["mean"] <= ce["upper"]).all()
    fig = ce.figure
    assert "held at means" in " ".join(t.get_text() for t in fig.texts)
    # the posterior mean of m(x) is what predict returns at the same rows
    grid = pd.DataFrame({**ce.attrs["held"], "x0": ce["x0"], "x1": ce["x1"]})[list(x.columns)]
    np.testing.assert_allclose(ce["mean"], fitted.predict(grid), rtol=1e-8, atol=1e-10)


def test_conditional_effects_does_not_touch_the_fit(fitted):
    before = set(fitted.idata_.children)
    bm.conditional_effects(fitted, "x0", plot=False)
    assert set(fitted.idata_.children) == before


def test_slopes_and_comparisons_of_a_linear_term(fitted, small_data):
    s = bm.slopes(fitted, "x0")
    c = bm.comparisons(fitted, "x0", values=(-0.5, 0.5))
    # the model is linear in x0 given the others: a unit change equals the average slope
    assert c["mean"].iloc[0] == pytest.approx(s["mean"].iloc[0], rel=1e-4)
    assert s["lower"].iloc[0] < s["mean"].iloc[0] < s["upper"].iloc[0]
    # true average slope: w_0 + sum_b v_0b mean(x_b)
    X = small_data.X.to_numpy()
    true = small_data.w_base[0] + small_data.w_interaction[:2] @ X[:, 1:].mean(axis=0)
    assert abs(s["mean"].iloc[0] - true) < 0.6


def test_categorical_from_a_formula():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=150), "g": rng.choice(["u", "v", "w"], 150)})
    frame["y"] = frame["a"] * frame["g"].map({"u": 0.0, "v": 1.0, "w": -1.0}) + rng.normal(
        0, 0.3, 150
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bm.InteractionRegression.from_formula("y ~ a * g", frame, **FAST)
    with pytest.raises(ValueError, match="data="):
        bm.conditional_effects(est, "a")
    ce = bm.conditional_effects(est, "g:a", data=frame)
    assert list(ce["g"].unique()) == ["u", "v", "w"]
    ce = bm.conditional_effects(est, "a", data=frame, plot=False)
    assert ce.attrs["held"] == {"g": "u"}
    c = bm.comparisons(est, "g", data=frame)
    assert (c["lo"].iloc[0], c["hi"].iloc[0]) == ("u", "v")


def test_mixture_expected_value_and_gate_view(gated):
    _, est = gated
    ce = bm.conditional_effects(est, "x0", plot=False)
    frame = pd.DataFrame({"x0": ce["x0"]})
    np.testing.assert_allclose(ce["mean"], est.predict(frame), rtol=1e-8, atol=1e-10)
    view = bm.plot_gate(est, "x0")
    gate = view[view["quantity"] == "gate"].pivot(index="x0", columns="expert", values="mean")
    np.testing.assert_allclose(gate.sum(axis=1), 1.0)
    assert set(view["quantity"]) == {"expert_mean", "gate"}
    assert len(view.figure.axes) == 2


def test_plot_gate_refuses_other_estimators(fitted):
    with pytest.raises(TypeError, match="MixtureRegression or GatedExperts"):
        bm.plot_gate(fitted, "x0")


def test_stacking(regional_members):
    data, members = regional_members
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bm.HierarchicalStacking(**FAST).fit(members, data.X, data.y)
    ce = bm.conditional_effects(est, "x1:g", plot=False)
    assert np.isfinite(ce[["mean", "lower", "upper"]].to_numpy()).all()
    grid = pd.DataFrame({**ce.attrs["held"], "x1": ce["x1"], "g": ce["g"]})[
        list(est.feature_names_in_)
    ]
    np.testing.assert_allclose(ce["mean"], est.predict(grid), rtol=1e-6, atol=1e-8)


@pytest.mark.slow
def test_interaction_band_covers_the_truth():
    data = make_interaction_data(300, 6, 1.0, 0.3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bm.InteractionRegression(**{**FAST, "draws": 500, "tune": 500}).fit(data.X, data.y)
    ce = bm.conditional_effects(est, "x0:x1", plot=False)
    grid = pd.DataFrame({**ce.attrs["held"], "x0": ce["x0"], "x1": ce["x1"]})
    truth = dataclasses.replace(data, X=grid[list(data.X.columns)]).signal
    assert np.mean((ce["lower"] <= truth) & (truth <= ce["upper"])) >= 0.85


def test_surface_equals_the_lines_at_the_same_points(fitted, small_data):
    x = small_data.X
    surf = bm.conditional_effects(fitted, "x0:x1", surface=True, points=12, prob=0.8)
    assert list(surf.columns) == ["x0", "x1", "mean", "lower", "upper"]
    assert len(surf) == 144 and surf.attrs["surface"]
    for var in ("x0", "x1"):
        np.testing.assert_allclose(
            [surf[var].min(), surf[var].max()], np.quantile(x[var], [0.01, 0.99])
        )
    assert surf.attrs["held"] == pytest.approx({"x2": x["x2"].mean()})
    assert (surf["lower"] <= surf["mean"]).all() and (surf["mean"] <= surf["upper"]).all()
    # each row of the surface (x1 fixed at b) is the line view of x0 with x1 held at b
    for b in np.unique(surf["x1"])[[0, 5, 11]]:
        line = bm.conditional_effects(
            fitted, "x0", data=x.assign(x1=b), points=12, prob=0.8, plot=False
        )
        assert line.attrs["held"]["x1"] == pytest.approx(b, rel=1e-14)
        part = surf[surf["x1"] == b]
        np.testing.assert_allclose(part["x0"], line["x0"], rtol=0, atol=1e-12)
        for col in ("mean", "lower", "upper"):
            np.testing.assert_allclose(part[col], line[col], rtol=1e-12, atol=1e-12)
    fig = surf.figure
    # two panels and their two colour bars
    assert len(fig.axes) == 4
    assert "held at means" in " ".join(t.get_text() for t in fig.texts)


def test_surface_refuses_bad_terms(fitted):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=80), "g": rng.choice(["u", "v"], 80)})
    frame["y"] = frame["a"] * frame["g"].map({"u": 0.0, "v": 1.0}) + rng.normal(0, 0.3, 80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bm.InteractionRegression.from_formula("y ~ a * g", frame, **FAST)
    with pytest.raises(ValueError, match=r"term.*categorical"):
        bm.conditional_effects(est, "a:g", data=frame, surface=True)
    with pytest.raises(ValueError, match="term='a:b'"):
        bm.conditional_effects(fitted, "x0", surface=True)
    with pytest.raises(ValueError, match="'nope' is not a column"):
        bm.conditional_effects(fitted, "x0:nope", surface=True)


def test_gate_over_two_inputs(gated2):
    data, est = gated2
    view = bm.plot_gate(est, ["x0", "x1"], points=9)
    assert list(view.columns) == ["x0", "x1", "expert", "quantity", "mean", "lower", "upper"]
    assert set(view["quantity"]) == {"gate", "expert_mean"} and view["expert"].nunique() == 2
    assert len(view) == 2 * 2 * 81
    gate = view[view["quantity"] == "gate"]
    total = gate.groupby(["x0", "x1"])["mean"].sum()
    assert len(total) == 81
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    assert ((gate["lower"] >= 0) & (gate["upper"] <= 1)).all()
    assert (view["lower"] <= view["mean"]).all() and (view["mean"] <= view["upper"]).all()
    # one input is the 1-D view, the same numbers as before
    one = bm.plot_gate(est, ["x0"], plot=False)
    same = bm.plot_gate(est, "x0", plot=False)
    pd.testing.assert_frame_equal(pd.DataFrame(one), pd.DataFrame(same))
    assert len(same) == 2 * 2 * 100
    # the 2-D view at a grid point equals the 1-D view with the other input held there
    x1 = np.unique(view["x1"])[4]
    line = bm.plot_gate(est, "x0", data=data.X.assign(x1=x1), y=data.y, points=9, plot=False)
    for quantity in ("gate", "expert_mean"):
        for name in view["expert"].unique():
            np.testing.assert_allclose(
                view[
                    (view["expert"] == name) & (view["x1"] == x1) & (view["quantity"] == quantity)
                ]["mean"],
                line[(line["expert"] == name) & (line["quantity"] == quantity)]["mean"],
                rtol=1e-12,
                atol=1e-12,
            )
    # two rows (gate, expert means) of one panel per expert, a colour bar per row
    assert len(view.figure.axes) == 2 * 2 + 2


def test_gate_over_two_inputs_refuses_bad_input(gated2, fitted):
    _, est = gated2
    with pytest.raises(ValueError, match="two distinct"):
        bm.plot_gate(est, ["x0", "x0"])
    with pytest.raises(ValueError, match="two distinct"):
        bm.plot_gate(est, ["x0", "x1", "x0"])
    with pytest.raises(ValueError, match=r"var: .*'nope'"):
        bm.plot_gate(est, ["x0", "nope"])
    with pytest.raises(TypeError, match="MixtureRegression or GatedExperts"):
        bm.plot_gate(fitted, ["x0", "x1"])
