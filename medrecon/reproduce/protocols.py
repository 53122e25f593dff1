"""The reproduction protocols: one per published table (docs/reproduce.md states each).

A protocol is a small dataclass that knows its dataset loader (:mod:`medrecon.reproduce.datasets`),
its settings (views or accelerations), the published numbers of its table, how to turn one
dataset item and one setting into a :class:`~medrecon.reconstruct.Problem` (a :class:`Case`), its
classical baselines, and how to score a reconstruction. :mod:`medrecon.reproduce.command` runs a
protocol over a dataset and writes the tables; nothing here writes files.

- :class:`LidcProtocol` (Song et al. 2022, LIDC-IDRI): ``size x size`` slices (320), per-volume
  min-max to [0, 1], parallel-beam sparse views (10 / 20 / 23) in Song et al.'s ``song``
  convention (rows ``round(linspace(0, n - 1, N))`` of the n-view grid over [0, pi), n = the image
  side), noiseless sinograms of the normalised images; PSNR and SSIM with data range 1 on images
  clipped to [0, 1], per slice. Baselines FBP (ramp) and TV-PDHG (the published FISTA-TV minimises
  the same TV-regularised least squares; PDHG is another solver of that problem).
- :class:`BratsProtocol` (Song et al. 2022, BraTS): the loader's normalisation (non-zero box, clip
  to mean +- 6 std, min-max), the box placed on a ``size x size`` grid (zero padding = the
  volume's minimum after min-max; a centre crop where the box is larger), single-coil Cartesian
  column masks (``equispaced_fraction``: equispaced columns with a fully sampled low-frequency
  block, centre fraction 0.08 at 4x, 0.04 at 8x, 0.32 / R otherwise, seeded from the case name),
  noiseless k-space of the real image (complex dtype); PSNR and SSIM with data range 1 on
  magnitudes clipped to [0, 1], per slice, over the box. Baselines zero-filled, TV and L1-wavelet.
- :class:`FastmriProtocol` (DDS / the fastMRI benchmark): multi-coil files, the file's
  ``equispaced_fraction`` mask (:func:`~medrecon.reproduce.datasets.fastmri_mask`, seeded by the
  file name, acquired columns only), ESPIRiT maps from the undersampled k-space (as
  ``medrecon reconstruct`` does), the scale of :func:`~medrecon.reconstruct.problem_from_kspace`;
  target ``reconstruction_rss``; the magnitude times the scale, centre-cropped to the target;
  :func:`~medrecon.metrics.fastmri_metrics` (NMSE and PSNR per volume, SSIM per slice averaged,
  data range = the volume max). Baselines zero-filled, CG-SENSE and L1-wavelet.

The baselines are the registry's (:data:`medrecon.evaluation.baselines.BASELINES`) with the
weights of :data:`medrecon.baselines.TUNED_WEIGHTS` for the setting chosen by
:func:`medrecon.evaluation.baselines.tuned_setting_of` (the closest benchmark setting: <= 40 views
-> the 23-view weights; <= 6x -> the 4x weights, else 8x). Those were tuned on 256 x 256 starter
slices, not on these datasets: the tables say so. Scores are
:func:`medrecon.evaluation.scoring.score`'s (``slice`` for LIDC and BraTS, ``fastmri``).

The ``starter`` protocol (the starter corpus, the ``bench recon`` settings) is
:mod:`medrecon.reproduce.starter` (see :data:`STARTER`).
"""

from __future__ import annotations

import dataclasses
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from medrecon.errors import InputError
from medrecon.evaluation.baselines import BASELINES, tuned_setting_of
from medrecon.evaluation.scoring import Scores, score
from medrecon.grid import GridMap
from medrecon.operators import CTProjector, ParallelBeamGeometry, SingleCoilMRI, espirit_maps
from medrecon.operators.masks import COLUMN_PATTERNS, default_center_fraction, make_mask, sampled_fraction
from medrecon.reconstruct import Problem, problem_from_kspace
from medrecon.reproduce.datasets import FASTMRI_CENTER_FRACTIONS, brats_volumes, center_crop, fastmri_volumes, lidc_volumes

__all__ = [
    "Published",
    "Case",
    "Protocol",
    "LidcProtocol",
    "BratsProtocol",
    "FastmriProtocol",
    "PROTOCOLS",
    "STARTER",
    "make_protocol",
    "evenly_spaced",
]

