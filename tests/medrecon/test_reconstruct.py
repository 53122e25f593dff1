"""The volume pipeline (medrecon.reconstruct) and the `medrecon reconstruct` command."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medrecon.acquisition import CTAcquisition, MU_WATER_PER_MM
from medrecon.commands import main
from medrecon.errors import InputError
from medrecon.operators import CTProjector, ParallelBeamGeometry
from medrecon.priors.denoiser import GaussianDenoiser
from medrecon.priors.hub import Prior, PriorCard, save_prior
from medrecon.priors.networks import UNetConfig, build_unet
from medrecon.priors.normalisation import Normalisation
from medrecon.reconstruct import Problem, check_prior_fits, problem_from_acquisition, reconstruct
from medrecon.samplers.presets import sampler_settings

ROOT = Path(__file__).resolve().parents[2]
CT_SAMPLE = ROOT / "data" / "ct-lung1-sample.nii.gz"
CT_DICOM = ROOT / "data" / "ct-lung1-sample-dicom"
MR_SAMPLE = ROOT / "data" / "mr-brain2-sample.nii.gz"


def gaussian_prior(modality="CT", size=8, mean=0.5, std=0.1) -> Prior:
    card = PriorCard(name=f"gauss-{modality.lower()}", modality=modality, image_size=size, channels=1,
                     parameterisation="edm", normalisation=Normalisation.for_modality(modality).to_dict())
    return Prior(GaussianDenoiser(mean, std), torch.nn.Identity(), card, Path("."))


def small_ct_problem(n=3, size=8, views=4):
    op = CTProjector(ParallelBeamGeometry.sparse_view(size, views))
    x = 0.5 + 0.1 * torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(1))
    return Problem(op, op(x), "CT", noisy=False), x


def test_ct_units_map_exactly_onto_the_priors_window():
    # a sinogram of mu = mu_w (1 + HU/1000) must become the sinogram of u = (HU + 1000) / 3000
    geometry = ParallelBeamGeometry.sparse_view(16, 6)
    acq = CTAcquisition(geometry.to_dict())
    hu = torch.linspace(-1000, 1500, 16 * 16).reshape(1, 1, 16, 16)
    sino = acq.operator()(MU_WATER_PER_MM * (1 + hu / 1000))
    for window in ((-1000.0, 2000.0), (-1200.0, 1800.0)):
        problem = problem_from_acquisition(acq, sino, window=window)
        u = (hu - window[0]) / (window[1] - window[0])
        torch.testing.assert_close(problem.op(u), problem.y, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(problem.to_native(u), hu[:, 0], rtol=1e-5, atol=1e-3)


def test_volume_is_the_same_whatever_the_batch_size_and_samples_give_a_spread():
    problem, _ = small_ct_problem()
    prior = gaussian_prior()
    # 5 CG steps (the presets' 20 reach round-off on this tiny, very underdetermined system, where CG
    # amplifies the rounding differences of batched and single sparse products)
    kwargs = dict(sampler="dds", steps=6, options={"cg_iters": 5}, samples=3, seed=7, progress=False)
    one = reconstruct(problem, prior, batch_size=1, **kwargs)
    all_ = reconstruct(problem, prior, batch_size=3, **kwargs)
    torch.testing.assert_close(one.mean, all_.mean, rtol=1e-4, atol=1e-4)
    assert one.std.shape == one.mean.shape and float(one.std.mean()) > 0
    assert one.nfe == 6 and one.samples == 3
    # slice 2 alone, seeded as slice 2 of the volume, reproduces its row
    part = Problem(problem.op, problem.y[2:], "CT", noisy=False)
    alone = reconstruct(part, prior, slice_indices=[2], batch_size=1, **kwargs)
    torch.testing.assert_close(alone.mean, one.mean[2:], rtol=1e-4, atol=1e-4)
    other_seed = reconstruct(problem, prior, batch_size=3, **dict(kwargs, seed=8))
    assert not torch.allclose(other_seed.mean, one.mean)


def test_noiseless_dds_volume_fits_the_data():
    problem, _ = small_ct_problem()
    out = reconstruct(problem, gaussian_prior(), sampler="dds", steps=8, options={"cg_iters": 30}, progress=False)
    rel = torch.linalg.vector_norm(problem.op(out.mean) - problem.y) / torch.linalg.vector_norm(problem.y)
    assert float(rel) < 1e-3


@pytest.mark.parametrize("sampler", ["dds", "dps", "score_sde"])
def test_every_pixel_sampler_runs_through_the_pipeline(sampler):
    problem, _ = small_ct_problem(n=2)
    out = reconstruct(problem, gaussian_prior(), sampler=sampler, steps=4, progress=False)
    assert out.mean.shape == (2, 1, 8, 8) and torch.isfinite(out.mean).all()
    assert out.nfe == sampler_settings(sampler, "ct-clean", steps=4).nfe


def test_priors_that_do_not_fit_are_refused_with_the_reason():
    problem, _ = small_ct_problem()
    with pytest.raises(InputError, match="MR prior"):
        check_prior_fits(gaussian_prior("MR"), problem, "dds")
    with pytest.raises(InputError, match="16x16 images"):
        check_prior_fits(gaussian_prior(size=16), problem, "dds")
    with pytest.raises(InputError, match="latent prior"):
        check_prior_fits(gaussian_prior(), problem, "resample")
    with pytest.raises(InputError, match="unknown sampler"):
        reconstruct(problem, gaussian_prior(), sampler="nope")
    with pytest.raises(InputError, match="has no option"):
        reconstruct(problem, gaussian_prior(), sampler="dds", options={"zeta_rel": 1.0})
    with pytest.raises(InputError, match="samples"):
        reconstruct(problem, gaussian_prior(), samples=0)


# ------------------------------------------------------------------------------ the command
def tiny_prior(folder: Path, modality: str) -> Path:
    config = UNetConfig(sample_size=256, block_out_channels=(8, 16), attention_levels=(), norm_num_groups=4, layers_per_block=1)
    torch.manual_seed(0)
    card = PriorCard(name=f"tiny-{modality.lower()}", modality=modality, image_size=256, channels=1, parameterisation="edm",
                     normalisation=Normalisation.for_modality(modality).to_dict(), training={"summary": "untrained (tests)"})
    return save_prior(folder, build_unet(config), card)


@pytest.fixture(scope="module")
def priors(tmp_path_factory):
    root = tmp_path_factory.mktemp("priors")
    return {m: tiny_prior(root / f"tiny-{m.lower()}", m) for m in ("CT", "MR")}


def run(*argv) -> int:
    return main(["reconstruct", *map(str, argv), "--quiet"])


def test_nifti_in_nifti_out_with_geometry_record_and_figure(tmp_path, priors, capsys):
    out = tmp_path / "recon.nii.gz"
    code = run(CT_SAMPLE, "-o", out, "--modality", "ct", "--slices", "2:4", "--steps", "2", "--prior", priors["CT"])
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


def test_dicom_in_dicom_out_keeps_the_geometry(tmp_path, priors):
    import pydicom

    out = tmp_path / "recon_dicom"
    assert run(CT_DICOM, "-o", out, "--slices", "0:2", "--steps", "1", "--prior", priors["CT"]) == 0
    written = sorted(out.glob("*.dcm"))
    source = sorted(CT_DICOM.glob("*.dcm"), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    assert len(written) == 2
    got = sorted((pydicom.dcmread(p) for p in written), key=lambda d: float(d.ImagePositionPatient[2]))
    ref = [pydicom.dcmread(p) for p in source[:2]]
    for g, r in zip(got, ref):
        np.testing.assert_allclose([float(v) for v in g.ImagePositionPatient], [float(v) for v in r.ImagePositionPatient], atol=1e-3)
        np.testing.assert_allclose([float(v) for v in g.PixelSpacing], [float(v) for v in r.PixelSpacing])
        assert g.SeriesInstanceUID != r.SeriesInstanceUID


def test_multicoil_mr_study_runs_with_the_phase_adapter(tmp_path, priors):
    out = tmp_path / "mr.nii.gz"
    assert run(MR_SAMPLE, "-o", out, "--modality", "mr", "--slices", "3:4", "--steps", "2", "--accel", "4",
               "--prior", priors["MR"], "--samples", "2") == 0
    record = json.loads((tmp_path / "mr.json").read_text())
    assert record["reconstruction"]["samples"] == 2 and record["acquisition"]["kind"] == "mr"
    assert nib.load(out).shape[2] == 1


def test_bad_inputs_give_one_line_errors_and_leave_nothing(tmp_path, priors, capsys):
    out = tmp_path / "r.nii.gz"
    assert run(tmp_path / "missing.nii.gz", "-o", out, "--modality", "ct") == 2
    assert "no such input" in capsys.readouterr().err
    # a CT study with an MR prior
    assert run(CT_SAMPLE, "-o", out, "--modality", "ct", "--slices", "0:1", "--prior", priors["MR"]) == 2
    assert "MR prior" in capsys.readouterr().err
    # DICOM says CT, the flag says MR
    assert run(CT_DICOM, "-o", tmp_path / "d", "--modality", "mr") == 2
    assert "contradicts" in capsys.readouterr().err
    assert run(CT_SAMPLE, "-o", out, "--slices", "0:1") == 2  # NIfTI without --modality
    assert list(tmp_path.iterdir()) == []
    # an existing output is not replaced without --overwrite, and nothing else is written
    out.write_bytes(b"keep me")
    assert run(CT_SAMPLE, "-o", out, "--modality", "ct", "--slices", "0:1", "--steps", "1", "--prior", priors["CT"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["r.nii.gz"]
    # a missing prior is a missing resource (exit 3)
    assert run(CT_SAMPLE, "-o", tmp_path / "x.nii.gz", "--modality", "ct", "--slices", "0:1", "--prior", "no-such-prior") == 3


def tiny_latent_prior(modality: str = "CT") -> Prior:
    """An untrained latent prior on 8x8 images (4-channel 4x4 latents) for pipeline tests."""
    from medrecon.priors.denoiser import EDMDenoiser
    from medrecon.priors.latent import LatentPrior
    from medrecon.priors.networks import AutoencoderConfig, build_autoencoder

    torch.manual_seed(0)
    ae = build_autoencoder(AutoencoderConfig(block_out_channels=(8, 16), norm_num_groups=4, sample_size=8, latent_channels=4))
    unet = build_unet(UNetConfig(sample_size=4, in_channels=4, out_channels=4, block_out_channels=(8, 16), attention_levels=(),
                                 norm_num_groups=4, layers_per_block=1))
    latent = LatentPrior(ae, 1.0, EDMDenoiser(unet, sigma_data=1.0))
    card = PriorCard(name=f"tiny-latent-{modality.lower()}", modality=modality, image_size=8, channels=1, parameterisation="edm",
                     normalisation=Normalisation.for_modality(modality).to_dict(),
                     latent={"scaling_factor": 1.0, "latent_channels": 4, "downsampling": 2})
    return Prior(latent.denoiser, unet, card, Path("."), latent=latent)


def test_resample_runs_through_the_pipeline_on_a_latent_prior():
    prior = tiny_latent_prior()
    problem, _ = small_ct_problem(n=2)
    out = reconstruct(problem, prior, sampler="resample", steps=6, options={"latent_iters": 2}, progress=False)
    assert out.mean.shape == (2, 1, 8, 8) and torch.isfinite(out.mean).all() and out.nfe == 6
    with pytest.raises(InputError, match="latent prior"):
        reconstruct(problem, prior, sampler="dds", steps=2)


def _mr_problem(n=2, size=8, phase=None):
    from medrecon.operators import RealImageEmbedding, SingleCoilMRI
    from medrecon.operators.masks import make_mask

    op = SingleCoilMRI(make_mask("equispaced", (size, size), 2, seed=1))
    x = 0.5 + 0.1 * torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(2))
    truth = torch.linspace(-1, 1, n * size * size).reshape(n, 1, size, size) if phase is None else phase
    y = op(x.to(torch.complex64) * torch.exp(1j * truth))
    return op, y, truth, RealImageEmbedding((1, size, size), truth)


def test_known_phase_is_used_by_the_phase_adapter_and_checked():
    op, y, truth, _ = _mr_problem()
    prior = gaussian_prior("MR")
    kwargs = dict(sampler="dds", steps=4, options={"cg_iters": 3}, seed=1, progress=False)
    given = reconstruct(Problem(op, y, "MR", False, phase=truth), prior, **kwargs)
    wrong = reconstruct(Problem(op, y, "MR", False, phase=truth + 1.0), prior, **kwargs)
    estimated = reconstruct(Problem(op, y, "MR", False), prior, **kwargs)
    assert not torch.allclose(given.mean, wrong.mean) and not torch.allclose(given.mean, estimated.mean)
    with pytest.raises(InputError, match="phase must be"):
        Problem(op, y, "MR", False, phase=truth[:1])


def test_real_unknowns_times_a_phase_run_on_the_real_prior_and_fit_the_data():
    op, y, truth, embed = _mr_problem()
    problem = Problem(op @ embed, y, "MR", False)
    out = reconstruct(problem, gaussian_prior("MR"), sampler="dds", steps=6, options={"cg_iters": 30}, progress=False)
    assert not out.mean.is_complex()  # a real image: the prior runs on it directly
    rel = torch.linalg.vector_norm(problem.op(out.mean) - y) / torch.linalg.vector_norm(y)
    assert float(rel) < 1e-3


def test_the_phase_adapters_imag_std_comes_from_the_task_and_can_be_overridden():
    from medrecon.samplers.presets import adapter_settings

    op, y, truth, _ = _mr_problem()
    problem = Problem(op, y, "MR", True)
    kwargs = dict(sampler="dds", steps=4, seed=1, progress=False)
    preset = reconstruct(problem, gaussian_prior("MR"), **kwargs)
    assert preset.settings["adapter"] == {"phase_aligned": adapter_settings("mr-noisy")}
    other = reconstruct(problem, gaussian_prior("MR"), options={"imag_std": 0.5}, **kwargs)
    assert other.settings["adapter"] == {"phase_aligned": {"imag_std": 0.5}} and not torch.allclose(other.mean, preset.mean)
    assert "adapter" not in reconstruct(small_ct_problem()[0], gaussian_prior(), **kwargs).settings


def test_a_simulation_folder_reconstructs_with_its_recorded_geometry(tmp_path, priors):
    sim = tmp_path / "sim"
    assert main(["simulate", str(MR_SAMPLE), "--modality", "mr", "--slices", "2:3", "--coils", "4", "-o", str(sim)]) == 0
    out = tmp_path / "r.nii.gz"
    assert run(sim, "-o", out, "--steps", "1", "--prior", priors["MR"]) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["input"]["kind"] == "simulation" and "reconstruction" in record["metrics"]
    source = nib.load(MR_SAMPLE)
    np.testing.assert_allclose(nib.load(out).affine[:3, :3], source.affine[:3, :3], atol=1e-5)
