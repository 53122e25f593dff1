"""The prior benchmark's machinery on the real validation sample and a tiny (untrained) prior."""


import torch

from medrecon.benchmarks.prior import denoising_table, sample_grid, to_markdown
from medrecon.io.studies import load_study
from medrecon.priors.hub import PriorCard, load_prior, save_prior
from medrecon.priors.networks import UNetConfig, build_unet
from medrecon.priors.normalisation import Normalisation, resample_slices
from tests.support import MR_SAMPLE


def test_table_and_grid(tmp_path):
    torch.manual_seed(0)  # test-only: diffusers initialises from the global generator
    net = build_unet(UNetConfig(sample_size=32, block_out_channels=(8, 16), attention_levels=(), norm_num_groups=4, layers_per_block=1))
    card = PriorCard("tiny-mr", "MR", 32, 1, "edm", Normalisation.for_modality("MR").to_dict())
    prior = load_prior(save_prior(tmp_path / "tiny", net, card))
    study = load_study(MR_SAMPLE, modality="MR")
    clean = resample_slices(Normalisation.from_dict(prior.card.normalisation).apply(study.voxels)[:3], 32)
    rows = denoising_table(prior, clean, [0.1, 0.3])
    assert [r["sigma"] for r in rows] == [0.1, 0.3]
    for r in rows:
        assert r["wavelet"] > r["noisy"]  # the classical reference does denoise
        assert all(torch.isfinite(torch.tensor([r["prior"], r["prior_seconds_per_slice"]])))
    sample_grid(prior, clean, tmp_path / "grid.png", n=3, steps=3)
    assert (tmp_path / "grid.png").stat().st_size > 100
    text = to_markdown(prior, rows, "mr-brain2", 3, "grid.png", "medrecon bench prior tiny")
    assert "| 0.1 |" in text and "wavelet" in text


def test_contrast_shift_rows_denoise_the_remapped_slices():
    from medrecon.benchmarks.prior import shift_markdown
    from medrecon.contrast import remap

    prior = load_prior("mr-starter")
    study = load_study(MR_SAMPLE, modality="MR")
    clean = resample_slices(Normalisation.from_dict(prior.card.normalisation).apply(study.voxels)[3:4], prior.card.image_size)
    plain = denoising_table(prior, clean, [0.1])[0]
    inverted = denoising_table(prior, remap(clean, "invert"), [0.1])[0]
    assert plain["prior"] != inverted["prior"] and inverted["wavelet"] > inverted["noisy"]
    text = "\n".join(shift_markdown({"invert": [inverted]}))
    assert "| invert | 0.1 |" in text and f"{inverted['prior'] - inverted['wavelet']:+.2f}" in text


def test_latent_prior_table_and_grid_with_the_shipped_latent_prior(tmp_path):
    from medrecon.benchmarks.prior import latent_denoising_table

    prior = load_prior("mr-starter-latent")
    study = load_study(MR_SAMPLE, modality="MR")
    clean = resample_slices(Normalisation.from_dict(prior.card.normalisation).apply(study.voxels)[:2], prior.card.image_size)
    rows, round_trip = latent_denoising_table(prior, clean, [0.5])
    from medrecon.benchmarks.prior import _psnr

    blank = _psnr(torch.zeros_like(clean) + clean.mean(), clean)
    assert round_trip > blank + 6  # the trained autoencoder reproduces real slices, far better than their mean
    assert rows[0]["prior"] <= round_trip + 0.5 and rows[0]["prior"] > rows[0]["noisy"]  # it denoises latents
    sample_grid(prior, clean, tmp_path / "grid.png", n=2, steps=2)
    assert (tmp_path / "grid.png").stat().st_size > 100
    text = to_markdown(prior, rows, "mr-brain2", 2, None, "medrecon bench prior mr-starter-latent", round_trip)
    assert "round trip" in text and "| 0.5 |" in text
