"""medrecon's NCSN++ network and its FIR resampling (medrecon/priors/ncsnpp.py, resampling.py).

Exactness against the reference implementations is tested on the conversion fixtures
(tests/medrecon/priors/convert/test_ncsnpp_convert.py); here: the config's checks, the resampling
identities, the prior folder, and that the network runs where the samplers need it (other image
sizes, input gradients, bf16 autocast, channels_last).
"""

from __future__ import annotations

import json

import pytest
import torch

from medrecon.errors import InputError
from medrecon.priors.hub import PriorCard, load_prior, save_prior
from medrecon.priors.ncsnpp import NCSNpp, NcsnppConfig, parameter_shapes
from medrecon.priors.resampling import (
    conv_downsample_2d,
    downsample_2d,
    fir_kernel,
    upfirdn2d,
    upsample_2d,
    upsample_conv_2d,
)

FLAGS = {
    "image_size": 16, "num_channels": 1, "centered": False, "nf": 16, "ch_mult": [1, 2], "num_res_blocks": 1,
    "attn_resolutions": [8], "resblock_type": "biggan", "progressive": "output_skip", "progressive_input": "input_skip",
    "progressive_combine": "sum", "fir": True, "fir_kernel": [1, 3, 3, 1], "skip_rescale": True, "resamp_with_conv": True,
    "embedding_type": "fourier", "conditional": True, "scale_by_sigma": True, "attention_type": "ddpm",
    "normalization": "GroupNorm", "nonlinearity": "swish", "conv_size": 3, "sigma_min": 0.01, "sigma_max": 128.0,
    "num_scales": 1000,
}


def random_network(**changes) -> NCSNpp:
    torch.manual_seed(0)  # test-only: the weights are drawn from the global generator
    net = NCSNpp(NcsnppConfig.from_dict({**FLAGS, **changes}))
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn_like(p) * (16.0 if name.endswith(".W") and p.ndim == 1 else 0.1))
    return net.eval()


# ------------------------------------------------------------------------------------ the config
@pytest.mark.parametrize("changes, message", [
    ({"resblock_type": "resnet"}, "resblock_type='resnet'; the reference code knows ['biggan', 'ddpm']"),
    ({"progressive": "skip"}, "progressive='skip'"),
    ({"conv_size": 5}, "conv_size=5"),
    ({"image_size": 20, "ch_mult": [1, 2, 2, 2]}, "image_size 20 is not divisible by 8"),
    ({"fir_kernel": [1]}, "fir_kernel must list at least two positive taps"),
    ({"sigma_min": 200.0}, "need 0 < sigma_min < sigma_max"),
    ({"conditional": "yes"}, "conditional must be bool, got 'yes'"),
    ({"ch_mult": [1, "2"]}, "ch_mult must be a list of int"),
])
def test_bad_flags_are_refused_with_the_flag_named(changes, message):
    with pytest.raises(InputError) as info:
        NcsnppConfig.from_dict({**FLAGS, **changes})
    assert message in str(info.value)


def test_flags_must_be_complete_and_known_and_group_norms_must_divide():
    with pytest.raises(InputError, match=r"missing \['num_scales'\]"):
        NcsnppConfig.from_dict({k: v for k, v in FLAGS.items() if k != "num_scales"})
    with pytest.raises(InputError, match=r"unknown \['typo'\]"):
        NcsnppConfig.from_dict({**FLAGS, "typo": 1})
    assert NcsnppConfig.from_dict({**FLAGS, "_class_name": "NCSNpp"}).nf == 16  # config.json's own keys are skipped
    assert NcsnppConfig.from_dict({**FLAGS, "resblock_type": "BigGAN"}).resblock_type == "biggan"  # score_sde lower-cases
    with pytest.raises(InputError, match="GroupNorm on 18 channels needs min"):
        parameter_shapes(NcsnppConfig.from_dict({**FLAGS, "nf": 18}))


def test_the_config_answers_what_the_rest_of_medrecon_reads():
    config = NcsnppConfig.from_dict({**FLAGS, "image_size": 32, "ch_mult": [1, 2, 2], "attn_resolutions": [8, 16]})
    assert config.block_out_channels == (16, 32, 32) and config.sample_size == 32
    assert config.in_channels == config.out_channels == 1 and config.attention_levels == (1, 2)
    assert NcsnppConfig.from_dict(config.to_dict()) == config


