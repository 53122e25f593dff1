"""The prior as a denoiser in sigma-space, and the adapters that turn networks into one.

Every sampler sees a :class:`Denoiser` ``D(x, sigma) -> E[x0 | x]`` for ``x = x0 + sigma * n``,
``n ~ N(0, I)``, on images in the prior's normalised units, ``x`` ``(B, C, H, W)`` and ``sigma`` a
number or one value per item ``(B,)``. Samplers never look inside a checkpoint: adapters turn the
common parameterisations into ``D``:

- :class:`VPEpsilonDenoiser`: epsilon prediction with a discrete variance-preserving schedule
  (``alphas_cumprod``, DDPM/DDIM; Ho et al. 2020), optionally with learned-variance outputs whose
  second half of channels is dropped (Nichol & Dhariwal 2021). ``x_t = sqrt(abar) x`` with
  ``abar = 1 / (1 + sigma^2)``; ``D = x - sigma * eps``.
- :class:`VPVPredictionDenoiser`: v-prediction (Salimans & Ho 2022), ``x0 = sqrt(abar) x_t -
  sqrt(1 - abar) v``.
- :class:`VEScoreDenoiser`: a variance-exploding score model ``s(x, sigma)`` (Song et al. 2021),
  ``D = x + sigma^2 s`` (Tweedie's formula), its noise levels clamped to the trained range.
- :class:`EDMDenoiser`: EDM preconditioning (Karras et al. 2022), ``D = c_skip x + c_out
  F(c_in x, c_noise)``.
- :class:`GaussianDenoiser`: the exact denoiser of a Gaussian image distribution, the analytic
  prior the samplers are tested against.

Complex MR images (docs/priors.md, "Adapters"): :class:`PhaseAlignedDenoiser` applies a real prior to
``Re(x e^{-i phi})`` with ``phi`` the smooth phase of the fully sampled k-space centre
(:func:`low_resolution_phase`), keeps ``Im(x e^{-i phi})`` and turns the result back;
:class:`TwoChannelDenoiser` feeds a two-channel (real, imaginary) prior. For complex images
``sigma`` is the standard deviation of the real and of the imaginary part.

Discrete schedules: a ``sigma`` between two table entries is given the fractional timestep found by
linear interpolation of ``log sigma`` over the table (diffusers' UNets embed float timesteps), and
is clamped to the table's range.
"""

from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from collections.abc import Callable

import torch
from torch import nn

from medrecon.errors import InputError, ShapeError


