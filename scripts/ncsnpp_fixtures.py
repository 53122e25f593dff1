"""The NCSN++ part of scripts/make_conversion_fixtures.py: reference networks, recipes, full-size checks.

Two reference implementations, imported from local clones (nothing of them is copied into
medrecon; nothing of them is needed by the tests):

- score_sde_pytorch's ``NCSNpp`` (yang-song/score_sde_pytorch, and the same file in HJ-harry/score-MRI
  and HJ-harry/DiffusionMBIR): built with seeded random weights, saved as score_sde saves a
  checkpoint (``model``, a different ``ema``, ``optimizer``, ``step``), reloaded as its evaluation
  does (``ema.copy_to``), evaluated;
- the Flax original (yang-song/score_inverse_problems ``models/ncsnpp.py``, Song et al.'s LIDC and
  BraTS networks), run with JAX and Flax from a side environment: its parameter tree filled with
  seeded random weights, wrapped in score_sde's ``State`` (training weights, ``params_ema``,
  Adam moments, step, rng), serialised by ``flax.serialization.msgpack_serialize`` (what
  ``checkpoints.save_checkpoint`` writes), restored by ``msgpack_restore`` and evaluated with
  ``params_ema``. (The model code needs neither TensorFlow nor ``flax.optim``: both are stubbed.)

Everything the tests need without JAX or the clones is here too: :func:`reference_inputs` (the
inputs, from a seed), :func:`flax_slots` / :func:`flax_state` (a Flax checkpoint's tree from its
recipe) and :func:`msgpack_bytes`, a msgpack writer that reproduces Flax's bytes exactly (the
generator checks the sha256 against Flax's own output, and records it).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import struct
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

NCSNPP_KEYS = ("image_size", "num_channels", "centered")  # config.data; the rest is config.model
PRESET_OF = {"song2022_lidc_reduced": "song2022-lidc-320", "song2022_brats_reduced": "song2022-brats-240",
             "chung2022_knee_reduced": "chung2022-fastmri-knee-320", "chung2023_aapm_reduced": "chung2023-aapm-256"}
SIGMAS = (0.05, 1.0, 20.0)


def preset_flags(name: str, **changes) -> dict:
    from medrecon.priors.convert.presets import PRESETS  # noqa: PLC0415 - the checkout the generator runs in

    return {**PRESETS[name].flags, **changes}


def cases() -> dict[str, tuple[str, dict]]:
    """``{case: (reference, flags)}``; reference ``torch:<clone key>`` or ``flax``. The published
    configurations at reduced width and image size (the attention kept at the same level), and
    variants that exercise every other switch."""
    base = preset_flags("song2022-lidc-320")
    return {
        # score_sde's published VE layout on 3 channels (the previous diffusers case)
        "ncsnpp_tiny": ("torch:score-sde", {**base, "image_size": 16, "num_channels": 3, "nf": 32, "ch_mult": [1, 1, 4],
                                            "num_res_blocks": 1, "attn_resolutions": [4], "sigma_max": 378.0}),
        "chung2022_knee_reduced": ("torch:score-mri", preset_flags("chung2022-fastmri-knee-320", image_size=32, nf=16)),
        "chung2023_aapm_reduced": ("torch:diffusion-mbir", preset_flags("chung2023-aapm-256", image_size=32, nf=32)),
        # DDPM blocks with FIR resampling but no resampling convolutions (score_sde_pytorch cannot run
        # its fused FIR convolutions nor, with current torch, its nearest-neighbour upsampling: the Flax
        # variants cover those), input pyramid concatenated, unconditional, no skip rescaling, relu, 2 channels
        "ncsnpp_variant_torch": ("torch:score-sde", {**base, "image_size": 16, "num_channels": 2, "nf": 16, "ch_mult": [1, 2, 2],
                                                     "num_res_blocks": 1, "attn_resolutions": [8], "resblock_type": "ddpm",
                                                     "resamp_with_conv": False, "progressive_combine": "cat",
                                                     "conditional": False, "skip_rescale": False, "nonlinearity": "relu"}),
        "song2022_lidc_reduced": ("flax", preset_flags("song2022-lidc-320", image_size=64, nf=16, attn_resolutions=[4])),
        "song2022_brats_reduced": ("flax", preset_flags("song2022-brats-240", image_size=48, nf=16, attn_resolutions=[6])),
        # DDPM blocks with FIR-fused resampling convolutions, residual pyramids both ways (the fused
        # upsampling convolution that score_sde_pytorch cannot run), positional embedding, centred
        # data, elu, no skip rescaling, 2 channels
        "ncsnpp_variant_flax": ("flax", {**base, "image_size": 16, "num_channels": 2, "centered": True, "nf": 16,
                                         "ch_mult": [1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [8],
                                         "resblock_type": "ddpm", "progressive": "residual", "progressive_input": "residual",
                                         "embedding_type": "positional", "skip_rescale": False, "nonlinearity": "elu",
                                         "num_scales": 100}),
        # BigGAN blocks without FIR (nearest / average resampling), output and input pyramids
        # without FIR, concatenation, unconditional, no sigma scaling, leaky relu, 3 channels
        "ncsnpp_variant_flax_plain": ("flax", {**base, "image_size": 16, "num_channels": 3, "nf": 16, "ch_mult": [1, 2, 1],
                                               "num_res_blocks": 2, "attn_resolutions": [16], "fir": False,
                                               "progressive_combine": "cat", "conditional": False, "scale_by_sigma": False,
                                               "nonlinearity": "lrelu"}),
    }


# ----------------------------------------------------------------------------------- shared pieces
def reference_inputs(seed: int, shape: tuple[int, ...], sigmas) -> torch.Tensor:
    """Images ``clip(0.5 + 0.3 n, 0, 1) + sigma n'`` of ``shape`` ``(B, C, H, W)`` (one sigma per image)."""
    g = torch.Generator().manual_seed(int(seed))
    x0 = (0.5 + 0.3 * torch.randn(shape, generator=g)).clamp(0, 1)
    return x0 + torch.as_tensor(sigmas, dtype=torch.float32)[:, None, None, None] * torch.randn(shape, generator=g)


