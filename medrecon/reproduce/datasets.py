"""The published datasets, in their published on-disk layouts, as evaluation items.

Each loader checks the root folder and lists its volumes when it is called (so a missing or wrongly
laid out root fails at once, with a one-line message naming the path and the expected layout), and
returns a :class:`DatasetItems`: a lazy sequence that reads and normalises one volume per item,
exactly as the published protocols prescribe (docs/reproduce.md, the table of protocols).

- :func:`lidc_volumes`: LIDC-IDRI as downloaded from TCIA,
  ``root/LIDC-IDRI-XXXX/<study>/<series>/*.dcm``. Per patient, the CT series with the most slices
  (other modalities, e.g. the DX / CR chest radiographs, are never read); axial slices resampled to
  ``size x size`` (:func:`medrecon.priors.normalisation.resample_slices`: shorter side scaled to
  ``size`` with antialiased bilinear interpolation, longer side centre-cropped), then the volume
  min-max normalised to [0, 1].
- :func:`brats_volumes`: BraTS NIfTI, ``root/<case>/<case>_<modality>.nii.gz`` (or ``.nii``), the
  2020 (``BraTS20_Training_001``) and 2021 (``BraTS2021_00000``) namings. Per volume: axial slices,
  all-zero slices dropped, in-plane crop to the non-zero bounding box of the whole volume, clip to
  mean +- 6 std of the non-zero voxels, min-max to [0, 1].
- :func:`fastmri_volumes`: fastMRI multi-coil HDF5 files ``root/*.h5`` (read by
  :func:`medrecon.io.kspace.read_fastmri_h5`): k-space, the ``reconstruction_rss`` target and the
  file's ``max`` (the protocol's data range).
- :func:`fastmri_mask`: the protocol's ``equispaced_fraction`` column mask of a file (centre fraction
  0.08 at 4x, 0.04 at 8x), seeded from the file name as the ``fastmri`` package does.

Errors: a root that does not exist raises :class:`~medrecon.errors.MissingResourceError` (missing
data, CLI exit code 3); a root that is not a folder, is empty, or is not laid out as the dataset is
published raises :class:`~medrecon.errors.InputError` (exit code 2). Both name the path and the
expected layout. :func:`medrecon.io.kspace.center_crop` is fastMRI's centre crop (re-exported here).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medrecon.errors import InputError, MissingResourceError
from medrecon.io.dicom_read import read_dicom_series
from medrecon.io.kspace import center_crop, read_fastmri_h5
from medrecon.io.nifti import read_nifti
from medrecon.operators.masks import COLUMN_PATTERNS, make_mask
from medrecon.priors.normalisation import resample_slices

__all__ = [
    "ImageVolume",
    "KspaceVolume",
    "DatasetItems",
    "lidc_volumes",
    "brats_volumes",
    "fastmri_volumes",
    "fastmri_mask",
    "center_crop",
    "LIDC_LAYOUT",
    "BRATS_LAYOUT",
    "FASTMRI_LAYOUT",
    "BRATS_MODALITIES",
    "FASTMRI_CENTER_FRACTIONS",
]

LIDC_LAYOUT = "root/LIDC-IDRI-XXXX/<study folder>/<series folder>/*.dcm (TCIA download)"
BRATS_LAYOUT = "root/<case>/<case>_<modality>.nii.gz, e.g. BraTS2021_00000/BraTS2021_00000_t2.nii.gz"
FASTMRI_LAYOUT = "root/*.h5, fastMRI multi-coil files such as file1000000.h5"
BRATS_MODALITIES = ("t1", "t1ce", "t2", "flair")
FASTMRI_CENTER_FRACTIONS = {4: 0.08, 8: 0.04}
BRATS_CLIP_STDS = 6.0
_LIDC_PREFIX = "LIDC-IDRI-"


# --------------------------------------------------------------------------------------------------
# items


@dataclass(frozen=True, eq=False)
class ImageVolume:
    """One normalised image volume (LIDC-IDRI, BraTS).

    Attributes:
        name: the patient id (LIDC-IDRI) or case name (BraTS).
        images: float32 ``(S, 1, H, W)`` in [0, 1], the protocol's normalisation applied.
        path: the series folder (LIDC-IDRI) or NIfTI file (BraTS) that was read.
        meta: JSON-friendly provenance: the dataset, what was read, and the intensities that map to
            0 and 1 (``low``, ``high``: ``native = images * (high - low) + low``).
    """

    name: str
    images: torch.Tensor = field(repr=False)
    path: Path
    meta: dict = field(default_factory=dict, repr=False)


@dataclass(frozen=True, eq=False)
class KspaceVolume:
    """One fastMRI file, read for evaluation.

    Attributes:
        name: the file stem (``file1000000``).
        fname: the file name (``file1000000.h5``): fastMRI seeds the file's masks from it.
        kspace: complex64 ``(S, coils, H, W)``, as stored (centred orthonormal FFT convention).
        target: float32 ``(S, 1, h, w)``, the file's ``reconstruction_rss`` (320 x 320 in the public
            files); reconstructions are centre-cropped to it (:func:`center_crop`).
        max_value: the file's ``max`` attribute, the maximum of ``reconstruction_rss`` over the
            whole volume: the data range of the protocol's PSNR and SSIM.
        path: the file.
        padding: ``(left, right)``: the acquired phase-encode columns are ``[left, right)``.
        acquisition: the file's ``acquisition`` attribute (e.g. ``CORPD_FBK``), or None.
        meta: the reader's metadata (:meth:`medrecon.io.kspace.FastMRIVolume.metadata`).
    """

    name: str
    fname: str
    kspace: torch.Tensor = field(repr=False)
    target: torch.Tensor = field(repr=False)
    max_value: float
    path: Path
    padding: tuple[int, int]
    acquisition: str | None
    meta: dict = field(default_factory=dict, repr=False)

    def mask(self, acceleration: int, *, pattern: str = "equispaced_fraction") -> torch.Tensor:
        """The protocol's ``(H, W)`` mask for this file: :func:`fastmri_mask` with its file name,
        its k-space shape, and its acquired columns (:attr:`padding`), as fastMRI's transforms do."""
        shape = (int(self.kspace.shape[-2]), int(self.kspace.shape[-1]))
        return fastmri_mask(self.fname, shape, acceleration, pattern=pattern, padding=self.padding)


