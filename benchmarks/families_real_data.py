"""Non-Gaussian InteractionRegression on real data against tuned scikit-learn GLMs.

    python benchmarks/families_real_data.py                 # 20 splits, 2 chains x 500
    python benchmarks/families_real_data.py --splits 5 --draws 300

Three data sets that ship offline:

* ``breast_cancer`` (scikit-learn): malignant vs benign, 6 of the "mean" features, a
  50/50 split of the 569 rows;
* ``fair`` (statsmodels): had an affair (``affairs > 0``), 8 features, 600 training and
  1000 test rows drawn per split from the 6366;
* ``randhie`` (statsmodels): doctor visits ``mdvis`` (counts), 9 features, 600 training
  and 2000 test rows per split from the 20190.

Every model sees the same design: the features standardised on the training rows, and
all their pairwise products. The reference in the same run is scikit-learn's
``LogisticRegressionCV`` (L2, 10 penalties, 5-fold CV on log loss) for the binary sets
and ``PoissonRegressor`` with its penalty tuned by ``GridSearchCV`` (5-fold, mean
Poisson deviance) for the counts. The score is the held-out log loss per row
(:math:`-\\frac1n \\sum_i \\log p(y_i \\mid \\text{train})`; for bayesmoe the posterior
predictive density, for scikit-learn the plug-in density); the table gives the mean over
splits, the paired difference to the reference and its standard error over splits.
Writes ``benchmarks/results/families_real_data.md``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import poisson
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegressionCV, PoissonRegressor
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

import bayesmoe as bm

OUT = Path(__file__).parent / "results" / "families_real_data.md"


def datasets() -> dict:
    """name -> (X DataFrame, y, kind, n_train, n_test)."""
    import statsmodels.api as sm

    bc = load_breast_cancer(as_frame=True)
    cols = [
        "mean radius",
        "mean texture",
        "mean smoothness",
        "mean compactness",
        "mean symmetry",
        "mean fractal dimension",
    ]
    fair = sm.datasets.fair.load_pandas().data
    rand = sm.datasets.randhie.load_pandas().data
    return {
        "breast_cancer": (bc.data[cols], bc.target.to_numpy(float), "binary", 285, 284),
        "fair": (
            fair.drop(columns="affairs"),
            (fair["affairs"] > 0).to_numpy(float),
            "binary",
            600,
            1000,
        ),
        "randhie": (rand.drop(columns="mdvis"), rand["mdvis"].to_numpy(float), "count", 600, 2000),
    }


def design(X_train: np.ndarray, X_test: np.ndarray):
    """Standardised features and all pairwise products, scaled again (for scikit-learn)."""
    scale = StandardScaler().fit(X_train)
    poly = PolynomialFeatures(degree=2, interaction_only=True, include_bias=False)
    A, B = poly.fit_transform(scale.transform(X_train)), poly.transform(scale.transform(X_test))
    second = StandardScaler().fit(A)
    return second.transform(A), second.transform(B)


def sklearn_loss(kind: str, X_train, y_train, X_test, y_test) -> float:
    A, B = design(X_train, X_test)
    if kind == "binary":
        clf = LogisticRegressionCV(Cs=10, cv=5, scoring="neg_log_loss", max_iter=5000)
        p = np.clip(clf.fit(A, y_train).predict_proba(B)[:, 1], 1e-15, 1 - 1e-15)
        return float(-np.mean(y_test * np.log(p) + (1 - y_test) * np.log1p(-p)))
    grid = GridSearchCV(
        PoissonRegressor(solver="newton-cholesky", max_iter=300),
        {"alpha": np.logspace(-4, 1, 11)},
        cv=5,
        scoring="neg_mean_poisson_deviance",
    )
    mu = grid.fit(A, y_train).predict(B)
    return float(-np.mean(poisson.logpmf(y_test, mu)))


def bayes_loss(family: str, args, X_train, y_train, X_test, y_test, seed: int) -> float:
    est = bm.InteractionRegression(
        family=family,
        draws=args.draws,
        tune=args.draws,
        chains=2,
        random_seed=seed,
        progressbar=False,
        log_likelihood=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X_train, y_train)
    return -est.log_predictive_density(X_test, y_test) / len(y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--sets", nargs="*", default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    models = {"binary": ["bernoulli"], "count": ["poisson", "negative_binomial"]}
    rows, start = [], time.perf_counter()
    for name, (X, y, kind, n_train, n_test) in datasets().items():
        if args.sets and name not in args.sets:
            continue
        X = X.to_numpy(float)
        losses: dict[str, list[float]] = {}
        t0 = time.perf_counter()
        for split in range(args.splits):
            rng = np.random.default_rng(split)
            idx = rng.permutation(len(y))
            tr, te = idx[:n_train], idx[n_train : n_train + n_test]
            ref = sklearn_loss(kind, X[tr], y[tr], X[te], y[te])
            losses.setdefault("reference", []).append(ref)
            for family in models[kind]:
                loss = bayes_loss(family, args, X[tr], y[tr], X[te], y[te], split)
                losses.setdefault(family, []).append(loss)
            print(
                f"{name} split {split}: "
                + ", ".join(f"{k} {v[-1]:.4f}" for k, v in losses.items())
            )
        ref = np.asarray(losses["reference"])
        for model, values in losses.items():
            v = np.asarray(values)
            diff = v - ref
            se = diff.std(ddof=1) / np.sqrt(len(v))
            rows.append(
                {
                    "data": name,
                    "model": model if model != "reference" else (
                        "LogisticRegressionCV" if kind == "binary" else "PoissonRegressor (CV)"
                    ),
                    "log loss": f"{v.mean():.4f}",
                    "diff vs reference": "" if model == "reference" else f"{diff.mean():+.4f}",
                    "paired s.e.": "" if model == "reference" else f"{se:.4f}",
                    "seconds": f"{time.perf_counter() - t0:.0f}",
                }
            )  # fmt: skip
        write(rows, args, time.perf_counter() - start)


def write(rows: list[dict], args, elapsed: float) -> None:
    """Print the table and write it (after every data set, so a partial run keeps rows)."""
    text = pd.DataFrame(rows).to_markdown(index=False)
    print(text)
    print(f"total {elapsed:.0f} s")
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(
        "# Non-Gaussian families on real data\n\n"
        f"`python benchmarks/families_real_data.py --splits {args.splits} --draws {args.draws}"
        + (f" --sets {' '.join(args.sets)}`" if args.sets else "`")
        + f" (2 chains, tune = draws); {time.strftime('%Y-%m-%d')}, total {elapsed:.0f} s on a "
        "shared 2-core machine. Held-out log loss per row (lower is better); diff = bayesmoe "
        "minus the reference, paired over the same splits; seconds = the data set's wall "
        "time.\n\n" + text + "\n"
    )


if __name__ == "__main__":
    main()