STARTER = "starter"
"""The name of the starter protocol (:mod:`medrecon.reproduce.starter`)."""


# --------------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class Published:
    """One published number of a protocol's table.

    ``setting``: the setting's label as this protocol names it (``"23 views"``, ``"4x"``);
    ``method``: the medrecon method it is compared with (a sampler or baseline key), or None for a
    method medrecon does not run; ``label``: the method as the paper names it.
    """

    setting: str
    method: str | None
    label: str
    psnr: float | None
    ssim: float | None
    source: str
    note: str = ""

    def to_dict(self) -> dict:
        return {"setting": self.setting, "method": self.method, "label": self.label, "psnr": self.psnr,
                "ssim": self.ssim, "source": self.source, "note": self.note}


@dataclass
class Case:
    """One volume under one setting, ready to reconstruct and score.

    ``problem``: the :class:`~medrecon.reconstruct.Problem` in normalised units; ``reference``: real
    ``(S, 1, h, w)``, what reconstructions are compared with, in the units :meth:`Protocol.scored`
    returns; ``display_range``: what maps the reference onto [0, 1] for the figure;
    ``acquisition``: a JSON record of what was measured (views and angles, mask columns, sampled
    fraction); ``private``: per-protocol data the scoring needs.
    """

    volume: str
    setting: str
    value: int
    problem: Any
    reference: torch.Tensor
    slice_indices: list[int]
    total_slices: int
    display_range: float
    acquisition: dict
    private: dict = field(default_factory=dict)

    @property
    def slices(self) -> int:
        return len(self.slice_indices)


def evenly_spaced(total: int, count: int | None) -> list[int]:
    """``count`` slice indices evenly spaced through ``total`` (the centres of ``count`` equal
    bins, so one slice is the middle one); all slices for None or ``count >= total``."""
    if count is None or count >= total:
        return list(range(total))
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise InputError(f"slices must be a positive int (slices per volume) or None for all, got {count!r}")
    index = np.floor((np.arange(count) + 0.5) * total / count).astype(int)
    return sorted(set(int(i) for i in np.clip(index, 0, total - 1)))


def _int_values(values, allowed: str) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise InputError(f"{allowed} must be positive integers, got {v!r}")
        if int(v) not in out:
            out.append(int(v))
    if not out:
        raise InputError(f"{allowed}: give at least one value")
    return out


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------------
# the protocol base


