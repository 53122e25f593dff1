"""``medrecon evaluate RECON REFERENCE``: image quality of a reconstruction against a reference study
(:func:`medrecon.evaluation.scoring.score_studies`, the protocol named in the output)."""

from __future__ import annotations

import json

from .arguments import add_modality

HELP = "PSNR / SSIM / NMSE of a reconstruction against a reference study, with the protocol named"


def add_arguments(parser) -> None:
    parser.add_argument("recon", help="the reconstruction (DICOM folder, NIfTI or NRRD)")
    parser.add_argument("reference", help="the reference study, same shape and geometry")
    add_modality(parser, "CT or MR, any case; required for NIfTI/NRRD that do not record it")
    parser.add_argument("--protocol", choices=["window", "fastmri"], default="window", help="metric protocol (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    from medrecon.evaluation.scoring import score_studies  # torch, only when running
    from medrecon.inputs import load_input_study

    recon = load_input_study(args.recon, modality=args.modality)
    reference = load_input_study(args.reference, modality=args.modality)
    result = score_studies(recon, reference, args.protocol)
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0
