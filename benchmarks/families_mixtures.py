"""Do mixtures of logistic and Poisson experts converge and recover their components?

For each seed and K in (2, 3): simulated data from
``make_mixture_data(n, K, 2, family=...)`` fitted at the estimators' defaults (NUTS,
4 chains x 1000 draws after 1000 tuning steps, the EM start, relabelling):

* logistic experts: ``GatedExperts(n_experts=K, family="bernoulli")`` on a linear gate
  (Jordan & Jacobs' mixture of logistic experts; a Bernoulli outcome mixed by constant
  weights is not identified from one 0/1 per row, so the gate carries the labels);
* Poisson experts: ``MixtureRegression(n_components=K, family="poisson")`` (Dirichlet
  weights, intercepts 1.5 apart on the log scale).

Columns: the max R-hat over the identified variables (experts, scales, gate or weights),
whether it is <= 1.01, the recovery error (the largest |posterior mean - truth| over the
experts' working-scale intercepts and slopes, after matching fit and true experts) and
its z-score (that difference over the posterior sd); a component counts as recovered when
every z-score is below 4. The reference in the same run is the bar itself: R-hat <= 1.01 on
at least 9 of 10 seeds per (family, K).

    python benchmarks/families_mixtures.py --seeds 10 --n 1000

Runtime: each fit takes ~20-60 s on one core after the first compilation per structure;
``--budget`` (seconds, default 3000) stops starting new fits once spent, and the table says
how many ran.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import bayesmoe as bm
from bayesmoe.experiments import make_mixture_data
from bayesmoe.experiments.simulate import align_truth
from bayesmoe.inference.diagnostics import RHAT_MAX


def case(family: str, K: int, seed: int, n: int, settings: dict) -> dict:
    if family == "bernoulli":
        data = make_mixture_data(n, K, 2, gate="linear", family="bernoulli", seed=seed)
        est = bm.GatedExperts(n_experts=K, family="bernoulli", random_seed=seed, **settings)
    else:
        data = make_mixture_data(n, K, 2, gate=None, family="poisson", separation=1.5, seed=seed)
        est = bm.MixtureRegression(n_components=K, family="poisson", random_seed=seed, **settings)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the diagnostics are the table's
        est.fit(data.X, data.y)
    seconds = time.perf_counter() - start
    report = est.check(loo=False)
    rhat = float(report.max_rhat)
    post = est.working_view()["posterior"]
    mean_b = post["intercept"].mean(("chain", "draw")).values
    mean_w = post["beta"].mean(("chain", "draw")).values
    sd = np.column_stack(
        [
            post["intercept"].std(("chain", "draw")).values,
            post["beta"].std(("chain", "draw")).values,
        ]
    )
    std = est.standardizer_
    truth = data.working_truth(std.x_mean, std.x_scale, 0.0, 1.0)
    truth = align_truth(truth, mean_b, mean_w)
    diff = np.abs(
        np.column_stack([mean_b, mean_w]) - np.column_stack([truth["intercept"], truth["beta"]])
    )
    return {
        "seed": seed,
        "K": K,
        "family": family,
        "max_rhat": rhat,
        "rhat_ok": rhat <= RHAT_MAX,
        "error": float(diff.max()),
        "max_z": float((diff / sd).max()),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--families", default="bernoulli,poisson")
    parser.add_argument("--ks", default="2,3")
    parser.add_argument("--budget", type=float, default=3000.0)
    args = parser.parse_args()
    settings = dict(draws=args.draws, tune=args.tune, chains=args.chains, progressbar=False)
    rows, begin = [], time.perf_counter()
    print("| seed | K | family | max R-hat | R-hat <= 1.01 | recovery error | max z | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for family in args.families.split(","):
        for K in (int(k) for k in args.ks.split(",")):
            for seed in range(args.seeds):
                if time.perf_counter() - begin > args.budget:
                    break
                r = case(family, K, seed, args.n, settings)
                rows.append(r)
                print(
                    f"| {r['seed']} | {r['K']} | {r['family']} | {r['max_rhat']:.4f} | "
                    f"{r['rhat_ok']} | {r['error']:.3f} | {r['max_z']:.2f} | "
                    f"{r['seconds']:.0f} |",
                    flush=True,
                )
    print("\n| family | K | fits | R-hat <= 1.01 | recovered (max z < 4) | bar (9 of 10) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for family in args.families.split(","):
        for K in (int(k) for k in args.ks.split(",")):
            sel = [r for r in rows if r["family"] == family and r["K"] == K]
            if not sel:
                continue
            ok = sum(r["rhat_ok"] for r in sel)
            rec = sum(r["max_z"] < 4 for r in sel)
            if len(sel) < 10:
                bar = f"not judged ({len(sel)} of 10 seeds ran)"
            else:
                bar = "met" if ok >= 0.9 * len(sel) else "not met"
            print(f"| {family} | {K} | {len(sel)} | {ok} | {rec} | {bar} |")
    print(f"\ntotal {time.perf_counter() - begin:.0f} s, n = {args.n}, {settings}")


if __name__ == "__main__":
    main()
