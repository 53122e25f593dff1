"""The one check every study reader makes before it returns a :class:`~medrecon.study.Study`, and
every limit on what medrecon reads and simulates, as named constants (docs/studies.md, "What is
validated").

The rest of the pipeline (simulation, operators, samplers, metrics, writers) assumes what
:func:`validate_study` establishes: finite voxels, a non-degenerate matrix, a positive physical
voxel size, intensities in a range that makes sense for the modality, a voxel-to-world map that
can be inverted. A reader calls it once, last, naming the fields of its format that set each
property (:class:`Fields`), so a refusal says which file and which field is wrong; it raises a
one-line :class:`~medrecon.errors.InputError`.

The only repair: at most :data:`REPAIR_MAX_VOXELS` isolated non-finite voxels (NaN or inf, none
of them in-plane neighbours of another) are replaced by the median of their finite in-plane
neighbours. The repair is never silent: it warns (:class:`RepairedVoxelsWarning`) and is listed in
``study.source["validation"]["repairs"]``, which ``medrecon reconstruct``'s record and ``medrecon
simulate``'s ``acquisition.json`` carry. Anything more damaged is refused.

Raw k-space readers share :func:`check_finite` and :data:`MAX_IMAGE_SIDE`; the limits on what may
be simulated (views, coils, samples, memory) are here too and checked by
:func:`medrecon.acquisition.acquisition_for_study` before anything is built. The operators keep
their own last-resort bounds (``medrecon.operators.ct_geometry.LENGTH_RANGE``, ``MAX_DETECTORS``,
``medrecon.operators.ct.MAX_SYSTEM_MATRIX_ENTRIES``), as they import nothing from here.

This module sits below the format modules and imports only :mod:`medrecon.study` and
:mod:`medrecon.errors`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from medrecon.errors import InputError
from medrecon.study import Study

# ---------------------------------------------------------------------------------------- limits
PIXEL_SPACING_MM = (0.01, 100.0)
"""In-plane pixel size (mm): from a micro-CT's 10 um to a 10 cm scout pixel; anything outside is a
damaged or misread tag (a spacing in metres or micrometres, a zero, 1e6)."""

SLICE_SPACING_MM = (0.01, 1000.0)
"""Distance between slices (mm): up to a metre, a stack of a few far-apart localiser slices."""

RESCALE_SLOPE_RANGE = (1e-6, 1e6)
"""Magnitude of a DICOM RescaleSlope: CT uses 1 (sometimes 0.5-2), MR scanners' slopes lie within
1e-3..1e3; 0 would make a constant image, and the extremes turn every stored value into ~0 or
into values beyond any modality's range."""

POSITION_MAX_MM = 1e6
"""Largest distance (mm) of the first voxel from the scanner's origin: a kilometre. Patient
coordinates are within about a metre; beyond this an origin or ImagePositionPatient is damaged."""

MIN_IMAGE_SIDE = 2
MAX_IMAGE_SIDE = 8192
"""Rows and columns of an image (and the image of raw k-space): at least 2 (a line is not an
image), at most 8192 (twice the largest clinical matrices; the operators' memory grows with the
square of it)."""

CT_HU_RANGE = (-4096.0, 40000.0)
"""CT numbers after the rescale (HU): air is -1000; scanners mark pixels outside the field of view
with values down to -3024 (GE, LIDC-IDRI) or -2048, all above -4096; metal implants reach about
30000 on extended-scale scanners. The simulation treats everything below -1000 as air."""

MR_ABS_MAX = 1e12
"""Largest MR magnitude accepted (arbitrary units): far above any scanner's values (16-bit stored
values, float maps up to ~1e8) and far enough below float32's overflow (3e38) for the FFTs, norms
and percentiles of the pipeline."""

REPAIR_MAX_VOXELS = 16
"""At most this many non-finite voxels are repaired, and only when no two are in-plane neighbours
and each has at least :data:`REPAIR_MIN_NEIGHBOURS` finite in-plane neighbours."""

REPAIR_MIN_NEIGHBOURS = 3

