"""NCSN++, the score network of the score-SDE papers' medical priors, in plain torch.

NCSN++ (Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole, "Score-based generative modeling through
stochastic differential equations", ICLR 2021, appendix H) is a U-Net that returns the score
``s(x, sigma) = grad log p_sigma(x)`` of images ``x`` ``(B, C, H, W)`` noised with standard deviation
``sigma`` ``(B,)``. It is the network of Song, Shen, Xing & Ermon's LIDC and BraTS priors (ICLR
2022), of score-MRI's fastMRI knee prior and of DiffusionMBIR's AAPM prior. Its architecture is set
by the switches of score_sde's ``config.model`` (:class:`NcsnppConfig`, under those names):

- noise embedding: ``embedding_type="fourier"``, random Fourier features ``[sin, cos](2 pi W log
  sigma)`` of ``nf`` fixed frequencies ``W``; or ``"positional"``, the sinusoidal embedding of the
  index ``t`` of sigma in the geometric table of ``num_scales`` levels from ``sigma_max`` to
  ``sigma_min`` (a sigma between two entries gets the fractional index of its log, one on an entry
  that entry's index exactly); with ``conditional`` two dense layers turn it into the ``4 nf``
  embedding every residual block adds to its features (``conditional=False``: no embedding is used);
- ``resblock_type``: ``"biggan"`` residual blocks (which also do the resampling, with ``fir`` FIR
  filters or nearest-neighbour / average pooling, and a 1x1 shortcut where the shape changes) or
  ``"ddpm"`` blocks (a NIN shortcut, separate ``Downsample``/``Upsample`` layers: a strided /
  upsampling 3x3 convolution with ``resamp_with_conv``, FIR-fused with ``fir``);
- ``skip_rescale``: residual sums (blocks, attention, residual pyramids) divided by sqrt(2);
- ``progressive_input`` (the input image pyramid of the encoder): ``"none"``; ``"input_skip"``,
  the image FIR-downsampled and merged into each level's features by a 1x1 convolution and
  ``progressive_combine`` ``"sum"`` or ``"cat"`` (concatenation, doubling the channels); or
  ``"residual"``, a pyramid of features carried down by strided (FIR) convolutions and added to
  each level's output;
- ``progressive`` (the output pyramid of the decoder): ``"none"`` (one GroupNorm + 3x3 convolution
  at the end); ``"output_skip"``, an image-space output at every level (GroupNorm, activation,
  3x3 convolution to ``num_channels``) upsampled and summed to the full resolution; or
  ``"residual"``, a feature pyramid upsampled by (FIR) convolutions and added to each level;
- attention: single-head self-attention over all pixels of the levels whose side is in
  ``attn_resolutions`` (and always in the middle block), with ``min(C // 4, 32)`` GroupNorm
  groups, like every GroupNorm of the network (eps 1e-6);
- ``scale_by_sigma``: the output divided by sigma (the score of a VE model scales as 1 / sigma);
- ``centered``: data in [-1, 1]; otherwise images in [0, 1] are mapped to ``2 x - 1`` first;
- any number of image channels (``num_channels``: 1 for the medical priors); square images whose
  side is divisible by ``2 ** (len(ch_mult) - 1)``; ``nonlinearity`` swish (SiLU), elu, relu or
  lrelu (slope 0.2).

The module tree follows score_sde_pytorch's ``NCSNpp``: one ``all_modules`` list in the order the
network uses its layers, each block with the reference's child names (``GroupNorm_0``, ``Conv_0``,
``Dense_0``, ``NIN_0``, ``Conv2d_0``...), so a score_sde_pytorch state dict loads by name. Flax
(JAX) checkpoints of the same network name each module ``ClassName_k``, ``k`` counting the modules
of that class created before it in the same parent, parameter-free resamplers included:
:meth:`NCSNpp.flax_names` gives that name for each entry of ``all_modules``
(:mod:`medrecon.priors.convert.flax` maps the tensors). Attention sits at fixed levels (those of
``image_size``), so the network also runs at other image sizes.

A prior folder holds ``config.json`` (``_class_name: "NCSNpp"`` and the config) and
``diffusion_pytorch_model.safetensors`` (:meth:`NCSNpp.save_pretrained`), like a diffusers folder.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from medrecon.errors import InputError, positive_int

from .resampling import (
    conv_downsample_2d,
    downsample_2d,
    fir_kernel,
    naive_downsample_2d,
    naive_upsample_2d,
    upsample_2d,
    upsample_conv_2d,
)

CLASS_NAME = "NCSNpp"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
CHOICES = {
    "resblock_type": ("biggan", "ddpm"),
    "progressive": ("none", "output_skip", "residual"),
    "progressive_input": ("none", "input_skip", "residual"),
    "progressive_combine": ("sum", "cat"),
    "embedding_type": ("fourier", "positional"),
    "attention_type": ("ddpm",),
    "normalization": ("GroupNorm",),
    "nonlinearity": ("swish", "elu", "relu", "lrelu"),
}
ACTIVATIONS = {"swish": F.silu, "elu": F.elu, "relu": F.relu, "lrelu": partial(F.leaky_relu, negative_slope=0.2)}
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


@dataclass(frozen=True)
class NcsnppConfig:
    """The switches of an NCSN++ network, under score_sde's ``config.model`` / ``config.data`` names
    (module docstring). All explicit: score_sde's defaults differ between its config files.
    ``sigma_min``/``sigma_max`` are the VE SDE's noise range and, with ``num_scales``, the table of
    the positional embedding; ``attention_type`` (``ddpm``), ``normalization`` (``GroupNorm``) and
    ``conv_size`` (3) are the only values the reference code implements."""

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
    resamp_with_conv: bool
    embedding_type: str
    conditional: bool
    scale_by_sigma: bool
    attention_type: str
    normalization: str
    nonlinearity: str
    conv_size: int
    sigma_min: float
    sigma_max: float
    num_scales: int

    def __post_init__(self):
        for f in fields(self):
            value, kind = getattr(self, f.name), str(f.type)
            inner = kind[len("tuple["):].split(",")[0].strip() if kind.startswith("tuple[") else None
            if inner is not None:
                ok = isinstance(value, (list, tuple)) and all(_fits(v, inner) for v in value)
            else:
                ok = _fits(value, kind)
            if not ok:
                raise InputError(f"NCSN++ flags: {f.name} must be {'a list of ' + inner if inner else kind}, got {value!r}")
        for name in ("ch_mult", "attn_resolutions", "fir_kernel"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            canonical = next((a for a in allowed if a.lower() == value.lower()), None)
            if canonical is None:
                raise InputError(f"NCSN++ flags: {name}={value!r}; the reference code knows {list(allowed)}")
            object.__setattr__(self, name, canonical)
        for name in ("image_size", "num_channels", "nf", "num_res_blocks", "num_scales"):
            positive_int(getattr(self, name), f"NCSN++ flags: {name}")
        if self.conv_size != 3:
            raise InputError(f"NCSN++ flags: conv_size={self.conv_size}; the reference code's convolutions are 3x3")
        if not self.ch_mult or any(m < 1 for m in self.ch_mult):
            raise InputError(f"NCSN++ flags: ch_mult must list positive integers, got {list(self.ch_mult)}")
        if self.image_size % 2 ** (len(self.ch_mult) - 1):
            raise InputError(f"NCSN++ flags: image_size {self.image_size} is not divisible by {2 ** (len(self.ch_mult) - 1)}")
        if not self.fir_kernel or any(k <= 0 for k in self.fir_kernel) or len(self.fir_kernel) < 2:
            raise InputError(f"NCSN++ flags: fir_kernel must list at least two positive taps, got {list(self.fir_kernel)}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise InputError(f"NCSN++ flags: need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")

    # --- derived quantities (and the names the rest of medrecon reads from a network's config)
    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of each level, ``nf * ch_mult``."""
        return tuple(self.nf * m for m in self.ch_mult)

    @property
    def attention_levels(self) -> tuple[int, ...]:
        """Levels whose side (``image_size / 2**level``) is in ``attn_resolutions``."""
        return tuple(lv for lv in range(len(self.ch_mult)) if self.image_size // 2**lv in self.attn_resolutions)

    @property
    def sample_size(self) -> int:
        return self.image_size

    @property
    def in_channels(self) -> int:
        return self.num_channels

    @property
    def out_channels(self) -> int:
        return self.num_channels

    @property
    def block_out_channels(self) -> tuple[int, ...]:
        return self.widths

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("ch_mult", "attn_resolutions", "fir_kernel"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NcsnppConfig:
        names = {f.name for f in fields(cls)}
        given = {k for k in d if not k.startswith("_")}
        unknown, missing = sorted(given - names), sorted(names - given)
        if unknown or missing:
            raise InputError(f"NCSN++ flags: unknown {unknown}, missing {missing}" if unknown else f"NCSN++ flags: missing {missing}")
        return cls(**{k: d[k] for k in names})


def _fits(value, kind: str) -> bool:
    if kind == "bool" or isinstance(value, bool):
        return kind == "bool" and isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def _groups(channels: int) -> int:
    return min(channels // 4, 32)


# ------------------------------------------------------------------------------------------ layers
def conv3x3(cin: int, cout: int, *, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=padding)


def conv1x1(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1)


def group_norm(channels: int) -> nn.GroupNorm:
    """NCSN++'s GroupNorm: ``min(C // 4, 32)`` groups, eps 1e-6 (:class:`InputError` where they do not divide ``C``)."""
    if channels < 4 or channels % _groups(channels):
        raise InputError(f"NCSN++: a GroupNorm on {channels} channels needs min({channels} // 4, 32) = {_groups(channels)} "
                         "groups that divide them (nf and ch_mult give the widths)")
    return nn.GroupNorm(_groups(channels), channels, eps=1e-6)


class GaussianFourierProjection(nn.Module):
    """``[sin, cos](2 pi W log sigma)``: ``(B,)`` log-sigmas -> ``(B, 2 n)``; ``W`` ``(n,)`` is fixed."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(n), requires_grad=False)

    def forward(self, log_sigma: torch.Tensor) -> torch.Tensor:
        proj = log_sigma[:, None] * self.W[None, :] * 2 * math.pi
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


def timestep_embedding(t: torch.Tensor, dim: int, max_positions: int = 10000) -> torch.Tensor:
    """The sinusoidal embedding ``[sin, cos](t f_j)`` of ``(B,)`` timesteps, ``f_j = max_positions^(-j / (dim/2 - 1))``
    (zero-padded to ``dim`` when odd): ``(B, dim)``."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * -(math.log(max_positions) / (half - 1)))
    emb = t.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class NIN(nn.Module):
    """A 1x1 layer over channels stored as ``x W + b`` (``W`` ``(in, out)``): ``(B, in, H, W) -> (B, out, H, W)``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(cin, cout))
        self.b = nn.Parameter(torch.empty(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,co->bohw", x, self.W) + self.b[None, :, None, None]


class AttnBlock(nn.Module):
    """Single-head self-attention over the ``H W`` positions of ``(B, C, H, W)`` features (queries,
    keys, values and output by NIN layers on the GroupNorm-ed input, scores scaled by ``C^-1/2``),
    added to the input (divided by sqrt(2) with ``skip_rescale``)."""

    def __init__(self, channels: int, *, skip_rescale: bool) -> None:
        super().__init__()
        self.GroupNorm_0 = group_norm(channels)
        self.NIN_0, self.NIN_1, self.NIN_2, self.NIN_3 = (NIN(channels, channels) for _ in range(4))
        self.skip_rescale = skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.GroupNorm_0(x)
        q, k, v = (layer(n).reshape(b, 1, c, h * w).transpose(-1, -2) for layer in (self.NIN_0, self.NIN_1, self.NIN_2))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(C)) v: (B, 1, HW, C)
        out = self.NIN_3(out.transpose(-1, -2).reshape(b, c, h, w))
        return (x + out) / math.sqrt(2.0) if self.skip_rescale else x + out


class FirConv2d(nn.Module):
    """A ``k x k`` convolution fused with FIR 2x upsampling (``up``) or downsampling (``down``):
    ``weight`` ``(out, in, k, k)``, ``bias`` ``(out,)``."""

    def __init__(self, cin: int, cout: int, *, up: bool, down: bool, kernel: tuple[int, ...], size: int = 3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, size, size))
        self.bias = nn.Parameter(torch.empty(cout))
        self.up, self.down = up, down
        self.register_buffer("kernel", fir_kernel(kernel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = upsample_conv_2d(x, self.weight, self.kernel)
        elif self.down:
            x = conv_downsample_2d(x, self.weight, self.kernel)
        else:
            x = F.conv2d(x, self.weight, padding=self.weight.shape[-1] // 2)
        return x + self.bias[None, :, None, None]


class Resample(nn.Module):
    """2x ``Upsample`` / ``Downsample`` of NCSN++: FIR (``fir``) or nearest neighbour / average
    pooling, with a 3x3 convolution to ``cout`` channels when ``with_conv`` (FIR: fused,
    ``Conv2d_0``; otherwise ``Conv_0``, after the upsampling or as a stride-2 convolution on the
    bottom/right-padded input)."""

    def __init__(self, cin: int, cout: int | None, *, up: bool, with_conv: bool, fir: bool, kernel: tuple[int, ...]) -> None:
        super().__init__()
        cout = cout or cin
        self.up, self.with_conv, self.fir = up, with_conv, fir
        if with_conv and fir:
            self.Conv2d_0 = FirConv2d(cin, cout, up=up, down=not up, kernel=kernel)
        elif with_conv:
            self.Conv_0 = conv3x3(cin, cout) if up else conv3x3(cin, cout, stride=2, padding=0)
        if fir:
            self.register_buffer("kernel", fir_kernel(kernel), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fir and self.with_conv:
            return self.Conv2d_0(x)
        if self.fir:
            return upsample_2d(x, self.kernel) if self.up else downsample_2d(x, self.kernel)
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            return self.Conv_0(x) if self.with_conv else x
        if self.with_conv:
            return self.Conv_0(F.pad(x, (0, 1, 0, 1)))
        return F.avg_pool2d(x, 2, stride=2)


class ResnetBlock(nn.Module):
    """A residual block on ``(B, cin, H, W)`` features and the ``(B, temb)`` embedding:
    ``act(GroupNorm) -> [resample] -> conv3x3 (+ Dense(act(temb))) -> act(GroupNorm) -> conv3x3``,
    plus the shortcut, divided by sqrt(2) with ``skip_rescale``.

    ``kind="biggan"``: the block resamples 2x (``up``/``down``: FIR with ``fir``, else nearest /
    average) both paths before the first convolution, and its shortcut is a 1x1 convolution
    ``Conv_2`` wherever the shape changes. ``kind="ddpm"``: no resampling, the shortcut is a NIN
    (``NIN_0``) where the channels change. ``temb`` None: no embedding (unconditional)."""

    def __init__(self, kind: str, act, cin: int, cout: int | None = None, *, temb: int | None, up: bool = False,
                 down: bool = False, fir: bool = False, kernel: tuple[int, ...] = (1, 3, 3, 1), skip_rescale: bool = True) -> None:
        super().__init__()
        cout = cout or cin
        self.kind, self.act, self.up, self.down, self.fir, self.skip_rescale = kind, act, up, down, fir, skip_rescale
        self.GroupNorm_0 = group_norm(cin)
        self.Conv_0 = conv3x3(cin, cout)
        if temb is not None:
            self.Dense_0 = nn.Linear(temb, cout)
        self.GroupNorm_1 = group_norm(cout)
        self.Conv_1 = conv3x3(cout, cout)
        self.shortcut = None  # the name of the shortcut layer, if any
        if kind == "biggan" and (cin != cout or up or down):
            self.Conv_2 = conv1x1(cin, cout)
            self.shortcut = "Conv_2"
        elif kind == "ddpm" and cin != cout:
            self.NIN_0 = NIN(cin, cout)
            self.shortcut = "NIN_0"
        if fir:
            self.register_buffer("kernel", fir_kernel(kernel), persistent=False)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return upsample_2d(x, self.kernel) if self.fir else naive_upsample_2d(x)
        if self.down:
            return downsample_2d(x, self.kernel) if self.fir else naive_downsample_2d(x)
        return x

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        h = self._resample(self.act(self.GroupNorm_0(x)))
        x = self._resample(x)
        h = self.Conv_0(h)
        if temb is not None and hasattr(self, "Dense_0"):
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.Conv_1(self.act(self.GroupNorm_1(h)))
        if self.shortcut is not None:
            x = getattr(self, self.shortcut)(x)
        return (x + h) / math.sqrt(2.0) if self.skip_rescale else x + h


class Combine(nn.Module):
    """The input pyramid's merge: a 1x1 convolution of the image to the features' channels, then
    their sum or their concatenation ``[image features, features]``."""

    def __init__(self, cin: int, cout: int, method: str) -> None:
        super().__init__()
        self.Conv_0 = conv1x1(cin, cout)
        self.method = method

    def forward(self, image: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        y = self.Conv_0(image)
        return torch.cat([y, h], dim=1) if self.method == "cat" else y + h


# ----------------------------------------------------------------------------------------- network
class NCSNpp(nn.Module):
    """The NCSN++ score network of a :class:`NcsnppConfig` (module docstring).

    ``forward(x, sigma)``: images ``(B, num_channels, H, W)`` in the data's units (``[0, 1]`` unless
    ``centered``) with noise of standard deviation ``sigma`` (a number or ``(B,)``) -> the score
    ``(B, num_channels, H, W)`` (divided by sigma with ``scale_by_sigma``). Weights are created
    uninitialised: load a converted state dict (:mod:`medrecon.priors.convert`)."""

    def __init__(self, config: NcsnppConfig | dict) -> None:
        super().__init__()
        c = config if isinstance(config, NcsnppConfig) else NcsnppConfig.from_dict(config)
        self.config = c
        self.act = ACTIVATIONS[c.nonlinearity]
        widths, n, levels, attn = c.widths, c.num_res_blocks, len(c.widths), set(c.attention_levels)
        ddpm, image = c.resblock_type == "ddpm", c.num_channels
        block_class = "ResnetBlockDDPMpp" if ddpm else "ResnetBlockBigGANpp"
        temb = 4 * c.nf if c.conditional else None
        modules: list[nn.Module] = []
        names: list[str] = []
        count: Counter = Counter()

        def add(module: nn.Module, flax_class: str) -> None:
            names.append(f"{flax_class}_{count[flax_class]}")
            count[flax_class] += 1
            modules.append(module)

        def block(cin: int, cout: int | None = None, **resample) -> nn.Module:
            return ResnetBlock(c.resblock_type, self.act, cin, cout, temb=temb, fir=c.fir and not ddpm, kernel=c.fir_kernel,
                               skip_rescale=c.skip_rescale, **resample)

        def resample(cin: int, cout: int | None, up: bool, with_conv: bool) -> nn.Module:
            return Resample(cin, cout, up=up, with_conv=with_conv, fir=c.fir, kernel=c.fir_kernel)

        if c.embedding_type == "fourier":
            add(GaussianFourierProjection(c.nf), "GaussianFourierProjection")
        if c.conditional:
            add(nn.Linear(2 * c.nf if c.embedding_type == "fourier" else c.nf, 4 * c.nf), "Dense")
            add(nn.Linear(4 * c.nf, 4 * c.nf), "Dense")
        add(conv3x3(image, c.nf), "Conv")
        skips, ch, pyramid = [c.nf], c.nf, image
        for lv in range(levels):  # the encoder
            for _ in range(n):
                add(block(ch, widths[lv]), block_class)
                ch = widths[lv]
                if lv in attn:
                    add(AttnBlock(ch, skip_rescale=c.skip_rescale), "AttnBlockpp")
                skips.append(ch)
            if lv == levels - 1:
                continue
            if ddpm:
                add(resample(ch, None, False, c.resamp_with_conv), "Downsample")
            else:
                add(block(ch, down=True), block_class)
            if c.progressive_input == "input_skip":
                count["Downsample"] += 1  # the image pyramid's FIR downsampler: parameter-free, a Flax module of its own
                add(Combine(image, ch, c.progressive_combine), "Combine")
                ch = 2 * ch if c.progressive_combine == "cat" else ch
            elif c.progressive_input == "residual":
                add(resample(pyramid, ch, False, True), "Downsample")
                pyramid = ch
            skips.append(ch)
        add(block(ch), block_class)  # the middle
        add(AttnBlock(ch, skip_rescale=c.skip_rescale), "AttnBlockpp")
        add(block(ch), block_class)
        for lv in reversed(range(levels)):  # the decoder
            for _ in range(n + 1):
                add(block(ch + skips.pop(), widths[lv]), block_class)
                ch = widths[lv]
            if lv in attn:
                add(AttnBlock(ch, skip_rescale=c.skip_rescale), "AttnBlockpp")
            if c.progressive != "none" and (lv == levels - 1 or c.progressive == "output_skip"):
                if lv != levels - 1:
                    count["Upsample"] += 1  # the output pyramid's upsampler: parameter-free
                add(group_norm(ch), "GroupNorm")
                add(conv3x3(ch, image if c.progressive == "output_skip" else ch), "Conv")
                pyramid = image if c.progressive == "output_skip" else ch
            elif c.progressive == "residual":
                add(resample(pyramid, ch, True, True), "Upsample")
                pyramid = ch
            if lv != 0:
                if ddpm:
                    add(resample(ch, None, True, c.resamp_with_conv), "Upsample")
                else:
                    add(block(ch, up=True), block_class)
        if c.progressive != "output_skip":
            add(group_norm(ch), "GroupNorm")
            add(conv3x3(ch, image), "Conv")
        self.all_modules = nn.ModuleList(modules)
        self._flax_names = tuple(names)
        self.register_buffer("fir", fir_kernel(c.fir_kernel), persistent=False)

    def rebuild_fir_kernels(self) -> None:
        """Make the FIR kernel buffers (not part of the state dict) again, on the weights' device:
        after a network built on the meta device has had its weights assigned."""
        device = next(self.parameters()).device
        for module in self.modules():
            for name in ("kernel", "fir"):
                if name in module._buffers:
                    module.register_buffer(name, fir_kernel(self.config.fir_kernel, device=device), persistent=False)

    def flax_names(self) -> tuple[str, ...]:
        """The Flax module name (``ClassName_k``) of each entry of ``all_modules``."""
        return self._flax_names

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def timesteps(self, sigma: torch.Tensor) -> torch.Tensor:
        """The positional embedding's index of each sigma in the geometric table of ``num_scales``
        levels from ``sigma_max`` (index 0) to ``sigma_min``: fractional between entries, clamped to
        the table, an entry's integer index where sigma is on it to float32 rounding."""
        c = self.config
        span = math.log(c.sigma_max) - math.log(c.sigma_min)
        t = (c.num_scales - 1) * (math.log(c.sigma_max) - torch.log(sigma.to(torch.float64))) / span
        t = t.clamp(0, c.num_scales - 1)
        nearest = torch.round(t)
        return torch.where((t - nearest).abs() < 1e-3, nearest, t).to(torch.float32)

    def _pyramid_resample(self, x: torch.Tensor, up: bool) -> torch.Tensor:
        if self.config.fir:
            return upsample_2d(x, self.fir) if up else downsample_2d(x, self.fir)
        return F.interpolate(x, scale_factor=2, mode="nearest") if up else F.avg_pool2d(x, 2, stride=2)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        c = self.config
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        sigma = sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma.reshape(x.shape[0])
        layers = iter(self.all_modules)
        if c.embedding_type == "fourier":
            temb = next(layers)(torch.log(sigma))
        else:
            temb = timestep_embedding(self.timesteps(sigma), c.nf)
        if c.conditional:
            first, second = next(layers), next(layers)
            temb = second(self.act(first(temb)))
        else:
            temb = None
        if not c.centered:
            x = 2 * x - 1.0
        n, levels, attn = c.num_res_blocks, len(c.widths), set(c.attention_levels)
        ddpm, skip_scale = c.resblock_type == "ddpm", (math.sqrt(2.0) if c.skip_rescale else 1.0)
        pyramid = x
        hs = [next(layers)(x)]
        for lv in range(levels):
            for _ in range(n):
                h = next(layers)(hs[-1], temb)
                if lv in attn:
                    h = next(layers)(h)
                hs.append(h)
            if lv == levels - 1:
                continue
            h = next(layers)(hs[-1]) if ddpm else next(layers)(hs[-1], temb)
            if c.progressive_input == "input_skip":
                pyramid = self._pyramid_resample(pyramid, up=False)
                h = next(layers)(pyramid, h)
            elif c.progressive_input == "residual":
                pyramid = (next(layers)(pyramid) + h) / skip_scale
                h = pyramid
            hs.append(h)
        h = next(layers)(hs[-1], temb)
        h = next(layers)(h)
        h = next(layers)(h, temb)
        out = None
        for lv in reversed(range(levels)):
            for _ in range(n + 1):
                h = next(layers)(torch.cat([h, hs.pop()], dim=1), temb)
            if lv in attn:
                h = next(layers)(h)
            if c.progressive != "none" and (lv == levels - 1 or c.progressive == "output_skip"):
                norm, conv = next(layers), next(layers)
                branch = conv(self.act(norm(h)))
                out = branch if lv == levels - 1 else self._pyramid_resample(out, up=True) + branch
            elif c.progressive == "residual":
                out = (next(layers)(out) + h) / skip_scale
                h = out
            if lv != 0:
                h = next(layers)(h) if ddpm else next(layers)(h, temb)
        if c.progressive == "output_skip":
            h = out
        else:
            norm, conv = next(layers), next(layers)
            h = conv(self.act(norm(h)))
        if next(layers, None) is not None:
            raise RuntimeError("NCSN++: not every layer was used (the forward pass and the layout disagree)")
        if c.scale_by_sigma:
            h = h / sigma.to(h.dtype)[:, None, None, None]
        return h

    # --- the prior folder (the layout of a diffusers model folder)
    def save_pretrained(self, folder, safe_serialization: bool = True) -> None:
        """``folder/config.json`` (``_class_name`` and the config) and the weights as safetensors."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps({"_class_name": CLASS_NAME, **self.config.to_dict()}, indent=2))
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS_FILE))

    @classmethod
    def from_config(cls, config: dict) -> NCSNpp:
        """A network (uninitialised weights) from a ``config.json`` dict (``_``-keys ignored)."""
        if config.get("_class_name", CLASS_NAME) != CLASS_NAME:
            raise InputError(f"config.json describes a {config.get('_class_name')!r}, not an {CLASS_NAME}")
        return cls(NcsnppConfig.from_dict(config))


def parameter_shapes(config: NcsnppConfig) -> dict[str, tuple[int, ...]]:
    """The state dict's names and shapes of the network of ``config`` (built on the meta device)."""
    with torch.device("meta"):
        net = NCSNpp(config)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


__all__ = ["CLASS_NAME", "NCSNpp", "NcsnppConfig", "parameter_shapes", "timestep_embedding"]
