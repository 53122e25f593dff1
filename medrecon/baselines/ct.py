"""Classical CT reconstructions: FBP, SIRT, CGLS and total-variation (PDHG), batched over slices.

Each function takes a CT operator (:class:`~medrecon.operators.ct.CTProjector`, or any real
:class:`~medrecon.operators.base.LinearOperator`) and sinograms ``y`` ``(B, 1, n_angles, n_det)``
and returns images ``(B, 1, H, W)`` on ``y``'s device and dtype. Every slice of the batch is
solved independently (per-item step sizes), so a slice's result does not depend on its batch.

Weights are relative (docs/conventions.md, "Weights"): TV's ``lam_rel`` multiplies ``||A||^2`` so one value means the
same for any geometry; its default was chosen on training slices only (docs/baselines.md).
"""

from __future__ import annotations

import torch

from medrecon.errors import InputError, positive_int
from medrecon.operators.base import LinearOperator
from medrecon.operators.cg import conjugate_gradient


def fbp(op: LinearOperator, y: torch.Tensor, *, filter: str = "ramp") -> torch.Tensor:
    """Filtered back-projection (the operator's ``fbp``; ramp, shepp-logan, cosine or hann filter)."""
    if not hasattr(op, "fbp"):
        raise InputError(f"FBP needs a CT projector, got {type(op).__name__}")
    return op.fbp(y, filter=filter)


def sirt(
    op: LinearOperator,
    y: torch.Tensor,
    *,
    n_iter: int = 100,
    nonnegative: bool = True,
    x0: torch.Tensor | None = None,
) -> torch.Tensor:
    """SIRT (Gilbert 1972): ``x <- x + C A^T R (y - A x)`` with ``R = 1 / A 1``, ``C = 1 / A^T 1``.

    Rays and pixels with zero sums are left out (weight 0). With ``nonnegative`` every iterate is
    clipped at 0.
    """
    positive_int(n_iter, "n_iter")
    ones_image = torch.ones((1, *op.in_shape), dtype=y.dtype, device=y.device)
    ones_sino = torch.ones((1, *op.out_shape), dtype=y.dtype, device=y.device)
    row_sums = op(ones_image)
    col_sums = op.adjoint(ones_sino)
    inv_rows = torch.where(row_sums > 0, 1.0 / row_sums.clamp_min(1e-12), torch.zeros_like(row_sums))
    inv_cols = torch.where(col_sums > 0, 1.0 / col_sums.clamp_min(1e-12), torch.zeros_like(col_sums))
    x = torch.zeros((y.shape[0], *op.in_shape), dtype=y.dtype, device=y.device) if x0 is None else x0
    for _ in range(n_iter):
        x = x + inv_cols * op.adjoint(inv_rows * (y - op(x)))
        if nonnegative:
            x = x.clamp_min(0)
    return x


def cgls(op: LinearOperator, y: torch.Tensor, *, n_iter: int = 30) -> torch.Tensor:
    """CGLS: ``n_iter`` conjugate-gradient steps on the normal equations ``A^T A x = A^T y`` from 0
    (the iteration count is the regulariser: few iterations, smooth image)."""
    positive_int(n_iter, "n_iter")
    return conjugate_gradient(op.normal, op.adjoint(y), n_iter=n_iter)


def finite_differences(x: torch.Tensor) -> torch.Tensor:
    """Forward differences ``(B, 1, H, W) -> (B, 2, H, W)`` (rows, columns), zero at the far border."""
    grad = torch.zeros((x.shape[0], 2, *x.shape[-2:]), dtype=x.dtype, device=x.device)
    grad[:, 0, :-1, :] = x[:, 0, 1:, :] - x[:, 0, :-1, :]
    grad[:, 1, :, :-1] = x[:, 0, :, 1:] - x[:, 0, :, :-1]
    return grad