class DatasetItems:
    """A lazy sequence of a dataset's volumes: ``len()``, iteration and ``items[i]`` (which reads
    and normalises volume i when asked). ``sources`` lists what each item reads."""

    def __init__(self, dataset: str, root: Path, sources: list, load: Callable[[Any], Any]):
        self.dataset = dataset
        self.root = root
        self.sources = tuple(sources)
        self._load = load

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int):
        if not isinstance(index, numbers.Integral) or isinstance(index, bool):
            raise InputError(f"{self.dataset} items are indexed by an int, got {index!r}")
        n = len(self.sources)
        if not -n <= index < n:
            raise IndexError(f"{self.dataset} item {index} is out of range: {n} volume(s) in {self.root}")
        return self._load(self.sources[index])

    def __iter__(self) -> Iterator:
        for source in self.sources:
            yield self._load(source)

    def __repr__(self) -> str:
        return f"DatasetItems({self.dataset!r}, {len(self)} volume(s) in {str(self.root)!r})"


# --------------------------------------------------------------------------------------------------
# shared checks


def _check_root(root: Any, dataset: str, layout: str) -> Path:
    if not isinstance(root, (str, Path)) or str(root) == "":
        raise InputError(f"the {dataset} root must be a folder path (str or Path), got {root!r}")
    root = Path(root)
    if not root.exists():
        raise MissingResourceError(f"no {dataset} data at {root}: the folder does not exist (expected {layout})")
    if not root.is_dir():
        raise InputError(f"the {dataset} root {root} is not a folder (expected {layout})")
    return root


