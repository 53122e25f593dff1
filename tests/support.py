"""Builders the tests share: the sample data's paths, small priors (analytic, untrained networks,
prior folders), small problems, and the analytic Gaussian posteriors the sampler tests hold results to.

The fixtures of ``tests/conftest.py`` hand these to tests; a test that needs one at collection time
(a ``parametrize`` list), in a child process or inside a helper imports it from here. Test modules
never import from other test modules; writers of synthetic raw-data and dataset files are in
:mod:`tests.support_files`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from medrecon.operators import (
    CTProjector,
    MultiCoilMRI,
    NonCartesianMRI,
    ParallelBeamGeometry,
    SingleCoilMRI,
    fft2c,
    ifft2c,
    simulated_maps,
)
from medrecon.operators.trajectories import radial
from medrecon.priors.denoiser import EDMDenoiser, GaussianDenoiser
from medrecon.priors.hub import Prior, PriorCard, save_prior
from medrecon.priors.latent import LatentPrior
from medrecon.priors.networks import AutoencoderConfig, UNetConfig, build_autoencoder, build_unet
from medrecon.priors.normalisation import Normalisation
from medrecon.reconstruct import Problem

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
CT_SAMPLE = DATA / "ct-lung1-sample.nii.gz"
CT_DICOM = DATA / "ct-lung1-sample-dicom"
MR_SAMPLE = DATA / "mr-brain2-sample.nii.gz"
TRAIN = DATA / "train"
CT_TRAIN = TRAIN / "ct-lung2-train64.nii.gz"  # the shipped 64x64 training slices of one CT patient
MR_TRAIN = TRAIN / "mr-brain1-train64.nii.gz"
FIXTURES = ROOT / "tests" / "fixtures"

GAUSS_MEAN, GAUSS_STD = 0.5, 0.1
"""The analytic prior of the sampler tests: ``N(GAUSS_MEAN, GAUSS_STD^2 I)`` (:func:`gaussian_prior`)."""

# Tiny configurations of the training tests (32x32 images; latents 4 x 16 x 16)
TINY_UNET_32 = UNetConfig(sample_size=32, block_out_channels=(8, 16), attention_levels=(), norm_num_groups=4, layers_per_block=1)
TINY_AE_32 = AutoencoderConfig(block_out_channels=(8, 16), norm_num_groups=4, sample_size=32, latent_channels=4)
TINY_LATENT_UNET_16 = UNetConfig(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(8, 16), attention_levels=(),
                                 norm_num_groups=4, layers_per_block=1)


def card(modality: str = "CT", size: int = 8, name: str | None = None, **fields) -> PriorCard:
    """A prior card of ``modality`` and image ``size`` with the modality's normalisation."""
    return PriorCard(name=name or f"test-{modality.lower()}", modality=modality, image_size=size, channels=1,
                     parameterisation="edm", normalisation=Normalisation.for_modality(modality).to_dict(), **fields)


def gaussian_prior(modality: str = "CT", size: int = 8, mean: float = GAUSS_MEAN, std: float = GAUSS_STD) -> Prior:
    """The analytic prior ``N(mean, std^2 I)`` (its denoiser is exact: the samplers' posterior is known)."""
    return Prior(GaussianDenoiser(mean, std), torch.nn.Identity(), card(modality, size, f"gauss-{modality.lower()}"), Path("."))


def tiny_unet(size: int = 16, channels: int = 1, *, attention: bool = True, seed: int = 0):
    """An untrained two-level UNet (8, 16 channels) on ``size x size`` images."""
    torch.manual_seed(seed)
    return build_unet(UNetConfig(sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=(8, 16),
                                 attention_levels=(1,) if attention else (), norm_num_groups=4, layers_per_block=1)).eval()


def unet_prior(modality: str = "CT", size: int = 16, *, attention: bool = True, seed: int = 0) -> Prior:
    """An untrained EDM pixel prior (:func:`tiny_unet`) of ``modality`` on ``size x size`` images (the
    same on every process: seeded)."""
    net = tiny_unet(size, attention=attention, seed=seed)
    return Prior(EDMDenoiser(net), net, card(modality, size, f"tiny-{modality.lower()}"), Path("."))


def saved_unet_prior(folder: Path, modality: str, size: int = 256) -> Path:
    """An untrained, attention-free prior folder (what ``--prior`` takes) for command-line tests."""
    config = UNetConfig(sample_size=size, block_out_channels=(8, 16), attention_levels=(), norm_num_groups=4, layers_per_block=1)
    torch.manual_seed(0)
    return save_prior(folder, build_unet(config), card(modality, size, f"tiny-{modality.lower()}",
                                                       training={"summary": "untrained (tests)"}))


def tiny_latent_prior(modality: str = "CT") -> Prior:
    """An untrained latent prior on 8x8 images (4-channel 4x4 latents) for pipeline tests."""
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


def small_single_coil_problem(n: int = 2, size: int = 8, *, noisy: bool = False):
    """``(Problem, x)``: complex images near 0.5 under a single-coil column mask (every other column
    and two centre columns: underdetermined, and ``A^H A`` is a projector, so CG solves it exactly)."""
    op = SingleCoilMRI(column_mask(size))
    x = (0.5 + 0.1 * torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(1))).to(torch.complex64)
    return Problem(op, op(x), "MR", noisy=noisy), x


