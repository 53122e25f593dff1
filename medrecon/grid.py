"""Reconstructing a study whose matrix is not the prior's: the map between the two grids.

A prior is trained at one image size (the starter priors: 256x256), while CT series are most often
512x512 and MR series 320x320, 384x384 or not square. ``medrecon reconstruct`` then works as follows
(and the JSON record's ``grid`` entry says what was done):

1. **Field of view kept, made square.** The study's field of view in mm (rows x row spacing, columns
   x column spacing) is padded on both sides of its shorter axis to a square, with air (CT) or zero
   (MR), and that square is divided into ``N x N`` pixels of ``F / N`` mm (``N`` the prior's size,
   ``F`` the square's side): the reconstruction grid.
2. **Acquisition at the study's own resolution.** CT: the sinogram is computed from the study at its
   own pixel size (what a scanner measures of the object, not of a downsampled copy) with the
   detector covering the study's diagonal; the reconstruction operator has the same angles and
   detector on the ``N x N`` grid. MR: the k-space is simulated from the padded square study at its
   own matrix ``M x M`` and its central ``N x N`` block is kept (zero-filled where ``M < N``), scaled
   by ``N / M`` (the orthonormal FFTs of the two grids), with the acquisition's mask cut the same way;
   coil maps are evaluated on the ``N x N`` grid.
3. **Result on the study's grid.** The ``N x N`` result (and the baseline) is resampled (antialiased
   bilinear) to the padded square at the study's own pixel size and the padding is cut off, so the
   output has the input's matrix and geometry; metrics compare it with the study itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from medrecon.errors import InputError


@dataclass(frozen=True)
class GridMap:
    """Between a study's ``(H, W)`` grid (pixel ``spacing`` ``(row_mm, column_mm)``) and the
    ``size x size`` reconstruction grid of the same square field of view (module docstring)."""

    input_shape: tuple[int, int]
    spacing: tuple[float, float]
    pad: tuple[int, int, int, int]  # top, bottom, left, right, in the study's pixels
    size: int

    @classmethod
    def for_study(cls, shape, spacing, size: int) -> GridMap:
        h, w = (int(v) for v in shape)
        dy, dx = (float(v) for v in spacing)
        if min(h, w, size) < 1 or not (dy > 0 and dx > 0):
            raise InputError(f"cannot map a {h}x{w} study with spacing {spacing} onto a {size}x{size} grid")
        side = max(h * dy, w * dx)
        pad_h, pad_w = round(side / dy) - h, round(side / dx) - w
        return cls((h, w), (dy, dx), (pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2), int(size))

    @property
    def square_shape(self) -> tuple[int, int]:
        """The padded study's matrix (square in mm)."""
        top, bottom, left, right = self.pad
        return (self.input_shape[0] + top + bottom, self.input_shape[1] + left + right)

    @property
    def field_of_view_mm(self) -> float:
        return self.square_shape[1] * self.spacing[1]

    @property
    def pixel_mm(self) -> float:
        """The reconstruction grid's pixel size."""
        return self.field_of_view_mm / self.size

    @property
    def identity(self) -> bool:
        return self.input_shape == (self.size, self.size) and not any(self.pad)

    def pad_images(self, images: torch.Tensor, value: float) -> torch.Tensor:
        """``(S, H, W)`` -> the padded square ``(S, H', W')``."""
        top, bottom, left, right = self.pad
        if not any(self.pad):
            return images
        return F.pad(images, (left, right, top, bottom), value=value)

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """``(S, size, size)`` on the reconstruction grid -> ``(S, H, W)`` on the study's grid."""
        if self.identity:
            return images
        square = _resample(images, self.square_shape)
        top, _, left, _ = self.pad
        h, w = self.input_shape
        return square[:, top : top + h, left : left + w].contiguous()

    def to_grid(self, images: torch.Tensor, value: float) -> torch.Tensor:
        """``(S, H, W)`` on the study's grid -> ``(S, size, size)`` (padded with ``value``)."""
        if self.identity:
            return images
        return _resample(self.pad_images(images, value), (self.size, self.size))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(square_shape=list(self.square_shape), field_of_view_mm=round(self.field_of_view_mm, 4),
                 pixel_mm=round(self.pixel_mm, 6), resampling="antialiased bilinear (torch.nn.functional.interpolate)")
        return d


def _resample(images: torch.Tensor, shape) -> torch.Tensor:
    """``(S, H, W)`` real or complex -> ``(S, *shape)``, antialiased bilinear."""
    if images.is_complex():
        return torch.complex(_resample(images.real, shape), _resample(images.imag, shape))
    if tuple(images.shape[-2:]) == tuple(shape):
        return images
    out = F.interpolate(images[:, None].float(), size=tuple(int(v) for v in shape), mode="bilinear", antialias=True,
                        align_corners=False)
    return out[:, 0].to(images.dtype)


def centre_block(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` block of ``(..., M, M)`` (centred k-space or a mask), zero-filled
    where ``M < size``; the centre (index ``M // 2``) stays the centre."""
    m_h, m_w = x.shape[-2:]
    if m_h != m_w:
        raise InputError(f"k-space must be square to change its grid, got {m_h}x{m_w}")
    m = int(m_h)
    if m == size:
        return x
    out = x.new_zeros((*x.shape[:-2], size, size))
    keep = min(m, size)
    src = slice(m // 2 - keep // 2, m // 2 - keep // 2 + keep)
    dst = slice(size // 2 - keep // 2, size // 2 - keep // 2 + keep)
    out[..., dst, dst] = x[..., src, src]
    return out


def crop_or_pad_kspace(kspace: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`centre_block` of centred orthonormal k-space ``(..., M, M)``, scaled by ``size / M`` so
    that it is the orthonormal k-space of the image on the ``size x size`` grid of the same field
    of view."""
    m = int(kspace.shape[-1])
    return centre_block(kspace, size) * (size / m) if m != size else kspace


def divisible(size: int, levels: int) -> bool:
    """Whether a UNet of ``levels`` resolution levels runs on images of side ``size``."""
    return size % (2 ** max(levels - 1, 0)) == 0 and size >= 2 ** max(levels - 1, 0)


__all__ = ["GridMap", "centre_block", "crop_or_pad_kspace", "divisible"]
