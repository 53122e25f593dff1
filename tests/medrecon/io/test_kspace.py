"""Tests of the fastMRI HDF5 reader/writer (medrecon.io.kspace).

The files are written here with h5py directly, in the layout of the public fastMRI files
(Zbontar et al. 2018): ``kspace`` complex64 ``(slices, [coils,] H, W)``, ``reconstruction_rss`` /
``reconstruction_esc`` float32, ``mask`` ``(W,)`` in test files, the ISMRMRD XML header and the root
attributes. K-space is made from a real MR slice (pydicom's ``MR_small.dcm``, 64 x 64) with numpy's
FFT in fastMRI's convention (``fastmri.fft2c`` = ifftshift -> fft2(norm="ortho") -> fftshift) and
smooth coil maps normalised to ``sum_c |S_c|^2 = 1``, so the RSS image of the full k-space is the
known image; the targets are computed with numpy as fastMRI defines them,
``center_crop(rss(ifft2c(kspace)), (320, 320))``. These writers and references are shared with the
reproduction tests: tests/support_files.py.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import h5py
import numpy as np
import pytest
import torch

from medrecon.errors import InputError, ShapeError
from medrecon.io.kspace import (
    ISMRMRD_NAMESPACE,
    FastMRIVolume,
    center_crop,
    read_fastmri_h5,
    rss_image,
    write_fastmri_h5,
)
from tests.support_files import (
    coil_maps,
    header_xml,
    mr_image,
    mr_slice,
    np_crop,
    np_fft2c,
    np_ifft2c,
    np_rss_target,
    write_raw,
)

# multi-coil knee-like file: 640 x 368 k-space, 320 x 320 target
KNEE_SLICES, KNEE_COILS, KNEE_H, KNEE_W = 3, 4, 640, 368
KNEE_CENTER, KNEE_MAX = 167, 332  # padding_left = 184 - 167 = 17, padding_right = 17 + 333 = 350


@pytest.fixture(scope="module")
def knee(tmp_path_factory):
    base = mr_image(320)
    images = []
    for s in range(KNEE_SLICES):  # different content per slice, so slice order is checkable
        full = np.zeros((KNEE_H, KNEE_W))
        full[160:480, 24:344] = np.roll(base, 40 * s, axis=0) * (1 + 0.5 * s)
        images.append(full)
    images = np.stack(images)  # (slices, 640, 368), real and non-negative
    maps = coil_maps(KNEE_COILS, KNEE_H, KNEE_W)
    kspace = np_fft2c(images[:, None] * maps[None]).astype(np.complex64)
    target = np_rss_target(kspace, (320, 320))
    attrs = {"acquisition": "CORPD_FBK", "max": np.float64(target.max()),
             "norm": np.float64(np.linalg.norm(target)), "patient_id": "a1b2c3d4e5"}
    header = header_xml((KNEE_H, KNEE_W, 1), (320, 320, 1), KNEE_CENTER, KNEE_MAX)
    path = write_raw(tmp_path_factory.mktemp("knee") / "file1000001.h5", kspace,
                     datasets={"reconstruction_rss": target}, attrs=attrs, header=header)
    return {"path": path, "kspace": kspace, "target": target, "attrs": attrs,
            "images": np_crop(images, (320, 320))}


# --------------------------------------------------------------------------------------------------
# reading


def test_multicoil_file_every_field(knee):
    vol = read_fastmri_h5(knee["path"])
    assert isinstance(vol, FastMRIVolume)
    assert vol.kspace.dtype == torch.complex64
    assert tuple(vol.kspace.shape) == (KNEE_SLICES, KNEE_COILS, KNEE_H, KNEE_W)
    np.testing.assert_array_equal(vol.kspace.numpy(), knee["kspace"])
    assert vol.target.dtype == torch.float32 and tuple(vol.target.shape) == (KNEE_SLICES, 320, 320)
    np.testing.assert_array_equal(vol.target.numpy(), knee["target"])
    assert vol.target_kind == "rss"
    assert vol.mask is None
    assert vol.attrs == {"acquisition": "CORPD_FBK", "max": float(knee["attrs"]["max"]),
                         "norm": float(knee["attrs"]["norm"]), "patient_id": "a1b2c3d4e5"}
    assert type(vol.attrs["max"]) is float and type(vol.attrs["acquisition"]) is str
    assert vol.encoding_size == (640, 368, 1)
    assert vol.recon_size == (320, 320, 1)
    assert vol.padding_left == 368 // 2 - KNEE_CENTER == 17
    assert vol.padding_right == 17 + KNEE_MAX + 1 == 350
    assert vol.name == "file1000001.h5"
    assert vol.multicoil is True
    assert vol.slice_indices == (0, 1, 2) and vol.file_slices == 3
    assert (vol.num_slices, vol.num_coils, vol.kspace_shape, vol.crop_size) == (3, 4, (640, 368), (320, 320))
    meta = json.loads(json.dumps(vol.metadata()))
    assert meta["padding_left"] == 17 and meta["attrs"]["acquisition"] == "CORPD_FBK"
    assert "file1000001.h5" in repr(vol) and "multi-coil" in repr(vol)


def test_rss_target_convention(knee):
    """center_crop(rss(ifft2c(kspace)), (320, 320)) is the file's reconstruction_rss, and, as the
    coil maps satisfy sum |S|^2 = 1, also the known image the k-space was made from."""
    vol = read_fastmri_h5(knee["path"])
    rss = rss_image(vol)
    assert rss.dtype == torch.float32 and tuple(rss.shape) == (KNEE_SLICES, 320, 320)
    scale = float(vol.target.abs().max())
    assert float((rss - vol.target).abs().max()) < 1e-5 * scale
    assert float((rss - torch.from_numpy(knee["images"]).float()).abs().max()) < 1e-5 * scale
    torch.testing.assert_close(rss_image(vol.kspace, (320, 320)), rss)
    assert tuple(rss_image(vol.kspace).shape) == (KNEE_SLICES, 640, 368)  # no crop without a shape


def test_single_coil_file_odd_sizes(tmp_path):
    """Single-coil layout (3-D kspace, reconstruction_esc), odd k-space sizes, so that the order
    of the FFT shifts and the crop start (size - crop) // 2 both matter."""
    h, w, crop = 65, 67, (33, 32)
    img = np.zeros((2, h, w))
    img[0, :64, 1:65] = mr_slice()
    img[1, 1:65, 2:66] = mr_slice()[::-1]
    phase = np.exp(1j * 0.3 * np.linspace(-1, 1, w))[None, None]
    kspace = np_fft2c(img * phase).astype(np.complex64)  # (2, 65, 67)
    esc = np_crop(np.abs(np_ifft2c(kspace)), crop).astype(np.float32)
    rss = (2 * esc).astype(np.float32)  # singlecoil files also carry an rss target: esc wins
    path = write_raw(tmp_path / "file1000002.h5", kspace, header=header_xml((h, w, 1), (33, 32, 1), 33, 66),
                     datasets={"reconstruction_esc": esc, "reconstruction_rss": rss},
                     attrs={"acquisition": "CORPDFS_FBK", "max": np.float32(esc.max())})
    vol = read_fastmri_h5(path)
    assert vol.multicoil is False
    assert tuple(vol.kspace.shape) == (2, 1, h, w) and vol.kspace.dtype == torch.complex64
    np.testing.assert_array_equal(vol.kspace[:, 0].numpy(), kspace)
    assert vol.target_kind == "esc"
    np.testing.assert_array_equal(vol.target.numpy(), esc)
    assert vol.padding_left == 67 // 2 - 33 == 0 and vol.padding_right == 67
    assert vol.recon_size == (33, 32, 1)
    assert vol.attrs["acquisition"] == "CORPDFS_FBK" and type(vol.attrs["max"]) is float
    got = rss_image(vol)  # magnitude of the single coil, cropped as the target
    assert float((got - vol.target).abs().max()) < 1e-5
    np.testing.assert_allclose(got.numpy(), np_crop(img, crop), atol=1e-5)


