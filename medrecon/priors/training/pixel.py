"""The pixel stage: a pixel prior by denoising score matching with EDM preconditioning (Karras et al. 2022).

The network is ``build_unet(unet_config)`` wrapped by :class:`~medrecon.priors.denoiser.EDMDenoiser`;
each step draws ``ln sigma ~ N(P_mean, P_std^2)`` per image, noise ``n ~ N(0, I)`` and minimises
``lambda(sigma) ||D(x0 + sigma n, sigma) - x0||^2`` (mean over pixels and batch) with
``lambda = (sigma^2 + sd^2) / (sigma sd)^2``; AdamW, an EMA of the weights. Seeding, data order,
DDP, checkpoints, resume and the time limit are the loop's (:mod:`medrecon.priors.training.loop`;
the step stream is ``step``, per rank).

Outputs in ``out_dir``: ``checkpoint.pt``, ``ema.safetensors`` (the EMA weights of the UNet,
float16, diffusers key names), the prior folder ``prior/`` and ``train_record.json``.

Fine-tuning: ``config.init_from`` names a pixel EDM prior (shipped name or folder, checksums verified
by ``load_prior``) whose network starts both the model and its EMA; the optimizer starts fresh. Its
UNet config and ``sigma_data`` must be the run's. A resumed run takes its weights from the
checkpoint, so ``init_from`` only matters at step 0 (it is part of the config the resume checks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_output
from medrecon.priors.denoiser import EDMDenoiser
from medrecon.priors.hub import PriorCard, load_prior, save_prior
from medrecon.priors.networks import UNetConfig, build_unet

from .loop import EMA, JSONConfig, RunOptions, Stage, Trained, _default_log, run

EMA_NAME = "ema.safetensors"
PRIOR_DIR = "prior"  # the exported prior folder inside the training folder


@dataclass(frozen=True)
class TrainConfig(JSONConfig):
    """One training run (the EDM recipe of docs/priors.md, "Training"). ``batch_size`` is per process."""

    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay min(ema_decay, (1 + t) / (10 + t)): short runs are not stuck at init
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_data: float = 0.5
    grad_clip: float | None = None
    seed: int = 0
    crop_size: int | None = None  # random crops of the dataset's slices; None = whole slices
    checkpoint_every: int = 500
    log_every: int = 10
    mixed_precision: bool = True  # bf16 autocast where native: CUDA, or a CPU with AMX / AVX512-BF16
    init_from: str | None = None  # a pixel EDM prior (shipped name or folder) whose weights start the run

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if int(self.steps) < 0 or int(self.batch_size) < 1:
            raise InputError(f"steps must be >= 0 and batch_size >= 1, got {self.steps}, {self.batch_size}")
        if not self.lr > 0 or not 0 <= self.ema_decay < 1 or len(self.betas) != 2:
            raise InputError(f"need lr > 0, 0 <= ema_decay < 1 and two betas, got {self.lr}, {self.ema_decay}, {self.betas}")
        if not self.p_std > 0 or not self.sigma_data > 0:
            raise InputError(f"need p_std > 0 and sigma_data > 0, got {self.p_std}, {self.sigma_data}")
        if int(self.checkpoint_every) < 1 or int(self.log_every) < 1:
            raise InputError("checkpoint_every and log_every must be >= 1")
        if self.crop_size is not None and int(self.crop_size) < 1:
            raise InputError(f"crop_size must be >= 1, got {self.crop_size}")


def edm_loss(denoiser: torch.nn.Module, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, sigma_data: float):
    """``mean_b lambda(sigma_b) mean_pix (D(x0 + sigma n, sigma) - x0)^2`` for images ``x0`` and
    noise ``noise`` ``(B, C, H, W)`` and noise levels ``sigma`` ``(B,)`` (units of the normalised images)."""
    s = sigma.reshape(-1, 1, 1, 1)
    denoised = denoiser(x0 + s * noise, sigma)
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    per_item = ((denoised.float() - x0) ** 2).mean(dim=(1, 2, 3))
    return (weight * per_item).mean()


class PixelStage(Stage):
    """An EDM denoiser of ``unet_config`` with an EMA; exports ``ema.safetensors`` and (with
    ``export``) the pixel prior folder ``prior/``, its card named ``name`` (default: the training
    folder's name)."""

    name = "pixel"
    distributed = True

    def __init__(self, config: TrainConfig, unet_config: UNetConfig, *, export: bool = True, name: str | None = None):
        self.config, self.unet_config, self.write_prior, self.prior_name = config, unet_config, export, name
        self.autocast = config.mixed_precision
        self.ema = EMA(config.ema_decay, config.ema_warmup)
        self.initialised_from = None

    def check_data(self, dataset, crop: int | None) -> None:
        image_size = crop or dataset.size
        if image_size % (2 ** (len(self.unet_config.block_out_channels) - 1)):
            raise InputError(f"image size {image_size} must be divisible by 2^(levels - 1) of the UNet")

    def build(self) -> torch.nn.Module:
        net = build_unet(self.unet_config)
        if self.config.init_from is not None:
            initial, self.initialised_from = initial_weights(self.config.init_from, self.unet_config, self.config.sigma_data)
            net.load_state_dict(initial)
        return EDMDenoiser(net, sigma_data=self.config.sigma_data)

    def loss(self, model, x0, generator):
        cfg = self.config
        sigma = torch.exp(torch.randn(x0.shape[0], generator=generator) * cfg.p_std + cfg.p_mean)
        noise = torch.randn(x0.shape, generator=generator)
        return edm_loss(model, x0, sigma.to(x0.device), noise.to(x0.device), cfg.sigma_data), {}

    def identity(self) -> dict:
        return {"unet_config": self.unet_config.to_dict()}

    def record_fields(self, trained: Trained) -> dict:
        return {"parameterisation": "edm", "sigma_data": self.config.sigma_data, "initialised_from": self.initialised_from}

    def export(self, trained: Trained, record: dict) -> None:
        write_ema(trained.ema.net, trained.out_dir / EMA_NAME)
        if self.write_prior:
            export_prior(trained.ema.net, self.unet_config, self.config, trained.dataset, record,
                         trained.out_dir / PRIOR_DIR, name=self.prior_name)

    def result_fields(self, trained: Trained) -> dict:
        return {"ema_state": trained.ema.net.state_dict()}


def train(
    config: TrainConfig,
    unet_config: UNetConfig,
    dataset,
    out_dir,
    *,
    resume: bool = True,
    overwrite: bool = False,
    device=None,
    log: Callable[[str], None] | None = _default_log,
    export: bool = True,
    time_limit: float | None = None,
    name: str | None = None,
) -> dict:
    """Train (or resume training) and write ``out_dir``'s checkpoint, EMA weights and record (and,
    with ``export``, the pixel prior folder ``out_dir/prior``, whose card is named ``name``, by
    default after ``out_dir``).

    ``time_limit`` (seconds, counted from this call): the loop stops after the step during which
    the budget ran out, and everything is written as at the end of a run (checkpoint, EMA weights,
    record, prior folder), the record saying ``stopped_by_time_limit``; running the same command
    again resumes from there. Saving takes a few seconds beyond the budget.

    ``dataset`` is a :class:`~medrecon.priors.training.data.TrainingSlices` (anything with
    ``len``, ``batch(indices, generator)`` and ``describe()``). ``resume``: continue from
    ``out_dir/checkpoint.pt`` when there is one (its configs must match, apart from ``steps``,
    ``checkpoint_every`` and ``log_every``); without ``resume`` an existing checkpoint is an
    :class:`InputError` unless ``overwrite``. Returns the record written to ``train_record.json``
    (plus ``"losses"``: the loss of every step run now, on rank 0, and ``"ema_state"``: the EMA
    UNet's state dict, on every rank).
    """
    if not isinstance(config, TrainConfig) or not isinstance(unet_config, UNetConfig):
        raise InputError("train needs a TrainConfig and a UNetConfig")
    options = RunOptions(Path(out_dir), resume=resume, overwrite=overwrite, device=device, log=log, time_limit=time_limit)
    return run(PixelStage(config, unet_config, export=export, name=name), dataset, options)


def write_ema(unet: torch.nn.Module, path: Path) -> None:
    """The EMA UNet's weights as float16 safetensors (diffusers key names), atomically."""
    weights = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in unet.state_dict().items()}
    with atomic_output(path, overwrite=True, suffix=".safetensors") as tmp:
        save_file(weights, str(tmp), metadata={"format": "pt", "dtype": "float16", "source": "medrecon.priors.training EMA"})


