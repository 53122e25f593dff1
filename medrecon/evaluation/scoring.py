"""Scoring a reconstruction against its reference, with the protocol named.

One function, :func:`score`, used by ``medrecon reconstruct`` (its record), ``medrecon evaluate``,
the benchmarks and ``medrecon reproduce``. Each protocol says what is compared and how:

- ``volume`` (the benchmarks' and the record's): images already in the prior's normalised units,
  magnitudes of complex images, clipped to [0, 1]; PSNR and NMSE over the whole stack, SSIM per
  slice averaged; data range 1.
- ``slice`` (Song et al.'s LIDC and BraTS tables): as ``volume`` but every metric per slice, their
  means in the row and the per-slice values kept (``Scores.per_slice``) for pooling over volumes.
- ``fastmri`` (the fastMRI evaluation, :func:`~medrecon.metrics.fastmri_metrics`): magnitudes in
  native units, NMSE and PSNR per volume, SSIM per slice averaged, data range the target volume's
  maximum, or ``data_range`` when given (a subset of a volume's slices is scored with the whole
  volume's maximum, which the subset alone does not hold).

:func:`score_studies` scores two :class:`~medrecon.study.Study` objects in native units under the
``window`` protocol (both normalised as the starter priors are: CT HU window [-1000, 2000] -> [0, 1];
MR magnitude / the reference volume's 99.5th percentile, the same scale applied to the
reconstruction, then ``volume``) or ``fastmri``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from medrecon.errors import InputError, ShapeError
from medrecon.metrics import SSIM_BLOCK, fastmri_metrics, nmse, psnr, ssim
from medrecon.priors.normalisation import Normalisation

PROTOCOLS = ("volume", "slice", "fastmri")
STUDY_PROTOCOLS = ("window", "fastmri")


@dataclass
class Scores:
    """The scores of one reconstruction.

    ``psnr``, ``ssim``, ``nmse`` (None where undefined: a reference of zero energy): the row's
    values (``slice``: means over the slices). ``data_range``: the range used. ``protocol``: its
    name. ``per_slice``: with ``slice``, ``{"psnr": [...], "ssim": [...], "nmse": [...] or None}``.
    """

    psnr: float
    ssim: float
    nmse: float | None
    data_range: float
    protocol: str
    per_slice: dict | None = None

    def to_dict(self) -> dict:
        return {"psnr": self.psnr, "ssim": self.ssim, "nmse": self.nmse, "data_range": self.data_range,
                "protocol": self.protocol}


def _real(image: torch.Tensor) -> torch.Tensor:
    image = image.detach().cpu()
    return (image.abs() if image.is_complex() else image).to(torch.float64)


def _nmse_or_none(x: torch.Tensor, ref: torch.Tensor, per: str):
    try:
        return nmse(x, ref, per=per)
    except InputError:  # a reference of zero energy: NMSE undefined
        return None


SCORE_BLOCK = SSIM_BLOCK
"""Slices per block of the ``volume`` protocol: its sums (squared error, reference energy) and
per-slice SSIMs are gathered block by block, so a 300-slice 512x512 volume never needs float64
copies of the whole stack (each 0.6 GB)."""


def _volume_scores(image: torch.Tensor, reference: torch.Tensor, normalise=None) -> Scores:
    """The ``volume`` protocol on ``(S, [1,] H, W)`` stacks, :data:`SCORE_BLOCK` slices at a time;
    ``normalise(block) -> block`` first maps native units to the prior's (:func:`score_volumes`).
    The same values as on the whole stack at once, up to the order of the sums."""
    for name, t in (("image", image), ("reference", reference)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{name} must be a torch.Tensor of shape (S, 1, H, W) or (S, H, W); received {type(t).__name__}")
    if image.shape != reference.shape:
        raise ShapeError(f"the image {tuple(image.shape)} and the reference {tuple(reference.shape)} differ in shape")
    sq_err = energy = 0.0
    voxels = 0
    ssims = []
    for start in range(0, image.shape[0], SCORE_BLOCK):
        x, ref = _real(image[start:start + SCORE_BLOCK]), _real(reference[start:start + SCORE_BLOCK])
        if normalise is not None:
            x, ref = normalise(x), normalise(ref)
        x, ref = x.clamp(0, 1), ref.clamp(0, 1)
        sq_err += float((x - ref).square().sum())
        energy += float(ref.square().sum())
        voxels += x.numel()
        ssims.append(ssim(x, ref, data_range=1.0, per="slice"))
    mse = sq_err / voxels
    value = float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)
    return Scores(value, float(torch.cat(ssims).mean()), sq_err / energy if energy > 0 else None, 1.0, "volume")


def score(image: torch.Tensor, reference: torch.Tensor, protocol: str = "volume", *,
          data_range: float | None = None) -> Scores:
    """``image`` against ``reference`` (both ``(S, 1, H, W)`` or ``(S, H, W)``) under ``protocol``
    (module docstring). ``data_range`` applies to ``fastmri`` only."""
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown scoring protocol {protocol!r}; known: {PROTOCOLS}")
    if protocol == "volume":
        if data_range is not None:
            raise InputError("the volume protocol has data range 1; data_range is for fastmri")
        return _volume_scores(image, reference)
    x, ref = _real(image), _real(reference)
    if protocol == "fastmri":
        if data_range is None:
            m = fastmri_metrics(x, ref)
            return Scores(m["psnr"], m["ssim"], m["nmse"], float(ref.max()), protocol)
        return Scores(float(psnr(x, ref, data_range=data_range, per="volume")),
                      float(ssim(x, ref, data_range=data_range, per="volume")),
                      float(nmse(x, ref, per="volume")), float(data_range), protocol)
    if data_range is not None:
        raise InputError(f"the {protocol} protocol has data range 1; data_range is for fastmri")
    x, ref = x.clamp(0, 1), ref.clamp(0, 1)
    p = psnr(x, ref, data_range=1.0, per="slice").tolist()
    s = ssim(x, ref, data_range=1.0, per="slice").tolist()
    n = _nmse_or_none(x, ref, "slice")
    n = None if n is None else n.tolist()
    return Scores(float(np.mean(p)), float(np.mean(s)), None if n is None else float(np.mean(n)), 1.0, protocol,
                  per_slice={"psnr": p, "ssim": s, "nmse": n})


def describe_protocol(protocol: str) -> str:
    """A one-line statement of a protocol, for records and tables."""
    return {
        "volume": "normalised units, magnitudes clipped to [0, 1], data range 1; PSNR/NMSE per volume, SSIM per slice averaged",
        "slice": "normalised units, magnitudes clipped to [0, 1], data range 1; PSNR/SSIM/NMSE per slice",
        "fastmri": "fastMRI: magnitudes in native units, data range = target volume max; NMSE/PSNR per volume, SSIM per slice averaged",
    }[protocol]


def score_studies(recon, reference, protocol: str = "window") -> dict:
    """Metrics of two :class:`~medrecon.study.Study` objects with the same shape, geometry and
    modality, in native units, under ``window`` or ``fastmri`` (module docstring)."""
    if protocol not in STUDY_PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}; known: {STUDY_PROTOCOLS}")
    if recon.shape != reference.shape:
        raise InputError(f"the reconstruction {recon.shape} and the reference {reference.shape} differ in shape")
    if not np.allclose(recon.affine, reference.affine, atol=1e-3):
        raise InputError("the reconstruction and the reference have different geometry (affines differ)")
    if recon.modality != reference.modality:
        raise InputError(f"modalities differ: {recon.modality} vs {reference.modality}")
    return score_volumes(recon.voxels, reference.voxels, reference.modality, protocol)


def score_volumes(recon: torch.Tensor, reference: torch.Tensor, modality: str, protocol: str = "window") -> dict:
    """:func:`score_studies` on bare native-unit volumes ``(S, H, W)`` of ``modality``."""
    if protocol not in STUDY_PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}; known: {STUDY_PROTOCOLS}")
    if protocol == "fastmri":
        s = score(recon, reference, "fastmri")
        return {"protocol": "fastmri (per-volume NMSE/PSNR, per-slice SSIM, data range = reference max)",
                "nmse": s.nmse, "psnr": s.psnr, "ssim": s.ssim}
    norm = Normalisation.for_modality(modality)
    if norm.kind == "hu-window":
        normalise = norm.apply
    else:
        scale = float(np.percentile(_real(reference).numpy(), norm.percentile))
        if scale <= 0:
            raise InputError("the reference volume is empty (its 99.5th percentile is 0)")

        def normalise(v):
            return v / scale
    s = _volume_scores(recon, reference, normalise)
    return {
        "protocol": f"window ({norm.to_dict()}; PSNR/NMSE per volume, SSIM per slice averaged, data range 1)",
        "psnr": s.psnr, "ssim": s.ssim, "nmse": s.nmse, "slices": int(recon.shape[0]),
    }


__all__ = ["PROTOCOLS", "STUDY_PROTOCOLS", "Scores", "describe_protocol", "score", "score_studies", "score_volumes"]
