"""Read one CT or MR DICOM series through pydicom as a :class:`~medrecon.study.Study`.

Reading
-------
:func:`read_dicom_series` takes a folder (its files are read, *not* its sub-folders; hidden files
whose names start with ``.`` are ignored), a single file, or a list of files. Every file must be
readable DICOM; objects without pixel data (DICOMDIR, structured reports, presentation states, ...)
are skipped when image files remain. Slices (single-frame files, or the frames of Enhanced
multi-frame files) are ordered along the slice normal, never by file name or InstanceNumber.
Voxels are ``stored * RescaleSlope + RescaleIntercept`` as float32 (HU for CT).

Geometry (the affine maps ``(column w, row h, slice s)`` to RAS+ mm): DICOM patient coordinates are
LPS, so x and y are negated. With ``r = ImageOrientationPatient[0:3]`` (the direction along a row,
i.e. of increasing column index), ``c = ImageOrientationPatient[3:6]``, ``PixelSpacing = (row
spacing, column spacing)``, the slice normal ``n = r x c`` and ``p_0 .. p_{S-1}`` the
ImagePositionPatient of the slices sorted by ``p . n``::

    world_LPS(w, h, s) = p_0 + w * PixelSpacing[1] * r + h * PixelSpacing[0] * c + s * (p_{S-1} - p_0) / (S - 1)
    world_RAS = diag(-1, -1, 1) @ world_LPS

(one slice: the slice step is ``n`` times SpacingBetweenSlices, else SliceThickness, else 1 mm).
The slice step is the mean spacing; spacings deviating by more than 1 % from it raise an
:class:`UnevenSliceSpacingWarning` with the minimum and maximum spacing. :func:`headers_geometry`
computes the same order and affine from a study's kept per-slice headers.

Display window: ``Study.window`` is the WindowCenter / WindowWidth (VOI LUT, in the rescaled units:
HU for CT) of the first slice, in slice order, that carries a usable pair (the first value of each
when multi-valued; a multi-frame object's FrameVOILUTSequence, per frame or shared, before its
top-level tags); None when no slice does. A missing, non-numeric or non-positive-width window is a
missing hint, never a refusal. The tags stay in the kept headers (a multi-frame frame's flattened
header gets its FrameVOILUTSequence values), so a series written back from them carries them.

Module layout: writing a series is :mod:`medrecon.io.dicom_write`, which sits above this module (it
reuses :func:`headers_geometry` and reads a ``like=`` series); the dispatch on the path's format is
:mod:`medrecon.io.studies`.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from medrecon.errors import InputError, MissingResourceError, one_line
from medrecon.io.validation import (
    CT_HU_RANGE,
    PIXEL_SPACING_MM,
    RESCALE_SLOPE_RANGE,
    SLICE_OFF_AXIS_PIXELS,
    SLICE_OUTLIER_FACTOR,
    SLICE_SPACING_MM,
    Fields,
    add_note,
    check_image_side,
    check_range,
    checked_study,
    number,
)
from medrecon.study import Study, checked_window

__all__ = [
    "STORAGE_CLASSES",
    "DicomDecoderMissingError",
    "UnevenSliceSpacingWarning",
    "headers_geometry",
    "read_dicom_series",
]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
_POSITION_TOLERANCE_MM = 1e-3  # two slices closer than this along the normal are duplicates
_ORIENTATION_TOLERANCE = 1e-4  # per direction-cosine component
_SPACING_TOLERANCE = 1e-4  # relative, pixel spacing
_UNEVEN_TOLERANCE = 0.01  # relative to the mean slice spacing
# the SOP classes of the series medrecon reads and writes (CT and MR Image Storage)
STORAGE_CLASSES = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}

# what to install for each compressed transfer syntax (PyPI names)
_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg and pylibjpeg-libjpeg, or pillow, or python-gdcm",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "pylibjpeg and pylibjpeg-libjpeg, or pillow, or python-gdcm",  # JPEG extended
    "1.2.840.10008.1.2.4.57": "pylibjpeg and pylibjpeg-libjpeg, or python-gdcm",  # JPEG lossless
    "1.2.840.10008.1.2.4.70": "pylibjpeg and pylibjpeg-libjpeg, or python-gdcm",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": "pylibjpeg and pylibjpeg-libjpeg, or pyjpegls, or python-gdcm",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "pylibjpeg and pylibjpeg-libjpeg, or pyjpegls, or python-gdcm",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90": "pylibjpeg and pylibjpeg-openjpeg, or pillow, or python-gdcm",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "pylibjpeg and pylibjpeg-openjpeg, or pillow, or python-gdcm",  # JPEG 2000
    "1.2.840.10008.1.2.4.201": "pylibjpeg and pylibjpeg-openjpeg",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": "pylibjpeg and pylibjpeg-openjpeg",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": "pylibjpeg and pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg and pylibjpeg-rle",  # RLE (pydicom decodes it itself)
}

# attributes of a multi-frame object that do not belong in a single-frame header
_MULTIFRAME_ONLY = (
    "PixelData", "FloatPixelData", "DoubleFloatPixelData", "NumberOfFrames", "FrameIncrementPointer",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence", "DimensionOrganizationSequence",
    "DimensionIndexSequence", "DimensionOrganizationType", "ConcatenationUID", "InConcatenationNumber",
    "InConcatenationTotalNumber", "ConcatenationFrameOffsetNumber", "RepresentativeFrameNumber",
)  # fmt: skip


class UnevenSliceSpacingWarning(UserWarning):
    """The slices of a DICOM series are not evenly spaced; the Study's affine uses the mean spacing."""


