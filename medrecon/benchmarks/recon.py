"""``medrecon bench recon``: every sampler next to every classical baseline, same slices, same run.

Protocol (ALGORITHMS.md, "Conventions of medrecon's own benchmarks"):

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
- Metrics: PSNR per volume (data range 1, magnitudes for MR, clipped to [0, 1]) and SSIM per slice
  averaged; seconds per slice, NFE per slice, peak memory (CUDA peak allocation, or the process's
  peak resident size on the CPU — a process-wide high-water mark, so it only grows down a table).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medrecon.errors import InputError

CT_NOISE_REL = 0.01
MR_NOISE_SIGMA = 0.02
LONG_SAMPLERS = ("dps", "score_sde", "resample")


@dataclass(frozen=True)
class Setting:
    """One row group of the table: the acquisition and its noise."""

    name: str
    modality: str
    geometry: str = "parallel"  # CT
    views: int = 23  # CT
    accel: int = 4  # MR, Cartesian
    noisy: bool = False
    trajectory: str = "cartesian"  # MR: cartesian, or a key of NONCARTESIAN_TRAJECTORIES

    @property
    def tuned_key(self) -> str:
        """The ``TUNED_WEIGHTS`` setting whose weights the baselines use."""
        noise = "noisy" if self.noisy else "clean"
        if self.modality == "CT":
            return f"ct-parallel-{self.views}v-{noise}"
        if self.trajectory != "cartesian":
            return f"mr-8coil-{self.trajectory}-{noise}"
        return f"mr-8coil-{self.accel}x-{noise}"


def noncartesian_trajectory(name: str):
    """The benchmark's radial or spiral :class:`~medrecon.operators.trajectories.Trajectory`."""
    from medrecon.operators.trajectories import Trajectory  # noqa: PLC0415

    if name not in NONCARTESIAN_TRAJECTORIES:
        raise InputError(f"unknown benchmark trajectory {name!r}; known: {sorted(NONCARTESIAN_TRAJECTORIES)}")
    return Trajectory.from_dict(NONCARTESIAN_TRAJECTORIES[name])


#: The non-Cartesian benchmark acquisitions at 256x256 (both about 12,000 samples per coil, 8x below
#: Nyquist's ~400 spokes for radial): 48 golden-angle spokes of 256 samples; a variable-density
#: spiral of 16 interleaves at radial undersampling 4 (alpha 1.5).
NONCARTESIAN_TRAJECTORIES = {
    "radial48": {"kind": "radial", "spokes": 48, "angles": "golden"},
    "spiral16r4": {"kind": "spiral", "interleaves": 16, "undersampling": 4.0, "alpha": 1.5},
}


SETTINGS = (
    Setting("CT parallel 23 views", "CT", "parallel", 23),
    Setting("CT parallel 23 views, 1% noise", "CT", "parallel", 23, noisy=True),
    Setting("CT fan 60 views", "CT", "fan", 60),
    Setting("CT fan 60 views, 1% noise", "CT", "fan", 60, noisy=True),
    Setting("MR 8 coils 4x", "MR", accel=4),
    Setting("MR 8 coils 4x, noise 0.02", "MR", accel=4, noisy=True),
    Setting("MR 8 coils 8x", "MR", accel=8),
    Setting("MR 8 coils 8x, noise 0.02", "MR", accel=8, noisy=True),
    Setting("MR 8 coils radial 48 spokes", "MR", trajectory="radial48"),
    Setting("MR 8 coils spiral 16 interleaves R4", "MR", trajectory="spiral16r4"),
)


def evaluation_slices(source_id: str, normalisation: dict, size: int, n_slices: int, starter: str | None) -> torch.Tensor:
    """``(n, 1, size, size)`` normalised slices evenly spaced through the middle 60% of a starter volume."""
    from medrecon.data import load_starter  # noqa: PLC0415
    from medrecon.priors.training_data import Normalisation, resample_slices  # noqa: PLC0415

    study = load_starter(source_id, starter)
    normalised = Normalisation.from_dict(normalisation).apply(study.voxels)
    depth = normalised.shape[0]
    index = np.unique(np.round(np.linspace(0.2, 0.8, n_slices) * (depth - 1)).astype(int))
    return resample_slices(normalised[index], size)


