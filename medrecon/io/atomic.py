"""Atomic outputs: write under a temporary sibling name, move into place only when complete.

Every writer of medrecon goes through :func:`atomic_output`, so an interrupted run never leaves a
half-written file or folder, an existing output is replaced only when the caller says so (and only
after the new one is complete), and outputs get the usual permissions (0666/0777 less the umask).
An operating-system error while writing (a read-only or vanished folder, a full disk) becomes a
one-line :class:`~medrecon.errors.OutputError` naming the path, after the temporary output is
removed; :func:`check_writable_folder` makes the same refusal before any work.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medrecon.errors import InputError, OutputError


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink(missing_ok=True)
        except OSError:  # the folder vanished or became read-only: nothing more to do
            pass


def os_error_message(exc: OSError) -> str:
    """An OSError's reason in words (``No space left on device``), without its traceback."""
    if exc.errno is not None:
        return exc.strerror or os.strerror(exc.errno)
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def find_os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc`` (itself, or its cause or context: writers such as h5py and
    nibabel wrap it), or None."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and not isinstance(exc, InputError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def check_writable_folder(folder: str | os.PathLike, what: str = "the output folder") -> None:
    """Refuse a folder that does not exist or where a file cannot be created (read-only, no
    permission, a read-only file system), by creating and removing a probe file there."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OutputError(f"{what} {folder} does not exist")
    probe = folder / f".medrecon-probe-{uuid.uuid4().hex[:12]}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise OutputError(f"{what} {folder} is not writable ({os_error_message(exc)})") from None
    _remove(probe)


@contextmanager
def atomic_output(
    path: str | os.PathLike, *, overwrite: bool = False, folder: bool = False, suffix: str = "", parents: bool = True
) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write into (an empty folder if ``folder``).

    On success the temporary path replaces ``path``; on any error it is removed and ``path`` is
    left as it was. Raises :class:`InputError` up front if ``path`` exists and not ``overwrite``,
    and :class:`OutputError` (naming ``path`` and the reason) when the operating system refuses a
    write: a read-only or vanished folder, no permission, a full disk.
    ``suffix`` ends the temporary name, for writers that choose the format by it (nibabel).
    ``parents``: create missing parent folders (otherwise a missing folder is an OutputError, e.g.
    one that vanished since the command checked it).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    if path.exists() and path.is_dir() != folder:
        kind = "a folder" if path.is_dir() else "a file"
        raise InputError(f"{path} is {kind}; it cannot be replaced by {'a folder' if folder else 'a file'}")
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.partial{suffix}"
    try:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path.parent))
        if folder:
            tmp.mkdir()
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {os_error_message(exc)}; nothing was written") from None
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
    except BaseException as exc:
        _remove(tmp)
        cause = find_os_error(exc) if isinstance(exc, Exception) and not isinstance(exc, InputError) else None
        if cause is not None and cause.errno in _OUTPUT_ERRNOS:
            raise OutputError(f"cannot write {path}: {os_error_message(cause)}; nothing was written") from None
        raise


# what the operating system says when an output cannot be written: a full disk or quota, no
# permission, a read-only file system, a vanished folder, a name too long
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR,
                  errno.EIO, errno.EFBIG, errno.ENAMETOOLONG}
