"""Model files are data, and saving keeps what the user has (docs/trust.md).

``load`` checks every attribute it reads and raises ``OSError``/``ValueError`` naming it;
every estimator class loads in a fresh process; ``save`` leaves prediction rows out unless
asked, writes through symbolic links, keeps the umask and flushes file and folder.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings

import h5py
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayesmoe as bm
from bayesmoe.files import atomic_write
from tests.conftest import python_output

#: small, fast fits: enough draws for finite predictions, not for inference
TINY = dict(sampler="pymc", draws=50, tune=50, chains=1, progressbar=False, random_seed=1)
VEM = dict(method="vem", random_seed=1, progressbar=False)


def _quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One saved file per estimator class: {name: (path, X, predictions)}."""
    from bayesmoe.experiments import make_interaction_data, make_regional_data

    folder = tmp_path_factory.mktemp("models")
    d = make_interaction_data(120, 3, 0.5, 0.5, seed=3)
    reg = make_regional_data(120, seed=1)
    members = {
        "x1_g": _quiet(lambda: bm.InteractionRegression(**TINY).fit(reg.X[["x1", "g"]], reg.y)),
        "x2_g": _quiet(lambda: bm.InteractionRegression(**TINY).fit(reg.X[["x2", "g"]], reg.y)),
    }
    fits = {
        "InteractionRegression": (bm.InteractionRegression(**TINY), d.X, d.y),
        "MixtureRegression": (bm.MixtureRegression(n_components=2, **VEM), d.X, d.y),
        "GatedExperts": (bm.GatedExperts(n_experts=2, **VEM), d.X, d.y),
    }
    out = {}
    for name, (est, X, y) in fits.items():
        _quiet(lambda est=est, X=X, y=y: est.fit(X, y))
        out[name] = (est.save(folder / f"{name}.nc"), X, est.predict(X))
    stack = _quiet(lambda: bm.HierarchicalStacking(**TINY).fit(members, reg.X, reg.y))
    out["HierarchicalStacking"] = (
        stack.save(folder / "stack.nc"),
        reg.X,
        _quiet(lambda: stack.predict(reg.X)),
    )
    return out


# ---------------------------------------------------------------- mutations
ROOT_ATTRS = [
    "bayesmoe_format",
    "bayesmoe_estimator",
    "bayesmoe_params",
    "bayesmoe_standardizer",
    "bayesmoe_feature_names",
]
JSON_ATTRS = ["bayesmoe_params", "bayesmoe_standardizer", "bayesmoe_feature_names"]
#: attributes whose loss changes nothing but a warning
BENIGN_ATTRS = ["bayesmoe_version", "pymc_version", "arviz_version"]
BAD_NUMBERS = [float("nan"), float("inf"), -float("inf"), 0.0, -1.0, "1", None, True]

any_value = st.one_of(
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(0, 3), min_size=1, max_size=3).map(np.asarray),
)


def _node(tree, where):
    return tree if where == "/" else tree[where]


def _attr_mutation(data, node_path: str, names: list[str]):
    """(change(attrs) -> None, the attribute names a refusal must name) for one node."""
    kind = data.draw(
        st.sampled_from(["remove", "retype", "truncate", "scale", "names", "params", "format"])
    )
    if kind == "remove":
        name = data.draw(st.sampled_from(ROOT_ATTRS + names + BENIGN_ATTRS))
        return (lambda a: a.pop(name, None)), name
    if kind == "retype":
        name = data.draw(st.sampled_from(ROOT_ATTRS + names + BENIGN_ATTRS))
        value = data.draw(any_value)
        return (lambda a: a.__setitem__(name, value)), name
    if kind == "truncate":
        name = data.draw(st.sampled_from(JSON_ATTRS + names))
        cut = data.draw(st.floats(0.0, 0.95))
        return (lambda a: a.__setitem__(name, a[name][: int(len(a[name]) * cut)])), name
    if kind == "scale":
        key = data.draw(st.sampled_from(["x_mean", "x_scale", "y_mean", "y_scale"]))
        bad = data.draw(st.sampled_from([*BAD_NUMBERS, "drop", "extra"]))

        def change(a):
            d = json.loads(a["bayesmoe_standardizer"])
            if bad in ("drop", "extra") and isinstance(d[key], list):
                d[key] = d[key][:-1] if bad == "drop" else [*d[key], 1.0]
            elif bad in ("drop", "extra"):
                d.pop(key)
            elif isinstance(d[key], list):
                d[key][0] = bad
            else:
                d[key] = bad
            if key in ("x_mean", "y_mean") and bad in (0.0, -1.0):
                d[key] = float("nan")  # a finite mean is a valid (other) model
            a["bayesmoe_standardizer"] = json.dumps(d)

        return change, "bayesmoe_standardizer"
    if kind == "names":
        op = data.draw(st.sampled_from(["drop", "duplicate", "add", "number"]))

        def change(a):
            n = json.loads(a["bayesmoe_feature_names"])
            n = {
                "drop": n[:-1],
                "duplicate": [*n[:-1], n[0]],
                "add": [*n, "extra_column"],
                "number": [1, *n[1:]],
            }[op]
            a["bayesmoe_feature_names"] = json.dumps(n)

        return change, "bayesmoe_feature_names"
    if kind == "params":
        op = data.draw(st.sampled_from(["unknown", "draws", "prior", "priors", "list"]))

        def change(a):
            p = json.loads(a["bayesmoe_params"])
            if op == "unknown":
                p["__class__"] = "os.system"
            elif op == "draws":
                p["draws"] = "many"
            elif op == "prior":
                p["method"] = "exec"
            elif op == "priors":
                p["priors"] = {"sigma": {"dist": "__import__", "kwargs": {}}}
            else:
                p = [p]
            a["bayesmoe_params"] = json.dumps(p)

        return change, "bayesmoe_params"
    value = data.draw(st.sampled_from([0, -1, 3, 99, 2.0, "2", "3"]))
    return (lambda a: a.__setitem__("bayesmoe_format", value)), "bayesmoe_format"


