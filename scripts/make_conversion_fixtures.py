"""Write the fixtures of tests/medrecon/priors/convert/test_convert.py from the reference implementations.

    python scripts/make_conversion_fixtures.py [--guided-diffusion CLONE] [--score-sde CLONE] \\
        [--score-inverse-problems CLONE] [--score-mri CLONE] [--diffusion-mbir CLONE] [--dds CLONE] \\
        [--full-size] [--skip-published] [--out DIR]

The clones are local copies of openai/guided-diffusion (MIT), yang-song/score_sde_pytorch
(Apache-2.0), yang-song/score_inverse_problems (the Flax NCSN++ of Song et al.'s LIDC and BraTS
priors), HJ-harry/score-MRI, HJ-harry/DiffusionMBIR and HJ-harry/DDS; each part runs where its
clone is given. Their network classes are imported from the clones (nothing of them is copied into
medrecon), instantiated in the configurations below, filled with seeded random weights, saved in
their native container, reloaded the way their own code loads them and evaluated on fixed inputs.
The Flax reference needs JAX, Flax and ml_collections, never dependencies of medrecon: run this
script from a side environment that has them and medrecon (e.g. ``python -m venv /tmp/fixtures;
/tmp/fixtures/bin/pip install -e . jax flax ml_collections pyyaml``). The fixtures (``DIR``,
default tests/fixtures/conversion/) are, per case:

- ``<case>.json``: the flags, and the checkpoint as a recipe: its container with each tensor
  replaced by a slot (``{"__tensor__": i}``; for Flax, the parameter tree's paths), each slot's
  shape and fill rule, the seed, and the sha256 of the filled tensors (for Flax also of the
  msgpack file, which :func:`ncsnpp_fixtures.msgpack_bytes` rebuilds byte for byte). :func:`fill`
  and :func:`materialise` rebuild the checkpoint exactly; the tests save it and convert it. (A
  recipe keeps the fixtures to kilobytes.)
- ``<case>.npz``: the reference network's outputs: ADM ``x_raw``, ``t_raw`` (timesteps),
  ``out_raw`` and the denoiser inputs ``x``, ``sigma``, the fractional timestep ``t`` of each sigma
  on the reference schedule (log-sigma interpolation) and the reference epsilon ``eps`` at
  ``sqrt(abar) x``; NCSN++ ``out_raw`` for the inputs :func:`ncsnpp_fixtures.reference_inputs`
  makes from the recorded seed and sigmas.

NCSN++ cases (:func:`ncsnpp_fixtures.cases`): the four published medical configurations at reduced
width and image size (the attention at the same level), and variants that exercise every other
switch. ``published.json`` records, for each preset, that its flags are the ones its repository's
config file states (the other clones are read for that), the reference tensors (ADM: names and
shapes; NCSN++: their count and digest) that the tests compare with what the converter expects,
and with ``--full-size`` the comparison at the published width and size: the reference network
with random weights, saved natively, converted with ``--preset`` and ``D(x, sigma)`` compared on
one image (minutes on a CPU).

Install the references' small dependencies first (``pip install ml_collections pyyaml``);
score_sde_pytorch's CUDA kernels are not built (their CPU path is used).
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


# ------------------------------------------------------------------------------------------- main
NCSNPP_SOURCES = {  # preset: (clone key of its config file, config file, repository, clone key of its model code, reference)
    "song2022-lidc-320": ("score_inverse_problems", "configs/ve/ct2d_320_ncsnpp_continuous.py",
                          "yang-song/score_inverse_problems", "score_inverse_problems", "flax"),
    "song2022-brats-240": ("score_inverse_problems", "configs/ve/brats_ncsnpp_continuous.py",
                           "yang-song/score_inverse_problems", "score_inverse_problems", "flax"),
    "chung2022-fastmri-knee-320": ("score_mri", "configs/ve/fastmri_knee_320_ncsnpp_continuous.py", "HJ-harry/score-MRI",
                                   "score_mri", "torch"),
    "chung2023-aapm-256": ("diffusion_mbir", "configs/ve/AAPM_256_ncsnpp_continuous.py", "HJ-harry/DiffusionMBIR",
                           "diffusion_mbir", "torch"),
}
TORCH_CLONES = {"score-sde": ("score_sde", "yang-song/score_sde_pytorch"), "score-mri": ("score_mri", "HJ-harry/score-MRI"),
                "diffusion-mbir": ("diffusion_mbir", "HJ-harry/DiffusionMBIR")}


def ncsnpp_module():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import ncsnpp_fixtures

    return ncsnpp_fixtures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guided-diffusion", type=Path, help="a clone of openai/guided-diffusion (the ADM cases)")
    parser.add_argument("--score-sde", type=Path, help="a clone of yang-song/score_sde_pytorch (NCSN++ PyTorch cases)")
    parser.add_argument("--score-inverse-problems", type=Path, help="a clone of yang-song/score_inverse_problems (Flax cases)")
    parser.add_argument("--score-mri", type=Path, help="a clone of HJ-harry/score-MRI")
    parser.add_argument("--diffusion-mbir", type=Path, help="a clone of HJ-harry/DiffusionMBIR")
    parser.add_argument("--dds", type=Path, help="a clone of HJ-harry/DDS (checks the DDS presets' flags)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "conversion")
    parser.add_argument("--cases", help="comma-separated cases to write (default: every case whose clone is given)")
    parser.add_argument("--skip-published", action="store_true", help="only the cases, not published.json")
    parser.add_argument("--full-size", action="store_true", help="also compare each published NCSN++ at full size")
    parser.add_argument("--presets", help="comma-separated presets to check (default: every preset whose clones are given)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    wanted = None if args.cases is None else set(args.cases.split(","))
    clones = {"score_sde": args.score_sde, "score_inverse_problems": args.score_inverse_problems, "score_mri": args.score_mri,
              "diffusion_mbir": args.diffusion_mbir}
    script = sys.modules[__name__]

    unet = None
    if args.guided_diffusion is not None:
        unet, diffusion = import_guided_diffusion(args.guided_diffusion)
        for i, (case, flags) in enumerate(ADM_CASES.items()):
            if wanted is None or case in wanted:
                adm_case(args.out, case, flags, unet, diffusion, SEED + i)
    nf = ncsnpp_module()
    for i, (case, (reference, flags)) in enumerate(nf.cases().items()):
        if wanted is not None and case not in wanted:
            continue
        if reference == "flax":
            if clones["score_inverse_problems"] is None:
                print(f"{case}: skipped (needs --score-inverse-problems)")
                continue
            nf.flax_case(script, args.out, case, flags, clones["score_inverse_problems"], SEED + 30 + i)
        else:
            key, repository = TORCH_CLONES[reference.removeprefix("torch:")]
            clone = clones[key] or clones["score_sde"]  # the forks' models/ncsnpp.py is score_sde_pytorch's
            if clone is None:
                print(f"{case}: skipped (needs --score-sde or --{key.replace('_', '-')})")
                continue
            nf.torch_case(script, args.out, case, flags, clone, repository if clones[key] else TORCH_CLONES["score-sde"][1],
                          SEED + 10 if case == "ncsnpp_tiny" else SEED + 30 + i)
    if args.skip_published:
        return 0

    from medrecon.priors.convert.presets import PRESETS

    path = args.out / "published.json"
    published = json.loads(path.read_text()) if path.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, preset in PRESETS.items():
            if args.presets is not None and name not in args.presets.split(","):
                continue
            if preset.format == "adm":
                if unet is not None:
                    published[name] = published_adm(name, preset, args.dds, unet, SEED + 20)
                continue
            config_key, relpath, repository, model_key, reference = NCSNPP_SOURCES[name]
            model_clone = clones[model_key] or (clones["score_sde"] if reference == "torch" else None)
            if model_clone is None:
                print(f"{name}: skipped (needs --{model_key.replace('_', '-')})")
                continue
            entry = nf.published_entry(name, preset, clones[config_key], relpath, repository, model_clone, reference, script)
            if args.full_size:
                entry["full_size"] = nf.full_size(script, name, preset, model_clone, reference, SEED + 40, Path(tmp))
                entry["full_size"]["command"] = ("python scripts/make_conversion_fixtures.py --score-inverse-problems CLONE "
                                                 "--score-mri CLONE --diffusion-mbir CLONE --full-size")
            elif "full_size" in published.get(name, {}):
                entry["full_size"] = published[name]["full_size"]
            published[name] = entry
    path.write_text(json.dumps(published, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
