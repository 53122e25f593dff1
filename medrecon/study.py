"""A study: voxels in native units, their geometry, the modality, and what is needed to write back.

Conventions
-----------
- ``voxels`` is a ``(S, H, W)`` tensor: S slices along ``slice_axis`` of the source, each an image
  of H rows and W columns, in native units (HU for CT, the scanner's arbitrary units for MR;
  ``float32``; complex64 for complex MR images).
- ``affine`` is the 4x4 matrix mapping voxel indices ``(column, row, slice)`` = ``(w, h, s)`` to
  RAS+ world coordinates in mm, i.e. nibabel's affine of the array ``voxels.permute(2, 1, 0)``.
- ``source`` holds what a writer needs to write a result back in the input's format with the
  input's geometry (the format name, the path, and format-specific entries such as the axis order
  of a NIfTI file or the DICOM headers); it is not interpreted elsewhere.

``load_study(path)`` and ``save_study(study, path)`` dispatch on the format the name says: a folder
or ``.dcm`` files are DICOM, ``.nii``/``.nii.gz`` NIfTI, ``.nrrd`` NRRD, ``.h5`` fastMRI raw k-space
(read by :mod:`medrecon.io.kspace`, not a Study). Any study writes to any of the three image formats
with its geometry: NIfTI and NRRD from its affine, DICOM by copying its source's per-slice headers
(a DICOM source) or as a new series built from the affine. NIfTI and NRRD record the modality in a
JSON sidecar and a header tag (:mod:`medrecon.io.sidecar`), so what medrecon writes loads back
without flags. :func:`check_save` makes every refusal of :func:`save_study` without writing.

Module layout: the :class:`Study` type lives in :mod:`medrecon.io.base`, below the format modules;
this module, the dispatch, sits above them.
"""

from __future__ import annotations

from pathlib import Path

from medrecon.errors import InputError
from medrecon.io.base import MODALITIES, Study, axis_closest_to, from_study_layout, to_study_layout

def study_format(path: str | Path, *, for_writing: bool = False) -> str:
    """The format of a path by its name: ``dicom``, ``nifti``, ``nrrd`` or ``kspace``.

    A folder is a DICOM series; so is, when writing, a path without a known suffix.
    """
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        return "nifti"
    if name.endswith(".nrrd"):
        return "nrrd"
    if name.endswith(".h5") or name.endswith(".hdf5"):
        return "kspace"
    if p.is_dir() or name.endswith(".dcm") or (for_writing and "." not in name):
        return "dicom"
    raise InputError(
        f"cannot tell the format of {p}: expected a DICOM folder or .dcm file, .nii/.nii.gz, .nrrd or .h5"
    )


def load_study(path: str | Path, *, modality: str | None = None, **options) -> Study:
    """Load a DICOM series, NIfTI or NRRD volume as a :class:`Study` (see the module docstring)."""
    fmt = study_format(path)
    if fmt == "nifti":
        from medrecon.io.nifti import read_nifti  # noqa: PLC0415

        return read_nifti(path, modality=modality, **options)
    if fmt == "dicom":
        from medrecon.io.dicom import read_dicom_series  # noqa: PLC0415

        return read_dicom_series(path, **options)
    if fmt == "nrrd":
        from medrecon.io.nrrd import read_nrrd_study  # noqa: PLC0415

        return read_nrrd_study(path, modality=modality, **options)
    raise InputError(f"{path} is raw k-space: read it with medrecon.io.kspace.read_fastmri_h5")


def check_save(study: Study, path: str | Path, *, overwrite: bool = False, sidecar: bool = True) -> str:
    """Every refusal :func:`save_study` would make for ``study`` at ``path``, before any work;
    returns the format. An unknown suffix is refused here."""
    from medrecon.io.sidecar import sidecar_path  # noqa: PLC0415

    path = Path(path)
    fmt = study_format(path, for_writing=True)
    if fmt == "dicom":
        from medrecon.io.dicom import check_writable  # noqa: PLC0415

        check_writable(study, path, overwrite=overwrite)
        return fmt
    if fmt not in ("nifti", "nrrd"):
        raise InputError(f"cannot write {fmt} files; write NIfTI (.nii.gz), NRRD (.nrrd) or a DICOM folder")
    if fmt == "nrrd" and study.voxels.is_complex():
        raise InputError(f"{path}: NRRD output takes real voxels (write the magnitude)")
    for target in [path] + ([sidecar_path(path)] if sidecar else []):
        if target.exists() and not overwrite:
            raise InputError(f"{target} exists; pass --overwrite (overwrite=True) to replace it")
    if not path.parent.is_dir():
        raise InputError(f"the output folder {path.parent} does not exist")
    return fmt


def save_study(study: Study, path: str | Path, *, overwrite: bool = False, **options) -> Path:
    """Write a study in the format its path names, with the source's geometry (atomic: a temporary
    file renamed at the end; an existing output is replaced only with ``overwrite``)."""
    fmt = study_format(path, for_writing=True)
    if fmt == "nifti":
        from medrecon.io.nifti import write_nifti  # noqa: PLC0415

        return write_nifti(study, path, overwrite=overwrite, **options)
    if fmt == "dicom":
        from medrecon.io.dicom import write_dicom_series  # noqa: PLC0415

        return write_dicom_series(study, path, overwrite=overwrite, **options)
    if fmt == "nrrd":
        from medrecon.io.nrrd import write_nrrd  # noqa: PLC0415

        return write_nrrd(study, path, overwrite=overwrite, **options)
    raise InputError(f"cannot write {fmt} files; write NIfTI (.nii.gz), NRRD (.nrrd) or a DICOM folder")



__all__ = ["MODALITIES", "Study", "axis_closest_to", "check_save", "from_study_layout", "load_study", "save_study",
           "study_format", "to_study_layout"]
