"""``medrecon bench operators``: timing the non-Cartesian MRI operators (NUFFT).

For each NUFFT case it times forward / adjoint / normal, the normal both by the Toeplitz embedding
and as plain ``A^H (A x)``, of :class:`~medrecon.operators.nufft.NonCartesianMRI` with backend
``torch`` (on every device) and ``finufft`` (CPU), plus the one-time costs (the first forward call
of a fresh operator, which builds the torch backend's interpolation matrix, and the Toeplitz
kernel); and as independent references sigpy's NUFFT (``linop.NUFFT`` /
``mri.linop.Sense(coord=...)``, one slice per call) and mri-nufft's finufft backend
(``mrinufft.get_operator("finufft")``; optional, imported only here, a "not installed" note where it
is missing). Each implementation's accuracy is the relative error of its forward on the same image
against medrecon's finufft backend in complex128 at ``eps=1e-12``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from medrecon.benchmarks.common import (
    is_out_of_memory,
    memory_note,
    package_version,
    release_memory,
    time_call,
    wall_time,
)
from medrecon.benchmarks.operators_cases import (
    NUFFT_EPS,
    NUFFT_OPS,
    REFERENCE_EPS,
    Case,
    batch_of,
    nufft_coordinates,
    phantom,
    smooth_phase,
)
from medrecon.operators.coils import simulated_maps
from medrecon.operators.nufft import NonCartesianMRI, finufft_available


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
    if not finufft_available():
        return None, "no accuracy reference: finufft is not installed"
    n = image.shape[-1]
    maps128 = None if maps is None else maps.to(torch.complex128)
    ref = NonCartesianMRI(coords, (n, n), maps128, backend="finufft", eps=REFERENCE_EPS)
    with torch.no_grad():
        y = ref(torch.from_numpy(image.astype(np.complex128))[None, None])
    return y[0].numpy(), ""


def run_nufft_case(case: Case, repeats: int, batch: int, devices: list[str], log) -> list:

    n = case.size
    coords = nufft_coordinates(case)
    image = (phantom(n) * smooth_phase(n)).astype(np.complex64)
    xb_host = torch.from_numpy(batch_of(image, batch))
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
        note = memory_note(8 * batch * case.coils * 4 * n * n * 8, device)
        if note is not None:
            row["note"] = note
            continue
        log(f"  {case.label} [{device}] timing NonCartesianMRI ({backend}) ...")
        with torch.no_grad():
            op = NonCartesianMRI(coords, (n, n), maps, backend=backend, eps=NUFFT_EPS).to(device)
            plain = NonCartesianMRI(coords, (n, n), maps, backend=backend, eps=NUFFT_EPS, toeplitz=False).to(device)
            xb = xb_host.to(device)
            x1 = xb[:1].contiguous()
            row["setup_s"], y1 = wall_time(lambda o=op, x=x1: o(x), device)
            row["rel_error"] = _rel_error(y1, reference)
            row["toeplitz_s"], _ = wall_time(lambda o=op, x=x1: o.toeplitz_kernel(x.device, x.dtype), device)
            yb = op(xb)
            y1 = yb[:1].contiguous()
            fns = {"forward": op.forward, "adjoint": op.adjoint, "normal": op.normal, "normal_plain": plain.normal}
            one = {"forward": x1, "adjoint": y1, "normal": x1, "normal_plain": x1}
            many = {"forward": xb, "adjoint": yb, "normal": xb, "normal_plain": xb}
            _time_nufft(row, fns, one, many, repeats, device)
        row["note"] = "; ".join(filter(None, [_toeplitz_note(row), ref_note]))
        del op, plain, xb, x1, yb, y1
        release_memory()

    # ------------------------------------------------------------- sigpy (host, one slice per call)
    import sigpy.linop
    import sigpy.mri.linop

    k_sigpy = coords.numpy() * (np.array([n, n]) / (2 * np.pi))  # cycles per field of view, per axis
    impl = "sigpy `linop.NUFFT`" if maps is None else "sigpy `mri.linop.Sense(coord=...)`"
    srow = _empty_nufft_row(case, impl, "cpu", 1)
    if maps is None:
        srow["setup_s"], lin = wall_time(lambda: sigpy.linop.NUFFT([n, n], k_sigpy))
    else:
        mps = maps[0].numpy()
        srow["setup_s"], lin = wall_time(lambda: sigpy.mri.linop.Sense(mps, coord=k_sigpy))
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
    release_memory()
    return rows


def _mrinufft_row(case, coords, maps, image, xb, reference, ref_note, repeats, batch, log) -> dict:
    """mri-nufft's finufft backend: B=1 and B=batch (``n_batchs``), all coils x slices in one
    finufft call (``n_trans``). Its samples are in cycles per pixel, [-0.5, 0.5); its operators
    are scaled by ``1 / sqrt(2^ndim H W)`` (``norm_factor``), medrecon's by ``1 / sqrt(H W)``."""
    row = _empty_nufft_row(case, "mri-nufft (finufft backend)", "cpu", batch)
    try:
        import mrinufft
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
        row["setup_s"], op1 = wall_time(lambda: make(1))
        opb = make(batch)
        y1 = op1.op(image)
        row["rel_error"] = _rel_error(y1 * (op1.norm_factor / n), reference)
        yb = opb.op(xb)
        one = {"forward": image, "adjoint": y1, "normal_plain": image}
        many = {"forward": xb, "adjoint": yb, "normal_plain": xb}
        for name, fn1, fnb in (
            ("forward", op1.op, opb.op),
            ("adjoint", op1.adj_op, opb.adj_op),
            ("normal_plain", lambda x, o=op1: o.adj_op(o.op(x)), lambda x, o=opb: o.adj_op(o.op(x))),
        ):
            row["b1_ms"][name] = 1e3 * time_call(lambda f=fn1, a=one[name]: f(a), repeats)
            per_batch = 1e3 * time_call(lambda f=fnb, a=many[name]: f(a), repeats)
            row["batch_ms"][name] = per_batch
            row["per_slice_ms"][name] = per_batch / batch
        version = f"mri-nufft {package_version('mri-nufft')}; its output x2 for the error"
        row["note"] = "; ".join(filter(None, [version, ref_note]))
        del op1, opb, y1, yb
    except Exception as exc:  # an optional reference: its failure is a note, not a crash
        if is_out_of_memory(exc):
            row["note"] = f"skipped: out of memory ({type(exc).__name__})"
        else:
            row["note"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        log(f"  {case.label} mri-nufft: {row['note']}")
    return row


__all__ = ["run_nufft_case"]
