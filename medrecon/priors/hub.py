"""Priors on disk: the diffusers folder layout plus a medrecon card, loaded locally with checksums.

A prior folder holds ``config.json`` and ``diffusion_pytorch_model.safetensors`` (a
``UNet2DModel`` as diffusers' ``save_pretrained`` writes it, or medrecon's NCSN++ in the same
layout, :mod:`medrecon.priors.ncsnpp`: the card's ``architecture`` says which) and
``medrecon_prior.json``, the card: modality, image size, channels, parameterisation, schedule,
normalisation from study units to network units, training provenance, and the sha256 of every
weight file. ``load_prior`` loads shipped priors by name (``medrecon/weights/<name>``) or any local
folder, never the network:

- the checksums of the card are verified before anything is loaded;
- weights are read from safetensors; a pickled ``.bin``/``.pt`` file is read only with
  ``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers;
- a folder written by diffusers itself — a ``DDPMPipeline``-style folder (``unet/`` +
  ``scheduler/``) or a ``UNet2DModel`` folder with a ``scheduler_config.json`` beside it — loads as a
  VP epsilon prior with the scheduler's ``alphas_cumprod``, so diffusers-format priors published by
  others can be used directly (their card-less provenance is reported as unknown).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from medrecon.errors import InputError, MissingResourceError
from medrecon.io.atomic import atomic_output

from .denoiser import (
    Denoiser,
    DiscreteVPSchedule,
    EDMDenoiser,
    VEScoreDenoiser,
    VPEpsilonDenoiser,
    VPVPredictionDenoiser,
)
from .latent import LatentPrior
from .ncsnpp import CLASS_NAME as NCSNPP
from .ncsnpp import NCSNpp

CARD_FILE = "medrecon_prior.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
PICKLED_WEIGHTS = ("diffusion_pytorch_model.bin", "pytorch_model.bin", "model.pt")
PARAMETERISATIONS = ("edm", "vp_epsilon", "vp_v", "ve_score")
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
LATENT_KEYS = ("scaling_factor", "latent_channels", "downsampling")
AUTOENCODER_DIR = "autoencoder"
UNET_DIR = "unet"
SHIPPED = ("ct-starter", "mr-starter", "ct-starter-latent", "mr-starter-latent")
ARCHITECTURES = ("UNet2DModel", NCSNPP)


@dataclass(frozen=True)
class PriorCard:
    """What a prior is and how it was made (``medrecon_prior.json``)."""

    name: str
    modality: str
    image_size: int
    channels: int
    parameterisation: str
    normalisation: dict
    sigma_data: float = 0.5
    schedule: dict | None = None
    training: dict = field(default_factory=dict)
    sha256: dict = field(default_factory=dict)
    format_version: int = 1
    latent: dict | None = None  # latent priors: {"scaling_factor", "latent_channels", "downsampling"}
    architecture: str = "UNet2DModel"  # the network class of config.json: diffusers' UNet2DModel or medrecon's NCSNpp

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise InputError(f"prior card: architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.architecture != "UNet2DModel" and self.latent is not None:
            raise InputError("prior card: a latent prior's UNet is a UNet2DModel")
        if self.modality not in ("CT", "MR"):
            raise InputError(f"prior card: modality must be CT or MR, got {self.modality!r}")
        if self.parameterisation not in PARAMETERISATIONS:
            raise InputError(f"prior card: parameterisation must be one of {PARAMETERISATIONS}, got {self.parameterisation!r}")
        if self.parameterisation in ("vp_epsilon", "vp_v") and not (self.schedule or {}).get("alphas_cumprod"):
            raise InputError("prior card: a VP prior needs schedule.alphas_cumprod")
        if self.latent is not None:
            missing = [k for k in LATENT_KEYS if k not in self.latent]
            if missing:
                raise InputError(f"prior card: the latent entry lacks {missing}")
            if not float(self.latent["scaling_factor"]) > 0:
                raise InputError(f"prior card: latent scaling_factor must be positive, got {self.latent['scaling_factor']}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PriorCard:
        try:
            return cls(**d)
        except TypeError as exc:
            raise InputError(f"bad prior card: {exc}") from None


@dataclass
class Prior:
    """A loaded prior: the denoiser the samplers use, the network behind it, and its card."""

    denoiser: Denoiser
    network: torch.nn.Module
    card: PriorCard
    path: Path
    latent: LatentPrior | None = None  # latent priors: encode/decode (``denoiser`` acts on latents)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_prior(folder: str | Path, unet: torch.nn.Module, card: PriorCard, *, overwrite: bool = False, half: bool = True) -> Path:
    """Write ``unet`` (diffusers ``save_pretrained``, float16 weights by default) and its card, with
    the weights' sha256, into a new folder (atomically)."""
    folder = Path(folder)
    with atomic_output(folder, overwrite=overwrite, folder=True) as tmp:
        net = copy.deepcopy(unet).to("cpu")
        if half:
            net = net.half()
        net.save_pretrained(tmp, safe_serialization=True)
        hashes = {p.name: sha256_of(p) for p in sorted(tmp.glob("*.safetensors"))}
        full = PriorCard.from_dict({**card.to_dict(), "sha256": hashes})
        (tmp / CARD_FILE).write_text(json.dumps(full.to_dict(), indent=2))
    return folder


