"""``medrecon reconstruct INPUT -o OUTPUT``: the command-line glue around :mod:`medrecon.reconstruct`.

INPUT is one of

- an image study (DICOM series folder, NIfTI, NRRD): the acquisition is simulated from the flags
  (``--views``, ``--accel``, ``--noise`` ...), and the study is the reference of the metrics;
- a folder written by ``medrecon simulate`` (``acquisition.json`` + sinogram / k-space): the
  acquisition and the data are read;
- a fastMRI multi-coil HDF5 file: the k-space is read, the mask is the set of sampled columns,
  coil maps come from ESPIRiT, and ``reconstruction_rss`` (when there) is the reference;
- non-Cartesian raw k-space, an ISMRMRD file or medrecon's own layout (:mod:`medrecon.io.noncartesian`):
  the trajectory is read, coil maps and density weights are the file's or estimated (ESPIRiT on
  the gridded k-space centre; Pipe-Menon), and the file's ``reference`` (when there) is the reference;

OUTPUT is written in the format its name says, whatever the input's (a DICOM series folder, NIfTI,
NRRD; fastMRI input -> an HDF5 file with a ``reconstruction`` dataset as fastMRI submissions have),
with the input's geometry, and beside it ``<OUTPUT stem>.json`` (acquisition, grid, sampler, prior
with checksum, versions, timings, metrics; for NIfTI/NRRD also the image's BIDS-style sidecar with
its ``Modality``) and ``<OUTPUT stem>.png`` (reference, baseline, reconstruction, error,
uncertainty for a few slices). Every output is checked before the work starts (a name of unknown
format, an existing output without ``--overwrite``, a DICOM series whose headers cannot be reused)
and written through a temporary file, so a failed run leaves none of them.

A study whose matrix is not the prior's is reconstructed on the prior's grid and the result
resampled to the study's (:mod:`medrecon.grid`; ``--grid input`` runs the prior at the study's size).

``torchrun --nproc_per_node N -m medrecon reconstruct ...`` shares the slices among N processes
(one per GPU, or gloo processes on the CPU; :mod:`medrecon.distributed`); rank 0 gathers the
volume and alone runs the baseline and writes the outputs, which are those of one process with the
same seed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from medrecon import __version__
from medrecon.errors import InputError
from medrecon.priors.execution import NetworkExecution

FIGURE_SLICES = 3


def output_paths(out: str | Path) -> dict[str, Path]:
    """The reconstruction and its record and figure: ``recon.nii.gz`` -> ``recon.json``, ``recon.png``."""
    out = Path(out)
    name = out.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".h5", ".hdf5"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    if not name:
        raise InputError(f"cannot derive the record's name from the output path {out}")
    return {"volume": out, "record": out.with_name(name + ".json"), "figure": out.with_name(name + ".png")}


def _check_outputs(paths: dict[str, Path], overwrite: bool) -> None:
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise InputError(f"{', '.join(existing)} exist(s); pass --overwrite to replace")
    parent = paths["volume"].parent
    if not parent.is_dir():
        raise InputError(f"the output folder {parent} does not exist")


def _input_kind(path: Path) -> str:
    if not path.exists():
        raise InputError(f"no such input: {path}")
    if path.is_dir() and (path / "acquisition.json").is_file():
        return "simulation"
    if path.is_file() and path.name.lower().endswith((".h5", ".hdf5", ".mrd")):
        from medrecon.io.noncartesian import sniff_noncartesian  # noqa: PLC0415

        return "noncartesian" if sniff_noncartesian(path) else "fastmri"
    return "study"


# ------------------------------------------------------------------------------------ inputs
def _grid(args, shape, spacing, prior):
    """The :class:`~medrecon.grid.GridMap` onto the prior's grid (None: the prior runs on this grid)."""
    from medrecon.grid import GridMap  # noqa: PLC0415

    if args.grid == "input" or tuple(shape) == (prior.card.image_size,) * 2:
        return None
    return GridMap.for_study(shape, spacing, prior.card.image_size)


