"""``medrecon bench operators``: the two Markdown sections of its results.

:func:`format_report` writes the CT and Cartesian MRI section (operator timings and, for CT, the
system matrices), :func:`format_nufft_report` the non-Cartesian MRI (NUFFT) section. Both state the
command, the date, the machine (:func:`report_info`), the software and the method above their table,
and :data:`REPORT_TEXT`'s fixed prose (units, notes) around it. Times are printed in milliseconds
(build and first-call times in seconds), with :func:`_fmt`'s three significant digits.
"""

from __future__ import annotations

import numpy as np

from medrecon.benchmarks.common import machine_info, markdown_table, package_version
from medrecon.benchmarks.operators_cases import NUFFT_EPS, NUFFT_OPS, NUFFT_SPOKES, REFERENCE_EPS, SPIRAL_INTERLEAVES
from medrecon.operators.astra_backend import _load_astra

#: The fixed prose of the two sections: ``str.format`` templates (fields ``batch``, ``cores``,
#: ``spokes``, ``interleaves``, ``reference_eps``), notes as one string per bullet.
REPORT_TEXT = {
    "busy_warning": (
        "- **Warning: the machine was busy during this run** (1-minute load above 0.75 x {cores} "
        "cores): torch's worker threads had to wait for a core, so times are inflated, small "
        "multi-threaded calls most (B=1 rows, MRI); compare rows of one run only, and rerun on an "
        "idle machine for numbers to quote."
    ),
    "ct_mri_units": (
        "Times in ms: forward / adjoint / normal (A^H A). \"B=1\" is one slice per call; \"B={batch}\" "
        "is one call on the whole batch, given per batch and per slice."
    ),
    "matrix_units": (
        "CT system matrices (sparse CSR, float32 values, int32 indices where they fit). \"build\" is "
        "`CTProjector(geom, matrix_source=...).matrix(device)`; \"transpose\" is the CSR transpose the "
        "first adjoint call builds (held beside the matrix: same nnz and memory). The timings above use "
        "the matrix marked \"yes\" (the operator's default source here)."
    ),
    "ct_mri_notes": (
        "- astra's CPU projectors take one slice per call (the `astra` backend of `CTProjector` loops over "
        "the batch); their normal is a forward call followed by a back projection.",
        "- scikit-image's `radon` is a different discretisation (rotate-and-sum, `circle=True`, angles in "
        "degrees, as many detectors as image columns): a reference for speed, not for values.",
        "- sigpy's `Sense` (numpy, one slice per call) is `sigpy.mri.linop.Sense(maps, weights=mask)`, its "
        "`.H` and `.N`; for one coil its map is all ones.",
        "- The MRI mask keeps every 4th column plus a centred block of 8% of the columns.",
        "- Nothing in the test suite asserts any of these times.",
    ),
    "nufft_units": (
        "Times in ms: forward / adjoint / normal by the Toeplitz embedding / normal as A^H (A x) "
        "(\"—\" where an implementation has no such call). \"B=1\" is one slice per call; \"B={batch}\" "
        "is one call on the whole batch, given per batch and per slice. \"first call\" is the first "
        "forward call of a fresh operator at B=1 (the torch backend builds its interpolation matrix "
        "there) or, for sigpy and mri-nufft, constructing the operator (mri-nufft makes its finufft "
        "plans there); \"Toeplitz kernel\" builds the transfer function the Toeplitz normal uses. "
        "\"rel. error\" is ||y - y_ref|| / ||y_ref|| of the forward of the same image against "
        "medrecon's finufft backend in complex128 at eps = {reference_eps:g}."
    ),
    "nufft_notes": (
        "- Trajectories: radial, {spokes} golden-angle spokes of N samples (N the image side, no "
        "read-out oversampling); "
        "spiral, sigpy's variable-density design (alpha 1.5) with {interleaves} interleaves and "
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
    ),
}


# ============================================================================ numbers
def _fmt(value: float | None) -> str:
    """Three significant digits (at least the units), "—" for a missing value."""
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


def _quad(d: dict) -> str:
    if all(v is None for v in d.values()):
        return "—"
    return " / ".join(_fmt(d[k]) for k in NUFFT_OPS)


def _error(value: float | None) -> str:
    return "—" if value is None else f"{value:.1e}"


# ============================================================================ machine and software
def _version(module: str) -> str:
    try:
        mod = __import__(module)
        return str(getattr(mod, "__version__", "?"))
    except Exception as exc:
        return f"not loadable ({type(exc).__name__})"


