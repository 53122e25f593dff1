"""Everything that touches astra-toolbox, imported only when a CT operator needs astra.

astra-toolbox (GPL-3.0) is imported, never vendored. ``import medrecon`` never imports it: on a
machine where it cannot load (a GPU image without its CUDA-12 cuFFT, say) the CT operator's matrix
comes from the torch builder instead, and asking for an astra-only option fails with
:class:`BackendUnavailableError` and a one-line reason.

astra's 2-D CUDA calls can kill the process (SIGFPE) instead of raising where CUDA is unusable,
so :func:`astra_cuda_usable` first runs a tiny CUDA projection in a child process.
"""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np

from medrecon.errors import BackendUnavailableError, GeometryError

from .ct_geometry import CTGeometry, ParallelBeamGeometry

ASTRA_PROJECTORS = {"parallel": ("linear", "line", "strip"), "fan": ("line_fanflat", "strip_fanflat")}


@functools.lru_cache(maxsize=1)
def _load_astra():
    try:
        import astra  # deliberately lazy
    except Exception as exc:  # ImportError, or OSError from a missing shared library
        return None, f"{type(exc).__name__}: {exc}"
    return astra, ""


def import_astra():
    """The astra module, or :class:`BackendUnavailableError` saying why it cannot load."""
    astra, why = _load_astra()
    if astra is None:
        raise BackendUnavailableError(
            f"astra-toolbox cannot be loaded here ({why}); use backend='matrix' with the torch "
            "builder, or install astra-toolbox"
        )
    return astra


def astra_available() -> bool:
    return _load_astra()[0] is not None


def load_error() -> str:
    """Why astra cannot be loaded here ('' where it can)."""
    return _load_astra()[1]


def check_projector(geom: CTGeometry, projector: str) -> None:
    known = ASTRA_PROJECTORS[geom.kind]
    if projector not in known:
        raise GeometryError(f"projector {projector!r} does not exist for {geom.kind} beam; known: {known}")


def astra_geometries(geom: CTGeometry) -> tuple[dict, dict]:
    """astra's ``(volume geometry, projection geometry)`` for a medrecon geometry."""
    astra = import_astra()
    h, w = geom.image_shape
    p = geom.pixel_size
    vol = astra.create_vol_geom(h, w, -0.5 * w * p, 0.5 * w * p, -0.5 * h * p, 0.5 * h * p)
    angles = np.asarray(geom.angles, dtype=np.float64)
    if isinstance(geom, ParallelBeamGeometry):
        proj = astra.create_proj_geom("parallel", geom.detector_spacing, geom.detector_count, angles)
    else:
        proj = astra.create_proj_geom(
            "fanflat",
            geom.detector_spacing,
            geom.detector_count,
            angles,
            geom.source_origin,
            geom.origin_detector,
        )
    return vol, proj


def astra_matrix(geom: CTGeometry, projector: str):
    """astra's system matrix of ``projector`` as a scipy CSR matrix ``(rays, pixels)``."""
    check_projector(geom, projector)
    astra = import_astra()
    vol, proj = astra_geometries(geom)
    pid = astra.create_projector(projector, proj, vol)
    try:
        mid = astra.projector.matrix(pid)
        try:
            return astra.matrix.get(mid)
        finally:
            astra.matrix.delete(mid)
    finally:
        astra.projector.delete(pid)


class AstraProjector2D:
    """astra's own 2-D projector on host numpy slices (CPU ``projector``, or ``'cuda'``).

    Used for the ``astra`` and ``astra_cuda`` backends and as the reference in tests and
    benchmarks. astra's 2-D calls take one slice at a time; they run in float32.
    """

    def __init__(self, geom: CTGeometry, projector: str, *, cuda: bool = False) -> None:
        self.astra = import_astra()
        if not cuda:
            check_projector(geom, projector)
        self.vol_geom, self.proj_geom = astra_geometries(geom)
        self.projector_id = self.astra.create_projector(
            "cuda" if cuda else projector, self.proj_geom, self.vol_geom
        )

    def forward(self, image: np.ndarray) -> np.ndarray:
        sid, sino = self.astra.create_sino(np.ascontiguousarray(image, dtype=np.float32), self.projector_id)
        self.astra.data2d.delete(sid)
        return sino

    def adjoint(self, sino: np.ndarray) -> np.ndarray:
        vid, vol = self.astra.create_backprojection(
            np.ascontiguousarray(sino, dtype=np.float32), self.projector_id
        )
        self.astra.data2d.delete(vid)
        return vol

    def __del__(self):
        try:
            self.astra.projector.delete(self.projector_id)
        except Exception:  # interpreter shutdown: astra may already be gone
            pass


_CUDA_PROBE = """
import numpy as np, astra
vol = astra.create_vol_geom(8, 8)
proj = astra.create_proj_geom('parallel', 1.0, 12, np.linspace(0, np.pi, 4, endpoint=False))
pid = astra.create_projector('cuda', proj, vol)
sid, s = astra.create_sino(np.ones((8, 8), np.float32), pid)
assert np.isfinite(s).all() and s.max() > 0
"""


@functools.lru_cache(maxsize=1)
def astra_cuda_usable() -> tuple[bool, str]:
    """Whether astra's CUDA projectors work here, and if not, why (checked in a child process)."""
    astra, why = _load_astra()
    if astra is None:
        return False, f"astra-toolbox cannot be loaded ({why})"
    try:
        if not astra.use_cuda():
            return False, "astra-toolbox reports no usable CUDA device"
    except Exception as exc:
        return False, f"astra.use_cuda() failed: {exc}"
    try:
        run = subprocess.run([sys.executable, "-c", _CUDA_PROBE], capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False, "astra's CUDA probe timed out"
    if run.returncode != 0:
        tail = run.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit code {run.returncode}"]
        return False, f"astra's CUDA probe failed: {tail[0]}"
    return True, ""
