"""``medrecon priors convert``: published diffusion checkpoints -> medrecon prior folders, exactly.

Three source formats (one module each):

- ``adm``: an openai/guided-diffusion ``UNetModel`` state dict (``.pt``), as DDS released for AAPM
  CT and fastMRI knee (:mod:`medrecon.priors.convert.adm`) -> a ``vp_epsilon`` prior with the
  model's discrete schedule (learned-variance outputs kept, dropped by the adapter), on diffusers'
  ``UNet2DModel``;
- ``ncsnpp``: an NCSN++ score model (:mod:`medrecon.priors.convert.ncsnpp`), a score_sde_pytorch
  ``.pth`` (its EMA weights: score-MRI, DiffusionMBIR) or a Flax msgpack checkpoint (its
  ``params_ema``: Song et al.'s LIDC and BraTS priors, read without JAX by
  :mod:`medrecon.priors.convert.flax`) -> a ``ve_score`` prior on medrecon's own NCSN++
  (:class:`medrecon.priors.ncsnpp.NCSNpp`), which implements every switch of the reference;
- ``diffusers``: a diffusers ``UNet2DModel`` folder with its scheduler config
  (:mod:`medrecon.priors.convert.diffusers`).

ADM and NCSN++ checkpoints carry no config: their architecture flags come from a named preset
(:mod:`medrecon.priors.convert.presets`, the published checkpoints' flags as their repositories
state them) or a flags file (JSON, the same keys). The conversion is a mapping of tensors
(:mod:`medrecon.priors.convert.tensors`): renames, transpositions, the split of fused ``qkv``
convolutions, reshapes; no value is computed. A part of an ADM architecture that ``UNet2DModel``
cannot express is refused with its reason before the file is read; a file that is not a
checkpoint, flags that do not fit its tensors (the first missing or mis-shaped one is named), an
unknown preset: :class:`~medrecon.errors.InputError`, and nothing is written. The prior folder
(the weights as stored: float16 stays float16, anything else is float32, so the converted network
computes what the original does) is written atomically by :func:`medrecon.priors.hub.save_prior`,
with a card that records the source file's sha256, the flags, the preset's provenance and licence
status, and the normalisation the authors trained on (a preset states it; without a preset it must
be given: a card never leaves it unknown).

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
    reasons = (_module(fmt).refusals(parsed) if fmt == "adm" else []) + list(chosen.refusal if chosen else ())
    if reasons:
        what = f"preset {chosen.name}" if chosen else f"these {fmt} flags"
        raise InputError(f"{what} does not map onto diffusers' UNet2DModel: " + "; ".join(reasons))
    return parsed, chosen


def expected_source_shapes(fmt: str, flags, container: str = "torch") -> dict[str, tuple[int, ...]]:
    """The tensors (names in the checkpoint's state dict, "module." removed; for a Flax NCSN++
    ``container``, the "/"-joined names of its parameter tree) and shapes that ``flags`` need, in
    the order the conversion checks them."""
    module = _module(fmt)
    if fmt == "ncsnpp":
        return module.expected_source_shapes(flags, container)
    from .tensors import target_shapes

    shapes = target_shapes("UNet2DModel", module.unet_config(flags))
    return {m.source: m.source_shape(shapes[m.target]) for m in module.moves(flags, shapes)}


def read_normalisation(value) -> dict:
    """A card's normalisation from a :class:`~medrecon.priors.normalisation.Normalisation`, a dict, a
    JSON object (text or the path of a file) or a kind that takes no parameters (``volume-minmax``,
    ``slice-minmax``, ``user-choice``); checked (:class:`InputError` saying what is wrong)."""
    import json

    from ..normalisation import Normalisation

    if isinstance(value, Normalisation):
        return value.to_dict()
    if isinstance(value, (str, Path)) and not isinstance(value, dict):
        text = str(value).strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"--normalisation is not valid JSON: {exc}") from None
        elif Path(text).suffix == ".json" or Path(text).is_file():
            from .tensors import read_json_object

            value = read_json_object(Path(text), f"normalisation file {text} does not exist")
        else:
            value = {"kind": text}
    if not isinstance(value, dict):
        raise InputError(f"a normalisation is a JSON object with a 'kind', got {type(value).__name__}")
    return Normalisation.from_dict(value).to_dict()


def _card_normalisation(chosen: Preset | None, given) -> dict:
    """The card's normalisation: the preset's, or the one given (required without a preset); a
    preset's ``user-choice`` may be replaced by the user's choice, any other statement may not."""
    if given is None:
        if chosen is None:
            raise InputError("give the normalisation the checkpoint's images were trained with (--normalisation: a "
                             "kind such as volume-minmax or a JSON object such as {\"kind\": \"hu-window\", \"low\": -1000, "
                             "\"high\": 2000}; user-choice if the authors do not state it)")
        return dict(chosen.normalisation)
    mine = read_normalisation(given)
    if chosen is not None and chosen.normalisation["kind"] != "user-choice":
        from ..normalisation import Normalisation

        if not Normalisation.from_dict(mine).same_map(Normalisation.from_dict(chosen.normalisation)):
            raise InputError(f"preset {chosen.name} states its normalisation ({chosen.normalisation['kind']}); "
                             "--normalisation only replaces a preset's user-choice")
    if chosen is not None:
        mine = {**mine, "note": f"chosen at conversion; the preset says: {chosen.normalisation.get('note', 'user-choice')}"}
    return mine


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
    normalisation=None,
) -> Path:
    """Convert ``source`` (a checkpoint file, or a diffusers folder for ``fmt="diffusers"``) into the
    new prior folder ``out`` (see the module docstring); returns ``out``. ``normalisation``: how the
    checkpoint's images were scaled to [0, 1] (:func:`read_normalisation`); a preset states it."""
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
        return _from_diffusers_folder(source, out, modality, name, overwrite, normalisation)
    parsed, chosen = architecture(fmt, preset=preset, flags=flags)
    if chosen is not None and modality is not None and modality != chosen.modality:
        raise InputError(f"preset {chosen.name} is a {chosen.modality} checkpoint, not {modality}")
    modality = chosen.modality if chosen is not None else modality
    if modality is None:
        raise InputError("give the modality of the checkpoint's images (--modality CT or MR)")
    card_normalisation = _card_normalisation(chosen, normalisation)
    module = _module(fmt)
    container = "torch"
    if fmt == "adm":
        config = module.unet_config(parsed)
        shapes = target_shapes("UNet2DModel", config)
        state, origin = tensor_dict(load_checkpoint(source), str(source)), "the state dict as stored"
        mapped = map_tensors(state, module.moves(parsed, shapes), shapes, explain_unused=module.explain_unused)
        net, architecture_name = build(config, mapped), "UNet2DModel"
        parameterisation = "vp_epsilon"
        schedule = {"kind": parsed.noise_schedule, "diffusion_steps": parsed.diffusion_steps,
                    "alphas_cumprod": module.alphas_cumprod(parsed)}
        channels, size = parsed.in_channels, int(config["sample_size"])
    else:
        from ..ncsnpp import CLASS_NAME, parameter_shapes

        shapes = parameter_shapes(parsed)
        state, moves, ignored, origin, container = module.read(source, parsed)
        mapped = map_tensors(state, moves, shapes, ignored=ignored)
        net, architecture_name = build_ncsnpp(parsed, mapped), CLASS_NAME
        parameterisation = "ve_score"
        schedule = {"kind": "ve", "sigma_min": parsed.sigma_min, "sigma_max": parsed.sigma_max}
        channels, size = parsed.num_channels, parsed.image_size
    described = f" ({chosen.paper})" if chosen else ""
    card = PriorCard(
        name=name or (chosen.name if chosen else out.name),
        modality=modality,
        image_size=size,
        channels=channels,
        parameterisation=parameterisation,
        normalisation=card_normalisation,
        schedule=schedule,
        architecture=architecture_name,
        training={
            "summary": f"converted from the {fmt} checkpoint {source.name}{described}; {origin}",
            "converted": {
                "format": fmt, "container": container, "source_file": source.name, "source_sha256": sha256_of(source),
                "weights": origin, "flags": parsed.to_dict(), "preset": chosen.to_dict() if chosen else None,
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


def build_ncsnpp(config, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """medrecon's NCSN++ of ``config`` holding exactly ``state`` (float32 unless every tensor is
    float16), built without initialising weights that would be overwritten."""
    import torch

    from ..ncsnpp import NCSNpp

    half = all(t.dtype == torch.float16 for t in state.values() if t.is_floating_point())
    dtype = torch.float16 if half else torch.float32
    with torch.device("meta"):
        net = NCSNpp(config)
    net.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=True, assign=True)
    net.rebuild_fir_kernels()  # not stored: made again off the meta device
    left = [n for n, t in itertools.chain(net.named_parameters(), net.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"conversion left tensors unset: {left[:3]}")
    return net.eval()


def _from_diffusers_folder(source: Path, out: Path, modality: str | None, name: str | None, overwrite: bool,
                           normalisation=None) -> Path:
    from ..hub import PriorCard, save_prior, sha256_of
    from .diffusers import read as read_diffusers

    if modality is None:
        raise InputError("a diffusers folder does not state its modality: give --modality CT or MR")
    card_normalisation = _card_normalisation(None, normalisation)
    read = read_diffusers(source)
    net = build(read.config, read.state)
    card = PriorCard(
        name=name or out.name,
        modality=modality,
        image_size=int(net.config.sample_size),
        channels=int(net.config.in_channels),
        parameterisation=read.parameterisation,
        normalisation=card_normalisation,
        schedule=read.schedule,
        training={
            "summary": f"copied from the diffusers folder {source.name} ({read.scheduler_class}, {read.parameterisation})",
            "converted": {"format": "diffusers", "source_file": str(read.weights_file.relative_to(source)),
                          "source_sha256": sha256_of(read.weights_file), "scheduler": read.scheduler_class},
        },
    )
    return save_prior(out, net, card, overwrite=overwrite, half=False)  # float16 sources stay float16 (build)
