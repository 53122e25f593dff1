"""Volume reconstruction: measurements -> batches of slices -> a sampler over a prior -> a volume.

The one pipeline every entry point uses (``medrecon reconstruct``, ``bench recon``, ``reproduce``,
the Python API):

- A :class:`Problem` holds the per-slice operator on the prior's **normalised** images, the
  measurements ``y`` ``(S, *op.out_shape)`` in the same units, and the affine map back to native
  units (HU for CT, magnitude for MR). :func:`problem_from_acquisition` builds one from a medrecon
  acquisition (CT sinograms of linear attenuation, simulated multi-coil k-space);
  :func:`problem_from_kspace` from raw multi-coil k-space with its coil maps and mask.
- :func:`reconstruct` runs the chosen sampler on batches of ``batch_size`` slices on one device,
  seeding slice ``k``'s generator for posterior sample ``j`` from ``(seed, k, j)`` so that the
  volume is the same whatever the batch size, chunking or number of processes; with ``samples``
  > 1 it returns the posterior mean and the per-pixel standard deviation (the uncertainty map).
  With a volume prior (DDS's ``volume_prior="tv-z"``, DDS-3D) the slices are coupled: the sampler
  gets the whole volume at once, and its network and operator run ``batch_size`` slices at a time,
  so memory is the volume's few state tensors plus one chunk's work.

CT units: the prior's images are ``u = (HU - low) / (high - low)`` (its card's HU window) and a
sinogram holds line integrals of ``mu = mu_water (1 + HU / 1000)``, so
``A u = (y / mu_water - (1 + low / 1000) A 1) * 1000 / (high - low)``: the same operator acts on
``u``, and the data are shifted and scaled (exactly; the shift vanishes for ``low = -1000``).
MR units: simulated k-space is that of the image divided by the acquisition's ``scale`` (the
volume's 99.5th magnitude percentile, the prior's normalisation), so it is used as it is; raw
k-space is divided by an estimated scale (the 99.5th percentile of the zero-filled volume's
magnitude, stated in the result).

A problem built here records that map (``description["normalisation"]``, a
:class:`~medrecon.priors.normalisation.Normalisation` dict, ``chosen`` where the caller gave the
window or scale). :func:`check_prior_fits` refuses a prior whose card states another normalisation
(a published prior trained on per-volume min-max images is not fed HU-windowed ones), and a CT
prior whose card leaves the window to the user (``user-choice``) on a problem whose window nobody
chose: the HU window is never applied by accident. A VE score prior (``ve_score``) runs the
geometric schedules (score-SDE, DiffusionMBIR) over its own card's noise range, as its authors
sampled it, unless the options say otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import sys
import time
import types
from dataclasses import dataclass, field

import numpy as np
import torch

from medrecon.acquisition import slice_seed
from medrecon.batching import CPU_BATCH, cpu_batch_size, memory_plan, network_denoiser, sampler_bytes_per_slice
from medrecon.errors import InputError, positive_int
from medrecon.grid import centre_block, crop_or_pad_kspace
from medrecon.multiresolution import CoarseGridDenoiser
from medrecon.operators import CTProjector, MultiCoilMRI, NonCartesianMRI
from medrecon.operators.base import SliceChunkedOperator, real_dtype_of
from medrecon.operators.coils import noncartesian_espirit_maps
from medrecon.operators.nufft import density_compensation
from medrecon.priors.denoiser import PhaseAlignedDenoiser, TwoChannelDenoiser, low_resolution_phase
from medrecon.priors.execution import NetworkExecution, executed_network, with_execution
from medrecon.priors.hub import load_prior
from medrecon.priors.latent import LatentPrior
from medrecon.priors.normalisation import CT_WINDOW, Normalisation
from medrecon.samplers.presets import ADAPTER_OPTIONS, adapter_settings, sampler_settings, task_name
from medrecon.samplers.registry import DEFAULT_SAMPLER, sampler_names, sampler_spec
from medrecon.samplers.tv_z import check_tv_z

PERCENTILE = 99.5


@dataclass
class Problem:
    """One volume's reconstruction problem in the prior's normalised units.

    ``op``: per-slice operator on images ``(B, *op.in_shape)`` (it may hold per-slice data such as
    coil maps; :meth:`~medrecon.operators.base.LinearOperator.batch_slice` selects them).
    ``y``: measurements ``(S, *op.out_shape)``. Native units are ``offset + scale * u`` (CT) or
    ``scale * |u|`` (MR magnitude). ``noisy`` picks the sampler presets' noisy variant. ``phase``
    (MR, optional): the images' smooth phase ``(S, 1, H, W)`` in radians where it is known; a real
    prior is then applied along it instead of along the phase estimated from the k-space centre.
    ``grid`` (a :class:`~medrecon.grid.GridMap`): the operator's images are on a reconstruction grid
    other than the study's; :meth:`to_native` and :meth:`std_to_native` map results back to the
    study's grid.
    """

    op: object
    y: torch.Tensor
    modality: str
    noisy: bool
    scale: float = 1.0
    offset: float = 0.0
    description: dict = field(default_factory=dict)
    phase: torch.Tensor | None = None
    grid: object | None = None  # a medrecon.grid.GridMap when the images are on another grid than the study's

    def __post_init__(self):
        self.modality = str(self.modality).upper()
        if self.modality not in ("CT", "MR"):
            raise InputError(f"modality must be CT or MR, got {self.modality!r}")
        if not isinstance(self.y, torch.Tensor) or tuple(self.y.shape[1:]) != tuple(self.op.out_shape):
            got = tuple(self.y.shape) if isinstance(self.y, torch.Tensor) else type(self.y).__name__
            raise InputError(f"measurements must be (S, *{tuple(self.op.out_shape)}) for {self.op.name}, got {got}")
        if self.phase is not None and tuple(self.phase.shape) != (self.slices, *self.op.in_shape):
            raise InputError(f"phase must be (S, *{tuple(self.op.in_shape)}) radians, got {tuple(self.phase.shape)}")

    @property
    def slices(self) -> int:
        return int(self.y.shape[0])

    def to_native(self, u: torch.Tensor) -> torch.Tensor:
        """Normalised images ``(S, 1, h, w)`` -> native ``(S, H, W)`` float32 (HU, or MR magnitude) on
        the study's grid."""
        v = u[:, 0]
        v = v.abs() if v.is_complex() else v
        return self._to_study_grid((self.offset + self.scale * v.float()).cpu())

    def std_to_native(self, std: torch.Tensor) -> torch.Tensor:
        """A standard deviation in normalised units -> native units ``(S, H, W)`` on the study's grid."""
        return self._to_study_grid((abs(self.scale) * std[:, 0].float()).cpu())

    def on_study_grid(self, u: torch.Tensor) -> torch.Tensor:
        """Normalised images ``(S, 1, h, w)`` on the operator's grid -> ``(S, 1, H, W)`` on the study's."""
        return u if self.grid is None else self.grid.to_input(u[:, 0].cpu())[:, None]

    def _to_study_grid(self, images: torch.Tensor) -> torch.Tensor:
        return images if self.grid is None else self.grid.to_input(images)


