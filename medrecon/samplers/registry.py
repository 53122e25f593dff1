"""The sampler registry: every fact about a sampler in one entry.

:data:`SAMPLERS` maps a name (what ``--sampler`` takes, what records and tables say) to a
:class:`SamplerSpec`: the function and the paper, which prior it needs (a pixel denoiser or a
latent prior), whether it reconstructs slice by slice, takes a volume prior as an option (DDS's
``volume_prior="tv-z"``, DDS-3D) or always couples the volume (DiffusionMBIR), its network
evaluations per step, whether it differentiates through the network, and its presets
(``presets.json``). The command line, the benchmarks, ``reproduce`` and
:func:`medrecon.reconstruct` read these facts here; adding a sampler is one entry below plus its
presets.

This module imports no torch: the command line builds its choices from it and stays instant. The
function is imported on first use (:attr:`SamplerSpec.function`); a spec is callable, so
``SAMPLERS["dds"](denoiser, op, y, sigmas=..., generator=...)`` runs the sampler.
"""

from __future__ import annotations

import importlib
import inspect
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from medrecon.errors import InputError

PRESETS_FILE = Path(__file__).with_name("presets.json")

LONG_NFE = 500
"""A sampler whose preset costs at least this many network evaluations per slice is a long one:
on the CPU the benchmarks run it on fewer slices (and steps), and say so in the row."""

PRIOR_KINDS = ("pixel", "latent")
VOLUME_KINDS = ("none", "optional", "always")
_LOOP_ARGUMENTS = frozenset({"sigmas", "generator", "callback"})


@lru_cache(maxsize=1)
def presets_file() -> dict:
    """``presets.json`` as a dict (read once)."""
    return json.loads(PRESETS_FILE.read_text())


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler.

    ``name``: the registry key. ``short``: the method's name in tables. ``title``: the method and
    its paper. ``target``:
    ``"module:function"`` of the sampler function (signature ``fn(model, op, y, *, sigmas,
    generator, callback, **options)``). ``prior``: ``pixel`` (a denoiser ``D(x, sigma)``) or
    ``latent`` (a :class:`~medrecon.priors.latent.LatentPrior`). ``volume``: ``none`` (slices are
    independent), ``optional`` (the ``volume_prior`` option couples them) or ``always`` (the
    volume is one problem). ``nfe_per_step`` / ``nfe_extra``: network evaluations per slice are
    ``nfe_per_step * steps + nfe_extra``. ``gradient``: each network call is differentiated with
    respect to its input (memory per slice is larger).

    ``working_images`` / ``working_data``: the sampler's own tensors per slice at its peak, counted
    from its code, in images of the operator's grid (``op.in_shape``) and in measurements
    (``op.out_shape``; score-SDE's are its full transform's); ``volume_images``: the images a volume
    prior adds (DDS-3D's ADMM: ``A^H y``, ``v``, ``u``, its right-hand side and the temporaries of
    ``D_z^T D_z``). The network's activations and the operator's own temporaries are not in them
    (:func:`medrecon.batching.memory_plan` measures the one and computes the other).
    """

    name: str
    short: str
    title: str
    target: str
    prior: str = "pixel"
    volume: str = "none"
    nfe_per_step: int = 1
    nfe_extra: int = 0
    gradient: bool = False
    working_images: int = 14
    working_data: int = 1
    volume_images: int = 0

    def __post_init__(self):
        if self.prior not in PRIOR_KINDS or self.volume not in VOLUME_KINDS:
            raise InputError(f"sampler {self.name}: prior must be one of {PRIOR_KINDS}, volume one of {VOLUME_KINDS}")

    @cached_property
    def function(self) -> Callable:
        """The sampler function (imported on first use)."""
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)

    @cached_property
    def options(self) -> frozenset[str]:
        """The method's own keyword options (what presets and ``--option`` may set)."""
        params = inspect.signature(self.function).parameters.values()
        return frozenset(p.name for p in params if p.kind == p.KEYWORD_ONLY) - _LOOP_ARGUMENTS

    @cached_property
    def option_types(self) -> dict[str, tuple[type, ...]]:
        """The types each option accepts, from the function's annotations (``float`` takes ints, a
        tuple takes a list, as JSON gives them)."""
        hints = typing.get_type_hints(self.function)
        out = {}
        for name in self.options:
            hint = hints.get(name, object)
            args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
            accepted = []
            for a in args:
                a = type(None) if a is None else (typing.get_origin(a) or a)
                accepted += [a] + ([int] if a is float else []) + ([list] if a is tuple else [])
            out[name] = tuple(a for a in accepted if isinstance(a, type))
        return out

    def check_option(self, name: str, value) -> None:
        """Refuse a value of the wrong type for option ``name`` (an :class:`InputError` naming both)."""
        accepted = self.option_types.get(name, (object,))
        if isinstance(value, bool) and bool not in accepted and object not in accepted:
            ok = False
        else:
            ok = isinstance(value, accepted)
        if not ok:
            names = [("None" if a is type(None) else a.__name__) for a in accepted if a not in (int, list) or a is accepted[0]]
            raise InputError(f"{self.name} option {name} takes {' or '.join(names)}, got {value!r}")

    def nfe(self, steps: int) -> int:
        """Network evaluations per slice of a run of ``steps`` steps."""
        return self.nfe_per_step * int(steps) + self.nfe_extra

    def presets(self) -> dict:
        """``{task: preset}`` of ``presets.json``."""
        return presets_file()["presets"][self.name]

    @property
    def long(self) -> bool:
        """Whether the preset (any task) costs at least :data:`LONG_NFE` evaluations per slice."""
        return max(self.nfe(p["steps"]) for p in self.presets().values()) >= LONG_NFE

    @property
    def slice_wise(self) -> bool:
        """Whether the sampler reconstructs slice by slice (by default: DDS-3D's volume prior is an option)."""
        return self.volume != "always"

    @property
    def takes_volume_prior(self) -> bool:
        return self.volume != "none"

    def default_prior(self, modality: str) -> str:
        """The shipped prior this sampler uses for ``modality`` (``CT``/``MR``) when none is named."""
        return f"{str(modality).lower()}-starter" + ("-latent" if self.prior == "latent" else "")


