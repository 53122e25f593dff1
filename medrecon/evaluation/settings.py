"""The evaluation settings of medrecon's own benchmarks: setting -> acquisition -> problem.

A :class:`Setting` is one acquisition of the benchmark tables (docs/benchmarks.md; the conventions are
those of docs/conventions.md): CT 23 parallel views (``uniform``) and 60 fan-beam views (full scan); MR 8
simulated coils with smooth phase and ``equispaced_fraction`` masks (seed ``"bench"``) at 4x and 8x;
each noiseless and noisy (CT Gaussian noise, std 1% of each slice's clean sinogram maximum; MR
complex Gaussian 0.02 per complex value of the orthonormal k-space; :mod:`medrecon.simulation`);
and the non-Cartesian MR settings (48 golden-angle radial spokes, a 16-interleave variable-density
spiral) through the NUFFT, noiseless.

:func:`evaluation_slices` picks the slices of a starter volume (normalised as the prior's card
says, resampled to its size); :func:`make_problem` simulates a setting's measurements of them and
returns the :class:`~medrecon.reconstruct.Problem` in those normalised units, with slice ``k``'s
noise and phase seeded from ``(seed, k)``. ``bench recon``, ``bench tune-samplers`` and ``reproduce
starter`` all go through here; the baselines are :func:`medrecon.evaluation.baselines.table_baselines`
with the weights of :func:`~medrecon.evaluation.baselines.tuned_setting`, the scores
:func:`medrecon.evaluation.scoring.score`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from medrecon.acquisition import slice_generators
from medrecon.data import load_starter
from medrecon.errors import InputError
from medrecon.grid import centre_block, crop_or_pad_kspace
from medrecon.operators import CTProjector, FanBeamGeometry, MultiCoilMRI, NonCartesianMRI, ParallelBeamGeometry, simulated_maps
from medrecon.operators.masks import CartesianSampling
from medrecon.operators.trajectories import Trajectory
from medrecon.priors.normalisation import Normalisation, resample_slices
from medrecon.reconstruct import Problem
from medrecon.simulation import CT_NOISE_REL, MR_NOISE_SIGMA, complex_image, simulate_kspace, simulate_sinogram

from .baselines import tuned_setting

#: The non-Cartesian benchmark acquisitions at 256x256 (both about 12,000 samples per coil, 8x below
#: Nyquist's ~400 spokes for radial): 48 golden-angle spokes of 256 samples; a variable-density
#: spiral of 16 interleaves at radial undersampling 4 (alpha 1.5).
NONCARTESIAN_TRAJECTORIES = {
    "radial48": {"kind": "radial", "spokes": 48, "angles": "golden"},
    "spiral16r4": {"kind": "spiral", "interleaves": 16, "undersampling": 4.0, "alpha": 1.5},
}
COILS = 8


@dataclass(frozen=True)
class Setting:
    """One row group of the tables: the acquisition and its noise."""

    name: str
    modality: str
    geometry: str = "parallel"  # CT
    views: int = 23  # CT
    accel: int = 4  # MR, Cartesian
    noisy: bool = False
    trajectory: str = "cartesian"  # MR: cartesian, or a key of NONCARTESIAN_TRAJECTORIES

    def tuned_key(self, matrix: int | None = None) -> str:
        """The ``TUNED_WEIGHTS`` setting whose weights the baselines use on ``matrix x matrix``
        images (None: the 256 settings)."""
        if self.modality == "CT":
            return tuned_setting("CT", self.noisy, views=self.views, matrix=matrix)
        if self.trajectory != "cartesian":
            return tuned_setting("MR", self.noisy, trajectory=NONCARTESIAN_TRAJECTORIES[self.trajectory]["kind"],
                                 matrix=matrix)
        return tuned_setting("MR", self.noisy, accel=self.accel, matrix=matrix)

    @property
    def non_cartesian(self) -> bool:
        return self.modality == "MR" and self.trajectory != "cartesian"


def noncartesian_trajectory(name: str):
    """The benchmark's radial or spiral :class:`~medrecon.operators.trajectories.Trajectory`."""
    if name not in NONCARTESIAN_TRAJECTORIES:
        raise InputError(f"unknown benchmark trajectory {name!r}; known: {sorted(NONCARTESIAN_TRAJECTORIES)}")
    return Trajectory.from_dict(NONCARTESIAN_TRAJECTORIES[name])


SETTINGS = (
    Setting("CT parallel 23 views", "CT", "parallel", 23),
    Setting("CT parallel 23 views, 1% noise", "CT", "parallel", 23, noisy=True),
    Setting("CT fan 60 views", "CT", "fan", 60),
    Setting("CT fan 60 views, 1% noise", "CT", "fan", 60, noisy=True),
    Setting("MR 8 coils 4x", "MR", accel=4),
    Setting("MR 8 coils 4x, noise 0.02", "MR", accel=4, noisy=True),
    Setting("MR 8 coils 8x", "MR", accel=8),
    Setting("MR 8 coils 8x, noise 0.02", "MR", accel=8, noisy=True),
    Setting("MR 8 coils radial 48 spokes", "MR", trajectory="radial48"),
    Setting("MR 8 coils spiral 16 interleaves R4", "MR", trajectory="spiral16r4"),
)

