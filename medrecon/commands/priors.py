"""``medrecon priors [FOLDER ...]`` lists priors; ``medrecon priors convert ...`` converts a published
checkpoint into a prior folder (:mod:`medrecon.priors.hub`, :mod:`medrecon.priors.convert`)."""

from __future__ import annotations

import argparse
from collections import UserDict

from .arguments import modality

HELP = ("list the shipped priors and the prior folders in given folders, with their cards; `priors convert` turns a "
        "published checkpoint (ADM, NCSN++ in PyTorch or Flax, diffusers) into a prior folder, `priors interpolate` "
        "mixes a prior with its continuation (WiSE-FT)")


class _AnyName(UserDict):
    """The subcommand parsers by name (shared with the action), as ``choices`` that let argparse's
    choice check pass any first argument (a folder)."""

    def __contains__(self, key) -> bool:
        return True


class _FoldersOrCommand(argparse._SubParsersAction):
    """Arguments that do not start with a subcommand's name are the folders to list."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.choices = _AnyName()
        self.choices.data = self._name_parser_map

    def __call__(self, parser, namespace, values, option_string=None):
        if values and values[0] in self._name_parser_map:
            return super().__call__(parser, namespace, values, option_string)
        namespace.folders = list(values)
        return None


def add_arguments(parser) -> None:
    from medrecon.priors.convert.presets import PRESETS  # pure data, no torch

    parser.set_defaults(folders=[], priors_command=None)
    sub = parser.add_subparsers(
        dest="priors_command", metavar="FOLDER ... | convert | interpolate", action=_FoldersOrCommand,
        help="prior folders to list beside the shipped priors (folders holding prior folders too), or the subcommand "
        "convert or interpolate",
    )
    convert = sub.add_parser(
        "convert", help="convert a published checkpoint into a prior folder",
        description="Convert an ADM (openai/guided-diffusion) checkpoint, an NCSN++ checkpoint (score_sde_pytorch .pth, "
        "or a Flax msgpack checkpoint of score_sde / score_inverse_problems, read without JAX), or a diffusers "
        "UNet2DModel folder, into a medrecon prior folder (the network + card), exactly: a mapping of tensors, "
        "refused with the reason where the architecture or the tensors do not fit (docs/priors.md).",
    )
    convert.add_argument("source", metavar="SRC", help="the checkpoint file (.pt/.pth, or a Flax checkpoint_N), or the "
                         "diffusers folder")
    convert.add_argument("--format", required=True, choices=["adm", "ncsnpp", "diffusers"], help="the source's format")
    convert.add_argument("-o", "--out", required=True, metavar="DIR", help="the new prior folder")
    convert.add_argument("--preset", metavar="NAME", help="the published architecture (adm, ncsnpp): "
                         + ", ".join(f"{p.name} ({p.format})" for p in PRESETS.values()))
    convert.add_argument("--flags", metavar="JSON", help="or the architecture flags as a JSON file (every key of a "
                         "preset's flags; see docs/priors.md)")
    convert.add_argument("--modality", type=modality, metavar="{CT,MR}", help="the images' modality, any case (a preset "
                         "gives it)")
    convert.add_argument("--normalisation", metavar="KIND|JSON", help="how the checkpoint's images were scaled to [0, 1], "
                         "for the card: a kind (volume-minmax, slice-minmax, user-choice) or a JSON object (text or file), "
                         "e.g. '{\"kind\": \"hu-window\", \"low\": -1000, \"high\": 2000}'; required without a preset "
                         "(a preset states it; it replaces only a preset's user-choice)")
    convert.add_argument("--name", help="the prior's name on its card (default: the preset's, else DIR's name)")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing DIR")
    interpolate = sub.add_parser(
        "interpolate", help="the weight-space interpolation of a prior and its continuation (WiSE-FT)",
        description="Write the prior (1 - W) BASE + W TUNED, weight by weight (WiSE-FT, Wortsman et al. CVPR 2022): "
        "TUNED a continuation of BASE (medrecon train --init BASE), the same network; the card states both parents, W "
        "and the lineage (docs/priors.md).",
    )
    interpolate.add_argument("base", metavar="BASE", help="the base prior (shipped name or folder)")
    interpolate.add_argument("tuned", metavar="TUNED", help="its continuation (shipped name or folder)")
    interpolate.add_argument("--weight", type=float, required=True, metavar="W", help="TUNED's share, in [0, 1]")
    interpolate.add_argument("-o", "--out", required=True, metavar="DIR", help="the new prior folder")
    interpolate.add_argument("--name", help="the prior's name on its card (default: DIR's name)")
    interpolate.add_argument("--overwrite", action="store_true", help="replace an existing DIR")


def run(args) -> int:
    if args.priors_command == "convert":
        from medrecon.priors.convert import convert_checkpoint  # torch, only when running

        out = convert_checkpoint(args.source, args.out, fmt=args.format, preset=args.preset, flags=args.flags,
                                 modality=args.modality, name=args.name, overwrite=args.overwrite,
                                 normalisation=args.normalisation)
        print(f"wrote {out}")
        return 0
    if args.priors_command == "interpolate":
        from medrecon.priors.interpolation import interpolate_priors

        out = interpolate_priors(args.base, args.tuned, args.weight, args.out, name=args.name, overwrite=args.overwrite)
        print(f"wrote {out}")
        return 0
    from medrecon.priors.hub import list_priors

    for row in list_priors(args.folders):
        details = ", ".join(f"{k} {row[k]}" for k in ("modality", "size", "parameterisation") if k in row)
        print(f"{row['name']:24s} {row['status']:16s} {details}  {row['path']}")
        if row.get("training"):
            print(f"{'':24s} trained: {row['training']}")
    return 0
