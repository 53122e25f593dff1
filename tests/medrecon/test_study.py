"""The Study type (medrecon.study) validates its fields."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrecon.errors import InputError
from medrecon.study import Study


def test_study_validates_its_fields():
    with pytest.raises(InputError, match=r"\(slices, rows, columns\)"):
        Study(torch.zeros(4, 4), np.eye(4), "CT")
    with pytest.raises(InputError, match="singular"):
        Study(torch.zeros(1, 4, 4), np.zeros((4, 4)), "CT")
    with pytest.raises(InputError, match="modality"):
        Study(torch.zeros(1, 4, 4), np.eye(4), "PET")