# Working sets (per slice, at the peak). Counted from each sampler's code, then checked against the
# CPU's peak resident growth per slice (/proc VmHWM between batches of 8 and 32, the analytic Gaussian
# denoiser, 256x256 CT at 23 views and MR with 8 coils; docs/samplers.md), and raised where the count
# fell short (temporaries of the expressions, the per-item noise's stacked copy); MiB per slice
# measured / planned: CT DDS 4.0 / 4.1, DPS 3.9 / 3.9, score-SDE 10.6 / 10.9, DDS-3D 7.1 / 7.4,
# DiffusionMBIR 6.2 / 6.6; MR DDS 22.4 / 27.0, DPS 12.8 / 38.5, score-SDE 26.0 / 46.0.
# - DDS, inside CG: the noise template, x, x0_hat and A^H y; CG's M x0, r, p, M p, the old and new x
#   and update temporaries; noisy data add x0_hat + gamma A^H y and the (I + gamma A^H A) sum: 14
#   images, and y. DDS-3D adds ADMM's A^H y / ||A||^2, v, u, its right-hand side, the CG over the
#   volume's temporaries and those of D_z^T D_z: 13.
# - DPS, in the backward pass: template, x, x0_hat, its clip, A^H of the residual's gradient, the
#   clip's gradient, grad x, and the ancestral update's noise and temporaries: 13 images; y, A x0_hat,
#   the residual and its gradient: 4 measurements.
# - score-SDE, in the projection: template, x, the final step's right-hand side, the projected x,
#   the score and its temporaries: 12 images; y embedded in the full transform, y_t, T x, y_t - T x
#   and two masked temporaries: 6 full-transform measurements (CT's FBP filtering is the operator's
#   part: medrecon.batching.sampler_bytes_per_slice).
# - ReSample (not measured: the latent prior's decoder is the network's part), in a pixel CG or a
#   latent solve: the decoded image, the phase and its rotation and DDS's CG: 16 images; y,
#   A decode(z), the residual and its square: 4 measurements.
# - DiffusionMBIR, in ADMM: template, x, score, z and their temporaries, ADMM's and CG's over the
#   volume: 24 images, and y.
SAMPLERS: dict[str, SamplerSpec] = {
    spec.name: spec
    for spec in (
        SamplerSpec("dds", "DDS", "DDS, decomposed diffusion sampler (Chung, Lee, Ye, ICLR 2024)", "medrecon.samplers.dds:sample_dds",
                    volume="optional", working_images=14, working_data=1, volume_images=13),
        SamplerSpec("dps", "DPS", "DPS, diffusion posterior sampling (Chung et al., ICLR 2023)", "medrecon.samplers.dps:sample_dps",
                    gradient=True, working_images=13, working_data=4),
        SamplerSpec("score_sde", "score-SDE", "score-SDE projection (Song, Shen, Xing, Ermon, ICLR 2022)",
                    "medrecon.samplers.score_sde:sample_score_sde", nfe_per_step=2, nfe_extra=1, working_images=12, working_data=6),
        SamplerSpec("resample", "ReSample", "ReSample, latent diffusion with hard data consistency (B. Song et al., ICLR 2024)",
                    "medrecon.samplers.resample:sample_resample", prior="latent", gradient=True, working_images=16,
                    working_data=4),
        SamplerSpec("diffusion_mbir", "DiffusionMBIR", "DiffusionMBIR, 2-D prior with TV along z (Chung et al., CVPR 2023)",
                    "medrecon.samplers.diffusion_mbir:sample_diffusion_mbir", volume="always", nfe_per_step=2, nfe_extra=1,
                    working_images=24, working_data=1),
    )
}
"""Every sampler by name; the first is the default (:data:`DEFAULT_SAMPLER`)."""

DEFAULT_SAMPLER = next(iter(SAMPLERS))


def sampler_spec(name: str) -> SamplerSpec:
    """The spec of ``name``; an :class:`~medrecon.errors.InputError` naming the known samplers otherwise."""
    if name not in SAMPLERS:
        raise InputError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def sampler_names(*, prior: str | None = None, slice_wise: bool | None = None) -> list[str]:
    """Names of the samplers with a ``prior`` kind and/or that are (not) slice-wise, in registry order."""
    return [s.name for s in SAMPLERS.values()
            if (prior is None or s.prior == prior) and (slice_wise is None or s.slice_wise == slice_wise)]


__all__ = ["DEFAULT_SAMPLER", "LONG_NFE", "SAMPLERS", "SamplerSpec", "presets_file", "sampler_names", "sampler_spec"]
