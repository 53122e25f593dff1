"""Latent priors (ReSample): an autoencoder plus a denoiser in its scaled latent space.

- :class:`LatentPrior` wraps a diffusers ``AutoencoderKL`` and a :class:`~medrecon.priors.denoiser.Denoiser`
  acting on latents. ``encode(x) -> z`` is the **posterior mean** of the encoder times
  ``scaling_factor`` (deterministic; no sampling), ``decode(z) -> x`` decodes ``z / scaling_factor``.
  Both are plain differentiable torch functions (ReSample's latent steps take gradients through
  ``decode``; nothing here switches gradients off).
- ``scaling_factor`` (:func:`latent_scaling_factor`) is ``1 / std`` of the posterior means of all
  training slices (unaugmented, uncropped; one scalar std over every latent element), so the
  scaled latents have unit standard deviation on the training data (as in Rombach et al.). The
  latent denoiser is an EDM denoiser in sigma-space on these scaled latents (``sigma_data`` 1.0
  by default on the command line, since the latents have unit std).
- Shapes: ``x`` ``(B, C, H, W)`` normalised images; ``z`` ``(B, latent_channels, H / f, W / f)`` with
  ``f = downsampling = 2 ** (len(block_out_channels) - 1)``.
- :class:`LatentSlices` is the training set of the latent denoiser: every training slice encoded
  once (no augmentation in latent space, no augmentation before encoding), with the
  ``TrainingSlices`` interface the training loop (:mod:`medrecon.priors.training.loop`) uses.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from medrecon.errors import InputError, ShapeError

from .denoiser import Denoiser


def _autoencoder_downsampling(autoencoder) -> int:
    return 2 ** (len(autoencoder.config.block_out_channels) - 1)


class LatentPrior(nn.Module):
    """``encode``/``decode`` between normalised images and scaled latents, and ``denoiser`` on latents."""

    def __init__(self, autoencoder: nn.Module, scaling_factor: float, denoiser: Denoiser | None = None) -> None:
        super().__init__()
        scaling_factor = float(scaling_factor)
        if not scaling_factor > 0:
            raise InputError(f"scaling_factor must be positive, got {scaling_factor}")
        self.autoencoder = autoencoder
        self.scaling_factor = scaling_factor
        self.denoiser = denoiser

    @property
    def latent_channels(self) -> int:
        return int(self.autoencoder.config.latent_channels)

    @property
    def downsampling(self) -> int:
        return _autoencoder_downsampling(self.autoencoder)

    @property
    def image_channels(self) -> int:
        return int(self.autoencoder.config.in_channels)

    def latent_info(self) -> dict:
        """The card's ``latent`` entry."""
        return {"scaling_factor": self.scaling_factor, "latent_channels": self.latent_channels, "downsampling": self.downsampling}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, latent_channels, H/f, W/f)``: posterior mean times ``scaling_factor``."""
        f = self.downsampling
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.image_channels or x.shape[-1] % f or x.shape[-2] % f:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"encode: expected images (B, {self.image_channels}, H, W) with H, W divisible by {f}, got {got}")
        return self.autoencoder.encode(x).latent_dist.mean * self.scaling_factor

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent_channels, h, w)`` -> ``(B, C, h f, w f)``."""
        if not isinstance(z, torch.Tensor) or z.ndim != 4 or z.shape[1] != self.latent_channels:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ShapeError(f"decode: expected latents (B, {self.latent_channels}, h, w), got {got}")
        return self.autoencoder.decode(z / self.scaling_factor).sample

    def denoise(self, z: torch.Tensor, sigma) -> torch.Tensor:
        """``D(z, sigma)`` on scaled latents."""
        if self.denoiser is None:
            raise InputError("this LatentPrior has no latent denoiser (an autoencoder-only stage)")
        return self.denoiser(z, sigma)


@torch.no_grad()
def encode_means(autoencoder: nn.Module, images: torch.Tensor, *, batch_size: int = 32) -> torch.Tensor:
    """Unscaled posterior means of ``images`` ``(N, C, H, W)``, in batches (CPU float32 result)."""
    param = next(autoencoder.parameters())
    was_training = autoencoder.training
    autoencoder.eval()
    try:
        out = [
            autoencoder.encode(images[i : i + batch_size].to(param.device, param.dtype)).latent_dist.mean.float().cpu()
            for i in range(0, images.shape[0], batch_size)
        ]
    finally:
        autoencoder.train(was_training)
    return torch.cat(out)


def latent_scaling_factor(autoencoder: nn.Module, images: torch.Tensor) -> float:
    """``1 / std`` of the posterior means of ``images`` (all elements together)."""
    std = float(encode_means(autoencoder, images).std())
    if not std > 0:
        raise InputError(f"the latents of the training slices have std {std}; cannot scale them")
    return 1.0 / std


class LatentSlices:
    """Scaled latents ``(N, latent_channels, h, w)`` of training slices, encoded once, with the
    interface of :class:`~medrecon.priors.training.data.TrainingSlices` that the training loop uses.
    ``batch`` draws nothing from the generator: no augmentation in latent space."""

    crop_size = None

    def __init__(self, latents: torch.Tensor, *, description: dict, latent: dict) -> None:
        if latents.ndim != 4 or latents.shape[0] < 1:
            raise InputError(f"latents must be (N >= 1, C, h, w), got {tuple(latents.shape)}")
        self.latents = latents.to(torch.float32).contiguous()
        self._description = dict(description)
        self.latent = dict(latent)

    @classmethod
    def from_slices(cls, prior: LatentPrior, slices, *, batch_size: int = 32) -> LatentSlices:
        """Encode every slice of a ``TrainingSlices`` (unaugmented, whole slices) with ``prior.encode``."""
        latents = encode_means(prior.autoencoder, slices.images, batch_size=batch_size) * prior.scaling_factor
        described = dict(slices.describe())
        described["augmentation"] = {"latent_space": "none", "images_before_encoding": "none"}
        return cls(latents, description=described, latent=prior.latent_info())

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.latents[index]

    @property
    def size(self) -> int:
        return int(self.latents.shape[-1])

    def describe(self) -> dict:
        return dict(self._description, latent=dict(self.latent, latent_size=self.size, latents=len(self)))

    def to(self, device) -> LatentSlices:
        self.latents = self.latents.to(device)
        return self

    def fingerprint(self) -> str:
        return hashlib.sha256(self.latents.detach().cpu().contiguous().numpy().tobytes()).hexdigest()

    def batch(self, indices, generator: torch.Generator | None = None, *, crop_size=None) -> torch.Tensor:
        if crop_size not in (None, "dataset") and int(crop_size) != self.size:
            raise InputError("latent slices are not cropped (crop_size must be None)")
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.latents[idx.to(self.latents.device)].contiguous()


__all__ = ["LatentPrior", "LatentSlices", "encode_means", "latent_scaling_factor"]
