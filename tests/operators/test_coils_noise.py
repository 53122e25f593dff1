"""Coil maps (simulated, ESPIRiT, RSS) and the noise models."""

from __future__ import annotations

import numpy as np
import pydicom
import pydicom.data
import pytest
import sigpy.mri
import torch

from medrecon.errors import GeometryError, InputError, ShapeError
from medrecon.operators import (
    add_gaussian_noise,
    add_log_poisson_noise,
    espirit_maps,
    fft2c,
    rss,
    simulated_maps,
    transmission_counts,
)


def real_mr_slice() -> torch.Tensor:
    """The real 64x64 MR slice that ships inside pydicom, scaled to [0, 1]."""
    pixels = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small.dcm")).pixel_array.astype(np.float64)
    return torch.from_numpy(pixels / pixels.max())


def test_simulated_maps_are_sigpy_birdcage_maps_normalised():
    maps = simulated_maps(8, (32, 24), dtype=torch.complex128)
    raw = sigpy.mri.birdcage_maps((8, 32, 24))
    expected = raw / np.sqrt(np.sum(np.abs(raw) ** 2, axis=0, keepdims=True))
    np.testing.assert_allclose(maps.numpy(), expected, atol=1e-12)
    torch.testing.assert_close(rss(maps, dim=0), torch.ones(1, 32, 24, dtype=torch.float64))


def test_rss_combines_coils():
    coil_images = torch.tensor([[[[3.0]], [[4.0j]]]])
    torch.testing.assert_close(rss(coil_images), torch.tensor([[[[5.0]]]]))


def test_espirit_recovers_the_coil_maps_of_a_real_slice():
    image = real_mr_slice().to(torch.complex128)
    truth = simulated_maps(6, image.shape, dtype=torch.complex128)
    kspace = fft2c(truth * image)[None]
    estimate = espirit_maps(kspace, calib_width=24, crop=0.0)[0]
    inside = image.abs() > 0.1
    # ESPIRiT recovers the maps up to one phase per pixel: compare |<S_est, S_true>| over coils
    agreement = torch.abs(torch.sum(estimate.conj() * truth, dim=0))[inside]
    assert float(agreement.mean()) > 0.95


def test_espirit_refuses_bad_input():
    with pytest.raises(ShapeError, match=r"\(B, coils, H, W\)"):
        espirit_maps(torch.zeros(4, 8, 8, dtype=torch.complex64))
    with pytest.raises(GeometryError, match="calib_width 24 exceeds"):
        espirit_maps(torch.zeros(1, 4, 16, 16, dtype=torch.complex64))


def test_gaussian_noise_is_per_item_and_reproducible():
    y = torch.zeros(3, 1, 50, 40)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    noisy = add_gaussian_noise(y, 0.5, gens)
    # item i depends only on generator i: the same seed alone gives the same draw
    alone = add_gaussian_noise(y[1:2], 0.5, [torch.Generator().manual_seed(2)])
    torch.testing.assert_close(noisy[1:2], alone)
    assert float(noisy.std()) == pytest.approx(0.5, rel=0.05)
    per_item = add_gaussian_noise(y, torch.tensor([0.0, 1.0, 2.0]), [torch.Generator().manual_seed(0)] * 3)
    assert float(per_item[0].abs().max()) == 0 and float(per_item[2].std()) == pytest.approx(2.0, rel=0.05)


def test_complex_noise_sigma_is_per_complex_value():
    y = torch.zeros(1, 1, 200, 200, dtype=torch.complex64)
    noisy = add_gaussian_noise(y, 0.02, torch.Generator().manual_seed(0))
    assert float(noisy.abs().pow(2).mean().sqrt()) == pytest.approx(0.02, rel=0.02)
    assert float(noisy.real.std()) == pytest.approx(0.02 / np.sqrt(2), rel=0.02)


def test_poisson_counts_and_log_transform():
    line_integrals = torch.full((1, 1, 100, 100), 2.0, dtype=torch.float64)
    counts = transmission_counts(line_integrals, 1e4, torch.Generator().manual_seed(0))
    expected_mean = 1e4 * np.exp(-2.0)
    assert float(counts.mean()) == pytest.approx(expected_mean, rel=0.01)
    assert float(counts.var()) == pytest.approx(expected_mean, rel=0.05)  # Poisson: variance = mean
    noisy = add_log_poisson_noise(line_integrals, 1e4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(noisy, -torch.log(counts.clamp_min(1) / 1e4))
    starved = add_log_poisson_noise(torch.full((1, 1, 4, 4), 50.0), 10.0, torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(starved).all())


def test_noise_arguments_are_checked():
    y = torch.zeros(2, 1, 4, 4)
    with pytest.raises(InputError, match="got 1 generator"):
        add_gaussian_noise(y, 0.1, torch.Generator())
    with pytest.raises(InputError, match="torch.Generator"):
        add_gaussian_noise(y, 0.1, [0, 1])
    with pytest.raises(InputError, match="finite and >= 0"):
        add_gaussian_noise(y, -1.0, [torch.Generator(), torch.Generator()])
    with pytest.raises(ShapeError, match="one value per batch item"):
        add_gaussian_noise(y, torch.ones(3), [torch.Generator(), torch.Generator()])
    with pytest.raises(InputError, match="must be real"):
        transmission_counts(y.to(torch.complex64), 1e3, [torch.Generator(), torch.Generator()])
