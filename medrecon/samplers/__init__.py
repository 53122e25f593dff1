"""Samplers over a denoiser prior ``D(x, sigma)``: plain functions with one signature,
``sample_X(denoiser, op, y, *, sigmas, generator, callback, **method_options) -> x``.

:data:`SAMPLERS` (:mod:`.registry`) names each sampler with what it needs: score-SDE projection
(:func:`~.score_sde.sample_score_sde`, Song et al. 2022), DDS (:func:`~.dds.sample_dds`, Chung,
Lee, Ye 2024; DDS-3D is its ``volume_prior="tv-z"``), DPS (:func:`~.dps.sample_dps`, Chung et al.
2023), ReSample (:func:`~.resample.sample_resample`, B. Song et al. 2024; its first argument is a
:class:`~medrecon.priors.latent.LatentPrior`) and DiffusionMBIR
(:func:`~.diffusion_mbir.sample_diffusion_mbir`, Chung et al. 2023). Their shared steps are in
:mod:`.consistency`, the schedules in :mod:`.schedules`, the presets in :mod:`.presets`, and the
unconditional :func:`~.ddim.sample_ddim`.

Importing this package is cheap (no torch): the sampler functions load on first use.
"""

from __future__ import annotations

import importlib

from .registry import DEFAULT_SAMPLER, SAMPLERS, SamplerSpec, sampler_names, sampler_spec

_FUNCTIONS = {spec.target.partition(":")[2]: spec.target.partition(":")[0] for spec in SAMPLERS.values()}


def __getattr__(name: str):
    if name in _FUNCTIONS:
        value = getattr(importlib.import_module(_FUNCTIONS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'medrecon.samplers' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_FUNCTIONS))


__all__ = ["DEFAULT_SAMPLER", "SAMPLERS", "SamplerSpec", "sampler_names", "sampler_spec", *sorted(_FUNCTIONS)]
