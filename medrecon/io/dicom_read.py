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

Module layout: writing a series is :mod:`medrecon.io.dicom_write`, which sits above this module (it
reuses :func:`headers_geometry` and reads a ``like=`` series); the dispatch on the path's format is
:mod:`medrecon.io.studies`.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medrecon.errors import InputError, MissingResourceError
from medrecon.study import Study

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
    geometry. The name is the SeriesDescription, else the folder (or file) name.

    Raises :class:`InputError` naming the problem (several series, inconsistent orientation, pixel
    spacing or image size, duplicate positions, no image slices, unreadable files, unsupported
    modality, missing geometry tags), :class:`DicomDecoderMissingError` for compressed pixel data
    without a decoder, and warns :class:`UnevenSliceSpacingWarning` on uneven slice spacing.
    """
    files, root = _input_files(path)
    images, skipped, unreadable = [], [], []
    for file in files:
        try:
            ds = _read(file, defer=True)
        except InputError as exc:
            unreadable.append(str(exc))
            continue
        if "PixelData" in ds:
            images.append((file, ds))
        elif "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise InputError(f"{file} holds floating-point pixel data ({_sop_name(ds)}); medrecon reads integer CT/MR images only")
        else:
            skipped.append(f"{file.name} ({_sop_name(ds)})")
    if unreadable:
        shown = "\n  ".join(unreadable[:5]) + (f"\n  ... and {len(unreadable) - 5} more" if len(unreadable) > 5 else "")
        raise InputError(
            f"{len(unreadable)} of {len(files)} files in {root} cannot be read as DICOM:\n  {shown}\n"
            "remove them, or pass the list of DICOM files to read"
        )
    if not images:
        what = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        raise InputError(f"no image slices in {root}: {len(files)} DICOM object(s) without PixelData ({what})")

    images = _choose_series(images, series_uid, root)
    uid = str(images[0][1].get("SeriesInstanceUID", ""))
    modality = _series_modality(images, root)

    slices, planes, headers = [], [], []
    for file, _ in images:
        ds = _read(file, defer=False)
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
    order, affine = _sort_and_affine(slices, root)

    voxels = np.empty((len(slices), slices[0].rows, slices[0].columns), dtype=np.float32)
    for s, k in enumerate(order):
        sl = slices[k]
        voxels[s] = planes[k].astype(np.float64) * sl.slope + sl.intercept
    first = images[0][1]
    description = str(first.get("SeriesDescription", "") or "").strip()
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
    return Study(torch.from_numpy(voxels), affine, modality, source=source, name=name)


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
        raise InputError(f"{file}: unreadable DICOM file ({type(exc).__name__}: {exc})") from None
    try:
        ds = pydicom.dcmread(file, force=True, **options)
    except Exception as exc:
        raise InputError(f"{file}: not a DICOM file ({type(exc).__name__}: {exc})") from None
    if "SOPClassUID" not in ds and "PixelData" not in ds:
        raise InputError(f"{file}: not a DICOM file (no DICM prefix, no SOP Class UID, no pixel data)")
    return ds


def _sop_name(ds) -> str:
    uid = ds.get("SOPClassUID")
    return getattr(uid, "name", None) or str(uid or "no SOP Class UID")


def _choose_series(images: list, series_uid: str | None, root: Path) -> list:
    series: dict[str, list] = {}
    for file, ds in images:
        series.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append((file, ds))

    def listing() -> str:
        lines = []
        for uid, members in series.items():
            ds = members[0][1]
            count = sum(int(d.get("NumberOfFrames", 1) or 1) for _, d in members)
            desc = str(ds.get("SeriesDescription", "") or "").strip() or "(no description)"
            lines.append(f"  {uid or '(no SeriesInstanceUID)'}  {desc!r}  {ds.get('Modality', '?')}  {count} slice(s)")
        return "\n".join(lines)

    if series_uid is not None:
        if series_uid not in series:
            raise InputError(f"{root} holds no series with SeriesInstanceUID {series_uid}; it holds:\n{listing()}")
        return series[series_uid]
    if len(series) > 1:
        raise InputError(
            f"{root} holds {len(series)} image series; choose one with series_uid=UID:\n{listing()}"
        )
    return next(iter(series.values()))


def _series_modality(images: list, root: Path) -> str:
    found = {str(ds.get("Modality", "") or "") for _, ds in images}
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
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    functional = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    if n_frames > 1 and not functional:
        raise InputError(
            f"{file} has {n_frames} frames but no functional groups (PerFrameFunctionalGroupsSequence) "
            "giving each frame's position; medrecon cannot place them"
        )
    if not functional:
        return [_slice(file, None, ds, {kw: ds for kw in _GEOMETRY_SOURCES})]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) != n_frames:
        raise InputError(f"{file}: NumberOfFrames is {n_frames} but PerFrameFunctionalGroupsSequence has {len(per_frame)} items")
    out = []
    for f in range(n_frames):
        holders = {}
        for kw, sequence in _GEOMETRY_SOURCES.items():
            item = _group_item(ds, f, sequence)
            holders[kw] = item if item is not None and kw in item else ds
        out.append(_slice(file, f, ds, holders))
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


def _slice(file: Path, frame: int | None, ds, holders: dict) -> _Slice:
    label = str(file) if frame is None else f"{file} (frame {frame + 1})"
    elements = {kw: holder[kw] for kw, holder in holders.items() if kw in holder and holder[kw].value not in (None, "")}

    def numbers(keyword: str, count: int) -> np.ndarray:
        if keyword not in elements:
            raise InputError(f"{label} has no {keyword}; medrecon needs it to place the slice in space")
        value = elements[keyword].value
        values = list(value) if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else [value]
        try:
            out = np.array([float(v) for v in values], dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{label}: {keyword} is not numeric: {value!r}") from None
        if out.shape != (count,) or not np.all(np.isfinite(out)):
            raise InputError(f"{label}: {keyword} must be {count} finite numbers, got {value!r}")
        return out

    position = numbers("ImagePositionPatient", 3)
    orientation = numbers("ImageOrientationPatient", 6)
    row, col = orientation[:3], orientation[3:]
    if abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3 or abs(row @ col) > 1e-3:
        raise InputError(f"{label}: ImageOrientationPatient {list(orientation)} is not two orthogonal unit vectors")
    spacing = numbers("PixelSpacing", 2)
    if np.any(spacing <= 0):
        raise InputError(f"{label}: PixelSpacing must be positive, got {list(spacing)}")
    slope = float(numbers("RescaleSlope", 1)[0]) if "RescaleSlope" in elements else 1.0
    intercept = float(numbers("RescaleIntercept", 1)[0]) if "RescaleIntercept" in elements else 0.0
    if "ModalityLUTSequence" in ds:
        raise InputError(f"{label} uses a Modality LUT Sequence instead of RescaleSlope/Intercept; this is not supported")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise InputError(f"{label} is a colour image (SamplesPerPixel={samples}); CT and MR images are greyscale")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        raise InputError(f"{label} has no valid Rows/Columns") from None
    return _Slice(file, frame, position, orientation, spacing, rows, columns, slope, intercept, elements)


def _pixels(ds, file: Path, n_frames: int) -> np.ndarray:
    """The stored values as an ``(n_frames, rows, columns)`` array; names the decoder to install."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts is not None and ts.is_compressed:
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
        if ts is not None and ts.is_compressed and ("plugin" in str(exc).lower() or "decod" in str(exc).lower()):
            raise DicomDecoderMissingError(_decoder_message(file, ts, exc)) from None
        raise InputError(f"{file}: cannot read its pixel data ({type(exc).__name__}: {exc})") from None
    if array.ndim == 2:
        array = array[None]
    if array.shape[0] != n_frames or array.ndim != 3:
        raise InputError(f"{file}: pixel data has shape {array.shape}, expected {n_frames} frame(s) of {int(ds.Rows)}x{int(ds.Columns)}")
    return array


