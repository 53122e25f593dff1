"""Training a pixel prior: denoising score matching with EDM preconditioning (Karras et al. 2022).

The network is ``build_unet(unet_config)`` wrapped by :class:`~medrecon.priors.denoiser.EDMDenoiser`;
each step draws ``ln sigma ~ N(P_mean, P_std^2)`` per image, noise ``n ~ N(0, I)`` and minimises
``lambda(sigma) ||D(x0 + sigma n, sigma) - x0||^2`` (mean over pixels and batch) with
``lambda = (sigma^2 + sd^2) / (sigma sd)^2``; AdamW, an EMA of the weights.

Randomness and resuming: every random draw of step ``t`` comes from CPU ``torch.Generator`` s seeded
from ``(config.seed, stream, t, rank)`` (a sha256 of them), and the data order of epoch ``e`` from
a generator seeded from ``(config.seed, "order", e)``. The random state at step ``t`` is therefore a
function of ``t``: a checkpoint (model, EMA, optimizer state, step, and the seeding scheme) resumes
exactly, and a run is the same whatever device it runs on (the draws are made on the CPU).

Several processes (``torchrun``; ``RANK``/``WORLD_SIZE`` set): ``DistributedDataParallel``, each
rank takes a disjoint ``batch_size`` share of the step's ``batch_size * world_size`` indices of the
global data order, and only rank 0 writes files.

Outputs in ``out_dir``: ``checkpoint.pt`` (every ``checkpoint_every`` steps and at the end, atomic,
loadable with ``torch.load(..., weights_only=True)``), ``ema.safetensors`` (the EMA weights of the
UNet, float16, diffusers key names) and ``train_record.json``.

Fine-tuning: ``config.init_from`` names a pixel EDM prior (shipped name or folder, checksums verified
by ``load_prior``) whose network starts both the model and its EMA; the optimizer starts fresh. Its
UNet config and ``sigma_data`` must be the run's. A resumed run takes its weights from the
checkpoint, so ``init_from`` only matters at step 0 (it is part of the config the resume checks).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_output
from medrecon.priors.denoiser import EDMDenoiser
from medrecon.priors.networks import UNetConfig, build_unet, parameter_count

CHECKPOINT_NAME = "checkpoint.pt"
EMA_NAME = "ema.safetensors"
RECORD_NAME = "train_record.json"
PRIOR_DIR = "prior"  # the exported prior folder inside the training folder
CHECKPOINT_FORMAT = 1
RNG_SCHEME = "sha256(seed:stream:step:rank) per step; order: sha256(seed:order:epoch) permutation"
# Fields that may differ between a run and the run that resumes it.
_RESUMABLE_CHANGES = ("steps", "checkpoint_every", "log_every")


class _JSONConfig:
    """``to_dict``/``from_dict`` of the frozen training configs (tuples become lists and back)."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"bad {cls.__name__}: unknown fields {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class TrainConfig(_JSONConfig):
    """One training run (EDM recipe of ../shared/GPU.md). ``batch_size`` is per process."""

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
    mixed_precision: bool = True  # bf16 autocast, on CUDA only
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



def _seed(*parts) -> int:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _generator(*parts) -> torch.Generator:
    return torch.Generator().manual_seed(_seed(*parts))


class _DataOrder:
    """The global index stream: epoch permutations, each from its own seeded generator."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self._cache: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            if len(self._cache) > 4:
                self._cache.clear()
            self._cache[epoch] = torch.randperm(self.n, generator=_generator(self.seed, "order", epoch))
        return self._cache[epoch]

    def indices(self, start: int, count: int) -> torch.Tensor:
        pos = torch.arange(start, start + count)
        epochs = (pos // self.n).tolist()
        within = (pos % self.n).tolist()
        return torch.tensor([int(self._perm(e)[i]) for e, i in zip(epochs, within)], dtype=torch.long)


def edm_loss(denoiser: torch.nn.Module, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, sigma_data: float):
    """``mean_b lambda(sigma_b) mean_pix (D(x0 + sigma n, sigma) - x0)^2``."""
    s = sigma.reshape(-1, 1, 1, 1)
    denoised = denoiser(x0 + s * noise, sigma)
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    per_item = ((denoised.float() - x0) ** 2).mean(dim=(1, 2, 3))
    return (weight * per_item).mean()


def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def _atomic_save(obj, path: Path) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(obj, tmp)


class TimeBudget:
    """A wall-clock budget for a training loop: ``spent()`` turns True once ``seconds`` have passed
    since it was made (never, for None). With several processes rank 0's clock decides and every
    rank learns it in the same step (one all-reduce of a flag), so they all stop at one step."""

    def __init__(self, seconds: float | None, world: int = 1, device=None) -> None:
        if seconds is not None and not (isinstance(seconds, (int, float)) and seconds > 0):
            raise InputError(f"time_limit must be a positive number of seconds, got {seconds!r}")
        self.seconds = None if seconds is None else float(seconds)
        self.world, self.device = world, device
        self.t0 = time.perf_counter()

    def spent(self) -> bool:
        if self.seconds is None:
            return False
        over = time.perf_counter() - self.t0 >= self.seconds
        if self.world > 1:
            import torch.distributed as dist  # noqa: PLC0415

            flag = torch.tensor([1.0 if over else 0.0], device=self.device)
            dist.broadcast(flag, src=0)
            over = bool(flag.item())
        return over


def _default_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_checkpoint(path) -> dict:
    """A checkpoint written by :func:`train` (``weights_only=True``)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


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

    ``dataset`` is a :class:`~medrecon.priors.training_data.TrainingSlices` (anything with
    ``len``, ``batch(indices, generator)`` and ``describe()``). ``resume``: continue from
    ``out_dir/checkpoint.pt`` when there is one (its configs must match, apart from ``steps``,
    ``checkpoint_every`` and ``log_every``); without ``resume`` an existing checkpoint is an
    :class:`InputError` unless ``overwrite``. Returns the record written to ``train_record.json``
    (plus ``"losses"``: the loss of every step run now, on rank 0).
    """
    if not isinstance(config, TrainConfig) or not isinstance(unet_config, UNetConfig):
        raise InputError("train needs a TrainConfig and a UNetConfig")
    log = log or (lambda line: None)
    out_dir = Path(out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    n = len(dataset)
    if n < 1:
        raise InputError("the training dataset is empty")
    crop = int(config.crop_size) if config.crop_size is not None else dataset.crop_size
    if crop is not None and crop > dataset.size:
        raise InputError(f"crop_size {crop} is larger than the slices ({dataset.size})")
    image_size = crop or dataset.size
    if image_size % (2 ** (len(unet_config.block_out_channels) - 1)):
        raise InputError(f"image size {image_size} must be divisible by 2^(levels - 1) of the UNet")

    budget = TimeBudget(time_limit)
    rank, world, local_rank = _distributed()
    own_group = False
    if world > 1:
        import torch.distributed as dist  # noqa: PLC0415

        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and device is None else "gloo"
            dist.init_process_group(backend=backend)
            own_group = True
        rank, world = dist.get_rank(), dist.get_world_size()
    if device is None:
        device = torch.device(f"cuda:{local_rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)

    budget.world, budget.device = world, device
    try:
        return _train(config, unet_config, dataset, crop, out_dir, ckpt_path, resume, overwrite, device, log, rank, world,
                      export, budget, name)
    finally:
        if own_group:
            import torch.distributed as dist  # noqa: PLC0415

            dist.destroy_process_group()


def _train(config, unet_config, dataset, crop, out_dir, ckpt_path, resume, overwrite, device, log, rank, world, export, budget, name):
    # diffusers initialises from the global RNG: fork it, so the caller's state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(config.seed, "init"))
        net = build_unet(unet_config)
        ema_net = build_unet(unet_config)
    model = EDMDenoiser(net, sigma_data=config.sigma_data).to(device)
    ema = EDMDenoiser(ema_net, sigma_data=config.sigma_data).to(device)
    initialised_from = None
    if config.init_from is not None:
        initial, initialised_from = initial_weights(config.init_from, unet_config, config.sigma_data)
        net.load_state_dict(initial)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)

    data_sha = dataset.fingerprint()
    seconds_before = 0.0
    if device.type != "cpu" and hasattr(dataset, "to"):
        dataset = copy.copy(dataset).to(device)  # augment on the device; the caller's dataset stays put
    start = 0
    if ckpt_path.exists():
        if not resume and not overwrite:
            raise InputError(f"{ckpt_path} exists; resume it, or pass overwrite=True (--overwrite) to start again")
        if resume:
            ckpt = load_checkpoint(ckpt_path)
            _check_resumable(ckpt, config, unet_config, len(dataset), data_sha, world)
            model.load_state_dict(ckpt["model"])
            ema.load_state_dict(ckpt["ema"])
            optimizer.load_state_dict(ckpt["optimizer"])
            start = int(ckpt["step"])
            seconds_before = ckpt.get("seconds_total")  # None: a checkpoint from before this was recorded
            log(f"resuming from {ckpt_path} at step {start}")

    ddp = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415

        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    order = _DataOrder(len(dataset), config.seed)
    autocast = config.mixed_precision and device.type == "cuda"
    model_params = [p for p in model.parameters()]
    ema_params = [p for p in ema.parameters()]
    global_batch = config.batch_size * world
    losses: list[float] = []
    t0 = time.perf_counter()
    window_t, window_n, window_loss = t0, 0, []
    model.train()
    end = max(config.steps, start)  # the step the run ends at (earlier when the time budget runs out)

    def checkpoint(step: int) -> None:
        if rank == 0:
            _atomic_save(
                {
                    "format": CHECKPOINT_FORMAT,
                    "step": step,
                    "model": model.state_dict(),
                    "ema": ema.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "train_config": config.to_dict(),
                    "unet_config": unet_config.to_dict(),
                    "rng": {"scheme": RNG_SCHEME, "seed": config.seed, "next_step": step},
                    "dataset_slices": len(dataset),
                    "dataset_sha256": data_sha,
                    "world_size": world,
                    "seconds_total": None if seconds_before is None else seconds_before + time.perf_counter() - t0,
                },
                ckpt_path,
            )

    for step in range(start, config.steps):
        idx = order.indices(step * global_batch + rank * config.batch_size, config.batch_size)
        g = _generator(config.seed, "step", step, rank)
        x0 = dataset.batch(idx, g, crop_size=crop)
        sigma = torch.exp(torch.randn(x0.shape[0], generator=g) * config.p_std + config.p_mean)
        noise = torch.randn(x0.shape, generator=g)
        x0, sigma, noise = x0.to(device), sigma.to(device), noise.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = edm_loss(ddp, x0, sigma, noise, config.sigma_data)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model_params, config.grad_clip)
        optimizer.step()
        decay = config.ema_decay
        if config.ema_warmup:
            decay = min(decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, [p.detach() for p in model_params], 1.0 - decay)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"loss is {value} at step {step + 1}")
        losses.append(value)
        window_loss.append(value)
        window_n += global_batch
        done = step + 1
        if rank == 0 and (done % config.log_every == 0 or done == config.steps):
            now = time.perf_counter()
            ips = window_n / max(now - window_t, 1e-9)
            log(f"step {done}/{config.steps}  loss {sum(window_loss) / len(window_loss):.4f}  {ips:.1f} img/s")
            window_t, window_n, window_loss = now, 0, []
        if done < config.steps and budget.spent():
            end = done
            log(f"time limit of {budget.seconds:g} s reached at step {done}/{config.steps}: saving")
            break
        if done % config.checkpoint_every == 0 and done < config.steps:
            checkpoint(done)
    seconds = time.perf_counter() - t0
    steps_run = end - start
    if steps_run or not ckpt_path.exists():
        checkpoint(end)

    record = {
        "format": CHECKPOINT_FORMAT,
        "train_config": config.to_dict(),
        "unet_config": unet_config.to_dict(),
        "parameterisation": "edm",
        "sigma_data": config.sigma_data,
        "parameters": parameter_count(net),
        "steps": end,
        "steps_this_run": steps_run,
        "resumed_from_step": start,
        "stopped_by_time_limit": end < config.steps,
        "time_limit_s": budget.seconds,
        "seconds_this_run": round(seconds, 3),
        "seconds_total": None if seconds_before is None else round(seconds_before + seconds, 3),
        "images_per_s": round(steps_run * global_batch / seconds, 3) if steps_run and seconds > 0 else None,
        "world_size": world,
        "device": _device_name(device),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "torch": torch.__version__,
        "final_loss": (sum(losses[-config.log_every :]) / len(losses[-config.log_every :])) if losses else None,
        "data": dict(dataset.describe(), crop_size=crop, sha256=data_sha),
        "initialised_from": initialised_from,
        "training_sources": [s.get("id") for s in dataset.describe().get("sources", [])],
        "split": "train",
        "rng": RNG_SCHEME,
    }
    if rank == 0:
        from safetensors.torch import save_file  # noqa: PLC0415

        weights = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in ema.net.state_dict().items()}
        with atomic_output(out_dir / EMA_NAME, overwrite=True, suffix=".safetensors") as tmp:
            save_file(weights, str(tmp), metadata={"format": "pt", "dtype": "float16", "source": "medrecon.priors.train EMA"})
        with atomic_output(out_dir / RECORD_NAME, overwrite=True) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")
        if export:
            export_prior(ema.net, unet_config, config, dataset, record, out_dir / PRIOR_DIR, name=name)
    record = dict(record, losses=losses)
    record["ema_state"] = ema.net.state_dict()
    return record


def initial_weights(name_or_path: str, unet_config: UNetConfig, sigma_data: float) -> tuple[dict, dict]:
    """The float32 UNet state dict of the pixel EDM prior ``name_or_path`` (checksums verified), and
    ``{"prior", "sha256", "steps"}`` describing it for the training record. ``InputError`` when it is
    not a pixel EDM prior of this UNet config and ``sigma_data``."""
    from medrecon.priors.hub import load_prior  # noqa: PLC0415

    prior = load_prior(name_or_path)
    card = prior.card
    if card.latent is not None or card.parameterisation != "edm":
        raise InputError(f"init_from {name_or_path!r} is not a pixel EDM prior (a {card.parameterisation} prior{', latent' if card.latent else ''})")
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
    the training folder's name). Replaced at each export."""
    from medrecon.priors.hub import PriorCard, save_prior  # noqa: PLC0415

    described = dataset.describe()
    summary = (
        f"{record['steps']} steps of batch {config.batch_size * record['world_size']} on {record['device']}, "
        f"{_total_time(record)}, sources {record['training_sources']} (training split)"
        + (f"; stopped by its time limit of {record['time_limit_s']:g} s" if record.get("stopped_by_time_limit") else "")
    )
    card = PriorCard(
        name=name or folder.resolve().parent.name,
        modality=str(described["modality"]).upper(),
        image_size=unet_config.sample_size,
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


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _check_resumable(ckpt: dict, config: TrainConfig, unet_config: UNetConfig, n: int, data_sha: str, world: int) -> None:
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"checkpoint format {ckpt.get('format')} is not {CHECKPOINT_FORMAT}")
    if ckpt["unet_config"] != unet_config.to_dict():
        raise InputError(f"checkpoint UNet config {ckpt['unet_config']} differs from {unet_config.to_dict()}")
    old = {k: v for k, v in ckpt["train_config"].items() if k not in _RESUMABLE_CHANGES}
    new = {k: v for k, v in config.to_dict().items() if k not in _RESUMABLE_CHANGES}
    if old != new:
        diff = sorted(k for k in new if old.get(k) != new[k])
        raise InputError(f"checkpoint was trained with another config (differs in {diff}); use --no-resume --overwrite")
    if ckpt.get("dataset_sha256") != data_sha:
        raise InputError("checkpoint was trained on other slices (dataset sha256 differs); use --no-resume --overwrite")
    if ckpt.get("dataset_slices") != n or ckpt.get("world_size") != world:
        raise InputError(
            f"checkpoint was trained on {ckpt.get('dataset_slices')} slices with {ckpt.get('world_size')} processes, "
            f"now {n} slices and {world}: its data order would not continue"
        )



# ------------------------------------------------------------------------ latent priors (ReSample)
AUTOENCODER_DIR = "autoencoder"  # the trained autoencoder inside an autoencoder-stage folder
AUTOENCODER_CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class AutoencoderTrainConfig(_JSONConfig):
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
    """``(loss, l1)`` of :class:`AutoencoderTrainConfig` for images ``x`` and posterior noise ``noise``."""
    posterior = autoencoder.encode(x).latent_dist
    z = posterior.mean + posterior.std * noise
    recon = autoencoder.decode(z).sample
    l1 = (recon.float() - x).abs().mean()
    kl = 0.5 * (posterior.mean**2 + posterior.var - 1.0 - posterior.logvar).sum(dim=(1, 2, 3))
    pixels = x[0].numel()
    return l1 + kl_weight * (kl / pixels).mean(), l1


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
    augmented as for :func:`train`), with :func:`train`'s seeding (step ``t`` draws from
    ``sha256(seed:ae-step:t)``, data order from ``sha256(seed:order:epoch)``), checkpoint and
    resume rules. Writes ``out_dir/checkpoint.pt``, ``out_dir/autoencoder/`` (diffusers
    ``save_pretrained``, float32, ``scaling_factor`` in its config) and ``train_record.json``;
    ``scaling_factor`` is ``1 / std`` of the posterior means of every (unaugmented) training slice.
    ``time_limit``: as for :func:`train`. Returns the record (plus ``"losses"``, ``"l1"`` of the steps run now)."""
    from medrecon.priors.latent import latent_scaling_factor  # noqa: PLC0415
    from medrecon.priors.networks import AutoencoderConfig, build_autoencoder  # noqa: PLC0415

    if not isinstance(config, AutoencoderTrainConfig) or not isinstance(autoencoder_config, AutoencoderConfig):
        raise InputError("train_autoencoder needs an AutoencoderTrainConfig and an AutoencoderConfig")
    if _distributed()[1] > 1:
        raise InputError("the autoencoder stage runs in one process (no torchrun)")
    budget = TimeBudget(time_limit)
    log = log or (lambda line: None)
    out_dir = Path(out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    if len(dataset) < 1:
        raise InputError("the training dataset is empty")
    crop = int(config.crop_size) if config.crop_size is not None else dataset.crop_size
    if crop is not None and crop > dataset.size:
        raise InputError(f"crop_size {crop} is larger than the slices ({dataset.size})")
    f = 2 ** (len(autoencoder_config.block_out_channels) - 1)
    if (crop or dataset.size) % f or dataset.size % f:
        raise InputError(f"image size {crop or dataset.size} must be divisible by the autoencoder's downsampling {f}")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(config.seed, "init"))
        ae = build_autoencoder(autoencoder_config)
    ae = ae.to(device)
    optimizer = torch.optim.AdamW(ae.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    data_sha = dataset.fingerprint()
    start = 0
    if ckpt_path.exists():
        if not resume and not overwrite:
            raise InputError(f"{ckpt_path} exists; resume it, or pass overwrite=True (--overwrite) to start again")
        if resume:
            ckpt = load_checkpoint(ckpt_path)
            if ckpt.get("stage") != "autoencoder" or ckpt.get("format") != AUTOENCODER_CHECKPOINT_FORMAT:
                raise InputError(f"{ckpt_path} is not an autoencoder-stage checkpoint")
            if ckpt["autoencoder_config"] != autoencoder_config.to_dict():
                raise InputError(f"checkpoint autoencoder config {ckpt['autoencoder_config']} differs from {autoencoder_config.to_dict()}")
            old = {k: v for k, v in ckpt["train_config"].items() if k not in _RESUMABLE_CHANGES}
            new = {k: v for k, v in config.to_dict().items() if k not in _RESUMABLE_CHANGES}
            if old != new:
                diff = sorted(k for k in new if old.get(k) != new[k])
                raise InputError(f"checkpoint was trained with another config (differs in {diff}); use --no-resume --overwrite")
            if ckpt.get("dataset_sha256") != data_sha or ckpt.get("dataset_slices") != len(dataset):
                raise InputError("checkpoint was trained on other slices; use --no-resume --overwrite")
            ae.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            start = int(ckpt["step"])
            log(f"resuming from {ckpt_path} at step {start}")

    def checkpoint(step: int) -> None:
        _atomic_save(
            {
                "format": AUTOENCODER_CHECKPOINT_FORMAT,
                "stage": "autoencoder",
                "step": step,
                "model": ae.state_dict(),
                "optimizer": optimizer.state_dict(),
                "train_config": config.to_dict(),
                "autoencoder_config": autoencoder_config.to_dict(),
                "rng": {"scheme": RNG_SCHEME.replace("stream", "ae-step"), "seed": config.seed, "next_step": step},
                "dataset_slices": len(dataset),
                "dataset_sha256": data_sha,
            },
            ckpt_path,
        )

    order = _DataOrder(len(dataset), config.seed)
    losses: list[float] = []
    l1s: list[float] = []
    window: list[float] = []
    t0 = time.perf_counter()
    end = max(config.steps, start)
    ae.train()
    for step in range(start, config.steps):
        idx = order.indices(step * config.batch_size, config.batch_size)
        g = _generator(config.seed, "ae-step", step)
        x = dataset.batch(idx, g, crop_size=crop)
        size = x.shape[-1] // f
        noise = torch.randn((x.shape[0], autoencoder_config.latent_channels, x.shape[-2] // f, size), generator=g)
        loss, l1 = autoencoder_loss(ae, x.to(device), noise.to(device), config.kl_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(ae.parameters(), config.grad_clip)
        optimizer.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"autoencoder loss is {value} at step {step + 1}")
        losses.append(value)
        l1s.append(float(l1.detach()))
        window.append(value)
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            log(f"autoencoder step {done}/{config.steps}  loss {sum(window) / len(window):.4f}")
            window = []
        if done < config.steps and budget.spent():
            end = done
            log(f"time limit of {budget.seconds:g} s reached at autoencoder step {done}/{config.steps}: saving")
            break
        if done % config.checkpoint_every == 0 and done < config.steps:
            checkpoint(done)
    seconds = time.perf_counter() - t0
    steps_run = end - start
    if steps_run or not ckpt_path.exists():
        checkpoint(end)

    ae.eval()
    scaling = latent_scaling_factor(ae, dataset.images)
    record = {
        "stage": "autoencoder",
        "format": AUTOENCODER_CHECKPOINT_FORMAT,
        "train_config": config.to_dict(),
        "autoencoder_config": autoencoder_config.to_dict(),
        "parameters": parameter_count(ae),
        "steps": end,
        "steps_this_run": steps_run,
        "resumed_from_step": start,
        "stopped_by_time_limit": end < config.steps,
        "time_limit_s": budget.seconds,
        "seconds_this_run": round(seconds, 3),
        "device": _device_name(device),
        "torch": torch.__version__,
        "final_loss": (sum(losses[-config.log_every :]) / len(losses[-config.log_every :])) if losses else None,
        "scaling_factor": scaling,
        "scaling_rule": "1 / std of the posterior means of every unaugmented training slice",
        "downsampling": f,
        "latent_channels": autoencoder_config.latent_channels,
        "data": dict(dataset.describe(), crop_size=crop, sha256=data_sha),
        "training_sources": [s.get("id") for s in dataset.describe().get("sources", [])],
        "split": "train",
        "rng": RNG_SCHEME,
    }
    with atomic_output(out_dir / AUTOENCODER_DIR, overwrite=True, folder=True) as tmp:
        saved = copy.deepcopy(ae).to("cpu")
        saved.register_to_config(scaling_factor=scaling)
        saved.save_pretrained(tmp, safe_serialization=True)
    with atomic_output(out_dir / RECORD_NAME, overwrite=True) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return dict(record, losses=losses, l1=l1s)


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
    train it with :func:`train` on the scaled latents (no augmentation), then replace
    ``out_dir/prior`` with the latent prior folder (``autoencoder/`` + ``unet/`` + card).
    ``unet_config`` None: ``UNetConfig`` of the latent size and channels."""
    from medrecon.priors.hub import PriorCard, load_autoencoder, save_latent_prior  # noqa: PLC0415
    from medrecon.priors.latent import LatentPrior, LatentSlices  # noqa: PLC0415

    autoencoder_dir = Path(autoencoder_dir)
    if (autoencoder_dir / AUTOENCODER_DIR).is_dir():
        stage_record = autoencoder_dir / RECORD_NAME
        autoencoder_dir = autoencoder_dir / AUTOENCODER_DIR
    else:
        stage_record = autoencoder_dir.parent / RECORD_NAME
    if not (autoencoder_dir / "config.json").is_file():
        raise InputError(f"{autoencoder_dir} is not an autoencoder folder (no config.json)")
    ae = load_autoencoder(autoencoder_dir)
    scaling = ae.config.scaling_factor
    ae_record = json.loads(stage_record.read_text()) if stage_record.is_file() else {}
    if ae_record.get("stage") != "autoencoder":
        ae_record = {"provenance": f"autoencoder folder {autoencoder_dir.name!r} without an autoencoder-stage record"}
    latent = LatentPrior(ae, scaling)
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
    record = train(config, unet_config, latents, out_dir, resume=resume, overwrite=overwrite, device=device, log=log, export=False,
                   time_limit=time_limit)
    if _distributed()[0] != 0:
        return record
    unet = build_unet(unet_config)
    unet.load_state_dict(record["ema_state"])
    described = dataset.describe()
    card = PriorCard(
        name=name or Path(out_dir).resolve().name,
        modality=str(described["modality"]).upper(),
        image_size=dataset.size,
        channels=int(ae.config.in_channels),
        parameterisation="edm",
        normalisation=described["normalisation"],
        sigma_data=config.sigma_data,
        training={
            "summary": f"autoencoder {ae_record.get('steps')} steps, latent denoiser {record['steps']} steps "
            f"on {record['device']}, sources {record['training_sources']} (training split)",
            "autoencoder": {k: v for k, v in ae_record.items() if k != "data"},
            "denoiser": card_record(record),
            "data": described,
            "latent_augmentation": "none (every slice encoded once, unaugmented)",
        },
    )
    save_latent_prior(Path(out_dir) / PRIOR_DIR, ae, unet, card, scaling, overwrite=True, half=half)
    return record


__all__ = [
    "TrainConfig",
    "train",
    "edm_loss",
    "load_checkpoint",
    "CHECKPOINT_NAME",
    "EMA_NAME",
    "RECORD_NAME",
    "AutoencoderTrainConfig",
    "autoencoder_loss",
    "train_autoencoder",
    "train_latent",
]
