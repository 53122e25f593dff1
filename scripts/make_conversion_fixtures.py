"""Write the fixtures of tests/medrecon/test_convert.py from the reference implementations.

    python scripts/make_conversion_fixtures.py --guided-diffusion CLONE --score-sde CLONE \\
        [--dds CLONE] [--score-inverse-problems CLONE] [--score-mri CLONE] [--out DIR]

``--guided-diffusion`` and ``--score-sde`` are local clones of openai/guided-diffusion (MIT) and
yang-song/score_sde_pytorch (Apache-2.0). Their network classes are imported from the clones
(nothing of them is copied into medrecon), instantiated in tiny configurations that use every
feature the converter maps, filled with seeded random weights, saved in their native container,
reloaded the way their own code loads them and evaluated on fixed inputs. The fixtures
(``DIR``, default tests/fixtures/conversion/) are, per case:

- ``<case>.json``: the flags, and the checkpoint as a recipe: its container with each tensor
  replaced by a slot (``{"__tensor__": i}``), each slot's shape and fill rule, the seed, and the
  sha256 of the filled tensors. :func:`fill` and :func:`materialise` rebuild the checkpoint
  exactly; the tests save it with ``torch.save`` and convert it. (Networks wide enough for
  NCSN++'s attention to map, 128 channels, hold 20 MB of float32 weights with their EMA: a
  recipe keeps the fixtures to kilobytes.)
- ``<case>.npz``: inputs and the reference network's outputs: ``x_raw``, ``t_raw`` (timesteps
  for ADM, sigmas for NCSN++), ``out_raw``; for ADM also the denoiser inputs ``x``, ``sigma``,
  the fractional timestep ``t`` of each sigma on the reference schedule (log-sigma
  interpolation) and the reference epsilon ``eps`` at ``sqrt(abar) x``.

The other clones are the repositories of the published checkpoints (HJ-harry/DDS,
yang-song/score_inverse_problems, HJ-harry/score-MRI): their config files are read and compared
with medrecon's presets, and the full published architectures are instantiated with random
weights from the reference classes (DDS's network is guided-diffusion's ``UNetModel``; the NCSN++
configs are built with score_sde_pytorch's ``NCSNpp``) to count their parameters and check that
the conversion covers every tensor (ADM: also that the converted network computes the same, on a
64x64 input). ``published.json`` records the results and, for the ADM presets, the reference
tensor names and shapes (the tests compare them with what the converter expects).

Install the references' small dependencies first (``pip install ml_collections pyyaml``);
score_sde's CUDA kernels are not built (their CPU path is used).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SEED = 20240611

ADM_CASES = {
    # every mapped feature: attention at two levels (head width 16, legacy qkv order), scale-shift
    # norm, residual up/down-sampling, learned sigma, linear schedule
    "adm_tiny": {
        "image_size": 16, "in_channels": 1, "num_channels": 32, "channel_mult": [1, 2, 2], "num_res_blocks": 2,
        "attention_resolutions": [8, 4], "num_heads": 4, "num_head_channels": 16, "num_heads_upsample": -1,
        "learn_sigma": True, "use_scale_shift_norm": True, "resblock_updown": True, "use_new_attention_order": False,
        "class_cond": False, "noise_schedule": "linear", "diffusion_steps": 1000,
    },
    # the other branches: num_heads heads, the new qkv order, convolutional resampling, additive
    # time embedding, no learned sigma, two image channels, the cosine schedule
    "adm_variant": {
        "image_size": 16, "in_channels": 2, "num_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1,
        "attention_resolutions": [8], "num_heads": 2, "num_head_channels": -1, "num_heads_upsample": -1,
        "learn_sigma": False, "use_scale_shift_norm": False, "resblock_updown": False, "use_new_attention_order": True,
        "class_cond": False, "noise_schedule": "cosine", "diffusion_steps": 1000,
    },
}
# NCSN++ as score_sde's published VE configs build it (output_skip, input_skip, sum, BigGAN blocks,
# FIR, Fourier features), three levels so that the output pyramid is upsampled and added inside
# the network, attention on 128 channels at 4x4 (where diffusers' attention blocks map) and in
# the middle block
NCSNPP_CASE = {
    "image_size": 16, "num_channels": 3, "centered": False, "nf": 32, "ch_mult": [1, 1, 4], "num_res_blocks": 1,
    "attn_resolutions": [4], "resblock_type": "biggan", "progressive": "output_skip",
    "progressive_input": "input_skip", "progressive_combine": "sum", "fir": True, "fir_kernel": [1, 3, 3, 1],
    "skip_rescale": True, "embedding_type": "fourier", "conditional": True, "scale_by_sigma": True,
    "attention_type": "ddpm", "normalization": "GroupNorm", "nonlinearity": "swish", "conv_size": 3,
    "sigma_min": 0.01, "sigma_max": 378.0,
}


# ----------------------------------------------------------------------------- recipes (tests use these)
def fill(slots: list[dict], seed: int) -> list[torch.Tensor]:
    """The tensors of a recipe: slot ``i`` is ``mean + std * N(0, 1)`` of its shape (one seeded
    generator, slots in order), plus slot ``base`` where it names one (an EMA near its model)."""
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for slot in slots:
        t = torch.randn(tuple(slot["shape"]), generator=g, dtype=torch.float32) * float(slot["std"]) + float(slot["mean"])
        if slot.get("base") is not None:
            t = t + out[slot["base"]]
        out.append(t)
    return out


def digest(tensors: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def materialise(skeleton, tensors: list[torch.Tensor]):
    """The checkpoint object of a recipe's container with its slots filled."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {"__tensor__"}:
            return tensors[skeleton["__tensor__"]]
        if set(skeleton) == {"__tuple__"}:
            return tuple(materialise(v, tensors) for v in skeleton["__tuple__"])
        return {k: materialise(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [materialise(v, tensors) for v in skeleton]
    return skeleton


def skeletonise(obj, slots: list[dict], rule):
    """``obj`` with each tensor replaced by a slot (``rule(path, tensor, slots)`` gives its fill)."""

    def walk(o, path):
        if isinstance(o, torch.Tensor):
            slots.append({"path": path, "shape": list(o.shape), **rule(path, o, slots)})
            return {"__tensor__": len(slots) - 1}
        if isinstance(o, dict):
            if not all(isinstance(k, str) for k in o):
                raise TypeError(f"non-string keys at {path}")
            return {k: walk(v, f"{path}/{k}") for k, v in o.items()}
        if isinstance(o, tuple):
            return {"__tuple__": [walk(v, f"{path}/{i}") for i, v in enumerate(o)]}
        if isinstance(o, list):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(o)]
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        raise TypeError(f"{type(o).__name__} at {path}")

    return walk(obj, "")


def module_rule(model: torch.nn.Module, prefix: str = ""):
    """Fill rules by the owning module's type: GroupNorm weights ~ 1 + 0.1 N, biases 0.1 N,
    matrices and kernels N / sqrt(fan in) (NCSN++'s ``NIN.W`` is ``(in, out)``), the Fourier
    frequencies 16 N (score_sde's scale), buffers 1."""
    kinds = {}
    for mname, module in model.named_modules():
        for pname, _ in module.named_parameters(recurse=False):
            kinds[f"{mname}.{pname}" if mname else pname] = (type(module).__name__, pname)

    def rule(path, tensor, slots):
        name = path.removeprefix(prefix)
        kind, pname = kinds.get(name, ("buffer", ""))
        if kind == "buffer":
            return {"mean": 1.0, "std": 0.0}
        if kind == "GaussianFourierProjection":
            return {"mean": 0.0, "std": 16.0}
        if "GroupNorm" in kind and pname == "weight":
            return {"mean": 1.0, "std": 0.1}
        if tensor.ndim == 1:
            return {"mean": 0.0, "std": 0.1}
        fan_in = tensor.shape[0] if kind == "NIN" else math.prod(tensor.shape[1:])
        return {"mean": 0.0, "std": 1.0 / math.sqrt(fan_in)}

    return rule


def save_case(out: Path, case: str, record: dict, arrays: dict) -> None:
    (out / f"{case}.json").write_text(json.dumps(record, indent=1) + "\n")
    np.savez_compressed(out / f"{case}.npz", **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})


