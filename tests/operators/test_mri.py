"""MRI operators against independent references (numpy FFT, sigpy's SENSE linop) and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import sigpy.mri
import torch

from medrecon.errors import GeometryError, ShapeError
from medrecon.operators import MultiCoilMRI, SingleCoilMRI, fft2c, ifft2c, simulated_maps
from medrecon.operators.masks import make_mask


def random_complex(shape, seed=0, dtype=torch.complex128):
    gen = torch.Generator().manual_seed(seed)
    real = torch.randn(shape, generator=gen, dtype=torch.float64)
    imag = torch.randn(shape, generator=gen, dtype=torch.float64)
    return torch.complex(real, imag).to(dtype)


@pytest.mark.parametrize("shape", [(8, 10), (9, 7)])
def test_fft2c_is_centred_orthonormal_and_matches_numpy(shape):
    x = random_complex((2, 1, *shape))
    k = fft2c(x)
    expected = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(k.numpy(), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.linalg.vector_norm(k), torch.linalg.vector_norm(x))
    torch.testing.assert_close(ifft2c(k), x)
    # DC sits at (H // 2, W // 2) and equals sum / sqrt(N)
    dc = k[..., shape[0] // 2, shape[1] // 2]
    torch.testing.assert_close(dc, x.sum(dim=(-2, -1)) / np.sqrt(shape[0] * shape[1]))


def test_fft2c_matches_sigpy_convention():
    x = random_complex((1, 1, 12, 10))
    np.testing.assert_allclose(fft2c(x)[0, 0].numpy(), sigpy.fft(x[0, 0].numpy(), axes=(-2, -1)), atol=1e-12)


def test_sense_matches_sigpy():
    h, w, coils = 16, 12, 4
    maps = simulated_maps(coils, (h, w), dtype=torch.complex128)
    mask = make_mask("random", (h, w), 2.0, center_fraction=0.25, seed=0).to(torch.float64)
    op = MultiCoilMRI(maps[None], mask)
    reference = sigpy.mri.linop.Sense(maps.numpy(), weights=mask.numpy())
    x = random_complex((1, 1, h, w), seed=1)
    y = random_complex((1, coils, h, w), seed=2) * mask
    np.testing.assert_allclose(op(x)[0].numpy(), reference(x[0, 0].numpy()), atol=1e-12)
    np.testing.assert_allclose(op.adjoint(y)[0, 0].numpy(), reference.H(y[0].numpy()), atol=1e-12)


def test_single_coil_pinv_is_zero_filled_least_squares():
    mask = make_mask("equispaced_fraction", (16, 16), 4.0, seed=1)
    op = SingleCoilMRI(mask)
    x = random_complex((2, 1, 16, 16))
    y = op(x)
    zero_filled = ifft2c(mask * y)
    torch.testing.assert_close(op.pinv(y), zero_filled)
    # least squares: the residual is orthogonal to the range of A
    torch.testing.assert_close(op.adjoint(op(op.pinv(y)) - y), torch.zeros_like(x), atol=1e-12, rtol=0)


def test_sense_pinv_recovers_fully_sampled_image():
    h, w = 16, 16
    op = MultiCoilMRI(simulated_maps(6, (h, w), dtype=torch.complex128)[None], torch.ones(h, w))
    x = random_complex((2, 1, h, w), seed=3)
    torch.testing.assert_close(op.pinv(op(x), n_iter=40), x, atol=1e-8, rtol=1e-8)
    assert op.norm_sq() == pytest.approx(1.0, rel=1e-6)  # normalised maps, full sampling


def test_per_slice_maps_fix_the_batch_and_slice_with_it():
    maps = simulated_maps(3, (8, 8))[None].repeat(4, 1, 1, 1)
    op = MultiCoilMRI(maps, torch.ones(8, 8))
    assert op.batch_size == 4
    with pytest.raises(ShapeError, match="batch of 4, got a batch of 2"):
        op(torch.zeros(2, 1, 8, 8, dtype=torch.complex64))
    assert op.batch_slice(slice(1, 3)).batch_size == 2


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: SingleCoilMRI(torch.ones(4, 4, 1)), GeometryError, r"shape \(H, W\)"),
        (lambda: SingleCoilMRI(torch.full((4, 4), 0.5)), GeometryError, "only 0 and 1"),
        (lambda: SingleCoilMRI(torch.zeros(4, 4)), GeometryError, "samples nothing"),
        (lambda: MultiCoilMRI(torch.ones(1, 2, 8, 8, dtype=torch.complex64), torch.ones(8, 6)), GeometryError,
         "does not match the k-space size"),
        (lambda: MultiCoilMRI(torch.ones(2, 8, 8, dtype=torch.complex64), torch.ones(8, 8)), GeometryError, r"\(B, coils, H, W\)"),
        (lambda: MultiCoilMRI(torch.ones(1, 2, 8, 8), torch.ones(8, 8)), GeometryError, "must be complex"),
    ],
)
def test_bad_masks_and_maps_are_refused(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_real_image_into_mri_operator_says_how_to_convert():
    op = SingleCoilMRI(torch.ones(8, 8))
    with pytest.raises(ShapeError, match=r"SingleCoilMRI.forward: expected dtype complex64 or complex128, got torch.float32 \(convert"):
        op(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ShapeError, match=r"expected a tensor of shape \(B, 1, 8, 8\), got \(1, 1, 8, 9\)"):
        op(torch.zeros(1, 1, 8, 9, dtype=torch.complex64))
