"""The latent stage of a latent prior (ReSample): the EDM denoiser of the pixel stage, trained on the
scaled latents of a trained autoencoder (:mod:`medrecon.priors.training.autoencoder`).

Every training slice is encoded once (posterior mean times ``scaling_factor``, no augmentation:
:class:`~medrecon.priors.latent.LatentSlices`); the pixel stage's loss, EMA, seeding (stream
``step``, per rank), DDP, checkpoints and resume apply unchanged. Outputs in ``out_dir``:
``checkpoint.pt``, ``ema.safetensors``, ``train_record.json`` and the latent prior folder
``prior/`` (``autoencoder/`` + ``unet/`` + card, :func:`~medrecon.priors.hub.save_latent_prior`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from medrecon.errors import InputError
from medrecon.priors.hub import PriorCard, load_autoencoder, save_latent_prior
from medrecon.priors.latent import LatentPrior, LatentSlices
from medrecon.priors.networks import UNetConfig

from .autoencoder import AUTOENCODER_DIR
from .loop import RECORD_NAME, RunOptions, Trained, _default_log, run
from .pixel import EMA_NAME, PRIOR_DIR, PixelStage, TrainConfig, card_record, write_ema


class LatentStage(PixelStage):
    """The pixel stage on latents of ``latent`` (a :class:`~medrecon.priors.latent.LatentPrior`
    without denoiser); exports the latent prior folder instead of a pixel one. ``slices``: the
    image-space training data (for the card), ``autoencoder_record``: the autoencoder stage's record."""

    name = "latent"

    def __init__(self, config: TrainConfig, unet_config: UNetConfig, latent: LatentPrior, slices, autoencoder_record: dict, *,
                 half: bool = True, name: str | None = None):
        super().__init__(config, unet_config, export=True, name=name)
        self.latent, self.slices, self.autoencoder_record, self.half = latent, slices, autoencoder_record, half

    def export(self, trained: Trained, record: dict) -> None:
        write_ema(trained.ema.net, trained.out_dir / EMA_NAME)
        described = self.slices.describe()
        ae, ae_record = self.latent.autoencoder, self.autoencoder_record
        card = PriorCard(
            name=self.prior_name or trained.out_dir.resolve().name,
            modality=str(described["modality"]).upper(),
            image_size=self.slices.size,
            channels=int(ae.config.in_channels),
            parameterisation="edm",
            normalisation=described["normalisation"],
            sigma_data=self.config.sigma_data,
            training={
                "summary": f"autoencoder {ae_record.get('steps')} steps, latent denoiser {record['steps']} steps "
                f"on {record['device']}, sources {record['training_sources']} (training split)",
                "autoencoder": {k: v for k, v in ae_record.items() if k != "data"},
                "denoiser": card_record(record),
                "data": described,
                "latent_augmentation": "none (every slice encoded once, unaugmented)",
            },
        )
        save_latent_prior(trained.out_dir / PRIOR_DIR, ae, trained.ema.net, card, self.latent.scaling_factor, overwrite=True,
                          half=self.half)


def train_latent(
    config: TrainConfig,
    unet_config: UNetConfig | None,
    autoencoder_dir,
    dataset,
    out_dir,
    *,
    resume: bool = True,
    overwrite: bool = False,
    device=None,
    half: bool = True,
    log: Callable[[str], None] | None = _default_log,
    time_limit: float | None = None,
    name: str | None = None,
) -> dict:
    """The latent denoiser of a latent prior: encode every slice of ``dataset`` once with the
    autoencoder of ``autoencoder_dir`` (an autoencoder-stage folder, or its ``autoencoder/``),
    train the pixel stage's denoiser on the scaled latents (no augmentation), and write the latent
    prior folder ``out_dir/prior`` (``autoencoder/`` + ``unet/`` + card, weights float16 with
    ``half``). ``unet_config`` None: ``UNetConfig`` of the latent size and channels. Returns the
    record (plus ``"losses"`` and ``"ema_state"``, as ``train``)."""
    if not isinstance(config, TrainConfig) or not (unet_config is None or isinstance(unet_config, UNetConfig)):
        raise InputError("train_latent needs a TrainConfig and a UNetConfig (or None)")
    autoencoder_dir = Path(autoencoder_dir)
    if (autoencoder_dir / AUTOENCODER_DIR).is_dir():
        stage_record = autoencoder_dir / RECORD_NAME
        autoencoder_dir = autoencoder_dir / AUTOENCODER_DIR
    else:
        stage_record = autoencoder_dir.parent / RECORD_NAME
    if not (autoencoder_dir / "config.json").is_file():
        raise InputError(f"{autoencoder_dir} is not an autoencoder folder (no config.json)")
    ae = load_autoencoder(autoencoder_dir)
    ae_record = json.loads(stage_record.read_text()) if stage_record.is_file() else {}
    if ae_record.get("stage") != "autoencoder":
        ae_record = {"provenance": f"autoencoder folder {autoencoder_dir.name!r} without an autoencoder-stage record"}
    latent = LatentPrior(ae, ae.config.scaling_factor)
    latents = LatentSlices.from_slices(latent, dataset)
    if unet_config is None:
        unet_config = UNetConfig(sample_size=latents.size, in_channels=latent.latent_channels, out_channels=latent.latent_channels)
    if unet_config.sample_size != latents.size or unet_config.in_channels != latent.latent_channels:
        raise InputError(
            f"the latent UNet must take {latent.latent_channels} x {latents.size} x {latents.size} latents, "
            f"its config says {unet_config.in_channels} x {unet_config.sample_size}"
        )
    if config.crop_size is not None:
        raise InputError("the latent stage does not crop (crop_size must be None)")
    stage = LatentStage(config, unet_config, latent, dataset, ae_record, half=half, name=name)
    options = RunOptions(Path(out_dir), resume=resume, overwrite=overwrite, device=device, log=log, time_limit=time_limit)
    return run(stage, latents, options)


__all__ = ["LatentStage", "train_latent"]
