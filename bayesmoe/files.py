"""Atomic file writes: a file appears under its name complete, or not at all.

:func:`atomic_write` is the one way bayesmoe writes a file that a reader (or a later run)
may find half-written otherwise: an estimator's ``save``, a study's per-cell Parquet files
and manifest, figures. The content goes to a temporary file in the target's own folder
(so that the final rename stays on one file system), which is flushed to disk and then
replaces the target with :func:`os.replace`; the folder is flushed after the rename. On
any failure the temporary file is removed and the target is left as it was.

A target that is a symbolic link is resolved first: the file the link points to is
replaced and the link stays. A new file gets the permissions the process's umask gives
(``0o666 & ~umask``), as :func:`open` would; a replaced file keeps its own mode.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write"]


def _umask() -> int:
    """The process's file-creation mask.

    Read from ``/proc/self/status`` where it exists; elsewhere by setting and restoring
    it (which other threads creating files at that instant could see).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_path(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Flush ``path`` (a file, or with ``folder`` a directory) to disk.

    A folder that cannot be opened for reading (some platforms and file systems) is
    skipped: the rename is then as durable as the file system makes it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0))
    except OSError:
        if folder:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], object], *, suffix: str = ".tmp"
) -> Path:
    """Write ``path`` through ``write(tmp)`` on a temporary file, then rename it over ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace. Its folder must exist. A symbolic link is followed:
        the file it points to is replaced (in that file's folder) and the link is kept.
    write : callable
        Writes the whole content to the path it is given: a new, empty file named
        ``.<name>.<random><suffix>`` in the target's folder, created by
        :func:`tempfile.mkstemp`. For example
        ``lambda tmp: df.to_parquet(tmp, index=False)`` or
        ``lambda tmp: tmp.write_text(json.dumps(manifest))``. Its return value is ignored.
    suffix : str
        The temporary file's suffix, for writers that choose the format by the name
        (``suffix=".png"`` for :meth:`matplotlib.figure.Figure.savefig`).

    Returns
    -------
    pathlib.Path
        ``path`` (the link, when ``path`` is one).

    Notes
    -----
    The written file is flushed (:func:`os.fsync`) before the rename and its folder after
    it, so after a crash ``path`` holds either the old or the new content. Its mode is
    the replaced file's, or ``0o666 & ~umask`` for a new file.

    Raises
    ------
    OSError
        ``"path ... cannot be written: ..."`` when the temporary file cannot be created
        (a missing or read-only folder, a file where a folder should be). Whatever
        ``write``, the flush or the rename raise (``KeyboardInterrupt`` included)
        propagates after the temporary file is removed; ``path`` then still holds what it
        held before.
    """
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        old_mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        old_mode = 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    except OSError as err:
        raise OSError(f"path {str(path)!r} cannot be written: {err}") from err
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, old_mode)
        _fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_path(target.parent, folder=True)
    return path
