"""Flax (JAX) checkpoints read without JAX: the msgpack format, and the Flax parameter tree of NCSN++.

Song, Shen, Xing & Ermon's LIDC and BraTS priors (yang-song/score_inverse_problems) are Flax
checkpoints: ``flax.training.checkpoints.save_checkpoint`` writes a file ``checkpoint_N`` holding
``flax.serialization.to_bytes(state)``, a msgpack map. Its ``state`` is score_sde's ``State``
(``step``, ``optimizer`` with the training weights and Adam's moments, ``lr``, ``model_state``,
``ema_rate``, ``params_ema``, ``rng``); score_sde evaluates and samples with ``params_ema``, and so
does this converter.

The format (:func:`read_msgpack`, a decoder of the msgpack specification written here; no
``msgpack``, ``flax`` or ``jax`` import): maps, arrays, strings, binaries, integers, floats, nil and
booleans, and Flax's three extension types, whose payload is itself msgpack: ``1`` an ndarray
``(shape, dtype name, C-order bytes)``, ``2`` a Python complex ``(real, imag)``, ``3`` a numpy
scalar (a 0-d ndarray). Arrays larger than Flax's chunk limit are stored as a map
``{"__msgpack_chunked_array__": true, "shape": {"0": ...}, "chunks": {"0": ...}}`` and are
reassembled. Lists and tuples are stored as maps keyed ``"0"``, ``"1"``... (Flax's state dicts),
and map keys are written sorted, as strings: keys are read by name, never by position. Arrays
become torch tensors (float32 and float16 as stored, bfloat16 too; other dtypes as numpy reads them).

The tree maps onto :class:`medrecon.priors.ncsnpp.NCSNpp` by rule (:func:`moves`): Flax names
each module ``ClassName_k`` in creation order (:meth:`NCSNpp.flax_names`), and inside a block the
names are the PyTorch port's; a convolution ``kernel`` is ``(kh, kw, in, out)`` (HWIO) and becomes
the ``(out, in, kh, kw)`` weight, a dense ``kernel`` ``(in, out)`` is transposed, a GroupNorm
``scale`` is its weight; NIN ``W``/``b`` and the Fourier ``W`` are copied.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medrecon.errors import InputError

from ..ncsnpp import NCSNpp, NcsnppConfig
from .tensors import Move

CHUNKED = "__msgpack_chunked_array__"
EXT_NDARRAY, EXT_COMPLEX, EXT_SCALAR = 1, 2, 3
_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


class _Truncated(Exception):
    pass


class _Reader:
    """A msgpack decoder over a bytes buffer (big-endian, as the specification says)."""

    def __init__(self, data: bytes | memoryview, what: str) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.what = what

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise _Truncated
        out = self.data[self.pos: self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def value(self, depth: int = 0):
        if depth > 64:
            raise InputError(f"{self.what}: msgpack nested more than 64 levels deep (not a Flax checkpoint)")
        b = self.unpack(">B")
        if b <= 0x7F:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0x80 <= b <= 0x8F:
            return self.map(b & 0x0F, depth)
        if 0x90 <= b <= 0x9F:
            return [self.value(depth + 1) for _ in range(b & 0x0F)]
        if 0xA0 <= b <= 0xBF:
            return self.string(b & 0x1F)
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if b in simple:
            return simple[b]
        sized = {0xC4: ">B", 0xC5: ">H", 0xC6: ">I"}  # bin 8/16/32
        if b in sized:
            return bytes(self.take(self.unpack(sized[b])))
        if b in (0xC7, 0xC8, 0xC9):  # ext 8/16/32
            n = self.unpack({0xC7: ">B", 0xC8: ">H", 0xC9: ">I"}[b])
            return self.ext(self.unpack(">b"), self.take(n))
        if 0xD4 <= b <= 0xD8:  # fixext 1/2/4/8/16
            code = self.unpack(">b")
            return self.ext(code, self.take(1 << (b - 0xD4)))
        numbers = {0xCA: ">f", 0xCB: ">d", 0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
                   0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
        if b in numbers:
            return self.unpack(numbers[b])
        if b in (0xD9, 0xDA, 0xDB):  # str 8/16/32
            return self.string(self.unpack({0xD9: ">B", 0xDA: ">H", 0xDB: ">I"}[b]))
        if b in (0xDC, 0xDD):  # array 16/32
            return [self.value(depth + 1) for _ in range(self.unpack(">H" if b == 0xDC else ">I"))]
        if b in (0xDE, 0xDF):  # map 16/32
            return self.map(self.unpack(">H" if b == 0xDE else ">I"), depth)
        raise InputError(f"{self.what}: byte 0x{b:02x} at offset {self.pos - 1} is no msgpack type (not a Flax checkpoint)")

    def string(self, n: int) -> str:
        try:
            return str(self.take(n), "utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{self.what}: a msgpack string at offset {self.pos - n} is not UTF-8") from None

    def map(self, n: int, depth: int) -> dict:
        out = {}
        for _ in range(n):
            key = self.value(depth + 1)
            if isinstance(key, bytes):
                key = key.decode("utf-8", "replace")
            if not isinstance(key, (str, int)):
                raise InputError(f"{self.what}: a msgpack map key is a {type(key).__name__} (Flax writes strings)")
            out[str(key)] = self.value(depth + 1)
        return out

    def ext(self, code: int, payload: memoryview):
        if code == EXT_COMPLEX:
            parts = _Reader(payload, self.what).value()
            if not (isinstance(parts, list) and len(parts) == 2):
                raise InputError(f"{self.what}: a malformed complex number (extension type 2)")
            return complex(parts[0], parts[1])
        if code in (EXT_NDARRAY, EXT_SCALAR):
            array = _ndarray(payload, self.what)
            return array.reshape(()) if code == EXT_SCALAR else array
        raise InputError(f"{self.what}: msgpack extension type {code} is not one of Flax's (1 ndarray, 2 complex, 3 scalar)")


def _ndarray(payload: memoryview, what: str) -> torch.Tensor | np.ndarray:
    inner = _Reader(payload, what).value()
    if not (isinstance(inner, list) and len(inner) == 3):
        raise InputError(f"{what}: a malformed ndarray (extension type 1): expected (shape, dtype, bytes)")
    shape, dtype, buffer = inner
    dtype = dtype.decode() if isinstance(dtype, bytes) else dtype
    if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape) and isinstance(dtype, str)
            and isinstance(buffer, bytes)):
        raise InputError(f"{what}: a malformed ndarray (extension type 1): shape {shape!r}, dtype {dtype!r}")
    count = int(np.prod(shape)) if shape else 1
    if dtype == "bfloat16":
        if len(buffer) != 2 * count:
            raise InputError(f"{what}: a bfloat16 array of shape {tuple(shape)} holds {len(buffer)} bytes")
        if not count:
            return torch.zeros(shape, dtype=torch.bfloat16)
        return torch.frombuffer(bytearray(buffer), dtype=torch.bfloat16).reshape(shape)
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise InputError(f"{what}: an ndarray of unknown dtype {dtype!r}") from None
    if np_dtype.hasobject or len(buffer) != np_dtype.itemsize * count:
        raise InputError(f"{what}: an ndarray of shape {tuple(shape)} and dtype {dtype} holds {len(buffer)} bytes")
    array = np.frombuffer(buffer, dtype=np_dtype).reshape(shape)
    if dtype in _TORCH_DTYPES:
        return torch.from_numpy(array.copy())
    return array.copy()


def _unchunk(tree, what: str):
    if isinstance(tree, dict):
        if CHUNKED in tree:
            try:
                shape = tuple(int(tree["shape"][str(i)]) for i in range(len(tree["shape"])))
                chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
                flat = torch.cat([c.reshape(-1) if isinstance(c, torch.Tensor) else torch.from_numpy(c.reshape(-1)) for c in chunks])
                return flat.reshape(shape)
            except (KeyError, TypeError, RuntimeError, AttributeError) as exc:
                raise InputError(f"{what}: a malformed chunked array ({type(exc).__name__}: {exc})") from None
        return {k: _unchunk(v, what) for k, v in tree.items()}
    return tree


def is_msgpack_map(head: bytes) -> bool:
    """Whether a file starting with ``head`` may be a msgpack map (a Flax state): fixmap with at
    least one entry, map16 or map32 (a pickle starts 0x80 then its protocol, 2 to 5)."""
    return bool(head) and (0x81 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF))


def read_msgpack(path: str | Path):
    """The tree (nested dicts, tensors, numbers, strings) of a Flax msgpack file (module docstring)."""
    path = Path(path)
    data = path.read_bytes()
    what = str(path)
    reader = _Reader(data, what)
    try:
        tree = reader.value()
    except _Truncated:
        raise InputError(f"{what} ends inside a msgpack value: truncated, or not a Flax checkpoint") from None
    except struct.error as exc:
        raise InputError(f"{what}: not a Flax msgpack checkpoint ({exc})") from None
    if reader.pos != len(data):
        raise InputError(f"{what}: {len(data) - reader.pos} bytes follow the msgpack value: not a Flax checkpoint")
    if not isinstance(tree, dict):
        raise InputError(f"{what} holds a msgpack {type(tree).__name__}, not the map of a Flax state")
    return _unchunk(tree, what)


_MODULE_KEY = re.compile(r"[A-Za-z]\w*_\d+")


def weights(tree: dict, what: str) -> tuple[dict[str, torch.Tensor], str]:
    """The parameter tree to convert, flattened to ``"Module_k/Child_j/param"`` names, and where it
    came from: a score_sde ``State``'s ``params_ema``, or a bare parameter tree (``{"params": ...}``
    or the modules themselves)."""
    if "params_ema" in tree:
        params = tree["params_ema"]
        origin = f"EMA weights (params_ema, ema_rate {tree.get('ema_rate')}, step {tree.get('step')})"
    elif tree and all(_MODULE_KEY.fullmatch(k) for k in tree):
        params, origin = tree, "the parameter tree as stored"
    elif set(tree) == {"params"}:
        params, origin = tree["params"], "the parameter tree as stored"
    else:
        raise InputError(f"{what} is a msgpack map without 'params_ema' (keys {sorted(tree)[:6]}): not a score_sde Flax "
                         "state or parameter tree")
    if isinstance(params, dict) and set(params) == {"params"}:
        params = params["params"]
    if not isinstance(params, dict) or not params:
        raise InputError(f"{what}: params_ema is not a tree of modules")
    flat: dict[str, torch.Tensor] = {}

    def walk(node, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}/{key}" if prefix else key
            if isinstance(value, dict):
                walk(value, name)
            elif isinstance(value, torch.Tensor):
                flat[name] = value.float() if value.dtype == torch.bfloat16 else value
            else:
                raise InputError(f"{what}: the parameter {name!r} is a {type(value).__name__}, not a float array")

    walk(params, "")
    return flat, origin


def moves(config: NcsnppConfig) -> list[Move]:
    """One :class:`Move` per tensor of the NCSN++ of ``config``, from the flattened Flax names
    (module docstring)."""
    with torch.device("meta"):
        net = NCSNpp(config)
    names, owners = net.flax_names(), dict(net.named_modules())
    out = []
    for target, tensor in net.state_dict().items():
        owner_name, _, param = target.rpartition(".")
        m = re.fullmatch(r"all_modules\.(\d+)(?:\.(.+))?", owner_name)
        if m is None:
            raise RuntimeError(f"no Flax source for {target}")
        path = names[int(m[1])] + (f"/{m[2].replace('.', '/')}" if m[2] else "")
        owner = owners[owner_name]
        if isinstance(owner, nn.Conv2d):
            out.append(Move(target, f"{path}/kernel", "hwio") if param == "weight" else Move(target, f"{path}/bias"))
        elif isinstance(owner, nn.Linear):
            out.append(Move(target, f"{path}/kernel", "transpose") if param == "weight" else Move(target, f"{path}/bias"))
        elif isinstance(owner, nn.GroupNorm):
            out.append(Move(target, f"{path}/{'scale' if param == 'weight' else 'bias'}"))
        elif param == "weight" and tensor.ndim == 4:  # the FIR-fused convolutions (Conv2d_0)
            out.append(Move(target, f"{path}/weight", "hwio"))
        else:  # NIN W and b, the Fourier W, the fused convolutions' bias
            out.append(Move(target, f"{path}/{param}"))
    return out


__all__ = ["is_msgpack_map", "moves", "read_msgpack", "weights"]