@torch.no_grad()
def make_problem(setting: Setting, images: torch.Tensor, seed: int, *, with_phase: bool = True):
    """``(Problem, reference)`` of normalised ``images`` ``(S, 1, H, W)`` under ``setting``; the
    reference is what the metrics compare with (MR: the magnitude). ``with_phase`` False: MR images
    are real-valued (no simulated phase)."""
    from medrecon.acquisition import slice_generators  # noqa: PLC0415
    from medrecon.operators import CTProjector, FanBeamGeometry, MultiCoilMRI, ParallelBeamGeometry, simulated_maps  # noqa: PLC0415
    from medrecon.operators.masks import CartesianSampling  # noqa: PLC0415
    from medrecon.reconstruct import Problem  # noqa: PLC0415
    from medrecon.simulation import complex_image, simulate_kspace, simulate_sinogram  # noqa: PLC0415

    shape = tuple(images.shape[-2:])
    index = range(images.shape[0])
    noise_gens = slice_generators(seed, index, "noise")
    if setting.modality == "CT":
        if setting.geometry == "parallel":
            geometry = ParallelBeamGeometry.sparse_view(shape, setting.views, "uniform")
        else:
            geometry = FanBeamGeometry.full_scan(shape, setting.views)
        op = CTProjector(geometry)
        y = simulate_sinogram(op, images, noise_gens, noise_rel=CT_NOISE_REL if setting.noisy else 0.0)
        return Problem(op, y, "CT", setting.noisy, description={"geometry": geometry.to_dict()}), images
    maps = simulated_maps(8, shape)[None]
    if setting.trajectory != "cartesian":
        from medrecon.operators import NonCartesianMRI  # noqa: PLC0415

        trajectory = noncartesian_trajectory(setting.trajectory)
        op = NonCartesianMRI(trajectory.make(shape), shape, maps)
        description = {"trajectory": trajectory.to_dict(), "accel": round(trajectory.acceleration(shape), 2)}
    else:
        mask = CartesianSampling("equispaced_fraction", setting.accel, seed="bench").make(shape)
        op = MultiCoilMRI(maps, mask)
        description = {"mask": "equispaced_fraction", "accel": setting.accel}
    image = complex_image(images, slice_generators(seed, index, "phase"), with_phase=with_phase)
    y = simulate_kspace(op, image, noise_gens, noise_sigma=MR_NOISE_SIGMA if setting.noisy else 0.0)
    return Problem(op, y, "MR", setting.noisy, description=description), images


def baselines(setting: Setting) -> dict:
    """``{name: fn(problem) -> image}`` of the classical methods of a modality with tuned weights."""
    from medrecon.baselines import TUNED_WEIGHTS  # noqa: PLC0415
    from medrecon.baselines import ct as bct  # noqa: PLC0415
    from medrecon.baselines import mri as bmr  # noqa: PLC0415

    w = TUNED_WEIGHTS[setting.tuned_key]
    if setting.modality == "CT":
        return {
            "FBP (ramp)": lambda p: bct.fbp(p.op, p.y),
            f"SIRT ({w['sirt']:g} it)": lambda p: bct.sirt(p.op, p.y, n_iter=int(w["sirt"])),
            f"CGLS ({w['cgls']:g} it)": lambda p: bct.cgls(p.op, p.y, n_iter=int(w["cgls"])),
            f"TV-PDHG (lam_rel {w['tv_pdhg']:g})": lambda p: bct.tv_pdhg(p.op, p.y, lam_rel=w["tv_pdhg"]),
        }
    first = ({"gridding (Pipe-Menon)": lambda p: bmr.gridding(p.op, p.y)} if setting.trajectory != "cartesian"
             else {"zero-filled": lambda p: bmr.zero_filled(p.op, p.y)})
    return {
        **first,
        f"CG-SENSE ({w['cg_sense']:g} it)": lambda p: bmr.cg_sense(p.op, p.y, n_iter=int(w["cg_sense"])),
        f"L1-wavelet (lam_rel {w['l1_wavelet']:g})": lambda p: bmr.l1_wavelet(p.op, p.y, lam_rel=w["l1_wavelet"]),
        f"TV (lam_rel {w['total_variation']:g})": lambda p: bmr.total_variation(p.op, p.y, lam_rel=w["total_variation"]),
    }


