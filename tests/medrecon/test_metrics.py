"""Tests of medrecon.metrics against independent references.

Expected values come from scikit-image (``peak_signal_noise_ratio``, ``structural_similarity``) or
from numpy formulas written out here, slice by slice, never from medrecon itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.filters import gaussian as sk_gaussian
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim
from skimage.transform import resize

from medrecon.errors import InputError, ShapeError
from medrecon.metrics import fastmri_metrics, nmse, psnr, ssim

# --------------------------------------------------------------------------------------------------
# image pairs (numpy, (B, H, W)) and independent references


def _noise_pair(dtype, shape=(3, 33, 47), seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.random(shape)
    x = ref + 0.1 * rng.standard_normal(shape)
    return x.astype(dtype), ref.astype(dtype), 1.0


def _phantom_pair(dtype, seed=1):
    """Shepp-Logan at odd sizes; x = blurred + noisy; slices differ by blur and shift."""
    rng = np.random.default_rng(seed)
    base = resize(skdata.shepp_logan_phantom(), (57, 61), anti_aliasing=True)
    ref = np.stack([base, np.roll(base, 5, axis=1), base[::-1].copy()])
    x = np.stack([sk_gaussian(s, sigma=1.0 + k) for k, s in enumerate(ref)])
    x = x + 0.02 * rng.standard_normal(x.shape)
    return x.astype(dtype), ref.astype(dtype), 1.0


def _camera_pair(dtype):
    """Natural image crops in [0, 1]; x = coarsely quantised (8 grey levels)."""
    cam = skdata.camera().astype(np.float64) / 255.0
    ref = np.stack([cam[100:141, 200:239], cam[300:341, 50:89]])
    x = np.round(ref * 7) / 7
    return x.astype(dtype), ref.astype(dtype), 1.0


def _minimal_pair(dtype):
    """7x7 slices: one window position only."""
    return _noise_pair(dtype, shape=(2, 7, 7), seed=3)


def _hu_pair(dtype):
    """CT-like values in HU with a range of 4000 and negative values."""
    rng = np.random.default_rng(4)
    ref = rng.uniform(-1000.0, 3000.0, size=(2, 21, 19))
    ref = np.stack([sk_gaussian(s, sigma=2.0, preserve_range=True) for s in ref])
    x = ref + 40.0 * rng.standard_normal(ref.shape)
    return x.astype(dtype), ref.astype(dtype), 4000.0


PAIRS = {
    "noise": _noise_pair,
    "phantom": _phantom_pair,
    "camera": _camera_pair,
    "minimal7x7": _minimal_pair,
    "hu": _hu_pair,
}
DTYPES = [np.float32, np.float64]


def _sk_ssim_slices(x, ref, data_range, win_size=7, k1=0.01, k2=0.03):
    """scikit-image SSIM of each slice, computed on the float64 values of the inputs."""
    ranges = np.broadcast_to(np.asarray(data_range, dtype=np.float64), (x.shape[0],))
    return np.array(
        [
            sk_ssim(
                x[i].astype(np.float64),
                ref[i].astype(np.float64),
                data_range=float(ranges[i]),
                win_size=win_size,
                K1=k1,
                K2=k2,
                gaussian_weights=False,
                use_sample_covariance=True,
            )
            for i in range(x.shape[0])
        ]
    )


def _np_nmse(x, ref):
    x = x.astype(np.float64)
    ref = ref.astype(np.float64)
    return np.linalg.norm((x - ref).ravel()) ** 2 / np.linalg.norm(ref.ravel()) ** 2


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


# --------------------------------------------------------------------------------------------------
# SSIM


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("pair", list(PAIRS))
def test_ssim_per_slice_matches_skimage(pair, dtype):
    x, ref, rng = PAIRS[pair](dtype)
    expected = _sk_ssim_slices(x, ref, rng)
    got = ssim(_t(x), _t(ref), data_range=rng, per="slice")
    assert got.shape == (x.shape[0],)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("pair", ["noise", "phantom", "camera", "minimal7x7"])
def test_ssim_float32_matches_skimage_on_float32(pair):
    """scikit-image computes float32 input in float32; we agree with it to ~1e-5."""
    x, ref, rng = PAIRS[pair](np.float32)
    expected = [sk_ssim(x[i], ref[i], data_range=rng) for i in range(x.shape[0])]
    got = ssim(_t(x), _t(ref), data_range=rng)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("win_size", "k1", "k2"), [(5, 0.01, 0.03), (9, 0.05, 0.1), (3, 0.02, 0.02)])
def test_ssim_other_window_and_constants_match_skimage(win_size, k1, k2):
    x, ref, rng = _phantom_pair(np.float64)
    expected = _sk_ssim_slices(x, ref, rng, win_size=win_size, k1=k1, k2=k2)
    got = ssim(_t(x), _t(ref), data_range=rng, win_size=win_size, k1=k1, k2=k2)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-9)


def test_ssim_per_slice_data_range_tensor():
    x, ref, _ = _phantom_pair(np.float64)
    ranges = np.array([0.5, 1.0, 3.0])
    expected = _sk_ssim_slices(x, ref, ranges)
    got = ssim(_t(x), _t(ref), data_range=torch.from_numpy(ranges), per="slice")
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-9)
    # the ranges matter: with one range for all slices the values differ
    assert np.abs(expected - _sk_ssim_slices(x, ref, 1.0)).max() > 1e-3


def test_ssim_per_volume_is_mean_of_slice_ssims():
    x, ref, rng = _camera_pair(np.float64)
    expected = _sk_ssim_slices(x, ref, rng).mean()
    got = ssim(_t(x), _t(ref), data_range=rng, per="volume")
    assert got.shape == ()
    assert float(got) == pytest.approx(expected, abs=1e-9)


def test_ssim_accepts_channel_axis_of_one():
    x, ref, rng = _noise_pair(np.float32)
    expected = _sk_ssim_slices(x, ref, rng)
    got = ssim(_t(x)[:, None], _t(ref)[:, None], data_range=rng)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-9)


def test_ssim_slice_results_do_not_depend_on_batch_neighbours():
    x, ref, rng = _phantom_pair(np.float64)
    expected = _sk_ssim_slices(x[1:2], ref[1:2], rng)
    got_alone = ssim(_t(x[1:2]), _t(ref[1:2]), data_range=rng)
    got_in_batch = ssim(_t(x), _t(ref), data_range=rng)[1:2]
    np.testing.assert_allclose(got_alone.numpy(), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got_in_batch.numpy(), expected, rtol=0, atol=1e-9)


# --------------------------------------------------------------------------------------------------
# PSNR


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("pair", list(PAIRS))
def test_psnr_per_slice_matches_skimage(pair, dtype):
    x, ref, rng = PAIRS[pair](dtype)
    expected = [sk_psnr(ref[i], x[i], data_range=rng) for i in range(x.shape[0])]
    got = psnr(_t(x), _t(ref), data_range=rng, per="slice")
    assert got.shape == (x.shape[0],)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_psnr_per_volume_uses_mse_over_all_voxels(dtype):
    x, ref, rng = _phantom_pair(dtype)
    # scikit-image on the whole 3-D stack: one MSE over every voxel
    expected = sk_psnr(ref, x, data_range=rng)
    got = psnr(_t(x), _t(ref), data_range=rng, per="volume")
    assert got.shape == ()
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # and it is not the mean of per-slice PSNRs (the slices have very different errors)
    mean_of_slices = np.mean([sk_psnr(ref[i], x[i], data_range=rng) for i in range(x.shape[0])])
    assert abs(expected - mean_of_slices) > 0.05


def test_psnr_per_slice_data_range_tensor():
    x, ref, _ = _noise_pair(np.float64)
    ranges = ref.max(axis=(1, 2)) - ref.min(axis=(1, 2))
    expected = [sk_psnr(ref[i], x[i], data_range=ranges[i]) for i in range(x.shape[0])]
    got = psnr(_t(x), _t(ref), data_range=torch.from_numpy(ranges))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)


def test_psnr_integer_images_match_skimage():
    rng = np.random.default_rng(7)
    ref = rng.integers(0, 256, size=(2, 16, 17), dtype=np.uint8)
    x = np.clip(ref.astype(int) + rng.integers(-9, 10, size=ref.shape), 0, 255).astype(np.uint8)
    expected = [sk_psnr(ref[i], x[i], data_range=255) for i in range(2)]
    got = psnr(_t(x), _t(ref), data_range=255)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)


# --------------------------------------------------------------------------------------------------
# NMSE


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("pair", ["noise", "phantom", "hu"])
def test_nmse_per_slice_and_volume_match_numpy(pair, dtype):
    x, ref, _ = PAIRS[pair](dtype)
    per_slice = [_np_nmse(x[i], ref[i]) for i in range(x.shape[0])]
    np.testing.assert_allclose(nmse(_t(x), _t(ref), per="slice").numpy(), per_slice, rtol=1e-9)
    got = nmse(_t(x), _t(ref), per="volume")
    assert got.shape == ()
    assert float(got) == pytest.approx(_np_nmse(x, ref), rel=1e-9)


def test_nmse_volume_is_energy_ratio_not_mean_of_slices():
    rng = np.random.default_rng(11)
    ref = np.stack([np.full((9, 9), 10.0), np.full((9, 9), 0.1)])
    x = ref + 0.05 * rng.standard_normal(ref.shape)
    expected = np.sum((x - ref) ** 2) / np.sum(ref**2)
    got = float(nmse(_t(x), _t(ref), per="volume"))
    assert got == pytest.approx(expected, rel=1e-12)
    assert abs(got - np.mean([_np_nmse(x[i], ref[i]) for i in range(2)])) > 0.01


# --------------------------------------------------------------------------------------------------
# identical images


@pytest.mark.parametrize("pair", ["noise", "camera", "hu"])
def test_identical_images(pair):
    _, ref, rng = PAIRS[pair](np.float64)
    r = _t(ref)
    for per in ("slice", "volume"):
        p = psnr(r, r.clone(), data_range=rng, per=per)
        assert torch.isposinf(p).all(), p  # documented: PSNR of identical images is +inf
        s = ssim(r, r.clone(), data_range=rng, per=per)
        np.testing.assert_allclose(s.numpy(), 1.0, rtol=0, atol=1e-12)
        assert (nmse(r, r.clone(), per=per) == 0).all()
    # scikit-image agrees
    with np.errstate(divide="ignore"):
        assert sk_psnr(ref[0], ref[0].copy(), data_range=rng) == np.inf
    assert sk_ssim(ref[0], ref[0].copy(), data_range=rng) == pytest.approx(1.0)


def test_identical_constant_images_have_ssim_one():
    c = torch.full((2, 8, 8), 0.3, dtype=torch.float64)
    np.testing.assert_allclose(ssim(c, c.clone(), data_range=1.0).numpy(), 1.0, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# fastMRI protocol


def _fastmri_reference(recon, target):
    """fastmri/evaluate.py, written out independently with numpy + scikit-image."""
    gt, pred = target, recon
    maxval = gt.max()
    ssim_sum = 0.0
    for i in range(gt.shape[0]):
        ssim_sum += sk_ssim(gt[i], pred[i], data_range=maxval)
    return {
        "nmse": np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2,
        "psnr": sk_psnr(gt, pred, data_range=maxval),
        "ssim": ssim_sum / gt.shape[0],
    }


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_fastmri_metrics_match_protocol(dtype):
    rng = np.random.default_rng(5)
    base = resize(skdata.shepp_logan_phantom(), (41, 45), anti_aliasing=True)
    # slice intensities differ, so the volume max differs from every slice max but the last
    target = np.stack([base * s for s in (0.2, 0.5, 0.8, 1.0, 1.7)])
    recon = np.abs(target + 0.03 * rng.standard_normal(target.shape))
    target, recon = target.astype(dtype), recon.astype(dtype)
    expected = _fastmri_reference(recon, target)
    got = fastmri_metrics(_t(recon), _t(target))
    assert set(got) == {"nmse", "psnr", "ssim"}
    assert all(isinstance(v, float) for v in got.values())
    assert got["nmse"] == pytest.approx(expected["nmse"], rel=1e-5)
    assert got["psnr"] == pytest.approx(expected["psnr"], abs=1e-4)
    assert got["ssim"] == pytest.approx(expected["ssim"], abs=1e-5)
    # the protocol's volume max matters: per-slice maxima would give a clearly different SSIM
    per_slice_max = np.mean(
        [sk_ssim(target[i], recon[i], data_range=target[i].max()) for i in range(target.shape[0])]
    )
    assert abs(per_slice_max - expected["ssim"]) > 1e-2


def test_fastmri_metrics_accepts_channel_axis_of_one():
    rng = np.random.default_rng(6)
    target = rng.random((3, 12, 13)) * np.array([1.0, 2.0, 3.0])[:, None, None]
    recon = target + 0.05 * rng.standard_normal(target.shape)
    expected = _fastmri_reference(recon, target)
    got = fastmri_metrics(_t(recon)[:, None], _t(target)[:, None])
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-7)


# --------------------------------------------------------------------------------------------------
# errors


def _ok(shape=(2, 8, 8)):
    g = torch.Generator().manual_seed(0)
    return torch.rand(shape, generator=g), torch.rand(shape, generator=g)


@pytest.mark.parametrize("which", ["x", "ref"])
@pytest.mark.parametrize("metric", ["psnr", "ssim", "nmse", "fastmri"])
def test_complex_input_is_refused(which, metric):
    x, ref = _ok()
    if which == "x":
        x = x.to(torch.complex64)
    else:
        ref = ref.to(torch.complex64)
    call = {
        "psnr": lambda: psnr(x, ref, data_range=1.0),
        "ssim": lambda: ssim(x, ref, data_range=1.0),
        "nmse": lambda: nmse(x, ref),
        "fastmri": lambda: fastmri_metrics(x, ref),
    }[metric]
    with pytest.raises(InputError, match=rf"{which} is complex \(torch.complex64\).*{which}\.abs\(\)"):
        call()


def test_mismatched_shapes():
    x, _ = _ok((2, 8, 8))
    _, ref = _ok((2, 8, 9))
    for call in (
        lambda: psnr(x, ref, data_range=1.0),
        lambda: ssim(x, ref, data_range=1.0),
        lambda: nmse(x, ref),
        lambda: fastmri_metrics(x, ref),
    ):
        with pytest.raises(ShapeError, match=r"same shape.*x \(2, 8, 8\) and ref \(2, 8, 9\)"):
            call()
    with pytest.raises(ShapeError, match=r"x \(2, 1, 8, 8\) and ref \(2, 8, 8\)"):
        psnr(x[:, None], x, data_range=1.0)


@pytest.mark.parametrize(
    ("shape", "match"),
    [((8, 8), r"\(8, 8\) \(2-D\).*stack of slices"), ((2, 3, 8, 8), r"\(2, 3, 8, 8\).*one channel")],
)
def test_wrong_rank_or_channels(shape, match):
    x, ref = _ok(shape)
    with pytest.raises(ShapeError, match=match):
        psnr(x, ref, data_range=1.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_values_are_refused(bad):
    x, ref = _ok()
    ref[1, 2, 3] = bad
    kind = "1 NaN and 0 infinite" if bad != bad else "0 NaN and 1 infinite"
    with pytest.raises(InputError, match=rf"ref contains {kind}"):
        ssim(x, ref, data_range=1.0)
    with pytest.raises(InputError, match=rf"x contains {kind}"):
        nmse(ref, x)


def test_non_tensor_input_is_refused():
    x, ref = _ok()
    with pytest.raises(InputError, match=r"x must be a torch.Tensor.*received ndarray"):
        psnr(x.numpy(), ref, data_range=1.0)


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_data_range_is_required(metric):
    x, ref = _ok()
    with pytest.raises(TypeError, match="data_range"):
        metric(x, ref)
    with pytest.raises(InputError, match="data_range is required.*received None"):
        metric(x, ref, data_range=None)


@pytest.mark.parametrize("metric", [psnr, ssim])
@pytest.mark.parametrize("value", [0, 0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_or_non_finite_data_range(metric, value):
    x, ref = _ok()
    with pytest.raises(InputError, match=r"data_range must be finite and positive; received"):
        metric(x, ref, data_range=value)
    with pytest.raises(InputError, match=r"data_range must be finite and positive; received"):
        metric(x, ref, data_range=torch.tensor(value), per="volume")


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_bad_per_slice_data_range_tensor(metric):
    x, ref = _ok((3, 8, 8))
    with pytest.raises(InputError, match=r"every slice; received \[0\.0\] at slice\(s\) \[1\]"):
        metric(x, ref, data_range=torch.tensor([1.0, 0.0, 2.0]))
    with pytest.raises(ShapeError, match=r"shape \(B,\) = \(3,\); received shape \(2,\)"):
        metric(x, ref, data_range=torch.tensor([1.0, 2.0]))
    with pytest.raises(InputError, match=r"per='volume' needs a single data_range.*shape \(3,\)"):
        metric(x, ref, data_range=torch.tensor([1.0, 1.0, 2.0]), per="volume")
    with pytest.raises(InputError, match=r"data_range must be a positive float.*received True"):
        metric(x, ref, data_range=True)
    with pytest.raises(InputError, match=r"received '1'"):
        metric(x, ref, data_range="1")


def test_per_must_be_slice_or_volume():
    x, ref = _ok()
    with pytest.raises(InputError, match=r"per must be 'slice' or 'volume'; received 'voxel'"):
        nmse(x, ref, per="voxel")
    with pytest.raises(InputError, match=r"received 'volumes'"):
        psnr(x, ref, data_range=1.0, per="volumes")


def test_ssim_window_checks():
    x, ref = _ok((2, 6, 9))
    with pytest.raises(ShapeError, match=r"at least win_size x win_size = 7 x 7; received slices of 6 x 9"):
        ssim(x, ref, data_range=1.0)
    x, ref = _ok((2, 9, 9))
    with pytest.raises(InputError, match=r"win_size must be an odd integer >= 3; received 6"):
        ssim(x, ref, data_range=1.0, win_size=6)
    with pytest.raises(InputError, match=r"received 1"):
        ssim(x, ref, data_range=1.0, win_size=1)
    with pytest.raises(InputError, match=r"k2 must be a finite positive float; received -0.1"):
        ssim(x, ref, data_range=1.0, k2=-0.1)


def test_nmse_of_zero_reference_is_refused():
    x, ref = _ok((3, 8, 8))
    ref[2] = 0
    with pytest.raises(InputError, match=r"ref is all zeros in slice\(s\) \[2\]"):
        nmse(x, ref)
    with pytest.raises(InputError, match=r"ref is all zeros in the volume"):
        nmse(x, torch.zeros_like(ref), per="volume")


def test_fastmri_needs_positive_target_max():
    x, _ = _ok()
    with pytest.raises(InputError, match=r"target.max\(\) = -0.5"):
        fastmri_metrics(x, torch.full_like(x, -0.5))


# --------------------------------------------------------------------------------------------------
# device


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_on_cuda_match_skimage():
    x, ref, rng = _phantom_pair(np.float32)
    xc, rc = _t(x).cuda(), _t(ref).cuda()
    s = ssim(xc, rc, data_range=rng)
    p = psnr(xc, rc, data_range=torch.full((3,), rng, device="cuda"))
    assert s.device.type == "cuda" and p.device.type == "cuda"
    np.testing.assert_allclose(s.cpu().numpy(), _sk_ssim_slices(x, ref, rng), atol=1e-9)
    expected_psnr = [sk_psnr(ref[i], x[i], data_range=rng) for i in range(3)]
    np.testing.assert_allclose(p.cpu().numpy(), expected_psnr, rtol=1e-6)
    with pytest.raises(ShapeError, match="same device"):
        nmse(xc, _t(ref))


def test_ssim_of_a_volume_in_blocks_is_each_slice_on_its_own():
    from medrecon.metrics import SSIM_BLOCK, ssim

    g = torch.Generator().manual_seed(3)
    x, ref = torch.rand(2 * SSIM_BLOCK + 3, 12, 12, generator=g), torch.rand(2 * SSIM_BLOCK + 3, 12, 12, generator=g)
    r = torch.linspace(0.5, 2.0, x.shape[0])
    whole = ssim(x, ref, data_range=r, per="slice")
    alone = torch.cat([ssim(x[i : i + 1], ref[i : i + 1], data_range=r[i : i + 1], per="slice") for i in range(x.shape[0])])
    assert whole.shape == (x.shape[0],)
    torch.testing.assert_close(whole, alone, rtol=0, atol=1e-12)
