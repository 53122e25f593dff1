"""Acquisitions as data: what was measured, how, with which noise and seed.

An acquisition record (JSON) travels with every simulated measurement so that a reconstruction can
be rerun exactly, and builds the operator that produced the measurement.

- :class:`CTAcquisition`: a parallel- or fan-beam geometry (lengths in mm), the noise model, and
  the attenuation of water used to turn HU into linear attenuation ``mu = mu_water (1 + HU / 1000)``
  (1/mm), so sinograms hold dimensionless line integrals and photon counts are physical.
- :class:`MRAcquisition`: a Cartesian sampling pattern or a radial/spiral trajectory, the number
  of simulated coils, whether a smooth phase was applied, the noise level, and the scale that maps the study's magnitudes to
  [0, 1] (the image the noise level refers to).

Per-slice seeds: slice k draws its randomness from generators seeded by :func:`slice_seed`
``(seed, k, purpose)``, so a volume's measurements do not depend on how it is batched.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from medrecon.errors import InputError, positive_int
from medrecon.io.validation import (
    CT_MATRIX_BYTES_PER_ENTRY,
    CT_MAX_VIEWS,
    MR_MAX_COILS,
    MR_MAX_SAMPLES,
    POISSON_MAX_PHOTONS,
    check_image_side,
    memory_budget_bytes,
)
from medrecon.operators import (
    CTProjector,
    FanBeamGeometry,
    MultiCoilMRI,
    NonCartesianMRI,
    ParallelBeamGeometry,
    geometry_from_dict,
    simulated_maps,
)
from medrecon.operators.ct_geometry import system_matrix_entries
from medrecon.operators.masks import CartesianSampling
from medrecon.operators.trajectories import Trajectory

NOISE_MODELS_CT = ("none", "gaussian", "poisson")
MU_WATER_PER_MM = 0.0192  # linear attenuation of water at about 70 keV effective energy, 1/mm

def _finite(value, flag: str, *, low: float = 0.0, high: float = math.inf, low_open: bool = True) -> float:
    """A flag's number: finite, above ``low`` (or equal when not ``low_open``) and at most ``high``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{flag} must be a finite number, got {value!r}")
    if (value <= low if low_open else value < low) or value > high:
        bound = f"{'>' if low_open else '>='} {low:g}" + ("" if high == math.inf else f" and <= {high:g}")
        raise InputError(f"{flag} must be {bound}, got {value!r}")
    return float(value)


