"""Tests of the classical MRI baselines (medrecon.baselines.mri).

Expected values come from independent references: numpy FFTs and dense least-squares solves written
out here, sigpy's own apps (SenseRecon, L1WaveletRecon, TotalVariationRecon) called directly, and the
true image of a real MR slice (pydicom's ``MR_small.dcm``, 64 x 64, normalised to [0, 1]).
Masks are simple 0/1 column masks built here with numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrecon.baselines.mri import cg_sense, l1_wavelet, total_variation, zero_filled
from medrecon.errors import InputError, ShapeError
from medrecon.metrics import psnr
from medrecon.operators.base import IdentityOperator
from medrecon.operators.coils import simulated_maps
from medrecon.operators.mri import MultiCoilMRI, SingleCoilMRI, fft2c

sigpy = pytest.importorskip("sigpy")
from sigpy.mri.app import L1WaveletRecon, SenseRecon, TotalVariationRecon  # noqa: E402

H = W = 64


# --------------------------------------------------------------------------------------------------
# data


def _mr_slice() -> np.ndarray:
    """pydicom's real 64 x 64 MR slice, magnitude normalised to [0, 1] (float64)."""
    pydicom_data = pytest.importorskip("pydicom.data")
    import pydicom

    pixels = pydicom.dcmread(pydicom_data.get_testdata_file("MR_small.dcm")).pixel_array.astype(np.float64)
    assert pixels.shape == (H, W)
    return (pixels - pixels.min()) / (pixels.max() - pixels.min())


def _smooth_phase(shape=(H, W)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]] / shape[0]
    return np.exp(1j * 0.5 * np.pi * (np.sin(2 * np.pi * xx) + yy))


def _images(phase: bool = True, dtype=torch.complex64) -> torch.Tensor:
    """Two different real-content slices (the MR slice and its transpose), (2, 1, H, W)."""
    a = _mr_slice()
    stack = np.stack([a, a.T.copy()])
    if phase:
        stack = stack * _smooth_phase()
    return torch.from_numpy(stack).to(dtype)[:, None]


def _column_mask(step: int, centre: int, shape=(H, W)) -> torch.Tensor:
    """Every ``step``-th column plus a fully sampled block of ``centre`` columns at the k-space centre."""
    m = np.zeros(shape, np.float32)
    m[:, ::step] = 1
    c = shape[1] // 2
    m[:, c - centre // 2 : c + centre - centre // 2] = 1
    return torch.from_numpy(m)


def _random_column_mask(n_columns: int, centre: int, seed: int, shape=(H, W)) -> torch.Tensor:
    """``n_columns`` columns: a centre block of ``centre`` plus uniformly random others."""
    rng = np.random.default_rng(seed)
    c = shape[1] // 2
    centre_cols = np.arange(c - centre // 2, c + centre - centre // 2)
    others = np.setdiff1d(np.arange(shape[1]), centre_cols)
    m = np.zeros(shape, np.float32)
    m[:, centre_cols] = 1
    m[:, rng.choice(others, n_columns - centre, replace=False)] = 1
    return torch.from_numpy(m)


def _maps(n_coils=8, shape=(H, W), radius=1.5) -> torch.Tensor:
    return simulated_maps(n_coils, shape, relative_radius=radius)[None]  # (1, coils, H, W)


def _per_item_maps(n_coils=8) -> torch.Tensor:
    """Different normalised maps for two slices, (2, coils, H, W)."""
    return torch.cat([_maps(n_coils, radius=1.5), _maps(n_coils, radius=2.5).flip(-1)])


def _np_fft2c(x: np.ndarray) -> np.ndarray:
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=ax), norm="ortho"), axes=ax)


def _np_ifft2c(k: np.ndarray) -> np.ndarray:
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=ax), norm="ortho"), axes=ax)


