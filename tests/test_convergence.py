"""The learning-curve study: scenarios, generator parity, cells, dask runner."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayesmoe.experiments import make_interaction_data
from bayesmoe.studies import learning_curve as conv
from bayesmoe.studies.learning_curve.cells import tidy

TINY = conv.Scenario("tiny", x_dim=3, noise_level=0.5, interaction_scale=1.0, n=400)


def test_six_scenarios_cover_the_issue_grid():
    scen = [conv.SCENARIOS[n] for n in conv.ALL_SCENARIOS]
    assert len(scen) == 6
    assert {s.interaction_scale for s in scen} >= {0.0, 0.01, 1.0, 3.0}
    assert {s.x_dim for s in scen} == {2, 6, 10}
    assert min(s.noise_level for s in scen) == 0.1 and max(s.noise_level for s in scen) == 2.0
    assert all(s.n == 10_000 and s.n_train == 5000 for s in scen)


def test_training_sizes_is_the_seeds_grid():
    n_train = 5000  # the seed's train_models with x_train of 5000 rows
    seed_grid = np.unique(
        np.clip(np.logspace(1, np.ceil(np.log10(n_train)), 20).astype(int), 1, n_train)
    )
    np.testing.assert_array_equal(conv.training_sizes(n_train), seed_grid)
    assert conv.StudySettings(max_n_train=100).sizes(conv.SCENARIOS["no_interaction"]).max() <= 100


def test_generator_matches_the_seed_draw_for_draw():
    """The seed's gen_data (PolynomialFeatures, one generator) on the same stream."""
    from sklearn.preprocessing import PolynomialFeatures

    rng = np.random.default_rng(7)
    n, x_dim, noise, scale = 50, 4, 0.7, 0.3
    x_base = rng.uniform(-1, 1, size=(n, x_dim))
    x = PolynomialFeatures(interaction_only=True, degree=2, include_bias=False).fit_transform(
        x_base
    )
    bias = rng.uniform(-1, 1, size=1)
    w = rng.uniform(-1, 1, size=x.shape[1])
    w[x_dim:] = scale * w[x_dim:]
    y = bias + x @ w + noise * rng.normal(size=n)

    ours = make_interaction_data(n, x_dim, noise, scale, seed=np.random.default_rng(7))
    np.testing.assert_allclose(ours.X.to_numpy(), x_base, rtol=0, atol=0)
    np.testing.assert_allclose(ours.w_base, w[:x_dim], rtol=0, atol=0)
    np.testing.assert_allclose(ours.w_interaction, w[x_dim:], rtol=0, atol=0)
    np.testing.assert_allclose(ours.y, y, rtol=1e-12, atol=1e-12)


def test_bad_settings_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="scenario 'nope'"):
        conv.run_study("nope", 1, tmp_path)
    with pytest.raises(ValueError, match="replicates"):
        conv.run_study("all", 0, tmp_path)
    with pytest.raises(TypeError, match="replicates"):
        conv.run_study("all", 1.5, tmp_path)
    with pytest.raises(ValueError, match="model 'xgb'"):
        conv.run_study("all", 1, tmp_path, models=["xgb"])
    with pytest.raises(ValueError, match="scheduler"):
        conv.run_study("all", 1, tmp_path, scheduler="localhost")
    with pytest.raises(ValueError, match="noise_level"):
        conv.Scenario("bad", 2, -1.0, 0.0)
    with pytest.raises(ValueError, match="draws"):
        conv.StudySettings(draws=0)
    assert not (tmp_path / "cells").exists()


