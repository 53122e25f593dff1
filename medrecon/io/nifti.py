"""NIfTI volumes through nibabel: read a 2-D or 3-D volume as a Study, write one back with its geometry.

Reading keeps the file's affine (nibabel's ``(i, j, k) -> RAS mm``) and applies the file's
scaling (``scl_slope``/``scl_inter``). The slice axis defaults to the array axis closest to the
superior direction (axial slices); ``slice_axis`` picks another. 4-D files are refused unless a
``volume`` index is given. Writing uses the source's axis order and affine (so the result overlays
the input in any viewer) and picks the datatype: int16 with an exact scale for CT in HU,
float32 otherwise. The modality, which NIfTI has no field for, is recorded in a BIDS-style JSON
sidecar and in the header's ``descrip`` (:mod:`medrecon.io.sidecar`) and read back from them.
"""

from __future__ import annotations

import gzip
import math
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

from medrecon.errors import InputError, one_line
from medrecon.io.atomic import atomic_output
from medrecon.io.sidecar import header_tag, modality_from_tag, recorded_modality, resolve_modality, staged_sidecar
from medrecon.io.validation import PIXEL_SPACING_MM, SLICE_SPACING_MM, Fields, checked_study
from medrecon.study import Study, axis_closest_to, file_layout, to_study_layout


def read_nifti(
    path: str | Path,
    *,
    modality: str | None = None,
    slice_axis: int | None = None,
    volume: int | None = None,
) -> Study:
    """Read a NIfTI file as a :class:`Study`.

    Args:
        modality: ``CT`` or ``MR``; NIfTI has no field for it: read from the JSON sidecar or the
            header tag medrecon writes, else required (the CLI asks for ``--modality``).
        slice_axis: the array axis to slice along (default: the one closest to superior).
        volume: the index along the 4th axis of a 4-D file (required for 4-D files).

    The whole file is read and, for ``.nii.gz``, decompressed first, so a truncated file or a
    damaged gzip stream (its CRC included) is refused rather than read in part. The header is
    checked before the voxels are read (``sizeof_hdr``, ``magic``, ``dim``, ``datatype``,
    ``vox_offset`` against the file's size, ``pixdim``, ``scl_slope``/``scl_inter``), then the
    study passes :func:`~medrecon.io.validation.checked_study`; every refusal is a one-line
    :class:`InputError` naming the file and the field.
    """
    import nibabel as nib

    path = Path(path)
    raw = _nifti_bytes(path)
    with warnings.catch_warnings():  # nibabel's fix-up warnings: the checks below refuse what they fix
        warnings.simplefilter("ignore")
        header = _checked_header(raw, path)
        klass = nib.Nifti2Image if header.sizeof_hdr == 540 else nib.Nifti1Image
        try:
            image = klass.from_bytes(raw)
            shape = tuple(int(n) for n in image.shape)
            offset = int(image.dataobj.offset)
        except Exception as exc:  # nibabel raises several types for damaged headers
            raise InputError(f"{path} is not a readable NIfTI file: {one_line(exc)}") from None
        expected = int(np.prod(shape, dtype=np.int64)) * header.get_data_dtype().itemsize
        if offset + expected > len(raw):
            raise InputError(f"{path}: truncated: its header (dim {list(shape)}, datatype {header.get_data_dtype()}, "
                             f"vox_offset {offset}) needs {offset + expected} bytes, the file holds {len(raw)}")
        descrip = image.header.get("descrip")
        tag = modality_from_tag(None if descrip is None else np.asarray(descrip).item())
        modality = resolve_modality(path, modality, recorded_modality(path, tag), "NIfTI")
        if len(shape) == 4:
            if volume is None:
                raise InputError(f"{path} is 4-D {shape}: choose one volume with volume=INDEX (0..{shape[3] - 1})")
            if not 0 <= volume < shape[3]:
                raise InputError(f"{path}: volume {volume} is out of range 0..{shape[3] - 1}")
        elif len(shape) in (2, 3):
            if volume is not None:
                raise InputError(f"{path} is {len(shape)}-D: it has no volume axis")
        else:
            raise InputError(f"{path}: expected a 2-D, 3-D or 4-D image, got {len(shape)} dimensions {shape} (dim)")
        try:
            data = np.asarray(image.dataobj[..., volume] if len(shape) == 4 else image.dataobj)
            affine = np.asarray(image.affine, dtype=np.float64)
        except Exception as exc:
            raise InputError(f"{path}: cannot read its voxels: {one_line(exc)}") from None
    if data.ndim == 2:
        data = data[:, :, None]
    data = _as_float32(data, path)
    usable = np.all(np.isfinite(affine)) and np.all(np.linalg.norm(affine[:3, :3], axis=0) > 0)
    axis = slice_axis if slice_axis is not None else (axis_closest_to(affine) if usable else 2)  # else refused below
    voxels, study_affine, order = to_study_layout(data, affine, axis)
    source = {
        "format": "nifti",
        "path": str(path),
        "axis_order": list(order),
        "file_affine": affine.tolist(),
        "header_dtype": str(header.get_data_dtype()),
        "shape": list(data.shape),
    }
    name = path.name.removesuffix(".gz").removesuffix(".nii")
    form = _affine_source(header)
    spacing = tuple(f"pixdim[{order[k] + 1}]" if form != "sform" else f"the sform (srow_x/y/z) column {order[k]}"
                    for k in range(3))
    fields = Fields(shape="dim", spacing=spacing, intensity="the voxel values (datatype, scl_slope, scl_inter)",
                    geometry={"sform": "the sform (srow_x/y/z)", "qform": "the qform (quatern_b/c/d, qoffset, pixdim)"}
                    .get(form, "pixdim"))
    return checked_study(torch.from_numpy(voxels), study_affine, modality, label=path, fields=fields, source=source,
                         name=name)