def finite_differences_adjoint(g: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`finite_differences` (minus the divergence): ``(B, 2, H, W) -> (B, 1, H, W)``."""
    out = torch.zeros((g.shape[0], 1, *g.shape[-2:]), dtype=g.dtype, device=g.device)
    out[:, 0, :-1, :] -= g[:, 0, :-1, :]
    out[:, 0, 1:, :] += g[:, 0, :-1, :]
    out[:, 0, :, :-1] -= g[:, 1, :, :-1]
    out[:, 0, :, 1:] += g[:, 1, :, :-1]
    return out


def finite_differences_3d(x: torch.Tensor) -> torch.Tensor:
    """Forward differences of a volume ``(S, 1, H, W) -> (S, 3, H, W)`` (slices, rows, columns), zero
    at the far border of each axis (the batch axis is the slice axis, in order)."""
    grad = torch.zeros((x.shape[0], 3, *x.shape[-2:]), dtype=x.dtype, device=x.device)
    grad[:-1, 0] = x[1:, 0] - x[:-1, 0]
    grad[:, 1:] = finite_differences(x)
    return grad


def finite_differences_3d_adjoint(g: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`finite_differences_3d`: ``(S, 3, H, W) -> (S, 1, H, W)``."""
    out = finite_differences_adjoint(g[:, 1:])
    out[:-1, 0] -= g[:-1, 0]
    out[1:, 0] += g[:-1, 0]
    return out


def tv_pdhg(
    op: LinearOperator,
    y: torch.Tensor,
    *,
    lam_rel: float = 1e-3,
    n_iter: int = 500,
    nonnegative: bool = True,
    volume: bool = False,
) -> torch.Tensor:
    """Isotropic total-variation reconstruction by PDHG (Chambolle & Pock 2011).

    Solves ``min_x  1/2 ||A x - y||^2 / ||A||^2 + lam_rel * TV(x)`` (``x >= 0`` with
    ``nonnegative``), i.e. the usual ``1/2 ||A x - y||^2 + lam TV(x)`` with
    ``lam = lam_rel * ||A||^2``. The operator is scaled to norm 1 so that step sizes
    ``tau = sigma = 0.99 / ||[A / ||A||; grad]||`` (``<= 0.99 / 3`` in 2-D, ``0.99 / sqrt(13)`` in
    3-D) converge for any geometry.

    ``volume`` False: TV of each slice, every slice solved on its own. True (3-D TV, the classical
    baseline of coherent-volume methods): the batch is one volume's slices in order, and the
    gradient has a third component along the slice axis (voxel units, whatever the slice spacing).
    """
    positive_int(n_iter, "n_iter")
    if not (lam_rel >= 0):
        raise InputError(f"lam_rel must be >= 0, got {lam_rel!r}")
    if volume and y.shape[0] < 2:
        raise InputError(f"3-D TV needs a volume of at least 2 slices, got {y.shape[0]}")
    if volume:
        grad, grad_adjoint = finite_differences_3d, finite_differences_3d_adjoint
    else:
        grad, grad_adjoint = finite_differences, finite_differences_adjoint
    scale = op.norm_sq(device=y.device, dtype=y.dtype) ** 0.5
    y_s = y / scale
    tau = sigma = 0.99 / (13.0**0.5 if volume else 3.0)
    x = torch.zeros((y.shape[0], *op.in_shape), dtype=y.dtype, device=y.device)
    x_bar = x
    p = torch.zeros_like(y)
    q = torch.zeros_like(grad(x))
    for _ in range(n_iter):
        p = (p + sigma * (op(x_bar) / scale - y_s)) / (1.0 + sigma)
        q = q + sigma * grad(x_bar)
        magnitude = torch.sqrt(torch.sum(q * q, dim=1, keepdim=True))
        q = q / torch.clamp(magnitude / max(lam_rel, 1e-30), min=1.0)
        x_new = x - tau * (op.adjoint(p) / scale + grad_adjoint(q))
        if nonnegative:
            x_new = x_new.clamp_min(0)
        x_bar = 2 * x_new - x
        x = x_new
    return x


__all__ = ["fbp", "sirt", "cgls", "tv_pdhg", "finite_differences", "finite_differences_adjoint", "finite_differences_3d",
           "finite_differences_3d_adjoint"]
