"""medrecon.reproduce.datasets: the published dataset layouts -> normalised evaluation items.

Every fixture is written in tmp_path in the exact on-disk layout of the dataset (TCIA's LIDC-IDRI
tree with pydicom, BraTS case folders with nibabel, fastMRI HDF5 with h5py), and every expected
value is computed here with numpy from the arrays written, not by the code under test. The fastMRI
mask is held to the masks made by the real ``fastmri`` package (tests/fixtures/fastmri_masks.npz).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medrecon.errors import InputError, MissingResourceError
from medrecon.operators.masks import make_mask
from medrecon.reproduce.datasets import (
    DatasetItems,
    brats_volumes,
    fastmri_mask,
    fastmri_volumes,
    lidc_volumes,
)
from tests.medrecon.test_kspace import header_xml, write_raw

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "fastmri_masks.npz"
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
RNG = np.random.default_rng(20240601)


# --------------------------------------------------------------------------------------------------
# LIDC-IDRI fixture: root/LIDC-IDRI-XXXX/<study UID>/<series UID>/*.dcm


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def write_ct_series(folder: Path, patient: str, study_uid: str, stored: np.ndarray,
                    z_positions, *, intercept: float = -1024.0) -> dict:
    """One CT slice file per z position (file names not in position order, as in TCIA downloads);
    returns the HU volume in ascending z order and the series UID."""
    folder.mkdir(parents=True)
    series_uid = generate_uid()
    n = len(z_positions)
    names = list(range(n))[::-1]  # file 000 holds the highest slice
    for k, z in enumerate(z_positions):
        sop_uid = generate_uid()
        ds = Dataset()
        ds.file_meta = _file_meta(CTImageStorage, sop_uid)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop_uid
        ds.Modality = "CT"
        ds.PatientID = ds.PatientName = patient
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.InstanceNumber = names[k] + 1
        ds.ImagePositionPatient = [-8.4, -8.4, float(z)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 2.5
        ds.Rows, ds.Columns = stored.shape[1:]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = intercept, 1, "HU"
        ds.PixelData = stored[k].astype(np.int16).tobytes()
        ds.save_as(folder / f"{names[k] + 1:06d}.dcm", enforce_file_format=True)
    order = np.argsort(z_positions)
    return {"hu": stored[order].astype(np.float64) + intercept, "uid": series_uid, "folder": folder}


def write_dx_series(folder: Path, patient: str, study_uid: str, count: int) -> Path:
    """A DX radiograph series as in LIDC-IDRI (no slice position tags: not readable as a volume).
    It has more files than any CT series, so choosing by file count alone would pick it."""
    folder.mkdir(parents=True)
    series_uid = generate_uid()
    for k in range(count):
        sop_uid = generate_uid()
        ds = Dataset()
        ds.file_meta = _file_meta(DX_STORAGE, sop_uid)
        ds.SOPClassUID, ds.SOPInstanceUID = DX_STORAGE, sop_uid
        ds.Modality = "DX"
        ds.PatientID = ds.PatientName = patient
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.InstanceNumber = k + 1
        ds.Rows, ds.Columns = 20, 30
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = RNG.integers(0, 4000, (20, 30)).astype(np.uint16).tobytes()
        ds.save_as(folder / f"1-{k + 1:02d}.dcm", enforce_file_format=True)
    return folder


def ct_pixels(n: int, size: int = 24) -> np.ndarray:
    """Stored values of a CT-like volume: air outside a disc, tissue with structure inside."""
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (0.4 * size) ** 2
    out = []
    for k in range(n):
        img = np.where(disc, 1024 + 40 + 30 * k + RNG.integers(-20, 20, (size, size)), 24)
        img[size // 2, size // 2 - 2 + k] = 1024 + 900  # a bone-like voxel, different per slice
        out.append(img)
    return np.stack(out).astype(np.int16)


@pytest.fixture(scope="module")
def lidc(tmp_path_factory):
    """A TCIA download: the manifest folder holds LIDC-IDRI/, which holds the patient folders."""
    base = tmp_path_factory.mktemp("lidc")
    root = base / "LIDC-IDRI"
    # patient 1: a CT study (4 slices and the XML annotation file of LIDC) and a DX study (6 images)
    p1 = root / "LIDC-IDRI-0001"
    study_ct, study_dx = generate_uid(), generate_uid()
    ct1 = write_ct_series(p1 / study_ct / generate_uid(), "LIDC-IDRI-0001", study_ct, ct_pixels(4),
                          [-30.0, -37.5, -32.5, -35.0])
    (ct1["folder"] / "069.xml").write_text("<LidcReadMessage/>")
    dx = write_dx_series(p1 / study_dx / generate_uid(), "LIDC-IDRI-0001", study_dx, 6)
    # patient 2: two CT series in one study; the one with more slices is chosen
    p2 = root / "LIDC-IDRI-0002"
    study = generate_uid()
    small = write_ct_series(p2 / study / "1.2.3.1", "LIDC-IDRI-0002", study, ct_pixels(3), [0.0, 2.5, 5.0])
    large = write_ct_series(p2 / study / "1.2.3.2", "LIDC-IDRI-0002", study, ct_pixels(5),
                            [10.0, 12.0, 14.0, 16.0, 18.0], intercept=-1000.0)
    return {"base": base, "root": root, "ct1": ct1, "dx": dx, "small": small, "large": large}


def min_max(x: np.ndarray) -> np.ndarray:
    return (x - x.min()) / (x.max() - x.min())


# --------------------------------------------------------------------------------------------------
# LIDC-IDRI


def test_lidc_chooses_ct_series_with_most_slices_and_normalises(lidc):
    items = lidc_volumes(lidc["root"], size=24)
    assert isinstance(items, DatasetItems) and len(items) == 2
    first, second = list(items)

    assert first.name == "LIDC-IDRI-0001"
    assert first.path == lidc["ct1"]["folder"]  # the DX series (more files) is ignored
    assert first.meta["series_uid"] == lidc["ct1"]["uid"]
    assert first.images.dtype == torch.float32 and first.images.shape == (4, 1, 24, 24)
    # size 24 = the slice size: no resampling, so the min-max is checkable exactly; slices in z order
    np.testing.assert_allclose(first.images[:, 0].numpy(), min_max(lidc["ct1"]["hu"]), atol=1e-6)
    assert first.meta["low"] == lidc["ct1"]["hu"].min() and first.meta["high"] == lidc["ct1"]["hu"].max()

    assert second.name == "LIDC-IDRI-0002" and second.path == lidc["large"]["folder"]
    assert second.images.shape == (5, 1, 24, 24)
    np.testing.assert_allclose(second.images[:, 0].numpy(), min_max(lidc["large"]["hu"]), atol=1e-6)


def test_lidc_resamples_then_spans_zero_to_one(lidc):
    items = lidc_volumes(lidc["base"], size=16, limit=1)  # the manifest folder holding LIDC-IDRI/
    assert len(items) == 1
    item = items[0]
    assert item.images.shape == (4, 1, 16, 16)
    assert float(item.images.min()) == 0.0 and float(item.images.max()) == 1.0
    hu = torch.from_numpy(lidc["ct1"]["hu"]).float()[:, None]
    expected = F.interpolate(hu, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    np.testing.assert_allclose(item.images.numpy(), min_max(expected.double().numpy()), atol=1e-5)


def test_lidc_patient_without_ct_is_skipped_with_a_warning(tmp_path, lidc):
    root = tmp_path / "LIDC-IDRI"
    study = generate_uid()
    write_ct_series(root / "LIDC-IDRI-0005" / study / generate_uid(), "LIDC-IDRI-0005", study,
                    ct_pixels(2), [0.0, 1.0])
    study_dx = generate_uid()
    write_dx_series(root / "LIDC-IDRI-0004" / study_dx / generate_uid(), "LIDC-IDRI-0004", study_dx, 1)
    with pytest.warns(UserWarning, match="LIDC-IDRI-0004"):
        items = lidc_volumes(root, size=24)
    assert [s.patient for s in items.sources] == ["LIDC-IDRI-0005"]


def test_lidc_errors_name_the_path_and_layout(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(MissingResourceError, match="LIDC-IDRI-XXXX") as exc:
        lidc_volumes(missing)
    assert str(missing) in str(exc.value) and "\n" not in str(exc.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="LIDC-IDRI-XXXX") as exc:
        lidc_volumes(empty)
    assert str(empty) in str(exc.value) and "\n" not in str(exc.value)

    flat = tmp_path / "flat" / "LIDC-IDRI-0001"  # .dcm files straight in the patient folder
    write_ct_series(flat, "LIDC-IDRI-0001", generate_uid(), ct_pixels(2), [0.0, 1.0])
    with pytest.raises(InputError, match="<study folder>/<series folder>") as exc:
        lidc_volumes(tmp_path / "flat")
    assert str(flat) in str(exc.value) and "\n" not in str(exc.value)

    only_dx = tmp_path / "dx"
    write_dx_series(only_dx / "LIDC-IDRI-0001" / "s" / "x", "LIDC-IDRI-0001", "1.2", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match="no CT series"):
            lidc_volumes(only_dx)

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        lidc_volumes(a_file)
    with pytest.raises(InputError, match="size"):
        lidc_volumes(tmp_path, size=4)
    with pytest.raises(InputError, match="limit"):
        lidc_volumes(tmp_path, limit=0)


# --------------------------------------------------------------------------------------------------
# BraTS: root/<case>/<case>_<modality>.nii.gz


BRATS_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])  # the BraTS files' orientation: axis 2 is superior


def brats_array(seed: int) -> np.ndarray:
    """An (i, j, k) = (20, 18, 7) volume: zero background, slices 0 and 6 empty, a brain whose box
    grows with k (so the volume's box is the union of the slices' boxes), and one hot voxel."""
    rng = np.random.default_rng(seed)
    data = np.zeros((20, 18, 7), dtype=np.float32)
    for k, (i0, i1, j0, j1) in zip(range(1, 6), [(8, 12, 7, 11), (5, 15, 4, 13), (4, 16, 3, 14),
                                                (6, 14, 5, 12), (9, 11, 8, 10)]):
        data[i0:i1, j0:j1, k] = rng.uniform(50, 150, (i1 - i0, j1 - j0))
    data[10, 8, 3] = 5000.0  # far above mean + 6 std of the non-zero voxels: clipped
    return data


def expected_brats(data: np.ndarray) -> np.ndarray:
    vol = np.transpose(data.astype(np.float64), (2, 1, 0))  # (slices, rows = j, columns = i)
    nonzero = vol != 0
    vol = vol[nonzero.any(axis=(1, 2))]
    rows, cols = np.nonzero(nonzero.any(axis=(0, 2)))[0], np.nonzero(nonzero.any(axis=(0, 1)))[0]
    vol = vol[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    brain = data[data != 0].astype(np.float64)
    mean, std = brain.mean(), brain.std()
    return min_max(np.clip(vol, mean - 6 * std, mean + 6 * std))


@pytest.fixture(scope="module")
def brats(tmp_path_factory):
    root = tmp_path_factory.mktemp("brats")
    (root / "name_mapping.csv").write_text("BraTS_2020_subject_ID\n")
    c21 = root / "BraTS2021_00000"
    c20 = root / "BraTS20_Training_001"
    c21.mkdir(), c20.mkdir()
    t2_21, t2_20, t1 = brats_array(1), brats_array(2), brats_array(3)
    nib.save(nib.Nifti1Image(t2_21, BRATS_AFFINE), c21 / "BraTS2021_00000_t2.nii.gz")
    nib.save(nib.Nifti1Image(t1, BRATS_AFFINE), c21 / "BraTS2021_00000_t1.nii.gz")
    nib.save(nib.Nifti1Image(brats_array(4), BRATS_AFFINE), c21 / "BraTS2021_00000_t1ce.nii.gz")
    nib.save(nib.Nifti1Image(t2_20.astype(np.int16), BRATS_AFFINE), c20 / "BraTS20_Training_001_t2.nii")
    return {"root": root, "t2": [t2_21, t2_20.astype(np.int16)], "t1": t1, "cases": [c21, c20]}


def test_brats_crop_clip_min_max_both_namings(brats):
    items = brats_volumes(brats["root"])  # modality t2
    assert len(items) == 2
    for item, data, case in zip(items, brats["t2"], brats["cases"]):
        assert item.name == case.name and item.path.parent == case
        expected = expected_brats(data)
        assert item.images.dtype == torch.float32
        assert item.images.shape == (5, 1, 11, 12)  # 2 empty slices dropped; union box j 3..13, i 4..15
        np.testing.assert_allclose(item.images[:, 0].numpy(), expected, atol=1e-6)
        assert float(item.images.min()) == 0.0 and float(item.images.max()) == 1.0
        assert item.meta["kept_slices"] == [1, 2, 3, 4, 5]
        # the hot voxel was clipped (mean + 6 std of the brain < 5000): without the clip the
        # expected images would differ
        assert item.meta["clip"][1] < 5000
        cropped = np.transpose(data.astype(np.float64), (2, 1, 0))[1:6, 3:14, 4:16]
        assert np.abs(min_max(cropped) - expected).max() > 0.01


def test_brats_t1_does_not_match_t1ce_and_missing_cases_warn(brats):
    with pytest.warns(UserWarning, match="BraTS20_Training_001"):
        items = brats_volumes(brats["root"], modality="t1")
    assert len(items) == 1 and items.sources[0][0].name == "BraTS2021_00000_t1.nii.gz"
    np.testing.assert_allclose(items[0].images[:, 0].numpy(), expected_brats(brats["t1"]), atol=1e-6)
    assert len(brats_volumes(brats["root"], limit=1)) == 1


def test_brats_errors_name_the_path_and_layout(tmp_path):
    with pytest.raises(MissingResourceError, match="_t2.nii.gz") as exc:
        brats_volumes(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(exc.value) and "\n" not in str(exc.value)

    nib.save(nib.Nifti1Image(brats_array(5), BRATS_AFFINE), tmp_path / "BraTS2021_00001_t2.nii.gz")
    with pytest.raises(InputError, match="<case>/<case>_<modality>") as exc:  # files straight in root
        brats_volumes(tmp_path)
    assert str(tmp_path) in str(exc.value) and "\n" not in str(exc.value)

    with pytest.raises(InputError, match="modality"):
        brats_volumes(tmp_path, modality="t2w")

    case = tmp_path / "BraTS2021_00002"
    case.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), BRATS_AFFINE), case / "BraTS2021_00002_t2.nii.gz")
    items = brats_volumes(tmp_path)
    with pytest.raises(InputError, match="all zeros"):
        items[0]


# --------------------------------------------------------------------------------------------------
# fastMRI: root/*.h5


FASTMRI_NAME = "file1000001.h5"
H, W, CENTER, MAXIMUM = 24, 368, 167, 332  # padding_left = 184 - 167 = 17, padding_right = 350


@pytest.fixture(scope="module")
def fastmri(tmp_path_factory):
    root = tmp_path_factory.mktemp("multicoil_val")
    shape = (2, 3, H, W)
    kspace = (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)).astype(np.complex64)
    target = RNG.uniform(0, 1e-4, (2, 16, 16)).astype(np.float32)
    attrs = {"acquisition": "CORPD_FBK", "max": np.float64(target.max()),
             "norm": np.float64(np.linalg.norm(target)), "patient_id": "abc"}
    write_raw(root / FASTMRI_NAME, kspace, datasets={"reconstruction_rss": target}, attrs=attrs,
              header=header_xml((H, W, 1), (16, 16, 1), CENTER, MAXIMUM))
    (root / "README.txt").write_text("not a volume")
    return {"root": root, "kspace": kspace, "target": target, "attrs": attrs}


def fastmri_reference(width: int, accel: int, seed: str, key: str | None = None):
    """The fastmri package's equispaced_fraction column mask (or the case's ``key``)."""
    data = np.load(FIXTURE)
    cases = json.loads(str(data["cases"]))
    index = next(i for i, c in enumerate(cases) if c["pattern"] == "equispaced_fraction"
                 and c["num_cols"] == width and c["acceleration"] == accel and c["seed"] == seed)
    return cases[index][key] if key else data[f"mask_{index}"].astype(bool)


def test_fastmri_item_fields(fastmri):
    items = fastmri_volumes(fastmri["root"])
    assert len(items) == 1
    item = items[0]
    assert item.name == "file1000001" and item.fname == FASTMRI_NAME
    assert item.path == fastmri["root"] / FASTMRI_NAME
    assert item.kspace.dtype == torch.complex64 and item.kspace.shape == (2, 3, H, W)
    np.testing.assert_array_equal(item.kspace.numpy(), fastmri["kspace"])
    assert item.target.shape == (2, 1, 16, 16)
    np.testing.assert_array_equal(item.target[:, 0].numpy(), fastmri["target"])
    assert item.max_value == float(fastmri["attrs"]["max"])
    assert item.padding == (17, 350) and item.acquisition == "CORPD_FBK"

    part = fastmri_volumes(fastmri["root"], slices=slice(1, 2))[0]
    np.testing.assert_array_equal(part.kspace.numpy(), fastmri["kspace"][1:2])
    assert part.max_value == item.max_value  # the volume's max, not that of the slices read


@pytest.mark.parametrize("accel, fraction", [(4, 0.08), (8, 0.04)])
def test_fastmri_mask_is_fastmri_packages_mask(fastmri, accel, fraction):
    mask = fastmri_mask(FASTMRI_NAME, (H, W), accel)
    expected = fastmri_reference(W, accel, FASTMRI_NAME)  # made by the fastmri package
    assert mask.shape == (H, W) and mask.dtype == torch.float32
    assert (mask == mask[:1]).all()
    np.testing.assert_array_equal(mask[0].numpy().astype(bool), expected)
    assert torch.equal(mask, make_mask("equispaced_fraction", (H, W), accel, fraction,
                                       seed=tuple(map(ord, FASTMRI_NAME))))
    n_low = round(W * fraction)  # the centre block, as many columns as fastMRI's num_low_frequencies
    assert n_low == fastmri_reference(W, accel, FASTMRI_NAME, "num_low_frequencies")
    start = (W - n_low + 1) // 2
    assert mask[0, start:start + n_low].all()
    assert torch.equal(fastmri_mask(fastmri["root"] / FASTMRI_NAME, (H, W), accel), mask)

    item = fastmri_volumes(fastmri["root"])[0]
    padded = expected.copy()
    padded[:17], padded[350:] = False, False  # fastMRI's apply_mask(padding=(17, 350))
    np.testing.assert_array_equal(item.mask(accel)[0].numpy().astype(bool), padded)


def test_fastmri_mask_refuses_other_accelerations():
    for accel in (2, 6, True, "4"):
        with pytest.raises(InputError, match="accelerations"):
            fastmri_mask(FASTMRI_NAME, (H, W), accel)
    with pytest.raises(InputError, match="file name"):
        fastmri_mask("", (H, W), 4)


def test_fastmri_errors(tmp_path):
    with pytest.raises(MissingResourceError, match=r"\*\.h5") as exc:
        fastmri_volumes(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(exc.value) and "\n" not in str(exc.value)

    (tmp_path / "file1000000.mat").write_text("x")
    with pytest.raises(InputError, match=r"no \.h5 files") as exc:
        fastmri_volumes(tmp_path)
    assert str(tmp_path) in str(exc.value) and "\n" not in str(exc.value)

    kspace = np.ones((1, 2, 8, 8), np.complex64)
    header = header_xml((8, 8, 1), (8, 8, 1), 4, 7)
    write_raw(tmp_path / "file1.h5", kspace, header=header, attrs={"max": 1.0})  # a test file: no target
    write_raw(tmp_path / "file2.h5", kspace[:, 0], header=header,  # single-coil
              datasets={"reconstruction_rss": np.ones((1, 8, 8), np.float32)}, attrs={"max": 1.0})
    write_raw(tmp_path / "file3.h5", kspace, header=header,
              datasets={"reconstruction_rss": np.ones((1, 8, 8), np.float32)})  # no max
    items = fastmri_volumes(tmp_path)
    assert [p.name for p in items.sources] == ["file1.h5", "file2.h5", "file3.h5"]
    for index, match in enumerate(["reconstruction_rss", "single-coil", "'max'"]):
        with pytest.raises(InputError, match=match):
            items[index]
