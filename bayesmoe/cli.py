"""Command line: ``bayesmoe demo``, ``bayesmoe fit DATA --target COL``,
``bayesmoe fit DATA --formula "y ~ a * b"``, ``bayesmoe convergence``."""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import re
import sys
import textwrap
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "DEMO_OUTPUTS",
    "FIT_OUTPUTS",
    "METHODS",
    "MODELS",
    "SAMPLERS",
    "SUMMARY_FORMATS",
    "HelpFormatter",
    "build_parser",
    "main",
    "results_folder",
]

#: Models the ``fit`` command knows; other models add theirs here.
MODELS = {
    "interaction": "InteractionRegression",
    "mixture": "MixtureRegression",
    "gated": "GatedExperts",
}
#: The ``--method`` choices (the methods of :func:`bayesmoe.fit`).
METHODS = ("nuts", "advi", "fullrank_advi", "vem")
#: The ``--sampler`` choices: ``auto`` or one of :func:`bayesmoe.fit`'s NUTS samplers.
SAMPLERS = ("auto", "nutpie", "pymc", "numpyro")

DESCRIPTION = (
    "bayesmoe: Bayesian interaction regressions and mixtures of experts on PyMC. "
    "Each command writes its results into a folder; 'bayesmoe COMMAND --help' lists a "
    "command's options with their defaults."
)

EPILOG = """\
examples:
  bayesmoe demo --out demo_results
  bayesmoe fit data.csv --target y --out results
  bayesmoe fit data.csv --formula "y ~ a * b" --out results
  bayesmoe convergence --max-n-train 2000 --replicates 2
  bayesmoe fit --help"""

DEMO_EPILOG = """\
examples:
  bayesmoe demo
  bayesmoe demo --out demo_results --n-train 500
  bayesmoe demo --out demo_results --force
  bayesmoe demo --draws 200 --tune 200 --chains 2 --no-progress"""

FIT_EPILOG = """\
examples:
  bayesmoe fit data.csv --target y --out results
  bayesmoe fit data.csv --target y --features x1 x2 --out results
  bayesmoe fit data.csv --formula "y ~ (a + b + c)**2" --out results
  bayesmoe fit data.csv --formula "y ~ x1 + x2" --model gated --gate-formula "~ x1" --out results
  bayesmoe fit data.csv --target y --model mixture --method vem --out results
  bayesmoe fit parquet_folder/ --target y --out results   (streamed on dask)"""

