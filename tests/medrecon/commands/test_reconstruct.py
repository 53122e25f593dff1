"""`medrecon reconstruct` end to end: the README's first command (the DICOM sample, DDS, the shipped
CT prior), NIfTI and DICOM in and out with their geometry, records and figures, multi-coil MR,
simulation folders, volume priors, and the refusals.

Untrained tiny priors stand in where the prior's quality is not the point: ``cli_priors`` (256x256,
tests/conftest.py) and, for MR, a 64x64 study and prior (this folder's conftest.py).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image

from medrecon.commands import main
from tests.support import CT_DICOM, CT_SAMPLE


def test_the_readmes_first_command_reconstructs_the_dicom_sample_with_dds_and_the_shipped_prior(tmp_path, capsys):
    # `medrecon reconstruct data/ct-lung1-sample-dicom -o lung1-dds`: the default sampler and prior,
    # on 2 slices at 2 steps (the smallest run that takes a DDS step between two noise levels)
    out = tmp_path / "lung1-dds"
    assert main(["reconstruct", str(CT_DICOM), "-o", str(out), "--slices", "0:2", "--steps", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    record = json.loads((tmp_path / "lung1-dds.json").read_text())
    assert record["prior"]["name"] == "ct-starter" and record["prior"]["sha256"]
    assert record["reconstruction"]["settings"]["sampler"] == "dds" and record["reconstruction"]["nfe_per_slice_and_sample"] == 2
    assert record["input"]["format"] == "dicom" and record["output"]["format"] == "dicom"
    # a reconstruction, not noise: 29.3 dB measured at 2 steps (the tuned TV baseline: 32.5 dB)
    assert record["metrics"]["reconstruction"]["psnr"] > 25
    assert (tmp_path / "lung1-dds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a new series with the source slices' geometry
    written = sorted(out.glob("*.dcm"))
    source = sorted(CT_DICOM.glob("*.dcm"), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    assert len(written) == 2
    got = sorted((pydicom.dcmread(p) for p in written), key=lambda d: float(d.ImagePositionPatient[2]))
    ref = [pydicom.dcmread(p) for p in source[:2]]
    for g, r in zip(got, ref):
        np.testing.assert_allclose([float(v) for v in g.ImagePositionPatient], [float(v) for v in r.ImagePositionPatient], atol=1e-3)
        np.testing.assert_allclose([float(v) for v in g.PixelSpacing], [float(v) for v in r.PixelSpacing])
        assert g.SeriesInstanceUID != r.SeriesInstanceUID


def run(*argv) -> int:
    return main(["reconstruct", *map(str, argv), "--quiet"])


def test_nifti_in_nifti_out_with_geometry_record_and_figure(tmp_path, cli_priors, capsys):
    out = tmp_path / "recon.nii.gz"
    code = run(CT_SAMPLE, "-o", out, "--modality", "ct", "--slices", "2:4", "--steps", "2", "--prior", cli_priors["CT"])
    assert code == 0, capsys.readouterr().err
    source, result = nib.load(CT_SAMPLE), nib.load(out)
    assert result.shape[:2] == source.shape[:2] and result.shape[2] == 2
    expected = source.affine.copy()
    expected[:3, 3] += 2 * source.affine[:3, 2]  # the first written slice is the source's slice 2
    np.testing.assert_allclose(result.affine, expected, atol=1e-4)
    record = json.loads((tmp_path / "recon.json").read_text())
    assert record["reconstruction"]["settings"]["sampler"] == "dds" and record["reconstruction"]["nfe_per_slice_and_sample"] == 2
    assert set(record["metrics"]) == {"reconstruction", "baseline"} and record["prior"]["sha256"]
    assert (tmp_path / "recon.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the figure's window (the lung sample has no DICOM window: chosen from its HU histogram) and zoom
    figure = record["figure"]
    assert (figure["window"]["level"], figure["window"]["width"]) == (-600, 1500)
    assert figure["window"]["chosen_by"].startswith("lung, chosen from the HU histogram")
    assert figure["slices"] == [0, 1] and figure["zoom"]["slice"] in (0, 1) and figure["zoom"]["size"] == [96, 96]
    assert figure["error_and_std"].startswith("|error| x4 in the prior's units: white = 750 HU")


def test_multicoil_mr_study_runs_with_the_phase_adapter(tmp_path, small_mr_study, mr_prior_64):
    out = tmp_path / "mr.nii.gz"
    assert run(small_mr_study, "-o", out, "--modality", "mr", "--slices", "1:2", "--steps", "2", "--accel", "4",
               "--prior", mr_prior_64, "--samples", "2") == 0
    record = json.loads((tmp_path / "mr.json").read_text())
    assert record["reconstruction"]["samples"] == 2 and record["acquisition"]["kind"] == "mr"
    assert nib.load(out).shape[2] == 1


def test_bad_inputs_give_one_line_errors_and_leave_nothing(tmp_path, cli_priors, capsys):
    out = tmp_path / "r.nii.gz"
    assert run(tmp_path / "missing.nii.gz", "-o", out, "--modality", "ct") == 2
    assert "no such input" in capsys.readouterr().err
    # a CT study with an MR prior
    assert run(CT_SAMPLE, "-o", out, "--modality", "ct", "--slices", "0:1", "--prior", cli_priors["MR"]) == 2
    assert "MR prior" in capsys.readouterr().err
    # DICOM says CT, the flag says MR
    assert run(CT_DICOM, "-o", tmp_path / "d", "--modality", "mr") == 2
    assert "contradicts" in capsys.readouterr().err
    assert run(CT_SAMPLE, "-o", out, "--slices", "0:1") == 2  # NIfTI without --modality
    assert list(tmp_path.iterdir()) == []
    # an existing output is not replaced without --overwrite, and nothing else is written
    out.write_bytes(b"keep me")
    assert run(CT_SAMPLE, "-o", out, "--modality", "ct", "--slices", "0:1", "--steps", "1", "--prior", cli_priors["CT"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["r.nii.gz"]
    # a missing prior is a missing resource (exit 3)
    assert run(CT_SAMPLE, "-o", tmp_path / "x.nii.gz", "--modality", "ct", "--slices", "0:1", "--prior", "no-such-prior") == 3


def test_a_simulation_folder_reconstructs_with_its_recorded_geometry(tmp_path, small_mr_study, mr_prior_64):
    sim = tmp_path / "sim"
    assert main(["simulate", str(small_mr_study), "--modality", "mr", "--slices", "0:1", "--coils", "4", "-o", str(sim)]) == 0
    out = tmp_path / "r.nii.gz"
    assert run(sim, "-o", out, "--steps", "1", "--prior", mr_prior_64) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["input"]["kind"] == "simulation" and "reconstruction" in record["metrics"]
    source = nib.load(small_mr_study)
    np.testing.assert_allclose(nib.load(out).affine[:3, :3], source.affine[:3, :3], atol=1e-5)


# ------------------------------------------------------------------------------ volume priors
def test_cli_volume_prior_runs_dds3d_records_it_and_draws_reslices(tmp_path, cli_priors):
    common = ("--modality", "ct", "--slices", "2:4", "--steps", "1", "--prior", cli_priors["CT"], "--views", "8")
    assert run(CT_SAMPLE, "-o", tmp_path / "flat.nii.gz", *common) == 0
    assert run(CT_SAMPLE, "-o", tmp_path / "tvz.nii.gz", *common, "--volume-prior", "tv-z",
               "--option", "tv_lam_rel=0.001", "--option", "tv_rho_rel=0.1") == 0
    record = json.loads((tmp_path / "tvz.json").read_text())
    options = record["reconstruction"]["settings"]["options"]
    assert options["volume_prior"] == "tv-z" and options["tv_lam_rel"] == 0.001 and options["tv_rho_rel"] == 0.1
    flat, tvz = (Image.open(tmp_path / f"{n}.png") for n in ("flat", "tvz"))
    assert tvz.size[0] == flat.size[0] and tvz.size[1] > flat.size[1]  # the coronal and sagittal rows


def test_cli_volume_prior_needs_dds_and_two_slices(tmp_path, cli_priors, capsys):
    assert run(CT_SAMPLE, "-o", tmp_path / "a.nii.gz", "--modality", "ct", "--slices", "2:4", "--prior", cli_priors["CT"],
               "--sampler", "dps", "--volume-prior", "tv-z") == 2
    assert "needs a sampler that takes one (dds, diffusion_mbir), not dps" in capsys.readouterr().err
    assert run(CT_SAMPLE, "-o", tmp_path / "b.nii.gz", "--modality", "ct", "--slices", "2:3", "--steps", "1",
               "--prior", cli_priors["CT"], "--volume-prior", "tv-z") == 2
    assert "at least 2 slices" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
