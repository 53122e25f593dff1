"""Unconditional sampling from a denoiser prior: deterministic DDIM (eta = 0) in sigma-space.

Song, Meng, Ermon (ICLR 2021), written for ``x = x0 + sigma n`` as in Karras et al. (2022): with
``x0_hat = D(x_i, sigma_i)`` the step is ``x_{i+1} = x0_hat + sigma_{i+1} (x_i - x0_hat) / sigma_i``
(the first-order Euler step of the probability-flow ODE), and the last step returns ``x0_hat``.
NFE = number of sigmas.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from medrecon.operators.noise import as_generator_list


@torch.no_grad()
def sample_ddim(
    denoiser,
    shape: Sequence[int],
    sigmas: torch.Tensor,
    *,
    generator,
    device="cpu",
    dtype=torch.float32,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Draw ``shape[0]`` images ``(B, C, H, W)`` from the prior; item i's start noise comes from
    generator i (one generator accepted for B = 1). ``sigmas``: decreasing noise levels."""
    gens = as_generator_list(generator, shape[0])
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    x = torch.stack([torch.randn(tuple(shape[1:]), generator=g, dtype=dtype, device=g.device) for g in gens]).to(device)
    x = x * float(sigmas[0])
    for i, sigma in enumerate(sigmas.tolist()):
        x0 = denoiser(x, sigma)
        if callback is not None:
            callback(i, x0)
        if i + 1 < len(sigmas):
            x = x0 + float(sigmas[i + 1]) / sigma * (x - x0)
        else:
            x = x0
    return x
