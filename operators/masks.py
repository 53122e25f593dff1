"""Cartesian k-space sampling masks: which entries of an ``(H, W)`` k-space grid are measured.

Conventions
-----------
- A mask is an ``(H, W)`` ``float32`` tensor of 0/1 (1 = measured) on *centred* k-space: k = 0 sits
  at index ``(H // 2, W // 2)`` (the ``fftshift`` convention of the centred FFT). It broadcasts
  against ``(B, C, H, W)`` k-space.
- Column patterns follow fastMRI (Zbontar et al. 2018, "fastMRI: An open dataset and benchmarks for
  accelerated MRI", arXiv:1811.08839; the ``fastmri`` package's ``fastmri/data/subsample.py``): the
  mask chooses k-space *columns* (the last axis W, the phase-encode direction) and samples every row
  of a chosen column. ``equispaced``, ``equispaced_fraction`` and ``random`` give the same mask as
  its ``EquiSpacedMaskFunc``, ``EquispacedMaskFractionFunc`` and ``RandomMaskFunc`` called with one
  (center_fraction, acceleration) pair and the same seed. The centre block has
  ``round(W * center_fraction)`` columns starting at ``(W - n + 1) // 2``.
- ``gaussian1d``: columns with density ``exp(-k^2 / (2 sigma^2))``, ``sigma = std * W`` (default std
  0.15), k the offset from column W // 2; the centre block plus random columns, exactly
  ``round(W / acceleration)`` in all, drawn without replacement. ``gaussian2d``: the same on points,
  ``sigma = std * H`` and ``std * W`` per axis, a centre block of ``round(n * center_fraction)`` lines
  per axis, exactly ``round(H * W / acceleration)`` points. ``poisson``: sigpy's variable-density
  Poisson disc with a calibration block. ``radial``: rasterised lines through k = 0.
- Seeds: an int (0 <= seed < 2**32), a tuple of such ints, or a string (a file or study name, turned
  into ``tuple(map(ord, name))`` as fastMRI does). Every draw comes from a local
  ``np.random.RandomState(seed)``; global random state is never touched. ``seed=None`` draws fresh
  OS entropy (a mask that cannot be reproduced). ``radial`` is deterministic and ignores the seed.
- Nominal vs true acceleration: ``random`` (independent column draws) and ``equispaced`` (a grid
  plus the centre block) do not sample exactly ``1 / acceleration`` of k-space;
  :func:`describe_mask` reports the true sampled fraction of every mask.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from medrecon.errors import GeometryError, InputError

COLUMN_PATTERNS = ("equispaced", "equispaced_fraction", "random")
PATTERNS = COLUMN_PATTERNS + ("gaussian1d", "gaussian2d", "poisson", "radial")
RADIAL_ANGLES = ("uniform", "golden")
DEFAULT_STD = 0.15  # Gaussian std-dev as a fraction of the side (W for gaussian1d, H and W for 2d)
GOLDEN_ANGLE = math.pi * (math.sqrt(5.0) - 1.0) / 2.0  # pi / golden ratio, about 111.25 degrees
_FASTMRI_CENTER_FRACTIONS = {4: 0.08, 8: 0.04}
_POISSON_TOL = 0.1  # sigpy.mri.poisson's default tolerance on the achieved acceleration
_POISSON_MAX_STEPS = 64

Seed = int | str | tuple | None


def seed_from_name(name: str) -> tuple[int, ...]:
    """fastMRI's seed of a file or study name: ``tuple(map(ord, name))``."""
    if not isinstance(name, str) or not name:
        raise InputError(f"a seed name must be a non-empty string, got {name!r}")
    return tuple(ord(c) for c in name)


def default_center_fraction(acceleration: float) -> float:
    """fastMRI protocol: 0.08 at 4x, 0.04 at 8x; otherwise ``0.32 / acceleration`` (same rule)."""
    return _FASTMRI_CENTER_FRACTIONS.get(acceleration, 0.32 / acceleration)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_seed(seed: Any) -> Seed:
    if seed is None or isinstance(seed, str):
        return seed if seed is None or seed_from_name(seed) else None
    items = tuple(seed) if isinstance(seed, (tuple, list)) else (seed,)
    if not items or not all(_is_int(s) and 0 <= s < 2**32 for s in items):
        raise InputError(f"a seed must be an int in [0, 2**32), a non-empty tuple of such ints or a "
                         f"name (str), got {seed!r}")
    return int(seed) if _is_int(seed) else tuple(int(s) for s in items)


