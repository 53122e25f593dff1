"""Retrospective simulation of measurements from fully sampled images.

There is no raw CT data or real multi-coil k-space among the data reachable here (docs/studies.md):
sinograms are simulated by forward projection and MR k-space by the FFT of magnitude images with
simulated coil maps, a smooth phase and noise. Every function takes per-item generators
(:mod:`medrecon.operators.noise`), so a slice's measurement does not depend on its batch.

The benchmark noise settings (docs/conventions.md, "Noise"): CT, Gaussian noise on the
sinogram with standard deviation 1% of the clean sinogram's maximum, per slice; MR, complex
Gaussian noise of standard deviation 0.02 (per complex value) on the orthonormal k-space of the
image normalised to [0, 1], drawn once per slice on the full k-space before masking, so the same
draw serves every acceleration.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import torch

from medrecon.acquisition import acquisition_for_study, acquisition_from_dict, slice_generators
from medrecon.errors import InputError
from medrecon.io.atomic import atomic_output
from medrecon.io.kspace import read_fastmri_h5, write_fastmri_h5
from medrecon.io.noncartesian import NonCartesianData, open_h5, read_noncartesian_h5, write_noncartesian_h5
from medrecon.io.validation import PIXEL_SPACING_MM, SLICE_SPACING_MM, check_finite, check_range
from medrecon.operators import add_log_poisson_noise, geometry_from_dict
from medrecon.operators.base import LinearOperator, complex_dtype_of
from medrecon.operators.mri import MultiCoilMRI, SingleCoilMRI
from medrecon.operators.noise import add_gaussian_noise, as_generator_list, randn_per_item

CT_NOISE_REL = 0.01
MR_NOISE_SIGMA = 0.02


def smooth_phase(shape: tuple[int, int], generator: torch.Generator, *, max_radians: float = math.pi / 2) -> torch.Tensor:
    """A smooth random phase map ``(H, W)`` in radians: a random quadratic surface over the field of
    view scaled to at most ``max_radians`` in magnitude (as body and coil phase vary slowly)."""
    h, w = shape
    yy = torch.linspace(-1, 1, h, dtype=torch.float64)[:, None]
    xx = torch.linspace(-1, 1, w, dtype=torch.float64)[None, :]
    coeffs = torch.rand(6, generator=generator, dtype=torch.float64, device=generator.device).cpu() * 2 - 1
    basis = [torch.ones(h, w, dtype=torch.float64), yy.expand(h, w), xx.expand(h, w), yy * xx, yy**2 - 1 / 3, xx**2 - 1 / 3]
    phase = sum(c * b for c, b in zip(coeffs, basis))
    return phase * (max_radians / phase.abs().max().clamp_min(1e-12))


def complex_image(magnitude: torch.Tensor, generators, *, with_phase: bool = True) -> torch.Tensor:
    """``(B, 1, H, W)`` real magnitudes -> complex images, with one smooth phase per item."""
    if magnitude.is_complex() or magnitude.ndim != 4 or magnitude.shape[1] != 1:
        raise InputError(f"expected real magnitude images (B, 1, H, W), got {tuple(magnitude.shape)} {magnitude.dtype}")
    out = magnitude.to(complex_dtype_of(magnitude.dtype))
    if not with_phase:
        return out
    gens = as_generator_list(generators, magnitude.shape[0])
    phases = torch.stack([smooth_phase(magnitude.shape[-2:], g) for g in gens])[:, None]
    return out * torch.exp(1j * phases).to(device=out.device, dtype=out.dtype)


def simulate_sinogram(op: LinearOperator, image: torch.Tensor, generators, *, noise_rel: float = 0.0) -> torch.Tensor:
    """Sinograms ``A x`` plus Gaussian noise of ``noise_rel`` times each slice's clean maximum."""
    clean = op(image)
    if noise_rel == 0:
        return clean
    if noise_rel < 0:
        raise InputError(f"noise_rel must be >= 0, got {noise_rel}")
    peak = clean.reshape(clean.shape[0], -1).amax(dim=1)
    return add_gaussian_noise(clean, noise_rel * peak, generators)