class DicomDecoderMissingError(MissingResourceError, InputError):
    """Compressed DICOM pixel data that no installed decoder can read (the message names the package).

    It is a :class:`~medrecon.errors.MissingResourceError` (a missing optional dependency, CLI exit
    code 3) and an :class:`~medrecon.errors.InputError`, so either ``except`` catches it.
    """


@dataclass
class _Slice:
    """One image plane: a single-frame file or one frame of a multi-frame file."""

    file: Path
    frame: int | None  # 0-based frame index in a multi-frame file, None for single-frame files
    position: np.ndarray  # ImagePositionPatient (LPS mm)
    orientation: np.ndarray  # ImageOrientationPatient (6 direction cosines)
    spacing: np.ndarray  # PixelSpacing (row spacing, column spacing) in mm
    rows: int
    columns: int
    slope: float
    intercept: float
    elements: dict  # keyword -> DataElement holding the source's geometry/rescale values, verbatim
    voi: dict = field(default_factory=dict)  # keyword -> DataElement of the display window (_VOI_KEYWORDS), verbatim

    @property
    def label(self) -> str:
        return str(self.file) if self.frame is None else f"{self.file} (frame {self.frame + 1})"


def read_dicom_series(path: str | Path | list | tuple, *, series_uid: str | None = None) -> Study:
    """Read one CT or MR DICOM series as a :class:`Study` (geometry: see the module docstring).

    Args:
        path: a folder (its files, not its sub-folders), one DICOM file, or a list of files that
            hold one series. Single-frame and Enhanced multi-frame (per-frame or shared functional
            groups) files are accepted.
        series_uid: the SeriesInstanceUID to read when the files hold several series.

    Returns a Study with float32 voxels ``(S, H, W)`` (``stored * slope + intercept``: HU for CT),
    the RAS affine, the modality (CT or MR), and ``source = {"format": "dicom", "path", "series_uid",
    "headers": one pydicom Dataset per sorted slice without its pixel data (multi-frame files give
    one flattened classic header per frame), "files", "frames", "modality"}``, which
    :func:`~medrecon.io.dicom_write.write_dicom_series` uses to write a result back with identical
    geometry. The name is the SeriesDescription, else the folder (or file) name. ``window``: the
    series' WindowCenter / WindowWidth, else None (module docstring).

    Raises a one-line :class:`InputError` naming the file and the tag (several series,
    inconsistent orientation, pixel spacing or image size, duplicate positions, a slice far from
    the others, no image slices, unreadable or damaged files, an image object without pixel data,
    unsupported modality, missing, non-numeric or out-of-range geometry and rescale tags; then the
    checks of :mod:`medrecon.io.validation`), :class:`DicomDecoderMissingError` for compressed
    pixel data without a decoder, and warns :class:`UnevenSliceSpacingWarning` on uneven slice
    spacing (also noted in ``source["validation"]``).
    """
    with warnings.catch_warnings():  # pydicom's warnings on invalid values: the refusals name the tags
        warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")
        return _read_series(path, series_uid)


