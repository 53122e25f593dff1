"""``medrecon priors convert``: published diffusion checkpoints -> medrecon prior folders, exactly.

Three source formats (one module each):

- ``adm``: an openai/guided-diffusion ``UNetModel`` state dict (``.pt``), as DDS released for AAPM
  CT and fastMRI knee (:mod:`medrecon.priors.convert.adm`) -> a ``vp_epsilon`` prior with the
  model's discrete schedule (learned-variance outputs kept, dropped by the adapter);
- ``ncsnpp``: a yang-song/score_sde_pytorch NCSN++ checkpoint (``.pth``), its EMA weights
  (:mod:`medrecon.priors.convert.ncsnpp`) -> a ``ve_score`` prior;
- ``diffusers``: a diffusers ``UNet2DModel`` folder with its scheduler config
  (:mod:`medrecon.priors.convert.diffusers`).

ADM and NCSN++ checkpoints carry no config: their architecture flags come from a named preset
(:mod:`medrecon.priors.convert.presets`, the published checkpoints' flags as their repositories
state them) or a flags file (JSON, the same keys). The conversion is a mapping of tensors onto a
diffusers ``UNet2DModel`` built from a config (:mod:`medrecon.priors.convert.tensors`): renames,
the split of fused ``qkv`` convolutions, reshapes; no value is computed. A part of an architecture
that ``UNet2DModel`` cannot express is refused with its reason before the file is read; a file
that is not a checkpoint, flags that do not fit its tensors (the first missing or mis-shaped one
is named), an unknown preset: :class:`~medrecon.errors.InputError`, and nothing is written. The
prior folder (the weights as stored: float16 stays float16, anything else is float32, so the
converted network computes what the original does) is
written atomically by :func:`medrecon.priors.hub.save_prior`, with a card that records the
source file's sha256, the flags and the preset's provenance and licence status.

Importing this package stays light (no torch): ``medrecon --help`` reads the presets. The format
modules, torch and the prior hub are imported by the functions that use them.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

from medrecon.errors import InputError

from .presets import Preset, get_preset

if TYPE_CHECKING:
    import torch

FORMATS = ("adm", "ncsnpp", "diffusers")
_FLAGGED = ("adm", "ncsnpp")  # the formats whose checkpoints carry no config


def _module(fmt: str):
    """The conversion module of a flagged format (``adm`` or ``ncsnpp``)."""
    from . import adm, ncsnpp  # torch-heavy; the package itself stays light

    return {"adm": adm, "ncsnpp": ncsnpp}[fmt]


def _flags_class(fmt: str) -> type:
    module = _module(fmt)
    return module.AdmFlags if fmt == "adm" else module.NcsnppFlags


def read_flags(fmt: str, flags) -> object:
    """``flags`` (a flags object, a dict, or the path of a JSON file of one) as ``fmt``'s flags."""
    from .tensors import read_json_object

    cls = _flags_class(fmt)
    if isinstance(flags, cls):
        return flags
    if isinstance(flags, (str, Path)):
        flags = read_json_object(Path(flags), f"flags file {flags} does not exist")
    if not isinstance(flags, dict):
        raise InputError(f"{fmt} flags must be a JSON object of {cls.__name__} fields, got {type(flags).__name__}")
    try:
        return cls.from_dict(flags)
    except TypeError as exc:
        raise InputError(f"bad {fmt} flags: {exc}") from None


def architecture(fmt: str, *, preset: str | None = None, flags=None) -> tuple[object, Preset | None]:
    """The flags of a conversion and its preset (if named); refuses what does not map."""
    if fmt not in _FLAGGED:
        raise InputError(f"format must be one of {FORMATS}, got {fmt!r}")
    if (preset is None) == (flags is None):
        raise InputError(f"an {fmt} checkpoint carries no config: give exactly one of a preset or a flags file")
    chosen = get_preset(preset, fmt) if preset is not None else None
    parsed = read_flags(fmt, chosen.flags if chosen else flags)
    reasons = _module(fmt).refusals(parsed) + list(chosen.refusal if chosen else ())
    if reasons:
        what = f"preset {chosen.name}" if chosen else f"these {fmt} flags"
        raise InputError(f"{what} does not map onto diffusers' UNet2DModel: " + "; ".join(reasons))
    return parsed, chosen


def expected_source_shapes(fmt: str, flags) -> dict[str, tuple[int, ...]]:
    """The tensors (names in the checkpoint's state dict, "module." removed) and shapes that
    ``flags`` need, in the order the conversion checks them."""
    from .tensors import target_shapes

    module = _module(fmt)
    shapes = target_shapes("UNet2DModel", module.unet_config(flags))
    return {m.source: m.source_shape(shapes[m.target]) for m in module.moves(flags, shapes)}


