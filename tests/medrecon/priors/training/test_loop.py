"""The pixel prior's training loop (medrecon.priors.training): EDM denoising score matching on the shipped
training slices, checkpoints and exact resumes, DDP on two gloo processes, export as a prior folder,
fine-tuning from a prior, time limits, stages. The data: test_data.py; the command: commands/test_train.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from medrecon.errors import InputError
from medrecon.priors.networks import UNetConfig
from medrecon.priors.training import TrainConfig, TrainingSlices, edm_loss, load_checkpoint, train
from tests.support import CT_TRAIN as CT_FILE
from tests.support import ROOT
from tests.support import TINY_UNET_32 as TINY


def _cfg(**kw):
    base = dict(steps=6, batch_size=4, seed=3, checkpoint_every=100, log_every=100)
    base.update(kw)
    return TrainConfig(**base)


def _equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------- training
def test_training_lowers_the_loss_and_writes_outputs(ct_slices, tmp_path):
    init = train(_cfg(steps=0), TINY, ct_slices, tmp_path / "init", log=None)
    assert init["steps"] == 0
    lines = []
    rec = train(_cfg(steps=40, lr=1e-3, log_every=10), TINY, ct_slices, tmp_path / "run", log=lines.append)
    assert len(rec["losses"]) == 40 and all(torch.isfinite(torch.tensor(rec["losses"])))
    assert any("img/s" in line and "loss" in line for line in lines)

    # The same fixed batch, sigmas and noise, before and after training (model weights).
    from medrecon.priors.denoiser import EDMDenoiser
    from medrecon.priors.networks import build_unet

    g = torch.Generator().manual_seed(123)
    x0 = ct_slices.images
    sigma = torch.exp(torch.randn(x0.shape[0], generator=g) * 1.2 - 1.2)
    noise = torch.randn(x0.shape, generator=g)

    def fixed_loss(folder):
        model = EDMDenoiser(build_unet(TINY), sigma_data=0.5)
        model.load_state_dict(load_checkpoint(tmp_path / folder / "checkpoint.pt")["model"])
        with torch.no_grad():
            return float(edm_loss(model, x0, sigma, noise, 0.5))

    before, after = fixed_loss("init"), fixed_loss("run")
    assert after < 0.8 * before, (before, after)

    out = tmp_path / "run"
    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "ema.safetensors", "train_record.json", "prior"}
    record = json.loads((out / "train_record.json").read_text())
    assert record["steps"] == 40 and record["training_sources"] == ["ct-lung2"] and record["split"] == "train"
    assert record["torch"] == torch.__version__ and record["images_per_s"] > 0
    assert TrainConfig.from_dict(record["train_config"]) == _cfg(steps=40, lr=1e-3, log_every=10)
    from safetensors.torch import load_file

    ema = load_file(out / "ema.safetensors")
    assert all(v.dtype == torch.float16 for v in ema.values())
    assert ema.keys() == build_unet(TINY).state_dict().keys()


def test_checkpoint_loads_weights_only(ct_slices, tmp_path):
    train(_cfg(steps=2), TINY, ct_slices, tmp_path, log=None)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2 and {"model", "ema", "optimizer", "rng"} <= set(ckpt)
    assert not any(p.name.endswith(".partial") or ".partial" in p.name for p in tmp_path.iterdir())


def test_deterministic_with_seed(ct_slices, tmp_path):
    a = train(_cfg(steps=3), TINY, ct_slices, tmp_path / "a", log=None)
    b = train(_cfg(steps=3), TINY, ct_slices, tmp_path / "b", log=None)
    c = train(_cfg(steps=3, seed=4), TINY, ct_slices, tmp_path / "c", log=None)
    assert _equal_states(a["ema_state"], b["ema_state"]) and a["losses"] == b["losses"]
    assert not _equal_states(a["ema_state"], c["ema_state"])


def test_resume_is_exact(ct_slices, tmp_path):
    ds = TrainingSlices(ct_slices.images, modality="CT", normalisation=ct_slices.normalisation, sources=ct_slices.sources)
    whole = train(_cfg(steps=6, crop_size=16), TINY, ds, tmp_path / "whole", log=None)
    first = train(_cfg(steps=3, crop_size=16), TINY, ds, tmp_path / "parts", log=None)
    assert load_checkpoint(tmp_path / "parts" / "checkpoint.pt")["step"] == 3
    second = train(_cfg(steps=6, crop_size=16), TINY, ds, tmp_path / "parts", log=None)
    assert second["resumed_from_step"] == 3 and first["losses"] + second["losses"] == whole["losses"]
    assert _equal_states(whole["ema_state"], second["ema_state"])
    w = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    p = load_checkpoint(tmp_path / "parts" / "checkpoint.pt")
    assert _equal_states(w["model"], p["model"]) and _equal_states(w["ema"], p["ema"])


def test_refuses_mismatched_resume_and_silent_overwrite(ct_slices, tmp_path):
    train(_cfg(steps=1), TINY, ct_slices, tmp_path, log=None)
    with pytest.raises(InputError, match="config"):
        train(_cfg(steps=2, lr=1e-3), TINY, ct_slices, tmp_path, log=None)
    mr = TrainingSlices.from_files([ROOT / "data/train/mr-brain1-train64.nii.gz"], modality="mr", size=32)
    assert len(mr) == len(ct_slices)
    with pytest.raises(InputError, match="other slices"):
        train(_cfg(steps=2), TINY, mr, tmp_path, log=None)
    with pytest.raises(InputError, match="exists"):
        train(_cfg(steps=2), TINY, ct_slices, tmp_path, resume=False, log=None)
    rec = train(_cfg(steps=1), TINY, ct_slices, tmp_path, resume=False, overwrite=True, log=None)
    assert rec["resumed_from_step"] == 0


# -------------------------------------------------------------------------------------------- DDP
_DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    from medrecon.priors.networks import UNetConfig
    from medrecon.priors.training import TrainConfig, TrainingSlices, train
    out = sys.argv[1]
    ds = TrainingSlices.from_files([sys.argv[2]], modality="ct", size=32)
    tiny = UNetConfig(sample_size=32, block_out_channels=(8, 16), attention_levels=(), norm_num_groups=4, layers_per_block=1)
    rec = train(TrainConfig(steps=3, batch_size=2, seed=5, checkpoint_every=2), tiny, ds, out + "/prior", log=None)
    torch.save(rec["ema_state"], out + f"/ema-rank{os.environ['RANK']}.pt")
    """
)