# -------------------------------------------------------------------------------------------- ADM
def import_guided_diffusion(clone: Path):
    sys.path.insert(0, str(clone))
    from guided_diffusion import gaussian_diffusion, unet

    return unet, gaussian_diffusion


def adm_model(unet, flags: dict):
    """guided-diffusion's UNetModel with the arguments its ``create_model`` passes for these flags."""
    return unet.UNetModel(
        image_size=flags["image_size"], in_channels=flags["in_channels"], model_channels=flags["num_channels"],
        out_channels=flags["in_channels"] * (2 if flags["learn_sigma"] else 1), num_res_blocks=flags["num_res_blocks"],
        attention_resolutions=tuple(flags["image_size"] // r for r in flags["attention_resolutions"]),
        dropout=0.0, channel_mult=tuple(flags["channel_mult"]), num_classes=1000 if flags["class_cond"] else None,
        use_checkpoint=False, use_fp16=False, num_heads=flags["num_heads"], num_head_channels=flags["num_head_channels"],
        num_heads_upsample=flags["num_heads_upsample"], use_scale_shift_norm=flags["use_scale_shift_norm"],
        resblock_updown=flags["resblock_updown"], use_new_attention_order=flags["use_new_attention_order"],
    ).eval()


def adm_case(out: Path, case: str, flags: dict, unet, diffusion, seed: int) -> None:
    model = adm_model(unet, flags)
    slots: list[dict] = []
    skeleton = skeletonise(model.state_dict(), slots, module_rule(model, "/"))
    tensors = fill(slots, seed)
    checkpoint = materialise(skeleton, tensors)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        torch.save(checkpoint, path)
        model.load_state_dict(torch.load(path, map_location="cpu"))  # as guided-diffusion and DDS load it
    rng = np.random.default_rng(seed)
    c, s = flags["in_channels"], flags["image_size"]
    x_raw = torch.from_numpy(rng.standard_normal((3, c, s, s)).astype(np.float32))
    t_raw = torch.tensor([0.0, 17.25, 999.0])
    # the denoiser: sigma -> fractional timestep on the reference schedule (log-sigma interpolation)
    betas = diffusion.get_named_beta_schedule(flags["noise_schedule"], flags["diffusion_steps"])
    abar = np.cumprod(1.0 - betas)
    table = np.log(np.sqrt((1 - abar) / abar))
    sigma = np.array([0.3, 1.0, 4.0], dtype=np.float32)
    t = np.interp(np.log(sigma.astype(np.float64)), table, np.arange(len(table))).astype(np.float32)
    x = torch.from_numpy((0.5 + 0.3 * rng.standard_normal((3, c, s, s))).astype(np.float32))
    scale = torch.from_numpy(np.sqrt(1.0 / (1.0 + sigma.astype(np.float64) ** 2)).astype(np.float32))
    with torch.no_grad():
        out_raw = model(x_raw, t_raw)
        eps = model(x * scale[:, None, None, None], torch.from_numpy(t))
    record = {"format": "adm", "flags": flags, "seed": seed, "slots": slots, "skeleton": skeleton,
              "sha256": digest(tensors), "reference": "openai/guided-diffusion guided_diffusion/unet.py UNetModel",
              "parameters": sum(p.numel() for p in model.parameters())}
    save_case(out, case, record, {"x_raw": x_raw, "t_raw": t_raw, "out_raw": out_raw, "x": x, "sigma": sigma,
                                  "t": t, "eps": eps})
    print(f"{case}: {record['parameters']} parameters, {len(slots)} tensors")


# ----------------------------------------------------------------------------------------- NCSN++
def import_score_sde(clone: Path):
    """score_sde_pytorch's model modules, with its CUDA kernels not compiled (their CPU path runs)."""
    import torch.utils.cpp_extension as ext

    ext.load = lambda *args, **kwargs: None  # op/ builds CUDA kernels at import; upfirdn2d uses its native path on CPU
    sys.path.insert(0, str(clone))
    from models import ema, ncsnpp  # noqa: F401
    from models import utils as mutils

    return mutils, ema


def ncsnpp_config(flags: dict):
    """An ml_collections config holding ``flags`` where score_sde reads them."""
    import ml_collections

    config = ml_collections.ConfigDict()
    config.device = torch.device("cpu")
    config.training = ml_collections.ConfigDict({"continuous": True, "sde": "vesde"})
    config.data = ml_collections.ConfigDict({k: flags[k] for k in ("image_size", "num_channels", "centered")})
    model = {k: v for k, v in flags.items() if k not in config.data}
    model.update(name="ncsnpp", num_scales=1000, dropout=0.0, fourier_scale=16, init_scale=0.0,
                 resamp_with_conv=True, ema_rate=0.999)
    model["ch_mult"] = tuple(model["ch_mult"])
    model["attn_resolutions"] = tuple(model["attn_resolutions"])
    config.model = ml_collections.ConfigDict(model)
    config.optim = ml_collections.ConfigDict({"optimizer": "Adam", "lr": 2e-4, "beta1": 0.9, "eps": 1e-8, "weight_decay": 0})
    return config


def ncsnpp_case(out: Path, case: str, flags: dict, mutils, ema_module, seed: int) -> None:
    config = ncsnpp_config(flags)
    model = mutils.create_model(config)  # DataParallel: "module." names, as score_sde trains
    ema = ema_module.ExponentialMovingAverage(model.parameters(), decay=config.model.ema_rate)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr, betas=(config.optim.beta1, 0.999),
                                 eps=config.optim.eps, weight_decay=config.optim.weight_decay)
    # the dict of score_sde's utils.save_checkpoint (that module imports tensorflow)
    saved = {"optimizer": optimizer.state_dict(), "model": model.state_dict(), "ema": ema.state_dict(), "step": 4321}
    saved["ema"]["num_updates"] = 4321
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    model_rule = module_rule(model, "/model/")
    model_slot: dict[str, int] = {}

    def rule(path, tensor, slots):
        if path.startswith("/model/"):
            model_slot[path.removeprefix("/model/")] = len(slots)
            return model_rule(path, tensor, slots)
        if path.startswith("/ema/shadow_params/"):  # the EMA: its parameter's weights, perturbed
            base = model_slot[trainable[int(path.rsplit("/", 1)[1])]]
            return {"mean": 0.0, "std": 0.2 * slots[base]["std"], "base": base}
        raise TypeError(f"unexpected tensor at {path}")

    slots: list[dict] = []
    skeleton = skeletonise(saved, slots, rule)
    tensors = fill(slots, seed)
    checkpoint = materialise(skeleton, tensors)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint_1.pth"
        torch.save(checkpoint, path)
        loaded = torch.load(path, map_location="cpu")  # as score_sde's utils.restore_checkpoint, then evaluation:
        optimizer.load_state_dict(loaded["optimizer"])
        model.load_state_dict(loaded["model"], strict=False)
        ema.load_state_dict(loaded["ema"])
        ema.copy_to(model.parameters())
    model.eval()
    rng = np.random.default_rng(seed)
    c, s = flags["num_channels"], flags["image_size"]
    x_raw = torch.from_numpy(np.clip(0.5 + 0.3 * rng.standard_normal((3, c, s, s)), 0, 1).astype(np.float32))
    sigmas = torch.tensor([0.05, 1.0, 20.0])
    x_raw = x_raw + sigmas[:, None, None, None] * torch.from_numpy(rng.standard_normal((3, c, s, s)).astype(np.float32))
    with torch.no_grad():
        out_raw = model(x_raw, sigmas)
    record = {"format": "ncsnpp", "flags": flags, "seed": seed, "slots": slots, "skeleton": skeleton,
              "sha256": digest(tensors), "reference": "yang-song/score_sde_pytorch models/ncsnpp.py NCSNpp (EMA weights)",
              "parameters": sum(p.numel() for p in model.parameters())}
    save_case(out, case, record, {"x_raw": x_raw, "t_raw": sigmas, "out_raw": out_raw})
    print(f"{case}: {record['parameters']} parameters, {len(slots)} tensors")