def simulate_kspace(
    op: SingleCoilMRI | MultiCoilMRI, image: torch.Tensor, generators, *, noise_sigma: float = 0.0
) -> torch.Tensor:
    """k-space ``A x`` plus complex Gaussian noise of ``noise_sigma`` per complex value: Cartesian
    data draw it on the full k-space (all coils) and mask it; non-Cartesian data on every sample."""
    clean = op(image)
    if noise_sigma == 0:
        return clean
    if noise_sigma < 0:
        raise InputError(f"noise_sigma must be >= 0, got {noise_sigma}")
    noise = randn_per_item(clean, generators)
    mask = getattr(op, "mask", None)
    if mask is not None:
        noise = mask.to(device=clean.device, dtype=clean.real.dtype) * noise
    return clean + noise_sigma * noise





# --------------------------------------------------------------------------------------------------
# whole studies -> saved measurements (``medrecon simulate``)

ACQUISITION_FILE = "acquisition.json"
SINOGRAM_FILE = "sinogram.h5"
KSPACE_FILE = "kspace.h5"
NONCARTESIAN_FILE = "kspace_noncartesian.h5"


def hu_to_attenuation(hu: torch.Tensor, mu_water_per_mm: float) -> torch.Tensor:
    """CT numbers to linear attenuation (1/mm): ``mu_water (1 + HU / 1000)``, at least 0."""
    return (mu_water_per_mm * (1.0 + hu / 1000.0)).clamp_min(0.0)


def attenuation_to_hu(mu: torch.Tensor, mu_water_per_mm: float) -> torch.Tensor:
    """Inverse of :func:`hu_to_attenuation` (without the clamp)."""
    return 1000.0 * (mu / mu_water_per_mm - 1.0)


def simulate_ct_study(study, acquisition, *, batch_size: int = 16) -> torch.Tensor:
    """Sinograms ``(S, 1, n_angles, n_det)`` of a CT study (HU) under a :class:`CTAcquisition`.

    The study's slices must have the geometry's image shape; line integrals are dimensionless
    (attenuation in 1/mm times lengths in mm, so the geometry's pixel size should be the study's).
    """
    if study.modality != "CT":
        raise InputError(f"CT simulation needs a CT study, got {study.modality}")
    op = acquisition.operator()
    if tuple(study.shape[1:]) != tuple(op.geometry.image_shape):
        raise InputError(
            f"the study's slices are {tuple(study.shape[1:])} but the geometry is for {op.geometry.image_shape}"
        )
    out = []
    for start in range(0, study.shape[0], batch_size):
        index = range(start, min(start + batch_size, study.shape[0]))
        mu = hu_to_attenuation(study.voxels[start : index.stop].float()[:, None], acquisition.mu_water_per_mm)
        gens = slice_generators(acquisition.seed, index, "noise")
        if acquisition.noise == "gaussian":
            out.append(simulate_sinogram(op, mu, gens, noise_rel=acquisition.noise_rel))
        elif acquisition.noise == "poisson":
            out.append(add_log_poisson_noise(op(mu), acquisition.photons, gens))
        else:
            out.append(op(mu))
    return torch.cat(out)


