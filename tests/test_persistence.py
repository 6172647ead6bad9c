"""Persistence and determinism of every estimator under every fit method.

For each (estimator, method, sampler): two fits with the same data and ``random_seed``
give identical draws, a third with another seed gives different ones, and a save/load
round trip of the first keeps every stored array bit for bit, the predictions and the
configuration. Add a method to ``METHODS`` and it is covered (``"vem"``, the
closed-form variational EM, exists for the mixtures only).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

import bayesmoe as bm
from bayesmoe.estimators import io as estimator_io
from bayesmoe.experiments import make_interaction_data, make_mixture_data

#: (method, sampler) pairs every estimator is checked with.
METHODS = [
    ("nuts", "nutpie"),
    ("nuts", "pymc"),
    ("nuts", "numpyro"),
    ("advi", "nutpie"),
    ("fullrank_advi", "nutpie"),
    ("vem", "nutpie"),  # the sampler is ignored
]
ESTIMATORS = {
    "InteractionRegression": (bm.InteractionRegression, {}),
    "MixtureRegression": (bm.MixtureRegression, {"n_components": 2}),
    "GatedExperts": (bm.GatedExperts, {"n_experts": 2}),
}
#: Cheapest settings that still run every stage (tuning, sampling, relabelling, LOO data).
TINY = dict(draws=12, tune=12, chains=2, progressbar=False)


@pytest.fixture(scope="module")
def datasets():
    inter = make_interaction_data(40, 2, 0.5, 0.5, seed=5)
    mix = make_mixture_data(60, 1, 2, gate="linear", seed=5)
    return {"interaction": (inter.X, inter.y), "mixture": (mix.X, mix.y)}


def _fit(name, method, sampler, seed, data):
    cls, extra = ESTIMATORS[name]
    X, y = data["interaction" if name == "InteractionRegression" else "mixture"]
    est = cls(
        method=method,
        sampler=sampler,
        random_seed=seed,
        fit_kwargs={"advi_iterations": 200} if "advi" in method else None,
        **TINY,
        **extra,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny runs fail their diagnostics, by design
        return est.fit(X, y), X, y


def _assert_same_tree(a: xr.DataTree, b: xr.DataTree, groups=None) -> None:
    groups = groups or [g for g in a.children if g != "predictions"]
    for group in groups:
        da, db = a[group].to_dataset(), b[group].to_dataset()
        assert set(da.data_vars) == set(db.data_vars), group
        for name in da.data_vars:
            x, y = np.asarray(da[name].values), np.asarray(db[name].values)
            if x.dtype == object or y.dtype == object:  # saved as strings (e.g. nutpie's
                x, y = x.astype(str), y.astype(str)  # divergence_message of None)
            np.testing.assert_array_equal(x, y, err_msg=name)


#: In the bounded CI slow tier; the rest of the matrix runs under ``-m full`` (3 fits per
#: case: ~20 s each for PyMC and ADVI, ~45-60 s for a cold nutpie or numpyro compilation).
CI_CASES = {
    ("InteractionRegression", "nuts", "pymc"),
    ("InteractionRegression", "advi", "nutpie"),
    ("MixtureRegression", "vem", "nutpie"),  # no compilation: seconds
    ("GatedExperts", "vem", "nutpie"),
}


def _matrix():
    for name in ESTIMATORS:
        for method, sampler in METHODS:
            if method == "vem" and name == "InteractionRegression":
                continue  # refused with a clear error (tests/test_vem.py)
            mark = pytest.mark.slow if (name, method, sampler) in CI_CASES else pytest.mark.full
            yield pytest.param(name, method, sampler, marks=mark, id=f"{name}-{method}-{sampler}")


@pytest.mark.parametrize("name,method,sampler", list(_matrix()))
def test_determinism_and_round_trip(name, method, sampler, datasets, tmp_path):
    first, X, y = _fit(name, method, sampler, 11, datasets)
    again, _, _ = _fit(name, method, sampler, 11, datasets)
    other, _, _ = _fit(name, method, sampler, 12, datasets)
    _assert_same_tree(first.idata_, again.idata_, ["posterior", "log_likelihood"])
    post = first.idata_["posterior"].to_dataset()
    assert any(
        not np.array_equal(post[v].values, other.idata_["posterior"][v].values)
        for v in post.data_vars
    ), "a different random_seed gave identical draws"

    expected = first.predict(X, return_std=True)
    path = first.save(tmp_path / "model.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same library versions: no warning
        loaded = bm.load(path)
    assert type(loaded) is type(first)
    assert loaded.get_params() == first.get_params()
    for key in ("bayesmoe_method", "bayesmoe_sampler", "bayesmoe_random_seed"):
        assert loaded.idata_.attrs[key] == first.idata_.attrs[key]
    _assert_same_tree(first.idata_, loaded.idata_)
    got = loaded.predict(X, return_std=True)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(
        loaded.predict_dist(X).values, first.predict_dist(X).values
    )  # seeded predictive draws survive the round trip too
    if name != "InteractionRegression":
        np.testing.assert_array_equal(loaded.predict_proba(X), first.predict_proba(X))
        np.testing.assert_array_equal(loaded.responsibilities(X, y), first.responsibilities(X, y))


# ------------------------------------------------------------ fast: files, not fits
def test_diagnostics_survive_the_round_trip(fitted, tmp_path):
    loaded = bm.load(fitted.save(tmp_path / "m.nc"))
    assert (
        loaded.idata_.attrs["bayesmoe_diagnostics"] == fitted.idata_.attrs["bayesmoe_diagnostics"]
    )
    assert loaded.check().as_dict() == fitted.check().as_dict()


def test_version_mismatch_warning_names_the_versions(fitted, tmp_path, monkeypatch):
    path = fitted.save(tmp_path / "m.nc")
    saved = estimator_io.versions()
    monkeypatch.setattr(estimator_io, "versions", lambda: {**saved, "pymc_version": "0.0-other"})
    with pytest.warns(UserWarning, match=r"pymc_version.*0\.0-other"):
        loaded = bm.load(path)
    np.testing.assert_array_equal(
        loaded.idata_["posterior"]["sigma"].values, fitted.idata_["posterior"]["sigma"].values
    )


@pytest.mark.parametrize("cut", [0, 8, 0.5, 0.97])
def test_truncated_file_is_a_clear_oserror(fitted, tmp_path, cut):
    data = fitted.save(tmp_path / "m.nc").read_bytes()
    n = cut if isinstance(cut, int) else int(len(data) * cut)
    (tmp_path / "cut.nc").write_bytes(data[:n])
    with pytest.raises(OSError, match=r"cut\.nc"):
        bm.load(tmp_path / "cut.nc")


def test_corrupted_bytes_are_a_clear_oserror(fitted, tmp_path):
    data = bytearray(fitted.save(tmp_path / "m.nc").read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.integers(0, 512, size=64):  # the HDF5 superblock and root group
        data[i] ^= 0xFF
    (tmp_path / "bad.nc").write_bytes(bytes(data))
    with pytest.raises(OSError, match=r"bad\.nc"):
        bm.load(tmp_path / "bad.nc")


def test_foreign_netcdf_is_refused(tmp_path):
    path = tmp_path / "foreign.nc"
    xr.DataTree.from_dict({"posterior": xr.Dataset({"a": ("x", [1.0])})}).to_netcdf(
        path, engine="h5netcdf"
    )
    with pytest.raises(OSError, match="not written by bayesmoe"):
        bm.load(path)


def test_save_failing_midway_leaves_nothing_half_written(fitted, tmp_path, monkeypatch):
    target = tmp_path / "new.nc"

    def write_half_then_fail(self, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"\x89HDF\r\n\x1a\n partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(estimator_io.xr.DataTree, "to_netcdf", write_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        fitted.save(target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too
