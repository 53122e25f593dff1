"""Score-SDE projection (medrecon.samplers.score_sde) against the analytic Gaussian prior: what only it does.

The sampler contract (test_contract.py) holds its shape, dtype, batch independence, data fit and,
on single-coil MRI (T = FFT is exact), its Gaussian posterior mean. Here: the exact projection, the
full-view factorisation of CT and multi-coil MRI, the residual form that keeps CT iterates bounded,
the refusals, and ``final_gamma_rel``."""

import pytest
import torch

from medrecon.errors import InputError
from medrecon.operators import (
    CTProjector,
    FanBeamGeometry,
    MultiCoilMRI,
    ParallelBeamGeometry,
    fft2c,
    simulated_maps,
)
from medrecon.priors.denoiser import GaussianDenoiser, PhaseAlignedDenoiser
from medrecon.samplers.schedules import geometric_sigmas
from medrecon.samplers.score_sde import full_transform, sample_score_sde
from tests.support import GAUSS_MEAN as MEAN
from tests.support import GAUSS_STD as STD
from tests.support import generators, mri_posterior_problem


def test_single_coil_data_hold_exactly():
    # T = FFT: the final hard projection puts the measured k-space back exactly (the contract holds
    # the mean of many samples to the Gaussian posterior's on this problem)
    op, y, _ = mri_posterior_problem()
    out = sample_score_sde(GaussianDenoiser(MEAN, STD), op, y.repeat(2, 1, 1, 1), sigmas=geometric_sigmas(10, 0.01, 5.0),
                           generator=generators(2), lam=1.0, snr=0.16, clip=None)
    assert float((op(out) - y).abs().max()) < 1e-12


def test_ct_full_view_factorisation_and_run():
    op = CTProjector(ParallelBeamGeometry.sparse_view(16, 4))
    transform = full_transform(op)
    assert transform.n_full == 16 and transform.rows.tolist() == [0, 4, 8, 12]
    song = full_transform(CTProjector(ParallelBeamGeometry.sparse_view(16, 5, "song")))
    assert song.n_full == 16
    x = MEAN + STD * torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    out = sample_score_sde(GaussianDenoiser(MEAN, STD), op, op(x), sigmas=geometric_sigmas(10, 0.01, 5.0), generator=gens)
    assert out.shape == x.shape and bool(torch.isfinite(out).all()) and 0 <= float(out.min()) and float(out.max()) <= 1
    alone = sample_score_sde(GaussianDenoiser(MEAN, STD), op, op(x)[1:], sigmas=geometric_sigmas(10, 0.01, 5.0),
                             generator=[torch.Generator().manual_seed(1)])
    torch.testing.assert_close(alone, out[1:], rtol=1e-6, atol=1e-6)  # per-slice step sizes: batch-independent


def test_a_ct_operator_keeps_one_full_view_projector_for_every_batch():
    """Every sampler call (one per batch of a volume) reuses the operator's full-view projector and
    its built matrices (GBs at 512x512), and lets it go with the operator."""
    import gc

    from medrecon.samplers import score_sde

    kept_before = len(score_sde._FULL_VIEWS)
    op = CTProjector(ParallelBeamGeometry.sparse_view(16, 4))
    x = MEAN + STD * torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    for start in (0, 1):
        sample_score_sde(GaussianDenoiser(MEAN, STD), op, op(x[start:start + 1]), sigmas=geometric_sigmas(3, 0.01, 5.0),
                         generator=[torch.Generator().manual_seed(start)])
    full = full_transform(op).full
    assert full_transform(op).full is full and len(full._matrices) == 1  # built once, on the first batch
    del op, full
    gc.collect()
    assert len(score_sde._FULL_VIEWS) == kept_before


