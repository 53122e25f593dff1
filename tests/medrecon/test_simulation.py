"""Simulation of measurements (medrecon.simulation) and the acquisitions' per-slice generators: a slice's
noise does not depend on batching, HU <-> attenuation round trips. The command: commands/test_simulate.py."""

from __future__ import annotations

import torch

from medrecon.acquisition import CTAcquisition, slice_generators
from medrecon.io.studies import load_study
from medrecon.operators import ParallelBeamGeometry
from medrecon.simulation import attenuation_to_hu, hu_to_attenuation, simulate_ct_study
from tests.support import CT_SAMPLE


def test_slice_noise_does_not_depend_on_batching():
    study = load_study(CT_SAMPLE, modality="CT")
    geometry = ParallelBeamGeometry.sparse_view(256, 10, pixel_size=study.pixel_size, detector_spacing=study.pixel_size)
    acq = CTAcquisition(geometry.to_dict(), noise="gaussian", noise_rel=0.01, seed=3)
    whole = simulate_ct_study(study, acq, batch_size=8)
    pieces = simulate_ct_study(study, acq, batch_size=3)
    torch.testing.assert_close(whole, pieces)


def test_hu_attenuation_round_trip_and_generators():
    hu = torch.tensor([-1000.0, 0.0, 1000.0])
    torch.testing.assert_close(attenuation_to_hu(hu_to_attenuation(hu, 0.02), 0.02), hu)
    a = slice_generators(1, [0, 1], "noise")
    b = slice_generators(1, [1], "noise")
    assert torch.equal(torch.rand(3, generator=a[1]), torch.rand(3, generator=b[0]))