def problem_from_acquisition(acquisition, measurements: torch.Tensor, *, window: tuple[float, float] | None = None,
                             grid=None) -> Problem:
    """The :class:`Problem` of measurements simulated (or recorded) under a medrecon acquisition.

    CT: ``measurements`` ``(S, 1, n_angles, n_det)`` line integrals; ``window`` (low, high) HU is the
    prior's window (default: the starter priors' [-1000, 2000]). MR: ``(S, coils, H, W)`` k-space
    of the image divided by ``acquisition.scale``. ``grid`` (a :class:`~medrecon.grid.GridMap` of
    the study the data were acquired from): reconstruct on its ``size x size`` grid instead (CT: the
    same rays through a square field of view of that many pixels; MR: the central block of the
    k-space; :mod:`medrecon.grid`), the results mapped back by :meth:`Problem.to_native`.
    """
    measurements = torch.as_tensor(measurements)
    grid = None if grid is None or grid.identity else grid
    if acquisition.kind == "ct":
        low, high = window or CT_WINDOW
        op = acquisition.operator()
        if grid is not None:

            op = CTProjector(dataclasses.replace(op.geometry, image_shape=(grid.size, grid.size), pixel_size=grid.pixel_mm))
        y = measurements.to(torch.float32)
        offset_term = (1 + low / 1000.0)
        if offset_term != 0:
            y = y / acquisition.mu_water_per_mm - offset_term * op(torch.ones((1, *op.in_shape), dtype=y.dtype))
        else:
            y = y / acquisition.mu_water_per_mm
        y = y * (1000.0 / (high - low))
        noisy = acquisition.noise != "none"
        normalisation = {"kind": "hu-window", "low": float(low), "high": float(high), "chosen": window is not None}
        return Problem(op, y, "CT", noisy, scale=high - low, offset=low, grid=grid, description=_described(
            {"units": f"HU = {low} + {high - low} u", "acquisition": acquisition.to_dict(), "normalisation": normalisation}, grid))
    y = measurements.to(torch.complex64)
    if acquisition.non_cartesian:
        if grid is not None:
            raise InputError("non-Cartesian k-space is reconstructed on its own image grid: resample the study "
                             "before simulating (its trajectory fixes the reconstruction size)")
        op = acquisition.operator()
        return Problem(op, y, "MR", acquisition.noise_sigma > 0, scale=acquisition.scale, description={
            "units": f"magnitude = {acquisition.scale:.6g} |u|", "acquisition": acquisition.to_dict(),
            "normalisation": _MR_NORMALISATION})
    shape = tuple(measurements.shape[-2:])
    if grid is None:
        op = acquisition.operator(shape)
    else:
        if shape != grid.square_shape:
            raise InputError(f"k-space {shape[0]}x{shape[1]} is not that of the grid's padded study {grid.square_shape}")
        mask = centre_block(acquisition.mask(shape).to(torch.float32), grid.size)
        op = MultiCoilMRI(acquisition.coil_maps((grid.size, grid.size)), mask)
        y = crop_or_pad_kspace(y, grid.size) * mask
    return Problem(op, y, "MR", acquisition.noise_sigma > 0, scale=acquisition.scale, grid=grid, description=_described(
        {"units": f"magnitude = {acquisition.scale:.6g} |u|", "acquisition": acquisition.to_dict(),
         "normalisation": _MR_NORMALISATION}, grid))


