"""The training loop every stage runs: data order, seeded draws, optimizer, EMA, DDP, checkpoints,
resume, time limit, logging and the end-of-run record.

A :class:`Stage` supplies what differs between the kinds of training (the pixel EDM prior, the
autoencoder of a latent prior, the latent denoiser): how to build its model, the loss of one batch
given the step's generator, what its checkpoint and record carry beyond the common fields, and
what it exports at the end. :func:`run` does the rest, the same way for every stage:

- Randomness: every random draw of step ``t`` comes from one CPU ``torch.Generator`` seeded from
  ``sha256(seed:stream:t:rank)`` (``sha256(seed:stream:t)`` for a one-process stage; ``stream`` is
  the stage's, e.g. ``step`` or ``ae-step``), and the data order of epoch ``e`` is a permutation
  drawn from ``sha256(seed:order:e)``. The weights start from ``sha256(seed:init)`` (the global RNG
  is forked, so the caller's state is untouched). The random state at step ``t`` is a function of
  ``t``: a checkpoint (model, EMA, optimizer, step) resumes exactly, and the draws do not depend on
  the device (they are made on the CPU).
- Several processes (``torchrun``; ``RANK``/``WORLD_SIZE`` set), for the stages that support it:
  ``DistributedDataParallel``, each rank takes a disjoint ``batch_size`` share of the step's
  ``batch_size * world_size`` indices of the global data order, and only rank 0 writes files.
- Step: the stage's loss (bf16 autocast where the stage asks for it, on CUDA and on a CPU with
  native bf16 — AMX / AVX512-BF16, :func:`medrecon.hardware.cpu_has_native_bf16`; elsewhere
  fp32, since bf16 is emulated there; the record's ``bf16_autocast`` says which), AdamW with optional
  gradient-norm clipping, then the optional EMA ``ema <- ema + (1 - decay) (model - ema)`` with
  ``decay = min(ema_decay, (1 + t) / (10 + t))`` under warm-up.
- Files in ``out_dir`` (rank 0): ``checkpoint.pt`` every ``checkpoint_every`` steps and at the end
  (atomic; ``torch.load(..., weights_only=True)``), the stage's exports, then ``train_record.json``
  (written last: a record says that the exports beside it are complete).
- Resume: from ``out_dir/checkpoint.pt`` when there is one. Its format, the stage's identity
  fields (network config, stage name), the training config apart from ``steps`` /
  ``checkpoint_every`` / ``log_every``, the dataset's sha256 and slice count and the world size
  must be the run's; otherwise :class:`~medrecon.errors.InputError`.
- Time limit (seconds from the start of :func:`run`, rank 0's clock decides): the loop stops after
  the step during which it ran out and writes everything as at the end of a run, the record saying
  ``stopped_by_time_limit``; the same call again resumes.

A stage's config is a frozen dataclass with at least ``steps``, ``batch_size``, ``lr``, ``betas``,
``weight_decay``, ``grad_clip``, ``seed``, ``crop_size``, ``checkpoint_every``, ``log_every`` and
``to_dict()`` (:class:`JSONConfig`).
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from medrecon.errors import InputError
from medrecon.hardware import cpu_has_native_bf16
from medrecon.io.atomic import atomic_output
from medrecon.priors.networks import parameter_count

CHECKPOINT_NAME = "checkpoint.pt"
RECORD_NAME = "train_record.json"
CHECKPOINT_FORMAT = 1
RNG_SCHEME = "sha256(seed:stream:step:rank) per step; order: sha256(seed:order:epoch) permutation"
# Fields that may differ between a run and the run that resumes it.
_RESUMABLE_CHANGES = ("steps", "checkpoint_every", "log_every")


class JSONConfig:
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


# ------------------------------------------------------------------------------------ randomness
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


# ------------------------------------------------------------------------------ machine and time
def _distributed() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


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
            flag = torch.tensor([1.0 if over else 0.0], device=self.device)
            dist.broadcast(flag, src=0)
            over = bool(flag.item())
        return over


def _bf16_native(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively on ``device`` (CUDA, or a CPU with AMX / AVX512-BF16)."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _default_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _atomic_save(obj, path: Path) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(obj, tmp)


def _write_json(path: Path, value: dict) -> None:
    """``value`` as indented JSON at ``path``, atomically."""
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(value, indent=2) + "\n")


def load_checkpoint(path) -> dict:
    """A checkpoint written by the training loop, of any stage (``weights_only=True``)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------------- contracts
