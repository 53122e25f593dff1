"""Total variation along the slice axis, solved by ADMM: the step that makes a volume coherent
when each slice is sampled from a 2-D prior.

DDS-3D (Chung, Lee, Ye, ICLR 2024) and DiffusionMBIR (Chung, Ryu, McCann, Klasky, Ye, CVPR 2023)
keep the 2-D prior per slice and couple the slices only in data consistency, through
``lam ||D_z x||_1`` with ``D_z`` the difference between neighbouring slices. One ADMM iteration on
a volume ``x`` ``(S, *image)`` (S slices of one volume, in order), with ``v`` and ``u`` kept across
the diffusion steps (:class:`TVzADMM` holds them):

1. x-update, ``cg_iters`` CG iterations started at the caller's estimate on
   ``(A^H A + rho D_z^T D_z) x = A^H y + rho D_z^T (v - u)`` (noiseless), or on the proximal form
   ``(I + gamma (A^H A + rho D_z^T D_z)) x = x0_hat + gamma (A^H y + rho D_z^T (v - u))`` around the
   prior's estimate (noisy data, as 2-D DDS);
2. ``v = soft(D_z x + u, lam / rho)``;
3. ``u = u + D_z x - v``.

Weights are relative (docs/conventions.md, "Weights"): ``rho = rho_rel ||A||^2``, ``lam = lam_rel ||A||^2`` and
``gamma = gamma_rel / ||A||^2``, so the threshold ``lam / rho = lam_rel / rho_rel`` is in image
units and one setting means the same for any geometry. The CG of the x-update is one system over
the whole volume (inner products over all slices), not a system per slice.

Boundary: ``neumann`` (default) has ``S - 1`` differences, so the first and last slices are not
neighbours; ``circular`` (the reference codes) wraps the last slice round to the first.
"""

from __future__ import annotations

import torch

from medrecon.errors import InputError
from medrecon.operators.cg import conjugate_gradient

BOUNDARIES = ("neumann", "circular")


def slice_difference(x: torch.Tensor, boundary: str = "neumann") -> torch.Tensor:
    """``D_z x``: ``x[k + 1] - x[k]`` over the first axis; ``(S, ...) -> (S - 1, ...)`` (neumann) or
    ``(S, ...)`` (circular, the last entry ``x[0] - x[S - 1]``)."""
    if boundary == "circular":
        return torch.roll(x, -1, dims=0) - x
    return x[1:] - x[:-1]


def slice_difference_adjoint(d: torch.Tensor, boundary: str = "neumann") -> torch.Tensor:
    """``D_z^T d``: the adjoint of :func:`slice_difference`, back to ``(S, ...)``."""
    if boundary == "circular":
        return torch.roll(d, 1, dims=0) - d
    zero = torch.zeros_like(d[:1])
    return torch.cat([zero, d]) - torch.cat([d, zero])


def soft_threshold(t: torch.Tensor, threshold: float) -> torch.Tensor:
    """Elementwise soft-thresholding ``sign(t) max(|t| - threshold, 0)`` (complex: of the modulus)."""
    magnitude = t.abs()
    return t * (torch.clamp(magnitude - threshold, min=0) / magnitude.clamp_min(1e-30))


def check_tv_z(lam_rel: float, rho_rel: float, boundary: str, n_slices: int | None = None) -> None:
    """Refuse settings TV_z cannot run with, with the reason (before any work)."""
    if not lam_rel >= 0:
        raise InputError(f"tv_lam_rel must be >= 0, got {lam_rel!r}")
    if not rho_rel > 0:
        raise InputError(f"tv_rho_rel must be > 0, got {rho_rel!r}")
    if boundary not in BOUNDARIES:
        raise InputError(f"tv_boundary must be one of {BOUNDARIES}, got {boundary!r}")
    if n_slices is not None and n_slices < 2:
        raise InputError(f"total variation along the slice axis needs a volume of at least 2 slices, got {n_slices}")


class TVzADMM:
    """ADMM-TV_z data consistency with its auxiliaries ``v``, ``u`` kept across calls (module docstring).

    Args:
        op: the per-slice operator; ``op`` applied to ``(S, *op.in_shape)`` acts slice-wise (wrap it
            in :class:`~medrecon.operators.base.SliceChunkedOperator` to bound memory).
        y: measurements ``(S, *op.out_shape)`` of the S slices of one volume, in slice order.
        lam_rel, rho_rel: TV weight and ADMM penalty, relative to ``||A||^2``.
        gamma_rel: None for noiseless data, else the proximal weight around the prior's estimate.
        boundary: ``neumann`` or ``circular``.
    """

    def __init__(self, op, y: torch.Tensor, *, lam_rel: float, rho_rel: float, gamma_rel: float | None = None,
                 boundary: str = "neumann") -> None:
        check_tv_z(lam_rel, rho_rel, boundary, int(y.shape[0]))
        if gamma_rel is not None and not gamma_rel > 0:
            raise InputError(f"gamma_rel must be > 0 (or None for noiseless data), got {gamma_rel!r}")
        self.op, self.y = op, y
        self.boundary = boundary
        self.threshold = lam_rel / rho_rel
        self.rho_rel = rho_rel
        self.gamma_rel = gamma_rel
        self.norm_sq = op.norm_sq(device=y.device, dtype=y.real.dtype if y.is_complex() else y.dtype)
        self.rhs_data = op.adjoint(y) / self.norm_sq  # A^H y / ||A||^2
        self.v: torch.Tensor | None = None
        self.u: torch.Tensor | None = None

    def _system(self, x: torch.Tensor) -> torch.Tensor:
        """``(A^H A / ||A||^2 + rho_rel D_z^T D_z) x``."""
        b = self.boundary
        return self.op.normal(x) / self.norm_sq + self.rho_rel * slice_difference_adjoint(slice_difference(x, b), b)

    def step(self, x_start: torch.Tensor, *, cg_iters: int) -> torch.Tensor:
        """One ADMM iteration from the estimate ``x_start`` ``(S, *image)``; returns the x-update."""
        b = self.boundary
        if self.v is None:  # the reference codes start v = u = 0
            self.v = torch.zeros_like(slice_difference(x_start, b))
            self.u = torch.zeros_like(self.v)
        rhs = self.rhs_data + self.rho_rel * slice_difference_adjoint(self.v - self.u, b)
        if self.gamma_rel is None:
            apply, rhs_all = self._system, rhs
        else:
            g = self.gamma_rel
            apply, rhs_all = (lambda t: t + g * self._system(t)), x_start + g * rhs
        # one system over the whole volume: CG's inner products run over every slice
        x = conjugate_gradient(lambda t: apply(t[0])[None], rhs_all[None], x_start[None], n_iter=cg_iters)[0]
        dz = slice_difference(x, b)
        self.v = soft_threshold(dz + self.u, self.threshold)
        self.u = self.u + dz - self.v
        return x


__all__ = ["BOUNDARIES", "TVzADMM", "check_tv_z", "slice_difference", "slice_difference_adjoint", "soft_threshold"]