CONVERGENCE_EPILOG = """\
examples:
  bayesmoe convergence
  bayesmoe convergence --scenario all --replicates 5 --out study
  bayesmoe convergence --max-n-train 2000 --replicates 2 --draws 200 --tune 200
  bayesmoe convergence --scheduler tcp://127.0.0.1:8786"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Help text as written (descriptions and examples keep their lines) with each option's
    default appended; options without a value (flags, or ``None``: "not given") show none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action)


#: files ``bayesmoe fit`` writes into its ``--out`` folder
FIT_OUTPUTS = (
    "model.nc",
    "summary.csv",
    "rank.png",
    "trace.png",
    "ppc.png",
    "conditional.png",
)
#: How the commands print a posterior summary (:func:`arviz.summary`'s columns); the
#: summary.csv they write keeps every digit.
SUMMARY_FORMATS = {
    **{c: "{:.3f}" for c in ("mean", "sd", "mcse_mean", "mcse_sd")},
    **{c: "{:.3f}" for c in ("eti89_lb", "eti89_ub", "hdi89_lb", "hdi89_ub")},
    "ess_bulk": "{:.0f}",
    "ess_tail": "{:.0f}",
    "r_hat": "{:.2f}",
}
#: files ``bayesmoe demo`` writes into its ``--out`` folder
DEMO_OUTPUTS = (
    "loo_compare.csv",
    "scales.png",
    "predictions.png",
    "conditional.png",
    "ppc.png",
    "base_only.nc",
    "fixed_prior.nc",
    "learned_scales.nc",
    "experts_loo_compare.csv",
    "gate_probabilities.png",
    "gate.png",
    "gated_experts.nc",
)


def _input_files(data: str) -> list[Path]:
    """The files a ``fit`` reads: the data file, or every file of a Parquet folder or glob."""
    path = Path(data)
    if path.is_file():
        return [path]
    if path.is_dir():
        return [p for p in path.rglob("*") if p.is_file()]
    return [Path(p) for p in glob.glob(data, recursive=True) if Path(p).is_file()]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def results_folder(out: str, outputs: Sequence[str], *, force: bool, inputs=()) -> Path:
    """The ``--out`` folder of a command, checked before anything is computed.

    Refused (ValueError, one line naming the folder) when it is a file, when it holds
    anything and ``force`` is false, and, whatever ``force``, when one of the files the
    command writes (``outputs``) is one of its input files (``inputs``), even through a
    link. With ``force`` the command replaces its own output files in the folder and
    leaves every other file alone.
    """
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {str(folder)!r} is a file, not a folder")
    if not force and folder.is_dir() and any(folder.iterdir()):
        raise ValueError(
            f"--out folder {str(folder)!r} is not empty; choose an empty or new folder, or "
            f"give --force to replace the files this command writes there ({', '.join(outputs)})"
        )
    for name in outputs:
        if any(_same_file(folder / name, source) for source in inputs):
            raise ValueError(
                f"--out folder {str(folder)!r}: the result file {name!r} would overwrite the "
                "input data; choose another --out folder (--force never overwrites the input)"
            )
    return folder


def _fit_settings(args) -> dict:
    return dict(
        method=args.method,
        sampler=args.sampler,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        random_seed=args.seed,
        progressbar=not args.no_progress,
    )


def _add_fit_options(p: argparse.ArgumentParser, draws: int = 1000) -> None:
    p.add_argument(
        "--method",
        default="nuts",
        choices=METHODS,
        help="how the posterior is computed: NUTS sampling, (full-rank) ADVI, or the "
        "variational EM of mixture models",
    )
    p.add_argument(
        "--sampler",
        default="auto",
        choices=SAMPLERS,
        help="NUTS implementation; auto picks the fastest for the model",
    )
    p.add_argument("--draws", type=int, default=draws, help="posterior draws per chain")
    p.add_argument("--tune", type=int, default=draws, help="tuning steps per chain")
    p.add_argument("--chains", type=int, default=4, help="independent chains")
    p.add_argument("--seed", type=int, default=0, help="random seed of the fit")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


@contextlib.contextmanager
def _step(what: str):
    """Print what the demo is doing, then how long it took (and which sampler ran)."""
    print(f"{what} ...", flush=True)
    start = time.perf_counter()
    yield
    print(f"{what}: done in {time.perf_counter() - start:.1f} s", flush=True)


def _print_cache() -> None:
    from bayesmoe import cache

    folder = cache.usable_cache_dir()
    if folder is None:
        why = "BAYESMOE_CACHE_DIR=off" if cache.cache_dir() is None else "its folder was refused"
        print(f"compile cache: off ({why})", flush=True)
        return
    state = "empty" if _cache_is_empty() else "warm"
    print(
        f"compile cache: {folder} ({state}; the first run compiles each model once, "
        "later runs read the compiled code back)",
        flush=True,
    )


def _cache_is_empty() -> bool:
    """Whether the compile cache is on and holds no compiled model yet."""
    from bayesmoe import cache

    folder = cache.usable_cache_dir()
    return folder is not None and not any(folder.glob("pytensor/numba/*bayesmoe_logp*"))


def _compile_experts(n_train: int, seed: int, settings: dict) -> float:
    """Fit the demo's two expert models with a few draws, so that their compiled code is on disk.

    Runs in a worker process while the demo's first part fits in the main one: on an
    empty cache the compiles of the mixture and the gated experts (single-threaded) then
    overlap with the interaction models' instead of
    following them, and the main process reads them back from the cache. The model
    structure, hence the compiled code, does not depend on the number of draws.
    """
    import bayesmoe as bm
    from bayesmoe.experiments import make_mixture_data

    start = time.perf_counter()
    train = make_mixture_data(n_train, 2, 2, gate="linear", seed=seed)
    brief = {**settings, "draws": 10, "tune": 10, "chains": 2, "progressbar": False}
    if brief.get("sampler", "auto") == "auto":  # compile nutpie's code, not auto's cold path
        brief["sampler"] = "nutpie"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ten draws fail every diagnostic, by design
        bm.MixtureRegression(n_components=2, **brief).fit(train.X, train.y)
        bm.GatedExperts(n_experts=2, gate="linear", **brief).fit(train.X, train.y)
    return time.perf_counter() - start


def _start_expert_compiles(args, settings: dict):
    """A future of :func:`_compile_experts` in a worker process, or None.

    Only on an empty cache with NUTS: on a warm one the main process reads the code back
    in seconds and a second process would only compete for the cores.
    """
    if settings["method"] != "nuts" or not _cache_is_empty():
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    future = pool.submit(_compile_experts, args.n_train, args.seed, settings)
    pool.shutdown(wait=False)  # the worker exits once its one task is done
    print("compiling the expert models in a background process meanwhile", flush=True)
    return future


def _wait_for(future) -> None:
    if future is None:
        return
    with _step("waiting for the background compile of the expert models"):
        try:
            seconds = future.result()
        except Exception as err:  # the main process then compiles them itself
            print(f"background compile failed ({type(err).__name__}: {err}); compiling here")
        else:
            print(f"(it took {seconds:.1f} s, overlapping with the first models)", flush=True)


def _comparison_table(fits: dict, path: Path, title: str, **columns: dict):
    """:func:`arviz.compare` of ``fits``, printed under ``title`` and written to ``path``.

    The CSV holds ArviZ's unrounded numbers (and a ``model`` header over the names); the
    print rounds them as :func:`bayesmoe.comparison.format_table` does. ``columns``: more
    columns, each a dict of model name -> value.
    """
    import arviz as az

    from bayesmoe.comparison import format_table

    table = az.compare(fits, round_to="none")
    for column, values in columns.items():
        table[column] = [values[name] for name in table.index]
    print(f"\n{title}")
    print(format_table(table))
    table.to_csv(path, index_label="model")
    return table


def demo(args) -> Path:
    """Base-only vs fixed-prior vs learned-hyperprior interaction models on simulated data."""
    out = results_folder(args.out, DEMO_OUTPUTS, force=args.force)
    import numpy as np

    import bayesmoe as bm
    from bayesmoe.comparison import format_table
    from bayesmoe.experiments import make_interaction_data
    from bayesmoe.plots import plot_predictions, plot_scales

    out.mkdir(parents=True, exist_ok=True)
    settings = _fit_settings(args)
    # The simulated data: 6 uniform features, all 15 interactions at a third of the base
    # scale, unit noise. 300 training rows is where the choice of prior scales matters.
    train = make_interaction_data(args.n_train, 6, 1.0, 0.3, seed=args.seed)
    test = train.new_rows(2000, seed=args.seed + 1)
    candidates = {
        "base_only": bm.InteractionRegression(interactions=None, standardize=False, **settings),
        "fixed_prior": bm.InteractionRegression(
            prior="fixed", base_scale=1.0, interaction_scale=1.0, standardize=False, **settings
        ),
        "learned_scales": bm.InteractionRegression(standardize=False, **settings),
    }
    fits, preds = {}, {}
    _print_cache()
    experts = _start_expert_compiles(args, settings)
    for i, (name, est) in enumerate(candidates.items(), 1):
        with _step(f"[{i}/6] fitting {name}"):
            est.fit(train.X, train.y)
        fits[name] = est.idata_
        preds[name] = est.predict(test.X, return_std=True)
    _comparison_table(fits, out / "loo_compare.csv", "LOO comparison (ArviZ):")
    learned = candidates["learned_scales"].summary(var_names=["tau_base", "tau_interaction"])
    true_scales = (
        float(np.sqrt(np.mean(train.w_base**2))),
        float(np.sqrt(np.mean(train.w_interaction**2))),
    )
    print("\nLearned prior scales (posterior):")
    columns = ["mean", "sd", "eti89_lb", "eti89_ub", "r_hat"]
    print(format_table(learned[columns], SUMMARY_FORMATS, index_name="parameter"))
    print(
        f"root mean square of the true weights: base {true_scales[0]:.3f}, "
        f"interaction {true_scales[1]:.3f}"
    )
    signal = test.signal
    plot_scales(
        {"learned_scales": fits["learned_scales"]}, truth=true_scales, path=out / "scales.png"
    )
    plot_predictions(signal, preds, path=out / "predictions.png")
    _write_views(candidates["learned_scales"], out)
    for name, est in candidates.items():
        est.save(out / f"{name}.nc")
    _demo_experts(args, settings, out, experts)
    print(f"\nwrote {sorted(p.name for p in out.iterdir())} to {out.resolve()}")
    return out


def _demo_experts(args, settings: dict, out: Path, compiling=None) -> None:
    """Part 2: data with two regimes, where one regression cannot fit both.

    ``compiling``: the future of :func:`_start_expert_compiles`, awaited before the
    expert models are fitted.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    import bayesmoe as bm
    from bayesmoe.experiments import make_mixture_data

    train = make_mixture_data(args.n_train, 2, 2, gate="linear", seed=args.seed)
    test = train.new_rows(2000, seed=args.seed + 1)
    candidates = {
        "interaction_regression": bm.InteractionRegression(**settings),
        "mixture_regression": bm.MixtureRegression(n_components=2, **settings),
        "gated_experts": bm.GatedExperts(n_experts=2, gate="linear", **settings),
    }
    fits, lpd = {}, {}
    for i, (name, est) in enumerate(candidates.items(), 4):
        if name == "mixture_regression":
            _wait_for(compiling)
        with _step(f"[{i}/6] fitting {name} on two-regime data"):
            est.fit(train.X, train.y)
        fits[name] = est.idata_
        lpd[name] = est.log_predictive_density(test.X, test.y) / len(test.y)
    _comparison_table(
        fits,
        out / "experts_loo_compare.csv",
        "Two-regime data: LOO comparison (ArviZ) and held-out log density per row:",
        heldout_lpd_per_row=lpd,
    )
    gated = candidates["gated_experts"]
    proba = gated.predict_proba(test.X)
    true = train.gate_probabilities(test.X.to_numpy())
    # labels are arbitrary: report the agreement under the better matching of experts
    flipped = np.abs(proba[:, ::-1] - true).mean() < np.abs(proba - true).mean()
    matched = proba[:, ::-1] if flipped else proba
    err = np.abs(matched - true).mean()
    print(f"gate probabilities: mean absolute error vs the truth {err:.3f}")
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(true[:, 0], matched[:, 0], s=4)
    ax.plot([0, 1], [0, 1], color="k", lw=1)
    ax.set(xlabel="true gate probability (expert 0)", ylabel="posterior mean", title="gate")
    fig.tight_layout()
    fig.savefig(out / "gate_probabilities.png", dpi=120)
    plt.close(fig)
    view = bm.plot_gate(gated, _strongest_term(gated).split(":")[0])
    view.figure.savefig(out / "gate.png", dpi=120)
    plt.close("all")
    gated.save(out / "gated_experts.nc")


