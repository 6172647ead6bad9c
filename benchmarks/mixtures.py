"""Mixture-of-experts convergence and calibration bar, per seed and per sampler.

The bar: on simulated data with well-separated experts (n = 2000 rows, 3 features,
K = 2 and K = 3, linear and mlp gate), default settings with 4 chains give max R-hat
<= 1.01, bulk ESS >= 400 for every identified quantity and no divergences for at least
9 of 10 random seeds, and the true values of the identified quantities fall inside the
94% HDIs at about the nominal rate.

For each (config, sampler, seed) this fits ``GatedExperts`` with default settings
(``gate_hidden=3`` for the mlp gate) on ``make_mixture_data(2000, K, 3, gate, seed)`` and
records the wall time of ``fit``, the fit seconds (``idata_.attrs["bayesmoe_fit_seconds"]``:
compilation, sampling, relabelling, log-likelihood), max R-hat and min bulk ESS over the
identified quantities (``est.check()``), divergences, ESS/s (min bulk ESS / fit seconds),
pass/fail, and how many true identified quantities lie in their 94% HDI. For the linear
gate these are the expert intercepts, slopes and noise sds and the gate's output weights
and intercepts; for the mlp gate, whose hidden weights are not identified, the expert
parameters and the gate probabilities on the model's fixed grid
(``gate_probability_grid``). The truth is relabelled to the fit's expert labels by
matching (intercept, slopes) (``bayesmoe.experiments.align_truth``).

The first fit of each model structure in a process pays numba/JAX compilation (column
``cold``); later fits of the same structure reuse it. Medians of ESS/s over seeds are
what the summary reports, so one cold fit does not dominate them.

Rows are printed as they finish and appended to ``--out`` (a CSV); rerunning with the
same ``--out``, draws and tune skips the rows already there, so an interrupted run
resumes. The summary covers the requested (config, sampler, seed) rows found in the CSV.

Usage::

    python benchmarks/mixtures.py                              # the full bar (hours)
    python benchmarks/mixtures.py --configs linear-K2 --samplers nutpie,pymc,numpyro --seeds 3
    python benchmarks/mixtures.py --seeds 1 --draws 50 --tune 50 --out /tmp/smoke.csv
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

#: name -> (number of experts, gate)
CONFIGS = {
    "linear-K2": (2, "linear"),
    "linear-K3": (3, "linear"),
    "mlp-K2": (2, "mlp"),
    "mlp-K3": (3, "mlp"),
}
SAMPLERS = ("nutpie", "pymc", "numpyro")
N_ROWS, N_FEATURES, GATE_HIDDEN = 2000, 3, 3
RHAT_MAX, ESS_MIN = 1.01, 400
HDI_PROB = 0.94
#: Held-out rows for the log predictive density (the same rows as benchmarks/vem.py).
N_TEST = 5000
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "mixtures.csv"

COLUMNS = [
    "config",
    "sampler",
    "seed",
    "draws",
    "tune",
    "chains",
    "cold",
    "wall_s",
    "fit_s",
    "max_rhat",
    "min_ess_bulk",
    "divergences",
    "ess_per_s",
    "passed",
    "covered",
    "n_truth",
    "covered_eti",
    "heldout_lpd",
    "ref_misses",
    "ordered",
    "why",
    "missed",
]

_SEEN_STRUCTURES: set = set()


# ----------------------------------------------------------------------------- one seed
def _interval(idata, name: str, kind: str = "hdi") -> np.ndarray:
    """94% HDI (or ``kind="eti"``: equal-tailed interval) of one posterior variable, shape
    (*var_shape, 2) (lower, upper)."""
    import arviz as az

    out = getattr(az, kind)(idata, var_names=[name], prob=HDI_PROB)
    if hasattr(out, "data_vars") and name in out.data_vars:
        da = out[name]
    else:
        da = out["posterior"][name]
    bound = [d for d in da.dims if d not in idata["posterior"][name].dims]
    if len(bound) != 1:
        raise RuntimeError(f"cannot find the interval dimension of az.hdi: {da.dims}")
    return np.asarray(da.transpose(..., bound[0]).values)


def _expert_permutation(truth_work: dict, intercept: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Fit expert j <-> true expert sigma[j], the matching ``align_truth`` uses."""
    from scipy.optimize import linear_sum_assignment

    true_coef = np.column_stack([truth_work["intercept"], truth_work["beta"]])
    fit_coef = np.column_stack([intercept, beta])
    cost = ((fit_coef[:, None, :] - true_coef[None, :, :]) ** 2).sum(axis=-1)
    return linear_sum_assignment(cost)[1]


