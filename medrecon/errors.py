"""Exceptions of medrecon and the command-line exit code each one maps to.

Every error raised on purpose by medrecon derives from :class:`MedreconError`. Bad input
(a wrong shape, dtype, geometry, file or flag) raises :class:`InputError` or one of its
subclasses; a missing resource (a prior, a data file, an optional dependency) raises
:class:`MissingResourceError`. The CLI turns these into exit codes 2 and 3; anything else is an
internal error (exit code 1).

:func:`positive_int` is the one check of a count argument (steps, iterations, coils, views, ...)
that every module shares.
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
