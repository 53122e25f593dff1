"""Total variation along the slice axis by ADMM (medrecon.samplers.tv_z): its difference operator and
soft threshold, ADMM against closed forms, and DDS-3D through the pipeline (chunk sizes, coupling,
refusals). The command's ``--volume-prior``: commands/test_reconstruct.py; DiffusionMBIR:
test_diffusion_mbir.py."""

from __future__ import annotations

import pytest
import torch

from medrecon.errors import InputError
from medrecon.operators import CTProjector, IdentityOperator, MultiCoilMRI, ParallelBeamGeometry, simulated_maps
from medrecon.operators.masks import make_mask
from medrecon.reconstruct import Problem, reconstruct
from medrecon.samplers.tv_z import TVzADMM, slice_difference, slice_difference_adjoint, soft_threshold


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("boundary", ["neumann", "circular"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_slice_difference_adjoint_is_exact(boundary, dtype):
    x = torch.randn(5, 1, 3, 4, generator=_gen(0), dtype=dtype)
    d = torch.randn(slice_difference(x, boundary).shape, generator=_gen(1), dtype=dtype)
    lhs = torch.vdot(slice_difference(x, boundary).flatten(), d.flatten())
    rhs = torch.vdot(x.flatten(), slice_difference_adjoint(d, boundary).flatten())
    assert abs(complex(lhs - rhs)) < 1e-12 * float(x.abs().sum() * d.abs().sum())
    assert slice_difference(x, boundary).shape[0] == (5 if boundary == "circular" else 4)


def test_slice_difference_values_and_soft_threshold_values():
    x = torch.tensor([1.0, 4.0, 2.0])
    assert slice_difference(x, "neumann").tolist() == [3.0, -2.0]
    assert slice_difference(x, "circular").tolist() == [3.0, -2.0, -1.0]
    assert soft_threshold(torch.tensor([-3.0, -0.5, 0.5, 2.0]), 1.0).tolist() == [-2.0, 0.0, 0.0, 1.0]
    z = soft_threshold(torch.tensor([3.0 + 4.0j]), 1.0)  # modulus 5 -> 4, phase kept
    torch.testing.assert_close(z, torch.tensor([2.4 + 3.2j]))


def _dense(op) -> torch.Tensor:
    """The operator's matrix (rays x pixels), from unit images."""
    n = op.in_shape[-1] * op.in_shape[-2]
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *op.in_shape)
    return op(basis).reshape(n, -1).T


def _overdetermined_volume(slices=3, size=5, views=12, seed=0):
    op = CTProjector(ParallelBeamGeometry.sparse_view(size, views))
    x = torch.rand(slices, 1, size, size, generator=_gen(seed), dtype=torch.float64)
    y = op(x) + 0.05 * torch.randn(op(x).shape, generator=_gen(seed + 1), dtype=torch.float64)
    return op, y


@pytest.mark.parametrize("boundary", ["neumann", "circular"])
def test_admm_on_two_slices_reaches_the_closed_form_tv_denoiser(boundary):
    # A = I, two slices a, b: argmin 1/2 |x - (a, b)|^2 + lam |x_2 - x_1| (twice the term when the
    # difference wraps round) moves each value lam towards the other, or meets at the mean
    a = torch.rand(1, 1, 4, 5, generator=_gen(0), dtype=torch.float64)
    b = torch.rand(1, 1, 4, 5, generator=_gen(1), dtype=torch.float64)
    lam = 0.15
    y = torch.cat([a, b])
    admm = TVzADMM(IdentityOperator((1, 4, 5)), y, lam_rel=lam, rho_rel=1.0, boundary=boundary)
    x = torch.zeros_like(y)
    for _ in range(400):
        x = admm.step(x, cg_iters=10)
    pull = lam * (2 if boundary == "circular" else 1)
    step = torch.where((b - a).abs() > 2 * pull, pull * torch.sign(b - a), (b - a) / 2)
    torch.testing.assert_close(x, torch.cat([a + step, b - step]), rtol=1e-6, atol=1e-7)


def test_admm_with_a_large_tv_weight_makes_the_slices_one_image():
    # lam >> data: D_z x = 0, so every slice is the least-squares image of all the slices' data
    op, y = _overdetermined_volume()
    admm = TVzADMM(op, y, lam_rel=1e3, rho_rel=1.0)
    x = torch.zeros(y.shape[0], *op.in_shape, dtype=torch.float64)
    for _ in range(60):
        x = admm.step(x, cg_iters=15)
    matrix = _dense(op)
    common = torch.linalg.lstsq(matrix, y.reshape(y.shape[0], -1).mean(0)).solution.reshape(op.in_shape)
    torch.testing.assert_close(x, common.expand_as(x), rtol=1e-3, atol=1e-4)


def test_noisy_form_tends_to_the_noiseless_step_as_gamma_grows():
    op, y = _overdetermined_volume()
    start = torch.rand(y.shape[0], *op.in_shape, generator=_gen(9), dtype=torch.float64)
    clean = TVzADMM(op, y, lam_rel=0.1, rho_rel=1.0).step(start, cg_iters=40)
    noisy = TVzADMM(op, y, lam_rel=0.1, rho_rel=1.0, gamma_rel=1e7).step(start, cg_iters=40)
    weak = TVzADMM(op, y, lam_rel=0.1, rho_rel=1.0, gamma_rel=1e-7).step(start, cg_iters=40)
    torch.testing.assert_close(noisy, clean, rtol=1e-3, atol=3e-4)
    torch.testing.assert_close(weak, start, rtol=1e-5, atol=1e-6)  # no weight: the prior's estimate stays


def _tv3d_options(**extra):
    return {"cg_iters": 5, "volume_prior": "tv-z", "tv_lam_rel": 0.05, "tv_rho_rel": 1.0, **extra}


def test_dds3d_volume_does_not_depend_on_the_chunk_size(gaussian_prior, small_ct_problem):
    problem, _ = small_ct_problem(n=5)
    prior = gaussian_prior()
    kwargs = dict(sampler="dds", steps=6, options=_tv3d_options(), seed=3, progress=False)
    whole = reconstruct(problem, prior, batch_size=5, **kwargs)
    chunked = reconstruct(problem, prior, batch_size=2, **kwargs)
    torch.testing.assert_close(chunked.mean, whole.mean, rtol=1e-4, atol=1e-4)
    assert whole.nfe == 6 and whole.settings["options"]["volume_prior"] == "tv-z"


def test_dds3d_on_multicoil_mr_does_not_depend_on_the_chunk_size(gaussian_prior):
    size, slices = 8, 4
    maps = simulated_maps(2, (size, size))[None].to(torch.complex64)
    op = MultiCoilMRI(maps, make_mask("equispaced_fraction", (size, size), 2, seed=1))
    x = (0.5 + 0.1 * torch.randn(slices, 1, size, size, generator=_gen(2))).to(torch.complex64)
    problem = Problem(op, op(x), "MR", noisy=False)
    kwargs = dict(sampler="dds", steps=5, options=_tv3d_options(), seed=1, progress=False)
    whole = reconstruct(problem, gaussian_prior("MR"), batch_size=4, **kwargs)
    chunked = reconstruct(problem, gaussian_prior("MR"), batch_size=3, **kwargs)
    torch.testing.assert_close(chunked.mean, whole.mean, rtol=1e-4, atol=1e-4)


def test_tv_z_makes_neighbouring_slices_agree_more_than_slice_wise_dds(gaussian_prior):
    # every slice has the same true image; slice-wise samples of an underdetermined problem differ,
    # the TV_z coupling pulls them together
    op = CTProjector(ParallelBeamGeometry.sparse_view(8, 3))
    truth = (0.5 + 0.1 * torch.randn(1, 1, 8, 8, generator=_gen(4))).expand(6, 1, 8, 8).contiguous()
    problem = Problem(op, op(truth), "CT", noisy=False)
    prior = gaussian_prior()
    common = dict(sampler="dds", steps=8, seed=5, progress=False)
    slice_wise = reconstruct(problem, prior, options={"cg_iters": 5}, **common).mean
    coupled = reconstruct(problem, prior, options=_tv3d_options(tv_lam_rel=1.0), **common).mean
    jump = lambda v: float(slice_difference(v).abs().mean())  # noqa: E731
    assert jump(coupled) < 0.5 * jump(slice_wise)


@pytest.mark.parametrize(
    ("options", "slices", "message"),
    [
        (_tv3d_options(tv_lam_rel=-1.0), 3, "tv_lam_rel must be >= 0"),
        (_tv3d_options(tv_rho_rel=0.0), 3, "tv_rho_rel must be > 0"),
        (_tv3d_options(tv_boundary="mirror"), 3, "tv_boundary must be one of"),
        (_tv3d_options(), 1, "at least 2 slices"),
        (_tv3d_options(volume_prior="tv-xyz"), 3, "volume_prior must be one of"),
    ],
)
def test_bad_tv_z_settings_are_refused_before_any_work(options, slices, message, gaussian_prior, small_ct_problem):
    problem, _ = small_ct_problem(n=slices)
    calls = []

    class Watching(torch.nn.Module):
        def forward(self, x, sigma):
            calls.append(1)
            return x

    prior = gaussian_prior()
    prior.denoiser = Watching()
    with pytest.raises(InputError, match=message):
        reconstruct(problem, prior, sampler="dds", steps=3, options=options, progress=False)
    assert not calls


def test_other_samplers_have_no_volume_prior_yet(gaussian_prior, small_ct_problem):
    problem, _ = small_ct_problem()
    with pytest.raises(InputError, match="dps has no option"):
        reconstruct(problem, gaussian_prior(), sampler="dps", steps=2, options={"volume_prior": "tv-z"}, progress=False)
