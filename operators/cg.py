"""Batched conjugate gradient for Hermitian positive (semi-)definite systems.

The one CG of medrecon: the operators' default ``pinv``, the CGLS/CG-SENSE baselines and the
samplers' data-consistency steps all call :func:`conjugate_gradient`. Each batch item is its own
system with its own step sizes; inner products are conjugated (``<a, b> = sum(conj(a) * b)``), so
complex systems are solved correctly (the plain ``sum(a * b)`` of some reference code is not a
Hermitian solver).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

_ROUNDOFF = 64  # residual norms below this many machine epsilons of ||rhs|| count as converged


def batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of the per-item inner product ``<a, b> = sum(conj(a) b)``: shape ``(B,)``."""
    dims = tuple(range(1, a.ndim))
    if a.is_complex():
        return torch.sum((a.conj() * b).real, dim=dims)
    return torch.sum(a * b, dim=dims)


def _per_item(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def conjugate_gradient(
    apply_matrix: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    *,
    n_iter: int,
    tol: float = 0.0,
) -> torch.Tensor:
    """Solve ``M x = rhs`` for each batch item by ``n_iter`` CG iterations.

    Args:
        apply_matrix: ``x -> M x`` for a Hermitian positive semi-definite M, batched like ``rhs``.
        rhs: right-hand side, ``(B, ...)`` real or complex.
        x0: start, same shape as ``rhs`` (zeros when None).
        n_iter: number of iterations (the cost is ``n_iter`` applications of M).
        tol: stop early once every item's relative residual ``||r|| / ||rhs||`` is below ``tol``.
            0 (the default) runs all ``n_iter`` iterations with no host synchronisation, as the
            samplers need on a GPU.

    Returns:
        ``x`` of the shape and dtype of ``rhs``. An item whose residual falls to round-off
        (``||r|| <= 64 eps ||rhs||``) stays fixed from then on, so extra iterations never hurt.
    """
    x = torch.zeros_like(rhs) if x0 is None else x0
    m_x0 = apply_matrix(x) if x0 is not None else None
    r = rhs - m_x0 if x0 is not None else rhs.clone()
    p = r.clone()
    rs = batch_dot(r, r)
    rhs_norm_sq = batch_dot(rhs, rhs)
    eps = torch.finfo(rs.dtype).eps
    tiny = torch.finfo(rs.dtype).tiny
    # An item whose residual has reached round-off is frozen: past that point the step
    # rs / <p, M p> is a ratio of rounding errors and would throw the solution away. Round-off is
    # measured against the largest term that made the residual (rhs, or M x0 for a large start).
    scale_sq = rhs_norm_sq if m_x0 is None else torch.maximum(rhs_norm_sq, batch_dot(m_x0, m_x0))
    floor = (_ROUNDOFF * eps) ** 2 * scale_sq + tiny
    # Directions whose Rayleigh quotient <p, M p> / <p, p> is at round-off of the largest one seen
    # lie in M's null space (a singular M, e.g. a sampling projector): no step is taken along them.
    rayleigh_max = torch.zeros_like(rs)
    for _ in range(n_iter):
        mp = apply_matrix(p)
        curvature = batch_dot(p, mp)
        p_sq = batch_dot(p, p)
        rayleigh_max = torch.maximum(rayleigh_max, curvature / p_sq.clamp_min(tiny))
        active = (rs > floor) & (curvature > _ROUNDOFF * eps * rayleigh_max * p_sq + tiny)
        alpha = torch.where(active, rs / curvature.clamp_min(tiny), torch.zeros_like(rs))
        x = x + _per_item(alpha, x) * p
        r = r - _per_item(alpha, r) * mp
        rs_new = batch_dot(r, r)
        if tol > 0 and bool(torch.all(rs_new <= (tol**2) * rhs_norm_sq)):
            break
        beta = torch.where(active, rs_new / rs.clamp_min(tiny), torch.zeros_like(rs))
        p = r + _per_item(beta, p) * p
        rs = torch.where(active, rs_new, rs)
    return x
