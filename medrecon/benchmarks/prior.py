"""``medrecon bench prior``: how well a prior denoises validation slices, next to a classical denoiser.

For each ``sigma`` in the list, slices of the validation patient of the prior's modality (the
split of medrecon/data/sources.py; never a training patient) are normalised as the prior's card
says, resampled to its size, noised (``x + sigma n``, per-slice generators) and denoised by
``D(x, sigma)`` and by wavelet soft-thresholding (scikit-image's ``denoise_wavelet``, BayesShrink,
given the true sigma) in the same run; PSNR with data range 1 on images clipped to [0, 1]. A PNG
grid puts unconditional samples (DDIM, 50 Karras steps) under real slices.

A latent prior (ReSample's) is measured where its denoiser works: the validation slices are encoded,
``z = encode(x0) + sigma n`` (sigma in latent units; the latents are scaled to unit variance), and
``decode(D(z, sigma))`` and ``decode(wavelet(z))`` (the classical denoiser on each latent channel) are
compared with ``x0`` in pixels; the autoencoder's round trip ``decode(encode(x0))`` is the ceiling of
both and is reported beside them. Its sample grid is DDIM on latents, decoded.

The contrast-shift check (pixel priors; ``shifts``, default all of :data:`medrecon.contrast.SHIFTS`):
the same table on the validation slices under fixed intensity remappings (gamma 0.5, gamma 2, tissue
inversion), the prior next to the wavelet denoiser, which is contrast-agnostic; a prior that learned
only its training contrast falls back towards it there.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medrecon.benchmarks import report
from medrecon.benchmarks.common import bench_device, machine_line, markdown_table, wall_time
from medrecon.contrast import SHIFTS, remap
from medrecon.data import load_starter
from medrecon.data.sources import validation_sources
from medrecon.errors import InputError
from medrecon.evaluation.scoring import score
from medrecon.io.atomic import atomic_output
from medrecon.metrics import psnr
from medrecon.priors.hub import load_prior
from medrecon.priors.normalisation import Normalisation, resample_slices
from medrecon.samplers.ddim import sample_ddim
from medrecon.samplers.schedules import karras_sigmas

DEFAULT_SIGMAS = (0.05, 0.1, 0.2, 0.5)


def validation_slices(prior, *, starter: str | None, n_slices: int) -> tuple[torch.Tensor, str]:
    """``(n, 1, size, size)`` normalised validation slices and the source id they came from."""
    sources = validation_sources(prior.card.modality)
    if not sources:
        raise InputError(f"no validation source for modality {prior.card.modality}")
    source = sources[0]
    study = load_starter(source.id, starter)
    normalised = Normalisation.from_dict(prior.card.normalisation).apply(study.voxels)
    depth = normalised.shape[0]
    index = np.unique(np.round(np.linspace(0.2, 0.8, n_slices) * (depth - 1)).astype(int))
    return resample_slices(normalised[index], prior.card.image_size), source.id


def wavelet_denoise(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    from skimage.restoration import denoise_wavelet

    out = [denoise_wavelet(s[0].double().numpy(), sigma=sigma, method="BayesShrink", mode="soft") for s in noisy]
    return torch.from_numpy(np.stack(out))[:, None].to(noisy.dtype)


def _psnr(x: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean per-slice PSNR (:func:`~medrecon.evaluation.scoring.score`'s ``slice`` protocol)."""
    return score(x, clean, "slice").psnr


def _per_slice_noise(shape, n: int, seed: int) -> torch.Tensor:
    gens = [torch.Generator().manual_seed(seed * 1000 + k) for k in range(n)]
    return torch.stack([torch.randn(shape, generator=g) for g in gens])


