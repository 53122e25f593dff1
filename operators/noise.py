"""Measurement noise models, every draw from explicit per-item generators.

A ``generators`` argument is a sequence of B ``torch.Generator`` objects, one per batch item
(item i draws only from generator i, so results do not depend on how slices are batched); a single
generator is accepted when B = 1. Global RNG state is never used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medrecon.errors import InputError, ShapeError


def as_generator_list(generators, batch: int) -> list[torch.Generator]:
    """Check and normalise a generator argument to a list of ``batch`` generators."""
    if isinstance(generators, torch.Generator):
        generators = [generators]
    if not isinstance(generators, Sequence) or not all(isinstance(g, torch.Generator) for g in generators):
        raise InputError("generators must be a torch.Generator or a sequence of them, one per batch item")
    if len(generators) != batch:
        raise InputError(f"got {len(generators)} generator(s) for a batch of {batch}: pass one per batch item")
    return list(generators)


def randn_per_item(like: torch.Tensor, generators) -> torch.Tensor:
    """Standard normal noise shaped like ``like`` (complex: unit variance per complex value,
    1/2 per real and imaginary part), item i from generator i, on ``like``'s device and dtype."""
    gens = as_generator_list(generators, like.shape[0])
    real = like.real.dtype if like.is_complex() else like.dtype
    draws = []
    for gen, item in zip(gens, like):
        z = torch.randn(item.shape, generator=gen, dtype=real, device=gen.device)
        if like.is_complex():
            z2 = torch.randn(item.shape, generator=gen, dtype=real, device=gen.device)
            z = torch.complex(z, z2) / (2.0**0.5)
        draws.append(z)
    return torch.stack(draws).to(like.device)


def _per_item_scale(value, batch: int, ref: torch.Tensor, what: str) -> torch.Tensor:
    scale = torch.as_tensor(value, dtype=ref.real.dtype if ref.is_complex() else ref.dtype, device=ref.device)
    if scale.ndim == 0:
        scale = scale.expand(batch)
    if scale.shape != (batch,):
        raise ShapeError(f"{what} must be a number or one value per batch item ({batch}), got shape {tuple(scale.shape)}")
    if not bool(torch.all(torch.isfinite(scale) & (scale >= 0))):
        raise InputError(f"{what} must be finite and >= 0")
    return scale.reshape((batch,) + (1,) * (ref.ndim - 1))


def add_gaussian_noise(y: torch.Tensor, sigma, generators) -> torch.Tensor:
    """``y + sigma * z``: real Gaussian for real ``y``; circular complex Gaussian for complex ``y``,
    where ``sigma`` is the standard deviation of the complex value (``sigma / sqrt(2)`` per part).

    ``sigma`` is a number or a ``(B,)`` tensor (one per item).
    """
    scale = _per_item_scale(sigma, y.shape[0], y, "sigma")
    return y + scale * randn_per_item(y, generators)


def transmission_counts(sinogram: torch.Tensor, incident_photons, generators) -> torch.Tensor:
    """Poisson photon counts ``N ~ Poisson(I0 exp(-y))`` of a sinogram of line integrals ``y``.

    ``y`` is dimensionless (attenuation coefficient times length, e.g. 1/mm times mm);
    ``incident_photons`` I0 per detector element is a number or one per item.
    """
    if sinogram.is_complex():
        raise InputError("transmission_counts: a CT sinogram must be real")
    photons = _per_item_scale(incident_photons, sinogram.shape[0], sinogram, "incident_photons")
    rates = photons * torch.exp(-sinogram)
    gens = as_generator_list(generators, sinogram.shape[0])
    counts = [torch.poisson(r.to(g.device), generator=g) for g, r in zip(gens, rates)]
    return torch.stack(counts).to(sinogram.device)


def add_log_poisson_noise(sinogram: torch.Tensor, incident_photons, generators) -> torch.Tensor:
    """Log-Poisson sinogram ``-log(max(N, 1) / I0)`` with ``N`` from :func:`transmission_counts`.

    Zero counts (photon starvation) are clamped to one photon, the usual convention, so the result
    stays finite.
    """
    photons = _per_item_scale(incident_photons, sinogram.shape[0], sinogram, "incident_photons")
    counts = transmission_counts(sinogram, incident_photons, generators)
    return -torch.log(counts.clamp_min(1.0) / photons)


__all__ = [
    "as_generator_list",
    "randn_per_item",
    "add_gaussian_noise",
    "transmission_counts",
    "add_log_poisson_noise",
]
