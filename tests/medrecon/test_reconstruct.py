"""The volume pipeline (medrecon.reconstruct): units, batches and seeds, prior checks, the MR phase
adapter, batch sizes from memory, non-Cartesian data.

Every sampler's run through the pipeline (shape, NFE, batch size) is held by the sampler contract
(samplers/test_contract.py); the `medrecon reconstruct` command by commands/test_reconstruct.py.
"""

from __future__ import annotations

import pytest
import torch

from medrecon.acquisition import MU_WATER_PER_MM, CTAcquisition
from medrecon.batching import MAX_AUTO_BATCH, batch_from_memory
from medrecon.errors import InputError
from medrecon.operators import ParallelBeamGeometry, RealImageEmbedding, SingleCoilMRI
from medrecon.operators.masks import make_mask
from medrecon.reconstruct import (
    Problem,
    balanced_blocks,
    check_prior_fits,
    problem_from_acquisition,
    reconstruct,
)
from medrecon.samplers import sampler_names
from medrecon.samplers.presets import adapter_settings, sampler_settings
from tests.support import noncartesian_problem


def test_ct_units_map_exactly_onto_the_priors_window():
    # a sinogram of mu = mu_w (1 + HU/1000) must become the sinogram of u = (HU + 1000) / 3000
    geometry = ParallelBeamGeometry.sparse_view(16, 6)
    acq = CTAcquisition(geometry.to_dict())
    hu = torch.linspace(-1000, 1500, 16 * 16).reshape(1, 1, 16, 16)
    sino = acq.operator()(MU_WATER_PER_MM * (1 + hu / 1000))
    for window in ((-1000.0, 2000.0), (-1200.0, 1800.0)):
        problem = problem_from_acquisition(acq, sino, window=window)
        u = (hu - window[0]) / (window[1] - window[0])
        torch.testing.assert_close(problem.op(u), problem.y, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(problem.to_native(u), hu[:, 0], rtol=1e-5, atol=1e-3)


def test_volume_is_the_same_whatever_the_batch_size_and_samples_give_a_spread(gaussian_prior, small_ct_problem):
    problem, _ = small_ct_problem()
    prior = gaussian_prior()
    # 5 CG steps (the presets' 20 reach round-off on this tiny, very underdetermined system, where CG
    # amplifies the rounding differences of batched and single sparse products)
    kwargs = dict(sampler="dds", steps=6, options={"cg_iters": 5}, samples=3, seed=7, progress=False)
    one = reconstruct(problem, prior, batch_size=1, **kwargs)
    all_ = reconstruct(problem, prior, batch_size=3, **kwargs)
    torch.testing.assert_close(one.mean, all_.mean, rtol=1e-4, atol=1e-4)
    assert one.std.shape == one.mean.shape and float(one.std.mean()) > 0
    assert one.nfe == 6 and one.samples == 3
    # slice 2 alone, seeded as slice 2 of the volume, reproduces its row
    part = Problem(problem.op, problem.y[2:], "CT", noisy=False)
    alone = reconstruct(part, prior, slice_indices=[2], batch_size=1, **kwargs)
    torch.testing.assert_close(alone.mean, one.mean[2:], rtol=1e-4, atol=1e-4)
    other_seed = reconstruct(problem, prior, batch_size=3, **dict(kwargs, seed=8))
    assert not torch.allclose(other_seed.mean, one.mean)


def test_noiseless_dds_volume_fits_the_data(gaussian_prior, small_ct_problem):
    problem, _ = small_ct_problem()
    out = reconstruct(problem, gaussian_prior(), sampler="dds", steps=8, options={"cg_iters": 30}, progress=False)
    rel = torch.linalg.vector_norm(problem.op(out.mean) - problem.y) / torch.linalg.vector_norm(problem.y)
    assert float(rel) < 1e-3


def test_priors_that_do_not_fit_are_refused_with_the_reason(gaussian_prior, tiny_latent_prior, small_ct_problem):
    problem, _ = small_ct_problem()
    with pytest.raises(InputError, match="MR prior"):
        check_prior_fits(gaussian_prior("MR"), problem, "dds")
    with pytest.raises(InputError, match="16x16 images"):
        check_prior_fits(gaussian_prior(size=16), problem, "dds")
    with pytest.raises(InputError, match="latent prior"):
        check_prior_fits(gaussian_prior(), problem, "resample")
    with pytest.raises(InputError, match="unknown sampler"):
        reconstruct(problem, gaussian_prior(), sampler="nope")
    with pytest.raises(InputError, match="has no option"):
        reconstruct(problem, gaussian_prior(), sampler="dds", options={"zeta_rel": 1.0})
    with pytest.raises(InputError, match="samples"):
        reconstruct(problem, gaussian_prior(), samples=0)
    with pytest.raises(InputError, match="latent prior"):  # a pixel sampler
        reconstruct(problem, tiny_latent_prior(), sampler="dds", steps=2)


# ------------------------------------------------------------------------------ MR phase
def _mr_problem(n=2, size=8, phase=None):
    op = SingleCoilMRI(make_mask("equispaced", (size, size), 2, seed=1))
    x = 0.5 + 0.1 * torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(2))
    truth = torch.linspace(-1, 1, n * size * size).reshape(n, 1, size, size) if phase is None else phase
    y = op(x.to(torch.complex64) * torch.exp(1j * truth))
    return op, y, truth, RealImageEmbedding((1, size, size), truth)


