"""The persistent on-disk compile cache: where it lives, and a nutpie compile that uses it.

nutpie's C-callback wrappers, as nutpie builds them, cannot be cached by numba (they
capture the data arrays and a fresh uuid per compilation), so every fresh process would
compile them again for each model structure. :func:`compile_nutpie` builds the same
``nutpie.CompiledPyMCModel`` with wrappers generated as source with stable names and a
content hash, which numba caches next to PyTensor's kernels; a warm compile is then the
PyTensor graph work plus loading.

Where things go (:func:`cache_dir`): ``$BAYESMOE_CACHE_DIR`` if set, else the platform's
user cache folder (``platformdirs.user_cache_dir("bayesmoe")``, ``~/.cache/bayesmoe`` on
Linux), then one sub-folder per combination of the compiling packages' versions, so a
version change never reads code compiled by another (``BAYESMOE_CACHE_DIR=off`` turns the
folder off: PyTensor then uses its own default). In it:

* ``pytensor/``: PyTensor's ``base_compiledir`` (its C modules, and under ``numba/`` the
  numba cache of its kernels and of the wrappers above). Set through ``PYTENSOR_FLAGS``
  by :func:`configure` when ``bayesmoe`` is imported, which only works before PyTensor is
  imported; a user's own ``base_compiledir``/``compiledir`` flag always wins.
* ``jax/``: JAX's persistent compilation cache (numpyro and nutpie's JAX backend),
  switched on by :func:`configure_jax` just before a JAX fit.
* ``compiled/``: one empty file per model structure (a digest of the spec's
  ``cache_key``) whose nutpie/numba code has been compiled into ``pytensor/``
  (:func:`mark_compiled`, :func:`is_compiled`): what ``sampler="auto"`` reads to choose
  between the warm and the cold path (:mod:`bayesmoe.inference.settings`).
* ``pending/``: models waiting for, or being compiled by, a background compile
  (:mod:`bayesmoe.inference.backends.background`).

Trust: PyTensor imports compiled modules from the cache and numba unpickles its index, so
the cache is code this process runs. :func:`usable_cache_dir` creates the root and the
version folder with mode 0700 and marks the version folder with a :data:`MARKER` file;
a root or version folder that is not owned by the user, or is writable by group or
others, is refused with a :class:`CacheFolderWarning` (one line naming the folder and
why), and bayesmoe then points nothing at it (PyTensor keeps its own default). A version
folder of mode 0700 keeps other users out of everything below it. :func:`clear` deletes
only marked folders, never anything else under the root.

Concurrent processes are safe: folders are created with ``exist_ok`` and the marker with
``O_EXCL``; numba writes each cache entry to a temporary file and renames it into place,
PyTensor locks its C compiledir, and JAX writes atomically; two processes that compile
the same structure at once both compile, and one file wins (``tests/test_trust_cache.py``
runs two fits at once on one cache).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.metadata
import os
import shutil
import stat
import sys
import threading
import warnings
from pathlib import Path

__all__ = [
    "CACHE_ENV",
    "MARKER",
    "CacheFolderWarning",
    "cache_dir",
    "cache_root",
    "clear",
    "compile_nutpie",
    "configure",
    "configure_jax",
    "freeze_imports",
    "is_compiled",
    "is_marked",
    "mark_compiled",
    "paused_gc",
    "reproducible_numba",
    "structure_digest",
    "usable_cache_dir",
]

#: Environment variable naming the cache root (``off`` / ``0`` / ``none`` disables it).
CACHE_ENV = "BAYESMOE_CACHE_DIR"
#: Packages whose versions key the cache folder: anything that changes compiled code.
VERSIONED_PACKAGES = ("bayesmoe", "pymc", "pytensor", "nutpie", "numba", "llvmlite", "numpy")
_OFF = {"off", "0", "none", "false", "no"}
#: Smallest XLA compilation time (s) JAX writes to its persistent cache (JAX's default is
#: 1 s, which skips the many small numpyro/nutpie-jax programs that add up at start-up).
JAX_MIN_COMPILE_SECONDS = 0.0


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def cache_root() -> Path | None:
    """The folder holding every version's cache, or None when ``BAYESMOE_CACHE_DIR=off``."""
    value = os.environ.get(CACHE_ENV)
    if value is not None and value.strip().lower() in _OFF:
        return None
    if value:
        return Path(value).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("bayesmoe", appauthor=False))


def _version_key() -> str:
    versions = [f"python={sys.version_info[0]}.{sys.version_info[1]}"]
    versions += [f"{name}={_version(name)}" for name in VERSIONED_PACKAGES]
    digest = hashlib.sha256(";".join(versions).encode()).hexdigest()[:12]
    return f"v-{_version('bayesmoe')}-{digest}"