def _write_attrs(src, dst, node_path, change):
    """Copy ``src`` to ``dst`` and change the HDF5 attributes of one group in place."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        attrs = f[node_path].attrs
        current = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        current = {k: v for k, v in current.items() if not k.startswith("_")}
        new = dict(current)
        change(new)
        for k in current:
            if k not in new:
                del attrs[k]
        for k, v in new.items():
            if k not in current or not _same(current[k], v):
                if k in attrs:
                    del attrs[k]
                if v is None:
                    v = h5py.Empty("f8")
                attrs[k] = v


def _same(a, b) -> bool:
    try:
        return type(a) is type(b) and bool(np.all(a == b))
    except Exception:
        return False


def _group_mutation(data, tree):
    """(new tree, the variable a refusal must name): a variable's shape or values damaged."""
    const = "X_full" if "X_full" in tree["constant_data"].data_vars else "X_base"
    choices = [("constant_data", const), ("observed_data", "y")]
    post = "posterior_working" if "posterior_working" in tree.children else "posterior"
    choices += [(post, v) for v in tree[post].data_vars]
    if "lpd" in tree["constant_data"].data_vars:
        choices += [("constant_data", "lpd"), ("constant_data", "global_weight")]
    group_name, var = data.draw(st.sampled_from(choices))
    op = data.draw(st.sampled_from(["shape", "nan", "drop"]))
    ds = tree[group_name].to_dataset(inherit=False)
    da = ds[var]
    if op == "drop":
        ds = ds.drop_vars(var)
    elif op == "nan":
        vals = np.array(da.values, float)
        vals.flat[data.draw(st.integers(0, vals.size - 1))] = np.nan
        ds[var] = da.copy(data=vals)
    else:
        dim = data.draw(st.sampled_from([d for d in da.dims if da.sizes[d] > 1]))
        vals = np.take(da.values, range(1, da.sizes[dim]), axis=da.dims.index(dim))
        shared = any(dim in ds[v].dims for v in ds.data_vars if v != var)
        dims = tuple(f"{d}_cut" if d == dim and shared else d for d in da.dims)
        ds = ds.drop_vars(var)
        if not shared:
            ds = ds.drop_vars([c for c in ds.coords if dim in ds[c].dims])
        ds[var] = xr.DataArray(vals, dims=dims)
    groups = {n.path: n.to_dataset(inherit=False) for n in tree.subtree}
    groups["/" + group_name] = ds
    out = xr.DataTree.from_dict(groups)
    out.attrs.update(tree.attrs)
    return out, var