@dataclass
class Protocol:
    """What every protocol provides; see the module docstring. Subclasses set the class constants
    and implement :meth:`load`, :meth:`build`, :meth:`baseline_method` and :meth:`scored`."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    modality: ClassVar[str] = ""
    value_name: ClassVar[str] = ""  # the CLI flag of the settings: "views" or "accel"
    default_values: ClassVar[tuple[int, ...]] = ()
    baselines: ClassVar[tuple[str, ...]] = ()
    unit: ClassVar[str] = "slice"  # what the summary's mean +- std is over: "slice" or "volume"
    published: ClassVar[tuple[Published, ...]] = ()

    def setting_label(self, value: int) -> str:
        raise NotImplementedError

    def settings(self, values=None) -> list[int]:
        """The settings to run (validated), in the order given; None for the published ones."""
        return _int_values(self.default_values if values is None else values, f"--{self.value_name}")

    def load(self, root, *, limit: int | None = None):
        raise NotImplementedError

    def build(self, item, value: int, *, slices: int | None = None) -> Case:
        raise NotImplementedError

    def baseline_method(self, method: str, case: Case) -> tuple[Callable, str]:
        """``(fn(op, y) -> image, description)`` of one of ``self.baselines`` for ``case``: the
        registry's method (:data:`medrecon.evaluation.baselines.BASELINES`) with the weight of the
        case's closest tuned setting."""
        setting = self.baseline_setting(case)
        entry = BASELINES[method]
        return (lambda op, y: entry.run(op, y, setting)), entry.details(setting)

    @torch.no_grad()
    def run_baseline(self, method: str, case: Case, *, device="cpu") -> tuple[torch.Tensor, str, float]:
        """``(image (S, 1, H, W) in normalised units on the CPU, description, seconds)``."""
        if method not in self.baselines:
            raise InputError(f"unknown {self.name} baseline {method!r}; known: {', '.join(self.baselines)}")
        fn, text = self.baseline_method(method, case)
        op = case.problem.op.to(device)
        y = case.problem.y.to(device)
        _sync(device)
        t0 = time.perf_counter()
        image = fn(op, y)
        _sync(device)
        return case.problem.on_study_grid(image.cpu()), text, time.perf_counter() - t0

    def scored(self, case: Case, image: torch.Tensor) -> torch.Tensor:
        """A reconstruction in normalised units -> the real ``(S, 1, h, w)`` image compared with
        ``case.reference`` (clipping, magnitude, crop and scale as the protocol says)."""
        raise NotImplementedError

    def score(self, case: Case, image: torch.Tensor) -> Scores:
        return score(self.scored(case, image), case.reference, "slice")

    def display(self, case: Case, image: torch.Tensor | None) -> np.ndarray:
        """``(S, h, w)`` in [0, 1] for the figure: a reconstruction, or the reference for None."""
        shown = case.reference if image is None else self.scored(case, image)
        return (shown[:, 0].detach().cpu().double() / case.display_range).clamp(0, 1).numpy()

    def baseline_setting(self, case: Case) -> str:
        """The ``TUNED_WEIGHTS`` setting of this case (the closest benchmark setting)."""
        return tuned_setting_of(case.problem, case.acquisition)

    def fit_to_prior(self, card) -> None:
        """Settle what the prior decides (brats: the grid size when none was given); the prior's
        fit itself is checked by :func:`~medrecon.reconstruct.check_prior_fits`."""

    def published_for(self, setting: str, method: str) -> Published | None:
        return next((p for p in self.published if p.setting == setting and p.method == method), None)

    def describe(self) -> str:
        """The protocol as a Markdown paragraph (stated above the summary table)."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "modality": self.modality, "unit": self.unit,
                "baselines": list(self.baselines), "description": self.describe(),
                "published": [p.to_dict() for p in self.published]}


# --------------------------------------------------------------------------------------------------
# LIDC-IDRI (Song et al.)

_SONG = "Song, Shen, Xing, Ermon (ICLR 2022)"
_DDS = "Chung, Lee, Ye (ICLR 2024), DDS"


@dataclass
class LidcProtocol(Protocol):
    """Song et al.'s LIDC-IDRI sparse-view CT table. ``size``: the slice side (published: 320);
    ``convention``: the sparse-view angles (published: ``song``)."""

    name: ClassVar[str] = "lidc"
    title: ClassVar[str] = "LIDC-IDRI sparse-view CT (Song et al. 2022)"
    modality: ClassVar[str] = "CT"
    value_name: ClassVar[str] = "views"
    default_values: ClassVar[tuple[int, ...]] = (10, 20, 23)
    baselines: ClassVar[tuple[str, ...]] = ("fbp", "tv_pdhg")
    unit: ClassVar[str] = "slice"
    published: ClassVar[tuple[Published, ...]] = (
        Published("10 views", "score_sde", "score-SDE projection", 29.52, 0.823, _SONG),
        Published("20 views", "score_sde", "score-SDE projection", 34.40, 0.895, _SONG),
        Published("23 views", "score_sde", "score-SDE projection", 35.24, 0.905, _SONG),
        Published("23 views", "fbp", "FBP", 10.18, 0.230, _SONG),
        Published("23 views", "tv_pdhg", "FISTA-TV", 20.08, 0.799, _SONG,
                  "published FISTA-TV; medrecon's TV-PDHG solves the same TV-regularised least squares"),
        Published("23 views", None, "cGAN", 19.83, 0.479, _SONG),
        Published("23 views", None, "Neumann", 17.18, 0.454, _SONG),
        Published("23 views", None, "SIN-4c-PRN", 30.48, 0.895, _SONG),
    )

    size: int = 320
    convention: str = "song"
    _operators: dict = field(default_factory=dict, repr=False, compare=False)
    _grid: object = field(default=None, repr=False, compare=False)

    def fit_to_prior(self, card) -> None:
        """A prior of another image size reconstructs on its own grid (:mod:`medrecon.grid`): the
        sinograms are those of the protocol's ``size x size`` slices, the reconstruction operator
        the same rays through the prior's grid, the result resampled back to ``size`` for scoring."""
        size = int(card.image_size)
        self._grid = None if size == self.size else GridMap.for_study((self.size, self.size), (1.0, 1.0), size)

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, numbers.Integral) or self.size < 8:
            raise InputError(f"the LIDC slice size must be an int >= 8, got {self.size!r}")
        if self.convention not in ("song", "uniform"):
            raise InputError(f"the sparse-view convention must be 'song' or 'uniform', got {self.convention!r}")

    def setting_label(self, value: int) -> str:
        return f"{value} views"

    def settings(self, values=None) -> list[int]:
        out = super().settings(values)
        too_many = [v for v in out if self.convention == "song" and v > self.size]
        if too_many:
            raise InputError(f"--views {too_many[0]}: the song convention takes views from the {self.size}-view grid")
        return out

    def load(self, root, *, limit: int | None = None):
        return lidc_volumes(root, size=self.size, limit=limit)

    def operator(self, views: int):
        """The CT projector of ``views`` views (one per setting, reused for every volume)."""
        if views not in self._operators:
            geometry = ParallelBeamGeometry.sparse_view((self.size, self.size), views, self.convention)
            self._operators[views] = CTProjector(geometry)
        return self._operators[views]

    @torch.no_grad()
    def build(self, item, value: int, *, slices: int | None = None) -> Case:
        images = item.images
        if tuple(images.shape[-2:]) != (self.size, self.size):
            raise InputError(f"{item.name}: slices are {tuple(images.shape[-2:])}, the protocol's are {self.size}x{self.size}")
        index = evenly_spaced(images.shape[0], slices)
        x = images[index].to(torch.float32)
        op = self.operator(value)
        y = op(x)  # noiseless sinograms of the normalised images
        geometry = op.geometry
        acquisition = {"kind": "ct", "geometry": geometry.to_dict(), "convention": self.convention, "views": value,
                       "noise": "none"}
        description = {"units": "the volume's min-max normalisation to [0, 1] (Song et al.)", "acquisition": acquisition}
        if self._grid is not None:  # the prior's grid (fit_to_prior)

            key = ("grid", value)
            if key not in self._operators:
                self._operators[key] = CTProjector(dataclasses.replace(
                    geometry, image_shape=(self._grid.size, self._grid.size), pixel_size=self._grid.pixel_mm))
            op = self._operators[key]
            description["grid"] = self._grid.to_dict()
        problem = Problem(op, y, "CT", noisy=False, description=description, grid=self._grid)
        return Case(item.name, self.setting_label(value), value, problem, x, index, int(images.shape[0]), 1.0,
                    acquisition)

    def scored(self, case: Case, image: torch.Tensor) -> torch.Tensor:
        image = image.detach().cpu()
        image = image.real if image.is_complex() else image
        return image.to(torch.float64).clamp(0, 1)

    def describe(self) -> str:
        return (
            f"**{self.title}.** Per patient the CT series with the most slices, axial slices resampled to "
            f"{self.size}x{self.size} (shorter side scaled, antialiased bilinear, centre crop), each volume min-max "
            f"normalised to [0, 1]. Noiseless parallel-beam sinograms of the normalised slices (linear-interpolation "
            f"projector, detector covering the diagonal at the pixel size), sparse views in the `{self.convention}` "
            + ("convention: rows round(linspace(0, n - 1, N)) of the n-view grid over [0, pi), n = the image side. "
               if self.convention == "song" else "convention: linspace(0, pi, N, endpoint=False). ")
            + "PSNR and SSIM (7x7 uniform window, K1 0.01, K2 0.03) with data range 1 on images clipped to [0, 1], "
            "per slice; the table gives mean +- std over all evaluated slices of all volumes (population std). "
            "Baselines: FBP (ramp) and TV-PDHG with the weight of TUNED_WEIGHTS' closest setting "
            "(tuned on 256x256 starter slices, not on LIDC); the published baseline is FISTA-TV, another solver of "
            "the same TV-regularised least-squares problem."
        )

    def to_dict(self) -> dict:
        return {**super().to_dict(), "size": self.size, "convention": self.convention}


