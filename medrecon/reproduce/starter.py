"""``medrecon reproduce starter``: the ``bench recon`` protocol on the starter corpus's validation
patients (ct-lung1, mr-brain2), with the shipped starter priors, written as a reproduction folder.

The settings, baselines and scores are :mod:`medrecon.evaluation`'s (the same as ``medrecon bench
recon``); long samplers (:attr:`~medrecon.samplers.registry.SamplerSpec.long`) run on 2 slices
at ``steps`` steps (50 by default) on the CPU. OUTDIR gets ``results.csv``, ``summary.md`` and
``summary.json``, written through a staging folder renamed at the end.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import torch

from medrecon.benchmarks.common import bench_device, run_header
from medrecon.benchmarks.recon import load_priors, run_setting, to_markdown
from medrecon.data.sources import validation_sources
from medrecon.errors import InputError, MedreconError
from medrecon.evaluation.settings import SETTINGS, evaluation_slices
from medrecon.io.atomic import atomic_output
from medrecon.samplers.registry import SAMPLERS

NOTE = (
    "The starter protocol is medrecon's own benchmark (`bench recon`) on the starter corpus's validation "
    "patients (ct-lung1, mr-brain2): different data, sizes and priors from the papers' tables, which are "
    "listed beside it for orientation only."
)
CSV_FIELDS = ("setting", "method", "kind", "psnr", "ssim", "seconds_per_slice", "nfe", "slices", "peak_memory_bytes")
LONG_SLICES = 2
LONG_STEPS = 50


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@torch.no_grad()
def reproduce_starter(out, *, samplers, starter: str | None = None, slices: int = 8, steps: int | None = None,
                      device: str | None = None, batch_size: int = 8, seed: int = 0, overwrite: bool = False,
                      command: str = "medrecon reproduce starter") -> dict:
    """Run the starter protocol and write OUTDIR ``out``; returns ``{"header", "note", "rows"}``.

    ``starter``: the starter corpus folder (None: ``medrecon data fetch``'s); ``slices`` per
    validation volume (middle 60%); ``steps``: the long samplers' steps (default 50)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    unknown = [s for s in samplers if s not in SAMPLERS]
    if unknown:
        raise InputError(f"unknown sampler {unknown[0]!r}; known: {', '.join(SAMPLERS)}")
    device = bench_device(device)
    t0 = time.perf_counter()
    rows = []
    for modality in ("CT", "MR"):
        # the starter protocol measures the shipped starter priors
        pixel_name, latent_name = f"{modality.lower()}-starter", f"{modality.lower()}-starter-latent"
        try:
            priors = load_priors(pixel_name, latent_name, samplers, device)
        except MedreconError as exc:  # a missing latent prior skips its samplers, and the log says so
            _log(f"reproduce starter: latent-prior samplers skipped for {modality}: {exc}")
            priors = load_priors(pixel_name, None, samplers, device)
        source = validation_sources(modality)[0]
        pixel = priors["pixel"]
        images = evaluation_slices(source.id, pixel.card.normalisation, pixel.card.image_size, slices, starter)
        for setting in (s for s in SETTINGS if s.modality == modality):
            rows += run_setting(setting, images, priors, list(samplers), seed=seed, device=device, batch_size=batch_size,
                                long_slices=LONG_SLICES, long_steps=steps or LONG_STEPS, on_gpu=device.type == "cuda",
                                log=_log)
    header = run_header(command, device, t0, priors="ct-starter, mr-starter (+ latent priors for ReSample)",
                        slices=f"{slices} per validation volume (middle 60%), resampled to the priors' size")
    with atomic_output(out, overwrite=overwrite, folder=True) as staging:
        with open(staging / "results.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(CSV_FIELDS), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        (staging / "summary.md").write_text("# Starter protocol\n\n" + NOTE + "\n\n" + to_markdown(rows, header))
        summary = {"header": header, "note": NOTE, "rows": rows}
        (staging / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"wrote {out}/results.csv, summary.md, summary.json ({header['seconds']:.0f} s)")
    return summary


__all__ = ["CSV_FIELDS", "NOTE", "reproduce_starter"]