def cache_dir() -> Path | None:
    """This installation's cache folder (the root, then one folder per package versions)."""
    root = cache_root()
    return None if root is None else root / _version_key()


#: File that marks a folder as one the cache made: :func:`clear` deletes only these.
MARKER = ".bayesmoe-cache"
_WARNED: set[tuple[str, str]] = set()
_WARNED_LOCK = threading.Lock()


class CacheFolderWarning(UserWarning):
    """The cache folder was refused (not the user's, or writable by others): not used."""


def _refusal(path: Path) -> str | None:
    """Why ``path`` may not hold code this process will load (None: it may).

    Compiled modules are imported and numba's index is unpickled from the cache, so the
    folder must be the user's and writable by nobody else. Not checked where the
    platform has no POSIX owners and modes (Windows).
    """
    if os.name != "posix":
        return None
    try:
        info = os.stat(path)
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a folder"
    if info.st_uid != os.geteuid():
        return f"belongs to another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by other users (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _warn_refused(path: Path, reason: str) -> None:
    key = (str(path), reason)
    with _WARNED_LOCK:
        if key in _WARNED:
            return
        _WARNED.add(key)
    warnings.warn(
        f"bayesmoe: not using the compile cache folder {str(path)!r}: it {reason}, so the "
        "compiled code in it could be someone else's; compiling without bayesmoe's cache "
        f"(use a folder only you can write, e.g. 'chmod go-w', or set {CACHE_ENV}=off)",
        CacheFolderWarning,
        stacklevel=3,
    )