# --------------------------------------------------------------------------------------------------
# BraTS (Song et al.)


def _place(images: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """``(S, 1, h, w)`` -> ``(S, 1, size, size)``: centre crop of the sides larger than ``size``
    (fastMRI's :func:`center_crop` convention), zero padding of the smaller ones, centred; and the
    region ``(top, bottom, left, right)`` where the (cropped) image lies."""
    h, w = images.shape[-2:]
    cropped = center_crop(images, (min(h, size), min(w, size)))
    ch, cw = cropped.shape[-2:]
    top, left = (size - ch) // 2, (size - cw) // 2
    out = torch.zeros((*images.shape[:-2], size, size), dtype=images.dtype)
    out[..., top:top + ch, left:left + cw] = cropped
    return out, (top, top + ch, left, left + cw)


@dataclass
class BratsProtocol(Protocol):
    """Song et al.'s BraTS single-coil MRI table. ``size``: the grid the volume's box is placed on
    (None: the prior's image size, set by :meth:`fit_to_prior`; left None, the loader's box is kept,
    which only a prior of exactly that size accepts); ``sequence``: the BraTS modality (``t2``);
    ``pattern``: ``equispaced_fraction`` or ``equispaced``."""

    name: ClassVar[str] = "brats"
    title: ClassVar[str] = "BraTS undersampled single-coil MRI (Song et al. 2022)"
    modality: ClassVar[str] = "MR"
    value_name: ClassVar[str] = "accel"
    default_values: ClassVar[tuple[int, ...]] = (4, 8, 24)
    baselines: ClassVar[tuple[str, ...]] = ("zero_filled", "total_variation", "l1_wavelet")
    unit: ClassVar[str] = "slice"
    published: ClassVar[tuple[Published, ...]] = (
        Published("24x", "score_sde", "score-SDE projection", 29.42, 0.880, _SONG),
        Published("8x", "score_sde", "score-SDE projection", 37.63, 0.958, _SONG),
        Published("4x", "score_sde", "score-SDE projection", 39.91, 0.965, _SONG),
        Published("24x", None, "Cascade DenseNet", 23.39, None, _SONG),
        Published("8x", None, "Cascade DenseNet", 28.35, None, _SONG),
        Published("4x", None, "Cascade DenseNet", 30.97, None, _SONG),
    )

    size: int | None = None
    sequence: str = "t2"
    pattern: str = "equispaced_fraction"

    def __post_init__(self):
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, numbers.Integral)
                                      or self.size < 8):
            raise InputError(f"the BraTS grid size must be an int >= 8 or None, got {self.size!r}")
        if self.pattern not in ("equispaced_fraction", "equispaced"):
            raise InputError(f"the BraTS mask pattern must be equispaced_fraction or equispaced, got {self.pattern!r}")

    def setting_label(self, value: int) -> str:
        return f"{value}x"

    def fit_to_prior(self, card) -> None:
        if self.size is None:
            self.size = int(card.image_size)

    def settings(self, values=None) -> list[int]:
        out = super().settings(values)
        if 1 in out:
            raise InputError("--accel 1 is full sampling: nothing to reconstruct")
        return out

    def load(self, root, *, limit: int | None = None):
        return brats_volumes(root, modality=self.sequence, limit=limit)

    @torch.no_grad()
    def build(self, item, value: int, *, slices: int | None = None) -> Case:
        images = item.images
        index = evenly_spaced(images.shape[0], slices)
        box = images[index].to(torch.float32)
        if self.size is None:
            grid, region = box, (0, box.shape[-2], 0, box.shape[-1])
        else:
            grid, region = _place(box, int(self.size))
        shape = tuple(grid.shape[-2:])
        center_fraction = default_center_fraction(float(value))
        mask = make_mask(self.pattern, shape, value, center_fraction, seed=item.name)
        if not bool(mask.any()):
            raise InputError(f"{item.name}: the {value}x {self.pattern} mask of a {shape[1]}-column grid samples no column")
        op = SingleCoilMRI(mask)
        x = grid.to(torch.complex64)  # real images, complex dtype
        y = op(x)  # noiseless
        columns = torch.nonzero(mask[0] > 0).flatten().tolist()
        acquisition = {"kind": "mr", "sampling": {"pattern": self.pattern, "acceleration": value,
                                                  "center_fraction": center_fraction, "seed": item.name},
                       "sampled_columns": columns, "sampled_fraction": sampled_fraction(mask), "grid": list(shape),
                       "box": list(box.shape[-2:]), "region": list(region), "noise": "none"}
        problem = Problem(op, y, "MR", noisy=False, description={
            "units": "the volume's clip and min-max normalisation to [0, 1] (Song et al.)", "acquisition": acquisition})
        top, bottom, left, right = region
        reference = grid[..., top:bottom, left:right]
        return Case(item.name, self.setting_label(value), value, problem, reference, index, int(images.shape[0]),
                    1.0, acquisition, {"region": region})

    def scored(self, case: Case, image: torch.Tensor) -> torch.Tensor:
        top, bottom, left, right = case.private["region"]
        image = image.detach().cpu()
        magnitude = image.abs() if image.is_complex() else image
        return magnitude[..., top:bottom, left:right].to(torch.float64).clamp(0, 1)

    def describe(self) -> str:
        grid = (f"placed centred on a {self.size}x{self.size} grid (zero padding, which is the volume's minimum after "
                "min-max; a centre crop of a box side larger than the grid)" if self.size is not None
                else "kept at its own size")
        return (
            f"**{self.title}.** BraTS `{self.sequence}` volumes: axial slices, all-zero slices dropped, in-plane crop "
            "to the volume's non-zero box, clip to mean +- 6 std of the non-zero voxels, min-max to [0, 1]; the box "
            f"{grid}. Noiseless single-coil Cartesian k-space (centred orthonormal FFT) of the real image (complex "
            f"dtype), column masks `{self.pattern}` (equispaced columns with a fully sampled low-frequency block; "
            "centre fraction 0.08 at 4x, 0.04 at 8x, 0.32 / R otherwise; seeded from the case name as fastMRI seeds "
            "from file names; the measured sampled fraction is in summary.json). PSNR and SSIM (7x7 uniform "
            "window) with data range 1 on magnitudes clipped to [0, 1], over the box region, per slice; the table "
            "gives mean +- std over all evaluated slices of all volumes (population std). Baselines: zero-filled, "
            "TV and L1-wavelet with TUNED_WEIGHTS' closest setting (tuned on 8-coil 256x256 starter slices: "
            "4x weights up to 6x, 8x weights above)."
        )

    def to_dict(self) -> dict:
        return {**super().to_dict(), "size": self.size, "sequence": self.sequence, "pattern": self.pattern}


