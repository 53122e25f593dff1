"""The examples run (in their fast mode) and print their metrics.

The ones that take over 10 s even in their fast mode (measured on 2 shared Xeon cores) run with
``-m slow``: compare_samplers (every sampler, 69 s), reconstruct_api (16 s), custom_operator (13 s),
multicoil_mri (10 s; 8-coil 256x256 k-space and its baselines)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))
SLOW = {"compare_samplers", "reconstruct_api", "custom_operator", "multicoil_mri"}


@pytest.mark.parametrize("script", [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in SLOW else []) for p in EXAMPLES])
def test_example_runs_in_fast_mode(script):
    run = subprocess.run([sys.executable, str(script), "--fast"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "PSNR" in run.stdout
