"""Non-Cartesian MRI through the command line: simulate -> file -> reconstruct, for medrecon's own
HDF5 layout and ISMRMRD, radial and spiral, and the refusals (on a 64x64 copy of two MR slices:
``small_mr_study`` and ``mr_prior_64_64`` of this folder's conftest)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

from medrecon.commands import main
from medrecon.io.mrd import write_ismrmrd
from medrecon.io.noncartesian import read_noncartesian_h5, write_noncartesian_h5
from medrecon.simulation import NONCARTESIAN_FILE

SIZE = 64


def _simulate(tmp_path, study, *flags) -> Path:
    out = tmp_path / "sim"
    assert main(["simulate", str(study), "--modality", "mr", "--coils", "4", "-o", str(out), *flags]) == 0
    return out


def _reconstruct(inp, out, prior, *flags) -> int:
    return main(["reconstruct", str(inp), "-o", str(out), "--steps", "2", "--prior", str(prior), "--quiet", *flags])


def test_radial_round_trip_simulate_file_reconstruct(tmp_path, mr_prior_64, small_mr_study, capsys):
    sim = _simulate(tmp_path, small_mr_study, "--trajectory", "radial", "--spokes", "24")
    assert "24 golden-angle spokes" in capsys.readouterr().out
    record = json.loads((sim / "acquisition.json").read_text())
    assert record["acquisition"]["sampling"] == {"kind": "radial", "spokes": 24, "angles": "golden"}
    # 1. the simulation folder: the acquisition's own coil maps
    out = tmp_path / "from-folder.nii.gz"
    assert _reconstruct(sim, out, mr_prior_64) == 0
    result = json.loads((tmp_path / "from-folder.json").read_text())
    assert result["acquisition"]["sampling"]["kind"] == "radial"
    assert "reconstruction" in result["metrics"]
    assert "L1-wavelet" in result["baseline"]["method"] and "radial48" in result["baseline"]["method"]
    assert nib.load(out).shape == (SIZE, SIZE, 2)
    np.testing.assert_allclose(nib.load(out).affine, nib.load(small_mr_study).affine, atol=1e-5)
    # 2. the raw file on its own, without coil maps: estimated from the k-space centre
    data = read_noncartesian_h5(sim / NONCARTESIAN_FILE)
    bare = tmp_path / "bare.h5"
    write_noncartesian_h5(bare, dataclasses.replace(data, coil_maps=None))
    assert _reconstruct(bare, tmp_path / "from-raw.nii.gz", mr_prior_64) == 0
    raw = json.loads((tmp_path / "from-raw.json").read_text())
    assert raw["acquisition"]["layout"] == "medrecon" and "estimated" in raw["acquisition"]["coil_maps"]
    # 3. the same k-space as ISMRMRD
    mrd = tmp_path / "scan.mrd"
    write_ismrmrd(mrd, data)
    assert _reconstruct(mrd, tmp_path / "from-mrd.nii.gz", mr_prior_64, "--slices", "0:1") == 0
    assert nib.load(tmp_path / "from-mrd.nii.gz").shape[2] == 1


def test_spiral_simulation_reconstructs(tmp_path, mr_prior_64, small_mr_study):
    sim = _simulate(tmp_path, small_mr_study, "--trajectory", "spiral", "--interleaves", "8", "--undersampling", "2", "--slices", "0:1")
    assert _reconstruct(sim, tmp_path / "s.nii.gz", mr_prior_64, "--sampler", "score_sde") == 0


def test_bad_non_cartesian_input_is_refused_and_writes_nothing(tmp_path, mr_prior_64, small_mr_study, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["simulate", str(small_mr_study), "--modality", "mr", "--trajectory", "radial", "--spokes", "0",
                 "-o", str(out_dir / "sim")]) == 2
    assert "--spokes: expected a positive integer" in capsys.readouterr().err
    broken = tmp_path / "broken.mrd"
    with h5py.File(broken, "w") as f:
        f.create_group("dataset").create_dataset("xml", data=b"<not ismrmrd")
    assert _reconstruct(broken, out_dir / "r.nii.gz", mr_prior_64) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert list(out_dir.iterdir()) == []
