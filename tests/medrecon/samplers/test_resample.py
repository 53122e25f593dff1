"""ReSample (medrecon.samplers.resample) with a latent prior: what only ReSample does.

The sampler contract (test_contract.py) holds its shape, dtype, batch independence, NFE and, with an
analytic Gaussian latent prior, its posterior mean and data fit. Here: its sigma-space resampling
against the paper's VP formula, its consistency plan, the latent solves without the final one, the
null-space spread of the linear-Gaussian case, its options and refusals on tiny real networks for CT
and multi-coil MR, and the real-image operator of complex data."""

from __future__ import annotations

import pytest
import torch

from medrecon.errors import InputError
from medrecon.operators import CTProjector, MultiCoilMRI, ParallelBeamGeometry, simulated_maps
from medrecon.priors.denoiser import EDMDenoiser
from medrecon.priors.latent import LatentPrior
from medrecon.priors.networks import AutoencoderConfig, UNetConfig, build_autoencoder, build_unet
from medrecon.samplers import SAMPLERS
from medrecon.samplers.resample import _PhasedRealOperator, consistency_plan, resampling_weights, sample_resample
from medrecon.samplers.schedules import karras_sigmas
from tests.support import GAUSS_MEAN as MEAN
from tests.support import GAUSS_STD as STD
from tests.support import ct_posterior_problem, gaussian_latent_prior
from tests.support import generators as gens

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: one thread is faster


def paper_resampling(s, s_next, gamma):
    """The paper's resampling law in VP latents (``z_vp = sqrt(abar) z``, ``abar = 1 / (1 + s^2)``):
    the product of N(sqrt(a') z0*, (1 - a') I) and N(z'_vp, v I), v = gamma (1 - a') / (1 - a) (1 - a / a'),
    as (weight of z0*, variance), both back in sigma-space units (divided by sqrt(a'), a')."""
    a, a_next = 1 / (1 + s**2), 1 / (1 + s_next**2)
    v = gamma * (1 - a_next) / (1 - a) * (1 - a / a_next)
    # mean_vp = (v sqrt(a') z0* + (1 - a') z'_vp) / (v + 1 - a'), with z'_vp = sqrt(a') z'
    weight = v / (v + 1 - a_next)
    var_vp = 1 / (1 / v + 1 / (1 - a_next))
    return weight, var_vp / a_next


def test_resampling_is_the_papers_vp_formula_in_sigma_space():
    for s, s_next in [(10.0, 7.0), (1.0, 0.9), (0.05, 0.002)]:
        weight, var = paper_resampling(s, s_next, 40.0)
        assert resampling_weights(s, s_next, 40.0) == pytest.approx((weight, var), rel=1e-12)


def test_consistency_steps_are_every_kth_of_the_last_two_thirds():
    assert consistency_plan(30, 10) == {10: "pixel", 20: "latent"}
    assert consistency_plan(9, 1) == {3: "pixel", 4: "pixel", 5: "pixel", 6: "latent", 7: "latent"}
    assert consistency_plan(10, 3) == {4: "pixel", 7: "latent"}
    assert consistency_plan(1, 1) == {}


def test_without_the_final_solve_the_latent_solves_alone_move_towards_the_data():
    # the paper's ending, decode(z0*), with the settings under which the contract (test_contract.py)
    # holds the mean of the samples to the Gaussian posterior's and their fit with the final solve
    op, y1, _ = ct_posterior_problem()
    y = y1.repeat(4, 1, 1, 1)
    plain = sample_resample(gaussian_latent_prior(6), op, y, sigmas=karras_sigmas(24, 0.002, 10.0), generator=gens(4),
                            consistency_every=3, pixel_cg_iters=30, latent_iters=20, latent_lr=2e-2, final_cg=False)
    fit = torch.linalg.vector_norm(op(plain) - y) / torch.linalg.vector_norm(op(torch.full_like(plain, MEAN)) - y)
    assert float(fit) < 0.5


