"""``medrecon bench operators``: forward / adjoint / normal timings of the CT and MRI operators.

For each case (CT parallel and fan beam at 256 and 512 pixels with 23 / 60 / 180 views; MRI 320x320
single coil and 8-coil SENSE with a 4x column mask; non-Cartesian MRI, see below) it times, on the
same data in the same run:

- medrecon's operator (CT: :class:`~medrecon.operators.ct.CTProjector`, backend ``matrix``; MRI:
  :class:`~medrecon.operators.mri.SingleCoilMRI` / :class:`~medrecon.operators.mri.MultiCoilMRI`) at
  batch 1 and at a batch of slices, on the CPU and, where CUDA is available, on the GPU;
- the CT system matrix's build time, number of non-zeros and memory, for both matrix sources
  (astra-toolbox's own matrix and the project's torch builder), and the time to build its transpose
  (which the first adjoint call does);
- independent references: astra-toolbox's CPU projector (one slice per call), scikit-image's
  ``radon`` (parallel beam, forward only, its own slightly different geometry) and sigpy's SENSE
  linop (one slice per call).

Every time is the median of ``repeats`` runs after one warm-up call, measured with
``time.perf_counter`` (with ``torch.cuda.synchronize()`` around GPU calls). Nothing here asserts
anything about speed: the numbers go into a Markdown table (stdout, and with ``--write`` into the
marked section of docs/benchmarks.md).

Memory: one case at a time; every matrix is dropped (``del`` + ``gc.collect()``) before the next is
built, and a step whose estimated peak memory exceeds what the machine has available is skipped
with a note in the table instead of crashing the run.

Non-Cartesian MRI (NUFFT) cases: 256x256 and 320x320, 1 coil and 8-coil SENSE, a radial trajectory
(64 golden-angle spokes, readout = image side) and a variable-density spiral (16 interleaves, the
undersampling R whose sample count is closest to the radial one's: R 3 at 256, R 4 at 320). For each
it times forward / adjoint / normal, the normal both by the Toeplitz embedding and as plain
``A^H (A x)``, of :class:`~medrecon.operators.nufft.NonCartesianMRI` with backend ``torch`` (on every
device) and ``finufft`` (CPU), plus the one-time costs (the first forward call of a fresh operator,
which builds the torch backend's interpolation matrix, and the Toeplitz kernel); and as independent
references sigpy's NUFFT (``linop.NUFFT`` / ``mri.linop.Sense(coord=...)``, one slice per call) and
mri-nufft's finufft backend (``mrinufft.get_operator("finufft")``; optional, imported only here, a
"not installed" note where it is missing). Each implementation's accuracy is the relative error of
its forward on the same image against medrecon's finufft backend in complex128 at ``eps=1e-12``.
These rows form a second table, written into their own marked section (``bench:operators:nufft``,
right after the operators section), so that ``only="nufft"`` can refresh them alone.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import functools
import gc
import os
import platform
import resource
import shlex
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from medrecon.errors import BackendUnavailableError, InputError
from medrecon.benchmarks import report as sections

SECTION = "operators"
START_MARKER, END_MARKER = sections.markers(SECTION)
NUFFT_SECTION = "operators:nufft"
NUFFT_START_MARKER, NUFFT_END_MARKER = sections.markers(NUFFT_SECTION)
ONLY_CHOICES = ("ct-mri", "nufft")
DEFAULT_REPEATS = 5
QUICK_REPEATS = 2
DEFAULT_BATCH = 16

# Peak bytes per stored non-zero, measured on the CPU (512x512, 180 views, docs/benchmarks.md):
# astra's matrix build ~28, the transpose (CSR -> CSC copy) ~48 plus the matrix held (8), the torch
# builder ~35-45 (one chunk of float64 entries at a time, int32 columns). Rounded up for the estimate.
_BYTES_PER_NNZ = {"astra": 36, "torch": 48, "transpose": 64}
# Fraction of the crude upper bound 2 * rays * max(H, W) that is actually non-zero (measured 0.64
# for parallel beam and 0.43 for fan beam at 512 pixels); rounded up.
_NNZ_FRACTION = 0.7

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


def _phantom(n: int) -> np.ndarray:
    """Shepp-Logan phantom ``(n, n)`` float32, zero outside the inscribed circle (as
    ``skimage.transform.radon(circle=True)`` requires)."""
    from skimage.data import shepp_logan_phantom  # noqa: PLC0415
    from skimage.transform import resize  # noqa: PLC0415

    img = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True).astype(np.float32)
    radius = n // 2
    r0, r1 = np.ogrid[:n, :n]
    img[(r0 - n // 2) ** 2 + (r1 - n // 2) ** 2 > radius**2] = 0.0
    return img


def _batch_of(image: np.ndarray, batch: int) -> np.ndarray:
    """``(batch, 1, H, W)``: the image scaled slightly differently per slice."""
    scales = (1.0 + 0.05 * np.arange(batch)).astype(np.float32)
    return (scales[:, None, None, None] * image[None, None]).astype(image.dtype)


def _smooth_phase(n: int) -> np.ndarray:
    y, x = np.mgrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j]
    return np.exp(1j * np.pi * (0.4 * x + 0.25 * y + 0.3 * x * y)).astype(np.complex64)


@functools.lru_cache(maxsize=64)
def _spiral_samples(size: int, interleaves: int, undersampling: float) -> int | None:
    from medrecon.operators.trajectories import spiral  # noqa: PLC0415

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
    from medrecon.operators.trajectories import radial, spiral  # noqa: PLC0415

    if kind == "radial":  # read-out = image side (the Cartesian spacing), not radial()'s default 2 N
        return radial((size, size), spokes, readout=size, angles="golden")
    return spiral((size, size), interleaves, undersampling=undersampling)


def nufft_coordinates(case: Case):
    """The case's ``(K, 2)`` float64 coordinates in radians per pixel (a fresh copy)."""
    return _coordinates(case.size, case.kind, case.spokes, case.interleaves, case.undersampling).clone()


