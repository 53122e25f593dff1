"""`medrecon simulate` on the real sample studies: CT from DICOM (reproducible, physical photon noise),
MR in the fastMRI layout with its acquisition record, and the refusals."""

from __future__ import annotations

import json

import pytest
import torch

from medrecon.acquisition import CTAcquisition, MRAcquisition, acquisition_from_dict
from medrecon.commands import main
from medrecon.errors import InputError
from medrecon.io.studies import load_study
from medrecon.operators import CTProjector, geometry_from_dict
from medrecon.simulation import hu_to_attenuation, load_measurements
from tests.support import CT_DICOM, MR_SAMPLE


def test_ct_simulation_from_dicom_is_reproducible_and_physical(tmp_path):
    out = tmp_path / "ct"
    args = ["simulate", str(CT_DICOM), "-o", str(out), "--views", "30", "--slices", "2:5"]
    assert main(args + ["--noise", "poisson", "--photons", "1e5"]) == 0
    acquisition, study_record, sino = load_measurements(out)
    assert isinstance(acquisition, CTAcquisition) and sino.shape[:3] == (3, 1, 30)
    geometry = geometry_from_dict(acquisition.geometry)
    assert geometry.pixel_size == pytest.approx(1.140625)  # the study's pixel size, in mm
    # noise-free line integrals of mu = mu_water (1 + HU / 1000) through the same slices
    study = load_study(CT_DICOM)
    clean = CTProjector(geometry)(hu_to_attenuation(study.voxels[2:5, None], acquisition.mu_water_per_mm))
    relative = torch.linalg.vector_norm(sino - clean) / torch.linalg.vector_norm(clean)
    assert 1e-4 < float(relative) < 0.05  # photon noise at 1e5 photons: present but small
    # the same command again gives the same measurements (seeded per slice)
    assert main(args + ["--noise", "poisson", "--photons", "1e5", "-o", str(tmp_path / "again")]) == 0
    torch.testing.assert_close(load_measurements(tmp_path / "again")[2], sino)
    assert study_record["shape"] == [3, 256, 256]
    assert torch.is_grad_enabled()  # commands switch autograd off for themselves, not for the caller


def test_mr_simulation_writes_fastmri_layout(tmp_path):
    out = tmp_path / "mr"
    assert main(["simulate", str(MR_SAMPLE), "--modality", "mr", "-o", str(out),
                 "--slices", "0:2", "--accel", "4", "--coils", "4", "--noise-sigma", "0.02"]) == 0
    acquisition, _, kspace = load_measurements(out)
    assert isinstance(acquisition, MRAcquisition) and kspace.shape == (2, 4, 256, 256)
    mask = acquisition.mask((256, 256))
    assert bool(torch.all(kspace[..., mask == 0] == 0))  # unmeasured entries are empty
    record = json.loads((out / "acquisition.json").read_text())
    assert record["acquisition"]["sampling"]["pattern"] == "equispaced_fraction"
    assert acquisition_from_dict(record["acquisition"]) == acquisition


def test_simulate_refusals(tmp_path, capsys):
    sample = str(MR_SAMPLE)
    assert main(["simulate", sample, "-o", str(tmp_path / "x")]) == 2
    assert "give --modality" in capsys.readouterr().err
    assert main(["simulate", sample, "--modality", "mr", "-o", str(tmp_path / "x"), "--slices", "5:50"]) == 2
    assert "outside the study's 8 slices" in capsys.readouterr().err
    assert main(["simulate", str(CT_DICOM), "--modality", "mr", "-o", str(tmp_path / "x")]) == 2
    assert "contradicts the DICOM Modality CT" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    assert main(["simulate", sample, "--modality", "mr", "-o", str(tmp_path / "taken"), "--slices", "0:1"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert list((tmp_path / "taken").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing else written
    with pytest.raises(InputError, match="gaussian CT noise needs noise_rel"):
        CTAcquisition({"kind": "parallel", "image_shape": [8, 8], "angles": [0.0]}, noise="gaussian")
