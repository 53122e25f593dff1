"""The top-level Python API: cheap to import, and every documented name resolves."""

import subprocess
import sys

import medrecon


def test_import_medrecon_does_not_import_torch_or_astra():
    code = "import sys, medrecon; print('torch' in sys.modules, 'astra' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_every_public_name_resolves():
    for name in medrecon.__all__:
        assert getattr(medrecon, name) is not None, name
    assert set(medrecon.SAMPLERS) >= {"dds", "dps", "score_sde"}
    assert callable(medrecon.reconstruct) and callable(medrecon.simulate) and callable(medrecon.load_prior)
