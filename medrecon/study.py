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

``load_study(path)`` and ``save_study(study, path, like=source)`` dispatch on the format: a folder
or ``.dcm`` files are DICOM, ``.nii``/``.nii.gz`` NIfTI, ``.nrrd`` NRRD (read only), ``.h5`` fastMRI
raw k-space (read by :mod:`medrecon.io.kspace`, not a Study).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from medrecon.errors import InputError

MODALITIES = ("CT", "MR")


@dataclass
class Study:
    """Voxels ``(S, H, W)`` in native units with a ``(w, h, s) -> RAS mm`` affine (module docstring)."""

    voxels: torch.Tensor
    affine: np.ndarray
    modality: str
    source: dict = field(default_factory=dict)
    name: str = "study"

    def __post_init__(self):
        if not isinstance(self.voxels, torch.Tensor) or self.voxels.ndim != 3:
            got = tuple(self.voxels.shape) if isinstance(self.voxels, torch.Tensor) else type(self.voxels).__name__
            raise InputError(f"Study voxels must be a (slices, rows, columns) tensor, got {got}")
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise InputError(f"Study affine must be a finite 4x4 matrix, got shape {affine.shape}")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise InputError("Study affine is singular (zero voxel size or collinear axes)")
        self.affine = affine
        if self.modality not in MODALITIES:
            raise InputError(f"modality must be one of {MODALITIES}, got {self.modality!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.voxels.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along (columns, rows, slices)."""
        return tuple(float(np.linalg.norm(self.affine[:3, i])) for i in range(3))

    @property
    def pixel_size(self) -> float:
        """In-plane pixel size in mm (the mean of the column and row spacing)."""
        return 0.5 * (self.spacing[0] + self.spacing[1])

    def with_voxels(self, voxels: torch.Tensor, **changes) -> "Study":
        """A study with other voxels of the same shape (a reconstruction) and the same geometry."""
        if tuple(voxels.shape) != self.shape:
            raise InputError(f"new voxels {tuple(voxels.shape)} do not match the study's shape {self.shape}")
        return replace(self, voxels=voxels, **changes)

    def __repr__(self) -> str:
        sx, sy, sz = self.spacing
        return (
            f"Study({self.name!r}, {self.modality}, {self.shape[0]} slices of {self.shape[1]}x{self.shape[2]}, "
            f"spacing {sx:.3g}x{sy:.3g}x{sz:.3g} mm, from {self.source.get('format', '?')})"
        )


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


def axis_closest_to(affine: np.ndarray, world_axis: int = 2) -> int:
    """The array axis (0, 1, 2) whose direction is closest to the world axis (2 = superior: axial)."""
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0, keepdims=True)
    return int(np.argmax(np.abs(directions[world_axis])))


def to_study_layout(data: np.ndarray, affine: np.ndarray, slice_axis: int) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Reorder a ``(i, j, k)`` array (nibabel layout) so that ``slice_axis`` is the slice axis.

    Returns ``(voxels (S, H, W), affine of (w, h, s), order)`` where ``order`` is the permutation of
    the source axes that gives ``(w, h, s)``; :func:`from_study_layout` undoes it.
    """
    if slice_axis not in (0, 1, 2):
        raise InputError(f"slice_axis must be 0, 1 or 2, got {slice_axis!r}")
    in_plane = [a for a in (0, 1, 2) if a != slice_axis]
    order = (in_plane[0], in_plane[1], slice_axis)
    permuted = np.transpose(data, order)  # (w, h, s)
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, list(order)]
    return np.ascontiguousarray(np.transpose(permuted, (2, 1, 0))), new_affine, order


def from_study_layout(voxels: np.ndarray, affine: np.ndarray, order: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`to_study_layout`: back to the source's array axis order and affine."""
    permuted = np.transpose(voxels, (2, 1, 0))  # (w, h, s)
    inverse = np.argsort(order)
    data = np.transpose(permuted, inverse)
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, list(inverse)]
    return data, new_affine


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
    raise InputError(f"cannot write {fmt} files; write NIfTI (.nii.gz) or a DICOM folder")