def _check_load(load, X, expected, named):
    """``load()`` round-trips, or refuses with OSError/ValueError naming ``named``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = load()
            got = est.predict(X)
    except (OSError, ValueError) as err:
        assert named is None or named in str(err), (named, str(err))
        return "refused"
    assert not np.any(np.isnan(got)), f"NaN predictions after a load ({named})"
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    return "loaded"


CLASSES = ["InteractionRegression", "MixtureRegression", "GatedExperts", "HierarchicalStacking"]


@pytest.fixture(scope="module")
def saved_trees(saved):
    """Each saved file read once: the property test damages copies of these trees."""
    out = {}
    for name, (path, _, _) in saved.items():
        tree = xr.open_datatree(path, engine="h5netcdf").load()
        tree.close()
        out[name] = tree
    return out


@pytest.mark.parametrize("cls_name", CLASSES)
@settings(
    max_examples=125,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_damaged_files_load_or_refuse_naming_the_attribute(saved, saved_trees, cls_name, data):
    """Removed, retyped, truncated or reshaped attributes and groups, NaN/zero/negative
    scales, other format versions: each load of the damaged saved tree round-trips or
    raises OSError/ValueError naming what is wrong (no other exception, no NaN
    prediction). The file-level variant (attributes changed with h5py in a copy of the
    file, bytes cut) is below; both run the checks of ``bm.load``."""
    from bayesmoe.estimators.io import load_tree

    _, X, expected = saved[cls_name]
    tree = saved_trees[cls_name].copy(deep=True)
    where = data.draw(st.sampled_from(["attrs", "attrs", "attrs", "groups", "member"]))
    if where == "member" and cls_name != "HierarchicalStacking":
        where = "attrs"
    if where == "groups":
        tree, named = _group_mutation(data, tree)
    else:
        node = "/"
        if where == "member":
            node = "/members/" + data.draw(st.sampled_from(["x1_g", "x2_g"]))
        extra = ["bayesmoe_gate_columns"] if cls_name == "HierarchicalStacking" else []
        change, named = _attr_mutation(data, node, extra if node == "/" else [])
        attrs = dict(_node(tree, node).attrs)
        change(attrs)
        _node(tree, node).attrs = attrs
        named = None if named in BENIGN_ATTRS else named
    _check_load(lambda: load_tree(tree, "mutated.nc"), X, expected, named)


def _damage_a_real_file(saved, cls_name, data, tmp_path):
    src, X, expected = saved[cls_name]
    dst = tmp_path / f"mutated_{data.draw(st.integers(0, 10**9))}.nc"
    if data.draw(st.booleans()):
        raw = src.read_bytes()
        dst.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
        with pytest.raises(OSError):  # a cut HDF5 file never opens as a whole
            _quiet(lambda: bm.load(dst))
        return
    extra = ["bayesmoe_gate_columns"] if cls_name == "HierarchicalStacking" else []
    change, named = _attr_mutation(data, "/", extra)
    _write_attrs(src, dst, "/", change)
    _check_load(lambda: bm.load(dst), X, expected, None if named in BENIGN_ATTRS else named)


_FILE_SETTINGS = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("cls_name", CLASSES)
@settings(max_examples=10, **_FILE_SETTINGS)
@given(data=st.data())
def test_damaged_file_bytes_and_hdf5_attributes(saved, cls_name, data, tmp_path):
    """The same in real files: HDF5 attributes removed, retyped or cut with h5py (the
    types h5netcdf gives back), and files cut short (always an OSError)."""
    _damage_a_real_file(saved, cls_name, data, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("cls_name", CLASSES)
@settings(max_examples=125, **_FILE_SETTINGS)
@given(data=st.data())
def test_500_damaged_files_on_disk(saved, cls_name, data, tmp_path):
    """The bar's 500 cases (4 classes x 125) as real files on disk, each loaded by
    ``bm.load`` from the file (the fast tier runs the same checks on trees in memory)."""
    _damage_a_real_file(saved, cls_name, data, tmp_path)


# ---------------------------------------------------------------- the defects, one by one
def _with_root_attrs(src, dst, **attrs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _write_attrs(src, dst, "/", lambda a: a.update(attrs))
    return dst


def test_newer_format_is_refused(saved, tmp_path):
    src = saved["InteractionRegression"][0]
    path = _with_root_attrs(src, tmp_path / "new.nc", bayesmoe_format=3)
    with pytest.raises(ValueError, match=r"bayesmoe_format.*newer bayesmoe"):
        bm.load(path)


def test_zero_feature_scale_is_refused(saved, tmp_path):
    src = saved["InteractionRegression"][0]
    with h5py.File(src) as f:
        std = json.loads(f.attrs["bayesmoe_standardizer"])
    std["x_scale"][0] = 0.0
    path = _with_root_attrs(src, tmp_path / "zero.nc", bayesmoe_standardizer=json.dumps(std))
    with pytest.raises(ValueError, match=r"bayesmoe_standardizer.*x_scale must be positive"):
        bm.load(path)


@pytest.mark.parametrize(
    "value", ['{"x_mean": [0.0', "[1, 2]", 7], ids=["truncated", "list", "number"]
)
def test_damaged_json_attribute_is_a_value_error(saved, tmp_path, value):
    src = saved["InteractionRegression"][0]
    path = _with_root_attrs(src, tmp_path / "bad.nc", bayesmoe_standardizer=value)
    with pytest.raises(ValueError, match="bayesmoe_standardizer"):
        bm.load(path)


def test_unknown_setting_is_refused(saved, tmp_path):
    src = saved["MixtureRegression"][0]
    with h5py.File(src) as f:
        params = json.loads(f.attrs["bayesmoe_params"])
    params["exec"] = "print(1)"
    path = _with_root_attrs(src, tmp_path / "p.nc", bayesmoe_params=json.dumps(params))
    with pytest.raises(ValueError, match=r"bayesmoe_params.*\['exec'\]"):
        bm.load(path)


@pytest.mark.parametrize("cls_name", CLASSES)
def test_every_class_loads_in_a_fresh_process(saved, cls_name):
    path = saved[cls_name][0]
    code = (
        "import warnings; warnings.simplefilter('ignore'); import bayesmoe as bm; "
        f"print(type(bm.load({str(path)!r})).__name__)"
    )
    assert python_output(code).strip().splitlines()[-1] == cls_name


def test_fresh_process_stacking_without_the_package_import(saved):
    """Only bayesmoe.estimators imported: the file's class comes from the allow-list."""
    path = saved["HierarchicalStacking"][0]
    code = (
        "import warnings; warnings.simplefilter('ignore'); import sys; "
        "from bayesmoe.estimators.io import load; "
        f"print(type(load({str(path)!r})).__name__)"
    )
    assert python_output(code).strip().splitlines()[-1] == "HierarchicalStacking"


