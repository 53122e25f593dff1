"""FIR up- and down-sampling of feature maps, in plain torch (no custom CUDA operators).

NCSN++ resamples with a finite impulse response filter, the separable outer product of a 1-D
kernel (``[1, 3, 3, 1]`` in every published configuration) normalised to sum 1: smoother than
nearest-neighbour or average pooling, and alias-free enough for the score network's skip paths.
Everything is built on one primitive, :func:`upfirdn2d`, which on each channel of ``(N, C, H, W)``
features (1) inserts ``up - 1`` zeros after each pixel, (2) pads ``pad = (before, after)`` zeros
on both axes (a negative value crops), (3) convolves with the 2-D kernel (a true convolution: the
kernel is flipped), keeping only outputs whose footprint lies inside the padded image, and (4)
keeps every ``down``-th output. The helpers choose the padding that keeps images aligned:

- :func:`upsample_2d`: ``(H, W) -> (2H, 2W)``, kernel scaled by 4 so a constant image stays constant;
- :func:`downsample_2d`: ``(H, W) -> (H/2, W/2)``;
- :func:`upsample_conv_2d`: upsampling fused with a ``k x k`` convolution of weight ``(O, I, k, k)``:
  zero insertion, the full convolution with the weight, then the FIR filter (the padding is applied
  once, before the filter, so border pixels differ from "upsample, then pad and convolve");
- :func:`conv_downsample_2d`: the FIR filter with the convolution's padding, then the convolution
  with stride 2.

The kernel is applied as a depthwise convolution (``groups = C``), so these functions run under
autocast, ``torch.compile`` and autograd like any convolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def fir_kernel(taps: Sequence[float], *, gain: float = 1.0, device=None, dtype=torch.float32) -> torch.Tensor:
    """The 2-D kernel ``outer(taps, taps) / sum(outer) * gain`` ``(k, k)`` of a 1-D kernel."""
    k = torch.as_tensor([float(t) for t in taps], dtype=torch.float64)
    if k.ndim != 1 or k.numel() < 1:
        raise ValueError(f"a FIR kernel is a non-empty list of taps, got {list(taps)}")
    k2 = torch.outer(k, k)
    return (k2 / k2.sum() * gain).to(device=device, dtype=dtype)


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, *, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Zero-insertion upsampling, padding, FIR filtering and decimation of ``(N, C, H, W)`` features
    (the module docstring); ``kernel`` ``(kh, kw)``. Output side: ``(H up + before + after - kh) // down + 1``."""
    n, c, h, w = x.shape
    if up > 1:  # zeros after each pixel, on both axes
        x = F.pad(x.reshape(n, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(n, c, h * up, w * up)
    before, after = pad
    x = F.pad(x, (max(before, 0), max(after, 0), max(before, 0), max(after, 0)))
    if before < 0 or after < 0:
        x = x[:, :, max(-before, 0): x.shape[2] - max(-after, 0), max(-before, 0): x.shape[3] - max(-after, 0)]
    weight = kernel.flip(0, 1).to(device=x.device, dtype=x.dtype)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=down, groups=c)


def upsample_2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """``(N, C, H, W) -> (N, C, factor H, factor W)`` with ``kernel`` (from :func:`fir_kernel`, gain 1)."""
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel * factor**2, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """``(N, C, H, W) -> (N, C, H / factor, W / factor)`` with ``kernel`` (from :func:`fir_kernel`)."""
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def upsample_conv_2d(x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Upsampling by ``factor`` fused with the convolution of ``weight`` ``(O, I, k, k)`` (odd ``k``):
    ``(N, I, H, W) -> (N, O, factor H, factor W)``."""
    n, c, h, w = x.shape
    k = weight.shape[-1]
    # zero insertion between pixels (h up - up + 1 samples), then the full convolution (padding k - 1)
    z = F.pad(x.reshape(n, c, h, 1, w, 1), (0, factor - 1, 0, 0, 0, factor - 1)).reshape(n, c, h * factor, w * factor)
    z = z[:, :, : h * factor - factor + 1, : w * factor - factor + 1]
    z = F.conv2d(z, weight, padding=k - 1)
    p = (kernel.shape[0] - factor) - (k - 1)
    return upfirdn2d(z, kernel * factor**2, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def conv_downsample_2d(x: torch.Tensor, weight: torch.Tensor, kernel: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """The FIR filter then the convolution of ``weight`` ``(O, I, k, k)`` with stride ``factor``:
    ``(N, I, H, W) -> (N, O, H / factor, W / factor)``."""
    k = weight.shape[-1]
    p = (kernel.shape[0] - factor) + (k - 1)
    return F.conv2d(upfirdn2d(x, kernel, pad=((p + 1) // 2, p // 2)), weight, stride=factor)


def naive_upsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Nearest-neighbour upsampling (each pixel repeated ``factor x factor`` times)."""
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def naive_downsample_2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """The mean of each ``factor x factor`` block."""
    return F.avg_pool2d(x, factor, stride=factor)


__all__ = ["conv_downsample_2d", "downsample_2d", "fir_kernel", "naive_downsample_2d", "naive_upsample_2d", "upfirdn2d",
           "upsample_2d", "upsample_conv_2d"]