#: The training patients on which sampler presets are chosen (``bench tune-samplers``).
TRAINING_SOURCES = {"CT": "ct-lung2", "MR": "mr-brain1"}
#: The setting each preset task is chosen on (the non-Cartesian task on both trajectories).
TASK_SETTINGS = {"ct-clean": SETTINGS[0], "ct-noisy": SETTINGS[1], "mr-clean": SETTINGS[4], "mr-noisy": SETTINGS[5],
                 "mr-noncartesian-clean:radial48": SETTINGS[8], "mr-noncartesian-clean:spiral16r4": SETTINGS[9]}


def selected(name: str, only: list[str] | None) -> bool:
    """Whether setting ``name`` is chosen by ``--only``: a TEXT equal to a setting's name picks that
    setting alone, any other TEXT every setting whose name contains it."""
    if not only:
        return True
    exact = {o for o in only if o in {s.name for s in SETTINGS}}
    return name in exact or any(o in name for o in only if o not in exact)


def evaluation_slices(source_id: str, normalisation: dict, size: int, n_slices: int, starter: str | None) -> torch.Tensor:
    """``(n, 1, size, size)`` normalised slices evenly spaced through the middle 60% of a starter volume."""
    study = load_starter(source_id, starter)
    normalised = Normalisation.from_dict(normalisation).apply(study.voxels)
    depth = normalised.shape[0]
    index = np.unique(np.round(np.linspace(0.2, 0.8, n_slices) * (depth - 1)).astype(int))
    return resample_slices(normalised[index], size)


def matrix_slices(source_id: str, normalisation: dict, matrix: int, n_slices: int, starter: str | None) -> torch.Tensor:
    """``(n, 1, matrix, matrix)`` normalised slices of a study of another matrix than the prior's: the
    slices of :func:`evaluation_slices` at ``matrix`` where the study's in-plane matrix is at least
    that (ct-lung1's native 512x512), else at the study's own matrix, zero-padded to ``matrix`` (its
    own pixel size, a larger field of view: mr-brain2's 256x256 as a 320x320 series)."""
    study = load_starter(source_id, starter)
    own = min(study.shape[1:])
    images = evaluation_slices(source_id, normalisation, min(matrix, own), n_slices, starter)
    before = (matrix - images.shape[-1]) // 2
    after = matrix - images.shape[-1] - before
    return torch.nn.functional.pad(images, (before, after, before, after))


def coarse_problem(problem: Problem, size: int) -> Problem:
    """The same measurements on the ``size x size`` grid of the same field of view (the CLI's
    ``--grid prior``): CT, the same sinogram with pixels ``side / size`` times larger; MR, the
    central ``size x size`` block of the k-space, mask and simulated coil maps."""
    if problem.modality == "CT":
        geometry = problem.op.geometry
        side = geometry.image_shape[0]
        coarse = dataclasses.replace(geometry, image_shape=(size, size), pixel_size=geometry.pixel_size * side / size)
        return Problem(CTProjector(coarse), problem.y, "CT", problem.noisy, description=problem.description)
    op = MultiCoilMRI(simulated_maps(COILS, (size, size))[None], centre_block(problem.op.mask.to(torch.float32), size))
    return Problem(op, crop_or_pad_kspace(problem.y, size) * op.mask, "MR", problem.noisy, description=problem.description)


def setting_operator(setting: Setting, shape: tuple[int, int]):
    """``(operator, description)`` of a setting for images of ``shape``."""
    if setting.modality == "CT":
        if setting.geometry == "parallel":
            geometry = ParallelBeamGeometry.sparse_view(shape, setting.views, "uniform")
        else:
            geometry = FanBeamGeometry.full_scan(shape, setting.views)
        return CTProjector(geometry), {"geometry": geometry.to_dict()}
    maps = simulated_maps(COILS, shape)[None]
    if setting.non_cartesian:
        trajectory = noncartesian_trajectory(setting.trajectory)
        op = NonCartesianMRI(trajectory.make(shape), shape, maps)
        return op, {"trajectory": trajectory.to_dict(), "accel": round(trajectory.acceleration(shape), 2)}
    mask = CartesianSampling("equispaced_fraction", setting.accel, seed="bench").make(shape)
    return MultiCoilMRI(maps, mask), {"mask": "equispaced_fraction", "accel": setting.accel}


@torch.no_grad()
def make_problem(setting: Setting, images: torch.Tensor, seed: int, *, with_phase: bool = True):
    """``(Problem, reference)`` of normalised ``images`` ``(S, 1, H, W)`` under ``setting``; the
    reference is what the scores compare with (MR: the magnitude). ``with_phase`` False: MR images
    are real-valued (no simulated phase)."""
    shape = tuple(images.shape[-2:])
    index = range(images.shape[0])
    noise_gens = slice_generators(seed, index, "noise")
    op, description = setting_operator(setting, shape)
    if setting.modality == "CT":
        y = simulate_sinogram(op, images, noise_gens, noise_rel=CT_NOISE_REL if setting.noisy else 0.0)
        return Problem(op, y, "CT", setting.noisy, description=description), images
    image = complex_image(images, slice_generators(seed, index, "phase"), with_phase=with_phase)
    y = simulate_kspace(op, image, noise_gens, noise_sigma=MR_NOISE_SIGMA if setting.noisy else 0.0)
    return Problem(op, y, "MR", setting.noisy, description=description), images


__all__ = ["NONCARTESIAN_TRAJECTORIES", "SETTINGS", "Setting", "TASK_SETTINGS", "TRAINING_SOURCES", "coarse_problem", "evaluation_slices",
           "make_problem", "matrix_slices", "noncartesian_trajectory", "selected", "setting_operator"]
