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


def test_the_volume_protocol_in_blocks_equals_the_whole_stack_at_once(monkeypatch):
    """The volume protocol gathers its sums block by block (no float64 copy of a whole 300-slice
    512x512 stack): the same PSNR, SSIM and NMSE as the metrics on the whole stack at once."""
    from medrecon.evaluation import scoring
    from medrecon.metrics import nmse, psnr, ssim

    g = torch.Generator().manual_seed(3)
    ref = torch.rand(11, 1, 24, 24, generator=g)
    x = (ref + 0.1 * torch.randn(11, 1, 24, 24, generator=g)).clamp(-0.2, 1.2)
    xc, rc = x.double().clamp(0, 1), ref.double().clamp(0, 1)
    monkeypatch.setattr(scoring, "SCORE_BLOCK", 4)
    s = score(x, ref, "volume")
    assert s.psnr == pytest.approx(float(psnr(xc, rc, data_range=1.0, per="volume")), rel=1e-12)
    assert s.ssim == pytest.approx(float(ssim(xc, rc, data_range=1.0, per="volume")), rel=1e-12)
    assert s.nmse == pytest.approx(float(nmse(xc, rc, per="volume")), rel=1e-12)
    with pytest.raises(InputError, match="differ in shape"):
        score(x, ref[:10], "volume")