def _read_series(path, series_uid: str | None) -> Study:
    files, root = _input_files(path)
    images, others, unreadable = [], [], []
    for file in files:
        try:
            ds = _read(file, defer=True)
        except InputError as exc:
            unreadable.append(str(exc))
            continue
        with _damaged(file):
            has_pixels = "PixelData" in ds
            has_float = "FloatPixelData" in ds or "DoubleFloatPixelData" in ds
        if has_pixels:
            images.append((file, ds))
        elif has_float:
            raise InputError(f"{file} holds floating-point pixel data ({_sop_name(ds)}); medrecon reads integer CT/MR "
                             "images only")
        else:
            others.append((file, ds))
    if unreadable:
        more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        raise InputError(f"{len(unreadable)} of {len(files)} files in {root} cannot be read as DICOM: {unreadable[0]}{more}; "
                         "remove them, or pass the list of DICOM files to read")
    _check_non_images(others, images)
    if not images:
        what = ", ".join(f"{file.name} ({_sop_name(ds)})" for file, ds in others[:5]) + (", ..." if len(others) > 5 else "")
        raise InputError(f"no image slices in {root}: {len(files)} DICOM object(s) without PixelData ({what})")

    images = _choose_series(images, series_uid, root)
    uid = _text(images[0][1], "SeriesInstanceUID")
    modality = _series_modality(images, root)

    slices, planes, headers = [], [], []
    for file, _ in images:
        ds = _read(file, defer=False)
        with _damaged(file):
            file_slices = _slices_of(ds, file)
            pixels = _pixels(ds, file, len(file_slices))
            for sl, plane in zip(file_slices, pixels, strict=True):
                slices.append(sl)
                planes.append(plane)
                headers.append(_flat_header(ds, sl) if sl.frame is not None else None)
            if file_slices[0].frame is None:
                del ds.PixelData
                headers[-1] = ds
    _check_consistent(slices)
    order, affine, notes = _sort_and_affine(slices, root)

    voxels = np.empty((len(slices), slices[0].rows, slices[0].columns), dtype=np.float32)
    lo, hi = CT_HU_RANGE
    for s, k in enumerate(order):
        sl = slices[k]
        values = planes[k].astype(np.float64) * sl.slope + sl.intercept
        if modality == "CT" and values.size and (values.min() < lo or values.max() > hi):
            raise InputError(f"{sl.label}: CT values span {values.min():.6g} to {values.max():.6g} HU with RescaleSlope "
                             f"{sl.slope:g} and RescaleIntercept {sl.intercept:g}, outside the accepted {lo:g} to {hi:g} HU")
        voxels[s] = values
    first = images[0][1]
    description = _text(first, "SeriesDescription").strip()
    source = {
        "format": "dicom",
        "path": str(root),
        "series_uid": uid,
        "headers": [headers[k] for k in order],
        "files": [str(slices[k].file) for k in order],
        "frames": [slices[k].frame for k in order],
        "modality": modality,
    }
    name = description or (root.name if root.is_dir() else root.stem) or "study"
    step_field = "ImagePositionPatient (the slice positions)" if len(slices) > 1 else "SpacingBetweenSlices/SliceThickness"
    fields = Fields(shape="Rows/Columns", spacing=("PixelSpacing", "PixelSpacing", step_field),
                    intensity="the stored pixels and RescaleSlope/RescaleIntercept",
                    geometry="ImagePositionPatient/ImageOrientationPatient/PixelSpacing")
    study = checked_study(torch.from_numpy(voxels), affine, modality, label=root, fields=fields, source=source, name=name)
    study.window = next((w for k in order if (w := _window_of(slices[k])) is not None), None)
    for note in notes:
        add_note(study, note)
    return study


