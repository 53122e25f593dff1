"""The denoiser contract: every adapter, fed a network that is exact for a Gaussian image
distribution, must give the exact Gaussian denoiser; plus Tweedie, complex adapters (the phase frame,
the low-resolution phase of Cartesian and non-Cartesian k-space) and errors (medrecon.priors.denoiser)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrecon.errors import InputError, ShapeError
from medrecon.operators import MultiCoilMRI, simulated_maps
from medrecon.priors.denoiser import (
    DiscreteVPSchedule,
    EDMDenoiser,
    GaussianDenoiser,
    PhaseAlignedDenoiser,
    TwoChannelDenoiser,
    VEScoreDenoiser,
    VPEpsilonDenoiser,
    VPVPredictionDenoiser,
    low_resolution_phase,
)
from tests.support import noncartesian_problem

MEAN, STD = 0.3, 0.2
SCHEDULE = DiscreteVPSchedule.linear(1000)
TABLE = np.sqrt((1 - SCHEDULE.alphas_cumprod.numpy()) / SCHEDULE.alphas_cumprod.numpy())


def exact_x0(x, sigma):
    """E[x0 | x] of x0 ~ N(MEAN, STD^2), written out independently of the code under test."""
    s = sigma.reshape(-1, 1, 1, 1)
    return MEAN + STD**2 / (STD**2 + s**2) * (x - MEAN)


def sigma_of_timestep(t):
    """The test's own inverse of the timestep map: numpy interpolation of log sigma."""
    return torch.from_numpy(np.exp(np.interp(t.double().numpy(), np.arange(len(TABLE)), np.log(TABLE))))


def eps_net(x_t, t):
    sigma = sigma_of_timestep(t).to(x_t.dtype)
    x = x_t * torch.sqrt(1 + sigma**2).reshape(-1, 1, 1, 1)
    return (x - exact_x0(x, sigma)) / sigma.reshape(-1, 1, 1, 1)


def v_net(x_t, t):
    sigma = sigma_of_timestep(t).to(x_t.dtype)
    abar = (1 / (1 + sigma**2)).reshape(-1, 1, 1, 1)
    x = x_t / torch.sqrt(abar)
    x0 = exact_x0(x, sigma)
    eps = (x - x0) / sigma.reshape(-1, 1, 1, 1)
    return torch.sqrt(abar) * eps - torch.sqrt(1 - abar) * x0


def score_net(x, log_sigma):
    sigma = torch.exp(log_sigma)
    return -(x - MEAN) / (STD**2 + sigma.reshape(-1, 1, 1, 1) ** 2)  # grad log N(MEAN, STD^2 + sigma^2)


def edm_net(x_in, c_noise, sigma_data=0.5):
    sigma = torch.exp(4 * c_noise).reshape(-1, 1, 1, 1)
    x = x_in * torch.sqrt(sigma**2 + sigma_data**2)
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * sigma_data / torch.sqrt(sigma**2 + sigma_data**2)
    return (exact_x0(x, sigma.flatten()) - c_skip * x) / c_out


SIGMAS = torch.tensor([0.02, 0.15, 1.0, 20.0], dtype=torch.float64)  # inside the table's range


@pytest.mark.parametrize(
    "denoiser",
    [
        GaussianDenoiser(MEAN, STD),
        VPEpsilonDenoiser(eps_net, SCHEDULE),
        VPVPredictionDenoiser(v_net, SCHEDULE),
        VEScoreDenoiser(score_net, conditioning=torch.log),
        EDMDenoiser(edm_net),
    ],
    ids=["gaussian", "vp-eps", "vp-v", "ve-score", "edm"],
)
def test_adapters_give_the_exact_gaussian_denoiser(denoiser):
    gen = torch.Generator().manual_seed(0)
    x0 = MEAN + STD * torch.randn(4, 1, 8, 8, generator=gen, dtype=torch.float64)
    x = x0 + SIGMAS.reshape(-1, 1, 1, 1) * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(denoiser(x, SIGMAS), exact_x0(x, SIGMAS), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(denoiser(x[1:2], 0.15), exact_x0(x[1:2], SIGMAS[1:2]), rtol=1e-6, atol=1e-6)


def test_gaussian_denoiser_is_tweedie():
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    sigma = 0.4
    log_density = -0.5 * torch.sum((x - MEAN) ** 2) / (STD**2 + sigma**2)
    (score,) = torch.autograd.grad(log_density, x)
    torch.testing.assert_close(GaussianDenoiser(MEAN, STD)(x.detach(), sigma), x.detach() + sigma**2 * score)


def test_learned_variance_channels_are_dropped():
    def net(x_t, t):
        return torch.cat([eps_net(x_t, t), torch.full_like(x_t, 1e6)], dim=1)

    x = torch.rand(3, 1, 5, 5, dtype=torch.float64)
    denoiser = VPEpsilonDenoiser(net, SCHEDULE, learned_variance=True)
    torch.testing.assert_close(denoiser(x, SIGMAS[:3]), exact_x0(x, SIGMAS[:3]))
    with pytest.raises(ShapeError, match="should give 2 channels"):
        VPEpsilonDenoiser(eps_net, SCHEDULE, learned_variance=True)(x, 0.1)


def test_timestep_interpolation_hits_table_entries_and_clamps():
    table = torch.from_numpy(TABLE)
    torch.testing.assert_close(SCHEDULE.timestep(table[[0, 10, 999]]), torch.tensor([0.0, 10.0, 999.0], dtype=torch.float64))
    mid = torch.sqrt(table[10] * table[11])  # geometric mean: half way in log sigma
    assert float(SCHEDULE.timestep(mid[None])) == pytest.approx(10.5)
    assert float(SCHEDULE.timestep(torch.tensor([1e-9]))) == 0.0
    assert float(SCHEDULE.timestep(torch.tensor([1e9]))) == 999.0


def test_diffusers_unet_runs_behind_the_adapter():
    from diffusers import UNet2DModel

    net = UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    )
    denoiser = VPEpsilonDenoiser(net, SCHEDULE)
    x = torch.randn(3, 1, 16, 16)
    out = denoiser(x, torch.tensor([0.1, 1.0, 10.0]))
    assert out.shape == x.shape and out.dtype == x.dtype and bool(torch.isfinite(out).all())


