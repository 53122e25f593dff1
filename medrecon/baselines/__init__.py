"""Classical reconstructions used as references for every diffusion result.

- :mod:`.ct`: FBP, SIRT, CGLS, TV-PDHG;
- :mod:`.mri`: zero-filled, gridding (non-Cartesian), CG-SENSE, L1-wavelet and TV (through sigpy).

:data:`TUNED_WEIGHTS` holds, per benchmark setting, the weight or iteration count of each method
chosen on training patients only (``medrecon bench tune-baselines``; the full grids are in
docs/baselines.md). Settings are named ``ct-parallel-{8,23,60}v-{clean,noisy}`` (256x256, parallel
beam, 1% sinogram noise) and ``mr-8coil-{4,8}x-{clean,noisy}`` (256x256, 8 coils,
``equispaced_fraction`` masks, complex noise 0.02), ``mr-8coil-{radial48,spiral16r4}-clean``
(the non-Cartesian benchmark trajectories; l1-wavelet and TV solve the density-weighted problem,
docs/baselines.md), images normalised as the priors are (CT HU window [-1000, 2000], MR
magnitude / 99.5th percentile). A name ending ``@N`` is the same setting tuned on N x N images
(``tune-baselines --matrix N``: CT at the training patient's native 512x512); the plain name is
:data:`BASE_MATRIX`.
"""

BASE_MATRIX = 256
"""The image matrix of the settings named without ``@N``."""

TUNED_WEIGHTS: dict[str, dict[str, float]] = {
    "ct-parallel-8v-clean": {"tv_pdhg": 1e-2, "tv3d_pdhg": 3e-3},
    "ct-parallel-23v-clean": {"tv_pdhg": 1e-3, "sirt": 1600, "cgls": 80, "tv3d_pdhg": 3e-4},
    "ct-limited-120v-clean": {"tv_pdhg": 1e-4, "tv3d_pdhg": 1e-4},
    "ct-parallel-23v-noisy": {"tv_pdhg": 1e-3, "sirt": 50, "cgls": 10},
    "ct-parallel-60v-clean": {"tv_pdhg": 1e-4, "sirt": 1600, "cgls": 80},
    "ct-parallel-60v-noisy": {"tv_pdhg": 3e-4, "sirt": 100, "cgls": 10},
    "ct-parallel-23v-clean@512": {"tv_pdhg": 1e-3, "sirt": 1600, "cgls": 80},
    "ct-parallel-23v-noisy@512": {"tv_pdhg": 3e-3, "sirt": 50, "cgls": 10},
    "ct-parallel-60v-clean@512": {"tv_pdhg": 3e-4, "sirt": 1600, "cgls": 80},
    "ct-parallel-60v-noisy@512": {"tv_pdhg": 1e-3, "sirt": 50, "cgls": 10},
    "mr-8coil-4x-clean": {"l1_wavelet": 3e-4, "total_variation": 1e-3, "cg_sense": 320},
    "mr-8coil-4x-noisy": {"l1_wavelet": 3e-3, "total_variation": 3e-3, "cg_sense": 5},
    "mr-8coil-8x-clean": {"l1_wavelet": 3e-4, "total_variation": 1e-2, "cg_sense": 320},
    "mr-8coil-8x-noisy": {"l1_wavelet": 3e-3, "total_variation": 1e-2, "cg_sense": 5},
    "mr-8coil-radial48-clean": {"l1_wavelet": 3e-5, "total_variation": 1e-4, "cg_sense": 160},
    "mr-8coil-spiral16r4-clean": {"l1_wavelet": 1e-5, "total_variation": 3e-5, "cg_sense": 160},
}
"""``TUNED_WEIGHTS[setting][method]``: ``lam_rel`` for tv_pdhg / tv3d_pdhg (``tv_pdhg(volume=True)``)
/ l1_wavelet / total_variation, ``n_iter`` for sirt / cgls / cg_sense. The volume settings of
``medrecon bench recon-volume`` (``ct-parallel-8v-clean``, the ``tv3d_pdhg`` entries,
``ct-limited-120v-clean``: 120 views at 0..119 degrees) were chosen on 8 contiguous slices of the
training patient ct-lung2 (grid 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1; best volume PSNR;
docs/baselines.md). The ``@512`` settings were chosen on 3 slices of ct-lung2 at its native 512x512
(``tune-baselines --matrix 512``; docs/baselines.md)."""