def _psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-slice PSNR of magnitudes, data range 1 (images normalised to [0, 1])."""
    return psnr(x.abs(), ref.abs(), data_range=1.0)


def _noisy(y: torch.Tensor, mask: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    real = y.real.dtype
    re = torch.randn(y.shape, generator=g, dtype=real)
    z = torch.complex(re, torch.randn(y.shape, generator=g, dtype=real))
    return (y + sigma / np.sqrt(2) * z) * mask


# --------------------------------------------------------------------------------------------------
# sigpy's model is our model


@pytest.mark.parametrize("shape", [(64, 64), (63, 50), (2, 31, 30)])
def test_sigpy_fft_is_our_centred_orthonormal_fft(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    ours = fft2c(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sigpy.fft(x, axes=(-2, -1)), ours, atol=1e-12)
    np.testing.assert_allclose(_np_fft2c(x), ours, atol=1e-12)
    np.testing.assert_allclose(sigpy.ifft(x, axes=(-2, -1)), _np_ifft2c(x), atol=1e-12)


@pytest.mark.parametrize("n_coils", [None, 4])
def test_sigpy_sense_with_mask_weights_is_our_operator(n_coils):
    """sigpy scales by sqrt(weights); with the 0/1 mask as weights it is exactly op (and op.H)."""
    mask = _random_column_mask(20, 6, seed=3)
    if n_coils is None:
        op = SingleCoilMRI(mask)
        maps = np.ones((1, H, W), np.complex128)
    else:
        maps_t = _maps(n_coils).to(torch.complex128)
        op = MultiCoilMRI(maps_t, mask)
        maps = maps_t[0].numpy()
    sense = sigpy.mri.linop.Sense(maps, weights=mask.numpy().astype(np.float64))
    x = _images(dtype=torch.complex128)[:1]
    np.testing.assert_allclose(sense(x[0, 0].numpy()), op(x)[0].numpy(), atol=1e-12)
    k = torch.from_numpy(np.random.default_rng(1).standard_normal(op.out_shape) + 0j)[None]
    np.testing.assert_allclose(sense.H(k[0].numpy()), op.adjoint(k)[0, 0].numpy(), atol=1e-12)


# --------------------------------------------------------------------------------------------------
# zero-filled


def test_zero_filled_single_coil_is_ifft_of_masked_kspace():
    mask = _column_mask(4, 8)
    op = SingleCoilMRI(mask)
    x = _images(dtype=torch.complex128)
    y_full = torch.from_numpy(_np_fft2c(x.numpy()))  # unmasked: samples outside the mask are ignored
    expected = _np_ifft2c(mask.numpy() * y_full.numpy())
    out = zero_filled(op, y_full)
    assert out.shape == (2, 1, H, W) and out.dtype == torch.complex128
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-12)


def _dense_centred_dft(n: int) -> np.ndarray:
    eye = np.eye(n)
    return np.fft.fftshift(np.fft.fft(np.fft.ifftshift(eye, axes=0), axis=0, norm="ortho"), axes=0)


def test_zero_filled_single_coil_is_the_min_norm_least_squares_solution():
    """Dense A = diag(mask) (F_h kron F_w) on an 8 x 6 image; numpy's lstsq gives the min-norm solution."""
    h, w = 8, 6
    rng = np.random.default_rng(5)
    mask = np.zeros((h, w))
    mask[:, [0, 2, 3, 5]] = 1
    a = np.diag(mask.ravel()) @ np.kron(_dense_centred_dft(h), _dense_centred_dft(w))
    y = rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w))  # arbitrary data, also off the mask
    x_ls = np.linalg.lstsq(a, y.ravel(), rcond=None)[0].reshape(h, w)
    op = SingleCoilMRI(torch.from_numpy(mask).float())
    out = zero_filled(op, torch.from_numpy(y)[None, None])
    np.testing.assert_allclose(out[0, 0].numpy(), x_ls, atol=1e-12)


