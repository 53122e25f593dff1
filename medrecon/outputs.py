"""What a reconstruction writes: the volume, its JSON record and its PNG figure, all or nothing.

The volume is written in the format its name says, whatever the input's (a DICOM series folder,
NIfTI, NRRD; fastMRI input -> an HDF5 file with a ``reconstruction`` dataset, as fastMRI
submissions have), with the input's geometry; beside it ``<stem>.json`` (the record: acquisition,
grid, sampler, prior with checksum, versions, timings, metrics, the figure's window and zoom; for
NIfTI/NRRD also the image's BIDS-style sidecar with its ``Modality``) and ``<stem>.png`` (the
figure: :func:`reconstruction_figure`). :func:`check_outputs` makes every
refusal before the work starts (a name of unknown format, an existing output without overwrite, a
stem another output already owns, a DICOM series whose headers cannot be reused); :func:`write_outputs`
writes through temporary files moved into place together at the end, so a failed run leaves none
of them and replaces none of the old ones.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from medrecon.errors import InputError, OutputError
from medrecon.figures import (
    DisplayWindow,
    ZoomBox,
    body_of,
    choose_window,
    figure_rows,
    reslices,
    write_figure,
    zoom_box,
    zoom_magnification,
)
from medrecon.io.atomic import Stage, check_writable_folder, staged_outputs
from medrecon.io.sidecar import check_sidecar_free, sidecar_fields
from medrecon.io.studies import check_save, save_study, study_format

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".h5", ".hdf5")


@dataclass(frozen=True)
class OutputPaths:
    """The reconstruction ``volume`` and its ``record`` and ``figure`` (``recon.nii.gz`` ->
    ``recon.json``, ``recon.png``)."""

    volume: Path
    record: Path
    figure: Path

    @classmethod
    def for_volume(cls, out: str | Path) -> OutputPaths:
        out = Path(out)
        name = out.name
        for suffix in VOLUME_SUFFIXES:
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        if not name:
            raise InputError(f"cannot derive the record's name from the output path {out}")
        return cls(out, out.with_name(name + ".json"), out.with_name(name + ".png"))

    def as_dict(self) -> dict[str, str]:
        return {"volume": str(self.volume), "record": str(self.record), "figure": str(self.figure)}


def check_outputs(paths: OutputPaths, overwrite: bool, *, input_path: str | Path | None = None) -> None:
    """The refusals that need nothing but the paths: an output that is, holds or lies inside the
    input (``input_path``; with ``--overwrite`` too), existing outputs without ``overwrite``, a
    missing or unwritable output folder, a record another output of the same stem owns."""
    if input_path is not None:
        check_spares_input((paths.volume, paths.record, paths.figure), input_path)
    existing = [str(p) for p in (paths.volume, paths.record, paths.figure) if p.exists()]
    if existing and not overwrite:
        raise InputError(f"{', '.join(existing)} exist(s); pass --overwrite to replace")
    check_writable_folder(paths.volume.parent)
    check_sidecar_free(paths.volume, paths.record)


def check_output_folder(out: str | Path, overwrite: bool, *, input_path: str | Path | None = None) -> None:
    """The refusals of an output folder (``medrecon simulate -o DIR``) before any work: one that is,
    holds or lies inside the input, exists without ``overwrite`` or is a file, or whose nearest
    existing parent cannot be written (missing parents are created when writing)."""
    out = Path(out)
    if input_path is not None:
        check_spares_input((out,), input_path)
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; the output is a folder")
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot create the output folder {out}: {parent} is not a folder")
    check_writable_folder(parent, "the folder")


def check_spares_input(outputs, input_path: str | Path) -> None:
    """Refuse any output path that is the input, lies inside it (a DICOM folder) or contains it (a
    folder that would replace the input's folder): medrecon never writes over its input, with
    ``--overwrite`` or not. Paths are compared after resolving symbolic links."""
    source = Path(os.path.realpath(input_path))
    for out in outputs:
        target = Path(os.path.realpath(out))
        same = target == source or (target.exists() and source.exists() and os.path.samefile(target, source))
        if same:
            how = "is"
        elif source in target.parents:
            how = "lies inside"
        elif target in source.parents:
            how = "contains"
        else:
            continue
        raise OutputError(f"the output {out} {how} the input {input_path}: medrecon never writes over its input; "
                          "choose another output path")


def output_study(study, native: torch.Tensor):
    """The study holding the reconstruction ``native`` ``(S, H, W)`` (the input's geometry and, for
    DICOM, headers; CT rounded to whole HU in the input's dtype, MR magnitudes)."""
    voxels = native if study.modality == "MR" else native.round()
    return study.with_voxels(voxels.to(study.voxels.dtype) if not study.voxels.is_complex() else voxels.abs())


def check_volume_output(paths: OutputPaths, kind: str, study, overwrite: bool) -> str:
    """Every refusal of the volume's writer, before any work; returns the output format
    (``kspace`` for fastMRI input)."""
    out = paths.volume
    if kind == "fastmri":
        if not out.name.lower().endswith((".h5", ".hdf5")):
            raise InputError(f"a fastMRI input is written as fastMRI HDF5: give an OUTPUT ending in .h5, not {out.name}")
        return "kspace"
    probe = study if not study.voxels.is_complex() else study.with_voxels(study.voxels.abs())
    return check_save(probe, out, overwrite=overwrite, sidecar=False)  # the record is the sidecar


def center_crop(x: torch.Tensor, shape) -> torch.Tensor:
    """The centre ``shape`` of the last two axes (fastMRI's crop to the target)."""
    h, w = x.shape[-2:]
    th, tw = int(shape[0]), int(shape[1])
    if th > h or tw > w:
        raise InputError(f"the reference ({th}x{tw}) is larger than the reconstruction ({h}x{w})")
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top : top + th, left : left + tw]


@dataclass
class Figure:
    """What the PNG shows: ``columns`` ``{name: (rows, H, W)}`` in [0, 1] (the slices ``slices``
    of the volume), their ``scores``, for a coherent volume its ``reslices`` and the slices'
    ``slice_aspect``; the display ``window`` of the image columns, the ``zoom`` crop, what the
    error and std columns show (``error_units``) and the ``notes`` written above the grid."""

    columns: dict
    scores: dict
    reslices: dict | None = None
    slice_aspect: float = 1.0
    window: DisplayWindow | None = None
    zoom: ZoomBox | None = None
    slices: list[int] | None = None
    error_units: str | None = None
    notes: list[str] = field(default_factory=list)
    tile: int = 192

    def write(self, path: Path) -> None:
        write_figure(path, self.columns, self.scores, tile=self.tile, reslices=self.reslices,
                     slice_aspect=self.slice_aspect, zoom=self.zoom, notes=self.notes)

    def summary(self) -> dict:
        """The record's ``figure`` entry: the window (level, width in native units, how it was
        chosen), the slices shown, what the error and std columns are in, and the zoomed crop
        (slice, top-left row/column, size in native pixels, magnification)."""
        out = {"window": None if self.window is None else self.window.as_dict(),
               "slices": self.slices, "error_and_std": self.error_units}
        if self.zoom is not None:
            z, shape = self.zoom, next(iter(self.columns.values())).shape[1:]
            out["zoom"] = {"slice": self.slices[z.row] if self.slices else z.row, "top": z.top, "left": z.left,
                           "size": [z.height, z.width], "magnification": zoom_magnification(z, shape, self.tile),
                           "resampling": "none (nearest neighbour, whole factor)", "text": z.label}
        return out


def error_units(problem, names: str = "|error| x4 and std x4") -> str:
    """What the error and std columns (``names``) show: the prior's units, 4x, so white is a
    quarter of the prior's range (CT, in HU) or magnitude scale (MR)."""
    quarter = abs(problem.scale) / 4
    if problem.modality == "CT":
        return (f"{names} in the prior's units: white = {quarter:g} HU (a quarter of the prior's "
                f"{problem.offset:g} to {problem.offset + problem.scale:g} HU window), black = 0")
    return (f"{names} in the prior's units: white = {quarter:.4g} (a quarter of the prior's magnitude "
            f"scale {abs(problem.scale):.4g}), black = 0")


def reconstruction_figure(problem, native, baseline_native, reference, std_native, metrics: dict, *, study=None,
                          coupled: bool = False) -> Figure:
    """The figure of a reconstruction: reference (when known), baseline, reconstruction in the
    display window (:func:`~medrecon.figures.choose_window`: the study's DICOM window, else from
    the reference's, else the baseline's, anatomy or percentiles), |error| x4 and standard
    deviation x4 (with several samples) in the prior's units, for a few slices; a zoomed crop at
    native resolution where the reference (else the baseline) has most detail inside the body
    (:func:`~medrecon.figures.zoom_box`); for a coupled volume (``coupled``) also the coronal and
    sagittal reslices of the whole volume. Every image ``(S, H, W)`` in native units; the
    reference may be a centre crop of the others (fastMRI)."""
    crop = (lambda v: center_crop(v, reference.shape[-2:])) if reference is not None and reference.shape != native.shape \
        else (lambda v: v)
    native, baseline_native = crop(native), crop(baseline_native)
    rows = figure_rows(native.shape[0])
    guide, what = (reference, "reference") if reference is not None else (baseline_native, "baseline")
    window = choose_window(problem.modality, guide, study, what=what)
    columns = {}
    if reference is not None:
        columns["reference"] = window.apply(reference[rows])
    columns["baseline"] = window.apply(baseline_native[rows])
    columns["reconstruction"] = window.apply(native[rows])
    if reference is not None:
        error = (native[rows].float() - reference[rows].float()).abs() / abs(problem.scale)
        columns["|error| x4"] = np.clip(4 * error.numpy(), 0, 1)
    if std_native is not None:
        columns["std x4"] = np.clip(4 * (crop(std_native)[rows] / abs(problem.scale)).numpy(), 0, 1)
    scores = {"baseline": metrics.get("baseline"), "reconstruction": metrics.get("reconstruction")} if metrics else {}
    zoom = zoom_box(columns[what], body_of(guide[rows], problem.modality))
    zoom = ZoomBox(zoom.row, zoom.top, zoom.left, zoom.height, zoom.width,
                   f"slice {rows[zoom.row]}, rows {zoom.top}-{zoom.top + zoom.height - 1}, columns {zoom.left}-"
                   f"{zoom.left + zoom.width - 1} (the most {what} detail inside the body)")
    shown = [n for n in ("|error| x4", "std x4") if n in columns]
    units = error_units(problem, " and ".join(shown)) if shown else None
    notes = [f"{window.text}: {', '.join(n for n in ('reference', 'baseline', 'reconstruction') if n in columns)}"
             + (" and the reslices" if coupled and study is not None else "")]
    figure = Figure(columns, scores, window=window, zoom=zoom, slices=rows, error_units=units,
                    notes=notes + ([units] if units else []))
    if coupled and study is not None:
        whole = {"baseline": window.apply(baseline_native), "reconstruction": window.apply(native)}
        if reference is not None:
            whole = {"reference": window.apply(reference), **whole}
        sx, sy, sz = study.spacing
        figure.reslices, figure.slice_aspect = reslices(whole), sz / (0.5 * (sx + sy))
    return figure


def _write_volume(paths: OutputPaths, kind: str, study, native: torch.Tensor, overwrite: bool, stage: Stage) -> None:
    out = paths.volume
    if kind == "fastmri":
        tmp = stage.add(out, overwrite=overwrite, suffix=".h5", parents=False)
        with h5py.File(tmp, "w") as f:
            f.create_dataset("reconstruction", data=native.numpy().astype(np.float32))
            f.attrs["units"] = "magnitude, the k-space's units"
        return
    fmt = study_format(out, for_writing=True)
    options = {"sidecar": False} if fmt in ("nifti", "nrrd") else {}
    # staged like the record and figure, so that a failure of any of them leaves none in place
    suffix = {"nifti": ".nii.gz" if out.name.lower().endswith(".gz") else ".nii", "nrrd": ".nrrd"}.get(fmt, "")
    tmp = stage.add(out, overwrite=overwrite, folder=fmt == "dicom", suffix=suffix, parents=False)
    save_study(output_study(study, native), tmp, overwrite=True, **options)


def write_outputs(paths: OutputPaths, kind: str, study, native: torch.Tensor, record: dict, figure: Figure, *,
                  overwrite: bool, out_format: str, finish_record=None) -> None:
    """Write the figure, the volume and the record, all or none: each is written under a temporary
    name and the three are moved into place together (:func:`~medrecon.io.atomic.staged_outputs`).
    For NIfTI / NRRD the record also carries the image's sidecar fields (its ``Modality``).
    ``finish_record(record)`` runs just before the record is written (the total time)."""
    if out_format in ("nifti", "nrrd"):
        record = {**sidecar_fields(output_study(study, native)), **record}
    with staged_outputs() as stage:
        figure_tmp = stage.add(paths.figure, overwrite=overwrite, suffix=".png", parents=False)
        record_tmp = stage.add(paths.record, overwrite=overwrite, suffix=".json", parents=False)
        figure.write(figure_tmp)
        _write_volume(paths, kind, study, native, overwrite, stage)
        if finish_record is not None:
            finish_record(record)
        record_tmp.write_text(json.dumps(record, indent=2) + "\n")


__all__ = ["Figure", "OutputPaths", "center_crop", "check_output_folder", "check_outputs", "check_spares_input",
           "check_volume_output", "error_units", "output_study", "reconstruction_figure", "write_outputs"]
