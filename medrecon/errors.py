"""Exceptions of medrecon and the command-line exit code each one maps to.

Every error raised on purpose by medrecon derives from :class:`MedreconError`. Bad input
(a wrong shape, dtype, geometry, file or flag) raises :class:`InputError` or one of its
subclasses (:class:`OutputError` for an output that cannot be written); a missing resource (a
prior, a data file, an optional dependency) raises :class:`MissingResourceError`. The CLI turns
these into exit codes 2 and 3; anything else is an internal error (exit code 1).

:func:`positive_int` is the one check of a count argument (steps, iterations, coils, views, ...)
that every module shares; :func:`one_line` is how a library's exception is quoted inside one.
"""

from __future__ import annotations

import numbers


class MedreconError(Exception):
    """Base class of every error medrecon raises on purpose."""

    exit_code = 1


class InputError(MedreconError, ValueError):
    """The caller gave something medrecon cannot use: the message says what was expected."""

    exit_code = 2


class ShapeError(InputError):
    """A tensor has the wrong shape, dtype or device for the operator or function it was given to."""


class GeometryError(InputError):
    """An acquisition geometry (angles, distances, detector, mask, coil maps) is impossible."""


class OutputError(InputError):
    """An output cannot be written where the caller asked (a read-only or vanished folder, a full
    disk, a path that is or holds the input); nothing is left written. Exit code 2, like bad input:
    the caller can fix it by choosing another path or freeing space."""


class MissingResourceError(MedreconError):
    """A prior, data file or optional dependency that the request needs is not available."""

    exit_code = 3


class BackendUnavailableError(MissingResourceError):
    """A compute backend (astra-toolbox, its CUDA projectors) cannot be used on this machine."""


def positive_int(value, name: str, error: type[InputError] = InputError) -> int:
    """``value`` as an ``int`` when it is an integer >= 1 (numpy integers too, bools not); otherwise
    ``error`` (an :class:`InputError` subclass) saying ``"{name} must be a positive integer, got {value!r}"``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise error(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def one_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name when empty), at most 200 characters: how a
    library's exception (nibabel, pydicom, h5py, gzip) is quoted inside a one-line refusal."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
