"""Image-quality metrics (PSNR, NMSE, SSIM) with explicit conventions.

Every metric takes a reconstruction ``x`` and a reference ``ref``: real tensors of the same shape,
either ``(B, 1, H, W)`` or ``(B, H, W)``, read as a stack of ``B`` two-dimensional slices (a volume,
or a batch of slices). They run on whatever device the tensors live on, batched over slices (no
Python loop), and compute in float64. The result is a float64 tensor on the input's device.

Conventions
-----------
* **Real input only.** Complex tensors are refused with an :class:`~medrecon.errors.InputError`;
  for MR images take the magnitude first (``x.abs()``), which is what the published protocols
  evaluate. Nothing is ever converted silently. NaN or infinite values are refused too.
* **Data range** ``R`` is the range of values the reference can take, ``max - min`` of the intensity
  scale (1 for images normalised to [0, 1]; the volume maximum of the target in the fastMRI
  protocol). It is *required* for PSNR and SSIM and never guessed from the data or the dtype. It is
  a positive float, or, with ``per="slice"``, a tensor of shape ``(B,)`` holding one range per slice.
* **PSNR** ``= 10 log10(R^2 / MSE)`` in dB, ``MSE = mean((x - ref)^2)``. Identical images have
  ``MSE = 0`` and their PSNR is ``+inf`` (returned as such, not clamped).
* **NMSE** ``= ||x - ref||^2 / ||ref||^2`` (squared Euclidean norms, no data range). A reference of
  zero energy makes it undefined and raises :class:`~medrecon.errors.InputError`.
* **SSIM** is the mean SSIM of Wang et al. (2004) with scikit-image's defaults: a uniform
  ``win_size x win_size`` window (7 by default), ``K1 = 0.01``, ``K2 = 0.03``, sample covariances
  (normalised by ``N - 1``, ``N = win_size^2``), ``C1 = (K1 R)^2``, ``C2 = (K2 R)^2``, and the SSIM
  map averaged only over the window positions that lie entirely inside the image (scikit-image
  crops ``(win_size - 1) // 2`` pixels at each border). Each 2-D slice matches
  ``skimage.metrics.structural_similarity(x, ref, data_range=R, win_size=7, K1=0.01, K2=0.03,
  gaussian_weights=False, use_sample_covariance=True)``.
* **per="slice"** returns a ``(B,)`` tensor, one value per slice.
  **per="volume"** returns a 0-d tensor: PSNR and NMSE from the squared error and energy summed over
  *all* voxels of the stack (not the mean of per-slice values); SSIM is the mean of the per-slice
  SSIMs, as the fastMRI evaluation computes it. A per-slice data range is refused with
  ``per="volume"``: a volume metric has one range.

:func:`fastmri_metrics` applies the fastMRI evaluation protocol to one volume.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

import torch
import torch.nn.functional as F

from medrecon.errors import InputError, ShapeError

__all__ = ["psnr", "nmse", "ssim", "fastmri_metrics"]

Per = Literal["slice", "volume"]
_PERS = ("slice", "volume")


# --------------------------------------------------------------------------------------------------
# validation


def _as_stack(name: str, t) -> torch.Tensor:
    """Check one input and return it as a float64 ``(B, H, W)`` view/copy."""
    if t.is_complex():
        raise InputError(
            f"{name} is complex ({t.dtype}); image-quality metrics take real images. "
            f"Take the magnitude first, e.g. {name}.abs() (medrecon never converts silently)"
        )
    if t.dtype == torch.bool:
        raise InputError(f"{name} has dtype torch.bool; expected a real floating-point or integer tensor")
    if t.ndim == 4:
        if t.shape[1] != 1:
            raise ShapeError(
                f"{name} has shape {tuple(t.shape)}; expected (B, 1, H, W) with one channel "
                f"(or (B, H, W)). Take the magnitude / combine channels before computing metrics"
            )
        t = t[:, 0]
    elif t.ndim != 3:
        raise ShapeError(
            f"{name} has shape {tuple(t.shape)} ({t.ndim}-D); expected a stack of slices "
            f"(B, 1, H, W) or (B, H, W) (for a single image use {name}[None])"
        )
    if t.shape[0] == 0 or t.shape[1] == 0 or t.shape[2] == 0:
        raise ShapeError(f"{name} has shape {tuple(t.shape)}; every dimension must be non-empty")
    n_nan = int(torch.isnan(t).sum()) if t.is_floating_point() else 0
    n_inf = int(torch.isinf(t).sum()) if t.is_floating_point() else 0
    if n_nan or n_inf:
        raise InputError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite value(s); metrics need finite images"
        )
    return t.to(torch.float64)


def _check_pair(x, ref) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``x`` and ``ref`` and return both as float64 ``(B, H, W)`` tensors."""
    for name, t in (("x", x), ("ref", ref)):
        if not isinstance(t, torch.Tensor):
            raise InputError(
                f"{name} must be a torch.Tensor of shape (B, 1, H, W) or (B, H, W); received "
                f"{type(t).__name__} (wrap numpy arrays with torch.from_numpy)"
            )
    x64, ref64 = _as_stack("x", x), _as_stack("ref", ref)
    if x.shape != ref.shape:
        raise ShapeError(
            f"x and ref must have the same shape; received x {tuple(x.shape)} and ref {tuple(ref.shape)}"
        )
    if x.device != ref.device:
        raise ShapeError(
            f"x and ref must be on the same device; received x on {x.device} and ref on {ref.device}"
        )
    return x64, ref64