def test_ddp_two_gloo_processes_agree(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(_DDP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path), str(CT_FILE)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0 = torch.load(tmp_path / "ema-rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "ema-rank1.pt", weights_only=True)
    assert _equal_states(r0, r1)
    record = json.loads((tmp_path / "prior" / "train_record.json").read_text())
    assert record["world_size"] == 2 and record["steps"] == 3
    assert load_checkpoint(tmp_path / "prior" / "checkpoint.pt")["world_size"] == 2
    # Not the same as one process on one rank's share: the gradients were averaged over both ranks.
    single = train(TrainConfig(steps=3, batch_size=2, seed=5, checkpoint_every=2), TINY,
                   TrainingSlices.from_files([CT_FILE], modality="ct", size=32), tmp_path / "single", log=None)
    assert not _equal_states(single["ema_state"], r0)


def test_training_exports_a_loadable_prior(ct_slices, tmp_path):
    from medrecon.priors.denoiser import EDMDenoiser
    from medrecon.priors.hub import load_prior
    from medrecon.priors.networks import build_unet

    out = tmp_path / "ct-tiny"
    rec = train(_cfg(steps=3), TINY, ct_slices, out, log=None)
    prior = load_prior(out / "prior")
    assert prior.card.modality == "CT" and prior.card.parameterisation == "edm" and prior.card.image_size == 32
    assert prior.card.normalisation == {"kind": "hu-window", "low": -1000.0, "high": 2000.0}
    assert "training split" in prior.card.training["summary"]
    net = build_unet(TINY)
    net.load_state_dict({k: v.half().float() for k, v in rec["ema_state"].items()})  # weights ship in float16
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(prior.denoiser(x, 0.3), EDMDenoiser(net.eval())(x, 0.3), rtol=1e-4, atol=1e-4)


def test_fine_tuning_starts_from_a_prior(ct_slices, tmp_path):
    from medrecon.priors.hub import load_prior

    train(_cfg(steps=3), TINY, ct_slices, tmp_path / "base", log=None)
    base = tmp_path / "base" / "prior"
    shipped = {k: v.float() for k, v in load_prior(base).network.state_dict().items()}
    start = train(_cfg(steps=0, init_from=str(base)), TINY, ct_slices, tmp_path / "start", log=None)
    assert _equal_states(start["ema_state"], shipped)  # model and EMA begin at the prior's weights
    assert start["initialised_from"]["prior"] == "base" and start["initialised_from"]["steps"] == 3  # its card's name
    tuned = train(_cfg(steps=2, init_from=str(base), p_mean=0.0), TINY, ct_slices, tmp_path / "tuned", log=None)
    fresh = train(_cfg(steps=2, p_mean=0.0), TINY, ct_slices, tmp_path / "fresh", log=None)
    assert not _equal_states(tuned["ema_state"], fresh["ema_state"])
    card_record = load_prior(tmp_path / "tuned" / "prior").card.training["record"]
    assert card_record["initialised_from"]["prior"] == "base" and card_record["train_config"]["init_from"] == "base"

    other = UNetConfig(sample_size=32, block_out_channels=(8, 8), attention_levels=(), norm_num_groups=4, layers_per_block=1)
    with pytest.raises(InputError, match="UNet config"):
        train(_cfg(steps=1, init_from=str(base)), other, ct_slices, tmp_path / "x", log=None)
    with pytest.raises(InputError, match="sigma_data"):
        train(_cfg(steps=1, init_from=str(base), sigma_data=1.0), TINY, ct_slices, tmp_path / "y", log=None)
    with pytest.raises(InputError, match="config"):  # a resume must keep the init prior
        train(_cfg(steps=3, init_from=str(base)), TINY, ct_slices, tmp_path / "fresh", log=None)


def test_time_limit_stops_cleanly_and_the_same_command_resumes(ct_slices, tmp_path):
    from medrecon.priors.hub import load_prior
    from medrecon.priors.training import TimeBudget

    out = tmp_path / "budget"
    rec = train(_cfg(steps=50), TINY, ct_slices, out, log=None, time_limit=1e-6, name="ct-budget")
    assert rec["steps"] == 1 and rec["stopped_by_time_limit"] and rec["time_limit_s"] == 1e-6
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 1 and (out / "ema.safetensors").is_file()
    card = load_prior(out / "prior").card
    assert card.name == "ct-budget" and "time limit" in card.training["summary"]
    assert card.training["record"]["steps"] == 1
    resumed = train(_cfg(steps=3), TINY, ct_slices, out, log=None)  # the same run, no budget this time
    assert resumed["resumed_from_step"] == 1 and resumed["steps"] == 3 and not resumed["stopped_by_time_limit"]
    whole = train(_cfg(steps=3), TINY, ct_slices, tmp_path / "whole", log=None)
    assert _equal_states(resumed["ema_state"], whole["ema_state"])  # stopping early loses nothing
    for bad in (0, -1.0, "10"):
        with pytest.raises(InputError, match="time_limit"):
            TimeBudget(bad)


# ------------------------------------------------------------------------------ one loop, stages
def test_the_autoencoder_stage_stops_and_resumes_like_the_pixel_one(ct_slices, tmp_path):
    """The time limit, checkpoint and exact resume are the loop's: they hold for the autoencoder
    stage as for the pixel one, which supplies only its model, loss and exports."""
    from medrecon.priors.networks import AutoencoderConfig
    from medrecon.priors.training import AutoencoderTrainConfig, train_autoencoder

    ae = AutoencoderConfig(block_out_channels=(8, 16), norm_num_groups=4, sample_size=32, latent_channels=4)

    def cfg(steps):
        return AutoencoderTrainConfig(steps=steps, batch_size=4, lr=1e-3, seed=5, checkpoint_every=100, log_every=100)

    out, lines = tmp_path / "budget", []
    stopped = train_autoencoder(cfg(50), ae, ct_slices, out, log=lines.append, time_limit=1e-6)
    assert stopped["steps"] == 1 and stopped["stopped_by_time_limit"] and stopped["time_limit_s"] == 1e-6
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 1 and (out / "autoencoder" / "config.json").is_file()
    assert any("time limit" in line and "autoencoder step 1/50" in line for line in lines)
    resumed = train_autoencoder(cfg(3), ae, ct_slices, out, log=None)  # the same run, no budget this time
    whole = train_autoencoder(cfg(3), ae, ct_slices, tmp_path / "whole", log=None)
    assert resumed["resumed_from_step"] == 1 and not resumed["stopped_by_time_limit"]
    assert stopped["losses"] + resumed["losses"] == whole["losses"] and stopped["l1"] + resumed["l1"] == whole["l1"]
    assert _equal_states(load_checkpoint(out / "checkpoint.pt")["model"], load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"])
    assert resumed["scaling_factor"] == whole["scaling_factor"]
    with pytest.raises(InputError, match="differs"):  # another stage's checkpoint is refused, not misread
        train(_cfg(steps=2), TINY, ct_slices, out, log=None)


def test_a_stage_is_only_the_pieces_it_supplies(ct_slices, tmp_path):
    """A new kind of training is a Stage: model, loss of a batch given the step's generator,
    identity, exports. Seeding, EMA, checkpoints, exact resume and the record come from the loop."""
    from medrecon.priors.training import AutoencoderTrainConfig
    from medrecon.priors.training.loop import EMA, RunOptions, Stage, run

    class Smoother(Stage):
        name, stream, distributed, ema, metric_names = "smoother", "smooth-step", False, EMA(0.9, warmup=False), ("mse",)

        def __init__(self, config):
            self.config = config

        def build(self):
            return torch.nn.Conv2d(1, 1, 3, padding=1)

        def loss(self, model, x, generator):
            noisy = x + 0.1 * torch.randn(x.shape, generator=generator).to(x.device)
            mse = ((model(noisy) - x) ** 2).mean()
            return mse, {"mse": mse}

        def identity(self):
            return {"stage": "smoother"}

        def record_fields(self, trained):
            return {"kernel_sum": float(trained.ema.weight.sum())}

        def export(self, trained, record):
            torch.save(trained.ema.state_dict(), trained.out_dir / "smoother.pt")

    def cfg(steps):
        return AutoencoderTrainConfig(steps=steps, batch_size=4, lr=1e-2, seed=2, checkpoint_every=100, log_every=100)

    whole = run(Smoother(cfg(6)), ct_slices, RunOptions(tmp_path / "whole", log=None))
    first = run(Smoother(cfg(3)), ct_slices, RunOptions(tmp_path / "parts", log=None))
    second = run(Smoother(cfg(6)), ct_slices, RunOptions(tmp_path / "parts", log=None))
    assert first["losses"] + second["losses"] == whole["losses"] and first["mse"] + second["mse"] == whole["mse"]
    assert first["losses"] == first["mse"] and second["resumed_from_step"] == 3
    w, p = load_checkpoint(tmp_path / "whole" / "checkpoint.pt"), load_checkpoint(tmp_path / "parts" / "checkpoint.pt")
    assert p["stage"] == "smoother" and _equal_states(w["model"], p["model"]) and _equal_states(w["ema"], p["ema"])
    record = json.loads((tmp_path / "parts" / "train_record.json").read_text())
    assert record["steps"] == 6 and record["stage"] == "smoother" and record["kernel_sum"] == second["kernel_sum"]
    assert (tmp_path / "parts" / "smoother.pt").is_file()
    with pytest.raises(InputError, match="differs"):
        train(_cfg(steps=2), TINY, ct_slices, tmp_path / "parts", log=None)


def test_the_card_states_the_grid_of_the_training_slices_not_the_crop(ct_slices, tmp_path):
    import dataclasses

    from medrecon.priors.hub import load_prior

    # a UNet whose nominal sample_size is the crop's, trained on 16x16 crops of the 32x32 slices
    train(_cfg(steps=2, crop_size=16), dataclasses.replace(TINY, sample_size=16), ct_slices, tmp_path / "crops", log=None)
    assert load_prior(tmp_path / "crops" / "prior").card.image_size == ct_slices.size == 32
