"""Schedules and the unconditional DDIM sampler against the analytic Gaussian prior."""

import pytest
import torch

from medrecon.errors import InputError
from medrecon.priors.denoiser import DiscreteVPSchedule, GaussianDenoiser
from medrecon.samplers.ddim import sample_ddim
from medrecon.samplers.schedules import geometric_sigmas, karras_sigmas, vp_sigmas


def test_schedules_are_decreasing_and_hit_their_ends():
    k = karras_sigmas(10, 0.002, 80.0)
    assert float(k[0]) == pytest.approx(80.0) and float(k[-1]) == pytest.approx(0.002)
    assert bool(torch.all(k[1:] < k[:-1]))
    g = geometric_sigmas(5, 0.01, 100.0)
    torch.testing.assert_close(g, torch.tensor([100.0, 10.0, 1.0, 0.1, 0.01], dtype=torch.float64))
    schedule = DiscreteVPSchedule.linear(1000)
    v = vp_sigmas(schedule.alphas_cumprod, 4)
    torch.testing.assert_close(v[[0, -1]], schedule.sigmas[[999, 0]])
    with pytest.raises(InputError, match="sigma_min < sigma_max"):
        karras_sigmas(10, 1.0, 0.5)


def test_ddim_draws_from_a_gaussian_prior():
    mean, std = 0.3, 0.2
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    x = sample_ddim(GaussianDenoiser(mean, std), (4, 1, 32, 32), karras_sigmas(200, 0.002, 80.0), generator=gens, dtype=torch.float64)
    assert float(x.mean()) == pytest.approx(mean, abs=0.01)
    assert float(x.std()) == pytest.approx(std, rel=0.03)
    # item i depends only on generator i
    again = sample_ddim(GaussianDenoiser(mean, std), (1, 1, 32, 32), karras_sigmas(200, 0.002, 80.0),
                        generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.testing.assert_close(again, x[2:3])