def _from_study(args, study, prior):
    from medrecon.reconstruct import problem_from_acquisition  # noqa: PLC0415
    from medrecon.simulation import acquisition_for_study, simulate  # noqa: PLC0415

    grid = _grid(args, study.shape[1:], (study.spacing[1], study.spacing[0]), prior)
    acquisition = acquisition_for_study(study, args)
    if getattr(acquisition, "non_cartesian", False) and grid is not None:
        raise InputError(f"a {acquisition.sampling['kind']} acquisition is simulated and reconstructed on the study's own "
                         f"{study.shape[1]}x{study.shape[2]} grid, not the prior's {prior.card.image_size}x"
                         f"{prior.card.image_size}: pass --grid input, or resample the study first")
    measured = study
    if grid is not None and study.modality == "MR":  # k-space of the padded square study (medrecon.grid)
        measured = dataclasses.replace(study, voxels=grid.pad_images(study.voxels, 0.0))
    measurements = simulate(measured, acquisition)
    reference = study.voxels.abs() if study.voxels.is_complex() else study.voxels
    return problem_from_acquisition(acquisition, measurements, grid=grid), reference.float(), acquisition.to_dict()


def _from_simulation(args, prior_for):
    from medrecon.io.kspace import read_fastmri_h5  # noqa: PLC0415
    from medrecon.reconstruct import problem_from_acquisition  # noqa: PLC0415
    from medrecon.simulation import KSPACE_FILE, _slice_range, load_measurements  # noqa: PLC0415
    from medrecon.study import Study  # noqa: PLC0415

    acquisition, study_record, measurements = load_measurements(args.input)
    modality = "CT" if acquisition.kind == "ct" else "MR"
    if args.modality and args.modality.upper() != modality:
        raise InputError(f"--modality {args.modality} contradicts the simulation's acquisition ({modality})")
    prior = prior_for(modality)
    sel = _slice_range(args.slices, measurements.shape[0])
    measurements = measurements[sel]
    reference = None
    non_cartesian = getattr(acquisition, "non_cartesian", False)
    if non_cartesian:
        from medrecon.io.noncartesian import read_noncartesian_h5  # noqa: PLC0415
        from medrecon.simulation import NONCARTESIAN_FILE  # noqa: PLC0415

        target = read_noncartesian_h5(Path(args.input) / NONCARTESIAN_FILE).reference
    elif acquisition.kind == "mr":
        target = read_fastmri_h5(Path(args.input) / KSPACE_FILE).target
    if acquisition.kind == "mr" and target is not None:
        reference = target[sel].float() * acquisition.scale
    affine = np.asarray(study_record["affine"], dtype=float)
    affine[:3, 3] = affine[:3, 3] + sel.start * affine[:3, 2]
    if acquisition.kind == "ct":
        shape = tuple(acquisition.operator().geometry.image_shape)
    else:
        shape = tuple(acquisition.image_shape) if non_cartesian else tuple(measurements.shape[-2:])
    spacing = (float(np.linalg.norm(affine[:3, 1])), float(np.linalg.norm(affine[:3, 0])))
    grid = _grid(args, shape, spacing, prior)
    if non_cartesian and grid is not None:
        raise InputError(f"{args.input}: non-Cartesian k-space of {shape[0]}x{shape[1]} images is reconstructed on its own "
                         f"grid, not the prior's {prior.card.image_size}x{prior.card.image_size}: pass --grid input")
    if grid is not None and acquisition.kind == "mr" and grid.square_shape != shape:
        raise InputError(f"{args.input}: the simulated k-space is {shape[0]}x{shape[1]}, not square; reconstruct the study "
                         "itself (medrecon reconstruct STUDY pads it to a square before simulating), or use --grid input")
    problem = problem_from_acquisition(acquisition, measurements, grid=grid)
    study = Study(torch.zeros((measurements.shape[0], *shape)), affine, modality, name=study_record["name"],
                  source={"format": "simulation", "path": str(args.input)})
    return problem, study, reference, acquisition.to_dict(), prior


