"""Studies of another matrix than the prior's: the prior's grid vs the study's own pixel size.

On a validation patient of the starter corpus, one benchmark setting (docs/benchmarks.md), the
same measurements reconstructed three ways: DDS on the prior's 256 grid with the result resampled
back (``--grid prior``), DDS at the study's own pixel size with the prior on its own grid
(multi-resolution, ``--grid native``), and the classical baselines at the native grid; beside them
the grid ceiling (the reference through the 256 grid and back). CT: ct-lung1 at its native 512x512.
MR: mr-brain2's slices padded to 320x320 at their own pixel size (a 320 matrix of the same patient).

    python scripts/compare_grids.py "CT parallel 23 views" --slices 2
    python scripts/compare_grids.py "MR 8 coils 4x" --slices 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

import torch
import torch.nn.functional as F

from medrecon.evaluation.baselines import table_baselines
from medrecon.evaluation.scoring import score
from medrecon.evaluation.settings import COILS, SETTINGS, evaluation_slices, make_problem
from medrecon.grid import GridMap, centre_block, crop_or_pad_kspace
from medrecon.operators import CTProjector, MultiCoilMRI, simulated_maps
from medrecon.priors.hub import load_prior
from medrecon.reconstruct import Problem, reconstruct


def coarse_problem(problem: Problem, size: int) -> Problem:
    """The same measurements on the ``size x size`` grid of the same field of view (as ``--grid prior``)."""
    if problem.modality == "CT":
        geometry = problem.op.geometry
        side = geometry.image_shape[0]
        op = CTProjector(dataclasses.replace(geometry, image_shape=(size, size), pixel_size=geometry.pixel_size * side / size))
        return Problem(op, problem.y, "CT", problem.noisy)
    op = MultiCoilMRI(simulated_maps(COILS, (size, size))[None], centre_block(problem.op.mask.to(torch.float32), size))
    return Problem(op, crop_or_pad_kspace(problem.y, size) * op.mask, "MR", problem.noisy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("setting", choices=[s.name for s in SETTINGS if not s.non_cartesian])
    parser.add_argument("--slices", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    setting = next(s for s in SETTINGS if s.name == args.setting)
    if setting.modality == "CT":
        prior = load_prior("ct-starter")
        images = evaluation_slices("ct-lung1", prior.card.normalisation, 512, args.slices, None)
    else:
        prior = load_prior("mr-starter")
        images = F.pad(evaluation_slices("mr-brain2", prior.card.normalisation, 256, args.slices, None), (32,) * 4)
    side, size = images.shape[-1], prior.card.image_size
    problem, reference = make_problem(setting, images, 0)
    grid = GridMap.for_study((side, side), (1.0, 1.0), size)
    rows = []

    def row(method, image, seconds=None):
        image = image.abs() if image.is_complex() else image
        s = score(image.float(), reference, "volume")
        rows.append({"method": method, "psnr": round(s.psnr, 2), "ssim": round(s.ssim, 4),
                     "seconds_per_slice": None if seconds is None else round(seconds, 2)})
        print(f"{setting.name:28s} {method:44s} {s.psnr:6.2f} dB  {s.ssim:.4f}", flush=True)

    row(f"grid ceiling ({size} grid and back)", grid.to_input(grid.to_grid(reference[:, 0], 0.0))[:, None])
    coarse = coarse_problem(problem, size)
    for method in table_baselines(setting.modality):
        t0 = time.perf_counter()
        image = method.run(problem.op, problem.y, setting.tuned_key)
        row(f"{method.describe(setting.tuned_key)} @{side}", image, (time.perf_counter() - t0) / problem.slices)
    result = reconstruct(coarse, prior, sampler="dds", seed=0, progress=False)
    row(f"DDS @{size} -> {side} (--grid prior)", grid.to_input(result.mean.abs()[:, 0] if result.mean.is_complex()
                                                              else result.mean[:, 0])[:, None], result.seconds_per_slice)
    result = reconstruct(problem, prior, sampler="dds", seed=0, progress=False, multiresolution=True)
    row(f"DDS multi-resolution @{side} (--grid native)", result.mean, result.seconds_per_slice)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"setting": setting.name, "slices": problem.slices, "machine": platform.processor() or platform.machine(),
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