# --------------------------------------------------------------------------------------------------
# fastMRI (DDS and the fastMRI benchmark)


@dataclass
class FastmriProtocol(Protocol):
    """The fastMRI multi-coil protocol (DDS's table; the fastMRI benchmark's metrics)."""

    name: ClassVar[str] = "fastmri"
    title: ClassVar[str] = "fastMRI multi-coil MRI (DDS, Chung, Lee, Ye 2024; fastMRI evaluation)"
    modality: ClassVar[str] = "MR"
    value_name: ClassVar[str] = "accel"
    default_values: ClassVar[tuple[int, ...]] = (4, 8)
    baselines: ClassVar[tuple[str, ...]] = ("zero_filled", "cg_sense", "l1_wavelet")
    unit: ClassVar[str] = "volume"
    published: ClassVar[tuple[Published, ...]] = (
        Published("4x", "dds", "DDS (99 NFE)", 34.88, 0.954, _DDS,
                  "fastMRI knee, uniform 1D x4 mask; the paper's target (RSS or MVUE) is not recorded with this number"),
        Published("4x", "dds", "DDS (49 NFE, M = 5)", 34.61, None, _DDS),
        Published("4x", "score_sde", "Score-MRI (4000 NFE)", 33.25, None, _DDS),
        Published("4x", "dps", "DPS (1000 NFE)", 30.56, None, _DDS),
        Published("4x, k-space noise 0.05", None, "DDS", 29.47, None, _DDS, "noisy setting, not run by this protocol"),
        Published("4x, k-space noise 0.05", None, "DPS", 24.40, None, _DDS, "noisy setting, not run by this protocol"),
    )

    pattern: str = "equispaced_fraction"

    def __post_init__(self):
        if self.pattern not in COLUMN_PATTERNS:
            raise InputError(f"fastMRI masks are column masks: pattern must be one of {COLUMN_PATTERNS}, got {self.pattern!r}")

    def setting_label(self, value: int) -> str:
        return f"{value}x"

    def settings(self, values=None) -> list[int]:
        out = super().settings(values)
        bad = [v for v in out if v not in FASTMRI_CENTER_FRACTIONS]
        if bad:
            raise InputError(f"the fastMRI protocol has accelerations {sorted(FASTMRI_CENTER_FRACTIONS)}, got --accel {bad[0]}")
        return out

    def load(self, root, *, limit: int | None = None):
        return fastmri_volumes(root, limit=limit)

    @torch.no_grad()
    def build(self, item, value: int, *, slices: int | None = None) -> Case:
        total = int(item.kspace.shape[0])
        index = evenly_spaced(total, slices)
        kspace = item.kspace[index]
        mask = item.mask(value, pattern=self.pattern)  # fastmri_mask(fname, shape, accel, padding=...)
        measured = kspace * mask.to(kspace.real.dtype)
        h, w = measured.shape[-2:]
        calib = min(24, h, w)
        maps = espirit_maps(measured, calib_width=calib)
        problem = problem_from_kspace(measured, maps, mask, noisy=True)
        target = item.target[index].to(torch.float32)
        columns = torch.nonzero(mask[0] > 0).flatten().tolist()
        acquisition = {"kind": "mr", "file": item.fname,
                       "sampling": {"pattern": self.pattern, "acceleration": value, "seed": item.fname,
                                    "padding": list(item.padding)},
                       "sampled_columns": columns, "sampled_fraction": sampled_fraction(mask),
                       "coil_maps": f"ESPIRiT (sigpy, calib_width {calib}) on the undersampled k-space",
                       "scale": problem.scale, "target": "reconstruction_rss", "max_value": item.max_value}
        problem.description["acquisition"] = acquisition
        return Case(item.name, self.setting_label(value), value, problem, target, index, total, float(item.max_value),
                    acquisition, {"max_value": float(item.max_value), "mask": mask})

    def scored(self, case: Case, image: torch.Tensor) -> torch.Tensor:
        image = image.detach().cpu()
        magnitude = (image.abs() if image.is_complex() else image).to(torch.float64) * case.problem.scale
        return center_crop(magnitude, tuple(case.reference.shape[-2:]))

    def score(self, case: Case, image: torch.Tensor) -> Scores:
        """The ``fastmri`` protocol on the whole volume (data range = the target volume's max). On a
        subset of slices (``--slices``) the same formulas with the file's ``max`` (the whole
        volume's), which the subset's own maximum would not be."""
        recon = self.scored(case, image)
        if case.slices == case.total_slices:
            return score(recon, case.reference, "fastmri")
        return score(recon, case.reference, "fastmri", data_range=case.private["max_value"])

    def describe(self) -> str:
        return (
            f"**{self.title}.** Multi-coil HDF5 files (`root/*.h5`); per file and acceleration the `{self.pattern}` "
            "column mask of fastMRI (centre fraction 0.08 at 4x, 0.04 at 8x), seeded from the file name exactly as "
            "the `fastmri` package does, zero outside the acquired columns; coil maps by ESPIRiT (sigpy) on the "
            "undersampled k-space; k-space divided by the 99.5th percentile of the zero-filled magnitude "
            "(problem_from_kspace). **Target: RSS** (`reconstruction_rss`); reconstructions: magnitude times that "
            "scale, centre-cropped to the target. Metrics: fastmri_metrics: NMSE and PSNR per volume with data "
            "range = the volume max, SSIM per slice (7x7 uniform window, K1 0.01, K2 0.03) with the same data range, "
            "averaged over slices; the table gives mean +- std over volumes (population std). Baselines: zero-filled, "
            "CG-SENSE and L1-wavelet with TUNED_WEIGHTS' closest noisy setting (measured k-space is noisy). The "
            "published numbers are DDS's (fastMRI knee, uniform 1D x4); its target (RSS or MVUE, which moves SSIM by "
            "about 0.17) is not restated here: compare SSIM with care."
        )

    def to_dict(self) -> dict:
        return {**super().to_dict(), "pattern": self.pattern}


PROTOCOLS: dict[str, type[Protocol]] = {"lidc": LidcProtocol, "brats": BratsProtocol, "fastmri": FastmriProtocol}
"""The protocols by CLI name (``starter`` is :mod:`medrecon.reproduce.starter`)."""


def make_protocol(name: str, **options) -> Protocol:
    """The protocol ``name`` with its options (``size`` for lidc and brats; ``convention`` for lidc;
    ``sequence`` / ``pattern`` for brats; ``pattern`` for fastmri)."""
    if name not in PROTOCOLS:
        raise InputError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)} (and {STARTER})")
    try:
        return PROTOCOLS[name](**options)
    except TypeError as exc:
        raise InputError(f"protocol {name}: {exc}") from None