def score(image: torch.Tensor, reference: torch.Tensor) -> dict:
    """PSNR per volume and SSIM per slice (averaged), data range 1, magnitudes clipped to [0, 1]."""
    from medrecon.metrics import psnr, ssim  # noqa: PLC0415

    x = (image.abs() if image.is_complex() else image).float().clamp(0, 1).cpu()
    ref = reference.float().clamp(0, 1).cpu()
    return {"psnr": float(psnr(x, ref, data_range=1.0, per="volume")), "ssim": float(ssim(x, ref, data_range=1.0, per="volume"))}


def _peak_memory(device) -> int:
    import resource  # noqa: PLC0415

    if torch.device(device).type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def run_setting(setting: Setting, images: torch.Tensor, priors: dict, samplers: list[str], *, seed: int, device,
                batch_size: int, long_slices: int, long_steps: int | None, on_gpu: bool, log=print) -> list[dict]:
    """All methods on one setting: a list of table rows."""
    from medrecon.reconstruct import Problem, reconstruct  # noqa: PLC0415

    problem, reference = make_problem(setting, images, seed)
    rows = []
    for name, fn in baselines(setting).items():
        t0 = time.perf_counter()
        image = fn(problem)
        seconds = time.perf_counter() - t0
        rows.append({"setting": setting.name, "method": name, "kind": "baseline", **score(image, reference),
                     "seconds_per_slice": seconds / problem.slices, "nfe": None, "slices": problem.slices,
                     "peak_memory_bytes": _peak_memory("cpu")})
        log(f"  {setting.name:32s} {name:34s} {rows[-1]['psnr']:6.2f} dB {rows[-1]['ssim']:.3f}")
    for sampler in samplers:
        prior = priors.get("latent" if sampler == "resample" else "pixel")
        if prior is None:
            continue
        sub, ref, steps = problem, reference, None
        if sampler in LONG_SAMPLERS and not on_gpu:
            n = min(long_slices, problem.slices)
            keep = np.unique(np.round(np.linspace(0, problem.slices - 1, n)).astype(int)).tolist()
            sub = Problem(problem.op, problem.y[keep], problem.modality, problem.noisy)
            ref, steps = reference[keep], long_steps
            indices = keep
        else:
            indices = None
        result = reconstruct(sub, prior, sampler=sampler, steps=steps, samples=1, batch_size=batch_size, device=device,
                             seed=seed, slice_indices=indices, progress=False)
        label = sampler if steps is None else f"{sampler} ({result.settings['steps']} steps)"
        rows.append({"setting": setting.name, "method": label, "kind": "sampler", **score(result.mean, ref),
                     "seconds_per_slice": result.seconds_per_slice, "nfe": result.nfe, "slices": sub.slices,
                     "peak_memory_bytes": result.peak_memory_bytes, "settings": result.settings})
        log(f"  {setting.name:32s} {label:34s} {rows[-1]['psnr']:6.2f} dB {rows[-1]['ssim']:.3f}  "
            f"{rows[-1]['seconds_per_slice']:.2f} s/slice, {result.nfe} NFE")
    return rows


