"""``medrecon bench operators``: its two marked sections of a Markdown page (docs/benchmarks.md).

``bench:operators`` holds the CT and Cartesian MRI tables, ``bench:operators:nufft`` the
non-Cartesian MRI table, right after the first, so that ``--only nufft`` can refresh it alone. The
markers and the replacing are :mod:`medrecon.benchmarks.report`'s; this module only places a new
NUFFT section after the operators section and writes both in one atomic write.
"""

from __future__ import annotations

import os
from pathlib import Path

from medrecon.benchmarks import report as sections
from medrecon.io.atomic import atomic_output

SECTION = "operators"
START_MARKER, END_MARKER = sections.markers(SECTION)
NUFFT_SECTION = "operators:nufft"
NUFFT_START_MARKER, NUFFT_END_MARKER = sections.markers(NUFFT_SECTION)


def check_write_target(path: str | os.PathLike) -> None:
    """Fail early (before a long run) if ``path`` cannot take the operators and NUFFT sections."""
    sections.check_write_target(path, SECTION)
    sections.check_write_target(path, NUFFT_SECTION)


def replace_section(text: str | None, section: str, path: Path | str = "<text>") -> str:
    """``text`` with the operators section replaced (:func:`medrecon.benchmarks.report.replace_section`)."""
    return sections.replace_section(text, section, SECTION, path)


def replace_nufft_section(text: str | None, section: str, path: Path | str = "<text>") -> str:
    """``text`` with the NUFFT section replaced; where it has none yet, the section goes right after
    the operators section's end marker (or, without one, at the end of the page)."""
    if text is not None:
        lines = text.splitlines(keepends=True)
        stripped = [line.strip() for line in lines]
        ends = [i for i, line in enumerate(stripped) if line == END_MARKER]
        if NUFFT_START_MARKER not in stripped and NUFFT_END_MARKER not in stripped and len(ends) == 1:
            head = "".join(lines[: ends[0] + 1])
            head += "" if head.endswith("\n") else "\n"
            block = f"\n{NUFFT_START_MARKER}\n{section.rstrip(chr(10))}\n{NUFFT_END_MARKER}\n"
            return head + block + "".join(lines[ends[0] + 1 :])
    return sections.replace_section(text, section, NUFFT_SECTION, path)


def write_section(path: str | os.PathLike, section: str) -> None:
    """Replace the operators section of the Markdown file ``path``, atomically."""
    sections.write_section(path, section, SECTION)


def write_sections(path: str | os.PathLike, operators: str | None = None, nufft: str | None = None) -> None:
    """Replace the operators and/or the NUFFT section of the Markdown file ``path`` (one atomic write);
    a section passed as None is left as it is."""
    p = Path(path)
    text = p.read_text(encoding="utf-8") if p.exists() else None
    if operators is not None:
        text = replace_section(text, operators, p)
    if nufft is not None:
        text = replace_nufft_section(text, nufft, p)
    if text is None:
        return
    with atomic_output(p, overwrite=True) as tmp:
        tmp.write_text(text, encoding="utf-8")



__all__ = [
    "END_MARKER",
    "NUFFT_END_MARKER",
    "NUFFT_SECTION",
    "NUFFT_START_MARKER",
    "SECTION",
    "START_MARKER",
    "check_write_target",
    "replace_nufft_section",
    "replace_section",
    "write_section",
    "write_sections",
]