def _resolve(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if str(name_or_path) in SHIPPED:
        shipped = WEIGHTS_DIR / str(name_or_path)
        if shipped.is_dir():
            return shipped
        raise MissingResourceError(
            f"the prior {name_or_path!r} is not shipped with this version of medrecon yet; train one with "
            "`medrecon train` and pass its folder"
        )
    known = ", ".join(SHIPPED)
    raise MissingResourceError(f"no prior folder {name_or_path!r} and no shipped prior of that name (known: {known})")


def _load_state_dict(folder: Path) -> dict:
    weights = folder / WEIGHTS_FILE
    if weights.is_file():
        return load_file(str(weights))
    for name in PICKLED_WEIGHTS:
        candidate = folder / name
        if candidate.is_file():
            try:
                return torch.load(candidate, map_location="cpu", weights_only=True)
            except Exception as exc:  # the unpickler refuses code objects and arbitrary classes
                raise InputError(
                    f"{candidate} is a pickle that does not load with weights_only=True (refused: it may run "
                    f"code): {str(exc).splitlines()[0]}"
                ) from None
    raise InputError(f"{folder} has no weights ({WEIGHTS_FILE}, or a pickled {', '.join(PICKLED_WEIGHTS)})")


def _build_network(folder: Path, device, dtype, cls_name: str = "UNet2DModel") -> torch.nn.Module:
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise InputError(f"{folder} has no {CONFIG_FILE} (the network's diffusers config)")
    try:
        config = json.loads(config_path.read_text())
        if cls_name == NCSNPP:
            net = NCSNpp.from_config(config)
        else:
            import diffusers

            net = getattr(diffusers, cls_name).from_config(config)
    except Exception as exc:
        raise InputError(f"{config_path} is not a usable {cls_name} config: {exc}") from None
    state = _load_state_dict(folder)
    missing, unexpected = net.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise InputError(
            f"the weights in {folder} do not fit its config: {len(missing)} missing and {len(unexpected)} "
            f"unexpected tensors (e.g. {(missing + unexpected)[:3]})"
        )
    net = net.to(device=device)
    if dtype is not None and dtype != torch.float32:  # diffusers warns on any dtype cast, even a no-op one
        net = net.to(dtype=dtype)
    return net.eval()


def _diffusers_card(folder: Path, scheduler_config: Path, net: torch.nn.Module) -> PriorCard:
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(json.loads(scheduler_config.read_text()))
    if scheduler.config.prediction_type not in ("epsilon", "v_prediction"):
        raise InputError(f"{scheduler_config}: prediction_type {scheduler.config.prediction_type!r} is not supported")
    return PriorCard(
        name=folder.name,
        modality="CT" if "ct" in folder.name.lower() else "MR",
        image_size=int(net.config.sample_size),
        channels=int(net.config.in_channels),
        parameterisation="vp_epsilon" if scheduler.config.prediction_type == "epsilon" else "vp_v",
        normalisation={"kind": "unknown", "note": "diffusers folder without a medrecon card"},
        schedule={"alphas_cumprod": scheduler.alphas_cumprod.tolist()},
        training={"provenance": "unknown (no medrecon card)"},
    )


def make_denoiser(net: torch.nn.Module, card: PriorCard) -> Denoiser:
    """The :class:`Denoiser` of a network with the card's parameterisation."""
    if card.parameterisation == "edm":
        return EDMDenoiser(net, sigma_data=card.sigma_data)
    if card.parameterisation == "ve_score":
        schedule = card.schedule or {}
        trained = (schedule["sigma_min"], schedule["sigma_max"]) if {"sigma_min", "sigma_max"} <= set(schedule) else None
        return VEScoreDenoiser(net, sigma_range=trained)
    schedule = DiscreteVPSchedule(card.schedule["alphas_cumprod"])
    learned = int(getattr(net.config, "out_channels", card.channels)) == 2 * card.channels
    cls = VPEpsilonDenoiser if card.parameterisation == "vp_epsilon" else VPVPredictionDenoiser
    return cls(net, schedule, learned_variance=learned)


def load_prior(name_or_path: str | Path, *, device="cpu", dtype=torch.float32) -> Prior:
    """Load a shipped prior by name or a local prior folder (see the module docstring)."""
    folder = _resolve(name_or_path)
    if (folder / "unet").is_dir() and (folder / "scheduler").is_dir():  # a diffusers pipeline folder
        net = _build_network(folder / "unet", device, dtype)
        card = _diffusers_card(folder, folder / "scheduler" / "scheduler_config.json", net)
        return Prior(make_denoiser(net, card), net, card, folder)
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        if (folder / "scheduler_config.json").is_file():
            net = _build_network(folder, device, dtype)
            card = _diffusers_card(folder, folder / "scheduler_config.json", net)
            return Prior(make_denoiser(net, card), net, card, folder)
        raise InputError(f"{folder} has no {CARD_FILE} and no diffusers scheduler config: not a prior folder")
    try:
        card = PriorCard.from_dict(json.loads(card_path.read_text()))
    except json.JSONDecodeError as exc:
        raise InputError(f"{card_path} is not valid JSON: {exc}") from None
    for name, expected in card.sha256.items():
        path = folder / name
        if not path.is_file():
            raise InputError(f"{folder}: the card lists {name}, which is missing")
        actual = sha256_of(path)
        if actual != expected:
            raise InputError(f"{path}: sha256 {actual[:12]}... does not match the card's {expected[:12]}... (damaged or replaced)")
    if not card.sha256:
        raise InputError(f"{card_path} lists no weight checksums; refusing unverified weights")
    if card.latent is not None:
        return _load_latent(folder, card, device, dtype)
    net = _build_network(folder, device, dtype, card.architecture)
    return Prior(make_denoiser(net, card), net, card, folder)


# ------------------------------------------------------------------------------------ latent priors
def load_autoencoder(folder: str | Path, *, device="cpu", dtype=torch.float32) -> torch.nn.Module:
    """An ``AutoencoderKL`` from a diffusers folder (``config.json`` + safetensors; local only)."""
    return _build_network(Path(folder), device, dtype, "AutoencoderKL")


def _load_latent(folder: Path, card: PriorCard, device, dtype) -> Prior:
    for sub in (AUTOENCODER_DIR, UNET_DIR):
        if not any(name.startswith(sub + "/") for name in card.sha256):
            raise InputError(f"{folder / CARD_FILE}: a latent prior card must list the checksums of {sub}/ weights")
    unet = _build_network(folder / UNET_DIR, device, dtype)
    autoencoder = load_autoencoder(folder / AUTOENCODER_DIR, device=device, dtype=dtype)
    latent = LatentPrior(autoencoder, card.latent["scaling_factor"], make_denoiser(unet, card))
    if latent.latent_channels != int(card.latent["latent_channels"]) or latent.downsampling != int(card.latent["downsampling"]):
        raise InputError(
            f"{folder}: the autoencoder has {latent.latent_channels} latent channels and downsampling "
            f"{latent.downsampling}, the card says {card.latent['latent_channels']} and {card.latent['downsampling']}"
        )
    if int(unet.config.in_channels) != latent.latent_channels:
        raise InputError(f"{folder}: the UNet takes {unet.config.in_channels} channels, the latents have {latent.latent_channels}")
    return Prior(latent.denoiser, unet, card, folder, latent=latent)


def save_latent_prior(
    folder: str | Path,
    autoencoder: torch.nn.Module,
    unet: torch.nn.Module,
    card: PriorCard,
    scaling_factor: float,
    *,
    overwrite: bool = False,
    half: bool = True,
) -> Path:
    """Write a latent prior folder atomically: ``autoencoder/`` and ``unet/`` (diffusers
    ``save_pretrained``, float16 by default), and the card with ``parameterisation: "edm"``, the
    ``latent`` entry and the sha256 of every weight file (paths relative to the folder)."""
    if card.parameterisation != "edm":
        raise InputError(f"a latent prior is saved with the edm parameterisation, the card says {card.parameterisation!r}")
    folder = Path(folder)
    scaling_factor = float(scaling_factor)
    with atomic_output(folder, overwrite=overwrite, folder=True) as tmp:
        ae = copy.deepcopy(autoencoder).to("cpu")
        ae.register_to_config(scaling_factor=scaling_factor)  # what diffusers users read
        net = copy.deepcopy(unet).to("cpu")
        if half:
            ae, net = ae.half(), net.half()
        ae.save_pretrained(tmp / AUTOENCODER_DIR, safe_serialization=True)
        net.save_pretrained(tmp / UNET_DIR, safe_serialization=True)
        hashes = {p.relative_to(tmp).as_posix(): sha256_of(p) for p in sorted(tmp.rglob("*.safetensors"))}
        latent = {
            "scaling_factor": scaling_factor,
            "latent_channels": int(ae.config.latent_channels),
            "downsampling": 2 ** (len(ae.config.block_out_channels) - 1),
        }
        full = PriorCard.from_dict({**card.to_dict(), "sha256": hashes, "latent": latent})
        (tmp / CARD_FILE).write_text(json.dumps(full.to_dict(), indent=2))
    return folder


def list_priors(search: list[str | Path] = ()) -> list[dict]:
    """The shipped priors (present or not) and every prior folder directly inside ``search``
    folders, each as ``{name, path, status, modality, size, parameterisation, training}``."""
    rows = []
    for name in SHIPPED:
        folder = WEIGHTS_DIR / name
        shipped = (folder / CARD_FILE).is_file()
        rows.append(_describe(name, folder) if shipped else {"name": name, "path": str(folder), "status": "not shipped yet"})
    for base in map(Path, search):
        if not base.is_dir():
            raise InputError(f"{base} is not a folder")
        for folder in sorted([base, *base.iterdir()]):
            if folder.is_dir() and (folder / CARD_FILE).is_file():
                rows.append(_describe(folder.name, folder))
    return rows


def _describe(name: str, folder: Path) -> dict:
    try:
        card = PriorCard.from_dict(json.loads((folder / CARD_FILE).read_text()))
    except (InputError, json.JSONDecodeError) as exc:
        return {"name": name, "path": str(folder), "status": f"unreadable card: {exc}"}
    return {
        "name": card.name, "path": str(folder), "status": "available", "modality": card.modality,
        "size": card.image_size, "parameterisation": card.parameterisation + (" (latent)" if card.latent else ""),
        "training": card.training.get("summary", ""),
    }
