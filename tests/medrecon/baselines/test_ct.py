"""Classical CT reconstructions: correctness on phantoms and a real CT slice."""

from __future__ import annotations

import numpy as np
import pydicom
import pydicom.data
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from medrecon.baselines.ct import (
    cgls,
    fbp,
    finite_differences,
    finite_differences_3d,
    finite_differences_3d_adjoint,
    finite_differences_adjoint,
    sirt,
    tv_pdhg,
)
from medrecon.errors import InputError
from medrecon.metrics import psnr
from medrecon.operators import CTProjector, FanBeamGeometry, IdentityOperator, ParallelBeamGeometry, add_gaussian_noise


def real_ct_slice() -> torch.Tensor:
    """The real 128x128 CT slice inside pydicom, HU window [-1000, 1000] mapped to [0, 1]."""
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return torch.tensor(np.clip((hu + 1000) / 2000, 0, 1), dtype=torch.float32)[None, None]


def test_sirt_and_fbp_reconstruct_a_180_view_phantom():
    n = 64
    truth = torch.tensor(resize(shepp_logan_phantom(), (n, n)), dtype=torch.float64)[None, None]
    op = CTProjector(ParallelBeamGeometry.sparse_view(n, 180))
    y = op(truth)
    assert float(psnr(sirt(op, y, n_iter=300), truth, data_range=1.0)) > 30.0
    assert float(psnr(fbp(op, y).clamp(0, 1), truth, data_range=1.0)) > 24.0


def test_cgls_converges_to_least_squares():
    op = CTProjector(ParallelBeamGeometry.sparse_view(12, 30))
    gen = torch.Generator().manual_seed(0)
    y = torch.randn((2, *op.out_shape), generator=gen, dtype=torch.float64)
    dense = op.matrix(dtype=torch.float64).mat.to_dense()
    expected = torch.linalg.lstsq(dense, y.reshape(2, -1).T).solution.T.reshape(2, 1, 12, 12)
    torch.testing.assert_close(cgls(op, y, n_iter=200), expected, rtol=1e-6, atol=1e-6)


def test_tv_pdhg_matches_scikit_image_tv_denoising():
    # With A = I (||A||^2 = 1) the problem is TV denoising, which scikit-image solves by
    # Chambolle's projection algorithm with the same isotropic forward differences.
    from skimage.restoration import denoise_tv_chambolle

    noisy = torch.rand(2, 1, 20, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours = tv_pdhg(IdentityOperator((1, 20, 24)), noisy, lam_rel=0.1, n_iter=1000, nonnegative=False)
    for i in range(2):
        reference = denoise_tv_chambolle(noisy[i, 0].numpy(), weight=0.1, eps=1e-10, max_num_iter=10000)
        np.testing.assert_allclose(ours[i, 0].numpy(), reference, atol=1e-4)


def test_3d_tv_pdhg_matches_scikit_image_tv_denoising_of_a_volume():
    # the volume's slices are the batch, in order; scikit-image's Chambolle solver takes the 3-D array
    from skimage.restoration import denoise_tv_chambolle

    noisy = torch.rand(5, 1, 12, 14, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ours = tv_pdhg(IdentityOperator((1, 12, 14)), noisy, lam_rel=0.1, n_iter=1500, nonnegative=False, volume=True)
    reference = denoise_tv_chambolle(noisy[:, 0].numpy(), weight=0.1, eps=1e-10, max_num_iter=10000)
    np.testing.assert_allclose(ours[:, 0].numpy(), reference, atol=2e-4)
    with pytest.raises(InputError, match="at least 2 slices"):
        tv_pdhg(IdentityOperator((1, 12, 14)), noisy[:1], volume=True)


def test_finite_differences_3d_adjoint():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 1, 5, 6, generator=gen, dtype=torch.float64)
    g = torch.randn(4, 3, 5, 6, generator=gen, dtype=torch.float64)
    lhs = torch.sum(finite_differences_3d(x) * g)
    rhs = torch.sum(x * finite_differences_3d_adjoint(g))
    assert float(abs(lhs - rhs)) < 1e-12


def test_finite_differences_adjoint():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 1, 7, 9, generator=gen, dtype=torch.float64)
    g = torch.randn(2, 2, 7, 9, generator=gen, dtype=torch.float64)
    lhs = torch.sum(finite_differences(x) * g)
    rhs = torch.sum(x * finite_differences_adjoint(g))
    assert float(abs(lhs - rhs)) < 1e-12


@pytest.mark.parametrize("kind", ["parallel", "fan"])
def test_tv_beats_fbp_and_sirt_on_sparse_views_of_a_real_slice(kind):
    truth = real_ct_slice()
    n = truth.shape[-1]
    geom = ParallelBeamGeometry.sparse_view(n, 23) if kind == "parallel" else FanBeamGeometry.full_scan(n, 30)
    op = CTProjector(geom)
    y = op(truth)
    y = add_gaussian_noise(y, 0.01 * float(y.max()), torch.Generator().manual_seed(0))
    scores = {
        "fbp": fbp(op, y).clamp(0, 1),
        "sirt": sirt(op, y, n_iter=100),
        "tv": tv_pdhg(op, y, lam_rel=1e-3, n_iter=300),
    }
    values = {k: float(psnr(v.clamp(0, 1), truth, data_range=1.0)) for k, v in scores.items()}
    assert values["tv"] > values["sirt"] > values["fbp"], values
    assert values["tv"] > values["fbp"] + 5, values


def test_baselines_are_batch_independent():
    truth = real_ct_slice()
    op = CTProjector(ParallelBeamGeometry.sparse_view(128, 23))
    y = op(torch.cat([truth, truth.flip(-1)]))
    for method in (lambda v: sirt(op, v, n_iter=20), lambda v: tv_pdhg(op, v, n_iter=30), lambda v: cgls(op, v, n_iter=10)):
        both = method(y)
        torch.testing.assert_close(method(y[1:2]), both[1:2], rtol=1e-4, atol=1e-5)


def test_bad_arguments():
    op = CTProjector(ParallelBeamGeometry.sparse_view(8, 4))
    y = torch.zeros((1, *op.out_shape))
    with pytest.raises(InputError, match="n_iter must be a positive integer"):
        sirt(op, y, n_iter=0)
    with pytest.raises(InputError, match="lam_rel must be >= 0"):
        tv_pdhg(op, y, lam_rel=-1.0)
    with pytest.raises(InputError, match="FBP needs a CT projector"):
        fbp(op.H, torch.zeros(1, 1, 8, 8))
