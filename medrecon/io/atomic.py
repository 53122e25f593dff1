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
from dataclasses import dataclass
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


@dataclass
class _Staged:
    path: Path
    tmp: Path
    folder: bool


class Stage:
    """Outputs written under temporary sibling names and moved into place together
    (:func:`staged_outputs`): each existing output is first moved aside, then every new one moved
    in; if any move fails the ones already moved in are removed and the old outputs put back, so
    the set is replaced as a whole or not at all (short of the machine stopping mid-way)."""

    def __init__(self) -> None:
        self._staged: list[_Staged] = []

    def add(self, path: str | os.PathLike, *, overwrite: bool = False, folder: bool = False, suffix: str = "",
            parents: bool = True) -> Path:
        """A temporary path to write ``path``'s content into (an empty folder if ``folder``); see
        :func:`atomic_output` for the arguments and the refusals."""
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
        self._staged.append(_Staged(path, tmp, folder))
        return tmp

    def outputs_of(self, error: OSError) -> list[Path]:
        """The output whose temporary (or a file inside it) ``error`` names; every output when it
        names none of them."""
        names = {str(n) for n in (error.filename, error.filename2) if n is not None}
        hits = [s.path for s in self._staged
                if any(n == str(s.tmp) or n.startswith(str(s.tmp) + os.sep) or n == str(s.path) for n in names)]
        return hits or [s.path for s in self._staged]

    def discard(self) -> None:
        for staged in self._staged:
            _remove(staged.tmp)

    def commit(self) -> None:
        if len(self._staged) == 1 and not self._staged[0].folder:  # one file: replaced in one step
            os.replace(self._staged[0].tmp, self._staged[0].path)
            return
        aside: list[tuple[Path, Path]] = []
        placed: list[Path] = []
        try:
            for staged in self._staged:
                if staged.path.exists() or staged.path.is_symlink():
                    backup = staged.path.parent / f".{staged.path.name}.{uuid.uuid4().hex[:12]}.old"
                    os.rename(staged.path, backup)
                    aside.append((staged.path, backup))
            for staged in self._staged:
                os.rename(staged.tmp, staged.path)
                placed.append(staged.path)
        except BaseException:
            for path in placed:
                _remove(path)
            for path, backup in aside:
                os.rename(backup, path)
            raise
        for _, backup in aside:
            _remove(backup)


@contextmanager
def staged_outputs() -> Iterator[Stage]:
    """Yield a :class:`Stage`; on success every output added to it replaces its path together, on
    any error none does and the temporaries are removed. An operating-system refusal (a full disk,
    a read-only folder) becomes a one-line :class:`OutputError` naming the outputs."""
    stage = Stage()
    try:
        yield stage
        stage.commit()
    except BaseException as exc:
        stage.discard()
        cause = find_os_error(exc) if isinstance(exc, Exception) and not isinstance(exc, InputError) else None
        if cause is not None and cause.errno in _OUTPUT_ERRNOS:
            names = ", ".join(str(p) for p in stage.outputs_of(cause))
            raise OutputError(f"cannot write {names}: {os_error_message(cause)}; nothing was written") from None
        raise


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
    one that vanished since the command checked it). Several outputs that belong together:
    :func:`staged_outputs`.
    """
    with staged_outputs() as stage:
        yield stage.add(path, overwrite=overwrite, folder=folder, suffix=suffix, parents=parents)


# what the operating system says when an output cannot be written: a full disk or quota, no
# permission, a read-only file system, a vanished folder, a name too long
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR,
                  errno.EIO, errno.EFBIG, errno.ENAMETOOLONG}