def test_known_phase_is_used_by_the_phase_adapter_and_checked(gaussian_prior):
    op, y, truth, _ = _mr_problem()
    prior = gaussian_prior("MR")
    kwargs = dict(sampler="dds", steps=4, options={"cg_iters": 3}, seed=1, progress=False)
    given = reconstruct(Problem(op, y, "MR", False, phase=truth), prior, **kwargs)
    wrong = reconstruct(Problem(op, y, "MR", False, phase=truth + 1.0), prior, **kwargs)
    estimated = reconstruct(Problem(op, y, "MR", False), prior, **kwargs)
    assert not torch.allclose(given.mean, wrong.mean) and not torch.allclose(given.mean, estimated.mean)
    with pytest.raises(InputError, match="phase must be"):
        Problem(op, y, "MR", False, phase=truth[:1])


def test_real_unknowns_times_a_phase_run_on_the_real_prior_and_fit_the_data(gaussian_prior):
    op, y, truth, embed = _mr_problem()
    problem = Problem(op @ embed, y, "MR", False)
    out = reconstruct(problem, gaussian_prior("MR"), sampler="dds", steps=6, options={"cg_iters": 30}, progress=False)
    assert not out.mean.is_complex()  # a real image: the prior runs on it directly
    rel = torch.linalg.vector_norm(problem.op(out.mean) - y) / torch.linalg.vector_norm(y)
    assert float(rel) < 1e-3


def test_the_phase_adapters_imag_std_comes_from_the_task_and_can_be_overridden(gaussian_prior, small_ct_problem):
    op, y, truth, _ = _mr_problem()
    problem = Problem(op, y, "MR", True)
    kwargs = dict(sampler="dds", steps=4, seed=1, progress=False)
    preset = reconstruct(problem, gaussian_prior("MR"), **kwargs)
    assert preset.settings["adapter"] == {"phase_aligned": adapter_settings("mr-noisy")}
    other = reconstruct(problem, gaussian_prior("MR"), options={"imag_std": 0.5}, **kwargs)
    assert other.settings["adapter"] == {"phase_aligned": {"imag_std": 0.5}} and not torch.allclose(other.mean, preset.mean)
    assert "adapter" not in reconstruct(small_ct_problem()[0], gaussian_prior(), **kwargs).settings


# ------------------------------------------------------------------------------ batches
def test_batches_are_balanced_and_sized_from_memory(gaussian_prior, small_ct_problem):
    assert balanced_blocks(300, 128) == [(0, 100), (100, 200), (200, 300)]
    assert balanced_blocks(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert balanced_blocks(5, 8) == [(0, 5)]
    for n, b in [(1, 1), (17, 4), (300, 256), (301, 100)]:
        blocks = balanced_blocks(n, b)
        sizes = [stop - start for start, stop in blocks]
        assert blocks[0][0] == 0 and blocks[-1][1] == n and max(sizes) <= b and max(sizes) - min(sizes) <= 1
        assert len(blocks) == -(-n // b)
    gib = 2**30
    assert batch_from_memory(80 * gib, 0.12 * gib, 1000) == min(int(0.7 * 80 / 0.12), MAX_AUTO_BATCH)
    assert batch_from_memory(10 * gib, 0.12 * gib, 1000) == int(0.7 * 10 / 0.12)
    assert batch_from_memory(10 * gib, 0.12 * gib, 20) == 20
    assert batch_from_memory(0, 0.12 * gib, 20) == 1
    problem, _ = small_ct_problem(n=3, size=8)
    out = reconstruct(problem, gaussian_prior(), sampler="dds", steps=2, batch_size="auto", progress=False)
    assert out.run["batch_size"] == 3  # the CPU's 8, capped by the volume


# ------------------------------------------------------------------------------ non-Cartesian MRI
@pytest.mark.parametrize("sampler", sampler_names(prior="pixel", slice_wise=True))
def test_every_pixel_sampler_runs_on_non_cartesian_data(sampler, gaussian_prior):
    op, x, y = noncartesian_problem(size=8, spokes=6, coils=2)
    problem = Problem(op, y, "MR", noisy=False)
    out = reconstruct(problem, gaussian_prior("MR"), sampler=sampler, steps=4, progress=False)
    assert out.mean.shape == (2, 1, 8, 8) and torch.isfinite(out.mean).all()
    assert out.settings["task"] == "mr-noncartesian-clean"
    assert out.nfe == sampler_settings(sampler, "mr-noncartesian-clean", steps=4).nfe


def test_dds_fits_non_cartesian_data(gaussian_prior):
    op, x, y = noncartesian_problem(size=8, spokes=8, coils=2)
    problem = Problem(op, y, "MR", noisy=False)
    out = reconstruct(problem, gaussian_prior("MR"), sampler="dds", steps=6, options={"cg_iters": 40}, progress=False)
    residual = torch.linalg.vector_norm(op(out.mean) - y) / torch.linalg.vector_norm(y)
    assert float(residual) < 1e-2


def test_resample_runs_on_non_cartesian_data(tiny_latent_prior):
    prior = tiny_latent_prior("MR")
    op, x, y = noncartesian_problem(size=8, spokes=6, coils=2)
    out = reconstruct(Problem(op, y, "MR", noisy=False), prior, sampler="resample", steps=4,
                      options={"latent_iters": 2}, progress=False)
    assert out.mean.shape == (2, 1, 8, 8) and torch.isfinite(out.mean).all()