def _rng(seed: Seed) -> np.random.RandomState:
    return np.random.RandomState(seed_from_name(seed) if isinstance(seed, str) else seed)


def _check_shape(shape: Any) -> tuple[int, int]:
    ok = isinstance(shape, (tuple, list, torch.Size)) and len(shape) == 2
    if not ok or not all(_is_int(n) and n > 0 for n in shape):
        raise GeometryError(f"mask shape must be 2 positive ints (H, W), got {shape!r}")
    return int(shape[0]), int(shape[1])


def _block(n: int, n_low: int) -> slice:
    """fastMRI's centre block of ``n_low`` of ``n`` lines around index ``n // 2``."""
    start = (n - n_low + 1) // 2
    return slice(start, start + n_low)


def fastmri_column_mask(pattern: str, num_cols: int, acceleration: float, center_fraction: float,
                        seed: Seed = None) -> tuple[np.ndarray, int]:
    """One fastMRI column mask: ``(mask (num_cols,) bool, num_low_frequencies)``.

    Same draws, in the same order, as the ``fastmri`` mask functions: (1) ``randint(1)``, its
    choice of one (center_fraction, acceleration) pair out of one (numpy draws nothing for it);
    (2) ``equispaced``: offset ``randint(0, round(a))``, then every a-th column from it;
    ``equispaced_fraction``: spacing ``a (n_low - W) / (n_low a - W)`` (about W / a columns in
    all), offset ``randint(0, round(spacing))``, columns ``around(arange(offset, W - 1, spacing))``;
    ``random``: ``uniform(size=W) < (W / a - n_low) / (W - n_low)`` (columns drawn independently:
    W / a only on average). Arguments are validated by :class:`CartesianSampling`; call this
    through it unless they already are.
    """
    rng = _rng(seed)
    rng.randint(1)
    n_low = round(num_cols * center_fraction)
    mask = np.zeros(num_cols, dtype=bool)
    mask[_block(num_cols, n_low)] = True
    if pattern == "equispaced":
        mask[rng.randint(0, high=round(acceleration))::int(acceleration)] = True
    elif pattern == "equispaced_fraction":
        spacing = (acceleration * (n_low - num_cols)) / (n_low * acceleration - num_cols)
        offset = rng.randint(0, high=round(spacing))
        mask[np.around(np.arange(offset, num_cols - 1, spacing)).astype(np.int64)] = True
    elif pattern == "random":
        mask |= rng.uniform(size=num_cols) < (num_cols / acceleration - n_low) / (num_cols - n_low)
    else:
        raise InputError(f"unknown column pattern {pattern!r}; known: {', '.join(COLUMN_PATTERNS)}")
    return mask, n_low


