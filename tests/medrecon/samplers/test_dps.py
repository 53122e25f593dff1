"""DPS (medrecon.samplers.dps) against the analytic Gaussian prior: what only DPS does.

DPS approximates the posterior (the sampler contract, test_contract.py, holds what every sampler
does): with noiseless data its mean moves most of the way to the Gaussian posterior mean and its
samples towards the data; gradients stay inside it; ``zeta_rel`` is checked."""

import pytest
import torch

from medrecon.errors import InputError
from medrecon.operators import CTProjector, ParallelBeamGeometry
from medrecon.priors.denoiser import GaussianDenoiser
from medrecon.samplers.dps import sample_dps
from medrecon.samplers.schedules import karras_sigmas
from tests.support import GAUSS_MEAN as MEAN
from tests.support import GAUSS_STD as STD
from tests.support import ct_posterior_problem, generators, rms

K = 64


def test_dps_moves_towards_the_posterior_and_the_data():
    op, y1, posterior_mean = ct_posterior_problem()
    prior_mean = torch.full_like(posterior_mean, MEAN)
    out = sample_dps(GaussianDenoiser(MEAN, STD), op, y1.repeat(K, 1, 1, 1), sigmas=karras_sigmas(200, 0.002, 10.0),
                     generator=generators(K), zeta_rel=0.02, clip=None)  # 0.1 per step at 200 steps
    # DPS approximates the posterior: its mean is much closer to the posterior mean than the prior's,
    # and its samples fit the data much better than the prior mean does
    assert rms(out.mean(0, keepdim=True) - posterior_mean) < 0.5 * rms(prior_mean - posterior_mean)
    residual = torch.linalg.vector_norm((op(out) - y1).reshape(K, -1), dim=1).mean()
    assert float(residual) < 0.5 * float(torch.linalg.vector_norm(op(prior_mean) - y1))


def test_dps_keeps_autograd_local_and_checks_zeta():
    op = CTProjector(ParallelBeamGeometry.sparse_view(6, 3))
    y = torch.zeros((1, *op.out_shape))
    with torch.no_grad():  # the API boundary runs without gradients; DPS switches them on locally
        out = sample_dps(GaussianDenoiser(MEAN, STD), op, y, sigmas=karras_sigmas(3), generator=torch.Generator())
    assert out.shape == (1, 1, 6, 6) and not out.requires_grad and 0 <= float(out.min()) and float(out.max()) <= 1
    with pytest.raises(InputError, match="zeta_rel"):
        sample_dps(GaussianDenoiser(), op, y, sigmas=karras_sigmas(3), generator=torch.Generator(), zeta_rel=-1)