def table_sigmas(flags: dict, labels) -> list[float]:
    """The positional embedding's sigmas of ``labels``: score_sde's geometric table in float32."""
    table = np.exp(np.linspace(np.log(flags["sigma_max"]), np.log(flags["sigma_min"]), flags["num_scales"])).astype(np.float32)
    return [float(table[int(i)]) for i in labels]


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def ml_config(flags: dict, *, torch_device: bool):
    """An ml_collections config holding ``flags`` where score_sde reads them."""
    import ml_collections  # noqa: PLC0415 - a reference's dependency, in the side environment

    config = ml_collections.ConfigDict()
    if torch_device:
        config.device = torch.device("cpu")
    config.training = ml_collections.ConfigDict({"continuous": True, "sde": "vesde"})
    config.data = ml_collections.ConfigDict({k: flags[k] for k in NCSNPP_KEYS})
    model = {k: v for k, v in flags.items() if k not in NCSNPP_KEYS}
    model.update(name="ncsnpp", dropout=0.0, fourier_scale=16, init_scale=0.0, ema_rate=0.999)
    model["ch_mult"] = tuple(model["ch_mult"])
    model["attn_resolutions"] = tuple(model["attn_resolutions"])
    config.model = ml_collections.ConfigDict(model)
    config.optim = ml_collections.ConfigDict({"optimizer": "Adam", "lr": 2e-4, "beta1": 0.9, "eps": 1e-8, "weight_decay": 0})
    return config


def _forget(prefixes=("models", "op", "sde_lib", "utils", "configs")) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in prefixes]:
        del sys.modules[name]


def import_torch_reference(clone: Path):
    """``(models.utils, models.ema)`` of a score_sde_pytorch-style clone, its CUDA kernels not compiled
    (their CPU path runs)."""
    import torch.utils.cpp_extension as ext  # noqa: PLC0415

    ext.load = lambda *args, **kwargs: None  # op/ builds CUDA kernels at import; upfirdn2d uses its native path on CPU
    _forget()
    sys.path.insert(0, str(clone))
    try:
        ncsnpp = importlib.import_module("models.ncsnpp")  # registers the model
        del ncsnpp
        return importlib.import_module("models.utils"), importlib.import_module("models.ema")
    finally:
        sys.path.remove(str(clone))


