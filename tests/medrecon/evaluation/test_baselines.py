"""The classical baselines' registry (medrecon.evaluation.baselines): the tuned weights a problem gets."""

from __future__ import annotations

import torch

from medrecon.operators import CTProjector, ParallelBeamGeometry
from medrecon.reconstruct import Problem


def test_the_baseline_of_a_few_view_acquisition_uses_the_8_view_weights():
    from medrecon.evaluation.baselines import tuned_setting_of as baseline_setting

    for views, noisy, expected in ((8, False, "ct-parallel-8v-clean"), (10, False, "ct-parallel-8v-clean"),
                                   (8, True, "ct-parallel-23v-noisy"), (23, False, "ct-parallel-23v-clean"),
                                   (60, False, "ct-parallel-60v-clean")):
        op = CTProjector(ParallelBeamGeometry.sparse_view(16, views))
        problem = Problem(op, torch.zeros(1, *op.out_shape), "CT", noisy=noisy)
        assert baseline_setting(problem, {}) == expected


def test_the_default_ct_baseline_runs_in_blocks_of_slices_with_the_image_of_one_call(monkeypatch):
    """A long series is solved BASELINE_BLOCK slices at a time (the iterates of a 300-slice 512x512
    volume are GBs); each slice is solved on its own, so the image equals one whole-volume call."""
    from medrecon.evaluation import baselines

    op = CTProjector(ParallelBeamGeometry.sparse_view(16, 8))
    x = torch.rand(11, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    problem = Problem(op, op(x), "CT", noisy=False)
    whole = baselines.BASELINES["tv_pdhg"].run(op, problem.y, "ct-parallel-8v-clean")

    calls = []
    original = baselines.Baseline.run

    def counted(self, op, y, setting=None):
        calls.append(y.shape[0])
        return original(self, op, y, setting)

    monkeypatch.setattr(baselines.Baseline, "run", counted)
    monkeypatch.setattr(baselines, "BASELINE_BLOCK", 4)
    run = baselines.run_default_baseline(problem, {"geometry": {"angles": [0.0] * 8}})
    assert calls == [4, 4, 3]
    assert run.image.shape == whole.shape
    torch.testing.assert_close(run.image, whole, rtol=1e-4, atol=1e-5)


def test_a_larger_study_gets_the_weights_tuned_at_the_nearest_matrix(monkeypatch):
    """Settings tuned at N (named '...@N') serve studies whose matrix is nearer N than 256 by ratio;
    where a setting has no '@N' entry the 256 weights stay."""
    from medrecon.evaluation import baselines
    from medrecon.evaluation.baselines import tuned_setting, tuned_setting_of

    monkeypatch.setitem(baselines.TUNED_WEIGHTS, "ct-parallel-23v-clean@512", {"tv_pdhg": 3e-4})
    assert tuned_setting("CT", False, views=23) == "ct-parallel-23v-clean"
    assert tuned_setting("CT", False, views=23, matrix=256) == "ct-parallel-23v-clean"
    assert tuned_setting("CT", False, views=23, matrix=320) == "ct-parallel-23v-clean"
    assert tuned_setting("CT", False, views=23, matrix=384) == "ct-parallel-23v-clean@512"
    assert tuned_setting("CT", False, views=23, matrix=1024) == "ct-parallel-23v-clean@512"
    monkeypatch.delitem(baselines.TUNED_WEIGHTS, "ct-parallel-60v-noisy@512")
    assert tuned_setting("CT", True, views=60, matrix=512) == "ct-parallel-60v-noisy"  # not tuned at 512: the 256 weights
    op = CTProjector(ParallelBeamGeometry.sparse_view((512, 400), 23))
    problem = Problem(op, torch.zeros(1, *op.out_shape), "CT", noisy=False)
    assert tuned_setting_of(problem, {}) == "ct-parallel-23v-clean@512"