def _read_table(path: Path):
    import pandas as pd

    if not path.is_file():
        raise ValueError(f"data file {str(path)!r} does not exist")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as err:  # pandas raises many types for unreadable files
        raise ValueError(f"could not read {str(path)!r}: {err}") from err


def _is_parquet_set(data: str) -> bool:
    """A Parquet folder, glob or file: what ``bayesmoe.read_parquet`` streams."""
    path = Path(data)
    if path.is_file():  # an existing file is itself, whatever characters its name holds
        return path.suffix.lower() in (".parquet", ".pq")
    return (
        any(ch in data for ch in "*?[")
        or path.is_dir()
        or path.suffix.lower() in (".parquet", ".pq")
    )


def _target_and_features(args, columns: list) -> list:
    """The feature columns, after checking --target and --features against ``columns``."""
    if args.target is None:
        raise ValueError("give --target COL (with --features) or --formula 'y ~ ...'")
    if args.target not in columns:
        raise ValueError(f"--target {args.target!r} is not a column; columns are {columns}")
    if args.features and args.target in args.features:
        raise ValueError(f"--features names the target {args.target!r}; leave it out")
    features = args.features or [c for c in columns if c != args.target]
    missing = [c for c in features if c not in columns]
    if missing:
        raise ValueError(f"--features {missing} are not columns of {args.data}")
    return features


