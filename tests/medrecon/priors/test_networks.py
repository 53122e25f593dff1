"""Network configs build the diffusers models they describe."""

import pytest
import torch

from medrecon.errors import InputError
from medrecon.priors.networks import AutoencoderConfig, UNetConfig, build_autoencoder, build_unet, parameter_count


def test_default_unet_is_the_small_architecture_of_the_gpu_notes():
    config = UNetConfig()
    kwargs = config.diffusers_kwargs()
    assert kwargs["down_block_types"] == ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D")
    assert kwargs["up_block_types"] == ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D")
    assert 6.0e6 < parameter_count(build_unet(config)) < 6.6e6  # about 6.3 M parameters
    assert UNetConfig.from_dict(config.to_dict()) == config


def test_tiny_networks_run():
    unet = build_unet(UNetConfig(sample_size=16, block_out_channels=(8, 16), attention_levels=(1,), norm_num_groups=4, layers_per_block=1))
    with torch.no_grad():
        assert unet(torch.zeros(2, 1, 16, 16), torch.tensor([1.0, 2.0])).sample.shape == (2, 1, 16, 16)
    ae = build_autoencoder(AutoencoderConfig(block_out_channels=(8, 16), norm_num_groups=4, sample_size=16))
    with torch.no_grad():
        z = ae.encode(torch.zeros(1, 1, 16, 16)).latent_dist.mean
        assert z.shape == (1, 4, 8, 8) and ae.decode(z).sample.shape == (1, 1, 16, 16)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(attention_levels=(7,)), "attention_levels"),
        (dict(block_out_channels=(30, 64), attention_levels=()), "divisible by norm_num_groups"),
        (dict(sample_size=100), "must be divisible by 8"),
    ],
)
def test_bad_configs(kwargs, message):
    with pytest.raises(InputError, match=message):
        UNetConfig(**kwargs)