@torch.no_grad()
def latent_denoising_table(prior, clean: torch.Tensor, sigmas, *, seed: int = 0) -> tuple[list[dict], float]:
    """Rows as :func:`denoising_table` for a latent prior (see the module docstring) and the PSNR of
    the autoencoder's round trip ``decode(encode(x0))``."""
    latent = prior.latent
    z0 = latent.encode(clean)
    round_trip = _psnr(latent.decode(z0), clean)
    rows = []
    for sigma in sigmas:
        noisy = z0 + sigma * _per_slice_noise(z0.shape[1:], z0.shape[0], seed)
        seconds, ours = wall_time(lambda: latent.decode(latent.denoise(noisy, sigma)))
        classical = torch.stack([wavelet_denoise(item[:, None], sigma)[:, 0] for item in noisy])
        rows.append({"sigma": sigma, "noisy": _psnr(latent.decode(noisy), clean), "prior": _psnr(ours, clean),
                     "wavelet": _psnr(latent.decode(classical), clean), "prior_seconds_per_slice": seconds / clean.shape[0]})
    return rows, round_trip


@torch.no_grad()
def denoising_table(prior, clean: torch.Tensor, sigmas, *, seed: int = 0) -> list[dict]:
    rows = []
    for sigma in sigmas:
        gens = [torch.Generator().manual_seed(seed * 1000 + k) for k in range(clean.shape[0])]
        noise = torch.stack([torch.randn(clean.shape[1:], generator=g) for g in gens])
        noisy = clean + sigma * noise
        device = next(prior.network.parameters()).device
        seconds, ours = wall_time(lambda: prior.denoiser(noisy.to(device), sigma).clamp(0, 1).cpu(), device)
        classical = wavelet_denoise(noisy, sigma).clamp(0, 1)
        rows.append({
            "sigma": sigma,
            "noisy": float(psnr(noisy.clamp(0, 1), clean, data_range=1.0).mean()),
            "prior": float(psnr(ours, clean, data_range=1.0).mean()),
            "wavelet": float(psnr(classical, clean, data_range=1.0).mean()),
            "prior_seconds_per_slice": seconds / clean.shape[0],
        })
    return rows


@torch.no_grad()
def sample_grid(prior, clean: torch.Tensor, path: Path, *, n: int = 8, steps: int = 50, seed: int = 0) -> None:

    size = prior.card.image_size
    device = next(prior.network.parameters()).device
    gens = [torch.Generator().manual_seed(seed + k) for k in range(n)]
    sigmas = karras_sigmas(steps, 0.002, 80.0)
    if prior.latent is not None:
        side = size // prior.latent.downsampling
        z = sample_ddim(prior.denoiser, (n, prior.latent.latent_channels, side, side), sigmas, generator=gens)
        samples = prior.latent.decode(z)
    else:
        samples = sample_ddim(prior.denoiser, (n, prior.card.channels, size, size), sigmas, generator=gens, device=device).cpu()
    real = clean[:n]
    rows = [torch.cat(list(real[:, 0]), dim=1), torch.cat(list(samples[:, 0].clamp(0, 1)), dim=1)]
    width = max(r.shape[1] for r in rows)
    canvas = torch.zeros(2 * size, width)
    for i, r in enumerate(rows):
        canvas[i * size : (i + 1) * size, : r.shape[1]] = r
    with atomic_output(path, overwrite=True, suffix=".png") as tmp:
        Image.fromarray(np.uint8(np.round(255 * canvas.numpy()))).save(tmp)


def shift_markdown(shift_rows: dict) -> list[str]:
    """The contrast-shift table: one row per shift and sigma."""
    if not shift_rows:
        return []
    cells = [[shift, f"{r['sigma']:g}", f"{r['noisy']:.2f}", f"{r['prior']:.2f}", f"{r['wavelet']:.2f}",
              f"{r['prior'] - r['wavelet']:+.2f}"] for shift, rows in shift_rows.items() for r in rows]
    table = markdown_table(["shift", "sigma", "noisy", "prior D(x, sigma)", "wavelet (BayesShrink)", "prior - wavelet"], cells)
    return ["", "Contrast shift (the same validation slices remapped, `medrecon.contrast`; PSNR in dB):", "",
            *table.rstrip("\n").split("\n")]


