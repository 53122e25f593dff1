"""`medrecon evaluate` on the real sample studies: the window protocol against scikit-image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from medrecon.commands import main
from medrecon.io.studies import load_study, save_study
from tests.support import CT_SAMPLE


def test_window_protocol_against_scikit_image(tmp_path, capsys):
    reference = load_study(CT_SAMPLE, modality="CT")
    ripple = torch.sin(torch.arange(reference.voxels.numel(), dtype=torch.float32)).reshape(reference.shape)
    noisy = reference.with_voxels(reference.voxels + 30.0 * ripple)
    path = save_study(noisy, tmp_path / "recon.nii.gz")
    assert main(["evaluate", str(path), str(CT_SAMPLE), "--modality", "ct", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    ref = np.clip((reference.voxels.numpy() + 1000) / 3000, 0, 1)
    rec = np.clip((load_study(path, modality="CT").voxels.numpy() + 1000) / 3000, 0, 1)
    assert result["psnr"] == pytest.approx(peak_signal_noise_ratio(ref, rec, data_range=1.0), abs=1e-6)
    assert "window" in result["protocol"] and result["slices"] == 8