def test_zero_filled_sense_is_the_coil_combined_adjoint():
    mask = _column_mask(2, 8)
    maps = _per_item_maps(4).to(torch.complex128)
    op = MultiCoilMRI(maps, mask)
    rng = np.random.default_rng(2)
    y = rng.standard_normal((2, 4, H, W)) + 1j * rng.standard_normal((2, 4, H, W))
    expected = np.sum(np.conj(maps.numpy()) * _np_ifft2c(mask.numpy() * y), axis=1, keepdims=True)
    np.testing.assert_allclose(zero_filled(op, torch.from_numpy(y)).numpy(), expected, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# CG-SENSE


@pytest.mark.parametrize("n_iter", [1, 3, 100])
@pytest.mark.parametrize("l2_rel", [0.0, 0.05])
def test_cg_sense_single_coil_closed_form(n_iter, l2_rel):
    """Single coil: (F^H M F + lam I) x = F^H M y has the exact solution F^H M y / (1 + lam), lam = l2_rel
    (||A||^2 = 1), and CG from zero reaches it in one step. More iterations must not move it (a CG run
    past convergence on this singular system diverges unless it stops)."""
    mask = _column_mask(4, 8)
    op = SingleCoilMRI(mask)
    x = _images()
    y = op(x)
    expected = _np_ifft2c(mask.numpy() * y.numpy().astype(np.complex128)) / (1.0 + l2_rel)
    out = cg_sense(op, y, n_iter=n_iter, l2_rel=l2_rel)
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-6, rtol=0)


def test_cg_sense_equals_dense_least_squares():
    """8 x 6 image, 3 coils, 2x: A is injective, so CG-SENSE converges to numpy's dense lstsq solution
    (and, with l2, to the dense solve of (A^H A + lam I) x = A^H y)."""
    h, w, coils = 8, 6, 3
    rng = np.random.default_rng(7)
    mask = np.zeros((h, w))
    mask[:, [0, 2, 3, 4]] = 1
    maps = 1.5 * simulated_maps(coils, (h, w), dtype=torch.complex128)  # ||A||^2 ~ 2.25
    fourier = np.kron(_dense_centred_dft(h), _dense_centred_dft(w))
    a = np.concatenate([np.diag(mask.ravel()) @ fourier @ np.diag(s.numpy().ravel()) for s in maps])
    y = rng.standard_normal((coils, h, w)) + 1j * rng.standard_normal((coils, h, w))
    y = y * mask
    op = MultiCoilMRI(maps[None], torch.from_numpy(mask).float())
    x_ls = np.linalg.lstsq(a, y.ravel(), rcond=None)[0].reshape(h, w)
    out = cg_sense(op, torch.from_numpy(y)[None], n_iter=200)
    np.testing.assert_allclose(out[0, 0].numpy(), x_ls, atol=1e-9)
    l2_rel = 0.1
    # the documented convention: lam = l2_rel * op.norm_sq(), the operator's cached power-iteration
    # estimate of ||A||^2 (here within 3e-3 of numpy's exact value: the top eigenvalues cluster)
    assert op.norm_sq() == pytest.approx(np.linalg.norm(a, 2) ** 2, rel=5e-3)
    lam = l2_rel * op.norm_sq()
    x_l2 = np.linalg.solve(a.conj().T @ a + lam * np.eye(h * w), a.conj().T @ y.ravel()).reshape(h, w)
    out_l2 = cg_sense(op, torch.from_numpy(y)[None], n_iter=200, l2_rel=l2_rel)
    np.testing.assert_allclose(out_l2[0, 0].numpy(), x_l2, atol=1e-9)


def test_cg_sense_reconstructs_noiseless_8_coil_2x_data():
    mask = _column_mask(2, 8)
    op = MultiCoilMRI(_maps(8), mask)
    x = _images()
    y = op(x)
    zf = _psnr(zero_filled(op, y), x)
    rec = _psnr(cg_sense(op, y), x)
    assert torch.all(zf < 35), zf  # aliasing: the zero-filled image is far from the truth
    assert torch.all(rec > 60), rec  # measured ~137 dB (float32 floor)