@contextlib.contextmanager
def _damaged(file: Path):
    """Turn what pydicom raises on a damaged header (a value it cannot convert, a bad length) into
    a one-line InputError naming the file."""
    try:
        yield
    except InputError:
        raise
    except Exception as exc:  # pydicom raises many types for damaged values
        raise InputError(f"{file}: damaged DICOM header ({type(exc).__name__}: {one_line(exc)})") from None



def _text(ds, keyword: str) -> str:
    """A string attribute, '' when absent or unreadable."""
    try:
        return str(ds.get(keyword, "") or "")
    except Exception:  # a damaged value: the tag is only descriptive here
        return ""


def _int_tag(ds, keyword: str, label, default: int) -> int:
    """An integer attribute (default when absent or empty), or a one-line InputError naming it."""
    try:
        value = ds.get(keyword, None)
    except Exception as exc:  # a damaged value pydicom cannot convert
        raise InputError(f"{label}: {keyword} cannot be read ({one_line(exc)})") from None
    if value is None or value == "":
        return default
    try:
        number_ = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{label}: {keyword} is not a number: {str(value)[:40]!r}") from None
    if not np.isfinite(number_) or number_ != int(number_):
        raise InputError(f"{label}: {keyword} must be a whole number, got {str(value)[:40]!r}")
    return int(number_)


def _input_files(path) -> tuple[list[Path], Path]:
    """The files to read and the folder or file to name in messages and the Study."""
    if isinstance(path, (list, tuple)):
        files = [Path(p) for p in path]
        if not files:
            raise InputError("an empty list of DICOM files was given")
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise InputError(f"no such DICOM file(s): {', '.join(missing[:5])}")
        parents = {f.parent for f in files}
        return files, (parents.pop() if len(parents) == 1 else files[0])
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise InputError(f"{root} holds no files (DICOM folders are read without their sub-folders)")
        return files, root
    if root.is_file():
        return [root], root
    raise InputError(f"no such DICOM file or folder: {root}")