SLICE_OUTLIER_FACTOR = 3.0
"""A DICOM series whose largest gap between neighbouring slices exceeds this many times the median
gap is refused (a slice placed far from the others, or several missing); smaller unevenness (one
missing slice: twice the gap) is read with the mean spacing and reported."""

SLICE_OFF_AXIS_PIXELS = 0.5
"""A DICOM slice whose position lies more than this many pixels off the line through the others'
positions (a robust fit: the median step direction) is refused (a slice shifted in-plane: the
affine would misplace it)."""


# what a simulated acquisition (medrecon.acquisition) may ask for
CT_MAX_VIEWS = 10_000
"""Views of a simulated CT acquisition: scanners take 1000-3000 per rotation; sparse-view CT far fewer."""

CT_MATRIX_BYTES_PER_ENTRY = 32
"""Memory per system-matrix entry while simulating and reconstructing: float32 value and int64
column index (12 bytes), the transpose built for the adjoint (12), astra's own copy while building (8)."""

CT_MATRIX_MAX_BYTES = 64 << 30
"""At most this much memory for the CT system matrix (and at most half the machine's memory)."""

POISSON_MAX_PHOTONS = 1e12
"""Incident photons of Poisson CT noise: clinical scanners reach about 1e6 per detector element;
above 1e12 the counts lose float32 precision (and the noise is nil anyway)."""

MR_MAX_COILS = 128
"""Simulated receive coils: the largest clinical arrays have 64-128 channels."""

MR_MAX_SAMPLES = 1 << 28
"""Complex k-space values of one simulated slice (coils x samples, or coils x H x W): 2 GiB of complex64."""


def memory_budget_bytes() -> int:
    """Half the machine's physical memory (16 GiB where the platform does not say), at most
    :data:`CT_MATRIX_MAX_BYTES`: the budget of a simulated acquisition's CT system matrix."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        total = 32 << 30
    return int(min(CT_MATRIX_MAX_BYTES, total // 2))


class RepairedVoxelsWarning(UserWarning):
    """A few isolated non-finite voxels were replaced by the median of their in-plane neighbours."""


@dataclass(frozen=True)
class Fields:
    """The names, in the file's own terms, of what sets each property of a study, for messages:
    ``shape`` (its size), ``spacing`` (column, row, slice spacing), ``intensity`` (the values),
    ``geometry`` (the voxel-to-world map as a whole)."""

    shape: str = "the image size"
    spacing: tuple[str, str, str] = ("the column spacing", "the row spacing", "the slice spacing")
    intensity: str = "the voxel values"
    geometry: str = "the geometry"


# --------------------------------------------------------------------------------------- checks
def number(value, label: str, field: str) -> float:
    """``value`` as a finite float, or a one-line :class:`InputError` naming ``label`` and ``field``."""
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{label}: {field} is not a number: {_short(value)}") from None
    if not math.isfinite(out):
        raise InputError(f"{label}: {field} must be finite, got {out!r}")
    return out


def check_range(value: float, limits: tuple[float, float], label: str, field: str, unit: str = "mm") -> float:
    """``value`` when it lies within ``limits`` (finite), else a one-line InputError naming the field."""
    lo, hi = limits
    if not (math.isfinite(value) and lo <= value <= hi):
        unit = f" {unit}" if unit else ""
        raise InputError(f"{label}: {field} gives {value:.6g}{unit}, outside the accepted {lo:g}-{hi:g}{unit}")
    return value


def check_image_side(n: int, label: str, field: str) -> int:
    """An image side (rows, columns) within ``MIN_IMAGE_SIDE..MAX_IMAGE_SIDE``."""
    if not MIN_IMAGE_SIDE <= n <= MAX_IMAGE_SIDE:
        raise InputError(f"{label}: {field} is {n}, outside the accepted {MIN_IMAGE_SIDE}..{MAX_IMAGE_SIDE} pixels")
    return int(n)


def check_finite(values, label: str, what: str) -> None:
    """Refuse an array or tensor holding NaN or inf (raw data: k-space, coil maps, trajectories),
    naming how many and where the first is."""
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{label}: {what} holds {int(bad.sum())} non-finite value(s) of {array.size} "
                         f"(NaN or inf; the first at index {first})")


def checked_study(voxels: torch.Tensor, affine, modality: str, *, label, fields: Fields = Fields(),
                  source: dict | None = None, name: str = "study") -> Study:
    """The :class:`Study` a reader builds, after every check (:func:`validate_study`), the
    geometry's first: a finite voxel-to-world matrix whose voxel sizes lie within the limits and
    whose axes are not collinear, each refusal naming ``label`` and the field from ``fields``."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"{label}: {fields.geometry} does not give a finite voxel-to-world matrix")
    norms = np.linalg.norm(affine[:3, :3], axis=0)
    for value, field, limits in zip(norms, fields.spacing, (PIXEL_SPACING_MM, PIXEL_SPACING_MM, SLICE_SPACING_MM),
                                    strict=True):
        check_range(float(value), limits, label, field)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-6 * float(np.prod(norms)):
        raise InputError(f"{label}: {fields.geometry} gives collinear voxel axes (no volume)")
    distance = float(np.linalg.norm(affine[:3, 3]))
    if distance > POSITION_MAX_MM:
        raise InputError(f"{label}: {fields.geometry} puts the first voxel {distance:.3g} mm from the origin, beyond "
                         f"the accepted {POSITION_MAX_MM:g} mm")
    if not isinstance(voxels, torch.Tensor) or voxels.ndim != 3:
        raise InputError(f"{label}: {fields.shape} does not give a (slices, rows, columns) volume")
    study = Study(voxels, affine, modality, source=dict(source or {}), name=name)
    return validate_study(study, label=label, fields=fields)