def test_cg_sense_more_iterations_are_not_worse():
    """Noiseless 8 coils at 4x: CG's error ||x_k - x|| never grows with k (exact arithmetic: monotone)."""
    op = MultiCoilMRI(_maps(8), _column_mask(4, 8))
    x = _images()
    y = op(x)
    errors = torch.stack(
        [torch.linalg.vector_norm(cg_sense(op, y, n_iter=n) - x, dim=(1, 2, 3)) for n in (2, 5, 10, 20, 40)]
    )
    assert torch.all(errors[1:] <= errors[:-1] * (1 + 1e-4)), errors
    assert torch.all(errors[-1] < 0.5 * errors[0]), errors
    assert torch.all(_psnr(cg_sense(op, y, n_iter=40), x) > _psnr(zero_filled(op, y), x) + 10)


@pytest.mark.parametrize("l2_rel", [0.0, 0.02])
def test_cg_sense_matches_sigpy_sense_recon(l2_rel):
    """Per-slice maps, batch of 2: every slice equals sigpy's SenseRecon (its own CG) on that slice."""
    mask = _column_mask(4, 8)
    maps = 2.0 * _per_item_maps(8).to(torch.complex128)  # ||A||^2 ~ 4: the weight's scaling shows
    op = MultiCoilMRI(maps, mask)
    assert op.norm_sq() == pytest.approx(4.0, rel=1e-2)
    y = op(_images(dtype=torch.complex128))
    n_iter = 10
    out = cg_sense(op, y, n_iter=n_iter, l2_rel=l2_rel)
    lam = l2_rel * op.norm_sq()  # the documented weight convention
    for i in range(2):
        ref = SenseRecon(
            y[i].numpy(), maps[i].numpy(), lamda=lam, weights=mask.numpy().astype(np.float64),
            max_iter=n_iter, show_pbar=False,
        ).run()
        np.testing.assert_allclose(out[i, 0].numpy(), ref, atol=1e-9)


def test_cg_sense_l2_term_shrinks_the_solution():
    """Tikhonov: as lam grows the solution norm decreases and the data residual increases; on noisy
    4x data the damping lowers the noise amplification of plain CG-SENSE."""
    op = MultiCoilMRI(_maps(8), _column_mask(2, 8))
    x = _images()
    y = op(x)
    norms, residuals = [], []
    for l2_rel in (0.0, 0.01, 0.1):
        rec = cg_sense(op, y, n_iter=100, l2_rel=l2_rel)
        norms.append(torch.linalg.vector_norm(rec, dim=(1, 2, 3)))
        residuals.append(torch.linalg.vector_norm(op(rec) - y, dim=(1, 2, 3)))
    norms, residuals = torch.stack(norms), torch.stack(residuals)
    assert torch.all(norms[1:] < norms[:-1]), norms
    assert torch.all(residuals[1:] > residuals[:-1]), residuals

    mask4 = _column_mask(4, 8)
    op4 = MultiCoilMRI(_maps(8), mask4)
    y_noisy = _noisy(op4(x), mask4, sigma=0.01)
    plain = _psnr(cg_sense(op4, y_noisy), x)
    damped = _psnr(cg_sense(op4, y_noisy, l2_rel=0.01), x)
    assert torch.all(damped > plain + 3), (plain, damped)  # measured ~22 -> ~30 dB


# --------------------------------------------------------------------------------------------------
# l1-wavelet and TV (sigpy)

# Weights: the data are noiseless and the images normalised to [0, 1] with ||A||^2 = 1, so the
# regulariser only has to pick, among the images consistent with the samples, a sparse / piecewise
# smooth one: a small weight (lam_rel = 1e-3) keeps data consistency dominant. A sweep over
# 1e-4..3e-2 put the best PSNR of both methods at 1e-4..1e-3 on this 8-coil 4x problem.
# Single coil has no coil information, so TV needs a larger weight (1e-2, the best of the sweep).