def _nifti_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed for ``.gz`` (a damaged or truncated gzip stream is refused)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"no such NIfTI file: {path}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    gzipped = raw[:2] == b"\x1f\x8b"
    if path.name.lower().endswith(".gz"):
        if not gzipped:
            raise InputError(f"{path} is named .gz but is not gzip-compressed (rename it .nii if it is plain NIfTI)")
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{path}: damaged gzip stream ({one_line(exc)}): the file is truncated or corrupt") from None
    elif gzipped:
        raise InputError(f"{path} is gzip-compressed but named .nii (name it .nii.gz)")
    return raw


def _checked_header(raw: bytes, path: Path):
    """The header of a single-file NIfTI-1 or NIfTI-2 image, read as it is (nibabel fixes nothing),
    after the checks of its fields."""
    import nibabel as nib

    if len(raw) < 348:
        raise InputError(f"{path} is not a readable NIfTI file: {len(raw)} bytes, too short for a header (348 bytes)")
    size_le, size_be = int.from_bytes(raw[:4], "little", signed=True), int.from_bytes(raw[:4], "big", signed=True)
    size = size_le if size_le in (348, 540) else size_be
    if size not in (348, 540):
        raise InputError(f"{path} is not a readable NIfTI file: sizeof_hdr is {size_le}, neither NIfTI-1 (348) nor "
                         "NIfTI-2 (540)")
    if len(raw) < size:
        raise InputError(f"{path}: {len(raw)} bytes, too short for its NIfTI header ({size} bytes)")
    klass = nib.Nifti2Header if size == 540 else nib.Nifti1Header
    try:
        header = klass(raw[:size], check=False)
    except Exception as exc:
        raise InputError(f"{path}: damaged NIfTI header: {one_line(exc)}") from None
    magic = bytes(np.asarray(header["magic"]).item())
    if magic not in (b"n+1", b"n+2"):
        what = "a header of a .hdr/.img pair" if magic in (b"ni1", b"ni2") else f"magic {magic!r}"
        raise InputError(f"{path}: {what}, not a single-file NIfTI image (magic 'n+1' or 'n+2')")
    dim = [int(v) for v in np.asarray(header["dim"])]
    if not 1 <= dim[0] <= 7:
        raise InputError(f"{path}: dim[0] is {dim[0]}; the number of dimensions must be 1..7")
    for i in range(1, dim[0] + 1):
        if dim[i] < 1:
            raise InputError(f"{path}: dim[{i}] is {dim[i]}; every axis needs at least one voxel")
    if dim[0] < 2:
        raise InputError(f"{path}: dim[0] is 1: a 1-D NIfTI file is not an image")
    code = int(np.asarray(header["datatype"]))
    try:
        dtype = header.get_data_dtype()
    except Exception:
        raise InputError(f"{path}: datatype {code} is not a NIfTI data type") from None
    if dtype.fields is not None:
        raise InputError(f"{path}: datatype {code} ({'RGB' if len(dtype.fields) == 3 else 'RGBA'} colour); CT and MR images "
                         "are greyscale")
    if dtype.kind not in "iufc":
        raise InputError(f"{path}: datatype {code} ({dtype}) is not a numeric image type")
    offset = float(np.asarray(header["vox_offset"]))
    if not math.isfinite(offset) or offset < 0 or offset > len(raw):
        raise InputError(f"{path}: vox_offset {offset:g} lies outside the file's {len(raw)} bytes")
    pixdim = [float(v) for v in np.asarray(header["pixdim"])]
    lo, hi = PIXEL_SPACING_MM[0], SLICE_SPACING_MM[1]
    for i in range(1, min(dim[0], 3) + 1):
        # the voxel size of an axis of several voxels (nibabel replaces a 0 by 1 with a warning; a
        # single slice of unknown thickness gets 1 mm, as a DICOM slice does)
        if not math.isfinite(pixdim[i]) or (dim[i] > 1 and not lo <= abs(pixdim[i]) <= hi):
            raise InputError(f"{path}: pixdim[{i}] is {pixdim[i]:g}; a voxel size must be a finite number of mm within "
                             f"{lo:g}-{hi:g}")
        if dim[i] > 1 and pixdim[i] < 0 and _affine_source(header) != "sform":
            raise InputError(f"{path}: pixdim[{i}] is {pixdim[i]:g}; the qform needs positive voxel sizes")
    slope, inter = float(np.asarray(header["scl_slope"])), float(np.asarray(header["scl_inter"]))
    if math.isinf(slope):
        raise InputError(f"{path}: scl_slope is {slope}; a scale must be finite (0 or NaN: unscaled)")
    if slope != 0 and math.isfinite(slope) and not math.isfinite(inter):
        raise InputError(f"{path}: scl_inter is {inter} with scl_slope {slope:g}; it must be finite")
    return header


