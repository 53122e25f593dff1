"""Marked sections of Markdown pages (docs/benchmarks.md): each benchmark command owns the lines
between ``<!-- bench:NAME:start -->`` and ``<!-- bench:NAME:end -->`` and rewrites only those."""

from __future__ import annotations

import os
from pathlib import Path

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_output

NEW_PAGE = (
    "# Benchmarks\n\n"
    "Speed and memory measurements of medrecon. Each section is written by the command named in "
    "it; rerun that command to refresh it.\n\n"
)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def _find(text: str, name: str, path: Path) -> tuple[int, int] | None:
    """Line positions of the section's start and end markers, None when neither is there."""
    start_marker, end_marker = markers(name)
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == start_marker]
    ends = [i for i, line in enumerate(lines) if line.strip() == end_marker]
    if not starts and not ends:
        return None
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise InputError(
            f"{path}: expected one line {start_marker!r} followed by one line {end_marker!r}, found "
            f"{len(starts)} start and {len(ends)} end marker(s)"
            + (" in the wrong order" if starts and ends and ends[0] < starts[0] else "")
            + "; fix the file by hand"
        )
    return starts[0], ends[0]


def check_write_target(path: str | os.PathLike, name: str) -> None:
    """Fail early (before a long run) if ``path`` cannot take the section."""
    p = Path(path)
    if p.exists():
        if not p.is_file():
            raise InputError(f"--write {p}: not a regular file")
        _find(p.read_text(encoding="utf-8"), name, p)
    elif not p.parent.is_dir():
        raise InputError(f"--write {p}: the folder {p.parent} does not exist")
    if not os.access(p.parent, os.W_OK):
        raise InputError(f"--write {p}: the folder {p.parent} is not writable")


def replace_section(text: str | None, section: str, name: str, path: Path | str = "<text>") -> str:
    """``text`` with the named section replaced (markers kept), appended when it is missing, or a new
    page when ``text`` is None."""
    start_marker, end_marker = markers(name)
    block = f"{start_marker}\n{section.rstrip(chr(10))}\n{end_marker}\n"
    if text is None:
        return NEW_PAGE + block
    pos = _find(text, name, Path(path))
    if pos is None:
        sep = "" if text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
        return text + sep + block
    lines = text.splitlines(keepends=True)
    start, end = pos
    return "".join(lines[:start]) + block + "".join(lines[end + 1 :])


def write_section(path: str | os.PathLike, section: str, name: str) -> None:
    """Put ``section`` between the named markers of the Markdown file ``path``, atomically."""
    p = Path(path)
    old = p.read_text(encoding="utf-8") if p.exists() else None
    new = replace_section(old, section, name, p)
    with atomic_output(p, overwrite=True) as tmp:
        tmp.write_text(new, encoding="utf-8")
