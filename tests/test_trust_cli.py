"""The command line overwrites nothing unasked and runs no code from a formula."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayesmoe.cli import main

SMALL = ["--draws", "50", "--tune", "50", "--chains", "2", "--sampler", "pymc", "--no-progress"]


def _csv(path, n: int = 60):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.uniform(-1, 1, n), "b": rng.uniform(-1, 1, n)})
    frame["y"] = frame.a - frame.b + 0.3 * rng.normal(size=n)
    frame.to_csv(path, index=False)
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_fit_refuses_a_non_empty_results_folder(tmp_path, capsys):
    data = _csv(tmp_path / "data.csv")
    out = tmp_path / "results"
    out.mkdir()
    (out / "model.nc").write_text("an earlier model")
    (out / "notes.txt").write_text("mine")
    rc = main(["fit", str(data), "--target", "y", "--out", str(out), *SMALL])
    assert rc == 2
    err = _one_line_error(capsys)
    assert str(out) in err and "--force" in err and "not empty" in err
    assert (out / "model.nc").read_text() == "an earlier model"
    assert (out / "notes.txt").read_text() == "mine"


def test_demo_refuses_a_non_empty_results_folder(tmp_path, capsys):
    (tmp_path / "loo_compare.csv").write_text("mine")
    assert main(["demo", "--out", str(tmp_path), *SMALL]) == 2
    err = _one_line_error(capsys)
    assert str(tmp_path) in err and "--force" in err
    assert (tmp_path / "loo_compare.csv").read_text() == "mine"


@pytest.mark.parametrize("name", ["summary.csv", "model.nc"])
def test_force_never_overwrites_the_input_data(tmp_path, capsys, name):
    data = _csv(tmp_path / name)
    before = data.read_bytes()
    rc = main(["fit", str(data), "--target", "y", "--out", str(tmp_path), "--force", *SMALL])
    assert rc == 2
    err = _one_line_error(capsys)
    assert str(tmp_path) in err and "input data" in err and name in err
    assert data.read_bytes() == before


def test_force_never_overwrites_the_input_data_through_a_link(tmp_path, capsys):
    data = _csv(tmp_path / "data.csv")
    before = data.read_bytes()
    out = tmp_path / "o"
    out.mkdir()
    (out / "summary.csv").symlink_to(data)
    rc = main(["fit", str(data), "--target", "y", "--out", str(out), "--force", *SMALL])
    assert rc == 2
    assert "input data" in _one_line_error(capsys)
    assert data.read_bytes() == before


@pytest.mark.filterwarnings("ignore:Sampling diagnostics failed")
def test_force_writes_into_a_non_empty_folder_and_leaves_other_files(tmp_path):
    data = _csv(tmp_path / "data.csv")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "model.nc").write_text("an earlier model")
    rc = main(["fit", str(data), "--target", "y", "--out", str(tmp_path), "--force", *SMALL])
    assert rc == 0
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "model.nc").read_bytes()[:4] != b"an e"  # replaced by the fit's
    assert pd.read_csv(data).shape == (60, 3)


@pytest.mark.parametrize(
    "args",
    [
        ["--formula", "y ~ a + I(__import__('os').system('touch {c}').__abs__())"],
        ["--formula", "__import__('os').system('touch {c}') ~ a"],
        ["--formula", "y ~ a + C(a, open('{c}', 'w'))"],
        [
            "--formula",
            "y ~ a",
            "--model",
            "gated",
            "--gate-formula",
            "~ I(__import__('os').system('touch {c}'))",
        ],
    ],
)
def test_a_formula_on_the_command_line_runs_no_code(tmp_path, capsys, args):
    data = _csv(tmp_path / "data.csv")
    canary = tmp_path / "canary"
    argv = [a.replace("{c}", str(canary)) for a in args]
    rc = main(["fit", str(data), *argv, "--out", str(tmp_path / "o"), *SMALL])
    assert rc == 2
    err = _one_line_error(capsys)
    assert "is not allowed" in err and "term" in err
    assert not canary.exists()


def test_the_target_among_the_features_is_refused(tmp_path, capsys):
    data = _csv(tmp_path / "data.csv")
    out = tmp_path / "results"
    rc = main(
        ["fit", str(data), "--target", "y", "--features", "a", "y", "--out", str(out), *SMALL]
    )
    assert rc == 2
    assert "--features names the target 'y'" in _one_line_error(capsys)
    assert not (tmp_path / "results").exists()


def test_a_csv_with_a_bracket_in_its_name_is_read_as_a_csv(tmp_path):
    from bayesmoe.cli import _is_parquet_set

    data = _csv(tmp_path / "data[1].csv")
    assert not _is_parquet_set(str(data))
    assert _is_parquet_set(str(tmp_path / "part-[0-9].parquet"))  # a glob stays a glob
    (tmp_path / "set").mkdir()
    assert _is_parquet_set(str(tmp_path / "set"))
