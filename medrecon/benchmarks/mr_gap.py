"""``medrecon bench mr-gap``: where the MR reconstruction's PSNR goes, protocol by protocol.

A plain DDS loop on *real-valued* MR images (a quick GPU experiment, docs/samplers.md) reached about 46 dB at 4x where the
project's DDS on the benchmark's *complex* images (smooth simulated phase, real prior applied along
the phase estimated from the k-space centre) reaches about 37 dB. This benchmark runs the project's
own DDS preset on the same validation slices (mr-brain2, 8 simulated coils, ``equispaced_fraction``
masks, noiseless) under each combination of:

- **image**: with the benchmark's smooth phase, or real-valued (zero phase);
- **unknowns**: complex images (what a reconstruction of real data must solve for), or real images
  times a phase (:class:`~medrecon.operators.base.RealImageEmbedding`): the true one, the one
  estimated from the k-space centre, or none for a real-valued image; a real unknown halves the
  degrees of freedom, which for Cartesian sampling is worth about a doubling of the sampled lines;
- **phase given to the prior** (complex unknowns): estimated from the k-space centre
  (:func:`~medrecon.priors.denoiser.low_resolution_phase`, what ``reconstruct`` does) or the true
  simulated phase (``Problem.phase``);

and at several step counts, with CG-SENSE (complex and real unknowns) beside it as the classical
reference of each protocol. Rows state their slices; the table is a diagnostic, not a tuning: no
setting is chosen from it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch

from medrecon.acquisition import slice_generators
from medrecon.baselines import TUNED_WEIGHTS
from medrecon.baselines import mri as bmr
from medrecon.data.sources import validation_sources
from medrecon.errors import InputError
from medrecon.evaluation.scoring import score
from medrecon.evaluation.settings import SETTINGS, evaluation_slices, make_problem
from medrecon.operators import RealImageEmbedding
from medrecon.operators.cg import conjugate_gradient
from medrecon.priors.denoiser import low_resolution_phase
from medrecon.priors.hub import load_prior
from medrecon.reconstruct import reconstruct
from medrecon.samplers.registry import DEFAULT_SAMPLER
from medrecon.simulation import smooth_phase

from .common import bench_device, markdown_table, run_header


def _scores(image, reference) -> dict:
    s = score(image, reference, "volume")
    return {"psnr": s.psnr, "ssim": s.ssim}

PROTOCOLS = (
    # (name, image has phase, unknowns, phase for the prior)
    ("bench protocol: phase, complex unknowns, estimated phase (reconstruct's default)", True, "complex", "estimated"),
    ("phase, complex unknowns, true phase given to the prior", True, "complex", "true"),
    ("phase, real unknowns x estimated phase", True, "real-estimated", None),
    ("phase, real unknowns x true phase", True, "real-true", None),
    ("real-valued image, complex unknowns, estimated phase", False, "complex", "estimated"),
    ("real-valued image, real unknowns (the plain loop's protocol)", False, "real-true", None),
)


def _true_phase(images: torch.Tensor, seed: int, with_phase: bool) -> torch.Tensor:
    """The phase ``make_problem`` gave each slice (radians, ``(S, 1, H, W)``; zeros without phase)."""
    if not with_phase:
        return torch.zeros_like(images)
    gens = slice_generators(seed, range(images.shape[0]), "phase")
    return torch.stack([smooth_phase(tuple(images.shape[-2:]), g) for g in gens])[:, None].to(images.dtype)


def protocol_problem(base, images: torch.Tensor, seed: int, with_phase: bool, unknowns: str, prior_phase: str | None):
    """The :class:`~medrecon.reconstruct.Problem` of one protocol, from ``base`` (the benchmark's
    problem of the same slices, image with or without phase)."""
    true = _true_phase(images, seed, with_phase)
    if unknowns == "complex":
        return dataclasses.replace(base, phase=true if prior_phase == "true" else None)
    phase = true if unknowns == "real-true" else low_resolution_phase(base.op, base.y)
    op = base.op @ RealImageEmbedding(base.op.in_shape, phase.to(torch.float32))
    return dataclasses.replace(base, op=op, phase=None)


def _cg_sense(problem, n_iter: int) -> torch.Tensor:
    if problem.op.in_complex:
        return bmr.cg_sense(problem.op, problem.y, n_iter=n_iter)

    return conjugate_gradient(problem.op.normal, problem.op.adjoint(problem.y), n_iter=n_iter)


@dataclass(frozen=True)
class MrGap:
    """What ``medrecon bench mr-gap`` runs: ``steps`` are DDS step counts (beyond the first, only the
    two ends of the table), ``accel`` 4 or 8."""

    prior: str = "mr-starter"
    accel: int = 4
    steps: tuple[int, ...] = (50,)
    slices: int = 2
    starter: str | None = None
    batch_size: int = 8
    device: str = "auto"
    seed: int = 0


@torch.no_grad()
def run_mr_gap(args: MrGap, *, command: str | None = None) -> list[dict]:
    """Run the table and print it as Markdown; returns the rows."""
    device = bench_device(args.device)
    steps_list = [int(s) for s in args.steps]
    if not steps_list or min(steps_list) < 1:
        raise InputError(f"--steps needs positive step counts, got {args.steps}")
    setting = next(s for s in SETTINGS if s.modality == "MR" and s.accel == args.accel and not s.noisy)
    prior = load_prior(args.prior, device=device)
    source = validation_sources("MR")[0]
    images = evaluation_slices(source.id, prior.card.normalisation, prior.card.image_size, args.slices, args.starter)
    cg_iters = int(TUNED_WEIGHTS[setting.tuned_key()]["cg_sense"])
    t0 = time.perf_counter()
    rows = []
    for with_phase in (True, False):
        base, reference = make_problem(setting, images, args.seed, with_phase=with_phase)
        for unknowns in ("complex", "real"):
            p = protocol_problem(base, images, args.seed, with_phase, "complex" if unknowns == "complex" else "real-true", None)
            rows.append({"protocol": f"{'phase' if with_phase else 'real-valued image'}, {unknowns} unknowns"
                         + ("" if unknowns == "complex" else (" x true phase" if with_phase else "")),
                         "method": f"CG-SENSE ({cg_iters} it)", "steps": None,
                         **_scores(_cg_sense(p, cg_iters), reference)})
            print(f"  {rows[-1]['protocol']:70s} {rows[-1]['method']:20s} {rows[-1]['psnr']:6.2f} {rows[-1]['ssim']:.3f}", flush=True)
        for name, has_phase, unknowns, prior_phase in PROTOCOLS:
            if has_phase != with_phase:
                continue
            p = protocol_problem(base, images, args.seed, with_phase, unknowns, prior_phase)
            for k, steps in enumerate(steps_list):
                if k and name not in (PROTOCOLS[0][0], PROTOCOLS[-1][0]):
                    continue  # more steps only for the two ends of the table
                result = reconstruct(p, prior, sampler=DEFAULT_SAMPLER, steps=steps, batch_size=args.batch_size, device=device,
                                     seed=args.seed, progress=False)
                rows.append({"protocol": name, "method": DEFAULT_SAMPLER, "steps": steps, **_scores(result.mean, reference),
                             "seconds_per_slice": result.seconds_per_slice})
                print(f"  {name:70s} dds {steps:4d} steps      {rows[-1]['psnr']:6.2f} {rows[-1]['ssim']:.3f}", flush=True)
    index = np.unique(np.round(np.linspace(0.2, 0.8, args.slices) * (images.shape[0] - 1)))
    header = run_header(command or (f"medrecon bench mr-gap --slices {args.slices} --accel {args.accel} --steps "
                                    f"{' '.join(map(str, steps_list))}"), device, t0)
    lines = [
        f"Command: `{header['command']}`  ",
        f"Machine: {header['machine']}; date {header['date']}; total {header['seconds']:.0f} s.  ",
        f"Prior: {prior.card.name} (sha256 {next(iter(prior.card.sha256.values()))[:12]}); data: {images.shape[0]} slices of "
        f"{source.id} (validation; {len(index)} evenly spaced through the middle 60%), 8 simulated coils, "
        f"equispaced_fraction {args.accel}x, noiseless; DDS with the mr-clean preset.",
        "",
    ]
    cells = [[r["protocol"], r["method"], r["steps"] or "-", f"{r['psnr']:.2f}", f"{r['ssim']:.3f}"] for r in rows]
    print("\n".join(lines) + "\n" + markdown_table(["protocol", "method", "steps", "PSNR (dB)", "SSIM"], cells))
    return rows
