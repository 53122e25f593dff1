"""The autoencoder stage of a latent prior (ReSample): a diffusers ``AutoencoderKL`` trained on the
augmented training slices, one process, no EMA.

Seeding, data order, checkpoints, resume and the time limit are the loop's
(:mod:`medrecon.priors.training.loop`; the step stream is ``ae-step``, without a rank). Outputs in
``out_dir``: ``checkpoint.pt``, ``autoencoder/`` (diffusers ``save_pretrained``, float32,
``scaling_factor`` in its config) and ``train_record.json``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_output
from medrecon.priors.latent import latent_scaling_factor
from medrecon.priors.networks import AutoencoderConfig, build_autoencoder

from .loop import RNG_SCHEME, JSONConfig, RunOptions, Stage, Trained, _default_log, run

AUTOENCODER_DIR = "autoencoder"  # the trained autoencoder inside an autoencoder-stage folder
AUTOENCODER_CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class AutoencoderTrainConfig(JSONConfig):
    """The autoencoder stage of a latent prior: ``loss = mean |x - Dec(z)| + kl_weight * KL / pixels``
    with ``z`` drawn from the encoder's posterior (noise from the step's generator) and ``KL`` the
    KL divergence to ``N(0, I)`` summed over an image's latent, divided by the image's pixel count
    (the same ratio as Rombach et al.'s summed losses with their ``kl_weight`` 1e-6). AdamW, no EMA,
    one process."""

    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    kl_weight: float = 1e-6
    grad_clip: float | None = 1.0
    seed: int = 0
    crop_size: int | None = None  # random crops of the dataset's slices; None = the dataset's setting
    checkpoint_every: int = 500
    log_every: int = 10

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if int(self.steps) < 0 or int(self.batch_size) < 1:
            raise InputError(f"steps must be >= 0 and batch_size >= 1, got {self.steps}, {self.batch_size}")
        if not self.lr > 0 or self.kl_weight < 0:
            raise InputError(f"lr must be > 0 and kl_weight >= 0, got {self.lr}, {self.kl_weight}")
        if int(self.checkpoint_every) < 1 or int(self.log_every) < 1:
            raise InputError("checkpoint_every and log_every must be >= 1")


def autoencoder_loss(autoencoder, x: torch.Tensor, noise: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, l1)`` of :class:`AutoencoderTrainConfig` for images ``x`` ``(B, C, H, W)`` and
    posterior noise ``noise`` ``(B, latent_channels, H / f, W / f)``."""
    posterior = autoencoder.encode(x).latent_dist
    z = posterior.mean + posterior.std * noise
    recon = autoencoder.decode(z).sample
    l1 = (recon.float() - x).abs().mean()
    kl = 0.5 * (posterior.mean**2 + posterior.var - 1.0 - posterior.logvar).sum(dim=(1, 2, 3))
    pixels = x[0].numel()
    return l1 + kl_weight * (kl / pixels).mean(), l1


class AutoencoderStage(Stage):
    """An ``AutoencoderKL`` of ``autoencoder_config``; records and exports it with the
    ``scaling_factor`` ``1 / std`` of the posterior means of every (unaugmented) training slice."""

    name = "autoencoder"
    log_prefix = "autoencoder "
    stream = "ae-step"
    distributed = False
    checkpoint_format = AUTOENCODER_CHECKPOINT_FORMAT
    rng_scheme = RNG_SCHEME.replace("stream", "ae-step")
    metric_names = ("l1",)

    def __init__(self, config: AutoencoderTrainConfig, autoencoder_config: AutoencoderConfig):
        self.config, self.autoencoder_config = config, autoencoder_config
        self.downsampling = 2 ** (len(autoencoder_config.block_out_channels) - 1)

    def check_data(self, dataset, crop: int | None) -> None:
        f = self.downsampling
        if (crop or dataset.size) % f or dataset.size % f:
            raise InputError(f"image size {crop or dataset.size} must be divisible by the autoencoder's downsampling {f}")

    def build(self) -> torch.nn.Module:
        return build_autoencoder(self.autoencoder_config)

    def loss(self, model, x, generator):
        f = self.downsampling
        shape = (x.shape[0], self.autoencoder_config.latent_channels, x.shape[-2] // f, x.shape[-1] // f)
        noise = torch.randn(shape, generator=generator)
        loss, l1 = autoencoder_loss(model, x, noise.to(x.device), self.config.kl_weight)
        return loss, {"l1": l1}

    def identity(self) -> dict:
        return {"stage": "autoencoder", "autoencoder_config": self.autoencoder_config.to_dict()}

    def record_fields(self, trained: Trained) -> dict:
        trained.model.eval()
        return {
            "scaling_factor": latent_scaling_factor(trained.model, trained.dataset.images),
            "scaling_rule": "1 / std of the posterior means of every unaugmented training slice",
            "downsampling": self.downsampling,
            "latent_channels": self.autoencoder_config.latent_channels,
        }

    def export(self, trained: Trained, record: dict) -> None:
        with atomic_output(trained.out_dir / AUTOENCODER_DIR, overwrite=True, folder=True) as tmp:
            saved = copy.deepcopy(trained.model).to("cpu")
            saved.register_to_config(scaling_factor=record["scaling_factor"])
            saved.save_pretrained(tmp, safe_serialization=True)


def train_autoencoder(
    config: AutoencoderTrainConfig,
    autoencoder_config,
    dataset,
    out_dir,
    *,
    resume: bool = True,
    overwrite: bool = False,
    device=None,
    log: Callable[[str], None] | None = _default_log,
    time_limit: float | None = None,
) -> dict:
    """Train (or resume) the autoencoder of a latent prior on ``dataset`` (a ``TrainingSlices``,
    augmented as for :func:`~medrecon.priors.training.pixel.train`), with the loop's seeding (step
    ``t`` draws from ``sha256(seed:ae-step:t)``, data order from ``sha256(seed:order:epoch)``),
    checkpoint and resume rules. Writes ``out_dir/checkpoint.pt``, ``out_dir/autoencoder/``
    (diffusers ``save_pretrained``, float32, ``scaling_factor`` in its config) and
    ``train_record.json``; ``scaling_factor`` is ``1 / std`` of the posterior means of every
    (unaugmented) training slice. ``time_limit``: as for ``train``. Returns the record (plus
    ``"losses"``, ``"l1"`` of the steps run now)."""
    if not isinstance(config, AutoencoderTrainConfig) or not isinstance(autoencoder_config, AutoencoderConfig):
        raise InputError("train_autoencoder needs an AutoencoderTrainConfig and an AutoencoderConfig")
    options = RunOptions(Path(out_dir), resume=resume, overwrite=overwrite, device=device, log=log, time_limit=time_limit)
    return run(AutoencoderStage(config, autoencoder_config), dataset, options)


__all__ = ["AutoencoderTrainConfig", "AutoencoderStage", "autoencoder_loss", "train_autoencoder", "AUTOENCODER_DIR",
           "AUTOENCODER_CHECKPOINT_FORMAT"]