def _decoder_message(file: Path, ts, exc: Exception | None) -> str:
    packages = _DECODER_PACKAGES.get(str(ts), "python-gdcm")
    detail = f" (pydicom: {exc})" if exc is not None else ""
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
    for element in sl.elements.values():
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


def _sort_and_affine(slices: list[_Slice], root) -> tuple[np.ndarray, np.ndarray]:
    """The slice order along the normal and the RAS affine of ``(w, h, s)`` (module docstring)."""
    first = slices[0]
    row, col = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row, col)
    positions = np.stack([sl.position for sl in slices])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    steps = np.diff(along[order])
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
        lps[:3, 2] = (positions[order[-1]] - positions[order[0]]) / (len(slices) - 1)
        mean = steps.mean()
        if np.max(np.abs(steps - mean)) > _UNEVEN_TOLERANCE * mean:
            off = np.abs(along[order] - (along[order[0]] + mean * np.arange(len(slices)))).max()
            warnings.warn(
                f"uneven slice spacing in {root}: min {steps.min():.4g} mm, max {steps.max():.4g} mm "
                f"(mean {mean:.4g} mm, used by the affine; some slices lie up to {off:.3g} mm from where it puts them)",
                UnevenSliceSpacingWarning,
                stacklevel=3,
            )
    else:
        thickness = 1.0
        for kw in ("SpacingBetweenSlices", "SliceThickness"):
            if kw in first.elements:
                try:
                    value = float(first.elements[kw].value)
                except (TypeError, ValueError):
                    continue
                if value > 0:
                    thickness = value
                    break
        lps[:3, 2] = normal * thickness
    lps[:3, 3] = positions[order[0]]
    affine = np.eye(4)
    affine[:3, :] = _LPS_TO_RAS @ lps[:3, :]
    return order, affine


def headers_geometry(headers: list) -> tuple[np.ndarray, np.ndarray]:
    """``(order, affine)`` of a study's per-slice DICOM headers, as reading computes them: the slice
    order along the normal and the RAS affine (mean slice step where the spacing is uneven; each
    header keeps its slice's own position)."""
    slices = [_slice(Path("source header"), None, hd, {kw: hd for kw in _GEOMETRY_SOURCES}) for hd in headers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnevenSliceSpacingWarning)
        return _sort_and_affine(slices, "the DICOM source")