# -------------------------------------------------------------------------------- published configs
def load_config(clone: Path, relpath: str):
    """``get_config()`` of a repository's ml_collections config file (its ``configs`` package first)."""
    for name in [m for m in sys.modules if m == "configs" or m.startswith("configs.")]:
        del sys.modules[name]
    sys.path.insert(0, str(clone))
    try:
        spec = importlib.util.spec_from_file_location(f"published_{abs(hash(relpath))}", clone / relpath)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_config()
    finally:
        sys.path.remove(str(clone))


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def published_adm(name: str, preset, dds: Path | None, unet, seed: int) -> dict:
    from medrecon.priors.convert import build, expected_source_shapes, read_flags
    from medrecon.priors.convert.adm import moves, unet_config
    from medrecon.priors.convert.tensors import map_tensors, target_shapes

    flags = preset.flags
    checked = None
    if dds is not None:
        import yaml

        yml = {"dds-aapm-256": "configs/vp/AAPM256.yml", "dds-fastmri-knee-320": "configs/vp/fastmri_knee_320_complex.yml"}[name]
        cfg = yaml.safe_load((dds / yml).read_text())
        from_file = {k: cfg["model"][k] for k in ("image_size", "in_channels", "num_channels", "num_res_blocks", "num_heads",
                                                  "num_head_channels", "num_heads_upsample", "learn_sigma",
                                                  "use_scale_shift_norm", "resblock_updown", "use_new_attention_order",
                                                  "class_cond")}
        from_file["attention_resolutions"] = [int(r) for r in str(cfg["model"]["attention_resolutions"]).split(",")]
        from_file["noise_schedule"] = cfg["diffusion"]["beta_schedule"]
        from_file["diffusion_steps"] = cfg["diffusion"]["num_diffusion_timesteps"]
        table = (dds / "guided_diffusion/script_util.py").read_text()
        size = flags["image_size"]
        if not re.search(rf"image_size == {size}\b.*\n\s*channel_mult = \(1, 1, 2, 2, 4, 4\)", table):
            raise SystemExit(f"{name}: DDS's create_model does not give channel_mult (1, 1, 2, 2, 4, 4) for {size}")
        from_file["channel_mult"] = [1, 1, 2, 2, 4, 4]
        differ = {k: (v, flags[k]) for k, v in from_file.items() if v != flags[k]}
        if differ:
            raise SystemExit(f"{name}: the preset differs from {yml}: {differ}")
        checked = f"HJ-harry/DDS {yml} and guided_diffusion/script_util.py"
    t0 = time.perf_counter()
    model = adm_model(unet, flags)
    reference = {k: list(v.shape) for k, v in model.state_dict().items()}
    parsed = read_flags("adm", flags)
    expected = {k: list(v) for k, v in expected_source_shapes("adm", parsed).items()}
    if expected != reference:
        raise SystemExit(f"{name}: the mapping does not cover the reference tensors: "
                         f"{sorted(set(reference) ^ set(expected))[:5]} or shapes differ")
    slots: list[dict] = []
    skeleton = skeletonise(model.state_dict(), slots, module_rule(model, "/"))
    model.load_state_dict(materialise(skeleton, fill(slots, seed)))
    shapes = target_shapes("UNet2DModel", unet_config(parsed))
    net = build(unet_config(parsed), map_tensors(model.state_dict(), moves(parsed, shapes), shapes))
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((1, flags["in_channels"], 64, 64)).astype(np.float32))
    t = torch.tensor([500.0])
    with torch.no_grad():
        diff = relative_difference(net(x, t).sample, model(x, t))
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, mapping covers all {len(reference)} "
          f"tensors, max relative difference {diff:.2e} on a 64x64 input ({time.perf_counter() - t0:.0f} s)")
    return {"format": "adm", "parameters": sum(p.numel() for p in model.parameters()), "flags_checked_against": checked,
            "reference": "openai/guided-diffusion UNetModel (DDS's guided_diffusion/unet.py differs only in gradient checkpointing)",
            "tensors": [[k, v] for k, v in reference.items()], "max_relative_difference_64x64": diff}


