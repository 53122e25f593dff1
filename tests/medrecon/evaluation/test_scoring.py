"""Scoring with the protocol named (medrecon.evaluation.scoring): magnitudes of complex images, the
fastMRI protocol on studies, and the refusals. The window protocol against scikit-image:
commands/test_evaluate.py."""

from __future__ import annotations

import pytest
import torch

from medrecon.errors import InputError
from medrecon.evaluation.scoring import score
from medrecon.evaluation.scoring import score_studies as evaluate_studies
from medrecon.io.studies import load_study
from tests.support import CT_SAMPLE, MR_SAMPLE


def test_score_clips_and_uses_magnitudes():
    ref = torch.full((1, 1, 8, 8), 0.5)
    assert score(ref.to(torch.complex64) * 1j, ref).psnr > 100


def test_fastmri_protocol_and_refusals(tmp_path):
    reference = load_study(MR_SAMPLE, modality="MR")
    result = evaluate_studies(reference.with_voxels(reference.voxels * 0.9), reference, "fastmri")
    assert result["nmse"] == pytest.approx(0.01, rel=1e-5)
    other = load_study(CT_SAMPLE, modality="CT")
    with pytest.raises(InputError, match="differ"):
        evaluate_studies(other, reference)
    with pytest.raises(InputError, match="unknown protocol"):
        evaluate_studies(reference, reference, "lidc")