def to_markdown(rows: list[dict], header: dict) -> str:
    """The table, with the command, machine, date, slices and priors stated above it."""
    lines = [
        f"Command: `{header['command']}`  ",
        f"Machine: {header['machine']}; date {header['date']}; total {header['seconds']:.0f} s.  ",
        f"Priors: {header['priors']}.  ",
        f"Slices: {header['slices']}. Baseline weights: `TUNED_WEIGHTS` (training patients); sampler settings: "
        "`presets.json`. Long samplers ran on the CPU on fewer slices and steps where the row says so.",
        "",
        "| setting | method | PSNR (dB) | SSIM | s / slice | NFE | slices | peak memory (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        nfe = "-" if r["nfe"] is None else str(r["nfe"])
        lines.append(
            f"| {r['setting']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['seconds_per_slice']:.2f} | "
            f"{nfe} | {r['slices']} | {r['peak_memory_bytes'] / 2**20:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _machine(device) -> str:
    import os  # noqa: PLC0415

    if torch.device(device).type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU {_cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}"


def bench_device(name) -> torch.device:
    """A benchmark's ``--device``: ``auto`` (or None) is CUDA when available, else the CPU."""
    return torch.device(name if name not in (None, "auto") else ("cuda" if torch.cuda.is_available() else "cpu"))


def run_header(command: str, device, started: float, **details) -> dict:
    """What every benchmark table states above it: the command, the machine, the date and the total
    seconds since ``started`` (``time.perf_counter``), then the table's own ``details``."""
    return {"command": command, "machine": _machine(device), "date": _dt.date.today().isoformat(),
            "seconds": time.perf_counter() - started, **details}


def _cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo) with its native bf16 support, which decides
    whether bf16 networks are fast on it."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info = f.read()
    except OSError:
        return name
    for line in info.splitlines():
        if line.startswith("model name"):
            name = line.split(":", 1)[1].strip()
            break
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    native = [f for f in ("amx_bf16", "avx512_bf16") if f" {f}" in flags]
    return f"{name} ({', '.join(native) if native else 'no native bf16'})"


def selected(name: str, only: list[str] | None) -> bool:
    """Whether setting ``name`` is chosen by ``--only``: a TEXT equal to a setting's name picks that
    setting alone, any other TEXT every setting whose name contains it."""
    if not only:
        return True
    exact = {o for o in only if o in {s.name for s in SETTINGS}}
    return name in exact or any(o in name for o in only if o not in exact)


@torch.no_grad()
def main(args) -> int:
    """Run the benchmark (``args`` from the ``bench recon`` parser)."""
    from medrecon.benchmarks import report  # noqa: PLC0415
    from medrecon.contrast import remap  # noqa: PLC0415
    from medrecon.data.sources import validation_sources  # noqa: PLC0415
    from medrecon.priors.hub import load_prior  # noqa: PLC0415

    section = getattr(args, "section", None) or "recon"
    if args.write:
        report.check_write_target(args.write, section)
    for shift in getattr(args, "contrast", None) or []:
        remap(torch.zeros(1), shift)  # an unknown name is refused before any work
    device = bench_device(args.device)
    modalities = [m.upper() for m in args.modalities]
    samplers = args.samplers
    settings = [s for s in SETTINGS if s.modality in modalities and selected(s.name, args.only)]
    if not settings:
        raise InputError("no benchmark setting selected")
    t0 = time.perf_counter()
    rows, prior_names, slices_note = [], [], []
    for modality in modalities:
        pixel = load_prior(args.ct_prior if modality == "CT" else args.mr_prior, device=device)
        priors = {"pixel": pixel}
        latent_name = args.ct_latent if modality == "CT" else args.mr_latent
        if "resample" in samplers and latent_name:
            priors["latent"] = load_prior(latent_name, device=device)
        prior_names += [p.card.name for p in priors.values()]
        source = validation_sources(modality)[0]
        images = evaluation_slices(source.id, pixel.card.normalisation, pixel.card.image_size, args.slices, args.starter)
        slices_note.append(f"{source.id}: {images.shape[0]} slices of the middle 60%, resampled to {pixel.card.image_size}x{pixel.card.image_size}")
        for shift in ["none", *(getattr(args, "contrast", None) or [])]:
            shifted = remap(images, shift)
            for setting in (s for s in settings if s.modality == modality):
                if shift != "none":
                    setting = dataclasses.replace(setting, name=f"{setting.name}, contrast {shift}")
                rows += run_setting(setting, shifted, priors, samplers, seed=args.seed, device=device, batch_size=args.batch_size,
                                    long_slices=args.long_slices, long_steps=args.long_steps, on_gpu=device.type == "cuda")
    header = run_header("medrecon bench recon " + " ".join(args.argv or []), device, t0,
                        priors=", ".join(prior_names), slices="; ".join(slices_note))
    table = to_markdown(rows, header)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "rows": rows}, indent=2, default=str) + "\n")
    if args.write:
        title = "Reconstruction quality and speed (`bench recon`)" if section == "recon" else f"`bench recon`: {section}"
        report.write_section(args.write, f"### {title}\n\n" + table, section)
    return 0


