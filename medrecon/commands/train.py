"""``medrecon train``: a score prior (EDM denoising score matching) trained on the training split of the
starter corpus or on given training studies, in three stages: pixel prior, autoencoder, latent denoiser
(:mod:`medrecon.priors.training`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from medrecon.errors import InputError

from .arguments import add_modality, non_negative_int, positive_int

HELP = ("train a diffusion prior (EDM denoising score matching) on the training split of the starter corpus or on "
        "given training studies")


def add_arguments(parser) -> None:
    add_modality(parser, "the prior's modality: CT or MR, any case", required=True)
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (checkpoint.pt, ema.safetensors, train_record.json)")
    parser.add_argument("--steps", type=non_negative_int, default=1000, help="total optimisation steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images per step and process (default: %(default)s)")
    parser.add_argument("--size", type=positive_int, default=128, help="slices are resampled to SIZE x SIZE (default: %(default)s)")
    parser.add_argument("--crop", type=positive_int, default=None, metavar="N", help="random N x N crops of the slices (default: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate (default: %(default)s)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=500, help="steps between checkpoints (default: %(default)s)")
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
        help="random contrast per training image (medrecon.contrast: gamma, random monotone curves, histogram matching to "
        "real scans of other contrasts, tissue inversion); optional JSON of p_gamma, gamma_range, p_invert, p_curve, p_match, "
        "match_sources (default: 0.5, [0.5, 2], 0.25, 0, 0, []; match_sources: training source ids, e.g. "
        "[\"mr-dwi-heudiconv\", \"mr-b0-dipy\"])",
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


def _json_arg(text: str, option: str) -> dict:
    """A JSON object given inline or as a file path."""
    if not text.lstrip().startswith("{"):
        text = Path(text).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{option} is not valid JSON: {exc}") from None


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _training_slices(args):
    from medrecon.priors.training import TrainingSlices  # torch, only when running

    options = {"orientations": getattr(args, "orientations", "axial")}
    if getattr(args, "contrast_augment", None) is not None:
        options["intensity"] = _json_arg(args.contrast_augment, "--contrast-augment")
    if args.files:
        if getattr(args, "sources", None):
            raise InputError("--files and --sources exclude each other")
        return TrainingSlices.from_files(args.files, modality=args.modality, size=args.size, **options)
    return TrainingSlices.from_starter(args.modality, ids=getattr(args, "sources", None), dest=args.starter, size=args.size, **options)


def _check_stage_options(args) -> None:
    if args.stage == "pixel" and (args.autoencoder or args.autoencoder_config):
        raise InputError("--autoencoder and --autoencoder-config belong to --stage autoencoder / latent")
    if args.stage == "latent" and not args.autoencoder:
        raise InputError("--stage latent needs --autoencoder DIR (the folder of a --stage autoencoder run)")
    if args.stage == "autoencoder" and (getattr(args, "p_mean", None) is not None or getattr(args, "p_std", None) is not None):
        raise InputError("--p-mean and --p-std set the noise levels of denoiser training, not of --stage autoencoder")
    if args.stage == "autoencoder" and args.unet_config:
        raise InputError("--unet-config belongs to the pixel and latent stages; use --autoencoder-config")
    if args.stage != "pixel" and getattr(args, "init", None):
        raise InputError("--init starts a pixel-stage run from a pixel prior; it does not apply to --stage " + args.stage)
    if args.stage == "latent" and (args.autoencoder_config or args.crop):
        raise InputError("--stage latent takes no --autoencoder-config or --crop (the autoencoder is read from --autoencoder)")


def _autoencoder_config(args):
    from medrecon.priors.networks import AutoencoderConfig  # diffusers, only when running

    if args.autoencoder_config is None:
        return AutoencoderConfig(sample_size=args.crop or args.size)
    d = _json_arg(args.autoencoder_config, "--autoencoder-config")
    try:
        return AutoencoderConfig(**{**d, "block_out_channels": tuple(d.get("block_out_channels", AutoencoderConfig.block_out_channels))})
    except TypeError as exc:
        raise InputError(f"bad autoencoder config: {exc}") from None


def _noise_levels(args) -> dict:
    """TrainConfig's p_mean / p_std where given on the command line."""
    given = {"p_mean": getattr(args, "p_mean", None), "p_std": getattr(args, "p_std", None)}
    return {k: v for k, v in given.items() if v is not None}


def _init_unet_config(args, unet):
    """With ``--init`` and no ``--unet-config``: the UNet config recorded on the init prior's card."""
    if not getattr(args, "init", None) or unet is not None:
        return unet
    from medrecon.priors.hub import load_prior
    from medrecon.priors.networks import UNetConfig

    recorded = load_prior(args.init).card.training.get("record", {}).get("unet_config")
    if recorded is None:
        raise InputError(f"--init {args.init}: its card records no UNet config; pass --unet-config")
    return UNetConfig.from_dict(recorded)


def run(args) -> int:
    """Run the stage ``args.stage`` (``pixel`` by default) and print where the result went."""
    from medrecon.priors.networks import UNetConfig  # torch and diffusers, only when running
    from medrecon.priors.training import AutoencoderTrainConfig, TrainConfig, train, train_autoencoder, train_latent

    args.stage = getattr(args, "stage", "pixel")
    _check_stage_options(args)
    data = _training_slices(args)
    device = "cpu" if args.cpu else None
    common = dict(resume=not args.no_resume, overwrite=args.overwrite, device=device, log=_log, time_limit=args.time_limit)
    if args.name is not None and args.stage == "autoencoder":
        raise InputError("--name names the prior of the pixel and latent stages; the autoencoder stage writes no prior")
    if args.stage == "autoencoder":
        config = AutoencoderTrainConfig(
            steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, crop_size=args.crop,
            checkpoint_every=args.checkpoint_every, kl_weight=args.kl_weight,
        )
        record = train_autoencoder(config, _autoencoder_config(args), data, args.out, **common)
        print(
            f"trained the autoencoder {record['steps']} steps: final loss {record['final_loss']}, scaling factor "
            f"{record['scaling_factor']:.6g} -> {args.out}/autoencoder (next: --stage latent --autoencoder {args.out})"
        )
        return 0
    unet = UNetConfig.from_dict(_json_arg(args.unet_config, "--unet-config")) if args.unet_config else None
    if args.stage == "latent":
        config = TrainConfig(
            steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
            checkpoint_every=args.checkpoint_every, sigma_data=1.0 if args.sigma_data is None else args.sigma_data,
            **_noise_levels(args),
        )
        record = train_latent(config, unet, args.autoencoder, data, args.out, name=args.name, **common)
        print(f"trained the latent denoiser {record['steps']} steps: final loss {record['final_loss']} -> latent prior {args.out}/prior")
        return 0
    unet = _init_unet_config(args, unet)
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, crop_size=args.crop,
        checkpoint_every=args.checkpoint_every, init_from=getattr(args, "init", None), **_noise_levels(args),
        **({} if args.sigma_data is None else {"sigma_data": args.sigma_data}),
    )
    record = train(config, unet or UNetConfig(sample_size=args.crop or args.size), data, args.out, name=args.name, **common)
    stopped = f" (stopped by --time-limit {args.time_limit:g} s)" if record.get("stopped_by_time_limit") else ""
    print(
        f"trained {record['steps']} steps{stopped} on {', '.join(map(str, record['training_sources']))}: "
        f"final loss {record['final_loss']}, {record['images_per_s']} img/s -> {args.out}/prior"
    )
    return 0
