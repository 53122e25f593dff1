"""A diffusers ``UNet2DModel`` folder (with its scheduler config) -> a medrecon prior folder.

Accepted layouts: a pipeline folder (``unet/`` and ``scheduler/``, as ``DDPMPipeline`` or
``ScoreSdeVePipeline`` save them) or a ``UNet2DModel`` folder with ``scheduler_config.json``
beside its ``config.json``. The weights are ``diffusion_pytorch_model.safetensors`` (or a pickled
``diffusion_pytorch_model.bin``, read with ``torch.load(weights_only=True)`` only); they are
checked tensor by tensor against the config and written unchanged (float16 stays float16).

The parameterisation comes from the scheduler: a discrete-beta scheduler (DDPM, DDIM, PNDM, ...:
its config has ``beta_schedule``) gives ``vp_epsilon`` or ``vp_v`` by ``prediction_type``, with the
``alphas_cumprod`` that ``DDPMScheduler`` computes from that config; ``ScoreSdeVeScheduler``
gives ``ve_score`` (the network must then embed sigma: ``time_embedding_type="fourier"``).
Anything else (sample prediction, EDM or other continuous schedulers, conditional UNets) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from medrecon.errors import InputError

from .tensors import Move, load_checkpoint, map_tensors, read_json_object, target_shapes

WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


@dataclass(frozen=True)
class DiffusersSource:
    """What a diffusers folder holds: the UNet config, its checked state dict, the weights file,
    the card's parameterisation and schedule."""

    config: dict
    state: dict
    weights_file: Path
    scheduler_class: str
    parameterisation: str
    schedule: dict


def _folders(src: Path) -> tuple[Path, Path]:
    """(the UNet folder, the scheduler config file)."""
    if not src.is_dir():
        raise InputError(f"{src} is not a folder (a diffusers UNet2DModel folder or pipeline folder)")
    if (src / "unet").is_dir():
        return src / "unet", src / "scheduler" / "scheduler_config.json"
    return src, src / "scheduler_config.json"


def _weights(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    for name in WEIGHTS:
        path = folder / name
        if path.is_file():
            if name.endswith(".safetensors"):
                try:
                    return load_file(str(path)), path
                except Exception as exc:  # a damaged file is bad input
                    raise InputError(f"{path} is not a readable safetensors file: {str(exc).splitlines()[0]}") from None
            state = load_checkpoint(path)
            if not isinstance(state, dict):
                raise InputError(f"{path} is not a state dict")
            return state, path
    raise InputError(f"{folder} has no weights ({' or '.join(WEIGHTS)})")


def _schedule(scheduler: dict, config: dict, path: Path) -> tuple[str, str, dict]:
    cls = scheduler.get("_class_name", "?")
    if cls == "ScoreSdeVeScheduler":
        if config.get("time_embedding_type") != "fourier":
            raise InputError(f"{path}: a VE score scheduler with a UNet that does not embed sigma "
                             f"(time_embedding_type {config.get('time_embedding_type')!r}, not 'fourier')")
        from diffusers import ScoreSdeVeScheduler

        ve = ScoreSdeVeScheduler.from_config(scheduler).config  # its defaults where the file is silent
        return cls, "ve_score", {"kind": "ve", "sigma_min": float(ve.sigma_min), "sigma_max": float(ve.sigma_max)}
    if "beta_schedule" not in scheduler and "trained_betas" not in scheduler:
        raise InputError(f"{path}: scheduler {cls} has no discrete beta schedule; only DDPM-style (beta_schedule) "
                         "and ScoreSdeVeScheduler configs are converted")
    from diffusers import DDPMScheduler

    prediction = scheduler.get("prediction_type", "epsilon")
    kinds = {"epsilon": "vp_epsilon", "v_prediction": "vp_v"}
    if prediction not in kinds:
        raise InputError(f"{path}: prediction_type {prediction!r} is not converted (epsilon or v_prediction)")
    try:
        ddpm = DDPMScheduler.from_config(scheduler)
    except Exception as exc:  # diffusers rejects bad schedule configs with various types
        raise InputError(f"{path}: not a usable beta schedule: {str(exc).splitlines()[0]}") from None
    return cls, kinds[prediction], {
        "kind": str(scheduler.get("beta_schedule", "trained_betas")),
        "scheduler": cls,
        "alphas_cumprod": ddpm.alphas_cumprod.double().tolist(),
    }


def read(src: str | Path) -> DiffusersSource:
    """Read and check a diffusers folder (see the module docstring)."""
    unet_dir, scheduler_path = _folders(Path(src))
    config = read_json_object(unet_dir / "config.json", f"{unet_dir} has no config.json (the UNet's diffusers config)")
    if config.get("_class_name") != "UNet2DModel":
        raise InputError(f"{unet_dir / 'config.json'}: a {config.get('_class_name')!r}, not a UNet2DModel (the only "
                         "network class medrecon's pixel priors use)")
    if config.get("num_class_embeds") or config.get("class_embed_type"):
        raise InputError(f"{unet_dir}: a class-conditional UNet2DModel; medrecon's denoisers take no class label")
    size = config.get("sample_size")
    if not isinstance(size, int):
        raise InputError(f"{unet_dir / 'config.json'}: sample_size {size!r} is not one integer (square images)")
    scheduler = read_json_object(
        scheduler_path, f"{scheduler_path.parent} has no {scheduler_path.name} (the scheduler config, which gives the noise schedule)")
    cls, parameterisation, schedule = _schedule(scheduler, config, scheduler_path)
    try:
        shapes = target_shapes("UNet2DModel", config)
    except Exception as exc:  # diffusers raises many types on a bad config
        raise InputError(f"{unet_dir / 'config.json'} is not a usable UNet2DModel config: {str(exc).splitlines()[0]}") from None
    state, weights_file = _weights(unet_dir)
    checked = map_tensors(state, [Move(k, k) for k in shapes], shapes, described="its config.json")
    return DiffusersSource({k: v for k, v in config.items() if not k.startswith("_")}, checked, weights_file, cls,
                           parameterisation, schedule)
