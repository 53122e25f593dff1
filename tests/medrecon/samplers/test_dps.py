"""DPS against the analytic Gaussian prior (noiseless data: the posterior is known)."""

import pytest
import torch

from medrecon.errors import InputError
from medrecon.operators import CTProjector, ParallelBeamGeometry
from medrecon.priors.denoiser import GaussianDenoiser
from medrecon.samplers.dps import sample_dps
from medrecon.samplers.schedules import karras_sigmas

MEAN, STD, K = 0.5, 0.1, 64


def test_dps_moves_towards_the_posterior_and_the_data():
    op = CTProjector(ParallelBeamGeometry.sparse_view(6, 3))
    a = op.matrix(dtype=torch.float64).mat.to_dense()
    x_true = MEAN + STD * torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    y1 = op(x_true)
    prior_mean = torch.full_like(x_true, MEAN)
    posterior_mean = (MEAN + torch.linalg.pinv(a) @ (y1 - op(prior_mean)).reshape(-1)).reshape(1, 1, 6, 6)
    gens = [torch.Generator().manual_seed(i) for i in range(K)]
    out = sample_dps(GaussianDenoiser(MEAN, STD), op, y1.repeat(K, 1, 1, 1), sigmas=karras_sigmas(200, 0.002, 10.0),
                     generator=gens, zeta_rel=0.02, clip=None)  # 0.1 per step at 200 steps
    # DPS approximates the posterior: its mean is much closer to the posterior mean than the prior's,
    # and its samples fit the data much better than the prior mean does
    error = torch.sqrt(torch.mean((out.mean(0, keepdim=True) - posterior_mean) ** 2))
    gap = torch.sqrt(torch.mean((prior_mean - posterior_mean) ** 2))
    assert float(error) < 0.5 * float(gap)
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