# ============================================================================ measuring
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch  # noqa: PLC0415

        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], repeats: int, device: str = "cpu") -> float:
    """Median wall time in seconds of ``fn()`` over ``repeats`` runs, after one warm-up call."""
    _sync(device)
    out = fn()
    _sync(device)
    del out
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        del out
    return statistics.median(times)


def _time_once(fn: Callable[[], object], device: str = "cpu") -> tuple[float, object]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def _release_memory() -> None:
    gc.collect()
    try:
        import torch  # noqa: PLC0415

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - torch always imports here
        pass
    try:  # give freed heap pages back to the OS so that MemAvailable sees them
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:  # not glibc
        pass


def available_bytes(device: str = "cpu") -> int | None:
    """Memory the next allocation may use: MemAvailable on Linux, free GPU memory on CUDA."""
    if device.startswith("cuda"):
        import torch  # noqa: PLC0415

        return int(torch.cuda.mem_get_info()[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _memory_note(needed: int, device: str) -> str | None:
    """A skip note when ``needed`` bytes (an estimate) exceed 90% of what is available."""
    have = available_bytes(device)
    if have is None or needed <= 0.9 * have:
        return None
    return f"skipped: needs ~{needed / 2**30:.1f} GiB, {have / 2**30:.1f} GiB available on {device}"


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def ct_nnz_estimate(geom) -> int:
    """A rough (high) estimate of the number of non-zeros of a CT system matrix."""
    h, w = geom.image_shape
    return int(_NNZ_FRACTION * 2 * geom.n_angles * geom.detector_count * max(h, w))


def _csr_bytes(mat) -> int:
    return sum(t.numel() * t.element_size() for t in (mat.values(), mat.crow_indices(), mat.col_indices()))


# ============================================================================ rows
def _empty_timing(case: Case, impl: str, device: str, batch: int) -> dict:
    return {
        "case": case.label,
        "implementation": impl,
        "device": device,
        "batch": batch,
        "b1_ms": {"forward": None, "adjoint": None, "normal": None},
        "batch_ms": {"forward": None, "adjoint": None, "normal": None},
        "per_slice_ms": {"forward": None, "adjoint": None, "normal": None},
        "note": "",
    }


def _time_operator(row: dict, op, x1, y1, xb, yb, repeats: int, device: str) -> None:
    """Fill ``row`` with our operator's forward / adjoint / normal times at B=1 and B=batch."""
    batch = xb.shape[0]
    for name in ("forward", "adjoint", "normal"):
        fn = getattr(op, name)
        a1, ab = (y1, yb) if name == "adjoint" else (x1, xb)
        row["b1_ms"][name] = 1e3 * time_call(lambda: fn(a1), repeats, device)
        per_batch = 1e3 * time_call(lambda: fn(ab), repeats, device)
        row["batch_ms"][name] = per_batch
        row["per_slice_ms"][name] = per_batch / batch


def _time_per_slice(row: dict, fns: dict, repeats: int) -> None:
    """Fill ``row``'s B=1 column with host per-slice calls (astra, scikit-image, sigpy)."""
    for name, fn in fns.items():
        row["b1_ms"][name] = 1e3 * time_call(fn, repeats)


def _devices() -> list[str]:
    import torch  # noqa: PLC0415

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _log_default(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _run_ct_case(case: Case, repeats: int, batch: int, devices: list[str], log) -> tuple[list, list]:
    import torch  # noqa: PLC0415

    from medrecon.operators.astra_backend import AstraProjector2D, astra_available  # noqa: PLC0415
    from medrecon.operators.ct import CTProjector  # noqa: PLC0415
    from medrecon.operators.ct_geometry import FanBeamGeometry, ParallelBeamGeometry  # noqa: PLC0415
    from medrecon.operators.ct_matrix import TORCH_PROJECTORS  # noqa: PLC0415

    n = case.size
    if case.kind == "parallel":
        geom = ParallelBeamGeometry.sparse_view(n, case.views)
    else:
        geom = FanBeamGeometry.full_scan(n, case.views)
    projector = TORCH_PROJECTORS[geom.kind]  # CTProjector's default: astra `linear` / `line_fanflat`
    image = _phantom(n)
    xb_host = torch.from_numpy(_batch_of(image, batch))
    nnz_est = ct_nnz_estimate(geom)
    timings, matrices = [], []

    for device in devices:
        op = CTProjector(geom)  # matrix backend, matrix_source auto: astra where it loads, else torch
        sources = [op.matrix_source] + [s for s in ("astra", "torch") if s != op.matrix_source]
        impl = f"medrecon CTProjector (matrix, {op.matrix_source}-built CSR)"
        trow = _empty_timing(case, impl, device, batch)
        for source in sources:
            if source == "astra" and not astra_available():
                matrices.append(_matrix_row(case, device, source, note="astra-toolbox cannot load here"))
                continue
            timed = source == op.matrix_source
            builder = op if timed else CTProjector(geom, matrix_source=source)
            # the build runs on the CPU for astra's matrix (then moves), on `device` for torch's
            build_dev = "cpu" if source == "astra" else device
            need = nnz_est * _BYTES_PER_NNZ[source]
            note = _memory_note(need, build_dev)
            if note is None and timed:
                note = _memory_note(nnz_est * (_BYTES_PER_NNZ["transpose"] + 8) + 4 * xb_host.numel() * 8, device)
            if note is not None:
                matrices.append(_matrix_row(case, device, source, note=note))
                if timed:
                    trow["note"] = note
                log(f"  {case.label} [{device}] {source} matrix: {note}")
                continue
            try:
                log(f"  {case.label} [{device}] building the {source} matrix ...")
                build_s, mat = _time_once(lambda b=builder: b.matrix(device), device)
                mrow = _matrix_row(case, device, source, build_s=build_s, nnz=mat.nnz, mb=_csr_bytes(mat.mat) / 1e6)
                mrow["used_for_timings"] = timed
                if timed:
                    mrow["transpose_s"], _ = _time_once(lambda m=mat: m.T, device)
                    log(f"  {case.label} [{device}] timing the operator ...")
                    with torch.no_grad():
                        x1 = xb_host[:1].to(device)
                        xb = xb_host.to(device)
                        yb = op(xb)
                        y1 = yb[:1].contiguous()
                        _time_operator(trow, op, x1, y1, xb, yb, repeats, device)
                    del x1, xb, y1, yb
                matrices.append(mrow)
                del mat
            except Exception as exc:  # noqa: BLE001 - out of memory becomes a note, the rest propagates
                if not _is_oom(exc):
                    raise
                note = f"skipped: out of memory ({type(exc).__name__})"
                matrices.append(_matrix_row(case, device, source, note=note))
                if timed:
                    trow["note"] = note
                log(f"  {case.label} [{device}] {source}: {note}")
            finally:
                if not timed:
                    del builder
                _release_memory()
        timings.append(trow)
        del op
        _release_memory()

    # ------------------------------------------------------------- references (host, one slice per call)
    x_np = image
    arow = _empty_timing(case, f"astra CPU projector `{projector}`", "cpu", 1)
    if not astra_available():
        arow["note"] = "astra-toolbox cannot load here"
    else:
        try:
            proj = AstraProjector2D(geom, projector)
            y_np = proj.forward(x_np)
            log(f"  {case.label} [cpu] timing astra's projector ...")
            _time_per_slice(
                arow,
                {
                    "forward": lambda: proj.forward(x_np),
                    "adjoint": lambda: proj.adjoint(y_np),
                    "normal": lambda: proj.adjoint(proj.forward(x_np)),
                },
                repeats,
            )
            arow["note"] = "one slice per call"
            del proj
        except BackendUnavailableError as exc:
            arow["note"] = f"unavailable: {exc}"
    timings.append(arow)

    if case.kind == "parallel":
        from skimage.transform import radon  # noqa: PLC0415

        srow = _empty_timing(case, "scikit-image `radon`", "cpu", 1)
        theta = np.degrees(np.asarray(geom.angles))
        log(f"  {case.label} [cpu] timing scikit-image radon ...")
        _time_per_slice(srow, {"forward": lambda: radon(x_np, theta=theta, circle=True)}, repeats)
        srow["note"] = f"forward only; its own geometry ({n} detectors, circle=True)"
        timings.append(srow)
    _release_memory()
    return timings, matrices


def _matrix_row(case: Case, device: str, source: str, *, build_s=None, nnz=None, mb=None, note: str = "") -> dict:
    return {
        "case": case.label,
        "device": device,
        "source": source,
        "build_s": build_s,
        "transpose_s": None,
        "nnz": nnz,
        "mb": mb,
        "used_for_timings": False,
        "note": note,
    }


def _run_mri_case(case: Case, repeats: int, batch: int, devices: list[str], log) -> list:
    import torch  # noqa: PLC0415

    from medrecon.operators.coils import simulated_maps  # noqa: PLC0415
    from medrecon.operators.mri import MultiCoilMRI, SingleCoilMRI  # noqa: PLC0415

    n = case.size
    mask_np = column_mask((n, n), case.acceleration, case.center_fraction)
    image = (_phantom(n) * _smooth_phase(n)).astype(np.complex64)
    xb_host = torch.from_numpy(_batch_of(image, batch))
    mask = torch.from_numpy(mask_np)
    maps = simulated_maps(case.coils, (n, n)) if case.coils > 1 else None
    timings = []
    for device in devices:
        impl = "medrecon SingleCoilMRI" if maps is None else "medrecon MultiCoilMRI (SENSE)"
        row = _empty_timing(case, impl, device, batch)
        need = 10 * batch * case.coils * n * n * 8
        note = _memory_note(need, device)
        if note is not None:
            row["note"] = note
            timings.append(row)
            continue
        op = SingleCoilMRI(mask) if maps is None else MultiCoilMRI(maps[None], mask)
        op = op.to(device)
        log(f"  {case.label} [{device}] timing the operator ...")
        with torch.no_grad():
            xb = xb_host.to(device)
            x1 = xb[:1].contiguous()
            yb = op(xb)
            y1 = yb[:1].contiguous()
            _time_operator(row, op, x1, y1, xb, yb, repeats, device)
        row["note"] = f"complex64; sampled fraction {mask_np.mean():.3f}"
        timings.append(row)
        del op, xb, x1, yb, y1
        _release_memory()

    # ------------------------------------------------------------- sigpy's SENSE linop (host, one slice)
    import sigpy.mri.linop  # noqa: PLC0415

    mps = (maps.numpy() if maps is not None else np.ones((1, n, n), dtype=np.complex64)).astype(np.complex64)
    sense = sigpy.mri.linop.Sense(mps, weights=mask_np)
    x_np = image
    y_np = sense(x_np)
    srow = _empty_timing(case, "sigpy `mri.linop.Sense`", "cpu", 1)
    log(f"  {case.label} [cpu] timing sigpy's Sense ...")
    _time_per_slice(
        srow,
        {"forward": lambda: sense(x_np), "adjoint": lambda: sense.H(y_np), "normal": lambda: sense.N(x_np)},
        repeats,
    )
    srow["note"] = "one slice per call" + ("; 1 coil = all-ones map" if maps is None else "")
    timings.append(srow)
    del sense, mps
    _release_memory()
    return timings


# ------------------------------------------------------------------------------- non-Cartesian MRI
def _empty_nufft_row(case: Case, impl: str, device: str, batch: int) -> dict:
    return {
        "case": case.label,
        "samples": int(nufft_coordinates(case).shape[0]),
        "coils": case.coils,
        "implementation": impl,
        "device": device,
        "batch": batch,
        "setup_s": None,
        "toeplitz_s": None,
        "b1_ms": dict.fromkeys(NUFFT_OPS),
        "batch_ms": dict.fromkeys(NUFFT_OPS),
        "per_slice_ms": dict.fromkeys(NUFFT_OPS),
        "rel_error": None,
        "note": "",
    }


def _rel_error(y, reference: np.ndarray | None) -> float | None:
    """``||y - ref|| / ||ref||`` of a forward output (any layout holding the same coils x samples)."""
    if reference is None:
        return None
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y, dtype=np.complex128).reshape(reference.shape)
    return float(np.linalg.norm(y - reference) / np.linalg.norm(reference))


def _time_nufft(row: dict, fns: dict, one: dict, many: dict, repeats: int, device: str) -> None:
    """Fill ``row``'s B=1 columns (``fns[name](one[name])``) and, where ``many`` has the operation,
    its batch columns."""
    for name, fn in fns.items():
        a1 = one[name]
        row["b1_ms"][name] = 1e3 * time_call(lambda: fn(a1), repeats, device)
        if name in many:
            ab = many[name]
            per_batch = 1e3 * time_call(lambda: fn(ab), repeats, device)
            row["batch_ms"][name] = per_batch
            row["per_slice_ms"][name] = per_batch / row["batch"]


def _toeplitz_note(row: dict) -> str:
    """How many times faster the Toeplitz normal is than A^H (A x), at B=1 and B=batch."""
    parts = []
    for column, label in (("b1_ms", "B=1"), ("batch_ms", f"B={row['batch']}")):
        toeplitz, plain = row[column]["normal"], row[column]["normal_plain"]
        if toeplitz and plain:
            parts.append(f"{plain / toeplitz:.1f}x ({label})")
    return "A^H A / Toeplitz: " + ", ".join(parts) if parts else ""


def _nufft_reference(coords, maps, image: np.ndarray) -> tuple[np.ndarray | None, str]:
    """medrecon's finufft backend in complex128 at ``REFERENCE_EPS``: ``(coils, K)``, or None and why."""
    import torch  # noqa: PLC0415

    from medrecon.operators.nufft import NonCartesianMRI, finufft_available  # noqa: PLC0415

    if not finufft_available():
        return None, "no accuracy reference: finufft is not installed"
    n = image.shape[-1]
    maps128 = None if maps is None else maps.to(torch.complex128)
    ref = NonCartesianMRI(coords, (n, n), maps128, backend="finufft", eps=REFERENCE_EPS)
    with torch.no_grad():
        y = ref(torch.from_numpy(image.astype(np.complex128))[None, None])
    return y[0].numpy(), ""


def _run_nufft_case(case: Case, repeats: int, batch: int, devices: list[str], log) -> list:
    import torch  # noqa: PLC0415

    from medrecon.operators.coils import simulated_maps  # noqa: PLC0415
    from medrecon.operators.nufft import NonCartesianMRI, finufft_available  # noqa: PLC0415

    n = case.size
    coords = nufft_coordinates(case)
    image = (_phantom(n) * _smooth_phase(n)).astype(np.complex64)
    xb_host = torch.from_numpy(_batch_of(image, batch))
    maps = simulated_maps(case.coils, (n, n))[None].to(torch.complex64) if case.coils > 1 else None
    reference, ref_note = _nufft_reference(coords, maps, image)
    rows = []

    # ------------------------------------------------------------- medrecon's operator, both backends
    runs = [("torch", device) for device in devices] + [("finufft", "cpu")]
    for backend, device in runs:
        row = _empty_nufft_row(case, f"medrecon NonCartesianMRI ({backend})", device, batch)
        rows.append(row)
        if backend == "finufft" and not finufft_available():
            row["note"] = "finufft is not installed"
            continue
        # a few (B, coils, 2H, 2W) complex64 buffers (padded grids, FFTs) at a time
        note = _memory_note(8 * batch * case.coils * 4 * n * n * 8, device)
        if note is not None:
            row["note"] = note
            continue
        log(f"  {case.label} [{device}] timing NonCartesianMRI ({backend}) ...")
        with torch.no_grad():
            op = NonCartesianMRI(coords, (n, n), maps, backend=backend, eps=NUFFT_EPS).to(device)
            plain = NonCartesianMRI(coords, (n, n), maps, backend=backend, eps=NUFFT_EPS, toeplitz=False).to(device)
            xb = xb_host.to(device)
            x1 = xb[:1].contiguous()
            row["setup_s"], y1 = _time_once(lambda: op(x1), device)
            row["rel_error"] = _rel_error(y1, reference)
            row["toeplitz_s"], _ = _time_once(lambda: op.toeplitz_kernel(x1.device, x1.dtype), device)
            yb = op(xb)
            y1 = yb[:1].contiguous()
            fns = {"forward": op.forward, "adjoint": op.adjoint, "normal": op.normal, "normal_plain": plain.normal}
            one = {"forward": x1, "adjoint": y1, "normal": x1, "normal_plain": x1}
            many = {"forward": xb, "adjoint": yb, "normal": xb, "normal_plain": xb}
            _time_nufft(row, fns, one, many, repeats, device)
        row["note"] = "; ".join(filter(None, [_toeplitz_note(row), ref_note]))
        del op, plain, xb, x1, yb, y1
        _release_memory()

    # ------------------------------------------------------------- sigpy (host, one slice per call)
    import sigpy.linop  # noqa: PLC0415
    import sigpy.mri.linop  # noqa: PLC0415

    k_sigpy = coords.numpy() * (np.array([n, n]) / (2 * np.pi))  # cycles per field of view, per axis
    impl = "sigpy `linop.NUFFT`" if maps is None else "sigpy `mri.linop.Sense(coord=...)`"
    srow = _empty_nufft_row(case, impl, "cpu", 1)
    if maps is None:
        srow["setup_s"], lin = _time_once(lambda: sigpy.linop.NUFFT([n, n], k_sigpy))
    else:
        mps = maps[0].numpy()
        srow["setup_s"], lin = _time_once(lambda: sigpy.mri.linop.Sense(mps, coord=k_sigpy))
    log(f"  {case.label} [cpu] timing sigpy ...")
    y_np = lin(image)
    srow["rel_error"] = _rel_error(y_np, reference)
    _time_nufft(srow, {"forward": lin, "adjoint": lin.H, "normal_plain": lin.N},
                {"forward": image, "adjoint": y_np, "normal_plain": image}, {}, repeats, "cpu")
    srow["note"] = "; ".join(filter(None, ["one slice per call; its defaults oversamp 1.25, width 4", ref_note]))
    rows.append(srow)
    del lin, y_np

    # ------------------------------------------------------------- mri-nufft (optional, host)
    rows.append(_mrinufft_row(case, coords, maps, image, xb_host.numpy(), reference, ref_note, repeats, batch, log))
    _release_memory()
    return rows


def _mrinufft_row(case, coords, maps, image, xb, reference, ref_note, repeats, batch, log) -> dict:
    """mri-nufft's finufft backend: B=1 and B=batch (``n_batchs``), all coils x slices in one
    finufft call (``n_trans``). Its samples are in cycles per pixel, [-0.5, 0.5); its operators
    are scaled by ``1 / sqrt(2^ndim H W)`` (``norm_factor``), medrecon's by ``1 / sqrt(H W)``."""
    row = _empty_nufft_row(case, "mri-nufft (finufft backend)", "cpu", batch)
    try:
        import mrinufft  # noqa: PLC0415
    except ImportError:
        row["note"] = "not installed (pip install mri-nufft)"
        return row
    n, coils = case.size, case.coils
    samples = (coords.numpy() / (2 * np.pi)).astype(np.float32)  # cycles per pixel
    smaps = None if maps is None else maps[0].numpy()
    try:
        nufft_class = mrinufft.get_operator("finufft")

        def make(n_batchs: int):
            with warnings.catch_warnings():  # "Samples will be rescaled to [-pi, pi)": as documented
                warnings.simplefilter("ignore", UserWarning)
                return nufft_class(samples, (n, n), n_coils=coils, smaps=smaps, n_batchs=n_batchs,
                                   n_trans=n_batchs * coils, eps=NUFFT_EPS)

        log(f"  {case.label} [cpu] timing mri-nufft ...")
        row["setup_s"], op1 = _time_once(lambda: make(1))
        opb = make(batch)
        y1 = op1.op(image)
        row["rel_error"] = _rel_error(y1 * (op1.norm_factor / n), reference)
        yb = opb.op(xb)
        one = {"forward": image, "adjoint": y1, "normal_plain": image}
        many = {"forward": xb, "adjoint": yb, "normal_plain": xb}
        for name, fn1, fnb in (
            ("forward", op1.op, opb.op),
            ("adjoint", op1.adj_op, opb.adj_op),
            ("normal_plain", lambda x: op1.adj_op(op1.op(x)), lambda x: opb.adj_op(opb.op(x))),
        ):
            row["b1_ms"][name] = 1e3 * time_call(lambda f=fn1, a=one[name]: f(a), repeats)
            per_batch = 1e3 * time_call(lambda f=fnb, a=many[name]: f(a), repeats)
            row["batch_ms"][name] = per_batch
            row["per_slice_ms"][name] = per_batch / batch
        version = f"mri-nufft {_dist_version('mri-nufft')}; its output x2 for the error"
        row["note"] = "; ".join(filter(None, [version, ref_note]))
        del op1, opb, y1, yb
    except Exception as exc:  # noqa: BLE001 - an optional reference: its failure is a note, not a crash
        if _is_oom(exc):
            row["note"] = f"skipped: out of memory ({type(exc).__name__})"
        else:
            row["note"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        log(f"  {case.label} mri-nufft: {row['note']}")
    return row


def run_cases(
    cases: list[Case],
    repeats: int = DEFAULT_REPEATS,
    *,
    batch: int = DEFAULT_BATCH,
    devices: list[str] | None = None,
    log: Callable[[str], None] | None = _log_default,
) -> dict:
    """Run the cases one after another; returns ``{"timings": [...], "matrices": [...]}``.

    A timing row: ``case``, ``implementation``, ``device``, ``batch``, and ``b1_ms``,
    ``batch_ms``, ``per_slice_ms`` (each ``{"forward", "adjoint", "normal"} -> ms or None``), ``note``.
    A matrix row (CT only): ``case``, ``device``, ``source`` (astra / torch), ``build_s``,
    ``transpose_s`` (for the matrix the timings used), ``nnz``, ``mb`` (values + indices, 10^6
    bytes), ``used_for_timings``, ``note``.
    A NUFFT row (``result["nufft"]``): ``case``, ``samples``, ``coils``, ``implementation``,
    ``device``, ``batch``, ``setup_s`` (first forward call of a fresh operator; constructing it for
    sigpy and mri-nufft), ``toeplitz_s`` (building the Toeplitz kernel), ``b1_ms`` / ``batch_ms`` /
    ``per_slice_ms`` (each ``{"forward", "adjoint", "normal", "normal_plain"} -> ms or None``;
    ``normal`` is the Toeplitz one, ``normal_plain`` ``A^H (A x)``), ``rel_error`` (forward against
    the eps=1e-12 finufft reference), ``note``.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise InputError(f"repeats must be a positive integer, got {repeats!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a positive integer, got {batch!r}")
    log = log or (lambda msg: None)
    devices = devices or _devices()
    timings, matrices, nufft = [], [], []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        for case in cases:
            log(f"{case.label}:")
            t0 = time.perf_counter()
            if case.modality == "ct":
                t, m = _run_ct_case(case, repeats, batch, devices, log)
                timings += t
                matrices += m
            elif case.modality == "mri":
                timings += _run_mri_case(case, repeats, batch, devices, log)
            else:
                nufft += _run_nufft_case(case, repeats, batch, devices, log)
            log(f"  done in {time.perf_counter() - t0:.1f} s")
    return {"timings": timings, "matrices": matrices, "nufft": nufft}


# ============================================================================ report
def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _triple(d: dict) -> str:
    if all(v is None for v in d.values()):
        return "—"
    return " / ".join(_fmt(d[k]) for k in ("forward", "adjoint", "normal"))


def _version(module: str) -> str:
    try:
        mod = __import__(module)
        return str(getattr(mod, "__version__", "?"))
    except Exception as exc:  # noqa: BLE001
        return f"not loadable ({type(exc).__name__})"


def _dist_version(name: str) -> str:
    """A distribution's installed version without importing it ("not installed" where missing)."""
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict:
    """CPU model, cores, RAM, GPU and library versions of this machine."""
    import torch  # noqa: PLC0415

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    ram = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    from medrecon.operators.astra_backend import _load_astra  # noqa: PLC0415

    astra, why = _load_astra()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": None if ram is None else ram / 2**30,
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "astra": getattr(astra, "__version__", "?") if astra is not None else f"not loadable ({why})",
        "sigpy": _version("sigpy"),
        "skimage": _version("skimage"),
        "numpy": np.__version__,
        "finufft": _dist_version("finufft"),
        "mrinufft": _dist_version("mri-nufft"),
    }


PROG = "medrecon bench operators"


def command_line(quick: bool, repeats: int | None, write: str | None, only: str | None = None,
                 prog: str = PROG) -> str:
    args = shlex.split(prog)
    if quick:
        args.append("--quick")
    if repeats is not None:
        args += ["--repeats", str(repeats)]
    if only is not None:
        args += ["--only", str(only)]
    if write is not None:
        args += ["--write", str(write)]
    return shlex.join(args)


def _load_lines(load: tuple | None, info: dict) -> list[str]:
    if load is None:
        return []
    lines = [
        "- Load average (1 / 5 / 15 min) at start and end: "
        + " -> ".join(" / ".join(f"{v:.2f}" for v in item) for item in load)
        + " (other processes on the machine slow the timings down, small calls most)"
    ]
    cores = info.get("usable_cores") or info.get("cores") or 1
    if max(item[0] for item in load) > 0.75 * cores:
        lines.append(
            f"- **Warning: the machine was busy during this run** (1-minute load above 0.75 x {cores} "
            "cores): torch's worker threads had to wait for a core, so times are inflated, small "
            "multi-threaded calls most (B=1 rows, MRI); compare rows of one run only, and rerun on an "
            "idle machine for numbers to quote."
        )
    return lines


def _footer(total_s: float | None, peak_rss_bytes: int | None) -> list[str]:
    footer = []
    if total_s is not None:
        footer.append(f"Total run time: {total_s / 60:.1f} min ({total_s:.0f} s).")
    if peak_rss_bytes is not None:
        footer.append(f"Peak resident memory of the process: {peak_rss_bytes / 2**30:.2f} GiB.")
    return ["", " ".join(footer)] if footer else []


def _header_lines(title: str, *, command: str, info: dict, date: str, software: str, repeats: int,
                  method_tail: str) -> list[str]:
    """The first lines of a report section: title, command, date, machine, software and method."""
    ram = "?" if info.get("ram_gib") is None else f"{info['ram_gib']:.1f} GiB"
    return [
        title,
        "",
        f"- Command: `{command}`",
        f"- Date: {date}",
        f"- Machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), {ram} RAM; "
        f"GPU: {info['gpu']}",
        f"- Software: {software}",
        f"- Method: median of {repeats} run{'' if repeats == 1 else 's'} after one warm-up call (`time.perf_counter`"
        + (", `torch.cuda.synchronize()` around GPU calls" if info["gpu"] != "none" else "")
        + f"); {method_tail}",
    ]


def format_report(
    result: dict,
    *,
    command: str,
    info: dict,
    date: str,
    repeats: int,
    batch: int,
    total_s: float | None = None,
    peak_rss_bytes: int | None = None,
    load: tuple | None = None,
) -> str:
    """The Markdown section: header, timing table, matrix table, notes, run time and peak memory."""
    lines = _header_lines(
        "## Operator timings (`medrecon bench operators`)", command=command, info=info, date=date, repeats=repeats,
        software=f"Python {info['python']}, torch {info['torch']} ({info['torch_threads']} threads, "
        f"`torch.get_num_threads()`), astra-toolbox {info['astra']}, sigpy {info['sigpy']}, "
        f"scikit-image {info['skimage']}, numpy {info['numpy']}",
        method_tail=f"batch B = {batch} slices; under `torch.no_grad()`; float32 CT, complex64 MRI.",
    )
    lines += _load_lines(load, info)
    lines += [
        "",
        f"Times in ms: forward / adjoint / normal (A^H A). \"B=1\" is one slice per call; \"B={batch}\" "
        "is one call on the whole batch, given per batch and per slice.",
        "",
        f"| case | implementation | device | B=1 (ms/slice) | B={batch} (ms/batch) | B={batch} (ms/slice) | note |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["timings"]:
        lines.append(
            f"| {r['case']} | {r['implementation']} | {r['device']} | {_triple(r['b1_ms'])} | "
            f"{_triple(r['batch_ms'])} | {_triple(r['per_slice_ms'])} | {r['note']} |"
        )
    if result["matrices"]:
        lines += [
            "",
            "CT system matrices (sparse CSR, float32 values, int32 indices where they fit). \"build\" is "
            "`CTProjector(geom, matrix_source=...).matrix(device)`; \"transpose\" is the CSR transpose the "
            "first adjoint call builds (held beside the matrix: same nnz and memory). The timings above use "
            "the matrix marked \"yes\" (the operator's default source here).",
            "",
            "| case | device | source | build (s) | transpose (s) | nnz | memory (MB, values + indices) "
            "| used above | note |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for m in result["matrices"]:
            nnz = "—" if m["nnz"] is None else f"{m['nnz']:,}"
            mb = "—" if m["mb"] is None else f"{m['mb']:.1f}"
            lines.append(
                f"| {m['case']} | {m['device']} | {m['source']} | {_fmt(m['build_s'])} | "
                f"{_fmt(m['transpose_s'])} | {nnz} | {mb} | {'yes' if m['used_for_timings'] else ''} | "
                f"{m['note']} |"
            )
    lines += [
        "",
        "Notes:",
        "",
        "- astra's CPU projectors take one slice per call (the `astra` backend of `CTProjector` loops over "
        "the batch); their normal is a forward call followed by a back projection.",
        "- scikit-image's `radon` is a different discretisation (rotate-and-sum, `circle=True`, angles in "
        "degrees, as many detectors as image columns): a reference for speed, not for values.",
        "- sigpy's `Sense` (numpy, one slice per call) is `sigpy.mri.linop.Sense(maps, weights=mask)`, its "
        "`.H` and `.N`; for one coil its map is all ones.",
        "- The MRI mask keeps every 4th column plus a centred block of 8% of the columns.",
        "- Nothing in the test suite asserts any of these times.",
    ]
    lines += _footer(total_s, peak_rss_bytes)
    return "\n".join(lines) + "\n"


def _quad(d: dict) -> str:
    if all(v is None for v in d.values()):
        return "—"
    return " / ".join(_fmt(d[k]) for k in NUFFT_OPS)


def _error(value: float | None) -> str:
    return "—" if value is None else f"{value:.1e}"


def format_nufft_report(
    result: dict,
    *,
    command: str,
    info: dict,
    date: str,
    repeats: int,
    batch: int,
    total_s: float | None = None,
    peak_rss_bytes: int | None = None,
    load: tuple | None = None,
) -> str:
    """The Markdown section of the non-Cartesian MRI rows (``result["nufft"]``)."""
    lines = _header_lines(
        "### Non-Cartesian MRI: NUFFT timings (`medrecon bench operators`)", command=command, info=info, date=date,
        repeats=repeats,
        software=f"Python {info['python']}, torch {info['torch']} ({info['torch_threads']} threads), "
        f"finufft {info.get('finufft', '?')}, sigpy {info['sigpy']}, mri-nufft {info.get('mrinufft', '?')}, "
        f"numpy {info['numpy']}",
        method_tail=f"batch B = {batch} slices; under `torch.no_grad()`; complex64 images and k-space; "
        f"NUFFT accuracy eps = {NUFFT_EPS:g} for medrecon and mri-nufft.",
    )
    lines += _load_lines(load, info)
    lines += [
        "",
        "Times in ms: forward / adjoint / normal by the Toeplitz embedding / normal as A^H (A x) "
        f"(\"—\" where an implementation has no such call). \"B=1\" is one slice per call; \"B={batch}\" "
        "is one call on the whole batch, given per batch and per slice. \"first call\" is the first "
        "forward call of a fresh operator at B=1 (the torch backend builds its interpolation matrix "
        "there) or, for sigpy and mri-nufft, constructing the operator (mri-nufft makes its finufft "
        "plans there); \"Toeplitz kernel\" builds the transfer function the Toeplitz normal uses. "
        "\"rel. error\" is ||y - y_ref|| / ||y_ref|| of the forward of the same image against "
        f"medrecon's finufft backend in complex128 at eps = {REFERENCE_EPS:g}.",
        "",
        f"| case | implementation | device | first call (s) | Toeplitz kernel (s) | B=1 (ms/slice) | "
        f"B={batch} (ms/batch) | B={batch} (ms/slice) | rel. error | note |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result.get("nufft", []):
        lines.append(
            f"| {r['case']} | {r['implementation']} | {r['device']} | {_fmt(r['setup_s'])} | "
            f"{_fmt(r['toeplitz_s'])} | {_quad(r['b1_ms'])} | {_quad(r['batch_ms'])} | "
            f"{_quad(r['per_slice_ms'])} | {_error(r['rel_error'])} | {r['note']} |"
        )
    lines += [
        "",
        "Notes:",
        "",
        f"- Trajectories: radial, {NUFFT_SPOKES} golden-angle spokes of N samples (N the image side, no "
        "read-out oversampling); "
        f"spiral, sigpy's variable-density design (alpha 1.5) with {SPIRAL_INTERLEAVES} interleaves and "
        "the undersampling R whose sample count is closest to the radial one's. Coordinates in radians "
        "per pixel for medrecon; sigpy gets them in cycles per field of view (omega N / (2 pi) per "
        "axis), mri-nufft in cycles per pixel (omega / (2 pi), in [-0.5, 0.5)).",
        "- Image: the Shepp-Logan phantom times a smooth phase; 8 coils: `simulated_maps(8, (N, N))`.",
        "- medrecon's `finufft` backend plans inside every call (finufft's simple interface, "
        "`torch.get_num_threads()` threads); its `torch` backend holds a sparse interpolation matrix "
        "built at the first call. Toeplitz normal: one FFT pair on a 2x grid per coil, no interpolation.",
        "- sigpy (numpy + numba, one slice per call) runs with its default NUFFT accuracy (oversampling "
        "1.25, kernel width 4); its normal is `.N`, i.e. A^H (A x).",
        "- mri-nufft (`mrinufft.get_operator(\"finufft\")`, optional; not a medrecon dependency) is "
        "built with `n_batchs` = B and `n_trans` = B x coils (every coil image of the call in one "
        "finufft transform), `eps` as medrecon's; its operators carry 1 / sqrt(2^2 H W) where medrecon's "
        "carry 1 / sqrt(H W), so its output is multiplied by 2 before the error is taken. It has no "
        "Toeplitz normal: its normal is `adj_op(op(x))`.",
        "- Accuracy in complex64 is limited by single precision (finufft's single-precision transforms "
        "reach about 1e-5); the torch backend accumulates its interpolation in float32.",
        "- Nothing in the test suite asserts any of these times.",
    ]
    lines += _footer(total_s, peak_rss_bytes)
    return "\n".join(lines) + "\n"


def _loadavg() -> tuple[float, float, float] | None:
    try:
        return tuple(os.getloadavg())
    except (OSError, AttributeError):
        return None


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# ============================================================================ writing the Markdown file
def check_write_target(path: str | os.PathLike) -> None:
    """Fail early (before a long run) if ``path`` cannot take the operators and NUFFT sections."""
    sections.check_write_target(path, SECTION)
    sections.check_write_target(path, NUFFT_SECTION)


def replace_section(text: str | None, section: str, path: Path | str = "<text>") -> str:
    return sections.replace_section(text, section, SECTION, path)


def replace_nufft_section(text: str | None, section: str, path: Path | str = "<text>") -> str:
    """``text`` with the NUFFT section replaced; where it has none yet, the section goes right after
    the operators section's end marker (or, without one, at the end of the page)."""
    if text is not None:
        lines = text.splitlines(keepends=True)
        stripped = [line.strip() for line in lines]
        ends = [i for i, line in enumerate(stripped) if line == END_MARKER]
        if NUFFT_START_MARKER not in stripped and NUFFT_END_MARKER not in stripped and len(ends) == 1:
            head = "".join(lines[: ends[0] + 1])
            head += "" if head.endswith("\n") else "\n"
            block = f"\n{NUFFT_START_MARKER}\n{section.rstrip(chr(10))}\n{NUFFT_END_MARKER}\n"
            return head + block + "".join(lines[ends[0] + 1 :])
    return sections.replace_section(text, section, NUFFT_SECTION, path)


def write_section(path: str | os.PathLike, section: str) -> None:
    sections.write_section(path, section, SECTION)


def write_sections(path: str | os.PathLike, operators: str | None = None, nufft: str | None = None) -> None:
    """Replace the operators and/or the NUFFT section of the Markdown file ``path`` (one atomic write);
    a section passed as None is left as it is."""
    from medrecon.io.atomic import atomic_output  # noqa: PLC0415

    p = Path(path)
    text = p.read_text(encoding="utf-8") if p.exists() else None
    if operators is not None:
        text = replace_section(text, operators, p)
    if nufft is not None:
        text = replace_nufft_section(text, nufft, p)
    if text is None:
        return
    with atomic_output(p, overwrite=True) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ============================================================================ entry point
def main(quick: bool = False, repeats: int | None = None, write: str | None = None, only: str | None = None,
         *, prog: str = PROG) -> int:
    """``medrecon bench operators [--quick] [--repeats N] [--only {ct-mri,nufft}] [--write MARKDOWN]``.

    ``only="nufft"`` runs (and writes) only the non-Cartesian MRI table, ``only="ct-mri"`` only the
    CT and Cartesian MRI tables; ``--write`` replaces just the sections that were measured."""
    t_start = time.perf_counter()
    load_start = _loadavg()
    n_repeats = repeats if repeats is not None else (QUICK_REPEATS if quick else DEFAULT_REPEATS)
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, int) or n_repeats < 1:
        raise InputError(f"--repeats must be a positive integer, got {repeats!r}")
    if only is not None and only not in ONLY_CHOICES:
        raise InputError(f"--only must be one of {', '.join(ONLY_CHOICES)}, got {only!r}")
    if write is not None:
        check_write_target(write)
    import torch  # noqa: PLC0415

    command = command_line(quick, repeats, write, only, prog)
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info = machine_info()
    _log_default(
        f"{command}\n{info['cpu']}, {info['cores']} cores, torch {info['torch']} with "
        f"{torch.get_num_threads()} threads, GPU: {info['gpu']}"
    )
    result = run_cases(default_cases(quick, only), n_repeats, batch=DEFAULT_BATCH)
    total = time.perf_counter() - t_start
    common = dict(
        command=command,
        info=info,
        date=date,
        repeats=n_repeats,
        batch=DEFAULT_BATCH,
        total_s=total,
        peak_rss_bytes=peak_rss_bytes(),
        load=None if load_start is None else (load_start, _loadavg() or load_start),
    )
    report = format_report(result, **common) if only != "nufft" else None
    nufft_report = format_nufft_report(result, **common) if only != "ct-mri" else None
    print("\n".join(filter(None, [report, nufft_report])), end="", flush=True)
    if write is not None:
        write_sections(write, report, nufft_report)
        written = " and ".join(n for n, t in (("operators", report), ("NUFFT", nufft_report)) if t is not None)
        _log_default(f"wrote the {written} section{'s' if report and nufft_report else ''} of {write}")
    return 0


def _parse_args(argv: list[str] | None = None):
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="python -m medrecon.benchmarks.operators",
        description="time forward/adjoint/normal of the CT, MRI and non-Cartesian MRI operators",
    )
    parser.add_argument("--quick", action="store_true", help="a small subset of the cases, few repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per case (default: 5, quick: 2)")
    parser.add_argument("--only", choices=ONLY_CHOICES, default=None,
                        help="only the CT + Cartesian MRI tables, or only the NUFFT table")
    parser.add_argument("--write", metavar="MARKDOWN", default=None,
                        help="also write the measured tables into their sections of this Markdown file")
    return parser.parse_args(argv)


__all__ = [
    "Case",
    "ct_case",
    "mri_case",
    "default_cases",
    "column_mask",
    "time_call",
    "run_cases",
    "format_report",
    "format_nufft_report",
    "nufft_case",
    "nufft_coordinates",
    "matching_spiral_undersampling",
    "machine_info",
    "replace_section",
    "write_section",
    "write_sections",
    "main",
]


if __name__ == "__main__":
    _args = _parse_args()
    sys.exit(main(quick=_args.quick, repeats=_args.repeats, write=_args.write, only=_args.only,
                  prog="python -m medrecon.benchmarks.operators"))
