"""DICOM series I/O: read order, rescale, geometry, write-back, errors.

Series are built here from pydicom's real test slices (CT_small.dcm: 128x128 CT; MR_small.dcm: 64x64
MR) by copying the slice to positions along its normal, with shuffled file names and reversed
InstanceNumbers so that neither can give the right order. Expected geometry is computed from the
tags of each file with the DICOM formula (PS3.3 C.7.6.2.1.1), independently of medrecon.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import EnhancedCTImageStorage, JPEGLSLossless, generate_uid
from pydicom.valuerep import DSfloat

from medrecon.errors import InputError, MissingResourceError
from medrecon.io.dicom_read import DicomDecoderMissingError, UnevenSliceSpacingWarning, read_dicom_series
from medrecon.io.dicom_write import write_dicom_series
from medrecon.io.nifti import read_nifti, write_nifti
from medrecon.io.studies import load_study, save_study
from medrecon.study import Study

CT_FILE = get_testdata_file("CT_small.dcm")
MR_FILE = get_testdata_file("MR_small.dcm")
AXIAL = (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
NAME_ORDER = [3, 0, 4, 1, 2]  # file name number of the slice at position k: name order is not position order


def rotation(axis, degrees: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    x, y, z = axis
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    t = np.radians(degrees)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


OBLIQUE = tuple(rotation([1.0, 2.0, 0.5], 35.0)[:, :2].T)  # row and column cosines of an oblique plane


def ds_list(values) -> list:
    return [DSfloat(float(v), auto_format=True) for v in values]


def make_series(
    folder: Path,
    template: str = CT_FILE,
    *,
    offsets=(0.0, 2.5, 5.0, 7.5, 10.0),
    orientation=AXIAL,
    origin=(-158.135803, -179.035797, -75.699997),
    series_uid: str | None = None,
    description: str | None = "test series",
    slope: float | None = None,
    intercept: float | None = None,
    pixel_spacing=None,
    prefix: str = "IM",
) -> list[dict]:
    """Write one slice per offset (mm along the normal), file names shuffled; returns the slices in
    position order with their file, stored pixels and the dataset written."""
    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(template)
    pixels = base.pixel_array.astype(np.int32)
    row, col = (np.asarray(v, dtype=float) for v in orientation)
    normal = np.cross(row, col)
    series_uid = series_uid or generate_uid()
    n = len(offsets)
    names = NAME_ORDER if n == len(NAME_ORDER) else list(range(n))[::-1]
    out = []
    for k, offset in enumerate(offsets):
        ds = copy.deepcopy(base)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if description is not None:
            ds.SeriesDescription = description
        ds.InstanceNumber = n - k  # reversed: sorting by InstanceNumber would be wrong
        ds.ImageOrientationPatient = ds_list([*row, *col])
        ds.ImagePositionPatient = ds_list(np.asarray(origin) + offset * normal)
        if "SliceLocation" in ds:
            del ds.SliceLocation
        if pixel_spacing is not None:
            ds.PixelSpacing = ds_list(pixel_spacing)
        if slope is not None:
            ds.RescaleSlope = DSfloat(slope, auto_format=True)
        if intercept is not None:
            ds.RescaleIntercept = DSfloat(intercept, auto_format=True)
        stored = (pixels + 7 * k).astype(np.int16)  # each slice differs
        ds.PixelData = stored.tobytes()
        file = folder / f"{prefix}{names[k]:03d}.dcm"
        ds.save_as(file, enforce_file_format=True)
        out.append({"file": file, "stored": stored, "ds": ds})
    return out


def world_ras(ds, w, h) -> np.ndarray:
    """The RAS position of pixel (column w, row h) of a slice, from its tags (DICOM PS3.3 C.7.6.2.1.1)."""
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    lps = ipp + iop[:3] * col_spacing * w + iop[3:] * row_spacing * h
    return lps * np.array([-1.0, -1.0, 1.0])


def check_affine(study: Study, datasets) -> None:
    """Slice s of the study is datasets[s]: the affine must put each of its pixels where the tags say."""
    rows, cols = study.shape[1:]
    for s, ds in enumerate(datasets):
        for w, h in [(0, 0), (cols - 1, 0), (0, rows - 1), (cols - 1, rows - 1), (17, 5)]:
            expected = world_ras(ds, w, h)
            got = (study.affine @ np.array([w, h, s, 1.0]))[:3]
            np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=f"slice {s} pixel ({w}, {h})")


def expected_voxels(slices) -> np.ndarray:
    out = []
    for sl in slices:
        ds = sl["ds"]
        slope = float(ds.get("RescaleSlope", 1.0))
        intercept = float(ds.get("RescaleIntercept", 0.0))
        out.append(sl["stored"].astype(np.float64) * slope + intercept)
    return np.stack(out)


# ---------------------------------------------------------------------------------------- reading


def test_ct_series_is_sorted_by_position_and_rescaled_to_hu(tmp_path):
    slices = make_series(tmp_path / "ct")
    by_name = sorted(tmp_path.joinpath("ct").iterdir())
    assert [sl["file"] for sl in slices] != by_name  # the test would be blind otherwise
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnevenSliceSpacingWarning)
        study = read_dicom_series(tmp_path / "ct")
    assert study.modality == "CT"
    assert study.voxels.dtype == torch.float32
    assert study.shape == (5, 128, 128)
    assert study.name == "test series"
    np.testing.assert_array_equal(study.voxels.numpy(), expected_voxels(slices))
    # HU: CT_small stores with intercept -1024
    assert float(slices[0]["ds"].RescaleIntercept) == -1024.0
    assert study.voxels[0, 0, 0].item() == slices[0]["stored"][0, 0] - 1024
    check_affine(study, [sl["ds"] for sl in slices])
    np.testing.assert_allclose(study.spacing, (0.661468, 0.661468, 2.5), atol=1e-6)
    source = study.source
    assert source["format"] == "dicom"
    assert source["series_uid"] == slices[0]["ds"].SeriesInstanceUID
    assert source["files"] == [str(sl["file"]) for sl in slices]
    assert len(source["headers"]) == 5
    assert all("PixelData" not in h for h in source["headers"])
    assert [h.SOPInstanceUID for h in source["headers"]] == [sl["ds"].SOPInstanceUID for sl in slices]


def test_oblique_mr_series_with_rescale(tmp_path):
    slices = make_series(
        tmp_path / "mr", MR_FILE, orientation=OBLIQUE, origin=(12.5, -40.0, 7.25),
        offsets=(0.0, 1.2, 2.4, 3.6, 4.8), slope=0.37, intercept=1.5, description=None, pixel_spacing=(0.3125, 0.45),
    )  # fmt: skip
    study = read_dicom_series(tmp_path / "mr")
    assert study.modality == "MR"
    assert study.name == "mr"  # no SeriesDescription: the folder name
    np.testing.assert_allclose(study.voxels.numpy(), expected_voxels(slices), rtol=1e-6)
    check_affine(study, [sl["ds"] for sl in slices])
    np.testing.assert_allclose(study.spacing, (0.45, 0.3125, 1.2), atol=1e-6)  # (columns, rows, slices)
    # the slice axis is the normal of the oblique plane, in RAS
    normal_ras = np.cross(*OBLIQUE) * np.array([-1, -1, 1])
    np.testing.assert_allclose(study.affine[:3, 2] / 1.2, normal_ras, atol=1e-6)


def test_single_file_and_list_of_files(tmp_path):
    slices = make_series(tmp_path / "ct")
    one = read_dicom_series(slices[2]["file"])
    assert one.shape == (1, 128, 128)
    np.testing.assert_array_equal(one.voxels[0].numpy(), expected_voxels(slices)[2])
    # one slice: the slice step is the normal times SpacingBetweenSlices (5 mm in CT_small)
    np.testing.assert_allclose(one.affine[:3, 2], [0, 0, 5.0], atol=1e-9)
    check_affine(one, [slices[2]["ds"]])
    some = read_dicom_series([slices[4]["file"], slices[0]["file"], slices[2]["file"]])
    np.testing.assert_array_equal(some.voxels.numpy(), expected_voxels([slices[0], slices[2], slices[4]]))
    check_affine(some, [slices[0]["ds"], slices[2]["ds"], slices[4]["ds"]])


def test_load_study_dispatches_to_dicom(tmp_path):
    make_series(tmp_path / "ct")
    study = load_study(tmp_path / "ct")
    assert study.source["format"] == "dicom" and study.shape == (5, 128, 128)


def test_multiframe_enhanced_ct(tmp_path):
    """An Enhanced CT file built from CT_small: frames stored out of position order, orientation and
    spacing in shared functional groups, position and rescale per frame."""
    base = pydicom.dcmread(CT_FILE)
    pixels = base.pixel_array.astype(np.int32)
    normal = np.cross(*OBLIQUE)
    origin = np.array([3.0, -20.0, 50.0])
    frame_order = [2, 4, 0, 3, 1]  # frame i holds the slice at position k = frame_order[i]
    ds = copy.deepcopy(base)
    ds.SOPClassUID = EnhancedCTImageStorage
    ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "RescaleSlope",
               "RescaleIntercept", "SliceThickness", "SpacingBetweenSlices", "SliceLocation"):  # fmt: skip
        delattr(ds, kw)
    ds.NumberOfFrames = 5
    shared = Dataset()
    orientation = Dataset()
    orientation.ImageOrientationPatient = ds_list([*OBLIQUE[0], *OBLIQUE[1]])
    shared.PlaneOrientationSequence = [orientation]
    measures = Dataset()
    measures.PixelSpacing = ds_list([0.7, 0.6])
    measures.SliceThickness = "3"
    shared.PixelMeasuresSequence = [measures]
    voi = Dataset()
    voi.WindowCenter, voi.WindowWidth = "-600", "1500"  # the display window, in the frames' functional groups
    shared.FrameVOILUTSequence = [voi]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame, frames = [], []
    for k in frame_order:
        group = Dataset()
        position = Dataset()
        position.ImagePositionPatient = ds_list(origin + 3.0 * k * normal)
        group.PlanePositionSequence = [position]
        transform = Dataset()
        transform.RescaleSlope = "1"
        transform.RescaleIntercept = str(-1024 + 10 * k)
        group.PixelValueTransformationSequence = [transform]
        per_frame.append(group)
        frames.append((pixels + 7 * k).astype(np.int16))
    ds.PerFrameFunctionalGroupsSequence = per_frame
    ds.PixelData = np.stack(frames).tobytes()
    folder = tmp_path / "enhanced"
    folder.mkdir()
    ds.save_as(folder / "multiframe.dcm", enforce_file_format=True)

    study = read_dicom_series(folder)
    assert study.shape == (5, 128, 128)
    expected = np.stack([pixels + 7 * k - 1024 + 10 * k for k in range(5)])
    np.testing.assert_array_equal(study.voxels.numpy(), expected)
    affine = np.eye(4)
    affine[:3, 0] = OBLIQUE[0] * 0.6 * np.array([-1, -1, 1])
    affine[:3, 1] = OBLIQUE[1] * 0.7 * np.array([-1, -1, 1])
    affine[:3, 2] = 3.0 * normal * np.array([-1, -1, 1])
    affine[:3, 3] = origin * np.array([-1, -1, 1])
    np.testing.assert_allclose(study.affine, affine, atol=1e-6)
    assert study.source["frames"] == [frame_order.index(k) for k in range(5)]
    assert study.window == (-600.0, 1500.0)

    # written back as classic single-frame CT images with the same geometry (and window)
    out = write_dicom_series(study, tmp_path / "out")
    back = read_dicom_series(out)
    np.testing.assert_array_equal(back.voxels.numpy(), expected)
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    first = pydicom.dcmread(min(out.iterdir()))
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert "PerFrameFunctionalGroupsSequence" not in first and "NumberOfFrames" not in first
    assert first.SourceImageSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert first.SourceImageSequence[0].ReferencedFrameNumber == frame_order.index(0) + 1
    assert (float(first.WindowCenter), float(first.WindowWidth)) == (-600.0, 1500.0) and back.window == study.window


def set_window(slices, center, width) -> None:
    """Give every file of a series these WindowCenter / WindowWidth values (a list: multi-valued)."""
    for sl in slices:
        ds = sl["ds"]
        ds.WindowCenter, ds.WindowWidth = center, width
        ds.save_as(sl["file"], enforce_file_format=True)


def test_window_tags_are_kept_first_value_and_written_back(tmp_path):
    slices = make_series(tmp_path / "ct")
    assert read_dicom_series(tmp_path / "ct").window is None  # CT_small has none
    set_window(slices, ["40", "-600"], ["400", "1500"])  # multi-valued: soft tissue, then lung
    study = read_dicom_series(tmp_path / "ct")
    assert study.window == (40.0, 400.0)
    assert study.with_voxels(study.voxels + 1).window == (40.0, 400.0)
    out = write_dicom_series(study.with_voxels(study.voxels + 1), tmp_path / "out")
    written = pydicom.dcmread(min(out.iterdir()))
    assert [float(v) for v in written.WindowCenter] == [40.0, -600.0]  # the source's header, verbatim
    assert read_dicom_series(out).window == (40.0, 400.0)
    # MR_small carries WindowCenter 600 / WindowWidth 1600 itself
    make_series(tmp_path / "mr", MR_FILE)
    assert read_dicom_series(tmp_path / "mr").window == (600.0, 1600.0)


def test_an_unusable_window_is_no_window_not_a_refusal(tmp_path):
    slices = make_series(tmp_path / "zero")
    set_window(slices, "40", "0")  # zero width
    assert read_dicom_series(tmp_path / "zero").window is None
    slices = make_series(tmp_path / "half")
    set_window(slices[2:], "-500", "1200")  # only the later slices carry one: the first of them in slice order
    assert read_dicom_series(tmp_path / "half").window == (-500.0, 1200.0)
    with pytest.raises(InputError, match="positive width"):
        Study(torch.zeros(1, 2, 2), np.eye(4), "CT", window=(40, -1))


def test_uneven_spacing_warns_with_min_and_max(tmp_path):
    make_series(tmp_path / "ct", offsets=(0.0, 2.5, 5.0, 7.5, 12.5))
    with pytest.warns(UnevenSliceSpacingWarning, match=r"min 2\.5 mm, max 5 mm"):
        study = read_dicom_series(tmp_path / "ct")
    np.testing.assert_allclose(study.spacing[2], 12.5 / 4)  # the mean spacing, first to last


# ---------------------------------------------------------------------------------------- errors


def test_two_series_in_one_folder_are_listed(tmp_path):
    a = make_series(tmp_path / "mixed", description="first", prefix="A")
    b = make_series(tmp_path / "mixed", offsets=(0.0, 1.0, 2.0), description="second", prefix="B")
    uid_a, uid_b = a[0]["ds"].SeriesInstanceUID, b[0]["ds"].SeriesInstanceUID
    with pytest.raises(InputError, match="2 image series") as info:
        read_dicom_series(tmp_path / "mixed")
    message = str(info.value)
    assert uid_a in message and uid_b in message and "series_uid=" in message
    assert "'first'" in message and "5 slice(s)" in message and "'second'" in message and "3 slice(s)" in message
    chosen = read_dicom_series(tmp_path / "mixed", series_uid=uid_b)
    assert chosen.shape == (3, 128, 128) and chosen.name == "second"
    with pytest.raises(InputError, match="no series with SeriesInstanceUID 1.2.3"):
        read_dicom_series(tmp_path / "mixed", series_uid="1.2.3")


def test_duplicate_positions_are_refused(tmp_path):
    make_series(tmp_path / "ct", offsets=(0.0, 2.5, 2.5, 5.0, 7.5))
    with pytest.raises(InputError, match="duplicate slice position"):
        read_dicom_series(tmp_path / "ct")


def test_mismatched_orientation_is_refused(tmp_path):
    slices = make_series(tmp_path / "ct")
    ds = pydicom.dcmread(slices[3]["file"])
    ds.ImageOrientationPatient = ds_list([*OBLIQUE[0], *OBLIQUE[1]])
    ds.save_as(slices[3]["file"], enforce_file_format=True)
    with pytest.raises(InputError, match="ImageOrientationPatient differs between slices"):
        read_dicom_series(tmp_path / "ct")


def test_mismatched_pixel_spacing_is_refused(tmp_path):
    slices = make_series(tmp_path / "ct")
    ds = pydicom.dcmread(slices[1]["file"])
    ds.PixelSpacing = [0.7, 0.7]
    ds.save_as(slices[1]["file"], enforce_file_format=True)
    with pytest.raises(InputError, match=r"PixelSpacing differs between slices.*0\.7"):
        read_dicom_series(tmp_path / "ct")


def test_mismatched_image_size_is_refused(tmp_path):
    make_series(tmp_path / "mixed", prefix="A")
    mr = make_series(tmp_path / "mr", MR_FILE, offsets=(20.0,))
    ds = pydicom.dcmread(mr[0]["file"])
    ds.SeriesInstanceUID = pydicom.dcmread(next((tmp_path / "mixed").iterdir())).SeriesInstanceUID
    ds.Modality = "CT"
    ds.save_as(tmp_path / "mixed" / "odd.dcm", enforce_file_format=True)
    with pytest.raises(InputError, match="image size differs between slices"):
        read_dicom_series(tmp_path / "mixed")


def non_image_object(file: Path, series_uid: str | None = None) -> None:
    ds = pydicom.dcmread(CT_FILE)
    del ds.PixelData
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.Modality = "SR"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.save_as(file, enforce_file_format=True)


def test_non_image_objects_are_skipped_or_refused_alone(tmp_path):
    (tmp_path / "sr").mkdir()
    non_image_object(tmp_path / "sr" / "report.dcm")
    with pytest.raises(InputError, match="no image slices"):
        read_dicom_series(tmp_path / "sr")
    slices = make_series(tmp_path / "ct")
    non_image_object(tmp_path / "ct" / "report.dcm")
    study = read_dicom_series(tmp_path / "ct")
    np.testing.assert_array_equal(study.voxels.numpy(), expected_voxels(slices))


def test_unreadable_file_is_named(tmp_path):
    make_series(tmp_path / "ct")
    (tmp_path / "ct" / "notes.txt").write_text("not a DICOM file\n")
    with pytest.raises(InputError, match=r"cannot be read as DICOM: .*notes\.txt") as info:
        read_dicom_series(tmp_path / "ct")
    assert "\n" not in str(info.value)


def test_missing_path_and_unsupported_modality(tmp_path):
    with pytest.raises(InputError, match="no such DICOM file or folder"):
        read_dicom_series(tmp_path / "absent")
    slices = make_series(tmp_path / "pt", offsets=(0.0,))
    ds = pydicom.dcmread(slices[0]["file"])
    ds.Modality = "PT"
    ds.save_as(slices[0]["file"], enforce_file_format=True)
    with pytest.raises(InputError, match="Modality 'PT'.*CT and MR"):
        read_dicom_series(tmp_path / "pt")


def test_truncated_pixel_data_and_unplaceable_frames_are_refused(tmp_path):
    folder = tmp_path / "truncated"
    folder.mkdir()
    (folder / "mr.dcm").write_bytes(Path(get_testdata_file("MR_truncated.dcm")).read_bytes())
    with pytest.raises(InputError, match=r"mr\.dcm: cannot read its pixel data"):
        read_dicom_series(folder)
    # two frames but no functional groups: nothing says where the second frame lies
    ds = pydicom.dcmread(CT_FILE)
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    (tmp_path / "frames").mkdir()
    ds.save_as(tmp_path / "frames" / "two.dcm", enforce_file_format=True)
    with pytest.raises(InputError, match="2 frames but no functional groups"):
        read_dicom_series(tmp_path / "frames")
    # a slice without ImagePositionPatient
    slices = make_series(tmp_path / "nopos", offsets=(0.0, 1.0))
    ds = pydicom.dcmread(slices[1]["file"])
    del ds.ImagePositionPatient
    ds.save_as(slices[1]["file"], enforce_file_format=True)
    with pytest.raises(InputError, match="has no ImagePositionPatient"):
        read_dicom_series(tmp_path / "nopos")


def test_compressed_pixel_data_without_decoder_names_the_package(tmp_path):
    from pydicom.pixels import get_decoder

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    folder = tmp_path / "jls"
    folder.mkdir()
    (folder / "slice.dcm").write_bytes(Path(get_testdata_file("MR_small_jpeg_ls_lossless.dcm")).read_bytes())
    with pytest.raises(DicomDecoderMissingError, match="JPEG-LS.*pylibjpeg-libjpeg") as info:
        read_dicom_series(folder)
    assert isinstance(info.value, InputError) and isinstance(info.value, MissingResourceError)


# ---------------------------------------------------------------------------------------- writing


def test_round_trip_integer_hu_is_exact_and_valid_dicom(tmp_path):
    slices = make_series(tmp_path / "ct")
    study = read_dicom_series(tmp_path / "ct")
    out = write_dicom_series(study, tmp_path / "out", description="dds, 60 views")
    assert out == tmp_path / "out"
    back = read_dicom_series(out)
    np.testing.assert_array_equal(back.voxels.numpy(), study.voxels.numpy())
    np.testing.assert_allclose(back.affine, study.affine, atol=1e-9)
    assert back.modality == "CT"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct", "out"]  # no temporary folder left

    written = [pydicom.dcmread(f) for f in sorted(out.iterdir())]
    assert len(written) == 5
    series_uids = {ds.SeriesInstanceUID for ds in written}
    assert len(series_uids) == 1 and series_uids.pop() != slices[0]["ds"].SeriesInstanceUID
    sops = [ds.SOPInstanceUID for ds in written]
    assert len(set(sops)) == 5 and not set(sops) & {sl["ds"].SOPInstanceUID for sl in slices}
    for ds, sl in zip(written, slices, strict=True):  # written slice s is the source slice at position s
        src = sl["ds"]
        assert Path(ds.filename).read_bytes()[128:132] == b"DICM"
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        for kw in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "FrameOfReferenceUID", "Modality"):
            assert ds[kw].value == src[kw].value, kw
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness"):
            assert [str(v) for v in np.atleast_1d(ds[kw].value)] == [str(v) for v in np.atleast_1d(src[kw].value)], kw
        assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"]
        assert ds.SeriesNumber == int(src.SeriesNumber) + 1000
        assert "medrecon" in ds.SeriesDescription and "dds, 60 views" in ds.SeriesDescription
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 16, 15, 1)
        assert (ds.SamplesPerPixel, ds.PhotometricInterpretation) == (1, "MONOCHROME2")
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, 0.0)
        assert not any(el.tag.is_private for el in ds)
        np.testing.assert_array_equal(ds.pixel_array, sl["stored"].astype(np.int32) - 1024)


def test_round_trip_non_integer_values_within_half_a_slope_step(tmp_path):
    make_series(tmp_path / "mr", MR_FILE, orientation=OBLIQUE, slope=0.37, intercept=1.5, pixel_spacing=(0.5, 0.3))
    study = read_dicom_series(tmp_path / "mr")
    out = write_dicom_series(study, tmp_path / "out")
    back = read_dicom_series(out)
    slope = float(pydicom.dcmread(next(out.iterdir())).RescaleSlope)
    lo, hi = study.voxels.min().item(), study.voxels.max().item()
    assert slope == pytest.approx((hi - lo) / 65534, rel=1e-9)
    error = (back.voxels.double() - study.voxels.double()).abs().max().item()
    assert error <= slope / 2 + 1e-6 * max(abs(lo), abs(hi))
    np.testing.assert_allclose(back.affine, study.affine, atol=1e-9)

    # a CT reconstruction with fractional HU: the same bound
    ct_slices = make_series(tmp_path / "ct")
    ct = read_dicom_series(tmp_path / "ct")
    recon = ct.with_voxels(ct.voxels * 0.93 + 0.3)
    back = read_dicom_series(write_dicom_series(recon, tmp_path / "recon"))
    slope = float(pydicom.dcmread(next((tmp_path / "recon").iterdir())).RescaleSlope)
    assert slope != 1.0
    assert (back.voxels.double() - recon.voxels.double()).abs().max().item() <= slope / 2 + 1e-3
    assert len(ct_slices) == back.shape[0]


def test_nifti_export_of_read_back_study(tmp_path):
    slices = make_series(tmp_path / "mr", MR_FILE, orientation=OBLIQUE, origin=(1.0, 2.0, 3.0), pixel_spacing=(0.4, 0.3))
    back = read_dicom_series(write_dicom_series(read_dicom_series(tmp_path / "mr"), tmp_path / "out"))
    write_nifti(back, tmp_path / "vol.nii.gz")
    image = nib.load(tmp_path / "vol.nii.gz")
    np.testing.assert_allclose(image.affine, back.affine, atol=1e-5)
    data = np.asarray(image.dataobj)
    np.testing.assert_array_equal(data, back.voxels.permute(2, 1, 0).numpy())
    # the NIfTI voxel (i, j, k) = (w, h, s) lies where the source DICOM tags put pixel (w, h) of slice s
    for w, h, s in [(0, 0, 0), (63, 10, 4), (5, 60, 2)]:
        np.testing.assert_allclose((image.affine @ [w, h, s, 1])[:3], world_ras(slices[s]["ds"], w, h), atol=1e-4)
        assert data[w, h, s] == slices[s]["stored"][h, w]


def test_write_from_nifti_source_builds_minimal_series(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 2000, size=(24, 20, 6)).astype(np.int16)  # (i, j, k)
    affine = np.eye(4)
    affine[:3, :3] = rotation([0.3, -1.0, 0.2], 20.0) @ np.diag([0.8, 0.9, 2.0])
    affine[:3, 3] = [-30.0, 15.0, 40.0]
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "ct.nii.gz")
    study = read_nifti(tmp_path / "ct.nii.gz", modality="CT")
    out = save_study(study, tmp_path / "dicom")
    back = read_dicom_series(out)
    assert back.modality == "CT"
    np.testing.assert_allclose(back.affine, study.affine, atol=1e-6)
    np.testing.assert_array_equal(back.voxels.numpy(), study.voxels.numpy())
    written = [pydicom.dcmread(f) for f in sorted(out.iterdir())]
    assert all(str(ds.PatientName) == "anonymous" and ds.PatientID == "ct" for ds in written)
    assert len({ds.StudyInstanceUID for ds in written}) == 1 and len({ds.FrameOfReferenceUID for ds in written}) == 1
    assert written[0].SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert "WindowCenter" not in written[0]  # none given, none invented
    windowed = read_dicom_series(save_study(study.with_voxels(study.voxels, window=(50, 350)), tmp_path / "windowed"))
    assert windowed.window == (50.0, 350.0)

    # slice axis against row x column: read back in reverse slice order, same voxels in space
    flipped = Study(study.voxels.flip(0), study.affine @ _flip_slices(study.shape[0]), "CT", name="flipped")
    back = read_dicom_series(write_dicom_series(flipped, tmp_path / "flipped"))
    np.testing.assert_array_equal(back.voxels.numpy(), study.voxels.numpy())
    np.testing.assert_allclose(back.affine, study.affine, atol=1e-6)


def _flip_slices(n: int) -> np.ndarray:
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1.0, n - 1
    return flip


def test_existing_output_is_kept_without_overwrite(tmp_path):
    make_series(tmp_path / "ct")
    study = read_dicom_series(tmp_path / "ct")
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    with pytest.raises(InputError, match="exists and is not empty.*overwrite"):
        write_dicom_series(study, target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct", "out"]  # no temporary folder left

    write_dicom_series(study, target, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == [f"slice_{i:04d}.dcm" for i in range(1, 6)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct", "out"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        write_dicom_series(study, tmp_path / "file", overwrite=True)


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    make_series(tmp_path / "ct")
    study = read_dicom_series(tmp_path / "ct")
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.dcm").write_text("old series")
    calls = []
    real = pydicom.dcmwrite

    def failing(file, ds, *args, **kwargs):
        calls.append(file)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(file, ds, *args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmwrite", failing)
    with pytest.raises(OSError, match="disk full"):
        write_dicom_series(study, target, overwrite=True)
    assert len(calls) == 3
    assert [p.name for p in target.iterdir()] == ["old.dcm"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct", "out"]


def test_complex_voxels_and_mismatched_source_are_refused(tmp_path):
    make_series(tmp_path / "mr", MR_FILE)
    study = read_dicom_series(tmp_path / "mr")
    with pytest.raises(InputError, match="complex voxels.*magnitudes"):
        write_dicom_series(study.with_voxels(study.voxels.to(torch.complex64)), tmp_path / "out")
    shifted = study.affine.copy()
    shifted[:3, 3] += 5.0
    moved = Study(study.voxels, shifted, "MR", source=study.source)
    with pytest.raises(InputError, match="affine differs from the geometry of its DICOM source"):
        write_dicom_series(moved, tmp_path / "out")
    assert not (tmp_path / "out").exists()