def fit_stream(args) -> Path:
    """InteractionRegression on a Parquet file, folder or glob, streamed (dask.distributed)."""
    import bayesmoe as bm

    try:
        ddf = bm.read_parquet(args.data)
    except OSError as err:
        raise ValueError(str(err)) from err
    if args.formula is not None:  # coded partition by partition (streaming.formula_frame)
        if args.target is not None or args.features:
            raise ValueError("--formula names the target and the terms; drop --target/--features")
        est = bm.InteractionRegression(formula=args.formula, **_fit_settings(args)).fit(ddf)
        return _write_fit(est, args, ddf.head(5000))
    features = _target_and_features(args, list(ddf.columns))
    est = bm.InteractionRegression(**_fit_settings(args))
    est.fit(ddf[[*features, args.target]], args.target)
    return _write_fit(est, args, ddf[features].head(5000))


def fit_file(args) -> Path:
    """Fit a user's CSV/Parquet file and write model, summary and diagnostic plots.

    An InteractionRegression on Parquet (a file, a folder of files or a glob) is streamed:
    the data are never loaded whole (see :meth:`InteractionRegression.fit` with dask input).
    """
    import bayesmoe as bm

    results_folder(args.out, FIT_OUTPUTS, force=args.force, inputs=_input_files(args.data))
    if args.model == "interaction" and _is_parquet_set(args.data):
        return fit_stream(args)
    frame = _read_table(Path(args.data))
    if frame.empty:
        raise ValueError(f"{args.data} has no rows")
    if args.model not in MODELS:
        raise ValueError(f"--model {args.model!r} is not known; choose one of {list(MODELS)}")
    if args.formula is not None:
        if args.target is not None or args.features:
            raise ValueError("--formula names the target and the terms; drop --target/--features")
        settings = _fit_settings(args)
        if args.gate_formula is not None:
            if args.model != "gated":
                raise ValueError("--gate-formula is for --model gated")
            settings["gate_formula"] = args.gate_formula
        est = getattr(bm, MODELS[args.model])(formula=args.formula, **settings).fit(frame)
        return _write_fit(est, args, frame)
    features = _target_and_features(args, list(frame.columns))
    est = getattr(bm, MODELS[args.model])(**_fit_settings(args))
    est.fit(frame[features], frame[args.target])
    return _write_fit(est, args, frame[features])