def import_flax_reference(clone: Path):
    """score_inverse_problems' ``models.ncsnpp`` module (Flax), with TensorFlow and ``flax.optim`` stubbed."""
    import flax  # noqa: PLC0415 - the side environment
    from flax.training import checkpoints  # noqa: F401, PLC0415 - imported before tensorflow is stubbed

    sys.modules.setdefault("tensorflow", types.ModuleType("tensorflow"))
    if not hasattr(flax, "optim"):
        flax.optim = types.SimpleNamespace(Optimizer=object)
        sys.modules["flax.optim"] = flax.optim
    _forget()
    sys.path.insert(0, str(clone))
    try:
        return importlib.import_module("models.ncsnpp")
    finally:
        sys.path.remove(str(clone))


def _fill_rule(kind: str, pname: str, shape: tuple[int, ...]) -> dict:
    """Seeded fill: norm scales ~ 1 + 0.1 N, biases 0.1 N, kernels N / sqrt(fan in), Fourier
    frequencies 16 N (score_sde's scale)."""
    if kind == "fourier":
        return {"mean": 0.0, "std": 16.0}
    if kind == "norm_scale":
        return {"mean": 1.0, "std": 0.1}
    if len(shape) == 1:
        return {"mean": 0.0, "std": 0.1}
    fan_in = shape[0] if kind == "in_out" else (math.prod(shape[:3]) if kind == "hwio" else math.prod(shape[1:]))
    return {"mean": 0.0, "std": 1.0 / math.sqrt(fan_in)}


# ------------------------------------------------------------------------------------- PyTorch cases
def torch_checkpoint(flags: dict, mutils, ema_module, seed: int, rule_of_module):
    """``(model, checkpoint dict, slots, skeleton, tensors)``: score_sde_pytorch's NCSN++ of ``flags``
    with seeded weights, its EMA near them, in score_sde's checkpoint container."""
    config = ml_config(flags, torch_device=True)
    model = mutils.create_model(config)  # DataParallel: "module." names, as score_sde trains
    ema = ema_module.ExponentialMovingAverage(model.parameters(), decay=config.model.ema_rate)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr, betas=(config.optim.beta1, 0.999),
                                 eps=config.optim.eps, weight_decay=config.optim.weight_decay)
    saved = {"optimizer": optimizer.state_dict(), "model": model.state_dict(), "ema": ema.state_dict(), "step": 4321}
    saved["ema"]["num_updates"] = 4321
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    model_rule = rule_of_module(model, "/model/")
    model_slot: dict[str, int] = {}

    def rule(path, tensor, slots):
        if path.startswith("/model/"):
            model_slot[path.removeprefix("/model/")] = len(slots)
            return model_rule(path, tensor, slots)
        if path.startswith("/ema/shadow_params/"):  # the EMA: its parameter's weights, perturbed
            base = model_slot[trainable[int(path.rsplit("/", 1)[1])]]
            return {"mean": 0.0, "std": 0.2 * slots[base]["std"], "base": base}
        raise TypeError(f"unexpected tensor at {path}")

    return model, ema, optimizer, saved, rule


def torch_case(script, out: Path, case: str, flags: dict, clone: Path, repository: str, seed: int) -> dict:
    mutils, ema_module = import_torch_reference(clone)
    model, ema, optimizer, saved, rule = torch_checkpoint(flags, mutils, ema_module, seed, script.module_rule)
    slots: list[dict] = []
    skeleton = script.skeletonise(saved, slots, rule)
    tensors = script.fill(slots, seed)
    checkpoint = script.materialise(skeleton, tensors)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint_1.pth"
        torch.save(checkpoint, path)
        loaded = torch.load(path, map_location="cpu")  # as score_sde's utils.restore_checkpoint, then evaluation:
        optimizer.load_state_dict(loaded["optimizer"])
        model.load_state_dict(loaded["model"], strict=False)
        ema.load_state_dict(loaded["ema"])
        ema.copy_to(model.parameters())
    model.eval()
    shape = (len(SIGMAS), flags["num_channels"], flags["image_size"], flags["image_size"])
    x = reference_inputs(seed, shape, SIGMAS)
    with torch.no_grad():
        out_raw = model(x, torch.tensor(SIGMAS))
    record = {"format": "ncsnpp", "container": "torch", "flags": flags, "seed": seed, "slots": slots, "skeleton": skeleton,
              "sha256": script.digest(tensors), "reference": f"{repository} models/ncsnpp.py NCSNpp (score_sde_pytorch, EMA weights)",
              "parameters": sum(p.numel() for p in model.parameters()), "sigmas": list(SIGMAS), "input_seed": seed}
    save_compact(out, case, record, {"out_raw": out_raw})
    print(f"{case}: {record['parameters']} parameters, {len(slots)} tensors ({repository})")
    return record