def _mark(folder: Path) -> None:
    """Write the marker into a cache folder (concurrent processes: one of them writes it)."""
    try:
        fd = os.open(folder / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:  # already marked, or not writable (then nothing is cached there)
        return
    with os.fdopen(fd, "w") as marker:
        marker.write("a bayesmoe compile cache folder (bayesmoe.cache.clear may delete it)\n")


def is_marked(path: Path) -> bool:
    """Whether ``path`` is a folder (not a link) that the cache made (holds the marker)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode) and stat.S_ISREG(
            os.lstat(path / MARKER).st_mode
        )
    except OSError:
        return False


def usable_cache_dir() -> Path | None:
    """:func:`cache_dir`, created (mode 0700, marked) and checked; None when not to be used.

    None when the cache is off, or when the root or this version's folder is not owned
    by the user or is writable by group or others (a :class:`CacheFolderWarning` says
    which and why, once per process): compiled code is then neither read from nor
    written to it. Safe to call from concurrent processes.
    """
    folder = cache_dir()
    if folder is None:
        return None
    root = folder.parent
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        where, reason = root, _refusal(root)
        if reason is None:
            folder.mkdir(mode=0o700, exist_ok=True)
            where, reason = folder, _refusal(folder)
    except OSError as err:
        where, reason = root, f"cannot be created ({err.strerror})"
    if reason is not None:
        _warn_refused(where, reason)
        return None
    _mark(folder)
    return folder


def configure() -> Path | None:
    """Point PyTensor's compiledir into :func:`cache_dir` (before PyTensor is imported).

    Returns the compiledir PyTensor will use, or None when it was not set here: the cache
    is off or its folder refused (:func:`usable_cache_dir`), PyTensor was already
    imported (its compiledir is then what it was, by default ``~/.pytensor``, which is
    persistent too), or the user set ``base_compiledir`` or ``compiledir`` in
    ``PYTENSOR_FLAGS`` (theirs is kept).
    """
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    if "pytensor" in sys.modules or "compiledir" in flags:
        return None
    folder = usable_cache_dir()
    if folder is None:
        return None
    compiledir = folder / "pytensor"
    # A comma or '=' in the path would be read as another flag by PyTensor's parser.
    if "," in str(compiledir) or "=" in str(compiledir):
        return None
    os.environ["PYTENSOR_FLAGS"] = ",".join(
        part for part in (flags, f"base_compiledir={compiledir}") if part
    )
    return compiledir


def configure_jax() -> Path | None:
    """Switch on JAX's persistent compilation cache in ``cache_dir()/jax`` (idempotent).

    Called before numpyro / nutpie-jax fits; does nothing when the cache is off, its
    folder is refused (:func:`usable_cache_dir`) or the user configured a JAX cache
    folder already.
    """
    folder = usable_cache_dir()
    if folder is None:
        return None
    import jax

    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    path = folder / "jax"
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", JAX_MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def structure_digest(cache_key) -> str:
    """A file name for a model structure: a hash of its spec's ``cache_key`` (a tuple)."""
    return hashlib.sha256(repr(cache_key).encode()).hexdigest()[:32]


def _compiled_marker(cache_key) -> Path | None:
    folder = usable_cache_dir()
    return None if folder is None else folder / "compiled" / structure_digest(cache_key)


def mark_compiled(cache_key) -> None:
    """Record that the nutpie/numba code of ``cache_key``'s structure is in the cache."""
    marker = _compiled_marker(cache_key)
    if marker is None:
        return
    with contextlib.suppress(OSError):  # a read-only cache: nothing is recorded
        marker.parent.mkdir(mode=0o700, exist_ok=True)
        marker.touch()


def is_compiled(cache_key) -> bool:
    """Whether :func:`mark_compiled` recorded ``cache_key``'s structure (False: cache off)."""
    marker = _compiled_marker(cache_key)
    return marker is not None and marker.is_file()


def clear(all_versions: bool = False) -> list[Path]:
    """Delete this version's cache folder (``all_versions=True``: every version's).

    Only folders the cache made are deleted: sub-folders of the root that hold the
    :data:`MARKER` file and are not links. Anything else in the root (and folders of
    bayesmoe versions that wrote no marker) is left alone. Returns the folders removed.
    Do not call it while another process is fitting.
    """
    root = cache_root()
    if root is None or not root.is_dir():
        return []
    mine = cache_dir()
    targets = [p for p in root.iterdir() if (all_versions or p == mine) and is_marked(p)]
    for path in targets:
        shutil.rmtree(path, ignore_errors=True)
    return targets


#: PyTensor's numba kernels are compiled without ``fastmath`` for bayesmoe's fits. With it
#: (PyTensor's default), a kernel compiled in this process and the same kernel loaded from
#: the on-disk cache can give different draws from one ``random_seed``, because LLVM may
#: reassociate and contract floating point differently when it inlines freshly compiled
#: callees than when it links cached object code; without it a cold and a warm cache give
#: identical draws (``tests/test_cache.py``), at some cost in sampling speed.
NUMBA_FASTMATH = False


def reproducible_numba():
    """Compile PyTensor's numba kernels with ``NUMBA_FASTMATH`` (a context manager).

    A user's own ``numba__fastmath`` in ``PYTENSOR_FLAGS`` wins.
    """
    from contextlib import nullcontext

    if "numba__fastmath" in os.environ.get("PYTENSOR_FLAGS", ""):
        return nullcontext()
    import pytensor

    return pytensor.config.change_flags(numba__fastmath=NUMBA_FASTMATH)


# ------------------------------------------------------------------ garbage collection
# PyTensor's graph rewriting allocates several hundred thousand small objects per compile;
# each of them counts towards CPython's cyclic-GC thresholds, and every full collection
# walks every object the process holds (PyMC, PyTensor, numba, ArviZ and their imports:
# thousands of modules). So the collector is paused over a compile (:func:`paused_gc`),
# and a command-line process may freeze the imported objects (:func:`freeze_imports`).
_GC_LOCK = threading.Lock()
_GC_PAUSES = [0, False]  # nesting depth, whether the collector was on at the first entry
#: Environment variable: ``1`` makes the first fit call :func:`freeze_imports`.
GC_FREEZE_ENV = "BAYESMOE_GC_FREEZE"
_FROZEN = [False]


@contextlib.contextmanager
def paused_gc():
    """Pause CPython's cyclic garbage collector for a block (a context manager).

    Used around model compilation, whose graph rewriting allocates many short-lived
    objects (and makes little cyclic garbage).
    Nested and concurrent uses (threads) pause once and restore the collector's state of
    the first entry when the last one leaves, so a user who disabled the collector keeps
    it disabled; objects freed by reference counting are freed as always, and cyclic
    garbage made meanwhile is collected at the next collection after the block.
    """
    with _GC_LOCK:
        if _GC_PAUSES[0] == 0:
            _GC_PAUSES[1] = gc.isenabled()
            gc.disable()
        _GC_PAUSES[0] += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_PAUSES[0] -= 1
            if _GC_PAUSES[0] == 0 and _GC_PAUSES[1]:
                gc.enable()


def freeze_imports() -> bool:
    """Move every object alive now out of the cyclic collector's sight (:func:`gc.freeze`).

    For scripts and command-line runs: called once after the heavy imports (the
    ``bayesmoe`` command does; ``BAYESMOE_GC_FREEZE=1`` makes the first fit do it), later
    collections skip the imported modules' millions of objects and the interpreter's exit
    does not tear them down one by one. The cost: an
    object alive at this moment that later becomes part of unreachable *cyclic* garbage
    is not reclaimed until :func:`gc.unfreeze`; objects freed by reference counting are
    freed as always. That is why a library call does not do it unasked in a long-lived
    notebook kernel. A garbage collection runs first, so nothing already unreachable is
    frozen. Returns True the first time, False after (nothing done).
    """
    with _GC_LOCK:
        if _FROZEN[0]:
            return False
        _FROZEN[0] = True
    gc.collect()
    gc.freeze()
    return True


def freeze_requested() -> bool:
    """Whether ``BAYESMOE_GC_FREEZE`` asks the first fit to :func:`freeze_imports`."""
    return os.environ.get(GC_FREEZE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


# ------------------------------------------------------------------ nutpie (numba) compile

_INTRINSIC_LOCK = threading.Lock()
_AS_VOIDPTR = None


def _as_voidptr():
    """numba intrinsic: an integer address as a ``void*`` (defined on first use)."""
    global _AS_VOIDPTR
    with _INTRINSIC_LOCK:
        if _AS_VOIDPTR is None:
            from numba.core import cgutils, types
            from numba.extending import intrinsic

            @intrinsic
            def as_voidptr(typingctx, src):
                sig = types.voidptr(src)

                def codegen(cgctx, builder, sig, args):
                    return builder.inttoptr(args[0], cgutils.voidptr_t)

                return sig, codegen

            _AS_VOIDPTR = as_voidptr
    return _AS_VOIDPTR


def _unpack_lines(shared: list, slots: dict, record) -> list[str]:
    """Source lines that view each shared array from nutpie's ``user_data`` record.

    The record (nutpie's layout: per key a data address, a size and a shape) is read as
    flat uint64 words at offsets computed here, so the generated code holds only integer
    literals: no arrays or dtypes from this process, which is what makes it cacheable.
    """
    fields = record["shared"]
    base = record.fields["shared"][1]
    lines = []
    for i, var in enumerate(shared):
        key = slots[var]
        data = (base + fields["data"].fields[key][1] + fields.fields["data"][1]) // 8
        size = (base + fields["size"].fields[key][1] + fields.fields["size"][1]) // 8
        shape0 = (base + fields["shape"].fields[key][1] + fields.fields["shape"][1]) // 8
        dims = ", ".join(f"int(u[{shape0 + d}])" for d in range(var.ndim))
        shape = f"({dims},)" if var.ndim == 1 else f"({dims})"
        dtype = f"np.{var.dtype}"
        lines.append(
            f"        a{i} = numba.carray(as_voidptr(u[{data}]), (int(u[{size}]),), "
            f"{dtype}).reshape({shape})"
        )
    return lines


def _record_is_words(record) -> bool:
    """Whether nutpie's record is made of 8-byte unsigned words only (what we read)."""
    try:
        shared = record["shared"]
        parts = [shared[name] for name in ("data", "size", "shape")]
    except (KeyError, ValueError):
        return False
    for part in parts:
        for sub, offset, *_ in (part.fields or {}).values():
            base = sub.base if sub.subdtype else sub
            if base.kind != "u" or base.itemsize != 8 or offset % 8:
                return False
    return record.itemsize % 8 == 0


def _wrapper_source(kind: str, n_dim: int, n_expanded: int, n_words: int, unpack: list[str]):
    args = "".join(f", a{i}" for i in range(len(unpack)))
    head = "\n".join(unpack)
    if kind == "logp":
        return f"""
def bayesmoe_logp(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
        u = numba.carray(user_data_, ({n_words},), np.uint64)
{head}
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_dim},))
        logp = numba.carray(logp_, ())
        logp_val, grad = inner(x{args})
        logp[()] = logp_val
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:
        return 1
    return 0
"""
    return f"""
def bayesmoe_expand(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    try:
        u = numba.carray(user_data_, ({n_words},), np.uint64)
{head}
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_expanded},))
        (values,) = inner(x{args})
        out[...] = values
    except Exception:
        return -2
    return 0
"""


def _cached_cfunc(kind, fn_pt, n_dim, n_expanded, shared_order, slots, record, signature):
    """A numba cfunc around a PyTensor numba function, cached on disk by content.

    Returns None when PyTensor could not give the inner function a cache key (an Op
    without one): the caller then uses nutpie's own (uncached) compilation.
    """
    import numba
    import numpy as np
    from pytensor.configdefaults import config
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    inner = fn_pt.vm.jit_fn
    inner_key = CACHED_SRC_FUNCTIONS.get(getattr(inner, "py_func", None))
    if inner_key is None or not config.numba__cache:
        return None
    order = [v for v in fn_pt.get_shared()]
    unpack = _unpack_lines(order, slots, record)
    src = _wrapper_source(kind, n_dim, n_expanded, record.itemsize // 8, unpack)
    # The wrapper's code and the inner graph's PyTensor key identify the machine code;
    # numba adds the signature, the CPU and its own version to the entry it stores.
    key = hashlib.sha256(f"{src}\n{inner_key}\n{config.numba__fastmath}".encode()).hexdigest()
    name = f"bayesmoe_{kind}"
    py_func = compile_numba_function_src(
        src,
        name,
        global_env={
            "__name__": __name__,  # numba rebuilds a cached entry's globals from its module
            "numba": numba,
            "np": np,
            "inner": inner,
            "as_voidptr": _as_voidptr(),
        },
        cache_key=f"bayesmoe_{kind}_{key}",
    )
    return numba.cfunc(signature, cache=True)(py_func)


def compile_nutpie(model, *, var_names=None):
    """``nutpie.compile_pymc_model(model)`` whose numba code is read from the disk cache.

    The same :class:`nutpie.compile_pymc.CompiledPyMCModel` (so ``with_data``, the
    initial point and sampling are nutpie's), but its two C callbacks are generated with
    stable names and no captured arrays, keyed by a hash of their source and of
    PyTensor's key for the graph they call; numba then stores and reloads them like
    PyTensor's kernels (:mod:`pytensor.link.numba.cache`). Identical graphs give
    identical machine code, so the cache cannot change a draw (tested in
    ``tests/test_cache.py``). Falls back to nutpie's own compile when a graph has no
    PyTensor cache key, or when nutpie's internals are not the ones this was written
    against (nutpie 0.16).

    Parameters
    ----------
    model : pymc.Model
    var_names : list of str, optional
        Variables stored in the trace (nutpie's ``var_names``); default all.

    Returns
    -------
    nutpie.compile_pymc.CompiledPyMCModel
    """
    import nutpie

    try:
        from nutpie import compile_pymc as cp

        parts = (
            cp._make_functions,
            cp.make_user_data,
            cp._prepare_dims_and_coords,
            cp._wrap_with_lock,
            cp.CompiledPyMCModel,
        )
    except (ImportError, AttributeError):  # another nutpie: its own path
        return nutpie.compile_pymc_model(model, var_names=var_names)
    make_functions, make_user_data, dims_and_coords, wrap_with_lock, compiled_cls = parts
    import numba
    import numpy as np
    from pymc.initial_point import make_initial_point_fn

    # nutpie's defaults: support-point start with jitter (bayesmoe.fitting swaps in its
    # own start when it has one).
    initial_point_fn = wrap_with_lock(
        make_initial_point_fn(
            model=model,
            default_strategy="support_point",
            jitter_rvs=set(model.free_RVs),
            return_transformed=True,
        )
    )
    n_dim, n_expanded, logp_pt, expand_pt, init_fn, shape_info, reparam = make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=initial_point_fn,
        var_names=var_names,
    )
    shared_order, seen = [], set()
    for var in [*logp_pt.get_shared(), *expand_pt.get_shared()]:
        if var not in seen:
            seen.add(var)
            shared_order.append(var)
    # Stable slot names (nutpie uses a fresh uuid per compile, which numba would bake in).
    slots = {var: f"s{i}" for i, var in enumerate(shared_order)}
    shared_data = {}
    for var in shared_order:
        value = np.array(var.get_value(), order="C", copy=True)
        value.flags.writeable = False
        shared_data[slots[var]] = value
    user_data = make_user_data(slots, shared_data)
    record = user_data.dtype
    if not _record_is_words(record):  # not the layout _unpack_lines reads
        return nutpie.compile_pymc_model(model, var_names=var_names)
    logp_sig = numba.types.int64(
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )
    expand_sig = numba.types.int64(
        numba.types.uint64,
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )
    logp_c = _cached_cfunc(
        "logp", logp_pt, n_dim, n_expanded, shared_order, slots, record, logp_sig
    )
    expand_c = _cached_cfunc(
        "expand", expand_pt, n_dim, n_expanded, shared_order, slots, record, expand_sig
    )
    if logp_c is None or expand_c is None:
        return nutpie.compile_pymc_model(model, var_names=var_names)
    dims, coords = dims_and_coords(model, shape_info, reparam)
    return compiled_cls(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp_c,
        compiled_expand_func=expand_c,
        initial_point_func=init_fn,
        shared_data=shared_data,
        shared_var_keys=slots,
        user_data=user_data,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=logp_pt,
        expand_func=expand_pt,
        reparameterized_names=reparam,
    )
