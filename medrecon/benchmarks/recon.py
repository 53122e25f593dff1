"""``medrecon bench recon``: every sampler next to every classical baseline, same slices, same run.

Protocol (docs/benchmarks.md; the settings, baselines and scores are :mod:`medrecon.evaluation`'s):

- Slices: ``--slices`` (default 8) evenly spaced through the middle 60% of the validation volume
  of each modality (ct-lung1, mr-brain2; never a training patient), normalised as the prior's card
  says (CT HU window [-1000, 2000] -> [0, 1]; MR magnitude / the volume's 99.5th percentile) and
  resampled to the prior's size. Everything runs in these normalised units.
- Settings: CT 23 views parallel beam (uniform), CT 60 views fan beam (full scan), MR 8 simulated
  coils (smooth phase) with ``equispaced_fraction`` masks at 4x and 8x, each noiseless and noisy
  (the non-Cartesian MR settings, radial 48 golden-angle spokes and a 16-interleave spiral through
  the NUFFT, noiseless only; noise: CT Gaussian, std 1% of each slice's clean sinogram maximum;
  MR complex Gaussian 0.02 per complex value of the orthonormal k-space). Slice ``k``'s noise, phase and sampler draws are
  seeded from ``(seed, k)``.
- Baselines with the weights of ``TUNED_WEIGHTS`` (chosen on training patients; the fan-beam rows
  use the 60-view parallel-beam weights), samplers with their task presets (``presets.json``).
  Methods of 500 NFE or more (DPS, score-SDE, ReSample at their published step counts) run on
  ``--long-slices`` slices (default 2) and at ``--long-steps`` steps on the CPU; every row states
  its slices and NFE.
- Contrast shift (``--contrast SHIFT ...``): the selected settings again on the same slices under
  fixed intensity remappings (:mod:`medrecon.contrast`: gamma 0.5 / 2, tissue inversion), rows
  named "..., contrast SHIFT"; the baselines, which know no contrast, are the reference there.
- Metrics: :func:`medrecon.evaluation.scoring.score`'s ``volume`` protocol (PSNR per volume, data
  range 1, magnitudes for MR, clipped to [0, 1]; SSIM per slice averaged); seconds per slice, NFE
  per slice, peak memory (CUDA peak allocation, or the process's peak resident size on the CPU — a
  process-wide high-water mark, so it only grows down a table).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medrecon.benchmarks import report
from medrecon.benchmarks.common import bench_device, markdown_table, peak_memory, run_header
from medrecon.contrast import remap
from medrecon.data import load_starter
from medrecon.data.sources import get_source, validation_sources
from medrecon.errors import InputError
from medrecon.evaluation.baselines import table_baselines
from medrecon.evaluation.scoring import score
from medrecon.evaluation.settings import SETTINGS, Setting, coarse_problem, evaluation_slices, make_problem, matrix_slices, selected
from medrecon.grid import GridMap
from medrecon.priors.hub import load_prior
from medrecon.reconstruct import Problem, reconstruct
from medrecon.samplers.registry import SAMPLERS, sampler_names


def _scores(image: torch.Tensor, reference: torch.Tensor) -> dict:
    s = score(image, reference, "volume")
    return {"psnr": s.psnr, "ssim": s.ssim}


def run_setting(setting: Setting, images: torch.Tensor, priors: dict, samplers: list[str], *, seed: int, device,
                batch_size: int, long_slices: int, long_steps: int | None, on_gpu: bool, log=print,
                compare: dict | None = None) -> list[dict]:
    """All methods on one setting: a list of table rows. ``priors``: ``{"pixel": prior, "latent":
    prior}`` (a sampler whose kind of prior is missing is skipped). ``compare``: ``{label: pixel
    prior}`` run as well with every pixel-prior sampler on the same problem and seeds, its rows'
    methods labelled ``"SAMPLER [label]"`` (the main pixel prior's rows then say ``[main]``).

    ``images`` of another matrix than a prior's (``--matrix``): the baselines run at the images'
    own grid; a sampler runs on the prior's grid with the result resampled back (``--grid prior``)
    and, with a pixel prior, at the images' grid with the prior on its own (``--grid native``,
    :mod:`medrecon.multiresolution`); a row ``grid ceiling`` scores the reference itself through
    the prior's grid and back."""
    problem, reference = make_problem(setting, images, seed)
    side = int(images.shape[-1])
    rows = []

    def add(method: str, kind: str, image, ref, *, seconds=None, nfe=None, slices=None, peak=None, settings=None):
        rows.append({"setting": setting.name, "method": method, "kind": kind, **_scores(image, ref),
                     "seconds_per_slice": seconds, "nfe": nfe, "slices": slices or problem.slices,
                     "peak_memory_bytes": peak, **({"settings": settings} if settings else {})})
        timing = "" if seconds is None else f"  {seconds:.2f} s/slice" + ("" if nfe is None else f", {nfe} NFE")
        log(f"  {setting.name:32s} {method:44s} {rows[-1]['psnr']:6.2f} dB {rows[-1]['ssim']:.3f}{timing}")

    sizes = sorted({p.card.image_size for p in [*priors.values(), *(compare or {}).values()] if p.card.image_size != side})
    for size in sizes:
        grid = GridMap.for_study((side, side), (1.0, 1.0), size)
        add(f"grid ceiling ({size} grid and back)", "ceiling", grid.to_input(grid.to_grid(reference[:, 0], 0.0))[:, None],
            reference)
    tuned_key = setting.tuned_key(side)
    for method in table_baselines(setting.modality, non_cartesian=setting.non_cartesian):
        t0 = time.perf_counter()
        image = method.run(problem.op, problem.y, tuned_key)
        seconds = time.perf_counter() - t0
        add(method.describe(tuned_key) + (f" @{side}" if sizes else ""), "baseline", image, reference,
            seconds=seconds / problem.slices, peak=peak_memory("cpu"))
    runs = [(sampler, priors.get(SAMPLERS[sampler].prior), "main" if compare and SAMPLERS[sampler].prior == "pixel" else None)
            for sampler in samplers]
    runs += [(sampler, prior, label) for label, prior in (compare or {}).items() for sampler in samplers
             if SAMPLERS[sampler].prior == "pixel"]
    for sampler, prior, prior_label in runs:
        if prior is None:
            continue
        sub, ref, steps, indices = problem, reference, None, None
        if SAMPLERS[sampler].long and not on_gpu:
            n = min(long_slices, problem.slices)
            indices = np.unique(np.round(np.linspace(0, problem.slices - 1, n)).astype(int)).tolist()
            sub = Problem(problem.op, problem.y[indices], problem.modality, problem.noisy)
            ref, steps = reference[indices], long_steps
        size = prior.card.image_size
        for grid, label_grid in _grids(size, side, SAMPLERS[sampler].prior):
            run_problem = coarse_problem(sub, size) if grid == "prior" else sub
            result = reconstruct(run_problem, prior, sampler=sampler, steps=steps, samples=1, batch_size=batch_size,
                                 device=device, seed=seed, slice_indices=indices, progress=False,
                                 multiresolution=grid == "native")
            image = result.mean
            if grid == "prior":
                back = GridMap.for_study((side, side), (1.0, 1.0), size)
                image = back.to_input((image.abs() if image.is_complex() else image)[:, 0])[:, None]
            label = sampler if steps is None else f"{sampler} ({result.settings['steps']} steps)"
            label += label_grid + (f" [{prior_label}]" if prior_label else "")
            add(label, "sampler", image, ref, seconds=result.seconds_per_slice, nfe=result.nfe, slices=sub.slices,
                peak=result.peak_memory_bytes, settings=result.settings)
    return rows


