"""DiffusionMBIR (Chung, Ryu, McCann, Klasky, Ye, CVPR 2023), in sigma-space.

A VE score prior applied slice by slice, the slices of one volume coupled by total variation along
the slice axis (docs/samplers.md, "Coherent volumes"). The batch is the S slices of one volume, in order. Each of the
``N = len(sigmas) - 1`` steps from ``sigma_i`` to ``sigma_{i+1}``:

1. predictor (reverse diffusion): ``x += (s_i^2 - s_{i+1}^2) score(x, s_i) + sqrt(s_i^2 - s_{i+1}^2) z``;
2. one Langevin corrector at ``s_{i+1}``: ``eps = 2 (snr ||z|| / ||score||)^2`` with the norms **per
   slice** (the original averages them over the mini-batch of slices, so a slice's result depends on
   its batch), ``x += eps score + sqrt(2 eps) z``;
3. one ADMM-TV_z iteration (:class:`~medrecon.samplers.tv_z.TVzADMM`) with ``cg_iters`` CG
   iterations (the paper: 1), applied to the noisy ``x`` itself, not to a Tweedie estimate; its
   auxiliaries are kept across the steps.

At the end: one Tweedie denoise at the last level, the Kaczmarz-like step
``x + A^H (y - A x) / (A^H A 1)`` of the paper's code, and a clip to ``clip``. NFE = 2N + 1. The
published setting is N = 2000 with snr 0.16 (lam 0.04, rho 10 in its own operator's units; here
relative to ``||A||^2``); the score is ``(D(x, sigma) - x) / sigma^2`` from the denoiser.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from medrecon.errors import InputError, positive_int
from medrecon.operators.base import complex_dtype_of, real_dtype_of
from medrecon.operators.noise import as_generator_list

from .consistency import diffusion_noise, per_item_norm
from .tv_z import TVzADMM


def kaczmarz_step(op, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """DiffusionMBIR's final step ``x + A^H (y - A x) / (A^H A 1)`` (pixels the rays miss unchanged)."""
    ones = torch.ones((1, *op.in_shape), dtype=x.dtype, device=x.device)
    weight = op.normal(ones)
    weight = weight.real if weight.is_complex() else weight
    update = op.adjoint(y - op(x))
    return x + torch.where(weight > 1e-12, update / weight.clamp_min(1e-12), torch.zeros_like(update))


@torch.no_grad()
def sample_diffusion_mbir(
    denoiser,
    op,
    y: torch.Tensor,
    *,
    sigmas: torch.Tensor,
    generator,
    snr: float = 0.16,
    cg_iters: int = 1,
    volume_prior: str = "tv-z",
    tv_lam_rel: float = 2e-6,
    tv_rho_rel: float = 1e-3,
    tv_boundary: str = "neumann",
    clip: tuple[float, float] | None = (0.0, 1.0),
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Reconstruct the ``(S, *op.in_shape)`` slices of one volume from ``y`` (module docstring).

    Args:
        sigmas: decreasing VE noise levels (geometric; the paper 2000 steps).
        snr: the corrector's signal-to-noise ratio (paper 0.16).
        cg_iters: CG iterations of ADMM's x-update per step (paper 1).
        volume_prior: ``"tv-z"``, the only coupling DiffusionMBIR has (stated so the pipeline runs
            the volume as one).
        tv_lam_rel, tv_rho_rel, tv_boundary: as DDS-3D's (:mod:`medrecon.samplers.tv_z`).
        clip: the final clip (None for none; complex images are not clipped).
    """
    if volume_prior != "tv-z":
        raise InputError(f"DiffusionMBIR couples the slices by TV along z: volume_prior must be 'tv-z', got {volume_prior!r}")
    if not snr > 0:
        raise InputError(f"snr must be > 0, got {snr}")
    cg_iters = positive_int(cg_iters, "cg_iters")
    admm = TVzADMM(op, y, lam_rel=tv_lam_rel, rho_rel=tv_rho_rel, boundary=tv_boundary)
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).tolist()
    gens = as_generator_list(generator, y.shape[0])
    real = real_dtype_of(y.dtype)
    like = torch.zeros((y.shape[0], *op.in_shape), dtype=complex_dtype_of(real) if op.in_complex else real, device=y.device)
    x = sigmas[0] * diffusion_noise(like, gens)
    for i, sigma in enumerate(sigmas[:-1]):
        nxt = sigmas[i + 1]
        score = (denoiser(x, sigma) - x) / sigma**2
        x = x + (sigma**2 - nxt**2) * score + math.sqrt(sigma**2 - nxt**2) * diffusion_noise(x, gens)
        score = (denoiser(x, nxt) - x) / nxt**2
        z = diffusion_noise(x, gens)
        step = 2 * (snr * per_item_norm(z) / per_item_norm(score).clamp_min(1e-12)) ** 2
        x = x + step * score + torch.sqrt(2 * step) * z
        x = admm.step(x, cg_iters=cg_iters)
        if callback is not None:
            callback(i, x)
    x0 = kaczmarz_step(op, y, denoiser(x, sigmas[-1]))
    if clip is not None and not x0.is_complex():
        x0 = x0.clamp(*clip)
    return x0


__all__ = ["kaczmarz_step", "sample_diffusion_mbir"]