@pytest.mark.parametrize("geometry, steps", [
    (FanBeamGeometry.full_scan((128, 128), 30), 40),  # 150 full views (see _project on small grids)
    (ParallelBeamGeometry.sparse_view((128, 128), 23), 300),  # 138 full views; the paper's form diverged at 1000 steps
])
def test_ct_uses_the_residual_projection_and_stays_bounded(geometry, steps):
    # the paper's T^-1 [...] form iterates FBP(T(.)), whose gain exceeds 1 (it blew up on real
    # slices: fan beam within ten steps, parallel beam at the preset's 1000); the residual form
    # x + lam T^-1 Lambda (y - T x) keeps the iterates bounded
    op = CTProjector(geometry)
    assert full_transform(op).residual_form
    x = MEAN + STD * torch.randn(1, 1, 128, 128, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    peaks = []
    out = sample_score_sde(GaussianDenoiser(MEAN, STD), op, op(x), sigmas=geometric_sigmas(steps, 0.01, 5.0),
                           generator=[torch.Generator().manual_seed(0)], clip=None,
                           callback=lambda i, v: peaks.append(float(v.abs().max())))
    assert max(peaks[steps // 2 :]) < 3 and bool(torch.isfinite(out).all())
    # the final projection moves towards the data: the residual is below the prior mean's
    assert float(torch.linalg.vector_norm(op(out) - op(x))) < float(torch.linalg.vector_norm(op(torch.full_like(x, MEAN)) - op(x)))


def test_multicoil_transform_inverts_on_its_range_and_the_data_hold_exactly():
    h = w = 8
    mask = torch.zeros(h, w)
    mask[:, ::2] = 1
    mask[:, 3:5] = 1
    maps = simulated_maps(4, (h, w), dtype=torch.complex128)[None]
    op = MultiCoilMRI(maps, mask)
    t = full_transform(op)
    x = torch.randn(2, 1, h, w, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    # T x is the per-coil FFT of S_c x (independent of the operator), and T^+ T = I where coils see
    torch.testing.assert_close(t.forward(x), fft2c(maps * x))
    seen = (maps.abs() ** 2).sum(dim=1, keepdim=True) > 1e-12
    torch.testing.assert_close(t.inverse(t.forward(x)) * seen, x * seen)
    truth = (MEAN + STD * torch.randn(2, 1, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(1))).to(torch.complex128)
    out = sample_score_sde(PhaseAlignedDenoiser(GaussianDenoiser(MEAN, STD), torch.zeros(2, 1, h, w, dtype=torch.float64)),
                           op, op(truth), sigmas=geometric_sigmas(10, 0.01, 5.0),
                           generator=[torch.Generator().manual_seed(i) for i in range(2)], clip=None)
    rel = torch.linalg.vector_norm(op(out) - op(truth)) / torch.linalg.vector_norm(op(truth))
    assert float(rel) < 1e-3  # the final projection is 30 CG steps on the normal equations


def test_operators_without_a_full_transform_are_refused():
    irregular = CTProjector(ParallelBeamGeometry(16, [0.0, 0.3, 1.1]))
    with pytest.raises(InputError, match="uniform grid"):
        full_transform(irregular)


def test_final_gamma_rel_replaces_the_hard_projection_by_the_regularised_step():
    h = w = 16
    mask = torch.zeros(h, w)
    mask[:, ::2] = 1
    op = MultiCoilMRI(simulated_maps(4, (h, w), dtype=torch.complex128)[None], mask)
    x = (MEAN + STD * torch.randn(1, 1, h, w, generator=torch.Generator().manual_seed(6), dtype=torch.float64)).to(torch.complex128)
    y = op(x) + 0.05 * torch.randn(op(x).shape, generator=torch.Generator().manual_seed(7), dtype=torch.complex128) * mask
    denoiser = PhaseAlignedDenoiser(GaussianDenoiser(MEAN, STD), torch.zeros(1, 1, h, w, dtype=torch.float64))
    run = lambda **kw: sample_score_sde(denoiser, op, y, sigmas=geometric_sigmas(10, 0.01, 5.0),  # noqa: E731
                                        generator=[torch.Generator().manual_seed(0)], snr=0.16, clip=None, **kw)
    hard, soft = run(), run(final_gamma_rel=1.0)
    residual = lambda v: float(torch.linalg.vector_norm(op(v) - y))  # noqa: E731
    # the paper's projection fits the noisy data as far as the coils allow; the regularised step
    # leaves more of it (the noise) unfitted
    assert residual(soft) > 1.1 * residual(hard)
    with pytest.raises(InputError, match="final_gamma_rel"):
        run(final_gamma_rel=0.0)