def _from_fastmri(args):
    from medrecon.io.kspace import read_fastmri_h5  # noqa: PLC0415
    from medrecon.operators import espirit_maps  # noqa: PLC0415
    from medrecon.reconstruct import problem_from_kspace  # noqa: PLC0415
    from medrecon.simulation import _slice_range  # noqa: PLC0415

    if args.modality and args.modality != "mr":
        raise InputError(f"{args.input} is fastMRI k-space (MR), not --modality {args.modality}")
    volume = read_fastmri_h5(args.input)
    kspace = volume.kspace
    if kspace.ndim != 4:
        raise InputError(f"{args.input} is single-coil k-space; medrecon reconstruct reads multi-coil fastMRI files")
    sel = _slice_range(args.slices, kspace.shape[0])
    kspace = kspace[sel]
    sampled = (kspace.abs().sum(dim=(0, 1, 2)) > 0).to(torch.float32)  # sampled columns (phase encodes)
    if float(sampled.mean()) >= 1.0:
        raise InputError(f"{args.input} is fully sampled: there is nothing to reconstruct (undersample it with medrecon simulate)")
    maps = espirit_maps(kspace)
    problem = problem_from_kspace(kspace, maps, sampled[None, :].expand(kspace.shape[-2:]).contiguous())
    reference = None if volume.target is None else volume.target[sel].float()
    return problem, None, reference, {"kind": "fastmri", "file": str(args.input), "sampled_fraction": float(sampled.mean())}


def _from_noncartesian(args):
    """Raw non-Cartesian k-space (ISMRMRD or medrecon's layout): coil maps and density from the
    file where it has them, else estimated; the study is the image grid with 1 mm pixels unless the
    file's attributes give ``pixel_mm``."""
    from medrecon.io.noncartesian import read_ismrmrd, read_noncartesian_h5, sniff_noncartesian  # noqa: PLC0415
    from medrecon.reconstruct import problem_from_noncartesian  # noqa: PLC0415
    from medrecon.simulation import _slice_range  # noqa: PLC0415
    from medrecon.study import Study  # noqa: PLC0415

    if args.modality and args.modality != "mr":
        raise InputError(f"{args.input} is MR k-space, not --modality {args.modality}")
    layout = sniff_noncartesian(args.input)
    data = (read_ismrmrd if layout == "ismrmrd" else read_noncartesian_h5)(args.input)
    sel = _slice_range(args.slices, data.kspace.shape[0])
    if sel != slice(0, data.kspace.shape[0]):
        data = (read_ismrmrd if layout == "ismrmrd" else read_noncartesian_h5)(args.input, slices=sel)
    problem = problem_from_noncartesian(data)
    problem.description["acquisition"] = {"kind": "mr", "sampling": (data.attrs or {}).get("trajectory", {}),
                                          "file": str(args.input), "layout": layout,
                                          "samples": int(data.kspace.shape[-1]), "coils": int(data.kspace.shape[1]),
                                          "coil_maps": problem.description["coil_maps"],
                                          "density": "the file's" if data.density is not None else "Pipe-Menon"}
    pixel = float((data.attrs or {}).get("pixel_mm", 1.0))
    affine = np.diag([pixel, pixel, 1.0, 1.0])
    h, w = data.image_shape
    study = Study(torch.zeros((data.kspace.shape[0], h, w)), affine, "MR", name=Path(args.input).stem,
                  source={"format": layout, "path": str(args.input)})
    # the output is in the k-space's own units (a magnitude image whose k-space the file holds), the
    # units of the file's reference image too
    reference = None if data.reference is None else data.reference.float()
    return problem, study, reference, problem.description["acquisition"]


# ---------------------------------------------------------------------------------- baseline
def baseline_setting(problem, acquisition: dict) -> str:
    """The ``TUNED_WEIGHTS`` setting closest to this acquisition (views or acceleration, noise)."""
    from medrecon.baselines import TUNED_WEIGHTS  # noqa: PLC0415

    noise = "noisy" if problem.noisy else "clean"
    if problem.modality == "CT":
        views = len(acquisition.get("geometry", {}).get("angles", [])) or problem.op.out_shape[-2]
        few = f"ct-parallel-8v-{noise}"  # tuned for the clean 8-view volume setting only, so far
        if views <= 12 and few in TUNED_WEIGHTS:
            return few
        return f"ct-parallel-{'23' if views <= 40 else '60'}v-{noise}"
    if getattr(problem.op, "non_cartesian", False):
        # tuned on noiseless radial / spiral data only: noisy data use the same weights
        kind = (acquisition.get("sampling") or {}).get("kind")
        return f"mr-8coil-{'spiral16r4' if kind == 'spiral' else 'radial48'}-clean"
    accel = float((acquisition.get("sampling") or {}).get("acceleration", 4.0) or 4.0) if acquisition.get("kind") == "mr" else 4.0
    return f"mr-8coil-{'4' if accel <= 6 else '8'}x-{noise}"