def save_compact(out: Path, case: str, record: dict, arrays: dict) -> None:
    """The recipe with one line per slot (kilobytes, not the weights), and the reference outputs."""
    lines = []
    for key, value in record.items():
        if key in ("slots", "params") and isinstance(value, list):
            rows = [{k: v for k, v in row.items() if k != "path"} if isinstance(row, dict) else row for row in value]
            body = ",\n  ".join(json.dumps(v, separators=(",", ":")) for v in rows)
            lines.append(f'"{key}": [\n  {body}\n ]')
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value, separators=(',', ':'))}")
    (out / f"{case}.json").write_text("{\n " + ",\n ".join(lines) + "\n}\n")
    np.savez_compressed(out / f"{case}.npz", **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})


# ---------------------------------------------------------------------------------------- Flax cases
def flax_slots(params: list) -> list[dict]:
    """A Flax recipe's slots: its parameters (``[path, shape, mean, std]``, the training weights),
    then the EMA of each (the weights plus ``0.2 std`` noise)."""
    slots = [{"shape": list(shape), "mean": mean, "std": std} for _, shape, mean, std in params]
    return slots + [{"shape": list(shape), "mean": 0.0, "std": 0.2 * std, "base": i} for i, (_, shape, _, std) in enumerate(params)]


def flax_state(record: dict, tensors: list[torch.Tensor]) -> dict:
    """score_sde's Flax ``State`` as ``flax.serialization.to_state_dict`` gives it, from a recipe:
    ``optimizer`` (``flax.optim.Adam``: the training weights, zero moments, the step), ``lr``,
    ``model_state``, ``ema_rate``, ``params_ema``, ``rng``."""
    n = len(record["params"])

    def tree(values) -> dict:
        root: dict = {}
        for (path, *_), value in zip(record["params"], values):
            node = root
            *parents, leaf = path.split("/")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return root

    train = [t.numpy() for t in tensors[:n]]
    ema = [t.numpy() for t in tensors[n:]]
    moments = [{"grad_ema": np.zeros_like(t), "grad_sq_ema": np.zeros_like(t)} for t in train]
    step = int(record["step"])
    return {
        "step": step,
        "optimizer": {"target": tree(train), "state": {"step": np.asarray(step, dtype=np.int32), "param_states": tree(moments)}},
        "lr": 2e-4,
        "model_state": {},
        "ema_rate": 0.999,
        "params_ema": tree(ema),
        "rng": np.asarray([0, int(record["seed"]) % 2**32], dtype=np.uint32),
    }


