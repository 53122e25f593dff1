"""Samplers over a denoiser prior ``D(x, sigma)``: plain functions with one signature,
``sample_X(denoiser, op, y, *, sigmas, generator, callback, **method_options) -> x``.

The samplers: :func:`~.score_sde.sample_score_sde` (Song et al. 2022), :func:`~.dds.sample_dds`
(Chung, Lee, Ye 2024), :func:`~.dps.sample_dps` (Chung et al. 2023) and
:func:`~.resample.sample_resample` (B. Song et al. 2024; its first argument is a
:class:`~medrecon.priors.latent.LatentPrior`, not a pixel denoiser), and for whole volumes
:func:`~.diffusion_mbir.sample_diffusion_mbir` (Chung et al. 2023; DDS-3D is DDS's
``volume_prior="tv-z"``), their shared steps in
:mod:`.consistency`, the schedules in :mod:`.schedules`, and the unconditional
:func:`~.ddim.sample_ddim`.
"""

from .dds import sample_dds
from .diffusion_mbir import sample_diffusion_mbir
from .dps import sample_dps
from .resample import sample_resample
from .score_sde import sample_score_sde

SAMPLERS = {"score_sde": sample_score_sde, "dps": sample_dps, "dds": sample_dds, "resample": sample_resample,
            "diffusion_mbir": sample_diffusion_mbir}

__all__ = ["SAMPLERS", "sample_dds", "sample_diffusion_mbir", "sample_dps", "sample_resample", "sample_score_sde"]