def _check_limit(limit: Any) -> int | None:
    if limit is None:
        return None
    if not isinstance(limit, numbers.Integral) or isinstance(limit, bool) or limit < 1:
        raise InputError(f"limit must be a positive int (the number of volumes) or None, got {limit!r}")
    return int(limit)


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _min_max(x: torch.Tensor, what: str) -> tuple[torch.Tensor, float, float]:
    """``(x - min) / (max - min)`` over the whole tensor, clamped against rounding; and (min, max)."""
    low, high = float(x.min()), float(x.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InputError(f"{what} holds NaN or infinite values")
    if high <= low:
        raise InputError(f"{what} is constant ({low:g}): it cannot be min-max normalised")
    scaled = ((x.to(torch.float64) - low) / (high - low)).clamp_(0.0, 1.0)
    return scaled.to(torch.float32).contiguous(), low, high


# --------------------------------------------------------------------------------------------------
# LIDC-IDRI


@dataclass(frozen=True)
class _LidcSeries:
    patient: str
    folder: Path
    files: tuple[Path, ...]


def _lidc_patient_folders(root: Path) -> tuple[Path, list[Path]]:
    def patients(folder: Path) -> list[Path]:
        return [p for p in _visible(folder) if p.is_dir() and p.name.startswith(_LIDC_PREFIX)]

    found = patients(root)
    if not found and (root / "LIDC-IDRI").is_dir():  # the TCIA manifest folder holding LIDC-IDRI/
        root = root / "LIDC-IDRI"
        found = patients(root)
    if not found:
        raise InputError(f"{root} holds no {_LIDC_PREFIX}XXXX patient folders (expected {LIDC_LAYOUT})")
    return root, found


def _dicom_files(folder: Path) -> list[Path]:
    """The ``.dcm`` files of a series folder (the LIDC XML annotation files are not DICOM)."""
    return [p for p in _visible(folder) if p.is_file() and p.suffix.lower() == ".dcm"]


def _modality(file: Path) -> str:
    import pydicom

    try:
        ds = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["Modality"])
    except Exception as exc:  # pydicom raises many types for damaged files
        raise InputError(f"{file}: unreadable DICOM file ({type(exc).__name__}: {exc})") from None
    return str(ds.get("Modality", "") or "")


def _lidc_ct_series(patient: Path) -> _LidcSeries | None:
    """The patient's CT series with the most slices (ties: the first folder by name), or None
    when the patient has image series but no CT one."""
    series = []
    for study in (p for p in _visible(patient) if p.is_dir()):
        for folder in (p for p in _visible(study) if p.is_dir()):
            files = _dicom_files(folder)
            if files:
                series.append((folder, files))
    if not series:
        raise InputError(f"{patient} holds no <study>/<series>/*.dcm files (expected {LIDC_LAYOUT})")
    ct = [(folder, files) for folder, files in series if _modality(files[0]) == "CT"]
    if not ct:
        return None
    folder, files = max(ct, key=lambda item: len(item[1]))  # max keeps the first of equal counts
    return _LidcSeries(patient.name, folder, tuple(files))


def _load_lidc(series: _LidcSeries, size: int) -> ImageVolume:
    study = read_dicom_series(list(series.files))
    if study.modality != "CT":
        raise InputError(f"{series.folder}: expected a CT series, read Modality {study.modality}")
    resampled = resample_slices(study.voxels, size)
    images, low, high = _min_max(resampled, f"the CT volume of {series.folder}")
    meta = {
        "dataset": "LIDC-IDRI",
        "patient": series.patient,
        "series_uid": study.source.get("series_uid", ""),
        "series_folder": str(series.folder),
        "source_shape": list(study.shape),
        "spacing_mm": list(study.spacing),
        "normalisation": (f"axial slices resampled to {size}x{size} (shorter side scaled, antialiased "
                          "bilinear, centre crop), then (HU - low) / (high - low) over the volume"),
        "low": low,
        "high": high,
    }
    return ImageVolume(series.patient, images, series.folder, meta)