def msgpack_bytes(obj) -> bytes:
    """``flax.serialization.msgpack_serialize(obj)`` for trees of dicts (keys sorted, as JAX's tree
    utilities leave them), numbers, strings, bytes and numpy arrays (Flax's extension type 1;
    numpy scalars type 3), written from the msgpack specification (no chunking: arrays < 1 GiB)."""
    out = bytearray()

    def header(n: int, small: int | None, limit: int | None, codes: tuple[int, int, int]) -> None:
        if small is not None and n < limit:
            out.append(small | n)
        elif n < 2**8 and codes[0]:
            out.extend(bytes([codes[0], n]))
        elif n < 2**16:
            out.extend(bytes([codes[1]]) + struct.pack(">H", n))
        else:
            out.extend(bytes([codes[2]]) + struct.pack(">I", n))

    def ext(code: int, payload: bytes) -> None:
        fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
        if len(payload) in fixed:
            out.append(fixed[len(payload)])
        else:
            header(len(payload), None, None, (0xC7, 0xC8, 0xC9))
        out.extend(struct.pack(">b", code) + payload)

    def ndarray(a: np.ndarray) -> bytes:
        return msgpack_bytes([list(a.shape), a.dtype.name, a.tobytes("C")])

    def value(v) -> None:
        if v is None:
            out.append(0xC0)
        elif isinstance(v, bool):
            out.append(0xC3 if v else 0xC2)
        elif isinstance(v, int):
            if 0 <= v < 128:
                out.append(v)
            elif -32 <= v < 0:
                out.append(v & 0xFF)
            elif v >= 0:
                for code, fmt, top in ((0xCC, ">B", 2**8), (0xCD, ">H", 2**16), (0xCE, ">I", 2**32), (0xCF, ">Q", 2**64)):
                    if v < top:
                        out.extend(bytes([code]) + struct.pack(fmt, v))
                        break
            else:
                for code, fmt, low in ((0xD0, ">b", -2**7), (0xD1, ">h", -2**15), (0xD2, ">i", -2**31), (0xD3, ">q", -2**63)):
                    if v >= low:
                        out.extend(bytes([code]) + struct.pack(fmt, v))
                        break
        elif isinstance(v, float):
            out.extend(b"\xcb" + struct.pack(">d", v))
        elif isinstance(v, str):
            data = v.encode()
            header(len(data), 0xA0, 32, (0xD9, 0xDA, 0xDB))
            out.extend(data)
        elif isinstance(v, bytes):
            header(len(v), None, None, (0xC4, 0xC5, 0xC6))
            out.extend(v)
        elif isinstance(v, (list, tuple)):
            header(len(v), 0x90, 16, (0, 0xDC, 0xDD))
            for item in v:
                value(item)
        elif isinstance(v, dict):
            header(len(v), 0x80, 16, (0, 0xDE, 0xDF))
            for key in sorted(v):
                value(key)
                value(v[key])
        elif isinstance(v, np.ndarray):
            ext(1, ndarray(v))
        elif isinstance(v, np.generic):
            ext(3, ndarray(np.asarray(v)))
        else:
            raise TypeError(f"cannot write a {type(v).__name__}")

    value(obj)
    return bytes(out)


def flax_params(flags: dict, clone: Path):
    """``(model, [(path, shape)...])``: the Flax NCSN++ of ``flags`` and its parameter tree's leaves."""
    import jax  # noqa: PLC0415 - the side environment
    import jax.numpy as jnp  # noqa: PLC0415
    from flax import traverse_util  # noqa: PLC0415

    ncsnpp = import_flax_reference(clone)
    model = ncsnpp.NCSNpp(config=ml_config(flags, torch_device=False))
    s, c = flags["image_size"], flags["num_channels"]
    label = jnp.ones((1,)) if flags["embedding_type"] == "fourier" else jnp.zeros((1,), dtype=jnp.int32)
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
                                                jnp.zeros((1, s, s, c)), label, train=False))["params"]
    leaves = traverse_util.flatten_dict(jax.tree_util.tree_map(lambda a: a.shape, shapes), sep="/")
    return model, sorted((k, tuple(v)) for k, v in leaves.items())


def _flax_kind(path: str, shape: tuple[int, ...]) -> str:
    leaf = path.rsplit("/", 1)[-1]
    if path.startswith("GaussianFourierProjection"):
        return "fourier"
    if leaf == "scale":
        return "norm_scale"
    if len(shape) == 4:
        return "hwio"
    return "in_out"  # Dense kernels and NIN W are (in, out)


def flax_apply(model, params_ema, x: torch.Tensor, cond) -> torch.Tensor:
    import jax.numpy as jnp  # noqa: PLC0415

    y = model.apply({"params": params_ema}, jnp.asarray(x.permute(0, 2, 3, 1).numpy()), cond, train=False)
    return torch.from_numpy(np.array(y)).permute(0, 3, 1, 2).contiguous()