def test_cell_rows_regret_and_wide_prior_equals_ols():
    settings = conv.StudySettings(max_n_train=200)
    ols = conv.run_cell(TINY, 0, "ols_interaction", settings)
    wide = conv.run_cell(TINY, 0, "bayes_wide", settings)
    sizes = settings.sizes(TINY)
    assert list(ols["n_train"]) == list(sizes)
    assert (ols["status"] == "ok").all() and np.isfinite(ols["mse"]).all()
    # mse - excess - sigma^2 = (mean e^2 - sigma^2) - 2 mean((f_hat - f) e) over m test
    # rows: mean 0, sd <= sigma^2 sqrt(2/m) + 2 sigma sqrt(excess/m); 5 sd bound
    m, s2 = TINY.n // 2, TINY.noise_level**2
    gap = ols["mse"] - ols["excess_mse"] - s2
    sd = s2 * np.sqrt(2 / m) + 2 * np.sqrt(s2 * ols["excess_mse"] / m)
    assert np.all(np.abs(gap) < 5 * sd)
    block = np.diff(np.concatenate([[0], sizes]))
    np.testing.assert_allclose(ols["regret"], np.cumsum(block * ols["excess_mse"]))
    # the seed's remark: a wide prior (variance 1e6) gives the interaction OLS fit; its
    # intercept keeps the seed's prior variance 1, a pull of order 1/n that fades by n=100
    big = ols["n_train"] >= 100
    np.testing.assert_allclose(wide["mse"][big], ols["mse"][big], rtol=1e-3)


def test_empirical_bayes_recovers_the_scales():
    scen = conv.Scenario("eb", x_dim=6, noise_level=0.5, interaction_scale=1.0, n=4000)
    settings = conv.StudySettings(n_points=2, max_n_train=2000)  # sizes 10 and 2000
    df = conv.run_cell(scen, 0, "empirical_bayes", settings)
    last = df.iloc[-1]
    # with 2000 rows the weights are known to ~0.02, so the ML scale is the RMS of the true
    # weights up to the sampling spread of an RMS of 6 (15) Gaussian-ish values: < 35%
    assert abs(np.log(last["tau_base"] / last["true_tau_base"])) < 0.35
    assert abs(np.log(last["tau_interaction"] / last["true_tau_interaction"])) < 0.35
    assert abs(last["sigma"] / 0.5 - 1) < 0.1


def test_user_model_errors_are_recorded_not_raised():
    def broken(X, y, X_test):
        if len(y) > 20:
            raise RuntimeError("boom")
        return np.full(len(X_test), y.mean())

    df = conv.run_cell(TINY, 0, ("broken", broken), conv.StudySettings(max_n_train=50))
    assert (df.loc[df["n_train"] <= 20, "status"] == "ok").all()
    bad = df[df["n_train"] > 20]
    assert len(bad) and (bad["status"] == "error").all()
    assert bad["error"].str.contains("RuntimeError: boom").all()


def _fake(rows):
    return tidy(
        pd.DataFrame(
            [
                dict(
                    scenario="s",
                    n_train=n,
                    replicate=r,
                    model=m,
                    mse=v,
                    noise_level=1.0,
                    status="ok",
                )
                for (n, m, r, v) in rows
            ]
        )
    )


def test_headline_and_grid_average_arithmetic():
    rows = []
    for r, e in enumerate([-0.1, 0.0, 0.1]):
        rows += [(10, "learned_half_cauchy", r, 2.0 + e), (10, "ols_base", r, 1.0 + e)]
        rows += [(10, "ols_interaction", r, 3.0 + e), (100, "learned_half_cauchy", r, 1.0 + e)]
        rows += [(100, "ols_base", r, 1.5 + e), (100, "ols_interaction", r, 1.1 + e)]
    table = conv.headline(_fake(rows)).set_index("n_train")
    # paired differences are constant, so the paired se is 0
    assert table.loc[10, "best_model"] == "ols_base" and not table.loc[10, "holds"]
    assert table.loc[10, "diff_vs_best"] == pytest.approx(1.0)
    assert table.loc[100, "best_model"] == "ols_interaction" and table.loc[100, "holds"]
    grid = conv.grid_average(_fake(rows))
    assert grid["learned_half_cauchy"] == pytest.approx(1.5)
    assert grid["ols_base"] == pytest.approx(1.25)