def column_mask(size: int = 8) -> torch.Tensor:
    """A ``size x size`` Cartesian mask: every other column and the two centre columns."""
    mask = torch.zeros(size, size)
    mask[:, ::2] = 1
    mask[:, size // 2 - 1 : size // 2 + 1] = 1
    return mask


def smooth_blob_images(size: int, batch: int = 2) -> torch.Tensor:
    """``(batch, 1, size, size)`` complex64 smooth blobs (a Gaussian plus a disc), item k scaled by ``1 + 0.2 k``."""
    rows = torch.arange(size, dtype=torch.float32) - size / 2
    r2 = rows[:, None] ** 2 + rows[None, :] ** 2
    blob = torch.exp(-r2 / (2 * (size / 5) ** 2)) + 0.5 * (r2 < (size / 6) ** 2)
    return torch.stack([blob * (1 + 0.2 * k) for k in range(batch)])[:, None].to(torch.complex64) / 2


def noncartesian_problem(size: int = 32, spokes: int = 16, coils: int = 4):
    """``(op, x, y)``: golden-angle radial multi-coil MRI of two :func:`smooth_blob_images`."""
    op = NonCartesianMRI(radial((size, size), spokes), (size, size), simulated_maps(coils, (size, size))[None])
    x = smooth_blob_images(size)
    return op, x, op(x)


def smooth_images(n: int = 2, size: int = 16, seed: int = 0) -> torch.Tensor:
    """``(n, 1, size, size)`` smooth random images in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool2d(torch.rand(n, 1, size + 4, size + 4, generator=g), 5, stride=1).clamp(0, 1)


def generators(n: int, seed: int = 0) -> list[torch.Generator]:
    """One seeded generator per batch item (the samplers' ``generator`` argument)."""
    return [torch.Generator().manual_seed(seed + k) for k in range(n)]


# ------------------------------------------------------------------------------ Gaussian posteriors
def ct_posterior_problem(size: int = 6, views: int = 3, seed: int = 99):
    """``(op, y, posterior_mean)`` in float64: one image drawn from the analytic prior, its noiseless
    sparse-view sinogram, and the posterior's mean. With noiseless data the posterior is the prior
    restricted to ``{A x = y}``: its mean is ``mean + A^+ (y - A mean)``. The default geometry's
    matrix has an exact null space and a well-conditioned range."""
    op = CTProjector(ParallelBeamGeometry.sparse_view(size, views))
    a = op.matrix(dtype=torch.float64).mat.to_dense()
    x = GAUSS_MEAN + GAUSS_STD * torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y = op(x)
    residual = (y - op(torch.full_like(x, GAUSS_MEAN))).reshape(-1)
    return op, y, (GAUSS_MEAN + torch.linalg.pinv(a) @ residual).reshape(1, 1, size, size)


def mri_posterior_problem(size: int = 8, seed: int = 1):
    """``(op, y, posterior_mean)`` in complex128: single-coil Cartesian MRI (``T`` = the FFT, exact) of
    one image drawn from the analytic prior; the posterior mean takes the measured k-space from ``y``
    and the rest from the prior mean."""
    mask = column_mask(size)
    op = SingleCoilMRI(mask)
    x = GAUSS_MEAN + GAUSS_STD * torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y = op(x.to(torch.complex128))
    prior_kspace = fft2c(torch.full_like(x, GAUSS_MEAN).to(torch.complex128))
    return op, y, ifft2c(mask * y + (1 - mask) * prior_kspace)


def rms(v: torch.Tensor) -> float:
    """The root mean square of ``|v|``."""
    return float(torch.sqrt(torch.mean(v.abs() ** 2)))


class OrthogonalAutoencoder(torch.nn.Module):
    """An exactly invertible linear "autoencoder": 2x2 pixel unshuffle, then an orthogonal 4x4 mix
    of the channels (so an isotropic latent Gaussian is an isotropic image Gaussian)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(latent_channels=4, block_out_channels=(4, 4), in_channels=1)  # downsampling 2
        q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64))
        self.register_buffer("q", q)

    def encode(self, x):
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=torch.einsum("ij,bjhw->bihw", self.q, F.pixel_unshuffle(x, 2))))

    def decode(self, z):
        return SimpleNamespace(sample=F.pixel_shuffle(torch.einsum("ji,bjhw->bihw", self.q, z), 2))


def gaussian_latent_prior(size: int) -> LatentPrior:
    """The analytic prior as a latent prior on ``size x size`` images: scaled latents
    ``z = Q unshuffle(x) / GAUSS_STD`` of the image prior are ``N(mean_z, I)`` (exact Tweedie)."""
    ae = OrthogonalAutoencoder()
    mean_z = ae.encode(torch.full((1, 1, size, size), GAUSS_MEAN, dtype=torch.float64)).latent_dist.mean[0] / GAUSS_STD
    return LatentPrior(ae, 1.0 / GAUSS_STD, GaussianDenoiser(mean_z, 1.0))


# ------------------------------------------------------------------------------ records
def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def absolute_paths(card: dict, *extra: str) -> list[str]:
    """Every string of a card that is or holds an absolute path (or one of ``extra``)."""
    return [s for s in _strings(card) if s.startswith(("/", "~", "\\")) or ":\\" in s or any(e in s for e in extra)]


def load_script(name: str):
    """The project script ``scripts/NAME.py`` as a module, loaded once per session (the fixture
    recipes and reference-network builders the conversion tests share)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