def report_info() -> dict:
    """:func:`~medrecon.benchmarks.common.machine_info` plus the versions of the libraries the
    sections name: ``astra``, ``sigpy``, ``skimage``, ``numpy``, ``finufft``, ``mrinufft``."""
    astra, why = _load_astra()
    return {
        **machine_info(),
        "astra": getattr(astra, "__version__", "?") if astra is not None else f"not loadable ({why})",
        "sigpy": _version("sigpy"),
        "skimage": _version("skimage"),
        "numpy": np.__version__,
        "finufft": package_version("finufft"),
        "mrinufft": package_version("mri-nufft"),
    }


# ============================================================================ header and footer
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
        lines.append(REPORT_TEXT["busy_warning"].format(cores=cores))
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


def _notes(notes: tuple[str, ...], **fields) -> list[str]:
    return ["", "Notes:", ""] + [note.format(**fields) for note in notes]


# ============================================================================ the two sections
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
    """The CT and Cartesian MRI section of ``result`` (:func:`~medrecon.benchmarks.operators.run_cases`):
    header, timing table (ms), matrix table (s, MB), notes, run time (s) and peak memory (GiB).
    ``info`` is :func:`report_info`'s; ``load`` the load averages at start and end, or None."""
    lines = _header_lines(
        "## Operator timings (`medrecon bench operators`)", command=command, info=info, date=date, repeats=repeats,
        software=f"Python {info['python']}, torch {info['torch']} ({info['torch_threads']} threads, "
        f"`torch.get_num_threads()`), astra-toolbox {info['astra']}, sigpy {info['sigpy']}, "
        f"scikit-image {info['skimage']}, numpy {info['numpy']}",
        method_tail=f"batch B = {batch} slices; under `torch.no_grad()`; float32 CT, complex64 MRI.",
    )
    lines += _load_lines(load, info)
    lines += ["", REPORT_TEXT["ct_mri_units"].format(batch=batch), ""]
    header = ["case", "implementation", "device", "B=1 (ms/slice)", f"B={batch} (ms/batch)", f"B={batch} (ms/slice)",
              "note"]
    rows = [[r["case"], r["implementation"], r["device"], _triple(r["b1_ms"]), _triple(r["batch_ms"]),
             _triple(r["per_slice_ms"]), r["note"]] for r in result["timings"]]
    lines.append(markdown_table(header, rows, rule=" --- ").rstrip("\n"))
    if result["matrices"]:
        header = ["case", "device", "source", "build (s)", "transpose (s)", "nnz", "memory (MB, values + indices)",
                  "used above", "note"]
        rows = [[m["case"], m["device"], m["source"], _fmt(m["build_s"]), _fmt(m["transpose_s"]),
                 "—" if m["nnz"] is None else f"{m['nnz']:,}", "—" if m["mb"] is None else f"{m['mb']:.1f}",
                 "yes" if m["used_for_timings"] else "", m["note"]] for m in result["matrices"]]
        lines += ["", REPORT_TEXT["matrix_units"], "", markdown_table(header, rows, rule=" --- ").rstrip("\n")]
    lines += _notes(REPORT_TEXT["ct_mri_notes"])
    lines += _footer(total_s, peak_rss_bytes)
    return "\n".join(lines) + "\n"


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
    """The non-Cartesian MRI section of the rows ``result["nufft"]``: header, table (setup in s,
    times in ms, relative errors), notes, run time (s) and peak memory (GiB); arguments as
    :func:`format_report`'s."""
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
    lines += ["", REPORT_TEXT["nufft_units"].format(batch=batch, reference_eps=REFERENCE_EPS), ""]
    header = ["case", "implementation", "device", "first call (s)", "Toeplitz kernel (s)", "B=1 (ms/slice)",
              f"B={batch} (ms/batch)", f"B={batch} (ms/slice)", "rel. error", "note"]
    rows = [[r["case"], r["implementation"], r["device"], _fmt(r["setup_s"]), _fmt(r["toeplitz_s"]), _quad(r["b1_ms"]),
             _quad(r["batch_ms"]), _quad(r["per_slice_ms"]), _error(r["rel_error"]), r["note"]]
            for r in result.get("nufft", [])]
    lines.append(markdown_table(header, rows, rule=" --- ").rstrip("\n"))
    lines += _notes(REPORT_TEXT["nufft_notes"], spokes=NUFFT_SPOKES, interleaves=SPIRAL_INTERLEAVES)
    lines += _footer(total_s, peak_rss_bytes)
    return "\n".join(lines) + "\n"


__all__ = ["REPORT_TEXT", "format_nufft_report", "format_report", "report_info"]