def lidc_volumes(root: str | Path, *, size: int = 320, limit: int | None = None) -> DatasetItems:
    """LIDC-IDRI, as downloaded from TCIA, as normalised CT volumes (Song et al.'s protocol).

    Layout: ``root/LIDC-IDRI-XXXX/<study folder>/<series folder>/*.dcm`` (UID-named or the NBIA
    retriever's descriptive folder names; ``root`` may also be the folder that holds ``LIDC-IDRI/``).
    Only ``.dcm`` files are read (a series folder's XML annotation file is not). Per patient, in
    patient order: the CT series with the most ``.dcm`` files (series of other modalities, such as
    the DX / CR radiographs, are never read; ties go to the first series folder by name), read with
    :func:`medrecon.io.dicom_read.read_dicom_series` (HU, slices ordered along the slice normal). A
    patient without a CT series is skipped with a warning.

    Normalisation: the axial slices are resampled to ``size x size``
    (:func:`medrecon.priors.normalisation.resample_slices`), then the resampled volume is min-max
    normalised, ``(v - min) / (max - min)`` over all its voxels, so that it spans exactly [0, 1]
    (``meta["low"]`` and ``meta["high"]`` are that min and max in HU).

    Args:
        size: the side of the resampled slices (Song et al.: 320).
        limit: the number of patients (with a CT series) to take, in patient order; None for all.

    Returns :class:`DatasetItems` of :class:`ImageVolume` (``images`` float32 ``(S, 1, size,
    size)``, ``path`` the series folder). The series are chosen when this is called (one header
    read per series); the volumes are read when the items are.
    """
    root = _check_root(root, "LIDC-IDRI", LIDC_LAYOUT)
    limit = _check_limit(limit)
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 8:
        raise InputError(f"size must be an int >= 8 (the side of the resampled slices), got {size!r}")
    root, patients = _lidc_patient_folders(root)
    chosen, without_ct = [], []
    for patient in patients:
        series = _lidc_ct_series(patient)
        if series is None:
            without_ct.append(patient.name)
            continue
        chosen.append(series)
        if limit is not None and len(chosen) == limit:
            break
    if without_ct:
        warnings.warn(f"LIDC-IDRI: skipped {len(without_ct)} patient(s) without a CT series in {root}: "
                      f"{', '.join(without_ct[:10])}{', ...' if len(without_ct) > 10 else ''}", stacklevel=2)
    if not chosen:
        raise InputError(f"no CT series in {root}: its patient folders hold only other modalities "
                         f"(expected {LIDC_LAYOUT} with CT series)")
    size = int(size)
    return DatasetItems("LIDC-IDRI", root, chosen, lambda series: _load_lidc(series, size))


# --------------------------------------------------------------------------------------------------
# BraTS


def _brats_file(case: Path, modality: str) -> Path | None:
    matches = [p for p in _visible(case) if p.is_file()
               and (p.name.endswith(f"_{modality}.nii.gz") or p.name.endswith(f"_{modality}.nii"))]
    if len(matches) > 1:
        raise InputError(f"{case} holds {len(matches)} {modality} files ({', '.join(p.name for p in matches)}); "
                         f"expected one (layout {BRATS_LAYOUT})")
    return matches[0] if matches else None


def _load_brats(file: Path, case: str, modality: str) -> ImageVolume:
    # axial slices (the axis closest to superior); the reader refuses non-finite and constant
    # (e.g. all-zero) volumes, so there is a brain to crop to
    study = read_nifti(file, modality="MR")
    voxels = study.voxels
    if voxels.is_complex():
        raise InputError(f"{file}: BraTS volumes are real, this one is complex")
    voxels = voxels.to(torch.float64)
    nonzero = voxels != 0
    keep = nonzero.flatten(1).any(dim=1)  # slices with at least one non-zero voxel
    rows = torch.nonzero(nonzero.any(dim=2).any(dim=0)).flatten()
    cols = torch.nonzero(nonzero.any(dim=1).any(dim=0)).flatten()
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    cropped = voxels[keep][:, r0:r1, c0:c1]
    brain = voxels[nonzero]
    mean, std = float(brain.mean()), float(brain.std(correction=0))
    lo, hi = mean - BRATS_CLIP_STDS * std, mean + BRATS_CLIP_STDS * std
    clipped = cropped.clamp(lo, hi)
    images, low, high = _min_max(clipped, f"the {modality} volume {file}")
    meta = {
        "dataset": "BraTS",
        "case": case,
        "modality": modality,
        "file": str(file),
        "source_shape": list(study.shape),
        "kept_slices": torch.nonzero(keep).flatten().tolist(),
        "crop_rows": [r0, r1],
        "crop_columns": [c0, c1],
        "clip": [lo, hi],
        "normalisation": ("all-zero slices dropped, in-plane crop to the non-zero box of the volume, "
                          "clip to mean +- 6 std of the non-zero voxels (population std), then "
                          "(v - low) / (high - low) over the cropped volume"),
        "low": low,
        "high": high,
    }
    return ImageVolume(case, images[:, None], file, meta)