def _check_per(per) -> str:
    if per not in _PERS:
        raise InputError(f"per must be 'slice' or 'volume'; received {per!r}")
    return per


def _data_range(data_range, batch: int, per: str, device: torch.device) -> torch.Tensor:
    """Return the data range as a float64 tensor of shape (B,) (per slice) or () (per volume)."""
    if data_range is None:
        raise InputError(
            "data_range is required (the value range of the reference intensity scale, e.g. 1.0 "
            "for images in [0, 1]); received None. medrecon never guesses it"
        )
    if isinstance(data_range, torch.Tensor):
        if data_range.is_complex() or data_range.dtype == torch.bool:
            raise InputError(f"data_range must be real and positive; received a {data_range.dtype} tensor")
        if data_range.ndim == 0:
            data_range = data_range.item()
        else:
            if per == "volume":
                raise InputError(
                    f"per='volume' needs a single data_range (float or 0-d tensor); received a tensor "
                    f"of shape {tuple(data_range.shape)}. Per-slice ranges are for per='slice'"
                )
            if tuple(data_range.shape) != (batch,):
                raise ShapeError(
                    f"a per-slice data_range must have shape (B,) = ({batch},); received "
                    f"shape {tuple(data_range.shape)}"
                )
            if data_range.device != device:
                raise ShapeError(
                    f"data_range is on {data_range.device} but the images are on {device}"
                )
            r = data_range.to(torch.float64)
            bad = ~(torch.isfinite(r) & (r > 0))
            if bool(bad.any()):
                idx = torch.nonzero(bad).flatten().tolist()
                raise InputError(
                    f"data_range must be finite and positive for every slice; received "
                    f"{r[bad].tolist()} at slice(s) {idx}"
                )
            return r
    if isinstance(data_range, bool) or not isinstance(data_range, numbers.Real):
        raise InputError(
            f"data_range must be a positive float (or a (B,) tensor with per='slice'); received "
            f"{data_range!r} of type {type(data_range).__name__}"
        )
    value = float(data_range)
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"data_range must be finite and positive; received {value!r}")
    r = torch.tensor(value, dtype=torch.float64, device=device)
    return r.expand(batch) if per == "slice" else r


# --------------------------------------------------------------------------------------------------
# metrics


def psnr(x: torch.Tensor, ref: torch.Tensor, *, data_range, per: Per = "slice") -> torch.Tensor:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range^2 / MSE)``.

    ``x`` and ``ref``: real tensors ``(B, 1, H, W)`` or ``(B, H, W)``. ``data_range``: a positive
    float, or a ``(B,)`` tensor of per-slice ranges with ``per="slice"`` (required, never guessed).
    ``per="slice"`` -> ``(B,)`` tensor; ``per="volume"`` -> 0-d tensor with the MSE over all voxels.
    Identical images give ``+inf``. Returns float64 on the input's device.
    """
    per = _check_per(per)
    x, ref = _check_pair(x, ref)
    r = _data_range(data_range, x.shape[0], per, x.device)
    sq = (x - ref).square()
    mse = sq.mean(dim=(-2, -1)) if per == "slice" else sq.mean()
    return 10.0 * torch.log10(r.square() / mse)


def nmse(x: torch.Tensor, ref: torch.Tensor, *, per: Per = "slice") -> torch.Tensor:
    """Normalised mean squared error ``||x - ref||^2 / ||ref||^2``.

    ``per="slice"`` -> ``(B,)`` tensor (norms over each slice); ``per="volume"`` -> 0-d tensor (norms
    over all voxels of the stack). A reference slice (or volume) of zero energy raises
    :class:`InputError`. Returns float64 on the input's device.
    """
    per = _check_per(per)
    x, ref = _check_pair(x, ref)
    dims = (-2, -1) if per == "slice" else (-3, -2, -1)
    err = (x - ref).square().sum(dim=dims)
    energy = ref.square().sum(dim=dims)
    zero = energy == 0
    if bool(zero.any()):
        where = (
            f"slice(s) {torch.nonzero(zero).flatten().tolist()}" if per == "slice" else "the volume"
        )
        raise InputError(f"NMSE is undefined: ref is all zeros in {where} (||ref||^2 = 0)")
    return err / energy


def ssim(
    x: torch.Tensor,
    ref: torch.Tensor,
    *,
    data_range,
    per: Per = "slice",
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean structural similarity per slice (or its mean over slices with ``per="volume"``).

    Matches ``skimage.metrics.structural_similarity(x_i, ref_i, data_range=R, win_size=win_size,
    K1=k1, K2=k2, gaussian_weights=False, use_sample_covariance=True)`` on each slice ``i``: uniform
    window, sample covariances, SSIM map averaged over the window positions inside the image. Both
    ``H`` and ``W`` must be at least ``win_size``; ``win_size`` is odd and at least 3.
    ``data_range``: a positive float, or a ``(B,)`` tensor with ``per="slice"`` (required).
    Returns float64 on the input's device: ``(B,)`` or 0-d.
    """
    per = _check_per(per)
    if isinstance(win_size, bool) or not isinstance(win_size, numbers.Integral):
        raise InputError(f"win_size must be an odd integer >= 3; received {win_size!r}")
    win_size = int(win_size)
    if win_size < 3 or win_size % 2 == 0:
        raise InputError(f"win_size must be an odd integer >= 3; received {win_size}")
    for name, k in (("k1", k1), ("k2", k2)):
        if isinstance(k, bool) or not isinstance(k, numbers.Real) or not (math.isfinite(k) and k > 0):
            raise InputError(f"{name} must be a finite positive float; received {k!r}")
    x, ref = _check_pair(x, ref)
    batch, height, width = x.shape
    if height < win_size or width < win_size:
        raise ShapeError(
            f"SSIM needs slices at least win_size x win_size = {win_size} x {win_size}; "
            f"received slices of {height} x {width}"
        )
    r = _data_range(data_range, batch, per, x.device)
    if r.ndim == 0:
        r = r.expand(batch)
    r = r.view(batch, 1, 1)

    # slices in blocks: the float64 moments of a whole 300-slice 512x512 volume at once took 13 GB
    per_slice = torch.cat([_ssim_means(x[i : i + SSIM_BLOCK], ref[i : i + SSIM_BLOCK], r[i : i + SSIM_BLOCK], win_size, k1, k2)
                           for i in range(0, batch, SSIM_BLOCK)])
    return per_slice if per == "slice" else per_slice.mean()


