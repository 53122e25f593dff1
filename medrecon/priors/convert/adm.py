"""ADM (openai/guided-diffusion ``UNetModel``) checkpoints -> diffusers ``UNet2DModel``.

The ablated diffusion model of Dhariwal & Nichol 2021 ("Diffusion models beat GANs on image
synthesis"), as released by guided-diffusion and by the medical papers built on its code (DDS,
Chung et al. 2024). Its checkpoint is a plain state dict (``torch.save(model.state_dict())``);
it carries no config, so the architecture comes from :class:`AdmFlags` (a preset or a flags file),
named as the flags of guided-diffusion's scripts.

The diffusers network that computes the same function (every value checked against the reference
code in tests/medrecon/test_convert.py):

- residual blocks -> ``ResnetBlock2D`` (``resnet_time_scale_shift="scale_shift"`` for
  ``use_scale_shift_norm``: ``norm(h) (1 + scale) + shift``), GroupNorm(32) with eps 1e-5;
- ``resblock_updown`` -> ``ResnetDownsampleBlock2D`` / ``ResnetUpsampleBlock2D``, or
  ``downsample_type``/``upsample_type="resnet"`` on attention levels (average pool / nearest
  neighbour inside the block); otherwise strided / nearest-neighbour convolutions;
- attention at the downsampling rates ``image_size // r`` for ``r`` in ``attention_resolutions``
  (``AttnDownBlock2D`` / ``AttnUpBlock2D``, and the middle block), the fused ``qkv`` 1x1 Conv1d
  split into ``to_q/to_k/to_v`` (per head for the legacy order), ``proj_out`` -> ``to_out.0``;
- sinusoidal timestep embedding ``[cos, sin]`` with ``num_channels`` frequencies
  (``flip_sin_to_cos=True, freq_shift=0``), its MLP -> ``time_embedding``;
- ``learn_sigma``: twice the image channels out (epsilon, then the variance interpolation).

What does not map (refused with the reason): heads given by ``num_heads`` when the attention
widths differ (UNet2DModel has one head width), ``num_heads_upsample`` other than ``num_heads``,
``channel_mult[0] != 1`` (the timestep embedding's width is tied to the first level's in
diffusers), class-conditional models (``label_emb``: medrecon's denoisers take no label).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields

import numpy as np

from medrecon.errors import InputError, positive_int

from .tensors import Move, check_flag_types

SCHEDULES = ("linear", "cosine")
GROUPS = 32
RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
          "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


@dataclass(frozen=True)
class AdmFlags:
    """guided-diffusion ``UNetModel`` flags, named as its scripts' ``MODEL_FLAGS`` (all explicit:
    the scripts' defaults differ between ``model_and_diffusion_defaults`` and ``create_model``).

    ``channel_mult``: the per-level width multipliers (``create_model``'s table by image size when
    the script leaves it empty: 256 -> 1,1,2,2,4,4). ``attention_resolutions``: feature-map sizes
    with attention, as in the scripts (the model gets the rates ``image_size // r``).
    ``num_head_channels`` -1: ``num_heads`` heads everywhere; otherwise heads of that width.
    ``in_channels``: image channels (guided-diffusion fixes 3; medical forks expose it).
    ``noise_schedule``/``diffusion_steps``: the discrete VP schedule the model was trained on.
    """

    image_size: int
    in_channels: int
    num_channels: int
    channel_mult: tuple[float, ...]
    num_res_blocks: int
    attention_resolutions: tuple[int, ...]
    num_heads: int
    num_head_channels: int
    num_heads_upsample: int
    learn_sigma: bool
    use_scale_shift_norm: bool
    resblock_updown: bool
    use_new_attention_order: bool
    class_cond: bool
    noise_schedule: str
    diffusion_steps: int

    def __post_init__(self):
        check_flag_types(self, "ADM flags")
        object.__setattr__(self, "channel_mult", tuple(float(m) for m in self.channel_mult))
        object.__setattr__(self, "attention_resolutions", tuple(int(r) for r in self.attention_resolutions))
        for name in ("image_size", "in_channels", "num_channels", "num_res_blocks", "diffusion_steps"):
            positive_int(getattr(self, name), f"ADM flags: {name}")
        if not self.channel_mult or any(m <= 0 for m in self.channel_mult):
            raise InputError(f"ADM flags: channel_mult must list positive multipliers, got {self.channel_mult}")
        if any(w % GROUPS for w in self.widths):
            raise InputError(f"ADM flags: every width must be a multiple of {GROUPS} (GroupNorm32), got {self.widths}")
        if self.image_size % 2 ** (len(self.channel_mult) - 1):
            raise InputError(f"ADM flags: image_size {self.image_size} is not divisible by {2 ** (len(self.channel_mult) - 1)}")
        if any(r < 1 for r in self.attention_resolutions):
            raise InputError(f"ADM flags: attention_resolutions must be positive, got {self.attention_resolutions}")
        if self.noise_schedule not in SCHEDULES:
            raise InputError(f"ADM flags: noise_schedule must be one of {SCHEDULES}, got {self.noise_schedule!r}")
        if self.num_head_channels == -1 and self.num_heads < 1:
            raise InputError(f"ADM flags: num_heads must be >= 1 when num_head_channels is -1, got {self.num_heads}")
        if self.num_head_channels != -1 and self.num_head_channels < 1:
            raise InputError(f"ADM flags: num_head_channels must be -1 or positive, got {self.num_head_channels}")

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(int(m * self.num_channels) for m in self.channel_mult)

    @property
    def attention_levels(self) -> tuple[int, ...]:
        """Levels with attention: downsampling rate ``2**level`` in ``image_size // r``."""
        rates = {self.image_size // r for r in self.attention_resolutions}
        return tuple(level for level in range(len(self.channel_mult)) if 2**level in rates)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attention_resolutions"] = list(self.attention_resolutions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AdmFlags:
        names = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(d) - names), sorted(names - set(d))
        if unknown or missing:
            raise InputError(f"ADM flags: unknown {unknown}, missing {missing}" if unknown else f"ADM flags: missing {missing}")
        return cls(**d)


def _head_width(flags: AdmFlags) -> int:
    """The one attention head width of the network (refused if it is not one)."""
    levels = flags.attention_levels
    widths = flags.widths
    attended = [widths[lv] for lv in levels] + [widths[-1]]  # the middle block always has attention
    if flags.num_head_channels != -1:
        bad = [w for w in attended if w % flags.num_head_channels]
        if bad:
            raise InputError(f"ADM flags: attention width {bad[0]} is not divisible by num_head_channels={flags.num_head_channels}")
        return flags.num_head_channels
    up_heads = flags.num_heads if flags.num_heads_upsample == -1 else flags.num_heads_upsample
    per_head = {w / flags.num_heads for w in attended} | {widths[lv] / up_heads for lv in levels}
    if len(per_head) != 1 or not float(next(iter(per_head))).is_integer():
        raise InputError(
            f"not mappable onto diffusers' UNet2DModel: num_heads={flags.num_heads}"
            + (f" (num_heads_upsample={up_heads})" if up_heads != flags.num_heads else "")
            + f" with attention at widths {sorted(set(attended))} gives head widths {sorted(per_head)}; "
            "UNet2DModel has one attention_head_dim for every attention layer"
        )
    return int(next(iter(per_head)))


def refusals(flags: AdmFlags) -> list[str]:
    """Why ``flags`` do not map onto a diffusers ``UNet2DModel`` (empty if they do)."""
    reasons = []
    if flags.channel_mult[0] != 1:
        reasons.append(
            f"channel_mult[0]={flags.channel_mult[0]:g}: ADM embeds timesteps with num_channels={flags.num_channels} "
            f"frequencies but starts at {flags.widths[0]} channels; UNet2DModel ties both to block_out_channels[0]"
        )
    if flags.class_cond:
        reasons.append("class_cond: a class-conditional ADM (label_emb) needs a label that medrecon's denoisers never give")
    if flags.num_head_channels == -1 and flags.num_heads_upsample not in (-1, flags.num_heads):
        reasons.append(f"num_heads_upsample={flags.num_heads_upsample} differs from num_heads={flags.num_heads}: "
                       "UNet2DModel has one head layout")
    if not reasons:
        try:
            _head_width(flags)
        except InputError as exc:
            reasons.append(str(exc).removeprefix("not mappable onto diffusers' UNet2DModel: "))
    return reasons


def unet_config(flags: AdmFlags) -> dict:
    """The ``UNet2DModel`` config computing the same function as the ADM of ``flags``."""
    attn = set(flags.attention_levels)
    levels = range(len(flags.widths))
    plain_down = "ResnetDownsampleBlock2D" if flags.resblock_updown else "DownBlock2D"
    plain_up = "ResnetUpsampleBlock2D" if flags.resblock_updown else "UpBlock2D"
    return {
        "sample_size": flags.image_size,
        "in_channels": flags.in_channels,
        "out_channels": flags.in_channels * (2 if flags.learn_sigma else 1),
        "block_out_channels": list(flags.widths),
        "layers_per_block": flags.num_res_blocks,
        "down_block_types": ["AttnDownBlock2D" if lv in attn else plain_down for lv in levels],
        "up_block_types": ["AttnUpBlock2D" if lv in attn else plain_up for lv in reversed(levels)],
        "downsample_type": "resnet" if flags.resblock_updown else "conv",
        "upsample_type": "resnet" if flags.resblock_updown else "conv",
        "downsample_padding": 1,
        "resnet_time_scale_shift": "scale_shift" if flags.use_scale_shift_norm else "default",
        "attention_head_dim": _head_width(flags),
        "norm_num_groups": GROUPS,
        "attn_norm_num_groups": GROUPS,  # the middle block's attention norm (None under scale_shift otherwise)
        "norm_eps": 1e-5,
        "act_fn": "silu",
        "time_embedding_type": "positional",
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "mid_block_scale_factor": 1,
        "center_input_sample": False,
        "add_attention": True,
        "dropout": 0.0,
    }


def _attention(target_rest: str, src: str, flags: AdmFlags, width: int) -> Move:
    heads = width // _head_width(flags)
    order = "new" if flags.use_new_attention_order else "legacy"
    part, _, param = target_rest.rpartition(".")
    if part == "group_norm":
        return Move("", f"{src}.norm.{param}")
    if part in ("to_q", "to_k", "to_v"):
        return Move("", f"{src}.qkv.{param}", "qkv", part=part[-1], order=order, heads=heads)
    if part == "to_out.0":
        return Move("", f"{src}.proj_out.{param}", "squeeze" if param == "weight" else "copy")
    raise RuntimeError(f"no ADM source for attention tensor {target_rest}")


def _resnet(target_rest: str, src: str) -> Move:
    part, _, param = target_rest.rpartition(".")
    if part not in RESNET:
        raise RuntimeError(f"no ADM source for residual-block tensor {target_rest}")
    return Move("", f"{src}.{RESNET[part]}.{param}")


def moves(flags: AdmFlags, target_shapes: dict[str, tuple[int, ...]]) -> list[Move]:
    """One :class:`Move` per tensor of the diffusers network, from the ADM state dict's names:
    ``input_blocks[0]`` is the first convolution, level ``L``'s ``j``-th block is
    ``input_blocks[1 + L (n + 1) + j]`` and its downsampler ``input_blocks[1 + L (n + 1) + n]``
    (``n = num_res_blocks``); ``output_blocks[u (n + 1) + i]`` for up level ``u``."""
    n = flags.num_res_blocks
    attn = set(flags.attention_levels)
    top = len(flags.widths) - 1
    out = []
    for target in target_shapes:
        move = _move(target, flags, n, attn, top)
        out.append(Move(target, move.source, move.kind, move.part, move.order, move.heads))
    return out


def _move(target: str, flags: AdmFlags, n: int, attn: set, top: int) -> Move:
    simple = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
              "time_embedding.linear_2": "time_embed.2", "conv_norm_out": "out.0", "conv_out": "out.2"}
    part, _, param = target.rpartition(".")
    if part in simple:
        return Move("", f"{simple[part]}.{param}")
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", target):
        level, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        src = f"input_blocks.{1 + level * (n + 1) + j}"
        return _resnet(rest, f"{src}.0") if kind == "resnets" else _attention(rest, f"{src}.1", flags, flags.widths[level])
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.(.+)", target):
        level, rest = int(m[1]), m[2]
        src = f"input_blocks.{1 + level * (n + 1) + n}.0"
        return Move("", f"{src}.op.{rest.removeprefix('conv.')}") if rest.startswith("conv.") else _resnet(rest, src)
    if m := re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", target):
        kind, j, rest = m[1], int(m[2]), m[3]
        if kind == "resnets":
            return _resnet(rest, f"middle_block.{2 * j}")
        return _attention(rest, "middle_block.1", flags, flags.widths[-1])
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", target):
        u, kind, i, rest = int(m[1]), m[2], int(m[3]), m[4]
        src = f"output_blocks.{u * (n + 1) + i}"
        return _resnet(rest, f"{src}.0") if kind == "resnets" else _attention(rest, f"{src}.1", flags, flags.widths[top - u])
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.(.+)", target):
        u, rest = int(m[1]), m[2]
        src = f"output_blocks.{u * (n + 1) + n}.{2 if top - u in attn else 1}"
        return Move("", f"{src}.{rest}") if rest.startswith("conv.") else _resnet(rest, src)
    raise RuntimeError(f"no ADM source for {target}")


def explain_unused(name: str) -> str | None:
    if name.startswith("label_emb."):
        return f"the checkpoint is class-conditional ({name}): medrecon's denoisers take no class label"
    return None


def alphas_cumprod(flags: AdmFlags) -> list[float]:
    """The discrete VP schedule (float64): ``linear`` betas from ``1e-4 s`` to ``0.02 s`` with
    ``s = 1000 / steps`` (Ho et al. 2020, as guided-diffusion scales it), or ``cosine``
    ``abar(t) = cos^2((t/T + 0.008) / 1.008 * pi / 2)`` with betas clipped at 0.999 (Nichol &
    Dhariwal 2021)."""
    steps = flags.diffusion_steps
    if flags.noise_schedule == "linear":
        scale = 1000 / steps
        betas = np.linspace(scale * 0.0001, scale * 0.02, steps, dtype=np.float64)
    else:
        def abar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = np.array([min(1 - abar((i + 1) / steps) / abar(i / steps), 0.999) for i in range(steps)])
    return np.cumprod(1.0 - betas).tolist()
