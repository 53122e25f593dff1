"""The evaluation settings (medrecon.evaluation.settings) simulate what they say: 1% of the sinogram
maximum as CT noise, 0.02 per complex k-space value for MR; and ``--only`` picks settings by name."""

from __future__ import annotations

import torch

from medrecon.evaluation.settings import SETTINGS, make_problem
from tests.support import smooth_images


def test_noisy_ct_setting_adds_one_percent_of_the_sinogram_maximum():
    images = smooth_images()
    clean, _ = make_problem(SETTINGS[0], images, seed=0)
    noisy, _ = make_problem(SETTINGS[1], images, seed=0)
    for k in range(images.shape[0]):
        std = float((noisy.y[k] - clean.y[k]).std())
        assert abs(std / float(clean.y[k].max()) - 0.01) < 0.002
    assert not clean.noisy and noisy.noisy


def test_mr_setting_noise_is_0_02_per_complex_value_on_sampled_kspace():
    images = smooth_images(size=32)
    clean, ref = make_problem(SETTINGS[4], images, seed=0)
    noisy, _ = make_problem(SETTINGS[5], images, seed=0)
    diff = (noisy.y - clean.y)[clean.y != 0]
    assert abs(float(diff.abs().pow(2).mean().sqrt()) - 0.02) < 0.002
    torch.testing.assert_close(ref, images)


def test_only_picks_an_exact_setting_name_alone_or_every_setting_containing_the_text():
    from medrecon.evaluation.settings import SETTINGS, selected

    names = [s.name for s in SETTINGS]
    assert [n for n in names if selected(n, ["CT parallel 23 views"])] == ["CT parallel 23 views"]
    assert [n for n in names if selected(n, ["23 views"])] == ["CT parallel 23 views", "CT parallel 23 views, 1% noise"]
    assert all(selected(n, None) for n in names)


def test_matrix_slices_keep_a_native_matrix_and_pad_a_smaller_one_at_its_own_pixel_size(monkeypatch):
    import numpy as np

    from medrecon.evaluation import settings
    from medrecon.study import Study

    g = torch.Generator().manual_seed(0)
    voxels = -1000 + 1500 * torch.rand(10, 24, 24, generator=g)
    monkeypatch.setattr(settings, "load_starter", lambda *a, **k: Study(voxels, np.eye(4), "CT"))
    window = {"kind": "hu-window", "low": -1000.0, "high": 2000.0}
    native = settings.matrix_slices("ct-lung1", window, 24, 3, None)
    assert native.shape == (3, 1, 24, 24)
    assert torch.equal(native, settings.evaluation_slices("ct-lung1", window, 24, 3, None))
    padded = settings.matrix_slices("ct-lung1", window, 30, 3, None)
    assert padded.shape == (3, 1, 30, 30) and torch.equal(padded[..., 3:27, 3:27], native)
    assert float(padded[..., :3, :].abs().max()) == 0.0 and float(padded[..., :, 27:].abs().max()) == 0.0
