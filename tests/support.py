"""Builders the tests share: small priors, problems and the sample data's paths.

The fixtures of ``tests/conftest.py`` hand these to tests; a test that needs one at collection time
(a ``parametrize`` list) imports it from here. Test modules never import from other test modules.
"""

from __future__ import annotations

from pathlib import Path

import torch

from medrecon.operators import CTProjector, MultiCoilMRI, ParallelBeamGeometry, simulated_maps
from medrecon.priors.denoiser import EDMDenoiser, GaussianDenoiser
from medrecon.priors.hub import Prior, PriorCard, save_prior
from medrecon.priors.networks import UNetConfig, build_unet
from medrecon.priors.normalisation import Normalisation
from medrecon.reconstruct import Problem

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
CT_SAMPLE = DATA / "ct-lung1-sample.nii.gz"
CT_DICOM = DATA / "ct-lung1-sample-dicom"
MR_SAMPLE = DATA / "mr-brain2-sample.nii.gz"


def card(modality: str = "CT", size: int = 8, name: str | None = None, **fields) -> PriorCard:
    """A prior card of ``modality`` and image ``size`` with the modality's normalisation."""
    return PriorCard(name=name or f"test-{modality.lower()}", modality=modality, image_size=size, channels=1,
                     parameterisation="edm", normalisation=Normalisation.for_modality(modality).to_dict(), **fields)


def gaussian_prior(modality: str = "CT", size: int = 8, mean: float = 0.5, std: float = 0.1) -> Prior:
    """The analytic prior ``N(mean, std^2 I)`` (its denoiser is exact: the samplers' posterior is known)."""
    return Prior(GaussianDenoiser(mean, std), torch.nn.Identity(), card(modality, size, f"gauss-{modality.lower()}"), Path("."))


def tiny_unet(size: int = 16, channels: int = 1, *, attention: bool = True, seed: int = 0):
    """An untrained two-level UNet (8, 16 channels) on ``size x size`` images."""
    torch.manual_seed(seed)
    return build_unet(UNetConfig(sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=(8, 16),
                                 attention_levels=(1,) if attention else (), norm_num_groups=4, layers_per_block=1)).eval()


def unet_prior(modality: str = "CT", size: int = 16, *, seed: int = 0) -> Prior:
    """An untrained EDM pixel prior (:func:`tiny_unet`) of ``modality`` on ``size x size`` images."""
    net = tiny_unet(size, seed=seed)
    return Prior(EDMDenoiser(net), net, card(modality, size, f"tiny-{modality.lower()}"), Path("."))


def saved_unet_prior(folder: Path, modality: str, size: int = 256) -> Path:
    """An untrained, attention-free prior folder (what ``--prior`` takes) for command-line tests."""
    config = UNetConfig(sample_size=size, block_out_channels=(8, 16), attention_levels=(), norm_num_groups=4, layers_per_block=1)
    torch.manual_seed(0)
    return save_prior(folder, build_unet(config), card(modality, size, f"tiny-{modality.lower()}",
                                                       training={"summary": "untrained (tests)"}))


def tiny_latent_prior(modality: str = "CT") -> Prior:
    """An untrained latent prior on 8x8 images (4-channel 4x4 latents) for pipeline tests."""
    from medrecon.priors.latent import LatentPrior
    from medrecon.priors.networks import AutoencoderConfig, build_autoencoder

    torch.manual_seed(0)
    ae = build_autoencoder(AutoencoderConfig(block_out_channels=(8, 16), norm_num_groups=4, sample_size=8, latent_channels=4))
    unet = build_unet(UNetConfig(sample_size=4, in_channels=4, out_channels=4, block_out_channels=(8, 16), attention_levels=(),
                                 norm_num_groups=4, layers_per_block=1))
    latent = LatentPrior(ae, 1.0, EDMDenoiser(unet, sigma_data=1.0))
    latent_card = card(modality, 8, f"tiny-latent-{modality.lower()}", latent={"scaling_factor": 1.0, "latent_channels": 4,
                                                                               "downsampling": 2})
    return Prior(latent.denoiser, unet, latent_card, Path("."), latent=latent)


def small_ct_problem(n: int = 3, size: int = 8, views: int = 4, *, noisy: bool = False):
    """``(Problem, x)``: ``n`` random ``size x size`` images near 0.5 and their noiseless parallel-beam sinograms."""
    op = CTProjector(ParallelBeamGeometry.sparse_view(size, views))
    x = 0.5 + 0.1 * torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(1))
    return Problem(op, op(x), "CT", noisy=noisy), x


def small_mr_problem(n: int = 2, size: int = 16, coils: int = 4, *, noisy: bool = False):
    """``(Problem, x)``: complex images near 0.5 under a multi-coil 2x column mask with a centre block."""
    maps = simulated_maps(coils, (size, size), dtype=torch.complex64)[None]
    mask = torch.zeros(size, size)
    mask[:, ::2] = 1
    mask[:, size // 2 - 2 : size // 2 + 2] = 1
    op = MultiCoilMRI(maps, mask)
    x = (0.5 + 0.1 * torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(1))).to(torch.complex64)
    return Problem(op, op(x), "MR", noisy=noisy), x


def smooth_images(n: int = 2, size: int = 16, seed: int = 0) -> torch.Tensor:
    """``(n, 1, size, size)`` smooth random images in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(n, 1, size + 4, size + 4, generator=g), 5, stride=1).clamp(0, 1)


def generators(n: int, seed: int = 0) -> list[torch.Generator]:
    """One seeded generator per batch item (the samplers' ``generator`` argument)."""
    return [torch.Generator().manual_seed(seed + k) for k in range(n)]
