"""Write a :class:`~medrecon.study.Study` as a new derived DICOM series through pydicom, with the
source's geometry.

Writing
-------
:func:`write_dicom_series` writes one classic single-frame CT or MR Image Storage file per slice
(explicit VR little endian, int16 with a series-wide rescale) into a new folder, atomically: a copy
of the source's per-slice headers where the study was read from DICOM (or ``like=`` names such a
series), else a minimal series built from the study's affine (RAS -> LPS, the inverse of the
geometry in :mod:`medrecon.io.dicom_read`). :func:`check_writable` makes every refusal without
writing.

Module layout: this module sits above :mod:`medrecon.io.dicom_read` (a DICOM source's headers are
checked against the study's affine with its :func:`~medrecon.io.dicom_read.headers_geometry`, and
``like=`` may name a series to read); the dispatch on the path's format is
:mod:`medrecon.io.studies`.
"""

from __future__ import annotations

import copy
import datetime
from pathlib import Path

import numpy as np
import torch

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_output
from medrecon.io.dicom_read import STORAGE_CLASSES, headers_geometry, read_dicom_series
from medrecon.study import Study

__all__ = ["check_writable", "write_dicom_series"]

# attributes of a source slice that would be wrong for the derived image (pixel values, overlays, icons)
_DROP_ON_WRITE = (
    "PixelData", "FloatPixelData", "DoubleFloatPixelData", "LargestImagePixelValue", "SmallestImagePixelValue",
    "LargestPixelValueInSeries", "SmallestPixelValueInSeries", "PixelPaddingValue", "PixelPaddingRangeLimit",
    "ModalityLUTSequence", "IconImageSequence", "PlanarConfiguration", "DataSetTrailingPadding",
    "NumberOfFrames", "FrameIncrementPointer", "PixelDataProviderURL", "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
)  # fmt: skip


def write_dicom_series(
    study: Study,
    path: str | Path,
    *,
    overwrite: bool = False,
    description: str = "medrecon reconstruction",
    like: Study | dict | str | Path | None = None,
) -> Path:
    """Write a study as a new derived DICOM series (one file per slice) in the folder ``path``.

    Headers: if the study was read from DICOM (``study.source["headers"]``), or ``like`` is such a
    Study, its ``source`` dict or a DICOM series path, each slice copies its source header: patient,
    study, equipment, frame-of-reference and display-window (WindowCenter/WindowWidth) tags are
    kept; private tags, overlays, icons and pixel statistics are dropped; a new SeriesInstanceUID
    (one for the series) and a new SOPInstanceUID per slice; ImageType ``DERIVED\\SECONDARY\\...``;
    SeriesNumber = source + 1000; SeriesDescription naming medrecon and ``description`` (the full
    text also goes to DerivationDescription); a SourceImageSequence referencing the source slice;
    the geometry tags (ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceThickness)
    identical to the source. Multi-frame sources are written as classic single-frame images. The
    study must have the source's shape and affine (a reconstruction made with
    :meth:`Study.with_voxels`).

    Otherwise (a NIfTI or NRRD source) minimal valid CT/MR Image Storage datasets are built from the
    study's affine (RAS -> LPS), with new Study, Series and Frame-of-Reference UIDs, PatientName
    ``anonymous`` and PatientID the study name; SliceThickness is the slice spacing (the true
    thickness is unknown); the study's display ``window``, when it has one, becomes WindowCenter /
    WindowWidth. Reading such a series back orders its slices along
    ``row x column`` cosines, so a study whose slice axis points the other way reads back in reverse
    slice order (same positions in space).

    Pixels: int16 (explicit VR little endian, valid Part 10 files) with one RescaleSlope/Intercept
    for the series. Integer-valued voxels within the int16 range (e.g. CT in whole HU) are written
    exactly with slope 1, intercept 0; otherwise the value range ``[lo, hi]`` is mapped onto
    ``[-32767, 32767]`` with slope ``(hi - lo) / 65534``, so each voxel reads back within half a
    slope step, ``(hi - lo) / 131068``, of its value (plus float32 rounding).

    Never overwrites: an existing non-empty ``path`` is refused unless ``overwrite``; the files are
    written into a temporary sibling folder that is renamed into place when complete (with
    ``overwrite`` the old folder is removed only after that). Complex voxels are refused (write
    magnitudes). Returns ``path``.
    """
    import pydicom
    from pydicom.uid import generate_uid

    path = Path(path)
    if torch.is_complex(study.voxels):
        raise InputError("DICOM images are real: the study has complex voxels; write their magnitudes (study.voxels.abs())")
    _check_target(path, overwrite)
    voxels = study.voxels.detach().cpu().numpy()  # in its own dtype: _quantise goes slice by slice in float64
    if voxels.dtype.kind == "f" and not np.all(np.isfinite(voxels)):
        raise InputError("the study has NaN or infinite voxels; DICOM int16 pixels cannot hold them")
    source = _like_source(study, like)
    headers = source.get("headers") if source is not None else None
    if headers is not None:
        _check_headers_match(study, headers)
    stored, slope, intercept = _quantise(voxels)

    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    series_uid = generate_uid()
    text = description.strip() or "medrecon reconstruction"
    series_description = text if "medrecon" in text.lower() else f"medrecon {text}"
    if headers is not None:
        datasets = [
            _derived_from(h, study.modality, series_uid, s, source.get("frames", [None] * len(headers))[s])
            for s, h in enumerate(headers)
        ]
    else:
        datasets = _minimal_series(study, series_uid, date, time)
    for s, ds in enumerate(datasets):
        ds.SeriesDescription = series_description[:64]
        ds.DerivationDescription = f"medrecon reconstruction: {text}"[:1024]
        for kw, value in (("SeriesDate", date), ("SeriesTime", time), ("ContentDate", date), ("ContentTime", time),
                          ("InstanceCreationDate", date), ("InstanceCreationTime", time)):  # fmt: skip
            setattr(ds, kw, value)
        ds.InstanceNumber = s + 1
        _set_pixels(ds, stored[s], slope, intercept)

    _check_target(path, overwrite)
    empty_folder = path.is_dir() and not any(path.iterdir())
    with atomic_output(path, overwrite=overwrite or empty_folder, folder=True) as tmp:
        for s, ds in enumerate(datasets):
            _dcmwrite(pydicom, tmp / f"slice_{s + 1:04d}.dcm", ds)
    return path


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} exists and is not a folder; a DICOM series is written as a folder of files")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise InputError(f"{path} exists and is not empty; pass overwrite=True (--overwrite) to replace it")