@dataclass(frozen=True)
class EMA:
    """An exponential moving average of the weights: ``decay`` per step, warmed up as
    ``min(decay, (1 + t) / (10 + t))`` at step ``t`` when ``warmup`` (short runs are not stuck at init)."""

    decay: float
    warmup: bool = True

    def at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay


@dataclass(frozen=True)
class RunOptions:
    """Where and how :func:`run` runs (what the public ``train*`` functions take as keywords)."""

    out_dir: Path
    resume: bool = True
    overwrite: bool = False
    device: object = None  # None: this rank's CUDA device if there is one, else the CPU
    log: Callable[[str], None] | None = _default_log
    time_limit: float | None = None


@dataclass
class Trained:
    """What the loop hands to a stage's end-of-run hooks: the model, its EMA (None without one),
    the data as the loop used it (moved to the training device) and the output folder."""

    model: torch.nn.Module
    ema: torch.nn.Module | None
    dataset: object
    out_dir: Path


class Stage:
    """What one kind of training supplies to :func:`run`. Subclasses set ``config`` (see the module
    docstring) and override the methods below; the class attributes say how the loop treats them."""

    name = "custom"  # in messages: "the autoencoder stage runs in one process"
    log_prefix = ""  # log lines read "<prefix>step 10/100  loss ..."
    stream = "step"  # the per-step seed is sha256(seed:stream:step[:rank])
    distributed = False  # True: DDP under torchrun (the seed then names the rank); False: one process only
    autocast = False  # bf16 autocast of the loss where it is native (CUDA, AMX / AVX512-BF16 CPUs)
    checkpoint_format = CHECKPOINT_FORMAT
    rng_scheme = RNG_SCHEME  # what the checkpoint's ``rng`` entry says
    ema: EMA | None = None
    metric_names: tuple[str, ...] = ()  # the metrics its loss returns besides the loss
    config: JSONConfig

    def check_data(self, dataset, crop: int | None) -> None:
        """Refuse data the model cannot take (``InputError``)."""

    def build(self) -> torch.nn.Module:
        """The float32 model on the CPU, before any resume (called with the global RNG seeded from
        ``sha256(seed:init)`` and restored afterwards)."""
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """``(loss, metrics)`` of one batch ``x`` (on the device; ``(B, C, H, W)``), every random draw
        made from ``generator`` (CPU) after the batch's own; ``metrics``: a scalar tensor for each of
        ``metric_names``, returned per step by :func:`run`. ``model`` is the DDP wrapper under torchrun."""
        raise NotImplementedError

    def identity(self) -> dict:
        """Checkpoint and record fields a resumed checkpoint must hold unchanged (network config,
        stage name)."""
        return {}

    def record_fields(self, trained: Trained) -> dict:
        """The record's fields beyond the loop's common ones (every rank)."""
        return {}

    def export(self, trained: Trained, record: dict) -> None:
        """Write the stage's products into ``trained.out_dir`` (rank 0, before the record)."""

    def result_fields(self, trained: Trained) -> dict:
        """What the public function returns beyond the record and the per-step losses (every rank)."""
        return {}