def _read(file: Path, *, defer: bool):
    """Read one DICOM file; ``defer`` leaves large values (pixel data) on disk until used."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    options = {"defer_size": "64 KB"} if defer else {}
    try:
        return pydicom.dcmread(file, **options)
    except InvalidDicomError:
        pass  # no preamble/'DICM': perhaps a DICOM file without file meta; try once more below
    except Exception as exc:  # pydicom raises many types for damaged files
        raise InputError(f"{file}: unreadable DICOM file ({type(exc).__name__}: {one_line(exc)})") from None
    try:
        ds = pydicom.dcmread(file, force=True, **options)
        has_class, has_pixels = "SOPClassUID" in ds, "PixelData" in ds
    except Exception as exc:
        raise InputError(f"{file}: not a DICOM file ({type(exc).__name__}: {one_line(exc)})") from None
    if not has_class and not has_pixels:
        raise InputError(f"{file}: not a DICOM file (no DICM prefix, no SOP Class UID, no pixel data)")
    return ds


def _sop_class(ds):
    try:
        uid = ds.get("SOPClassUID")
        if not uid and getattr(ds, "file_meta", None) is not None:
            uid = ds.file_meta.get("MediaStorageSOPClassUID")
        return uid or None
    except Exception:  # a damaged value
        return None


def _sop_name(ds) -> str:
    uid = _sop_class(ds)
    return getattr(uid, "name", None) or str(uid or "no SOP Class UID")


def _check_non_images(others: list, images: list) -> None:
    """Objects without pixel data are skipped only when they are not images: a file whose SOP class
    is an image storage class, that has no SOP class at all, or that belongs to an image series
    being read, is a damaged image (truncated, or with damaged header bytes), and dropping it would
    leave a gap in the volume."""
    series = {_text(ds, "SeriesInstanceUID") for _, ds in images} - {""}
    for file, ds in others:
        uid = _sop_class(ds)
        name = str(getattr(uid, "name", "") or "")
        if uid is None:
            raise InputError(f"{file}: a DICOM object with no SOP Class UID and no pixel data (a damaged file?)")
        if "Image Storage" in name or _text(ds, "SeriesInstanceUID") in series:
            raise InputError(f"{file}: a {name or uid} object without pixel data (truncated or damaged?); medrecon will not "
                             "read its series with a slice missing")


def _choose_series(images: list, series_uid: str | None, root: Path) -> list:
    series: dict[str, list] = {}
    for file, ds in images:
        series.setdefault(_text(ds, "SeriesInstanceUID"), []).append((file, ds))

    def listing() -> str:
        entries = []
        for uid, members in series.items():
            ds = members[0][1]
            count = sum(max(_int_tag(d, "NumberOfFrames", f, 1), 1) for f, d in members)
            desc = _text(ds, "SeriesDescription").strip() or "(no description)"
            entries.append(f"{uid or '(no SeriesInstanceUID)'} {desc!r} {_text(ds, 'Modality') or '?'} {count} slice(s)")
        return "; ".join(entries)

    if series_uid is not None:
        if series_uid not in series:
            raise InputError(f"{root} holds no series with SeriesInstanceUID {series_uid}; it holds: {listing()}")
        return series[series_uid]
    if len(series) > 1:
        raise InputError(f"{root} holds {len(series)} image series; choose one with series_uid=UID (or pass its files): "
                         f"{listing()}")
    return next(iter(series.values()))


def _series_modality(images: list, root: Path) -> str:
    found = {_text(ds, "Modality") for _, ds in images}
    if len(found) > 1:
        raise InputError(f"series in {root} mixes modalities {sorted(found)}")
    modality = found.pop()
    if modality not in STORAGE_CLASSES:
        raise InputError(
            f"{root}: Modality {modality or '(missing)'!r} ({_sop_name(images[0][1])}) is not supported; "
            "medrecon reconstructs CT and MR series"
        )
    return modality


def _group_item(ds, frame: int, sequence: str):
    """The item of a functional group for one frame: per-frame first, then shared; None if absent."""
    for container, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        groups = ds.get(container)
        if groups is not None and len(groups) > index:
            items = groups[index].get(sequence)
            if items:
                return items[0]
    return None


def _slices_of(ds, file: Path) -> list[_Slice]:
    """The geometry and rescale of each image plane in one dataset."""
    n_frames = _int_tag(ds, "NumberOfFrames", file, 1)
    if n_frames < 1:
        raise InputError(f"{file}: NumberOfFrames must be at least 1, got {n_frames}")
    functional = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    if n_frames > 1 and not functional:
        raise InputError(
            f"{file} has {n_frames} frames but no functional groups (PerFrameFunctionalGroupsSequence) "
            "giving each frame's position; medrecon cannot place them"
        )
    if not functional:
        return [_slice(file, None, ds, {kw: ds for kw in _GEOMETRY_SOURCES}, voi_holder=ds)]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) != n_frames:
        raise InputError(f"{file}: NumberOfFrames is {n_frames} but PerFrameFunctionalGroupsSequence has {len(per_frame)} items")
    out = []
    for f in range(n_frames):
        holders = {}
        for kw, sequence in _GEOMETRY_SOURCES.items():
            item = _group_item(ds, f, sequence)
            holders[kw] = item if item is not None and kw in item else ds
        voi = _group_item(ds, f, "FrameVOILUTSequence")
        out.append(_slice(file, f, ds, holders, voi_holder=voi if voi is not None and "WindowCenter" in voi else ds))
    return out


# where each geometry/rescale attribute lives in a multi-frame object's functional groups
_GEOMETRY_SOURCES = {
    "ImagePositionPatient": "PlanePositionSequence",
    "ImageOrientationPatient": "PlaneOrientationSequence",
    "PixelSpacing": "PixelMeasuresSequence",
    "SliceThickness": "PixelMeasuresSequence",
    "SpacingBetweenSlices": "PixelMeasuresSequence",
    "RescaleSlope": "PixelValueTransformationSequence",
    "RescaleIntercept": "PixelValueTransformationSequence",
}


# the display-window attributes kept per slice (a multi-frame object's are in FrameVOILUTSequence)
_VOI_KEYWORDS = ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation")


def _voi_elements(holder) -> dict:
    """keyword -> DataElement of the display-window attributes present with a value; an unreadable
    one is left out (a display hint is never a reason to refuse a series)."""
    out = {}
    for kw in _VOI_KEYWORDS:
        try:
            if holder is not None and kw in holder and holder[kw].value not in (None, ""):
                out[kw] = holder[kw]
        except Exception:  # pydicom raises various errors on values it cannot convert
            continue
    return out


def _window_of(sl: _Slice) -> tuple[float, float] | None:
    """``(WindowCenter, WindowWidth)`` of one slice, the first value of each; None when either is
    absent, not numeric, not finite or the width is not positive."""
    values = []
    for kw in ("WindowCenter", "WindowWidth"):
        if kw not in sl.voi:
            return None
        try:
            value = sl.voi[kw].value
            first = value[0] if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else value
            values.append(float(first))
        except Exception:  # a value pydicom cannot convert, an empty list
            return None
    try:
        return checked_window(values)
    except InputError:
        return None


def _elements(holders: dict, label: str) -> dict:
    """keyword -> DataElement of the geometry/rescale attributes present with a value."""
    out = {}
    for kw, holder in holders.items():
        if kw not in holder:
            continue
        try:
            element = holder[kw]
            empty = element.value in (None, "")
        except Exception as exc:  # a value pydicom cannot convert
            raise InputError(f"{label}: {kw} cannot be read ({one_line(exc)})") from None
        if not empty:
            out[kw] = element
    return out


def _slice(file: Path, frame: int | None, ds, holders: dict, *, voi_holder=None) -> _Slice:
    label = str(file) if frame is None else f"{file} (frame {frame + 1})"
    elements = _elements(holders, label)

    def numbers(keyword: str, count: int) -> np.ndarray:
        if keyword not in elements:
            raise InputError(f"{label} has no {keyword}; medrecon needs it to place the slice in space")
        value = elements[keyword].value
        values = list(value) if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else [value]
        try:
            out = np.array([float(v) for v in values], dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"{label}: {keyword} is not numeric: {str(value)[:60]!r}") from None
        if out.shape != (count,) or not np.all(np.isfinite(out)):
            raise InputError(f"{label}: {keyword} must be {count} finite numbers, got {str(value)[:60]!r}")
        return out

    position = numbers("ImagePositionPatient", 3)
    orientation = numbers("ImageOrientationPatient", 6)
    row, col = orientation[:3], orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise InputError(f"{label}: ImageOrientationPatient {list(orientation)} is not two orthogonal unit vectors")
    spacing = numbers("PixelSpacing", 2)
    for value in spacing:
        check_range(float(value), PIXEL_SPACING_MM, label, "PixelSpacing")
    for kw in ("SliceThickness", "SpacingBetweenSlices"):
        if kw in elements:
            check_range(float(numbers(kw, 1)[0]), SLICE_SPACING_MM, label, kw)
    slope = float(numbers("RescaleSlope", 1)[0]) if "RescaleSlope" in elements else 1.0
    if slope == 0:
        raise InputError(f"{label}: RescaleSlope is 0 (every pixel would be RescaleIntercept)")
    check_range(abs(slope), RESCALE_SLOPE_RANGE, label, "RescaleSlope (magnitude)", unit="")
    intercept = float(numbers("RescaleIntercept", 1)[0]) if "RescaleIntercept" in elements else 0.0
    if "ModalityLUTSequence" in ds:
        raise InputError(f"{label} uses a Modality LUT Sequence instead of RescaleSlope/Intercept; this is not supported")
    samples = _int_tag(ds, "SamplesPerPixel", label, 1)
    if samples != 1:
        raise InputError(f"{label} is a colour image (SamplesPerPixel={samples}); CT and MR images are greyscale")
    if "Rows" not in ds or "Columns" not in ds:
        raise InputError(f"{label} has no Rows/Columns")
    rows = check_image_side(_int_tag(ds, "Rows", label, 0), label, "Rows")
    columns = check_image_side(_int_tag(ds, "Columns", label, 0), label, "Columns")
    return _Slice(file, frame, position, orientation, spacing, rows, columns, slope, intercept, elements,
                  _voi_elements(voi_holder))


def _pixels(ds, file: Path, n_frames: int) -> np.ndarray:
    """The stored values as an ``(n_frames, rows, columns)`` array; names the decoder to install."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    try:
        compressed = ts is not None and ts.is_compressed
    except (ValueError, AttributeError, TypeError):
        raise InputError(f"{file}: TransferSyntaxUID {str(ts)[:64]!r} is not a transfer syntax medrecon knows") from None
    if compressed:
        try:
            from pydicom.pixels import get_decoder  # pydicom >= 3

            available = get_decoder(ts).is_available
        except (ImportError, NotImplementedError, ValueError):
            available = True  # unknown: let pixel_array try and report what it says
        if not available:
            raise DicomDecoderMissingError(_decoder_message(file, ts, None))
    try:
        array = np.asarray(ds.pixel_array)
    except Exception as exc:  # pydicom raises RuntimeError/NotImplementedError/ValueError here
        if compressed and ("plugin" in str(exc).lower() or "decod" in str(exc).lower()):
            raise DicomDecoderMissingError(_decoder_message(file, ts, exc)) from None
        raise InputError(f"{file}: cannot read its pixel data ({type(exc).__name__}: {one_line(exc)})") from None
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] != n_frames:
        raise InputError(f"{file}: pixel data has shape {array.shape}, expected {n_frames} frame(s) of "
                         f"{_int_tag(ds, 'Rows', file, 0)}x{_int_tag(ds, 'Columns', file, 0)}")
    if array.dtype.kind not in "iub":
        raise InputError(f"{file}: pixel data of type {array.dtype}; medrecon reads integer CT/MR images only")
    return array