__all__ = ["SETTINGS", "Setting", "baselines", "evaluation_slices", "make_problem", "run_setting", "score", "to_markdown"]


# ------------------------------------------------------------------ choosing presets (training data)
TRAINING_SOURCES = {"CT": "ct-lung2", "MR": "mr-brain1"}
TASK_SETTINGS = {"ct-clean": SETTINGS[0], "ct-noisy": SETTINGS[1], "mr-clean": SETTINGS[4], "mr-noisy": SETTINGS[5],
                 # the non-Cartesian task's preset is chosen on both benchmark trajectories
                 "mr-noncartesian-clean:radial48": SETTINGS[8], "mr-noncartesian-clean:spiral16r4": SETTINGS[9]}


@torch.no_grad()
def tune_samplers(args) -> int:
    """``medrecon bench tune-samplers``: a grid over one option of one sampler (``--option``,
    ``--values``), the other options fixed by ``--set KEY=VALUE`` on top of the preset, per task, on
    slices of the TRAINING patients (ct-lung2, mr-brain1; never a validation patient), printed as a
    table of mean PSNR/SSIM; ``--samples K`` scores the posterior mean of K samples; ``--baselines``
    adds the task's tuned baselines on the same slices. The chosen values are copied into
    presets.json by hand, with the table in docs/samplers.md."""
    from medrecon.data.sources import get_source  # noqa: PLC0415
    from medrecon.priors.hub import load_prior  # noqa: PLC0415
    from medrecon.reconstruct import reconstruct  # noqa: PLC0415

    device = bench_device(args.device)
    values = [_json_value(v) for v in args.values]
    fixed = {}
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--set takes KEY=VALUE, got {item!r}")
        fixed[key] = _json_value(value)
    samples = int(getattr(args, "samples", 1) or 1)
    fixed_note = ", ".join(f"{k} {v}" for k, v in fixed.items())
    rows = []
    for task in args.tasks:
        if task not in TASK_SETTINGS:
            raise InputError(f"unknown task {task!r}; known: {sorted(TASK_SETTINGS)}")
        setting = TASK_SETTINGS[task]
        source = get_source(TRAINING_SOURCES[setting.modality])
        if source.split != "train":
            raise InputError(f"{source.id} is not a training source")  # the split is encoded once, in sources.py
        prior = load_prior(args.ct_prior if setting.modality == "CT" else args.mr_prior, device=device)
        images = evaluation_slices(source.id, prior.card.normalisation, prior.card.image_size, args.slices, args.starter)
        problem, reference = make_problem(setting, images, args.seed)
        if getattr(args, "baselines", False):
            for name, fn in baselines(setting).items():
                rows.append({"task": task, "source": source.id, "label": name, **score(fn(problem), reference), "seconds_per_slice": 0.0})
                print(f"{task:9s} {source.id:10s} {name:40s} PSNR {rows[-1]['psnr']:6.2f} SSIM {rows[-1]['ssim']:.3f}", flush=True)
        for value in values:
            options = {**fixed, args.option: value}
            result = reconstruct(problem, prior, sampler=args.sampler, steps=args.steps, options=options, samples=samples,
                                 batch_size=args.batch_size, device=device, seed=args.seed, progress=False)
            label = f"{args.option} {value}" + (f" ({fixed_note})" if fixed_note else "") + (f", mean of {samples}" if samples > 1 else "")
            rows.append({"task": task, "source": source.id, "label": label, **score(result.mean, reference),
                         "seconds_per_slice": result.seconds_per_slice})
            print(f"{task:9s} {source.id:10s} {label:40s} PSNR {rows[-1]['psnr']:6.2f} SSIM {rows[-1]['ssim']:.3f} "
                  f"({rows[-1]['seconds_per_slice']:.1f} s/slice)", flush=True)
    steps = f", {args.steps} steps" if args.steps else ""
    print(f"\n| task | training slices | {args.sampler}{steps} | PSNR (dB) | SSIM |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['source']} x {args.slices} | {r['label']} | {r['psnr']:.2f} | {r['ssim']:.3f} |")
    return 0


