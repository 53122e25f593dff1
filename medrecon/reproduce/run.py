"""Run a reproduction protocol of :mod:`medrecon.reproduce.protocols` over a dataset and write its
table (``medrecon reproduce lidc|brats|fastmri``; ``starter`` is :mod:`medrecon.reproduce.starter`).

For every volume and every setting (views or acceleration) the protocol builds the problem, runs
its classical baselines and every requested sampler (:func:`medrecon.reconstruct.reconstruct`),
and scores each result; a progress line per result goes to stderr. OUTDIR gets

- ``results.csv``: one row per volume x setting x method (PSNR, SSIM, NMSE where defined, seconds
  per slice, NFE, slices, the data range, the method's details);
- ``summary.md``: the protocol stated, then a Markdown table of mean +- std per setting x method
  with the papers' published numbers (docs/reproduce.md) in their own columns, then the published
  numbers that no row of ours matches;
- ``summary.json``: the same table, the protocol, the prior, the sampler settings, every volume's
  acquisition (views and angles, mask columns and sampled fraction), versions and timings;
- ``figure.png``: the first volume's middle evaluated slice, one row per setting: the reference,
  each baseline, each sampler (:func:`medrecon.figures.write_figure`).

OUTDIR is written as a staging folder renamed into place at the end
(:func:`medrecon.io.atomic.atomic_output`): an existing OUTDIR is refused without ``--overwrite``
(and left untouched). Finished volumes are kept in ``OUTDIR.progress/`` until then
(:mod:`medrecon.reproduce.progress`): an interrupted run resumes where it stopped when started
again with the same arguments, and ``torchrun`` processes share the volumes.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from medrecon import distributed
from medrecon.errors import InputError
from medrecon.evaluation.scoring import Scores
from medrecon.figures import write_figure
from medrecon.io.atomic import atomic_output
from medrecon.priors.hub import load_prior
from medrecon.provenance import versions
from medrecon.reconstruct import check_prior_fits, reconstruct
from medrecon.reproduce.progress import Progress
from medrecon.reproduce.protocols import Protocol
from medrecon.samplers.registry import SAMPLERS, sampler_names

__all__ = ["reproduce", "CSV_FIELDS", "DEFAULT_SAMPLERS"]

CSV_FIELDS = ("protocol", "volume", "setting", "method", "kind", "slices", "psnr", "ssim", "nmse",
              "seconds_per_slice", "nfe", "data_range", "details")
DEFAULT_SAMPLERS = tuple(sampler_names(prior="pixel", slice_wise=True))
"""The samplers a protocol runs unless told: every slice-wise sampler of a pixel prior."""


# --------------------------------------------------------------------------------------------------
# the run


def _stats(values: list[float] | None) -> dict:
    if values is None or not values:
        return {"mean": None, "std": None, "n": 0 if values is None else len(values)}
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": int(arr.size)}


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def reproduce(protocol: Protocol, data, prior, out, *, samplers=DEFAULT_SAMPLERS, steps: int | None = None,
              limit: int | None = None, slices: int | None = None, values=None, device=None, batch_size: int = 8,
              seed: int = 0, overwrite: bool = False, progress: bool | None = None, stream=None,
              command: str | None = None) -> dict | None:
    """Run ``protocol`` on the dataset at ``data`` and write OUTDIR ``out``; returns the summary
    (what ``summary.json`` holds), or None on a ``torchrun`` process other than 0.

    Each volume's results are kept in ``OUTDIR.progress/`` as it is finished
    (:mod:`medrecon.reproduce.progress`): a killed run started again with the same arguments
    resumes with the volumes not yet scored, and gives the table of an uninterrupted run. Under
    ``torchrun`` (the process group initialised by the caller, :func:`medrecon.distributed.init_if_launched`)
    process ``r`` of ``W`` scores the volumes ``i % W == r`` on its own device, and process 0
    writes OUTDIR once every volume is there: the table of one process.

    Args:
        protocol: a :class:`~medrecon.reproduce.protocols.Protocol`.
        prior: a loaded prior, or a shipped prior name / prior folder.
        samplers: names of :data:`medrecon.samplers.SAMPLERS`.
        steps: the samplers' step count (None: each sampler's preset).
        limit: volumes to take (None: all); ``slices``: slices per volume, evenly spaced (None: all).
        values: the settings (views or accelerations; None: the published ones).
        device: ``cpu``, ``cuda``... (None: CUDA when available; under torchrun the process's GPU).
        overwrite: replace an existing OUTDIR, and discard another run's progress.
        progress: :func:`~medrecon.reconstruct.reconstruct`'s step-level progress line (None: when
            stderr is a terminal); the per-result lines are always written to ``stream``.
    """
    t_start = time.perf_counter()
    stream = stream if stream is not None else sys.stderr
    settings = protocol.settings(values)
    samplers = list(dict.fromkeys(samplers))
    unknown = [s for s in samplers if s not in SAMPLERS]
    if unknown:
        raise InputError(f"unknown sampler {unknown[0]!r}; known: {', '.join(sorted(SAMPLERS))}")
    rank, world_size, _ = distributed.world()
    device = distributed.rank_device(device) if world_size > 1 else torch.device(
        device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch sees no CUDA device")
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass --overwrite (overwrite=True) to replace it")

    items = protocol.load(data, limit=limit)  # missing root: exit 3; wrong layout: exit 2
    if isinstance(prior, (str, bytes)) or hasattr(prior, "__fspath__"):
        prior = load_prior(prior, device=device)
    if hasattr(protocol, "fit_to_prior"):
        protocol.fit_to_prior(prior.card)
    labels = [protocol.setting_label(v) for v in settings]
    fingerprint = {"protocol": protocol.to_dict(), "data": str(Path(data).resolve()), "volumes": [item.name for item in items],
                   "prior": {"name": prior.card.name, "sha256": prior.card.sha256}, "samplers": samplers, "steps": steps,
                   "settings": labels, "slices": slices, "seed": seed, "batch_size": batch_size}
    run = _VolumeRun(protocol, settings, labels, prior, samplers, steps, slices, device, batch_size, seed, progress, stream,
                     len(items))
    if items:  # refuse a prior that does not fit before any work
        run.check_prior(protocol.build(items[0], settings[0], slices=slices))
    if rank == 0:
        store = Progress(out, fingerprint, restart=overwrite)
    distributed.barrier()
    if rank != 0:
        store = Progress(out, fingerprint)
    done = store.done()
    if done:
        stream.write(f"reproduce {protocol.name}: resuming: {len(done)} of {len(items)} volume(s) already scored in "
                     f"{store.folder}\n")
    for i, item in enumerate(items):
        if i % world_size == rank and i not in done:
            result, figure = run.volume(i, item)
            store.save(i, result, figure)
    distributed.barrier()
    if rank != 0:
        return None

    results = [store.load(i) for i in range(len(items))]
    rows = [row for r in results for row in r["rows"]]
    per_slice = [p for r in results for p in r["per_slice"]]
    volumes = [r["volume"] for r in results]
    method_details = {k: v for r in results for k, v in r["method_details"].items()}
    sampler_settings = {k: v for r in results for k, v in r["sampler_settings"].items()}
    figure = store.figure()
    figure_slice = results[0]["figure_slice"] if results else None
    methods = list(protocol.baselines) + samplers
    summary = {
        "protocol": protocol.to_dict(),
        "command": command,
        "data": str(data),
        "n_volumes": len(volumes),
        "volumes": volumes,
        "prior": {"name": prior.card.name, "path": str(prior.path), "modality": prior.card.modality,
                  "image_size": prior.card.image_size, "sha256": prior.card.sha256},
        "settings": labels,
        "methods": methods,
        "method_details": method_details,
        "sampler_settings": sampler_settings,
        "unit": protocol.unit,
        "steps": steps,
        "limit": limit,
        "slices_per_volume": slices,
        "device": str(device),
        "world_size": world_size,
        "seed": seed,
        "batch_size": batch_size,
        "table": _table(protocol, labels, methods, rows, per_slice),
        "figure": {"volume": volumes[0]["name"] if volumes else None,
                   "slice": volumes[0]["slice_indices"][figure_slice] if volumes and figure_slice is not None else None,
                   "rows": labels, "columns": list(figure)},
        "versions": versions(),
    }
    with atomic_output(out, overwrite=overwrite, folder=True) as stage:
        _write_csv(stage / "results.csv", rows)
        _write_figure(stage / "figure.png", figure)
        (stage / "summary.md").write_text(_markdown(protocol, summary))
        summary["seconds_total"] = round(time.perf_counter() - t_start, 2)
        (stage / "summary.json").write_text(json.dumps(_finite(summary), indent=2) + "\n")
    store.remove()
    return summary


class _VolumeRun:
    """Scores one volume under every setting: baselines and samplers, rows and per-slice scores."""

    def __init__(self, protocol, settings, labels, prior, samplers, steps, slices, device, batch_size, seed, progress, stream,
                 n_items):
        self.protocol, self.settings, self.labels, self.prior = protocol, settings, labels, prior
        self.samplers, self.steps, self.slices, self.device = samplers, steps, slices, device
        self.batch_size, self.seed, self.progress, self.stream, self.n_items = batch_size, seed, progress, stream, n_items

    def check_prior(self, case) -> None:
        """Refuse a prior that does not fit ``case``'s problem for any of the samplers."""
        for sampler in self.samplers:
            check_prior_fits(self.prior, case.problem, sampler)

    def _report(self, i, item, case, method, scores, seconds_per_slice) -> None:
        self.stream.write(f"reproduce {self.protocol.name}: volume {i + 1}/{self.n_items} {item.name} ({case.slices} slices) | "
                          f"{case.setting} | {method}: PSNR {scores.psnr:.2f} dB, SSIM {scores.ssim:.3f} | "
                          f"{seconds_per_slice:.3g} s/slice\n")
        self.stream.flush()

    def volume(self, i: int, item) -> tuple[dict, dict | None]:
        """``(result, figure)``: the volume's JSON-able result and, for volume 0, the figure's images."""
        protocol = self.protocol
        volume = {"name": item.name, "path": str(item.path), "acquisitions": {}}
        rows: list[dict] = []
        per_slice: list[dict | None] = []
        method_details: dict[str, str] = {}
        sampler_settings: dict[str, dict] = {}
        figure: dict[str, list[np.ndarray]] | None = {} if i == 0 else None
        figure_slice = None
        for value, label in zip(self.settings, self.labels):
            case = protocol.build(item, value, slices=self.slices)
            volume.update(total_slices=case.total_slices, slice_indices=case.slice_indices)
            volume["acquisitions"][label] = case.acquisition
            figure_slice = case.slices // 2
            if figure is not None:
                figure.setdefault("reference", []).append(protocol.display(case, None)[figure_slice])
            for method in protocol.baselines:
                image, details, seconds = protocol.run_baseline(method, case, device=self.device)
                method_details[method] = details
                entry = (method, "baseline", image, seconds / case.slices, None, details)
                _record(protocol, case, entry, rows, per_slice, figure, figure_slice,
                        lambda s, e=entry: self._report(i, item, case, e[0], s, e[3]))
            for sampler in self.samplers:
                result = reconstruct(case.problem, self.prior, sampler=sampler, steps=self.steps, batch_size=self.batch_size,
                                     device=self.device, seed=self.seed, slice_indices=case.slice_indices,
                                     progress=self.progress)
                sampler_settings[sampler] = result.settings
                details = (f"{result.settings.get('steps')} steps, {result.settings.get('schedule')} schedule, "
                           f"options {json.dumps(result.settings.get('options', {}), sort_keys=True)}")
                method_details[sampler] = details
                entry = (sampler, "sampler", case.problem.on_study_grid(result.mean), result.seconds_per_slice, result.nfe,
                         details)
                _record(protocol, case, entry, rows, per_slice, figure, figure_slice,
                        lambda s, e=entry: self._report(i, item, case, e[0], s, e[3]))
                if not math.isfinite(rows[-1]["psnr"]):
                    self.stream.write(f"reproduce {protocol.name}: warning: {sampler} gave non-finite values on "
                                      f"{item.name}, {case.setting}; its row holds NaN\n")
        volume["slices"] = len(volume.get("slice_indices", []))
        result = {"volume": volume, "rows": rows, "per_slice": per_slice, "method_details": method_details,
                  "sampler_settings": sampler_settings, "figure_slice": figure_slice}
        return result, figure


