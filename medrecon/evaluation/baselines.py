"""The classical baselines as a registry, and the choice of their tuned weights.

Every diffusion result is reported next to classical reconstructions of the same data
(:mod:`medrecon.baselines`). :data:`BASELINES` names each method once: its modality, its one
weight (``lam_rel`` or an iteration count, ``None`` for FBP / zero-filled / gridding), the label
the tables print, the solver, and how to run it on ``(op, y)``. The weights come from
:data:`medrecon.baselines.TUNED_WEIGHTS` (chosen on training patients), the setting picked by
:func:`tuned_setting`: the benchmark setting closest to an acquisition (<= 12 views -> the 8-view
weights where tuned, <= 40 -> 23, else 60; <= 6x -> the 4x weights, else 8x; radial / spiral ->
the benchmark trajectories', tuned noiseless only), at the tuned image matrix nearest the
problem's (256, or 512 for the CT settings tuned on native 512x512 slices).

Used alike by ``medrecon reconstruct`` (:func:`default_baseline`: TV for CT and Cartesian MR,
l1-wavelet for non-Cartesian MR), ``medrecon bench`` (:func:`table_baselines`) and ``medrecon
reproduce`` (each protocol's list of keys).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from medrecon.baselines import BASE_MATRIX, TUNED_WEIGHTS
from medrecon.baselines import ct as ct_baselines
from medrecon.baselines import mri as mr_baselines
from medrecon.errors import InputError


@dataclass(frozen=True)
class Baseline:
    """One classical method. ``weight``: the name of its one tuned parameter (``lam_rel`` or
    ``n_iter``), None when it has none; ``label``: the table's name, with ``{w}`` for the weight;
    ``solver``: how it solves (for records); ``run(op, y, weight) -> image (B, *op.in_shape)``."""

    key: str
    modality: str
    label: str
    solver: str
    run_fn: Callable
    weight: str | None = None

    def weight_for(self, setting: str) -> float | None:
        """The tuned weight of the ``TUNED_WEIGHTS`` setting (None for a method without one)."""
        if self.weight is None:
            return None
        if setting not in TUNED_WEIGHTS or self.key not in TUNED_WEIGHTS[setting]:
            raise InputError(f"no tuned {self.key} weight for the setting {setting!r}")
        value = TUNED_WEIGHTS[setting][self.key]
        return int(value) if self.weight == "n_iter" else value

    def describe(self, setting: str | None = None) -> str:
        """The table label (with the weight of ``setting`` when the method has one)."""
        return self.label.format(w=self.weight_for(setting)) if self.weight is not None else self.label

    def details(self, setting: str) -> str:
        """What a record states: the label, the solver and where the weight comes from."""
        tuned = f"; weight of TUNED_WEIGHTS {setting}" if self.weight is not None else ""
        return f"{self.describe(setting)}: {self.solver}{tuned}"

    @torch.no_grad()
    def run(self, op, y: torch.Tensor, setting: str | None = None) -> torch.Tensor:
        """The reconstruction of ``y`` with the weight of ``setting``."""
        if self.weight is None:
            return self.run_fn(op, y)
        return self.run_fn(op, y, **{self.weight: self.weight_for(setting)})


def _entries():
    yield Baseline("fbp", "CT", "FBP (ramp)", "filtered back-projection, ramp filter", ct_baselines.fbp)
    yield Baseline("sirt", "CT", "SIRT ({w:g} it)", "SIRT iterations", ct_baselines.sirt, "n_iter")
    yield Baseline("cgls", "CT", "CGLS ({w:g} it)", "CG on the normal equations", ct_baselines.cgls, "n_iter")
    yield Baseline("tv_pdhg", "CT", "TV-PDHG (lam_rel {w:g})", "TV-regularised least squares by PDHG", ct_baselines.tv_pdhg,
                   "lam_rel")
    yield Baseline("zero_filled", "MR", "zero-filled", "A^H y (coil combination of the zero-filled k-space)",
                   mr_baselines.zero_filled)
    yield Baseline("gridding", "MR", "gridding (Pipe-Menon)", "density-compensated adjoint NUFFT", mr_baselines.gridding)
    yield Baseline("cg_sense", "MR", "CG-SENSE ({w:g} it)", "CG on the SENSE normal equations", mr_baselines.cg_sense, "n_iter")
    yield Baseline("l1_wavelet", "MR", "L1-wavelet (lam_rel {w:g})", "sigpy FISTA, db4 wavelets (density-weighted for "
                   "non-Cartesian data)", mr_baselines.l1_wavelet, "lam_rel")
    yield Baseline("total_variation", "MR", "TV (lam_rel {w:g})", "sigpy PDHG (density-weighted for non-Cartesian data)",
                   mr_baselines.total_variation, "lam_rel")


BASELINES: dict[str, Baseline] = {b.key: b for b in _entries()}
"""Every classical baseline by key (the keys of ``TUNED_WEIGHTS``' entries)."""


def baseline(key: str) -> Baseline:
    if key not in BASELINES:
        raise InputError(f"unknown baseline {key!r}; known: {', '.join(BASELINES)}")
    return BASELINES[key]


def table_baselines(modality: str, *, non_cartesian: bool = False) -> list[Baseline]:
    """The methods a benchmark table shows for a modality, in its column order."""
    if modality == "CT":
        keys = ("fbp", "sirt", "cgls", "tv_pdhg")
    else:
        keys = ("gridding" if non_cartesian else "zero_filled", "cg_sense", "l1_wavelet", "total_variation")
    return [BASELINES[k] for k in keys]


def tuned_setting(modality: str, noisy: bool, *, views: int | None = None, accel: float | None = None,
                  trajectory: str | None = None, matrix: int | None = None) -> str:
    """The ``TUNED_WEIGHTS`` setting closest to an acquisition (module docstring): CT by ``views``,
    Cartesian MR by ``accel``, non-Cartesian MR by ``trajectory`` (``radial`` / ``spiral``); then
    by image ``matrix`` (the larger in-plane side, None: the 256 settings), among the matrices the
    setting was tuned at (``"ct-parallel-23v-clean@512"``; the plain name is 256), the nearest by ratio."""
    noise = "noisy" if noisy else "clean"
    if modality == "CT":
        views = 23 if views is None else int(views)
        few = f"ct-parallel-8v-{noise}"  # tuned for the clean 8-view volume setting only, so far
        if views <= 12 and few in TUNED_WEIGHTS:
            return _at_matrix(few, matrix)
        return _at_matrix(f"ct-parallel-{'23' if views <= 40 else '60'}v-{noise}", matrix)
    if trajectory is not None:
        # tuned on noiseless radial / spiral data only: noisy data use the same weights
        return _at_matrix(f"mr-8coil-{'spiral16r4' if trajectory == 'spiral' else 'radial48'}-clean", matrix)
    accel = 4.0 if accel is None else float(accel)
    return _at_matrix(f"mr-8coil-{'4' if accel <= 6 else '8'}x-{noise}", matrix)


def _at_matrix(setting: str, matrix: int | None) -> str:
    """``setting`` at the tuned matrix nearest ``matrix`` by ratio (256: the plain name)."""
    if matrix is None:
        return setting
    tuned = {BASE_MATRIX: setting} | {int(key.rpartition("@")[2]): key for key in TUNED_WEIGHTS
                                      if key.startswith(setting + "@")}
    return tuned[min(tuned, key=lambda m: abs(math.log(m / matrix)))]


def tuned_setting_of(problem, acquisition: dict | None = None) -> str:
    """:func:`tuned_setting` of a :class:`~medrecon.reconstruct.Problem` and its acquisition record
    (CT ``geometry.angles``; MR ``sampling.acceleration`` or a trajectory's ``kind``), at the
    problem's image matrix."""
    acquisition = acquisition or {}
    matrix = max(problem.op.in_shape[-2:])
    if problem.modality == "CT":
        views = len(acquisition.get("geometry", {}).get("angles", [])) or problem.op.out_shape[-2]
        return tuned_setting("CT", problem.noisy, views=views, matrix=matrix)
    if getattr(problem.op, "non_cartesian", False):
        return tuned_setting("MR", problem.noisy, trajectory=(acquisition.get("sampling") or {}).get("kind") or "radial",
                             matrix=matrix)
    sampling = acquisition.get("sampling") or {}
    accel = sampling.get("acceleration") if acquisition.get("kind") == "mr" else None
    return tuned_setting("MR", problem.noisy, accel=accel or None, matrix=matrix)


def default_baseline(problem) -> Baseline:
    """The baseline a reconstruction's record states: TV-PDHG for CT, TV for Cartesian MR,
    l1-wavelet for non-Cartesian MR (the best tuned method of those settings, docs/baselines.md)."""
    if problem.modality == "CT":
        return BASELINES["tv_pdhg"]
    return BASELINES["l1_wavelet" if getattr(problem.op, "non_cartesian", False) else "total_variation"]


@dataclass
class BaselineRun:
    """A baseline's image ``(S, *op.in_shape)`` in the problem's units, on the CPU, what it was, and its seconds."""

    key: str
    details: str
    image: torch.Tensor
    seconds: float


BASELINE_BLOCK = 8
"""Slices per call of :func:`run_default_baseline` when the operator is shared by every slice: the
default baselines solve each slice on its own, so blocks give the same image as one call, and a
300-slice 512x512 CT series needs the iterates of 8 slices at a time instead of ~2.8 GB at once."""


@torch.no_grad()
def run_default_baseline(problem, acquisition: dict | None = None) -> BaselineRun:
    """:func:`default_baseline` on ``problem`` with the weight of its closest tuned setting, in
    blocks of :data:`BASELINE_BLOCK` slices when the operator holds no per-slice data (CT; the MR
    solvers with per-slice coil maps already go slice by slice, and their step sizes use the
    largest ``||A||^2`` over the whole batch, so they get the volume in one call)."""
    method = default_baseline(problem)
    setting = tuned_setting_of(problem, acquisition if acquisition is not None else problem.description.get("acquisition"))
    t0 = time.perf_counter()
    y = problem.y
    block = BASELINE_BLOCK if problem.op.batch_size is None else y.shape[0]
    image = torch.cat([method.run(problem.op, y[start:start + block], setting).cpu()
                       for start in range(0, y.shape[0], block)])
    return BaselineRun(method.key, method.details(setting), image, time.perf_counter() - t0)


__all__ = ["BASELINES", "BASELINE_BLOCK", "Baseline", "BaselineRun", "baseline", "default_baseline", "run_default_baseline",
           "table_baselines", "tuned_setting", "tuned_setting_of"]
