"""Writers of synthetic raw-data and dataset files for the tests, and numpy references of fastMRI's definitions.

- fastMRI HDF5 (Zbontar et al. 2018): :func:`write_raw` writes the public files' layout with h5py
  directly, :func:`header_xml` their ISMRMRD header; k-space is made from a real MR slice
  (pydicom's ``MR_small.dcm``, :func:`mr_slice` / :func:`mr_image`) with numpy's FFT in fastMRI's
  convention (:func:`np_fft2c`: ifftshift -> fft2(norm="ortho") -> fftshift) and smooth coil maps
  normalised to ``sum_c |S_c|^2 = 1`` (:func:`coil_maps`); targets as fastMRI defines them
  (:func:`np_rss_target`: ``center_crop(rss(ifft2c(kspace)))``).
- LIDC-IDRI (TCIA's tree, with pydicom): :func:`write_ct_series`, :func:`write_dx_series`, :func:`ct_pixels`.
- BraTS (case folders, with nibabel): :func:`brats_array`, :data:`BRATS_AFFINE`, and the expected
  normalisation :func:`expected_brats` computed with numpy.

Test modules never import from other test modules: what two of them write comes from here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medrecon.io.kspace import ISMRMRD_NAMESPACE

# --------------------------------------------------------------------------------------------------
# fastMRI: numpy references of its definitions, and files in its layout


def np_fft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def np_ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def np_crop(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    top, left = (x.shape[-2] - shape[0]) // 2, (x.shape[-1] - shape[1]) // 2
    return x[..., top:top + shape[0], left:left + shape[1]]


def np_rss_target(kspace: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """fastMRI's reconstruction_rss from (slices, coils, H, W) k-space."""
    return np_crop(np.sqrt((np.abs(np_ifft2c(kspace)) ** 2).sum(axis=1)), shape).astype(np.float32)


def mr_slice() -> np.ndarray:
    """pydicom's real 64 x 64 MR slice, normalised to [0, 1]."""
    pydicom_data = pytest.importorskip("pydicom.data")
    import pydicom

    pixels = pydicom.dcmread(pydicom_data.get_testdata_file("MR_small.dcm")).pixel_array.astype(np.float64)
    assert pixels.shape == (64, 64)
    return (pixels - pixels.min()) / (pixels.max() - pixels.min())


def mr_image(size: int) -> np.ndarray:
    """The MR slice resampled (bilinear) to size x size, non-negative."""
    img = torch.from_numpy(mr_slice())[None, None]
    up = torch.nn.functional.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)
    return up[0, 0].clamp_min(0).numpy()


def coil_maps(n: int, h: int, w: int) -> np.ndarray:
    """Smooth complex sensitivities (n, h, w): Gaussian blobs on a ring, phase ramps, sum |S|^2 = 1."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    maps = []
    for c in range(n):
        a = 2 * np.pi * c / n
        mag = np.exp(-((yy - 0.8 * np.sin(a)) ** 2 + (xx - 0.8 * np.cos(a)) ** 2) / 1.5)
        maps.append(mag * np.exp(1j * (0.7 * c + 0.5 * yy * np.cos(a) + 0.5 * xx * np.sin(a))))
    maps = np.stack(maps)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))


def header_xml(enc: tuple[int, int, int], rec: tuple[int, int, int], center: int, maximum: int,
               *, namespace: bool = True, drop: str | None = None, matrix_y: str | None = None) -> bytes:
    """An ISMRMRD header as in the public files: declaration, xsi attributes, studyInformation,
    fields of view, every encoding limit (step_0 and step_2 with other numbers than step_1),
    trajectory, parallel imaging and sequence parameters. ``drop`` removes one element by tag."""
    ns = (f' xmlns="{ISMRMRD_NAMESPACE}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
          ' xmlns:xs="http://www.w3.org/2001/XMLSchema"'
          f' xsi:schemaLocation="{ISMRMRD_NAMESPACE} ismrmrd.xsd"') if namespace else ""

    def limit(name, lo, hi, mid):
        return f"<{name}><minimum>{lo}</minimum><maximum>{hi}</maximum><center>{mid}</center></{name}>"

    y = matrix_y if matrix_y is not None else str(enc[1])
    text = f"""<?xml version="1.0"?>
<ismrmrdHeader{ns}>
  <studyInformation><studyTime>12:00:00</studyTime></studyInformation>
  <measurementInformation><patientPosition>FFS</patientPosition></measurementInformation>
  <acquisitionSystemInformation><systemVendor>SIEMENS</systemVendor>
    <receiverChannels>15</receiverChannels></acquisitionSystemInformation>
  <experimentalConditions><H1resonanceFrequency_Hz>123251815</H1resonanceFrequency_Hz></experimentalConditions>
  <encoding>
    <encodedSpace>
      <matrixSize><x>{enc[0]}</x><y>{y}</y><z>{enc[2]}</z></matrixSize>
      <fieldOfView_mm><x>280</x><y>160.3</y><z>4.5</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>{rec[0]}</x><y>{rec[1]}</y><z>{rec[2]}</z></matrixSize>
      <fieldOfView_mm><x>140</x><y>140</y><z>3</z></fieldOfView_mm>
    </reconSpace>
    <encodingLimits>
      {limit("kspace_encoding_step_0", 0, 5, 3)}
      {limit("kspace_encoding_step_1", 0, maximum, center)}
      {limit("kspace_encoding_step_2", 0, 0, 0)}
      {limit("average", 0, 0, 0)}
      {limit("slice", 0, 34, 0)}
    </encodingLimits>
    <trajectory>cartesian</trajectory>
    <parallelImaging><accelerationFactor><kspace_encoding_step_1>2</kspace_encoding_step_1>
      <kspace_encoding_step_2>1</kspace_encoding_step_2></accelerationFactor></parallelImaging>
  </encoding>
  <sequenceParameters><TR>2750</TR><TE>27</TE></sequenceParameters>
