"""Every sampler of ``medrecon.SAMPLERS`` next to the best classical baseline on the same slices of
undersampled 8-coil MRI: a table of PSNR, SSIM, seconds and network evaluations (NFE).

    python examples/compare_samplers.py [--fast] [--prior mr-starter] [--latent-prior mr-starter-latent] [--slices 2] [--steps N]

Shapes and units:
- the study: data/mr-brain2-sample.nii.gz, magnitudes (8, 256, 256); ``--slices`` of them from the
  middle of the volume (1 with --fast) are reconstructed;
- the acquisition (``MRAcquisition``): 8 simulated coils with a smooth phase, a fastMRI
  ``equispaced_fraction`` mask at 4x (``CartesianSampling``), complex Gaussian noise 0.02 per k-space
  value of the image scaled to [0, 1] by the volume's 99.5th magnitude percentile; k-space
  (S, 8, 256, 256) complex64;
- images in the prior's units (magnitude / that percentile), complex (S, 1, 256, 256); PSNR/SSIM of
  the magnitudes, data range 1, clipped to [0, 1]; seconds are wall time for all slices; NFE is per
  slice.

Steps: each sampler's preset (presets.json: DDS 50, DPS 1000, score-SDE 1000 (2 NFE each), ReSample
500) unless ``--steps`` is given (3 with --fast, and ReSample's latent solves 5 Adam steps instead
of 50); the long presets need a GPU — on a CPU pass e.g.
``--steps 50``. ReSample needs a latent prior (``--latent-prior``) and is skipped with a message when
there is none. The baseline is TV with its tuned weight, the best classical method of this setting on
the training patients (docs/baselines.md, mr-8coil-4x-noisy).
"""

import argparse
import time
from pathlib import Path

import numpy as np

import medrecon
from medrecon.baselines import TUNED_WEIGHTS, mri
from medrecon.errors import MissingResourceError

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "mr-brain2-sample.nii.gz"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fast", action="store_true", help="1 slice, 3 steps per sampler (for CI)")
    parser.add_argument("--prior", default="mr-starter", help="pixel prior: shipped name or folder (MR, 256x256)")
    parser.add_argument("--latent-prior", default="mr-starter-latent", help="latent prior for ReSample: name or folder")
    parser.add_argument("--slices", type=int, default=2, help="slices from the middle of the volume")
    parser.add_argument("--steps", type=int, default=None, help="steps of every sampler (default: the presets; 3 with --fast)")
    args = parser.parse_args()

    study = medrecon.load_study(SAMPLE, modality="MR")                            # (8, 256, 256) magnitudes
    scale = float(np.percentile(study.voxels.abs().numpy(), 99.5))                # native units of u = 1
    sampling = medrecon.CartesianSampling("equispaced_fraction", 4, seed=study.name)
    acquisition = medrecon.MRAcquisition(sampling.to_dict(), coils=8, noise_sigma=0.02, scale=scale)
    kspace = medrecon.simulate(study, acquisition)                                # (8, 8, 256, 256) complex64
    n = 1 if args.fast else args.slices
    keep = list(range(study.shape[0] // 2 - n // 2, study.shape[0] // 2 - n // 2 + n))
    problem = medrecon.problem_from_acquisition(acquisition, kspace[keep])
    reference = (study.voxels[keep] / scale).clamp(0, 1)[:, None]                 # (S, 1, 256, 256) in [0, 1]
    steps = args.steps or (3 if args.fast else None)

    rows = []

    def add(method, image, seconds, nfe):
        m = image.abs().clamp(0, 1)
        rows.append((method, float(medrecon.psnr(m, reference, data_range=1.0, per="volume")),
                     float(medrecon.ssim(m, reference, data_range=1.0, per="volume")), seconds, nfe))

    lam = TUNED_WEIGHTS["mr-8coil-4x-noisy"]["total_variation"]
    t0 = time.perf_counter()
    add(f"TV (lam_rel {lam:g}, baseline)", mri.total_variation(problem.op, problem.y, lam_rel=lam),
        time.perf_counter() - t0, "-")

    pixel = medrecon.load_prior(args.prior)
    for name in medrecon.SAMPLERS:
        if name == "diffusion_mbir" and n < 2:
            print("diffusion_mbir: skipped, it reconstructs a volume of at least 2 slices (--slices 2 or more)")
            continue
        if name == "resample":
            try:
                prior = medrecon.load_prior(args.latent_prior)
            except MissingResourceError as exc:
                print(f"resample: skipped, no latent prior ({exc})")
                continue
        else:
            prior = pixel
        # --fast: ReSample's latent solves take 5 Adam steps instead of 50 (each one decodes and
        # back-propagates through the decoder: the 50 of the preset dominate a 3-step run)
        options = {"latent_iters": 5} if args.fast and name == "resample" else None
        result = medrecon.reconstruct(problem, prior, sampler=name, steps=steps, options=options, progress=False)
        add(f"{name} ({result.settings['steps']} steps)", result.mean, result.seconds, result.nfe)

    print(f"\n{n} slice(s) of {study.name}, 8 coils, equispaced 4x, noise 0.02")
    print(f"{'method':32s} {'PSNR (dB)':>9s} {'SSIM':>6s} {'seconds':>8s} {'NFE':>5s}")
    for method, p, s, seconds, nfe in rows:
        print(f"{method:32s} {p:9.2f} {s:6.3f} {seconds:8.1f} {nfe!s:>5s}")


if __name__ == "__main__":
    main()
