"""NCSN++ checkpoints (score_sde, both ports) -> medrecon's own NCSN++ (:mod:`medrecon.priors.ncsnpp`).

The NCSN++ score network of Song et al. 2021, a variance-exploding score model ``s(x, sigma)``, as
published for medical data in two containers:

- **PyTorch** (yang-song/score_sde_pytorch and its forks: score-MRI, DiffusionMBIR): a
  ``checkpoint_N.pth`` holding ``{"model": state dict with "module." prefixes (DataParallel),
  "ema": {"decay", "num_updates", "shadow_params": [...]}, "optimizer": ..., "step": ...}``. The
  weights score_sde evaluates and samples with are the EMA's: ``ema.copy_to(model.parameters())``
  puts ``shadow_params[i]`` into the ``i``-th parameter with ``requires_grad``, which is every
  tensor of the model's state dict (in its order) except the buffer ``sigmas`` and the fixed
  Fourier frequencies ``all_modules.0.W`` (taken from ``model``). A bare state dict is converted as
  it is. medrecon's network has the reference's module tree, so the names map unchanged; the
  ``Dense_0`` layers that score_sde_pytorch creates in the residual blocks of an unconditional
  network (and never uses) are left out.
- **Flax** (yang-song/score_inverse_problems, Song et al.'s LIDC and BraTS priors): a msgpack
  ``checkpoint_N`` whose ``params_ema`` are taken (:mod:`medrecon.priors.convert.flax`).

The container is recognised from the file's first bytes. Neither carries its config: the
architecture comes from :class:`NcsnppFlags` (a preset or a flags file, score_sde's names). Every
switch the reference implements converts; flags that do not fit the tensors are refused with the
first tensor that is missing, mis-shaped or not described.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from medrecon.errors import InputError

from ..ncsnpp import NcsnppConfig, parameter_shapes
from . import flax
from .tensors import Move, load_checkpoint, tensor_dict

NcsnppFlags = NcsnppConfig  # the flags are the network's config, under score_sde's names
FOURIER = "all_modules.0.W"
BUFFERS = ("sigmas",)
CONTAINERS = ("torch", "flax")


def container_of(path: str | Path) -> str:
    """``"flax"`` (a msgpack map) or ``"torch"`` (a zip archive or a pickle); :class:`InputError`
    for anything else, naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    with open(path, "rb") as f:
        head = f.read(4)
    if flax.is_msgpack_map(head):
        return "flax"
    if head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
        return "torch"
    raise InputError(f"{path} is neither a Flax msgpack state nor a PyTorch checkpoint (it starts {head!r})")


def read(path: str | Path, flags: NcsnppConfig) -> tuple[dict[str, torch.Tensor], list[Move], tuple[str, ...], str, str]:
    """``(source tensors, moves, ignored names, origin, container)`` of a checkpoint of either
    container (the module docstring)."""
    container = container_of(path)
    if container == "flax":
        state, origin = flax.weights(flax.read_msgpack(path), str(path))
        return state, flax.moves(flags), (), origin, container
    state, origin = weights(load_checkpoint(path), str(path))
    return state, moves(flags), unused_by_design(state, flags), origin, container


def moves(flags: NcsnppConfig) -> list[Move]:
    """A PyTorch state dict maps by name: one copy per tensor of the network."""
    return [Move(name, name) for name in parameter_shapes(flags)]


def unused_by_design(state: dict[str, torch.Tensor], flags: NcsnppConfig) -> tuple[str, ...]:
    """The source tensors that carry nothing the network uses: the buffer ``sigmas`` (the training
    noise levels) and, in an unconditional network, the residual blocks' ``Dense_0``."""
    unused = [name for name in state if name in BUFFERS]
    if not flags.conditional:
        unused += [name for name in state if re.fullmatch(r"all_modules\.\d+\.Dense_0\.(weight|bias)", name)]
    return tuple(unused)


def expected_source_shapes(flags: NcsnppConfig, container: str) -> dict[str, tuple[int, ...]]:
    """The tensors (source names) and shapes a checkpoint of ``container`` must hold for ``flags``."""
    shapes = parameter_shapes(flags)
    chosen = flax.moves(flags) if container == "flax" else moves(flags)
    return {m.source: m.source_shape(shapes[m.target]) for m in chosen}


def weights(checkpoint: object, what: str) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict to convert and where it came from: the EMA weights of a score_sde
    checkpoint (paired with the model's trainable tensors, see the module docstring), or a bare
    state dict. "module." prefixes (DataParallel) are removed when every name has one."""
    if isinstance(checkpoint, dict) and "model" in checkpoint:
        model = _unprefixed(tensor_dict(checkpoint["model"], f"{what}['model']"))
        ema = checkpoint.get("ema")
        if not isinstance(ema, dict) or not isinstance(ema.get("shadow_params"), (list, tuple)):
            raise InputError(f"{what} has a 'model' but no 'ema' with 'shadow_params': not a score_sde checkpoint")
        shadow = list(ema["shadow_params"])
        trainable = [k for k in model if k not in BUFFERS and k != FOURIER]
        if len(shadow) != len(trainable):
            raise InputError(
                f"{what}: the EMA holds {len(shadow)} shadow parameters, the model {len(trainable)} trainable tensors "
                "(all but 'sigmas' and the Fourier 'all_modules.0.W'): they cannot be paired"
            )
        out = dict(model)
        for name, value in zip(trainable, shadow):
            if not isinstance(value, torch.Tensor) or value.shape != model[name].shape:
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise InputError(f"{what}: the EMA's shadow parameter for {name!r} is {got}, the model's {tuple(model[name].shape)}")
            out[name] = value
        decay = ema.get("decay")
        return out, f"EMA weights (decay {decay}, step {checkpoint.get('step')})"
    return _unprefixed(tensor_dict(checkpoint, what)), "the state dict as stored"


def _unprefixed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if all(k.startswith("module.") for k in state):
        return {k.removeprefix("module."): v for k, v in state.items()}
    return state


__all__ = ["BUFFERS", "CONTAINERS", "NcsnppFlags", "container_of", "expected_source_shapes", "moves", "read", "weights"]