@torch.no_grad()
def classical_baseline(problem) -> tuple[str, torch.Tensor, float]:
    """``(description, image (S, 1, H, W) normalised, seconds)``: TV-PDHG for CT, sigpy's TV for
    Cartesian MR, l1-wavelet for non-Cartesian MR, with the weight tuned on training patients for
    the closest benchmark setting."""
    from medrecon.baselines import TUNED_WEIGHTS  # noqa: PLC0415
    from medrecon.baselines.ct import tv_pdhg  # noqa: PLC0415
    from medrecon.baselines.mri import total_variation  # noqa: PLC0415

    setting = baseline_setting(problem, problem.description.get("acquisition", {}))
    t0 = time.perf_counter()
    if problem.modality == "CT":
        lam = TUNED_WEIGHTS[setting]["tv_pdhg"]
        image = tv_pdhg(problem.op, problem.y, lam_rel=lam)
        name = f"TV-PDHG (lam_rel {lam:g}, tuned for {setting})"
    elif getattr(problem.op, "non_cartesian", False):
        # l1-wavelet: the best tuned baseline of both non-Cartesian settings (docs/baselines.md)
        from medrecon.baselines.mri import l1_wavelet  # noqa: PLC0415

        lam = TUNED_WEIGHTS[setting]["l1_wavelet"]
        image = l1_wavelet(problem.op, problem.y, lam_rel=lam)
        name = f"l1-wavelet (sigpy, density-weighted, lam_rel {lam:g}, tuned for {setting})"
    else:
        lam = TUNED_WEIGHTS[setting]["total_variation"]
        image = total_variation(problem.op, problem.y, lam_rel=lam)
        name = f"TV (sigpy, lam_rel {lam:g}, tuned for {setting})"
    return name, image, time.perf_counter() - t0


# ----------------------------------------------------------------------------------- outputs
def _metrics(native: torch.Tensor, reference: torch.Tensor, modality: str) -> dict:
    from medrecon.evaluate import evaluate_studies  # noqa: PLC0415
    from medrecon.study import Study  # noqa: PLC0415

    eye = np.eye(4)
    ref = Study(reference, eye, modality, name="reference")
    rec = Study(native, eye, modality, name="reconstruction")
    return evaluate_studies(rec, ref, protocol="window")


def _display(native: torch.Tensor, problem) -> np.ndarray:
    """Native images -> [0, 1] for the figure: the prior's window (CT) or magnitude scale (MR)."""
    return ((native - problem.offset) / problem.scale).clamp(0, 1).numpy()


def write_figure(path: Path, columns: dict[str, np.ndarray], scores: dict[str, dict], *, tile: int = 192,
                 reslices: dict[str, dict[str, np.ndarray]] | None = None, slice_aspect: float = 1.0) -> None:
    """A PNG grid: one row per slice, one column per image kind, labelled (PSNR/SSIM when known).

    Images are ``tile`` high and as wide as their aspect makes them. ``reslices`` (``{"coronal":
    {column: (S, W) image}, "sagittal": ...}``): rows added under the axial ones, as wide as an axial
    image and as high as the slices' thickness makes them (``slice_aspect`` = slice spacing /
    in-plane pixel size)."""
    from PIL import Image, ImageDraw  # noqa: PLC0415

    names = list(columns)
    rows, image_h, image_w = next(iter(columns.values())).shape
    tile_w = max(96, round(tile * image_w / image_h))  # non-square images keep their aspect
    label_h = 28
    extra = []  # (label, height, {column: image})
    for view, images in (reslices or {}).items():
        depth, width = next(iter(images.values())).shape
        extra.append((view, max(8, round(tile_w * depth * slice_aspect / width)), images))
    height = rows * tile + label_h + sum(h + 14 for _, h, _ in extra)
    canvas = Image.new("L", (len(names) * tile_w, height), color=0)
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(names):
        score = scores.get(name)
        text = name if not score else f"{name}\n{score['psnr']:.2f} dB / {score['ssim']:.3f}"
        draw.multiline_text((c * tile_w + 3, 1), text, fill=255, spacing=1)
        for r in range(rows):
            pixels = Image.fromarray(np.uint8(np.round(255 * np.clip(columns[name][r], 0, 1))))
            canvas.paste(pixels.resize((tile_w, tile), Image.BILINEAR), (c * tile_w, label_h + r * tile))
    top = label_h + rows * tile
    for view, h, images in extra:
        draw.text((3, top + 1), view, fill=255)
        for c, name in enumerate(names):
            if name in images:
                pixels = Image.fromarray(np.uint8(np.round(255 * np.clip(images[name], 0, 1))))
                canvas.paste(pixels.resize((tile_w, h), Image.BILINEAR), (c * tile_w, top + 14))
        top += h + 14
    canvas.save(path, format="PNG")


