"""Retrospective simulation of measurements from fully sampled images.

There is no raw CT data or real multi-coil k-space among the data reachable here (../DATA.md):
sinograms are simulated by forward projection and MR k-space by the FFT of magnitude images with
simulated coil maps, a smooth phase and noise. Every function takes per-item generators
(:mod:`medrecon.operators.noise`), so a slice's measurement does not depend on its batch.

The benchmark noise settings (../ALGORITHMS.md, "the noisy setting"): CT, Gaussian noise on the
sinogram with standard deviation 1% of the clean sinogram's maximum, per slice; MR, complex
Gaussian noise of standard deviation 0.02 (per complex value) on the orthonormal k-space of the
image normalised to [0, 1], drawn once per slice on the full k-space before masking, so the same
draw serves every acceleration.
"""

from __future__ import annotations

import math

import torch

from medrecon.errors import InputError
from medrecon.operators.base import LinearOperator, complex_dtype_of
from medrecon.operators.mri import MultiCoilMRI, SingleCoilMRI
from medrecon.operators.noise import add_gaussian_noise, as_generator_list, randn_per_item

CT_NOISE_REL = 0.01
MR_NOISE_SIGMA = 0.02


def smooth_phase(shape: tuple[int, int], generator: torch.Generator, *, max_radians: float = math.pi / 2) -> torch.Tensor:
    """A smooth random phase map ``(H, W)`` in radians: a random quadratic surface over the field of
    view scaled to at most ``max_radians`` in magnitude (as body and coil phase vary slowly)."""
    h, w = shape
    yy = torch.linspace(-1, 1, h, dtype=torch.float64)[:, None]
    xx = torch.linspace(-1, 1, w, dtype=torch.float64)[None, :]
    coeffs = torch.rand(6, generator=generator, dtype=torch.float64, device=generator.device).cpu() * 2 - 1
    basis = [torch.ones(h, w, dtype=torch.float64), yy.expand(h, w), xx.expand(h, w), yy * xx, yy**2 - 1 / 3, xx**2 - 1 / 3]
    phase = sum(c * b for c, b in zip(coeffs, basis))
    return phase * (max_radians / phase.abs().max().clamp_min(1e-12))


def complex_image(magnitude: torch.Tensor, generators, *, with_phase: bool = True) -> torch.Tensor:
    """``(B, 1, H, W)`` real magnitudes -> complex images, with one smooth phase per item."""
    if magnitude.is_complex() or magnitude.ndim != 4 or magnitude.shape[1] != 1:
        raise InputError(f"expected real magnitude images (B, 1, H, W), got {tuple(magnitude.shape)} {magnitude.dtype}")
    out = magnitude.to(complex_dtype_of(magnitude.dtype))
    if not with_phase:
        return out
    gens = as_generator_list(generators, magnitude.shape[0])
    phases = torch.stack([smooth_phase(magnitude.shape[-2:], g) for g in gens])[:, None]
    return out * torch.exp(1j * phases).to(device=out.device, dtype=out.dtype)


def simulate_sinogram(op: LinearOperator, image: torch.Tensor, generators, *, noise_rel: float = 0.0) -> torch.Tensor:
    """Sinograms ``A x`` plus Gaussian noise of ``noise_rel`` times each slice's clean maximum."""
    clean = op(image)
    if noise_rel == 0:
        return clean
    if noise_rel < 0:
        raise InputError(f"noise_rel must be >= 0, got {noise_rel}")
    peak = clean.reshape(clean.shape[0], -1).amax(dim=1)
    return add_gaussian_noise(clean, noise_rel * peak, generators)


def simulate_kspace(
    op: SingleCoilMRI | MultiCoilMRI, image: torch.Tensor, generators, *, noise_sigma: float = 0.0
) -> torch.Tensor:
    """Masked k-space ``A x`` plus complex Gaussian noise of ``noise_sigma`` per complex value,
    drawn on the full k-space (all coils) before masking."""
    clean = op(image)
    if noise_sigma == 0:
        return clean
    if noise_sigma < 0:
        raise InputError(f"noise_sigma must be >= 0, got {noise_sigma}")
    noise = randn_per_item(clean, generators)
    return clean + noise_sigma * op.mask.to(device=clean.device, dtype=clean.real.dtype) * noise


__all__ = ["smooth_phase", "complex_image", "simulate_sinogram", "simulate_kspace", "CT_NOISE_REL", "MR_NOISE_SIGMA"]