def test_phase_aligned_denoiser_denoises_the_real_part_in_the_phase_frame():
    gen = torch.Generator().manual_seed(1)
    phase = torch.rand(2, 1, 6, 6, generator=gen, dtype=torch.float64)
    x = torch.complex(torch.randn(2, 1, 6, 6, generator=gen, dtype=torch.float64),
                      torch.randn(2, 1, 6, 6, generator=gen, dtype=torch.float64))
    out = PhaseAlignedDenoiser(GaussianDenoiser(MEAN, STD), phase, imag_std=0.05)(x, 0.3)
    u = x * torch.exp(-1j * phase)
    # the aligned imaginary part is N(0, 0.05^2): its exact denoiser shrinks it by 0.05^2 / (0.05^2 + sigma^2)
    shrink = 0.05**2 / (0.05**2 + 0.3**2)
    expected = torch.complex(exact_x0(u.real, torch.full((2,), 0.3, dtype=torch.float64)), shrink * u.imag) * torch.exp(1j * phase)
    torch.testing.assert_close(out, expected)
    keep = PhaseAlignedDenoiser(GaussianDenoiser(MEAN, STD), phase, imag_std=1e6)(x, 0.3)  # no shrinkage
    torch.testing.assert_close((keep * torch.exp(-1j * phase)).imag, u.imag)
    with pytest.raises(ShapeError, match="takes complex images"):
        PhaseAlignedDenoiser(GaussianDenoiser(), phase)(x.real, 0.3)


def test_two_channel_denoiser():
    x = torch.complex(torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4))
    out = TwoChannelDenoiser(GaussianDenoiser(MEAN, STD))(x, 0.5)
    s = torch.full((2,), 0.5)
    torch.testing.assert_close(out, torch.complex(exact_x0(x.real, s), exact_x0(x.imag, s)))


def test_low_resolution_phase_recovers_a_smooth_phase():
    h = w = 64
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    magnitude = (xx**2 + yy**2 < 0.8).double()
    true_phase = (0.6 * xx + 0.3 * yy**2).double()
    image = (magnitude * torch.exp(1j * true_phase))[None, None]
    op = MultiCoilMRI(simulated_maps(4, (h, w), dtype=torch.complex128)[None], torch.ones(h, w))
    estimate = low_resolution_phase(op, op(image))
    inside = magnitude.bool()[None, None] & (xx**2 + yy**2 < 0.5)[None, None]
    error = torch.angle(torch.exp(1j * (estimate - true_phase)))[inside]
    assert float(error.abs().max()) < 0.1


def test_bad_sigma_and_shapes():
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(InputError, match="finite and > 0"):
        GaussianDenoiser()(x, 0.0)
    with pytest.raises(ShapeError, match="one value per item"):
        GaussianDenoiser()(x, torch.ones(3))
    with pytest.raises(ShapeError, match=r"expected images \(B, C, H, W\)"):
        GaussianDenoiser()(torch.zeros(4, 4), 0.1)
    with pytest.raises(InputError, match="decrease with the timestep"):
        DiscreteVPSchedule(torch.linspace(0.1, 0.9, 10))


def test_the_smooth_phase_of_non_cartesian_data_comes_from_the_kspace_centre():
    op, x, _ = noncartesian_problem()
    phase = 0.4 * torch.linspace(-1, 1, 32)[None, None, None, :].expand(2, 1, 32, 32)
    estimated = low_resolution_phase(op, op(x * torch.exp(1j * phase)))
    inside = x.abs() > 0.1
    assert float((torch.angle(torch.exp(1j * (estimated - phase)))[inside]).abs().mean()) < 0.05