def test_test_split_file_with_mask(tmp_path):
    h, w = 40, 36
    col = np.zeros(w, dtype=bool)
    col[[0, 4, 8, 12, 16, 17, 18, 19, 24, 28, 32]] = True
    img = mr_image(32)
    full = np.zeros((2, h, w))
    full[:, 4:36, 2:34] = img
    kspace = (np_fft2c(full[:, None] * coil_maps(2, h, w)[None]) * col).astype(np.complex64)
    attrs = {"acquisition": "AXT2", "patient_id": b"p42", "acceleration": np.int64(4),
             "num_low_frequency": np.int64(4), "max": np.float64(0.5), "norm": np.float64(3.0)}
    path = write_raw(tmp_path / "file_brain_AXT2_200_6002000.h5", kspace, datasets={"mask": col},
                     attrs=attrs, header=header_xml((h, w, 1), (32, 32, 1), 18, 35))
    vol = read_fastmri_h5(path)
    assert vol.target is None and vol.target_kind is None
    assert vol.mask.dtype == torch.float32 and tuple(vol.mask.shape) == (h, w)
    np.testing.assert_array_equal(vol.mask.numpy(), np.broadcast_to(col.astype(np.float32), (h, w)))
    assert vol.attrs == {"acquisition": "AXT2", "patient_id": "p42", "acceleration": 4,
                         "num_low_frequency": 4, "max": 0.5, "norm": 3.0}
    assert type(vol.attrs["acceleration"]) is int
    assert vol.crop_size == (32, 32) and tuple(rss_image(vol).shape) == (2, 32, 32)


