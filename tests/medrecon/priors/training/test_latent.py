"""The latent stage (medrecon.priors.training.latent): autoencoder, then latent UNet, then a loadable
latent prior folder, on tiny networks; latent slices are not augmented."""

from __future__ import annotations

import pytest
import torch

from medrecon.errors import InputError
from medrecon.priors.hub import load_prior
from medrecon.priors.latent import LatentPrior, LatentSlices
from medrecon.priors.networks import UNetConfig, build_autoencoder
from medrecon.priors.training import (
    AutoencoderTrainConfig,
    TrainConfig,
    train_autoencoder,
    train_latent,
)
from tests.support import TINY_AE_32 as AE
from tests.support import TINY_LATENT_UNET_16 as LATENT_UNET


def test_full_tiny_pipeline(ct_slices, tmp_path):
    ae_config = AutoencoderTrainConfig(steps=4, batch_size=4, lr=1e-3, seed=5, checkpoint_every=100, log_every=100)
    ae_record = train_autoencoder(ae_config, AE, ct_slices, tmp_path / "ae", log=None)
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
