"""Local-global priors against scikit-learn's tuned linear models on real regression data.

Issue 18, part 4. Three real data sets that ship inside installed packages (nothing is
downloaded at run time):

* ``diabetes``: scikit-learn's ``load_diabetes`` (Efron et al. 2004), 442 x 10,
  disease progression after one year;
* ``star98``: statsmodels' ``star98`` (California schools, 1998), 303 x 12 school
  characteristics, the target the share of pupils above the national median maths score
  ``NABOVE / (NABOVE + NBELOW)`` (the data set's 8 prepared interaction columns dropped:
  the design forms all pairwise products itself);
* ``statecrime``: statsmodels' ``statecrime`` (US states, 2009), 51 x 5
  (``hs_grad, poverty, single, white, urban``), the target the violent-crime rate
  (``murder``, one of its components, is dropped).

For each, ``--splits`` random 75/25 train/test splits; every model sees the base
features plus all pairwise interactions (products of the training-standardised
features; scikit-learn models additionally get their columns standardised, so that
their penalties treat every coefficient alike). Per model and split: the test MSE and
the mean held-out log predictive density per row (Bayesian models: the posterior
predictive by :meth:`~bayesmoe.estimators.InteractionRegression.log_predictive_density`;
``BayesianRidge`` and ``ARDRegression``: their Gaussian predictive; the penalised fits
have none).

The table gives per data set and model the mean over splits with the paired standard
error of the difference to the *best scikit-learn baseline by mean test MSE* (for MSE)
and to ``BayesianRidge`` (for the log density): paired, because every model sees the
same splits. The issue's bar is checked at the end.

Usage::

    python benchmarks/real_data.py                    # 20 splits, all data sets
    python benchmarks/real_data.py --splits 2 --draws 200 --tune 200   # smoke
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

OUT = Path(__file__).resolve().parent / "results" / "real_data"
SKLEARN_MODELS = ("lasso_cv", "elastic_net_cv", "ard", "bayesian_ridge", "ridge_cv")
BAYES_MODELS = {"one_scale": "half_cauchy", "horseshoe": "horseshoe", "r2d2": "r2d2"}
TEST_FRACTION = 0.25


# ---------------------------------------------------------------- data
def load_diabetes() -> tuple[pd.DataFrame, pd.Series]:
    from sklearn.datasets import load_diabetes as load

    X, y = load(return_X_y=True, as_frame=True)
    return X, y.rename("progression")


def load_star98() -> tuple[pd.DataFrame, pd.Series]:
    from statsmodels.datasets import star98

    d = star98.load_pandas().data
    y = (d["NABOVE"] / (d["NABOVE"] + d["NBELOW"])).rename("share_above")
    base = [
        "LOWINC", "PERASIAN", "PERBLACK", "PERHISP", "PERMINTE", "AVYRSEXP", "AVSALK",
        "PERSPENK", "PTRATIO", "PCTAF", "PCTCHRT", "PCTYRRND",
    ]  # fmt: skip
    return d[base].astype(float), y


def load_statecrime() -> tuple[pd.DataFrame, pd.Series]:
    from statsmodels.datasets import statecrime

    d = statecrime.load_pandas().data
    return d[["hs_grad", "poverty", "single", "white", "urban"]].astype(float), d["violent"]


DATASETS = {"diabetes": load_diabetes, "star98": load_star98, "statecrime": load_statecrime}


# ---------------------------------------------------------------- models
def _design(X_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Base + pairwise products of the training-standardised features."""
    from bayesmoe.data import interaction_design

    mean, sd = X_train.mean(0), X_train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    p = X_train.shape[1]
    pairs = [(a, b) for a in range(p) for b in range(a + 1, p)]
    out = []
    for X in (X_train, X_test):
        Z = (X - mean) / sd
        out.append(np.column_stack([Z, interaction_design(Z, pairs)]))
    return out[0], out[1]


def _sklearn_model(name: str):
    from sklearn import linear_model as lm
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = {
        "lasso_cv": lambda: lm.LassoCV(cv=5, max_iter=50_000, random_state=0),
        "elastic_net_cv": lambda: lm.ElasticNetCV(
            l1_ratio=[0.1, 0.5, 0.7, 0.9, 0.95, 0.99, 1.0], cv=5, max_iter=50_000,
            random_state=0,
        ),
        "ard": lm.ARDRegression,
        "bayesian_ridge": lm.BayesianRidge,
        "ridge_cv": lambda: lm.RidgeCV(alphas=np.logspace(-3, 4, 29)),
    }[name]()  # fmt: skip
    return make_pipeline(StandardScaler(), model)


def fit_sklearn(name: str, X_tr, y_tr, X_te, y_te) -> dict:
    D_tr, D_te = _design(X_tr, X_te)
    model = _sklearn_model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter of the CV paths and ARD
        model.fit(D_tr, y_tr)
    row = {"mse": float(np.mean((model.predict(D_te) - y_te) ** 2)), "lpd": np.nan}
    if name in ("ard", "bayesian_ridge"):
        mean, sd = model.predict(D_te, return_std=True)
        row["lpd"] = float(np.mean(stats.norm.logpdf(y_te, mean, sd)))
    return row


def fit_bayes(prior: str, X_tr, y_tr, X_te, y_te, settings: dict) -> dict:
    import bayesmoe as bm
    from bayesmoe.fitting import diagnose

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = bm.InteractionRegression(prior=prior, progressbar=False, **settings).fit(X_tr, y_tr)
    report = diagnose(est.idata_)
    n_draws = est.idata_["posterior"].sizes["chain"] * est.idata_["posterior"].sizes["draw"]
    return {
        "mse": float(np.mean((est.predict(X_te) - y_te) ** 2)),
        "lpd": est.log_predictive_density(X_te, y_te) / len(y_te),
        "rhat_max": report.max_rhat,
        "divergences": report.divergences,
        "divergent_fraction": report.divergences / n_draws,
    }


