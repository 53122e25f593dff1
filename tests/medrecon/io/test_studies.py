"""Loading and saving a study in the format its path names (medrecon.io.studies), with the sidecar:
what medrecon writes loads back without flags, the modality from the sidecar or the header tag."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medrecon.errors import InputError
from medrecon.io.studies import load_study, save_study
from tests.support import CT_DICOM, CT_SAMPLE, MR_SAMPLE


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
@pytest.mark.parametrize("source", ["ct-nifti", "mr-nifti", "ct-dicom"])
def test_what_medrecon_writes_loads_back_without_flags(tmp_path, suffix, source):
    from medrecon.io.sidecar import sidecar_path

    study = {"ct-nifti": lambda: load_study(CT_SAMPLE, modality="CT"), "mr-nifti": lambda: load_study(MR_SAMPLE, modality="MR"),
             "ct-dicom": lambda: load_study(CT_DICOM)}[source]()
    out = save_study(study, tmp_path / f"x{suffix}")
    assert json.loads(sidecar_path(out).read_text())["Modality"] == study.modality
    back = load_study(out)  # no modality given
    assert back.modality == study.modality and back.shape == study.shape
    torch.testing.assert_close(back.voxels, study.voxels.round() if study.modality == "CT" else study.voxels)
    np.testing.assert_allclose(back.affine, study.affine, atol=1e-5)
    sidecar_path(out).unlink()  # the header tag alone is enough too
    assert load_study(out).modality == study.modality
    with pytest.raises(InputError, match="records modality"):
        load_study(out, modality="MR" if study.modality == "CT" else "CT")
