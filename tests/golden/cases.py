"""Canonical seeded fits whose results are pinned bit for bit (``tests/test_golden.py``).

Each case fits one estimator on fixed simulated data with a fixed seed and returns a flat
``{name: ndarray}`` of what a user sees: every posterior variable (user and working scale),
predictions on new rows, the pointwise log-likelihood, the stored diagnostics and the
attributes of the saved file. Record the reference with::

    python -m tests.golden.cases            # every case
    python -m tests.golden.cases mixture_k2 # one case

A refactor must reproduce the recorded values exactly (draws, log-likelihood) or to 1e-12
relative (quantities whose summation order may legitimately move). Re-recording a case is
a deliberate change of arithmetic and belongs in a commit of its own that says why.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
#: attrs of a saved file that legitimately change between runs (versions of the libraries)
VOLATILE_ATTRS = ("bayesmoe_versions", "created_at", "arviz_version", "inference_library")


def _volatile(key: str) -> bool:
    return (
        any(key.startswith(p) for p in VOLATILE_ATTRS)
        or "version" in key
        or key.endswith("_seconds")
    )


def _flatten(prefix: str, tree, out: dict) -> None:
    for group in ("posterior", "posterior_working", "log_likelihood", "sample_stats"):
        # a row subsample's log-likelihood is stored apart (log_likelihood_subsample, which
        # arviz.loo does not read); its values are pinned under the same name as before
        stored = "log_likelihood_subsample" if group == "log_likelihood" else group
        if group not in tree.children and stored in tree.children:
            group_ds = tree[stored].to_dataset()
        elif group in tree.children:
            group_ds = tree[group].to_dataset()
        else:
            continue
        for name, da in group_ds.data_vars.items():
            if group == "sample_stats" and name not in ("diverging", "lp"):
                continue
            out[f"{prefix}{group}/{name}"] = np.asarray(da.values)


def _file_attrs(est) -> dict:
    import xarray as xr

    with tempfile.TemporaryDirectory() as tmp:
        path = est.save(Path(tmp) / "model.nc")
        tree = xr.open_datatree(path, engine="h5netcdf")
        attrs = {k: v for k, v in tree.attrs.items() if not _volatile(k)}
        tree.close()
    return attrs


def _record(est, X_new) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    _flatten("", est.idata_, out)
    out["predict/mean"], out["predict/std"] = (np.asarray(a) for a in est.predict(X_new, True))
    out["predict_dist"] = np.asarray(est.predict_dist(X_new).values)
    if hasattr(est, "predict_proba"):
        out["predict_proba"] = np.asarray(est.predict_proba(X_new))
    attrs = {k: v for k, v in est.idata_.attrs.items() if not _volatile(k)}
    out["idata_attrs"] = np.array(json.dumps(attrs, sort_keys=True, default=str))
    out["check"] = np.array(json.dumps(est.check().as_dict(), sort_keys=True, default=str))
    out["file_attrs"] = np.array(json.dumps(_file_attrs(est), sort_keys=True, default=str))
    return out


def _interaction_data(n: int = 150):
    from bayesmoe.experiments import make_interaction_data

    return make_interaction_data(n, 3, 0.5, 0.5, seed=11)


SMALL = dict(draws=100, tune=150, chains=2, progressbar=False, random_seed=7)


def interaction_collapsed():
    from bayesmoe import InteractionRegression

    d = _interaction_data()
    est = InteractionRegression(collapsed=True, sampler="nutpie", **SMALL).fit(d.X, d.y)
    return _record(est, d.X.iloc[:25])


def interaction_per_row():
    from bayesmoe import InteractionRegression

    d = _interaction_data()
    est = InteractionRegression(collapsed=False, sampler="pymc", **SMALL).fit(d.X, d.y)
    return _record(est, d.X.iloc[:25])


def interaction_horseshoe():
    from bayesmoe import InteractionRegression

    d = _interaction_data()
    est = InteractionRegression(prior="horseshoe", sampler="pymc", **SMALL).fit(d.X, d.y)
    return _record(est, d.X.iloc[:25])


def interaction_r2d2():
    from bayesmoe import InteractionRegression

    d = _interaction_data()
    est = InteractionRegression(prior="r2d2", sampler="pymc", **SMALL).fit(d.X, d.y)
    return _record(est, d.X.iloc[:25])


def _mixture_frame(n: int, gate, seed: int):
    import pandas as pd

    from bayesmoe.experiments import make_mixture_data

    d = make_mixture_data(n, 2, 2, gate=gate, seed=seed)
    X = pd.DataFrame(d.X, columns=[f"x{j}" for j in range(d.X.shape[1])])
    return X, d.y


def mixture_k2():
    from bayesmoe import MixtureRegression

    X, y = _mixture_frame(200, None, 5)
    est = MixtureRegression(n_components=2, sampler="nutpie", **SMALL).fit(X, y)
    return _record(est, X.iloc[:25])


def mixture_k2_horseshoe():
    from bayesmoe import MixtureRegression

    X, y = _mixture_frame(200, None, 5)
    est = MixtureRegression(n_components=2, prior="horseshoe", sampler="pymc", **SMALL)
    return _record(est.fit(X, y), X.iloc[:25])


def gated_linear_vem():
    from bayesmoe import GatedExperts

    X, y = _mixture_frame(300, "linear", 6)
    est = GatedExperts(n_experts=2, method="vem", draws=200, chains=2, random_seed=7)
    return _record(est.fit(X, y), X.iloc[:25])


def gated_mlp_advi():
    from bayesmoe import GatedExperts

    X, y = _mixture_frame(300, "mlp", 8)
    est = GatedExperts(
        n_experts=2,
        gate="mlp",
        gate_hidden=3,
        method="advi",
        draws=200,
        chains=1,
        random_seed=7,
        progressbar=False,
        fit_kwargs={"advi_iterations": 1500},
    )
    return _record(est.fit(X, y), X.iloc[:25])


def hierarchical_stacking():
    from bayesmoe import HierarchicalStacking, InteractionRegression
    from bayesmoe.experiments import make_regional_data

    data = make_regional_data(120, seed=1)
    members = {
        "x1_g": InteractionRegression(sampler="pymc", **SMALL).fit(data.X[["x1", "g"]], data.y),
        "x2_g": InteractionRegression(sampler="pymc", **SMALL).fit(data.X[["x2", "g"]], data.y),
    }
    est = HierarchicalStacking(sampler="pymc", **SMALL).fit(members, data.X, data.y)
    return _record(est, data.X.iloc[:25])


def streamed_parquet():
    import pandas as pd
    from distributed import Client, LocalCluster

    from bayesmoe import InteractionRegression
    from bayesmoe.streaming import read_parquet

    d = _interaction_data(3000)
    frame = pd.concat([d.X, pd.Series(d.y, name="y")], axis=1)
    with tempfile.TemporaryDirectory() as tmp:
        for i, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
            frame.iloc[part].to_parquet(Path(tmp) / f"part-{i}.parquet")
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False)
        with cluster, Client(cluster) as client:
            est = InteractionRegression(sampler="nutpie", **SMALL)
            est.fit(read_parquet(tmp), "y", client=client)
            return _record(est, d.X.iloc[:25])


CASES: dict[str, Callable[[], dict[str, np.ndarray]]] = {
    f.__name__: f
    for f in (
        interaction_collapsed,
        interaction_per_row,
        interaction_horseshoe,
        interaction_r2d2,
        mixture_k2,
        mixture_k2_horseshoe,
        gated_linear_vem,
        gated_mlp_advi,
        hierarchical_stacking,
        streamed_parquet,
    )
}


def run(name: str) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CASES[name]()


def reference_path(name: str) -> Path:
    return HERE / f"{name}.npz"


def main(names: list[str]) -> None:
    for name in names or list(CASES):
        values = run(name)
        np.savez_compressed(reference_path(name), **values)
        print(f"recorded {name}: {len(values)} arrays")


if __name__ == "__main__":
    main(sys.argv[1:])
