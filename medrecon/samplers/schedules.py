"""Noise-level schedules in sigma-space (``x = x0 + sigma n``), decreasing, ending at ``sigma_min``.

- :func:`karras_sigmas`: Karras et al. (2022), eq. 5, ``rho = 7``;
- :func:`geometric_sigmas`: VE / score-SDE, geometric from ``sigma_max`` to ``sigma_min`` (Song et al.);
- :func:`vp_sigmas`: a sub-sampled discrete VP schedule (DDIM's uniform timestep spacing) as sigmas.
"""

from __future__ import annotations

import torch

from medrecon.errors import InputError, positive_int


def _check(n_steps: int, sigma_min: float, sigma_max: float) -> None:
    positive_int(n_steps, "n_steps")
    if not 0 < sigma_min < sigma_max:
        raise InputError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")


def karras_sigmas(n_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """``n_steps`` sigmas from ``sigma_max`` down to ``sigma_min`` (float64)."""
    _check(n_steps, sigma_min, sigma_max)
    ramp = torch.linspace(0, 1, n_steps, dtype=torch.float64)
    inv = sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return inv**rho


def geometric_sigmas(n_steps: int, sigma_min: float = 0.01, sigma_max: float = 128.0) -> torch.Tensor:
    """``n_steps`` geometrically spaced sigmas from ``sigma_max`` to ``sigma_min`` (float64)."""
    _check(n_steps, sigma_min, sigma_max)
    return torch.exp(torch.linspace(torch.log(torch.tensor(sigma_max)), torch.log(torch.tensor(sigma_min)), n_steps, dtype=torch.float64))


def vp_sigmas(alphas_cumprod, n_steps: int) -> torch.Tensor:
    """Sigmas of ``n_steps`` timesteps of a discrete VP schedule, uniformly spaced from the last
    to the first (DDIM's "uniform" skip), decreasing."""
    abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    if n_steps < 1 or n_steps > abar.numel():
        raise InputError(f"n_steps must lie in 1..{abar.numel()}, got {n_steps}")
    index = torch.round(torch.linspace(abar.numel() - 1, 0, n_steps)).long()
    return torch.sqrt((1 - abar[index]) / abar[index])
