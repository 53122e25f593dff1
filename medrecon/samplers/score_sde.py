"""Score-SDE projection (Song, Shen, Xing, Ermon, ICLR 2022), in sigma-space.

The operator is written ``A = P(Lambda) T``: ``T`` an invertible full transform, ``Lambda`` a 0/1
selection of what was measured (:func:`full_transform`):

- single-coil MRI: ``T`` the centred orthonormal FFT, ``Lambda`` the sampling mask;
- multi-coil MRI: ``T`` the FFT of every coil image ``S_c x``, ``Lambda`` the mask on every coil,
  ``T^+`` the SENSE combination (an extension of the paper's single-coil method: the coil
  k-spaces are projected one by one and combined by least squares, and the final hard projection
  is ``FINAL_CG_ITERS`` CG steps on the normal equations from the last estimate);
- CT: ``T`` the full-view sinogram on the uniform grid of views that contains the measured ones
  (``N k`` views, ``k = ceil(side / N)``, for the ``uniform`` convention; the
  ``side``-view grid for ``song``), ``Lambda`` the measured views, and ``T^-1`` its FBP;
- non-Cartesian MRI (radial, spiral, any NUFFT operator): there is no full transform with a
  subset ``Lambda`` to project onto (the samples lie off any grid), so the projection is replaced
  by a least-squares data-consistency step ``x' = x + lam A^+ (y_t - A x)``, ``A^+`` by
  ``LS_CG_ITERS`` conjugate-gradient steps on the normal equations (our extension: for a
  Cartesian single-coil mask it equals the paper's projection, since there ``A^+ = F^H M``), and
  the final hard projection is ``FINAL_CG_ITERS`` CG steps, as for multi-coil data.

Each of the ``N = len(sigmas) - 1`` steps runs a Langevin corrector then a reverse-diffusion
predictor; before each, a fresh noisy measurement ``y_t = y + sigma Lambda T z`` and the soft
projection ``x' = T^-1 [lam Lambda y_t + (1 - lam) Lambda T x + (I - Lambda) T x]`` (real part for
real images). Corrector step ``eps = 2 (snr ||z|| / ||s||)^2`` with the norms **per slice** (the
original averages them over the batch, which makes a slice depend on its batch). At the end one
Tweedie denoise, a hard projection with the noise-free ``y`` and a clip to ``clip``. NFE = 2N + 1.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable

import numpy as np
import torch

from medrecon.errors import InputError
from medrecon.operators.base import complex_dtype_of, real_dtype_of
from medrecon.operators.cg import conjugate_gradient
from medrecon.operators.ct import CTProjector
from medrecon.operators.mri import MultiCoilMRI, SingleCoilMRI, fft2c, ifft2c
from medrecon.operators.noise import as_generator_list

from .consistency import CGDataConsistency, diffusion_noise, per_item_norm

FINAL_CG_ITERS = 30  # CG steps of the final data consistency (multi-coil MRI, or final_gamma_rel)
LS_CG_ITERS = 5  # CG steps of each least-squares projection of non-Cartesian data


class _FourierTransform:
    def __init__(self, op: SingleCoilMRI) -> None:
        self.mask = op.mask

    def forward(self, x):
        return fft2c(x)

    def inverse(self, k):
        return ifft2c(k)

    def select(self, t: torch.Tensor) -> torch.Tensor:
        return self.mask.to(device=t.device, dtype=t.real.dtype)

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        return y  # already zero outside the mask, on the full grid


class _MultiCoilTransform:
    """Multi-coil MRI: ``T x = F (S_c x)`` for every coil, ``Lambda`` the mask on every coil, and
    ``T^+ k = sum_c conj(S_c) F^-1 k_c / sum_c |S_c|^2`` (the least-squares SENSE combination,
    exact on the range of ``T``; zero where no coil sees the pixel)."""

    def __init__(self, op: MultiCoilMRI) -> None:
        self.op = op
        self.mask = op.mask

    def forward(self, x):
        return fft2c(self.op.coil_maps.to(device=x.device, dtype=x.dtype) * x)

    def inverse(self, k):
        maps = self.op.coil_maps.to(device=k.device, dtype=k.dtype)
        energy = (maps.abs() ** 2).sum(dim=1, keepdim=True)
        combined = (maps.conj() * ifft2c(k)).sum(dim=1, keepdim=True)
        return torch.where(energy > 1e-12, combined / energy.clamp_min(1e-12), torch.zeros_like(combined))

    def select(self, t: torch.Tensor) -> torch.Tensor:
        return self.mask.to(device=t.device, dtype=t.real.dtype)

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        return y  # zero outside the mask, every coil on the full grid


class _FullViewTransform:
    def __init__(self, full: CTProjector, rows: torch.Tensor) -> None:
        self.full, self.rows = full, rows
        self.n_full = full.geometry.n_angles

    residual_form = True  # see _project

    def forward(self, x):
        return self.full(x)

    def inverse(self, s):
        return self.full.fbp(s)

    def select(self, t):
        mask = torch.zeros(self.n_full, 1, dtype=t.dtype, device=t.device)
        mask[self.rows.to(t.device)] = 1
        return mask

    def embed(self, y):
        out = torch.zeros((y.shape[0], 1, self.n_full, y.shape[-1]), dtype=y.dtype, device=y.device)
        out[:, :, self.rows.to(y.device)] = y
        return out


class _LeastSquaresTransform:
    """Non-Cartesian MRI: ``T = A`` with everything selected, and ``T^+ = A^+`` by CG; the
    projection takes the residual form ``x + lam A^+ (y - A x)`` (module docstring)."""

    residual_form = True

    def __init__(self, op) -> None:
        self.op = op

    def forward(self, x):
        return self.op(x)

    def inverse(self, k):
        return conjugate_gradient(self.op.normal, self.op.adjoint(k), n_iter=LS_CG_ITERS)

    def select(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones((), dtype=t.real.dtype, device=t.device)

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        return y


def full_transform(op):
    """``T`` and ``Lambda`` of an operator (see the module docstring), or :class:`InputError`."""
    if getattr(op, "non_cartesian", False):
        return _LeastSquaresTransform(op)
    if isinstance(op, SingleCoilMRI):
        return _FourierTransform(op)
    if isinstance(op, MultiCoilMRI):
        return _MultiCoilTransform(op)
    if isinstance(op, CTProjector):
        if op not in _FULL_VIEWS:
            _FULL_VIEWS[op] = _full_view_transform(op)
        return _FULL_VIEWS[op]
    raise InputError(
        f"score-SDE projection needs an invertible full transform: MRI (single- or multi-coil, Cartesian or "
        f"non-Cartesian) or CT, not {type(op).__name__}"
    )


_FULL_VIEWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""A CT operator's full-view transform, kept as long as the operator: its projector builds its
system matrix and FBP back-projector once (GBs at 512x512), not again for every batch of a volume."""


