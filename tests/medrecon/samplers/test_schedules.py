"""Noise-level schedules (medrecon.samplers.schedules): decreasing, hitting their ends, VP levels of a
discrete schedule."""

from __future__ import annotations

import pytest
import torch

from medrecon.errors import InputError
from medrecon.priors.denoiser import DiscreteVPSchedule
from medrecon.samplers.schedules import geometric_sigmas, karras_sigmas, vp_sigmas


def test_schedules_are_decreasing_and_hit_their_ends():
    k = karras_sigmas(10, 0.002, 80.0)
    assert float(k[0]) == pytest.approx(80.0) and float(k[-1]) == pytest.approx(0.002)
    assert bool(torch.all(k[1:] < k[:-1]))
    g = geometric_sigmas(5, 0.01, 100.0)
    torch.testing.assert_close(g, torch.tensor([100.0, 10.0, 1.0, 0.1, 0.01], dtype=torch.float64))
    schedule = DiscreteVPSchedule.linear(1000)
    v = vp_sigmas(schedule.alphas_cumprod, 4)
    torch.testing.assert_close(v[[0, -1]], schedule.sigmas[[999, 0]])
    with pytest.raises(InputError, match="sigma_min < sigma_max"):
        karras_sigmas(10, 1.0, 0.5)