def test_l1_wavelet_and_tv_beat_zero_filled_at_4x_multicoil():
    op = MultiCoilMRI(_maps(8), _column_mask(4, 8))
    x = _images()
    y = op(x)
    zf = _psnr(zero_filled(op, y), x)
    l1 = _psnr(l1_wavelet(op, y, lam_rel=1e-3), x)
    tv = _psnr(total_variation(op, y, lam_rel=1e-3), x)
    # measured: zero-filled ~26 dB, l1-wavelet ~35 dB, TV ~36 dB
    assert torch.all(l1 > zf + 5), (zf, l1)
    assert torch.all(tv > zf + 5), (zf, tv)


def test_tv_beats_zero_filled_at_4x_single_coil():
    op = SingleCoilMRI(_random_column_mask(16, 6, seed=0))  # 16 of 64 columns: 4x
    x = _images(phase=False)
    y = op(x)
    zf = _psnr(zero_filled(op, y), x)
    tv = _psnr(total_variation(op, y, lam_rel=1e-2), x)
    assert torch.all(tv > zf + 1.5), (zf, tv)  # measured ~23.3 -> ~26 dB


def _direct(method, ksp, maps, mask, lam, norm_sq, n_iter, wavelet="db4"):
    """sigpy's app called directly with the documented lam and step-size rules."""
    weights = mask.numpy().astype(np.float32)
    if method is l1_wavelet:
        app = L1WaveletRecon(
            ksp, maps, lam, weights=weights, wave_name=wavelet, max_iter=n_iter, alpha=1.0 / norm_sq,
            show_pbar=False,
        )
    else:
        app = TotalVariationRecon(
            ksp, maps, lam, weights=weights, max_iter=n_iter, sigma=0.1, tau=1.0 / (0.1 * (norm_sq + 8.0)),
            show_pbar=False,
        )
    return app.run()


