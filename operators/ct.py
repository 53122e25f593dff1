"""Sparse-view CT: the 2-D parallel- and fan-beam Radon transform and filtered back-projection.

:class:`CTProjector` maps images ``(B, 1, H, W)`` (real, attenuation per length unit) to sinograms
``(B, 1, n_angles, detector_count)`` of line integrals, for any :class:`ParallelBeamGeometry` or
:class:`FanBeamGeometry` (see :mod:`.ct_geometry` for the conventions, those of astra-toolbox).

Backends
--------
``matrix`` (default)
    The system matrix as a torch sparse CSR tensor, built once per geometry, device and dtype, on
    the device where it is used: from astra's own projector where astra-toolbox loads, otherwise
    by the torch builder of the same projector (:mod:`.ct_matrix`). Batched, exact transpose as
    adjoint, any torch device, and measured faster than astra's CPU projector (docs/benchmarks.md).
``astra``
    astra-toolbox's CPU projector called slice by slice (float32); the reference.
``astra_cuda``
    astra's 2-D CUDA projector slice by slice through host memory; only where astra reports a
    working CUDA device (checked in a child process, as astra can crash the process instead of
    raising). Its forward and back projection are not exact adjoints (``exact_adjoint = False``).

``pinv`` is filtered back-projection (ramp, Shepp-Logan, cosine or Hann filter), through a
pixel-driven back-projection matrix built the same way, so it runs wherever the operator runs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from medrecon.errors import BackendUnavailableError, GeometryError

from .astra_backend import (
    ASTRA_PROJECTORS,
    AstraProjector2D,
    astra_available,
    astra_cuda_usable,
    astra_matrix,
    check_projector,
)
from .base import LinearOperator
from .ct_geometry import CTGeometry, FanBeamGeometry, ParallelBeamGeometry, system_matrix_entries
from .ct_matrix import TORCH_PROJECTORS, csr_matrix, fbp_backprojector, projection_matrix, quiet_sparse

BACKENDS = ("matrix", "astra", "astra_cuda")
MATRIX_SOURCES = ("auto", "astra", "torch")
FBP_FILTERS = ("ramp", "shepp-logan", "cosine", "hann")
MAX_SYSTEM_MATRIX_ENTRIES = 1 << 33
"""A system matrix beyond this many entries (about 100 GB in CSR) is refused before it is built,
whatever the machine: an allocation that size aborts the process rather than raising."""


# --------------------------------------------------------------------- sparse matrices + autograd
class SparseMatrix:
    """A sparse CSR matrix with its transpose built on first use (also CSR)."""

    def __init__(self, mat: torch.Tensor, transpose: SparseMatrix | None = None) -> None:
        self.mat = mat
        self._t = transpose

    @property
    def T(self) -> SparseMatrix:
        if self._t is None:
            with quiet_sparse():
                csc = self.mat.to_sparse_csc()
            t = csr_matrix(csc.ccol_indices(), csc.row_indices(), csc.values(), self.mat.shape[::-1])
            self._t = SparseMatrix(t, transpose=self)
        return self._t

    @property
    def nnz(self) -> int:
        return int(self.mat.values().numel())

    def __call__(self, columns: torch.Tensor) -> torch.Tensor:
        """``M @ columns`` for a dense ``(n, B)`` tensor, differentiable (backward uses ``M^T``)."""
        return _SparseMatmul.apply(columns, self)


class _SparseMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, columns, matrix: SparseMatrix):
        ctx.matrix = matrix
        return matrix.mat @ columns.contiguous()

    @staticmethod
    def backward(ctx, grad):
        return _SparseMatmul.apply(grad, ctx.matrix.T), None


def _as_columns(x: torch.Tensor) -> torch.Tensor:
    """``(B, ...) -> (prod(...), B)``."""
    return x.reshape(x.shape[0], -1).transpose(0, 1)


# --------------------------------------------------------------------- astra per-slice autograd
class _AstraCall(torch.autograd.Function):
    """astra's forward or back projection of each slice, with the other as the backward pass."""

    @staticmethod
    def forward(ctx, x, projector: AstraProjector2D, adjoint: bool, out_shape: tuple):
        ctx.projector, ctx.adjoint, ctx.in_shape = projector, adjoint, tuple(x.shape[1:])
        fn = projector.adjoint if adjoint else projector.forward
        host = x.detach().to("cpu", torch.float32).numpy()
        out = np.stack([fn(item[0])[None] for item in host])
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype).reshape((x.shape[0], *out_shape))

    @staticmethod
    def backward(ctx, grad):
        return _AstraCall.apply(grad, ctx.projector, not ctx.adjoint, ctx.in_shape), None, None, None


