"""Converted NCSN++ priors run where the papers ran them: every pixel sampler, ``reconstruct``'s
normalisation check, ``reproduce lidc``.

The priors are the conversion fixtures' reduced published configurations (random weights: these
tests check that the pipeline runs them with the right units and schedule, not image quality).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from pydicom.uid import generate_uid

from medrecon.acquisition import AcquisitionOptions, acquisition_for_study
from medrecon.commands import main
from medrecon.errors import InputError
from medrecon.inputs import load_input, load_input_study
from medrecon.operators import CTProjector, ParallelBeamGeometry
from medrecon.priors.convert import convert_checkpoint, expected_source_shapes, read_flags
from medrecon.priors.convert.presets import PRESETS
from medrecon.priors.hub import load_prior
from medrecon.priors.normalisation import Normalisation
from medrecon.reconstruct import Problem, problem_from_acquisition, reconstruct
from medrecon.simulation import simulate
from tests import support
from tests.support import CT_DICOM, load_script
from tests.support_files import ct_pixels, write_ct_series

FIXTURES = support.FIXTURES / "conversion"


def rebuilt(case: str, folder: Path) -> Path:
    """The fixture checkpoint ``case`` in its native container."""
    script, nf = load_script("make_conversion_fixtures"), load_script("ncsnpp_fixtures")
    rec = json.loads((FIXTURES / f"{case}.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    if rec["container"] == "torch":
        path = folder / "checkpoint.pth"
        torch.save(script.materialise(rec["skeleton"], script.fill(rec["slots"], rec["seed"])), path)
    else:
        path = folder / "checkpoint_101"
        path.write_bytes(nf.msgpack_bytes(nf.flax_state(rec, script.fill(nf.flax_slots(rec["params"]), rec["seed"]))))
    return path


def song_lidc_checkpoint(path: Path, seed: int = 7) -> Path:
    """A Flax checkpoint (score_sde's ``State`` fields the converter reads) of Song et al.'s published
    LIDC network, ``song2022-lidc-320`` at full width, with seeded random weights under the names and
    shapes the converter expects (test_ncsnpp_convert.py ties them to the Flax reference)."""
    script, nf = load_script("make_conversion_fixtures"), load_script("ncsnpp_fixtures")
    shapes = expected_source_shapes("ncsnpp", read_flags("ncsnpp", PRESETS["song2022-lidc-320"].flags), "flax")
    params = [[name, list(shape), 0.0, 0.05] for name, shape in shapes.items()]
    state = nf.flax_state({"params": params, "step": 101000, "seed": seed}, script.fill(nf.flax_slots(params), seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(nf.msgpack_bytes({k: state[k] for k in ("step", "ema_rate", "params_ema")}))
    return path


def flags(case: str) -> dict:
    return json.loads((FIXTURES / f"{case}.json").read_text())["flags"]


@pytest.fixture(scope="module")
def aapm(tmp_path_factory) -> Path:
    """DiffusionMBIR's AAPM configuration (reduced to 32 channels at 32x32), a CT prior that leaves its
    window to the user, as the preset's card says."""
    root = tmp_path_factory.mktemp("aapm")
    return convert_checkpoint(rebuilt("chung2023_aapm_reduced", root / "src"), root / "prior", fmt="ncsnpp",
                              flags=flags("chung2023_aapm_reduced"), modality="CT", normalisation="user-choice")


@pytest.fixture(scope="module")
def lidc(tmp_path_factory) -> Path:
    """Song et al.'s LIDC configuration (reduced to nf 16 at 64x64), per-volume min-max like its card."""
    root = tmp_path_factory.mktemp("lidc")
    return convert_checkpoint(rebuilt("song2022_lidc_reduced", root / "src"), root / "prior", fmt="ncsnpp",
                              flags=flags("song2022_lidc_reduced"), modality="CT", normalisation="volume-minmax",
                              name="song-lidc-reduced")


@pytest.mark.parametrize("sampler", [pytest.param("score_sde", marks=pytest.mark.slow), "dds", "dps",
                                     pytest.param("diffusion_mbir", marks=pytest.mark.slow)])
def test_a_ve_prior_runs_through_every_pixel_sampler(aapm, sampler):
    prior = load_prior(aapm)
    op = CTProjector(ParallelBeamGeometry.sparse_view((32, 32), 16, "uniform"))
    x = torch.rand(2, 1, 32, 32)
    problem = Problem(op, op(x), "CT", noisy=False)
    result = reconstruct(problem, prior, sampler=sampler, steps=2, device="cpu")
    assert result.mean.shape == (2, 1, 32, 32) and torch.isfinite(result.mean).all()
    settings = result.settings
    if settings["schedule"] == "geometric":  # score-SDE and DiffusionMBIR sample the prior's own VE range
        assert (settings["sigma_max"], settings["sigma_min"]) == (378.0, 0.01)
    else:  # DDS and DPS keep their Karras presets; the adapter clamps the network's sigma to the trained range
        assert settings["sigma_min"] < 0.01 and prior.denoiser.sigma_range == (0.01, 378.0)
    override = reconstruct(problem, prior, sampler="score_sde", steps=2, device="cpu", options={"sigma_max": 50.0})
    assert override.settings["sigma_max"] == 50.0


@pytest.mark.slow  # about a minute on 2 shared cores: four reconstructions of a 3.9 M-parameter network
def test_reconstruct_never_gives_a_converted_ct_prior_the_hu_window_by_accident(aapm, lidc, tmp_path, capsys):
    runs = []

    def run(prior, *window):
        out = tmp_path / f"out{len(runs)}.nii.gz"
        runs.append(out)
        code = main(["reconstruct", str(CT_DICOM), "-o", str(out), "--slices", "1:2", "--steps", "2", "--prior", str(prior),
                     "--quiet", *window])
        return code, capsys.readouterr().err, out
    code, err, out = run(aapm)  # the card leaves the window to the user: refused, and the message says how to choose
    assert code == 2 and "does not state the HU window" in err and "--window LOW,HIGH" in err and not out.exists(), err
    code, err, out = run(aapm, "--window=-1000,2000")  # "=": the value starts with a minus
    assert code == 0, err
    assert json.loads(out.with_name("out1.json").read_text())["normalisation"] == {
        "kind": "hu-window", "low": -1000.0, "high": 2000.0, "chosen": True}
    code, err, out = run(lidc)  # the card's per-volume min-max: the volume's own range, not the starter window
    assert code == 0, err
    study = load_input_study(CT_DICOM, slices="1:2")
    recorded = json.loads(out.with_name("out2.json").read_text())["normalisation"]
    assert (recorded["low"], recorded["high"]) == (float(study.voxels.min()), float(study.voxels.max()))
    # the window chosen: the volume's min-max for the min-max prior, any window for the user's choice
    prior = load_prior(lidc)
    study = load_input(CT_DICOM, lambda modality: prior, grid="input", slices="1:2").study
    acquisition = acquisition_for_study(study, AcquisitionOptions())
    window = Normalisation.from_dict(prior.card.normalisation).window_for(study.voxels)
    problem = problem_from_acquisition(acquisition, simulate(study, acquisition), window=window)
    assert problem.description["normalisation"] == {"kind": "hu-window", "low": window[0], "high": window[1], "chosen": True}
    result = reconstruct(problem, prior, steps=2, device="cpu", other_size=True)
    assert torch.isfinite(result.mean).all()
    default = problem_from_acquisition(acquisition, simulate(study, acquisition))
    with pytest.raises(InputError, match=r"these data are normalised as hu-window \(low -1000, high 2000\)"):
        reconstruct(default, prior, steps=2, device="cpu", other_size=True)
    with pytest.raises(InputError, match="does not state the HU window"):
        reconstruct(default, load_prior(aapm), steps=2, device="cpu", other_size=True)
    reconstruct(problem, load_prior(aapm), steps=1, device="cpu", other_size=True)  # a chosen window: accepted


def test_reproduce_lidc_takes_a_converted_song_prior(lidc, tmp_path, capsys):
    root = tmp_path / "LIDC-IDRI"
    study = generate_uid()
    write_ct_series(root / "LIDC-IDRI-0001" / study / generate_uid(), "LIDC-IDRI-0001", study, ct_pixels(3, seed=3),
                    [2.5 * k for k in range(3)])
    out = tmp_path / "out"
    code = main(["reproduce", "lidc", "--data", str(root), "--prior", str(lidc), "-o", str(out), "--size", "64", "--views", "8",
                 "--slices", "1", "--steps", "2", "--samplers", "score_sde,dds", "--quiet"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prior"]["name"] == "song-lidc-reduced" and summary["prior"]["image_size"] == 64
    rows = (out / "results.csv").read_text().splitlines()
    assert any(",score_sde," in r for r in rows) and any(",dds," in r for r in rows)


@pytest.mark.slow
def test_reproduce_lidc_at_320_with_a_converted_song_prior(tmp_path, capsys):
    """Item 6 of the published-priors work: the LIDC-layout fixture, Song et al.'s published LIDC
    network converted from a Flax file by its preset (random weights), the table at 320x320 with
    score-SDE PC and DDS, by the commands docs/reproduce.md gives (few steps, one slice)."""
    source = song_lidc_checkpoint(tmp_path / "song" / "checkpoint_101")
    prior = tmp_path / "song2022-lidc-320"
    assert main(["priors", "convert", "--format", "ncsnpp", str(source), "-o", str(prior), "--preset", "song2022-lidc-320"]) == 0
    root = tmp_path / "LIDC-IDRI"
    study = generate_uid()
    write_ct_series(root / "LIDC-IDRI-0001" / study / generate_uid(), "LIDC-IDRI-0001", study, ct_pixels(3, seed=3),
                    [2.5 * k for k in range(3)])
    out = tmp_path / "table"
    code = main(["reproduce", "lidc", "--data", str(root), "--prior", str(prior), "-o", str(out), "--views", "23",
                 "--slices", "1", "--steps", "2", "--samplers", "score_sde,dds", "--device", "cpu", "--quiet"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prior"]["name"] == "song2022-lidc-320" and summary["prior"]["image_size"] == 320
    assert summary["protocol"]["size"] == 320 and "grid" not in json.dumps(summary["volumes"])
    assert summary["sampler_settings"]["score_sde"]["sigma_max"] == 128.0  # the card's VE range, as Song et al. sampled
    rows = list(csv.DictReader((out / "results.csv").open()))
    methods = {r["method"] for r in rows}
    assert {"score_sde", "dds"} <= methods and all(r["setting"] == "23 views" for r in rows)
    assert all(math.isfinite(float(r["psnr"])) for r in rows if r["method"] in ("score_sde", "dds"))
    assert "35.24" in (out / "summary.md").read_text()  # the published score-SDE row beside ours