def validate_study(study: Study, *, label, fields: Fields = Fields()) -> Study:
    """``study`` after the checks every reader shares (module docstring), with at most a few
    isolated non-finite voxels repaired (stated in ``source["validation"]``). ``label`` (the file
    or folder) and ``fields`` name the culprit in the one-line :class:`InputError` otherwise."""
    s, h, w = study.shape
    if s < 1:
        raise InputError(f"{label}: {fields.shape} gives no slice")
    check_image_side(h, label, f"{fields.shape} (rows)")
    check_image_side(w, label, f"{fields.shape} (columns)")
    spacing = study.spacing
    for value, field, limits in zip(spacing, fields.spacing, (PIXEL_SPACING_MM, PIXEL_SPACING_MM, SLICE_SPACING_MM),
                                    strict=True):
        check_range(value, limits, label, field)
    voxels = study.voxels
    if study.modality == "CT" and voxels.is_complex():
        raise InputError(f"{label}: {fields.intensity} are complex; CT images are real (HU)")
    array = voxels.detach().cpu().numpy()
    repairs = _repair_non_finite(array, label, fields)
    if repairs:
        array = repairs.pop("array")
        voxels = torch.from_numpy(array)
    _check_intensity(array, study.modality, label, fields)
    if not repairs:
        return study
    source = dict(study.source)
    validation = dict(source.get("validation") or {})
    validation["repairs"] = [*validation.get("repairs", []), repairs]
    source["validation"] = validation
    warnings.warn(f"{label}: {repairs['summary']}", RepairedVoxelsWarning, stacklevel=3)
    return dataclasses.replace(study, voxels=voxels, source=source)


def add_note(study: Study, note: str) -> None:
    """Record a note (something read but worth knowing, e.g. uneven slice spacing) in
    ``study.source["validation"]["notes"]``, which the outputs' records carry."""
    validation = study.source.setdefault("validation", {})
    validation.setdefault("notes", []).append(note)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _finite_mask(array: np.ndarray) -> np.ndarray:
    return np.isfinite(array.real) & np.isfinite(array.imag) if np.iscomplexobj(array) else np.isfinite(array)


