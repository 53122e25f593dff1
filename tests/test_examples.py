"""The examples run (in their fast mode) and print their metrics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_in_fast_mode(script):
    run = subprocess.run([sys.executable, str(script), "--fast"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "PSNR" in run.stdout