# ------------------------------------------------------------------------------------------ loop
def run(stage: Stage, dataset, options: RunOptions) -> dict:
    """Train (or resume) ``stage`` on ``dataset`` (anything with ``len``, ``size``, ``crop_size``,
    ``batch(indices, generator, crop_size=...)``, ``describe()``, ``fingerprint()``; see
    :class:`~medrecon.priors.training.data.TrainingSlices`). Returns the record written to
    ``train_record.json`` plus ``"losses"`` (and each metric of the stage's loss) of every step run now."""
    config = stage.config
    if len(dataset) < 1:
        raise InputError("the training dataset is empty")
    crop = int(config.crop_size) if config.crop_size is not None else dataset.crop_size
    if crop is not None and crop > dataset.size:
        raise InputError(f"crop_size {crop} is larger than the slices ({dataset.size})")
    stage.check_data(dataset, crop)

    budget = TimeBudget(options.time_limit)
    rank, world, local_rank = _distributed()
    if world > 1 and not stage.distributed:
        raise InputError(f"the {stage.name} stage runs in one process (no torchrun)")
    own_group = False
    if world > 1:
        if not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and options.device is None else "gloo"
            dist.init_process_group(backend=backend)
            own_group = True
        rank, world = dist.get_rank(), dist.get_world_size()
    device = options.device
    if device is None:
        device = torch.device(f"cuda:{local_rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    budget.world, budget.device = world, device
    try:
        return _Run(stage, dataset, crop, options, _Place(rank, world, device), budget).train()
    finally:
        if own_group:
            dist.destroy_process_group()


@dataclass(frozen=True)
class _Place:
    """This process's rank, the number of processes and the training device."""

    rank: int
    world: int
    device: torch.device


class _Run:
    """One call of :func:`run`: the model, optimizer and counters, and the steps between them."""

    def __init__(self, stage: Stage, dataset, crop: int | None, options: RunOptions, place: _Place, budget: TimeBudget):
        self.stage, self.config, self.crop, self.place, self.budget = stage, stage.config, crop, place, budget
        self.log = options.log or (lambda line: None)
        self.out_dir = Path(options.out_dir)
        self.ckpt_path = self.out_dir / CHECKPOINT_NAME
        device = place.device
        # diffusers initialises from the global RNG: fork it, so the caller's state is left untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(self.config.seed, "init"))
            model = stage.build()
        self.model = model.to(device)
        self.ema = None
        if stage.ema is not None:
            self.ema = copy.deepcopy(self.model)
            self.ema.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.config.lr, betas=self.config.betas,
                                           weight_decay=self.config.weight_decay)
        self.data_sha = dataset.fingerprint()
        self.n = len(dataset)
        if device.type != "cpu" and hasattr(dataset, "to"):
            dataset = copy.copy(dataset).to(device)  # augment on the device; the caller's dataset stays put
        self.dataset = dataset
        self.start, self.seconds_before = 0, 0.0
        self._resume(options)

    # --------------------------------------------------------------------------------- resuming
    def _resume(self, options: RunOptions) -> None:
        if not self.ckpt_path.exists():
            return
        if not options.resume and not options.overwrite:
            raise InputError(f"{self.ckpt_path} exists; resume it, or pass overwrite=True (--overwrite) to start again")
        if not options.resume:
            return
        ckpt = load_checkpoint(self.ckpt_path)
        self._check_resumable(ckpt)
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.start = int(ckpt["step"])
        self.seconds_before = ckpt.get("seconds_total")  # None: a checkpoint from before this was recorded
        self.log(f"resuming from {self.ckpt_path} at step {self.start}")

    def _check_resumable(self, ckpt: dict) -> None:
        if ckpt.get("format") != self.stage.checkpoint_format:
            raise InputError(f"checkpoint format {ckpt.get('format')} is not {self.stage.checkpoint_format}")
        for key, value in self.stage.identity().items():
            if ckpt.get(key) != value:
                raise InputError(f"checkpoint {key} {ckpt.get(key)} differs from {value}; use --no-resume --overwrite")
        old = {k: v for k, v in ckpt["train_config"].items() if k not in _RESUMABLE_CHANGES}
        new = {k: v for k, v in self.config.to_dict().items() if k not in _RESUMABLE_CHANGES}
        if old != new:
            diff = sorted(k for k in new if old.get(k) != new[k])
            raise InputError(f"checkpoint was trained with another config (differs in {diff}); use --no-resume --overwrite")
        if ckpt.get("dataset_sha256") != self.data_sha:
            raise InputError("checkpoint was trained on other slices (dataset sha256 differs); use --no-resume --overwrite")
        saved_world = ckpt.get("world_size", 1)  # one-process stages did not record it
        if ckpt.get("dataset_slices") != self.n or saved_world != self.place.world:
            raise InputError(
                f"checkpoint was trained on {ckpt.get('dataset_slices')} slices with {saved_world} processes, "
                f"now {self.n} slices and {self.place.world}: its data order would not continue"
            )

    def _checkpoint(self, step: int) -> None:
        if self.place.rank != 0:
            return
        cfg = self.config
        state = {"format": self.stage.checkpoint_format, "step": step, "model": self.model.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        state.update(
            optimizer=self.optimizer.state_dict(),
            train_config=cfg.to_dict(),
            **self.stage.identity(),
            rng={"scheme": self.stage.rng_scheme, "seed": cfg.seed, "next_step": step},
            dataset_slices=self.n,
            dataset_sha256=self.data_sha,
            world_size=self.place.world,
            seconds_total=None if self.seconds_before is None else self.seconds_before + time.perf_counter() - self.t0,
        )
        _atomic_save(state, self.ckpt_path)

    # ------------------------------------------------------------------------------------ steps
    def _step(self, step: int, net: torch.nn.Module, order: _DataOrder) -> tuple[float, dict]:
        cfg, stage, place = self.config, self.stage, self.place
        idx = order.indices(step * cfg.batch_size * place.world + place.rank * cfg.batch_size, cfg.batch_size)
        g = _generator(cfg.seed, stage.stream, step, place.rank) if stage.distributed else _generator(cfg.seed, stage.stream, step)
        x = self.dataset.batch(idx, g, crop_size=self.crop).to(place.device)
        autocast = stage.autocast and _bf16_native(place.device)
        with torch.autocast(device_type=place.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss, metrics = stage.loss(net, x, g)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model_params, cfg.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self.ema_params, [p.detach() for p in self.model_params], 1.0 - stage.ema.at(step))
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"{stage.log_prefix}loss is {value} at step {step + 1}")
        return value, {k: float(v.detach()) for k, v in metrics.items()}

    def train(self) -> dict:
        cfg, stage, place = self.config, self.stage, self.place
        net = self.model
        if place.world > 1:
            net = DistributedDataParallel(self.model, device_ids=[place.device.index] if place.device.type == "cuda" else None)
        order = _DataOrder(self.n, cfg.seed)
        self.model_params = list(self.model.parameters())
        self.ema_params = [] if self.ema is None else list(self.ema.parameters())
        global_batch = cfg.batch_size * place.world
        losses: list[float] = []
        metrics: dict[str, list[float]] = {k: [] for k in stage.metric_names}
        self.t0 = time.perf_counter()
        window_t, window_n, window_loss = self.t0, 0, []
        self.model.train()
        end = max(cfg.steps, self.start)  # the step the run ends at (earlier when the time budget runs out)
        for step in range(self.start, cfg.steps):
            value, step_metrics = self._step(step, net, order)
            losses.append(value)
            for k, v in step_metrics.items():
                metrics[k].append(v)
            window_loss.append(value)
            window_n += global_batch
            done = step + 1
            if place.rank == 0 and (done % cfg.log_every == 0 or done == cfg.steps):
                now = time.perf_counter()
                ips = window_n / max(now - window_t, 1e-9)
                self.log(f"{stage.log_prefix}step {done}/{cfg.steps}  loss {sum(window_loss) / len(window_loss):.4f}  {ips:.1f} img/s")
                window_t, window_n, window_loss = now, 0, []
            if done < cfg.steps and self.budget.spent():
                end = done
                self.log(f"time limit of {self.budget.seconds:g} s reached at {stage.log_prefix}step {done}/{cfg.steps}: saving")
                break
            if done % cfg.checkpoint_every == 0 and done < cfg.steps:
                self._checkpoint(done)
        seconds = time.perf_counter() - self.t0
        if end > self.start or not self.ckpt_path.exists():
            self._checkpoint(end)
        trained = Trained(self.model, self.ema, self.dataset, self.out_dir)
        record = self._record(end, seconds, losses, global_batch)
        record.update(stage.record_fields(trained))
        if place.rank == 0:
            stage.export(trained, record)
            _write_json(self.out_dir / RECORD_NAME, record)
        return dict(record, losses=losses, **metrics, **stage.result_fields(trained))

    def _record(self, end: int, seconds: float, losses: list[float], global_batch: int) -> dict:
        """The end-of-run record fields every stage shares."""
        cfg, place = self.config, self.place
        steps_run = end - self.start
        described = self.dataset.describe()
        tail = losses[-cfg.log_every :]
        return {
            "format": self.stage.checkpoint_format,
            "train_config": cfg.to_dict(),
            **self.stage.identity(),
            "parameters": parameter_count(self.model),
            "steps": end,
            "steps_this_run": steps_run,
            "resumed_from_step": self.start,
            "stopped_by_time_limit": end < cfg.steps,
            "time_limit_s": self.budget.seconds,
            "seconds_this_run": round(seconds, 3),
            "seconds_total": None if self.seconds_before is None else round(self.seconds_before + seconds, 3),
            "images_per_s": round(steps_run * global_batch / seconds, 3) if steps_run and seconds > 0 else None,
            "world_size": place.world,
            "device": _device_name(place.device),
            "bf16_autocast": bool(self.stage.autocast and _bf16_native(place.device)),
            "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
            "torch": torch.__version__,
            "final_loss": (sum(tail) / len(tail)) if tail else None,
            "data": dict(described, crop_size=self.crop, sha256=self.data_sha),
            "training_sources": [s.get("id") for s in described.get("sources", [])],
            "split": "train",
            "rng": RNG_SCHEME,
        }


__all__ = [
    "CHECKPOINT_NAME",
    "RECORD_NAME",
    "CHECKPOINT_FORMAT",
    "RNG_SCHEME",
    "EMA",
    "JSONConfig",
    "RunOptions",
    "Stage",
    "TimeBudget",
    "Trained",
    "load_checkpoint",
    "run",
]