def published_ncsnpp(name: str, preset, clones: dict, mutils) -> dict:
    from medrecon.errors import InputError
    from medrecon.priors.convert import architecture

    files = {"song2022-lidc-320": ("score-inverse-problems", "configs/ve/ct2d_320_ncsnpp_continuous.py"),
             "song2022-brats-240": ("score-inverse-problems", "configs/ve/brats_ncsnpp_continuous.py"),
             "chung2022-fastmri-knee-320": ("score-mri", "configs/ve/fastmri_knee_320_ncsnpp_continuous.py")}
    repo, relpath = files[name]
    repositories = {"score-inverse-problems": "yang-song/score_inverse_problems", "score-mri": "HJ-harry/score-MRI"}
    flags = preset.flags
    checked = None
    if clones.get(repo) is not None:
        cfg = load_config(clones[repo], relpath)
        from_file = {k: cfg.data[k] for k in ("image_size", "num_channels", "centered")}
        from_file.update({k: cfg.model[k] for k in flags if k not in from_file})
        norm = {k: list(v) if isinstance(v, tuple) else v for k, v in from_file.items()}
        differ = {k: (v, flags[k]) for k, v in norm.items() if v != flags[k]}
        if differ:
            raise SystemExit(f"{name}: the preset differs from {relpath}: {differ}")
        checked = f"{repositories[repo]} {relpath}"
    model = mutils.create_model(ncsnpp_config(flags)).module
    try:
        architecture("ncsnpp", preset=name)
        refusal = None
    except InputError as exc:
        refusal = str(exc)
    count = sum(p.numel() for p in model.parameters())
    print(f"{name}: {count} parameters (score_sde_pytorch NCSNpp of the published config); {refusal}")
    return {"format": "ncsnpp", "parameters": count, "flags_checked_against": checked,
            "reference": "yang-song/score_sde_pytorch NCSNpp built from the published config", "refusal": refusal}


