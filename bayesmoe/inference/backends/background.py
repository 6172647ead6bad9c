"""The nutpie/numba compile of model structures, done by one background process.

``sampler="auto"`` fits a structure whose numba code is not in the compile cache with
numpyro (its JAX compile is several times shorter), and calls :func:`compile_later`, which
queues the structure for a detached, low-priority process that compiles its numba code
into the cache; the next fit of the structure (in any process) then finds it there and
runs nutpie (:func:`bayesmoe.inference.settings.resolve_sampler`).

A queued model travels pickled (cloudpickle) in ``cache_dir()/pending/<digest>.pkl``. One
runner process at a time works through the queue (oldest first), so a session that fits
many new structures never has more than one compile running beside it: the file
``pending/runner.lock``, created exclusively, is held by the runner (a lock older than
:data:`STALE_SECONDS` is taken over). The runner
(``python -m bayesmoe.inference.backends.background``) lowers its priority (``os.nice``),
compiles each model with :func:`bayesmoe.cache.compile_nutpie` as a fit would (numba
without fastmath, the collector paused), records it with
:func:`bayesmoe.cache.mark_compiled`, deletes its file, and exits when the queue is
empty. It samples nothing. ``BAYESMOE_BACKGROUND_COMPILE=0`` switches this off (the cold
path is then not taken).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import bayesmoe.cache

__all__ = ["BACKGROUND_ENV", "RUNNER_LOCK", "STALE_SECONDS", "compile_later", "enabled", "main"]

#: Environment variable: ``0`` / ``off`` switches the background compile off.
BACKGROUND_ENV = "BAYESMOE_BACKGROUND_COMPILE"
#: A lock file older than this (s) belongs to a compile that died: it is taken over.
STALE_SECONDS = 1800.0
_NICE = 19
#: The runner's lock file in the queue folder.
RUNNER_LOCK = "runner.lock"


def enabled() -> bool:
    """Whether background compiles are allowed (``BAYESMOE_BACKGROUND_COMPILE``)."""
    return os.environ.get(BACKGROUND_ENV, "1").strip().lower() not in {"0", "off", "no", "false"}


def _queue() -> Path | None:
    folder = bayesmoe.cache.usable_cache_dir()
    if folder is None:
        return None
    pending = folder / "pending"
    pending.mkdir(mode=0o700, exist_ok=True)
    return pending


def _take_lock(lock: Path) -> bool:
    """Create ``lock`` exclusively (or take over a stale one); False: a runner runs."""
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


def _start(args: list[str]) -> None:
    """Start ``args`` detached: no terminal, its own session, the user's environment."""
    subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # survives the user's process, gets no Ctrl-C
        env=os.environ.copy(),
    )


def compile_later(model, cache_key) -> bool:
    """Queue ``model``'s structure for the background compile (starting the runner).

    Returns whether the structure is queued: not when switched off (:func:`enabled`),
    when the cache is off or refused, when the structure is already compiled, or when the
    model cannot be pickled. Never raises for those; the fit goes on either way.
    """
    if not enabled() or bayesmoe.cache.is_compiled(cache_key):
        return False
    try:
        queue = _queue()
        if queue is None:
            return False
        pickled = queue / f"{bayesmoe.cache.structure_digest(cache_key)}.pkl"
        if not pickled.exists():
            import cloudpickle

            partial = pickled.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(cloudpickle.dumps(model))
            os.replace(partial, pickled)  # the runner never reads a half-written file
        lock = queue / RUNNER_LOCK
        if _take_lock(lock):
            try:
                _start([sys.executable, "-m", __name__])
            except OSError:
                lock.unlink()
                raise
    except Exception:  # a failed background start must not fail the fit
        return False
    return True


def main() -> int:
    """The runner: compile every queued model into the cache (oldest first), then exit."""
    with contextlib.suppress(OSError):
        os.nice(_NICE)
    queue = _queue()
    if queue is None:
        return 1
    lock = queue / RUNNER_LOCK
    try:
        import cloudpickle

        from bayesmoe.builders.contract import spec_of

        failed: set[Path] = set()
        while True:
            todo = [p for p in queue.glob("*.pkl") if p not in failed]
            if not todo:
                return 0
            pickled = min(todo, key=lambda p: p.stat().st_mtime)
            lock.touch()  # not stale while it works
            try:
                model = cloudpickle.loads(pickled.read_bytes())
                spec = spec_of(model)
                with bayesmoe.cache.reproducible_numba(), bayesmoe.cache.paused_gc():
                    bayesmoe.cache.compile_nutpie(model)
                if spec is not None and spec.cache_key is not None:
                    bayesmoe.cache.mark_compiled(spec.cache_key)
            except Exception:  # this model stays uncompiled; the others go on
                failed.add(pickled)
            with contextlib.suppress(OSError):
                pickled.unlink()
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()


if __name__ == "__main__":
    raise SystemExit(main())
