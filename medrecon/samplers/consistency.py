"""Steps the conditional samplers share: diffusion noise, Tweedie's epsilon, and data consistency.

Every sampler works in sigma-space (``x = x0 + sigma n``) on batches of slices and reuses these
functions rather than copying them. Data-consistency weights are relative to the
operator's scale: ``gamma = gamma_rel / ||A||^2`` (``op.norm_sq()``).
"""

from __future__ import annotations

import math

import torch

from medrecon.operators.cg import conjugate_gradient
from medrecon.operators.noise import randn_per_item


def diffusion_noise(like: torch.Tensor, generators) -> torch.Tensor:
    """Standard diffusion noise shaped like ``like``: N(0, 1) per real value, and for complex
    images N(0, 1) for each of the real and imaginary parts (the denoisers' convention)."""
    z = randn_per_item(like, generators)
    return z * math.sqrt(2.0) if like.is_complex() else z


def per_item_norm(v: torch.Tensor) -> torch.Tensor:
    """The Euclidean norm of each batch item, shaped ``(B, 1, ...)`` to broadcast against ``v``
    (the Langevin correctors' step sizes are per slice, never averaged over a batch)."""
    return torch.linalg.vector_norm(v.reshape(v.shape[0], -1), dim=1).reshape((-1,) + (1,) * (v.ndim - 1))


def tweedie_epsilon(x: torch.Tensor, x0_hat: torch.Tensor, sigma: float) -> torch.Tensor:
    """The noise estimate ``(x - D(x, sigma)) / sigma`` that goes with a Tweedie denoise."""
    return (x - x0_hat) / sigma


class CGDataConsistency:
    """DDS's data-consistency step (Chung, Lee, Ye 2024): ``n_iter`` CG iterations from ``x_start``.

    - ``gamma_rel`` None (noiseless): CG on ``A^H A x = A^H y`` started at ``x_start``;
    - otherwise (noisy): the proximal problem ``(I + gamma A^H A) x = x_start + gamma A^H y`` with
      ``gamma = gamma_rel / ||A||^2``, which keeps the prior's estimate where the data are noise.

    Built once per sampler call, before its loop: ``A^H y`` and ``||A||^2`` (a power iteration with
    host reads) are computed here, so a step is device work only.
    """

    def __init__(self, op, y: torch.Tensor, *, gamma_rel: float | None) -> None:
        self.op = op
        self.rhs = op.adjoint(y)
        self.gamma = None
        if gamma_rel is not None:
            self.gamma = gamma_rel / op.norm_sq(device=y.device, dtype=y.real.dtype if y.is_complex() else y.dtype)

    def __call__(self, x_start: torch.Tensor, *, n_iter: int) -> torch.Tensor:
        if self.gamma is None:
            return conjugate_gradient(self.op.normal, self.rhs, x_start, n_iter=n_iter)
        gamma = self.gamma
        return conjugate_gradient(lambda v: v + gamma * self.op.normal(v), x_start + gamma * self.rhs, x_start, n_iter=n_iter)
