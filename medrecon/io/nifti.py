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

from pathlib import Path

import numpy as np
import torch

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_output
from medrecon.io.sidecar import header_tag, modality_from_tag, recorded_modality, resolve_modality, staged_sidecar
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
    """
    import nibabel as nib

    path = Path(path)
    try:
        image = nib.load(str(path))
    except FileNotFoundError:
        raise InputError(f"no such NIfTI file: {path}") from None
    except Exception as exc:  # nibabel raises several types for damaged files
        raise InputError(f"{path} is not a readable NIfTI file: {exc}") from None
    descrip = image.header.get("descrip")
    tag = modality_from_tag(None if descrip is None else np.asarray(descrip).item())
    modality = resolve_modality(path, modality, recorded_modality(path, tag), "NIfTI")
    shape = image.shape
    if len(shape) == 4:
        if volume is None:
            raise InputError(f"{path} is 4-D {shape}: choose one volume with volume=INDEX (0..{shape[3] - 1})")
        if not 0 <= volume < shape[3]:
            raise InputError(f"{path}: volume {volume} is out of range 0..{shape[3] - 1}")
        data = np.asarray(image.dataobj[..., volume])
    elif len(shape) in (2, 3):
        if volume is not None:
            raise InputError(f"{path} is {len(shape)}-D: it has no volume axis")
        data = np.asarray(image.dataobj)
        if data.ndim == 2:
            data = data[:, :, None]
    else:
        raise InputError(f"{path}: expected a 2-D, 3-D or 4-D image, got {len(shape)} dimensions {shape}")
    data = data.astype(np.complex64 if np.iscomplexobj(data) else np.float32)
    affine = np.asarray(image.affine, dtype=np.float64)
    axis = axis_closest_to(affine) if slice_axis is None else slice_axis
    voxels, study_affine, order = to_study_layout(data, affine, axis)
    source = {
        "format": "nifti",
        "path": str(path),
        "axis_order": list(order),
        "file_affine": affine.tolist(),
        "header_dtype": str(image.get_data_dtype()),
        "shape": list(data.shape),
    }
    name = path.name.removesuffix(".gz").removesuffix(".nii")
    return Study(torch.from_numpy(voxels), study_affine, modality, source=source, name=name)


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