def _affine_source(header) -> str:
    """Which of the header's fields give nibabel's affine: ``sform``, ``qform`` or ``pixdim``."""
    if int(np.asarray(header["sform_code"])) > 0:
        return "sform"
    if int(np.asarray(header["qform_code"])) > 0:
        return "qform"
    return "pixdim"


def _as_float32(data: np.ndarray, path: Path) -> np.ndarray:
    """The voxels as float32 (complex64), refusing finite values that float32 cannot hold (they
    would become inf: a huge scl_slope or float64 data)."""
    if data.dtype.kind in "fc" and data.dtype.itemsize > (8 if data.dtype.kind == "c" else 4):
        parts = (data.real, data.imag) if data.dtype.kind == "c" else (data,)
        limit = float(np.finfo(np.float32).max)
        for part in parts:
            finite = part[np.isfinite(part)]
            if finite.size and float(np.abs(finite).max()) > limit:
                raise InputError(f"{path}: voxel values reach {float(np.abs(finite).max()):.3g}, beyond float32 (check "
                                 "scl_slope/scl_inter)")
    with np.errstate(over="ignore", invalid="ignore"):
        return data.astype(np.complex64 if np.iscomplexobj(data) else np.float32)


def write_nifti_array(data: np.ndarray, affine: np.ndarray, path: str | Path, *, overwrite: bool = False, hu: bool = False,
                      modality: str | None = None) -> Path:
    """Write an ``(i, j, k)`` array with its affine to ``.nii``/``.nii.gz``, atomically.

    ``hu``: the values are CT numbers; they are stored as int16 (rounded, clipped to the int16
    range, exact for integer HU). Otherwise float32 (complex64 for complex data). ``modality``:
    recorded in the header's ``descrip`` tag.
    """
    import nibabel as nib

    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise InputError(f"{path}: a NIfTI file name ends in .nii or .nii.gz")
    if hu:
        stored = np.clip(np.round(data), -32768, 32767).astype(np.int16)
    else:
        stored = data.astype(np.complex64 if np.iscomplexobj(data) else np.float32)
    image = nib.Nifti1Image(stored, np.asarray(affine, dtype=np.float64))
    image.header.set_xyzt_units("mm")
    if modality is not None:
        image.header["descrip"] = header_tag(modality).encode()
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"
    with atomic_output(path, overwrite=overwrite, suffix=suffix) as tmp:  # nibabel reads the suffix
        nib.save(image, str(tmp))
    return path


def write_nifti(study: Study, path: str | Path, *, overwrite: bool = False, sidecar: bool = True) -> Path:
    """Write a study to NIfTI in its source's axis order and affine (or the study layout if the
    source was not NIfTI). CT is stored as int16 HU, MR as float32. The modality goes into the
    header tag and, with ``sidecar``, the JSON sidecar (both files written atomically; neither is
    written if either exists without ``overwrite``)."""
    path = Path(path)
    data, affine = file_layout(study, "nifti")
    with staged_sidecar(study, path, overwrite=overwrite, enabled=sidecar):
        write_nifti_array(data, affine, path, overwrite=overwrite, hu=study.modality == "CT", modality=study.modality)
    return path