# ---------------------------------------------------------------- the run
def run(datasets, splits: int, settings: dict, models, out: Path, seed: int = 0) -> pd.DataFrame:
    """All (data set, split, model) rows; resumes from ``out/splits.csv``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "splits.csv"
    done = pd.read_csv(path) if path.exists() else pd.DataFrame()
    have = (
        set()
        if done.empty
        else set(zip(done["dataset"], done["split"], done["model"], strict=True))
    )
    rows = [] if done.empty else done.to_dict("records")
    for name in datasets:
        X, y = DATASETS[name]()
        Xv, yv = X.to_numpy(float), y.to_numpy(float)
        n_test = round(TEST_FRACTION * len(yv))
        for s in range(splits):
            order = np.random.default_rng([seed, s]).permutation(len(yv))
            te, tr = order[:n_test], order[n_test:]
            for model in models:
                if (name, s, model) in have:
                    continue
                start = time.perf_counter()
                if model in BAYES_MODELS:
                    row = fit_bayes(
                        BAYES_MODELS[model], X.iloc[tr], yv[tr], X.iloc[te], yv[te],
                        {**settings, "random_seed": 1000 * s + 7},
                    )  # fmt: skip
                else:
                    row = fit_sklearn(model, Xv[tr], yv[tr], Xv[te], yv[te])
                row.update(dataset=name, split=s, model=model, seconds=time.perf_counter() - start)
                rows.append(row)
                print(
                    f"{name} split {s + 1}/{splits} {model}: mse {row['mse']:.4g} "
                    f"lpd {row['lpd']:.4g} ({row['seconds']:.1f} s)",
                    flush=True,
                )
            pd.DataFrame(rows).to_csv(path, index=False)  # after every split: resumable
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Per data set and model: means, paired differences to the best baseline (MSE) and
    to BayesianRidge (log density), with their paired standard errors."""
    out = []
    for name, d in df.groupby("dataset", sort=False):
        mse = d.pivot(index="split", columns="model", values="mse")
        lpd = d.pivot(index="split", columns="model", values="lpd")
        baselines = [m for m in SKLEARN_MODELS if m in mse]
        best = mse[baselines].mean().idxmin()
        for model in mse.columns:
            dm = mse[model] - mse[best]
            dl = lpd[model] - lpd["bayesian_ridge"] if "bayesian_ridge" in lpd else np.nan
            r = len(dm)
            row = {
                "dataset": name,
                "model": model,
                "splits": r,
                "mse": mse[model].mean(),
                "best_baseline": best,
                "mse_minus_best": dm.mean(),
                "se_paired": dm.std(ddof=1) / np.sqrt(r) if r > 1 else np.nan,
                "lpd": lpd[model].mean(),
                "lpd_minus_bayesian_ridge": np.mean(dl),
                "se_lpd_paired": np.std(dl, ddof=1) / np.sqrt(r) if r > 1 else np.nan,
            }
            sub = d[d["model"] == model]
            if "rhat_max" in sub and sub["rhat_max"].notna().any():
                row["rhat_max"] = sub["rhat_max"].max()
                row["divergent_fraction"] = sub["divergent_fraction"].mean()
            out.append(row)
    return pd.DataFrame(out)


def bar(summary: pd.DataFrame) -> list[str]:
    """The issue's bar, one line per criterion."""
    lines, beats_all = [], 0
    sets = summary["dataset"].unique()
    for name in sets:
        s = summary[summary["dataset"] == name].set_index("model")
        new = [m for m in ("horseshoe", "r2d2") if m in s.index]
        if not new:
            continue
        top = s.loc[new, "mse"].idxmin()
        worst_baseline_gap = s.loc[top, "mse_minus_best"]
        beats = worst_baseline_gap < 0
        beats_all += beats
        z = worst_baseline_gap / s.loc[top, "se_paired"]
        lpd_ok = s.loc[top, "lpd_minus_bayesian_ridge"] > 0
        lines.append(
            f"{name}: best new prior {top}: MSE {s.loc[top, 'mse']:.4g} vs best baseline "
            f"{s.loc[top, 'best_baseline']} {s.loc[s.loc[top, 'best_baseline'], 'mse']:.4g} "
            f"(diff {worst_baseline_gap:+.4g} = {z:+.2f} paired s.e.; "
            f"{'lower' if beats else 'NOT lower'}; within 2 s.e.: {z <= 2}); "
            f"lpd - BayesianRidge {s.loc[top, 'lpd_minus_bayesian_ridge']:+.4f} "
            f"(s.e. {s.loc[top, 'se_lpd_paired']:.4f}; {'better' if lpd_ok else 'NOT better'})"
        )
    lines.append(f"lower mean MSE than every baseline on {beats_all} of {len(sets)} data sets")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=[*SKLEARN_MODELS, *BAYES_MODELS])
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    settings = dict(draws=args.draws, tune=args.tune, chains=args.chains, log_likelihood=False)
    df = run(args.datasets, args.splits, settings, args.models, args.out)
    df = df[df["dataset"].isin(args.datasets) & df["split"].lt(args.splits)]
    summary = summarise(df)
    summary.to_csv(args.out / "summary.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary.round(4).to_string(index=False))
    print("\n".join(bar(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
