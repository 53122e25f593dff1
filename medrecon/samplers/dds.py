"""DDS: the decomposed diffusion sampler (Chung, Lee, Ye, ICLR 2024), in sigma-space.

One step from ``sigma_i`` to ``sigma_{i+1}`` (docs/samplers.md):

1. Tweedie: ``x0_hat = D(x_i, sigma_i)`` (no clipping), ``eps_hat = (x_i - x0_hat) / sigma_i``;
2. data consistency: ``x0_tilde`` = ``cg_iters`` CG steps from ``x0_hat`` on ``A^H A x = A^H y``
   (noiseless) or on ``(I + gamma A^H A) x = x0_hat + gamma A^H y`` (noisy, ``gamma = gamma_rel /
   ||A||^2``) — :class:`~medrecon.samplers.consistency.CGDataConsistency`;
3. re-noise: ``x_{i+1} = x0_tilde + sigma_{i+1} (eta z + sqrt(1 - eta^2) eps_hat)`` — DDIM's update
   written for ``x = x0 + sigma n`` (the VP form divided by ``sqrt(abar)``).

The last step returns ``x0_tilde`` (or, with ``final_denoise_sigma``, one more prior denoise of it:
NFE + 1). NFE = ``len(sigmas)``. Complex images (MR) work unchanged with a
complex-aware denoiser; every random draw of item i comes from generator i.

**DDS-3D** (``volume_prior="tv-z"``, the paper's 3-D solver): the batch is the S slices of one
volume, in order, and step 2 is one ADMM iteration with total variation along the slice axis
(:class:`~medrecon.samplers.tv_z.TVzADMM`: ``cg_iters`` CG iterations of the x-update from
``x0_hat``, then the soft-threshold and dual updates), its auxiliaries kept across the steps; the
network still sees each slice alone. As in the released code, ADMM runs at every step where data
consistency runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from medrecon.errors import InputError
from medrecon.operators.base import complex_dtype_of, real_dtype_of
from medrecon.operators.noise import as_generator_list

from .consistency import CGDataConsistency, diffusion_noise, tweedie_epsilon
from .tv_z import TVzADMM

VOLUME_PRIORS = (None, "tv-z")


@torch.no_grad()
def sample_dds(
    denoiser,
    op,
    y: torch.Tensor,
    *,
    sigmas: torch.Tensor,
    generator,
    cg_iters: int = 5,
    gamma_rel: float | None = None,
    eta: float = 0.85,
    dc_sigma_min: float = 0.0,
    final_denoise_sigma: float = 0.0,
    volume_prior: str | None = None,
    tv_lam_rel: float = 0.0,
    tv_rho_rel: float = 1.0,
    tv_boundary: str = "neumann",
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Reconstruct ``(B, *op.in_shape)`` images from measurements ``y`` ``(B, *op.out_shape)``.

    Args:
        denoiser: ``D(x, sigma)`` on the operator's image space (normalised units).
        sigmas: decreasing noise levels (e.g. :func:`~medrecon.samplers.schedules.karras_sigmas`).
        generator: one ``torch.Generator`` per batch item.
        cg_iters: CG iterations per step (paper: 5).
        gamma_rel: None for noiseless data; else the relative weight of the noisy variant.
        eta: DDS's stochasticity (paper 0.15 / 0.5 / 0.8 at 19 / 49 / 99 NFE; its code 0.85).
        dc_sigma_min: data consistency only at noise levels ``sigma >= dc_sigma_min``; below it the
            steps are the prior's alone (DDIM with DDS's eta), so the last step returns the prior's
            estimate. 0 (default, the paper) keeps data consistency to the end; with noisy data a
            level near the noise left in the image lets the prior remove what CG fitted of it.
        final_denoise_sigma: > 0: the result is ``D(x0_tilde, final_denoise_sigma)``, one more
            network call that removes measurement noise of about that level which the last data
            consistency fitted (our extension for noisy data; 0, the paper, returns ``x0_tilde``).
        volume_prior: None (each slice on its own, the 2-D paper) or ``"tv-z"`` (DDS-3D: the batch is
            one volume's slices in order, coupled by ADMM-TV_z in data consistency).
        tv_lam_rel, tv_rho_rel: TV_z weight and ADMM penalty relative to ``||A||^2`` (soft-threshold
            ``tv_lam_rel / tv_rho_rel`` in image units); ``tv_boundary``: ``neumann`` or ``circular``.
        callback: ``callback(i, x0_tilde)`` after each step.
    """
    if not 0 <= eta <= 1:
        raise InputError(f"eta must lie in [0, 1], got {eta}")
    if not dc_sigma_min >= 0:
        raise InputError(f"dc_sigma_min must be >= 0, got {dc_sigma_min}")
    if not final_denoise_sigma >= 0:
        raise InputError(f"final_denoise_sigma must be >= 0, got {final_denoise_sigma}")
    if isinstance(cg_iters, bool) or not isinstance(cg_iters, int) or cg_iters < 0:
        raise InputError(f"cg_iters must be an integer >= 0, got {cg_iters!r}")
    if volume_prior not in VOLUME_PRIORS:
        raise InputError(f"volume_prior must be one of {VOLUME_PRIORS}, got {volume_prior!r}")
    admm = consistency = None
    if volume_prior == "tv-z":
        admm = TVzADMM(op, y, lam_rel=tv_lam_rel, rho_rel=tv_rho_rel, gamma_rel=gamma_rel, boundary=tv_boundary)
    elif cg_iters > 0:
        consistency = CGDataConsistency(op, y, gamma_rel=gamma_rel)
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).tolist()
    gens = as_generator_list(generator, y.shape[0])
    real = real_dtype_of(y.dtype)
    like = torch.zeros((y.shape[0], *op.in_shape), dtype=complex_dtype_of(real) if op.in_complex else real, device=y.device)
    x = sigmas[0] * diffusion_noise(like, gens)
    for i, sigma in enumerate(sigmas):
        x0_hat = denoiser(x, sigma)
        consistent = cg_iters > 0 and sigma >= dc_sigma_min
        if not consistent:
            x0_tilde = x0_hat
        elif admm is not None:
            x0_tilde = admm.step(x0_hat, cg_iters=cg_iters)
        else:
            x0_tilde = consistency(x0_hat, n_iter=cg_iters)
        if callback is not None:
            callback(i, x0_tilde)
        if i + 1 == len(sigmas):
            return denoiser(x0_tilde, final_denoise_sigma) if final_denoise_sigma > 0 else x0_tilde
        eps_hat = tweedie_epsilon(x, x0_hat, sigma)
        noise = diffusion_noise(x, gens) if eta > 0 else torch.zeros_like(x)
        x = x0_tilde + sigmas[i + 1] * (eta * noise + math.sqrt(1 - eta**2) * eps_hat)
    return x
