"""Weight-space interpolation of two priors of one network: ``theta = (1 - w) theta_base + w theta_tuned``.

WiSE-FT (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022): a network fine-tuned
from a base network lies in the same basin, and the straight line between their weights keeps
much of what fine-tuning gained on the new distribution while giving back little of the base's
accuracy on its own. Here the base is a shipped prior and the tuned one its continuation (e.g. a
contrast-augmented ``medrecon train --init``); ``w`` is chosen before looking at validation data
(0.5, the paper's midpoint, unless measured on training patients).

The result is a prior folder like any other: the base's ``config.json`` (the two must be equal),
the interpolated weights in the tuned prior's dtype, and a card whose training entry states both
parents (name, sha256), ``w``, and the lineage: the base's stages, the tuned prior's own run, and
the interpolation.
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_output

from .hub import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, PriorCard, _resolve, sha256_of


def _card(folder: Path) -> PriorCard:
    return PriorCard.from_dict(json.loads((folder / CARD_FILE).read_text()))


def interpolate_priors(base: str | Path, tuned: str | Path, weight: float, out: str | Path, *, name: str | None = None,
                       overwrite: bool = False) -> Path:
    """Write the prior ``(1 - weight) base + weight tuned`` (module docstring) into the new folder ``out``.

    ``base`` / ``tuned``: shipped prior names or prior folders with safetensors weights, the same
    network (``config.json``), modality, image size, parameterisation and normalisation;
    ``weight`` in [0, 1]. Raises :class:`InputError` naming what differs."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or not 0 <= weight <= 1:
        raise InputError(f"the interpolation weight must be a number in [0, 1], got {weight!r}")
    base_dir, tuned_dir = _resolve(base), _resolve(tuned)
    base_card, tuned_card = _card(base_dir), _card(tuned_dir)
    for key in ("modality", "image_size", "channels", "parameterisation", "normalisation", "sigma_data", "architecture",
                "latent"):
        if getattr(base_card, key) != getattr(tuned_card, key):
            raise InputError(f"cannot interpolate {base_card.name} and {tuned_card.name}: their cards differ in {key} "
                             f"({getattr(base_card, key)!r} and {getattr(tuned_card, key)!r})")
    if json.loads((base_dir / CONFIG_FILE).read_text()) != json.loads((tuned_dir / CONFIG_FILE).read_text()):
        raise InputError(f"cannot interpolate {base_card.name} and {tuned_card.name}: their networks (config.json) differ")
    for folder in (base_dir, tuned_dir):
        if not (folder / WEIGHTS_FILE).is_file():
            raise InputError(f"{folder} has no {WEIGHTS_FILE} (interpolation reads safetensors weights)")
    theta_base, theta_tuned = load_file(str(base_dir / WEIGHTS_FILE)), load_file(str(tuned_dir / WEIGHTS_FILE))
    if {k: tuple(v.shape) for k, v in theta_base.items()} != {k: tuple(v.shape) for k, v in theta_tuned.items()}:
        raise InputError(f"cannot interpolate {base_card.name} and {tuned_card.name}: their tensors differ")
    mixed = {k: torch.lerp(theta_base[k].double(), theta_tuned[k].double(), float(weight)).to(theta_tuned[k].dtype)
             for k in theta_tuned}
    name = name or Path(out).name
    training = _training_entry(base_card, tuned_card, float(weight))
    with atomic_output(out, overwrite=overwrite, folder=True) as tmp:
        save_file(mixed, str(tmp / WEIGHTS_FILE))
        (tmp / CONFIG_FILE).write_text((base_dir / CONFIG_FILE).read_text())
        card = PriorCard.from_dict({**tuned_card.to_dict(), "name": name, "training": training,
                                    "sha256": {WEIGHTS_FILE: sha256_of(tmp / WEIGHTS_FILE)}})
        (tmp / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2))
    return Path(out)


def _run_stage(card: PriorCard, init: str) -> dict:
    """A ``medrecon train`` run's lineage stage, from its card's training record (the shipped cards'
    stage fields: steps, batch, images, crop, learning rate, noise levels, seconds, device, data)."""
    record = card.training.get("record") or {}
    config = record.get("train_config") or {}
    data = card.training.get("data") or {}
    steps, batch = record.get("steps_this_run") or record.get("steps"), config.get("batch_size")
    return {"stage": card.name, "init": init, "steps": steps, "batch_size": batch,
            "images": steps * batch if steps and batch else None, "crop_size": config.get("crop_size"),
            "lr": config.get("lr"), "p_mean": config.get("p_mean"), "p_std": config.get("p_std"), "seed": config.get("seed"),
            "seconds": record.get("seconds_this_run"), "device": record.get("device"), "torch": record.get("torch"),
            "mixed_precision": "bf16 autocast" if record.get("bf16_autocast") else None,
            "augmentation": data.get("augmentation"), "sources": [s.get("id") for s in data.get("sources", [])],
            "summary": card.training.get("summary"), "weights_sha256": card.sha256.get(WEIGHTS_FILE)}


def _training_entry(base: PriorCard, tuned: PriorCard, weight: float) -> dict:
    """The card's ``training``: a summary, both parents, the tuned run's data, and the lineage (the
    base's stages, the tuned prior's run, the interpolation)."""
    parents = {"base": {"name": base.name, "sha256": base.sha256.get(WEIGHTS_FILE), "weight": round(1 - weight, 6)},
               "tuned": {"name": tuned.name, "sha256": tuned.sha256.get(WEIGHTS_FILE), "weight": round(weight, 6)}}
    tuned_stages = tuned.training.get("lineage") or [_run_stage(tuned, base.name)]
    lineage = [*base.training.get("lineage", []), *tuned_stages,
               {"stage": "weight-interpolation", "method": "WiSE-FT (Wortsman et al., CVPR 2022)", **parents,
                "date": date.today().isoformat()}]
    summary = (f"{round(1 - weight, 6):g} x {base.name} + {weight:g} x {tuned.name} (weight-space interpolation, "
               f"WiSE-FT). {base.name}: {base.training.get('summary', '')} {tuned.name}: {tuned.training.get('summary', '')}")
    data = tuned.training.get("data") or base.training.get("data")
    return {"summary": summary, "interpolation": parents, **({"data": data} if data else {}), "lineage": lineage}


__all__ = ["interpolate_priors"]
