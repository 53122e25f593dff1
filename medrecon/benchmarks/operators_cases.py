"""``medrecon bench operators``: the cases and the data they run on.

The cases: CT parallel and fan beam at 256 and 512 pixels with 23 / 60 / 180 views; MRI 320x320
single coil and 8-coil SENSE with a 4x column mask; non-Cartesian MRI (NUFFT) at 256x256 and
320x320, 1 coil and 8-coil SENSE, a radial trajectory (64 golden-angle spokes, readout = image side)
and a variable-density spiral (16 interleaves, the undersampling R whose sample count is closest to
the radial one's: R 3 at 256, R 4 at 320). ``--quick`` keeps a subset, ``--only`` one of the two
tables. The data: the Shepp-Logan phantom (times a smooth phase for MRI), a batch of it scaled
slightly differently per slice, the Cartesian column mask and the non-Cartesian coordinates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from medrecon.errors import InputError
from medrecon.operators.trajectories import radial, spiral

ONLY_CHOICES = ("ct-mri", "nufft")
DEFAULT_REPEATS = 5
QUICK_REPEATS = 2
DEFAULT_BATCH = 16

# Non-Cartesian MRI: the accuracy the timed operators are asked for, and that of the reference
NUFFT_EPS = 1e-6
REFERENCE_EPS = 1e-12
NUFFT_SPOKES = 64
SPIRAL_INTERLEAVES = 16
# candidate spiral undersampling factors R; the one whose sample count is closest to the radial
# case's is used (16 interleaves: R 3 at 256 pixels, 16,496 samples against 16,384 radial; R 4 at
# 320 pixels, 20,160 against 20,480)
_SPIRAL_R_CANDIDATES = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0)
# the four NUFFT timings: "normal" is the operator's default (Toeplitz), "normal_plain" A^H (A x)
NUFFT_OPS = ("forward", "adjoint", "normal", "normal_plain")


# ============================================================================ cases
@dataclass(frozen=True)
class Case:
    """One benchmark case: a CT geometry or an MRI acquisition.

    ``modality`` is ``ct`` (``kind`` ``parallel`` or ``fan``, ``views`` projection angles),
    ``mri`` (``coils`` 1 for :class:`SingleCoilMRI`, more for SENSE; ``acceleration`` of the
    column mask, whose fully sampled centre is ``center_fraction`` of the columns) or ``nufft``
    (non-Cartesian MRI; ``kind`` ``radial`` with ``spokes`` golden-angle spokes of ``size``
    samples, or ``spiral`` with ``interleaves`` and ``undersampling``; ``coils`` as for ``mri``).
    """

    modality: str
    size: int
    kind: str = ""
    views: int = 0
    coils: int = 1
    acceleration: int = 4
    center_fraction: float = 0.08
    spokes: int = 0
    interleaves: int = 0
    undersampling: float = 0.0

    def __post_init__(self):
        if self.modality not in ("ct", "mri", "nufft"):
            raise InputError(f"benchmark case: modality must be 'ct', 'mri' or 'nufft', got {self.modality!r}")
        if self.size < 8:
            raise InputError(f"benchmark case: size must be at least 8 pixels, got {self.size}")
        if self.modality == "ct":
            if self.kind not in ("parallel", "fan"):
                raise InputError(f"benchmark case: CT kind must be 'parallel' or 'fan', got {self.kind!r}")
            if self.views < 1:
                raise InputError(f"benchmark case: CT needs at least one view, got {self.views}")
        elif self.coils < 1:
            raise InputError(f"benchmark case: MRI needs at least one coil, got {self.coils}")
        if self.modality == "nufft":
            if self.kind not in ("radial", "spiral"):
                raise InputError(f"benchmark case: NUFFT kind must be 'radial' or 'spiral', got {self.kind!r}")
            if self.kind == "radial" and self.spokes < 1:
                raise InputError(f"benchmark case: a radial trajectory needs at least one spoke, got {self.spokes}")
            if self.kind == "spiral" and (self.interleaves < 1 or not self.undersampling > 0):
                raise InputError(
                    "benchmark case: a spiral needs interleaves >= 1 and undersampling > 0, got "
                    f"{self.interleaves} and {self.undersampling}"
                )

    @property
    def label(self) -> str:
        if self.modality == "ct":
            return f"CT {self.kind} {self.size}², {self.views} views"
        coils = "1 coil" if self.coils == 1 else f"{self.coils}-coil SENSE"
        if self.modality == "nufft":
            samples = f"{nufft_coordinates(self).shape[0]:,} samples"
            if self.kind == "radial":
                return f"NUFFT {self.size}², radial {self.spokes} golden spokes ({samples}), {coils}"
            return (f"NUFFT {self.size}², spiral {self.interleaves} interleaves R {self.undersampling:g} "
                    f"({samples}), {coils}")
        return f"MRI {self.size}², {coils}, {self.acceleration}x"


def ct_case(kind: str, size: int, views: int) -> Case:
    return Case("ct", size, kind=kind, views=views)


def mri_case(size: int, coils: int, acceleration: int = 4) -> Case:
    return Case("mri", size, coils=coils, acceleration=acceleration)


def nufft_case(size: int, coils: int, kind: str, *, spokes: int = NUFFT_SPOKES,
               interleaves: int = SPIRAL_INTERLEAVES, undersampling: float | None = None) -> Case:
    """A non-Cartesian MRI case. A spiral without ``undersampling`` gets the candidate R whose
    sample count is closest to that of ``spokes`` radial spokes of ``size`` samples."""
    if kind != "spiral":
        return Case("nufft", size, kind=kind, coils=coils, spokes=spokes)  # Case checks the kind
    if undersampling is None:
        undersampling = matching_spiral_undersampling(size, interleaves, spokes * size)
    return Case("nufft", size, kind=kind, coils=coils, interleaves=interleaves, undersampling=float(undersampling))


def default_cases(quick: bool = False, only: str | None = None) -> list[Case]:
    """The full set (or ``--quick``'s subset) of cases, smallest first within each modality;
    ``only`` ``ct-mri`` keeps the CT and Cartesian MRI cases, ``nufft`` the non-Cartesian ones."""
    if only is not None and only not in ONLY_CHOICES:
        raise InputError(f"--only must be one of {', '.join(ONLY_CHOICES)}, got {only!r}")
    sizes, views = ((256,), (23, 180)) if quick else ((256, 512), (23, 60, 180))
    cases = [ct_case(kind, n, v) for kind in ("parallel", "fan") for n in sizes for v in views]
    cases += [mri_case(320, 1), mri_case(320, 8)]
    if only == "nufft":
        cases = []
    if only != "ct-mri":
        nufft_sizes = (256,) if quick else (256, 320)
        cases += [nufft_case(n, c, kind) for n in nufft_sizes for kind in ("radial", "spiral") for c in (1, 8)]
    return cases


# ============================================================================ data
def column_mask(shape: tuple[int, int], acceleration: int = 4, center_fraction: float = 0.08) -> np.ndarray:
    """Cartesian 0/1 mask ``(H, W)``: every ``acceleration``-th column plus a centred block of
    ``round(center_fraction * W)`` columns around the k-space centre ``W // 2``."""
    h, w = shape
    cols = np.zeros(w, dtype=bool)
    cols[::acceleration] = True
    n_center = max(1, int(round(w * center_fraction)))
    start = w // 2 - n_center // 2
    cols[start : start + n_center] = True
    return np.broadcast_to(cols, (h, w)).astype(np.float32)


def phantom(n: int) -> np.ndarray:
    """Shepp-Logan phantom ``(n, n)`` float32, zero outside the inscribed circle (as
    ``skimage.transform.radon(circle=True)`` requires)."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    img = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True).astype(np.float32)
    radius = n // 2
    r0, r1 = np.ogrid[:n, :n]
    img[(r0 - n // 2) ** 2 + (r1 - n // 2) ** 2 > radius**2] = 0.0
    return img


def batch_of(image: np.ndarray, batch: int) -> np.ndarray:
    """``(batch, 1, H, W)``: the image scaled slightly differently per slice."""
    scales = (1.0 + 0.05 * np.arange(batch)).astype(np.float32)
    return (scales[:, None, None, None] * image[None, None]).astype(image.dtype)


def smooth_phase(n: int) -> np.ndarray:
    """``(n, n)`` complex64 unit-modulus smooth phase (a bilinear ramp over the field of view)."""
    y, x = np.mgrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j]
    return np.exp(1j * np.pi * (0.4 * x + 0.25 * y + 0.3 * x * y)).astype(np.complex64)


@functools.lru_cache(maxsize=64)
def _spiral_samples(size: int, interleaves: int, undersampling: float) -> int | None:
    try:
        return int(spiral((size, size), interleaves, undersampling=undersampling).shape[0])
    except (TypeError, ValueError):  # sigpy's design fails for some small sizes and large R
        return None


def matching_spiral_undersampling(size: int, interleaves: int, samples: int) -> float:
    """The candidate undersampling R whose ``interleaves``-interleave spiral at ``size`` pixels has
    the sample count closest to ``samples``."""
    counts = {r: _spiral_samples(size, interleaves, r) for r in _SPIRAL_R_CANDIDATES}
    counts = {r: k for r, k in counts.items() if k}
    if not counts:
        raise InputError(f"no spiral with {interleaves} interleaves can be designed at {size} pixels")
    return min(counts, key=lambda r: (abs(counts[r] - samples), r))


@functools.lru_cache(maxsize=16)
def _coordinates(size: int, kind: str, spokes: int, interleaves: int, undersampling: float):
    if kind == "radial":  # read-out = image side (the Cartesian spacing), not radial()'s default 2 N
        return radial((size, size), spokes, readout=size, angles="golden")
    return spiral((size, size), interleaves, undersampling=undersampling)


def nufft_coordinates(case: Case):
    """The case's ``(K, 2)`` float64 coordinates in radians per pixel (a fresh copy)."""
    return _coordinates(case.size, case.kind, case.spokes, case.interleaves, case.undersampling).clone()



__all__ = [
    "Case",
    "DEFAULT_BATCH",
    "DEFAULT_REPEATS",
    "NUFFT_EPS",
    "NUFFT_OPS",
    "ONLY_CHOICES",
    "QUICK_REPEATS",
    "REFERENCE_EPS",
    "batch_of",
    "column_mask",
    "ct_case",
    "default_cases",
    "matching_spiral_undersampling",
    "mri_case",
    "nufft_case",
    "nufft_coordinates",
    "phantom",
    "smooth_phase",
]