def brats_volumes(root: str | Path, *, modality: str = "t2", limit: int | None = None) -> DatasetItems:
    """BraTS NIfTI volumes of one modality, normalised as in Song et al.'s protocol.

    Layout: ``root/<case>/<case>_<modality>.nii.gz`` (or ``.nii``): the 2021 naming
    ``BraTS2021_00000/BraTS2021_00000_t2.nii.gz`` and the 2020 one
    ``BraTS20_Training_001/BraTS20_Training_001_t2.nii.gz``. Case folders are taken in name order;
    files in ``root`` (``name_mapping.csv``, ``survival_info.csv``) and folders without a
    ``*_<modality>.nii[.gz]`` file are skipped (the latter with a warning); ``*_t1`` never matches
    ``*_t1ce``.

    Normalisation, per volume (in this order): the axial slices (the array axis closest to superior,
    :func:`medrecon.io.nifti.read_nifti`); the slices with no non-zero voxel are dropped; the
    in-plane crop to the bounding box of the non-zero voxels of the whole volume (one box for all
    slices); clip to ``mean +- 6 std`` where mean and (population, ddof = 0) std are those of the
    **non-zero voxels** only (the zero background would lower both); then min-max,
    ``(v - min) / (max - min)`` over the cropped, clipped volume (background included), so it spans
    exactly [0, 1].

    Args:
        modality: ``t1``, ``t1ce``, ``t2`` (Song et al.) or ``flair``.
        limit: the number of cases to take, in case order; None for all.

    Returns :class:`DatasetItems` of :class:`ImageVolume` (``images`` float32 ``(S, 1, H, W)``, H and
    W the box of that volume; ``path`` the NIfTI file).
    """
    root = _check_root(root, "BraTS", BRATS_LAYOUT)
    limit = _check_limit(limit)
    if modality not in BRATS_MODALITIES:
        raise InputError(f"BraTS modality must be one of {', '.join(BRATS_MODALITIES)}, got {modality!r}")
    cases, without = [], []
    for folder in (p for p in _visible(root) if p.is_dir()):
        file = _brats_file(folder, modality)
        if file is None:
            without.append(folder.name)
            continue
        cases.append((file, folder.name))
        if limit is not None and len(cases) == limit:
            break
    if not cases:
        raise InputError(f"{root} holds no case folder with a *_{modality}.nii.gz file (expected {BRATS_LAYOUT})")
    if without:
        warnings.warn(f"BraTS: skipped {len(without)} folder(s) of {root} without a *_{modality}.nii[.gz] "
                      f"file: {', '.join(without[:10])}{', ...' if len(without) > 10 else ''}", stacklevel=2)
    return DatasetItems("BraTS", root, cases, lambda case: _load_brats(case[0], case[1], modality))


# --------------------------------------------------------------------------------------------------
# fastMRI


def _load_fastmri(file: Path, slices: slice | None) -> KspaceVolume:
    volume = read_fastmri_h5(file, slices=slices)
    if not volume.multicoil:
        raise InputError(f"{file} is a single-coil file; the fastMRI protocol evaluates multi-coil files "
                         f"(expected {FASTMRI_LAYOUT})")
    if volume.target is None or volume.target_kind != "rss":
        raise InputError(f"{file} has no 'reconstruction_rss' (a test or challenge file?): the fastMRI "
                         "protocol evaluates against it")
    if "max" not in volume.attrs:
        raise InputError(f"{file} has no 'max' attribute (the maximum of reconstruction_rss over the "
                         "volume), the protocol's data range")
    max_value = volume.attrs["max"]
    if isinstance(max_value, bool) or not isinstance(max_value, numbers.Real) \
            or not math.isfinite(max_value) or max_value <= 0:
        raise InputError(f"{file}: the 'max' attribute must be a finite positive number, got {max_value!r}")
    acquisition = volume.attrs.get("acquisition")
    return KspaceVolume(
        name=file.stem,
        fname=file.name,
        kspace=volume.kspace,
        target=volume.target[:, None],
        max_value=float(max_value),
        path=file,
        padding=(volume.padding_left, volume.padding_right),
        acquisition=None if acquisition is None else str(acquisition),
        meta=volume.metadata(),
    )


