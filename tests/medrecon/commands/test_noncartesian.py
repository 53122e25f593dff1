"""Non-Cartesian MRI through medrecon: the baselines, every sampler, and the command line
(simulate -> file -> reconstruct, for medrecon's layout and ISMRMRD)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

from medrecon.baselines import mri as bmr
from medrecon.commands import main
from medrecon.errors import InputError
from medrecon.operators import NonCartesianMRI, simulated_maps
from medrecon.operators.trajectories import radial
from medrecon.priors.denoiser import low_resolution_phase
from medrecon.reconstruct import Problem, reconstruct
from medrecon.samplers.presets import sampler_settings, task_name

from .test_reconstruct import MR_SAMPLE, gaussian_prior, tiny_latent_prior

ROOT = Path(__file__).resolve().parents[2]


def _smooth_image(n: int, batch: int = 2) -> torch.Tensor:
    rows = torch.arange(n, dtype=torch.float32) - n / 2
    r2 = rows[:, None] ** 2 + rows[None, :] ** 2
    blob = torch.exp(-r2 / (2 * (n / 5) ** 2)) + 0.5 * (r2 < (n / 6) ** 2)
    return torch.stack([blob * (1 + 0.2 * k) for k in range(batch)])[:, None].to(torch.complex64) / 2


def _problem(n=32, spokes=16, coils=4):
    op = NonCartesianMRI(radial((n, n), spokes), (n, n), simulated_maps(coils, (n, n))[None])
    x = _smooth_image(n)
    return op, x, op(x)


def _error(recon, x):
    return float(torch.linalg.vector_norm(recon.abs() - x.abs()) / torch.linalg.vector_norm(x.abs()))


def test_every_baseline_runs_and_the_iterative_ones_beat_gridding():
    op, x, y = _problem()
    errors = {
        "gridding": _error(bmr.gridding(op, y), x),
        "cg_sense": _error(bmr.cg_sense(op, y, n_iter=30), x),
        "l1_wavelet": _error(bmr.l1_wavelet(op, y, lam_rel=1e-4, n_iter=60), x),
        "total_variation": _error(bmr.total_variation(op, y, lam_rel=1e-3, n_iter=150), x),
    }
    assert errors["gridding"] < 0.5, errors
    for method in ("cg_sense", "l1_wavelet", "total_variation"):
        assert errors[method] < errors["gridding"], errors
    with pytest.raises(InputError, match="gridding: expected a non-Cartesian"):
        bmr.gridding(object(), y)
    with pytest.raises(InputError, match=r"expects k-space y of shape \(B, 4, 1024\)"):
        bmr.cg_sense(op, y[..., :-1])


def test_the_sigpy_solvers_see_exactly_the_density_weighted_operator():
    op, x, y = _problem(n=16, spokes=8, coils=2)
    linop, y0 = next(bmr._sigpy_models(op, y))
    root_w = op.density.sqrt()
    torch.testing.assert_close(torch.from_numpy(y0), root_w * y[0])
    torch.testing.assert_close(torch.from_numpy(linop(x[0, 0].numpy())), root_w * op(x[:1])[0])
    torch.testing.assert_close(torch.from_numpy(linop.H(y0)), op.adjoint((root_w * torch.from_numpy(y0))[None])[0, 0])
    # the weighted model is well scaled: ||W^1/2 A||^2 near 1, where ||A||^2 of a radial trajectory is not
    assert 0.5 < op.weighted_norm_sq() < 2.0 < op.norm_sq()


def test_the_smooth_phase_comes_from_the_kspace_centre():
    op, x, _ = _problem()
    phase = 0.4 * torch.linspace(-1, 1, 32)[None, None, None, :].expand(2, 1, 32, 32)
    estimated = low_resolution_phase(op, op(x * torch.exp(1j * phase)))
    inside = x.abs() > 0.1
    assert float((torch.angle(torch.exp(1j * (estimated - phase)))[inside]).abs().mean()) < 0.05


@pytest.mark.parametrize("sampler", ["dds", "dps", "score_sde"])
def test_every_pixel_sampler_runs_on_non_cartesian_data(sampler):
    op, x, y = _problem(n=8, spokes=6, coils=2)
    problem = Problem(op, y, "MR", noisy=False)
    out = reconstruct(problem, gaussian_prior("MR"), sampler=sampler, steps=4, progress=False)
    assert out.mean.shape == (2, 1, 8, 8) and torch.isfinite(out.mean).all()
    assert out.settings["task"] == "mr-noncartesian-clean"
    assert out.nfe == sampler_settings(sampler, "mr-noncartesian-clean", steps=4).nfe


def test_dds_fits_non_cartesian_data():
    op, x, y = _problem(n=8, spokes=8, coils=2)
    problem = Problem(op, y, "MR", noisy=False)
    out = reconstruct(problem, gaussian_prior("MR"), sampler="dds", steps=6, options={"cg_iters": 40}, progress=False)
    residual = torch.linalg.vector_norm(op(out.mean) - y) / torch.linalg.vector_norm(y)
    assert float(residual) < 1e-2


def test_resample_runs_on_non_cartesian_data():
    prior = tiny_latent_prior("MR")
    op, x, y = _problem(n=8, spokes=6, coils=2)
    out = reconstruct(Problem(op, y, "MR", noisy=False), prior, sampler="resample", steps=4,
                      options={"latent_iters": 2}, progress=False)
    assert out.mean.shape == (2, 1, 8, 8) and torch.isfinite(out.mean).all()


def test_task_names():
    assert task_name("MR", True, non_cartesian=True) == "mr-noncartesian-noisy"
    with pytest.raises(InputError, match="only MR"):
        task_name("CT", False, non_cartesian=True)


# ------------------------------------------------------------------------------ the command
SIZE = 64  # the command-line tests run on a 64x64 copy of two slices of the MR sample


@pytest.fixture(scope="module")
def mr_prior(tmp_path_factory):
    from medrecon.priors.hub import PriorCard, save_prior
    from medrecon.priors.networks import UNetConfig, build_unet
    from medrecon.priors.normalisation import Normalisation

    config = UNetConfig(sample_size=SIZE, block_out_channels=(8, 16), attention_levels=(), norm_num_groups=4, layers_per_block=1)
    torch.manual_seed(0)
    card = PriorCard(name="tiny-mr-64", modality="MR", image_size=SIZE, channels=1, parameterisation="edm",
                     normalisation=Normalisation.for_modality("MR").to_dict(), training={"summary": "untrained (tests)"})
    return save_prior(tmp_path_factory.mktemp("priors") / "tiny-mr-64", build_unet(config), card)


@pytest.fixture(scope="module")
def small_study(tmp_path_factory) -> Path:
    from skimage.transform import resize

    source = nib.load(MR_SAMPLE)
    data = source.get_fdata()[:, :, 3:5]
    small = np.stack([resize(data[:, :, k], (SIZE, SIZE), anti_aliasing=True, preserve_range=True) for k in range(2)], -1)
    affine = source.affine.copy()
    affine[:3, :2] *= data.shape[0] / SIZE
    path = tmp_path_factory.mktemp("study") / "mr-small.nii.gz"
    nib.save(nib.Nifti1Image(small.astype(np.float32), affine), path)
    return path


def _simulate(tmp_path, study, *flags) -> Path:
    out = tmp_path / "sim"
    assert main(["simulate", str(study), "--modality", "mr", "--coils", "4", "-o", str(out), *flags]) == 0
    return out


def _reconstruct(inp, out, prior, *flags) -> int:
    return main(["reconstruct", str(inp), "-o", str(out), "--steps", "2", "--prior", str(prior), "--quiet", *flags])


def test_radial_round_trip_simulate_file_reconstruct(tmp_path, mr_prior, small_study, capsys):
    sim = _simulate(tmp_path, small_study, "--trajectory", "radial", "--spokes", "24")
    assert "24 golden-angle spokes" in capsys.readouterr().out
    record = json.loads((sim / "acquisition.json").read_text())
    assert record["acquisition"]["sampling"] == {"kind": "radial", "spokes": 24, "angles": "golden"}
    # 1. the simulation folder: the acquisition's own coil maps
    out = tmp_path / "from-folder.nii.gz"
    assert _reconstruct(sim, out, mr_prior) == 0
    result = json.loads((tmp_path / "from-folder.json").read_text())
    assert result["acquisition"]["sampling"]["kind"] == "radial"
    assert "reconstruction" in result["metrics"] and "L1-wavelet" in result["baseline"]["method"] and "radial48" in result["baseline"]["method"]
    assert nib.load(out).shape == (SIZE, SIZE, 2)
    np.testing.assert_allclose(nib.load(out).affine, nib.load(small_study).affine, atol=1e-5)
    # 2. the raw file on its own, without coil maps: estimated from the k-space centre
    from medrecon.io.mrd import write_ismrmrd
    from medrecon.io.noncartesian import read_noncartesian_h5, write_noncartesian_h5
    from medrecon.simulation import NONCARTESIAN_FILE
    import dataclasses

    data = read_noncartesian_h5(sim / NONCARTESIAN_FILE)
    bare = tmp_path / "bare.h5"
    write_noncartesian_h5(bare, dataclasses.replace(data, coil_maps=None))
    assert _reconstruct(bare, tmp_path / "from-raw.nii.gz", mr_prior) == 0
    raw = json.loads((tmp_path / "from-raw.json").read_text())
    assert raw["acquisition"]["layout"] == "medrecon" and "estimated" in raw["acquisition"]["coil_maps"]
    # 3. the same k-space as ISMRMRD
    mrd = tmp_path / "scan.mrd"
    write_ismrmrd(mrd, data)
    assert _reconstruct(mrd, tmp_path / "from-mrd.nii.gz", mr_prior, "--slices", "0:1") == 0
    assert nib.load(tmp_path / "from-mrd.nii.gz").shape[2] == 1


def test_spiral_simulation_reconstructs(tmp_path, mr_prior, small_study):
    sim = _simulate(tmp_path, small_study, "--trajectory", "spiral", "--interleaves", "8", "--undersampling", "2", "--slices", "0:1")
    assert _reconstruct(sim, tmp_path / "s.nii.gz", mr_prior, "--sampler", "score_sde") == 0


def test_bad_non_cartesian_input_is_refused_and_writes_nothing(tmp_path, mr_prior, small_study, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["simulate", str(small_study), "--modality", "mr", "--trajectory", "radial", "--spokes", "0",
                 "-o", str(out_dir / "sim")]) == 2
    assert "--spokes: expected a positive integer" in capsys.readouterr().err
    broken = tmp_path / "broken.mrd"
    with h5py.File(broken, "w") as f:
        f.create_group("dataset").create_dataset("xml", data=b"<not ismrmrd")
    assert _reconstruct(broken, out_dir / "r.nii.gz", mr_prior) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert list(out_dir.iterdir()) == []