@pytest.mark.parametrize("enc_y,center,maximum", [(368, 167, 332), (372, 186, 371), (335, 150, 300)])
def test_padding_from_header(tmp_path, enc_y, center, maximum):
    k = np.ones((1, 2, 8, 6), dtype=np.complex64)
    path = write_raw(tmp_path / "p.h5", k, header=header_xml((640, enc_y, 1), (320, 320, 1), center, maximum))
    vol = read_fastmri_h5(path)
    assert vol.encoding_size == (640, enc_y, 1)
    assert vol.padding_left == enc_y // 2 - center
    assert vol.padding_right == enc_y // 2 - center + maximum + 1


def test_header_without_namespace_is_read(tmp_path):
    k = np.ones((1, 8, 6), dtype=np.complex64)
    path = write_raw(tmp_path / "p.h5", k, header=header_xml((8, 6, 1), (4, 4, 1), 2, 5, namespace=False))
    vol = read_fastmri_h5(path)
    assert (vol.encoding_size, vol.padding_left, vol.padding_right) == ((8, 6, 1), 1, 7)


def test_header_stored_as_variable_length_string(tmp_path):
    """h5py returns bytes or str depending on how the header was stored: both are read."""
    k = np.ones((1, 8, 6), dtype=np.complex64)
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as hf:
        hf.create_dataset("kspace", data=k)
        hf.create_dataset("ismrmrd_header", data=header_xml((8, 6, 1), (4, 4, 1), 3, 5).decode(),
                          dtype=h5py.string_dtype("utf-8"))
    assert read_fastmri_h5(path).recon_size == (4, 4, 1)


# --------------------------------------------------------------------------------------------------
# slice ranges


@pytest.mark.parametrize("sel,expected", [(slice(1, 3), (1, 2)), (slice(-1, None), (2,)),
                                          (slice(0, 3, 2), (0, 2)), (slice(None, 1), (0,))])
def test_slice_subset_reads_only_those_slices(knee, monkeypatch, sel, expected):
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, args, *rest, **kw):
        reads.append((self.name, args))
        return original(self, args, *rest, **kw)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    vol = read_fastmri_h5(knee["path"], slices=sel)
    monkeypatch.undo()
    idx = list(expected)
    assert vol.slice_indices == expected and vol.file_slices == KNEE_SLICES
    np.testing.assert_array_equal(vol.kspace.numpy(), knee["kspace"][idx])
    np.testing.assert_array_equal(vol.target.numpy(), knee["target"][idx])
    bulk = {name: args for name, args in reads if name in ("/kspace", "/reconstruction_rss")}
    assert set(bulk) == {"/kspace", "/reconstruction_rss"}
    for name, args in reads:
        if name in bulk:  # every read of the big datasets was a slice selecting just these slices
            assert isinstance(args, slice) and tuple(range(KNEE_SLICES)[args]) == expected, (name, args)


@pytest.mark.parametrize("sel,match", [
    (slice(0, 4), "stop 4 is out of range for a file of 3 slices"),
    (slice(5, None), "start 5 is out of range"),
    (slice(-4, None), "start -4 is out of range"),
    (slice(2, 1), "selects no slice"),
    (slice(None, None, -1), "positive step"),
    (slice(0.5, 2), "slices.start must be an int"),
    (1, "must be a slice"),
])
def test_slice_errors(knee, sel, match):
    with pytest.raises(InputError, match=match):
        read_fastmri_h5(knee["path"], slices=sel)


# --------------------------------------------------------------------------------------------------
# bad input

