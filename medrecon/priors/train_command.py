"""``medrecon train``: the command-line glue of the three training stages (pixel prior,
autoencoder, latent denoiser). The training itself lives in :mod:`medrecon.priors.train`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medrecon.errors import InputError
from medrecon.priors.networks import AutoencoderConfig, UNetConfig
from medrecon.priors.train import AutoencoderTrainConfig, TrainConfig, train, train_autoencoder, train_latent
from medrecon.priors.training_data import TrainingSlices


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


def _training_data(args: argparse.Namespace) -> TrainingSlices:
    options = {"orientations": getattr(args, "orientations", "axial")}
    if getattr(args, "contrast_augment", None) is not None:
        options["intensity"] = _json_arg(args.contrast_augment, "--contrast-augment")
    if args.files:
        if getattr(args, "sources", None):
            raise InputError("--files and --sources exclude each other")
        return TrainingSlices.from_files(args.files, modality=args.modality, size=args.size, **options)
    return TrainingSlices.from_starter(args.modality, ids=getattr(args, "sources", None), dest=args.starter, size=args.size, **options)


def _check_stage_options(args: argparse.Namespace) -> None:
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


def _autoencoder_config(args: argparse.Namespace) -> AutoencoderConfig:
    if args.autoencoder_config is None:
        return AutoencoderConfig(sample_size=args.crop or args.size)
    d = _json_arg(args.autoencoder_config, "--autoencoder-config")
    try:
        return AutoencoderConfig(**{**d, "block_out_channels": tuple(d.get("block_out_channels", AutoencoderConfig.block_out_channels))})
    except TypeError as exc:
        raise InputError(f"bad autoencoder config: {exc}") from None


def _noise_levels(args: argparse.Namespace) -> dict:
    """TrainConfig's p_mean / p_std where given on the command line."""
    given = {"p_mean": getattr(args, "p_mean", None), "p_std": getattr(args, "p_std", None)}
    return {k: v for k, v in given.items() if v is not None}


def _init_unet_config(args: argparse.Namespace, unet: UNetConfig | None) -> UNetConfig | None:
    """With ``--init`` and no ``--unet-config``: the UNet config recorded on the init prior's card."""
    if not getattr(args, "init", None) or unet is not None:
        return unet
    from medrecon.priors.hub import load_prior  # noqa: PLC0415

    recorded = load_prior(args.init).card.training.get("record", {}).get("unet_config")
    if recorded is None:
        raise InputError(f"--init {args.init}: its card records no UNet config; pass --unet-config")
    return UNetConfig.from_dict(recorded)


def run_train(args: argparse.Namespace) -> int:
    """Run the stage ``args.stage`` (``pixel`` by default) and print where the result went."""
    args.stage = getattr(args, "stage", "pixel")
    _check_stage_options(args)
    data = _training_data(args)
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
