"""Non-Cartesian k-space trajectories as data: radial, variable-density spiral, user coordinates.

Coordinates are angular frequencies in **radians per pixel**, a tensor ``(K, 2)`` (or ``(..., K, 2)``
flattened to ``(K, 2)``) in ``[-pi, pi)``: column 0 along the image's rows (axis H), column 1 along
its columns (axis W). The sample at ``omega`` measures
``sum_n x[n] exp(-i omega . n) / sqrt(H W)`` with ``n`` the centred pixel index, so the Cartesian
grid ``omega = 2 pi k / N`` gives exactly the centred orthonormal FFT of :mod:`.mri`.

- radial: ``spokes`` full diameters of ``readout`` samples (default twice the larger image side N,
  the two-fold read-out oversampling of scanners: with N samples per spoke the spacing 2 pi / N
  covers a field of view of N along each spoke, and the image's corners, sqrt(2) N apart along the
  diagonals, alias), at uniform angles ``pi s / spokes`` or the golden angle
  ``s * pi / phi`` (Winkelmann et al., IEEE TMI 2007); Nyquist needs ``pi N / 2`` spokes, so the
  acceleration is ``pi N / (2 spokes)``.
- spiral: sigpy's variable-density spiral (Kim, Adalsteinsson, Spielman, MRM 2003) with
  ``interleaves`` arms and radial undersampling factor ``undersampling`` (R) and density exponent
  ``alpha``; its acceleration is the ratio of the Nyquist spiral's sample count to this one's.
- user coordinates: any ``(K, 2)`` tensor; its acceleration is ``H W / K`` (samples against the
  Cartesian grid's), stated as such.

Density compensation lives with the NUFFT (:func:`medrecon.operators.nufft.density_compensation`:
Pipe and Menon, MRM 1999, with the NUFFT's own interpolation matrix). The spiral design is sigpy's
(a dependency already).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import numpy as np
import torch

from medrecon.errors import GeometryError, InputError, positive_int

KINDS = ("radial", "spiral")
RADIAL_ANGLES = ("golden", "uniform")
GOLDEN_ANGLE = math.pi * (math.sqrt(5.0) - 1.0) / 2.0  # pi / phi: 111.246 degrees
SPIRAL_FOV_M = 0.24  # the field of view the spiral design assumes; coordinates scale it out
SPIRAL_GRADIENT = (0.04, 150.0)  # max gradient T/m and slew rate T/m/s of the design (clinical)


def check_coordinates(coords: torch.Tensor, who: str = "trajectory") -> torch.Tensor:
    """``coords`` as a ``(K, 2)`` tensor, after checking it is finite, real and inside [-pi, pi)."""
    if not isinstance(coords, torch.Tensor):
        raise GeometryError(f"{who}: coordinates must be a torch.Tensor (..., K, 2), got {type(coords).__name__}")
    if coords.ndim < 2 or coords.shape[-1] != 2:
        raise GeometryError(f"{who}: coordinates must have shape (..., K, 2) in radians per pixel, got {tuple(coords.shape)}")
    if coords.is_complex() or not coords.is_floating_point():
        raise GeometryError(f"{who}: coordinates must be real floating point, got {coords.dtype}")
    flat = coords.reshape(-1, 2)
    if flat.shape[0] == 0:
        raise GeometryError(f"{who}: the trajectory has no samples")
    if not bool(torch.isfinite(flat).all()):
        raise GeometryError(f"{who}: coordinates hold NaN or infinite values")
    low, high = float(flat.min()), float(flat.max())
    if low < -math.pi or high >= math.pi:
        raise GeometryError(
            f"{who}: coordinates must lie in [-pi, pi) radians per pixel, got [{low:.4f}, {high:.4f}] "
            "(scale k-space positions k (cycles per field of view) by 2 pi / N)"
        )
    return flat


def wrap(omega: torch.Tensor) -> torch.Tensor:
    """Angular frequencies wrapped into ``[-pi, pi)`` (the DFT is 2 pi periodic in each)."""
    return torch.remainder(omega + math.pi, 2 * math.pi) - math.pi


def radial(image_shape: tuple[int, int], spokes: int, *, readout: int | None = None,
           angles: str = "golden") -> torch.Tensor:
    """``(spokes * readout, 2)`` float64 radial coordinates: spoke ``s`` at angle ``theta_s``,
    samples ``omega_r = 2 pi (r - readout / 2) / readout`` (r = 0..readout-1) along it; ``readout``
    None is ``2 max(H, W)``."""
    n = max(image_shape)
    readout = 2 * n if readout is None else readout
    if angles not in RADIAL_ANGLES:
        raise InputError(f"radial angles must be one of {RADIAL_ANGLES}, got {angles!r}")
    theta = torch.arange(spokes, dtype=torch.float64)
    theta = theta * GOLDEN_ANGLE if angles == "golden" else theta * (math.pi / spokes)
    radius = 2 * math.pi * (torch.arange(readout, dtype=torch.float64) - readout / 2) / readout
    coords = torch.stack([radius[None, :] * torch.cos(theta)[:, None], radius[None, :] * torch.sin(theta)[:, None]], -1)
    return wrap(coords.reshape(-1, 2))


def spiral(image_shape: tuple[int, int], interleaves: int, *, undersampling: float = 1.0,
           alpha: float = 1.5) -> torch.Tensor:
    """``(K, 2)`` float64 variable-density spiral coordinates (sigpy's design, MRM 2003)."""
    import sigpy.mri

    n = max(image_shape)
    try:
        with np.errstate(all="ignore"):
            k = sigpy.mri.spiral(SPIRAL_FOV_M, n, 1.0, float(undersampling), int(interleaves), float(alpha),
                                 *SPIRAL_GRADIENT)
    except (TypeError, ValueError, ZeroDivisionError, FloatingPointError, OverflowError, MemoryError):
        k = None  # sigpy's design fails when an interleave is too short for its gradient model
    if k is None or len(k) == 0 or not np.all(np.isfinite(k)):
        raise InputError(f"no spiral of {interleaves} interleaves at undersampling {undersampling:g} (alpha {alpha:g}) "
                         f"can be designed for a {n}-pixel image: each interleave would be too short; use fewer "
                         "interleaves or a lower undersampling")
    return wrap(torch.as_tensor(k, dtype=torch.float64) * (SPIRAL_FOV_M * 2 * math.pi / n))


@dataclass(frozen=True)
class Trajectory:
    """A radial or spiral trajectory as data: ``make(shape)`` gives its ``(K, 2)`` coordinates.

    radial: ``spokes``, ``readout`` (None: twice the larger image side), ``angles`` golden/uniform.
    spiral: ``interleaves``, ``undersampling`` (R > 0; R > 1 undersamples), ``alpha`` (density
    exponent; 1 is uniform density, larger values sample the centre more densely). Options a kind
    does not use raise InputError rather than being ignored.
    """

    kind: str
    spokes: int | None = None
    readout: int | None = None
    angles: str | None = None
    interleaves: int | None = None
    undersampling: float | None = None
    alpha: float | None = None

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if self.kind not in KINDS:
            raise InputError(f"unknown trajectory {self.kind!r}; known: {', '.join(KINDS)}")
        radial_only = {"spokes": self.spokes, "readout": self.readout, "angles": self.angles}
        spiral_only = {"interleaves": self.interleaves, "undersampling": self.undersampling, "alpha": self.alpha}
        unused = spiral_only if self.kind == "radial" else radial_only
        for name, value in unused.items():
            if value is not None:
                raise InputError(f"{name} applies to {'spiral' if self.kind == 'radial' else 'radial'} "
                                 f"trajectories, not {self.kind}")
        if self.kind == "radial":
            put("spokes", positive_int(self.spokes, "spokes"))
            if self.readout is not None:
                put("readout", positive_int(self.readout, "readout"))
            put("angles", "golden" if self.angles is None else self.angles)
            if self.angles not in RADIAL_ANGLES:
                raise InputError(f"radial angles must be one of {RADIAL_ANGLES}, got {self.angles!r}")
        else:
            put("interleaves", positive_int(self.interleaves, "interleaves"))
            for name, default in (("undersampling", 1.0), ("alpha", 1.5)):
                value = default if getattr(self, name) is None else getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
                    raise InputError(f"{name} must be a positive number, got {value!r}")
                put(name, float(value))

    def make(self, image_shape: tuple[int, int]) -> torch.Tensor:
        """Coordinates ``(K, 2)`` (float64, radians per pixel) for images of ``image_shape``."""
        if self.kind == "radial":
            return radial(image_shape, self.spokes, readout=self.readout, angles=self.angles)
        return spiral(image_shape, self.interleaves, undersampling=self.undersampling, alpha=self.alpha)

    def acceleration(self, image_shape: tuple[int, int]) -> float:
        """Undersampling relative to Nyquist: radial ``pi N / (2 spokes)``; spiral the sample count
        of the Nyquist spiral with the same interleaves (R = 1, uniform density) over this one's."""
        n = max(image_shape)
        if self.kind == "radial":
            return math.pi * n / (2 * self.spokes)
        nyquist = spiral(image_shape, self.interleaves, undersampling=1.0, alpha=1.0).shape[0]
        return nyquist / self.make(image_shape).shape[0]

    def describe(self, image_shape: tuple[int, int]) -> str:
        if self.kind == "radial":
            what = f"radial, {self.spokes} {self.angles}-angle spokes"
        else:
            what = f"spiral, {self.interleaves} interleaves, R {self.undersampling:g}, alpha {self.alpha:g}"
        return f"{what} ({self.acceleration(image_shape):.1f}x below Nyquist)"

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict) -> Trajectory:
        if not isinstance(data, dict):
            raise InputError(f"a trajectory record must be a dict, got {type(data).__name__}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise InputError(f"bad trajectory record {data}: {exc}") from None


def samples_acceleration(image_shape: tuple[int, int], n_samples: int) -> float:
    """Acceleration of user coordinates: Cartesian samples ``H W`` over the trajectory's ``K``."""
    return image_shape[0] * image_shape[1] / n_samples


__all__ = [
    "Trajectory",
    "KINDS",
    "RADIAL_ANGLES",
    "GOLDEN_ANGLE",
    "check_coordinates",
    "radial",
    "spiral",
    "samples_acceleration",
    "wrap",
]
