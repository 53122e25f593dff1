"""PNG figures of reconstructions: a labelled grid of slices, one column per image kind.

Used by ``medrecon reconstruct`` (reference, baseline, reconstruction, error, uncertainty for a few
slices, and for coherent volumes coronal and sagittal reslices) and ``medrecon reproduce`` (one row
per setting). Images are given in [0, 1] (display units): :func:`display_units` maps a problem's
normalised images there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

FIGURE_SLICES = 3


def display_units(native: torch.Tensor, problem) -> np.ndarray:
    """Native images -> [0, 1] for a figure: the prior's window (CT) or magnitude scale (MR) of ``problem``."""
    return ((native - problem.offset) / problem.scale).clamp(0, 1).numpy()


def figure_rows(n_slices: int, count: int = FIGURE_SLICES) -> list[int]:
    """``count`` slice indices evenly spaced through ``n_slices`` (first and last included)."""
    return sorted(set(np.linspace(0, n_slices - 1, min(count, n_slices)).round().astype(int).tolist()))


def reslices(columns_3d: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The coronal (middle row) and sagittal (middle column) reslices ``(S, W)`` / ``(S, H)`` of
    each column's whole volume ``(S, H, W)``."""
    out = {"coronal": {}, "sagittal": {}}
    for name, v in columns_3d.items():
        out["coronal"][name] = v[:, v.shape[1] // 2, :]
        out["sagittal"][name] = v[:, :, v.shape[2] // 2]
    return out


def write_figure(path: Path, columns: dict[str, np.ndarray], scores: dict[str, dict], *, tile: int = 192,
                 reslices: dict[str, dict[str, np.ndarray]] | None = None, slice_aspect: float = 1.0) -> None:
    """A PNG grid: one row per slice, one column per image kind (``columns[name]`` ``(rows, H, W)``
    in [0, 1]), labelled (with PSNR/SSIM where ``scores`` has them).

    Images are ``tile`` high and as wide as their aspect makes them. ``reslices`` (``{"coronal":
    {column: (S, W) image}, "sagittal": ...}``): rows added under the axial ones, as wide as an axial
    image and as high as the slices' thickness makes them (``slice_aspect`` = slice spacing /
    in-plane pixel size)."""
    names = list(columns)
    rows, image_h, image_w = next(iter(columns.values())).shape
    tile_w = max(96, round(tile * image_w / image_h))  # non-square images keep their aspect
    label_h = 28
    extra = []  # (label, height, {column: image})
    for view, images in (reslices or {}).items():
        depth, width = next(iter(images.values())).shape
        extra.append((view, max(8, round(tile_w * depth * slice_aspect / width)), images))
    height = rows * tile + label_h + sum(h + 14 for _, h, _ in extra)
    canvas = Image.new("L", (len(names) * tile_w, height), color=0)
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(names):
        score = scores.get(name)
        text = name if not score else f"{name}\n{score['psnr']:.2f} dB / {score['ssim']:.3f}"
        draw.multiline_text((c * tile_w + 3, 1), text, fill=255, spacing=1)
        for r in range(rows):
            pixels = Image.fromarray(np.uint8(np.round(255 * np.clip(columns[name][r], 0, 1))))
            canvas.paste(pixels.resize((tile_w, tile), Image.BILINEAR), (c * tile_w, label_h + r * tile))
    top = label_h + rows * tile
    for view, h, images in extra:
        draw.text((3, top + 1), view, fill=255)
        for c, name in enumerate(names):
            if name in images:
                pixels = Image.fromarray(np.uint8(np.round(255 * np.clip(images[name], 0, 1))))
                canvas.paste(pixels.resize((tile_w, h), Image.BILINEAR), (c * tile_w, top + 14))
        top += h + 14
    canvas.save(path, format="PNG")


__all__ = ["FIGURE_SLICES", "display_units", "figure_rows", "reslices", "write_figure"]
