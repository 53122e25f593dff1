"""bench recon: the settings simulate what they say, and every method lands in the table."""

import torch

from medrecon.benchmarks.recon import run_setting, to_markdown
from medrecon.evaluation.scoring import score
from medrecon.evaluation.settings import SETTINGS, make_problem
from medrecon.metrics import psnr

from .test_reconstruct import gaussian_prior


def smooth_images(n=2, size=16):
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(n, 1, size + 4, size + 4, generator=g), 5, stride=1)
    return x.clamp(0, 1)


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


def test_a_setting_scores_every_baseline_and_sampler():
    images = smooth_images()
    rows = run_setting(SETTINGS[0], images, {"pixel": gaussian_prior(size=16)}, ["dds", "dps", "score_sde"], seed=0,
                       device="cpu", batch_size=2, long_slices=1, long_steps=3, on_gpu=False, log=lambda *_: None)
    methods = [r["method"] for r in rows]
    assert len(rows) == 4 + 3 and methods[4] == "dds" and methods[5] == "dps (3 steps)"
    assert rows[5]["slices"] == 1 and rows[4]["slices"] == 2 and rows[4]["nfe"] == 50
    fbp_row = rows[0]
    from medrecon.baselines.ct import fbp

    problem, ref = make_problem(SETTINGS[0], images, seed=0)
    expected = float(psnr(fbp(problem.op, problem.y).clamp(0, 1), ref, data_range=1.0, per="volume"))
    assert abs(fbp_row["psnr"] - expected) < 1e-6
    assert "| CT parallel 23 views | dds |" in to_markdown(rows, {"command": "c", "machine": "m", "date": "d", "seconds": 1.0, "priors": "p", "slices": "s"})


def test_score_clips_and_uses_magnitudes():
    ref = torch.full((1, 1, 8, 8), 0.5)
    assert score(ref.to(torch.complex64) * 1j, ref).psnr > 100


def test_only_picks_an_exact_setting_name_alone_or_every_setting_containing_the_text():
    from medrecon.evaluation.settings import SETTINGS, selected

    names = [s.name for s in SETTINGS]
    assert [n for n in names if selected(n, ["CT parallel 23 views"])] == ["CT parallel 23 views"]
    assert [n for n in names if selected(n, ["23 views"])] == ["CT parallel 23 views", "CT parallel 23 views, 1% noise"]
    assert all(selected(n, None) for n in names)


def test_an_unknown_contrast_shift_is_refused_before_any_work(capsys):
    from medrecon.commands import main

    assert main(["bench", "recon", "--modalities", "mr", "--contrast", "gamma2", "solarise"]) == 2
    assert "unknown contrast shift 'solarise'" in capsys.readouterr().err
