"""Atomic file writes: a file appears under its name complete, or not at all.

:func:`atomic_write` is the one way bayesmoe writes a file that a reader (or a later run)
may find half-written otherwise: an estimator's ``save``, a study's per-cell Parquet files
and manifest, figures. The content goes to a temporary file in the target's own folder
(so that the final rename stays on one file system), which then replaces the target with
:func:`os.replace`; on any failure the temporary file is removed and the target is left
as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], object], *, suffix: str = ".tmp"
) -> Path:
    """Write ``path`` through ``write(tmp)`` on a temporary file, then rename it over ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create or replace. Its folder must exist.
    write : callable
        Writes the whole content to the path it is given: a new, empty file named
        ``.<name>.<random><suffix>`` in ``path``'s folder, created by
        :func:`tempfile.mkstemp` (mode ``0o600``). For example
        ``lambda tmp: df.to_parquet(tmp, index=False)`` or
        ``lambda tmp: tmp.write_text(json.dumps(manifest))``. Its return value is ignored.
    suffix : str
        The temporary file's suffix, for writers that choose the format by the name
        (``suffix=".png"`` for :meth:`matplotlib.figure.Figure.savefig`).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    OSError
        ``"path ... cannot be written: ..."`` when the temporary file cannot be created
        (a missing or read-only folder, a file where a folder should be). Whatever
        ``write`` or the rename raise (``KeyboardInterrupt`` included) propagates after the
        temporary file is removed; ``path`` then still holds what it held before.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as err:
        raise OSError(f"path {str(path)!r} cannot be written: {err}") from err
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