_MR_NORMALISATION = {"kind": "volume-percentile", "percentile": PERCENTILE, "chosen": False}


def _described(description: dict, grid) -> dict:
    if grid is not None:
        description["grid"] = grid.to_dict()
    return description


@torch.no_grad()
def problem_from_kspace(kspace: torch.Tensor, coil_maps: torch.Tensor, mask: torch.Tensor, *, noisy: bool = True,
                        scale: float | None = None) -> Problem:
    """Raw multi-coil k-space ``(S, coils, H, W)`` with coil maps ``(S or 1, coils, H, W)`` and a
    mask ``(H, W)`` or ``(W,)``. ``scale`` None: the 99.5th percentile of the zero-filled volume's
    magnitude (measured data are noisy, hence ``noisy`` True by default)."""
    kspace = torch.as_tensor(kspace).to(torch.complex64)
    given = scale is not None
    if kspace.ndim != 4:
        raise InputError(f"multi-coil k-space must be (S, coils, H, W), got {tuple(kspace.shape)}")
    op = MultiCoilMRI(torch.as_tensor(coil_maps).to(torch.complex64), torch.as_tensor(mask))
    if scale is None:
        magnitude = torch.cat([op.batch_slice(slice(i, i + 1)).adjoint(kspace[i : i + 1]).abs().cpu()
                               if op.coil_maps.shape[0] > 1 else op.adjoint(kspace[i : i + 1]).abs().cpu()
                               for i in range(kspace.shape[0])])
        scale = float(np.percentile(magnitude.numpy(), PERCENTILE))
        if not scale > 0:
            raise InputError("the zero-filled volume is empty (99.5th percentile 0): cannot normalise the k-space")
    return Problem(op, kspace / scale, "MR", noisy, scale=scale,
                   description={"units": f"magnitude = {scale:.6g} |u|", "scale": "p99.5 of the zero-filled magnitude",
                                "normalisation": {**_MR_NORMALISATION, "chosen": given}})


