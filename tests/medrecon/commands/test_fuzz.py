"""The command line against a seeded corpus of malformed studies, raw data and flags
(:mod:`tests.support_fuzz`): every case ends in exit 0 with a correct result, or in exit 2 or 3
with one line naming the file (or flag) and nothing written or changed; never exit 1, never a
traceback. The readers are what is exercised: ``simulate`` of 32x32 crops with a few views, or
``reconstruct --steps 1`` of one slice with 32x32 untrained priors."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from medrecon.commands import main
from tests import support
from tests.support_fuzz import CASES, SIDE, build_bases, case_rng


@pytest.fixture(scope="session")
def fuzz_bases(tmp_path_factory):
    return build_bases(tmp_path_factory.mktemp("fuzz-bases"))


@pytest.fixture(scope="session")
def fuzz_priors(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-priors")
    return {m: support.saved_unet_prior(root / f"tiny-{m.lower()}-{SIDE}", m, size=SIDE) for m in ("CT", "MR")}


def snapshot(folder: Path) -> dict:
    """Every file and folder under ``folder`` (hidden ones too) with its content's digest."""
    out = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        out[key] = "folder" if path.is_dir() else hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def check_result(case, out: Path) -> None:
    """What a run that succeeded must have written: finite measurements or a finite volume, and a
    record stating any repair."""
    if case.command == "simulate":
        record = json.loads((out / "acquisition.json").read_text())
        if (out / "sinogram.h5").exists():
            with h5py.File(out / "sinogram.h5") as f:
                sinogram = f["sinogram"][()]
            assert sinogram.ndim == 3 and np.isfinite(sinogram).all()
        elif (out / "kspace.h5").exists():
            from medrecon.io.kspace import read_fastmri_h5

            assert read_fastmri_h5(out / "kspace.h5").kspace.isfinite().all()
        else:
            from medrecon.io.noncartesian import read_noncartesian_h5

            assert read_noncartesian_h5(out / "kspace_noncartesian.h5").kspace.isfinite().all()
        study = record["study"]
    else:
        record = json.loads(out.with_name(out.name.removesuffix(".gz").removesuffix(".nii").removesuffix(".h5") + ".json")
                            .read_text())
        if out.name.endswith(".h5"):
            with h5py.File(out) as f:
                assert np.isfinite(f["reconstruction"][()]).all()
        else:
            from medrecon.io.studies import load_study

            assert load_study(out).voxels.isfinite().all()
        study = {"validation": record["input"].get("validation")}
    if any(word in case.id for word in ("one-nan", "isolated-nan", "one-minus-inf", "nan-corner")):
        repairs = (study.get("validation") or {}).get("repairs")
        assert repairs and repairs[0]["voxels"], f"{case.id}: the repair is not in the record"
    if case.id.endswith("one-slice-missing"):
        assert "uneven slice spacing" in study["validation"]["notes"][0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fuzz_case(case, fuzz_bases, fuzz_priors, tmp_path, capsys):
    base = fuzz_bases[case.base]
    work = tmp_path / "case"
    work.mkdir()
    copy = work / base.name
    (shutil.copytree if base.is_dir() else shutil.copy)(base, copy)
    given = case.mutate(copy, case_rng(case)) if case.mutate else None
    source = Path(given) if isinstance(given, (str, Path)) else copy
    out = work / case.out.replace("{input}", str(source.relative_to(work)))
    flags = [f.replace("{prior_ct}", str(fuzz_priors["CT"])).replace("{prior_mr}", str(fuzz_priors["MR"])) for f in case.flags]
    argv = [case.command, str(source), "-o", str(out), *flags]
    before = snapshot(work)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uneven spacing, repairs: the record states them (check_result)
        code = main(argv)
    err = capsys.readouterr().err
    command_line = "medrecon " + " ".join(argv)
    assert code in (0, 2, 3), f"{case.id}: exit {code} for {command_line}\n{err[-4000:]}"
    assert "Traceback" not in err, f"{case.id}: {err[-4000:]}"
    if code == 0:
        assert case.expect in ("accept", "either"), f"{case.id}: accepted, but it must be refused: {command_line}"
        check_result(case, out)
        changed = {k: v for k, v in snapshot(work).items() if before.get(k) not in (None, v)}
        assert not changed, f"{case.id}: the run changed {sorted(changed)}"
        return
    assert case.expect != "accept", f"{case.id}: refused, but it must be accepted: {err}"
    assert err.endswith("\n") and err.count("\n") == 1, f"{case.id}: not one line:\n{err}"
    assert err.startswith(f"medrecon {case.command}: error: "), f"{case.id}: {err}"
    for mention in case.mentions:
        expected = mention.replace("{input}", source.name)
        assert expected in err, f"{case.id}: the message does not name {expected!r}: {err}"
    assert snapshot(work) == before, f"{case.id}: a refusal wrote or changed files: {command_line}"


def test_the_corpus_covers_every_family_and_issue_case():
    """The families of the issue, each with cases to refuse and to accept; ids are unique."""
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    families = {i.split("/")[0] for i in ids}
    assert families == {"dicom", "nifti", "nrrd", "fastmri", "noncartesian", "simulation", "flags"}
    for family in families:
        expects = {c.expect for c in CASES if c.id.startswith(family + "/")}
        assert "refuse" in expects and "accept" in expects, family
    issue = ["nifti/gz-truncated-third", "nifti/vox_offset-1000000000.0", "nifti/dim1-30000", "nifti/dim1-0",
             "nifti/dim0--1", "nifti/datatype-128", "dicom/NumberOfFrames-0-abc-one", "dicom/TransferSyntaxUID-0-1.2.3.4",
             "dicom/PixelSpacing-5-1e6\\1e6-all", "nifti/pixdim1-1000000.0", "nrrd/sizes-a b c",
             "nrrd/space-origin-non-numeric", "nrrd/space-directions-non-numeric", "nrrd/space-directions-two-vectors",
             "nrrd/space-directions-none", "nrrd/space-directions-two-components", "nrrd/two-d", "nrrd/gzip-truncated",
             "nrrd/gzip-corrupt", "nrrd/gzip-label-raw-data", "fastmri/zero-coils", "fastmri/all-nan",
             "noncartesian/pixel_mm-text", "noncartesian/pixel_mm-list", "noncartesian/image_shape-huge",
             "flags/device-bogus", "flags/device-cuda", "flags/option-gamma_rel=abc",
             "flags/views-100000", "flags/out-is-input-dicom", "flags/out-is-input-nifti", "nifti/ct-all-nan",
             "nifti/ct-all-inf", "nifti/ct-one-nan", "dicom/SliceThickness-3-1e6-all", "dicom/slice-far-along-normal",
             "dicom/RescaleIntercept-1-1e9-all", "dicom/RescaleSlope-1-0-all", "dicom/RescaleSlope-2-1e9-all",
             "nifti/pixdim1-0.0", "nifti/scl_slope-inf", "nifti/gz-bad-crc", "nrrd/endian-middle",
             "dicom/truncate-400-file2", "dicom/flip-header-0"]
    missing = [i for i in issue if i not in ids]
    assert not missing, missing