def _gaussian(shape: tuple[int, int], axes: int, acceleration: float, center_fraction: float,
              std: float, seed: Seed) -> np.ndarray:
    """Gaussian variable density on the last ``axes`` axes, centre block, exact count, no repeats."""
    H, W = shape
    sides = (W,) if axes == 1 else (H, W)
    n_low = [round(n * center_fraction) for n in sides]
    wanted = round(math.prod(sides) / acceleration)
    if math.prod(n_low) > wanted:
        raise GeometryError(f"centre block of {' x '.join(map(str, n_low))} k-space points is "
                            f"larger than the {wanted} points wanted at acceleration {acceleration}")
    taken = np.zeros(sides, dtype=bool)
    taken[tuple(_block(n, c) for n, c in zip(sides, n_low, strict=True))] = True
    k2 = sum(np.meshgrid(*[((np.arange(n) - n // 2) / (std * n)) ** 2 for n in sides],
                         indexing="ij", sparse=True))
    p = np.where(taken, 0.0, np.exp(-0.5 * k2)).ravel()
    extra = wanted - int(taken.sum())
    if np.count_nonzero(p) < extra:
        raise GeometryError(f"std {std} is too small: the Gaussian density is zero at too many "
                            f"points to draw {extra} of them")
    picks = _rng(seed).choice(p.size, size=extra, replace=False, p=p / p.sum())
    taken.ravel()[picks] = True
    return np.broadcast_to(taken, shape)


def _poisson(shape: tuple[int, int], acceleration: float, center_fraction: float,
             seed: Seed) -> np.ndarray:
    """sigpy's variable-density Poisson disc (``sigpy.mri.poisson``, density ~ 1 / (1 + s |k|)).

    Same slope search as ``sigpy.mri.poisson(shape, acceleration, calib, seed=seed)``, so the mask
    is the same, but capped at 64 bisection steps: sigpy's own loop never ends when no slope reaches
    the acceleration within its tolerance 0.1 (seen: 32 x 32 at 50x), and here that raises
    GeometryError. The calibration block of ``round(n * center_fraction)`` lines per axis starts at
    ``int(n / 2 - c / 2)`` (sigpy's placement; it can sit one line below fastMRI's).
    """
    from sigpy.mri import samp  # lazy: importing sigpy takes seconds

    ny, nx = shape
    calib = (round(ny * center_fraction), round(nx * center_fraction))
    if acceleration <= 1 or calib[0] >= ny or calib[1] >= nx or \
            calib[0] * calib[1] > ny * nx / acceleration:
        raise GeometryError(f"poisson needs acceleration > 1 and a calibration block {calib} "
                            f"smaller than the {ny * nx / acceleration:g} points wanted in {shape}")
    int_seed = seed if _is_int(seed) else int(_rng(seed).randint(0, 2**31 - 1))
    y, x = np.mgrid[:ny, :nx]
    x = np.maximum(abs(x - nx / 2) - calib[1] / 2, 0)
    y = np.maximum(abs(y - ny / 2) - calib[0] / 2, 0)
    r = np.sqrt((x / x.max()) ** 2 + (y / y.max()) ** 2)
    lo, hi = 0.0, float(max(nx, ny))
    for _ in range(_POISSON_MAX_STEPS):
        slope = (lo + hi) / 2
        rx = np.clip((1 + r * slope) * nx / max(nx, ny), 1, None)
        ry = np.clip((1 + r * slope) * ny / max(nx, ny), 1, None)
        mask = samp._poisson(nx, ny, 30, rx, ry, calib, int_seed) * (r < 1)
        achieved = nx * ny / max(mask.sum(), 1)
        if abs(achieved - acceleration) < _POISSON_TOL:
            return mask > 0
        lo, hi = (slope, hi) if achieved < acceleration else (lo, slope)
        if not lo < hi:
            break
    raise GeometryError(f"poisson cannot reach acceleration {acceleration} within "
                        f"{_POISSON_TOL} on a {ny} x {nx} grid with calibration {calib}")


def _radial_lines(shape: tuple[int, int], n_lines: int, angles: str) -> np.ndarray:
    H, W = shape
    i = np.arange(n_lines)
    theta = i * math.pi / n_lines if angles == "uniform" else (i * GOLDEN_ANGLE) % math.pi
    radius = math.hypot(H, W) / 2 + 1
    t = np.arange(-radius, radius, 0.5)  # half-pixel steps leave no gaps along a line
    mask = np.zeros(shape, dtype=bool)
    for chunk in np.array_split(theta, max(1, n_lines // 256)):
        rows = np.rint(H // 2 + np.outer(np.sin(chunk), t)).astype(np.int64)
        cols = np.rint(W // 2 + np.outer(np.cos(chunk), t)).astype(np.int64)
        keep = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
        mask[rows[keep], cols[keep]] = True
    return mask


def _radial(shape: tuple[int, int], acceleration: float, angles: str) -> np.ndarray:
    """Lines through k = 0: angle ``pi i / n`` ("uniform") or ``i * GOLDEN_ANGLE mod pi`` ("golden").

    n is the smallest line count whose rasterised fraction reaches ``1 / acceleration`` (bisection,
    at most ``ceil(pi * max(H, W))`` lines), or n - 1 when that one is closer.
    """
    target = 1.0 / acceleration
    lo, hi = 1, math.ceil(math.pi * max(shape))
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if _radial_lines(shape, mid, angles).mean() < target else (lo, mid)
    best = _radial_lines(shape, lo, angles)
    if lo > 1:
        fewer = _radial_lines(shape, lo - 1, angles)
        if abs(fewer.mean() - target) < abs(best.mean() - target):
            return fewer
    return best


@dataclass(frozen=True)
class CartesianSampling:
    """A Cartesian sampling pattern as data: ``make(shape)`` gives its ``(H, W)`` 0/1 mask.

    pattern: one of :data:`PATTERNS`. acceleration: nominal, >= 1 (an integer for ``equispaced``,
    > 1 for ``poisson``). center_fraction: fraction of each sampled axis in the fully sampled
    centre block, in (0, 1); None resolves to :func:`default_center_fraction` (``radial`` has no
    block and keeps None). seed: see the module notes. std: Gaussian std-dev as a fraction of the
    side, ``gaussian1d``/``gaussian2d`` only (None -> ``DEFAULT_STD`` = 0.15, i.e. 48 of 320
    columns). angles: ``radial`` only, "uniform" (default) or "golden". Options that a pattern does
    not use raise InputError rather than being ignored.
    """

    pattern: str
    acceleration: float
    center_fraction: float | None = None
    seed: int | str | tuple | None = None
    std: float | None = None
    angles: str | None = None

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if self.pattern not in PATTERNS:
            raise InputError(f"unknown sampling pattern {self.pattern!r}; known: {', '.join(PATTERNS)}")
        acc = self.acceleration
        if not isinstance(acc, numbers.Real) or isinstance(acc, bool) or not math.isfinite(acc) \
                or acc < 1:
            raise GeometryError(f"acceleration must be a finite number >= 1, got {acc!r}")
        if self.pattern == "equispaced" and acc != int(acc):
            raise GeometryError(f"equispaced needs an integer acceleration, got {acc}; "
                                "use equispaced_fraction for a fractional one")
        put("acceleration", float(acc))
        cf = self.center_fraction
        if self.pattern == "radial":
            if cf is not None:
                raise InputError("radial has no centre block: leave center_fraction as None")
        elif cf is None:
            put("center_fraction", default_center_fraction(self.acceleration))
        elif not isinstance(cf, numbers.Real) or isinstance(cf, bool) or not 0 < cf < 1:
            raise GeometryError(f"center_fraction must be in (0, 1), got {cf!r}")
        else:
            put("center_fraction", float(cf))
        put("seed", _check_seed(self.seed))
        gaussian = self.pattern in ("gaussian1d", "gaussian2d")
        if self.std is not None and not gaussian:
            raise InputError(f"std applies only to gaussian1d and gaussian2d, not {self.pattern}")
        if gaussian:
            std = DEFAULT_STD if self.std is None else self.std
            if not isinstance(std, numbers.Real) or isinstance(std, bool) or not 0 < std < math.inf:
                raise GeometryError(f"std must be a positive fraction of the side, got {std!r}")
            put("std", float(std))
        if self.angles is not None and self.pattern != "radial":
            raise InputError(f"angles applies only to radial, not {self.pattern}")
        if self.pattern == "radial":
            put("angles", "uniform" if self.angles is None else self.angles)
            if self.angles not in RADIAL_ANGLES:
                raise InputError(f"radial angles must be one of {RADIAL_ANGLES}, got {self.angles!r}")

    def to_dict(self) -> dict:
        """JSON-serialisable fields (a tuple seed becomes a list)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**data, "seed": list(self.seed) if isinstance(self.seed, tuple) else self.seed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CartesianSampling:
        """Inverse of :meth:`to_dict`; unknown or missing keys and bad values raise InputError."""
        if not isinstance(data, Mapping):
            raise InputError(f"CartesianSampling.from_dict needs a mapping, got {type(data).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        missing = [k for k in ("pattern", "acceleration") if k not in data]
        if unknown or missing:
            raise InputError(f"CartesianSampling dict: unknown keys {unknown}, missing keys "
                             f"{missing}; known keys: {', '.join(known)}")
        kwargs = dict(data)
        if isinstance(kwargs.get("seed"), list):
            kwargs["seed"] = tuple(kwargs["seed"])
        return cls(**kwargs)

    def make(self, shape: tuple[int, int]) -> torch.Tensor:
        """The ``(H, W)`` float32 0/1 mask of this pattern on a k-space grid of ``shape``."""
        H, W = _check_shape(shape)
        acc, cf = self.acceleration, self.center_fraction
        if self.pattern in COLUMN_PATTERNS:
            n_low = round(W * cf)
            if n_low >= W or n_low * acc > W or (self.pattern == "equispaced_fraction"
                                                 and n_low * acc == W):
                raise GeometryError(
                    f"centre block of {n_low} columns (center_fraction {cf} of {W}) is not smaller "
                    f"than the {W / acc:g} columns wanted at acceleration {acc:g}")
            col, _ = fastmri_column_mask(self.pattern, W, acc, cf, self.seed)
            mask = np.broadcast_to(col, (H, W))
        elif self.pattern in ("gaussian1d", "gaussian2d"):
            axes = 1 if self.pattern == "gaussian1d" else 2
            mask = _gaussian((H, W), axes, acc, cf, self.std, self.seed)
        elif self.pattern == "poisson":
            mask = _poisson((H, W), acc, cf, self.seed)
        else:
            mask = _radial((H, W), acc, self.angles)
        return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))


def make_mask(pattern: str, shape: tuple[int, int], acceleration: float,
              center_fraction: float | None = None, seed: Seed = None, **options: Any) -> torch.Tensor:
    """``CartesianSampling(pattern, acceleration, center_fraction, seed, **options).make(shape)``.

    options: ``std`` (gaussian1d, gaussian2d) or ``angles`` (radial); anything else is an InputError.
    """
    unknown = sorted(set(options) - {"std", "angles"})
    if unknown:
        raise InputError(f"unknown mask options {unknown}; known: std (gaussian1d, gaussian2d), "
                         "angles (radial)")
    return CartesianSampling(pattern, acceleration, center_fraction, seed, **options).make(shape)


def _pattern_function(pattern: str):
    def make(shape, acceleration, center_fraction=None, seed=None, **options):
        return make_mask(pattern, shape, acceleration, center_fraction, seed, **options)

    make.__name__ = make.__qualname__ = pattern
    make.__doc__ = (f"``{pattern}(shape, acceleration, center_fraction=None, seed=None, **options)`` "
                    f"= ``make_mask({pattern!r}, ...)``: an (H, W) float32 0/1 mask.")
    return make


equispaced = _pattern_function("equispaced")
equispaced_fraction = _pattern_function("equispaced_fraction")
random = _pattern_function("random")
gaussian1d = _pattern_function("gaussian1d")
gaussian2d = _pattern_function("gaussian2d")
poisson = _pattern_function("poisson")
radial = _pattern_function("radial")


def _as_array(mask: Any) -> np.ndarray:
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if arr.size == 0 or not np.isin(arr, (0, 1)).all():
        raise InputError(f"a mask must be a non-empty array of 0/1 values, got shape {arr.shape} "
                         f"with values {np.unique(arr)[:5]}")
    return arr


def sampled_fraction(mask: Any) -> float:
    """Fraction of the mask's entries that are sampled (1), in [0, 1]."""
    arr = _as_array(mask)
    return float(np.count_nonzero(arr)) / arr.size


def describe_mask(mask: Any, sampling: CartesianSampling) -> dict:
    """Nominal vs true sampling of ``mask``, made by ``sampling``.

    Keys: ``sampling`` (its dict), ``shape``, ``nominal_acceleration``, ``sampled_fraction`` and
    ``true_acceleration = 1 / sampled_fraction`` (``inf`` for an empty mask).
    """
    if not isinstance(sampling, CartesianSampling):
        raise InputError(f"describe_mask needs a CartesianSampling, got {type(sampling).__name__}")
    fraction = sampled_fraction(mask)
    return {"sampling": sampling.to_dict(), "shape": list(_as_array(mask).shape),
            "nominal_acceleration": sampling.acceleration, "sampled_fraction": fraction,
            "true_acceleration": 1.0 / fraction if fraction > 0 else math.inf}
