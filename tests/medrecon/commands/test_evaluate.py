"""``medrecon evaluate`` on the real sample studies."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from medrecon.commands import main
from medrecon.evaluation.scoring import score_studies as evaluate_studies
from medrecon.errors import InputError
from medrecon.io.studies import load_study, save_study

DATA = Path(__file__).resolve().parents[2] / "data"


def test_window_protocol_against_scikit_image(tmp_path, capsys):
    reference = load_study(DATA / "ct-lung1-sample.nii.gz", modality="CT")
    ripple = torch.sin(torch.arange(reference.voxels.numel(), dtype=torch.float32)).reshape(reference.shape)
    noisy = reference.with_voxels(reference.voxels + 30.0 * ripple)
    path = save_study(noisy, tmp_path / "recon.nii.gz")
    assert main(["evaluate", str(path), str(DATA / "ct-lung1-sample.nii.gz"), "--modality", "ct", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    ref = np.clip((reference.voxels.numpy() + 1000) / 3000, 0, 1)
    rec = np.clip((load_study(path, modality="CT").voxels.numpy() + 1000) / 3000, 0, 1)
    assert result["psnr"] == pytest.approx(peak_signal_noise_ratio(ref, rec, data_range=1.0), abs=1e-6)
    assert "window" in result["protocol"] and result["slices"] == 8


def test_fastmri_protocol_and_refusals(tmp_path):
    reference = load_study(DATA / "mr-brain2-sample.nii.gz", modality="MR")
    result = evaluate_studies(reference.with_voxels(reference.voxels * 0.9), reference, "fastmri")
    assert result["nmse"] == pytest.approx(0.01, rel=1e-5)
    other = load_study(DATA / "ct-lung1-sample.nii.gz", modality="CT")
    with pytest.raises(InputError, match="differ"):
        evaluate_studies(other, reference)
    with pytest.raises(InputError, match="unknown protocol"):
        evaluate_studies(reference, reference, "lidc")