def identified_truth(est, data) -> dict[str, np.ndarray]:
    """True values of the fit's identified quantities, on its working scale and labels."""
    from bayesmoe.experiments import align_truth

    st = est.standardizer_
    spec = est.model_.bayesmoe_spec
    post = est.working_view()["posterior"]
    work = data.working_truth(st.x_mean, st.x_scale, st.y_mean, st.y_scale)
    intercept = post["intercept"].mean(("chain", "draw")).values
    beta = post["beta"].mean(("chain", "draw")).values
    truth = align_truth(work, intercept, beta)
    if "gate_probability_grid" in spec.identified_vars:
        x_mean, x_scale = np.asarray(st.x_mean, float), np.asarray(st.x_scale, float)
        gate_idx = list(spec.gate_idx)
        if sorted(gate_idx) != list(range(x_mean.size)):
            raise ValueError("the true gate needs every feature; fit with all gate features")
        raw = np.empty((spec.grid.shape[0], x_mean.size))
        raw[:, gate_idx] = spec.grid * x_scale[gate_idx] + x_mean[gate_idx]
        sigma = _expert_permutation(work, intercept, beta)
        truth["gate_probability_grid"] = data.gate_probabilities(raw)[:, sigma]
    names = [n for n in spec.identified_vars if n in post.data_vars]
    return {k: np.asarray(v, float) for k, v in truth.items() if k in names}


def coverage(est, truth: dict[str, np.ndarray], kind: str = "hdi") -> tuple[int, int, list[str]]:
    """(covered, total, names of the missed elements) of ``truth`` in the 94% intervals.

    ``kind="hdi"`` (highest density) or ``"eti"`` (equal-tailed, ArviZ 1's default). Only
    the ETI is invariant to reparametrisation: a gate probability near 0 or 1 has a
    skewed posterior whose HDI hugs the boundary, so the two can disagree there.
    """
    covered, total, missed = 0, 0, []
    for name, value in truth.items():
        h = _interval(est.working_view(), name, kind)
        value = np.broadcast_to(value, h.shape[:-1])
        inside = (value >= h[..., 0]) & (value <= h[..., 1])
        covered += int(inside.sum())
        total += inside.size
        for idx in zip(*np.nonzero(~inside), strict=True):
            missed.append(f"{name}[{','.join(map(str, idx))}]" if idx else name)
    return covered, total, missed


def reference_misses(est, names, kind: str = "hdi") -> np.ndarray:
    """Misses of each posterior draw, taken as a pseudo-truth, by the same 94% intervals.

    The reference for judging coverage when misses cluster. Within one fit the
    identified quantities are strongly correlated (gate probabilities at neighbouring
    grid points move together with the data's realised assignments), so one data set
    that happens to pull the gate one way misses many of them at once, and a 10-seed
    total is far more variable than a binomial count. A draw from the posterior misses
    94% intervals at exactly the nominal rate on average, with the posterior's own
    correlation: summing one draw's count per seed gives the distribution of the total
    under correct calibration (:func:`coverage_p_value`). Returns one count per draw.
    """
    post = est.working_view()["posterior"]
    out = 0
    for name in names:
        h = _interval(est.working_view(), name, kind)
        da = post[name].stack(sample=("chain", "draw")).transpose("sample", ...)
        v = da.values
        out = out + ((v < h[..., 0]) | (v > h[..., 1])).reshape(v.shape[0], -1).sum(axis=1)
    return np.asarray(out, int)