def test_null_space_spread_follows_the_linear_gaussian_recursion():
    # With pixel-space consistency only (latent_iters = 0) every step is affine and isotropic, and
    # the CG solves leave the null space of A alone. So each null-space direction of the latent's
    # deviation u evolves as  u <- c u  (DDIM: c = g + (s'/s)(1 - g), g = 1 / (1 + s^2) the Gaussian
    # denoiser's gain on unit-variance latents) and, on steps of C, u <- (w g + (1 - w) c) u + sqrt(var) n
    # (w, var: the paper's resampling), from variance s_0^2; the output's is g_last^2 V STD^2.
    op = CTProjector(ParallelBeamGeometry.sparse_view(6, 3))
    a = op.matrix(dtype=torch.float64).mat.to_dense()
    p_null = torch.eye(36, dtype=torch.float64) - torch.linalg.pinv(a) @ a
    x_true = MEAN + STD * torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    n, gamma = 128, 40.0
    s = karras_sigmas(24, 0.002, 10.0).tolist()
    out = sample_resample(gaussian_latent_prior(6), op, op(x_true).repeat(n, 1, 1, 1), sigmas=s, generator=gens(n),
                          consistency_every=3, pixel_cg_iters=30, latent_iters=0, gamma=gamma)
    spread = float((out.reshape(n, -1) @ p_null).var(0).sum() / torch.trace(p_null))
    steps_of_c = {8, 11, 14, 17, 20}  # every 3rd from ceil(24 / 3) = 8, the final step 23 apart
    v = s[0] ** 2
    for i in range(len(s) - 1):
        g = 1 / (1 + s[i] ** 2)
        c = g + s[i + 1] / s[i] * (1 - g)
        if i in steps_of_c:
            w, var = paper_resampling(s[i], s[i + 1], gamma)
            v = (w * g + (1 - w) * c) ** 2 * v + var
        else:
            v = c**2 * v
    expected = (1 / (1 + s[-1] ** 2)) ** 2 * v * STD**2
    assert spread == pytest.approx(expected, rel=0.15)  # sampling error of the estimate ~ 4%


# ---------------------------------------------------------------- tiny real networks
AE = AutoencoderConfig(block_out_channels=(8, 16), norm_num_groups=4, sample_size=16, latent_channels=4)
LATENT_UNET = UNetConfig(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), attention_levels=(),
                         norm_num_groups=4, layers_per_block=1)
SMALL = dict(sigmas=karras_sigmas(6, 0.01, 5.0), consistency_every=1, pixel_cg_iters=3, latent_iters=2)


@pytest.fixture(scope="module")
def tiny_prior():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # test-only: diffusers initialises from the global generator
        ae, unet = build_autoencoder(AE).eval(), build_unet(LATENT_UNET).eval()
    return LatentPrior(ae, 1.3, EDMDenoiser(unet, sigma_data=1.0))


def _images(n, seed):
    return 0.5 + 0.1 * torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def _check_batch_and_alone(prior, op, y, expected_dtype, **options):
    out = sample_resample(prior, op, y, generator=gens(2), **SMALL, **options)
    assert out.shape == (2, *op.in_shape) and out.dtype == expected_dtype and torch.isfinite(out).all()
    assert not out.requires_grad and all(p.grad is None for p in prior.parameters())  # gradients stayed local
    alone = sample_resample(prior, op, y[1:], generator=gens(1, seed=1), **SMALL, **options)
    torch.testing.assert_close(alone, out[1:], rtol=1e-4, atol=1e-4)
    return out


def test_ct_shapes_and_batch_independence(tiny_prior):
    op = CTProjector(ParallelBeamGeometry.sparse_view(16, 8))
    y = op(_images(2, 1))
    _check_batch_and_alone(tiny_prior, op, y, torch.float32)
    _check_batch_and_alone(tiny_prior, op, y, torch.float32, dps_zeta_rel=0.1, gamma_rel=1.0)
    assert SAMPLERS["resample"].function is sample_resample