def _full_view_transform(op: CTProjector) -> _FullViewTransform:
    """The full-view projector whose views include ``op``'s (``rows``), or :class:`InputError`."""
    geom = op.geometry
    angles = np.asarray(geom.angles)
    n, side = len(angles), max(geom.image_shape)
    arc = np.pi if geom.kind == "parallel" else 2 * np.pi
    for n_full in (n * math.ceil(side / n), side, n):
        grid = np.arange(n_full) * (arc / n_full)
        rows = np.round(angles / (arc / n_full)).astype(int)
        if rows.min() >= 0 and rows.max() < n_full and np.allclose(grid[rows], angles, atol=1e-9):
            full = CTProjector(geom.with_angles(grid), backend=op.backend, projector=op.projector,
                               matrix_source=op.matrix_source)
            return _FullViewTransform(full, torch.from_numpy(rows))
    raise InputError("score-SDE needs CT views on a uniform grid (the 'uniform' or 'song' conventions)")


def _project(transform, x, y_full, lam: float, is_complex: bool):
    """Song et al.'s ``T^-1 [lam Lambda y + (1 - lam) Lambda T x + (I - Lambda) T x]``.

    CT (and non-Cartesian MRI: transforms with ``residual_form``) uses ``x + lam T^-1 Lambda (y - T
    x)`` instead, equal for an exact inverse: FBP(T(.)) is not the identity on a pixel grid, and the
    paper's form iterates its high-frequency gain (power iteration at 256x256 on ``FBP (I - Lambda)
    T``: about 1.95 for 60 fan views on 300, 1.25 for 23 parallel views on 276). On fan beam it blew
    up on real slices within ten steps; on parallel beam it stays bounded for tens of steps but
    diverges at the preset's 1000 (CT 23 views, one slice of ct-lung1: 4.0 dB, the image clipped
    to 0 / 1, fp32 and bf16 alike), while the residual form gives 37.5 dB there. On a training
    slice (ct-lung2, 23 views) the residual form is also better at 50 steps (37.0 dB / SSIM 0.923
    against 33.0 / 0.900) and only at 20 steps noisier (25.4 / 0.40 against 24.9 / 0.82). The
    residual form's own iteration ``I - FBP Lambda T`` has gain 1.0 at the bench geometries (fan 60
    views on 300 at 256x256, 30 on 150 at 128x128) but about 1.9 when the full-view grid has no more
    views than the image has columns (8 views at 32x32, 16 at 64x64), where score-SDE on CT is not
    stable.
    """
    t = transform.forward(x)
    sel = transform.select(t)
    if getattr(transform, "residual_form", False):
        out = x + transform.inverse(lam * sel * (y_full - t))
    else:
        out = transform.inverse(sel * (lam * y_full + (1 - lam) * t) + (1 - sel) * t)
    return out if is_complex else out.real if out.is_complex() else out