GOOD_HEADER = header_xml((8, 6, 1), (4, 4, 1), 3, 5)
GOOD_K = np.ones((2, 3, 8, 6), dtype=np.complex64)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such fastMRI file"):
        read_fastmri_h5(tmp_path / "nope.h5")
    with pytest.raises(InputError, match="is not a file"):
        read_fastmri_h5(tmp_path)


def test_not_hdf5(tmp_path):
    path = tmp_path / "fake.h5"
    path.write_text("this is not HDF5\n")
    with pytest.raises(InputError, match="not an HDF5 file"):
        read_fastmri_h5(path)


def test_no_kspace_lists_datasets(tmp_path):
    path = write_raw(tmp_path / "t.h5", None, header=GOOD_HEADER,
                     datasets={"reconstruction_rss": np.zeros((2, 4, 4), np.float32), "image": np.zeros(3)})
    with pytest.raises(InputError, match=r"no 'kspace' dataset.*found: image, ismrmrd_header, reconstruction_rss"):
        read_fastmri_h5(path)


@pytest.mark.parametrize("shape", [(8, 6), (1, 2, 3, 8, 6)])
def test_wrong_ndim(tmp_path, shape):
    path = write_raw(tmp_path / "t.h5", np.ones(shape, np.complex64), header=GOOD_HEADER)
    with pytest.raises(InputError, match=rf"got {len(shape)}-D"):
        read_fastmri_h5(path)


def test_real_kspace(tmp_path):
    path = write_raw(tmp_path / "t.h5", np.ones((2, 8, 6), np.float32), header=GOOD_HEADER)
    with pytest.raises(InputError, match="'kspace' must be complex.*float32"):
        read_fastmri_h5(path)


@pytest.mark.parametrize("header,match", [
    (None, "no 'ismrmrd_header' dataset"),
    (b"<ismrmrdHeader><encoding>", "not valid XML"),
    (header_xml((8, 6, 1), (4, 4, 1), 3, 5, drop="reconSpace"), r"element encoding/reconSpace is missing"),
    (header_xml((8, 6, 1), (4, 4, 1), 3, 5, drop="encodingLimits"), r"encoding/encodingLimits is missing"),
    (header_xml((8, 6, 1), (4, 4, 1), 3, 5, drop="center"),
     r"encoding/encodingLimits/kspace_encoding_step_1/center is missing"),
    (header_xml((8, 6, 1), (4, 4, 1), 3, 5, drop="z"), r"encoding/encodedSpace/matrixSize/z is missing"),
    (header_xml((8, 6, 1), (4, 4, 1), 3, 5, matrix_y="3x68"), r"matrixSize/y must be an integer, got '3x68'"),
])
def test_malformed_header(tmp_path, header, match):
    path = write_raw(tmp_path / "t.h5", GOOD_K, header=header)
    with pytest.raises(InputError, match=match):
        read_fastmri_h5(path)


def test_bad_mask_and_target(tmp_path):
    path = write_raw(tmp_path / "m.h5", GOOD_K, header=GOOD_HEADER, datasets={"mask": np.ones(5, bool)})
    with pytest.raises(InputError, match=r"'mask' must be \(W,\) = \(6,\).*got \(5,\)"):
        read_fastmri_h5(path)
    path = write_raw(tmp_path / "v.h5", GOOD_K, header=GOOD_HEADER, datasets={"mask": np.full(6, 2.0)})
    with pytest.raises(InputError, match="'mask' must hold only 0 and 1"):
        read_fastmri_h5(path)
    path = write_raw(tmp_path / "t.h5", GOOD_K, header=GOOD_HEADER,
                     datasets={"reconstruction_rss": np.zeros((3, 4, 4), np.float32)})
    with pytest.raises(InputError, match=r"'reconstruction_rss' must be \(slices, h, w\) with the k-space's 2"):
        read_fastmri_h5(path)


# --------------------------------------------------------------------------------------------------
# center_crop and rss_image


def test_center_crop_convention():
    x = torch.arange(7 * 8).reshape(1, 7, 8)
    np.testing.assert_array_equal(center_crop(x, (4, 5)).numpy(), x.numpy()[:, 1:5, 1:6])  # (7-4)//2, (8-5)//2
    np.testing.assert_array_equal(center_crop(x, (2, 2)).numpy(), x.numpy()[:, 2:4, 3:5])
    np.testing.assert_array_equal(center_crop(x, (7, 8)).numpy(), x.numpy())
    y = torch.zeros(2, 3, 640, 368)
    assert tuple(center_crop(y, (320, 320)).shape) == (2, 3, 320, 320)
    with pytest.raises(ShapeError, match=r"cannot crop \(8, 8\) out of an image of \(7, 8\)"):
        center_crop(x, (8, 8))
    with pytest.raises(ShapeError, match="two positive ints"):
        center_crop(x, (0, 3))
    with pytest.raises(InputError, match="at least 2 dimensions"):
        center_crop(torch.zeros(5), (2, 2))


