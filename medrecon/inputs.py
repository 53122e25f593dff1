"""What a reconstruction starts from: a file or folder turned into one :class:`ReconstructionInput`.

An input is one of four kinds (:func:`input_kind`):

- ``study``: an image study (DICOM series folder, NIfTI, NRRD); the acquisition is simulated
  from :class:`~medrecon.acquisition.AcquisitionOptions`, and the study is the reference;
- ``simulation``: a folder written by ``medrecon simulate`` (``acquisition.json`` + sinogram /
  k-space): the acquisition and the data are read;
- ``fastmri``: a fastMRI multi-coil HDF5 file: the k-space is read, the mask is the set of sampled
  columns, coil maps come from ESPIRiT, and ``reconstruction_rss`` (when there) is the reference;
- ``noncartesian``: non-Cartesian raw k-space, an ISMRMRD file or medrecon's own layout
  (:mod:`medrecon.io.noncartesian`): the trajectory is read, coil maps and density weights are the
  file's or estimated (ESPIRiT on the gridded k-space centre; Pipe-Menon).

A study whose matrix is larger than the prior's is reconstructed at its own pixel size with the
prior's denoiser on its own grid (``grid="native"``, :mod:`medrecon.multiresolution`, the default
``auto``); ``grid="prior"`` reconstructs on the prior's grid (:mod:`medrecon.grid`) and resamples the
result back; ``grid="input"`` runs the prior at the study's own size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medrecon.acquisition import AcquisitionOptions, acquisition_for_study
from medrecon.errors import InputError
from medrecon.grid import GridMap
from medrecon.io.dicom_read import headers_geometry
from medrecon.io.kspace import read_fastmri_h5
from medrecon.io.mrd import read_ismrmrd
from medrecon.io.noncartesian import pixel_mm, read_noncartesian_h5, sniff_noncartesian
from medrecon.io.studies import load_study, study_format
from medrecon.operators import espirit_maps, geometry_from_dict
from medrecon.priors.normalisation import Normalisation
from medrecon.reconstruct import Problem, problem_from_acquisition, problem_from_kspace, problem_from_noncartesian
from medrecon.simulation import KSPACE_FILE, NONCARTESIAN_FILE, load_measurements, simulate
from medrecon.study import Study

KINDS = ("study", "simulation", "fastmri", "noncartesian")
GRIDS = ("auto", "prior", "native", "input")
#: What ``auto`` means for each modality: measured in docs/benchmarks.md ("Studies of another matrix").
AUTO_GRID = {"MR": "native", "CT": "native"}


@dataclass
class ReconstructionInput:
    """One input, ready to reconstruct.

    ``problem``: in the prior's normalised units (:class:`~medrecon.reconstruct.Problem`);
    ``prior``: the loaded prior it is reconstructed with; ``study``: the geometry the output is
    written with (None for fastMRI input, written as fastMRI HDF5); ``reference``: ``(S, H, W)`` in
    native units on the study's grid, or None; ``acquisition``: the record of what was measured.
    """

    kind: str
    path: Path
    problem: Problem
    prior: object
    study: Study | None
    reference: torch.Tensor | None
    acquisition: dict
    multiresolution: bool = False  # the prior runs on its own grid, the rest on the study's (medrecon.multiresolution)
    baseline_problem: Problem | None = None  # the same data at the study's pixel size, when ``problem`` is on the prior's grid

    @property
    def native_problem(self) -> Problem:
        """The problem at the study's own pixel size: what the classical baselines solve."""
        return self.baseline_problem if self.baseline_problem is not None else self.problem