def fastmri_volumes(root: str | Path, *, limit: int | None = None, slices: slice | None = None) -> DatasetItems:
    """fastMRI multi-coil HDF5 files for evaluation (the DDS / fastMRI benchmark protocol).

    Layout: ``root/*.h5`` (the public ``multicoil_val`` / ``multicoil_train`` folders, files such as
    ``file1000000.h5`` or ``file_brain_AXT2_200_2000019.h5``), taken in name order. Each file is read
    with :func:`medrecon.io.kspace.read_fastmri_h5`; a file must be multi-coil with a
    ``reconstruction_rss`` target and a ``max`` attribute, else reading its item raises InputError.

    Args:
        limit: the number of files to take, in name order; None for all.
        slices: a slice range to read from every file (e.g. ``slice(10, 20)``); None for all. The
            data range stays the file's ``max``, which is over the whole volume.

    Returns :class:`DatasetItems` of :class:`KspaceVolume` (k-space ``(S, coils, H, W)``, target
    ``(S, 1, 320, 320)``, ``max_value``; :meth:`KspaceVolume.mask` gives the protocol's mask).
    """
    root = _check_root(root, "fastMRI", FASTMRI_LAYOUT)
    limit = _check_limit(limit)
    files = [p for p in _visible(root) if p.is_file() and p.suffix == ".h5"]
    if not files:
        raise InputError(f"{root} holds no .h5 files (expected {FASTMRI_LAYOUT})")
    if limit is not None:
        files = files[:limit]
    return DatasetItems("fastMRI", root, files, lambda file: _load_fastmri(file, slices))


def fastmri_mask(name: str | Path, shape: tuple[int, int], accel: int, *,
                 pattern: str = "equispaced_fraction", padding: tuple[int, int] | None = None) -> torch.Tensor:
    """The fastMRI protocol's ``(H, W)`` float32 0/1 column mask for the file ``name``.

    ``name`` is the file name as fastMRI's data loader passes it to its transforms, **with** its
    suffix (``file1000000.h5``; a path is reduced to its name); the seed is
    ``tuple(map(ord, name))``. The mask is :func:`medrecon.operators.masks.make_mask` (the
    ``fastmri`` package's ``EquispacedMaskFractionFunc`` for ``equispaced_fraction``,
    ``EquiSpacedMaskFunc`` for ``equispaced``, ``RandomMaskFunc`` for ``random``) with the centre
    fraction of the protocol: 0.08 at 4x, 0.04 at 8x (other accelerations are refused).
    ``padding = (left, right)``: zero the columns outside ``[left, right)``, as fastMRI's
    ``apply_mask(..., padding=...)`` does for the columns a file never acquired
    (:attr:`KspaceVolume.padding`; a right edge beyond the width zeroes nothing on that side, as
    with fastMRI's slicing).
    """
    if isinstance(name, Path):
        name = name.name
    if not isinstance(name, str) or not name:
        raise InputError(f"fastmri_mask needs the file name (e.g. 'file1000000.h5'), got {name!r}")
    if isinstance(accel, bool) or not isinstance(accel, numbers.Real) or accel not in FASTMRI_CENTER_FRACTIONS:
        raise InputError(f"the fastMRI protocol has accelerations {sorted(FASTMRI_CENTER_FRACTIONS)}, got {accel!r}")
    if pattern not in COLUMN_PATTERNS:
        raise InputError(f"fastMRI masks are column masks: pattern must be one of {', '.join(COLUMN_PATTERNS)}, "
                         f"got {pattern!r}")
    mask = make_mask(pattern, shape, int(accel), FASTMRI_CENTER_FRACTIONS[int(accel)], seed=name).clone()
    if padding is not None:
        width = mask.shape[-1]
        ok = (isinstance(padding, (tuple, list)) and len(padding) == 2
              and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in padding)
              and 0 <= padding[0] < padding[1] and padding[0] < width)
        if not ok:
            raise InputError(f"padding must be (left, right) with 0 <= left < right and left < {width} "
                             f"(the k-space width), got {padding!r}")
        mask[:, : padding[0]] = 0
        mask[:, padding[1]:] = 0
    return mask
