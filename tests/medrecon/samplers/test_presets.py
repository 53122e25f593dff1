"""Sampler presets (medrecon.samplers.presets): task names. The presets' options and their checks:
test_registry.py."""

from __future__ import annotations

import pytest

from medrecon.errors import InputError
from medrecon.samplers.presets import task_name


def test_task_names():
    assert task_name("MR", True, non_cartesian=True) == "mr-noncartesian-noisy"
    with pytest.raises(InputError, match="only MR"):
        task_name("CT", False, non_cartesian=True)