SSIM_BLOCK = 8
"""Slices per block of :func:`ssim` (each slice's value is computed on its own, so the block only
bounds memory: about 40 MB of float64 moments per 512x512 slice)."""


def _ssim_means(x: torch.Tensor, ref: torch.Tensor, r: torch.Tensor, win_size: int, k1: float, k2: float) -> torch.Tensor:
    """The mean SSIM map of each slice of ``x``, ``ref`` ``(b, H, W)`` with data ranges ``r`` ``(b, 1, 1)``."""
    # One pooling call for the five local moments; avg_pool2d with stride 1 and no padding gives
    # exactly the window positions inside the image, i.e. scikit-image's cropped region.
    stack = torch.stack((x, ref, x * x, ref * ref, x * ref), dim=1)
    mu_x, mu_y, m_xx, m_yy, m_xy = F.avg_pool2d(stack, kernel_size=win_size, stride=1).unbind(1)
    n = win_size * win_size
    cov_norm = n / (n - 1)
    var_x = cov_norm * (m_xx - mu_x * mu_x)
    var_y = cov_norm * (m_yy - mu_y * mu_y)
    cov_xy = cov_norm * (m_xy - mu_x * mu_y)
    c1 = (k1 * r).square()
    c2 = (k2 * r).square()
    num = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    den = (mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2)
    return (num / den).mean(dim=(-2, -1))


def fastmri_metrics(recon: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """NMSE, PSNR and SSIM of one volume under the fastMRI evaluation protocol.

    ``recon`` and ``target``: one volume, real tensors ``(B, H, W)`` (or ``(B, 1, H, W)``) of
    magnitude images, already cropped as the protocol requires (centre crop to the target width,
    320 for the fastMRI ``reconstruction_rss`` targets). As in ``fastmri/evaluate.py``:

    * ``maxval = target.max()``, the maximum of the whole *target volume* (not ``max - min``, and
      not per slice); it must be positive.
    * ``nmse = ||target - recon||^2 / ||target||^2`` over all voxels of the volume;
    * ``psnr = 10 log10(maxval^2 / MSE)`` with the MSE over all voxels of the volume;
    * ``ssim``: for every slice, scikit-image's SSIM (7x7 uniform window, K1 = 0.01, K2 = 0.03,
      sample covariance) with ``data_range = maxval`` (the volume maximum), averaged over slices.

    The benchmark then averages each metric over volumes; that step is the caller's. Returns
    ``{"nmse": float, "psnr": float, "ssim": float}``.
    """
    recon64, target64 = _check_pair(recon, target)
    maxval = float(target64.max())
    if not maxval > 0:
        raise InputError(
            f"fastMRI metrics use data_range = target.max(), which must be positive; received "
            f"target.max() = {maxval!r} (the protocol expects magnitude images)"
        )
    return {
        "nmse": float(nmse(recon64, target64, per="volume")),
        "psnr": float(psnr(recon64, target64, data_range=maxval, per="volume")),
        "ssim": float(ssim(recon64, target64, data_range=maxval, per="volume")),
    }
