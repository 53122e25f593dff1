"""The autoencoder stage of latent priors (medrecon.priors.training.autoencoder): it lowers the
reconstruction loss, scales latents to unit std, and resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch

from medrecon.errors import InputError
from medrecon.priors.hub import load_autoencoder
from medrecon.priors.latent import LatentPrior
from medrecon.priors.networks import build_autoencoder
from medrecon.priors.training import (
    AutoencoderTrainConfig,
    autoencoder_loss,
    load_checkpoint,
    train_autoencoder,
)
from medrecon.priors.training.loop import _seed
from tests.support import TINY_AE_32 as AE


def _ae_cfg(**kw):
    base = dict(steps=6, batch_size=4, lr=1e-3, seed=5, checkpoint_every=100, log_every=100)
    base.update(kw)
    return AutoencoderTrainConfig(**base)


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
