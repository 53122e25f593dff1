"""DDS (medrecon.samplers.dds) against the analytic Gaussian prior: what only DDS does.

Its shape, dtype, batch independence, reproducibility, data fit and Gaussian posterior mean are
held by the sampler contract (test_contract.py); here: complex multi-coil MRI through the phase
adapter, its argument checks, ``dc_sigma_min`` and ``final_denoise_sigma``."""

import pytest
import torch

from medrecon.errors import InputError
from medrecon.operators import CTProjector, MultiCoilMRI, ParallelBeamGeometry, simulated_maps
from medrecon.priors.denoiser import GaussianDenoiser, PhaseAlignedDenoiser
from medrecon.samplers.dds import sample_dds
from medrecon.samplers.schedules import karras_sigmas
from tests.support import GAUSS_MEAN as MEAN
from tests.support import GAUSS_STD as STD
from tests.support import generators as gens


def test_dds_runs_on_complex_multicoil_mri_with_a_phase_aligned_prior():
    h = w = 16
    mask = torch.zeros(h, w)
    mask[:, ::2] = 1
    op = MultiCoilMRI(simulated_maps(4, (h, w), dtype=torch.complex128)[None], mask)
    x_true = (MEAN + STD * torch.randn(2, 1, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(5))).to(torch.complex128)
    phase = torch.zeros(2, 1, h, w, dtype=torch.float64)
    out = sample_dds(PhaseAlignedDenoiser(GaussianDenoiser(MEAN, STD), phase), op, op(x_true),
                     sigmas=karras_sigmas(8, 0.01, 5.0), generator=gens(2), cg_iters=10)
    assert out.dtype == torch.complex128 and out.shape == x_true.shape
    assert float(torch.linalg.vector_norm(op(out) - op(x_true)) / torch.linalg.vector_norm(op(x_true))) < 1e-3


def test_bad_arguments():
    op = CTProjector(ParallelBeamGeometry.sparse_view(8, 4))
    y = torch.zeros((1, *op.out_shape))
    with pytest.raises(InputError, match="eta"):
        sample_dds(GaussianDenoiser(), op, y, sigmas=karras_sigmas(3), generator=gens(1), eta=1.5)
    with pytest.raises(InputError, match="one per batch item"):
        sample_dds(GaussianDenoiser(), op, y.repeat(2, 1, 1, 1), sigmas=karras_sigmas(3), generator=gens(1))


def test_dc_sigma_min_leaves_the_last_steps_to_the_prior():
    op = CTProjector(ParallelBeamGeometry.sparse_view(8, 4))
    x_true = MEAN + STD * torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    y = op(x_true) + 0.05 * torch.randn(1, *op.out_shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    sigmas = karras_sigmas(12, 0.002, 10.0)
    threshold = float(sigmas[6]) - 1e-9  # steps 0..6 have data consistency, steps 7..11 do not

    def run(**kw):
        seen = []
        out = sample_dds(GaussianDenoiser(MEAN, STD), op, y, sigmas=sigmas, generator=gens(1), cg_iters=5, gamma_rel=1.0,
                         callback=lambda i, x0: seen.append(x0.clone()), **kw)
        return out, seen

    full, full_seen = run()
    split, split_seen = run(dc_sigma_min=threshold)
    prior_only, _ = run(dc_sigma_min=100.0)
    no_cg = sample_dds(GaussianDenoiser(MEAN, STD), op, y, sigmas=sigmas, generator=gens(1), cg_iters=0)
    for i in range(7):  # identical until the threshold
        torch.testing.assert_close(split_seen[i], full_seen[i])
    assert not torch.allclose(split, full)
    torch.testing.assert_close(prior_only, no_cg)  # above every level: the prior alone
    # the split run returns the prior's estimate, which fits the noisy data less than the full run
    assert float(torch.linalg.vector_norm(op(split) - y)) > float(torch.linalg.vector_norm(op(full) - y))
    with pytest.raises(InputError, match="dc_sigma_min"):
        run(dc_sigma_min=-1.0)


def test_final_denoise_is_one_more_prior_call_on_the_result():
    op = CTProjector(ParallelBeamGeometry.sparse_view(8, 4))
    x_true = MEAN + STD * torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    y = op(x_true) + 0.05 * torch.randn(1, *op.out_shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    prior = GaussianDenoiser(MEAN, STD)
    calls = []

    def counting(x, sigma):
        calls.append(sigma)
        return prior(x, sigma)

    kw = dict(sigmas=karras_sigmas(6, 0.002, 10.0), cg_iters=5, gamma_rel=1.0)
    plain = sample_dds(prior, op, y, generator=gens(1), **kw)
    final = sample_dds(counting, op, y, generator=gens(1), final_denoise_sigma=0.05, **kw)
    assert len(calls) == 7 and calls[-1] == 0.05  # NFE + 1
    torch.testing.assert_close(final, prior(plain, 0.05))
    with pytest.raises(InputError, match="final_denoise_sigma"):
        sample_dds(prior, op, y, generator=gens(1), final_denoise_sigma=-0.1, **kw)
