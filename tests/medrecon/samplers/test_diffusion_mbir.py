"""DiffusionMBIR (medrecon.samplers.diffusion_mbir): what only it does. Its shape, dtype, reproducibility
and NFE are held by the sampler contract (test_contract.py); here: the final Kaczmarz step, the
volume whatever the pipeline's chunk size with its clip to [0, 1], and its refusals."""

from __future__ import annotations

import pytest
import torch

from medrecon.errors import InputError
from medrecon.operators import IdentityOperator
from medrecon.reconstruct import reconstruct
from medrecon.samplers.diffusion_mbir import kaczmarz_step


def test_kaczmarz_step_is_exact_for_the_identity():
    y = torch.rand(2, 1, 3, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(kaczmarz_step(IdentityOperator((1, 3, 4)), y, torch.zeros_like(y)), y)


def test_diffusion_mbir_runs_on_the_volume_whatever_the_chunk_size(gaussian_prior, small_ct_problem):
    problem, _ = small_ct_problem(n=5)
    kwargs = dict(sampler="diffusion_mbir", steps=4, seed=2, progress=False, options={"tv_lam_rel": 1e-3, "tv_rho_rel": 0.1})
    whole = reconstruct(problem, gaussian_prior(), batch_size=5, **kwargs)
    chunked = reconstruct(problem, gaussian_prior(), batch_size=2, **kwargs)
    torch.testing.assert_close(chunked.mean, whole.mean, rtol=1e-4, atol=1e-4)
    assert whole.nfe == 2 * 4 + 1 and float(whole.mean.min()) >= 0 and float(whole.mean.max()) <= 1
    with pytest.raises(InputError, match="volume_prior must be 'tv-z'"):
        reconstruct(problem, gaussian_prior(), sampler="diffusion_mbir", steps=2, options={"volume_prior": "none"}, progress=False)
    with pytest.raises(InputError, match="cg_iters"):
        reconstruct(problem, gaussian_prior(), sampler="diffusion_mbir", steps=2, options={"cg_iters": 0}, progress=False)
