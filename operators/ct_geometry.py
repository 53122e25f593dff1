"""CT acquisition geometries as data: 2-D parallel beam and 2-D fan beam with a flat detector.

Conventions (those of astra-toolbox, whose projectors are the reference):

- The image is ``(H, W)`` pixels of side ``pixel_size`` centred on the rotation axis; row 0 is the
  top of the image (largest y), column 0 the left (smallest x).
- Angles are in radians. At angle ``theta`` a parallel-beam ray travels along
  ``(-sin theta, cos theta)`` and detector element ``i`` sits at signed offset
  ``(i + 1/2 - n/2) * detector_spacing`` along ``(cos theta, sin theta)``.
- Fan beam: the source is at ``source_origin * (sin beta, -cos beta)``, the flat detector at
  distance ``origin_detector`` beyond the origin, perpendicular to the central ray, with the same
  element ordering. A full scan covers ``[0, 2 pi)``.
- All lengths (``pixel_size``, ``detector_spacing``, distances) are in one unit, the caller's
  (mm for a study, 1 = one pixel by default); a sinogram value is a line integral in that unit times
  the image's unit.

Sparse-view conventions (docs/conventions.md): ``uniform`` = ``linspace(0, pi, N, endpoint=False)``;
``song`` = rows ``round(linspace(0, n - 1, N))`` of the n-view grid over ``[0, pi)`` (Song et al.,
ICLR 2022), n the image side.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from medrecon.errors import GeometryError, positive_int

SPARSE_VIEW_CONVENTIONS = ("uniform", "song")


# ----------------------------------------------------------------------------- angle helpers
def uniform_angles(n_views: int, *, arc: float = math.pi, start: float = 0.0) -> np.ndarray:
    """``n_views`` angles evenly spaced over ``[start, start + arc)`` (radians, no endpoint)."""
    n_views = positive_int(n_views, "n_views", GeometryError)
    if not (math.isfinite(arc) and arc > 0):
        raise GeometryError(f"arc must be a positive number of radians, got {arc!r}")
    return start + np.arange(n_views, dtype=np.float64) * (arc / n_views)


def song_angles(n_views: int, n_grid: int) -> np.ndarray:
    """Song et al.'s sparse views: rows ``round(linspace(0, n_grid - 1, n_views))`` of the
    ``n_grid``-view grid over ``[0, pi)`` (the first and last view almost coincide)."""
    n_views = positive_int(n_views, "n_views", GeometryError)
    n_grid = positive_int(n_grid, "n_grid", GeometryError)
    if n_views > n_grid:
        raise GeometryError(f"cannot take {n_views} views from a grid of {n_grid}")
    rows = np.round(np.linspace(0, n_grid - 1, n_views)).astype(np.int64)
    return rows * (math.pi / n_grid)


def sparse_view_angles(n_views: int, convention: str = "uniform", *, n_grid: int | None = None) -> np.ndarray:
    """Parallel-beam sparse-view angles by convention name (``uniform`` or ``song``).

    ``n_grid`` (the full grid of the ``song`` convention) is required for ``song``: Song et al.
    use the image side.
    """
    if convention == "uniform":
        return uniform_angles(n_views)
    if convention == "song":
        if n_grid is None:
            raise GeometryError("the 'song' convention needs n_grid (the image side in Song et al.)")
        return song_angles(n_views, n_grid)
    raise GeometryError(f"unknown sparse-view convention {convention!r}; known: {SPARSE_VIEW_CONVENTIONS}")


def limited_angles(n_views: int, arc: float, *, start: float = 0.0) -> np.ndarray:
    """Limited-angle parallel beam: ``n_views`` views over ``[start, start + arc)``, ``arc < pi``."""
    if not (0 < arc < math.pi):
        raise GeometryError(f"a limited-angle arc must lie in (0, pi) radians, got {arc!r}")
    return uniform_angles(n_views, arc=arc, start=start)


def _as_angles(angles) -> tuple[float, ...]:
    arr = np.asarray(angles, dtype=np.float64)
    if arr.ndim != 1:
        raise GeometryError(f"angles must be a 1-D array of radians, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise GeometryError("angles is empty: at least one projection angle is needed")
    if not np.all(np.isfinite(arr)):
        raise GeometryError("angles contains NaN or infinite values")
    return tuple(float(a) for a in arr)


def _as_image_shape(shape) -> tuple[int, int]:
    if isinstance(shape, (int, np.integer)):
        shape = (shape, shape)
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise GeometryError(f"image_shape must be (H, W) or one side length, got {shape!r}") from None
    if h < 1 or w < 1:
        raise GeometryError(f"image_shape must be positive, got {(h, w)}")
    return h, w


LENGTH_RANGE = (1e-9, 1e12)
"""Lengths of a geometry (pixel size, detector spacing, distances; the caller's unit): astra computes
in float32 and cannot initialise its projectors beyond about 1e37 nor resolve below about 1e-30;
this range keeps well inside both."""

MAX_DETECTORS = 1 << 20
"""Detector elements of one view: far above any scanner (about 1000) and below an allocation that
cannot succeed (a detector spacing a million times smaller than the pixels)."""


def _positive(value, what: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise GeometryError(f"{what} must be a positive finite number, got {value!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise GeometryError(f"{what} must be a positive finite number, got {value!r}")
    lo, hi = LENGTH_RANGE
    if not lo <= value <= hi:
        raise GeometryError(f"{what} {value:g} lies outside the {lo:g}..{hi:g} the projectors can compute with (float32)")
    return value


def _detector_count(value) -> int:
    count = positive_int(value, "detector_count", GeometryError)
    if count > MAX_DETECTORS:
        raise GeometryError(f"detector_count {count} exceeds {MAX_DETECTORS} (a detector spacing far below the pixel size?)")
    return count


# ----------------------------------------------------------------------------- geometries
@dataclass(frozen=True)
class ParallelBeamGeometry:
    """2-D parallel beam: image ``(H, W)``, one detector row of ``detector_count`` elements.

    ``detector_count=None`` picks enough elements of ``detector_spacing`` to cover the image's
    diagonal. Serialises to JSON with :meth:`to_dict` / :meth:`from_dict`.
    """

    image_shape: tuple[int, int]
    angles: tuple[float, ...]
    detector_count: int | None = None
    detector_spacing: float = 1.0
    pixel_size: float = 1.0
    kind: str = field(default="parallel", init=False)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "image_shape", _as_image_shape(self.image_shape))
        set_(self, "angles", _as_angles(self.angles))
        set_(self, "pixel_size", _positive(self.pixel_size, "pixel_size"))
        set_(self, "detector_spacing", _positive(self.detector_spacing, "detector_spacing"))
        if self.detector_count is None:
            h, w = self.image_shape
            diagonal = math.hypot(h, w) * self.pixel_size
            set_(self, "detector_count", min(math.ceil(diagonal / self.detector_spacing - 1e-9), MAX_DETECTORS + 1))
        set_(self, "detector_count", _detector_count(self.detector_count))

    @classmethod
    def sparse_view(
        cls, image_shape, n_views: int, convention: str = "uniform", **kwargs
    ) -> ParallelBeamGeometry:
        """``n_views`` views by a named convention (``uniform``; ``song`` on the n-view grid,
        n = image width)."""
        shape = _as_image_shape(image_shape)
        return cls(shape, sparse_view_angles(n_views, convention, n_grid=shape[1]), **kwargs)

    @property
    def n_angles(self) -> int:
        return len(self.angles)

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        """``(n_angles, detector_count)``."""
        return (self.n_angles, self.detector_count)

    def with_angles(self, angles) -> ParallelBeamGeometry:
        """The same geometry with other angles."""
        d = self.to_dict()
        d["angles"] = list(_as_angles(angles))
        return type(self).from_dict(d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_shape"] = list(self.image_shape)
        d["angles"] = list(self.angles)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> ParallelBeamGeometry:
        return geometry_from_dict(d, expect=cls)


@dataclass(frozen=True)
class FanBeamGeometry:
    """2-D fan beam with a flat detector.

    ``source_origin``/``origin_detector`` are the source-to-rotation-axis and axis-to-detector
    distances. The defaults of :meth:`full_scan` follow docs/conventions.md: 2x and 1x the image
    width, detector elements of ``pixel_size`` times the magnification, enough of them to cover
    the image's diagonal.
    """

    image_shape: tuple[int, int]
    angles: tuple[float, ...]
    source_origin: float
    origin_detector: float
    detector_count: int | None = None
    detector_spacing: float | None = None
    pixel_size: float = 1.0
    kind: str = field(default="fan", init=False)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "image_shape", _as_image_shape(self.image_shape))
        set_(self, "angles", _as_angles(self.angles))
        set_(self, "pixel_size", _positive(self.pixel_size, "pixel_size"))
        src = _positive(self.source_origin, "source_origin")
        det = float(self.origin_detector)
        if not (math.isfinite(det) and 0 <= det <= LENGTH_RANGE[1]):
            raise GeometryError(f"origin_detector must be >= 0 and at most {LENGTH_RANGE[1]:g}, got {self.origin_detector!r}")
        set_(self, "source_origin", src)
        set_(self, "origin_detector", det)
        h, w = self.image_shape
        radius = 0.5 * math.hypot(h, w) * self.pixel_size
        if src <= radius:
            raise GeometryError(
                f"fan beam: the source ({src:g} from the axis) lies inside the image's circle of radius "
                f"{radius:g}; source_origin must exceed half the image diagonal"
            )
        magnification = (src + det) / src
        if self.detector_spacing is None:
            set_(self, "detector_spacing", self.pixel_size * magnification)
        set_(self, "detector_spacing", _positive(self.detector_spacing, "detector_spacing"))
        if self.detector_count is None:
            half_fan = math.asin(radius / src)
            half_length = (src + det) * math.tan(half_fan)
            set_(self, "detector_count", min(math.ceil(2 * half_length / self.detector_spacing - 1e-9), MAX_DETECTORS + 1))
        set_(self, "detector_count", _detector_count(self.detector_count))

    @classmethod
    def full_scan(
        cls,
        image_shape,
        n_views: int,
        *,
        source_origin: float | None = None,
        origin_detector: float | None = None,
        **kwargs,
    ) -> FanBeamGeometry:
        """``n_views`` views uniform over ``[0, 2 pi)``; distances default to 2x and 1x the image
        width (in the geometry's length unit)."""
        shape = _as_image_shape(image_shape)
        width = shape[1] * float(kwargs.get("pixel_size", 1.0))
        return cls(
            shape,
            uniform_angles(n_views, arc=2 * math.pi),
            source_origin=2.0 * width if source_origin is None else source_origin,
            origin_detector=1.0 * width if origin_detector is None else origin_detector,
            **kwargs,
        )

    @property
    def n_angles(self) -> int:
        return len(self.angles)

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        return (self.n_angles, self.detector_count)

    @property
    def magnification(self) -> float:
        return (self.source_origin + self.origin_detector) / self.source_origin

    def with_angles(self, angles) -> FanBeamGeometry:
        d = self.to_dict()
        d["angles"] = list(_as_angles(angles))
        return type(self).from_dict(d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_shape"] = list(self.image_shape)
        d["angles"] = list(self.angles)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> FanBeamGeometry:
        return geometry_from_dict(d, expect=cls)


CTGeometry = ParallelBeamGeometry | FanBeamGeometry


def system_matrix_entries(geometry: CTGeometry) -> int:
    """About how many non-zero entries the geometry's system matrix has: each ray crosses about
    ``1.3 max(H, W)`` pixels of the linear kernels (measured: 1.27 parallel beam, 0.87 fan beam,
    from 64x64 to 256x256), so ``1.3 n_angles detector_count max(H, W)``."""
    return math.ceil(1.3 * geometry.n_angles * geometry.detector_count * max(geometry.image_shape))


def geometry_from_dict(d: dict, expect: type | None = None) -> CTGeometry:
    """Rebuild a geometry from :meth:`to_dict` output (the ``kind`` key picks the class)."""
    if not isinstance(d, dict) or "kind" not in d:
        raise GeometryError("a CT geometry record must be a dict with a 'kind' key ('parallel' or 'fan')")
    classes = {"parallel": ParallelBeamGeometry, "fan": FanBeamGeometry}
    cls = classes.get(d["kind"])
    if cls is None:
        raise GeometryError(f"unknown CT geometry kind {d['kind']!r}; known: {sorted(classes)}")
    if expect is not None and cls is not expect:
        raise GeometryError(f"expected a {expect.__name__} record, got kind {d['kind']!r}")
    args = {k: v for k, v in d.items() if k != "kind"}
    try:
        return cls(**args)
    except TypeError as exc:
        raise GeometryError(f"bad {cls.__name__} record: {exc}") from None