def coverage_p_value(observed_misses: int, histograms: list[np.ndarray], n: int = 20000):
    """P(total misses >= observed) when each seed's count is drawn from its reference
    histogram (:func:`reference_misses`); also the reference's mean total."""
    rng = np.random.default_rng(0)
    total = np.zeros(n, int)
    mean = 0.0
    for hist in histograms:
        prob = hist / hist.sum()
        total += rng.choice(hist.size, size=n, p=prob)
        mean += float(np.arange(hist.size) @ prob)
    return float(np.mean(total >= observed_misses)), mean


def make_estimator(
    config: str, sampler: str, seed: int, draws: int, tune: int, chains: int, fit_kwargs=None
):
    import bayesmoe as bm

    K, gate = CONFIGS[config]
    return bm.GatedExperts(
        n_experts=K,
        gate=gate,
        gate_hidden=GATE_HIDDEN if gate == "mlp" else None,
        sampler=sampler,
        draws=draws,
        tune=tune,
        chains=chains,
        random_seed=seed,
        progressbar=False,
        fit_kwargs=fit_kwargs,
    )


def run_seed(
    config: str,
    sampler: str = "nutpie",
    seed: int = 0,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    fit_kwargs: dict | None = None,
) -> dict:
    """Fit one simulated data set and check it against the bar; one result row.

    ``fit_kwargs`` go to :func:`bayesmoe.fit` (e.g. ``{"initvals": None}`` for PyMC's
    default start, ``{"init": "vem"}``); ``benchmarks/vem.py`` compares starts this way.
    """
    from bayesmoe.experiments import make_mixture_data

    K, gate = CONFIGS[config]
    data = make_mixture_data(N_ROWS, K, N_FEATURES, gate=gate, seed=seed)
    est = make_estimator(config, sampler, seed, draws, tune, chains, fit_kwargs)
    structure = (config, sampler, draws, tune, chains)
    cold = structure not in _SEEN_STRUCTURES
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(data.X, data.y)
    wall = time.perf_counter() - start
    _SEEN_STRUCTURES.add(structure)
    diag = est.check()
    fit_s = float(est.idata_.attrs["bayesmoe_fit_seconds"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth = identified_truth(est, data)
        covered, total, missed = coverage(est, truth)
        covered_eti = coverage(est, truth, "eti")[0]
        ref = np.bincount(reference_misses(est, list(truth)), minlength=total + 1)
        # Held-out log predictive density per row, on the rows benchmarks/vem.py uses,
        # so that its VEM figures compare with these NUTS fits seed for seed.
        test = data.new_rows(N_TEST, seed=seed + 1000)
        heldout_lpd = est.log_predictive_density(test.X, test.y) / len(test.y)
    why = []
    if not diag.max_rhat <= RHAT_MAX:
        why.append(f"rhat {diag.max_rhat:.3f} {' '.join(diag.worst_rhat[:3])}")
    if not diag.min_ess_bulk >= ESS_MIN:
        why.append(f"ess {diag.min_ess_bulk:.0f} {' '.join(diag.worst_ess[:3])}")
    if diag.divergences:
        why.append(f"{diag.divergences} div")
    return {
        "config": config,
        "sampler": sampler,
        "seed": seed,
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "cold": cold,
        "wall_s": wall,
        "fit_s": fit_s,
        "max_rhat": float(diag.max_rhat),
        "min_ess_bulk": float(diag.min_ess_bulk),
        "divergences": int(diag.divergences),
        "ess_per_s": float(diag.min_ess_bulk) / fit_s,
        "passed": not why,
        "covered": covered,
        "n_truth": total,
        "covered_eti": covered_eti,
        "heldout_lpd": heldout_lpd,
        "ref_misses": " ".join(map(str, ref)),
        "ordered": bool(est.model_.bayesmoe_spec.ordered),
        "why": "; ".join(why),
        "missed": " ".join(missed),  # all of them: the CSV is the audit trail
        "estimator": est,
        "data": data,
    }


def coverage_floor(n: int, prob: float = HDI_PROB, q: float = 0.001) -> int:
    """Fewest covered of ``n`` nominal-``prob`` intervals that is not a 1-in-1000 miss."""
    from scipy.stats import binom

    return int(binom.ppf(q, n, prob))


# ----------------------------------------------------------------------------- tables
_ROW_FORMAT = [
    ("config", 9, "{}"),
    ("sampler", 7, "{}"),
    ("seed", 4, "{}"),
    ("cold", 5, "{}"),
    ("wall_s", 7, "{:.1f}"),
    ("fit_s", 7, "{:.1f}"),
    ("max_rhat", 8, "{:.4f}"),
    ("min_ess_bulk", 12, "{:.0f}"),
    ("divergences", 11, "{}"),
    ("ess_per_s", 9, "{:.1f}"),
    ("passed", 6, "{}"),
    ("coverage", 8, "{}"),
    ("why", 0, "{}"),
]


def _cells(row: dict | None) -> list[str]:
    out = []
    for name, width, fmt in _ROW_FORMAT:
        if row is None:
            text = name
        elif name == "coverage":
            text = f"{row['covered']}/{row['n_truth']}"
        else:
            text = fmt.format(row[name])
        out.append(text.rjust(width) if width else text)
    return out


def print_row(row: dict, header: bool = False) -> None:
    """One per-seed line, fixed widths so that lines printed apart line up (the full
    per-seed table is printed with ``tabulate`` at the end)."""
    rows = [_cells(None), _cells(row)] if header else [_cells(row)]
    text = "\n".join("  ".join(cells) for cells in rows)
    print(text, flush=True)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Per (config, sampler): seeds passing, median ESS/s, coverage, ratio to nutpie."""
    out = []
    for (config, sampler), g in df.groupby(["config", "sampler"], sort=False):
        out.append(
            {
                "config": config,
                "sampler": sampler,
                "passed": f"{int(g['passed'].sum())}/{len(g)}",
                "max_rhat": g["max_rhat"].max(),
                "min_ess": g["min_ess_bulk"].min(),
                "divergences": int(g["divergences"].sum()),
                "median_fit_s": g["fit_s"].median(),
                "median_ess_per_s": g["ess_per_s"].median(),
                "coverage": f"{int(g['covered'].sum())}/{int(g['n_truth'].sum())}",
                "coverage_rate": g["covered"].sum() / max(g["n_truth"].sum(), 1),
                "coverage_eti": g["covered_eti"].sum() / max(g["n_truth"].sum(), 1),
                **_coverage_reference(g),
            }
        )
    table = pd.DataFrame(out)
    if table.empty:
        return table
    ref = table[table["sampler"] == "nutpie"].set_index("config")["median_ess_per_s"]
    table["ess_per_s_vs_nutpie"] = [
        r["median_ess_per_s"] / ref[r["config"]] if r["config"] in ref.index else math.nan
        for _, r in table.iterrows()
    ]
    return table


def _coverage_reference(g: pd.DataFrame) -> dict:
    """Expected misses under correct calibration and P(misses >= observed), from the
    per-seed reference histograms (rows written before they existed are skipped)."""
    hist = g.get("ref_misses", pd.Series(index=g.index, dtype=object))
    rows = g[hist.notna() & (hist.astype(str).str.strip() != "")]
    if rows.empty:
        return {"misses": math.nan, "ref_misses": math.nan, "p_value": math.nan}
    hists = [np.array(str(h).split(), dtype=float) for h in rows["ref_misses"]]
    observed = int((rows["n_truth"] - rows["covered"]).sum())
    p, mean = coverage_p_value(observed, hists)
    return {"misses": observed, "ref_misses": mean, "p_value": p}


# ----------------------------------------------------------------------------- driver
def _read_done(path: Path) -> pd.DataFrame:
    if path.exists() and path.stat().st_size > 0:
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
        df = df.reindex(columns=COLUMNS)  # CSVs written before a column was added
        return df.assign(why=df["why"].fillna(""), missed=df["missed"].fillna(""))
    return pd.DataFrame(columns=COLUMNS)


def _append(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    pd.DataFrame([row], columns=COLUMNS).to_csv(path, mode="a", header=new, index=False)


def _csv_list(text: str, allowed) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {list(allowed)}")
    return items


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--configs",
        type=lambda s: _csv_list(s, CONFIGS),
        default=list(CONFIGS),
        help=f"comma-separated, from {','.join(CONFIGS)} (default: all)",
    )
    p.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1 (default 10)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument(
        "--samplers",
        type=lambda s: _csv_list(s, SAMPLERS),
        default=list(SAMPLERS),
        help="comma-separated, from nutpie,pymc,numpyro (default: all)",
    )
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p.parse_args(argv)


def main(argv=None) -> pd.DataFrame:
    from tabulate import tabulate

    args = parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    done = _read_done(args.out)
    key = ["config", "sampler", "seed", "draws", "tune", "chains"]
    have = {tuple(r) for r in done[key].itertuples(index=False)} if len(done) else set()
    header = True
    failed = []
    for config in args.configs:
        for sampler in args.samplers:
            for seed in seeds:
                if (config, sampler, seed, args.draws, args.tune, args.chains) in have:
                    continue
                try:
                    row = run_seed(
                        config,
                        sampler,
                        seed,
                        draws=args.draws,
                        tune=args.tune,
                        chains=args.chains,
                    )
                except Exception as err:  # one broken fit must not lose the others
                    failed.append((config, sampler, seed, f"{type(err).__name__}: {err}"))
                    print(f"{config} {sampler} seed {seed}: ERROR {failed[-1][3]}", flush=True)
                    continue
                _append(args.out, row)
                print_row(row, header=header)
                header = False

    df = _read_done(args.out)
    if len(df):
        df = df[
            df["config"].isin(args.configs)
            & df["sampler"].isin(args.samplers)
            & df["seed"].isin(seeds)
            & (df["draws"] == args.draws)
            & (df["tune"] == args.tune)
            & (df["chains"] == args.chains)
        ]
        df = df.assign(passed=df["passed"].astype(str) == "True")
    if len(df):
        rank = {**{c: i for i, c in enumerate(CONFIGS)}, **{s: i for i, s in enumerate(SAMPLERS)}}
        df = df.sort_values(
            ["config", "sampler", "seed"], key=lambda col: col.map(rank).fillna(col)
        )
        per_seed = df[
            [
                "config",
                "sampler",
                "seed",
                "cold",
                "wall_s",
                "fit_s",
                "max_rhat",
                "min_ess_bulk",
                "divergences",
                "ess_per_s",
                "passed",
                "covered",
                "covered_eti",
                "n_truth",
                "heldout_lpd",
                "why",
            ]
        ]
        print("\nPer seed\n" + tabulate(per_seed, headers="keys", showindex=False, floatfmt=".4g"))
        summary = summarise(df)
        print(
            f"\nSummary (bar: max R-hat <= {RHAT_MAX}, min bulk ESS >= {ESS_MIN}, 0 divergences "
            f"in >= 9 of 10 seeds; {HDI_PROB:.0%} HDI coverage near nominal; "
            f"draws={args.draws} tune={args.tune} chains={args.chains})\n"
            + tabulate(summary, headers="keys", showindex=False, floatfmt=".4g"),
            flush=True,
        )
    else:
        summary = pd.DataFrame()
    for config, sampler, seed, msg in failed:
        print(f"ERROR {config} {sampler} seed {seed}: {msg}", file=sys.stderr)
    return summary


if __name__ == "__main__":
    main()
