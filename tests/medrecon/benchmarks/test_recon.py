"""`medrecon bench recon` (medrecon.benchmarks.recon): every baseline and sampler of a setting lands in
the table with its score, and an unknown contrast shift is refused before any work. The settings
themselves: evaluation/test_settings.py."""


from medrecon.benchmarks.recon import run_setting, to_markdown
from medrecon.evaluation.settings import SETTINGS, make_problem
from medrecon.metrics import psnr
from tests.support import smooth_images


def test_a_setting_scores_every_baseline_and_sampler(gaussian_prior):
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
    header = {"command": "c", "machine": "m", "date": "d", "seconds": 1.0, "priors": "p", "slices": "s"}
    assert "| CT parallel 23 views | dds |" in to_markdown(rows, header)


def test_an_unknown_contrast_shift_is_refused_before_any_work(capsys):
    from medrecon.commands import main

    assert main(["bench", "recon", "--modalities", "mr", "--contrast", "gamma2", "solarise"]) == 2
    assert "unknown contrast shift 'solarise'" in capsys.readouterr().err