# --------------------------------------------------------------------- FBP filters
def fbp_filter_response(n_detectors: int, spacing: float, name: str = "ramp") -> torch.Tensor:
    """Frequency response (rfft layout, float64) of the FBP filter for ``n_detectors`` samples.

    The ramp is the band-limited Ram-Lak kernel sampled in space (``h(0) = 1 / (4 tau^2)``,
    ``h(n odd) = -1 / (n pi tau)^2``; Kak & Slaney eq. 61) to avoid the DC offset of a sampled
    ``|f|``, zero-padded to at least twice the detector length. ``name`` apodises it:
    ``shepp-logan`` sinc, ``cosine``, ``hann``. ``spacing`` is the detector spacing tau.
    """
    if name not in FBP_FILTERS:
        raise GeometryError(f"unknown FBP filter {name!r}; known: {FBP_FILTERS}")
    size = max(64, int(2 ** math.ceil(math.log2(2 * n_detectors))))
    n = np.concatenate([np.arange(0, size // 2 + 1), np.arange(-size // 2 + 1, 0)])
    kernel = np.zeros(size)
    kernel[0] = 0.25
    odd = n % 2 == 1
    kernel[odd] = -1.0 / (math.pi * n[odd]) ** 2
    response = np.real(np.fft.rfft(kernel)) * (2.0 / spacing) / 2.0  # tau * h, with h in 1/tau^2
    freq = np.fft.rfftfreq(size)  # cycles per sample, 0 .. 0.5
    if name == "shepp-logan":
        response = response * np.sinc(freq)
    elif name == "cosine":
        response = response * np.cos(math.pi * freq)
    elif name == "hann":
        response = response * 0.5 * (1 + np.cos(2 * math.pi * freq))
    return torch.from_numpy(response)


# --------------------------------------------------------------------- the operator
class CTProjector(LinearOperator):
    """Radon transform ``(B, 1, H, W) -> (B, 1, n_angles, detector_count)`` of a CT geometry.

    Args:
        geometry: a :class:`ParallelBeamGeometry` or :class:`FanBeamGeometry`.
        backend: ``matrix`` (default), ``astra`` or ``astra_cuda`` (see the module docstring).
        projector: astra projector name; default ``linear`` for parallel beam and ``line_fanflat``
            for fan beam, the two the torch builder implements. Others (``line``, ``strip``,
            ``strip_fanflat``) need astra-toolbox.
        matrix_source: where the ``matrix`` backend gets its matrix: ``auto`` (astra where it loads,
            else the torch builder), ``astra`` or ``torch``.
    """

    def __init__(
        self,
        geometry: CTGeometry,
        *,
        backend: str = "matrix",
        projector: str | None = None,
        matrix_source: str = "auto",
    ) -> None:
        if not isinstance(geometry, (ParallelBeamGeometry, FanBeamGeometry)):
            raise GeometryError(
                f"CTProjector needs a ParallelBeamGeometry or FanBeamGeometry, got {type(geometry).__name__}"
            )
        if backend not in BACKENDS:
            raise GeometryError(f"unknown CT backend {backend!r}; known: {BACKENDS}")
        if matrix_source not in MATRIX_SOURCES:
            raise GeometryError(f"unknown matrix_source {matrix_source!r}; known: {MATRIX_SOURCES}")
        entries = system_matrix_entries(geometry)
        if entries > MAX_SYSTEM_MATRIX_ENTRIES:
            raise GeometryError(f"a CT system matrix of {geometry.n_angles} views x {geometry.detector_count} detectors x "
                                f"{geometry.image_shape} pixels would hold about {entries:.3g} entries, more than "
                                f"{MAX_SYSTEM_MATRIX_ENTRIES:.3g}")
        projector = projector or TORCH_PROJECTORS[geometry.kind]
        check_projector(geometry, projector)
        h, w = geometry.image_shape
        super().__init__((1, h, w), (1, *geometry.sinogram_shape))
        self.geometry = geometry
        self.backend = backend
        self.projector = projector
        self.matrix_source = self._resolve_source(matrix_source)
        self._matrices: dict = {}
        self._backprojectors: dict = {}
        self._astra: AstraProjector2D | None = None
        if backend == "astra":
            self._astra = AstraProjector2D(geometry, projector)
        elif backend == "astra_cuda":
            ok, why = astra_cuda_usable()
            if not ok:
                raise BackendUnavailableError(f"backend 'astra_cuda' is unavailable: {why}")
            self._astra = AstraProjector2D(geometry, projector, cuda=True)
            self.exact_adjoint = False

    def _resolve_source(self, source: str) -> str:
        torch_ok = TORCH_PROJECTORS[self.geometry.kind] == self.projector
        if source == "auto":
            if astra_available():
                return "astra"
            if torch_ok:
                return "torch"
            raise BackendUnavailableError(
                f"projector {self.projector!r} needs astra-toolbox, which cannot be loaded here; the "
                f"torch builder implements {TORCH_PROJECTORS[self.geometry.kind]!r}"
            )
        if source == "torch" and not torch_ok:
            raise GeometryError(
                f"the torch builder implements only {TORCH_PROJECTORS[self.geometry.kind]!r} for "
                f"{self.geometry.kind} beam, not {self.projector!r}"
            )
        return source

    # ------------------------------------------------------------------ matrices
    def matrix(self, device="cpu", dtype=torch.float32) -> SparseMatrix:
        """The system matrix on ``device`` in ``dtype`` (built once, then cached)."""
        key = (torch.device(device), dtype)
        if key not in self._matrices:
            if self.matrix_source == "astra":
                csr = astra_matrix(self.geometry, self.projector)
                mat = csr_matrix(
                    torch.from_numpy(csr.indptr.astype(np.int64)),
                    torch.from_numpy(csr.indices.astype(np.int64)),
                    torch.from_numpy(csr.data).to(dtype),
                    csr.shape,
                ).to(key[0])
            else:
                mat = projection_matrix(self.geometry, dtype=dtype, device=key[0])
            self._matrices[key] = SparseMatrix(mat)
        return self._matrices[key]

    def backprojector(self, device="cpu", dtype=torch.float32) -> SparseMatrix:
        """The pixel-driven FBP back-projection matrix (built once, then cached)."""
        key = (torch.device(device), dtype)
        if key not in self._backprojectors:
            self._backprojectors[key] = SparseMatrix(fbp_backprojector(self.geometry, dtype=dtype, device=key[0]))
        return self._backprojectors[key]

    # ------------------------------------------------------------------ projections
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._astra is not None:
            return _AstraCall.apply(x, self._astra, False, self.out_shape)
        mat = self.matrix(x.device, x.dtype)
        return mat(_as_columns(x)).transpose(0, 1).reshape((x.shape[0], *self.out_shape))

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if self._astra is not None:
            return _AstraCall.apply(y, self._astra, True, self.in_shape)
        mat = self.matrix(y.device, y.dtype).T
        return mat(_as_columns(y)).transpose(0, 1).reshape((y.shape[0], *self.in_shape))

    # ------------------------------------------------------------------ FBP
    def fbp(self, y: torch.Tensor, *, filter: str = "ramp") -> torch.Tensor:
        """Filtered back-projection of sinograms ``(B, 1, n_angles, n_det) -> (B, 1, H, W)``.

        Parallel beam: ramp filter along the detector, back-projection weighted ``pi / n_angles``.
        Fan beam (flat detector, meant for a full scan over ``[0, 2 pi)``): cosine pre-weighting,
        ramp filter on the detector rescaled to the rotation axis, back-projection weighted
        ``1 / U^2`` (Kak & Slaney, ch. 3.4.2). Limited or sparse angle sets get the same weights.
        """
        self._check(y, self.out_shape, False, "fbp")
        geom = self.geometry
        nd = geom.detector_count
        if isinstance(geom, FanBeamGeometry):
            scale = geom.source_origin / (geom.source_origin + geom.origin_detector)
            u = (torch.arange(nd, dtype=torch.float64, device=y.device) + 0.5 - 0.5 * nd) * geom.detector_spacing
            s = u * scale
            y = y * (geom.source_origin / torch.sqrt(geom.source_origin**2 + s**2)).to(y.dtype)
            spacing = geom.detector_spacing * scale
        else:
            spacing = geom.detector_spacing
        response = fbp_filter_response(nd, spacing, filter).to(device=y.device, dtype=y.dtype)
        size = 2 * (response.shape[0] - 1)
        filtered = torch.fft.irfft(torch.fft.rfft(y, n=size, dim=-1) * response, n=size, dim=-1)[..., :nd]
        bp = self.backprojector(y.device, y.dtype)
        return bp(_as_columns(filtered.contiguous())).transpose(0, 1).reshape((y.shape[0], *self.in_shape))

    def pinv(self, y: torch.Tensor, *, filter: str = "ramp") -> torch.Tensor:
        """Filtered back-projection (see :meth:`fbp`)."""
        return self.fbp(y, filter=filter)

    def extra_repr(self) -> str:
        return (
            f"{self.geometry.kind} beam, image {self.geometry.image_shape}, {self.geometry.n_angles} views x "
            f"{self.geometry.detector_count} detectors, backend={self.backend}, projector={self.projector}"
        )


__all__ = ["CTProjector", "SparseMatrix", "fbp_filter_response", "BACKENDS", "FBP_FILTERS", "ASTRA_PROJECTORS"]
