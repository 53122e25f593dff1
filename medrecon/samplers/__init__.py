"""Samplers over a denoiser prior ``D(x, sigma)``: plain functions with one signature,
``sample_X(denoiser, op, y, *, sigmas, generator, callback, **method_options) -> x``.

So far: :func:`~.dds.sample_dds` (Chung, Lee, Ye 2024) and :func:`~.dps.sample_dps` (Chung et al.
2023), their shared steps in :mod:`.consistency`, the schedules in :mod:`.schedules`, and the
unconditional :func:`~.ddim.sample_ddim`. Score-SDE projection and ReSample are still to come.
"""

from .dds import sample_dds
from .dps import sample_dps

SAMPLERS = {"dds": sample_dds, "dps": sample_dps}

__all__ = ["SAMPLERS", "sample_dds", "sample_dps"]