def test_rss_image_rejects_bad_input():
    with pytest.raises(ShapeError, match=r"complex k-space \(slices, coils, H, W\)"):
        rss_image(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ShapeError, match=r"got shape \(3, 8, 8\)"):
        rss_image(torch.zeros(3, 8, 8, dtype=torch.complex64))


# --------------------------------------------------------------------------------------------------
# the writer


def test_writer_round_trip_multicoil(tmp_path, knee):
    k = knee["kspace"][:2]
    target = knee["target"][:2]
    col = np.zeros(KNEE_W, dtype=np.float32)
    col[::4] = 1
    path = write_fastmri_h5(tmp_path / "sim.h5", torch.from_numpy(k), target=torch.from_numpy(target),
                            attrs={"acquisition": "CORPD_FBK", "patient_id": "sim-7", "acceleration": 4},
                            mask=np.broadcast_to(col, (KNEE_H, KNEE_W)), encoding_size=(640, 368, 1),
                            recon_size=(320, 320), encoding_limits=(KNEE_CENTER, KNEE_MAX))
    assert path == tmp_path / "sim.h5"
    with h5py.File(path, "r") as hf:  # the layout itself, read without medrecon
        assert set(hf.keys()) == {"ismrmrd_header", "kspace", "reconstruction_rss", "mask"}
        assert hf["kspace"].dtype == np.complex64 and hf["kspace"].shape == k.shape
        assert hf["reconstruction_rss"].dtype == np.float32
        assert hf["mask"].shape == (KNEE_W,)
        np.testing.assert_array_equal(hf["mask"][()].astype(np.float32), col)
        assert float(hf.attrs["max"]) == pytest.approx(float(target.max()))
        assert float(hf.attrs["norm"]) == pytest.approx(float(np.linalg.norm(target.astype(np.float64))))
        root = ET.fromstring(hf["ismrmrd_header"][()])
        ns = {"m": ISMRMRD_NAMESPACE}
        assert root.find("m:encoding/m:encodedSpace/m:matrixSize/m:y", ns).text == "368"
        assert root.find("m:encoding/m:encodingLimits/m:kspace_encoding_step_1/m:center", ns).text == "167"
    vol = read_fastmri_h5(path)
    np.testing.assert_array_equal(vol.kspace.numpy(), k)
    np.testing.assert_array_equal(vol.target.numpy(), target)
    np.testing.assert_array_equal(vol.mask.numpy(), np.broadcast_to(col, (KNEE_H, KNEE_W)))
    assert vol.target_kind == "rss" and vol.multicoil is True
    assert (vol.encoding_size, vol.recon_size) == ((640, 368, 1), (320, 320, 1))
    assert (vol.padding_left, vol.padding_right) == (17, 350)
    assert vol.attrs["acquisition"] == "CORPD_FBK" and vol.attrs["acceleration"] == 4
    assert vol.attrs["patient_id"] == "sim-7"
    assert [p.name for p in tmp_path.iterdir()] == ["sim.h5"]  # no temporary file left


def test_writer_round_trip_single_coil_defaults(tmp_path):
    img = mr_slice()[None]
    k = np_fft2c(img).astype(np.complex64)  # (1, 64, 64) single-coil
    esc = np_crop(np.abs(np_ifft2c(k)), (32, 32)).astype(np.float32)
    write_fastmri_h5(tmp_path / "s.h5", k, target=esc, target_kind="esc")
    with h5py.File(tmp_path / "s.h5", "r") as hf:
        assert set(hf.keys()) == {"ismrmrd_header", "kspace", "reconstruction_esc"}
        assert hf["kspace"].shape == (1, 64, 64)
    vol = read_fastmri_h5(tmp_path / "s.h5")
    assert vol.multicoil is False and vol.target_kind == "esc" and vol.mask is None
    assert (vol.encoding_size, vol.recon_size) == ((64, 64, 1), (32, 32, 1))
    assert (vol.padding_left, vol.padding_right) == (0, 64)  # default: the whole encoded width
    np.testing.assert_allclose(rss_image(vol).numpy(), esc, atol=1e-6)
    # 4-D one-coil k-space written as single-coil, and 3-D written as multi-coil
    write_fastmri_h5(tmp_path / "a.h5", k[:, None], multicoil=False)
    assert read_fastmri_h5(tmp_path / "a.h5").multicoil is False
    write_fastmri_h5(tmp_path / "b.h5", k, multicoil=True)
    vol_b = read_fastmri_h5(tmp_path / "b.h5")
    assert vol_b.multicoil is True and tuple(vol_b.kspace.shape) == (1, 1, 64, 64)


