"""``medrecon bench tune-samplers``: choosing the sampler presets on training patients.

A grid over one option of one sampler (``option``, ``values``), the other options fixed by
``fixed`` on top of the preset, per task, on slices of the TRAINING patients
(:data:`~medrecon.evaluation.settings.TRAINING_SOURCES`: ct-lung2, mr-brain1; never a validation
patient), printed as a table of mean PSNR/SSIM (:func:`medrecon.evaluation.scoring.score`,
``volume`` protocol); ``samples`` > 1 scores the posterior mean of that many samples; ``baselines``
adds the task's tuned baselines on the same slices. The chosen values are copied into
presets.json by hand, with the table in docs/samplers.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from medrecon.benchmarks.common import bench_device, markdown_table
from medrecon.data.sources import get_source
from medrecon.errors import InputError
from medrecon.evaluation.baselines import table_baselines
from medrecon.evaluation.scoring import score
from medrecon.evaluation.settings import TASK_SETTINGS, TRAINING_SOURCES, evaluation_slices, make_problem
from medrecon.priors.hub import load_prior
from medrecon.reconstruct import reconstruct
from medrecon.samplers.registry import DEFAULT_SAMPLER


@dataclass(frozen=True)
class TuneSamplers:
    """One grid: ``option`` over ``values`` (already parsed), ``fixed`` options on top of the preset."""

    option: str
    values: tuple
    sampler: str = DEFAULT_SAMPLER
    fixed: dict = field(default_factory=dict)
    samples: int = 1
    baselines: bool = False
    tasks: tuple[str, ...] = ("ct-noisy", "mr-noisy")
    steps: int | None = None
    slices: int = 2
    ct_prior: str = "ct-starter"
    mr_prior: str = "mr-starter"
    starter: str | None = None
    batch_size: int = 8
    device: str = "auto"
    seed: int = 0


def _scores(image, reference) -> dict:
    s = score(image, reference, "volume")
    return {"psnr": s.psnr, "ssim": s.ssim}


@torch.no_grad()
def run_tune_samplers(grid: TuneSamplers) -> list[dict]:
    """Run the grid, print the rows as they come and the table at the end; returns the rows."""
    device = bench_device(grid.device)
    fixed_note = ", ".join(f"{k} {v}" for k, v in grid.fixed.items())
    rows = []
    for task in grid.tasks:
        if task not in TASK_SETTINGS:
            raise InputError(f"unknown task {task!r}; known: {sorted(TASK_SETTINGS)}")
        setting = TASK_SETTINGS[task]
        source = get_source(TRAINING_SOURCES[setting.modality])
        if source.split != "train":
            raise InputError(f"{source.id} is not a training source")  # the split is encoded once, in sources.py
        prior = load_prior(grid.ct_prior if setting.modality == "CT" else grid.mr_prior, device=device)
        images = evaluation_slices(source.id, prior.card.normalisation, prior.card.image_size, grid.slices, grid.starter)
        problem, reference = make_problem(setting, images, grid.seed)
        if grid.baselines:
            for method in table_baselines(setting.modality, non_cartesian=setting.non_cartesian):
                name = method.describe(setting.tuned_key())
                image = method.run(problem.op, problem.y, setting.tuned_key())
                rows.append({"task": task, "source": source.id, "label": name, **_scores(image, reference), "seconds_per_slice": 0.0})
                print(f"{task:9s} {source.id:10s} {name:40s} PSNR {rows[-1]['psnr']:6.2f} SSIM {rows[-1]['ssim']:.3f}", flush=True)
        for value in grid.values:
            options = {**grid.fixed, grid.option: value}
            result = reconstruct(problem, prior, sampler=grid.sampler, steps=grid.steps, options=options, samples=grid.samples,
                                 batch_size=grid.batch_size, device=device, seed=grid.seed, progress=False)
            label = (f"{grid.option} {value}" + (f" ({fixed_note})" if fixed_note else "")
                     + (f", mean of {grid.samples}" if grid.samples > 1 else ""))
            rows.append({"task": task, "source": source.id, "label": label, **_scores(result.mean, reference),
                         "seconds_per_slice": result.seconds_per_slice})
            print(f"{task:9s} {source.id:10s} {label:40s} PSNR {rows[-1]['psnr']:6.2f} SSIM {rows[-1]['ssim']:.3f} "
                  f"({rows[-1]['seconds_per_slice']:.1f} s/slice)", flush=True)
    steps = f", {grid.steps} steps" if grid.steps else ""
    cells = [[r["task"], f"{r['source']} x {grid.slices}", r["label"], f"{r['psnr']:.2f}", f"{r['ssim']:.3f}"] for r in rows]
    print("\n" + markdown_table(["task", "training slices", f"{grid.sampler}{steps}", "PSNR (dB)", "SSIM"], cells), end="")
    return rows


__all__ = ["TuneSamplers", "run_tune_samplers"]
