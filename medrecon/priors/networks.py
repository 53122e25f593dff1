"""Network architectures of the priors, built from diffusers' classes by an explicit config.

``UNet2DModel`` for pixel priors (attention only at the lowest resolutions, so the CPU stays
usable) and ``AutoencoderKL`` for the latent priors. Configs are frozen dataclasses with
``to_dict``/``from_dict``; the diffusers ``config.json`` of a saved prior is what they produce.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from medrecon.errors import InputError


@dataclass(frozen=True)
class UNetConfig:
    """A ``diffusers.UNet2DModel``: ``block_out_channels`` per resolution level (each level halves the
    size), attention at the levels listed in ``attention_levels`` (0 = full resolution)."""

    sample_size: int = 128
    in_channels: int = 1
    out_channels: int = 1
    block_out_channels: tuple[int, ...] = (32, 64, 128, 128)
    attention_levels: tuple[int, ...] = (2,)
    layers_per_block: int = 2
    norm_num_groups: int = 8
    dropout: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        object.__setattr__(self, "attention_levels", tuple(int(a) for a in self.attention_levels))
        levels = len(self.block_out_channels)
        if levels < 1 or any(c < 1 for c in self.block_out_channels):
            raise InputError(f"block_out_channels must be positive, got {self.block_out_channels}")
        if any(not 0 <= a < levels for a in self.attention_levels):
            raise InputError(f"attention_levels must lie in 0..{levels - 1}, got {self.attention_levels}")
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise InputError(f"every block width must be divisible by norm_num_groups={self.norm_num_groups}")
        if self.sample_size % (2 ** (levels - 1)):
            raise InputError(f"sample_size {self.sample_size} must be divisible by {2 ** (levels - 1)}")

    def diffusers_kwargs(self) -> dict:
        down = tuple("AttnDownBlock2D" if i in self.attention_levels else "DownBlock2D" for i in range(len(self.block_out_channels)))
        up = tuple("AttnUpBlock2D" if i in self.attention_levels else "UpBlock2D" for i in reversed(range(len(self.block_out_channels))))
        return {
            "sample_size": self.sample_size,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "block_out_channels": self.block_out_channels,
            "down_block_types": down,
            "up_block_types": up,
            "layers_per_block": self.layers_per_block,
            "norm_num_groups": self.norm_num_groups,
            "dropout": self.dropout,
        }

    def to_dict(self) -> dict:
        d = asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        d["attention_levels"] = list(self.attention_levels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        try:
            return cls(**d)
        except TypeError as exc:
            raise InputError(f"bad UNet config: {exc}") from None


@dataclass(frozen=True)
class AutoencoderConfig:
    """A ``diffusers.AutoencoderKL`` with ``latent_channels`` and one downsampling per extra block."""

    in_channels: int = 1
    out_channels: int = 1
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    sample_size: int = 128
    extra: dict = field(default_factory=dict)

    def diffusers_kwargs(self) -> dict:
        n = len(self.block_out_channels)
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "latent_channels": self.latent_channels,
            "block_out_channels": tuple(self.block_out_channels),
            "down_block_types": ("DownEncoderBlock2D",) * n,
            "up_block_types": ("UpDecoderBlock2D",) * n,
            "layers_per_block": self.layers_per_block,
            "norm_num_groups": self.norm_num_groups,
            "sample_size": self.sample_size,
            **self.extra,
        }

    def to_dict(self) -> dict:
        d = asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        return d


def build_unet(config: UNetConfig):
    """A freshly initialised ``diffusers.UNet2DModel`` of the config."""
    from diffusers import UNet2DModel  # diffusers loads only when a network is built

    return UNet2DModel(**config.diffusers_kwargs())


def build_autoencoder(config: AutoencoderConfig):
    """A freshly initialised ``diffusers.AutoencoderKL`` of the config."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**config.diffusers_kwargs())


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())
