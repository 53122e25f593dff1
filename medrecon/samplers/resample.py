"""ReSample: hard data consistency with a latent diffusion prior (B. Song, S. M. Kwon, Z. Zhang,
X. Hu, Q. Qu, L. Shen, "Solving inverse problems with latent diffusion models via hard data
consistency", ICLR 2024), written in sigma-space (``z = z0 + sigma n`` on the prior's scaled latents).

The prior is a :class:`~medrecon.priors.latent.LatentPrior`: a denoiser ``D(z, sigma)`` on latents,
``encode`` (posterior mean times the scaling factor) and ``decode``. With ``sigmas`` ``s_0 > ... >
s_{N-1}`` and ``z = s_0 n`` (item i's noise from generator i), step ``i`` (``s = s_i``, ``s' = s_{i+1}``):

1. Tweedie: ``z0_hat = D(z, s)``; unconditional DDIM (eta 0): ``z' = z0_hat + (s' / s) (z - z0_hat)``.
2. Optional latent DPS step (``dps_zeta_rel > 0``; off by default): ``z' -= zeta grad_z ||y - A
   decode(D(z, s))||`` with the plain norm and ``zeta = dps_zeta_rel / ||A||``, as in
   :mod:`.dps` (the gradient comes from the same network call, with a backward pass through the
   denoiser and the decoder). ``zeta`` is relative to ``||A||`` only: the decoder's own gain is
   part of what ``dps_zeta_rel`` has to be tuned for.
3. If ``i`` is in the set C, **hard data consistency** on ``z0_hat``:

   - C holds every ``consistency_every``-th step of the last two thirds of the schedule, counted
     from ``m = ceil(N / 3)``: ``i >= m`` and ``(i - m) % consistency_every == 0`` (the paper: every
     10th of 500 DDIM steps). The final step is handled in 5.
   - middle third (``m <= i < ceil(2N / 3)``), **pixel space**: ``x* =`` ``pixel_cg_iters`` CG
     iterations started at ``decode(z0_hat)`` on ``A^H A x = A^H y`` (``gamma_rel`` None), or on
     ``(I + gamma A^H A) x = decode(z0_hat) + gamma A^H y`` with ``gamma = gamma_rel / ||A||^2`` for
     noisy data (:class:`~medrecon.samplers.consistency.CGDataConsistency`, DDS's step); then
     ``z0* = encode(x*)``. (The paper solves this least-squares problem by gradient steps; it is
     linear, so CG is the natural solver.)
   - last third, **latent space**: ``z0* = argmin_z ||y - A decode(z)||^2`` approximated by
     ``latent_iters`` steps of Adam (``torch.optim.Adam``, learning rate ``latent_lr``) started at
     ``z0_hat``. Adam is invariant to the scale of the loss, so no operator-norm normalisation is
     needed; its per-element state keeps the batch items independent. The paper uses AdamW with
     an early stop at the measurement-noise level; here the fixed iteration count is the only
     stop (for noisy data keep ``latent_iters`` small: it acts as the early stop; ``gamma_rel``
     applies to the pixel-space steps only).
   - **stochastic resampling** back to ``s'``: the paper draws ``z_{t-1}`` (VP latents, ``abar'`` of
     the target level, ``abar`` of the current one) from the product of ``N(sqrt(abar') z0*, (1 -
     abar') I)`` and ``N(z'_vp, v I)`` with ``v = gamma (1 - abar') / (1 - abar) (1 - abar / abar')``.
     With ``abar = 1 / (1 + s^2)`` and ``z_vp = sqrt(abar') z``, dividing by ``sqrt(abar')`` turns
     the two factors into ``N(z0*, s'^2 I)`` and ``N(z', v / abar' I)``, and::

         v_sigma = v / abar' = gamma s'^2 (s^2 - s'^2) / s^2      (gamma times DDPM's posterior
                                                                     variance in sigma-space)
         z = (v_sigma z0* + s'^2 z') / (v_sigma + s'^2)  +  sqrt(v_sigma s'^2 / (v_sigma + s'^2)) n

     (:func:`resampling_weights`). Outside C, ``z = z'``.
4. ``callback(i, z0)`` after each step, with the step's **latent** estimate (``z0*`` on steps of C,
   ``z0_hat`` otherwise; decoding it for every step would cost a decoder call per step).
5. The final step (``s_{N-1}``): ``z0_hat = D(z, s_{N-1})``, one more latent-space solve (``z0*``,
   ``latent_iters`` Adam steps), ``x = decode(z0*)``, and then — unless ``final_cg`` is False —
   ``pixel_cg_iters`` CG iterations of the pixel-space problem above started at ``x``, whose
   result is returned (as DDS returns its data-consistent estimate: noiseless data are then fitted
   to CG precision; the paper returns ``decode(z0*)``, which ``final_cg=False`` gives).

Not implemented: the paper's optional "time travel" (extra unconditional steps before a
consistency solve; it would cost extra NFEs).

Cost per item: NFE = ``len(sigmas)`` latent-denoiser evaluations (each with a backward pass when
``dps_zeta_rel > 0``). Autoencoder calls are extra: one ``decode`` and one ``encode`` per pixel-space
step of C; ``latent_iters`` decodes with backward passes per latent-space step of C and at the end,
plus the final ``decode``; with DPS, one decode and backward per step. Each CG iteration applies
``A^H A`` once.

Complex (MR) operators: the latent prior models a **real** image ``r`` (``decode`` gives it), and the
complex image is ``x = e^{i phi} r`` with a fixed per-item phase ``phi``: ``phase="low_resolution"``
(default) takes the smooth phase of the k-space centre
(:func:`~medrecon.priors.denoiser.low_resolution_phase`), the convention the pixel samplers follow
through :class:`~medrecon.priors.denoiser.PhaseAlignedDenoiser`; ``phase="zero"`` takes ``phi = 0``
(the image is real-valued). Every data-consistency solve is then over real ``r`` with the operator
``r -> A(e^{i phi} r)``: the normal equations are ``Re(e^{-i phi} A^H A e^{i phi} r) = Re(e^{-i phi}
A^H y)``, the exact least-squares problem over real ``r``, so CG stays real and its result can be
re-encoded as it is. Unlike the pixel adapter, the part of the image off the phase ``phi`` (the
imaginary part of ``x e^{-i phi}``) is not modelled, so data whose phase differs from ``phi`` are
fitted only in that least-squares sense. The result is complex (``e^{i phi} r``) for a complex
operator and real otherwise, in the operator's precision; latents are kept in the autoencoder's
dtype. On real operators ``phase`` is ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from medrecon.errors import InputError
from medrecon.operators.base import LinearOperator, complex_dtype_of, real_dtype_of
from medrecon.operators.noise import as_generator_list
from medrecon.priors.denoiser import low_resolution_phase

from .consistency import CGDataConsistency, diffusion_noise
from .dps import likelihood_gradient

PHASES = ("low_resolution", "zero")


def resampling_weights(sigma: float, sigma_next: float, gamma: float) -> tuple[float, float]:
    """``(w, var)`` of ReSample's stochastic resampling from ``sigma`` to ``sigma_next`` in sigma-space:
    ``z = w z0* + (1 - w) z' + sqrt(var) n`` with ``v = gamma sigma_next^2 (sigma^2 - sigma_next^2) /
    sigma^2``, ``w = v / (v + sigma_next^2)``, ``var = v sigma_next^2 / (v + sigma_next^2)``."""
    v = gamma * sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2
    total = v + sigma_next**2
    return v / total, v * sigma_next**2 / total


def consistency_plan(n_steps: int, consistency_every: int) -> dict[int, str]:
    """The steps of C (the final step excluded) and their kind, ``"pixel"`` or ``"latent"``."""
    middle, last = math.ceil(n_steps / 3), math.ceil(2 * n_steps / 3)
    return {
        i: ("pixel" if i < last else "latent")
        for i in range(middle, n_steps - 1)
        if (i - middle) % consistency_every == 0
    }


class _PhasedRealOperator(LinearOperator):
    """``r -> A(e^{i phi} r)`` for real images ``r``: the operator the data-consistency solves of a real
    latent prior use on complex data. ``norm_sq`` is the complex operator's (an upper bound of
    this restriction's, and what keeps ``gamma_rel`` meaning the same as for the other samplers)."""

    def __init__(self, op: LinearOperator, phase: torch.Tensor) -> None:
        super().__init__(op.in_shape, op.out_shape, in_complex=False, out_complex=op.out_complex, batch_size=phase.shape[0])
        self.op = op
        self.register_buffer("rotation", torch.exp(1j * phase))

    @property
    def name(self) -> str:
        return f"{self.op.name} on real images"

    def _rot(self, t: torch.Tensor) -> torch.Tensor:
        return self.rotation.to(device=t.device, dtype=complex_dtype_of(t.real.dtype if t.is_complex() else t.dtype))

    def _forward(self, r):
        return self.op.forward(self._rot(r) * r.to(complex_dtype_of(r.dtype)))

    def _adjoint(self, y):
        return (self._rot(y).conj() * self.op.adjoint(y)).real

    def _normal(self, r):
        rot = self._rot(r)
        return (rot.conj() * self.op.normal(rot * r.to(complex_dtype_of(r.dtype)))).real

    def norm_sq(self, **kwargs) -> float:
        return self.op.norm_sq(**kwargs)


