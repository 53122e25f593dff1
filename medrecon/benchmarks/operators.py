"""``medrecon bench operators``: forward / adjoint / normal timings of the CT and MRI operators.

For each case (CT parallel and fan beam at 256 and 512 pixels with 23 / 60 / 180 views; MRI 320x320
single coil and 8-coil SENSE with a 4x column mask) it times, on the same data in the same run:

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
"""

from __future__ import annotations

import ctypes
import datetime as _dt
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


# ============================================================================ cases
@dataclass(frozen=True)
class Case:
    """One benchmark case: a CT geometry or an MRI acquisition.

    ``modality`` is ``ct`` (``kind`` ``parallel`` or ``fan``, ``views`` projection angles) or
    ``mri`` (``coils`` 1 for :class:`SingleCoilMRI`, more for SENSE; ``acceleration`` of the
    column mask, whose fully sampled centre is ``center_fraction`` of the columns).
    """

    modality: str
    size: int
    kind: str = ""
    views: int = 0
    coils: int = 1
    acceleration: int = 4
    center_fraction: float = 0.08

    def __post_init__(self):
        if self.modality not in ("ct", "mri"):
            raise InputError(f"benchmark case: modality must be 'ct' or 'mri', got {self.modality!r}")
        if self.size < 8:
            raise InputError(f"benchmark case: size must be at least 8 pixels, got {self.size}")
        if self.modality == "ct":
            if self.kind not in ("parallel", "fan"):
                raise InputError(f"benchmark case: CT kind must be 'parallel' or 'fan', got {self.kind!r}")
            if self.views < 1:
                raise InputError(f"benchmark case: CT needs at least one view, got {self.views}")
        elif self.coils < 1:
            raise InputError(f"benchmark case: MRI needs at least one coil, got {self.coils}")

    @property
    def label(self) -> str:
        if self.modality == "ct":
            return f"CT {self.kind} {self.size}², {self.views} views"
        coils = "1 coil" if self.coils == 1 else f"{self.coils}-coil SENSE"
        return f"MRI {self.size}², {coils}, {self.acceleration}x"


def ct_case(kind: str, size: int, views: int) -> Case:
    return Case("ct", size, kind=kind, views=views)


def mri_case(size: int, coils: int, acceleration: int = 4) -> Case:
    return Case("mri", size, coils=coils, acceleration=acceleration)


def default_cases(quick: bool = False) -> list[Case]:
    """The full set (or ``--quick``'s subset) of cases, smallest first within each modality."""
    sizes, views = ((256,), (23, 180)) if quick else ((256, 512), (23, 60, 180))
    cases = [ct_case(kind, n, v) for kind in ("parallel", "fan") for n in sizes for v in views]
    cases += [mri_case(320, 1), mri_case(320, 8)]
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
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise InputError(f"repeats must be a positive integer, got {repeats!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a positive integer, got {batch!r}")
    log = log or (lambda msg: None)
    devices = devices or _devices()
    timings, matrices = [], []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        for case in cases:
            log(f"{case.label}:")
            t0 = time.perf_counter()
            if case.modality == "ct":
                t, m = _run_ct_case(case, repeats, batch, devices, log)
                timings += t
                matrices += m
            else:
                timings += _run_mri_case(case, repeats, batch, devices, log)
            log(f"  done in {time.perf_counter() - t0:.1f} s")
    return {"timings": timings, "matrices": matrices}


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
    }


