"""Argument checks the raw-data readers share (:mod:`medrecon.io.kspace`,
:mod:`medrecon.io.noncartesian`, :mod:`medrecon.io.mrd`): :func:`is_int`, and
:func:`check_slice_selection` of a ``slices=`` range over a file's slices.

Raw k-space files are not studies, so these sit beside the readers rather than with the Study type
(:mod:`medrecon.study`); the module imports nothing but :mod:`medrecon.errors`, so any reader can
use it.
"""

from __future__ import annotations

import numbers

from medrecon.errors import InputError


def is_int(value) -> bool:
    """An integer that is not a bool (numpy integers included)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_slice_selection(slices: slice | None, n: int, path) -> slice:
    """``slices`` (None: all) checked against a file of ``n`` slices, as a normalised slice with a
    positive step; a one-line :class:`InputError` naming the file otherwise."""
    if slices is None:
        return slice(0, n, 1)
    if not isinstance(slices, slice):
        raise InputError(f"slices must be a slice (e.g. slice(2, 5)) or None, got {slices!r}")
    for what in ("start", "stop", "step"):
        value = getattr(slices, what)
        if value is not None and not is_int(value):
            raise InputError(f"slices.{what} must be an int or None, got {value!r}")
    if slices.step is not None and slices.step < 1:
        raise InputError(f"slices must have a positive step, got {slices.step}")
    for what in ("start", "stop"):
        value = getattr(slices, what)
        if value is not None and not -n <= value <= n:
            raise InputError(f"{path}: slice {what} {value} is out of range for a file of {n} slices "
                             f"(valid: {-n}..{n})")
    start, stop, step = slices.indices(n)
    if len(range(start, stop, step)) == 0:
        raise InputError(f"{path}: {slices} selects no slice of the file's {n}")
    return slice(start, stop, step)


__all__ = ["check_slice_selection", "is_int"]
