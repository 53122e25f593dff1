"""Checkpoint conversion as a mapping of tensors, and the safe reading of foreign checkpoints.

A conversion is a list of :class:`Move` s. Each fills one tensor of the target state dict (a
diffusers ``UNet2DModel``'s, or medrecon's NCSN++) from one tensor of the source checkpoint by a
rename, a reshape, a transposition or a split, never by arithmetic on values:

- ``copy``: same shape;
- ``squeeze``: a 1x1 ``Conv1d`` weight ``(O, I, 1)`` -> a ``Linear`` weight ``(O, I)``;
- ``transpose``: a ``(I, O)`` matrix applied as ``x @ W`` (NCSN++'s ``NIN``, a Flax ``Dense``
  kernel) -> ``Linear`` ``(O, I)``;
- ``hwio``: a Flax / TensorFlow convolution kernel ``(kh, kw, I, O)`` -> PyTorch's ``(O, I, kh, kw)``;
- ``qkv``: one third of a fused ``Conv1d(C, 3C, 1)`` (weight ``(3C, C, 1)`` or bias ``(3C,)``):
  ``order="legacy"`` splits per head first, ``[q_h, k_h, v_h]`` blocks of ``C / heads`` rows for
  each head ``h`` (guided-diffusion's ``QKVAttentionLegacy``, its default); ``order="new"``
  splits ``[q, k, v]`` first, each holding the heads one after the other (``QKVAttention``).

:func:`map_tensors` checks the source against the shapes each move needs, in the order of the
moves, and names the first tensor that is missing or has another shape; then it names the first
source tensor that no move used (the checkpoint holds a part that the flags do not describe).
:func:`load_checkpoint` reads ``.pt``/``.pth`` files only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from medrecon.errors import InputError

KINDS = ("copy", "squeeze", "transpose", "hwio", "qkv")
PARTS = ("q", "k", "v")
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


@dataclass(frozen=True)
class Move:
    """Fill ``target`` from ``source`` (see the module docstring for ``kind``); ``qkv`` moves also
    give the ``part`` (``q``, ``k`` or ``v``), the ``order`` and the number of ``heads``."""

    target: str
    source: str
    kind: str = "copy"
    part: str = ""
    order: str = "legacy"
    heads: int = 1

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown move kind {self.kind!r}")
        if self.kind == "qkv" and (self.part not in PARTS or self.order not in ("legacy", "new") or self.heads < 1):
            raise ValueError(f"bad qkv move {self}")

    def source_shape(self, target_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape the source tensor must have to give a target of ``target_shape``."""
        shape = tuple(int(s) for s in target_shape)
        if self.kind == "copy":
            return shape
        if self.kind == "squeeze":
            return shape + (1,)
        if self.kind == "transpose":
            return shape[::-1]
        if self.kind == "hwio":
            return (shape[2], shape[3], shape[1], shape[0])
        return (3 * shape[0],) + shape[1:] + ((1,) if len(shape) == 2 else ())

    def apply(self, tensor: torch.Tensor) -> torch.Tensor:
        """The target tensor made from the (shape-checked) source tensor."""
        if self.kind == "copy":
            return tensor
        if self.kind == "squeeze":
            return tensor[..., 0]
        if self.kind == "transpose":
            return tensor.t()
        if self.kind == "hwio":
            return tensor.permute(3, 2, 0, 1)
        t = tensor[..., 0] if tensor.ndim == 3 else tensor  # (3C, C) or (3C,)
        width = t.shape[0] // 3
        index = PARTS.index(self.part)
        if self.order == "new":
            return t[index * width : (index + 1) * width]
        per_head = width // self.heads
        blocks = t.reshape(self.heads, 3, per_head, *t.shape[1:])
        return blocks[:, index].reshape(width, *t.shape[1:])