def flax_case(script, out: Path, case: str, flags: dict, clone: Path, seed: int) -> dict:
    """A Flax checkpoint of ``flags`` as a recipe, and the Flax network's outputs with its ``params_ema``."""
    import jax.numpy as jnp  # noqa: PLC0415
    from flax import serialization  # noqa: PLC0415

    t0 = time.perf_counter()
    model, leaves = flax_params(flags, clone)
    params = [[path, list(shape), *_fill_rule(_flax_kind(path, shape), "", shape).values()] for path, shape in leaves]
    record = {"format": "ncsnpp", "container": "flax", "flags": flags, "seed": seed, "step": 101000, "params": params}
    tensors = script.fill(flax_slots(params), seed)
    state = flax_state(record, tensors)
    data = serialization.msgpack_serialize(state)
    if msgpack_bytes(state) != data:
        raise SystemExit(f"{case}: msgpack_bytes does not reproduce Flax's serialisation")
    restored = serialization.msgpack_restore(data)  # as checkpoints.restore_checkpoint reads the file
    positional = flags["embedding_type"] == "positional"
    labels = [0, flags["num_scales"] // 3, flags["num_scales"] - 1] if positional else None
    sigmas = table_sigmas(flags, labels) if positional else list(SIGMAS)
    x = reference_inputs(seed, (3, flags["num_channels"], flags["image_size"], flags["image_size"]), sigmas)
    cond = jnp.asarray(labels, dtype=jnp.int32) if positional else jnp.asarray(sigmas, dtype=jnp.float32)
    out_raw = flax_apply(model, restored["params_ema"], x, cond)
    record.update(sha256=script.digest(tensors), file_sha256=hashlib.sha256(data).hexdigest(), file_bytes=len(data),
                  reference="yang-song/score_inverse_problems models/ncsnpp.py NCSNpp (Flax), params_ema",
                  parameters=sum(math.prod(s) for _, s in leaves), sigmas=sigmas, labels=labels, input_seed=seed)
    save_compact(out, case, record, {"out_raw": out_raw})
    print(f"{case}: {record['parameters']} parameters, {len(leaves)} tensors, {len(data)} bytes (Flax; "
          f"{time.perf_counter() - t0:.0f} s)")
    return record


# --------------------------------------------------------------------------- published, full size
def tensor_digest(shapes: dict[str, tuple[int, ...]]) -> str:
    """sha256 of the sorted ``name shape`` lines of a network's tensors."""
    return hashlib.sha256("\n".join(f"{k} {tuple(v)}" for k, v in sorted(shapes.items())).encode()).hexdigest()


def full_size(script, name: str, preset, clone: Path, reference: str, seed: int, work: Path) -> dict:
    """The published configuration at full width and size: the reference network with random weights
    saved in its native container, converted with ``--preset name``, ``D(x, sigma)`` compared."""
    from medrecon.priors.convert import convert_checkpoint  # noqa: PLC0415
    from medrecon.priors.hub import load_prior  # noqa: PLC0415

    flags = preset.flags
    t0 = time.perf_counter()
    s, c = flags["image_size"], flags["num_channels"]
    sigmas = [0.5]
    x = reference_inputs(seed, (1, c, s, s), sigmas)
    path = work / f"{name}.ckpt"
    if reference == "flax":
        from flax import serialization  # noqa: PLC0415

        model, leaves = flax_params(flags, clone)
        params = [[p, list(sh), *_fill_rule(_flax_kind(p, sh), "", sh).values()] for p, sh in leaves]
        record = {"params": params, "step": 101000, "seed": seed}
        state = flax_state(record, script.fill(flax_slots(params), seed))
        path.write_bytes(serialization.msgpack_serialize(state))
        ref_shapes = {p: tuple(sh) for p, sh in leaves}
        import jax.numpy as jnp  # noqa: PLC0415

        raw = flax_apply(model, serialization.msgpack_restore(path.read_bytes())["params_ema"], x, jnp.asarray(sigmas))
    else:
        mutils, ema_module = import_torch_reference(clone)
        model, ema, optimizer, saved, rule = torch_checkpoint(flags, mutils, ema_module, seed, script.module_rule)
        slots: list[dict] = []
        skeleton = script.skeletonise(saved, slots, rule)
        torch.save(script.materialise(skeleton, script.fill(slots, seed)), path)
        loaded = torch.load(path, map_location="cpu")
        model.load_state_dict(loaded["model"], strict=False)
        ema.load_state_dict(loaded["ema"])
        ema.copy_to(model.parameters())
        model.eval()
        ref_shapes = {k.removeprefix("module."): tuple(v.shape) for k, v in model.state_dict().items()}
        ref_shapes.pop("sigmas")
        with torch.no_grad():
            raw = model(x, torch.tensor(sigmas))
    reference_seconds = time.perf_counter() - t0
    prior = load_prior(convert_checkpoint(path, work / name, fmt="ncsnpp", preset=name, overwrite=True))
    t1 = time.perf_counter()
    with torch.no_grad():
        ours_raw = prior.network(x, torch.tensor(sigmas))
        ours_d = prior.denoiser(x, torch.tensor(sigmas))
    reference_d = x + torch.tensor(sigmas)[:, None, None, None] ** 2 * raw
    result = {"input": list(x.shape), "sigmas": sigmas, "max_relative_difference_raw": relative_difference(ours_raw, raw),
              "max_relative_difference_D": relative_difference(ours_d, reference_d),
              "reference_seconds": round(reference_seconds, 1), "medrecon_seconds": round(time.perf_counter() - t1, 1),
              "tensors_sha256": tensor_digest(ref_shapes), "tensor_count": len(ref_shapes)}
    print(f"{name} (full size): raw {result['max_relative_difference_raw']:.2e}, D {result['max_relative_difference_D']:.2e}")
    return result


def reference_tensors(flags: dict, clone: Path, reference: str) -> dict[str, tuple[int, ...]]:
    """The reference network's tensors (Flax: the parameter tree's "/" names; PyTorch: the state dict
    without "module." and the buffer ``sigmas``) and shapes."""
    if reference == "flax":
        return dict(flax_params(flags, clone)[1])
    mutils, _ = import_torch_reference(clone)
    model = mutils.create_model(ml_config(flags, torch_device=True))
    shapes = {k.removeprefix("module."): tuple(v.shape) for k, v in model.state_dict().items()}  # score-MRI's is no DataParallel
    return {k: v for k, v in shapes.items() if k != "sigmas"}


def published_entry(name: str, preset, config_clone: Path | None, relpath: str, repository: str, model_clone: Path,
                    reference: str, script) -> dict:
    """The preset's flags checked against its repository's config file (with ``config_clone``), and
    the reference network's tensors against the ones the converter expects (their digest recorded)."""
    from medrecon.priors.convert import expected_source_shapes, read_flags  # noqa: PLC0415

    flags = preset.flags
    checked = None
    if config_clone is not None:
        cfg = script.load_config(config_clone, relpath)
        from_file = {k: cfg.data[k] for k in NCSNPP_KEYS}
        from_file.update({k: cfg.model[k] for k in flags if k not in from_file})
        norm = {k: list(v) if isinstance(v, tuple) else v for k, v in from_file.items()}
        differ = {k: (v, flags[k]) for k, v in norm.items() if v != flags[k]}
        if differ:
            raise SystemExit(f"{name}: the preset differs from {relpath}: {differ}")
        checked = f"{repository} {relpath}"
    container = "flax" if reference == "flax" else "torch"
    expected = expected_source_shapes("ncsnpp", read_flags("ncsnpp", flags), container)
    found = reference_tensors(flags, model_clone, reference)
    if found != expected:
        raise SystemExit(f"{name}: the converter expects other tensors than the reference has: "
                         f"{sorted(set(found) ^ set(expected))[:5]} or shapes differ")
    print(f"{name}: the converter expects exactly the reference's {len(found)} tensors ({container})")
    return {"format": "ncsnpp", "container": container, "flags_checked_against": checked,
            "reference": f"{'yang-song/score_inverse_problems (Flax)' if container == 'flax' else repository + ' (score_sde_pytorch)'} "
                         "models/ncsnpp.py NCSNpp of the published config",
            "parameters": sum(math.prod(s) for s in found.values()), "tensor_count": len(found),
            "tensors_sha256": tensor_digest(found)}
