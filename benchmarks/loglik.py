"""Pointwise log-likelihood: kernel throughput, LOO cost, fit times, subsampled LOO.

Five parts, each printing a table:

``kernel``
    Values/s of :mod:`bayesmoe.numerics.loglik` against a plain numpy reference computed
    in one shot (``coef @ X.T`` and the elementwise formula on full-size arrays; for
    mixtures ``einsum`` + ``scipy.special.logsumexp``) and against the xarray +
    ``scipy.stats.norm.logpdf`` formula the specs used before, in the same run, on the
    same arrays: the interaction model's design (6 features + 15 interactions) and
    three-expert mixtures (6 features; no gate, linear gate, mlp gate). The output is
    written into an array that was written once before (first-touch page faults of fresh
    memory are a property of the machine, reported separately as ``fill``).
``loo``
    ArviZ's PSIS-LOO (``arviz.loo``) in values/s: what a stored log-likelihood costs
    later, and why ``LOG_LIKELIHOOD_AUTO_BYTES`` is 256 MiB.
``fits``
    ``InteractionRegression(log_likelihood="auto")`` with default settings (nutpie, 4 x
    1000 draws) at 1e3 and 2e5 rows, 6 features, after one warm-up fit that compiles the
    structure; the issue's ``draws=500, chains=2``; and ``log_likelihood=True`` for the
    full array at 2e5 rows.
``subsample``
    At 2e5 rows: subsampled LOO (``bayesmoe.compare`` path, ``arviz_stats.loo_subsample``)
    against PSIS-LOO on every row, for subsample sizes 1000 / 2000 / 4000: the error of
    the elpd estimate and the subsampling SE (how ``LOO_SUBSAMPLE_ROWS`` was chosen).
``vem``
    ``MixtureRegression(method="vem")`` at ``--vem-rows`` (1e6) rows with default settings
    and ``log_likelihood="auto"``, a one-component ``InteractionRegression`` on the same
    rows, and ``bayesmoe.compare`` of the two (with its subsampling SE); peak memory of
    the process (run ``--parts vem`` alone for the VEM fit's own: 1.75 GiB at 1e6 rows).

Usage::

    python benchmarks/loglik.py                     # everything (about 9 minutes here)
    python benchmarks/loglik.py --parts kernel,fits
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats
from scipy.special import logsumexp

import bayesmoe as bm
from bayesmoe import fitting
from bayesmoe.experiments import make_mixture_data
from bayesmoe.inference.loglik import SUBSAMPLE_GROUP
from bayesmoe.numerics import loglik
from bayesmoe.numerics.blas import single_threaded_blas

PARTS = ("kernel", "loo", "fits", "subsample", "vem")
pd.set_option("display.width", 200)
pd.set_option("display.max_columns", 20)


def _best(fn, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _interaction_data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = X @ rng.normal(size=6) + 0.3 * X[:, 0] * X[:, 1] + rng.normal(size=n)
    return X, y


def part_kernel() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    S, n, d = 1000, 100_000, 21
    X, y = rng.normal(size=(n, d)), rng.normal(size=n)
    coef, b = rng.normal(size=(S, d)) * 0.1, rng.normal(size=S)
    sigma = rng.uniform(0.5, 2.0, S)
    out = np.empty((S, n))
    fill = _best(lambda: out.fill(0.0))

    def plain():
        mu = np.dot(coef, X.T) + b[:, None]
        return (
            -0.5 * ((y - mu) / sigma[:, None]) ** 2 - np.log(sigma)[:, None] - loglik._HALF_LOG_2PI
        )

    def old_xarray():
        mu = xr.DataArray(X, dims=("obs", "f")).dot(xr.DataArray(coef, dims=("s", "f"))) + (
            xr.DataArray(b, dims="s")
        )
        return xr.apply_ufunc(
            stats.norm.logpdf, xr.DataArray(y, dims="obs"), mu, xr.DataArray(sigma, dims="s")
        )

    with single_threaded_blas():
        t_new = _best(lambda: loglik.gaussian_linear(X, y, coef, sigma, b, out=out))
        t_plain = _best(plain, 2)
        t_old = _best(old_xarray, 1)
    rows.append(
        dict(
            case=f"gaussian, {d} columns",
            kernel=S * n / t_new,
            plain_numpy=S * n / t_plain,
            old_xarray_scipy=S * n / t_old,
            fill=S * n / fill,
        )
    )
    K, n, d = 3, 50_000, 6
    X, y = rng.normal(size=(n, d)), rng.normal(size=n)
    coef = rng.normal(size=(S, K, d)) * 0.3
    b, sig = rng.normal(size=(S, K)), rng.uniform(0.5, 2.0, (S, K))
    log_w = np.log(rng.dirichlet(np.ones(K), S))
    G = X[:, :3]
    c = rng.normal(size=(S, K - 1))
    gates = {
        "none": dict(log_weights=log_w),
        "linear gate": dict(gate_logits=loglik.softmax_gate(G, rng.normal(size=(S, 3, K - 1)), c)),
        "mlp gate (3 hidden)": dict(
            gate_logits=loglik.softmax_gate(
                G,
                rng.normal(size=(S, 3, K - 1)),
                c,
                rng.normal(size=(S, 3, 3)),
                rng.normal(size=(S, 3)),
            )
        ),
    }
    out = np.empty((S, n))

    def plain_mixture():
        mu = np.einsum("id,skd->sik", X, coef) + b[:, None, :]
        z = (y[None, :, None] - mu) / sig[:, None, :]
        joint = log_w[:, None, :] - 0.5 * z**2 - np.log(sig)[:, None, :] - loglik._HALF_LOG_2PI
        return logsumexp(joint, axis=-1)

    with single_threaded_blas():
        t_plain = _best(plain_mixture, 1)
        for name, weights in gates.items():
            t_new = _best(
                lambda w=weights: loglik.mixture_gaussian_linear(X, y, coef, sig, b, out=out, **w)
            )
            rows.append(
                dict(
                    case=f"mixture K={K}, {d} columns, {name}",
                    kernel=S * n / t_new,
                    plain_numpy=S * n / t_plain if name == "none" else np.nan,
                    old_xarray_scipy=np.nan,
                    fill=S * n / fill,
                )
            )
    table = pd.DataFrame(rows).set_index("case")
    table["kernel / plain"] = table["kernel"] / table["plain_numpy"]
    return table


def part_loo() -> pd.DataFrame:
    import arviz as az

    rng = np.random.default_rng(1)
    rows = []
    for n, S in [(1000, 4000), (5000, 4000), (20_000, 1000)]:
        ll = -0.5 * rng.normal(size=(4, S // 4, n)) ** 2 - 1.0
        tree = xr.DataTree.from_dict(
            {
                "posterior": xr.Dataset({"a": (("chain", "draw"), rng.normal(size=(4, S // 4)))}),
                "log_likelihood": xr.Dataset({"y": (("chain", "draw", "obs"), ll)}),
            }
        )
        t = _best(lambda tree=tree: az.loo(tree, pointwise=True), 1)
        rows.append(dict(rows=n, draws=S, seconds=t, values_per_s=n * S / t))
    return pd.DataFrame(rows)


def _fit_interaction(n: int, **kwargs):
    X, y = _interaction_data(n, seed=n)
    est = bm.InteractionRegression(progressbar=False, random_seed=1, **kwargs)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    return time.perf_counter() - start, est


def part_fits() -> pd.DataFrame:
    rows = []
    for settings in (dict(), dict(draws=500, chains=2)):
        _fit_interaction(1000, log_likelihood="auto", **settings)  # compiles the structure
        for n in (1000, 200_000):
            seconds, est = _fit_interaction(n, log_likelihood="auto", **settings)
            rows.append(
                dict(
                    rows=n,
                    draws=f"{settings.get('chains', 4)} x {settings.get('draws', 1000)}",
                    log_likelihood="auto",
                    stored=est.idata_.attrs["bayesmoe_log_likelihood"],
                    wall_s=seconds,
                    fit_s=est.idata_.attrs["bayesmoe_fit_seconds"],
                )
            )
    seconds, est = _fit_interaction(200_000, log_likelihood=True, draws=500, chains=2)
    rows.append(
        dict(
            rows=200_000,
            draws="2 x 500",
            log_likelihood="True",
            stored=est.idata_.attrs["bayesmoe_log_likelihood"],
            wall_s=seconds,
            fit_s=est.idata_.attrs["bayesmoe_fit_seconds"],
        )
    )
    table = pd.DataFrame(rows)
    first = table.groupby("draws")["wall_s"].transform("first")
    table["x_time_at_1e3"] = table["wall_s"] / first
    return table


def part_subsample() -> pd.DataFrame:
    import arviz as az

    from bayesmoe.comparison import _loo_subsample

    n = 200_000
    X, y = _interaction_data(n, seed=3)
    rows = []
    for name, interactions in (("interactions", "all"), ("base", None)):
        model = bm.interaction_regression(X, y, interactions=interactions, collapsed=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = bm.fit(
                model, draws=500, chains=2, random_seed=1, progressbar=False, log_likelihood=True
            )
            full = az.loo(idata)
        for m in (1000, 2000, 4000):
            sub = bm.add_log_likelihood(idata.copy(), model, rows=m)
            sub_rows = sub[SUBSAMPLE_GROUP]["row"].values
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est = _loo_subsample(sub, sub_rows)
            rows.append(
                dict(
                    model=name,
                    subsample=m,
                    elpd_full=full.elpd,
                    se_full=full.se,
                    elpd_error=est.elpd - full.elpd,
                    subsampling_se=est.subsampling_se,
                    loo_s=time.perf_counter() - start,
                )
            )
    return pd.DataFrame(rows)


def part_vem(n: int) -> pd.DataFrame:
    data = make_mixture_data(n, 2, 3, gate=None, seed=0)
    rows, fits = [], {}
    for name, make in (
        ("mixture K=2 (vem)", lambda: bm.MixtureRegression(method="vem", log_likelihood="auto")),
        ("regression", lambda: bm.InteractionRegression(interactions=None, log_likelihood="auto")),
    ):
        est = make().set_params(random_seed=1, progressbar=False)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(data.X, data.y)
        fits[name] = est
        rows.append(
            dict(
                model=name,
                rows=n,
                fit_s=time.perf_counter() - start,
                stored=est.idata_.attrs["bayesmoe_log_likelihood"],
            )
        )
    start = time.perf_counter()
    result = bm.compare(fits, plot=False)
    seconds = time.perf_counter() - start
    table = (
        pd.DataFrame(rows)
        .set_index("model")
        .join(
            result.table[["rank", "elpd", "se", "elpd_diff", "dse", "subsampling_dse", "weight"]]
        )
    )
    table["compare_s"] = seconds
    table["peak_rss_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--vem-rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown {unknown}; choose from {list(PARTS)}")
    print(
        f"LOG_LIKELIHOOD_AUTO_BYTES = {fitting.LOG_LIKELIHOOD_AUTO_BYTES / 1024**2:.0f} MiB, "
        f"LOO_SUBSAMPLE_ROWS = {fitting.LOO_SUBSAMPLE_ROWS}\n"
    )
    for part in parts:
        start = time.perf_counter()
        table = part_vem(args.vem_rows) if part == "vem" else globals()[f"part_{part}"]()
        print(f"== {part} ({time.perf_counter() - start:.0f} s)")
        with pd.option_context("display.float_format", "{:.4g}".format):
            print(table.to_string(), "\n", flush=True)


if __name__ == "__main__":
    main()