def slice_seed(seed: int, index: int, purpose: str) -> int:
    """A stable 63-bit seed for slice ``index`` and one purpose (``noise``, ``phase``, ...)."""
    digest = hashlib.sha256(f"medrecon:{seed}:{index}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def slice_generators(seed: int, indices, purpose: str) -> list[torch.Generator]:
    """One generator per slice index, seeded by :func:`slice_seed`."""
    return [torch.Generator().manual_seed(slice_seed(seed, int(k), purpose)) for k in indices]


@dataclass(frozen=True)
class CTAcquisition:
    """Sparse-view CT: geometry (a ``ParallelBeamGeometry``/``FanBeamGeometry`` dict), noise and seed.

    ``noise``: ``none``; ``gaussian`` (std ``noise_rel`` x each slice's clean sinogram maximum);
    ``poisson`` (``photons`` incident per detector element, log-transformed).
    """

    geometry: dict
    noise: str = "none"
    noise_rel: float = 0.0
    photons: float = 0.0
    mu_water_per_mm: float = MU_WATER_PER_MM
    seed: int = 0
    kind: str = field(default="ct", init=False)

    def __post_init__(self):
        geometry = geometry_from_dict(self.geometry)
        for side in geometry.image_shape:
            check_image_side(side, "the CT acquisition", "image_shape")
        if geometry.n_angles > CT_MAX_VIEWS:
            raise InputError(f"a CT acquisition of {geometry.n_angles} views exceeds {CT_MAX_VIEWS}")
        _check_matrix_size(geometry, "views")
        if self.noise not in NOISE_MODELS_CT:
            raise InputError(f"unknown CT noise model {self.noise!r}; known: {NOISE_MODELS_CT}")
        if self.noise == "gaussian" and not (self.noise_rel > 0 and math.isfinite(self.noise_rel)):
            raise InputError("gaussian CT noise needs noise_rel > 0 and finite (e.g. 0.01 = 1% of the sinogram maximum), "
                             f"got {self.noise_rel!r}")
        if self.noise == "poisson" and not 0 < self.photons <= POISSON_MAX_PHOTONS:
            raise InputError(f"poisson CT noise needs 0 < photons <= {POISSON_MAX_PHOTONS:g} (incident photons per detector "
                             f"element), got {self.photons!r}")
        if not (isinstance(self.mu_water_per_mm, numbers.Real) and 0 < self.mu_water_per_mm < math.inf):
            raise InputError(f"mu_water_per_mm must be a positive finite number, got {self.mu_water_per_mm!r}")

    def operator(self):
        return CTProjector(geometry_from_dict(self.geometry))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class MRAcquisition:
    """Undersampled multi-coil MRI: sampling, coils, phase, noise (std per complex value on the
    k-space of the image scaled to [0, 1]), scale and seed.

    ``sampling`` is a Cartesian pattern (a ``CartesianSampling`` dict, with ``pattern``) or a
    non-Cartesian trajectory (a :class:`~medrecon.operators.trajectories.Trajectory` dict, with
    ``kind`` radial/spiral); a trajectory needs ``image_shape`` ``[H, W]`` (its k-space
    ``(coils, K)`` does not give it), a Cartesian pattern leaves it None.
    """

    sampling: dict
    coils: int = 8
    smooth_phase: bool = True
    noise_sigma: float = 0.0
    scale: float = 1.0
    seed: int = 0
    image_shape: list | None = None
    kind: str = field(default="mr", init=False)

    def __post_init__(self):
        if not isinstance(self.sampling, dict):
            raise InputError(f"sampling must be a dict, got {type(self.sampling).__name__}")
        if self.non_cartesian:
            Trajectory.from_dict(self.sampling)
            shape = self.image_shape
            if not (isinstance(shape, (list, tuple)) and len(shape) == 2
                    and all(isinstance(s, int) and not isinstance(s, bool) and s >= 2 for s in shape)):
                raise InputError(f"a non-Cartesian acquisition needs image_shape [H, W] (sides >= 2), got {shape!r}")
            object.__setattr__(self, "image_shape", [int(s) for s in shape])
        else:
            CartesianSampling.from_dict(self.sampling)
            if self.image_shape is not None:
                raise InputError("image_shape belongs to non-Cartesian acquisitions (Cartesian k-space gives it)")
        positive_int(self.coils, "coils")
        if self.coils > MR_MAX_COILS:
            raise InputError(f"coils must be at most {MR_MAX_COILS}, got {self.coils}")
        if not (isinstance(self.noise_sigma, numbers.Real) and 0 <= self.noise_sigma < math.inf):
            raise InputError(f"noise_sigma must be a finite number >= 0, got {self.noise_sigma!r}")
        if not (isinstance(self.scale, numbers.Real) and 0 < self.scale < math.inf):
            raise InputError(f"scale must be a finite number > 0, got {self.scale!r}")

    @property
    def non_cartesian(self) -> bool:
        """Whether ``sampling`` is a radial/spiral trajectory rather than a Cartesian pattern."""
        return "kind" in self.sampling

    def trajectory(self):
        """The :class:`~medrecon.operators.trajectories.Trajectory` of a non-Cartesian acquisition."""
        if not self.non_cartesian:
            raise InputError("a Cartesian acquisition has a mask, not a trajectory")
        return Trajectory.from_dict(self.sampling)

    def mask(self, shape) -> torch.Tensor:
        if self.non_cartesian:
            raise InputError("a non-Cartesian acquisition has a trajectory, not a mask")
        return CartesianSampling.from_dict(self.sampling).make(tuple(shape))

    def coil_maps(self, shape) -> torch.Tensor:
        return simulated_maps(self.coils, tuple(shape))[None]

    def operator(self, shape=None):
        """The acquisition's operator for images of ``shape`` (non-Cartesian: ``image_shape``)."""
        if self.non_cartesian:
            shape = tuple(self.image_shape)
            return NonCartesianMRI(self.trajectory().make(shape), shape, self.coil_maps(shape))
        return MultiCoilMRI(self.coil_maps(shape), self.mask(shape))

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["image_shape"] is None:
            del data["image_shape"]
        return data


def acquisition_from_dict(d: dict) -> CTAcquisition | MRAcquisition:
    """Rebuild an acquisition from :meth:`to_dict` (the ``kind`` key picks the class)."""
    if not isinstance(d, dict) or d.get("kind") not in ("ct", "mr"):
        raise InputError("an acquisition record must be a dict with kind 'ct' or 'mr'")
    cls = CTAcquisition if d["kind"] == "ct" else MRAcquisition
    try:
        return cls(**{k: v for k, v in d.items() if k != "kind"})
    except TypeError as exc:
        raise InputError(f"bad {cls.__name__} record: {exc}") from None


@dataclass(frozen=True)
class AcquisitionOptions:
    """What a user asks to simulate of a study (the flags of ``medrecon simulate`` / ``reconstruct``).

    CT: ``geometry`` ``parallel`` or ``fan``, ``views``, ``convention`` (parallel beam: ``uniform``
    or ``song``), ``noise`` (``none``, ``gaussian`` with ``noise_rel``, ``poisson`` with
    ``photons``). MR: ``trajectory`` ``cartesian`` (a ``mask`` pattern at ``accel`` with
    ``center_fraction``, None for fastMRI's), ``radial`` (``spokes``, ``angles``) or ``spiral``
    (``interleaves``, ``undersampling``); ``coils``, ``noise_sigma``, ``smooth_phase``. Both:
    ``seed``. :func:`acquisition_for_study` turns them into a :class:`CTAcquisition` or
    :class:`MRAcquisition` for a study.
    """

    geometry: str = "parallel"
    views: int = 23
    convention: str = "uniform"
    noise: str = "none"
    noise_rel: float = 0.01
    photons: float = 1e5
    accel: float = 4.0
    mask: str = "equispaced_fraction"
    center_fraction: float | None = None
    trajectory: str = "cartesian"
    spokes: int = 48
    angles: str = "golden"
    interleaves: int = 16
    undersampling: float = 4.0
    coils: int = 8
    noise_sigma: float = 0.0
    smooth_phase: bool = True
    seed: int = 0


TRAJECTORIES = ("cartesian", "radial", "spiral")


def acquisition_for_study(study, options: AcquisitionOptions) -> CTAcquisition | MRAcquisition:
    """The acquisition ``options`` describe for ``study`` (a :class:`~medrecon.study.Study`): CT
    geometry at the study's matrix and pixel size (mm); MR sampling for its matrix, with the scale
    that maps its magnitudes to [0, 1] (the 99.5th percentile)."""
    shape = tuple(study.shape[1:])
    if study.modality == "CT":
        positive_int(options.views, "--views")
        if options.views > CT_MAX_VIEWS:
            raise InputError(f"--views {options.views} exceeds {CT_MAX_VIEWS} (scanners take 1000-3000 views per rotation)")
        if options.noise == "gaussian":
            _finite(options.noise_rel, "--noise-rel")
        if options.noise == "poisson":
            _finite(options.photons, "--photons", high=POISSON_MAX_PHOTONS)
        pixel = study.pixel_size
        if options.geometry == "parallel":
            geometry = ParallelBeamGeometry.sparse_view(shape, options.views, options.convention, pixel_size=pixel,
                                                        detector_spacing=pixel)
        else:
            geometry = FanBeamGeometry.full_scan(shape, options.views, pixel_size=pixel)
        _check_matrix_size(geometry, "--views")
        return CTAcquisition(
            geometry.to_dict(), noise=options.noise, noise_rel=options.noise_rel if options.noise == "gaussian" else 0.0,
            photons=options.photons if options.noise == "poisson" else 0.0, seed=options.seed,
        )
    positive_int(options.coils, "--coils")
    if options.coils > MR_MAX_COILS:
        raise InputError(f"--coils {options.coils} exceeds {MR_MAX_COILS} (the largest receive arrays)")
    _finite(options.noise_sigma, "--noise-sigma", low_open=False)
    if options.coils * shape[0] * shape[1] > MR_MAX_SAMPLES:
        raise InputError(f"--coils {options.coils} with {shape[0]}x{shape[1]} images makes {options.coils * shape[0] * shape[1]:.3g} "
                         f"k-space values per slice, more than {MR_MAX_SAMPLES:.3g}")
    if options.trajectory == "radial":
        readout = 2 * max(shape)
        if options.spokes * readout * options.coils > MR_MAX_SAMPLES:
            raise InputError(f"--spokes {options.spokes} of {readout} samples with {options.coils} coils make "
                             f"{options.spokes * readout * options.coils:.3g} k-space values per slice, more than "
                             f"{MR_MAX_SAMPLES:.3g}")
    if options.trajectory == "spiral":
        _finite(options.undersampling, "--undersampling")
    magnitude = study.voxels.abs() if study.voxels.is_complex() else study.voxels
    scale = float(np.percentile(magnitude.numpy(), 99.5)) or 1.0
    image_shape = None
    if options.trajectory == "cartesian":
        sampling = CartesianSampling(options.mask, options.accel, center_fraction=options.center_fraction,
                                     seed=study.name).to_dict()
    elif options.trajectory == "radial":
        sampling, image_shape = Trajectory("radial", spokes=options.spokes, angles=options.angles).to_dict(), list(shape)
    elif options.trajectory == "spiral":
        sampling = Trajectory("spiral", interleaves=options.interleaves, undersampling=options.undersampling).to_dict()
        image_shape = list(shape)
    else:
        raise InputError(f"--trajectory must be one of {', '.join(TRAJECTORIES)}, got {options.trajectory!r}")
    return MRAcquisition(sampling, coils=options.coils, smooth_phase=options.smooth_phase, noise_sigma=options.noise_sigma,
                         scale=scale, seed=options.seed, image_shape=image_shape)


def _check_matrix_size(geometry, flag: str) -> None:
    """Refuse, naming ``flag`` (``--views``), a CT acquisition whose system matrix would not fit in
    :func:`~medrecon.io.validation.memory_budget_bytes` (an allocation that size aborts the process
    instead of raising)."""
    entries = system_matrix_entries(geometry)
    budget = memory_budget_bytes()
    if entries * CT_MATRIX_BYTES_PER_ENTRY > budget:
        views = geometry.n_angles
        most = max(int(budget / CT_MATRIX_BYTES_PER_ENTRY / (entries / views)), 1)
        h, w = geometry.image_shape
        raise InputError(f"{flag} {views} with {h}x{w} images needs a CT system matrix of about {entries:.3g} entries "
                         f"({entries * CT_MATRIX_BYTES_PER_ENTRY / 2**30:.0f} GiB), more than this machine's budget of "
                         f"{budget / 2**30:.0f} GiB; use at most {most} views")


def acquisition_json(acq: CTAcquisition | MRAcquisition) -> str:
    return json.dumps(acq.to_dict(), indent=2)
