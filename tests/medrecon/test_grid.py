"""Studies whose matrix is not the prior's (medrecon.grid) and outputs in any format, from the CLI:
the acquisition at the study's resolution, the reconstruction on the prior's grid, the result on
the study's grid and geometry, checked with readers other than medrecon's."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from medrecon.commands import main
from medrecon.grid import GridMap, centre_block, crop_or_pad_kspace
from medrecon.io.studies import load_study, save_study
from medrecon.operators import CTProjector, ParallelBeamGeometry, fft2c
from tests import support
from tests.support import CT_DICOM, CT_SAMPLE, MR_SAMPLE


@pytest.fixture(scope="module")
def small_priors(tmp_path_factory):
    """Untrained tiny priors for 64x64 images (the grid machinery, not quality, is tested here)."""
    root = tmp_path_factory.mktemp("priors64")
    return {modality: support.saved_unet_prior(root / modality, modality, size=64) for modality in ("CT", "MR")}


def run(*argv) -> int:
    return main(["reconstruct", *map(str, argv), "--quiet"])


# ----------------------------------------------------------------------------------------- the map
def test_grid_map_keeps_the_field_of_view_and_pads_to_a_square():
    grid = GridMap.for_study((200, 256), (0.8, 0.8), 128)
    assert grid.pad == (28, 28, 0, 0) and grid.square_shape == (256, 256) and grid.pixel_mm == pytest.approx(1.6)
    image = torch.linspace(0, 1, 200)[None, :, None] * torch.ones(1, 200, 256)
    back = grid.to_input(grid.to_grid(image, 0.0))
    assert back.shape == image.shape and float((back - image)[:, 5:-5, 5:-5].abs().max()) < 0.02
    anisotropic = GridMap.for_study((100, 50), (1.0, 2.0), 64)  # 100 mm x 100 mm already
    assert anisotropic.pad == (0, 0, 0, 0) and anisotropic.field_of_view_mm == pytest.approx(100.0)
    assert GridMap.for_study((64, 64), (1.0, 1.0), 64).identity


def test_cropped_kspace_is_the_kspace_of_the_coarser_grid():
    m, n = 96, 64
    yy, xx = torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")
    fine = torch.cos(2 * torch.pi * 3 * yy / m) + torch.sin(2 * torch.pi * 5 * xx / m)  # band-limited
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    coarse = torch.cos(2 * torch.pi * 3 * yy / n) + torch.sin(2 * torch.pi * 5 * xx / n)  # same field of view
    cropped = crop_or_pad_kspace(fft2c(fine.to(torch.complex64)[None]), n)
    torch.testing.assert_close(cropped, fft2c(coarse.to(torch.complex64)[None]), atol=1e-4, rtol=1e-4)
    assert centre_block(torch.ones(1, 4, 4), 6)[0].sum() == 16  # zero-filled around a smaller block


def test_ct_rays_through_the_coarser_grid_match_the_fine_sinogram():
    fine = ParallelBeamGeometry.sparse_view((128, 128), 12, pixel_size=0.5, detector_spacing=0.5)
    coarse = ParallelBeamGeometry((64, 64), fine.angles, detector_count=fine.detector_count, detector_spacing=0.5, pixel_size=1.0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 128), torch.linspace(-1, 1, 128), indexing="ij")
    disc = ((yy**2 + xx**2) < 0.5).float()[None, None]
    small = torch.nn.functional.interpolate(disc, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    y_fine, y_coarse = CTProjector(fine)(disc), CTProjector(coarse)(small)
    assert float(torch.linalg.vector_norm(y_fine - y_coarse) / torch.linalg.vector_norm(y_fine)) < 0.02


# ----------------------------------------------------------------------------------- the command
def test_ct_dicom_of_another_size_to_nifti_with_geometry_and_sidecar(tmp_path, small_priors):
    out = tmp_path / "ct.nii.gz"
    assert run(CT_DICOM, "-o", out, "--slices", "2:4", "--steps", "2", "--prior", small_priors["CT"], "--grid", "prior") == 0
    record = json.loads((tmp_path / "ct.json").read_text())
    assert record["Modality"] == "CT" and record["output"]["format"] == "nifti" and record["input"]["format"] == "dicom"
    assert record["grid"]["input_shape"] == [256, 256] and record["grid"]["size"] == 64
    assert record["grid"]["pixel_mm"] == pytest.approx(4 * load_study(CT_DICOM).pixel_size, rel=1e-4)
    study = load_study(CT_DICOM)
    written = nib.load(out)  # an independent reader: nibabel's affine is the DICOM geometry of slices 2 and 3
    assert written.shape == (256, 256, 2)
    expected = study.affine.copy()
    expected[:3, 3] += 2 * study.affine[:3, 2]
    np.testing.assert_allclose(written.affine, expected, atol=1e-3)
    back = load_study(out)  # no --modality: the sidecar (the record) says CT
    assert back.modality == "CT" and back.shape == (2, 256, 256)
    assert float(back.voxels.std()) > 50  # a CT image, not an empty or constant one


def test_nifti_to_dicom_series_agrees_with_pydicom_and_nibabel(tmp_path, small_priors):
    import pydicom
    from nibabel.nicom import dicomwrappers

    out = tmp_path / "series"
    assert run(CT_SAMPLE, "-o", out, "--modality", "ct", "--slices", "0:3", "--steps", "1", "--prior", small_priors["CT"]) == 0
    source = load_study(CT_SAMPLE, modality="CT")
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 3
    datasets = [pydicom.dcmread(f) for f in files]
    assert len({d.SeriesInstanceUID for d in datasets}) == 1 and len({d.SOPInstanceUID for d in datasets}) == 3
    assert {d.Modality for d in datasets} == {"CT"}
    for f, d in zip(files, datasets):
        wrapper = dicomwrappers.wrapper_from_file(str(f))
        position = np.array([float(v) for v in d.ImagePositionPatient])
        np.testing.assert_allclose(wrapper.image_position, position, atol=1e-3)  # nibabel and pydicom agree
        np.testing.assert_allclose([float(v) for v in d.PixelSpacing], [source.spacing[1], source.spacing[0]], rtol=1e-4)
    back = load_study(out)
    np.testing.assert_allclose(back.affine[:3, :3], source.affine[:3, :3], atol=1e-3)
    np.testing.assert_allclose(back.affine[:3, 3], source.affine[:3, 3], atol=1e-3)


@pytest.mark.slow  # about a minute: the 512x512 system matrices and TV-PDHG's 500 iterations at 512
def test_a_512_ct_series_is_reconstructed_at_its_own_pixel_size(tmp_path, small_priors):
    """A 512x512 DICOM series (two real slices of the CT sample at twice the matrix, half the pixel
    size) with the default command: multi-resolution (the prior on its own grid, data consistency at
    512), the output at 512 with the series' geometry, the baseline at 512 with the weights tuned at
    512, the grid ceiling in the record."""
    source = load_study(CT_SAMPLE, modality="CT")
    voxels = torch.nn.functional.interpolate(source.voxels[:2, None].float(), size=(512, 512), mode="bilinear",
                                             align_corners=False)[:, 0]
    affine = source.affine.copy()
    affine[:3, 3] -= 0.25 * (affine[:3, 0] + affine[:3, 1])  # the centre of the first of the finer pixels
    affine[:3, :2] /= 2
    series = save_study(type(source)(voxels, affine, "CT", name="ct512"), tmp_path / "ct512")
    out = tmp_path / "out.nii.gz"
    assert run(series, "-o", out, "--steps", "1", "--prior", small_priors["CT"]) == 0
    record = json.loads((tmp_path / "out.json").read_text())
    assert "multiresolution" in record["grid"] and record["baseline"]["image_shape"] == [512, 512]
    assert "ct-parallel-23v-clean@512" in record["baseline"]["method"]
    assert {"reconstruction", "baseline", "grid_ceiling"} <= set(record["metrics"])
    written = nib.load(out)
    assert written.shape == (512, 512, 2)
    np.testing.assert_allclose(written.affine, load_study(series).affine, atol=1e-3)
    assert float(np.asarray(written.dataobj).std()) > 50  # a CT image, not an empty or constant one


def test_non_square_mr_is_padded_reconstructed_and_cut_back(tmp_path, small_priors):
    mr = load_study(MR_SAMPLE, modality="MR")  # a real MR series, cut to a non-square 200 x 256 matrix
    crop = type(mr)(mr.voxels[2:4, 28:228, :].clone(), mr.affine.copy(), "MR", name="brain2-crop")
    crop.affine[:3, 3] += 28 * mr.affine[:3, 1]
    src = save_study(crop, tmp_path / "crop.nrrd")
    out = tmp_path / "recon.nrrd"
    assert run(src, "-o", out, "--steps", "2", "--accel", "4", "--prior", small_priors["MR"]) == 0  # no --modality
    record = json.loads((tmp_path / "recon.json").read_text())
    assert record["grid"]["input_shape"] == [200, 256] and record["grid"]["pad"][:2] == [28, 28]
    # MR's default (--grid auto): at the study's own pixel size (256 square), the 64x64 prior on its own grid
    assert record["grid"]["size"] == 256 and "multiresolution" in record["grid"]
    assert record["reconstruction"]["settings"]["multiresolution"] == {
        "images": 256, "prior_grid": 64, "resampling": "spectrum crop / zero-pad", "noise_gain": 0.25}
    ceiling = record["metrics"]["grid_ceiling"]
    assert 10 < ceiling["psnr"] < 60 and 0 < ceiling["ssim"] < 1 and "64x64" in ceiling["what"]
    back = load_study(out)
    assert back.modality == "MR" and back.shape == (2, 200, 256)
    np.testing.assert_allclose(back.affine, crop.affine, atol=1e-4)
    # --grid prior: on the prior's 64 grid, the result resampled back, the same ceiling beside it
    assert run(src, "-o", tmp_path / "coarse.nrrd", "--steps", "2", "--accel", "4", "--prior", small_priors["MR"],
               "--grid", "prior") == 0
    coarse = json.loads((tmp_path / "coarse.json").read_text())
    assert coarse["grid"]["size"] == 64 and "multiresolution" not in coarse["grid"]
    assert "multiresolution" not in coarse["reconstruction"]["settings"]
    assert coarse["metrics"]["grid_ceiling"] == record["metrics"]["grid_ceiling"]
    # the baseline at the study's pixel size either way: the same image, the same scores
    assert coarse["baseline"]["image_shape"] == record["baseline"]["image_shape"] == [256, 256]
    assert coarse["metrics"]["baseline"] == record["metrics"]["baseline"]


def test_grid_input_runs_the_prior_at_the_study_size_where_it_can(tmp_path, small_priors, capsys):
    out = tmp_path / "in.nii.gz"
    assert run(CT_SAMPLE, "-o", out, "--modality", "ct", "--slices", "0:1", "--steps", "1", "--grid", "input",
               "--prior", small_priors["CT"]) == 0
    record = json.loads((tmp_path / "in.json").read_text())
    assert record["grid"]["image_shape"] == [256, 256] and "--grid input" in record["grid"]["reconstructed_on"]
    odd = save_study(_cut(load_study(CT_SAMPLE, modality="CT"), 255), tmp_path / "odd.nii.gz")
    assert run(odd, "-o", tmp_path / "odd-out.nii.gz", "--slices", "0:1", "--grid", "input", "--prior", small_priors["CT"]) == 2
    assert "cannot run on" in capsys.readouterr().err


def _cut(study, side):
    return type(study)(study.voxels[:, :side, :side].clone(), study.affine.copy(), study.modality, name=study.name)


def test_outputs_are_checked_before_any_work(tmp_path, small_priors, capsys):
    assert run(CT_SAMPLE, "-o", tmp_path / "recon.mha", "--modality", "ct", "--prior", small_priors["CT"]) == 2
    assert "cannot tell the format" in capsys.readouterr().err and list(tmp_path.iterdir()) == []
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.dcm").write_bytes(b"x")
    assert run(CT_SAMPLE, "-o", full, "--modality", "ct", "--prior", small_priors["CT"]) == 2
    assert "--overwrite" in capsys.readouterr().err and sorted(p.name for p in tmp_path.iterdir()) == ["full"]
    assert sorted(p.name for p in full.iterdir()) == ["keep.dcm"]


def test_a_subset_of_a_series_with_uneven_spacing_writes_back_as_dicom(tmp_path, small_priors):
    import shutil
    import warnings

    import pydicom

    from medrecon.io.dicom_read import UnevenSliceSpacingWarning

    series = tmp_path / "uneven"
    shutil.copytree(CT_DICOM, series)
    files = sorted(series.glob("*.dcm"), key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    for k, f in enumerate(files):  # shift every other slice by 0.5 mm along z (of 20 mm): uneven spacing
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + 0.5 * (k % 2)
        ds.save_as(f)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_study(series)
    assert any(issubclass(w.category, UnevenSliceSpacingWarning) for w in caught)
    out = tmp_path / "part"
    assert run(series, "-o", out, "--slices", "3:5", "--steps", "1", "--prior", small_priors["CT"]) == 0
    got = sorted(float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in out.glob("*.dcm"))
    want = sorted(float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in files[3:5])
    np.testing.assert_allclose(got, want, atol=1e-4)  # each slice keeps its own position
    one = tmp_path / "one"
    assert run(series, "-o", one, "--slices", "4:5", "--steps", "1", "--prior", small_priors["CT"]) == 0
    assert float(pydicom.dcmread(next(one.glob("*.dcm"))).ImagePositionPatient[2]) == pytest.approx(want[1], abs=1e-4)
