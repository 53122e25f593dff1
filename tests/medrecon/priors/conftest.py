"""Fixtures of the prior tests (here and in training/)."""

from __future__ import annotations

import pytest

from medrecon.priors.training import TrainingSlices
from tests import support


@pytest.fixture(scope="module")
def ct_slices():
    """The shipped 64x64 training slices of one CT patient (ct-lung2), normalised and resampled to 32x32."""
    return TrainingSlices.from_files([support.CT_TRAIN], modality="ct", size=32)