def initial_weights(name_or_path: str, unet_config: UNetConfig, sigma_data: float) -> tuple[dict, dict]:
    """The float32 UNet state dict of the pixel EDM prior ``name_or_path`` (checksums verified), and
    ``{"prior", "sha256", "steps"}`` describing it for the training record. ``InputError`` when it is
    not a pixel EDM prior of this UNet config and ``sigma_data``."""
    prior = load_prior(name_or_path)
    card = prior.card
    if card.latent is not None or card.parameterisation != "edm":
        kind = f"{card.parameterisation} prior{', latent' if card.latent else ''}"
        raise InputError(f"init_from {name_or_path!r} is not a pixel EDM prior (a {kind})")
    own = card.training.get("record", {}).get("unet_config")
    if own is not None and own != unet_config.to_dict():
        diff = sorted(k for k in unet_config.to_dict() if own.get(k) != unet_config.to_dict()[k])
        raise InputError(f"init_from {name_or_path!r} has another UNet config (differs in {diff}); train with its config")
    if abs(float(card.sigma_data) - float(sigma_data)) > 1e-12:
        raise InputError(f"init_from {name_or_path!r} has sigma_data {card.sigma_data}, the run {sigma_data}")
    state = {k: v.detach().float().clone() for k, v in prior.network.state_dict().items()}
    described = {"prior": card.name, "sha256": dict(card.sha256), "steps": card.training.get("record", {}).get("steps")}
    return state, described


