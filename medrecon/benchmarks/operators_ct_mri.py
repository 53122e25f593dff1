"""``medrecon bench operators``: timing the CT and Cartesian MRI operators.

For each CT or MRI case it times, on the same data in the same run:

- medrecon's operator (CT: :class:`~medrecon.operators.ct.CTProjector`, backend ``matrix``; MRI:
  :class:`~medrecon.operators.mri.SingleCoilMRI` / :class:`~medrecon.operators.mri.MultiCoilMRI`) at
  batch 1 and at a batch of slices, on the CPU and, where CUDA is available, on the GPU;
- the CT system matrix's build time, number of non-zeros and memory, for both matrix sources
  (astra-toolbox's own matrix and the project's torch builder), and the time to build its transpose
  (which the first adjoint call does);
- independent references: astra-toolbox's CPU projector (one slice per call), scikit-image's
  ``radon`` (parallel beam, forward only, its own slightly different geometry) and sigpy's SENSE
  linop (one slice per call).

Every time is :func:`~medrecon.benchmarks.common.time_call`'s (median of ``repeats`` runs after one
warm-up call, CUDA synchronised). Memory: every matrix is dropped before the next is built, and a
step whose estimated peak memory exceeds what the machine has available is skipped with a note in
the row instead of crashing the run.
"""

from __future__ import annotations

import numpy as np
import torch

from medrecon.benchmarks.common import (
    is_out_of_memory,
    memory_note,
    release_memory,
    time_call,
    wall_time,
)
from medrecon.benchmarks.operators_cases import Case, batch_of, column_mask, phantom, smooth_phase
from medrecon.errors import BackendUnavailableError
from medrecon.operators.astra_backend import AstraProjector2D, astra_available
from medrecon.operators.coils import simulated_maps
from medrecon.operators.ct import CTProjector
from medrecon.operators.ct_geometry import FanBeamGeometry, ParallelBeamGeometry
from medrecon.operators.ct_matrix import TORCH_PROJECTORS
from medrecon.operators.mri import MultiCoilMRI, SingleCoilMRI

# Peak bytes per stored non-zero, measured on the CPU (512x512, 180 views, docs/benchmarks.md):
# astra's matrix build ~28, the transpose (CSR -> CSC copy) ~48 plus the matrix held (8), the torch
# builder ~35-45 (one chunk of float64 entries at a time, int32 columns). Rounded up for the estimate.
_BYTES_PER_NNZ = {"astra": 36, "torch": 48, "transpose": 64}
# Fraction of the crude upper bound 2 * rays * max(H, W) that is actually non-zero (measured 0.64
# for parallel beam and 0.43 for fan beam at 512 pixels); rounded up.
_NNZ_FRACTION = 0.7


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



def run_ct_case(case: Case, repeats: int, batch: int, devices: list[str], log) -> tuple[list, list]:

    n = case.size
    if case.kind == "parallel":
        geom = ParallelBeamGeometry.sparse_view(n, case.views)
    else:
        geom = FanBeamGeometry.full_scan(n, case.views)
    projector = TORCH_PROJECTORS[geom.kind]  # CTProjector's default: astra `linear` / `line_fanflat`
    image = phantom(n)
    xb_host = torch.from_numpy(batch_of(image, batch))
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
            note = memory_note(need, build_dev)
            if note is None and timed:
                note = memory_note(nnz_est * (_BYTES_PER_NNZ["transpose"] + 8) + 4 * xb_host.numel() * 8, device)
            if note is not None:
                matrices.append(_matrix_row(case, device, source, note=note))
                if timed:
                    trow["note"] = note
                log(f"  {case.label} [{device}] {source} matrix: {note}")
                continue
            try:
                log(f"  {case.label} [{device}] building the {source} matrix ...")
                build_s, mat = wall_time(lambda b=builder: b.matrix(device), device)
                mrow = _matrix_row(case, device, source, build_s=build_s, nnz=mat.nnz, mb=_csr_bytes(mat.mat) / 1e6)
                mrow["used_for_timings"] = timed
                if timed:
                    mrow["transpose_s"], _ = wall_time(lambda m=mat: m.T, device)
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
            except Exception as exc:  # out of memory becomes a note, the rest propagates
                if not is_out_of_memory(exc):
                    raise
                note = f"skipped: out of memory ({type(exc).__name__})"
                matrices.append(_matrix_row(case, device, source, note=note))
                if timed:
                    trow["note"] = note
                log(f"  {case.label} [{device}] {source}: {note}")
            finally:
                if not timed:
                    del builder
                release_memory()
        timings.append(trow)
        del op
        release_memory()

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
        from skimage.transform import radon

        srow = _empty_timing(case, "scikit-image `radon`", "cpu", 1)
        theta = np.degrees(np.asarray(geom.angles))
        log(f"  {case.label} [cpu] timing scikit-image radon ...")
        _time_per_slice(srow, {"forward": lambda: radon(x_np, theta=theta, circle=True)}, repeats)
        srow["note"] = f"forward only; its own geometry ({n} detectors, circle=True)"
        timings.append(srow)
    release_memory()
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


def run_mri_case(case: Case, repeats: int, batch: int, devices: list[str], log) -> list:

    n = case.size
    mask_np = column_mask((n, n), case.acceleration, case.center_fraction)
    image = (phantom(n) * smooth_phase(n)).astype(np.complex64)
    xb_host = torch.from_numpy(batch_of(image, batch))
    mask = torch.from_numpy(mask_np)
    maps = simulated_maps(case.coils, (n, n)) if case.coils > 1 else None
    timings = []
    for device in devices:
        impl = "medrecon SingleCoilMRI" if maps is None else "medrecon MultiCoilMRI (SENSE)"
        row = _empty_timing(case, impl, device, batch)
        need = 10 * batch * case.coils * n * n * 8
        note = memory_note(need, device)
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
        release_memory()

    # ------------------------------------------------------------- sigpy's SENSE linop (host, one slice)
    import sigpy.mri.linop

    mps = (maps.numpy() if maps is not None else np.ones((1, n, n), dtype=np.complex64)).astype(np.complex64)
    sense = sigpy.mri.linop.Sense(mps, weights=mask_np)
    x_np = image
    y_np = sense(x_np)
    srow = _empty_timing(case, "sigpy `mri.linop.Sense`", "cpu", 1)
    log(f"  {case.label} [cpu] timing sigpy's Sense ...")
    _time_per_slice(
        srow,
        {"forward": lambda s=sense: s(x_np), "adjoint": lambda s=sense: s.H(y_np), "normal": lambda s=sense: s.N(x_np)},
        repeats,
    )
    srow["note"] = "one slice per call" + ("; 1 coil = all-ones map" if maps is None else "")
    timings.append(srow)
    del sense, mps
    release_memory()
    return timings


__all__ = ["ct_nnz_estimate", "run_ct_case", "run_mri_case"]