def command_line(quick: bool, repeats: int | None, write: str | None) -> str:
    args = ["medrecon", "bench", "operators"]
    if quick:
        args.append("--quick")
    if repeats is not None:
        args += ["--repeats", str(repeats)]
    if write is not None:
        args += ["--write", str(write)]
    return shlex.join(args)


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
    ram = "?" if info.get("ram_gib") is None else f"{info['ram_gib']:.1f} GiB"
    lines = [
        "## Operator timings (`medrecon bench operators`)",
        "",
        f"- Command: `{command}`",
        f"- Date: {date}",
        f"- Machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), {ram} RAM; "
        f"GPU: {info['gpu']}",
        f"- Software: Python {info['python']}, torch {info['torch']} ({info['torch_threads']} threads, "
        f"`torch.get_num_threads()`), astra-toolbox {info['astra']}, sigpy {info['sigpy']}, "
        f"scikit-image {info['skimage']}, numpy {info['numpy']}",
        f"- Method: median of {repeats} run{'' if repeats == 1 else 's'} after one warm-up call (`time.perf_counter`"
        + (", `torch.cuda.synchronize()` around GPU calls" if info["gpu"] != "none" else "")
        + f"); batch B = {batch} slices; under `torch.no_grad()`; float32 CT, complex64 MRI.",
    ]
    if load is not None:
        lines.append(
            "- Load average (1 / 5 / 15 min) at start and end: "
            + " -> ".join(" / ".join(f"{v:.2f}" for v in item) for item in load)
            + " (other processes on the machine slow the timings down, small calls most)"
        )
        cores = info.get("usable_cores") or info.get("cores") or 1
        if max(item[0] for item in load) > 0.75 * cores:
            lines.append(
                f"- **Warning: the machine was busy during this run** (1-minute load above 0.75 x {cores} "
                "cores): torch's worker threads had to wait for a core, so times are inflated, small "
                "multi-threaded calls most (B=1 rows, MRI); compare rows of one run only, and rerun on an "
                "idle machine for numbers to quote."
            )
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
    footer = []
    if total_s is not None:
        footer.append(f"Total run time: {total_s / 60:.1f} min ({total_s:.0f} s).")
    if peak_rss_bytes is not None:
        footer.append(f"Peak resident memory of the process: {peak_rss_bytes / 2**30:.2f} GiB.")
    if footer:
        lines += ["", " ".join(footer)]
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
    """Fail early (before a long run) if ``path`` cannot take the operators section."""
    sections.check_write_target(path, SECTION)


def replace_section(text: str | None, section: str, path: Path | str = "<text>") -> str:
    return sections.replace_section(text, section, SECTION, path)


def write_section(path: str | os.PathLike, section: str) -> None:
    sections.write_section(path, section, SECTION)


# ============================================================================ entry point
def main(quick: bool = False, repeats: int | None = None, write: str | None = None) -> int:
    """``medrecon bench operators [--quick] [--repeats N] [--write MARKDOWN]``."""
    t_start = time.perf_counter()
    load_start = _loadavg()
    n_repeats = repeats if repeats is not None else (QUICK_REPEATS if quick else DEFAULT_REPEATS)
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, int) or n_repeats < 1:
        raise InputError(f"--repeats must be a positive integer, got {repeats!r}")
    if write is not None:
        check_write_target(write)
    import torch  # noqa: PLC0415

    command = command_line(quick, repeats, write)
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    info = machine_info()
    _log_default(
        f"{command}\n{info['cpu']}, {info['cores']} cores, torch {info['torch']} with "
        f"{torch.get_num_threads()} threads, GPU: {info['gpu']}"
    )
    result = run_cases(default_cases(quick), n_repeats, batch=DEFAULT_BATCH)
    total = time.perf_counter() - t_start
    report = format_report(
        result,
        command=command,
        info=info,
        date=date,
        repeats=n_repeats,
        batch=DEFAULT_BATCH,
        total_s=total,
        peak_rss_bytes=peak_rss_bytes(),
        load=None if load_start is None else (load_start, _loadavg() or load_start),
    )
    print(report, end="", flush=True)
    if write is not None:
        write_section(write, report)
        _log_default(f"wrote the operators section of {write}")
    return 0


__all__ = [
    "Case",
    "ct_case",
    "mri_case",
    "default_cases",
    "column_mask",
    "time_call",
    "run_cases",
    "format_report",
    "machine_info",
    "replace_section",
    "write_section",
    "main",
]
