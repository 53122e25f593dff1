"""NCSN++ (yang-song/score_sde_pytorch) checkpoints -> diffusers ``UNet2DModel``.

The NCSN++ score network of Song et al. 2021 ("Score-based generative modeling through stochastic
differential equations"), a variance-exploding score model ``s(x, sigma)``: its checkpoint
(``checkpoint_N.pth``) holds ``{"model": state dict with "module." prefixes (DataParallel),
"ema": {"decay", "num_updates", "shadow_params": [...]}, "optimizer": ..., "step": ...}``. The
weights that score_sde evaluates and samples with are the EMA's: ``ema.copy_to(model.parameters())``
puts ``shadow_params[i]`` into the ``i``-th parameter with ``requires_grad`` of the model, which is
every tensor of the model's state dict except the buffer ``sigmas`` and the fixed Fourier
frequencies ``all_modules.0.W`` (taken from ``model``). A bare state dict is converted as it is.
The checkpoint carries no config, so the architecture comes from :class:`NcsnppFlags`.

The diffusers network (Song et al.'s own conversion target, diffusers' ``google/ncsnpp-*``):
``time_embedding_type="fourier"`` (``[sin, cos](2 pi W log sigma)``, output divided by sigma),
``SkipDownBlock2D``/``AttnSkipDownBlock2D`` and ``SkipUpBlock2D``/``AttnSkipUpBlock2D`` (BigGAN
residual blocks with FIR [1, 3, 3, 1] resampling, residuals scaled by 1/sqrt(2), the input and
output image pyramids), the middle block with ``mid_block_scale_factor = sqrt(2)``, GroupNorm with
``min(C / 4, 32)`` groups and eps 1e-6, ``center_input_sample`` for data in [0, 1].

Only the configuration that those blocks implement maps; everything else is refused with the
reason (:func:`refusals`), among them: image channels other than 3 (diffusers' skip blocks
hard-code 3 image channels in their ``skip_conv``), attention on fewer than 128 channels (NCSN++
normalises it with ``C / 4`` groups, diffusers' ``AttnSkip*`` blocks with 32), the ``residual``
pyramids, ``cat`` combination, DDPM residual blocks, positional embeddings, no FIR.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields

import torch

from medrecon.errors import InputError, positive_int

from .tensors import Move, check_flag_types, tensor_dict

FIR_KERNEL = (1, 3, 3, 1)
RESNET = {"norm1": "GroupNorm_0", "conv1": "Conv_0", "time_emb_proj": "Dense_0", "norm2": "GroupNorm_1",
          "conv2": "Conv_1", "conv_shortcut": "Conv_2"}
NIN = {"to_q": "NIN_0", "to_k": "NIN_1", "to_v": "NIN_2", "to_out.0": "NIN_3"}
FOURIER = "all_modules.0.W"
BUFFERS = ("sigmas",)


@dataclass(frozen=True)
class NcsnppFlags:
    """score_sde's ``config.model`` (and ``config.data``) entries that define an NCSN++ network,
    under the names of its config files; ``sigma_min``/``sigma_max`` are the VE SDE's noise range
    (recorded on the card). All explicit: a flags file must give every one."""

    image_size: int
    num_channels: int
    centered: bool
    nf: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    resblock_type: str
    progressive: str
    progressive_input: str
    progressive_combine: str
    fir: bool
    fir_kernel: tuple[int, ...]
    skip_rescale: bool
    embedding_type: str
    conditional: bool
    scale_by_sigma: bool
    attention_type: str
    normalization: str
    nonlinearity: str
    conv_size: int
    sigma_min: float
    sigma_max: float

    def __post_init__(self):
        check_flag_types(self, "NCSN++ flags")
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        object.__setattr__(self, "attn_resolutions", tuple(int(r) for r in self.attn_resolutions))
        object.__setattr__(self, "fir_kernel", tuple(int(k) for k in self.fir_kernel))
        for name in ("image_size", "num_channels", "nf", "num_res_blocks"):
            positive_int(getattr(self, name), f"NCSN++ flags: {name}")
        if not self.ch_mult or any(m < 1 for m in self.ch_mult):
            raise InputError(f"NCSN++ flags: ch_mult must list positive integers, got {self.ch_mult}")
        if self.image_size % 2 ** (len(self.ch_mult) - 1):
            raise InputError(f"NCSN++ flags: image_size {self.image_size} is not divisible by {2 ** (len(self.ch_mult) - 1)}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise InputError(f"NCSN++ flags: need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.nf * m for m in self.ch_mult)

    @property
    def attention_levels(self) -> tuple[int, ...]:
        """Levels whose feature maps (``image_size / 2**level``) are in ``attn_resolutions``."""
        return tuple(lv for lv in range(len(self.ch_mult)) if self.image_size // 2**lv in self.attn_resolutions)

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("ch_mult", "attn_resolutions", "fir_kernel"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NcsnppFlags:
        names = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(d) - names), sorted(names - set(d))
        if unknown or missing:
            raise InputError(f"NCSN++ flags: unknown {unknown}, missing {missing}" if unknown else f"NCSN++ flags: missing {missing}")
        return cls(**d)


def _groups(channels: int) -> int:
    return min(channels // 4, 32)


def refusals(flags: NcsnppFlags) -> list[str]:
    """Why ``flags`` do not map onto a diffusers ``UNet2DModel`` (empty if they do)."""
    reasons = []
    wanted = {
        "embedding_type": "fourier", "resblock_type": "biggan", "progressive": "output_skip",
        "progressive_input": "input_skip", "progressive_combine": "sum", "attention_type": "ddpm",
        "normalization": "GroupNorm", "nonlinearity": "swish",
    }
    for name, value in wanted.items():
        got = getattr(flags, name)
        if str(got).lower() != value.lower():
            reasons.append(f"{name}={got!r} (diffusers' NCSN++ blocks implement only {value!r})")
    for name in ("conditional", "scale_by_sigma", "skip_rescale", "fir"):
        if not getattr(flags, name):
            reasons.append(f"{name}=False (diffusers' NCSN++ blocks always have it on)")
    if flags.fir and flags.fir_kernel != FIR_KERNEL:
        reasons.append(f"fir_kernel={list(flags.fir_kernel)} (diffusers' FIR resampling uses {list(FIR_KERNEL)})")
    if flags.conv_size != 3:
        reasons.append(f"conv_size={flags.conv_size} (diffusers' blocks use 3x3 convolutions)")
    if flags.num_channels != 3:
        reasons.append(
            f"num_channels={flags.num_channels}: diffusers' SkipDownBlock2D/SkipUpBlock2D hard-code 3 image channels "
            "in their skip_conv (the input and output image pyramids)"
        )
    if flags.ch_mult[0] != 1:
        reasons.append(f"ch_mult[0]={flags.ch_mult[0]}: NCSN++ starts at nf channels, UNet2DModel at block_out_channels[0]")
    widths = flags.widths
    for lv in flags.attention_levels:
        if _groups(widths[lv]) != 32:
            size = flags.image_size // 2**lv
            reasons.append(
                f"attention at {size}x{size} on {widths[lv]} channels: NCSN++ normalises it with {_groups(widths[lv])} "
                "groups, diffusers' AttnSkipDownBlock2D/AttnSkipUpBlock2D with 32 (mappable from 128 channels)"
            )
            continue
        for prev, skip in _up_resnet_inputs(flags, lv):  # diffusers' AttnSkipUpBlock2D: min(in + skip // 4, 32)
            if min(prev + skip // 4, 32) != _groups(prev + skip):
                reasons.append(
                    f"up-block attention level {lv}: a residual block on {prev}+{skip} channels, which NCSN++ normalises "
                    f"with {_groups(prev + skip)} groups and diffusers' AttnSkipUpBlock2D with {min(prev + skip // 4, 32)}"
                )
                break
    return reasons


def _up_resnet_inputs(flags: NcsnppFlags, level: int) -> list[tuple[int, int]]:
    """(hidden, skip) channels of the residual blocks of up level ``level``."""
    widths, n = flags.widths, flags.num_res_blocks
    skips = [flags.nf]
    for lv, w in enumerate(widths):
        skips += [w] * n + ([w] if lv < len(widths) - 1 else [])
    hidden = widths[-1]
    for lv in reversed(range(len(widths))):
        pairs = []
        for _ in range(n + 1):
            skip = skips.pop()
            pairs.append((hidden, skip))
            hidden = widths[lv]
        if lv == level:
            return pairs
    raise RuntimeError(f"no level {level}")


def unet_config(flags: NcsnppFlags) -> dict:
    """The ``UNet2DModel`` config computing the same function as the NCSN++ of ``flags``."""
    attn = set(flags.attention_levels)
    levels = range(len(flags.widths))
    return {
        "sample_size": flags.image_size,
        "in_channels": flags.num_channels,
        "out_channels": flags.num_channels,
        "center_input_sample": not flags.centered,
        "time_embedding_type": "fourier",
        "block_out_channels": list(flags.widths),
        "layers_per_block": flags.num_res_blocks,
        "down_block_types": ["AttnSkipDownBlock2D" if lv in attn else "SkipDownBlock2D" for lv in levels],
        "up_block_types": ["AttnSkipUpBlock2D" if lv in attn else "SkipUpBlock2D" for lv in reversed(levels)],
        "mid_block_scale_factor": math.sqrt(2.0),
        "downsample_padding": 1,
        "attention_head_dim": None,
        "norm_num_groups": None,
        "norm_eps": 1e-6,
        "act_fn": "silu",
        "resnet_time_scale_shift": "default",
        "add_attention": True,
        "dropout": 0.0,
    }


def _modules(flags: NcsnppFlags) -> dict[tuple, int]:
    """The index in ``all_modules`` of each module, as NCSN++ appends them (the roles are the
    diffusers names they become)."""
    roles = [("time_proj",), ("time_embedding.linear_1",), ("time_embedding.linear_2",), ("conv_in",)]
    levels, n, attn = len(flags.widths), flags.num_res_blocks, set(flags.attention_levels)
    for lv in range(levels):
        for j in range(n):
            roles.append((f"down_blocks.{lv}.resnets.{j}",))
            if lv in attn:
                roles.append((f"down_blocks.{lv}.attentions.{j}",))
        if lv != levels - 1:
            roles += [(f"down_blocks.{lv}.resnet_down",), (f"down_blocks.{lv}.skip_conv",)]
    roles += [("mid_block.resnets.0",), ("mid_block.attentions.0",), ("mid_block.resnets.1",)]
    for lv in reversed(range(levels)):
        u = levels - 1 - lv
        roles += [(f"up_blocks.{u}.resnets.{i}",) for i in range(n + 1)]
        if lv in attn:
            roles.append((f"up_blocks.{u}.attentions.0",))
        norm, conv = ("conv_norm_out", "conv_out") if lv == 0 else (f"up_blocks.{u}.skip_norm", f"up_blocks.{u}.skip_conv")
        roles += [(norm,), (conv,)]
        if lv != 0:
            roles.append((f"up_blocks.{u}.resnet_up",))
    return {role: i for i, role in enumerate(roles)}


def moves(flags: NcsnppFlags, target_shapes: dict[str, tuple[int, ...]]) -> list[Move]:
    """One :class:`Move` per tensor of the diffusers network, from ``all_modules.<index>`` names."""
    index = _modules(flags)
    out = []
    for target in target_shapes:
        if target == "time_proj.weight":
            out.append(Move(target, FOURIER))
            continue
        m = re.fullmatch(r"((?:down|up)_blocks\.\d+\.(?:resnets|attentions)\.\d+|mid_block\.(?:resnets|attentions)\.\d+"
                         r"|(?:down|up)_blocks\.\d+\.(?:resnet_down|resnet_up|skip_conv|skip_norm)"
                         r"|conv_in|conv_norm_out|conv_out|time_embedding\.linear_[12])\.(.+)", target)
        if not m or (m[1],) not in index:
            raise RuntimeError(f"no NCSN++ source for {target}")
        src, rest = f"all_modules.{index[(m[1],)]}", m[2]
        part, _, param = rest.rpartition(".")
        if ".attentions." in m[1]:
            if part == "group_norm":
                out.append(Move(target, f"{src}.GroupNorm_0.{param}"))
            else:
                nin = NIN[part]
                out.append(Move(target, f"{src}.{nin}.W", "transpose") if param == "weight" else Move(target, f"{src}.{nin}.b"))
        elif ".resnet" in m[1] and part:
            out.append(Move(target, f"{src}.{RESNET[part]}.{param}"))
        elif m[1].startswith("down_blocks") and m[1].endswith("skip_conv"):
            out.append(Move(target, f"{src}.Conv_0.{rest}"))  # the input pyramid's Combine (1x1 convolution)
        else:  # convolutions, norms and linear layers of their own, the output pyramid's included
            out.append(Move(target, f"{src}.{rest}"))
    return out


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
