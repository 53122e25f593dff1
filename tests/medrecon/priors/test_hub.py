"""Prior folders: save/load round trip, checksums, refusals, and diffusers-made folders."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from medrecon.errors import InputError, MissingResourceError
from medrecon.priors.denoiser import EDMDenoiser, VPEpsilonDenoiser
from medrecon.priors.hub import CARD_FILE, WEIGHTS_FILE, PriorCard, load_prior, save_prior, sha256_of
from medrecon.priors.networks import UNetConfig, build_unet
from tests.support import absolute_paths

TINY = UNetConfig(sample_size=16, block_out_channels=(8, 16), attention_levels=(1,), norm_num_groups=4, layers_per_block=1)


def card(**changes) -> PriorCard:
    base = dict(name="tiny", modality="CT", image_size=16, channels=1, parameterisation="edm",
                normalisation={"kind": "hu_window", "low": -1000, "high": 2000})
    return PriorCard(**{**base, **changes})


def tiny_unet(seed=0):
    torch.manual_seed(seed)  # test-only: diffusers initialises from the global generator
    return build_unet(TINY).eval()


def test_round_trip_gives_identical_outputs(tmp_path):
    net = tiny_unet()
    folder = save_prior(tmp_path / "prior", net, card(), half=False)
    prior = load_prior(folder)
    x, sigma = torch.randn(2, 1, 16, 16), torch.tensor([0.1, 3.0])
    with torch.no_grad():
        reference = EDMDenoiser(net, sigma_data=0.5)(x, sigma)
        torch.testing.assert_close(prior.denoiser(x, sigma), reference, rtol=0, atol=0)
    saved = json.loads((folder / CARD_FILE).read_text())
    assert saved["sha256"][WEIGHTS_FILE] and saved["normalisation"]["high"] == 2000


def test_half_precision_weights_are_small_and_close(tmp_path):
    net = tiny_unet()
    full = save_prior(tmp_path / "full", net, card(), half=False)
    half = save_prior(tmp_path / "half", net, card(), half=True)
    assert (half / WEIGHTS_FILE).stat().st_size < 0.6 * (full / WEIGHTS_FILE).stat().st_size
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        a, b = load_prior(full).denoiser(x, 0.5), load_prior(half).denoiser(x, 0.5)
    torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)


def test_damaged_or_incomplete_folders_are_refused(tmp_path):
    folder = save_prior(tmp_path / "p", tiny_unet(), card())
    weights = folder / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="does not match the card"):
        load_prior(folder)
    weights.unlink()
    with pytest.raises(InputError, match="which is missing"):
        load_prior(folder)
    (folder / CARD_FILE).unlink()
    with pytest.raises(InputError, match="not a prior folder"):
        load_prior(folder)
    with pytest.raises(InputError, match="exists"):
        save_prior(folder, tiny_unet(), card())


def test_shipped_priors_load_by_name_and_missing_ones_are_explained(tmp_path, monkeypatch):
    import medrecon.priors.hub as hub

    for name, modality in (("ct-starter", "CT"), ("mr-starter", "MR"), ("ct-starter-latent", "CT"), ("mr-starter-latent", "MR")):
        prior = load_prior(name)  # local files only; the checksums are verified on load
        assert prior.card.name == name and prior.card.modality == modality and prior.card.image_size == 256
        assert (prior.latent is not None) == name.endswith("-latent") and prior.card.training.get("summary")
    with pytest.raises(MissingResourceError, match="no prior folder 'nope'"):
        load_prior("nope")
    monkeypatch.setattr(hub, "WEIGHTS_DIR", tmp_path)  # an install without the weight files
    with pytest.raises(MissingResourceError, match="not shipped with this version"):
        load_prior("ct-starter")


def test_shipped_cards_hold_no_machine_paths():
    from medrecon.priors.hub import SHIPPED, WEIGHTS_DIR

    for name in SHIPPED:
        card = json.loads((WEIGHTS_DIR / name / "medrecon_prior.json").read_text())
        assert absolute_paths(card) == [], f"{name}: the card holds machine paths"


def test_shipped_pixel_priors_tell_their_whole_lineage():
    for name in ("ct-starter", "mr-starter"):
        training = load_prior(name).card.training
        lineage = training["lineage"]
        assert [stage["device"] for stage in lineage][0].startswith("2-core") and "H200" in lineage[-1]["device"]
        for stage in lineage:
            assert stage["steps"] > 0 and stage["images"] == stage["steps"] * stage["batch_size"] and stage["seconds"] > 0
        assert lineage[-1]["weights_sha256"] == load_prior(name).card.sha256["diffusion_pytorch_model.safetensors"]


def test_card_validation():
    with pytest.raises(InputError, match="parameterisation"):
        card(parameterisation="flow")
    with pytest.raises(InputError, match="needs schedule.alphas_cumprod"):
        card(parameterisation="vp_epsilon")


def test_a_diffusers_pipeline_folder_loads_as_a_vp_epsilon_prior(tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler

    net = tiny_unet(1)
    scheduler = DDPMScheduler(num_train_timesteps=100)
    DDPMPipeline(unet=net, scheduler=scheduler).save_pretrained(tmp_path / "ddpm")
    prior = load_prior(tmp_path / "ddpm")
    assert isinstance(prior.denoiser, VPEpsilonDenoiser) and prior.card.parameterisation == "vp_epsilon"
    # at a table sigma the denoiser is x - sigma * eps(sqrt(abar) x, t), computed here by hand
    t = 40
    abar = scheduler.alphas_cumprod[t].double()
    sigma = float(torch.sqrt((1 - abar) / abar))
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        eps = net(x * abar.sqrt().float(), torch.full((2,), float(t))).sample
        torch.testing.assert_close(prior.denoiser(x, sigma), x - sigma * eps, rtol=1e-4, atol=1e-4)


def test_pickled_weights_load_only_as_plain_tensors(tmp_path):
    net = tiny_unet()
    folder = save_prior(tmp_path / "p", net, card(), half=False)
    (folder / WEIGHTS_FILE).unlink()
    torch.save(net.state_dict(), folder / "diffusion_pytorch_model.bin")  # torch's own (safe) pickle
    payload = json.loads((folder / CARD_FILE).read_text())
    payload["sha256"] = {"diffusion_pytorch_model.bin": sha256_of(folder / "diffusion_pytorch_model.bin")}
    (folder / CARD_FILE).write_text(json.dumps(payload))
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(load_prior(folder).denoiser(x, 1.0), load_prior(folder).denoiser(x, 1.0))

    class Evil:
        def __reduce__(self):
            return (print, ("this would run code",))

    (folder / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"w": Evil()}, protocol=2))
    payload["sha256"] = {"diffusion_pytorch_model.bin": sha256_of(folder / "diffusion_pytorch_model.bin")}
    (folder / CARD_FILE).write_text(json.dumps(payload))
    with pytest.raises(InputError, match="weights_only=True"):
        load_prior(folder)


def test_list_priors_shows_shipped_status_and_local_folders(tmp_path, capsys):
    from medrecon.commands import main
    from medrecon.priors.hub import list_priors

    save_prior(tmp_path / "mine", tiny_unet(), card(name="mine"))
    rows = {r["name"]: r for r in list_priors([tmp_path])}
    assert rows["ct-starter"]["status"] == "available" and rows["ct-starter"]["modality"] == "CT"
    assert rows["mine"]["status"] == "available" and rows["mine"]["modality"] == "CT" and rows["mine"]["size"] == 16
    assert main(["priors", str(tmp_path)]) == 0
    assert "mine" in capsys.readouterr().out
    with pytest.raises(InputError, match="is not a folder"):
        list_priors([tmp_path / "nope"])