def card_record(record: dict) -> dict:
    """The training record as a card carries it: no data block, no weights, and no machine paths
    (the init prior is named by its card's name, as ``initialised_from`` records it)."""
    out = {k: v for k, v in record.items() if k not in ("data", "losses", "ema_state")}
    init = out.get("initialised_from")
    if init:
        out["train_config"] = dict(out["train_config"], init_from=init["prior"])
    return out


def export_prior(unet, unet_config: UNetConfig, config: TrainConfig, dataset, record: dict, folder: Path, *,
                 name: str | None = None) -> Path:
    """Write the EMA network as a prior folder (``load_prior`` loads it): EDM parameterisation, the
    data's normalisation, and the training record's summary on the card, named ``name`` (default:
    the training folder's name). Replaced at each export. The card's image size is the grid the
    training slices were resampled to (``--size``: the pixel scale the prior knows), not the crops
    it saw nor the UNet's nominal ``sample_size`` (a fine-tuned prior's is its parent's)."""
    described = dataset.describe()
    summary = (
        f"{record['steps']} steps of batch {config.batch_size * record['world_size']} on {record['device']}, "
        f"{_total_time(record)}, sources {record['training_sources']} (training split)"
        + (f"; stopped by its time limit of {record['time_limit_s']:g} s" if record.get("stopped_by_time_limit") else "")
    )
    card = PriorCard(
        name=name or folder.resolve().parent.name,
        modality=str(described["modality"]).upper(),
        image_size=int(described["size"]),
        channels=unet_config.in_channels,
        parameterisation="edm",
        normalisation=described["normalisation"],
        sigma_data=config.sigma_data,
        training={"summary": summary, "record": card_record(record), "data": described},
    )
    return save_prior(folder, unet, card, overwrite=True)


def _total_time(record: dict) -> str:
    total = record.get("seconds_total")
    if total is None:
        return f"{record['seconds_this_run']} s in the last run (earlier runs' time not recorded)"
    return f"{total:.0f} s of training in total"


__all__ = ["TrainConfig", "PixelStage", "train", "edm_loss", "initial_weights", "export_prior", "card_record", "EMA_NAME", "PRIOR_DIR"]
