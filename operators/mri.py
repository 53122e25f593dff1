"""Undersampled Cartesian MRI: centred orthonormal FFT, single-coil and SENSE multi-coil operators.

Images are complex ``(B, 1, H, W)``; single-coil k-space is ``(B, 1, H, W)``, multi-coil k-space
``(B, coils, H, W)``, both with zeros where the 0/1 sampling ``mask`` ``(H, W)`` is 0. The Fourier
transform is the centred orthonormal 2-D DFT (``fftshift(fft2(ifftshift(x)), norm='ortho')``),
the convention of fastMRI and sigpy, so k-space centre sits at index ``(H // 2, W // 2)`` and
``||F x|| = ||x||``.

SENSE (Pruessmann et al. 1999): ``A = M F S`` with coil sensitivities ``S`` ``(B or 1, coils, H, W)``;
``A^H y = sum_c conj(S_c) F^H (M y_c)``.
"""

from __future__ import annotations

import torch

from medrecon.errors import GeometryError, ShapeError

from .base import COMPLEX_DTYPES, LinearOperator

_DIMS = (-2, -1)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT over the last two axes."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=_DIMS), norm="ortho"), dim=_DIMS)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D inverse FFT over the last two axes (the adjoint of :func:`fft2c`)."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=_DIMS), norm="ortho"), dim=_DIMS)


def _check_mask(mask: torch.Tensor, shape: tuple[int, int] | None, who: str) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise GeometryError(f"{who}: the mask must be a torch.Tensor of shape (H, W), got {type(mask).__name__}")
    if mask.ndim != 2:
        raise GeometryError(f"{who}: the mask must have shape (H, W), got {tuple(mask.shape)}")
    if shape is not None and tuple(mask.shape) != tuple(shape):
        raise GeometryError(
            f"{who}: the mask of shape {tuple(mask.shape)} does not match the k-space size {tuple(shape)}"
        )
    if mask.is_complex():
        raise GeometryError(f"{who}: the mask must be real 0/1 values, got dtype {mask.dtype}")
    values = mask.to(torch.float32)
    if not bool(torch.all((values == 0) | (values == 1))):
        raise GeometryError(f"{who}: the mask must hold only 0 and 1")
    if not bool(values.any()):
        raise GeometryError(f"{who}: the mask samples nothing (all zeros)")
    return values


class SingleCoilMRI(LinearOperator):
    """``A = M F``: complex image ``(B, 1, H, W)`` -> masked k-space ``(B, 1, H, W)``.

    ``pinv`` is the zero-filled reconstruction ``F^H M y``, the exact minimum-norm least-squares
    solution (F is unitary and M a projector).
    """

    def __init__(self, mask: torch.Tensor) -> None:
        mask = _check_mask(mask, None, "SingleCoilMRI")
        h, w = mask.shape
        super().__init__((1, h, w), (1, h, w), in_complex=True, out_complex=True)
        self.register_buffer("mask", mask)

    def _mask_for(self, t: torch.Tensor) -> torch.Tensor:
        return self.mask.to(device=t.device, dtype=t.real.dtype)

    def _forward(self, x):
        return self._mask_for(x) * fft2c(x)

    def _adjoint(self, y):
        return ifft2c(self._mask_for(y) * y)

    def _normal(self, x):
        return ifft2c(self._mask_for(x) * fft2c(x))

    def pinv(self, y: torch.Tensor, *, n_iter: int | None = None) -> torch.Tensor:
        """Zero-filled ``F^H M y``; exact, so ``n_iter`` (kept for the common signature) is unused."""
        self._check(y, self.out_shape, True, "pinv")
        return self._adjoint(y)

    def extra_repr(self) -> str:
        return f"image {self.in_shape[1:]}, sampled fraction {float(self.mask.mean()):.3f}"


class MultiCoilMRI(LinearOperator):
    """SENSE ``A = M F S``: complex image ``(B, 1, H, W)`` -> coil k-space ``(B, coils, H, W)``.

    Args:
        coil_maps: complex sensitivities ``(B, coils, H, W)`` for per-slice maps (the operator then
            takes batches of exactly B; :meth:`batch_slice` gives a chunk), or ``(1, coils, H, W)``
            for maps shared by any batch.
        mask: 0/1 sampling mask ``(H, W)``, shared by all coils and slices.

    ``pinv`` is CG-SENSE: conjugate gradient on ``A^H A x = A^H y``.
    """

    def __init__(self, coil_maps: torch.Tensor, mask: torch.Tensor) -> None:
        if not isinstance(coil_maps, torch.Tensor) or coil_maps.ndim != 4:
            got = tuple(coil_maps.shape) if isinstance(coil_maps, torch.Tensor) else type(coil_maps).__name__
            raise GeometryError(f"MultiCoilMRI: coil maps must be a tensor (B, coils, H, W), got {got}")
        if coil_maps.dtype not in COMPLEX_DTYPES:
            raise GeometryError(f"MultiCoilMRI: coil maps must be complex64/complex128, got {coil_maps.dtype}")
        batch, coils, h, w = coil_maps.shape
        mask = _check_mask(mask, (h, w), "MultiCoilMRI")
        super().__init__(
            (1, h, w),
            (coils, h, w),
            in_complex=True,
            out_complex=True,
            batch_size=None if batch == 1 else batch,
        )
        self.register_buffer("coil_maps", coil_maps)
        self.register_buffer("mask", mask)

    @property
    def n_coils(self) -> int:
        return self.out_shape[0]

    def _maps_for(self, t: torch.Tensor) -> torch.Tensor:
        return self.coil_maps.to(device=t.device, dtype=t.dtype)

    def _mask_for(self, t: torch.Tensor) -> torch.Tensor:
        return self.mask.to(device=t.device, dtype=t.real.dtype)

    def _forward(self, x):
        return self._mask_for(x) * fft2c(self._maps_for(x) * x)

    def _adjoint(self, y):
        coil_images = ifft2c(self._mask_for(y) * y)
        return torch.sum(self._maps_for(y).conj() * coil_images, dim=1, keepdim=True)

    def _normal(self, x):
        maps = self._maps_for(x)
        coil_images = ifft2c(self._mask_for(x) * fft2c(maps * x))
        return torch.sum(maps.conj() * coil_images, dim=1, keepdim=True)

    def batch_slice(self, index: slice) -> MultiCoilMRI:
        if self.batch_size is None:
            return self
        maps = self.coil_maps[index]
        if maps.shape[0] == 0:
            raise ShapeError(f"MultiCoilMRI.batch_slice: {index} selects no item of a batch of {self.batch_size}")
        return MultiCoilMRI(maps, self.mask)

    def extra_repr(self) -> str:
        return (
            f"image {self.in_shape[1:]}, {self.n_coils} coils, maps for "
            f"{'any batch' if self.batch_size is None else f'a batch of {self.batch_size}'}, "
            f"sampled fraction {float(self.mask.mean()):.3f}"
        )


__all__ = ["fft2c", "ifft2c", "SingleCoilMRI", "MultiCoilMRI"]
