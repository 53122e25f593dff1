"""Coil sensitivity maps: ESPIRiT estimation, simulated birdcage maps, root-sum-of-squares.

Maps are complex ``(B, coils, H, W)`` tensors (``(coils, H, W)`` for one slice), the layout
:class:`~medrecon.operators.mri.MultiCoilMRI` takes.
"""

from __future__ import annotations

import numpy as np
import torch

from medrecon.errors import GeometryError, ShapeError, positive_int

from .mri import fft2c
from .nufft import NonCartesianMRI


def rss(coil_images: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Root-sum-of-squares coil combination ``sqrt(sum_c |x_c|^2)`` along ``dim`` (kept as size 1)."""
    return torch.sqrt(torch.sum(coil_images.abs() ** 2, dim=dim, keepdim=True))


def simulated_maps(
    n_coils: int,
    shape: tuple[int, int],
    *,
    relative_radius: float = 1.5,
    normalize: bool = True,
    dtype: torch.dtype = torch.complex64,
) -> torch.Tensor:
    """Smooth birdcage-coil sensitivities ``(n_coils, H, W)`` (sigpy's ``birdcage_maps``).

    ``relative_radius`` is the coil ring radius relative to the field of view. With
    ``normalize`` the maps are scaled so that ``sum_c |S_c|^2 = 1`` at every pixel, as ESPIRiT
    maps are inside the object; then the SENSE operator's ``||A||^2 <= 1``.
    """
    import sigpy.mri  # sigpy (and numba) load only when maps are simulated

    n_coils = positive_int(n_coils, "n_coils", GeometryError)
    h, w = (int(s) for s in shape)
    if h < 1 or w < 1:
        raise GeometryError(f"shape must be two positive sizes, got {shape!r}")
    maps = sigpy.mri.birdcage_maps((int(n_coils), h, w), r=relative_radius, dtype=np.complex128)
    if normalize:
        maps = maps / np.sqrt(np.sum(np.abs(maps) ** 2, axis=0, keepdims=True))
    return torch.from_numpy(maps).to(dtype)


def espirit_maps(
    kspace: torch.Tensor,
    *,
    calib_width: int = 24,
    threshold: float = 0.02,
    kernel_width: int = 6,
    crop: float = 0.95,
    max_iter: int = 100,
) -> torch.Tensor:
    """ESPIRiT sensitivities (Uecker et al. 2014) from multi-coil k-space, through sigpy's ``EspiritCalib``.

    Args:
        kspace: complex ``(B, coils, H, W)`` centred k-space (our :func:`fft2c` convention, which is
            sigpy's) with a fully sampled centre of at least ``calib_width`` lines.
        calib_width, threshold, kernel_width, crop, max_iter: as in sigpy's ``EspiritCalib``;
            ``crop`` zeroes the maps where the eigenvalue is below it (outside the object).

    Returns:
        complex ``(B, coils, H, W)`` maps on the input's device and dtype. sigpy calibrates one
        slice at a time on the CPU.
    """
    from sigpy.mri.app import EspiritCalib

    if not isinstance(kspace, torch.Tensor) or kspace.ndim != 4 or not kspace.is_complex():
        got = (tuple(kspace.shape), kspace.dtype) if isinstance(kspace, torch.Tensor) else type(kspace).__name__
        raise ShapeError(f"espirit_maps: expected complex k-space (B, coils, H, W), got {got}")
    h, w = kspace.shape[-2:]
    if calib_width > min(h, w):
        raise GeometryError(f"espirit_maps: calib_width {calib_width} exceeds the k-space size {(h, w)}")
    host = kspace.detach().to("cpu", torch.complex128).numpy()
    maps = [
        EspiritCalib(
            item,
            calib_width=calib_width,
            thresh=threshold,
            kernel_width=kernel_width,
            crop=crop,
            max_iter=max_iter,
            show_pbar=False,
        ).run()
        for item in host
    ]
    return torch.from_numpy(np.stack(maps)).to(device=kspace.device, dtype=kspace.dtype)


def noncartesian_espirit_maps(kspace: torch.Tensor, coords: torch.Tensor, image_shape, *,
                              density: torch.Tensor | None = None, calib_width: int = 24, **espirit) -> torch.Tensor:
    """ESPIRiT maps ``(B, coils, H, W)`` from non-Cartesian k-space ``(B, coils, K)`` at ``coords``
    ``(K, 2)`` (radians per pixel): every coil is gridded (density-compensated ``A^H``) onto the
    Cartesian grid, and ESPIRiT calibrates on the central ``calib_width`` lines of that gridded
    k-space, where radial and spiral trajectories sample densely (radial spokes are Nyquist-spaced
    out to ``spokes / pi`` samples from the centre: 15 for 48 spokes, so a 24-wide block)."""
    if not isinstance(kspace, torch.Tensor) or kspace.ndim != 3 or not kspace.is_complex():
        got = (tuple(kspace.shape), kspace.dtype) if isinstance(kspace, torch.Tensor) else type(kspace).__name__
        raise ShapeError(f"noncartesian_espirit_maps: expected complex k-space (B, coils, K), got {got}")
    single = NonCartesianMRI(coords, tuple(image_shape), density=density)
    b, c, k = kspace.shape
    if k != single.n_samples:
        raise ShapeError(f"noncartesian_espirit_maps: k-space has {k} samples, the trajectory {single.n_samples}")
    coil_images = single.gridding(kspace.reshape(b * c, 1, k)).reshape(b, c, *image_shape)
    return espirit_maps(fft2c(coil_images), calib_width=calib_width, **espirit)


__all__ = ["rss", "simulated_maps", "espirit_maps", "noncartesian_espirit_maps"]