# ---------------------------------------------------------------------------------- resampling
def test_fir_resampling_keeps_constants_and_the_fused_convolutions_reduce_to_it():
    k = fir_kernel([1, 3, 3, 1])
    assert torch.allclose(k.sum(), torch.tensor(1.0)) and k.shape == (4, 4)
    ones = torch.ones(2, 3, 8, 8)
    assert torch.allclose(upsample_2d(ones, k)[..., 2:-2, 2:-2], torch.ones(1))  # away from the zero padding
    assert torch.allclose(downsample_2d(ones, k)[..., 1:-1, 1:-1], torch.ones(1))
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    delta = torch.zeros(3, 3, 3, 3, dtype=torch.float64)
    delta[range(3), range(3), 1, 1] = 1  # the identity 3x3 convolution
    k64 = k.double()
    torch.testing.assert_close(upsample_conv_2d(x, delta, k64), upsample_2d(x, k64), rtol=0, atol=1e-12)
    torch.testing.assert_close(conv_downsample_2d(x, delta, k64), downsample_2d(x, k64), rtol=0, atol=1e-12)
    assert upsample_2d(x, k64).shape == (2, 3, 16, 16) and downsample_2d(x, k64).shape == (2, 3, 4, 4)
    # upfirdn2d's padding may crop: a negative pad removes rows and columns
    assert upfirdn2d(x, torch.ones(1, 1, dtype=torch.float64), pad=(-1, -2)).shape == (2, 3, 5, 5)


# ------------------------------------------------------------------------------------ the network
def test_the_network_follows_the_reference_layout_and_names_flax_modules_in_creation_order():
    net = random_network()
    names = net.flax_names()
    assert len(names) == len(net.all_modules)
    assert names[:4] == ("GaussianFourierProjection_0", "Dense_0", "Dense_1", "Conv_0")
    assert "Combine_0" in names and names[-2:] == ("GroupNorm_1", "Conv_2")  # output pyramid: one GroupNorm + conv per level
    state = net.state_dict()
    assert "all_modules.0.W" in state and "all_modules.4.GroupNorm_0.weight" in state and "sigmas" not in state
    unconditional = NCSNpp(NcsnppConfig.from_dict({**FLAGS, "conditional": False, "embedding_type": "positional"}))
    assert not any("Dense_0" in k for k in unconditional.state_dict())  # score_sde_pytorch's unused Dense_0: left out


def test_it_runs_at_other_sizes_with_gradients_bf16_and_channels_last():
    net = random_network()
    x, sigma = torch.rand(2, 1, 32, 32), torch.tensor([0.1, 5.0])
    with torch.no_grad():
        out = net(x, sigma)
    assert out.shape == x.shape and torch.isfinite(out).all()
    grad_x = x.clone().requires_grad_(True)
    net(grad_x, sigma).sum().backward()  # DPS differentiates through the network
    assert grad_x.grad is not None and torch.isfinite(grad_x.grad).all()
    with torch.no_grad():
        last = net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last), sigma)
        torch.testing.assert_close(last, out, rtol=1e-4, atol=1e-4 * float(out.abs().max()))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = net(x, sigma)
    assert float((half.float() - out).abs().max() / out.abs().max()) < 0.1  # bf16 runs; its tolerance is the benchmarks'


def test_positional_timesteps_are_table_indices_on_the_table_and_fractional_between():
    net = random_network(embedding_type="positional", num_scales=11, sigma_min=0.01, sigma_max=10.0)
    table = torch.exp(torch.linspace(torch.log(torch.tensor(10.0)), torch.log(torch.tensor(0.01)), 11))
    assert torch.equal(net.timesteps(table), torch.arange(11, dtype=torch.float32))
    between = torch.sqrt(table[3] * table[4])
    assert float(net.timesteps(between[None])) == pytest.approx(3.5, abs=1e-5)
    assert net.timesteps(torch.tensor([100.0, 1e-4])).tolist() == [0.0, 10.0]  # clamped to the table


def test_a_prior_folder_round_trips_and_the_card_picks_the_architecture(tmp_path):
    net = random_network()
    card = PriorCard(name="tiny-ncsnpp", modality="CT", image_size=16, channels=1, parameterisation="ve_score",
                     normalisation={"kind": "volume-minmax"}, schedule={"kind": "ve", "sigma_min": 0.01, "sigma_max": 128.0},
                     architecture="NCSNpp")
    folder = save_prior(tmp_path / "prior", net, card, half=False)
    assert json.loads((folder / "config.json").read_text())["_class_name"] == "NCSNpp"
    prior = load_prior(folder)
    assert isinstance(prior.network, NCSNpp) and prior.card.architecture == "NCSNpp"
    x, sigma = torch.rand(2, 1, 16, 16), torch.tensor([0.05, 3.0])
    with torch.no_grad():
        torch.testing.assert_close(prior.network(x, sigma), net(x, sigma), rtol=0, atol=0)
        # D = x + sigma^2 s inside the trained range; outside it the network is asked at the nearest trained level
        torch.testing.assert_close(prior.denoiser(x, sigma), x + sigma[:, None, None, None] ** 2 * net(x, sigma))
        low = torch.tensor([0.002, 0.002])
        expected = x + (low * 0.01)[:, None, None, None] * net(x, torch.tensor([0.01, 0.01]))
        torch.testing.assert_close(prior.denoiser(x, low), expected)
    with pytest.raises(InputError, match="architecture must be one of"):
        PriorCard(**{**card.to_dict(), "architecture": "Transformer"})