def sigma_tensor(sigma, x: torch.Tensor) -> torch.Tensor:
    """``sigma`` as a ``(B,)`` real tensor on ``x``'s device (checked: finite and positive).

    No host synchronisation on an accelerator (the samplers call this every step): a number is
    checked on the host and filled on the device; a tensor on a GPU is checked asynchronously
    (the error surfaces at the next synchronisation)."""
    real = x.real.dtype if x.is_complex() else x.dtype
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        if not (math.isfinite(sigma) and sigma > 0):
            raise InputError("sigma must be finite and > 0")
        return torch.full((x.shape[0],), float(sigma), dtype=real, device=x.device)
    s = torch.as_tensor(sigma, dtype=real, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ShapeError(f"sigma must be a number or one value per item ({x.shape[0]}), got shape {tuple(s.shape)}")
    valid = torch.all(torch.isfinite(s) & (s > 0))
    if s.device.type == "cpu":
        if not bool(valid):
            raise InputError("sigma must be finite and > 0")
    else:
        torch._assert_async(valid, "sigma must be finite and > 0")
    return s


def _per_item(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def call_network(net: Callable, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    """``net(x, condition)``, unwrapping diffusers' output objects (``.sample``)."""
    out = net(x, condition)
    return out.sample if hasattr(out, "sample") else out


class Denoiser(nn.Module, metaclass=ABCMeta):
    """``D(x, sigma) -> E[x0 | x]`` for ``x = x0 + sigma n``; ``x`` ``(B, C, H, W)``, sigma number or ``(B,)``."""

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"{type(self).__name__}: expected images (B, C, H, W), got {got}")
        return self.denoise(x, sigma_tensor(sigma, x))

    @abstractmethod
    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The checked call: ``sigma`` is a ``(B,)`` tensor."""


class GaussianDenoiser(Denoiser):
    """Exact ``E[x0 | x]`` for ``x0 ~ N(mean, std^2 I)``: ``mean + std^2 / (std^2 + sigma^2) (x - mean)``.

    ``mean`` is a number or a ``(C, H, W)`` tensor, ``std`` a positive number or ``(C, H, W)``
    tensor (a diagonal covariance). The posterior of a linear-Gaussian inverse problem under this
    prior is known in closed form, which is what the sampler tests use.
    """

    def __init__(self, mean=0.0, std=1.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float64))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float64))
        if not bool(torch.all(self.std > 0)):
            raise InputError("GaussianDenoiser: std must be > 0")

    def denoise(self, x, sigma):
        mean = self.mean.to(device=x.device, dtype=x.dtype)
        var = (self.std**2).to(device=x.device, dtype=x.real.dtype if x.is_complex() else x.dtype)
        gain = var / (var + _per_item(sigma, x) ** 2)
        return mean + gain * (x - mean)


class DiscreteVPSchedule:
    """A discrete VP schedule: ``alphas_cumprod`` ``(T,)`` and the sigma of each step."""

    def __init__(self, alphas_cumprod) -> None:
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64).flatten()
        if abar.numel() < 2 or not bool(torch.all((abar > 0) & (abar < 1))):
            raise InputError("alphas_cumprod must hold at least 2 values in (0, 1)")
        sigmas = torch.sqrt((1 - abar) / abar)
        if not bool(torch.all(sigmas[1:] > sigmas[:-1])):
            raise InputError("alphas_cumprod must decrease with the timestep (sigma increasing)")
        self.alphas_cumprod = abar
        self.sigmas = sigmas
        self._log_tables: dict[torch.device, torch.Tensor] = {}

    def _log_table(self, device: torch.device) -> torch.Tensor:
        """``log sigmas`` on ``device``, copied there once (no host-to-device copy per step)."""
        if device not in self._log_tables:
            self._log_tables[device] = torch.log(self.sigmas).to(device)
        return self._log_tables[device]

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional timestep of each sigma (log-sigma interpolation, clamped to the table)."""
        log_table = self._log_table(sigma.device)
        log_s = torch.log(sigma.to(torch.float64)).clamp(log_table[0], log_table[-1])
        upper = torch.searchsorted(log_table, log_s).clamp(1, log_table.numel() - 1)
        lo, hi = log_table[upper - 1], log_table[upper]
        frac = (log_s - lo) / (hi - lo)
        return (upper - 1).to(torch.float64) + frac

    @classmethod
    def linear(cls, n_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> DiscreteVPSchedule:
        """DDPM's linear beta schedule (Ho et al. 2020)."""
        betas = torch.linspace(beta_start, beta_end, n_steps, dtype=torch.float64)
        return cls(torch.cumprod(1 - betas, 0))


class _VPDenoiser(Denoiser):
    def __init__(self, net: Callable, schedule: DiscreteVPSchedule, *, learned_variance: bool = False) -> None:
        super().__init__()
        self.net = net
        self.schedule = schedule
        self.learned_variance = learned_variance

    def _predict(self, x, sigma):
        abar = 1.0 / (1.0 + sigma.to(torch.float64) ** 2)
        x_t = x * _per_item(torch.sqrt(abar).to(x.dtype), x)
        t = self.schedule.timestep(sigma).to(x.dtype)
        out = call_network(self.net, x_t, t)
        if self.learned_variance:
            if out.shape[1] != 2 * x.shape[1]:
                raise ShapeError(
                    f"learned-variance network should give {2 * x.shape[1]} channels, gave {out.shape[1]}"
                )
            out = out[:, : x.shape[1]]
        return out, x_t, abar


class VPEpsilonDenoiser(_VPDenoiser):
    """Epsilon prediction on a discrete VP schedule: ``D(x, sigma) = x - sigma * eps(sqrt(abar) x, t)``."""

    def denoise(self, x, sigma):
        eps, _, _ = self._predict(x, sigma)
        return x - _per_item(sigma, x) * eps


class VPVPredictionDenoiser(_VPDenoiser):
    """v-prediction on a discrete VP schedule: ``x0 = sqrt(abar) x_t - sqrt(1 - abar) v``."""

    def denoise(self, x, sigma):
        v, x_t, abar = self._predict(x, sigma)
        a = _per_item(torch.sqrt(abar).to(x.dtype), x)
        b = _per_item(torch.sqrt(1 - abar).to(x.dtype), x)
        return a * x_t - b * v


class VEScoreDenoiser(Denoiser):
    """A VE score model ``s(x, c(sigma))`` (``c`` = identity by default, e.g. ``torch.log``):
    ``D = x + sigma^2 s`` (Tweedie's formula).

    ``sigma_range`` ``(sigma_min, sigma_max)``: the noise levels the model was trained on (a
    converted prior's card). Outside them the network is asked at the nearest trained level
    ``sigma_c`` and its noise estimate ``-sigma_c s(x, sigma_c)`` is scaled to the asked ``sigma``,
    ``D = x + sigma sigma_c s(x, sigma_c)``, as the VP adapters clamp their timestep (a sampler whose
    schedule reaches below ``sigma_min``, such as DDS's Karras steps to 0.002, then never feeds the
    network a noise level it has not seen); inside them this is Tweedie's formula exactly."""

    def __init__(self, net: Callable, *, conditioning: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 sigma_range: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.net = net
        self.conditioning = conditioning or (lambda s: s)
        if sigma_range is not None and not 0 < float(sigma_range[0]) < float(sigma_range[1]):
            raise InputError(f"VEScoreDenoiser: sigma_range must be 0 < min < max, got {sigma_range}")
        self.sigma_range = None if sigma_range is None else (float(sigma_range[0]), float(sigma_range[1]))

    def denoise(self, x, sigma):
        trained = sigma if self.sigma_range is None else sigma.clamp(*self.sigma_range)
        score = call_network(self.net, x, self.conditioning(trained).to(x.dtype))
        return x + _per_item(sigma * trained, x) * score


class EDMDenoiser(Denoiser):
    """EDM preconditioning (Karras et al. 2022): ``D = c_skip x + c_out F(c_in x, ln(sigma) / 4)``,
    ``c_skip = sd^2 / (s^2 + sd^2)``, ``c_out = s sd / sqrt(s^2 + sd^2)``, ``c_in = 1 / sqrt(s^2 + sd^2)``."""

    def __init__(self, net: Callable, *, sigma_data: float = 0.5) -> None:
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)

    def coefficients(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / torch.sqrt(sigma**2 + sd2)
        c_in = 1 / torch.sqrt(sigma**2 + sd2)
        c_noise = torch.log(sigma) / 4
        return c_skip, c_out, c_in, c_noise

    def denoise(self, x, sigma):
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        f = call_network(self.net, _per_item(c_in, x) * x, c_noise)
        return _per_item(c_skip, x) * x + _per_item(c_out, x) * f


class PhaseAlignedDenoiser(Denoiser):
    """A real prior on complex images: ``e^{i phi} (D(Re(x e^{-i phi})) + i s Im(x e^{-i phi}))``.

    ``phase`` ``(B, 1, H, W)`` (radians) is the smooth phase of the batch (:func:`low_resolution_phase`);
    build one adapter per batch. The phase-aligned imaginary part is what the smooth phase does not
    explain; it is modelled as ``N(0, imag_std^2)`` per pixel, whose exact denoiser is the shrinkage
    ``s = imag_std^2 / (imag_std^2 + sigma^2)``: at high noise it removes the diffusion noise there
    (which data consistency alone never reaches outside the sampled k-space), at low noise it keeps
    the part (data consistency owns it). ``imag_std`` is in the prior's units (images in [0, 1]); the
    default 0.003 is the MR presets' value, tuned on training slices (docs/samplers.md): a wider one
    (0.05) lets noise into the imaginary part and costs noisy-data SSIM.
    """

    def __init__(self, real_denoiser: Denoiser, phase: torch.Tensor, *, imag_std: float = 0.003) -> None:
        super().__init__()
        if not imag_std >= 0:
            raise ShapeError(f"imag_std must be >= 0, got {imag_std}")
        self.real_denoiser = real_denoiser
        self.phase = phase
        self.imag_std = float(imag_std)

    def denoise(self, x, sigma):
        if not x.is_complex():
            raise ShapeError(f"PhaseAlignedDenoiser takes complex images, got {x.dtype}")
        if self.phase.shape[0] != x.shape[0] or self.phase.shape[-2:] != x.shape[-2:]:
            raise ShapeError(f"phase {tuple(self.phase.shape)} does not fit images {tuple(x.shape)}")
        rotation = torch.exp(1j * self.phase.to(device=x.device, dtype=x.real.dtype))
        aligned = x * rotation.conj()
        real = self.real_denoiser.denoise(aligned.real, sigma)
        shrink = self.imag_std**2 / (self.imag_std**2 + _per_item(sigma, x).to(x.real.dtype) ** 2)
        return torch.complex(real, shrink * aligned.imag) * rotation


class TwoChannelDenoiser(Denoiser):
    """A two-channel (real, imaginary) prior on complex images ``(B, 1, H, W)``."""

    def __init__(self, real_denoiser: Denoiser) -> None:
        super().__init__()
        self.real_denoiser = real_denoiser

    def denoise(self, x, sigma):
        if not x.is_complex() or x.shape[1] != 1:
            raise ShapeError(f"TwoChannelDenoiser takes complex images (B, 1, H, W), got {tuple(x.shape)} {x.dtype}")
        out = self.real_denoiser.denoise(torch.cat([x.real, x.imag], dim=1), sigma)
        return torch.complex(out[:, :1], out[:, 1:])


def low_resolution_phase(op, y: torch.Tensor, *, width: int = 24) -> torch.Tensor:
    """Smooth phase ``(B, 1, H, W)`` of MR data: the angle of ``A^H`` applied to the central
    ``width x width`` block of the k-space (fully sampled in Cartesian protocols), tapered by a
    Hann window so the low-resolution image has no ringing. Non-Cartesian operators give their own
    window (``op.kspace_window``: a radial Hann taper times the density weights)."""
    if hasattr(op, "kspace_window"):
        return torch.angle(op.adjoint(y * op.kspace_window(width, device=y.device, dtype=y.real.dtype)))
    h, w = y.shape[-2:]
    window = torch.zeros(h, w, dtype=y.real.dtype, device=y.device)
    half = min(width, min(h, w) - 1) // 2  # small images: the widest block that fits
    taper = torch.hann_window(2 * half + 1, periodic=False, dtype=y.real.dtype, device=y.device)
    window[h // 2 - half : h // 2 + half + 1, w // 2 - half : w // 2 + half + 1] = taper[:, None] * taper[None, :]
    return torch.angle(op.adjoint(y * window))


__all__ = [
    "Denoiser",
    "GaussianDenoiser",
    "DiscreteVPSchedule",
    "VPEpsilonDenoiser",
    "VPVPredictionDenoiser",
    "VEScoreDenoiser",
    "EDMDenoiser",
    "PhaseAlignedDenoiser",
    "TwoChannelDenoiser",
    "low_resolution_phase",
    "sigma_tensor",
    "call_network",
]
