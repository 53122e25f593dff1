"""The README's Python-API reconstruction: sparse-view CT of the sample study with DDS and posterior
samples, next to tuned TV-PDHG; optionally writes the mean volume and the uncertainty map as NIfTI.

    python examples/reconstruct_api.py [--fast] [--prior ct-starter] [--samples 2] [--steps N] [-o lung1-dds.nii.gz]

Shapes and units:
- the study: voxels (S, 256, 256) in HU (S = 8; 2 with --fast), pixel size about 1.14 mm;
- the acquisition: 23 parallel-beam views over [0, pi), Gaussian noise of 1% of each slice's clean
  sinogram maximum; sinograms (S, 1, 23, 363) of line integrals of mu = mu_water (1 + HU / 1000);
- the problem and the result live in the prior's normalised units u = (HU + 1000) / 3000, images
  (S, 1, 256, 256); PSNR/SSIM are measured there (data range 1, images clipped to [0, 1]);
- ``-o X.nii.gz`` writes the posterior mean in HU to X.nii.gz and the per-pixel standard deviation
  over the samples (HU) to X-std.nii.gz, with the study's geometry.

``--prior`` takes a shipped name or a prior folder (e.g. one written by ``medrecon train``).
"""

import argparse
import dataclasses
from pathlib import Path

import torch

import medrecon
from medrecon.baselines import TUNED_WEIGHTS, ct
from medrecon.operators import ParallelBeamGeometry
from medrecon.priors.normalisation import Normalisation

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "ct-lung1-sample.nii.gz"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast", action="store_true", help="2 slices, 3 DDS steps, 50 TV iterations (for CI)")
    parser.add_argument("--prior", default="ct-starter", help="shipped prior name or prior folder")
    parser.add_argument("--samples", type=int, default=2, help="posterior samples per slice (> 1 gives the std map)")
    parser.add_argument("--steps", type=int, default=None, help="DDS steps (default: the preset's 50; 3 with --fast)")
    parser.add_argument("-o", "--out", default=None, help="write the mean (HU) here (.nii.gz) and the std map beside it")
    args = parser.parse_args()

    study = medrecon.load_study(SAMPLE, modality="CT")                            # (8, 256, 256) HU
    if args.fast:  # the first slices keep the affine's origin, so the subset is a valid study
        study = dataclasses.replace(study, voxels=study.voxels[:2])
    geometry = ParallelBeamGeometry.sparse_view(study.shape[1:], 23, pixel_size=study.pixel_size,
                                                detector_spacing=study.pixel_size)
    acquisition = medrecon.CTAcquisition(geometry.to_dict(), noise="gaussian", noise_rel=0.01)
    sinograms = medrecon.simulate(study, acquisition)                             # (S, 1, 23, 363)
    problem = medrecon.problem_from_acquisition(acquisition, sinograms)           # in u = (HU + 1000) / 3000

    prior = medrecon.load_prior(args.prior)
    steps = args.steps or (3 if args.fast else None)
    result = medrecon.reconstruct(problem, prior, sampler="dds", steps=steps, samples=args.samples)
    print(f"DDS: {result.settings['steps']} steps x {args.samples} samples, {result.nfe} NFE per slice and sample, "
          f"{result.seconds:.1f} s")

    weights = TUNED_WEIGHTS["ct-parallel-23v-noisy"]
    with torch.no_grad():
        tv = ct.tv_pdhg(problem.op, problem.y, lam_rel=weights["tv_pdhg"], n_iter=50 if args.fast else 500)

    reference = Normalisation.for_modality("CT").apply(study.voxels)[:, None]     # u, clipped to [0, 1]
    for name, image in (("DDS mean", result.mean), (f"TV-PDHG (lam_rel {weights['tv_pdhg']:g})", tv)):
        u = image.clamp(0, 1)
        print(f"{name:24s} PSNR {medrecon.psnr(u, reference, data_range=1.0, per='volume'):.2f} dB  "
              f"SSIM {medrecon.ssim(u, reference, data_range=1.0, per='volume'):.3f}")
    if result.std is not None:
        std_hu = problem.std_to_native(result.std)                                # (S, 256, 256) HU
        print(f"posterior std over {args.samples} samples: mean {float(std_hu.mean()):.1f} HU, max {float(std_hu.max()):.1f} HU")

    if args.out:
        out = Path(args.out)
        stem = out.name[: -len(".nii.gz")] if out.name.endswith(".nii.gz") else out.stem
        print("wrote", medrecon.save_study(study.with_voxels(problem.to_native(result.mean)), out, overwrite=True))
        if result.std is not None:
            std_path = out.with_name(f"{stem}-std.nii.gz")
            print("wrote", medrecon.save_study(study.with_voxels(std_hu), std_path, overwrite=True))


if __name__ == "__main__":
    main()