</ismrmrdHeader>
"""
    if drop is not None:
        root_free = ET.fromstring(text.encode())
        for parent in root_free.iter():
            for child in list(parent):
                if child.tag.split("}")[-1] == drop and (drop != "center" or
                                                         parent.tag.endswith("kspace_encoding_step_1")):
                    parent.remove(child)
        return ET.tostring(root_free)
    return text.encode()


def write_raw(path, kspace, *, datasets=None, attrs=None, header=None):
    """A fastMRI-layout file written with h5py directly."""
    with h5py.File(path, "w") as hf:
        if header is not None:
            hf.create_dataset("ismrmrd_header", data=header)
        if kspace is not None:
            hf.create_dataset("kspace", data=kspace)
        for key, value in (datasets or {}).items():
            hf.create_dataset(key, data=value)
        for key, value in (attrs or {}).items():
            hf.attrs[key] = value
    return path


# --------------------------------------------------------------------------------------------------
# LIDC-IDRI: root/LIDC-IDRI-XXXX/<study UID>/<series UID>/*.dcm

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


def _file_meta(sop_class: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _instance(sop_class: str, modality: str, patient: str, study_uid: str, series_uid: str, number: int) -> Dataset:
    """One monochrome image instance of a series: its identity tags, new SOP instance UID, file meta."""
    sop_uid = generate_uid()
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, sop_uid)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.Modality = modality
    ds.PatientID = ds.PatientName = patient
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.InstanceNumber = number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


def write_ct_series(folder: Path, patient: str, study_uid: str, stored: np.ndarray,
                    z_positions, *, intercept: float = -1024.0) -> dict:
    """One CT slice file per z position (file names not in position order, as in TCIA downloads);
    returns the HU volume in ascending z order and the series UID."""
    folder.mkdir(parents=True)
    series_uid = generate_uid()
    n = len(z_positions)
    names = list(range(n))[::-1]  # file 000 holds the highest slice
    for k, z in enumerate(z_positions):
        ds = _instance(CTImageStorage, "CT", patient, study_uid, series_uid, names[k] + 1)
        ds.ImagePositionPatient = [-8.4, -8.4, float(z)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 2.5
        ds.Rows, ds.Columns = stored.shape[1:]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = intercept, 1, "HU"
        ds.PixelData = stored[k].astype(np.int16).tobytes()
        ds.save_as(folder / f"{names[k] + 1:06d}.dcm", enforce_file_format=True)
    order = np.argsort(z_positions)
    return {"hu": stored[order].astype(np.float64) + intercept, "uid": series_uid, "folder": folder}


def write_dx_series(folder: Path, patient: str, study_uid: str, count: int, seed: int = 0) -> Path:
    """A DX radiograph series as in LIDC-IDRI (no slice position tags: not readable as a volume).
    It has more files than any CT series, so choosing by file count alone would pick it."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    series_uid = generate_uid()
    for k in range(count):
        ds = _instance(DX_STORAGE, "DX", patient, study_uid, series_uid, k + 1)
        ds.Rows, ds.Columns = 20, 30
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = rng.integers(0, 4000, (20, 30)).astype(np.uint16).tobytes()
        ds.save_as(folder / f"1-{k + 1:02d}.dcm", enforce_file_format=True)
    return folder


def ct_pixels(n: int, size: int = 24, seed: int = 0) -> np.ndarray:
    """Stored values of a CT-like volume: air outside a disc, tissue with structure inside (noise seeded by ``seed``)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (0.4 * size) ** 2
    out = []
    for k in range(n):
        img = np.where(disc, 1024 + 40 + 30 * k + rng.integers(-20, 20, (size, size)), 24)
        img[size // 2, size // 2 - 2 + k] = 1024 + 900  # a bone-like voxel, different per slice
        out.append(img)
    return np.stack(out).astype(np.int16)


# --------------------------------------------------------------------------------------------------
# BraTS: root/<case>/<case>_<modality>.nii[.gz]


def min_max(x: np.ndarray) -> np.ndarray:
    """``x`` mapped linearly onto [0, 1]."""
    return (x - x.min()) / (x.max() - x.min())


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
    """The published BraTS normalisation of ``data``, in numpy: drop empty slices, crop to the brain's
    box, clip to mean +- 6 std of the brain's voxels, min-max to [0, 1]."""
    vol = np.transpose(data.astype(np.float64), (2, 1, 0))  # (slices, rows = j, columns = i)
    nonzero = vol != 0
    vol = vol[nonzero.any(axis=(1, 2))]
    rows, cols = np.nonzero(nonzero.any(axis=(0, 2)))[0], np.nonzero(nonzero.any(axis=(0, 1)))[0]
    vol = vol[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    brain = data[data != 0].astype(np.float64)
    mean, std = brain.mean(), brain.std()
    return min_max(np.clip(vol, mean - 6 * std, mean + 6 * std))
