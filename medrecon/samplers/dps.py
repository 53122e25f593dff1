"""DPS: diffusion posterior sampling (Chung et al., ICLR 2023), in sigma-space.

At each noise level ``sigma_i`` (docs/samplers.md), with gradients on:

1. ``x0_hat = D(x_i, sigma_i)``, clipped to ``clip`` (the data range) when given;
2. the unconditional ancestral step (DDPM's, as Euler-ancestral in sigma-space):
   ``x' = x0_hat + sigma_down (x_i - x0_hat) / sigma_i + sigma_up z`` with
   ``sigma_up = sigma_{i+1} sqrt(1 - sigma_{i+1}^2 / sigma_i^2)``, ``sigma_down = sqrt(sigma_{i+1}^2 - sigma_up^2)``;
3. the likelihood step ``x_{i+1} = x' - zeta grad_{x_i} ||y - A x0_hat||`` with the **plain** norm (the
   paper's ``zeta_i = zeta' / ||y - A x0_hat||`` on the squared norm, ``zeta' = zeta / 2``).

``zeta = zeta_rel / ||A|| * 1000 / N`` for a run of ``N`` noise levels: the gradient of the plain norm
scales with the operator's norm (``sqrt(op.norm_sq())``), so ``zeta_rel`` means the same for any
geometry, and the likelihood steps add up over the run, so ``zeta_rel`` is the paper's weight at its
1000 steps and fewer steps take proportionally larger ones (the total guidance does not depend on N). Each item's norm is its own, so
items do not interact. NFE = ``len(sigmas)``, each with a backward pass through the network.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from medrecon.errors import InputError
from medrecon.operators.base import complex_dtype_of, real_dtype_of
from medrecon.operators.noise import as_generator_list

from .consistency import diffusion_noise

REFERENCE_STEPS = 1000  # the paper's step count, at which zeta_rel is the paper's weight


def likelihood_gradient(denoiser, op, y: torch.Tensor, x: torch.Tensor, sigma: float, clip) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x0_hat, grad_x sum_i ||y_i - A x0_hat_i||)`` at ``x`` (the DPS gradient, per item)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        x0_hat = denoiser(x, sigma)
        if clip is not None:
            x0_hat = _clip(x0_hat, clip)
        residual = y - op(x0_hat)
        norms = torch.linalg.vector_norm(residual.reshape(residual.shape[0], -1), dim=1)
        (grad,) = torch.autograd.grad(norms.sum(), x)
    return x0_hat.detach(), grad


def _clip(x: torch.Tensor, clip) -> torch.Tensor:
    lo, hi = clip
    if x.is_complex():  # clip the magnitude, keep the phase
        magnitude = x.abs()
        return x * (magnitude.clamp(lo, hi) / magnitude.clamp_min(1e-12))
    return x.clamp(lo, hi)


def sample_dps(
    denoiser,
    op,
    y: torch.Tensor,
    *,
    sigmas: torch.Tensor,
    generator,
    zeta_rel: float = 1.0,
    clip: tuple[float, float] | None = (0.0, 1.0),
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Reconstruct ``(B, *op.in_shape)`` images from ``y`` (see the module docstring).

    ``zeta_rel``: the likelihood step relative to ``1 / ||A||`` at 1000 steps (scaled by ``1000 / N``
    for ``N`` steps; tune per task on training data);
    ``clip``: the data range of the prior's images, or None.
    """
    if not zeta_rel >= 0:
        raise InputError(f"zeta_rel must be >= 0, got {zeta_rel}")
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).tolist()
    gens = as_generator_list(generator, y.shape[0])
    real = real_dtype_of(y.dtype)
    like = torch.zeros((y.shape[0], *op.in_shape), dtype=complex_dtype_of(real) if op.in_complex else real, device=y.device)
    zeta = zeta_rel / math.sqrt(op.norm_sq(device=y.device, dtype=real)) * REFERENCE_STEPS / len(sigmas)
    x = sigmas[0] * diffusion_noise(like, gens)
    x0_hat = x
    for i, sigma in enumerate(sigmas):
        x0_hat, grad = likelihood_gradient(denoiser, op, y, x, sigma, clip)
        if callback is not None:
            callback(i, x0_hat)
        if i + 1 == len(sigmas):
            break
        nxt = sigmas[i + 1]
        sigma_up = nxt * math.sqrt(max(0.0, 1 - nxt**2 / sigma**2))
        sigma_down = math.sqrt(max(0.0, nxt**2 - sigma_up**2))
        x = x0_hat + sigma_down / sigma * (x - x0_hat) + sigma_up * diffusion_noise(x, gens) - zeta * grad
    return x0_hat
