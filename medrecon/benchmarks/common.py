"""What every benchmark of ``medrecon bench`` needs, in one place.

- the device: :func:`bench_device` (``auto`` -> CUDA where available, else the CPU);
- the machine: :func:`machine_info` (a dict) and :func:`machine_line` (the one line the tables
  print: the CPU model with its native bf16 support, cores, torch threads and version, or the GPU),
  :func:`package_version` (an installed distribution's version);
- timing: :func:`time_call` (median of repeats after a warm-up call, CUDA synchronised) and
  :func:`wall_time` (one call, wall clock);
- memory: :func:`peak_memory` / :func:`peak_rss_bytes` (high-water marks), :func:`available_bytes`,
  :func:`memory_note`, :func:`is_out_of_memory`, :func:`release_memory`;
- the run header every table states (:func:`run_header`: command, machine, date, total seconds) and
  a small Markdown table builder (:func:`markdown_table`).
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import gc
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata

import torch

from medrecon.errors import positive_int

#: CPU flags of native bf16 arithmetic (x86: AMX tiles, AVX-512 BF16), which decide whether bf16
#: networks are fast on a CPU.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


# ============================================================================ device
def bench_device(name):
    """A benchmark's ``--device`` as a ``torch.device``: ``auto`` (or None) is CUDA when available,
    else the CPU; any other name (``cpu``, ``cuda``, ``cuda:1``) is taken as it is."""
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _is_cuda(device) -> bool:
    return str(device).startswith("cuda")


# ============================================================================ machine
def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return None


def cpu_model() -> tuple[str, list[str]]:
    """``(model name, native bf16 flags)`` of the CPU: the name from /proc/cpuinfo on Linux (else
    what :mod:`platform` says) and those of :data:`BF16_FLAGS` that its flags list (empty where it
    has none, or where /proc/cpuinfo cannot be read)."""
    name = platform.processor() or platform.machine()
    info = _read("/proc/cpuinfo")
    if info is None:
        return name, []
    lines = info.splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("model name")), name)
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return name, [f for f in BF16_FLAGS if f in flags]


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages (runnable processes), None where the OS has none."""
    try:
        return tuple(os.getloadavg())
    except (OSError, AttributeError):
        return None


def machine_info(device=None) -> dict:
    """This machine as a dict: ``cpu`` (model name), ``cpu_bf16`` (its native bf16 flags, a list),
    ``cores`` (``os.cpu_count()``), ``usable_cores`` (those this process may run on), ``ram_gib``
    (total memory in GiB, None where unknown), ``gpu`` (the name of ``device`` where it is a CUDA
    device, else of CUDA device 0 where there is one, else ``"none"``), ``python``, ``torch`` (the
    versions), ``torch_threads`` (``torch.get_num_threads()``) and ``load`` (:func:`load_average`)."""
    cpu, bf16 = cpu_model()
    meminfo = _read("/proc/meminfo") or ""
    ram = next((int(line.split()[1]) * 1024 for line in meminfo.splitlines() if line.startswith("MemTotal:")), None)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    if device is not None and _is_cuda(device):
        gpu = torch.cuda.get_device_name(torch.device(device))
    else:
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu": cpu,
        "cpu_bf16": bf16,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gib": None if ram is None else ram / 2**30,
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load": load_average(),
    }