@torch.no_grad()
def problem_from_noncartesian(data, *, noisy: bool = True, scale: float | None = None) -> Problem:
    """Raw non-Cartesian k-space (a :class:`~medrecon.io.noncartesian.NonCartesianData`: k-space
    ``(S, coils, K)``, coordinates ``(K, 2)``, image shape, optional coil maps and density weights)
    as a :class:`Problem`. Missing coil maps are estimated from the k-space centre
    (:func:`~medrecon.operators.coils.noncartesian_espirit_maps`); missing density weights are
    Pipe-Menon's. ``scale`` None: the 99.5th percentile of the density-compensated gridding's
    magnitude (measured data are noisy, hence ``noisy`` True by default)."""
    kspace = torch.as_tensor(data.kspace).to(torch.complex64)
    shape = tuple(int(s) for s in data.image_shape)
    density = data.density if data.density is not None else density_compensation(data.coords, shape)
    maps = data.coil_maps
    estimated = maps is None and kspace.shape[1] > 1
    if estimated:
        maps = noncartesian_espirit_maps(kspace, data.coords, shape, density=density)
    op = NonCartesianMRI(data.coords, shape, None if maps is None else torch.as_tensor(maps).to(torch.complex64), density=density)
    given = scale is not None
    if scale is None:
        magnitude = torch.cat([(op.batch_slice(slice(i, i + 1)) if op.batch_size else op).gridding(kspace[i : i + 1]).abs()
                               for i in range(kspace.shape[0])])
        scale = float(np.percentile(magnitude.numpy(), PERCENTILE))
        if not scale > 0:
            raise InputError("the gridded volume is empty (99.5th percentile 0): cannot normalise the k-space")
    description = {"units": f"magnitude = {scale:.6g} |u|", "scale": "p99.5 of the gridded magnitude",
                   "normalisation": {**_MR_NORMALISATION, "chosen": given},
                   "coil_maps": "estimated (ESPIRiT on the gridded k-space centre)" if estimated else
                   ("given" if maps is not None else "single coil")}
    return Problem(op, kspace / scale, "MR", noisy, scale=scale, description=description)


@dataclass
class Reconstruction:
    """A reconstructed volume in the prior's normalised units.

    ``mean`` ``(S, 1, H, W)`` (complex for MR operators), ``std`` ``(S, 1, H, W)`` the per-pixel
    standard deviation over ``samples`` posterior samples (of the magnitude for complex images; None
    for one sample). ``nfe``: network evaluations per slice and sample. ``seconds``: wall time;
    ``peak_memory_bytes``: CUDA peak allocation on a GPU, else the process's peak resident size.
    ``ranks``: None for one process; for a volume sharded over processes (:func:`medrecon.distributed.reconstruct_sharded`)
    one summary per rank, and then ``seconds`` and ``peak_memory_bytes`` are the largest rank's.
    ``run``: how the run went, which may differ between runs of the same settings (and between
    ranks): ``batch_size`` and the network's ``first_call_seconds`` per batch shape (the compile
    time when compiled); for ``batch_size="auto"``, ``memory_plan``: on a GPU :meth:`~medrecon.batching.MemoryPlan.to_dict`
    (the network's and the sampler's bytes per slice, the fixed bytes, the free memory and its share),
    on the CPU the rule of :func:`cpu_batch_size` with the sampler's bytes per slice.
    """

    mean: torch.Tensor
    std: torch.Tensor | None
    samples: int
    nfe: int
    seconds: float
    peak_memory_bytes: int
    settings: dict
    device: str
    ranks: list | None = None
    run: dict = field(default_factory=dict)

    @property
    def seconds_per_slice(self) -> float:
        return self.seconds / max(1, self.mean.shape[0])

    def summary(self) -> dict:
        out = {"settings": self.settings, "samples": self.samples, "nfe_per_slice_and_sample": self.nfe,
               "seconds": round(self.seconds, 3), "seconds_per_slice": round(self.seconds_per_slice, 4),
               "peak_memory_bytes": self.peak_memory_bytes, "device": self.device, "run": self.run}
        if self.ranks is not None:
            out["world_size"] = len(self.ranks)
            out["ranks"] = self.ranks
        return out


def _trained_noise_range(settings, card, options: dict):
    """A VE score prior's geometric schedule (score-SDE, DiffusionMBIR) spans its card's noise range
    ``sigma_max`` -> ``sigma_min``, as its authors sampled it, where the options do not set them."""
    schedule = card.schedule or {}
    if card.parameterisation != "ve_score" or settings.schedule != "geometric":
        return settings
    changes = {k: float(schedule[k]) for k in ("sigma_max", "sigma_min") if k in schedule and k not in options}
    return dataclasses.replace(settings, **changes) if changes else settings


