"""``medrecon reconstruct INPUT -o OUTPUT``: a study, a simulation folder, fastMRI or non-Cartesian
k-space (:mod:`medrecon.inputs`) reconstructed with a sampler and a prior
(:func:`medrecon.distributed.reconstruct_sharded`), next to the tuned classical baseline
(:mod:`medrecon.evaluation.baselines`), scored against the reference where there is one
(:mod:`medrecon.evaluation.scoring`), and written with its record and figure (:mod:`medrecon.outputs`).

``torchrun --nproc_per_node N -m medrecon reconstruct ...`` shares the slices among N processes
(one per GPU, or gloo processes on the CPU; :mod:`medrecon.distributed`); rank 0 gathers the
volume and alone runs the baseline and writes the outputs, which are those of one process with the
same seed.
"""

from __future__ import annotations

import time

from medrecon.errors import InputError
from medrecon.samplers.presets import check_overrides
from medrecon.samplers.registry import DEFAULT_SAMPLER, SAMPLERS

from .arguments import add_device, add_execution, batch_size, check_device, hu_window, key_values, positive_int
from .simulate import acquisition_options, add_acquisition

HELP = ("reconstruct a study, a simulation folder or fastMRI k-space with a diffusion sampler and a prior "
        "(default: DDS with the starter prior), written in the input's format with a JSON record and a PNG figure")


def add_arguments(parser) -> None:
    parser.add_argument(
        "input", help="a study (DICOM folder, .nii/.nii.gz, .nrrd), a `medrecon simulate` folder, a fastMRI multi-coil .h5, "
        "or non-Cartesian raw k-space (an ISMRMRD .h5/.mrd file or medrecon's own non-Cartesian .h5 layout)",
    )
    parser.add_argument(
        "-o", "--out", required=True,
        help="the reconstruction, in the input's format (a DICOM folder, .nii.gz, .h5); OUT's stem .json and .png are written beside it",
    )
    add_acquisition(parser)
    rec = parser.add_argument_group("reconstruction")
    coupled = [s.name for s in SAMPLERS.values() if s.volume == "always"]
    rec.add_argument("--sampler", choices=list(SAMPLERS), default=DEFAULT_SAMPLER,
                     help=f"{', '.join(coupled)} reconstruct the volume as one, with TV along the slice axis "
                     "(default: %(default)s)")
    rec.add_argument("--prior", default=None, help="a shipped prior name or a prior folder (default: MODALITY-starter[-latent])")
    rec.add_argument(
        "--grid", choices=["auto", "prior", "native", "input"], default="auto",
        help="a study of another matrix than the prior's: native reconstructs at the study's own pixel size (its field of "
        "view made square), the prior's denoiser on its own grid (multi-resolution); prior reconstructs on the prior's grid "
        "and resamples the result; input runs the prior at the input's size; auto is native (what measured best on "
        "512x512 CT and 320x320 MR, docs/benchmarks.md) (default: %(default)s)",
    )
    rec.add_argument(
        "--window", type=hu_window, metavar="LOW,HIGH",
        help="CT: the HU window mapped to the prior's [0, 1] (default: the one the prior's card states; a card of "
        "per-volume min-max, Song et al.'s, takes each volume's [min, max]; a card that leaves it to the user needs this), "
        "e.g. --window -1000,2000",
    )
    optional = [s.name for s in SAMPLERS.values() if s.volume == "optional"]
    rec.add_argument(
        "--volume-prior", choices=["none", "tv-z"], default="none",
        help=f"tv-z: the slices coupled by total variation along the slice axis ({', '.join(optional)}: e.g. DDS-3D, ADMM "
        "in data consistency; the preset's tv_lam_rel / tv_rho_rel, see docs/samplers.md); none: each slice on its own "
        "(default: %(default)s)",
    )
    rec.add_argument("--steps", type=positive_int, default=None, help="sampler steps (default: the task's preset)")
    rec.add_argument("--option", action="append", metavar="KEY=VALUE", help="override a preset option (repeatable), e.g. gamma_rel=0.5")
    rec.add_argument("--samples", type=positive_int, default=1,
                     help="posterior samples per slice; > 1 adds an uncertainty map (default: 1)")
    rec.add_argument("--batch-size", type=batch_size, default="auto",
                     help="at most this many slices per network call, or auto: as many as the GPU's free memory holds, 8 on "
                     "the CPU (default: %(default)s)")
    add_device(rec)
    add_execution(rec)
    rec.add_argument("--quiet", action="store_true", help="no progress line")