def test_study_on_two_dask_workers_streams_saves_and_resumes(tmp_path):
    """2-worker LocalCluster: cells saved as they finish, a failing cell recorded with its
    error, and a second run only redoes the failed cell."""
    calls = tmp_path / "calls.txt"

    def flaky(X, y, X_test, _log=str(calls)):
        with open(_log, "a") as fh:
            fh.write("x\n")
        raise ValueError("always fails")

    models = {"ols_base": conv.MODELS["ols_base"], "ridge_1": conv.MODELS["ridge_1"]}
    models["flaky"] = flaky
    from distributed import Client, LocalCluster

    settings = conv.StudySettings(max_n_train=30)
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=":0", env=conv.WORKER_ENV
    )
    client = Client(cluster)
    request = dict(models=models, settings=settings, client=client, progress=False)
    try:
        assert len(client.scheduler_info()["workers"]) == 2
        df = conv.run_study([TINY], 2, tmp_path, **request)
        first = _first_run_checks(df, tmp_path, settings, calls)
        again = conv.run_study([TINY], 2, tmp_path, **request)
        other = {**request, "settings": conv.StudySettings(max_n_train=30, draws=10)}
        n_calls = calls.read_text().count("x")
        with pytest.raises(ValueError, match=r"draws: 500 saved vs 10 now"):
            conv.run_study([TINY], 2, tmp_path, **other)
        assert calls.read_text().count("x") == n_calls  # refused before any cell ran
    finally:
        client.close()
        cluster.close()
    ok_cell, stamp, first_calls = first
    assert ok_cell.stat().st_mtime_ns == stamp  # not recomputed
    assert calls.read_text().count("x") == 2 * first_calls  # only the failed cells re-ran
    np.testing.assert_array_equal(
        again.loc[again["model"] != "flaky", "mse"], df.loc[df["model"] != "flaky", "mse"]
    )


def _first_run_checks(df, tmp_path, settings, calls):
    n_sizes = len(settings.sizes(TINY))
    assert len(df) == 3 * 2 * n_sizes
    assert (df[df["model"] != "flaky"]["status"] == "ok").all()
    assert df[df["model"] == "flaky"]["error"].str.contains("always fails").all()
    saved = pd.read_parquet(tmp_path / "results.parquet")
    pd.testing.assert_frame_equal(saved, df)
    ok_cell = conv.cell_path(tmp_path, "tiny", 1, "ridge_1")
    stamp = ok_cell.stat().st_mtime_ns
    first_calls = calls.read_text().count("x")
    assert first_calls == 2 * n_sizes

    return ok_cell, stamp, first_calls


@pytest.mark.slow
def test_cli_study_with_nuts_on_two_workers_compiles_once_per_worker(tmp_path):
    """End to end: `bayesmoe convergence` on a 2-worker LocalCluster with the NUTS model;
    each worker compiles the design once and every later fit reuses it."""
    from bayesmoe.cli import main

    out = tmp_path / "study"
    argv = ["convergence", "--scenario", "few_features_low_noise", "--replicates", "3"]
    argv += ["--models", "ols_base", "ols_interaction", "learned_half_cauchy", "empirical_bayes"]
    argv += ["--max-n-train", "100", "--draws", "200", "--tune", "200", "--no-progress"]
    assert main([*argv, "--out", str(out), "--workers", "2"]) == 0
    df = pd.read_parquet(out / "results.parquet")
    assert (df["status"] == "ok").all()
    nuts = df[df["model"] == "learned_half_cauchy"]
    n_sizes = len(
        conv.StudySettings(max_n_train=100).sizes(conv.SCENARIOS["few_features_low_noise"])
    )
    assert len(nuts) == 3 * n_sizes
    assert 1 <= int(nuts["compiled"].sum()) <= 2  # at most once per worker
    for name in ("learning_curves", "excess_curves", "regret", "scales"):
        assert (out / f"{name}.png").stat().st_size > 10_000
    table = pd.read_csv(out / "headline.csv")
    assert len(table) == n_sizes and set(table["best_model"]) <= {"ols_base", "ols_interaction"}