def _grids(size: int, side: int, kind: str) -> list[tuple[str, str]]:
    """``(grid, label suffix)`` of the runs of a sampler whose prior is for ``size`` images on images
    of ``side``: the images' own grid where they agree, else the prior's grid and back and, for a
    pixel prior on a finer grid, the multi-resolution run."""
    if size == side:
        return [("input", "")]
    runs = [("prior", f" @{size}->{side} (--grid prior)")]
    if kind == "pixel" and side > size:
        runs.append(("native", f" multi-resolution @{side} (--grid native)"))
    return runs


def load_priors(pixel_name: str, latent_name: str | None, samplers, device) -> dict:
    """``{"pixel": prior, "latent": prior}`` for the samplers asked for (the latent prior only when a
    latent-prior sampler is among them and ``latent_name`` is given)."""
    priors = {"pixel": load_prior(pixel_name, device=device)}
    if latent_name and any(SAMPLERS[s].prior == "latent" for s in samplers):
        priors["latent"] = load_prior(latent_name, device=device)
    return priors


def to_markdown(rows: list[dict], header: dict) -> str:
    """The table, with the command, machine, date, slices and priors stated above it."""
    lines = [
        f"Command: `{header['command']}`  ",
        f"Machine: {header['machine']}; date {header['date']}; total {header['seconds']:.0f} s.  ",
        f"Priors: {header['priors']}.  ",
        f"Slices: {header['slices']}. Baseline weights: `TUNED_WEIGHTS` (training patients); sampler settings: "
        "`presets.json`. Long samplers ran on the CPU on fewer slices and steps where the row says so.",
        "",
    ]
    cells = [[r["setting"], r["method"], f"{r['psnr']:.2f}", f"{r['ssim']:.3f}",
              "-" if r["seconds_per_slice"] is None else f"{r['seconds_per_slice']:.2f}", "-" if r["nfe"] is None else r["nfe"],
              r["slices"], "-" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**20:.0f}"] for r in rows]
    return "\n".join(lines) + "\n" + markdown_table(
        ["setting", "method", "PSNR (dB)", "SSIM", "s / slice", "NFE", "slices", "peak memory (MB)"], cells)


@dataclass(frozen=True)
class ReconBench:
    """What ``medrecon bench recon`` runs (its options; see the module docstring)."""

    modalities: tuple[str, ...] = ("ct", "mr")
    only: tuple[str, ...] | None = None
    samplers: tuple[str, ...] = tuple(sampler_names(slice_wise=True))
    ct_prior: str = "ct-starter"
    mr_prior: str = "mr-starter"
    compare_priors: tuple[str, ...] = ()  # LABEL=PRIOR: more pixel priors in the same run (rows "SAMPLER [LABEL]")
    sources: tuple[str, ...] | None = None  # validation sources (default: the first of each modality)
    ct_latent: str | None = "ct-starter-latent"
    mr_latent: str | None = "mr-starter-latent"
    starter: str | None = None
    slices: int = 8
    long_slices: int = 2
    long_steps: int | None = None
    batch_size: int = 8
    device: str = "auto"
    seed: int = 0
    contrast: tuple[str, ...] | None = None
    matrix: int | None = None  # images of this matrix instead of the prior's (matrix_slices): the native-grid rows
    json: str | None = None
    write: str | None = None
    section: str | None = None


@torch.no_grad()
def run_recon_bench(bench: ReconBench, *, command: str = "medrecon bench recon") -> list[dict]:
    """Run the benchmark; print the table (and write it / its JSON where asked). Returns the rows."""
    section = bench.section or "recon"
    if bench.write:
        report.check_write_target(bench.write, section)
    for shift in bench.contrast or []:
        remap(torch.zeros(1), shift)  # an unknown name is refused before any work
    device = bench_device(bench.device)
    modalities = [m.upper() for m in bench.modalities]
    settings = [s for s in SETTINGS if s.modality in modalities and selected(s.name, bench.only)]
    if not settings:
        raise InputError("no benchmark setting selected")
    sources = _sources(bench.sources, modalities)
    compare = _compare_priors(bench.compare_priors, device)
    t0 = time.perf_counter()
    rows, prior_names, slices_note = [], [], []
    for modality in modalities:
        priors = load_priors(bench.ct_prior if modality == "CT" else bench.mr_prior,
                             bench.ct_latent if modality == "CT" else bench.mr_latent, bench.samplers, device)
        pixel = priors["pixel"]
        others = {label: p for label, p in compare.items() if p.card.modality == modality}
        prior_names += [p.card.name for p in priors.values()] + [f"{label} = {p.card.name} ({p.path})" for label, p in others.items()]
        for source in sources[modality]:
            size = bench.matrix or pixel.card.image_size
            if bench.matrix:
                images = matrix_slices(source.id, pixel.card.normalisation, size, bench.slices, bench.starter)
                note = _matrix_note(source.id, size, bench.starter)
            else:
                images = evaluation_slices(source.id, pixel.card.normalisation, size, bench.slices, bench.starter)
                note = f"resampled to {size}x{size}"
            slices_note.append(f"{source.id}: {images.shape[0]} slices of the middle 60%, {note}")
            suffix = "" if source is validation_sources(modality)[0] else f", {source.id}"
            for shift in ["none", *(bench.contrast or [])]:
                shifted = remap(images, shift)
                for setting in (s for s in settings if s.modality == modality):
                    name = setting.name + suffix + (f", contrast {shift}" if shift != "none" else "")
                    rows += run_setting(dataclasses.replace(setting, name=name), shifted, priors, list(bench.samplers),
                                        seed=bench.seed, device=device, batch_size=bench.batch_size,
                                        long_slices=bench.long_slices, long_steps=bench.long_steps,
                                        on_gpu=device.type == "cuda", compare=others)
    header = run_header(command, device, t0, priors=", ".join(prior_names), slices="; ".join(slices_note))
    table = to_markdown(rows, header)
    print(table)
    if bench.json:
        Path(bench.json).write_text(json.dumps({"header": header, "rows": rows}, indent=2, default=str) + "\n")
    if bench.write:
        title = "Reconstruction quality and speed (`bench recon`)" if section == "recon" else f"`bench recon`: {section}"
        report.write_section(bench.write, f"### {title}\n\n" + table, section)
    return rows


def _matrix_note(source_id: str, matrix: int, starter) -> str:
    """How :func:`matrix_slices` made ``source_id``'s slices ``matrix x matrix``, for the table's header."""
    own = min(load_starter(source_id, starter).shape[1:])
    if own >= matrix:
        return f"at {matrix}x{matrix}" + (" (its native matrix)" if own == matrix else f" (resampled from {own})")
    return f"its {own}x{own} at its own pixel size zero-padded to {matrix}x{matrix}"


def _sources(ids, modalities) -> dict:
    """``{modality: [Source, ...]}``: the validation sources asked for (default: the first of each
    modality); a training source is refused (results are reported on validation patients only)."""
    if not ids:
        return {m: [validation_sources(m)[0]] for m in modalities}
    chosen = {m: [] for m in modalities}
    for source_id in ids:
        source = get_source(source_id)
        if source.split != "validation":
            raise InputError(f"--sources {source_id}: a {source.split} source; the benchmark reports on validation patients only")
        if source.modality not in chosen:
            raise InputError(f"--sources {source_id} is {source.modality}, not among --modalities")
        chosen[source.modality].append(source)
    empty = [m for m, found in chosen.items() if not found]
    if empty:
        raise InputError(f"--sources names no {' or '.join(empty)} validation source")
    return chosen


def _compare_priors(items, device) -> dict:
    """``{label: prior}`` from ``LABEL=PRIOR`` items (a shipped name or a prior folder)."""
    out = {}
    for item in items or ():
        label, sep, name = str(item).partition("=")
        if not sep or not label or not name:
            raise InputError(f"--compare-priors takes LABEL=PRIOR (a shipped name or folder), got {item!r}")
        if label in out or label == "main":
            raise InputError(f"--compare-priors: the label {label!r} is used twice (or is 'main')")
        out[label] = load_prior(name, device=device)
    return out


__all__ = ["ReconBench", "load_priors", "run_recon_bench", "run_setting", "to_markdown"]