def _decoder_message(file: Path, ts, exc: Exception | None) -> str:
    packages = _DECODER_PACKAGES.get(str(ts), "python-gdcm")
    detail = f" (pydicom: {one_line(exc)})" if exc is not None else ""
    return (
        f"{file}: pixel data compressed as {getattr(ts, 'name', ts)} ({ts}) and no decoder for it is installed; "
        f"install {packages} (pip install ...){detail}"
    )


def _flat_header(ds, sl: _Slice):
    """A classic single-frame header for one frame of a multi-frame object (no pixel data)."""
    from pydicom.dataset import Dataset

    flat = Dataset()
    for element in ds:
        if element.keyword not in _MULTIFRAME_ONLY:
            flat.add(copy.deepcopy(element))
    for element in (*sl.elements.values(), *sl.voi.values()):
        flat.add(copy.deepcopy(element))
    if hasattr(ds, "file_meta"):
        flat.file_meta = copy.deepcopy(ds.file_meta)
    return flat


def _check_consistent(slices: list[_Slice]) -> None:
    first = slices[0]
    for sl in slices[1:]:
        if (sl.rows, sl.columns) != (first.rows, first.columns):
            raise InputError(
                f"image size differs between slices: {first.label} is {first.rows}x{first.columns}, "
                f"{sl.label} is {sl.rows}x{sl.columns}"
            )
        if np.max(np.abs(sl.orientation - first.orientation)) > _ORIENTATION_TOLERANCE:
            raise InputError(
                f"ImageOrientationPatient differs between slices: {first.label} has {_fmt(first.orientation)}, "
                f"{sl.label} has {_fmt(sl.orientation)}"
            )
        if np.max(np.abs(sl.spacing - first.spacing) / first.spacing) > _SPACING_TOLERANCE:
            raise InputError(
                f"PixelSpacing differs between slices: {first.label} has {_fmt(first.spacing)} mm, "
                f"{sl.label} has {_fmt(sl.spacing)} mm"
            )


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def _sort_and_affine(slices: list[_Slice], root) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The slice order along the normal, the RAS affine of ``(w, h, s)`` (module docstring) and
    the notes for the record (uneven spacing, also warned). Refuses duplicate positions, a slice
    far from the others along the normal (:data:`~medrecon.io.validation.SLICE_OUTLIER_FACTOR`) or
    off the line of the others (:data:`~medrecon.io.validation.SLICE_OFF_AXIS_PIXELS`), and a slice
    step outside :data:`~medrecon.io.validation.SLICE_SPACING_MM`."""
    first = slices[0]
    row, col = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row, col)
    positions = np.stack([sl.position for sl in slices])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    steps = np.diff(along[order])
    notes = []
    if len(steps) and steps.min() < _POSITION_TOLERANCE_MM:
        k = int(np.argmin(steps))
        a, b = slices[order[k]], slices[order[k + 1]]
        raise InputError(
            f"duplicate slice position {_fmt(a.position)} (LPS mm): {a.label} and {b.label} lie "
            f"{steps[k]:.3g} mm apart along the slice normal; a series with repeated positions "
            "(several echoes, phases or time points) cannot be read as one volume"
        )
    lps = np.eye(4)
    lps[:3, 0] = row * first.spacing[1]
    lps[:3, 1] = col * first.spacing[0]
    if len(slices) > 1:
        _check_one_stack(slices, positions, along, order, steps, root)
        lps[:3, 2] = (positions[order[-1]] - positions[order[0]]) / (len(slices) - 1)
        mean = steps.mean()
        check_range(float(np.linalg.norm(lps[:3, 2])), SLICE_SPACING_MM, root, "ImagePositionPatient (the slice step)")
        if np.max(np.abs(steps - mean)) > _UNEVEN_TOLERANCE * mean:
            off = np.abs(along[order] - (along[order[0]] + mean * np.arange(len(slices)))).max()
            note = (f"uneven slice spacing in {root}: min {steps.min():.4g} mm, max {steps.max():.4g} mm "
                    f"(mean {mean:.4g} mm, used by the affine; some slices lie up to {off:.3g} mm from where it puts them)")
            notes.append(note)
            warnings.warn(note, UnevenSliceSpacingWarning, stacklevel=4)
    else:
        thickness = 1.0
        for kw in ("SpacingBetweenSlices", "SliceThickness"):
            if kw in first.elements:
                thickness = check_range(number(first.elements[kw].value, first.label, kw), SLICE_SPACING_MM,
                                        first.label, kw)
                break
        lps[:3, 2] = normal * thickness
    lps[:3, 3] = positions[order[0]]
    affine = np.eye(4)
    affine[:3, :] = _LPS_TO_RAS @ lps[:3, :]
    return order, affine, notes


def _check_one_stack(slices: list[_Slice], positions, along, order, steps, root) -> None:
    """The sorted positions must form one stack: no gap far larger than the others, no slice off
    the line through the others (a slice moved, or from elsewhere)."""
    median = float(np.median(steps))
    k = int(np.argmax(steps))
    if steps[k] > SLICE_OUTLIER_FACTOR * median:
        a, b = slices[order[k]], slices[order[k + 1]]
        raise InputError(
            f"{a.label} and {b.label} lie {steps[k]:.4g} mm apart along the slice normal where the slices of {root} are "
            f"{median:.4g} mm apart (ImagePositionPatient): a slice far from the others, or several missing; pass the "
            "list of files that form one stack"
        )
    if len(slices) < 3:
        return
    t = along[order] - along[order[0]]
    sorted_positions = positions[order]
    direction = np.median(np.diff(sorted_positions, axis=0) / steps[:, None], axis=0)  # per mm along the normal
    origin = np.median(sorted_positions - t[:, None] * direction, axis=0)
    off = np.linalg.norm(sorted_positions - (origin + t[:, None] * direction), axis=1)
    tolerance = SLICE_OFF_AXIS_PIXELS * float(min(slices[0].spacing))
    worst = int(np.argmax(off))
    if off[worst] > tolerance:
        culprit = slices[order[worst]]
        raise InputError(
            f"{culprit.label}: ImagePositionPatient {_fmt(culprit.position)} lies {off[worst]:.3g} mm off the line "
            f"through the other slices of {root} (more than {SLICE_OFF_AXIS_PIXELS:g} pixel): a slice moved, or from "
            "another stack"
        )


def headers_geometry(headers: list) -> tuple[np.ndarray, np.ndarray]:
    """``(order, affine)`` of a study's per-slice DICOM headers, as reading computes them: the slice
    order along the normal and the RAS affine (mean slice step where the spacing is uneven; each
    header keeps its slice's own position)."""
    slices = [_slice(Path("source header"), None, hd, {kw: hd for kw in _GEOMETRY_SOURCES}) for hd in headers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnevenSliceSpacingWarning)
        order, affine, _ = _sort_and_affine(slices, "the DICOM source")
        return order, affine
