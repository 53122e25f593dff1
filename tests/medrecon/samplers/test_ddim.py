"""The unconditional DDIM sampler (medrecon.samplers.ddim) draws from the analytic Gaussian prior, item i
from generator i. The schedules: test_schedules.py."""

import pytest
import torch

from medrecon.priors.denoiser import GaussianDenoiser
from medrecon.samplers.ddim import sample_ddim
from medrecon.samplers.schedules import karras_sigmas


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