def simulate_mr_study(study, acquisition, *, batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-coil k-space ``(S, coils, H, W)`` (non-Cartesian: ``(S, coils, K)``) of an MR study
    under an :class:`MRAcquisition`, and the reference ``(S, H, W)``: the magnitude image scaled by
    ``1 / scale`` (the RSS of the fully sampled coil images, as the maps are normalised)."""
    if study.modality != "MR":
        raise InputError(f"MR simulation needs an MR study, got {study.modality}")
    shape = tuple(study.shape[1:])
    if acquisition.non_cartesian and tuple(acquisition.image_shape) != shape:
        raise InputError(f"the study's slices are {shape} but the trajectory is for {tuple(acquisition.image_shape)}")
    op = acquisition.operator(shape)
    reference = (study.voxels.abs() if study.voxels.is_complex() else study.voxels).float() / acquisition.scale
    out = []
    for start in range(0, study.shape[0], batch_size):
        index = range(start, min(start + batch_size, study.shape[0]))
        image = complex_image(
            reference[start : index.stop][:, None],
            slice_generators(acquisition.seed, index, "phase"),
            with_phase=acquisition.smooth_phase,
        )
        gens = slice_generators(acquisition.seed, index, "noise")
        out.append(simulate_kspace(op, image, gens, noise_sigma=acquisition.noise_sigma))
    return torch.cat(out), reference


def _study_record(study) -> dict:
    return {
        "name": study.name,
        "modality": study.modality,
        "shape": list(study.shape),
        "affine": study.affine.tolist(),
        "source_format": study.source.get("format"),
        "source_path": study.source.get("path"),
        **({"validation": study.source["validation"]} if study.source.get("validation") else {}),
    }


def save_measurements(out_dir, study, acquisition, measurements, *, reference=None, overwrite: bool = False):
    """Write ``acquisition.json`` (the acquisition and the study's geometry) and the data
    (``sinogram.h5`` with dataset ``sinogram`` ``(S, n_angles, n_det)``; ``kspace.h5`` in the
    fastMRI layout with the reference as ``reconstruction_rss``; non-Cartesian k-space as
    ``kspace_noncartesian.h5`` in medrecon's layout, :mod:`medrecon.io.noncartesian`, with the
    trajectory, the simulated coil maps and the reference) into a new folder, atomically."""
    with atomic_output(out_dir, overwrite=overwrite, folder=True) as staging:
        record = {"acquisition": acquisition.to_dict(), "study": _study_record(study)}
        (staging / ACQUISITION_FILE).write_text(json.dumps(record, indent=2))
        if acquisition.kind == "ct":
            with h5py.File(staging / SINOGRAM_FILE, "w") as f:
                f.create_dataset("sinogram", data=measurements[:, 0].cpu().numpy().astype("float32"), compression="gzip")
                f.attrs["units"] = "line integrals of linear attenuation (dimensionless)"
        elif acquisition.non_cartesian:
            _write_noncartesian(staging / NONCARTESIAN_FILE, study, acquisition, measurements, reference)
        else:
            write_fastmri_h5(
                staging / KSPACE_FILE,
                measurements.cpu(),
                target=None if reference is None else reference.cpu(),
                attrs={"acquisition": "medrecon-simulated", "patient_id": study.name},
            )
    return Path(out_dir)


def _write_noncartesian(path, study, acquisition, measurements, reference) -> None:
    shape = tuple(acquisition.image_shape)
    trajectory = acquisition.trajectory()
    data = NonCartesianData(
        kspace=measurements.cpu().to(torch.complex64),
        coords=trajectory.make(shape),
        image_shape=shape,
        coil_maps=acquisition.coil_maps(shape),
        density=None,
        reference=None if reference is None else reference.cpu().float(),
        attrs={"trajectory": trajectory.to_dict(), "scale": acquisition.scale, "source": study.name,
               **({"readout_length": trajectory.readout or 2 * max(shape)} if trajectory.kind == "radial" else {})},
    )
    write_noncartesian_h5(path, data)


def load_measurements(folder):
    """``(acquisition, study record, measurements)`` from a folder written by :func:`save_measurements`:
    CT sinograms ``(S, 1, n_angles, n_det)``, MR k-space ``(S, coils, H, W)`` (non-Cartesian
    ``(S, coils, K)``)."""
    folder = Path(folder)
    record_path = folder / ACQUISITION_FILE
    if not record_path.is_file():
        raise InputError(f"{folder} holds no {ACQUISITION_FILE}: not a medrecon simulation folder")
    try:
        record = json.loads(record_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{record_path}: not a readable JSON record ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(record, dict) or not isinstance(record.get("acquisition"), dict):
        raise InputError(f"{record_path}: no 'acquisition' record")
    try:
        acquisition = acquisition_from_dict(record["acquisition"])
    except InputError as exc:
        raise InputError(f"{record_path}: {exc}") from None
    study = _checked_study_record(record.get("study"), record_path)
    if acquisition.kind == "ct":
        data = _read_sinogram(folder / SINOGRAM_FILE, acquisition)
    elif acquisition.non_cartesian:
        data = read_noncartesian_h5(folder / NONCARTESIAN_FILE).kspace
    else:
        data = read_fastmri_h5(folder / KSPACE_FILE).kspace
    if data.shape[0] != study["shape"][0]:
        raise InputError(f"{folder}: the measurements hold {data.shape[0]} slices, the record's study {study['shape'][0]}")
    return acquisition, study, data


def _checked_study_record(study, path: Path) -> dict:
    """The ``study`` entry of a simulation record: a name, a shape and a finite affine whose voxel
    sizes lie within :mod:`medrecon.io.validation`'s limits."""
    if not isinstance(study, dict):
        raise InputError(f"{path}: no 'study' record")
    shape, affine = study.get("shape"), study.get("affine")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(n, int) and n >= 1 for n in shape)):
        raise InputError(f"{path}: study shape must be three positive whole numbers, got {str(shape)[:60]}")
    try:
        matrix = np.asarray(affine, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = np.zeros(0)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise InputError(f"{path}: study affine must be a finite 4x4 matrix")
    norms = np.linalg.norm(matrix[:3, :3], axis=0)
    for value, axis, limits in zip(norms, ("column", "row", "slice"), (PIXEL_SPACING_MM, PIXEL_SPACING_MM, SLICE_SPACING_MM),
                                   strict=True):
        check_range(float(value), limits, path, f"the study affine's {axis} spacing")
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-6 * float(np.prod(norms)):
        raise InputError(f"{path}: the study affine has collinear axes")
    return {**study, "name": str(study.get("name") or path.parent.name)}


def _read_sinogram(path: Path, acquisition) -> torch.Tensor:
    """The ``sinogram`` dataset ``(S, n_angles, n_det)`` of a simulation folder, checked against the
    record's geometry and for finite values, as ``(S, 1, n_angles, n_det)``."""
    with open_h5(path) as f:
        ds = f.get("sinogram")
        if not isinstance(ds, h5py.Dataset) or ds.dtype.kind != "f" or ds.ndim != 3 or ds.shape[0] < 1:
            got = f"{ds.dtype} {ds.shape}" if isinstance(ds, h5py.Dataset) else "none"
            raise InputError(f"{path}: 'sinogram' must be real (slices, views, detectors), got {got}")
        data = np.asarray(ds[()], dtype=np.float32)
    views, detectors = geometry_from_dict(acquisition.geometry).sinogram_shape
    if data.shape[1:] != (views, detectors):
        raise InputError(f"{path}: 'sinogram' has {data.shape[1]} views of {data.shape[2]} detectors, the record's "
                         f"geometry {views} of {detectors}")
    check_finite(data, path, "'sinogram'")
    return torch.from_numpy(data)[:, None]


def simulate(study, acquisition) -> torch.Tensor:
    """The measurements of ``study`` under ``acquisition``: CT sinograms ``(S, 1, n_angles, n_det)``
    of linear attenuation, or MR multi-coil k-space ``(S, coils, H, W)`` of the image divided by
    ``acquisition.scale``. Slice ``k``'s noise and phase come from ``(acquisition.seed, k)``."""
    if acquisition.kind == "ct":
        return simulate_ct_study(study, acquisition)
    return simulate_mr_study(study, acquisition)[0]


@torch.no_grad()
def simulate_study(study, options, out_dir, *, overwrite: bool = False) -> str:
    """``medrecon simulate``'s work: the acquisition ``options`` (an
    :class:`~medrecon.acquisition.AcquisitionOptions`) ask for, simulated of ``study`` and saved
    with its record in the new folder ``out_dir`` (:func:`save_measurements`). Returns a one-line summary."""
    acquisition = acquisition_for_study(study, options)
    if acquisition.kind == "ct":
        measurements, reference = simulate_ct_study(study, acquisition), None
    else:
        measurements, reference = simulate_mr_study(study, acquisition)
    out = save_measurements(out_dir, study, acquisition, measurements, reference=reference, overwrite=overwrite)
    what = f", {acquisition.trajectory().describe(tuple(study.shape[1:]))}" if getattr(acquisition, "non_cartesian", False) else ""
    return f"wrote {out}: {study.shape[0]} slices of {study.modality}, {tuple(measurements.shape[1:])} each{what}"