def machine_line(device="cpu", *, load: bool = False) -> str:
    """The one-line machine description the tables print. On CUDA: ``"<GPU name>, torch <version>"``;
    on the CPU: ``"CPU <model> (<native bf16 flags> | no native bf16), <n> cores, <t> threads, torch
    <version>"``. ``load`` adds the 1 / 5 / 15 minute load average (useful for CPU timings on a
    shared machine)."""
    if _is_cuda(device):
        line = f"{torch.cuda.get_device_name(torch.device(device))}, torch {torch.__version__}"
    else:
        name, bf16 = cpu_model()
        line = (f"CPU {name} ({', '.join(bf16) if bf16 else 'no native bf16'}), {os.cpu_count()} cores, "
                f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    avg = load_average() if load else None
    if avg is not None:
        line += f"; load {' / '.join(f'{v:.2f}' for v in avg)}"
    return line


def package_version(distribution: str) -> str:
    """The installed version of a distribution (``"mri-nufft"``), read from its metadata without
    importing it; ``"not installed"`` where it is missing."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


# ============================================================================ timing
def sync(device) -> None:
    """Wait for the device's queued work (``torch.cuda.synchronize`` on CUDA; nothing on the CPU)."""
    if _is_cuda(device):
        torch.cuda.synchronize(torch.device(device))


def time_call(fn: Callable[[], object], repeats: int, device="cpu") -> float:
    """Median wall time in seconds of ``fn()`` over ``repeats`` timed calls after one warm-up call
    (``repeats + 1`` calls in all), ``time.perf_counter`` with the device synchronised before and
    after each call."""
    positive_int(repeats, "repeats")
    sync(device)
    out = fn()
    sync(device)
    del out
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        del out
    return statistics.median(times)


def wall_time(fn: Callable[[], object], device="cpu") -> tuple[float, object]:
    """``(seconds, result)`` of one call ``fn()``: wall clock (``time.perf_counter``), the device
    synchronised before and after; no warm-up (first calls, builds and compilations included)."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


# ============================================================================ memory
def peak_rss_bytes() -> int:
    """Peak resident set size of this process in bytes (``ru_maxrss``: KiB on Linux, bytes on macOS);
    a process-wide high-water mark, it never goes down."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def peak_memory(device) -> int:
    """Peak memory in bytes: on CUDA ``torch.cuda.max_memory_allocated`` of the device (since its
    last ``reset_peak_memory_stats``), on the CPU :func:`peak_rss_bytes`."""
    if _is_cuda(device):
        return int(torch.cuda.max_memory_allocated(torch.device(device)))
    return peak_rss_bytes()


def available_bytes(device="cpu") -> int | None:
    """Bytes the next allocation may use: free GPU memory on CUDA (``torch.cuda.mem_get_info``),
    MemAvailable on Linux, the available physical pages elsewhere; None where unknown."""
    if _is_cuda(device):
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    meminfo = _read("/proc/meminfo") or ""
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_note(needed: int, device="cpu") -> str | None:
    """A "skipped" note when ``needed`` bytes (an estimate) exceed 90% of :func:`available_bytes`,
    else None (also where the available memory is unknown)."""
    have = available_bytes(device)
    if have is None or needed <= 0.9 * have:
        return None
    return f"skipped: needs ~{needed / 2**30:.1f} GiB, {have / 2**30:.1f} GiB available on {device}"


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory failure (``MemoryError``, a CUDA or allocator
    ``RuntimeError``)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def release_memory() -> None:
    """Collect garbage, empty torch's CUDA cache and return freed heap pages to the OS (glibc's
    ``malloc_trim``), so that the next :func:`available_bytes` sees them."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:  # not glibc
        pass


# ============================================================================ tables
def run_header(command: str, device, started: float, **details) -> dict:
    """What every benchmark table states above it: ``command`` (the command line), ``machine``
    (:func:`machine_line` of ``device``), ``date`` (ISO, local) and ``seconds`` (total seconds since
    ``started``, a ``time.perf_counter`` value), then the table's own ``details``."""
    return {"command": command, "machine": machine_line(device), "date": _dt.date.today().isoformat(),
            "seconds": time.perf_counter() - started, **details}


def markdown_table(header_cells: Sequence[object], rows: Sequence[Sequence[object]], *, rule: str = "---") -> str:
    """A Markdown table: ``| a | b |`` and ``|---|---|``, then one line ``| x | y |`` per row, each
    line ending in a newline. Cells are written with ``str``; a row must have as many cells as the
    header. ``rule`` is the text of each cell of the second line (``" --- "`` gives ``| --- |``)."""
    width = len(header_cells)
    lines = ["| " + " | ".join(map(str, header_cells)) + " |", "|" + f"{rule}|" * width]
    for row in rows:
        if len(row) != width:
            raise ValueError(f"a table row has {len(row)} cells, the header {width}: {row!r}")
        lines.append("| " + " | ".join(map(str, row)) + " |")
    return "\n".join(lines) + "\n"


__all__ = [
    "BF16_FLAGS",
    "available_bytes",
    "bench_device",
    "cpu_model",
    "is_out_of_memory",
    "load_average",
    "machine_info",
    "machine_line",
    "markdown_table",
    "memory_note",
    "package_version",
    "peak_memory",
    "peak_rss_bytes",
    "release_memory",
    "run_header",
    "sync",
    "time_call",
    "wall_time",
]