@pytest.mark.parametrize("method", [l1_wavelet, total_variation])
def test_single_coil_wrapper_equals_sigpy_app(method):
    """Single coil, ||A||^2 = 1 exactly: lam = lam_rel, FISTA step 1, PDHG tau = 1 / (0.1 * 9)."""
    mask = _random_column_mask(24, 8, seed=1)
    op = SingleCoilMRI(mask)
    y = op(_images())
    lam_rel, n_iter = 3e-3, 30
    out = method(op, y, lam_rel=lam_rel, n_iter=n_iter)
    ones = np.ones((1, H, W), np.complex64)
    for i in range(2):
        ref = _direct(method, y[i].numpy(), ones, mask, lam_rel, 1.0, n_iter)
        np.testing.assert_allclose(out[i, 0].numpy(), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", [l1_wavelet, total_variation])
def test_multicoil_wrapper_equals_sigpy_app(method):
    """Per-slice maps: slice i must be sigpy's app on y[i] with maps[i] (catches transposed or
    mismatched maps), lam = lam_rel * op.norm_sq(). The maps are scaled so that ||A||^2 ~ 4 and a
    missing (or doubled) scaling of the weight would show."""
    mask = _column_mask(4, 8)
    maps = 2.0 * _per_item_maps(8)
    op = MultiCoilMRI(maps, mask)
    assert op.norm_sq() == pytest.approx(4.0, rel=1e-2)
    y = op(_images())
    lam_rel, n_iter = 1e-3, 30
    kwargs = {"wavelet": "haar"} if method is l1_wavelet else {}
    out = method(op, y, lam_rel=lam_rel, n_iter=n_iter, **kwargs)
    norm_sq = op.norm_sq()
    for i in range(2):
        lam = lam_rel * norm_sq
        ref = _direct(method, y[i].numpy(), maps[i].numpy(), mask, lam, norm_sq, n_iter, "haar")
        np.testing.assert_allclose(out[i, 0].numpy(), ref, atol=1e-5, rtol=0)
        other = _direct(method, y[i].numpy(), maps[1 - i].numpy(), mask, lam, norm_sq, n_iter, "haar")
        assert np.abs(out[i, 0].numpy() - other).max() > 1e-2  # the maps matter: the check can fail


@pytest.mark.parametrize("method", [l1_wavelet, total_variation])
def test_sigpy_methods_ignore_samples_outside_the_mask(method):
    mask = _column_mask(4, 8)
    op = SingleCoilMRI(mask)
    x = _images()
    y_full = fft2c(x)
    a = method(op, y_full, lam_rel=1e-3, n_iter=10)
    b = method(op, y_full * mask, lam_rel=1e-3, n_iter=10)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


@pytest.mark.parametrize("method", [l1_wavelet, total_variation])
def test_sigpy_methods_are_quiet_and_leave_global_rng_alone(method, capfd):
    op = MultiCoilMRI(_maps(4), _column_mask(4, 8))
    y = op(_images()[:1])
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    a = method(op, y, lam_rel=1e-3, n_iter=5)
    assert np.array_equal(np.random.get_state()[1], state)
    b = method(op, y, lam_rel=1e-3, n_iter=5)
    assert torch.equal(a, b)  # deterministic: no random power-iteration start
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == "", captured


# --------------------------------------------------------------------------------------------------
# batches, dtype, device


_METHODS = [
    (zero_filled, {}),
    (cg_sense, {"n_iter": 20}),
    (cg_sense, {"n_iter": 20, "l2_rel": 0.01}),
    (l1_wavelet, {"lam_rel": 1e-3, "n_iter": 20}),
    (total_variation, {"lam_rel": 1e-3, "n_iter": 20}),
]


@pytest.mark.parametrize("method,kwargs", _METHODS, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("kind", ["single", "shared-maps"])
def test_batch_equals_each_slice_alone(method, kwargs, kind):
    mask = _column_mask(4, 8)
    op = SingleCoilMRI(mask) if kind == "single" else MultiCoilMRI(_maps(8), mask)
    y = op(_images())
    batch = method(op, y, **kwargs)
    assert batch.shape == (2, 1, H, W)
    for i in range(2):
        alone = method(op, y[i : i + 1], **kwargs)
        np.testing.assert_allclose(batch[i : i + 1].numpy(), alone.numpy(), atol=1e-6, rtol=0)
    assert np.abs(batch[0].numpy() - batch[1].numpy()).max() > 0.1  # the slices differ


@pytest.mark.parametrize("method,kwargs", _METHODS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_batch_with_per_slice_maps_equals_each_slice_alone(method, kwargs):
    """Per-slice maps: slice i alone uses op.batch_slice(i). Methods whose result does not involve
    ||A||^2 agree to round-off. Weights and steps use op.norm_sq(), the batch's largest ||A_i||^2 (a
    power-iteration estimate): with normalised maps every ||A_i||^2 is 1 but the estimates differ by
    ~1e-3, which moves the result by up to ~3e-4 (of a [0, 1] image), hence 1e-3 there."""
    op = MultiCoilMRI(_per_item_maps(8), _column_mask(4, 8))
    y = op(_images())
    uses_norm = method in (l1_wavelet, total_variation) or kwargs.get("l2_rel", 0) > 0
    batch = method(op, y, **kwargs)
    for i in range(2):
        alone = method(op.batch_slice(slice(i, i + 1)), y[i : i + 1], **kwargs)
        tol = 1e-3 if uses_norm else 1e-6
        np.testing.assert_allclose(batch[i : i + 1].numpy(), alone.numpy(), atol=tol, rtol=0)


@pytest.mark.parametrize("method,kwargs", _METHODS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_dtype_is_kept(method, kwargs):
    op = MultiCoilMRI(_maps(4), _column_mask(4, 8))
    for dtype in (torch.complex64, torch.complex128):
        out = method(op, op(_images(dtype=dtype)), **kwargs)
        assert out.dtype == dtype and out.shape == (2, 1, H, W) and out.device.type == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method,kwargs", _METHODS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_device_is_kept_and_matches_cpu(method, kwargs):
    op = MultiCoilMRI(_maps(4), _column_mask(4, 8))
    y = op(_images())
    cpu = method(op, y, **kwargs)
    gpu = method(op.to("cuda"), y.to("cuda"), **kwargs)
    assert gpu.device.type == "cuda" and gpu.dtype == y.dtype
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), atol=1e-4, rtol=0)


# --------------------------------------------------------------------------------------------------
# errors


_ALL = [zero_filled, cg_sense, l1_wavelet, total_variation]


def _call(method, op, y, **kwargs):
    if method in (l1_wavelet, total_variation):
        kwargs.setdefault("lam_rel", 1e-3)
    return method(op, y, **kwargs)


@pytest.mark.parametrize("method", _ALL)
def test_unknown_operator_is_refused(method):
    y = torch.zeros(1, 1, 8, 8, dtype=torch.complex64)
    for op in (IdentityOperator((1, 8, 8), complex=True), 2.0 * SingleCoilMRI(torch.ones(8, 8)), "mri"):
        with pytest.raises(InputError, match="expected an MRI operator .*SingleCoilMRI, MultiCoilMRI or NonCartesianMRI.*got"):
            _call(method, op, y)


@pytest.mark.parametrize("method", _ALL)
def test_bad_kspace_is_refused(method):
    mask = _column_mask(4, 8)
    single = SingleCoilMRI(mask)
    multi = MultiCoilMRI(_per_item_maps(4), mask)
    good = torch.zeros(2, 4, H, W, dtype=torch.complex64)
    with pytest.raises(ShapeError, match=r"y of shape \(B, 1, 64, 64\), got \(2, 1, 32, 64\)"):
        _call(method, single, torch.zeros(2, 1, 32, 64, dtype=torch.complex64))
    with pytest.raises(ShapeError, match=r"y of shape \(B, 4, 64, 64\), got \(2, 8, 64, 64\)"):
        _call(method, multi, torch.zeros(2, 8, H, W, dtype=torch.complex64))
    with pytest.raises(ShapeError, match=r"expects k-space y of shape .*got \(4, 64, 64\)"):
        _call(method, multi, good[0])
    with pytest.raises(ShapeError, match="complex64 or complex128 .*got torch.float32"):
        _call(method, multi, good.real)
    with pytest.raises(ShapeError, match="coil maps for a batch of 2, got k-space for a batch of 1"):
        _call(method, multi, good[:1])
    with pytest.raises(ShapeError, match="must be a torch.Tensor"):
        _call(method, single, np.zeros((1, 1, H, W), np.complex64))


@pytest.mark.parametrize("method", [l1_wavelet, total_variation])
def test_bad_sigpy_options_are_refused(method):
    op = SingleCoilMRI(_column_mask(4, 8))
    y = torch.zeros(1, 1, H, W, dtype=torch.complex64)
    for bad in (-1e-3, float("nan"), float("inf"), "0.1", True):
        with pytest.raises(InputError, match="lam_rel must be"):
            method(op, y, lam_rel=bad)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(InputError, match="n_iter must be an integer >= 1"):
            method(op, y, lam_rel=1e-3, n_iter=bad)
    with pytest.raises(TypeError):
        method(op, y)  # lam_rel has no default: a regularised baseline states its weight


def test_bad_cg_sense_options_and_wavelet_are_refused():
    op = SingleCoilMRI(_column_mask(4, 8))
    y = torch.zeros(1, 1, H, W, dtype=torch.complex64)
    for bad in (-0.1, float("nan"), None):
        with pytest.raises(InputError, match="l2_rel must be"):
            cg_sense(op, y, l2_rel=bad)
    with pytest.raises(InputError, match="n_iter must be an integer >= 1, got 0"):
        cg_sense(op, y, n_iter=0)
    with pytest.raises(InputError, match="wavelet must be the name of a discrete PyWavelets wavelet.*'db99'"):
        l1_wavelet(op, y, lam_rel=1e-3, wavelet="db99")