def test_multicoil_mri_shapes_batch_independence_and_real_image_data_consistency(tiny_prior):
    mask = torch.zeros(16, 16)
    mask[:, ::2] = 1
    mask[:, 6:10] = 1
    op = MultiCoilMRI(simulated_maps(4, (16, 16))[None], mask)
    x_true = _images(2, 2).to(torch.complex64)  # a real image
    y = op(x_true)
    out = _check_batch_and_alone(tiny_prior, op, y, torch.complex64, dps_zeta_rel=0.1)  # phase of the k-space centre
    zero = _check_batch_and_alone(tiny_prior, op, y, torch.complex64, dps_zeta_rel=0.1, phase="zero")
    assert torch.all(zero.imag == 0)  # phase "zero": a real-valued image
    # the low-resolution phase of a positive real image is ~0 inside it: the two agree closely
    assert float(torch.mean((out - zero).abs())) < 0.1 * float(torch.mean(zero.abs()))
    # the solves over real images use r -> A(e^{i phi} r), whose adjoint is Re(e^{-i phi} A^H y) ...
    phi = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    real_op = _PhasedRealOperator(MultiCoilMRI(simulated_maps(4, (16, 16), dtype=torch.complex128)[None], mask), phi)
    r = torch.randn(2, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    k = torch.randn(2, 4, 16, 16, dtype=torch.complex128, generator=torch.Generator().manual_seed(6))
    lhs = torch.sum((real_op(r).conj() * k).real)  # Re <A_phi r, k>
    torch.testing.assert_close(lhs, torch.sum(r * real_op.adjoint(k)))
    torch.testing.assert_close(real_op.normal(r), real_op.adjoint(real_op(r)))
    # ... so data of a real image are fitted by the final solve
    fitted = sample_resample(tiny_prior, op, y, generator=gens(2), **{**SMALL, "pixel_cg_iters": 20}, phase="zero")
    assert float(torch.linalg.vector_norm(op(fitted) - y) / torch.linalg.vector_norm(y)) < 1e-3


def test_bad_arguments(tiny_prior):
    op = CTProjector(ParallelBeamGeometry.sparse_view(16, 8))
    y = torch.zeros((1, *op.out_shape))
    bad = [
        (dict(gamma=0.0), "gamma"), (dict(gamma=float("nan")), "gamma"), (dict(consistency_every=0), "consistency_every"),
        (dict(pixel_cg_iters=-1), "pixel_cg_iters"), (dict(latent_iters=2.5), "latent_iters"),
        (dict(latent_lr=-1e-2), "latent_lr"),
        (dict(dps_zeta_rel=-0.1), "dps_zeta_rel"), (dict(gamma_rel=0.0), "gamma_rel"), (dict(phase="smooth"), "phase"),
        (dict(final_cg="yes"), "final_cg"), (dict(sigmas=torch.tensor([1.0, 2.0])), "decrease"),
        (dict(sigmas=torch.tensor([1.0, 0.0])), "> 0"), (dict(generator=gens(2)), "one per batch item"),
    ]
    for change, message in bad:
        kwargs = {**SMALL, "generator": gens(1), **change}
        with pytest.raises(InputError, match=message):
            sample_resample(tiny_prior, op, y, **kwargs)
    with pytest.raises(InputError, match="shape"):
        sample_resample(tiny_prior, op, y[:, :, :-1], generator=gens(1), **SMALL)
    odd = CTProjector(ParallelBeamGeometry.sparse_view(15, 4))
    with pytest.raises(InputError, match="divisible by 2"):
        sample_resample(tiny_prior, odd, torch.zeros((1, *odd.out_shape)), generator=gens(1), **SMALL)
    with pytest.raises(InputError, match="latent denoiser"):
        sample_resample(LatentPrior(tiny_prior.autoencoder, 1.0), op, y, generator=gens(1), **SMALL)
