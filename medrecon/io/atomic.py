"""Atomic outputs: write under a temporary sibling name, move into place only when complete.

Every writer of medrecon goes through :func:`atomic_output`, so an interrupted run never leaves a
half-written file or folder, an existing output is replaced only when the caller says so (and only
after the new one is complete), and outputs get the usual permissions (0666/0777 less the umask).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medrecon.errors import InputError


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_output(
    path: str | os.PathLike, *, overwrite: bool = False, folder: bool = False, suffix: str = ""
) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write into (an empty folder if ``folder``).

    On success the temporary path replaces ``path``; on any error it is removed and ``path`` is
    left as it was. Raises :class:`InputError` up front if ``path`` exists and not ``overwrite``.
    ``suffix`` ends the temporary name, for writers that choose the format by it (nibabel).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    if path.exists() and path.is_dir() != folder:
        kind = "a folder" if path.is_dir() else "a file"
        raise InputError(f"{path} is {kind}; it cannot be replaced by {'a folder' if folder else 'a file'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.partial{suffix}"
    if folder:
        tmp.mkdir()
    try:
        yield tmp
        if not folder:
            os.replace(tmp, path)
        elif not path.exists():
            os.rename(tmp, path)
        else:
            backup = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.old"
            os.rename(path, backup)
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(backup, path)
                raise
            shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        _remove(tmp)
        raise
