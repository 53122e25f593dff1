"""medrecon.reproduce.datasets: the published dataset layouts -> normalised evaluation items.

Every fixture is written in tmp_path in the exact on-disk layout of the dataset (TCIA's LIDC-IDRI
tree with pydicom, BraTS case folders with nibabel, fastMRI HDF5 with h5py), and every expected
value is computed here with numpy from the arrays written, not by the code under test. The fastMRI
mask is held to the masks made by the real ``fastmri`` package (tests/fixtures/fastmri_masks.npz).
"""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydicom.uid import generate_uid

from medrecon.errors import InputError, MissingResourceError
from medrecon.operators.masks import make_mask
from medrecon.reproduce.datasets import (
    DatasetItems,
    brats_volumes,
    fastmri_mask,
    fastmri_volumes,
    lidc_volumes,
)
from tests.support import FIXTURES
from tests.support_files import (
    BRATS_AFFINE,
    brats_array,
    ct_pixels,
    expected_brats,
    header_xml,
    min_max,
    write_ct_series,
    write_dx_series,
    write_raw,
)

FIXTURE = FIXTURES / "fastmri_masks.npz"
RNG = np.random.default_rng(20240601)


# --------------------------------------------------------------------------------------------------
# LIDC-IDRI fixture: root/LIDC-IDRI-XXXX/<study UID>/<series UID>/*.dcm


@pytest.fixture(scope="module")
def lidc(tmp_path_factory):
    """A TCIA download: the manifest folder holds LIDC-IDRI/, which holds the patient folders."""
    base = tmp_path_factory.mktemp("lidc")
    root = base / "LIDC-IDRI"
    # patient 1: a CT study (4 slices and the XML annotation file of LIDC) and a DX study (6 images)
    p1 = root / "LIDC-IDRI-0001"
    study_ct, study_dx = generate_uid(), generate_uid()
    ct1 = write_ct_series(p1 / study_ct / generate_uid(), "LIDC-IDRI-0001", study_ct, ct_pixels(4, seed=1),
                          [-30.0, -37.5, -32.5, -35.0])
    (ct1["folder"] / "069.xml").write_text("<LidcReadMessage/>")
    dx = write_dx_series(p1 / study_dx / generate_uid(), "LIDC-IDRI-0001", study_dx, 6)
    # patient 2: two CT series in one study; the one with more slices is chosen
    p2 = root / "LIDC-IDRI-0002"
    study = generate_uid()
    small = write_ct_series(p2 / study / "1.2.3.1", "LIDC-IDRI-0002", study, ct_pixels(3, seed=2), [0.0, 2.5, 5.0])
    large = write_ct_series(p2 / study / "1.2.3.2", "LIDC-IDRI-0002", study, ct_pixels(5, seed=3),
                            [10.0, 12.0, 14.0, 16.0, 18.0], intercept=-1000.0)
    return {"base": base, "root": root, "ct1": ct1, "dx": dx, "small": small, "large": large}


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
    with pytest.raises(InputError, match="every voxel is 0 .a constant image") as exc:  # the reader's refusal
        items[0]
    assert str(case / "BraTS2021_00002_t2.nii.gz") in str(exc.value) and "\n" not in str(exc.value)


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
