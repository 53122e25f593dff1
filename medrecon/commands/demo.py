"""``medrecon demo``: the classical baselines on two scans inside pydicom (no prior needed)."""

from __future__ import annotations

HELP = ("simulate sparse-view CT and undersampled multi-coil MRI of real sample scans and reconstruct them with the "
        "classical baselines")


def add_arguments(parser) -> None:
    parser.add_argument("-o", "--out", default="medrecon-demo", help="output folder (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated noise (default: %(default)s)")


def run(args) -> int:
    from medrecon.demo import run_demo  # torch, only when running

    run_demo(args.out, overwrite=args.overwrite, seed=args.seed)
    return 0
