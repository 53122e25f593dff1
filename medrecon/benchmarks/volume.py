"""``medrecon bench recon-volume``: coherent volumes — slice-wise DDS, DDS-3D (TV along the slice
axis) and 3-D TV on a contiguous block of a real CT volume, scored on axial slices and on coronal
and sagittal reslices.

Protocol:

- Volume: ``--slices`` contiguous axial slices from the middle of a starter CT volume (default the
  validation patient ct-lung1; ``--source`` a training patient for choosing settings), in the
  prior's units (HU window -> [0, 1]) and resampled in-plane to the prior's size; the record states
  the voxel spacing (slice thickness matters: TV_z helps thin slices most).
- Settings: parallel beam with 8 and 23 uniform views over [0, pi), and limited angle (120 views at
  0, 1, ..., 119 degrees), noiseless, every slice with the same geometry.
- Methods: 2-D TV (per slice) and 3-D TV (TV-PDHG with the slice axis), with the weights of
  ``TUNED_WEIGHTS`` for the setting or the ``--tv2d-lam-rel`` / ``--tv3d-lam-rel`` grids; DDS slice
  by slice (the ct-clean preset) and DDS-3D (the same preset with ``volume_prior="tv-z"``: the
  ``--tv-lam-rel`` / ``--tv-rho-rel`` grid, or the preset's weights with ``--preset-tv-z``). The
  weights of the baselines and of TV_z are chosen on training patients (``--source ct-lung2``) and
  stated in every row. DiffusionMBIR (``--mbir-steps N``: its preset at N steps instead of the
  paper's 2000, the reduction in the row's name).
- Metrics: PSNR of the volume (data range 1, clipped to [0, 1]; the same voxels in every view),
  SSIM (per image, averaged) of the axial slices, of the coronal reslices (rows = slices) and of the
  sagittal reslices, and the PSNR of the slice differences ``D_z x`` against the reference's (how
  well what changes from slice to slice is reconstructed); seconds per slice, NFE, peak memory (the
  process's peak resident size on the CPU).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from medrecon.acquisition import slice_generators
from medrecon.baselines import TUNED_WEIGHTS
from medrecon.baselines import ct as bct
from medrecon.benchmarks import report
from medrecon.data import load_starter
from medrecon.data.sources import get_source
from medrecon.errors import InputError, positive_int
from medrecon.evaluation.scoring import score
from medrecon.metrics import psnr
from medrecon.operators import CTProjector, ParallelBeamGeometry, limited_angles
from medrecon.priors.hub import load_prior
from medrecon.priors.normalisation import Normalisation, resample_slices
from medrecon.reconstruct import Problem, reconstruct
from medrecon.samplers.presets import sampler_settings
from medrecon.samplers.registry import SAMPLERS
from medrecon.samplers.tv_z import check_tv_z, slice_difference
from medrecon.simulation import simulate_sinogram

from .common import bench_device, markdown_table, peak_memory, run_header


@dataclass(frozen=True)
class VolumeSetting:
    """One acquisition applied to every slice of the volume."""

    name: str
    views: int
    arc_degrees: float = 180.0  # < 180: limited angle, views at 0, arc/views, ... degrees

    @property
    def tuned_key(self) -> str:
        """The ``TUNED_WEIGHTS`` entry of the TV baselines (``tv_pdhg``, ``tv3d_pdhg``) of this setting."""
        kind = "parallel" if self.arc_degrees >= 180.0 else "limited"
        return f"ct-{kind}-{self.views}v-clean"

    def geometry(self, shape: tuple[int, int]):
        if self.arc_degrees >= 180.0:
            return ParallelBeamGeometry.sparse_view(shape, self.views, "uniform")
        return ParallelBeamGeometry(shape, limited_angles(self.views, math.radians(self.arc_degrees)))


MIN_SLICES = 7  # the SSIM window's rows on a reslice

VOLUME_SETTINGS = (
    VolumeSetting("CT parallel 8 views", 8),
    VolumeSetting("CT parallel 23 views", 23),
    VolumeSetting("CT limited angle 0-119 deg, 120 views", 120, 120.0),
)


def volume_slab(source_id: str, normalisation: dict, size: int, n_slices: int, starter: str | None):
    """``(images (S, 1, size, size), spacing_mm (x, y, z))``: ``n_slices`` contiguous slices from the
    middle of a starter volume, normalised and resampled in-plane to ``size`` (``n_slices`` 0: all)."""
    study = load_starter(source_id, starter)
    depth = study.shape[0]
    n = depth if n_slices in (0, None) else int(n_slices)
    if not MIN_SLICES <= n <= depth:
        raise InputError(f"--slices must lie in {MIN_SLICES}..{depth} for {source_id} (0 for all; SSIM of the coronal and "
                         f"sagittal reslices needs {MIN_SLICES} rows), got {n_slices}")
    start = (depth - n) // 2
    voxels = Normalisation.from_dict(normalisation).apply(study.voxels[start:start + n])
    images = resample_slices(voxels, size)
    sx, sy, sz = study.spacing
    factor = min(study.shape[1:]) / size
    return images, (sx * factor, sy * factor, sz)


def repeated_volume(images: torch.Tensor, n: int) -> torch.Tensor:
    """``images`` ``(S, ...)``, then its mirror image, and so on, cut to ``n`` slices: a long volume
    whose neighbouring slices stay neighbours."""
    reps = -(-n // images.shape[0])
    return torch.cat([images if k % 2 == 0 else images.flip(0) for k in range(reps)])[:n]


def reslices(volume: torch.Tensor) -> dict[str, torch.Tensor]:
    """Axial ``(S, 1, H, W)``, coronal ``(H, 1, S, W)`` and sagittal ``(W, 1, S, H)`` stacks of a volume."""
    v = volume[:, 0]
    return {"axial": volume, "coronal": v.permute(1, 0, 2)[:, None], "sagittal": v.permute(2, 0, 1)[:, None]}


def score_volume(image: torch.Tensor, reference: torch.Tensor) -> dict:
    """PSNR of the volume (the same voxels whatever the view), SSIM of the axial, coronal and
    sagittal stacks, and the PSNR of the slice differences ``D_z x`` against ``D_z x_ref`` (how well
    the changes from slice to slice are reconstructed; data range 1)."""
    got, ref = reslices(image.float().cpu()), reslices(reference.float().cpu())
    out = {"psnr": score(got["axial"], ref["axial"], "volume").psnr}
    for view in got:
        out[f"{view}_ssim"] = score(got[view], ref[view], "volume").ssim
    dz, dz_ref = (slice_difference(v["axial"].clamp(0, 1)) for v in (got, ref))
    out["dz_psnr"] = float(psnr(dz, dz_ref, data_range=1.0, per="volume"))
    return out


@dataclass(frozen=True)
class VolumeBench:
    """What ``medrecon bench recon-volume`` runs (module docstring; the grids are tuples of weights)."""

    source: str = "ct-lung1"
    slices: int = 16
    repeat_to: int | None = None
    only: tuple[str, ...] | None = None
    steps: int | None = None
    tv_lam_rel: tuple[float, ...] = ()
    tv_rho_rel: tuple[float, ...] = (1.0,)
    tv_boundary: str = "neumann"
    preset_tv_z: bool = False
    no_slicewise: bool = False
    mbir_steps: int | None = None
    tv2d_lam_rel: tuple[float, ...] = ()
    tv3d_lam_rel: tuple[float, ...] = ()
    no_baselines: bool = False
    prior: str = "ct-starter"
    starter: str | None = None
    batch_size: int = 8
    device: str = "auto"
    seed: int = 0
    json: str | None = None
    write: str | None = None


def _methods(args: VolumeBench, setting: VolumeSetting) -> list[tuple[str, str, dict, int | None]]:
    """``(label, kind, options, steps)`` of every method to run on ``setting``, in order: the TV
    baselines (kind ``tv2d`` / ``tv3d``; weights: the grids given, else the setting's
    ``TUNED_WEIGHTS``, training patients, else none), then the samplers (kind = the registry's
    name): each sampler with an optional volume prior slice by slice and with TV_z (DDS-3D), each
    sampler that always couples the volume (DiffusionMBIR) at ``mbir_steps``."""
    tuned = TUNED_WEIGHTS.get(setting.tuned_key, {})
    methods = []
    for kind, grid, key, name in (("tv2d", args.tv2d_lam_rel, "tv_pdhg", "2-D"), ("tv3d", args.tv3d_lam_rel, "tv3d_pdhg", "3-D")):
        values = grid if grid else ([tuned[key]] if key in tuned and not args.no_baselines else [])
        for lam in values:
            methods.append((f"TV-PDHG {name} (lam_rel {lam:g})", kind, {"lam_rel": lam}, None))
    for spec in (s for s in SAMPLERS.values() if s.volume == "optional" and s.prior == "pixel"):
        if not args.no_slicewise:
            methods.append((f"{spec.short} slice by slice", spec.name, {}, args.steps))
        for rho in args.tv_rho_rel:
            for lam in args.tv_lam_rel:
                options = {"volume_prior": "tv-z", "tv_lam_rel": lam, "tv_rho_rel": rho, "tv_boundary": args.tv_boundary}
                methods.append((f"{spec.short}-3D TV_z (lam_rel {lam:g}, rho_rel {rho:g}, {args.tv_boundary})", spec.name,
                                options, args.steps))
        if args.preset_tv_z:
            methods.append((f"{spec.short}-3D TV_z (preset)", spec.name, {"volume_prior": "tv-z"}, args.steps))
    if args.mbir_steps:
        for spec in (s for s in SAMPLERS.values() if s.volume == "always"):
            methods.append((f"{spec.short} ({args.mbir_steps} steps)", spec.name, {}, args.mbir_steps))
    return methods


@torch.no_grad()
def run_volume_bench(args: VolumeBench, *, command: str = "medrecon bench recon-volume") -> dict:
    """Run the table and print it as Markdown (and write it / its JSON where asked); returns
    ``{"header", "rows"}``."""
    if args.write:
        report.check_write_target(args.write, "recon-volume")
    settings = [s for s in VOLUME_SETTINGS if not args.only or any(o in s.name for o in args.only)]
    if not settings:
        raise InputError("no volume setting selected")
    plan = {setting.name: _methods(args, setting) for setting in settings}
    if not any(plan.values()):
        raise InputError("no method selected")
    if args.mbir_steps is not None:
        positive_int(args.mbir_steps, "--mbir-steps")
    for _, kind, options, steps in (m for methods in plan.values() for m in methods):  # bad options are refused before any work
        if kind in SAMPLERS:
            chosen = sampler_settings(kind, "ct-clean", steps=steps, **options).options
            if chosen.get("volume_prior") is not None:
                check_tv_z(chosen.get("tv_lam_rel", 0.0), chosen.get("tv_rho_rel", 1.0), chosen.get("tv_boundary", "neumann"))
        elif not options["lam_rel"] >= 0:
            raise InputError(f"TV weights must be >= 0, got {options['lam_rel']}")
    source = get_source(args.source)
    if source.modality != "CT":
        raise InputError(f"{source.id} is not a CT source")
    if args.slices not in (0, None) and args.slices < MIN_SLICES:
        raise InputError(f"--slices must be at least {MIN_SLICES} (SSIM of the coronal and sagittal reslices), got {args.slices}")
    device = bench_device(args.device)
    prior = load_prior(args.prior, device=device)
    images, spacing = volume_slab(source.id, prior.card.normalisation, prior.card.image_size, args.slices, args.starter)
    repeat_note, block = "", images.shape[0]
    if args.repeat_to:
        if args.repeat_to < images.shape[0]:
            raise InputError(f"--repeat-to {args.repeat_to} is fewer than the {images.shape[0]} slices of the block")
        images = repeated_volume(images, args.repeat_to)
        repeat_note = f", repeated back and forth to {args.repeat_to} slices (a memory and speed measurement)"
    t0 = time.perf_counter()
    rows = []
    for setting in settings:
        op = CTProjector(setting.geometry(tuple(images.shape[-2:])))
        y = simulate_sinogram(op, images, slice_generators(args.seed, range(images.shape[0]), "noise"), noise_rel=0.0)
        problem = Problem(op, y, "CT", noisy=False)
        for label, kind, options, steps in plan[setting.name]:
            start = time.perf_counter()
            if kind in ("tv2d", "tv3d"):
                image = bct.tv_pdhg(op, y, lam_rel=options["lam_rel"], volume=kind == "tv3d")
                nfe, seconds, peak, settings_used = None, time.perf_counter() - start, peak_memory("cpu"), None
            else:
                result = reconstruct(problem, prior, sampler=kind, steps=steps, options=options,
                                     batch_size=args.batch_size, device=device, seed=args.seed, progress=False)
                image, nfe, seconds = result.mean, result.nfe, result.seconds
                peak, settings_used = result.peak_memory_bytes, result.settings
            rows.append({"setting": setting.name, "method": label, **score_volume(image, images), "nfe": nfe,
                         "seconds_per_slice": seconds / images.shape[0], "peak_memory_bytes": peak, "settings": settings_used})
            r = rows[-1]
            print(f"  {setting.name:40s} {label:55s} PSNR {r['psnr']:6.2f}  SSIM axial {r['axial_ssim']:.3f} coronal "
                  f"{r['coronal_ssim']:.3f} sagittal {r['sagittal_ssim']:.3f}  D_z PSNR {r['dz_psnr']:6.2f}  "
                  f"{r['seconds_per_slice']:.1f} s/slice", flush=True)
    header = run_header(
        command, device, t0, prior=prior.card.name,
        volume=(f"{block} contiguous slices from the middle of {source.id} ({source.split}), resampled to "
                f"{images.shape[-1]}x{images.shape[-2]}; voxels {spacing[0]:.3g} x {spacing[1]:.3g} mm in-plane, "
                f"{spacing[2]:.3g} mm slices{repeat_note}"),
    )
    table = to_markdown(rows, header)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "rows": rows}, indent=2, default=str) + "\n")
    if args.write:
        report.write_section(args.write, "### Coherent volumes (`bench recon-volume`)\n\n" + table, "recon-volume")
    return {"header": header, "rows": rows}


def to_markdown(rows: list[dict], header: dict) -> str:
    lines = [
        f"Command: `{header['command']}`  ",
        f"Machine: {header['machine']}; date {header['date']}; total {header['seconds']:.0f} s.  ",
        f"Prior: {header['prior']}; volume: {header['volume']}; noiseless parallel-beam sinograms.",
        "",
    ]
    cells = [[r["setting"], r["method"], f"{r['psnr']:.2f}", f"{r['axial_ssim']:.3f}", f"{r['coronal_ssim']:.3f}",
              f"{r['sagittal_ssim']:.3f}", f"{r['dz_psnr']:.2f}", f"{r['seconds_per_slice']:.2f}",
              "-" if r["nfe"] is None else r["nfe"], f"{r['peak_memory_bytes'] / 2**20:.0f}"] for r in rows]
    return "\n".join(lines) + "\n" + markdown_table(
        ["setting", "method", "PSNR (dB)", "SSIM axial", "SSIM coronal", "SSIM sagittal", "D_z PSNR (dB)", "s / slice", "NFE",
         "peak memory (MB)"], cells)


__all__ = ["VOLUME_SETTINGS", "VolumeBench", "VolumeSetting", "run_volume_bench", "repeated_volume", "reslices", "score_volume",
           "volume_slab"]