def _repair_non_finite(array: np.ndarray, label, fields: Fields) -> dict | None:
    finite = _finite_mask(array)
    if finite.all():
        return None
    bad = np.argwhere(~finite)
    count, total = len(bad), array.size
    where = "slice {}, row {}, column {}".format(*(int(i) for i in bad[0]))
    kinds = sorted({_kind(array[tuple(b)]) for b in bad[:1000]})
    refusal = (f"{label}: {count} of {total} voxels of {fields.intensity} are not finite ({'/'.join(kinds)}; the first at "
               f"{where})")
    if count == total:
        raise InputError(f"{label}: every voxel of {fields.intensity} is {'/'.join(kinds)}")
    if count > REPAIR_MAX_VOXELS:
        raise InputError(f"{refusal}; medrecon repairs at most {REPAIR_MAX_VOXELS} isolated ones")
    _, h, w = array.shape
    out = array.copy()
    listed = []
    for s, r, c in (tuple(int(i) for i in b) for b in bad):
        rows, cols = slice(max(r - 1, 0), min(r + 2, h)), slice(max(c - 1, 0), min(c + 2, w))
        window_finite = finite[s, rows, cols]
        if window_finite.sum() != window_finite.size - 1:  # another non-finite voxel touches this one
            raise InputError(f"{refusal}; they are not isolated (slice {s}, row {r}, column {c} touches another), so "
                             "they are not repaired")
        neighbours = array[s, rows, cols][window_finite]
        if neighbours.size < REPAIR_MIN_NEIGHBOURS:
            raise InputError(f"{refusal}; slice {s}, row {r}, column {c} has too few finite neighbours to be repaired")
        value = (np.median(neighbours.real) + 1j * np.median(neighbours.imag)) if np.iscomplexobj(array) \
            else np.median(neighbours)
        listed.append({"slice": s, "row": r, "column": c, "was": _kind(array[s, r, c]),
                       "replaced_by": str(value) if np.iscomplexobj(array) else float(value)})
        out[s, r, c] = value
    summary = (f"{count} isolated non-finite voxel(s) ({'/'.join(kinds)}) replaced by the median of their finite in-plane "
               "neighbours")
    return {"array": out, "summary": summary, "voxels": listed}


def _kind(value) -> str:
    value = complex(value)
    if math.isnan(value.real) or math.isnan(value.imag):
        return "NaN"
    return "inf" if (value.real > 0 or value.imag > 0) else "-inf"


def _check_intensity(array: np.ndarray, modality: str, label, fields: Fields) -> None:
    magnitude = np.abs(array) if np.iscomplexobj(array) else array
    low, high = float(magnitude.min()), float(magnitude.max())
    if modality == "CT":
        lo, hi = CT_HU_RANGE
        if low < lo or high > hi:
            raise InputError(f"{label}: CT values span {low:.6g} to {high:.6g} HU, outside the accepted {lo:g} to "
                             f"{hi:g} HU; check {fields.intensity}")
    elif max(abs(low), abs(high)) > MR_ABS_MAX:
        raise InputError(f"{label}: MR values reach {max(abs(low), abs(high)):.3g}, beyond the accepted magnitude "
                         f"{MR_ABS_MAX:g}; check {fields.intensity}")
    if low == high and (not np.iscomplexobj(array) or np.ptp(array.real) == 0 and np.ptp(array.imag) == 0):
        raise InputError(f"{label}: every voxel is {low:g} (a constant image holds nothing to reconstruct); check "
                         f"{fields.intensity}")


__all__ = [
    "CT_HU_RANGE",
    "CT_MATRIX_BYTES_PER_ENTRY",
    "CT_MATRIX_MAX_BYTES",
    "CT_MAX_VIEWS",
    "MR_MAX_COILS",
    "MR_MAX_SAMPLES",
    "POISSON_MAX_PHOTONS",
    "MAX_IMAGE_SIDE",
    "MIN_IMAGE_SIDE",
    "MR_ABS_MAX",
    "PIXEL_SPACING_MM",
    "POSITION_MAX_MM",
    "REPAIR_MAX_VOXELS",
    "RESCALE_SLOPE_RANGE",
    "REPAIR_MIN_NEIGHBOURS",
    "SLICE_OFF_AXIS_PIXELS",
    "SLICE_OUTLIER_FACTOR",
    "SLICE_SPACING_MM",
    "Fields",
    "RepairedVoxelsWarning",
    "add_note",
    "check_finite",
    "check_image_side",
    "check_range",
    "checked_study",
    "memory_budget_bytes",
    "number",
    "validate_study",
]
