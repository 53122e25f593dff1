"""A small, seeded corpus of malformed studies, raw data and flags made from the sample data, for
the command-line fuzz tests (tests/medrecon/commands/test_fuzz.py; docs/studies.md, "What is
validated").

:func:`build_bases` writes the well-formed inputs once: a 4-slice 32x32 crop of the CT sample as a
DICOM series (its real headers, positions moved with the crop), as NIfTI and as NRRD, a 32x32 crop
of the MR sample as NIfTI, fastMRI multi-coil k-space and medrecon's non-Cartesian k-space of it,
and a ``medrecon simulate`` folder. :data:`CASES` lists what is done to them, family by family:
tag deletion and garbage values for each geometry/pixel tag, truncation at several offsets, byte
flips (seeded), mixed, duplicated and displaced slices; NIfTI header fields, gzip damage, voxels
that are NaN, inf or absurd; NRRD fields and payloads; HDF5 datasets missing, mis-shaped or
non-finite; acquisition records and trajectories out of range; absurd command-line values and
output paths. Every case names the command, the base it starts from, its mutation, its flags,
what it must end in (``refuse``: exit 2 or 3; ``accept``: exit 0; ``either``) and what its one
error line must name. Test modules never import each other: the corpus lives here.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from tests import support

SIDE = 32  # the crops' matrix: the readers and checks are exercised, not the samplers
CROP = slice(112, 112 + SIDE)  # rows and columns of the 256x256 samples (lung and brain tissue)
N_DICOM = 4  # slices of the DICOM base


# ------------------------------------------------------------------------------------------ bases
def build_bases(root: Path) -> dict[str, Path]:
    """The well-formed inputs every case starts from (module docstring), written under ``root``."""
    import nibabel as nib

    from medrecon.commands import main

    root.mkdir(parents=True, exist_ok=True)
    bases = {"ct_dicom": _dicom_base(root / "ct-dicom")}
    ct = nib.load(support.CT_SAMPLE).slicer[CROP, CROP, 0:4]
    nib.save(nib.Nifti1Image(np.asarray(ct.dataobj), ct.affine, ct.header), root / "ct.nii.gz")
    bases["ct_nifti"] = root / "ct.nii.gz"
    mr = nib.load(support.MR_SAMPLE).slicer[CROP, CROP, 2:6]
    mr_data = np.asarray(mr.dataobj, dtype=np.float32)
    nib.save(nib.Nifti1Image(mr_data, mr.affine, mr.header), root / "mr.nii.gz")
    bases["mr_nifti"] = root / "mr.nii.gz"
    bases["ct_nrrd"] = root / "ct.nrrd"
    bases["ct_nrrd"].write_bytes(render_nrrd(NRRD_FIELDS, _nrrd_payload(np.asarray(ct.dataobj, dtype="<i2")), "gzip"))
    bases["fastmri"] = _fastmri_base(root / "knee.h5", mr_data)
    sim = root / "sim-radial"
    assert main(["simulate", str(bases["mr_nifti"]), "-o", str(sim), "--modality", "MR", "--trajectory", "radial",
                 "--spokes", "16", "--coils", "2", "--slices", "0:2"]) == 0
    bases["noncartesian"] = root / "radial.h5"
    shutil.copy(sim / "kspace_noncartesian.h5", bases["noncartesian"])
    bases["sim_ct"] = root / "sim-ct"
    assert main(["simulate", str(bases["ct_nifti"]), "-o", str(bases["sim_ct"]), "--modality", "CT", "--views", "8",
                 "--slices", "0:2"]) == 0
    return bases


def _dicom_base(folder: Path) -> Path:
    """Slices 1-4 of the DICOM sample cropped to 32x32: every header tag kept, ImagePositionPatient
    moved to the crop's first pixel (the sample's orientation is the identity)."""
    import pydicom

    folder.mkdir()
    for k in range(N_DICOM):
        ds = pydicom.dcmread(support.CT_DICOM / f"slice_{k + 1:04d}.dcm")
        pixels = ds.pixel_array[CROP, CROP].astype(np.int16)
        row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x + CROP.start * col_mm, y + CROP.start * row_mm, z]
        ds.Rows, ds.Columns = SIDE, SIDE
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"slice_{k + 1:04d}.dcm", enforce_file_format=True)
    return folder


def _fastmri_base(path: Path, image: np.ndarray) -> Path:
    """Two slices of 4-coil k-space of the MR crop, every other column sampled plus the centre."""
    from medrecon.io.kspace import write_fastmri_h5
    from tests.support_files import coil_maps, np_fft2c, np_rss_target

    slices = np.transpose(image[:, :, :2], (2, 1, 0)) / image.max()
    maps = coil_maps(4, SIDE, SIDE)
    kspace = np_fft2c(slices[:, None] * maps[None]).astype(np.complex64)
    mask = np.zeros(SIDE, dtype=bool)
    mask[::2] = True
    mask[SIDE // 2 - 3 : SIDE // 2 + 3] = True
    target = np_rss_target(kspace, (SIDE, SIDE))
    write_fastmri_h5(path, kspace * mask, target=target, attrs={"acquisition": "fuzz"})
    return path


# ------------------------------------------------------------------------------------------- NRRD
NRRD_FIELDS = {
    "type": "short", "dimension": "3", "space": "left-posterior-superior", "sizes": f"{SIDE} {SIDE} 4",
    "space directions": "(1.140625,0,0) (0,1.140625,0) (0,0,20)", "kinds": "domain domain domain",
    "endian": "little", "encoding": "gzip", "space origin": "(-17.96,-197.0,-727.5)",
}  # fmt: skip


def _nrrd_payload(data: np.ndarray) -> bytes:
    return np.ascontiguousarray(data.transpose()).tobytes()  # fastest axis first


def render_nrrd(fields: dict, raw: bytes, encoding: str | None = None) -> bytes:
    """A NRRD file of ``fields`` (a value None leaves the field out) and the payload ``raw``, gzipped
    when ``encoding`` (default: the fields') is gzip."""
    header = "NRRD0004\n" + "".join(f"{k}: {v}\n" for k, v in fields.items() if v is not None) + "\n"
    encoding = encoding or fields.get("encoding") or "raw"
    return header.encode("latin-1") + (gzip.compress(raw) if encoding in ("gzip", "gz") else raw)


# ------------------------------------------------------------------------------------------ cases
@dataclass(frozen=True)
class Case:
    """One fuzz case: ``command`` on a copy of base ``base`` changed by ``mutate(path, rng)`` (which
    returns the input to give, default the copy), with ``flags``. ``expect``: ``refuse`` (exit 2 or
    3), ``accept`` (exit 0) or ``either``; ``mentions``: what the one error line must contain
    (``{input}``: the input's name). ``out``: the output, relative to the case folder (``.``: the
    folder itself, which holds the input; ``{input}``: the input)."""

    id: str
    command: str
    base: str
    mutate: Callable | None = None
    flags: tuple = ()
    expect: str = "either"
    mentions: tuple = ("{input}",)
    out: str = "out"


Mutation = Callable[[Path, random.Random], Path | None]


def _steps(*mutations: Mutation) -> Mutation:
    """The mutations one after the other; the input to give is the last one's that names one."""
    def mutate(path: Path, rng: random.Random):
        given = None
        for step in mutations:
            given = step(path, rng) or given
        return given
    return mutate


def _case(family: str, name: str, command: str, base: str, mutate: Mutation | None = None, flags=(), expect="refuse",
          mentions=("{input}",), out: str | None = None) -> Case:
    if out is None:
        out = {"fastmri": "out.h5"}.get(base, "out.nii.gz") if command == "reconstruct" else "out"
    return Case(f"{family}/{name}", command, base, mutate, tuple(flags), expect, tuple(mentions), out)


SIM_CT = ("--views", "4")
SIM_CT_NIFTI = ("--modality", "CT", "--views", "4")
SIM_MR = ("--modality", "MR", "--coils", "2")
RECON = ("--steps", "1", "--quiet", "--slices", "0:1")


# --- DICOM -----------------------------------------------------------------------------------
def _dicom_files(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def _edit_dicom(index: int | None, edit: Callable) -> Mutation:
    """Apply ``edit(ds)`` to file ``index`` of the series (all files when None)."""
    def mutate(folder: Path, rng: random.Random):
        import pydicom

        files = _dicom_files(folder)
        for file in files if index is None else [files[index]]:
            ds = pydicom.dcmread(file)
            edit(ds)
            ds.save_as(file)
    return mutate


def _raw(keyword: str, value: bytes | str) -> Callable:
    """Write ``value`` verbatim as the tag's bytes (pydicom would refuse to assign garbage)."""
    def edit(ds):
        from pydicom.datadict import dictionary_VR, tag_for_keyword
        from pydicom.dataelem import RawDataElement
        from pydicom.tag import Tag

        tag = Tag(tag_for_keyword(keyword))
        data = value.encode("latin-1") if isinstance(value, str) else value
        if len(data) % 2:
            data += b" " if isinstance(value, str) else b"\0"
        target = ds.file_meta if tag.group == 2 else ds
        target._dict[tag] = RawDataElement(tag, dictionary_VR(tag), len(data), data, 0, False, True)
    return edit


def _transfer_syntax(index: int, uid: str) -> Mutation:
    """Say another TransferSyntaxUID in the file meta, the data set's bytes unchanged (pydicom would
    re-encode them): the element's and the meta group's lengths follow."""
    def mutate(folder: Path, rng: random.Random):
        file = _dicom_files(folder)[index]
        data = bytearray(file.read_bytes())
        at = data.find(b"\x02\x00\x10\x00UI")  # (0002,0010) Transfer Syntax UID, explicit VR
        old_length = struct.unpack_from("<H", data, at + 6)[0]
        value = uid.encode() + (b"\0" if len(uid) % 2 else b"")
        data[at + 6 : at + 8 + old_length] = struct.pack("<H", len(value)) + value
        group = struct.unpack_from("<I", data, 140)[0]  # (0002,0000) File Meta Information Group Length
        struct.pack_into("<I", data, 140, group + len(value) - old_length)
        file.write_bytes(bytes(data))
    return mutate


def _delete(keyword: str) -> Callable:
    def edit(ds):
        if keyword in ds:
            delattr(ds, keyword)
    return edit


def _truncate_file(index: int, offset: Callable[[int, bytes], int]) -> Mutation:
    def mutate(folder: Path, rng: random.Random):
        file = _dicom_files(folder)[index]
        data = file.read_bytes()
        file.write_bytes(data[: offset(len(data), data)])
    return mutate


def _pixel_start(data: bytes) -> int:
    return data.rfind(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data


def _flip_bytes(index: int | None, count: int, region: str) -> Mutation:
    """Flip ``count`` random bytes of one file (index None: a random one) in its header or pixels."""
    def mutate(path: Path, rng: random.Random):
        files = _dicom_files(path) if path.is_dir() else [path]
        file = files[rng.randrange(len(files)) if index is None else index]
        data = bytearray(file.read_bytes())
        start, stop = (132, _pixel_start(bytes(data))) if region == "header" else (_pixel_start(bytes(data)) + 12, len(data))
        for _ in range(count):
            at = rng.randrange(start, stop)
            data[at] ^= 1 << rng.randrange(8)
        file.write_bytes(bytes(data))
    return mutate


def _copy_slice(index: int, change: Callable | None = None, name: str = "extra.dcm") -> Mutation:
    def mutate(folder: Path, rng: random.Random):
        import pydicom

        ds = pydicom.dcmread(_dicom_files(folder)[index])
        if change is not None:
            change(ds)
        ds.save_as(folder / name)
    return mutate


def _move(dx: float, dy: float, dz: float) -> Callable:
    def edit(ds):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x + dx, y + dy, z + dz]
    return edit


def _scale_positions(factor: float) -> Mutation:
    def mutate(folder: Path, rng: random.Random):
        import pydicom

        for file in _dicom_files(folder):
            ds = pydicom.dcmread(file)
            ds.ImagePositionPatient = [float(v) * factor for v in ds.ImagePositionPatient]
            ds.save_as(file)
    return mutate


def _new_uid(keyword: str) -> Callable:
    def edit(ds):
        from pydicom.uid import generate_uid

        setattr(ds, keyword, generate_uid())
    return edit


def _non_image(same_series: bool) -> Callable:
    def edit(ds):
        from pydicom.uid import generate_uid

        del ds.PixelData
        if not same_series:
            ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.Modality = "SR"
            ds.SeriesInstanceUID = generate_uid()
    return edit


def _remove_file(index: int) -> Mutation:
    def mutate(folder: Path, rng: random.Random):
        _dicom_files(folder)[index].unlink()
    return mutate


def _write_file(name: str, data: bytes) -> Mutation:
    def mutate(folder: Path, rng: random.Random):
        (folder / name).write_bytes(data)
    return mutate


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def _dicom_cases() -> list[Case]:
    cases = []
    add = cases.append

    def dicom(name, mutate, expect="refuse", mentions=("{input}",), flags=SIM_CT):
        add(_case("dicom", name, "simulate", "ct_dicom", mutate, flags, expect, mentions))

    # tag deletion, in one file and in all
    needed = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "PixelData", "Rows", "Columns",
              "Modality", "BitsAllocated", "SamplesPerPixel")
    harmless = ("SliceThickness", "RescaleSlope", "RescaleIntercept", "InstanceNumber", "SeriesDescription", "SOPClassUID")
    unsure = ("BitsStored", "HighBit", "PixelRepresentation", "PhotometricInterpretation", "SeriesInstanceUID",
              "SOPInstanceUID", "TransferSyntaxUID")  # an absent SeriesInstanceUID in every file is one series
    def delete_meta(ds):
        del ds.file_meta.TransferSyntaxUID

    for keyword in needed + harmless + unsure:
        for where, index in (("one", 2), ("all", None)):
            expect = "refuse" if keyword in needed else "accept" if keyword in harmless else "either"
            if keyword == "SeriesInstanceUID" and where == "one":
                expect = "refuse"  # two series then
            edit = delete_meta if keyword == "TransferSyntaxUID" else _delete(keyword)
            dicom(f"delete-{keyword}-{where}", _edit_dicom(index, edit), expect)
    # garbage values of the geometry and rescale tags, in one file and in all
    garbage = {
        "PixelSpacing": ["abc\\1", "nan\\nan", "inf\\1", "0\\0", "-1\\-1", "1e6\\1e6", "1e-9\\1e-9", "1.14", "1\\2\\3", ""],
        "ImagePositionPatient": ["abc\\0\\0", "nan\\0\\0", "inf\\0\\0", "0\\0", "1e308\\1e308\\1e308", "1\\2\\3\\4", ""],
        "ImageOrientationPatient": ["abc\\0\\0\\0\\1\\0", "0\\0\\0\\0\\0\\0", "1\\0\\0\\1\\0\\0", "nan\\0\\0\\0\\1\\0",
                                    "2\\0\\0\\0\\2\\0", "1\\0\\0"],
        "SliceThickness": ["abc", "0", "-5", "1e6", "nan", "inf"],
        "SpacingBetweenSlices": ["abc", "0", "1e6", "nan"],
        "RescaleSlope": ["abc", "0", "1e9", "nan", "inf", "1e-300"],
        "RescaleIntercept": ["abc", "1e9", "-1e9", "nan", "inf", "-40000"],
        "NumberOfFrames": ["abc", "0", "-1", "2", "1.5", "nan"],
    }
    for keyword, values in garbage.items():
        for k, value in enumerate(values):
            for where, index in (("one", 1), ("all", None)):
                # an empty value is an absent tag: refused where the tag is needed
                expect = "either" if value == "" and keyword not in ("PixelSpacing", "ImagePositionPatient") else "refuse"
                dicom(f"{keyword}-{k}-{value[:12]}-{where}", _edit_dicom(index, _raw(keyword, value)), expect)
    for keyword, value in (("RescaleSlope", "-1"), ("RescaleIntercept", "-1024"), ("NumberOfFrames", "1"),
                           ("SliceThickness", "2.5")):
        dicom(f"{keyword}-plausible-{value}", _edit_dicom(None, _raw(keyword, value)), "accept")
    for keyword, values in (("Rows", (0, 1, 16, 65535)), ("Columns", (0, 1, 16, 65535)), ("SamplesPerPixel", (0, 3)),
                            ("BitsAllocated", (0, 8, 12, 32)), ("PixelRepresentation", (0, 7))):
        for value in values:
            expect = "either" if keyword == "PixelRepresentation" else "refuse"
            dicom(f"{keyword}-{value}", _edit_dicom(1, _raw(keyword, _us(value))), expect)
    for k, uid in enumerate(("1.2.3.4", "abc", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2",
                             "1.2.840.10008.1.2.2")):
        dicom(f"TransferSyntaxUID-{k}-{uid}", _transfer_syntax(1, uid), "either" if k >= 4 else "refuse")
    for value in ("PT", "", "CT\\MR"):
        dicom(f"Modality-{value or 'empty'}", _edit_dicom(None, _raw("Modality", value)))
    # truncation of one file at several offsets: inside the preamble, the meta header, the data set, the pixels
    for name, offset in (("empty", lambda n, d: 0), ("10", lambda n, d: 10), ("128", lambda n, d: 128),
                         ("132", lambda n, d: 132), ("200", lambda n, d: 200), ("400", lambda n, d: 400),
                         ("800", lambda n, d: 800), ("before-pixels", lambda n, d: _pixel_start(d) - 2),
                         ("pixel-tag", lambda n, d: _pixel_start(d) + 6), ("mid-pixels", lambda n, d: _pixel_start(d) + 700),
                         ("last-byte", lambda n, d: n - 1)):
        for index in (0, 2):
            dicom(f"truncate-{name}-file{index}", _truncate_file(index, offset))
    # byte flips (seeded): in the headers (anything may happen, but never exit 1) and in the pixels
    for k in range(16):
        dicom(f"flip-header-{k}", _flip_bytes(None, 1 + k % 4, "header"), "either")
    for k in range(4):
        dicom(f"flip-pixels-{k}", _flip_bytes(None, 1 + k, "pixels"), "either")
    # series structure
    dicom("duplicate-slice", _copy_slice(1, None))
    dicom("duplicate-slice-new-uid", _copy_slice(1, _new_uid("SOPInstanceUID")))
    dicom("mixed-series", _copy_slice(1, lambda ds: (_new_uid("SeriesInstanceUID")(ds), _move(0, 0, 5)(ds))))
    dicom("mixed-modality", _copy_slice(1, lambda ds: (_raw("Modality", "MR")(ds), _move(0, 0, 5)(ds))))
    dicom("slice-far-along-normal", _edit_dicom(3, _move(0, 0, 1000)))
    dicom("slice-far-first", _edit_dicom(0, _move(0, 0, -5000)))
    dicom("slice-shifted-in-plane", _edit_dicom(1, _move(50, 0, 0)))
    dicom("slice-shifted-first", _edit_dicom(0, _move(0, 30, 0)))
    dicom("slice-other-orientation", _edit_dicom(2, _raw("ImageOrientationPatient", "0\\1\\0\\1\\0\\0")))
    dicom("slice-other-spacing", _edit_dicom(2, _raw("PixelSpacing", "0.7\\0.7")))
    def sixteen_rows(ds):
        _move(0, 0, 70)(ds)
        ds.Rows, ds.PixelData = 16, ds.PixelData[: 16 * SIDE * 2]

    dicom("slice-other-size", _copy_slice(1, sixteen_rows))
    dicom("positions-times-1e6", _scale_positions(1e6))
    dicom("positions-times-1e-6", _scale_positions(1e-6))
    dicom("one-slice-missing", _remove_file(1), "accept")  # twice the gap: read, warned, noted in the record
    dicom("non-image-object", _copy_slice(1, _non_image(False), "report.dcm"), "accept")
    dicom("image-object-without-pixels", _copy_slice(1, _non_image(True), "damaged.dcm"))
    dicom("text-file", _write_file("notes.txt", b"not a DICOM file\n"))
    dicom("empty-file", _write_file("empty.dcm", b""))
    dicom("random-bytes", _write_file("noise.dcm", random.Random(7).randbytes(3000)))
    dicom("hidden-file", _write_file(".DS_Store", b"\0\1\2junk"), "accept")
    dicom("pixel-data-short", _edit_dicom(1, lambda ds: setattr(ds, "PixelData", ds.PixelData[:-200])))
    dicom("pixel-data-long", _edit_dicom(1, lambda ds: setattr(ds, "PixelData", ds.PixelData + b"\0" * 64)), "either")
    dicom("pixels-minus-32768", _edit_dicom(1, lambda ds: setattr(ds, "PixelData",
                                                                  np.full((SIDE, SIDE), -32768, np.int16).tobytes())))
    def first_file(folder: Path, rng: random.Random) -> Path:
        return _dicom_files(folder)[0]

    dicom("single-file", first_file, "accept")
    dicom("single-file-thickness-1e6", _steps(_edit_dicom(0, _raw("SliceThickness", "1e6")), first_file))
    return cases


# --- NIfTI -----------------------------------------------------------------------------------
NIFTI1 = {  # field: (byte offset, struct format) in a NIfTI-1 header
    "sizeof_hdr": (0, "i"), "dim": (40, "8h"), "datatype": (70, "h"), "bitpix": (72, "h"), "pixdim": (76, "8f"),
    "vox_offset": (108, "f"), "scl_slope": (112, "f"), "scl_inter": (116, "f"), "qform_code": (252, "h"),
    "sform_code": (254, "h"), "quatern_b": (256, "f"), "srow_x": (280, "4f"), "magic": (344, "4s"),
}  # fmt: skip


def _nifti_bytes(path: Path) -> bytearray:
    raw = path.read_bytes()
    return bytearray(gzip.decompress(raw) if path.name.endswith(".gz") else raw)


def _header_field(field: str, index: int | None, value) -> Mutation:
    """Set a header field (one element ``index`` of an array field) in the file's bytes."""
    def mutate(path: Path, rng: random.Random):
        raw = _nifti_bytes(path)
        offset, fmt = NIFTI1[field]
        values = list(struct.unpack_from("<" + fmt, raw, offset))
        if index is None:
            values = [value] if len(values) == 1 else list(value)
        else:
            values[index] = value
        struct.pack_into("<" + fmt, raw, offset, *values)
        path.write_bytes(gzip.compress(bytes(raw)) if path.name.endswith(".gz") else bytes(raw))
    return mutate


def _voxels(change: Callable[[np.ndarray], np.ndarray], dtype=np.float32) -> Mutation:
    """Rewrite the file with ``change(voxels)`` as ``dtype`` (float32: room for NaN and inf)."""
    def mutate(path: Path, rng: random.Random):
        import nibabel as nib

        image = nib.load(path)
        data = change(np.asarray(image.dataobj).astype(np.float64)).astype(dtype)
        header = image.header.copy()
        header.set_data_dtype(dtype)
        with np.errstate(all="ignore"):
            nib.save(nib.Nifti1Image(data, image.affine, header), path)
    return mutate


def _set(points, value) -> Callable[[np.ndarray], np.ndarray]:
    def change(data):
        for p in points:
            data[p] = value
        return data
    return change


def _bytes(change: Callable[[bytes], bytes]) -> Mutation:
    def mutate(path: Path, rng: random.Random):
        path.write_bytes(change(path.read_bytes()))
    return mutate


def _flip_at(position: Callable[[int], int]) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        out = bytearray(data)
        out[position(len(out))] ^= 0xFF
        return bytes(out)
    return change


def _renamed(name: str, change: Callable[[bytes], bytes] | None = None) -> Mutation:
    def mutate(path: Path, rng: random.Random):
        target = path.with_name(name)
        data = path.read_bytes()
        target.write_bytes(change(data) if change else data)
        path.unlink()
        return target
    return mutate


def _nifti_cases() -> list[Case]:
    cases = []

    def nifti(name, mutate, expect="refuse", base="ct_nifti", flags=SIM_CT_NIFTI, mentions=("{input}",)):
        cases.append(_case("nifti", name, "simulate", base, mutate, flags, expect, mentions))

    for value in (0, -1, 1, 8, 2):
        nifti(f"dim0-{value}", _header_field("dim", 0, value), "either" if value == 2 else "refuse")
    for axis, values in ((1, (0, -5, 1, 30000)), (3, (0, 30000, 2))):
        for value in values:
            nifti(f"dim{axis}-{value}", _header_field("dim", axis, value), "accept" if (axis, value) == (3, 2) else "refuse")
    for code, expect in ((128, "refuse"), (2304, "refuse"), (0, "refuse"), (999, "refuse"), (1, "refuse"),
                         (16, "either"), (32, "refuse"), (2, "either"), (64, "either"), (1792, "refuse")):
        nifti(f"datatype-{code}", _header_field("datatype", None, code), expect)
    nifti("bitpix-garbage", _header_field("bitpix", None, 3), "accept")
    for value, expect in ((10.0, "refuse"), (1e9, "refuse"), (float("nan"), "refuse"), (-352.0, "refuse"),
                          (354.0, "either"), (352.0, "accept")):
        nifti(f"vox_offset-{value}", _header_field("vox_offset", None, value), expect)
    for axis in (1, 3):
        for value, expect in ((0.0, "refuse"), (-1.0, "either"), (float("nan"), "refuse"), (float("inf"), "refuse"),
                              (1e6, "refuse"), (1e-9, "refuse")):
            nifti(f"pixdim{axis}-{value}", _header_field("pixdim", axis, value), expect)
    # pixdim is the geometry when no sform says otherwise
    no_sform, with_qform = _header_field("sform_code", None, 0), _header_field("qform_code", None, 1)
    for value, expect in ((0.0, "refuse"), (1e6, "refuse"), (1e-6, "refuse"), (0.5, "accept")):
        nifti(f"qform-pixdim1-{value}", _steps(no_sform, _header_field("pixdim", 1, value)), expect)
    nifti("no-forms", _steps(no_sform, _header_field("qform_code", None, 0)), "accept")
    nifti("qform-only", _steps(no_sform, with_qform), "accept")
    nifti("qform-nan", _steps(no_sform, with_qform, _header_field("quatern_b", None, float("nan"))))
    nifti("qform-ignored-nan", _steps(no_sform, _header_field("quatern_b", None, float("nan"))),
          "accept")  # qform_code 0: the quaternion is not used
    for name, value in (("zero", (0.0, 0.0, 0.0, 0.0)), ("nan", (float("nan"), 0.0, 0.0, 0.0)),
                        ("huge", (1e30, 0.0, 0.0, 0.0)), ("origin-1e300", (-1.14, 0.0, 0.0, 1e30))):
        nifti(f"srow_x-{name}", _header_field("srow_x", None, value))
    for field, value, expect in (("scl_slope", float("inf"), "refuse"), ("scl_slope", float("-inf"), "refuse"),
                                 ("scl_slope", float("nan"), "accept"), ("scl_slope", 0.0, "accept"),
                                 ("scl_slope", 1e9, "refuse"), ("scl_slope", 1e38, "refuse"), ("scl_slope", 1e-9, "either"),
                                 ("scl_slope", -1.0, "accept")):
        nifti(f"{field}-{value}", _header_field(field, None, value), expect)
    for value in (float("inf"), 1e9, float("nan")):
        nifti(f"scl_inter-{value}-slope1", _steps(_header_field("scl_slope", None, 1.0),
                                                  _header_field("scl_inter", None, value)))
    nifti("sizeof_hdr-0", _header_field("sizeof_hdr", None, 0))
    nifti("magic-ni1", _header_field("magic", None, b"ni1\0"))
    nifti("magic-garbage", _header_field("magic", None, b"xyz\0"))
    # voxels
    for base, flags in (("ct_nifti", SIM_CT_NIFTI), ("mr_nifti", SIM_MR)):
        m = "ct" if base == "ct_nifti" else "mr"
        nifti(f"{m}-all-nan", _voxels(lambda d: d * np.nan), base=base, flags=flags)
        nifti(f"{m}-all-inf", _voxels(lambda d: d + np.inf), base=base, flags=flags)
        nifti(f"{m}-one-nan", _voxels(_set([(10, 12, 1)], np.nan)), "accept", base, flags)
        nifti(f"{m}-one-minus-inf", _voxels(_set([(5, 20, 0)], -np.inf)), "accept", base, flags)
        nifti(f"{m}-three-isolated-nan", _voxels(_set([(3, 3, 0), (20, 9, 2), (7, 25, 3)], np.nan)), "accept", base, flags)
        nifti(f"{m}-twenty-nan", _voxels(_set([(1 + (7 * i) % 30, 1 + (11 * i) % 30, i % 4) for i in range(20)], np.nan)),
              base=base, flags=flags)
        nifti(f"{m}-nan-cluster", _voxels(_set([(10, 10, 1), (10, 11, 1), (11, 10, 1)], np.nan)), base=base, flags=flags)
        nifti(f"{m}-nan-corner", _voxels(_set([(0, 0, 0)], np.nan)), "accept", base, flags)
        nifti(f"{m}-constant-zero", _voxels(lambda d: d * 0), base=base, flags=flags)
        nifti(f"{m}-float64-3e38", _voxels(_set([(4, 4, 1)], 3e300), np.float64), base=base, flags=flags)
    nifti("ct-constant-air", _voxels(lambda d: d * 0 - 1024))
    nifti("ct-one-voxel-1e9", _voxels(_set([(4, 4, 1)], 1e9)))
    nifti("ct-one-voxel-minus-1e9", _voxels(_set([(4, 4, 1)], -1e9)))
    nifti("ct-padding-3024", _voxels(_set([(0, i, 0) for i in range(SIDE)], -3024)), "accept")
    nifti("ct-metal-30000", _voxels(_set([(9, 9, 2)], 30000)), "accept")
    nifti("ct-complex", _voxels(lambda d: d + 1j, np.complex64))
    nifti("mr-1e13", _voxels(_set([(4, 4, 1)], 1e13)), base="mr_nifti", flags=SIM_MR)
    nifti("mr-negative", _voxels(lambda d: d - d.mean()), "accept", "mr_nifti", SIM_MR)
    nifti("mr-complex", _voxels(lambda d: d * (1 + 1j), np.complex64), "accept", "mr_nifti", SIM_MR)
    # the file: truncation, gzip damage, names that lie
    for name, cut in (("10", lambda n: 10), ("100", lambda n: 100), ("third", lambda n: n // 3), ("crc-cut", lambda n: n - 8),
                      ("last-byte", lambda n: n - 1)):
        nifti(f"gz-truncated-{name}", _bytes(lambda d, c=cut: d[: c(len(d))]))
    nifti("gz-bad-crc", _bytes(_flip_at(lambda n: n - 6)))
    nifti("gz-bad-length", _bytes(_flip_at(lambda n: n - 2)))
    nifti("gz-corrupt-middle", _bytes(_flip_at(lambda n: n // 2)))
    nifti("gz-trailing-garbage", _bytes(lambda d: d + b"garbage!"))
    nifti("gz-empty", _bytes(lambda d: b""))
    nifti("gz-random", _bytes(lambda d: random.Random(3).randbytes(len(d))))
    nifti("plain-named-gz", _bytes(lambda d: gzip.decompress(d)))
    nifti("gz-named-nii", _renamed("ct.nii"))
    for name, cut in (("100", lambda n: 100), ("348", lambda n: 348), ("header+100", lambda n: 452), ("last-byte", lambda n: n - 1)):
        nifti(f"nii-truncated-{name}", _renamed("ct.nii", lambda d, c=cut: gzip.decompress(d)[: c(len(gzip.decompress(d)))]))
    nifti("nii-plain", _renamed("ct.nii", gzip.decompress), "accept")
    # shapes: 2-D, 4-D, 5-D
    nifti("two-d", _voxels(lambda d: d[:, :, 1]), "accept")
    nifti("four-d", _voxels(lambda d: np.stack([d, d], -1)))
    nifti("five-d", _voxels(lambda d: d[..., None, None]))
    nifti("one-row", _voxels(lambda d: d[:, :1, :]))
    # the sidecar medrecon reads the modality from
    nifti("sidecar-garbage", lambda p, r: p.with_name("ct.json").write_text("{not json"), "accept")
    nifti("sidecar-contradicts", lambda p, r: p.with_name("ct.json").write_text('{"Modality": "MR"}'))
    nifti("no-modality", None, flags=SIM_CT, mentions=("{input}", "--modality"))
    return cases


# --- NRRD ------------------------------------------------------------------------------------
def _nrrd(changes: dict | None = None, payload: Callable[[bytes], bytes] | None = None, encoding: str | None = None,
          data: Callable[[np.ndarray], np.ndarray] | None = None, raw_header: Callable[[bytes], bytes] | None = None) -> Mutation:
    """Rewrite the NRRD base with header ``changes`` (None removes a field), its raw data changed by
    ``data`` (an array, whose dtype sets the type) and its (encoded) bytes by ``payload``."""
    def mutate(path: Path, rng: random.Random):
        import nibabel as nib

        fields = {**NRRD_FIELDS, **(changes or {})}
        array = np.asarray(nib.load(support.CT_SAMPLE).slicer[CROP, CROP, 0:4].dataobj, dtype="<i2")
        if data is not None:
            array = data(array)
        raw = _nrrd_payload(array)
        out = render_nrrd(fields, raw, encoding or fields.get("encoding"))
        if payload is not None:
            header, _, body = out.partition(b"\n\n")
            out = header + b"\n\n" + payload(body)
        path.write_bytes(raw_header(out) if raw_header else out)
    return mutate


def _nrrd_cases() -> list[Case]:
    cases = []

    def nrrd(name, mutate, expect="refuse"):
        cases.append(_case("nrrd", name, "simulate", "ct_nrrd", mutate, SIM_CT_NIFTI, expect))

    for value in ("a b c", "32 32", "32 32 0", "32 32 -4", "32 32 4 2", "", "32 32 4.5", "32 32 100000"):
        nrrd(f"sizes-{value or 'empty'}", _nrrd({"sizes": value}))
    for value in ("3.5", "2", "abc", "4"):
        nrrd(f"dimension-{value}", _nrrd({"dimension": value}))
    nrrd("no-sizes", _nrrd({"sizes": None}))
    nrrd("no-type", _nrrd({"type": None}))
    nrrd("type-rgb", _nrrd({"type": "rgb"}))
    nrrd("type-float-on-short-data", _nrrd({"type": "float"}))
    nrrd("type-uchar", _nrrd({"type": "uchar"}), "either")
    nrrd("endian-middle", _nrrd({"endian": "middle"}))
    nrrd("endian-big-on-little-data", _nrrd({"endian": "big"}), "either")
    nrrd("endian-big", _nrrd({"endian": "big"}, data=lambda d: d.astype(">i2")), "accept")
    nrrd("no-endian", _nrrd({"endian": None}), "accept")
    nrrd("encoding-bzip2", _nrrd({"encoding": "bzip2"}, encoding="raw"))
    nrrd("encoding-ascii", _nrrd({"encoding": "ascii"}, encoding="raw"))
    nrrd("gzip-label-raw-data", _nrrd({"encoding": "gzip"}, encoding="raw"))
    nrrd("raw-label-gzip-data", _nrrd({"encoding": "raw"}, encoding="gzip"))
    nrrd("raw", _nrrd({"encoding": "raw"}), "accept")
    nrrd("raw-truncated", _nrrd({"encoding": "raw"}, payload=lambda b: b[: len(b) // 2]))
    nrrd("gzip-truncated", _nrrd(payload=lambda b: b[: len(b) // 2]))
    nrrd("gzip-corrupt", _nrrd(payload=_flip_at(lambda n: n // 2)))
    nrrd("gzip-bad-crc", _nrrd(payload=_flip_at(lambda n: n - 6)))
    nrrd("gzip-empty", _nrrd(payload=lambda b: b""))
    for name, value in (("two-vectors", "(1,0,0) (0,1,0)"), ("none", "none (0,1.14,0) (0,0,20)"),
                        ("non-numeric", "(a,0,0) (0,1,0) (0,0,1)"), ("two-components", "(1,0) (0,1) (0,0)"),
                        ("zero-vector", "(0,0,0) (0,1,0) (0,0,20)"), ("huge", "(1e6,0,0) (0,1e6,0) (0,0,20)"),
                        ("nan", "(nan,0,0) (0,1,0) (0,0,20)"), ("collinear", "(1,0,0) (1,0,0) (0,0,20)"),
                        ("words", "up down left"), ("empty", ""), ("tiny", "(1e-9,0,0) (0,1e-9,0) (0,0,20)")):
        nrrd(f"space-directions-{name}", _nrrd({"space directions": value}))
    nrrd("no-space-directions", _nrrd({"space directions": None}))
    nrrd("space-unknown", _nrrd({"space": "scanner-xyz"}))
    nrrd("no-space", _nrrd({"space": None}))
    nrrd("space-ras", _nrrd({"space": "right-anterior-superior"}), "accept")
    for name, value, expect in (("non-numeric", "(a,b,c)", "refuse"), ("two", "(1,2)", "refuse"), ("none", "none", "refuse"),
                                ("huge", "(1e300,0,0)", "refuse"), ("missing", None, "accept")):
        nrrd(f"space-origin-{name}", _nrrd({"space origin": value}), expect)
    nrrd("no-blank-line", _nrrd(raw_header=lambda b: b.replace(b"\n\n", b"\n", 1)))
    nrrd("no-magic", _nrrd(raw_header=lambda b: b[4:]))
    nrrd("detached", _nrrd({"data file": "other.raw"}))
    nrrd("byte-skip", _nrrd({"byte skip": "10"}))
    nrrd("two-d", _nrrd({"dimension": "2", "sizes": "32 32", "space directions": "(1,0,0) (0,1,0)"}, data=lambda d: d[:, :, 0]))
    nrrd("four-d", _nrrd({"dimension": "4", "sizes": "32 32 4 1", "space directions": "(1,0,0) (0,1,0) (0,0,20) none"}))
    nrrd("float-all-nan", _nrrd({"type": "float"}, data=lambda d: np.full(d.shape, np.nan, "<f4")))
    nrrd("float-one-nan", _nrrd({"type": "float"}, data=lambda d: _set([(3, 4, 1)], np.nan)(d.astype("<f4"))), "accept")
    nrrd("double-1e300", _nrrd({"type": "double"}, data=lambda d: _set([(3, 4, 1)], 1e300)(d.astype("<f8"))))
    nrrd("constant", _nrrd(data=lambda d: d * 0))
    return cases


# --- HDF5 raw data ---------------------------------------------------------------------------
def _h5(edit: Callable) -> Mutation:
    def mutate(path: Path, rng: random.Random):
        with h5py.File(path, "r+") as f:
            edit(f)
    return mutate


def _replace(name: str, value) -> Callable:
    def edit(f):
        del f[name]
        f.create_dataset(name, data=value)
    return edit


def _scaled(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable:
    def edit(f):
        value = change(f[name][()])
        del f[name]
        f.create_dataset(name, data=value)
    return edit


def _nan_at(index) -> Callable[[np.ndarray], np.ndarray]:
    def change(a):
        a = a.copy()
        a[index] = np.nan
        return a
    return change


def _delete_node(name: str) -> Callable:
    def edit(f):
        del f[name]
    return edit


def _group_instead(name: str) -> Callable:
    """Replace a dataset by an empty group of the same name."""
    def edit(f):
        del f[name]
        f.create_group(name)
    return edit


def _attr(name: str, value) -> Callable:
    def edit(f):
        if value is None:
            del f.attrs[name]
        else:
            f.attrs[name] = value
    return edit


def _json_attr(key: str, value) -> Callable:
    def edit(f):
        attrs = json.loads(f.attrs["attrs"])
        attrs[key] = value
        f.attrs["attrs"] = json.dumps(attrs)
    return edit


def _raw_cases() -> list[Case]:
    cases = []

    def fastmri(name, edit, expect="refuse"):
        cases.append(_case("fastmri", name, "reconstruct", "fastmri", _h5(edit) if edit else None,
                           RECON + ("--prior", "{prior_mr}"), expect))

    def noncart(name, edit, expect="refuse"):
        cases.append(_case("noncartesian", name, "reconstruct", "noncartesian", _h5(edit) if edit else None,
                           RECON + ("--prior", "{prior_mr}", "--grid", "input"), expect))

    fastmri("valid", None, "accept")
    fastmri("no-kspace", _delete_node("kspace"))
    fastmri("kspace-real", _scaled("kspace", lambda k: k.real.astype(np.float32)))
    fastmri("kspace-2d", _scaled("kspace", lambda k: k[0, 0]))
    fastmri("kspace-5d", _scaled("kspace", lambda k: k[None]))
    fastmri("zero-coils", _scaled("kspace", lambda k: k[:, :0]))
    fastmri("zero-slices", _scaled("kspace", lambda k: k[:0]))
    fastmri("one-column", _scaled("kspace", lambda k: k[..., :1]))
    fastmri("all-nan", _scaled("kspace", lambda k: k * np.nan))
    fastmri("one-nan", _scaled("kspace", _nan_at((0, 1, 5, 6))))
    fastmri("one-inf", _scaled("kspace", lambda k: np.where(np.arange(k.size).reshape(k.shape) == 7, np.inf, k)))
    fastmri("all-zero", _scaled("kspace", lambda k: k * 0))
    fastmri("fully-sampled", _scaled("kspace", lambda k: k + (k == 0) * (1 + 1j)))
    fastmri("single-coil", _scaled("kspace", lambda k: k[:, 0]))
    fastmri("no-header", _delete_node("ismrmrd_header"))
    fastmri("header-garbage", _replace("ismrmrd_header", np.bytes_(b"<not xml")))
    fastmri("header-not-int", _scaled("ismrmrd_header", lambda h: np.bytes_(bytes(h).replace(b"<x>32</x>", b"<x>abc</x>", 1))))
    fastmri("header-group", _group_instead("ismrmrd_header"))
    fastmri("target-nan", _scaled("reconstruction_rss", _nan_at((0, 3, 3))))
    fastmri("target-wrong-shape", _scaled("reconstruction_rss", lambda t: t[:1]))
    fastmri("target-group", _group_instead("reconstruction_rss"))
    fastmri("mask-garbage", lambda f: f.create_dataset("mask", data=np.full(SIDE, 2.0)))
    fastmri("mask-wrong-shape", lambda f: f.create_dataset("mask", data=np.ones(5)))
    fastmri("kspace-group", _group_instead("kspace"))

    noncart("valid", None, "accept")
    for name, value, expect in (("text", "abc", "refuse"), ("list", [1, 2], "refuse"), ("negative", -1, "refuse"),
                                ("zero", 0, "refuse"), ("huge", 1e9, "refuse"), ("nan", float("nan"), "refuse"),
                                ("bool", True, "refuse"), ("half", 0.5, "accept"), ("null", None, "refuse")):
        noncart(f"pixel_mm-{name}", _json_attr("pixel_mm", value), expect)
    for name, value in (("huge", [100000, 100000]), ("zero", [0, 32]), ("one", [32]), ("float", [32.5, 32.0]),
                        ("line", [1, 32])):
        noncart(f"image_shape-{name}", _attr("image_shape", np.asarray(value)))
    noncart("kspace-nan", _scaled("kspace", _nan_at((0, 0, 5))))
    noncart("kspace-all-zero", _scaled("kspace", lambda k: k * 0))
    noncart("kspace-zero-coils", _scaled("kspace", lambda k: k[:, :0]))
    noncart("trajectory-out-of-range", _scaled("trajectory", lambda t: t * 10))
    noncart("trajectory-nan", _scaled("trajectory", _nan_at((3, 0))))
    noncart("trajectory-wrong-length", _scaled("trajectory", lambda t: t[:-1]))
    noncart("no-trajectory", _delete_node("trajectory"))
    noncart("coil-maps-nan", _scaled("coil_maps", _nan_at((0, 0, 3, 3))))
    noncart("coil-maps-wrong-shape", _scaled("coil_maps", lambda m: m[:, :1]))
    noncart("density-negative", lambda f: f.create_dataset("density", data=-np.ones(f["kspace"].shape[-1], np.float32)))
    noncart("reference-nan", _scaled("reference", _nan_at((0, 2, 2))))
    noncart("format-wrong", _attr("format", "something-else"))
    noncart("version-2", _attr("version", 2))
    noncart("attrs-not-json", _attr("attrs", "{oops"))
    return cases


# --- simulation folders ----------------------------------------------------------------------
def _record(change: Callable[[dict], None]) -> Mutation:
    def mutate(folder: Path, rng: random.Random):
        path = folder / "acquisition.json"
        record = json.loads(path.read_text())
        change(record)
        path.write_text(json.dumps(record))
    return mutate


def _geometry(key: str, value) -> Callable[[dict], None]:
    def change(record):
        record["acquisition"]["geometry"][key] = value
    return change


def _affine_00(value: float) -> Callable[[dict], None]:
    """Set the study affine's first element (the column axis's x component) in the record."""
    def change(record):
        record["study"]["affine"][0][0] = value
    return change


def _simulation_cases() -> list[Case]:
    cases = []

    def sim(name, mutate, expect="refuse"):
        cases.append(_case("simulation", name, "reconstruct", "sim_ct", mutate, RECON + ("--prior", "{prior_ct}"), expect))

    sim("valid", None, "accept")
    sim("record-not-json", lambda folder, rng: (folder / "acquisition.json").write_text("{oops"))
    sim("record-list", lambda folder, rng: (folder / "acquisition.json").write_text("[1, 2]"))
    sim("no-acquisition", _record(lambda r: r.pop("acquisition")))
    sim("kind-unknown", _record(lambda r: r["acquisition"].update(kind="pet")))
    sim("angles-empty", _record(_geometry("angles", [])))
    sim("angles-100000", _record(_geometry("angles", [0.001 * i for i in range(100000)])))
    sim("detectors-zero", _record(_geometry("detector_count", 0)))
    sim("detectors-1e9", _record(_geometry("detector_count", 10**9)))
    sim("pixel-size-1e30", _record(_geometry("pixel_size", 1e30)))
    sim("pixel-size-text", _record(_geometry("pixel_size", "abc")))
    sim("image-shape-huge", _record(_geometry("image_shape", [100000, 100000])))
    sim("noise-photons-inf", _record(lambda r: r["acquisition"].update(noise="poisson", photons=float("inf"))))
    sim("mu-water-nan", _record(lambda r: r["acquisition"].update(mu_water_per_mm=float("nan"))))
    sim("study-affine-nan", _record(_affine_00(float("nan"))))
    sim("study-affine-huge", _record(_affine_00(1e6)))
    sim("study-shape-wrong", _record(lambda r: r["study"].update(shape=[9, 32, 32])))
    sim("no-study", _record(lambda r: r.pop("study")))
    sim("sinogram-missing", lambda folder, rng: (folder / "sinogram.h5").unlink())
    sim("sinogram-nan", lambda folder, rng: _h5(_scaled("sinogram", _nan_at((0, 1, 1))))(folder / "sinogram.h5", rng))
    sim("sinogram-wrong-shape", lambda folder, rng: _h5(_scaled("sinogram", lambda s: s[:, :3]))(folder / "sinogram.h5", rng))
    sim("sinogram-not-hdf5", lambda folder, rng: (folder / "sinogram.h5").write_bytes(b"not hdf5"))
    return cases


# --- flags and output paths ------------------------------------------------------------------
def _flag_cases() -> list[Case]:
    cases = []

    def flag(name, command, base, flags, expect="refuse", mentions=(), out=None, mutate=None):
        cases.append(_case("flags", name, command, base, mutate, flags, expect, mentions, out))

    for value, expect in (("0", "refuse"), ("-1", "refuse"), ("abc", "refuse"), ("1.5", "refuse"), ("100000", "refuse"),
                          ("10001", "refuse"), ("1", "accept"), ("", "refuse")):
        flag(f"views-{value or 'empty'}", "simulate", "ct_dicom", ("--views", value), expect, ("--views",))
    flag("fan-views-100000", "simulate", "ct_dicom", ("--geometry", "fan", "--views", "100000"), mentions=("--views",))
    flag("song-more-views-than-grid", "simulate", "ct_dicom", ("--convention", "song", "--views", "100"))
    for value, expect in (("nan", "refuse"), ("-1", "refuse"), ("inf", "refuse"), ("0", "refuse"), ("abc", "refuse"),
                          ("1e9", "accept")):
        flag(f"noise-rel-{value}", "simulate", "ct_dicom", SIM_CT + ("--noise", "gaussian", "--noise-rel", value), expect,
             ("noise",))
    for value, expect in (("0", "refuse"), ("nan", "refuse"), ("inf", "refuse"), ("-1", "refuse"), ("1e300", "refuse"),
                          ("1e12", "accept")):
        flag(f"photons-{value}", "simulate", "ct_dicom", SIM_CT + ("--noise", "poisson", "--photons", value), expect,
             ("photons",))
    for value, expect in (("5:2", "refuse"), ("0:100", "refuse"), ("abc", "refuse"), ("-1:2", "refuse"), ("3:3", "refuse"),
                          (":", "accept"), ("1:", "accept"), ("a:b:c", "refuse")):
        flag(f"slices-{value}", "simulate", "ct_dicom", SIM_CT + ("--slices", value), expect, ("--slices",))
    for value, expect in (("abc", "refuse"), ("-1", "accept"), ("1e30", "refuse")):
        flag(f"seed-{value}", "simulate", "ct_dicom", SIM_CT + ("--seed", value), expect, ("seed",) if expect == "refuse" else ())
    flag("modality-pet", "simulate", "ct_dicom", SIM_CT + ("--modality", "pet"), mentions=("--modality",))
    flag("modality-contradicts-dicom", "simulate", "ct_dicom", SIM_CT + ("--modality", "MR"), mentions=("--modality",))
    for value, expect in (("0", "refuse"), ("-1", "refuse"), ("nan", "refuse"), ("inf", "refuse"), ("1e9", "either"),
                          ("1", "either"), ("abc", "refuse")):
        flag(f"accel-{value}", "simulate", "mr_nifti", SIM_MR + ("--accel", value), expect)
    flag("mask-bogus", "simulate", "mr_nifti", SIM_MR + ("--mask", "bogus"), mentions=("bogus",))
    for value in ("2", "-0.1", "nan", "0", "inf"):
        flag(f"center-fraction-{value}", "simulate", "mr_nifti", SIM_MR + ("--center-fraction", value), mentions=("center",))
    for value, expect in (("0", "refuse"), ("100000", "refuse"), ("129", "refuse"), ("128", "accept")):
        flag(f"coils-{value}", "simulate", "mr_nifti", ("--modality", "MR", "--coils", value), expect, ("coils",))
    for value in ("-1", "nan", "inf"):
        flag(f"noise-sigma-{value}", "simulate", "mr_nifti", SIM_MR + ("--noise-sigma", value), mentions=("noise",))
    flag("spokes-1e8", "simulate", "mr_nifti", SIM_MR + ("--trajectory", "radial", "--spokes", "100000000"),
         mentions=("--spokes",))
    flag("spokes-8", "simulate", "mr_nifti", SIM_MR + ("--trajectory", "radial", "--spokes", "8"), "accept")
    flag("interleaves-100000", "simulate", "mr_nifti", SIM_MR + ("--trajectory", "spiral", "--interleaves", "100000"),
         mentions=("interleaves",))
    flag("spiral-default-on-32", "simulate", "mr_nifti", SIM_MR + ("--trajectory", "spiral"), "either")
    flag("spiral-4-interleaves", "simulate", "mr_nifti", SIM_MR + ("--trajectory", "spiral", "--interleaves", "2",
                                                                    "--undersampling", "1"), "either")
    for value in ("0", "nan", "-1", "1e9", "inf"):
        flag(f"undersampling-{value}", "simulate", "mr_nifti", SIM_MR + ("--trajectory", "spiral", "--undersampling", value),
             mentions=("undersampling",))
    flag("trajectory-bogus", "simulate", "mr_nifti", SIM_MR + ("--trajectory", "bogus"), mentions=("--trajectory",))
    # reconstruct's own flags (refused before any work)
    recon = RECON + ("--modality", "CT", "--prior", "{prior_ct}")
    import torch

    cuda = "either" if torch.cuda.is_available() else "refuse"  # exit 3 without CUDA
    for value, expect, code_mentions in (("bogus", "refuse", ("--device",)), ("", "refuse", ("--device",)),
                                         ("cuda:99", "refuse", ("--device",)), ("cuda", cuda, ("--device",)),
                                         ("mps", "refuse", ("--device",)),
                                         ("cpu", "accept", ())):  # the valid run of the flags' family
        flag(f"device-{value or 'empty'}", "reconstruct", "ct_nifti", recon + ("--device", value), expect, code_mentions)
    for option, mention in (("gamma_rel=abc", "gamma_rel"), ("no_such=1", "no_such"), ("=", "--option"),
                            ("cg_iters=1e9", "cg_iters"), ("gamma_rel", "--option")):
        flag(f"option-{option}", "reconstruct", "ct_nifti", recon + ("--option", option), mentions=(mention,))
    for name, extra in (("steps-0", ("--steps", "0")), ("samples-0", ("--samples", "0")), ("batch-size-0", ("--batch-size", "0")),
                        ("sampler-bogus", ("--sampler", "bogus")), ("grid-bogus", ("--grid", "bogus")),
                        ("volume-prior-dps", ("--sampler", "dps", "--volume-prior", "tv-z"))):
        flag(name, "reconstruct", "ct_nifti", recon + extra)
    flag("prior-missing", "reconstruct", "ct_nifti", RECON + ("--modality", "CT", "--prior", "/nonexistent/prior"),
         mentions=("/nonexistent/prior",))
    # output paths
    flag("out-is-input-nifti", "reconstruct", "ct_nifti", recon + ("--overwrite",), mentions=("input",), out="{input}")
    flag("out-is-input-dicom", "reconstruct", "ct_dicom", recon + ("--overwrite",), mentions=("input",), out="{input}")
    flag("out-inside-dicom", "reconstruct", "ct_dicom", recon + ("--overwrite",), mentions=("input",), out="{input}/recon")
    flag("out-contains-input", "reconstruct", "ct_nifti", recon + ("--overwrite",), mentions=("input",), out=".")
    flag("simulate-out-is-input", "simulate", "ct_dicom", SIM_CT + ("--overwrite",), mentions=("input",), out="{input}")
    flag("simulate-out-inside-input", "simulate", "ct_dicom", SIM_CT + ("--overwrite",), mentions=("input",),
         out="{input}/sim")
    flag("simulate-out-contains-input", "simulate", "ct_nifti", SIM_CT_NIFTI + ("--overwrite",), mentions=("input",),
         out=".")
    flag("out-folder-missing", "reconstruct", "ct_nifti", recon, mentions=("missing",), out="missing/recon.nii.gz")
    flag("out-suffix-png", "reconstruct", "ct_nifti", recon, mentions=("recon.png",), out="recon.png")
    flag("out-exists", "reconstruct", "ct_nifti", recon, mentions=("exist",), out="taken.nii.gz",
         mutate=lambda p, r: p.with_name("taken.nii.gz").write_bytes(b"keep me"))
    flag("simulate-out-is-file", "simulate", "ct_dicom", SIM_CT + ("--overwrite",), mentions=("taken",), out="taken",
         mutate=lambda p, r: p.with_name("taken").write_bytes(b"keep me"))
    return cases  # read-only, vanished and full output folders: tests/medrecon/commands/test_outputs_kept.py


# ---------------------------------------------------------------------------------- the corpus
CASES: list[Case] = _dicom_cases() + _nifti_cases() + _nrrd_cases() + _raw_cases() + _simulation_cases() + _flag_cases()
"""Every case, in a fixed order; the randomness (byte flips, random bytes) comes from a generator
seeded by the case's id (:func:`case_rng`)."""


def case_rng(case: Case) -> random.Random:
    return random.Random(zlib.crc32(case.id.encode()))


__all__ = ["CASES", "Case", "NRRD_FIELDS", "build_bases", "case_rng", "render_nrrd"]
