"""Intensity remappings of normalised images (``[0, 1]``): the contrast-shift check and augmentation.

A prior trained on a few patients of one contrast (the starter MR priors: T1-like scans) may not
transfer to another contrast (proton density, T2, FLAIR). Two uses share the maps defined here:

- **the contrast-shift check** of ``medrecon bench prior`` / ``bench recon``: validation slices
  under fixed remappings, :data:`SHIFTS`, in two families:

  - monotone (:data:`MONOTONE_SHIFTS`): ``gamma0.5`` / ``gamma2``: ``x ** 0.5`` (dark tissue
    brighter) and ``x ** 2`` (darker); ``gammaG`` for any ``G > 0``;
  - non-monotone (:data:`NON_MONOTONE_SHIFTS`): ``invert``: the tissue contrast inverted, the
    background kept dark (``(1 - x) s(x)`` with ``s`` a ramp from 0 at ``x = 0.02`` to 1 at
    ``x = 0.08``), as a T1-like scan becomes T2-like (bright fluid, dark white matter) while air stays
    air; ``fold``: mid-grey becomes the brightest, both ends darker (``s(x) (1 - |x - 0.45| /
    0.55)``: grey matter brightest, white matter and fluid darker, as FLAIR-like contrasts go);

- **intensity augmentation** in training (:func:`random_remap`): per image, with probability
  ``p_gamma`` a gamma drawn log-uniformly from ``gamma_range``; with probability ``p_curve`` a random
  monotone piecewise-linear curve (:func:`random_monotone_curve`); with probability ``p_match`` the
  histogram of a random reference image (``references``: real slices of other MR contrasts) by
  quantile matching, a monotone map as well; then with probability ``p_invert`` the inversion
  above. All draws come from the caller's generator. A prior trained with ``p_invert = 0`` has seen
  monotone remaps only, so the non-monotone shifts test how it generalises to remaps it never saw.
"""

from __future__ import annotations

import math

import torch

from medrecon.errors import InputError

MONOTONE_SHIFTS = ("gamma0.5", "gamma2")
NON_MONOTONE_SHIFTS = ("invert", "fold")
SHIFTS = MONOTONE_SHIFTS + NON_MONOTONE_SHIFTS
_RAMP = (0.02, 0.08)
_FOLD_CENTRE = 0.45
CURVE_KNOTS = 3  # interior knots of a random monotone curve


def invert_tissue(x: torch.Tensor) -> torch.Tensor:
    """``(1 - x) s(x)``: the tissue contrast inverted, the background (``x <= 0.02``) kept at 0."""
    return (1 - x) * _background_ramp(x)


def _background_ramp(x: torch.Tensor) -> torch.Tensor:
    return ((x - _RAMP[0]) / (_RAMP[1] - _RAMP[0])).clamp(0, 1)


def fold_tissue(x: torch.Tensor) -> torch.Tensor:
    """``s(x) (1 - |x - 0.45| / 0.55)``: mid-grey brightest, both ends darker, the background at 0."""
    return _background_ramp(x) * (1 - (x - _FOLD_CENTRE).abs() / max(_FOLD_CENTRE, 1 - _FOLD_CENTRE))


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
    if shift == "fold":
        return fold_tissue(x)
    raise InputError(f"unknown contrast shift {shift!r}; known: {', '.join(SHIFTS)} (or gammaG for any G > 0)")