def _like_source(study: Study, like) -> dict | None:
    if like is None:
        return study.source if study.source.get("format") == "dicom" and study.source.get("headers") else None
    if isinstance(like, Study):
        source = like.source
    elif isinstance(like, dict):
        source = like
    elif isinstance(like, (str, Path)):
        source = read_dicom_series(like).source
    else:
        raise InputError(f"like= must be a Study, its source dict or a DICOM series path, got {type(like).__name__}")
    if source.get("format") != "dicom" or not source.get("headers"):
        raise InputError(f"like= must come from a DICOM series (its source format is {source.get('format')!r})")
    return source


def check_writable(study: Study, path: str | Path, *, overwrite: bool = False, like=None) -> None:
    """Every refusal :func:`write_dicom_series` would make for ``study`` at ``path``, without writing
    (a command checks its outputs before its work)."""
    path = Path(path)
    if torch.is_complex(study.voxels):
        raise InputError("DICOM images are real: the study has complex voxels; write their magnitudes (study.voxels.abs())")
    _check_target(path, overwrite)
    source = _like_source(study, like)
    if source is not None and source.get("headers") is not None:
        _check_headers_match(study, source["headers"])


def _check_headers_match(study: Study, headers: list) -> None:
    s, h, w = study.shape
    first = headers[0]
    rows, columns = int(first.get("Rows", -1)), int(first.get("Columns", -1))
    if len(headers) != s or (rows, columns) != (h, w):
        raise InputError(
            f"the study has {s} slices of {h}x{w} but its DICOM source has {len(headers)} slices of "
            f"{rows}x{columns}; write it to NIfTI, or as a new DICOM series from a study without DICOM source"
        )
    order, affine = headers_geometry(headers)
    if not np.array_equal(order, np.arange(s)) or not np.allclose(affine, study.affine, rtol=0, atol=1e-3):
        raise InputError(
            "the study's affine differs from the geometry of its DICOM source headers, so they cannot be "
            "reused; write it to NIfTI, or as a new DICOM series from a study without DICOM source"
        )


def _quantise(voxels: np.ndarray) -> tuple[np.ndarray, str, str]:
    """int16 stored values and the (slope, intercept) DS strings that map them back (write docstring)."""
    from pydicom.valuerep import DSfloat

    lo, hi = float(voxels.min()), float(voxels.max())
    # slice by slice: float64 copies of a whole 300-slice 512x512 volume would take GBs
    whole = voxels.dtype.kind in "iub" or all(np.array_equal(v, np.round(v)) for v in voxels)
    if whole and lo >= -32768 and hi <= 32767:
        return voxels.astype(np.int16), "1", "0"
    if hi == lo:
        slope_text, intercept_text = "1", str(DSfloat(lo, auto_format=True))
    else:
        slope_text = str(DSfloat((hi - lo) / 65534.0, auto_format=True))
        intercept_text = str(DSfloat(lo + 32767.0 * (hi - lo) / 65534.0, auto_format=True))
    slope, intercept = float(slope_text), float(intercept_text)  # what readers will use
    stored = np.empty(voxels.shape, dtype=np.int16)
    for s, v in enumerate(voxels):
        stored[s] = np.clip(np.round((v.astype(np.float64) - intercept) / slope), -32768, 32767)
    return stored, slope_text, intercept_text


