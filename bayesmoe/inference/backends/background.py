"""The nutpie/numba compile of a model structure, done in a background process.

``sampler="auto"`` fits a structure whose numba code is not in the compile cache with
numpyro (its JAX compile is several times shorter), and calls :func:`compile_later` so that
a detached, low-priority process compiles the structure's numba code into the cache
meanwhile; the next fit of the structure (in any process) then finds it there and runs
nutpie (:func:`bayesmoe.inference.settings.resolve_sampler`).

The model travels pickled (cloudpickle) in ``cache_dir()/pending/<digest>.pkl``; the file
``<digest>.lock``, created exclusively, keeps a second process from starting the same
compile while one runs (a lock older than :data:`STALE_SECONDS` is taken over). The child
(``python -m bayesmoe.inference.backends.background <digest>``) lowers its priority
(``os.nice``), compiles with :func:`bayesmoe.cache.compile_nutpie` as a fit would (numba
without fastmath, the collector paused), records the structure with
:func:`bayesmoe.cache.mark_compiled` and deletes its two files. It samples nothing.
``BAYESMOE_BACKGROUND_COMPILE=0`` switches this off (the cold path then stays in use).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import bayesmoe.cache

__all__ = ["BACKGROUND_ENV", "STALE_SECONDS", "compile_later", "enabled", "main"]

#: Environment variable: ``0`` / ``off`` switches the background compile off.
BACKGROUND_ENV = "BAYESMOE_BACKGROUND_COMPILE"
#: A lock file older than this (s) belongs to a compile that died: it is taken over.
STALE_SECONDS = 1800.0
_NICE = 19


def enabled() -> bool:
    """Whether background compiles are allowed (``BAYESMOE_BACKGROUND_COMPILE``)."""
    return os.environ.get(BACKGROUND_ENV, "1").strip().lower() not in {"0", "off", "no", "false"}


def _pending(digest: str) -> tuple[Path, Path] | None:
    folder = bayesmoe.cache.usable_cache_dir()
    if folder is None:
        return None
    pending = folder / "pending"
    pending.mkdir(mode=0o700, exist_ok=True)
    return pending / f"{digest}.pkl", pending / f"{digest}.lock"


def _take_lock(lock: Path) -> bool:
    """Create ``lock`` exclusively (or take over a stale one); False: a compile runs."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                age = time.time() - lock.stat().st_mtime
            except OSError:
                continue
            if age < STALE_SECONDS:
                return False
            with contextlib.suppress(OSError):
                lock.unlink()
            continue
        os.close(fd)
        return True
    return False


def compile_later(model, cache_key) -> bool:
    """Start a detached process that compiles ``model``'s nutpie code into the cache.

    Returns whether one was started: not when switched off (:func:`enabled`), when the
    cache is off or refused, when the structure is already compiled or being compiled, or
    when the model cannot be pickled. Never raises for those; the fit goes on either way.
    """
    if not enabled() or bayesmoe.cache.is_compiled(cache_key):
        return False
    digest = bayesmoe.cache.structure_digest(cache_key)
    try:
        paths = _pending(digest)
    except OSError:
        return False
    if paths is None or not _take_lock(paths[1]):
        return False
    pickled, lock = paths
    try:
        import cloudpickle

        pickled.write_bytes(cloudpickle.dumps(model))
        subprocess.Popen(
            [sys.executable, "-m", __name__, digest],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survives the user's process, gets no Ctrl-C
            env=os.environ.copy(),
        )
    except Exception:  # a failed background start must not fail the fit
        for path in (pickled, lock):
            with contextlib.suppress(OSError):
                path.unlink()
        return False
    return True


def main(digest: str) -> int:
    """The child: compile the pickled model ``digest`` into the cache, then mark it."""
    with contextlib.suppress(OSError):
        os.nice(_NICE)
    paths = _pending(digest)
    if paths is None:
        return 1
    pickled, lock = paths
    try:
        import cloudpickle

        from bayesmoe.builders.contract import spec_of

        model = cloudpickle.loads(pickled.read_bytes())
        spec = spec_of(model)
        with bayesmoe.cache.reproducible_numba(), bayesmoe.cache.paused_gc():
            bayesmoe.cache.compile_nutpie(model)
        if spec is not None and spec.cache_key is not None:
            bayesmoe.cache.mark_compiled(spec.cache_key)
        return 0
    finally:
        for path in (pickled, lock):
            with contextlib.suppress(OSError):
                path.unlink()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