def random_monotone_curve(images: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``images`` ``(B, 1, H, W)`` in ``[0, 1]`` through one increasing piecewise-linear curve per
    image, fixed by ``u`` ``(B, 2 * CURVE_KNOTS + 1)`` uniform draws: knots at sorted ``x`` positions
    in (0.05, 0.95), sorted ``y`` values in (0, 1) scaled so the curve ends at ``y(1)`` in [0.7, 1];
    ``y(0) = 0`` keeps the background dark."""
    b, k = images.shape[0], CURVE_KNOTS
    dev, dtype = images.device, images.dtype
    xs = 0.05 + 0.9 * u[:, :k].sort(dim=1).values
    ys = u[:, k : 2 * k].sort(dim=1).values
    top = 0.7 + 0.3 * u[:, 2 * k : 2 * k + 1]
    knots_x = torch.cat([torch.zeros(b, 1), xs, torch.ones(b, 1)], 1).to(dev, dtype)
    knots_y = (torch.cat([torch.zeros(b, 1), ys, torch.ones(b, 1)], 1) * top).to(dev, dtype)
    flat = images.reshape(b, -1).clamp(0, 1).contiguous()
    seg = torch.searchsorted(knots_x[:, 1:-1].contiguous(), flat)  # 0 .. k: the segment of each value
    x0, x1 = knots_x.gather(1, seg), knots_x.gather(1, seg + 1)
    y0, y1 = knots_y.gather(1, seg), knots_y.gather(1, seg + 1)
    out = y0 + (y1 - y0) * (flat - x0) / (x1 - x0).clamp_min(1e-6)
    return out.reshape(images.shape)


def match_histogram(images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Each image ``(B, 1, H, W)`` given the histogram of its reference ``(B, 1, h, w)`` by quantile
    matching (the value of rank ``r`` becomes the reference's value at the same quantile): a
    monotone map onto a real image's intensity distribution."""
    b = images.shape[0]
    flat = images.reshape(b, -1)
    order = flat.argsort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand(b, -1))
    ref = references.reshape(b, -1).to(flat).sort(dim=1).values
    position = ranks.to(flat.dtype) * (ref.shape[1] - 1) / max(flat.shape[1] - 1, 1)
    low = position.floor().long()
    high = (low + 1).clamp_max(ref.shape[1] - 1)
    t = position - low
    return (ref.gather(1, low) * (1 - t) + ref.gather(1, high) * t).reshape(images.shape).clamp(0, 1)


def random_remap(images: torch.Tensor, generator: torch.Generator, *, p_gamma: float = 0.5,
                 gamma_range: tuple[float, float] = (0.5, 2.0), p_invert: float = 0.25, p_curve: float = 0.0,
                 p_match: float = 0.0, references: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image random contrast of ``images`` ``(B, 1, H, W)`` in ``[0, 1]`` (see the module
    docstring): gamma, then a monotone curve, then histogram matching to one of ``references``
    ``(R, 1, h, w)`` (needed when ``p_match > 0``), then the inversion. Three draws per image from
    ``generator`` (a CPU generator) for gamma and inversion, and with ``p_curve`` or ``p_match`` above
    0 another ``2 * CURVE_KNOTS + 4`` per image, whatever applies, so a batch depends only on the
    generator."""
    b = images.shape[0]
    use_gamma = torch.rand(b, generator=generator) < p_gamma
    lo, hi = math.log(gamma_range[0]), math.log(gamma_range[1])
    gammas = torch.exp(lo + (hi - lo) * torch.rand(b, generator=generator))
    invert = torch.rand(b, generator=generator) < p_invert
    dev = images.device
    exponent = torch.where(use_gamma, gammas, torch.ones_like(gammas)).to(dev, images.dtype)[:, None, None, None]
    x = images.clamp(0, 1) ** exponent
    if p_curve > 0 or p_match > 0:
        use_curve = torch.rand(b, generator=generator) < p_curve
        curve_draws = torch.rand(b, 2 * CURVE_KNOTS + 1, generator=generator)
        use_match = torch.rand(b, generator=generator) < p_match
        which = torch.rand(b, generator=generator)
        x = torch.where(use_curve.to(dev)[:, None, None, None], random_monotone_curve(x, curve_draws), x)
        if p_match > 0:
            if references is None or references.shape[0] < 1:
                raise InputError("histogram matching (p_match > 0) needs reference images")
            pick = (which * references.shape[0]).long().clamp_max(references.shape[0] - 1)
            matched = match_histogram(x, references[pick.to(references.device)].to(dev))
            x = torch.where(use_match.to(dev)[:, None, None, None], matched, x)
    return torch.where(invert.to(dev)[:, None, None, None], invert_tissue(x), x)


__all__ = ["CURVE_KNOTS", "MONOTONE_SHIFTS", "NON_MONOTONE_SHIFTS", "SHIFTS", "fold_tissue", "invert_tissue",
           "match_histogram", "random_monotone_curve", "random_remap", "remap"]