class _CountingDenoiser(torch.nn.Module):
    """Counts calls of a denoiser (one call on a batch = one NFE for each of its items)."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x, sigma):
        self.calls += 1
        return self.inner(x, sigma)

    def denoise(self, x, sigma):
        return self.forward(x, sigma)


class Progress:
    """A one-line progress report on stderr: slices done, the current step and the ETA."""

    def __init__(self, total_slices: int, steps: int, samples: int, *, enabled: bool | None = None, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = total_slices * samples
        self.steps, self.samples = steps, samples
        self.done = 0
        self.t0 = time.perf_counter()
        self._last = 0.0

    def step(self, batch: int, i: int) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self._last < 0.5 and i + 1 < self.steps):
            return
        self._last = now
        work_done = self.done + batch * (i + 1) / self.steps
        eta = (now - self.t0) / work_done * (self.total - work_done) if work_done > 0 else float("nan")
        self.stream.write(f"\rslices {self.done}/{self.total} | step {i + 1}/{self.steps} | ETA {_duration(eta)}   ")
        self.stream.flush()

    def batch_done(self, batch: int) -> None:
        self.done += batch
        if self.enabled and self.done >= self.total:
            self.stream.write(f"\rslices {self.done}/{self.total} | done in {_duration(time.perf_counter() - self.t0)}          \n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def check_prior_fits(prior, problem: Problem, sampler: str, *, other_size: bool = False,
                     multiresolution: bool = False) -> None:
    """Refuse a prior of the wrong modality or image size, or a latent prior for a pixel sampler.
    ``other_size``: a pixel prior may run at another image size (its UNet is fully convolutional)
    where each side is divisible by its downsampling (the CLI's ``--grid input``).
    ``multiresolution``: the operator's square images are a finer grid of the prior's field of view,
    the prior runs on its own grid (:mod:`medrecon.multiresolution`, the CLI's ``--grid native``)."""
    card = prior.card
    if card.modality != problem.modality:
        raise InputError(f"the prior {card.name!r} is a {card.modality} prior; the data are {problem.modality}")
    shape = tuple(problem.op.in_shape[-2:])
    if multiresolution:
        if shape[0] != shape[1] or shape[0] < card.image_size:
            raise InputError(f"multi-resolution reconstruction needs square images at least the prior's "
                             f"{card.image_size}x{card.image_size}, got {shape[0]}x{shape[1]}")
        if sampler_spec(sampler).prior == "latent":
            raise InputError(f"{sampler} runs a latent prior, which has no multi-resolution mode: use --grid prior")
    elif other_size and prior.latent is None:
        levels = len(getattr(getattr(prior.network, "config", None), "block_out_channels", ()) or ())
        factor = 2 ** max(levels - 1, 0)
        if any(side % factor for side in shape):
            raise InputError(
                f"the prior {card.name!r} downsamples by {factor}: it cannot run on {shape[0]}x{shape[1]} images "
                f"(use --grid prior, which reconstructs on its {card.image_size}x{card.image_size} grid)"
            )
    elif shape != (card.image_size, card.image_size):
        raise InputError(
            f"the prior {card.name!r} is for {card.image_size}x{card.image_size} images; this operator's images are "
            f"{shape[0]}x{shape[1]} (reconstruct on the prior's grid: medrecon.grid.GridMap, the CLI's --grid prior)"
        )
    check_normalisation(card, problem)
    spec = sampler_spec(sampler)
    if spec.prior == "latent" and prior.latent is None:
        raise InputError(f"{sampler} needs a latent prior (e.g. {spec.default_prior(problem.modality)}), not {card.name!r}")
    if spec.prior == "pixel" and prior.latent is not None:
        latent = ", ".join(sampler_names(prior="latent"))
        raise InputError(f"{sampler} needs a pixel prior, and {card.name!r} is a latent prior (use --sampler {latent})")


def check_normalisation(card, problem: Problem) -> None:
    """Refuse a prior trained on images normalised otherwise than the problem's (module docstring):
    a card stating another map, or a CT card leaving the window to the user (``user-choice``, or a
    card-less folder's ``unknown``) on a problem whose window was not chosen. Problems that do not
    record their normalisation (built by hand, or by a protocol that normalises as its paper did)
    are not checked."""
    recorded = problem.description.get("normalisation") if isinstance(problem.description, dict) else None
    if not recorded:
        return
    stated = dict(card.normalisation or {})
    kind = stated.get("kind", "unknown")
    chosen = bool(recorded.get("chosen"))
    data = Normalisation.from_dict({k: v for k, v in recorded.items() if k != "chosen"})
    if kind in ("user-choice", "unknown"):
        if problem.modality == "CT" and not chosen:
            raise InputError(
                f"the prior {card.name!r} does not state the HU window its images were made with ({kind}: "
                f"{stated.get('note', 'no note')}); these data would get the default window {data.describe()}: choose "
                "the window (--window LOW,HIGH; in Python problem_from_acquisition(window=...)) or use a prior whose card "
                "states it")
        return
    try:
        wanted = Normalisation.from_dict(stated)
    except InputError:
        return  # a card this version cannot read: its maps are not compared
    if not wanted.same_map(data) and not (wanted.kind == "volume-minmax" and chosen and data.kind == "hu-window"):
        raise InputError(
            f"the prior {card.name!r} was trained on images normalised as {wanted.describe()}"
            f"{' (' + wanted.note + ')' if wanted.note else ''}; these data are normalised as {data.describe()}: "
            "normalise them as the card says (a CT volume's min-max is the HU window [min, max] of that volume: "
            "problem_from_acquisition(window=...)), or use a prior trained on this normalisation")


def _slice_generators(seed: int, indices, sample: int, device) -> list[torch.Generator]:
    gens = []
    for k in indices:
        g = torch.Generator(device=device) if torch.device(device).type == "cuda" else torch.Generator()
        gens.append(g.manual_seed(slice_seed(seed, int(k), f"posterior-{sample}")))
    return gens


def _batch_model(prior, op_b, y_b, sampler: str, phase=None, imag_std: float = 0.003):
    """``(model, counter)``: what a sampler takes for one batch (complex MR data go through the
    phase adapter, along ``phase`` where it is known, else along the k-space centre's; ReSample
    takes the latent prior) and the call counter of its network."""
    if sampler_spec(sampler).prior == "latent":
        counter = _CountingDenoiser(prior.latent.denoiser)
        return LatentPrior(prior.latent.autoencoder, prior.latent.scaling_factor, counter), counter
    if not op_b.in_complex:
        counter = _CountingDenoiser(prior.denoiser)
    elif prior.card.channels == 2:
        counter = _CountingDenoiser(TwoChannelDenoiser(prior.denoiser))
    else:
        phase = low_resolution_phase(op_b, y_b) if phase is None else phase.to(y_b.device)
        counter = _CountingDenoiser(PhaseAlignedDenoiser(prior.denoiser, phase, imag_std=imag_std))
    return counter, counter


class _ChunkedModel(torch.nn.Module):
    """A denoiser over a whole volume: ``models[k]`` (each with its own slices' adapter data, such as
    the MR phase) denoises the items ``bounds[k]`` of the batch, one chunk per network call."""

    def __init__(self, models, bounds) -> None:
        super().__init__()
        self.models = torch.nn.ModuleList(models)
        self.bounds = list(bounds)

    def forward(self, x, sigma):
        n = x.shape[0]
        per_item = isinstance(sigma, torch.Tensor) and sigma.ndim > 0 and sigma.shape[0] == n

        def part(s):
            return sigma[s] if per_item else sigma

        return torch.cat([m(x[s], part(s)) for m, s in zip(self.models, self.bounds)])

    def denoise(self, x, sigma):
        return self.forward(x, sigma)


def _volume_model(prior, op, y, sampler: str, phase, adapter: dict, chunk: int):
    """``(model, counter)`` for a whole volume ``y`` ``(S, ...)``: :func:`_batch_model` for each chunk
    of ``chunk`` slices, called chunk by chunk; ``counter`` counts the first chunk's network calls
    (one per step, as for every slice)."""
    bounds = [slice(a, b) for a, b in balanced_blocks(y.shape[0], chunk)]
    parts = [_batch_model(prior, op.batch_slice(s), y[s], sampler, None if phase is None else phase[s], **adapter)
             for s in bounds]
    return _ChunkedModel([m for m, _ in parts], bounds), parts[0][1]


def balanced_blocks(n: int, batch_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the fewest batches of at most ``batch_size`` items covering ``n``, their
    sizes differing by at most one, the larger first (300 at 128: three of 100)."""
    count = -(-n // batch_size)
    size, extra = divmod(n, count)
    blocks, start = [], 0
    for k in range(count):
        stop = start + size + (1 if k < extra else 0)
        blocks.append((start, stop))
        start = stop
    return blocks


@torch.no_grad()
def reconstruct(
    problem: Problem,
    prior,
    *,
    sampler: str = DEFAULT_SAMPLER,
    steps: int | None = None,
    options: dict | None = None,
    samples: int = 1,
    batch_size: int = 8,
    device=None,
    seed: int = 0,
    slice_indices=None,
    progress: bool | None = None,
    other_size: bool = False,
    multiresolution: bool = False,
    execution=None,
) -> Reconstruction:
    """Reconstruct every slice of ``problem`` with ``sampler`` over ``prior``.

    Args:
        problem: a :class:`Problem` (see :func:`problem_from_acquisition`).
        prior: a loaded prior (:func:`medrecon.priors.hub.load_prior`) or a shipped name / folder.
        sampler: a name of :data:`medrecon.samplers.SAMPLERS` (the default, DDS, is the fastest).
        steps, options: override the preset's step count and options (``presets.json``); ``options``
            may also set the prior adapter's ``imag_std`` (complex MR with a real prior).
        samples: posterior samples per slice; > 1 gives the mean and the standard deviation.
        batch_size: at most this many slices per network call (and, with a volume prior, per
            operator call), or ``"auto"``: on a GPU as many as a share of its free memory holds
            (:func:`memory_plan`, recorded in ``run["memory_plan"]``), on the CPU
            :func:`cpu_batch_size` (8). The slices are split into batches of equal size
            (300 slices at 128: three of 100), so a compiled network sees one shape.
        device: ``cuda``/``cpu``/None (CUDA when available).
        seed: slice ``k``'s sample ``j`` draws from a generator seeded by ``(seed, k, j)``.
        slice_indices: the global index of each of the problem's slices (default ``0..S-1``) —
            what makes a shard of a volume reproduce its part of the whole.
        progress: a progress line on stderr (None: when stderr is a terminal).
        other_size: let a pixel prior run at the operator's image size though it was trained at
            another (:func:`check_prior_fits`).
        multiresolution: the operator's images are a finer ``M x M`` grid of the prior's field of
            view: the prior's denoiser runs on its own grid, the rest at ``M x M``
            (:class:`~medrecon.multiresolution.CoarseGridDenoiser`).
        execution: how the network runs (:class:`~medrecon.priors.execution.NetworkExecution`,
            its ``auto`` settings resolved for the network's device; None: all ``auto``, i.e. bf16
            + channels_last + ``torch.compile`` on a GPU, bf16 eager on a CPU with native bf16,
            fp32 eager on other CPUs). The record's ``network`` entry states what ran, with the
            first call's seconds per input shape (the compile time) and, when compiling failed and
            the network ran eagerly, ``run["compile"]`` saying why.
    """
    spec = sampler_spec(sampler)
    samples = positive_int(samples, "samples")
    if batch_size != "auto" and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch sees no CUDA device")
    if isinstance(prior, (str, bytes)) or hasattr(prior, "__fspath__"):
        prior = load_prior(prior, device=device)
    check_prior_fits(prior, problem, sampler, other_size=other_size, multiresolution=multiresolution)
    execution = NetworkExecution() if execution is None else execution
    unexecuted = prior
    prior = with_execution(prior, execution)  # auto settings resolved for the network's device
    executed = executed_network(prior)
    side = int(problem.op.in_shape[-1])
    prior = network_denoiser(prior, side, multiresolution)
    task = task_name(problem.modality, problem.noisy, non_cartesian=getattr(problem.op, "non_cartesian", False))
    options = dict(options or {})
    adapter = {**adapter_settings(task), **{k: options.pop(k) for k in ADAPTER_OPTIONS if k in options}}
    settings = sampler_settings(sampler, task, steps=steps, **options)
    settings = _trained_noise_range(settings, prior.card, options)
    sigmas = settings.sigmas()
    n = problem.slices
    volume = settings.options.get("volume_prior") is not None
    if volume:
        o = settings.options
        check_tv_z(o.get("tv_lam_rel", 0.0), o.get("tv_rho_rel", 1.0), o.get("tv_boundary", "neumann"), n)
    indices = list(range(n)) if slice_indices is None else [int(k) for k in slice_indices]
    if len(indices) != n:
        raise InputError(f"slice_indices has {len(indices)} entries for {n} slices")
    plan = cpu_rule = None
    if batch_size == "auto" and device.type == "cuda":
        plan = memory_plan(unexecuted, problem.op, sampler, execution, device, n, multiresolution=multiresolution,
                           volume=volume, dtype=problem.y.dtype)
        batch_size = plan.batch_size
    elif batch_size == "auto":
        batch_size = cpu_batch_size(n)
        parts = sampler_bytes_per_slice(problem.op, sampler, problem.y.dtype, volume=volume)
        cpu_rule = {"device": "cpu", "batch_size": batch_size, "rule": f"the CPU's {CPU_BATCH} slices (at most the volume's)",
                    "bytes_per_slice": {"sampler": parts["state"] + parts["operator"]}}

    op = problem.op.to(device)
    y_all = problem.y
    if getattr(op, "density_weighted", None) is not None:
        # non-Cartesian data: the samplers see the density-weighted model W^1/2 A, W^1/2 y (its
        # normal operator is well conditioned, so their CG and gradient steps work as on Cartesian data)
        y_all = y_all * op.density.sqrt().to(y_all.real.dtype)
        op = op.density_weighted()
    real = real_dtype_of(y_all.dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    report = Progress(n, len(sigmas), samples, enabled=progress)
    total = value_sum = value_sq = None
    nfe = 0
    t0 = time.perf_counter()
    # slice-wise: independent batches of slices; a volume prior: the whole volume in one sampler call
    # (its operator and network applied batch_size slices at a time)
    blocks = [(0, n)] if volume else balanced_blocks(n, batch_size)
    for j in range(samples):
        for start, stop in blocks:
            y_b = y_all[start:stop].to(device)
            if volume:
                op_b = SliceChunkedOperator(op, batch_size)
                model, counter = _volume_model(prior, op, y_b, sampler, problem.phase, adapter, batch_size)
            else:
                op_b = op.batch_slice(slice(start, stop))
                phase_b = None if problem.phase is None else problem.phase[start:stop]
                model, counter = _batch_model(prior, op_b, y_b, sampler, phase_b, **adapter)
            batch = stop - start

            def callback(i, _x, _batch=batch):
                report.step(_batch, i)

            x = spec(
                model, op_b, y_b, sigmas=sigmas, generator=_slice_generators(seed, indices[start:stop], j, device),
                callback=callback, **settings.options,
            )
            nfe = counter.calls
            report.batch_done(batch)
            x = x.detach().cpu()
            value = (x.abs() if x.is_complex() else x).to(real)  # what the uncertainty map is of
            if total is None:
                total = torch.zeros((n, *x.shape[1:]), dtype=x.dtype)
                value_sum = torch.zeros((n, *x.shape[1:]), dtype=real)
                value_sq = torch.zeros_like(value_sum)
            total[start:stop] += x
            value_sum[start:stop] += value
            value_sq[start:stop] += value**2
    seconds = time.perf_counter() - t0
    mean = total / samples
    std = None
    if samples > 1:  # per pixel, of the value (CT) or magnitude (MR) over the samples
        std = (value_sq / samples - (value_sum / samples) ** 2).clamp_min(0).sqrt()
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    recorded = settings.to_dict()
    if isinstance(prior.denoiser, CoarseGridDenoiser):
        recorded["multiresolution"] = {"images": side, "prior_grid": prior.card.image_size, "resampling": "spectrum crop / zero-pad",
                                       "noise_gain": round(prior.denoiser.gain, 6)}
    recorded["network"] = (executed.execution if executed is not None else NetworkExecution.plain()).to_dict()
    run = {"batch_size": batch_size, "first_call_seconds": dict(executed.first_calls) if executed is not None else {}}
    if plan is not None or cpu_rule is not None:
        run["memory_plan"] = plan.to_dict() if plan is not None else cpu_rule
    if executed is not None and executed.compile_failure is not None:
        run["compile"] = f"failed, ran eagerly: {executed.compile_failure}"
    if adapter and op.in_complex and prior.card.channels == 1 and spec.prior == "pixel":
        recorded["adapter"] = {"phase_aligned": dict(adapter)}
    return Reconstruction(mean, std, samples, nfe, seconds, int(peak), recorded, str(device), run=run)


__all__ = ["Problem", "Progress", "Reconstruction", "balanced_blocks", "check_prior_fits", "problem_from_acquisition",
           "problem_from_kspace", "reconstruct"]


class _CallableModule(types.ModuleType):
    """``medrecon.reconstruct`` names both this module and its function: importing the module sets
    the package attribute to the module, so the module itself calls :func:`reconstruct`."""

    def __call__(self, *args, **kwargs):
        return reconstruct(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