def _strongest_term(est) -> str:
    """The term the conditional-effects figure shows: the two inputs of the interaction
    with the largest absolute posterior mean, else the input with the largest base weight
    (coefficient names of formula fits are read back to their variables, e.g.
    ``a:g[T.q]`` -> ``a:g``)."""
    summary = est.summary()
    design = getattr(est, "formula_design_", None)  # set by formula fits only
    inputs = list(design.variables if design is not None else est.feature_names_in_)
    for prefix in ("beta_interaction[", "beta_base[", "beta["):
        rows = summary[summary.index.str.startswith(prefix)]
        for name in rows["mean"].abs().sort_values(ascending=False).index:
            parts = name[len(prefix) : -1].split(":")
            names = [_input_of(part, inputs) for part in parts]
            if None not in names and len(set(names)) == len(names) and len(names) <= 2:
                return ":".join(names)
    return inputs[0]


def _input_of(coefficient: str, inputs: list) -> str | None:
    """The input a coefficient name belongs to: itself, or the longest input name it
    contains (``g[T.q]`` -> ``g``, ``np.log(a)`` -> ``a``, ``x0[expert_1]`` -> ``x0``)."""
    if coefficient in inputs:
        return coefficient
    found = [
        n for n in inputs if re.search(rf"(?<![\w.]){re.escape(str(n))}(?![\w])", coefficient)
    ]
    return max(found, key=len) if found else None