# ------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guided-diffusion", type=Path, required=True, help="a clone of openai/guided-diffusion")
    parser.add_argument("--score-sde", type=Path, required=True, help="a clone of yang-song/score_sde_pytorch")
    parser.add_argument("--dds", type=Path, help="a clone of HJ-harry/DDS (checks the DDS presets' flags)")
    parser.add_argument("--score-inverse-problems", type=Path, help="a clone of yang-song/score_inverse_problems")
    parser.add_argument("--score-mri", type=Path, help="a clone of HJ-harry/score-MRI")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "conversion")
    parser.add_argument("--skip-published", action="store_true", help="only the tiny cases")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    unet, diffusion = import_guided_diffusion(args.guided_diffusion)
    for i, (case, flags) in enumerate(ADM_CASES.items()):
        adm_case(args.out, case, flags, unet, diffusion, SEED + i)
    mutils, ema = import_score_sde(args.score_sde)
    ncsnpp_case(args.out, "ncsnpp_tiny", NCSNPP_CASE, mutils, ema, SEED + 10)
    if args.skip_published:
        return 0

    from medrecon.priors.convert.presets import PRESETS

    clones = {"score-inverse-problems": args.score_inverse_problems, "score-mri": args.score_mri}
    published = {}
    for name, preset in PRESETS.items():
        if preset.format == "adm":
            published[name] = published_adm(name, preset, args.dds, unet, SEED + 20)
        else:
            published[name] = published_ncsnpp(name, preset, clones, mutils)
    (args.out / "published.json").write_text(json.dumps(published, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
