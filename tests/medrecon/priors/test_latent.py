"""Latent priors: LatentPrior encode/decode, the autoencoder stage, latent prior folders, the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medrecon.errors import InputError, ShapeError
from medrecon.priors.denoiser import EDMDenoiser
from medrecon.priors.hub import CARD_FILE, PriorCard, load_autoencoder, load_prior, save_latent_prior
from medrecon.priors.latent import LatentPrior, LatentSlices
from medrecon.priors.networks import AutoencoderConfig, UNetConfig, build_autoencoder, build_unet
from medrecon.priors.training import (
    AutoencoderTrainConfig,
    TrainConfig,
    TrainingSlices,
    autoencoder_loss,
    load_checkpoint,
    train_autoencoder,
    train_latent,
)
from medrecon.priors.training.loop import _seed

ROOT = Path(__file__).resolve().parents[2]
CT_FILE = ROOT / "data" / "train" / "ct-lung2-train64.nii.gz"
AE = AutoencoderConfig(block_out_channels=(8, 16), norm_num_groups=4, sample_size=32, latent_channels=4)
LATENT_UNET = UNetConfig(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=(8, 16), attention_levels=(), norm_num_groups=4, layers_per_block=1
)
AE_WEIGHTS = "autoencoder/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def ct_slices():
    return TrainingSlices.from_files([CT_FILE], modality="ct", size=32)


def _nets(seed=0):
    torch.manual_seed(seed)  # test-only: diffusers initialises from the global generator
    return build_autoencoder(AE).eval(), build_unet(LATENT_UNET).eval()


def _card(**changes):
    base = dict(name="tiny-latent", modality="CT", image_size=32, channels=1, parameterisation="edm",
                normalisation={"kind": "hu-window", "low": -1000.0, "high": 2000.0}, sigma_data=1.0)
    return PriorCard(**{**base, **changes})


def _ae_cfg(**kw):
    base = dict(steps=6, batch_size=4, lr=1e-3, seed=5, checkpoint_every=100, log_every=100)
    base.update(kw)
    return AutoencoderTrainConfig(**base)


def test_encode_decode_shapes_and_gradients(ct_slices):
    ae, unet = _nets()
    prior = LatentPrior(ae, 2.0, EDMDenoiser(unet, sigma_data=1.0))
    assert prior.latent_info() == {"scaling_factor": 2.0, "latent_channels": 4, "downsampling": 2}
    x = ct_slices.images[:3].clone().requires_grad_(True)
    z = prior.encode(x)
    assert z.shape == (3, 4, 16, 16)
    torch.testing.assert_close(z, ae.encode(x).latent_dist.mean * 2.0)
    z.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    zz = z.detach().clone().requires_grad_(True)
    xr = prior.decode(zz)
    assert xr.shape == (3, 1, 32, 32)
    ((xr - ct_slices.images[:3]) ** 2).sum().backward()  # ReSample's latent step: a gradient through decode
    assert zz.grad is not None and torch.isfinite(zz.grad).all() and zz.grad.abs().sum() > 0
    assert prior.denoise(z.detach(), 0.5).shape == z.shape
    with pytest.raises(ShapeError):
        prior.encode(torch.zeros(1, 1, 31, 32))
    with pytest.raises(ShapeError):
        prior.decode(torch.zeros(1, 3, 16, 16))


def test_autoencoder_steps_lower_the_reconstruction_loss(ct_slices, tmp_path):
    record = train_autoencoder(_ae_cfg(steps=10), AE, ct_slices, tmp_path / "ae", log=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(5, "init"))  # the stage's initialisation
        start = build_autoencoder(AE)
    trained = load_autoencoder(tmp_path / "ae" / "autoencoder")
    x, noise = ct_slices.images[:8], torch.zeros(8, 4, 16, 16)
    with torch.no_grad():
        before = float(autoencoder_loss(start, x, noise, 0.0)[1])
        after = float(autoencoder_loss(trained, x, noise, 0.0)[1])
    assert after < 0.8 * before, (before, after)
    assert record["l1"][-1] < record["l1"][0]
    # the scaling factor gives unit-std latents on the training slices
    prior = LatentPrior(trained, record["scaling_factor"])
    with torch.no_grad():
        assert abs(float(prior.encode(ct_slices.images).std()) - 1.0) < 1e-4
    assert trained.config.scaling_factor == pytest.approx(record["scaling_factor"])
    saved = json.loads((tmp_path / "ae" / "train_record.json").read_text())
    assert saved["stage"] == "autoencoder" and saved["training_sources"] == ["ct-lung2"]


def test_autoencoder_stage_resumes_exactly(ct_slices, tmp_path):
    full = train_autoencoder(_ae_cfg(steps=6), AE, ct_slices, tmp_path / "full", log=None)
    first = train_autoencoder(_ae_cfg(steps=3), AE, ct_slices, tmp_path / "split", log=None)
    second = train_autoencoder(_ae_cfg(steps=6), AE, ct_slices, tmp_path / "split", log=None)
    assert second["resumed_from_step"] == 3
    assert first["losses"] + second["losses"] == full["losses"]
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert full["scaling_factor"] == second["scaling_factor"]
    with pytest.raises(InputError, match="another config"):
        train_autoencoder(_ae_cfg(steps=6, kl_weight=1e-3), AE, ct_slices, tmp_path / "split", log=None)
    with pytest.raises(InputError, match="exists"):
        train_autoencoder(_ae_cfg(steps=6), AE, ct_slices, tmp_path / "split", resume=False, log=None)


def test_latent_prior_round_trip_identical(ct_slices, tmp_path):
    ae, unet = _nets(1)
    reference = LatentPrior(ae, 1.7, EDMDenoiser(unet, sigma_data=1.0))
    folder = save_latent_prior(tmp_path / "prior", ae, unet, _card(), 1.7, half=False)
    card = json.loads((folder / CARD_FILE).read_text())
    assert card["parameterisation"] == "edm"
    assert card["latent"] == {"scaling_factor": 1.7, "latent_channels": 4, "downsampling": 2}
    assert set(card["sha256"]) == {AE_WEIGHTS, "unet/diffusion_pytorch_model.safetensors"}
    loaded = load_prior(folder)
    assert loaded.latent is not None and loaded.card.latent["scaling_factor"] == 1.7
    x, sigma = ct_slices.images[:2], torch.tensor([0.1, 3.0])
    with torch.no_grad():
        z = reference.encode(x)
        torch.testing.assert_close(loaded.latent.encode(x), z, rtol=0, atol=0)
        torch.testing.assert_close(loaded.latent.decode(z), reference.decode(z), rtol=0, atol=0)
        torch.testing.assert_close(loaded.denoiser(z, sigma), reference.denoise(z, sigma), rtol=0, atol=0)
        torch.testing.assert_close(loaded.latent.denoise(z, sigma), reference.denoise(z, sigma), rtol=0, atol=0)
    # pixel priors keep working and carry no latent entry
    assert PriorCard.from_dict({k: v for k, v in _card().to_dict().items() if k != "latent"}).latent is None
    with pytest.raises(InputError, match="exists"):
        save_latent_prior(folder, ae, unet, _card(), 1.7)


def test_damaged_autoencoder_weights_refused(tmp_path):
    ae, unet = _nets(2)
    folder = save_latent_prior(tmp_path / "prior", ae, unet, _card(), 1.0)
    weights = folder / AE_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256"):
        load_prior(folder)
    card = json.loads((folder / CARD_FILE).read_text())
    card["latent"].pop("scaling_factor")
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(InputError, match="scaling_factor"):
        load_prior(folder)


def test_full_tiny_pipeline(ct_slices, tmp_path):
    ae_record = train_autoencoder(_ae_cfg(steps=4), AE, ct_slices, tmp_path / "ae", log=None)
    config = TrainConfig(steps=3, batch_size=4, seed=1, sigma_data=1.0, checkpoint_every=100, log_every=100)
    record = train_latent(config, LATENT_UNET, tmp_path / "ae", ct_slices, tmp_path / "latent", log=None)
    assert record["steps"] == 3 and record["data"]["latent"]["latent_size"] == 16
    prior = load_prior(tmp_path / "latent" / "prior")
    assert prior.card.latent["scaling_factor"] == ae_record["scaling_factor"]
    assert prior.card.image_size == 32 and prior.card.channels == 1 and prior.card.modality == "CT"
    with torch.no_grad():
        z = prior.latent.encode(ct_slices.images[:2])
        assert abs(float(prior.latent.encode(ct_slices.images).std()) - 1.0) < 0.05  # float16 weights
        assert prior.denoiser(z, 0.3).shape == (2, 4, 16, 16)
        assert prior.latent.decode(z).shape == (2, 1, 32, 32)
    # latent slices: no augmentation, the generator is not used
    latents = LatentSlices.from_slices(LatentPrior(build_autoencoder(AE), 1.0), ct_slices)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert torch.equal(latents.batch([0, 1], g), latents.latents[:2]) and torch.equal(g.get_state(), state)
    with pytest.raises(InputError, match="latent UNet"):
        train_latent(config, UNetConfig(sample_size=32, block_out_channels=(8, 16), attention_levels=(), norm_num_groups=4),
                     tmp_path / "ae", ct_slices, tmp_path / "bad", log=None)


def test_cli_latent_stages(tmp_path):
    from medrecon.commands import main

    common = ["train", "--modality", "ct", "--files", str(CT_FILE), "--size", "32", "--batch-size", "2", "--steps", "2"]
    ae_out, lat_out = tmp_path / "ae", tmp_path / "latent"
    ae_json = json.dumps(AE.to_dict())
    assert main(common + ["--out", str(ae_out), "--stage", "autoencoder", "--autoencoder-config", ae_json]) == 0
    assert (ae_out / "autoencoder" / "config.json").is_file()
    assert main(common + ["--out", str(lat_out), "--stage", "latent"]) == 2  # no --autoencoder
    unet_json = json.dumps(LATENT_UNET.to_dict())
    argv = common + ["--out", str(lat_out), "--stage", "latent", "--autoencoder", str(ae_out), "--unet-config", unet_json]
    assert main(argv) == 0
    prior = load_prior(lat_out / "prior")
    assert prior.latent is not None and prior.card.sigma_data == 1.0
    assert main(common + ["--out", str(tmp_path / "px"), "--autoencoder", str(ae_out)]) == 2  # pixel stage