def _reslices(columns_3d: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """The coronal (middle row) and sagittal (middle column) reslices ``(S, W)`` / ``(S, H)`` of
    each column's whole volume ``(S, H, W)``."""
    out = {"coronal": {}, "sagittal": {}}
    for name, v in columns_3d.items():
        out["coronal"][name] = v[:, v.shape[1] // 2, :]
        out["sagittal"][name] = v[:, :, v.shape[2] // 2]
    return out


def _versions() -> dict:
    import diffusers  # noqa: PLC0415

    return {"medrecon": __version__, "torch": torch.__version__, "numpy": np.__version__, "diffusers": diffusers.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def _output_study(study, native: torch.Tensor):
    """The study holding the reconstruction (the input's geometry and, for DICOM, headers)."""
    voxels = native if study.modality == "MR" else native.round()
    return study.with_voxels(voxels.to(study.voxels.dtype) if not study.voxels.is_complex() else voxels.abs())


def _check_volume_output(paths, kind: str, study, overwrite: bool) -> str:
    """Every refusal of the volume's writer, before any work; returns the output format."""
    from medrecon.study import check_save  # noqa: PLC0415

    out = paths["volume"]
    if kind == "fastmri":
        if not out.name.lower().endswith((".h5", ".hdf5")):
            raise InputError(f"a fastMRI input is written as fastMRI HDF5: give an OUTPUT ending in .h5, not {out.name}")
        return "kspace"
    probe = study if not study.voxels.is_complex() else study.with_voxels(study.voxels.abs())
    return check_save(probe, out, overwrite=overwrite, sidecar=False)  # the record is the sidecar


def _write_volume(paths, kind: str, study, native: torch.Tensor, overwrite: bool, stack: contextlib.ExitStack) -> None:
    from medrecon.io.atomic import atomic_output  # noqa: PLC0415
    from medrecon.study import save_study, study_format  # noqa: PLC0415

    out = paths["volume"]
    if kind == "fastmri":
        import h5py  # noqa: PLC0415

        tmp = stack.enter_context(atomic_output(out, overwrite=overwrite, suffix=".h5"))
        with h5py.File(tmp, "w") as f:
            f.create_dataset("reconstruction", data=native.numpy().astype(np.float32))
            f.attrs["units"] = "magnitude, the k-space's units"
        return
    options = {"sidecar": False} if study_format(out, for_writing=True) in ("nifti", "nrrd") else {}
    # save_study is atomic on its own; it runs last, after the record and figure are staged
    save_study(_output_study(study, native), out, overwrite=overwrite, **options)


@torch.no_grad()
def run_reconstruct(args: argparse.Namespace) -> int:
    """The command. Under ``torchrun`` (``WORLD_SIZE`` > 1) every process builds the problem, takes
    the device of its local rank and reconstructs its shard of the slices
    (:func:`~medrecon.distributed.reconstruct_sharded`); rank 0 gathers the volume, runs the classical
    baseline and writes every output, the other ranks return 0 without writing or printing. The
    process group is initialised here and destroyed before returning."""
    from medrecon import distributed  # noqa: PLC0415

    device = distributed.rank_device(args.device) if distributed.launched() else (args.device if args.device != "auto" else None)
    owned = distributed.init_if_launched(device)
    try:
        return _run_reconstruct(args, device)
    finally:
        distributed.destroy(owned)


def _run_reconstruct(args: argparse.Namespace, device) -> int:
    from medrecon.io.atomic import atomic_output  # noqa: PLC0415
    from medrecon.priors.hub import load_prior  # noqa: PLC0415
    from medrecon.distributed import reconstruct_sharded  # noqa: PLC0415
    from medrecon.reconstruct import check_prior_fits  # noqa: PLC0415

    from medrecon.simulation import load_input_study  # noqa: PLC0415

    t_start = time.perf_counter()
    inp = Path(args.input)
    kind = _input_kind(inp)
    paths = output_paths(args.out)
    _check_outputs(paths, args.overwrite)
    if args.samples < 1:
        raise InputError(f"--samples must be >= 1, got {args.samples}")
    options = _parse_options(args.option)
    if getattr(args, "volume_prior", "none") != "none":
        if args.sampler not in ("dds", "diffusion_mbir"):
            raise InputError(f"--volume-prior {args.volume_prior} needs --sampler dds (DDS-3D) or diffusion_mbir, not {args.sampler}")
        options.setdefault("volume_prior", args.volume_prior)

    def prior_for(modality: str):
        name = args.prior or f"{modality.lower()}-starter{'-latent' if args.sampler == 'resample' else ''}"
        return load_prior(name, device=device or ("cuda" if torch.cuda.is_available() else "cpu"))

    if kind == "study":
        study = load_input_study(args)
        out_format = _check_volume_output(paths, kind, study, args.overwrite)
        prior = prior_for(study.modality)
        problem, reference, acquisition = _from_study(args, study, prior)
    elif kind == "simulation":
        problem, study, reference, acquisition, prior = _from_simulation(args, prior_for)
        out_format = _check_volume_output(paths, kind, study, args.overwrite)
    elif kind == "noncartesian":
        problem, study, reference, acquisition = _from_noncartesian(args)
        out_format = _check_volume_output(paths, kind, study, args.overwrite)
        prior = prior_for("MR")
    else:
        out_format = _check_volume_output(paths, kind, None, args.overwrite)
        problem, study, reference, acquisition = _from_fastmri(args)
        prior = prior_for(problem.modality)
    check_prior_fits(prior, problem, args.sampler, other_size=args.grid == "input")

    # the sampler first (sharded over torchrun's processes), then the baseline on rank 0 alone, so
    # that the other ranks do not wait for it inside the gather
    result = reconstruct_sharded(problem, prior, sampler=args.sampler, steps=args.steps, options=options, samples=args.samples,
                                 batch_size=args.batch_size, device=device, seed=args.seed,
                                 execution=NetworkExecution(precision=args.precision, compile=args.compile),
                                 progress=None if not args.quiet else False, other_size=args.grid == "input")
    if result is None:  # a rank other than 0: rank 0 writes the outputs
        return 0
    baseline_name, baseline, baseline_seconds = classical_baseline(problem)
    native = problem.to_native(result.mean)
    baseline_native = problem.to_native(baseline.cpu())
    metrics = {}
    if reference is not None:
        ref = reference
        if ref.shape != native.shape:  # fastMRI: the target is a centre crop
            native_c, baseline_c = (_center_crop(v, ref.shape[-2:]) for v in (native, baseline_native))
        else:
            native_c, baseline_c = native, baseline_native
        metrics = {"reconstruction": _metrics(native_c, ref, problem.modality), "baseline": _metrics(baseline_c, ref, problem.modality)}
    if kind == "fastmri" and reference is not None:
        native = _center_crop(native, reference.shape[-2:])

    from medrecon.io.sidecar import sidecar_fields  # noqa: PLC0415

    sidecar = sidecar_fields(_output_study(study, native)) if out_format in ("nifti", "nrrd") else {}
    record = {
        **sidecar,
        "command": "medrecon reconstruct " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["reconstruct"] else None,
        "input": {"path": str(inp), "kind": kind, "format": None if study is None else study.source.get("format")},
        "output": {**{k: str(v) for k, v in paths.items()}, "format": out_format},
        "study": None if study is None else {"name": study.name, "shape": list(study.shape), "modality": study.modality},
        "acquisition": acquisition,
        "grid": problem.description.get("grid") or {
            "reconstructed_on": "the input's grid" + (" (--grid input)" if args.grid == "input" else ""),
            "image_shape": list(problem.op.in_shape[-2:])},
        "units": problem.description.get("units"),
        "prior": {"name": prior.card.name, "path": str(prior.path), "sha256": prior.card.sha256,
                  "training": prior.card.training.get("summary")},
        "reconstruction": result.summary(),
        "baseline": {"method": baseline_name, "seconds": round(baseline_seconds, 3)},
        "metrics": metrics,
        "versions": _versions(),
        "seconds_total": None,
    }
    columns = _figure_columns(problem, reference, baseline_native, native if kind != "fastmri" else native, result, kind)
    scores = {"baseline": metrics.get("baseline"), "reconstruction": metrics.get("reconstruction")} if metrics else {}
    reslices, slice_aspect = None, 1.0
    coupled = result.settings.get("options", {}).get("volume_prior") is not None
    if coupled and kind != "fastmri" and study is not None:  # a coherent volume: show it across slices
        whole = {"baseline": _display(baseline_native, problem), "reconstruction": _display(native, problem)}
        if reference is not None:
            whole = {"reference": _display(reference, problem), **whole}
        reslices = _reslices(whole)
        sx, sy, sz = study.spacing
        slice_aspect = sz / (0.5 * (sx + sy))
    with contextlib.ExitStack() as stack:
        figure_tmp = stack.enter_context(atomic_output(paths["figure"], overwrite=args.overwrite, suffix=".png"))
        record_tmp = stack.enter_context(atomic_output(paths["record"], overwrite=args.overwrite, suffix=".json"))
        write_figure(figure_tmp, columns, scores, reslices=reslices, slice_aspect=slice_aspect)
        _write_volume(paths, kind, study, native, args.overwrite, stack)
        record["seconds_total"] = round(time.perf_counter() - t_start, 2)
        record_tmp.write_text(json.dumps(record, indent=2) + "\n")
    line = f"wrote {paths['volume']} ({result.mean.shape[0]} slices, {args.sampler}, {result.nfe} NFE, {result.seconds_per_slice:.2f} s/slice)"
    if metrics:
        r, b = metrics["reconstruction"], metrics["baseline"]
        line += f"\n  {args.sampler}: PSNR {r['psnr']:.2f} dB SSIM {r['ssim']:.3f} | baseline {baseline_name}: PSNR {b['psnr']:.2f} dB SSIM {b['ssim']:.3f}"
    print(line + f"\n  record {paths['record']}, figure {paths['figure']}")
    return 0


def _center_crop(x: torch.Tensor, shape) -> torch.Tensor:
    h, w = x.shape[-2:]
    th, tw = int(shape[0]), int(shape[1])
    if th > h or tw > w:
        raise InputError(f"the reference ({th}x{tw}) is larger than the reconstruction ({h}x{w})")
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top : top + th, left : left + tw]


def _figure_columns(problem, reference, baseline_native, native, result, kind) -> dict[str, np.ndarray]:
    n = native.shape[0]
    rows = sorted(set(np.linspace(0, n - 1, min(FIGURE_SLICES, n)).round().astype(int).tolist()))
    crop = (lambda v: _center_crop(v, native.shape[-2:])) if kind == "fastmri" else (lambda v: v)
    columns = {}
    if reference is not None:
        columns["reference"] = _display(reference[rows], problem)
    columns["baseline"] = _display(crop(baseline_native)[rows], problem)
    columns["reconstruction"] = _display(native[rows], problem)
    if reference is not None:
        columns["|error| x4"] = np.clip(4 * np.abs(columns["reconstruction"] - columns["reference"]), 0, 1)
    if result.std is not None:
        std = crop(problem.std_to_native(result.std))[rows] / abs(problem.scale)
        columns["std x4"] = np.clip(4 * std.numpy(), 0, 1)
    return columns


def _parse_options(items) -> dict:
    options = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--option takes KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


__all__ = ["run_reconstruct", "output_paths", "classical_baseline", "baseline_setting", "write_figure"]