def _positive_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _positive_float(name: str, value, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (value >= 0 if allow_zero else value > 0):
        raise InputError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


def _check_sigmas(sigmas) -> list[float]:
    s = torch.as_tensor(sigmas, dtype=torch.float64)
    if s.ndim != 1 or s.numel() < 1:
        raise InputError(f"sigmas must be a 1-D sequence of at least one noise level, got shape {tuple(s.shape)}")
    if not bool(torch.all(torch.isfinite(s) & (s > 0))):
        raise InputError(f"sigmas must be finite and > 0, got min {float(s.min())}")
    if s.numel() > 1 and not bool(torch.all(s[1:] < s[:-1])):
        raise InputError("sigmas must decrease strictly")
    return s.tolist()


def _latent_dtype(latent_prior, fallback: torch.dtype) -> torch.dtype:
    module = getattr(latent_prior, "autoencoder", None)
    tensors = list(module.parameters()) + list(module.buffers()) if isinstance(module, torch.nn.Module) else []
    return next((t.dtype for t in tensors if t.is_floating_point()), fallback)


def _check_inputs(latent_prior, op, y) -> None:
    for attribute in ("encode", "decode", "denoiser", "downsampling", "latent_channels", "image_channels"):
        if not hasattr(latent_prior, attribute):
            raise InputError(f"resample needs a LatentPrior (encode/decode/denoiser), got {type(latent_prior).__name__}")
    if latent_prior.denoiser is None:
        raise InputError("resample: this LatentPrior has no latent denoiser (an autoencoder-only stage)")
    if not isinstance(op, LinearOperator):
        raise InputError(f"resample: op must be a medrecon LinearOperator, got {type(op).__name__}")
    if not isinstance(y, torch.Tensor) or y.ndim != len(op.out_shape) + 1 or tuple(y.shape[1:]) != op.out_shape:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise InputError(f"resample: y must have shape (B, {', '.join(map(str, op.out_shape))}), got {got}")
    if len(op.in_shape) != 3:
        raise InputError(f"resample: the operator's images must be (C, H, W), got {op.in_shape}")
    c, h, w = op.in_shape
    f = latent_prior.downsampling
    if c != latent_prior.image_channels or h % f or w % f:
        raise InputError(
            f"resample: the latent prior takes images ({latent_prior.image_channels}, H, W) with H, W divisible by {f}; "
            f"the operator's images are {op.in_shape}"
        )


@torch.no_grad()
def sample_resample(
    latent_prior,
    op,
    y: torch.Tensor,
    *,
    sigmas: torch.Tensor,
    generator,
    gamma: float = 40.0,
    consistency_every: int = 10,
    pixel_cg_iters: int = 20,
    latent_iters: int = 50,
    latent_lr: float = 1e-2,
    dps_zeta_rel: float = 0.0,
    gamma_rel: float | None = None,
    final_cg: bool = True,
    phase: str = "low_resolution",
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Reconstruct ``(B, *op.in_shape)`` images from ``y`` ``(B, *op.out_shape)`` (module docstring).

    Args:
        latent_prior: a :class:`~medrecon.priors.latent.LatentPrior` with a latent denoiser.
        op: the forward operator on image space (real CT or complex MR images ``(C, H, W)``).
        sigmas: decreasing noise levels of the latent diffusion (e.g. Karras sigmas); NFE = their number.
        generator: one ``torch.Generator`` per batch item.
        gamma: the resampling variance factor (paper: 40); larger trusts ``z0*`` more.
        consistency_every: the spacing of the consistency steps in the last two thirds (paper: 10).
        pixel_cg_iters: CG iterations of each pixel-space solve (and of the final polish).
        latent_iters: Adam steps of each latent-space solve.
        latent_lr: Adam's learning rate on the (unit-std) latents.
        dps_zeta_rel: the latent DPS step relative to ``1 / ||A||``; 0 (default) turns it off.
        gamma_rel: None for noiseless data; else the pixel-space solves are proximal with
            ``gamma = gamma_rel / ||A||^2`` (as DDS's noisy variant).
        final_cg: finish with the pixel-space solve from ``decode(z0*)`` (True) or return
            ``decode(z0*)`` itself (False, the paper).
        phase: complex operators only: ``"low_resolution"`` (the smooth phase of the data's
            k-space centre) or ``"zero"`` (a real-valued image).
        callback: ``callback(i, z0)`` after each step, with the latent estimate of step ``i``.
    """
    gamma = _positive_float("gamma", gamma)
    _positive_int("consistency_every", consistency_every, 1)
    _positive_int("pixel_cg_iters", pixel_cg_iters, 0)
    _positive_int("latent_iters", latent_iters, 0)
    latent_lr = _positive_float("latent_lr", latent_lr)
    dps_zeta_rel = _positive_float("dps_zeta_rel", dps_zeta_rel, allow_zero=True)
    if gamma_rel is not None:
        gamma_rel = _positive_float("gamma_rel", gamma_rel)
    if not isinstance(final_cg, bool):
        raise InputError(f"final_cg must be True or False, got {final_cg!r}")
    if phase not in PHASES:
        raise InputError(f"phase must be one of {PHASES}, got {phase!r}")
    _check_inputs(latent_prior, op, y)
    sigmas = _check_sigmas(sigmas)
    batch = y.shape[0]
    gens = as_generator_list(generator, batch)
    real = real_dtype_of(y.dtype)
    latent_dtype = _latent_dtype(latent_prior, real)

    if op.in_complex:
        if phase == "zero":
            phi = torch.zeros((batch, *op.in_shape), dtype=real, device=y.device)
        else:
            phi = low_resolution_phase(op, y).to(real)
        image_op = _PhasedRealOperator(op, phi)
    else:
        phi, image_op = None, op

    def decode(z: torch.Tensor) -> torch.Tensor:
        return latent_prior.decode(z).to(real)

    def encode(x: torch.Tensor) -> torch.Tensor:
        return latent_prior.encode(x.to(latent_dtype)).to(latent_dtype)

    consistency = CGDataConsistency(image_op, y, gamma_rel=gamma_rel) if pixel_cg_iters > 0 else None

    def pixel_solve(x_start: torch.Tensor) -> torch.Tensor:
        if consistency is None:
            return x_start
        return consistency(x_start, n_iter=pixel_cg_iters)

    def latent_solve(z_start: torch.Tensor) -> torch.Tensor:
        z = z_start.detach().clone().requires_grad_(True)
        optimiser = torch.optim.Adam([z], lr=latent_lr)
        for _ in range(latent_iters):
            with torch.enable_grad():
                residual = image_op(decode(z)) - y
                parts = torch.view_as_real(residual) if residual.is_complex() else residual
                # grad w.r.t. z only: no gradient accumulates on the autoencoder's parameters
                (z.grad,) = torch.autograd.grad(parts.square().sum(), z)
            optimiser.step()
        return z.detach()

    zeta = 0.0
    if dps_zeta_rel > 0:
        zeta = dps_zeta_rel / math.sqrt(op.norm_sq(device=y.device, dtype=real))
    plan = consistency_plan(len(sigmas), consistency_every)
    f = latent_prior.downsampling
    latent_shape = (latent_prior.latent_channels, op.in_shape[-2] // f, op.in_shape[-1] // f)
    z = sigmas[0] * diffusion_noise(torch.zeros((batch, *latent_shape), dtype=latent_dtype, device=y.device), gens)
    last = len(sigmas) - 1
    for i, sigma in enumerate(sigmas):
        if i < last and zeta > 0:
            z0_hat, grad = likelihood_gradient(latent_prior.denoiser, lambda v: image_op(decode(v)), y, z, sigma, None)
        else:
            z0_hat, grad = latent_prior.denoiser(z, sigma), None
        if i == last:
            z0 = latent_solve(z0_hat) if latent_iters else z0_hat
            if callback is not None:
                callback(i, z0)
            x = decode(z0)
            if final_cg:
                x = pixel_solve(x)
            break
        nxt = sigmas[i + 1]
        z_next = z0_hat + (nxt / sigma) * (z - z0_hat)
        if grad is not None:
            z_next = z_next - zeta * grad
        kind = plan.get(i)
        z0 = z0_hat
        if kind == "pixel":
            z0 = encode(pixel_solve(decode(z0_hat)))
        elif kind == "latent" and latent_iters:
            z0 = latent_solve(z0_hat)
        if kind is not None:
            w, var = resampling_weights(sigma, nxt, gamma)
            z_next = w * z0 + (1 - w) * z_next + math.sqrt(var) * diffusion_noise(z_next, gens)
        if callback is not None:
            callback(i, z0)
        z = z_next
    if phi is not None:
        return torch.exp(1j * phi) * x.to(complex_dtype_of(real))
    return x


__all__ = ["PHASES", "consistency_plan", "resampling_weights", "sample_resample"]