def input_kind(path: str | Path) -> str:
    """One of :data:`KINDS` for ``path`` (an :class:`InputError` if it does not exist)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such input: {path}")
    if path.is_dir() and (path / "acquisition.json").is_file():
        return "simulation"
    if path.is_file() and path.name.lower().endswith((".h5", ".hdf5", ".mrd")):
        return "noncartesian" if sniff_noncartesian(path) else "fastmri"
    return "study"


def slice_range(text: str | None, n: int) -> slice:
    """``"START:STOP"`` (either side may be empty; None: all) checked against ``n`` slices."""
    if text is None:
        return slice(0, n)
    try:
        start, stop = (int(v) if v else None for v in text.split(":"))
    except ValueError:
        raise InputError(f"--slices must look like START:STOP, got {text!r}") from None
    sel = slice(start or 0, n if stop is None else stop)
    if not (0 <= sel.start < sel.stop <= n):
        raise InputError(f"--slices {text} is outside the study's {n} slices")
    return sel


def subset(study: Study, sel: slice) -> Study:
    """Slices ``sel`` of a study, with the affine's origin moved and per-slice DICOM headers kept;
    a DICOM study's affine is then that of the kept headers (for a series with uneven spacing its
    mean step is the subset's own, so the subset writes back with each slice's own position)."""
    affine = study.affine.copy()
    affine[:3, 3] = affine[:3, 3] + sel.start * affine[:3, 2]
    source = dict(study.source)
    if isinstance(source.get("headers"), list) and len(source["headers"]) == study.shape[0]:
        source["headers"] = source["headers"][sel]
        affine = headers_geometry(source["headers"])[1]
    return dataclasses.replace(study, voxels=study.voxels[sel].clone(), affine=affine,
                               name=f"{study.name}[{sel.start}:{sel.stop}]", source=source)


def load_input_study(path: str | Path, *, modality: str | None = None, slices: str | None = None) -> Study:
    """The study at ``path`` (a DICOM folder, NIfTI or NRRD), restricted to ``slices``
    (``"START:STOP"``); ``modality`` (``CT``/``MR``, any case) must agree with what the file records
    (DICOM's tag, the sidecar or header tag medrecon writes) and is required where it records nothing."""
    modality = modality.upper() if modality else None
    if study_format(path) == "dicom":
        study = load_study(path)
        if modality and modality != study.modality:
            raise InputError(f"--modality {modality} contradicts the DICOM Modality {study.modality}")
    else:
        try:
            study = load_study(path, modality=modality)
        except InputError as exc:
            if "does not record the modality" in str(exc):
                raise InputError(f"{path}: give --modality CT or MR (the file does not record it)") from None
            raise
    sel = slice_range(slices, study.shape[0])
    return study if sel == slice(0, study.shape[0]) else subset(study, sel)


def _grid(grid: str, shape, spacing, prior, modality: str, *, non_cartesian: bool = False) -> tuple[GridMap | None, bool]:
    """``(map, multiresolution)``: the map from the study's grid onto the reconstruction grid (None:
    the study's own) and whether the prior then runs on its own grid (:mod:`medrecon.multiresolution`).
    ``prior``: the prior's grid; ``native``: the study's pixel size, its field of view made square
    (multi-resolution where that square is larger than the prior's images, else as ``prior``);
    ``input``: the prior at the study's size; ``auto``: :data:`AUTO_GRID`."""
    if grid not in GRIDS:
        raise InputError(f"grid must be one of {GRIDS}, got {grid!r}")
    size = prior.card.image_size
    if grid == "auto":
        grid = AUTO_GRID[modality]
    if grid == "input" or tuple(shape) == (size, size):
        return None, False
    if grid == "native":
        if non_cartesian:  # its own image grid, always
            return None, shape[0] == shape[1] and shape[0] > size
        side = max(GridMap.for_study(shape, spacing, size).square_shape)
        if side > size:
            native = GridMap.for_study(shape, spacing, side)
            return (None if native.identity else native), True
    return GridMap.for_study(shape, spacing, size), False


def _check_modality(path: Path, modality: str | None, actual: str) -> None:
    if modality and modality.upper() != actual:
        raise InputError(f"{path} holds {actual} data, not --modality {modality.upper()}")


def load_input(path: str | Path, prior_for: Callable[[str], object], *, grid: str = "auto", modality: str | None = None,
               slices: str | None = None, acquisition: AcquisitionOptions | None = None,
               window: tuple[float, float] | None = None) -> ReconstructionInput:
    """The :class:`ReconstructionInput` of ``path`` (module docstring). ``prior_for(modality)``
    loads the prior for the data's modality; ``slices``: ``"START:STOP"``; ``acquisition``: what to
    simulate of an image study (default :class:`~medrecon.acquisition.AcquisitionOptions`);
    ``window``: CT's HU window (default: :func:`ct_window`)."""
    path = Path(path)
    kind = input_kind(path)
    if kind == "study":
        return _from_study(path, prior_for, grid, modality, slices, acquisition or AcquisitionOptions(), window)
    if kind == "simulation":
        return _from_simulation(path, prior_for, grid, modality, slices, window)
    if kind == "noncartesian":
        return _from_noncartesian(path, prior_for, grid, modality, slices)
    return _from_fastmri(path, prior_for, modality, slices)


def ct_window(card, window: tuple[float, float] | None, voxels: torch.Tensor | None = None) -> tuple[float, float] | None:
    """The HU window ``(low, high)`` that CT data are mapped to the prior's ``[0, 1]`` with: ``window``
    when given; else the window the prior's card states (``hu-window``); for a card of per-volume
    min-max (Song et al.'s LIDC prior) the volume's own ``[min, max]`` (``voxels`` in HU); else None
    (a card that leaves the window to the user: the problem's check refuses it, naming ``--window``)."""
    if window is not None:
        return float(window[0]), float(window[1])
    stated = card.normalisation or {}
    if stated.get("kind") not in ("hu-window", "volume-minmax") or (voxels is None and stated.get("kind") != "hu-window"):
        return None
    try:
        normalisation = Normalisation.from_dict(stated)
    except InputError:
        return None  # a card this version cannot read: the problem's check says so
    return normalisation.window_for(voxels)


def _from_study(path, prior_for, grid, modality, slices, options, window=None) -> ReconstructionInput:
    study = load_input_study(path, modality=modality, slices=slices)
    prior = prior_for(study.modality)
    acquisition = acquisition_for_study(study, options)
    gridmap, multiresolution = _grid(grid, study.shape[1:], (study.spacing[1], study.spacing[0]), prior, study.modality,
                                     non_cartesian=getattr(acquisition, "non_cartesian", False))
    if getattr(acquisition, "non_cartesian", False) and gridmap is not None:
        raise InputError(f"a {acquisition.sampling['kind']} acquisition is simulated and reconstructed on the study's own "
                         f"{study.shape[1]}x{study.shape[2]} grid, not the prior's {prior.card.image_size}x"
                         f"{prior.card.image_size}: pass --grid input, or resample the study first")
    measured = study
    if gridmap is not None and study.modality == "MR":  # k-space of the padded square study (medrecon.grid)
        measured = dataclasses.replace(study, voxels=gridmap.pad_images(study.voxels, 0.0))
    window = ct_window(prior.card, window, study.voxels) if study.modality == "CT" else None
    measurements = simulate(measured, acquisition)
    problem = problem_from_acquisition(acquisition, measurements, grid=gridmap, window=window)
    native = None
    if gridmap is not None and not multiresolution:  # the baselines at the study's pixel size all the same
        native_map, _ = _grid("native", study.shape[1:], (study.spacing[1], study.spacing[0]), prior, study.modality)
        if native_map != gridmap:  # (a study smaller than the prior's images is reconstructed on the prior's grid)
            native = problem_from_acquisition(acquisition, measurements, grid=native_map, window=window)
    reference = (study.voxels.abs() if study.voxels.is_complex() else study.voxels).float()
    return ReconstructionInput("study", path, problem, prior, study, reference, acquisition.to_dict(), multiresolution,
                               native)


def _from_simulation(path, prior_for, grid, modality, slices, window=None) -> ReconstructionInput:
    acquisition, study_record, measurements = load_measurements(path)
    data_modality = "CT" if acquisition.kind == "ct" else "MR"
    _check_modality(path, modality, data_modality)
    prior = prior_for(data_modality)
    sel = slice_range(slices, measurements.shape[0])
    measurements = measurements[sel]
    non_cartesian = getattr(acquisition, "non_cartesian", False)
    reference = None
    if acquisition.kind == "mr":
        target = (read_noncartesian_h5(path / NONCARTESIAN_FILE).reference if non_cartesian
                  else read_fastmri_h5(path / KSPACE_FILE).target)
        if target is not None:
            reference = target[sel].float() * acquisition.scale
    affine = np.asarray(study_record["affine"], dtype=float)
    affine[:3, 3] = affine[:3, 3] + sel.start * affine[:3, 2]
    if acquisition.kind == "ct":
        shape = tuple(geometry_from_dict(acquisition.geometry).image_shape)
    else:
        shape = tuple(acquisition.image_shape) if non_cartesian else tuple(measurements.shape[-2:])
    if tuple(study_record["shape"][1:]) != shape:
        raise InputError(f"{path}: the acquisition is for {shape[0]}x{shape[1]} images, the record's study is "
                         f"{study_record['shape'][1]}x{study_record['shape'][2]}")
    spacing = (float(np.linalg.norm(affine[:3, 1])), float(np.linalg.norm(affine[:3, 0])))
    gridmap, multiresolution = _grid(grid, shape, spacing, prior, data_modality, non_cartesian=non_cartesian)
    if non_cartesian and gridmap is not None:
        raise InputError(f"{path}: non-Cartesian k-space of {shape[0]}x{shape[1]} images is reconstructed on its own "
                         f"grid, not the prior's {prior.card.image_size}x{prior.card.image_size}: pass --grid input")
    if gridmap is not None and acquisition.kind == "mr" and gridmap.square_shape != shape:
        raise InputError(f"{path}: the simulated k-space is {shape[0]}x{shape[1]}, not square; reconstruct the study "
                         "itself (medrecon reconstruct STUDY pads it to a square before simulating), or use --grid input")
    window = ct_window(prior.card, window) if acquisition.kind == "ct" else None
    problem = problem_from_acquisition(acquisition, measurements, grid=gridmap, window=window)
    native = None
    if gridmap is not None and not multiresolution:  # the baselines at the study's pixel size all the same
        native_map, _ = _grid("native", shape, spacing, prior, data_modality)
        if native_map != gridmap:  # (a study smaller than the prior's images is reconstructed on the prior's grid)
            native = problem_from_acquisition(acquisition, measurements, grid=native_map, window=window)
    study = Study(torch.zeros((measurements.shape[0], *shape)), affine, data_modality, name=study_record["name"],
                  source={"format": "simulation", "path": str(path)})
    return ReconstructionInput("simulation", path, problem, prior, study, reference, acquisition.to_dict(),
                               multiresolution, native)


def _from_fastmri(path, prior_for, modality, slices) -> ReconstructionInput:
    _check_modality(path, modality, "MR")
    volume = read_fastmri_h5(path)
    kspace = volume.kspace
    if not volume.multicoil:
        raise InputError(f"{path} is single-coil k-space; medrecon reconstruct reads multi-coil fastMRI files")
    sel = slice_range(slices, kspace.shape[0])
    kspace = kspace[sel]
    sampled = (kspace.abs().sum(dim=(0, 1, 2)) > 0).to(torch.float32)  # sampled columns (phase encodes)
    if float(sampled.mean()) >= 1.0:
        raise InputError(f"{path} is fully sampled: there is nothing to reconstruct (undersample it with medrecon simulate)")
    problem = problem_from_kspace(kspace, espirit_maps(kspace), sampled[None, :].expand(kspace.shape[-2:]).contiguous())
    reference = None if volume.target is None else volume.target[sel].float()
    acquisition = {"kind": "fastmri", "file": str(path), "sampled_fraction": float(sampled.mean())}
    return ReconstructionInput("fastmri", path, problem, prior_for("MR"), None, reference, acquisition)


def _from_noncartesian(path, prior_for, grid, modality, slices) -> ReconstructionInput:
    """Raw non-Cartesian k-space: coil maps and density from the file where it has them, else
    estimated; the study is the image grid with 1 mm pixels unless the file's attributes give
    ``pixel_mm``. The output is in the k-space's own units (a magnitude image whose k-space the
    file holds), the units of the file's reference image too."""
    _check_modality(path, modality, "MR")
    if grid not in GRIDS:
        raise InputError(f"grid must be one of {GRIDS}, got {grid!r}")
    layout = sniff_noncartesian(path)
    read = read_ismrmrd if layout == "ismrmrd" else read_noncartesian_h5
    data = read(path)
    sel = slice_range(slices, data.kspace.shape[0])
    if sel != slice(0, data.kspace.shape[0]):
        data = read(path, slices=sel)
    problem = problem_from_noncartesian(data)
    acquisition = {"kind": "mr", "sampling": (data.attrs or {}).get("trajectory", {}), "file": str(path), "layout": layout,
                   "samples": int(data.kspace.shape[-1]), "coils": int(data.kspace.shape[1]),
                   "coil_maps": problem.description["coil_maps"],
                   "density": "the file's" if data.density is not None else "Pipe-Menon"}
    problem.description["acquisition"] = acquisition
    pixel = pixel_mm(data.attrs, path)
    h, w = data.image_shape
    study = Study(torch.zeros((data.kspace.shape[0], h, w)), np.diag([pixel, pixel, 1.0, 1.0]), "MR", name=path.stem,
                  source={"format": layout, "path": str(path)})
    reference = None if data.reference is None else data.reference.float()
    prior = prior_for("MR")
    _, multiresolution = _grid(grid, (h, w), (pixel, pixel), prior, "MR", non_cartesian=True)
    return ReconstructionInput("noncartesian", path, problem, prior, study, reference, acquisition, multiresolution)


__all__ = ["AUTO_GRID", "GRIDS", "KINDS", "ReconstructionInput", "ct_window", "input_kind", "load_input", "load_input_study",
           "slice_range", "subset"]