@torch.no_grad()
def sample_score_sde(
    denoiser,
    op,
    y: torch.Tensor,
    *,
    sigmas: torch.Tensor,
    generator,
    snr: float = 0.246,
    lam: float = 0.841,
    clip: tuple[float, float] | None = (0.0, 1.0),
    final_gamma_rel: float | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Reconstruct ``(B, *op.in_shape)`` images from ``y`` (module docstring). Defaults: Song et
    al.'s LIDC settings (snr 0.246, lambda 0.841); ``sigmas`` geometric, e.g. 1000 from 128 to 0.01.

    ``final_gamma_rel``: None (the paper) ends with the hard projection onto the data; with noisy
    data a number replaces it by DDS's regularised step ``(I + gamma A^H A) x = x0 + gamma A^H y``
    (``gamma = final_gamma_rel / ||A||^2``, 30 CG steps), which does not fit the noise (our extension)."""
    if not 0 <= lam <= 1:
        raise InputError(f"lam must lie in [0, 1], got {lam}")
    if final_gamma_rel is not None and not final_gamma_rel > 0:
        raise InputError(f"final_gamma_rel must be positive or None, got {final_gamma_rel}")
    transform = full_transform(op)
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).tolist()
    gens = as_generator_list(generator, y.shape[0])
    real = real_dtype_of(y.dtype)
    is_complex = op.in_complex
    like = torch.zeros((y.shape[0], *op.in_shape), dtype=complex_dtype_of(real) if is_complex else real, device=y.device)
    y_full = transform.embed(y)
    final = None  # the last step's data consistency, set up before the loop (no host reads in it)
    if final_gamma_rel is not None:
        final = CGDataConsistency(op, y, gamma_rel=final_gamma_rel)
    elif isinstance(transform, (_MultiCoilTransform, _LeastSquaresTransform)):
        # T is not unitary: the hard projection is the least-squares step x0 + A^+ (y - A x0), by CG
        final = CGDataConsistency(op, y, gamma_rel=None)
    x = sigmas[0] * diffusion_noise(like, gens)
    for i, sigma in enumerate(sigmas[:-1]):
        nxt = sigmas[i + 1]
        for stage in ("corrector", "predictor"):
            y_t = y_full + sigma * transform.forward(diffusion_noise(like, gens))
            x = _project(transform, x, y_t, lam, is_complex)
            score = (denoiser(x, sigma) - x) / sigma**2
            z = diffusion_noise(x, gens)
            if stage == "corrector":
                step = 2 * (snr * per_item_norm(z) / per_item_norm(score).clamp_min(1e-12)) ** 2
                x = x + step * score + torch.sqrt(2 * step) * z
            else:
                x = x + (sigma**2 - nxt**2) * score + math.sqrt(sigma**2 - nxt**2) * z
        if callback is not None:
            callback(i, x)
    x0 = denoiser(x, sigmas[-1])
    if final is not None:
        x0 = final(x0, n_iter=FINAL_CG_ITERS)
    else:
        x0 = _project(transform, x0, y_full, 1.0, is_complex)
    if clip is not None:
        x0 = x0.clamp(*clip) if not x0.is_complex() else x0
    return x0