def map_tensors(
    source: dict[str, torch.Tensor],
    moves: Iterable[Move],
    target_shapes: dict[str, tuple[int, ...]],
    *,
    ignored: Iterable[str] = (),
    explain_unused: Callable[[str], str | None] | None = None,
    described: str = "these flags",
) -> dict[str, torch.Tensor]:
    """The target state dict made by ``moves`` from ``source``, checked tensor by tensor.

    ``target_shapes``: every tensor of the target network with its shape (the moves must cover
    them exactly: anything else is a bug of the mapping). ``ignored``: source tensors that are
    known to carry nothing the target needs (such as a buffer of training constants).
    ``explain_unused(name)``: a specific message for an unused source tensor, or None.
    ``described``: what gives the architecture, for the messages ("these flags", "its config").
    Raises :class:`InputError` naming the first missing, mis-shaped or unused source tensor.
    """
    moves = list(moves)
    plural = described.startswith("these ")
    need, describe = ("need", "do not describe") if plural else ("needs", "does not describe")
    mismatch = f"{described.removeprefix('these ').removeprefix('its ')} and checkpoint do not match"
    covered = [m.target for m in moves]
    if sorted(covered) != sorted(target_shapes):
        missing = sorted(set(target_shapes) - set(covered))[:3]
        extra = sorted(set(covered) - set(target_shapes))[:3]
        raise RuntimeError(f"conversion mapping does not cover the target network: uncovered {missing}, unknown {extra}")
    out = {}
    for move in moves:
        expected = move.source_shape(target_shapes[move.target])
        if move.source not in source:
            raise InputError(
                f"the checkpoint has no tensor {move.source!r} {expected}, which {described} {need} (for {move.target}): "
                f"{mismatch}"
            )
        tensor = source[move.source]
        if not isinstance(tensor, torch.Tensor):
            raise InputError(f"the checkpoint's entry {move.source!r} is a {type(tensor).__name__}, not a tensor")
        if tuple(tensor.shape) != expected:
            raise InputError(
                f"the checkpoint's tensor {move.source!r} is {tuple(tensor.shape)}; {described} {need} {expected} "
                f"(for {move.target}): {mismatch}"
            )
        out[move.target] = move.apply(tensor).contiguous()
    used = {m.source for m in moves} | set(ignored)
    unused = [name for name in source if name not in used]
    if unused:
        name = unused[0]
        reason = explain_unused(name) if explain_unused else None
        shape = tuple(source[name].shape) if isinstance(source[name], torch.Tensor) else type(source[name]).__name__
        raise InputError(
            reason
            or f"the checkpoint holds {len(unused)} tensor(s) {described} {describe}, the first {name!r} {shape}: "
            f"{mismatch}"
        )
    return out


def load_checkpoint(path: str | Path) -> object:
    """A ``.pt``/``.pth`` file read with ``torch.load(weights_only=True)`` (tensors and plain
    containers only: a pickle that needs anything else, which could run code, is refused)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch's zip archive, or a pickle (protocol >= 2)
        raise InputError(f"{path} is not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # every failure of the unpickler is a bad input here
        message = str(exc)
        if message.startswith("Weights only load failed"):
            raise InputError(
                f"{path} does not load with torch.load(weights_only=True) ({_refusal(message)}): refused, since a "
                "pickle of anything but tensors and plain containers can run code when it is loaded"
            ) from None
        first = message.strip().splitlines()[0] if message.strip() else "no detail"
        raise InputError(f"{path} is not a PyTorch checkpoint (torch.load: {type(exc).__name__}: {first})") from None


def _refusal(message: str) -> str:
    for line in message.splitlines():
        low = line.lower()
        if "unsupported global" in low or "unsupported operand" in low:
            return line.strip().rstrip(".")
    return "it holds objects other than tensors and plain containers"


def tensor_dict(obj: object, what: str) -> dict[str, torch.Tensor]:
    """``obj`` as a state dict (string keys, tensor values), or :class:`InputError` saying why not."""
    if not isinstance(obj, dict) or not obj:
        raise InputError(f"{what} is not a state dict (a mapping of names to tensors): got {type(obj).__name__}")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise InputError(f"{what} is not a state dict: entry {key!r} is a {type(value).__name__}, not a tensor")
    return obj


def target_shapes(unet_class: str, config: dict) -> dict[str, tuple[int, ...]]:
    """The state dict shapes of a diffusers network built from ``config`` on the meta device
    (no memory for weights is taken)."""
    import diffusers

    with torch.device("meta"):
        net = getattr(diffusers, unet_class).from_config(config)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def check_flag_types(flags, what: str) -> None:
    """Each field of the frozen flags dataclass ``flags`` has its annotated type (``int``,
    ``float``, ``str``, ``bool`` or ``tuple[...]`` of one of them, given as a list or tuple);
    :class:`InputError` naming the first that does not (a JSON ``"true"`` is not ``true``)."""

    def fits(value, kind: str) -> bool:
        if kind == "bool" or isinstance(value, bool):
            return kind == "bool" and isinstance(value, bool)
        return isinstance(value, _TYPES[kind])

    for f in fields(flags):
        value, kind = getattr(flags, f.name), str(f.type)
        if kind.startswith("tuple["):
            inner = kind[len("tuple["):].split(",")[0].strip()
            if not isinstance(value, (list, tuple)) or not all(fits(v, inner) for v in value):
                raise InputError(f"{what}: {f.name} must be a list of {inner}, got {value!r}")
        elif not fits(value, kind):
            raise InputError(f"{what}: {f.name} must be {kind}, got {value!r}")


def read_json_object(path: Path, missing: str) -> dict:
    """The JSON object in ``path``; ``missing`` is the error when the file is not there. A file that
    is not JSON, or not an object, is an :class:`InputError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(missing)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is not a JSON object")
    return data