def _sampler_options(args) -> dict:
    """``--option`` and ``--volume-prior`` as the sampler's options (checked against the registry)."""
    options = key_values(args.option, "--option")
    check_overrides(args.sampler, options, adapter=True)  # before any work: the names and types of the values
    if args.volume_prior != "none":
        spec = SAMPLERS[args.sampler]
        if not spec.takes_volume_prior:
            takers = ", ".join(s.name for s in SAMPLERS.values() if s.takes_volume_prior)
            raise InputError(f"--volume-prior {args.volume_prior} needs a sampler that takes one ({takers}), not {args.sampler}")
        options.setdefault("volume_prior", args.volume_prior)
    return options


def run(args) -> int:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1) every process builds the problem, takes the device of
    its local rank and reconstructs its shard of the slices; rank 0 gathers the volume, runs the
    baseline and writes every output, the other ranks return 0 without writing or printing."""
    import torch  # only when running

    from medrecon import distributed
    from medrecon.outputs import OutputPaths, check_outputs

    check_device(args.device)
    check_outputs(OutputPaths.for_volume(args.out), args.overwrite, input_path=args.input)  # before any work
    _sampler_options(args)
    device = distributed.rank_device(args.device) if distributed.launched() else (args.device if args.device != "auto" else None)
    owned = distributed.init_if_launched(device)
    try:
        with torch.no_grad():
            return _run(args, device)
    finally:
        distributed.destroy(owned)


def _run(args, device) -> int:
    import torch

    from medrecon.distributed import reconstruct_sharded
    from medrecon.evaluation.baselines import run_default_baseline
    from medrecon.inputs import load_input
    from medrecon.outputs import OutputPaths, check_outputs, check_volume_output
    from medrecon.priors.execution import NetworkExecution
    from medrecon.priors.hub import load_prior
    from medrecon.reconstruct import check_prior_fits

    t_start = time.perf_counter()
    paths = OutputPaths.for_volume(args.out)
    check_outputs(paths, args.overwrite, input_path=args.input)
    options = _sampler_options(args)
    prior_device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    def prior_for(modality: str):
        return load_prior(args.prior or SAMPLERS[args.sampler].default_prior(modality), device=prior_device)

    data = load_input(args.input, prior_for, grid=args.grid, modality=args.modality, slices=args.slices,
                      acquisition=acquisition_options(args), window=args.window)
    out_format = check_volume_output(paths, data.kind, data.study, args.overwrite)
    other_size = args.grid == "input"
    check_prior_fits(data.prior, data.problem, args.sampler, other_size=other_size, multiresolution=data.multiresolution)
    # the sampler first (sharded over torchrun's processes), then the baseline on rank 0 alone, so
    # that the other ranks do not wait for it inside the gather
    result = reconstruct_sharded(data.problem, data.prior, sampler=args.sampler, steps=args.steps, options=options,
                                 samples=args.samples, batch_size=args.batch_size, device=device, seed=args.seed,
                                 execution=NetworkExecution(precision=args.precision, compile=args.compile),
                                 progress=None if not args.quiet else False, other_size=other_size,
                                 multiresolution=data.multiresolution)
    if result is None:  # a rank other than 0: rank 0 writes the outputs
        return 0
    baseline = run_default_baseline(data.native_problem, data.acquisition)
    _write(args, data, result, baseline, paths, out_format, t_start)
    return 0


def _metrics(data, native, baseline_native) -> dict:
    """Reconstruction and baseline against the reference (``window`` protocol), cropped to it (fastMRI)."""
    from medrecon.evaluation.scoring import score_volumes
    from medrecon.outputs import center_crop

    ref = data.reference
    if ref is None:
        return {}
    if ref.shape != native.shape:  # fastMRI: the target is a centre crop
        native, baseline_native = (center_crop(v, ref.shape[-2:]) for v in (native, baseline_native))
    modality = data.problem.modality
    scores = {"reconstruction": score_volumes(native, ref, modality), "baseline": score_volumes(baseline_native, ref, modality)}
    ceiling = _grid_ceiling(data, ref)
    if ceiling is not None:
        scores["grid_ceiling"] = {**score_volumes(ceiling, ref, modality),
                                  "what": f"the reference resampled to the prior's {data.prior.card.image_size}x"
                                          f"{data.prior.card.image_size} grid and back: the best any reconstruction on "
                                          "that grid can score"}
    return scores


def _grid_ceiling(data, ref):
    """The reference ``(S, H, W)`` through the prior's grid and back (:class:`~medrecon.grid.GridMap`),
    for a study of another matrix; None otherwise."""
    from medrecon.grid import GridMap

    size = data.prior.card.image_size
    if data.study is None or tuple(ref.shape[-2:]) == (size, size) or tuple(ref.shape[-2:]) != tuple(data.study.shape[-2:]):
        return None
    spacing = (data.study.spacing[1], data.study.spacing[0])
    grid = GridMap.for_study(ref.shape[-2:], spacing, size)
    fill = float(ref.min()) if data.problem.modality == "CT" else 0.0  # air / no signal in the padding
    return grid.to_input(grid.to_grid(ref.float(), fill))


def _record(args, data, result, baseline, paths, out_format, metrics) -> dict:
    from medrecon.provenance import versions

    problem, study, prior = data.problem, data.study, data.prior
    return {
        "command": getattr(args, "command_line", None),
        "input": {"path": str(data.path), "kind": data.kind, "format": None if study is None else study.source.get("format"),
                  **({"validation": study.source["validation"]} if study is not None and study.source.get("validation")
                     else {})},
        "output": {**paths.as_dict(), "format": out_format},
        "study": None if study is None else {"name": study.name, "shape": list(study.shape), "modality": study.modality},
        "acquisition": data.acquisition,
        "grid": {**(problem.description.get("grid") or {
            "reconstructed_on": "the input's grid" + (" (--grid input)" if args.grid == "input" else ""),
            "image_shape": list(problem.op.in_shape[-2:])}),
            **({"multiresolution": f"the prior ran on its {prior.card.image_size}x{prior.card.image_size} grid of the same "
                                   "field of view, data consistency and result at the study's pixel size (--grid "
                                   f"{args.grid})"} if data.multiresolution else {})},
        "units": problem.description.get("units"),
        "normalisation": problem.description.get("normalisation"),
        "prior": {"name": prior.card.name, "path": str(prior.path), "sha256": prior.card.sha256,
                  "training": prior.card.training.get("summary")},
        "reconstruction": result.summary(),
        "baseline": {"method": baseline.details, "seconds": round(baseline.seconds, 3),
                     "image_shape": list(data.native_problem.op.in_shape[-2:])},
        "metrics": metrics,
        "versions": versions(),
        "seconds_total": None,
    }


def _write(args, data, result, baseline, paths, out_format, t_start) -> None:
    from medrecon.outputs import center_crop, reconstruction_figure, write_outputs

    problem = data.problem
    native = problem.to_native(result.mean)
    baseline_native = data.native_problem.to_native(baseline.image)
    metrics = _metrics(data, native, baseline_native)
    std = None if result.std is None else problem.std_to_native(result.std)
    coupled = result.settings.get("options", {}).get("volume_prior") is not None and data.kind != "fastmri"
    figure = reconstruction_figure(problem, native, baseline_native, data.reference, std, metrics, study=data.study,
                                   coupled=coupled)
    if data.kind == "fastmri" and data.reference is not None:
        native = center_crop(native, data.reference.shape[-2:])
    record = {**_record(args, data, result, baseline, paths, out_format, metrics), "figure": figure.summary()}

    def finish(r: dict) -> None:
        r["seconds_total"] = round(time.perf_counter() - t_start, 2)

    write_outputs(paths, data.kind, data.study, native, record, figure, overwrite=args.overwrite, out_format=out_format,
                  finish_record=finish)
    line = (f"wrote {paths.volume} ({result.mean.shape[0]} slices, {args.sampler}, {result.nfe} NFE, "
            f"{result.seconds_per_slice:.2f} s/slice)")
    if metrics:
        r, b = metrics["reconstruction"], metrics["baseline"]
        line += (f"\n  {args.sampler}: PSNR {r['psnr']:.2f} dB SSIM {r['ssim']:.3f} | baseline {baseline.details}: "
                 f"PSNR {b['psnr']:.2f} dB SSIM {b['ssim']:.3f}")
    print(line + f"\n  record {paths.record}, figure {paths.figure}")