def test_local_global_rows_run_by_name_and_stay_out_of_the_default_study():
    optional = {"learned_horseshoe_dense", "learned_horseshoe_group_slab"}
    assert {"learned_horseshoe", "learned_r2d2", "lasso_cv", *optional} <= set(conv.MODELS)
    assert not optional & set(conv.STUDY_MODELS)
    assert "learned_horseshoe" not in conv.STUDY_MODELS
    settings = conv.StudySettings(draws=30, tune=30, chains=1, n_points=2, max_n_train=20)
    scenario = conv.SCENARIOS["weak_interaction"]
    rows = conv.run_cell(scenario, 0, "learned_horseshoe", settings)
    assert len(rows) >= 1 and (rows["status"] == "ok").all()
    assert np.all(np.isfinite(rows["mse"]))
    assert np.all(rows["tau_base"] > 0)  # on the raw scale: sigma * tau (relative) mapped back


def test_former_import_paths_reexport_the_study():
    """``bayesmoe.experiments.convergence`` / ``study_plots`` keep every name they had."""
    from bayesmoe.experiments import convergence, study_plots
    from bayesmoe.studies.learning_curve import plots

    for name in convergence.__all__:
        assert getattr(convergence, name) is getattr(conv, name), name
    assert set(convergence.__all__) == set(conv.__all__)
    for name in study_plots.__all__:
        assert getattr(study_plots, name) is getattr(plots, name), name


def _saved_cell(out, settings, model="ols_base"):
    """One cell of TINY, run in this process and saved as the runner saves it."""
    from bayesmoe.studies.learning_curve.runner import cell_record, write_cell

    df = conv.run_cell(TINY, 0, model, settings)
    write_cell(df, conv.cell_path(out, "tiny", 0, model), cell_record(TINY, model, settings))
    return df


def test_a_resume_with_other_settings_is_refused_naming_them(tmp_path):
    """Each cell records its settings and code version; a resume (no dask needed: every
    requested cell is saved) with the same settings gathers them, with other settings or
    another scenario definition it stops before any cell runs and names what differs."""
    import bayesmoe
    from bayesmoe.studies.learning_curve.runner import read_cell_record

    settings = conv.StudySettings(max_n_train=30)
    df = _saved_cell(tmp_path, settings)
    record = read_cell_record(conv.cell_path(tmp_path, "tiny", 0, "ols_base"))
    assert record["bayesmoe_version"] == bayesmoe.__version__
    assert record["draws"] == 500 and record["scenario.n"] == 400 and record["settings_hash"]
    same = conv.run_study([TINY], 1, tmp_path, models=["ols_base"], settings=settings)
    np.testing.assert_array_equal(same["mse"], df["mse"])

    request = dict(models=["ols_base"], progress=False)
    other = conv.StudySettings(max_n_train=30, seed=3, chains=4)
    with pytest.raises(ValueError, match=r"chains: 2 saved vs 4 now.*seed: 0 saved vs 3 now"):
        conv.run_study([TINY], 1, tmp_path, settings=other, **request)
    bigger = conv.Scenario("tiny", x_dim=3, noise_level=0.5, interaction_scale=2.0, n=400)
    with pytest.raises(ValueError, match=r"scenario.interaction_scale: 1.0 saved vs 2.0 now"):
        conv.run_study([bigger], 1, tmp_path, settings=settings, **request)
    assert not (tmp_path / "runs.jsonl").exists()  # nothing ran


def test_cells_without_a_settings_record_are_not_resumed(tmp_path):
    settings = conv.StudySettings(max_n_train=30)
    df = conv.run_cell(TINY, 0, "ols_base", settings)
    conv.write_parquet_atomic(df, conv.cell_path(tmp_path, "tiny", 0, "ols_base"))
    with pytest.raises(ValueError, match="settings: 'not recorded'"):
        conv.run_study([TINY], 1, tmp_path, models=["ols_base"], settings=settings)


def test_study_figures_are_written_whole_and_leave_no_temporary_file(tmp_path):
    from bayesmoe.studies.learning_curve import plots

    settings = conv.StudySettings(max_n_train=30)
    df = pd.concat(
        [conv.run_cell(TINY, r, "ols_base", settings) for r in range(2)], ignore_index=True
    )
    path = plots.plot_learning_curves(df, tmp_path / "curves.png", models=["ols_base"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]