def _record(protocol, case, entry, rows, per_slice, figure, figure_slice, report) -> None:
    method, kind, image, seconds_per_slice, nfe, details = entry
    bad = int((~torch.isfinite(image)).sum())
    if bad:  # a diverged method: a row of NaN scores, said so, and the run goes on
        details = f"{details}; NON-FINITE OUTPUT ({bad} values): not scored"
        nan = [math.nan] * case.slices
        scores = Scores(math.nan, math.nan, math.nan, math.nan, "not scored",
                        {"psnr": nan, "ssim": nan, "nmse": nan} if protocol.unit == "slice" else None)
        image = torch.zeros_like(image)  # shown black in the figure
    else:
        scores = protocol.score(case, image)
    rows.append({
        "protocol": protocol.name, "volume": case.volume, "setting": case.setting, "method": method, "kind": kind,
        "slices": case.slices, "psnr": scores.psnr, "ssim": scores.ssim, "nmse": scores.nmse,
        "seconds_per_slice": seconds_per_slice, "nfe": nfe, "data_range": scores.data_range, "details": details,
    })
    per_slice.append(scores.per_slice)
    if figure is not None:
        figure.setdefault(method, []).append(protocol.display(case, image)[figure_slice])
    report(scores)


def _table(protocol: Protocol, labels, methods, rows, per_slice) -> list[dict]:
    """mean +- std per setting x method (over slices or volumes, as the protocol says)."""
    table = []
    for label in labels:
        for method in methods:
            chosen = [(r, p) for r, p in zip(rows, per_slice) if r["setting"] == label and r["method"] == method]
            if not chosen:
                continue
            if protocol.unit == "slice":
                values = {k: [v for _, p in chosen for v in p[k]] for k in ("psnr", "ssim")}
                values["nmse"] = None if any(p["nmse"] is None for _, p in chosen) else \
                    [v for _, p in chosen for v in p["nmse"]]
            else:
                values = {k: [r[k] for r, _ in chosen] for k in ("psnr", "ssim")}
                values["nmse"] = None if any(r["nmse"] is None for r, _ in chosen) else [r["nmse"] for r, _ in chosen]
            slices = sum(r["slices"] for r, _ in chosen)
            seconds = sum(r["seconds_per_slice"] * r["slices"] for r, _ in chosen) / max(1, slices)
            published = protocol.published_for(label, method)
            table.append({
                "setting": label, "method": method, "kind": chosen[0][0]["kind"], "unit": protocol.unit,
                "volumes": len(chosen), "slices": slices,
                "psnr": _stats(values["psnr"]), "ssim": _stats(values["ssim"]), "nmse": _stats(values["nmse"]),
                "seconds_per_slice": seconds, "nfe": chosen[0][0]["nfe"],
                "published": None if published is None else published.to_dict(),
            })
    return table