def _write_views(est, out: Path, data=None) -> None:
    """``conditional.png`` (:func:`bayesmoe.conditional_effects` of the strongest term) and
    ``ppc.png`` (the estimator's ``plot_ppc``, densities of replicated ``y``)."""
    import matplotlib.pyplot as plt

    import bayesmoe as bm

    effects = bm.conditional_effects(est, _strongest_term(est), data=data)
    effects.figure.savefig(out / "conditional.png", dpi=120)
    est.plot_ppc("dist").savefig(out / "ppc.png")
    plt.close("all")


def _write_fit(est, args, data=None) -> Path:
    """model.nc, summary.csv (the user's scale), diagnostic plots, the conditional effects
    of the strongest term and the posterior predictive check of a fitted estimator."""
    from bayesmoe.comparison import format_table
    from bayesmoe.plots import plot_diagnostics

    out = Path(args.out)  # checked by results_folder before the fit
    out.mkdir(parents=True, exist_ok=True)
    est.save(out / "model.nc")
    summary = est.summary()
    summary.to_csv(out / "summary.csv", index_label="parameter")
    print(format_table(summary, SUMMARY_FORMATS, index_name="parameter"))
    names = [v for v in est._summary_vars() if est.idata_["posterior"][v].size <= 4 * 4000]
    plot_diagnostics(est.idata_, [n for n in names if not n.startswith("beta")] or names, out)
    _write_views(est, out, data)
    report = est.check()
    print(report.message())
    print(f"wrote model.nc, summary.csv and plots to {out.resolve()}")
    return out


def convergence(args) -> Path:
    """The learning-curve study on dask (see :mod:`bayesmoe.experiments.convergence`)."""
    from bayesmoe.studies import learning_curve as conv

    settings = conv.StudySettings(
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        seed=args.seed,
        max_n_train=args.max_n_train,
    )
    models = args.models or None
    df = conv.run_study(
        args.scenario,
        args.replicates,
        args.out,
        models=models,
        settings=settings,
        scheduler=args.scheduler,
        n_workers=args.workers,
        progress=not args.no_progress,
    )
    written = conv.write_report(df, args.out)
    failed = df[df["status"] != "ok"]
    if len(failed):
        print(f"{len(failed)} failed fits; first: {failed['error'].iloc[0]}")
    if "learned_half_cauchy" in set(df["model"]):
        print(conv.summary_text(df))
    print(f"wrote results.parquet and {', '.join(p.name for p in written.values())} to {args.out}")
    return Path(args.out)


