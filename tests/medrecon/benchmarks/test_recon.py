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


def test_images_of_another_matrix_get_the_grid_ceiling_native_baselines_and_both_grids(gaussian_prior):
    from medrecon.grid import GridMap

    images = smooth_images(size=32)
    for setting in (SETTINGS[0], SETTINGS[4]):  # CT parallel 23 views; MR 8 coils 4x
        rows = run_setting(setting, images, {"pixel": gaussian_prior(setting.modality, size=16)}, ["dds"], seed=0,
                           device="cpu", batch_size=2, long_slices=1, long_steps=3, on_gpu=False, log=lambda *_: None)
        by_method = {r["method"]: r for r in rows}
        ceiling = by_method["grid ceiling (16 grid and back)"]
        grid = GridMap.for_study((32, 32), (1.0, 1.0), 16)
        expected = float(psnr(grid.to_input(grid.to_grid(images[:, 0], 0.0))[:, None].clamp(0, 1), images, data_range=1.0,
                              per="volume"))
        assert abs(ceiling["psnr"] - expected) < 1e-6 and ceiling["seconds_per_slice"] is None
        baselines = [r for r in rows if r["kind"] == "baseline"]
        assert baselines and all(r["method"].endswith(" @32") for r in baselines)
        prior_grid, native = by_method["dds @16->32 (--grid prior)"], by_method["dds multi-resolution @32 (--grid native)"]
        assert native["settings"]["multiresolution"]["images"] == 32 and "multiresolution" not in prior_grid["settings"]
        assert prior_grid["psnr"] != native["psnr"]
        header = {"command": "c", "machine": "m", "date": "d", "seconds": 1.0, "priors": "p", "slices": "s"}
        assert "| grid ceiling (16 grid and back) |" in to_markdown(rows, header)
