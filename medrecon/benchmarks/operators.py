"""``medrecon bench operators``: forward / adjoint / normal timings of the CT and MRI operators.

The command line is :mod:`medrecon.commands.bench`'s; this module runs it (:func:`run_operator_benchmark`)
from the parts:

- :mod:`~medrecon.benchmarks.operators_cases`: the cases (CT, Cartesian MRI, non-Cartesian MRI)
  and their data;
- :mod:`~medrecon.benchmarks.operators_ct_mri`: timing the CT and Cartesian MRI operators, the CT
  system matrices and the astra / scikit-image / sigpy references;
- :mod:`~medrecon.benchmarks.operators_nufft`: timing the NUFFT operators and the sigpy /
  mri-nufft references, with their accuracy;
- :mod:`~medrecon.benchmarks.operators_tables`: the two Markdown sections;
- :mod:`~medrecon.benchmarks.operators_sections`: writing them into docs/benchmarks.md.

Every time is the median of ``repeats`` runs after one warm-up call
(:func:`medrecon.benchmarks.common.time_call`). Nothing here asserts anything about speed: the
numbers go into Markdown tables (stdout, and with ``write`` into the marked sections
``bench:operators`` and ``bench:operators:nufft`` of a page). Memory: one case at a time; a step
whose estimated peak memory exceeds what the machine has available is skipped with a note.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
import warnings
from collections.abc import Callable

import torch

from medrecon.benchmarks.common import load_average, machine_line, peak_rss_bytes
from medrecon.benchmarks.operators_cases import (
    DEFAULT_BATCH,
    DEFAULT_REPEATS,
    ONLY_CHOICES,
    QUICK_REPEATS,
    Case,
    default_cases,
)
from medrecon.benchmarks.operators_ct_mri import run_ct_case, run_mri_case
from medrecon.benchmarks.operators_nufft import run_nufft_case
from medrecon.benchmarks.operators_sections import check_write_target, write_sections
from medrecon.benchmarks.operators_tables import format_nufft_report, format_report, report_info
from medrecon.errors import InputError, positive_int


def _devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _log_default(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_cases(
    cases: list[Case],
    repeats: int = DEFAULT_REPEATS,
    *,
    batch: int = DEFAULT_BATCH,
    devices: list[str] | None = None,
    log: Callable[[str], None] | None = _log_default,
) -> dict:
    """Run the cases one after another on ``devices`` (default: the CPU, and CUDA where available);
    returns ``{"timings": [...], "matrices": [...], "nufft": [...]}``. ``log`` (None: quiet) gets
    progress lines.

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
    positive_int(repeats, "repeats")
    positive_int(batch, "batch")
    log = log or (lambda msg: None)
    devices = devices or _devices()
    timings, matrices, nufft = [], [], []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        for case in cases:
            log(f"{case.label}:")
            t0 = time.perf_counter()
            if case.modality == "ct":
                t, m = run_ct_case(case, repeats, batch, devices, log)
                timings += t
                matrices += m
            elif case.modality == "mri":
                timings += run_mri_case(case, repeats, batch, devices, log)
            else:
                nufft += run_nufft_case(case, repeats, batch, devices, log)
            log(f"  done in {time.perf_counter() - t0:.1f} s")
    return {"timings": timings, "matrices": matrices, "nufft": nufft}


def run_operator_benchmark(*, quick: bool = False, repeats: int | None = None, write: str | None = None,
                           only: str | None = None, command: str) -> int:
    """Run ``medrecon bench operators`` and print its Markdown sections to stdout.

    ``quick``: a subset of the cases, :data:`QUICK_REPEATS` repeats by default (else
    :data:`DEFAULT_REPEATS`); ``repeats``: timed calls per measurement; ``only`` ``"nufft"`` runs
    (and writes) only the non-Cartesian MRI table, ``"ct-mri"`` only the CT and Cartesian MRI
    tables; ``write``: a Markdown file whose measured sections are replaced; ``command``: the
    command line the sections state (the caller's: nothing here reads ``sys.argv``). Returns the
    exit code 0."""
    t_start = time.perf_counter()
    load_start = load_average()
    n_repeats = repeats if repeats is not None else (QUICK_REPEATS if quick else DEFAULT_REPEATS)
    n_repeats = positive_int(n_repeats, "--repeats")
    if only is not None and only not in ONLY_CHOICES:
        raise InputError(f"--only must be one of {', '.join(ONLY_CHOICES)}, got {only!r}")
    if write is not None:
        check_write_target(write)
    date = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = report_info()
    _log_default(f"{command}\n{machine_line('cpu')}, GPU: {info['gpu']}")
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
        load=None if load_start is None else (load_start, load_average() or load_start),
    )
    report = format_report(result, **common) if only != "nufft" else None
    nufft_report = format_nufft_report(result, **common) if only != "ct-mri" else None
    print("\n".join(filter(None, [report, nufft_report])), end="", flush=True)
    if write is not None:
        write_sections(write, report, nufft_report)
        written = " and ".join(n for n, t in (("operators", report), ("NUFFT", nufft_report)) if t is not None)
        _log_default(f"wrote the {written} section{'s' if report and nufft_report else ''} of {write}")
    return 0


__all__ = ["run_cases", "run_operator_benchmark"]