def _add_convergence_parser(sub) -> None:
    p = sub.add_parser(
        "convergence",
        help="learning-curve study over data size, on dask",
        description=textwrap.fill(
            "The learning-curve study: every model fitted on simulated data of "
            "growing size, on a dask cluster; results are written as they come, so a rerun "
            "resumes.",
            79,
        ),
        epilog=CONVERGENCE_EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--scenario", default="all", help="a scenario name or 'all'")
    p.add_argument("--replicates", type=int, default=20, help="simulated data sets per size")
    p.add_argument("--out", default="convergence_study", help="output folder (resumes)")
    p.add_argument("--scheduler", help="existing dask scheduler, tcp://host:port")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster workers")
    p.add_argument("--models", nargs="+", help="subset of models (default: all)")
    p.add_argument("--max-n-train", type=int, help="cap the size grid (quick looks)")
    p.add_argument("--draws", type=int, default=500, help="posterior draws per chain")
    p.add_argument("--tune", type=int, default=500, help="tuning steps per chain")
    p.add_argument("--chains", type=int, default=2, help="independent chains")
    p.add_argument("--seed", type=int, default=0, help="random seed of the study")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The ``bayesmoe`` command's argument parser (all sub-commands); builds no model."""
    from bayesmoe import __version__

    parser = argparse.ArgumentParser(
        prog="bayesmoe",
        description=textwrap.fill(DESCRIPTION, 79),
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_demo = sub.add_parser(
        "demo",
        help="fit and compare models on simulated data, write plots",
        description=textwrap.fill(
            "Fit six models on simulated data and compare them by LOO: three "
            "interaction regressions (base terms only, fixed prior scales, learned prior scales) "
            "on data with interactions, then an interaction regression, a mixture regression and "
            f"gated experts on two-regime data. Writes {', '.join(DEMO_OUTPUTS)} into --out.",
            79,
        ),
        epilog=DEMO_EPILOG,
        formatter_class=HelpFormatter,
    )
    p_demo.add_argument("--out", default="bayesmoe_demo", help="output folder (new or empty)")
    p_demo.add_argument("--force", action="store_true", help="write into a non-empty --out folder")
    p_demo.add_argument("--n-train", type=int, default=300, help="training rows simulated")
    _add_fit_options(p_demo)
    p_fit = sub.add_parser(
        "fit",
        help="fit a CSV or Parquet file",
        description=textwrap.fill(
            "Fit a model to a CSV or Parquet file (a Parquet folder or glob is "
            f"streamed on dask); writes {', '.join(FIT_OUTPUTS)} into --out.",
            79,
        ),
        epilog=FIT_EPILOG,
        formatter_class=HelpFormatter,
    )
    p_fit.add_argument("data", help="CSV or Parquet file, or a Parquet folder or glob (streamed)")
    p_fit.add_argument("--target", help="column to predict (or give --formula)")
    p_fit.add_argument(
        "--formula", help="Wilkinson formula, e.g. 'y ~ (a + b + c)**2' (replaces --target)"
    )
    p_fit.add_argument("--gate-formula", help="gate inputs of --model gated, e.g. '~ x1'")
    p_fit.add_argument("--features", nargs="+", help="feature columns (default: all others)")
    p_fit.add_argument(
        "--model", default="interaction", help=f"the model, one of: {', '.join(MODELS)}"
    )
    p_fit.add_argument("--out", required=True, help="output folder (new or empty)")
    p_fit.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty --out folder (never over the input data)",
    )
    _add_fit_options(p_fit)
    _add_convergence_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    if os.environ.get("BAYESMOE_QUIET_WARNINGS"):
        warnings.simplefilter("ignore")
    try:
        if args.command == "demo":
            demo(args)
        elif args.command == "convergence":
            convergence(args)
        else:
            fit_file(args)
    except (ValueError, TypeError, OSError) as err:
        print(f"bayesmoe {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


def entry() -> int:
    """The ``bayesmoe`` command: :func:`main` in a process of its own.

    The process is the command's, so the first fit may freeze the imported objects out
    of the garbage collector's sight (:func:`bayesmoe.cache.freeze_imports`: less time at
    exit and during compilation); ``BAYESMOE_GC_FREEZE=0`` keeps it from doing so.
    """
    from bayesmoe.cache import GC_FREEZE_ENV

    os.environ.setdefault(GC_FREEZE_ENV, "1")
    return main()


if __name__ == "__main__":
    raise SystemExit(entry())
