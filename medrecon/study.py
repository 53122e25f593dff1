"""A study: voxels in native units, their geometry, the modality, and what is needed to write back.

This module holds the :class:`Study` type and the voxel-layout helpers that every reader and
writer shares. It sits below the format modules (:mod:`medrecon.io.dicom_read`,
:mod:`~medrecon.io.dicom_write`, :mod:`~medrecon.io.nifti`, :mod:`~medrecon.io.nrrd`), which build
and write studies, and :mod:`medrecon.io.studies` sits above them: ``load_study`` /
``save_study`` / ``check_save``, the dispatch on the format a path names. Data flows one way, so
no format module imports the dispatch and this module imports no format module.

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
- ``window`` is the display window the source suggests, ``(centre, width)`` in native units (DICOM
  WindowCenter / WindowWidth, the first value of each when multi-valued), or None. It is a
  suggestion for figures (:mod:`medrecon.figures`), never applied to the voxels; studies derived
  with :meth:`Study.with_voxels` keep it.

The NIfTI and NRRD readers permute a file's ``(i, j, k)`` array into this layout with
:func:`to_study_layout` (recording the permutation as ``source["axis_order"]``); a writer of the
same format undoes it with :func:`file_layout`, so a result overlays its input in any viewer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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
    window: tuple[float, float] | None = None  # (centre, width) in native units, e.g. DICOM WindowCenter/Width

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
        if self.window is not None:
            self.window = checked_window(self.window)

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

    def with_voxels(self, voxels: torch.Tensor, **changes) -> Study:
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


def checked_window(window) -> tuple[float, float]:
    """``(centre, width)`` as two floats: finite, width > 0; an :class:`InputError` otherwise."""
    try:
        centre, width = (float(v) for v in window)
    except (TypeError, ValueError):
        raise InputError(f"a display window is (centre, width), got {window!r}") from None
    if not (np.isfinite(centre) and np.isfinite(width) and width > 0):
        raise InputError(f"a display window needs a finite centre and a positive width, got {window!r}")
    return centre, width


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


def file_layout(study: Study, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``(i, j, k)`` array and affine a ``fmt`` writer stores: the source's axis order and
    affine where the study was read from ``fmt``, else the study layout ``(w, h, s)``."""
    voxels = study.voxels.detach().cpu().numpy()
    order = study.source.get("axis_order") if study.source.get("format") == fmt else None
    if order is not None:
        return from_study_layout(voxels, study.affine, tuple(order))
    return np.transpose(voxels, (2, 1, 0)), study.affine


__all__ = ["MODALITIES", "Study", "axis_closest_to", "checked_window", "file_layout", "from_study_layout", "to_study_layout"]
