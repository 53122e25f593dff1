"""NIfTI volumes (medrecon.io.nifti, through medrecon.io.studies) on the real sample studies: the study's
layout against nibabel, round trips, sagittal slicing, CT as int16 HU, and refusals that leave nothing written."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import torch

from medrecon.errors import InputError
from medrecon.io.nifti import write_nifti
from medrecon.io.studies import load_study, save_study, study_format
from tests.support import CT_SAMPLE, MR_SAMPLE


def test_sample_ct_reads_with_nibabel_geometry():
    study = load_study(CT_SAMPLE, modality="CT")
    image = nib.load(str(CT_SAMPLE))
    data = np.asarray(image.dataobj)
    assert study.shape == (data.shape[2], data.shape[1], data.shape[0])
    # voxel (w, h, s) of the study is data[w, h, s] of the file, at the file's world position
    w, h, s = 17, 101, 5
    assert float(study.voxels[s, h, w]) == float(data[w, h, s])
    np.testing.assert_allclose(study.affine @ [w, h, s, 1], image.affine @ [w, h, s, 1])
    assert study.spacing == pytest.approx((1.140625, 1.140625, 20.0))
    assert -1100 < float(study.voxels.min()) and float(study.voxels.max()) < 3100  # HU


def test_nifti_round_trip_keeps_voxels_axis_order_and_affine(tmp_path):
    study = load_study(MR_SAMPLE, modality="MR")
    out = save_study(study, tmp_path / "copy.nii.gz")
    again = load_study(out, modality="MR")
    torch.testing.assert_close(again.voxels, study.voxels)
    np.testing.assert_allclose(again.affine, study.affine)
    original, written = nib.load(str(MR_SAMPLE)), nib.load(str(out))
    assert written.shape == original.shape
    np.testing.assert_allclose(written.affine, original.affine)


def test_sagittal_slicing_and_back(tmp_path):
    study = load_study(MR_SAMPLE, modality="MR", slice_axis=0)
    assert study.shape == (256, 8, 256)
    out = write_nifti(study, tmp_path / "sag.nii.gz")
    np.testing.assert_array_equal(np.asarray(nib.load(str(out)).dataobj), np.asarray(nib.load(str(MR_SAMPLE)).dataobj))


def test_ct_is_written_as_int16_hu(tmp_path):
    study = load_study(CT_SAMPLE, modality="CT")
    out = save_study(study.with_voxels(study.voxels + 0.4), tmp_path / "ct.nii.gz")
    image = nib.load(str(out))
    assert image.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(image.dataobj), np.asarray(nib.load(str(CT_SAMPLE)).dataobj))


def test_refusals_leave_nothing_written(tmp_path):
    with pytest.raises(InputError, match="does not record the modality"):
        load_study(CT_SAMPLE)
    with pytest.raises(InputError, match="no such NIfTI file"):
        load_study(tmp_path / "missing.nii.gz", modality="CT")
    four_d = tmp_path / "4d.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(360, dtype=np.float32).reshape(4, 5, 6, 3), np.eye(4)), str(four_d))
    with pytest.raises(InputError, match=r"4-D .* choose one volume with volume=INDEX \(0..2\)"):
        load_study(four_d, modality="MR")
    assert load_study(four_d, modality="MR", volume=2).shape == (6, 5, 4)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(gzip.compress(b"not a nifti"))
    with pytest.raises(InputError, match="not a readable NIfTI"):
        load_study(broken, modality="MR")
    study = load_study(CT_SAMPLE, modality="CT")
    target = tmp_path / "exists.nii.gz"
    target.write_bytes(b"keep me")
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        save_study(study, target)
    assert target.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["4d.nii.gz", "broken.nii.gz", "exists.nii.gz"]
    with pytest.raises(InputError, match="cannot tell the format"):
        study_format(tmp_path / "x.png")
