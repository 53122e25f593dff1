"""Intensity remappings of normalised images (``[0, 1]``): the contrast-shift check and augmentation.

A prior trained on a few patients of one contrast (the starter MR priors: T1-like scans) may not
transfer to another contrast (proton density, T2). Two uses share the maps defined here:

- **the contrast-shift check** of ``medrecon bench prior`` / ``bench recon``: validation slices
  under fixed remappings, :data:`SHIFTS`:

  - ``gamma0.5`` / ``gamma2``: ``x ** 0.5`` (dark tissue brighter) and ``x ** 2`` (darker);
  - ``invert``: the tissue contrast inverted, the background kept dark (``(1 - x) s(x)`` with
    ``s`` a ramp from 0 at ``x = 0.02`` to 1 at ``x = 0.08``), as a T1-like scan becomes T2-like
    (bright fluid, dark white matter) while air stays air;

- **intensity augmentation** in training (:func:`random_remap`): per image, with probability
  ``p_gamma`` a gamma drawn log-uniformly from ``gamma_range``, then with probability
  ``p_invert`` the inversion above. All draws come from the caller's generator.
"""

from __future__ import annotations

import math

import torch

from medrecon.errors import InputError

SHIFTS = ("gamma0.5", "gamma2", "invert")
_RAMP = (0.02, 0.08)


def invert_tissue(x: torch.Tensor) -> torch.Tensor:
    """``(1 - x) s(x)``: the tissue contrast inverted, the background (``x <= 0.02``) kept at 0."""
    ramp = ((x - _RAMP[0]) / (_RAMP[1] - _RAMP[0])).clamp(0, 1)
    return (1 - x) * ramp


def remap(images: torch.Tensor, shift: str) -> torch.Tensor:
    """The fixed remapping ``shift`` (one of :data:`SHIFTS`, or ``"none"``) of images in ``[0, 1]``."""
    x = images.clamp(0, 1)
    if shift == "none":
        return x
    if shift.startswith("gamma"):
        try:
            gamma = float(shift[len("gamma"):])
        except ValueError:
            gamma = float("nan")
        if not gamma > 0:
            raise InputError(f"contrast shift {shift!r}: gamma must be a positive number (e.g. gamma0.5)")
        return x**gamma
    if shift == "invert":
        return invert_tissue(x)
    raise InputError(f"unknown contrast shift {shift!r}; known: {', '.join(SHIFTS)} (or gammaG for any G > 0)")


def random_remap(images: torch.Tensor, generator: torch.Generator, *, p_gamma: float = 0.5,
                 gamma_range: tuple[float, float] = (0.5, 2.0), p_invert: float = 0.25) -> torch.Tensor:
    """Per-image random contrast of ``images`` ``(B, 1, H, W)`` in ``[0, 1]`` (see the module
    docstring). Three draws per image from ``generator`` (a CPU generator), whatever applies, so a
    batch depends only on the generator."""
    b = images.shape[0]
    use_gamma = torch.rand(b, generator=generator) < p_gamma
    lo, hi = math.log(gamma_range[0]), math.log(gamma_range[1])
    gammas = torch.exp(lo + (hi - lo) * torch.rand(b, generator=generator))
    invert = torch.rand(b, generator=generator) < p_invert
    dev = images.device
    exponent = torch.where(use_gamma, gammas, torch.ones_like(gammas)).to(dev, images.dtype)[:, None, None, None]
    x = images.clamp(0, 1) ** exponent
    return torch.where(invert.to(dev)[:, None, None, None], invert_tissue(x), x)


__all__ = ["SHIFTS", "invert_tissue", "random_remap", "remap"]
