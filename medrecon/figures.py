"""PNG figures of reconstructions: a labelled grid of slices, one column per image kind.

Used by ``medrecon reconstruct`` (reference, baseline, reconstruction, error, uncertainty for a few
slices, a zoomed crop at native resolution, and for coherent volumes coronal and sagittal reslices;
built by :func:`medrecon.outputs.reconstruction_figure`) and ``medrecon reproduce`` (one row per
setting). :func:`write_figure` takes images in [0, 1].

Display window (:func:`choose_window`), one for the figure, stated in it and in the record:

1. the study's own window where it has one (``Study.window``: DICOM WindowCenter / WindowWidth);
2. else for CT a window from the anatomy (:func:`ct_anatomy_window`), by the fractions of the voxels
   inside the body (:func:`body_mask`) in HU bands: lung (W1500 L-600) when at least
   :data:`LUNG_MIN_FRACTION` are air-filled lung (:data:`LUNG_HU`); brain (W80 L40) when at least
   :data:`BRAIN_MIN_FRACTION` are brain (:data:`BRAIN_HU`) and under :data:`FAT_MAX_FRACTION` fat
   (:data:`FAT_HU`: a head has almost no fat, an abdomen or a chest much); soft tissue (W400 L40)
   otherwise;
3. else for MR the 0.5th to 99.5th percentile of the magnitude (:func:`percentile_window`).

The window maps ``level - width / 2 .. level + width / 2`` linearly onto black .. white.
:func:`display_units` is the older mapping through the prior's window (CT) or scale (MR).

Zoom (:func:`zoom_box`): a crop of :data:`ZOOM_SIZE` x :data:`ZOOM_SIZE` native pixels where the
reference (else the baseline) has the most detail (gradient energy) inside the body, drawn as an
extra row enlarged by a whole factor with nearest neighbour, never resampled, and outlined on its
slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

FIGURE_SLICES = 3
ZOOM_SIZE = 96  # native pixels per side of the zoomed crop (the whole image where it is smaller)
ZOOM_MARGIN = 3  # pixels: the body is eroded by this much before its detail is measured (its outline is not detail)

# CT windows, name -> (level, width) in HU
CT_WINDOWS = {"brain": (40.0, 80.0), "lung": (-600.0, 1500.0), "soft tissue": (40.0, 400.0)}
BODY_HU = -500.0  # CT tissue lies above; the body is the tissue and what it encloses (body_mask)
LUNG_HU = (-1000.0, -400.0)  # air-filled lung, [lo, hi)
BRAIN_HU = (15.0, 80.0)  # grey and white matter, blood (not water or CSF)
FAT_HU = (-200.0, -30.0)
LUNG_MIN_FRACTION = 0.15
BRAIN_MIN_FRACTION = 0.5
FAT_MAX_FRACTION = 0.05
MR_PERCENTILES = (0.5, 99.5)
MR_BODY_FRACTION = 0.1  # MR tissue: above this fraction of the 99.5th percentile of the magnitude
WINDOW_SLICES = 32  # at most this many slices, evenly spaced, are looked at to choose a window


@dataclass(frozen=True)
class DisplayWindow:
    """A display window in native units (HU for CT): ``level - width / 2`` is black, ``level +
    width / 2`` white. ``chosen_by`` says how it was chosen; ``evidence`` holds the numbers the
    choice rested on (the HU band fractions, the percentiles)."""

    level: float
    width: float
    chosen_by: str
    evidence: dict | None = None

    @property
    def text(self) -> str:
        """The line the figure shows, e.g. ``window L40 W400 (DICOM WindowCenter/WindowWidth)``."""
        return f"window L{_number(self.level)} W{_number(self.width)} ({self.chosen_by})"

    def apply(self, native) -> np.ndarray:
        """Native images (any shape; tensor or array; complex -> magnitude) -> float32 in [0, 1]."""
        x = _array(native)
        return np.clip((x - (self.level - self.width / 2)) / self.width, 0, 1).astype(np.float32)

    def as_dict(self) -> dict:
        return {"level": self.level, "width": self.width, "chosen_by": self.chosen_by, "text": self.text,
                **({"evidence": self.evidence} if self.evidence else {})}


@dataclass(frozen=True)
class ZoomBox:
    """A crop of the figure's row ``row``: ``height`` x ``width`` native pixels from ``(top,
    left)``; ``label`` names it in the figure."""

    row: int
    top: int
    left: int
    height: int
    width: int
    label: str = ""


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


# ------------------------------------------------------------------------------------ windows
def body_mask(images: np.ndarray, threshold: float) -> np.ndarray:
    """Where the body is in images ``(..., H, W)``: tissue (values above ``threshold``) and every
    pixel that lies between tissue both along its row and along its column (the lungs, the
    bowel's gas; not the air around the body). Boolean, the images' shape."""
    tissue = np.asarray(images) > threshold

    def between(axis: int) -> np.ndarray:
        before = np.logical_or.accumulate(tissue, axis=axis)
        after = np.flip(np.logical_or.accumulate(np.flip(tissue, axis), axis=axis), axis)
        return before & after

    return between(-1) & between(-2)


def hu_fractions(hu: np.ndarray) -> dict:
    """The fractions of the body's voxels (:func:`body_mask` at :data:`BODY_HU`) of a CT volume
    ``(..., H, W)`` in HU that lie in the lung, brain and fat bands (``[lo, hi)``), and the number
    of body voxels."""
    hu = np.asarray(hu, dtype=np.float32)
    inside = hu[body_mask(hu, BODY_HU)]
    n = inside.size
    fractions = {name: round(float(np.count_nonzero((inside >= lo) & (inside < hi))) / max(n, 1), 4)
                 for name, (lo, hi) in (("lung", LUNG_HU), ("brain", BRAIN_HU), ("fat", FAT_HU))}
    return {**fractions, "body_voxels": int(n)}


def ct_anatomy_window(hu: np.ndarray) -> DisplayWindow:
    """The CT window the anatomy of ``hu`` ``(..., H, W)`` calls for (the rule in the module
    docstring): lung, brain or soft tissue, with the band fractions as evidence."""
    f = hu_fractions(hu)
    if f["lung"] >= LUNG_MIN_FRACTION:
        name, why = "lung", f"{_percent(f['lung'])} of the body is air-filled lung, {_band(LUNG_HU)} HU"
    elif f["brain"] >= BRAIN_MIN_FRACTION and f["fat"] < FAT_MAX_FRACTION:
        name, why = "brain", f"{_percent(f['brain'])} of the body is {_band(BRAIN_HU)} HU, {_percent(f['fat'])} fat"
    else:
        name, why = "soft tissue", (f"lung {_percent(f['lung'])}, brain band {_percent(f['brain'])}, fat "
                                    f"{_percent(f['fat'])} of the body")
    level, width = CT_WINDOWS[name]
    return DisplayWindow(level, width, f"{name}, chosen from the HU histogram: {why}", evidence=f)


def percentile_window(magnitude: np.ndarray, what: str = "reference") -> DisplayWindow:
    """The :data:`MR_PERCENTILES` of ``magnitude`` (any shape, native units) as the window's black
    and white; ``what`` names the image in the text."""
    lo, hi = (float(v) for v in np.percentile(np.asarray(magnitude, dtype=np.float64), MR_PERCENTILES))
    width = hi - lo if hi > lo else max(abs(hi), 1.0)
    return DisplayWindow(lo + width / 2, width, f"{MR_PERCENTILES[0]:g}-{MR_PERCENTILES[1]:g} % of the {what} magnitude",
                         evidence={"percentiles": list(MR_PERCENTILES), "values": [lo, hi]})


def choose_window(modality: str, images, study=None, *, what: str = "reference") -> DisplayWindow:
    """The figure's window: the study's (DICOM) window where ``study`` has one, else from
    ``images`` ``(S, H, W)`` in native units (the reference, else the baseline; ``what`` names it):
    the CT anatomy rule or the MR percentiles (module docstring)."""
    if study is not None and getattr(study, "window", None) is not None:
        fmt = (study.source or {}).get("format")
        chosen = "DICOM WindowCenter/WindowWidth" if fmt == "dicom" else f"the study's ({fmt or 'given'})"
        return DisplayWindow(*study.window, chosen)
    x = _array(images)
    x = x[np.unique(np.linspace(0, x.shape[0] - 1, min(WINDOW_SLICES, x.shape[0])).round().astype(int))]
    return ct_anatomy_window(x) if modality == "CT" else percentile_window(x, what)


def body_of(native, modality: str) -> np.ndarray:
    """The body (:func:`body_mask`) of native images ``(..., H, W)``: CT above :data:`BODY_HU`, MR
    above :data:`MR_BODY_FRACTION` of the magnitude's 99.5th percentile."""
    x = _array(native)
    threshold = BODY_HU if modality == "CT" else MR_BODY_FRACTION * float(np.percentile(x, 99.5))
    return body_mask(x, threshold)


# --------------------------------------------------------------------------------------- zoom
def zoom_box(images: np.ndarray, body: np.ndarray, size: int = ZOOM_SIZE, margin: int = ZOOM_MARGIN) -> ZoomBox:
    """The crop of most detail: ``images`` ``(rows, H, W)`` in display units, ``body`` their body
    (boolean, same shape). A pixel's energy is the sum of its squared forward differences to the
    right and below, counted where it lies in the body eroded by ``margin`` pixels; the crop
    (``size`` x ``size``, at most the image) is the one of highest summed energy over all rows and
    positions, the first in (row, top, left) order on ties. Without any energy: the centre of
    the middle row."""
    images = np.asarray(images, dtype=np.float64)
    rows, h, w = images.shape
    ch, cw = min(size, h), min(size, w)
    energy = np.zeros_like(images)
    energy[:, :, :-1] += np.diff(images, axis=2) ** 2
    energy[:, :-1, :] += np.diff(images, axis=1) ** 2
    energy *= _erode(np.asarray(body, dtype=bool), margin)
    integral = np.pad(energy.cumsum(1).cumsum(2), ((0, 0), (1, 0), (1, 0)))
    sums = integral[:, ch:, cw:] - integral[:, :-ch, cw:] - integral[:, ch:, :-cw] + integral[:, :-ch, :-cw]
    if not sums.max() > 0:
        return ZoomBox(rows // 2, (h - ch) // 2, (w - cw) // 2, ch, cw)
    row, top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return ZoomBox(int(row), int(top), int(left), ch, cw)


def tile_width(image_shape: Sequence[int], tile: int) -> int:
    """The width of a column of images ``(H, W)`` drawn ``tile`` high (the aspect kept, 96 at least)."""
    h, w = image_shape[-2:]
    return max(96, round(tile * w / h))


def zoom_magnification(box: ZoomBox, image_shape: Sequence[int], tile: int) -> int:
    """The whole factor the crop is enlarged by: as large as fits a ``tile`` x column-width cell, 1 at least."""
    return max(1, min(tile // box.height, tile_width(image_shape, tile) // box.width))


# ------------------------------------------------------------------------------------ drawing
def write_figure(path: Path, columns: dict[str, np.ndarray], scores: dict[str, dict], *, tile: int = 192,
                 reslices: dict[str, dict[str, np.ndarray]] | None = None, slice_aspect: float = 1.0,
                 zoom: ZoomBox | None = None, notes: Sequence[str] = ()) -> dict[str, tuple[int, int, int]]:
    """A PNG grid: one row per slice, one column per image kind (``columns[name]`` ``(rows, H, W)``
    in [0, 1]), labelled (with PSNR/SSIM where ``scores`` has them).

    Images are ``tile`` high and as wide as their aspect makes them (bilinear). ``notes``: lines of
    text above the grid (wrapped to its width). ``zoom``: a row under the axial ones holding each
    column's crop ``zoom`` of its row ``zoom.row``, enlarged by :func:`zoom_magnification` with
    nearest neighbour (each native pixel an m x m block), and the crop outlined on that row.
    ``reslices`` (``{"coronal": {column: (S, W) image}, "sagittal": ...}``): rows added under
    those, as wide as an axial image and as high as the slices' thickness makes them
    (``slice_aspect`` = slice spacing / in-plane pixel size).

    Returns where each column's zoomed crop lies: ``{column: (x, y, magnification)}`` (the PNG's
    pixel of the crop's top-left native pixel); empty without ``zoom``."""
    names = list(columns)
    rows, image_h, image_w = next(iter(columns.values())).shape
    tile_w = tile_width((image_h, image_w), tile)
    label_h, caption_h = 28, 14
    lines = _wrap(notes, len(names) * tile_w - 6)
    notes_h = len(lines) * caption_h + (4 if lines else 0)
    zoom_m = zoom_magnification(zoom, (image_h, image_w), tile) if zoom is not None else 0
    zoom_h = zoom.height * zoom_m + caption_h if zoom is not None else 0
    extra = []  # (label, height, {column: image})
    for view, images in (reslices or {}).items():
        depth, width = next(iter(images.values())).shape
        extra.append((view, max(8, round(tile_w * depth * slice_aspect / width)), images))
    grid_top = notes_h + label_h
    height = grid_top + rows * tile + zoom_h + sum(h + caption_h for _, h, _ in extra)
    canvas = Image.new("L", (len(names) * tile_w, height), color=0)
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((3, 2 + i * caption_h), line, fill=255)
    for c, name in enumerate(names):
        score = scores.get(name)
        text = name if not score else f"{name}\n{score['psnr']:.2f} dB / {score['ssim']:.3f}"
        draw.multiline_text((c * tile_w + 3, notes_h + 1), text, fill=255, spacing=1)
        for r in range(rows):
            canvas.paste(_pixels(columns[name][r]).resize((tile_w, tile), Image.BILINEAR), (c * tile_w, grid_top + r * tile))
    top = grid_top + rows * tile
    placed = {}
    if zoom is not None:
        draw.text((3, top + 1), f"zoom x{zoom_m}, nearest neighbour, native pixels: {zoom.label}".rstrip(": "), fill=255)
        sx, sy = tile_w / image_w, tile / image_h
        for c, name in enumerate(names):
            x0, y0 = c * tile_w + zoom.left * sx, grid_top + zoom.row * tile + zoom.top * sy
            draw.rectangle((x0, y0, x0 + zoom.width * sx - 1, y0 + zoom.height * sy - 1), outline=255)
            crop = columns[name][zoom.row, zoom.top : zoom.top + zoom.height, zoom.left : zoom.left + zoom.width]
            canvas.paste(_pixels(crop).resize((zoom.width * zoom_m, zoom.height * zoom_m), Image.NEAREST),
                         (c * tile_w, top + caption_h))
            placed[name] = (c * tile_w, top + caption_h, zoom_m)
        top += zoom_h
    for view, h, images in extra:
        draw.text((3, top + 1), view, fill=255)
        for c, name in enumerate(names):
            if name in images:
                canvas.paste(_pixels(images[name]).resize((tile_w, h), Image.BILINEAR), (c * tile_w, top + caption_h))
        top += h + caption_h
    canvas.save(path, format="PNG")
    return placed


# ------------------------------------------------------------------------------------ helpers
def _array(images) -> np.ndarray:
    """A tensor or array -> a float numpy array (complex -> magnitude)."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu()
        images = (images.abs() if images.is_complex() else images).float().numpy()
    images = np.asarray(images)
    return np.abs(images) if np.iscomplexobj(images) else images.astype(np.float32, copy=False)


def _pixels(image: np.ndarray) -> Image.Image:
    """An image ``(H, W)`` in [0, 1] -> an 8-bit greyscale PIL image (``round(255 * value)``)."""
    return Image.fromarray(np.uint8(np.round(255 * np.clip(image, 0, 1))))


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` ``(..., H, W)`` shrunk by ``steps`` pixels (4-neighbourhood; outside the image is not in it)."""
    out = mask.copy()
    for _ in range(steps):
        inner = np.zeros_like(out)
        inner[..., 1:-1, 1:-1] = (out[..., 1:-1, 1:-1] & out[..., :-2, 1:-1] & out[..., 2:, 1:-1]
                                  & out[..., 1:-1, :-2] & out[..., 1:-1, 2:])
        out = inner
    return out


def _wrap(notes: Sequence[str], width: int) -> list[str]:
    """The notes broken at spaces into lines at most ``width`` pixels wide in the default font."""
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    lines = []
    for note in notes:
        line = ""
        for word in note.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and measure.textlength(candidate) > width:
                lines.append(line)
                candidate = word
            line = candidate
        lines.append(line)
    return lines


def _number(value: float) -> str:
    """A window value as text: whole numbers without decimals, others to 4 significant digits."""
    return f"{value:.0f}" if float(value).is_integer() or abs(value) >= 1000 else f"{value:.4g}"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.0f} %"


def _band(band: tuple[float, float]) -> str:
    return f"{band[0]:g} to {band[1]:g}"


__all__ = ["BODY_HU", "BRAIN_HU", "BRAIN_MIN_FRACTION", "CT_WINDOWS", "FAT_HU", "FAT_MAX_FRACTION", "FIGURE_SLICES",
           "LUNG_HU", "LUNG_MIN_FRACTION", "MR_BODY_FRACTION", "MR_PERCENTILES", "ZOOM_SIZE", "DisplayWindow", "ZoomBox",
           "body_mask", "body_of", "choose_window", "ct_anatomy_window", "display_units", "figure_rows", "hu_fractions",
           "percentile_window", "reslices", "tile_width", "write_figure", "zoom_box", "zoom_magnification"]
