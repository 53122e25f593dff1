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