def test_writer_refuses_to_overwrite(tmp_path):
    path = tmp_path / "x.h5"
    write_fastmri_h5(path, GOOD_K)
    with pytest.raises(InputError, match="exists; pass overwrite=True"):
        write_fastmri_h5(path, 2 * GOOD_K)
    np.testing.assert_array_equal(read_fastmri_h5(path).kspace.numpy(), GOOD_K)
    write_fastmri_h5(path, 2 * GOOD_K, overwrite=True)
    np.testing.assert_array_equal(read_fastmri_h5(path).kspace.numpy(), 2 * GOOD_K)
    assert [p.name for p in tmp_path.iterdir()] == ["x.h5"]


def test_writer_is_atomic(tmp_path, monkeypatch):
    """A failure in the middle of writing leaves the old file as it was and no partial file."""
    path = tmp_path / "x.h5"
    write_fastmri_h5(path, GOOD_K)
    original = h5py.Group.create_dataset

    def failing(self, name, *args, **kwargs):
        if name == "reconstruction_rss":
            raise RuntimeError("disk full")
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        write_fastmri_h5(path, 2 * GOOD_K, target=np.ones((2, 4, 4)), overwrite=True)
    with pytest.raises(RuntimeError, match="disk full"):
        write_fastmri_h5(tmp_path / "new.h5", GOOD_K, target=np.ones((2, 4, 4)))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["x.h5"]
    np.testing.assert_array_equal(read_fastmri_h5(path).kspace.numpy(), GOOD_K)


@pytest.mark.parametrize("kwargs,match", [
    ({"kspace": np.ones((2, 8, 6), np.float32)}, "kspace must be complex"),
    ({"target": np.ones((3, 4, 4))}, "target must be real .* 2 slices"),
    ({"target": np.ones((2, 4, 4)), "target_kind": "mvue"}, "target_kind must be one of"),
    ({"mask": np.eye(8, 6)}, r"this \(H, W\) mask differs between rows"),
    ({"mask": np.ones(5)}, r"mask must be 0/1 of shape \(6,\)"),
    ({"encoding_limits": (5, 3)}, "0 <= center <= maximum"),
    ({"recon_size": (4,)}, "recon_size must be 2 or 3 positive ints"),
    ({"attrs": {"bad": object()}}, "attribute 'bad' must be"),
    ({"kspace": np.ones((2, 3, 8, 6), np.complex64), "multicoil": False}, "multicoil=False needs one coil"),
])
def test_writer_rejects_bad_input(tmp_path, kwargs, match):
    kwargs = {"kspace": GOOD_K, **kwargs}
    with pytest.raises(InputError, match=match):
        write_fastmri_h5(tmp_path / "w.h5", kwargs.pop("kspace"), **kwargs)
    assert not any(tmp_path.iterdir())


def test_written_header_passes_ismrmrd_parser(tmp_path):
    """Independent reference, when installed: the ISMRMRD package's own (schema-generated) header
    parser accepts the writer's header and reads the same numbers."""
    xsd = pytest.importorskip("ismrmrd.xsd")
    write_fastmri_h5(tmp_path / "h.h5", GOOD_K, encoding_size=(16, 6, 1), recon_size=(8, 8, 1),
                     encoding_limits=(2, 4))
    with h5py.File(tmp_path / "h.h5", "r") as hf:
        header = xsd.CreateFromDocument(hf["ismrmrd_header"][()])
    enc = header.encoding[0]
    assert (enc.encodedSpace.matrixSize.x, enc.encodedSpace.matrixSize.y) == (16, 6)
    assert (enc.reconSpace.matrixSize.x, enc.reconSpace.matrixSize.y) == (8, 8)
    assert (enc.encodingLimits.kspace_encoding_step_1.center,
            enc.encodingLimits.kspace_encoding_step_1.maximum) == (2, 4)
