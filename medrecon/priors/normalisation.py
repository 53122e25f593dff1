"""How images in study units map to a prior's ``[0, 1]``, and how slices are brought to a prior's size.

What the runtime shares with training (reconstruction, evaluation, the benchmarks and the training
data all normalise and resample the same way):

- :class:`Normalisation` (stated on a prior's card, one of :data:`KINDS`): CT
  ``clip((HU + 1000) / 3000, 0, 1)`` (:data:`CT_WINDOW`, the starter priors); MR
  ``clip(magnitude / p99.5(volume), 0, 1)`` (:data:`MR_PERCENTILE`) with the percentile taken over
  the whole volume; and the published priors' own: the volume's min-max (Song et al.'s LIDC-IDRI),
  its clip to mean +- k std then min-max (Song et al.'s BraTS), each slice's magnitude min-max
  (score-MRI's fastMRI knee), or a scaling the authors do not state (``user-choice``: the user
  must choose one, e.g. a CT window with :meth:`Normalisation.with_window`).
- :func:`resample_slices`: each slice ``(S, H, W)`` scaled so that its shorter side is ``size``
  (bilinear with antialiasing, ``torch.nn.functional.interpolate``) and centre-cropped to
  ``(S, 1, size, size)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medrecon.errors import InputError

CT_WINDOW = (-1000.0, 2000.0)
MR_PERCENTILE = 99.5


KINDS = ("hu-window", "volume-percentile", "volume-minmax", "volume-clip-minmax", "slice-minmax", "user-choice")
"""The normalisations a card may state (:class:`Normalisation`)."""


@dataclass(frozen=True)
class Normalisation:
    """How native units map to the prior's ``[0, 1]`` (``kind``, one of :data:`KINDS`):

    - ``hu-window``: ``clip((v - low) / (high - low), 0, 1)`` (CT, HU);
    - ``volume-percentile``: ``clip(|v| / percentile_q(|volume|), 0, 1)`` (MR magnitude);
    - ``volume-minmax``: ``(v - min) / (max - min)`` over the volume (magnitudes for complex data);
      a CT volume's map is the HU window ``[min, max]`` of that volume (:meth:`window_for`);
    - ``volume-clip-minmax``: in the bounding box of the voxels above the volume's minimum (the
      reference's box: start inclusive, end exclusive), clip to ``mean +- clip_std std`` of the box
      (within its range), then min-max over the box; voxels outside the box are 0;
    - ``slice-minmax``: ``(|v| - min) / (max - min)`` of each slice's magnitude (first axis);
    - ``user-choice``: the authors do not state how their images were brought to ``[0, 1]`` (their
      data files are already scaled): nothing is applied until the user chooses a normalisation
      (for CT a window: :meth:`with_window` gives the ``hu-window``).

    ``note``: what the authors' code shows, for the reader (ignored by the maps).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    percentile: float | None = None
    clip_std: float | None = None
    note: str | None = None

    def __post_init__(self):
        if self.kind == "hu-window":
            if self.low is None or self.high is None or not self.high > self.low:
                raise InputError(f"hu-window normalisation needs low < high, got {self.low}, {self.high}")
        elif self.kind == "volume-percentile":
            if self.percentile is None or not 0 < self.percentile <= 100:
                raise InputError(f"volume-percentile normalisation needs 0 < percentile <= 100, got {self.percentile}")
        elif self.kind == "volume-clip-minmax":
            if self.clip_std is None or not self.clip_std > 0:
                raise InputError(f"volume-clip-minmax normalisation needs clip_std > 0, got {self.clip_std}")
        elif self.kind not in KINDS:
            raise InputError(f"normalisation kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        extra = {"low": self.low, "high": self.high} if self.kind != "hu-window" else {}
        extra.update({"percentile": self.percentile} if self.kind != "volume-percentile" else {})
        extra.update({"clip_std": self.clip_std} if self.kind != "volume-clip-minmax" else {})
        given = sorted(k for k, v in extra.items() if v is not None)
        if given:
            raise InputError(f"{self.kind} normalisation takes no {', '.join(given)}")

    @classmethod
    def for_modality(cls, modality: str) -> Normalisation:
        m = str(modality).upper()
        if m == "CT":
            return cls("hu-window", low=CT_WINDOW[0], high=CT_WINDOW[1])
        if m == "MR":
            return cls("volume-percentile", percentile=MR_PERCENTILE)
        raise InputError(f"modality must be 'CT' or 'MR', got {modality!r}")

    def with_window(self, low: float, high: float) -> Normalisation:
        """The ``hu-window`` the user chose for a ``user-choice`` (or any CT) card."""
        return Normalisation("hu-window", low=float(low), high=float(high), note=self.note)

    def window_for(self, voxels: torch.Tensor) -> tuple[float, float] | None:
        """The HU window ``(low, high)`` that this normalisation is on the CT volume ``voxels``
        (``hu-window``: its own; ``volume-minmax``: the volume's range), None where it is not a
        linear map of HU (``user-choice`` included: nothing has been chosen)."""
        if self.kind == "hu-window":
            return float(self.low), float(self.high)
        if self.kind == "volume-minmax":
            v = voxels.abs() if voxels.is_complex() else voxels
            low, high = float(v.min()), float(v.max())
            if not (math.isfinite(low) and math.isfinite(high) and high > low):
                raise InputError(f"the volume spans [{low}, {high}]: it cannot be min-max normalised")
            return low, high
        return None

    def apply(self, voxels: torch.Tensor) -> torch.Tensor:
        """Normalise a volume ``(S, H, W)`` (or any tensor) of native units to ``[0, 1]`` float32."""
        v = voxels.abs() if voxels.is_complex() else voxels
        v = v.to(torch.float32)
        if self.kind == "user-choice":
            raise InputError("this prior's card does not state how its images were scaled to [0, 1] (user-choice: "
                             f"{self.note or 'not stated by the authors'}); choose a normalisation, e.g. a CT window")
        if self.kind in ("hu-window", "volume-minmax"):
            low, high = self.window_for(v)
            return ((v - low) / (high - low)).clamp(0, 1)
        if self.kind == "volume-clip-minmax":
            return _clip_min_max(v.to(torch.float64), float(self.clip_std)).to(torch.float32)
        if self.kind == "slice-minmax":
            mag = v.abs().reshape(v.shape[0], -1) if v.ndim > 1 else v.abs()[None]
            low, high = mag.min(dim=1, keepdim=True).values, mag.max(dim=1, keepdim=True).values
            if bool((high <= low).any()):
                raise InputError("a slice is constant: it cannot be min-max normalised")
            return ((mag - low) / (high - low)).reshape(v.shape).clamp(0, 1)
        mag = v.abs()
        scale = float(np.percentile(mag.detach().cpu().numpy(), self.percentile))
        if not math.isfinite(scale) or scale <= 0:
            raise InputError(f"MR volume has p{self.percentile} = {scale}; cannot normalise (empty volume?)")
        return (mag / scale).clamp(0, 1)

    def same_map(self, other: Normalisation) -> bool:
        """Whether ``other`` maps native units the same way (notes aside)."""
        return dataclasses.replace(self, note=None) == dataclasses.replace(other, note=None)

    def describe(self) -> str:
        """One line for messages: the kind and its parameters."""
        params = {k: v for k, v in self.to_dict().items() if k not in ("kind", "note")}
        return self.kind + (f" ({', '.join(f'{k} {v:g}' for k, v in params.items())})" if params else "")

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> Normalisation:
        try:
            return cls(**d)
        except TypeError as exc:
            raise InputError(f"bad normalisation: {exc}") from None


def _clip_min_max(v: torch.Tensor, k: float) -> torch.Tensor:
    """``volume-clip-minmax`` of a volume ``(S, H, W)`` (see :class:`Normalisation`)."""
    if v.ndim != 3:
        raise InputError(f"volume-clip-minmax normalises a volume (S, H, W), got {tuple(v.shape)}")
    inside = (v - v.min()) != 0
    if not bool(inside.any()):
        raise InputError("the volume is constant: it cannot be min-max normalised")
    box = tuple(slice(int(idx.min()), int(idx.max())) for idx in inside.nonzero().unbind(1))  # end exclusive, as the reference
    crop = v[box]
    if crop.numel() == 0:
        raise InputError("the volume's bounding box is empty (one voxel thick): it cannot be min-max normalised")
    mean, std = crop.mean(), crop.std(unbiased=False)
    crop = crop.clamp(max(float(mean - k * std), float(crop.min())), min(float(mean + k * std), float(crop.max())))
    crop = crop - crop.min()
    if not float(crop.max()) > 0:
        raise InputError("the volume's box is constant after clipping: it cannot be min-max normalised")
    out = torch.zeros_like(v)
    out[box] = crop / crop.max()
    return out


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


__all__ = ["KINDS", "Normalisation", "resample_slices", "CT_WINDOW", "MR_PERCENTILE"]
