"""How images in study units map to a prior's ``[0, 1]``, and how slices are brought to a prior's size.

What the runtime shares with training (reconstruction, evaluation, the benchmarks and the training
data all normalise and resample the same way):

- :class:`Normalisation` (stated on a prior's card): CT ``clip((HU + 1000) / 3000, 0, 1)``
  (:data:`CT_WINDOW`); MR ``clip(magnitude / p99.5(volume), 0, 1)`` (:data:`MR_PERCENTILE`) with
  the percentile taken over the whole volume.
- :func:`resample_slices`: each slice ``(S, H, W)`` scaled so that its shorter side is ``size``
  (bilinear with antialiasing, ``torch.nn.functional.interpolate``) and centre-cropped to
  ``(S, 1, size, size)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medrecon.errors import InputError

CT_WINDOW = (-1000.0, 2000.0)
MR_PERCENTILE = 99.5


@dataclass(frozen=True)
class Normalisation:
    """How native units map to the prior's ``[0, 1]``.

    ``kind == "hu-window"``: ``clip((v - low) / (high - low), 0, 1)`` (CT, HU).
    ``kind == "volume-percentile"``: ``clip(|v| / percentile_q(|volume|), 0, 1)`` (MR magnitude).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    percentile: float | None = None

    def __post_init__(self):
        if self.kind == "hu-window":
            if self.low is None or self.high is None or not self.high > self.low:
                raise InputError(f"hu-window normalisation needs low < high, got {self.low}, {self.high}")
        elif self.kind == "volume-percentile":
            if self.percentile is None or not 0 < self.percentile <= 100:
                raise InputError(f"volume-percentile normalisation needs 0 < percentile <= 100, got {self.percentile}")
        else:
            raise InputError(f"normalisation kind must be 'hu-window' or 'volume-percentile', got {self.kind!r}")

    @classmethod
    def for_modality(cls, modality: str) -> Normalisation:
        m = str(modality).upper()
        if m == "CT":
            return cls("hu-window", low=CT_WINDOW[0], high=CT_WINDOW[1])
        if m == "MR":
            return cls("volume-percentile", percentile=MR_PERCENTILE)
        raise InputError(f"modality must be 'CT' or 'MR', got {modality!r}")

    def apply(self, voxels: torch.Tensor) -> torch.Tensor:
        """Normalise a volume ``(S, H, W)`` (or any tensor) of native units to ``[0, 1]`` float32."""
        v = voxels.abs() if voxels.is_complex() else voxels
        v = v.to(torch.float32)
        if self.kind == "hu-window":
            return ((v - self.low) / (self.high - self.low)).clamp(0, 1)
        mag = v.abs()
        scale = float(np.percentile(mag.detach().cpu().numpy(), self.percentile))
        if not math.isfinite(scale) or scale <= 0:
            raise InputError(f"MR volume has p{self.percentile} = {scale}; cannot normalise (empty volume?)")
        return (mag / scale).clamp(0, 1)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> Normalisation:
        try:
            return cls(**d)
        except TypeError as exc:
            raise InputError(f"bad normalisation: {exc}") from None


def resample_slices(slices: torch.Tensor, size: int) -> torch.Tensor:
    """``(S, H, W)`` -> ``(S, 1, size, size)``: shorter side scaled to ``size`` (antialiased bilinear),
    the longer one centre-cropped."""
    if slices.ndim != 3:
        raise InputError(f"expected slices (S, H, W), got {tuple(slices.shape)}")
    size = int(size)
    if size < 8:
        raise InputError(f"size must be at least 8, got {size}")
    s, h, w = slices.shape
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = slices[:, None].to(torch.float32)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, :, top : top + size, left : left + size].contiguous()


__all__ = ["Normalisation", "resample_slices", "CT_WINDOW", "MR_PERCENTILE"]