def to_markdown(prior, rows: list[dict], source_id: str, n_slices: int, grid: str | None, command: str,
                round_trip: float | None = None, shift_rows: dict | None = None) -> str:
    latent = round_trip is not None
    what = (["latent sigma", "decode(noisy) PSNR", "decode(D(z, sigma))", "decode(wavelet(z))", "prior s/slice"] if latent
            else ["sigma", "noisy PSNR", "prior D(x, sigma)", "wavelet (BayesShrink)", "prior s/slice"])
    lines = [
        f"## Prior `{prior.card.name}` (`medrecon bench prior`)",
        "",
        f"- Command: `{command}`",
        f"- Date: {_dt.datetime.now(_dt.UTC):%Y-%m-%d %H:%M} UTC; machine: "
        f"{machine_line(next(prior.network.parameters()).device)}",
        f"- Data: {n_slices} slices of the validation patient {source_id}, {prior.card.image_size}x{prior.card.image_size}, "
        f"normalised as the card says ({prior.card.normalisation}); training: {prior.card.training.get('summary', 'see the card')}",
        "",
    ]
    if latent:
        lines += [f"Latent prior: noise is added to the encoded validation slices and everything is decoded and compared "
                  f"with the slices in pixels (module docstring); the autoencoder's round trip decode(encode(x0)) "
                  f"reaches {round_trip:.2f} dB, the ceiling of every column.", ""]
    cells = [[f"{r['sigma']:g}", f"{r['noisy']:.2f}", f"{r['prior']:.2f}", f"{r['wavelet']:.2f}", f"{r['prior_seconds_per_slice']:.3f}"]
             for r in rows]
    lines += markdown_table(what, cells).rstrip("\n").split("\n")
    lines += shift_markdown(shift_rows or {})
    if grid:
        lines += ["", f"Unconditional samples (DDIM, 50 steps; bottom) under real validation slices (top): `{grid}`"]
    return "\n".join(lines) + "\n"


def run_prior_bench(prior_name: str, *, starter: str | None = None, n_slices: int = 8, sigmas=(0.05, 0.1, 0.2, 0.5),
                    grid: str | None = None, write: str | None = None, seed: int = 0, shifts=None, device: str = "cpu",
                    command: str | None = None) -> str:
    """Denoising rows of a prior (and its contrast-shift rows, and a sample grid); prints the
    Markdown section and writes it into ``write``'s ``prior:NAME`` section where asked. Returns the text."""
    shifts = list(SHIFTS) if shifts is None else [s for s in shifts if s != "none"]
    for shift in shifts:
        remap(torch.zeros(1), shift)  # an unknown name is refused before any work
    device = bench_device(device)
    prior = load_prior(prior_name, device=device)
    if write:
        report.check_write_target(write, f"prior:{prior.card.name}")
    clean, source_id = validation_slices(prior, starter=starter, n_slices=n_slices)
    round_trip = None
    if prior.latent is not None:
        rows, round_trip = latent_denoising_table(prior, clean, sigmas, seed=seed)
    else:
        rows = denoising_table(prior, clean, sigmas, seed=seed)
    shift_rows = {} if prior.latent is not None else {s: denoising_table(prior, remap(clean, s), sigmas, seed=seed) for s in shifts}
    if grid:
        sample_grid(prior, clean, Path(grid), seed=seed)
    command = command or (f"medrecon bench prior {prior_name}" + (f" --grid {grid}" if grid else "")
                          + (f" --write {write}" if write else "")
                          + ("" if shifts == list(SHIFTS) else f" --shifts {' '.join(shifts) or 'none'}"))
    text = to_markdown(prior, rows, source_id, clean.shape[0], grid, command, round_trip, shift_rows)
    print(text)
    if write:
        report.write_section(write, text, f"prior:{prior.card.name}")
    return text
