"""The prior benchmark's machinery on the real validation sample and a tiny (untrained) prior."""

from pathlib import Path

import torch

from medrecon.benchmarks.prior import denoising_table, sample_grid, to_markdown
from medrecon.priors.hub import PriorCard, load_prior, save_prior
from medrecon.priors.networks import UNetConfig, build_unet
from medrecon.priors.training_data import Normalisation, resample_slices
from medrecon.study import load_study

DATA = Path(__file__).resolve().parents[2] / "data"


def test_table_and_grid(tmp_path):
    torch.manual_seed(0)  # test-only: diffusers initialises from the global generator
    net = build_unet(UNetConfig(sample_size=32, block_out_channels=(8, 16), attention_levels=(), norm_num_groups=4, layers_per_block=1))
    card = PriorCard("tiny-mr", "MR", 32, 1, "edm", Normalisation.for_modality("MR").to_dict())
    prior = load_prior(save_prior(tmp_path / "tiny", net, card))
    study = load_study(DATA / "mr-brain2-sample.nii.gz", modality="MR")
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
