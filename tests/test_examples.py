"""Notebooks, model scripts and the command line, executed with small draws."""

import os
import subprocess
import sys
from pathlib import Path

import arviz as az
import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

import bayesmoe as bm
from bayesmoe.cli import main

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SCRIPTS = sorted((ROOT / "models").glob("*.py"))
SMALL = ["--draws", "100", "--tune", "100", "--chains", "2", "--sampler", "pymc", "--no-progress"]


def _is_png(path: Path) -> bool:
    """A PNG that matplotlib reads back as a non-empty image."""
    import matplotlib.image

    if path.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    return min(matplotlib.image.imread(path).shape[:2]) > 100


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path, monkeypatch):
    monkeypatch.setenv("BAYESMOE_FAST", "1")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert not errors


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_model_script_runs(path):
    out = subprocess.run(
        [
            sys.executable,
            str(path),
            "--draws",
            "50",
            "--tune",
            "50",
            "--chains",
            "2",
            "--sampler",
            "pymc",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "mean" in out.stdout


def test_demo_writes_table_and_plots(tmp_path, capsys):
    rc = main(
        [
            "demo",
            "--out",
            str(tmp_path),
            *SMALL,
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "LOO comparison" in out and "tau_interaction" in out
    assert "Two-regime data" in out and "gated_experts" in out
    for name in (
        "scales.png",
        "predictions.png",
        "loo_compare.csv",
        "learned_scales.nc",
        "experts_loo_compare.csv",
        "gate_probabilities.png",
        "gated_experts.nc",
    ):
        assert (tmp_path / name).stat().st_size > 0
    for name in ("conditional.png", "ppc.png", "gate.png"):  # bayesmoe.views, plot_ppc
        assert _is_png(tmp_path / name), name
    for line in ("model           rank elpd_diff", "parameter        mean    sd eti89_lb"):
        assert line in out  # header rows over the printed tables
    table = pd.read_csv(tmp_path / "loo_compare.csv", index_col="model")
    assert set(table.index) == {"base_only", "fixed_prior", "learned_scales"}
    assert table["elpd"].nunique() == 3
    for name, row in table.iterrows():
        assert f"{row['elpd']:.1f}" in out and row["elpd"] != round(row["elpd"], 1), name
    experts = pd.read_csv(tmp_path / "experts_loo_compare.csv", index_col="model")
    assert experts["elpd"].nunique() == 3 and experts["heldout_lpd_per_row"].notna().all()


def test_comparison_table_csv_keeps_every_digit(tmp_path, capsys):
    """The CSV holds ArviZ's unrounded floats (elpd that differ below two significant
    digits stay distinct); the print rounds them under a header row."""
    from bayesmoe import cli
    from tests.test_compare import _close_models

    fits = _close_models()
    path = tmp_path / "loo_compare.csv"
    lpd = {name: -1.0 - i / 7 for i, name in enumerate(fits)}
    table = cli._comparison_table(fits, path, "LOO comparison:", heldout_lpd_per_row=lpd)
    printed = capsys.readouterr().out.splitlines()
    assert printed[1] == "LOO comparison:" and printed[2].split()[:2] == ["model", "rank"]
    written = pd.read_csv(path, index_col="model")
    expected = az.compare(fits, round_to="none")
    assert list(written.index) == list(expected.index) == list(table.index)
    for column in ("elpd", "elpd_diff", "se", "dse", "p", "weight"):
        np.testing.assert_allclose(written[column], expected[column], rtol=1e-12, atol=0)
    assert written["elpd"].nunique() == 3 and written["elpd"].round(-1).nunique() == 1
    assert (written["elpd"] != written["elpd"].round(2)).all()  # not rounded before writing
    assert written["heldout_lpd_per_row"].to_dict() == lpd
    for name, line in zip(written.index, printed[3:], strict=True):
        assert line.startswith(name) and f"{written.loc[name, 'elpd']:.1f}" in line


def test_demo_compiles_the_experts_in_the_background_only_on_an_empty_cache(
    tmp_path, monkeypatch, capsys
):
    """The background compile is for a cold start; on a warm cache (or without NUTS, or
    with the cache off) it would only compete for the cores, and a failed one leaves the
    main process to compile the models itself."""
    import argparse
    from concurrent.futures import Future

    from bayesmoe import cache, cli

    args = argparse.Namespace(
        method="nuts", sampler="pymc", draws=100, tune=100, chains=2, seed=0,
        no_progress=True, n_train=300,
    )  # fmt: skip
    settings = cli._fit_settings(args)
    monkeypatch.setenv("BAYESMOE_CACHE_DIR", "off")
    assert not cli._cache_is_empty()
    monkeypatch.setenv("BAYESMOE_CACHE_DIR", str(tmp_path))
    assert cli._cache_is_empty()
    assert cli._start_expert_compiles(args, {**settings, "method": "vem"}) is None
    warm = cache.cache_dir() / "pytensor" / "numba"
    warm.mkdir(parents=True)
    (warm / "x_bayesmoe_logp_1.nbi").write_text("")
    assert not cli._cache_is_empty()
    assert cli._start_expert_compiles(args, settings) is None
    failed = Future()
    failed.set_exception(RuntimeError("no memory"))
    cli._wait_for(failed)
    assert "background compile failed (RuntimeError: no memory); compiling here" in (
        capsys.readouterr().out
    )


def test_fit_command_on_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.uniform(-1, 1, size=(80, 2)), columns=["a", "b"])
    frame["target"] = frame.a - frame.b + 0.5 * frame.a * frame.b + 0.3 * rng.normal(size=80)
    frame.to_csv(tmp_path / "data.csv", index=False)
    rc = main(
        [
            "fit",
            str(tmp_path / "data.csv"),
            "--target",
            "target",
            "--out",
            str(tmp_path / "o"),
            *SMALL,
        ]
    )
    assert rc == 0
    for name in ("model.nc", "summary.csv", "rank.png", "trace.png", "ppc.png"):
        assert (tmp_path / "o" / name).stat().st_size > 0
    for name in ("conditional.png", "ppc.png"):
        assert _is_png(tmp_path / "o" / name), name
    summary = pd.read_csv(tmp_path / "o" / "summary.csv", index_col=0)
    assert "beta_interaction[a:b]" in summary.index


def test_fit_command_with_a_formula_writes_the_user_scale(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.uniform(-100, 100, 150), "g": rng.choice(["p", "q"], 150)})
    frame["y"] = 2 + 0.03 * frame.a + 1.5 * (frame.g == "q") + 0.3 * rng.normal(size=150)
    frame.to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "o"
    args = ["fit", str(tmp_path / "data.csv"), "--formula", "y ~ a * g", "--out", str(out)]
    rc = main([*args, *SMALL, "--draws", "500", "--tune", "500"])  # a converged fit
    assert rc == 0
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert {"beta_base[a]", "beta_base[g[T.q]]", "beta_interaction[a:g[T.q]]"} <= set(
        summary.index
    )
    for name, truth in (("beta_base[a]", 0.03), ("beta_base[g[T.q]]", 1.5), ("intercept", 2.0)):
        row = summary.loc[name]
        assert abs(row["mean"] - truth) <= 4 * row["sd"], (name, row["mean"], row["sd"])
    loaded = bm.load(out / "model.nc")
    assert loaded.formula == "y ~ a * g"
    assert _is_png(out / "conditional.png")
    assert np.all(np.isfinite(loaded.predict(frame.iloc[:5])))


@pytest.mark.parametrize(
    "content, args, message",
    [
        ("a,b\n1,2\n3,4\n", ["--target", "c"], "--target 'c' is not a column"),
        ("a,y\n1,2\n3,4\n", ["--formula", "y ~ a", "--target", "y"], "--formula names"),
        ("a,y\n1,2\n3,4\n2,2\n", ["--formula", "y ~ a + q"], "'q'"),
        ("a,y\n1,2\n3,4\n", [], "--target COL"),
        ("a,target\nx,1\ny,2\nz,3\n", ["--target", "target"], "non-numeric columns ['a']"),
        ("a,target\n", ["--target", "target"], "has no rows"),
        ("a,target\n1,2\n3,4\n", ["--target", "target", "--features", "q"], "--features ['q']"),
        ("a,target\n1,2\n3,4\n", ["--target", "target", "--model", "forest"], "--model 'forest'"),
    ],
)
def test_fit_command_bad_files_get_one_line(tmp_path, capsys, content, args, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    rc = main(["fit", str(path), *args, "--out", str(tmp_path / "o"), "--sampler", "pymc"])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_fit_command_missing_file(tmp_path, capsys):
    assert main(["fit", str(tmp_path / "none.csv"), "--target", "y", "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
