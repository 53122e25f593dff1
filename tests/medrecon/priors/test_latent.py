"""Latent priors (medrecon.priors.latent): LatentPrior encode/decode and its gradients, latent prior
folders (round trip, damaged weights). Training the autoencoder and the latent UNet: training/."""

from __future__ import annotations

import json

import pytest
import torch

from medrecon.errors import InputError, ShapeError
from medrecon.priors.denoiser import EDMDenoiser
from medrecon.priors.hub import CARD_FILE, PriorCard, load_prior, save_latent_prior
from medrecon.priors.latent import LatentPrior
from medrecon.priors.networks import build_autoencoder, build_unet
from tests.support import TINY_AE_32 as AE
from tests.support import TINY_LATENT_UNET_16 as LATENT_UNET

AE_WEIGHTS = "autoencoder/diffusion_pytorch_model.safetensors"


def _nets(seed=0):
    torch.manual_seed(seed)  # test-only: diffusers initialises from the global generator
    return build_autoencoder(AE).eval(), build_unet(LATENT_UNET).eval()


def _card(**changes):
    base = dict(name="tiny-latent", modality="CT", image_size=32, channels=1, parameterisation="edm",
                normalisation={"kind": "hu-window", "low": -1000.0, "high": 2000.0}, sigma_data=1.0)
    return PriorCard(**{**base, **changes})


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
