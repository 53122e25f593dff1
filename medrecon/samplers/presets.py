"""Per-task sampler settings, stored as data in ``presets.json`` beside this module.

A task is a modality, whether MR k-space is Cartesian, and whether the data are noisy (see
``presets.json``'s ``about`` for how the values were chosen): ``ct-clean``, ``ct-noisy``,
``mr-clean``, ``mr-noisy``, ``mr-noncartesian-clean``, ``mr-noncartesian-noisy`` (radial,
spiral and any other trajectory through the NUFFT). A preset holds the schedule (``steps``, ``schedule`` = ``karras`` or ``geometric``,
``sigma_max``, ``sigma_min``) and the sampler's own options (e.g. DDS's ``cg_iters``, ``eta``,
``gamma_rel``). :func:`sampler_settings` turns a preset plus the caller's overrides into the
``sigmas`` and keyword options of the sampler function; unknown override names are refused,
never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medrecon.errors import InputError, positive_int

from .registry import presets_file, sampler_spec

TASKS = ("ct-clean", "ct-noisy", "mr-clean", "mr-noisy", "mr-noncartesian-clean", "mr-noncartesian-noisy")
SCHEDULE_KEYS = ("steps", "schedule", "sigma_max", "sigma_min")


def load_presets() -> dict:
    """``{sampler: {task: preset}}`` from ``presets.json``."""
    return presets_file()["presets"]


ADAPTER_OPTIONS = ("imag_std",)


def adapter_settings(task: str) -> dict:
    """The prior adapter's settings of a task (``presets.json``'s ``adapters``; every sampler):
    ``imag_std`` of :class:`~medrecon.priors.denoiser.PhaseAlignedDenoiser` for the MR tasks."""
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; known: {TASKS}")
    return dict(presets_file().get("adapters", {}).get(task, {}))


def task_name(modality: str, noisy: bool, *, non_cartesian: bool = False) -> str:
    """``"ct-clean"`` etc. from a modality (``CT``/``MR``), the noise flag and, for MR, whether the
    k-space is non-Cartesian."""
    m = str(modality).lower()
    if m not in ("ct", "mr"):
        raise InputError(f"modality must be CT or MR, got {modality!r}")
    if non_cartesian and m != "mr":
        raise InputError("only MR data can be non-Cartesian")
    return f"{m}{'-noncartesian' if non_cartesian else ''}-{'noisy' if noisy else 'clean'}"


@dataclass(frozen=True)
class SamplerSettings:
    """What one sampler run uses: its name, the task, the schedule and the method's options."""

    sampler: str
    task: str
    steps: int
    schedule: str
    sigma_max: float
    sigma_min: float
    options: dict = field(default_factory=dict)

    def sigmas(self):
        """The decreasing noise levels of the run (a float64 tensor)."""
        from .schedules import geometric_sigmas, karras_sigmas  # torch, only when sampling

        if self.schedule == "karras":
            return karras_sigmas(self.steps, self.sigma_min, self.sigma_max)
        if self.schedule == "geometric":
            # score-SDE: N steps need N + 1 levels (the last one is the final denoise)
            return geometric_sigmas(self.steps + 1, self.sigma_min, self.sigma_max)
        raise InputError(f"unknown schedule {self.schedule!r}; known: karras, geometric")

    @property
    def nfe(self) -> int:
        """Network evaluations per slice of one run (the registry's count: score-SDE and DiffusionMBIR
        make a corrector and a predictor call per step, plus one)."""
        return sampler_spec(self.sampler).nfe(self.steps)

    def to_dict(self) -> dict:
        return {"sampler": self.sampler, "task": self.task, "steps": self.steps, "schedule": self.schedule,
                "sigma_max": self.sigma_max, "sigma_min": self.sigma_min, "options": dict(self.options), "nfe": self.nfe}


def check_overrides(sampler: str, overrides: dict, *, adapter: bool = False) -> None:
    """Refuse overrides that are no option of ``sampler`` (its function's keyword options and the
    schedule keys; with ``adapter`` also :data:`ADAPTER_OPTIONS`) or have the wrong type, naming
    the option, what it takes and what was given. Needs no task: commands check before any work."""
    spec = sampler_spec(sampler)
    accepted = spec.options
    extra = set(ADAPTER_OPTIONS) if adapter else set()
    unknown = sorted(set(overrides) - accepted - set(SCHEDULE_KEYS) - extra)
    if unknown:
        raise InputError(f"{sampler} has no option {unknown}; its options: {sorted(accepted)} and {list(SCHEDULE_KEYS)}"
                         + (f" and {list(ADAPTER_OPTIONS)}" if adapter else ""))
    for name, value in overrides.items():
        if name in accepted:
            spec.check_option(name, value)
        elif name == "schedule":
            if value not in ("karras", "geometric"):
                raise InputError(f"schedule must be karras or geometric, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{name} takes a number, got {value!r}")


def sampler_settings(sampler: str, task: str, *, steps: int | None = None, **overrides) -> SamplerSettings:
    """The preset of ``sampler`` for ``task`` with ``steps`` and any option overridden.

    Overrides must be options of the sampler function (or schedule keys); anything else is an
    :class:`InputError` naming the accepted names."""
    spec = sampler_spec(sampler)
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; known: {TASKS}")
    preset = dict(spec.presets()[task])
    check_overrides(sampler, overrides)
    preset.update(overrides)
    if steps is not None:
        preset["steps"] = steps
    n = positive_int(preset.pop("steps"), "steps")
    schedule = {k: preset.pop(k) for k in SCHEDULE_KEYS[1:]}
    return SamplerSettings(sampler, task, n, schedule["schedule"], float(schedule["sigma_max"]), float(schedule["sigma_min"]), preset)


__all__ = ["ADAPTER_OPTIONS", "SamplerSettings", "TASKS", "adapter_settings", "check_overrides", "load_presets", "sampler_settings",
           "task_name"]