def convert_checkpoint(
    source: str | Path,
    out: str | Path,
    *,
    fmt: str,
    preset: str | None = None,
    flags=None,
    modality: str | None = None,
    name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert ``source`` (a checkpoint file, or a diffusers folder for ``fmt="diffusers"``) into the
    new prior folder ``out`` (see the module docstring); returns ``out``."""
    from ..hub import PriorCard, save_prior, sha256_of
    from .tensors import load_checkpoint, map_tensors, target_shapes, tensor_dict

    source, out = Path(source), Path(out)
    if fmt not in FORMATS:
        raise InputError(f"format must be one of {FORMATS}, got {fmt!r}")
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; pass --overwrite (overwrite=True) to replace it")
    if modality is not None and str(modality).upper() not in ("CT", "MR"):
        raise InputError(f"modality must be CT or MR, got {modality!r}")
    modality = None if modality is None else str(modality).upper()
    if fmt == "diffusers":
        if preset is not None or flags is not None:
            raise InputError("a diffusers folder carries its own config: --preset and --flags do not apply")
        return _from_diffusers_folder(source, out, modality, name, overwrite)
    parsed, chosen = architecture(fmt, preset=preset, flags=flags)
    if chosen is not None and modality is not None and modality != chosen.modality:
        raise InputError(f"preset {chosen.name} is a {chosen.modality} checkpoint, not {modality}")
    modality = chosen.modality if chosen is not None else modality
    if modality is None:
        raise InputError("give the modality of the checkpoint's images (--modality CT or MR)")
    module = _module(fmt)
    config = module.unet_config(parsed)
    shapes = target_shapes("UNet2DModel", config)
    checkpoint = load_checkpoint(source)
    if fmt == "adm":
        state, origin = tensor_dict(checkpoint, str(source)), "the state dict as stored"
        mapped = map_tensors(state, module.moves(parsed, shapes), shapes, explain_unused=module.explain_unused)
        parameterisation = "vp_epsilon"
        schedule = {"kind": parsed.noise_schedule, "diffusion_steps": parsed.diffusion_steps,
                    "alphas_cumprod": module.alphas_cumprod(parsed)}
        channels = parsed.in_channels
    else:
        state, origin = module.weights(checkpoint, str(source))
        mapped = map_tensors(state, module.moves(parsed, shapes), shapes, ignored=module.BUFFERS)
        parameterisation = "ve_score"
        schedule = {"kind": "ve", "sigma_min": parsed.sigma_min, "sigma_max": parsed.sigma_max}
        channels = parsed.num_channels
    net = build(config, mapped)
    described = f" ({chosen.paper})" if chosen else ""
    card = PriorCard(
        name=name or (chosen.name if chosen else out.name),
        modality=modality,
        image_size=int(config["sample_size"]),
        channels=channels,
        parameterisation=parameterisation,
        normalisation=dict(chosen.normalisation) if chosen else {"kind": "unknown", "note": "not stated by the checkpoint"},
        schedule=schedule,
        training={
            "summary": f"converted from the {fmt} checkpoint {source.name}{described}; {origin}",
            "converted": {
                "format": fmt, "source_file": source.name, "source_sha256": sha256_of(source), "weights": origin,
                "flags": parsed.to_dict(), "preset": chosen.to_dict() if chosen else None,
            },
        },
    )
    return save_prior(out, net, card, overwrite=overwrite, half=False)


def build(config: dict, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A ``UNet2DModel`` of ``config`` holding exactly ``state`` (float32 unless every tensor is
    float16), built without initialising weights that would be overwritten."""
    import torch
    from diffusers import UNet2DModel

    half = all(t.dtype == torch.float16 for t in state.values() if t.is_floating_point())
    dtype = torch.float16 if half else torch.float32
    with torch.device("meta"):
        net = UNet2DModel.from_config(config)
    net.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    left = [n for n, t in itertools.chain(net.named_parameters(), net.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"conversion left tensors unset: {left[:3]}")
    return net.eval()


def _from_diffusers_folder(source: Path, out: Path, modality: str | None, name: str | None, overwrite: bool) -> Path:
    from ..hub import PriorCard, save_prior, sha256_of
    from .diffusers import read as read_diffusers

    if modality is None:
        raise InputError("a diffusers folder does not state its modality: give --modality CT or MR")
    read = read_diffusers(source)
    net = build(read.config, read.state)
    card = PriorCard(
        name=name or out.name,
        modality=modality,
        image_size=int(net.config.sample_size),
        channels=int(net.config.in_channels),
        parameterisation=read.parameterisation,
        normalisation={"kind": "unknown", "note": "not stated by a diffusers folder"},
        schedule=read.schedule,
        training={
            "summary": f"copied from the diffusers folder {source.name} ({read.scheduler_class}, {read.parameterisation})",
            "converted": {"format": "diffusers", "source_file": str(read.weights_file.relative_to(source)),
                          "source_sha256": sha256_of(read.weights_file), "scheduler": read.scheduler_class},
        },
    )
    return save_prior(out, net, card, overwrite=overwrite, half=False)  # float16 sources stay float16 (build)