def _json_value(text: str):
    """A command-line value as JSON (``none`` for None; a bare word stays a string)."""
    if text in ("none", "None"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


# ------------------------------------------------------------------------- medrecon reproduce starter
STARTER_NOTE = (
    "The starter protocol is medrecon's own benchmark (`bench recon`) on the starter corpus's validation "
    "patients (ct-lung1, mr-brain2): different data, sizes and priors from the papers' tables, which are "
    "listed beside it for orientation only."
)


@torch.no_grad()
def run_starter_reproduce(args) -> int:
    """``medrecon reproduce starter``: the ``bench recon`` settings on the starter validation split,
    written as ``results.csv``, ``summary.md``, ``summary.json`` and ``figure.png`` into ``args.out``
    (a staging folder renamed at the end; an existing folder only with ``--overwrite``)."""
    import csv  # noqa: PLC0415

    from medrecon.data.sources import validation_sources  # noqa: PLC0415
    from medrecon.io.atomic import atomic_output  # noqa: PLC0415
    from medrecon.priors.hub import load_prior  # noqa: PLC0415

    out = Path(args.out)
    if out.exists() and not getattr(args, "overwrite", False):
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    device = bench_device(getattr(args, "device", None))
    samplers = getattr(args, "samplers", None) or "dds,dps,score_sde,resample"
    samplers = [s.strip() for s in samplers.split(",")] if isinstance(samplers, str) else list(samplers)
    n_slices = int(getattr(args, "slices", None) or 8)
    t0 = time.perf_counter()
    rows = []
    for modality in ("CT", "MR"):
        name = f"{modality.lower()}-starter"  # the starter protocol measures the shipped starter priors
        priors = {"pixel": load_prior(name, device=device)}
        if "resample" in samplers:
            try:
                priors["latent"] = load_prior(f"{modality.lower()}-starter-latent", device=device)
            except Exception as exc:  # a missing latent prior skips ReSample, and the table says so
                print(f"reproduce starter: ReSample skipped for {modality}: {exc}", file=sys.stderr)
        source = validation_sources(modality)[0]
        pixel = priors["pixel"]
        images = evaluation_slices(source.id, pixel.card.normalisation, pixel.card.image_size, n_slices, getattr(args, "data", None))
        for setting in (s for s in SETTINGS if s.modality == modality):
            rows += run_setting(setting, images, priors, samplers, seed=getattr(args, "seed", 0), device=device,
                                batch_size=getattr(args, "batch_size", 8), long_slices=2,
                                long_steps=getattr(args, "steps", None) or 50, on_gpu=device.type == "cuda",
                                log=lambda line: print(line, file=sys.stderr, flush=True))
    header = run_header("medrecon reproduce starter", device, t0, priors="ct-starter, mr-starter (+ latent priors for ReSample)",
                        slices=f"{n_slices} per validation volume (middle 60%), resampled to the priors' size")
    with atomic_output(out, overwrite=getattr(args, "overwrite", False), folder=True) as staging:
        fields = ["setting", "method", "kind", "psnr", "ssim", "seconds_per_slice", "nfe", "slices", "peak_memory_bytes"]
        with open(staging / "results.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        (staging / "summary.md").write_text("# Starter protocol\n\n" + STARTER_NOTE + "\n\n" + to_markdown(rows, header))
        (staging / "summary.json").write_text(json.dumps({"header": header, "note": STARTER_NOTE, "rows": rows}, indent=2, default=str) + "\n")
    print(f"wrote {out}/results.csv, summary.md, summary.json ({header['seconds']:.0f} s)")
    return 0
