"""Study layout, NIfTI round trips and refusals, NRRD reading, on the real sample studies."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medrecon.errors import InputError
from medrecon.io.nifti import write_nifti
from medrecon.io.nrrd import read_nrrd
from medrecon.io.studies import load_study, save_study, study_format
from medrecon.study import Study

DATA = Path(__file__).resolve().parents[2] / "data"
CT_SAMPLE = DATA / "ct-lung1-sample.nii.gz"
MR_SAMPLE = DATA / "mr-brain2-sample.nii.gz"


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
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 3), np.float32), np.eye(4)), str(four_d))
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


def test_study_validates_its_fields():
    with pytest.raises(InputError, match=r"\(slices, rows, columns\)"):
        Study(torch.zeros(4, 4), np.eye(4), "CT")
    with pytest.raises(InputError, match="singular"):
        Study(torch.zeros(1, 4, 4), np.zeros((4, 4)), "CT")
    with pytest.raises(InputError, match="modality"):
        Study(torch.zeros(1, 4, 4), np.eye(4), "PET")


def test_nrrd_reader_against_a_file_written_here(tmp_path):
    data = np.arange(4 * 3 * 2, dtype="<i2").reshape(2, 3, 4)  # NRRD stores the fastest axis first
    header = (
        "NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 4 3 2\n"
        "space directions: (0.5,0,0) (0,0.7,0) (0,0,3)\nendian: little\nencoding: gzip\n"
        "space origin: (10,20,30)\n\n"
    )
    path = tmp_path / "v.nrrd"
    path.write_bytes(header.encode() + gzip.compress(data.tobytes()))
    volume = read_nrrd(path)
    np.testing.assert_array_equal(volume.data, data.transpose())  # (i, j, k) order
    # LPS -> RAS flips x and y
    np.testing.assert_allclose(volume.affine, [[-0.5, 0, 0, -10], [0, -0.7, 0, -20], [0, 0, 3, 30], [0, 0, 0, 1]])
    path.write_bytes(header.replace("gzip", "bzip2").encode() + data.tobytes())
    with pytest.raises(InputError, match="bzip2"):
        read_nrrd(path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
@pytest.mark.parametrize("source", ["ct-nifti", "mr-nifti", "ct-dicom"])
def test_what_medrecon_writes_loads_back_without_flags(tmp_path, suffix, source):
    from medrecon.io.sidecar import sidecar_path

    study = {"ct-nifti": lambda: load_study(CT_SAMPLE, modality="CT"), "mr-nifti": lambda: load_study(MR_SAMPLE, modality="MR"),
             "ct-dicom": lambda: load_study(DATA / "ct-lung1-sample-dicom")}[source]()
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