# --------------------------------------------------------------------------------------------------
# files


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return v


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(CSV_FIELDS))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row[k]) for k in CSV_FIELDS})


def _write_figure(path: Path, figure: dict[str, list[np.ndarray]]) -> None:
    if not figure:
        raise InputError("nothing to draw: no volume was reconstructed")
    columns = {name: np.stack(images) for name, images in figure.items()}
    write_figure(path, columns, {})


def _pm(stats: dict, digits: int) -> str:
    if stats["mean"] is None:
        return "—"
    if not math.isfinite(stats["mean"]):
        return str(stats["mean"])
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _num(v, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _markdown(protocol: Protocol, summary: dict) -> str:
    unit = "slices" if protocol.unit == "slice" else "volumes"
    prior = summary["prior"]
    lines = [
        f"# Reproduction: {protocol.title}",
        "",
        "## Protocol",
        "",
        protocol.describe(),
        "",
        "## Run",
        "",
        f"- Data: `{summary['data']}`, {summary['n_volumes']} volume(s)"
        + (f" (--limit {summary['limit']})" if summary["limit"] else "")
        + (f"; {summary['slices_per_volume']} slices per volume, evenly spaced (a reduction of the protocol, "
           "which evaluates every slice)" if summary["slices_per_volume"] else "; every slice"),
        f"- Prior: `{prior['name']}` ({prior['modality']}, {prior['image_size']}x{prior['image_size']}), `{prior['path']}`",
        f"- Device {summary['device']}, seed {summary['seed']}, batch size {summary['batch_size']}",
    ]
    for method, details in summary["method_details"].items():
        lines.append(f"- `{method}`: {details}")
    if summary["steps"] is not None:
        lines.append(f"- Samplers run at --steps {summary['steps']}, not at their published step counts (the NFE "
                     "column says what each row used)")
    if summary["command"]:
        lines.append(f"- Command: `{summary['command']}`")
    lines += [
        "",
        f"## Results: ours (mean ± std over {unit}) and published",
        "",
        "Our columns come from this run; the **Published** columns are the papers' numbers, "
        "on their data and settings, for the same method where one exists.",
        "",
        f"| Setting | Method | {unit.capitalize()} | Ours: PSNR (dB) | Ours: SSIM | Ours: NMSE | Ours: s/slice | Ours: NFE "
        "| Published: PSNR (dB) | Published: SSIM | Published: method (source) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    matched = set()
    for row in summary["table"]:
        pub = row["published"]
        if pub is not None:
            matched.add((pub["setting"], pub["method"], pub["label"]))
        n = row["slices"] if protocol.unit == "slice" else row["volumes"]
        lines.append(
            f"| {row['setting']} | {row['method']} | {n} | {_pm(row['psnr'], 2)} | {_pm(row['ssim'], 3)} | "
            f"{_pm(row['nmse'], 4)} | {row['seconds_per_slice']:.3g} | {row['nfe'] if row['nfe'] is not None else '—'} | "
            f"{_num(pub and pub['psnr'], 2)} | {_num(pub and pub['ssim'], 3)} | "
            f"{(pub['label'] + ' (' + pub['source'] + ')' + ('; ' + pub['note'] if pub['note'] else '')) if pub else '—'} |"
        )
    others = [p for p in protocol.published if (p.setting, p.method, p.label) not in matched]
    if others:
        lines += ["", "## Published numbers without a matching row above", "",
                  "Methods medrecon does not run, settings not run here, or a second published figure of a method.", "",
                  "| Setting | Method (paper) | Published: PSNR (dB) | Published: SSIM | Source | Note |",
                  "|---|---|---:|---:|---|---|"]
        for p in others:
            lines.append(f"| {p.setting} | {p.label} | {_num(p.psnr, 2)} | {_num(p.ssim, 3)} | {p.source} | {p.note} |")
    fig = summary["figure"]
    lines += ["", "## Figure", "",
              f"`figure.png`: volume `{fig['volume']}`, slice {fig['slice']} (the middle evaluated slice); one row per "
              f"setting ({', '.join(fig['rows'])}); columns {', '.join(fig['columns'])}.", ""]
    return "\n".join(lines)
