"""The coarse-grid denoiser of multi-resolution reconstruction (medrecon.multiresolution)."""

import pytest
import torch

from medrecon.errors import InputError, ShapeError
from medrecon.multiresolution import CoarseGridDenoiser, fourier_resize
from medrecon.priors.denoiser import Denoiser, GaussianDenoiser


class _Recording(Denoiser):
    """Returns its input; remembers the shapes and noise levels it was called with."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def denoise(self, x, sigma):
        self.calls.append((tuple(x.shape), sigma.clone()))
        return x


@pytest.mark.parametrize(("fine", "coarse"), [(512, 256), (320, 256), (301, 256)])
def test_cropping_the_spectrum_leaves_white_noise_of_the_stated_level(fine, coarse):
    noise = torch.randn(8, 1, fine, fine, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    coarse_noise = fourier_resize(noise, coarse)
    assert coarse_noise.std().item() == pytest.approx(coarse / fine, rel=0.01)
    neighbours = (coarse_noise[..., 1:] * coarse_noise[..., :-1]).mean() / coarse_noise.var()
    assert abs(neighbours.item()) < 0.02  # white: neighbouring pixels uncorrelated


def test_the_prior_sees_its_own_grid_and_the_noise_left_by_resampling():
    inner = _Recording()
    x = torch.randn(3, 1, 512, 512)
    out = CoarseGridDenoiser(inner, 512, 256)(x, torch.tensor([1.0, 2.0, 4.0]))
    (shape, sigma), = inner.calls
    assert shape == (3, 1, 256, 256)
    torch.testing.assert_close(sigma, torch.tensor([0.5, 1.0, 2.0]))
    assert out.shape == x.shape and out.dtype == x.dtype


def test_a_band_limited_image_passes_unchanged_real_or_complex():
    yy, xx = torch.meshgrid(torch.arange(320.0), torch.arange(320.0), indexing="ij")
    wave = (torch.cos(2 * torch.pi * 7 * xx / 320) + torch.sin(2 * torch.pi * 11 * yy / 320))[None, None]
    denoiser = CoarseGridDenoiser(_Recording(), 320, 256)
    torch.testing.assert_close(denoiser(wave, 0.1), wave, atol=1e-4, rtol=0)  # float32 FFTs
    complex_wave = wave * torch.exp(1j * 2 * torch.pi * 3 * xx / 320)[None, None]
    torch.testing.assert_close(denoiser(complex_wave, 0.1), complex_wave, atol=1e-4, rtol=0)  # float32 FFTs


def test_a_gaussian_prior_removes_noise_on_the_fine_grid():
    torch.manual_seed(0)
    clean = torch.full((2, 1, 128, 128), 0.3)
    noisy = clean + 0.5 * torch.randn_like(clean)
    denoised = CoarseGridDenoiser(GaussianDenoiser(mean=0.3, std=0.01), 128, 64)(noisy, 0.5)
    assert (denoised - clean).abs().max() < 0.01 < (noisy - clean).abs().max()


def test_images_of_another_side_and_a_finer_prior_are_refused():
    with pytest.raises(ShapeError, match="512x512"):
        CoarseGridDenoiser(_Recording(), 512, 256)(torch.zeros(1, 1, 256, 256), 1.0)
    with pytest.raises(InputError, match="at least the prior's"):
        CoarseGridDenoiser(_Recording(), 200, 256)