def _strip(ds) -> None:
    ds.remove_private_tags()
    for element in list(ds):
        group = element.tag.group
        if 0x6000 <= group <= 0x60FF or 0x5000 <= group <= 0x50FF:  # overlays, curves
            del ds[element.tag]
    for kw in _DROP_ON_WRITE:
        if kw in ds:
            delattr(ds, kw)


def _derived_from(header, modality: str, series_uid: str, s: int, frame: int | None):
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    ds = copy.deepcopy(header)
    _strip(ds)
    reference = Dataset()
    reference.ReferencedSOPClassUID = header.get("SOPClassUID", STORAGE_CLASSES[modality])
    reference.ReferencedSOPInstanceUID = header.get("SOPInstanceUID", "")
    if frame is not None:
        reference.ReferencedFrameNumber = frame + 1
    ds.SourceImageSequence = [reference]
    ds.SOPClassUID = STORAGE_CLASSES[modality]
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    try:
        number = int(header.get("SeriesNumber", 0) or 0)
    except (TypeError, ValueError):
        number = 0
    ds.SeriesNumber = number + 1000
    old = header.get("ImageType")
    old_type = [] if not old else [old] if isinstance(old, str) else list(old)
    ds.ImageType = ["DERIVED", "SECONDARY", *[str(v) for v in old_type[2:]]]
    _required_modality_tags(ds, modality)
    return ds


def _required_modality_tags(ds, modality: str) -> None:
    """Type 1/2 attributes of the CT/MR Image modules that a source (e.g. Enhanced) may lack."""
    if modality == "CT":
        defaults = {"KVP": "", "AcquisitionNumber": ""}
        if len(ds.ImageType) < 3:
            ds.ImageType = [*ds.ImageType, "AXIAL"]
    else:
        defaults = {"ScanningSequence": "RM", "SequenceVariant": "NONE", "ScanOptions": "", "MRAcquisitionType": "",
                    "EchoTime": "", "EchoTrainLength": "", "RepetitionTime": ""}  # fmt: skip
    for kw, value in defaults.items():
        if kw not in ds:
            setattr(ds, kw, value)


def _minimal_series(study: Study, series_uid: str, date: str, time: str) -> list:
    """Classic CT/MR Image Storage datasets built from the study's affine (non-DICOM sources)."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid
    from pydicom.valuerep import DSfloat

    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ study.affine
    c0, c1, c2, origin = lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3]
    dw, dh = np.linalg.norm(c0), np.linalg.norm(c1)
    if abs(c0 @ c1) > 1e-6 * dw * dh:
        raise InputError("the study's column and row axes are not perpendicular; DICOM cannot store sheared in-plane axes")
    row, col = c0 / dw, c1 / dh
    thickness = abs(c2 @ np.cross(row, col))

    def ds_values(values) -> list:
        return [DSfloat(float(v), auto_format=True) for v in values]

    study_uid, frame_uid = generate_uid(), generate_uid()
    patient_id = (study.name or "study").replace("\\", "_")[:64]
    out = []
    for s in range(study.shape[0]):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.SOPClassUID = STORAGE_CLASSES[study.modality]
        ds.SOPInstanceUID = generate_uid()
        ds.StudyDate, ds.StudyTime = date, time
        ds.AccessionNumber = ""
        ds.Modality = study.modality
        ds.Manufacturer = "medrecon"
        ds.ReferringPhysicianName = ""
        ds.PatientName = "anonymous"
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = ""
        ds.SeriesNumber = 1000
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = ds_values(origin + s * c2)
        ds.ImageOrientationPatient = ds_values([*row, *col])
        ds.PixelSpacing = ds_values([dh, dw])
        ds.SliceThickness = DSfloat(thickness, auto_format=True)
        if study.window is not None:
            ds.WindowCenter, ds.WindowWidth = (DSfloat(v, auto_format=True) for v in study.window)
        _required_modality_tags(ds, study.modality)
        out.append(ds)
    return out


def _set_pixels(ds, stored: np.ndarray, slope: str, intercept: str) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.PixelData = np.ascontiguousarray(stored, dtype="<i2").tobytes()
    ds["PixelData"].VR = "OW"
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta


def _dcmwrite(pydicom, file: Path, ds) -> None:
    if int(pydicom.__version__.split(".")[0]) >= 3:
        pydicom.dcmwrite(file, ds, enforce_file_format=True)
    else:  # pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        pydicom.dcmwrite(file, ds, write_like_original=False)
