"""Load and save a :class:`~medrecon.study.Study` in the format its path names: the dispatch over
the format modules.

``load_study(path)`` and ``save_study(study, path)`` dispatch on the format the name says: a folder
or ``.dcm`` files are DICOM, ``.nii``/``.nii.gz`` NIfTI, ``.nrrd`` NRRD, ``.h5`` fastMRI raw k-space
(read by :mod:`medrecon.io.kspace`, not a Study). Any study writes to any of the three image formats
with its geometry: NIfTI and NRRD from its affine, DICOM by copying its source's per-slice headers
(a DICOM source) or as a new series built from the affine. NIfTI and NRRD record the modality in a
JSON sidecar and a header tag (:mod:`medrecon.io.sidecar`), so what medrecon writes loads back
without flags. :func:`check_save` makes every refusal of :func:`save_study` without writing.

Module layout: this module sits above the format modules (:mod:`medrecon.io.dicom_read`,
:mod:`~medrecon.io.dicom_write`, :mod:`~medrecon.io.nifti`, :mod:`~medrecon.io.nrrd`), which build
and write studies; the :class:`~medrecon.study.Study` type and its conventions (voxels ``(S, H,
W)`` in native units, the ``(w, h, s) -> RAS mm`` affine) sit below them, in :mod:`medrecon.study`.
``medrecon.load_study`` / ``medrecon.save_study`` are this module's functions.
"""

from __future__ import annotations

from pathlib import Path

from medrecon.errors import InputError
from medrecon.io.dicom_read import read_dicom_series
from medrecon.io.dicom_write import check_writable, write_dicom_series
from medrecon.io.nifti import read_nifti, write_nifti
from medrecon.io.nrrd import read_nrrd_study, write_nrrd
from medrecon.io.sidecar import check_sidecar_free, sidecar_path
from medrecon.study import Study


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
        return read_nifti(path, modality=modality, **options)
    if fmt == "dicom":
        return read_dicom_series(path, **options)
    if fmt == "nrrd":
        return read_nrrd_study(path, modality=modality, **options)
    raise InputError(f"{path} is raw k-space: read it with medrecon.io.kspace.read_fastmri_h5")


def check_save(study: Study, path: str | Path, *, overwrite: bool = False, sidecar: bool = True) -> str:
    """Every refusal :func:`save_study` would make for ``study`` at ``path``, before any work;
    returns the format. An unknown suffix is refused here."""
    path = Path(path)
    fmt = study_format(path, for_writing=True)
    if fmt == "dicom":
        check_writable(study, path, overwrite=overwrite)
        return fmt
    if fmt not in ("nifti", "nrrd"):
        raise InputError(f"cannot write {fmt} files; write NIfTI (.nii.gz), NRRD (.nrrd) or a DICOM folder")
    if fmt == "nrrd" and study.voxels.is_complex():
        raise InputError(f"{path}: NRRD output takes real voxels (write the magnitude)")
    if sidecar:
        check_sidecar_free(path)
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
        return write_nifti(study, path, overwrite=overwrite, **options)
    if fmt == "dicom":
        return write_dicom_series(study, path, overwrite=overwrite, **options)
    if fmt == "nrrd":
        return write_nrrd(study, path, overwrite=overwrite, **options)
    raise InputError(f"cannot write {fmt} files; write NIfTI (.nii.gz), NRRD (.nrrd) or a DICOM folder")


__all__ = ["check_save", "load_study", "save_study", "study_format"]