def test_foreign_class_name_is_refused(saved, tmp_path):
    src = saved["InteractionRegression"][0]
    path = _with_root_attrs(src, tmp_path / "f.nc", bayesmoe_estimator="os.system")
    with pytest.raises(OSError, match="bayesmoe_estimator"):
        bm.load(path)


# ---------------------------------------------------------------- prediction rows
def test_save_leaves_prediction_rows_out_unless_asked(saved, tmp_path):
    src, X, _ = saved["InteractionRegression"]
    est = _quiet(lambda: bm.load(src))
    _quiet(lambda: est.predict_dist(X.iloc[:5]))
    assert "predictions" in est.idata_.children
    plain = est.save(tmp_path / "plain.nc")
    asked = est.save(tmp_path / "asked.nc", include_predictions=True)
    with h5py.File(plain) as f:
        assert "predictions" not in f and "predictions_constant_data" not in f
    with h5py.File(asked) as f:
        assert "predictions" in f and "predictions_constant_data" in f
    assert "predictions" in est.idata_.children  # the estimator keeps them


def test_save_leaves_members_prediction_rows_out(saved, tmp_path):
    src, X, _ = saved["HierarchicalStacking"]
    est = _quiet(lambda: bm.load(src))
    member = next(iter(est.members_.values()))
    _quiet(lambda: member.predict_dist(X[list(member.feature_names_in_)].iloc[:3]))
    with h5py.File(est.save(tmp_path / "s.nc")) as f:
        names = []
        f.visit(names.append)
    assert not [n for n in names if n.split("/")[-1].startswith("predictions")]


# ---------------------------------------------------------------- atomic_write
def test_atomic_write_follows_a_symlink(tmp_path):
    real = tmp_path / "data" / "model.nc"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "model.nc"
    link.symlink_to(real)
    atomic_write(link, lambda tmp: tmp.write_text("new"))
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new"
    assert [p.name for p in real.parent.iterdir()] == ["model.nc"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_new_file_mode_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "f.txt", lambda tmp: tmp.write_text("x"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_atomic_write_keeps_a_replaced_files_mode(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    path.chmod(0o640)
    atomic_write(path, lambda tmp: tmp.write_text("new"))
    assert path.stat().st_mode & 0o777 == 0o640


def test_atomic_write_fsyncs_file_then_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def record(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    path = atomic_write(tmp_path / "f.txt", lambda tmp: tmp.write_text("x"))
    assert len(synced) == 2
    assert synced[0].startswith(str(tmp_path / ".f.txt."))  # the temporary file, pre-rename
    assert synced[1] == str(tmp_path)  # the folder, after the rename
    assert path.read_text() == "x"


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_write_failure_leaves_no_temporary_file(tmp_path, error):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def write(tmp):
        tmp.write_text("half")
        raise error("stop")

    with pytest.raises(error):
        atomic_write(path, write)
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    assert path.read_text() == "old"


def test_estimator_save_through_a_symlink(saved, tmp_path):
    src = saved["InteractionRegression"][0]
    est = _quiet(lambda: bm.load(src))
    real = tmp_path / "store" / "m.nc"
    real.parent.mkdir()
    real.write_text("placeholder")
    link = tmp_path / "m.nc"
    link.symlink_to(real)
    est.save(link)
    assert link.is_symlink()
    assert type(_quiet(lambda: bm.load(real))).__name__ == "InteractionRegression"
