"""Weight-space interpolation of a prior and its continuation (medrecon.priors.interpolation, WiSE-FT)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from medrecon.commands import main
from medrecon.errors import InputError
from medrecon.priors.hub import CARD_FILE, WEIGHTS_FILE, load_prior, sha256_of
from medrecon.priors.interpolation import interpolate_priors
from tests import support


@pytest.fixture
def two_priors(tmp_path):
    """A tiny base prior and a 'continuation': the same network with other weights and a train record."""
    base = support.saved_unet_prior(tmp_path / "base", "MR", size=16)
    tuned = support.saved_unet_prior(tmp_path / "tuned", "MR", size=16)
    weights = {k: v + 0.01 * (1 + torch.arange(v.numel(), dtype=v.dtype).reshape(v.shape) % 7)
               for k, v in load_file(str(tuned / WEIGHTS_FILE)).items()}
    save_file(weights, str(tuned / WEIGHTS_FILE))
    card = json.loads((tuned / CARD_FILE).read_text())
    card["name"] = "tiny-tuned"
    card["sha256"] = {WEIGHTS_FILE: sha256_of(tuned / WEIGHTS_FILE)}
    card["training"] = {"summary": "continued (tests)", "data": {"augmentation": {"intensity": {"p_gamma": 0.2}},
                                                                  "sources": [{"id": "mr-brain1"}]},
                        "record": {"steps_this_run": 30, "seconds_this_run": 4.0, "device": "cpu", "torch": "2",
                                   "train_config": {"batch_size": 2, "lr": 5e-5, "crop_size": 8, "seed": 1}}}
    (tuned / CARD_FILE).write_text(json.dumps(card))
    return base, tuned


def test_the_interpolated_prior_has_the_mixed_weights_and_tells_its_parents(tmp_path, two_priors):
    base, tuned = two_priors
    out = interpolate_priors(base, tuned, 0.25, tmp_path / "mixed")
    a, b, mixed = (load_file(str(p / WEIGHTS_FILE)) for p in (base, tuned, out))
    for key in a:
        expected = (0.75 * a[key].double() + 0.25 * b[key].double()).to(b[key].dtype)
        torch.testing.assert_close(mixed[key], expected)
    prior = load_prior(out)  # loads like any prior, its checksum verified
    assert prior.card.name == "mixed" and prior.card.modality == "MR" and prior.card.image_size == 16
    training = prior.card.training
    assert training["interpolation"]["base"]["weight"] == 0.75 and training["interpolation"]["tuned"]["weight"] == 0.25
    run, last = training["lineage"][-2], training["lineage"][-1]
    assert run["stage"] == "tiny-tuned" and run["steps"] == 30 and run["images"] == 60 and run["init"] == "tiny-mr"
    assert run["weights_sha256"] == last["tuned"]["sha256"] == sha256_of(tuned / WEIGHTS_FILE)
    assert last["stage"] == "weight-interpolation" and "WiSE-FT" in training["summary"]
    assert training["data"]["augmentation"]["intensity"]["p_gamma"] == 0.2


def test_the_ends_of_the_line_are_the_parents(tmp_path, two_priors):
    base, tuned = two_priors
    for weight, parent in ((0.0, base), (1.0, tuned)):
        out = interpolate_priors(base, tuned, weight, tmp_path / f"w{weight}")
        for key, value in load_file(str(parent / WEIGHTS_FILE)).items():
            assert torch.equal(load_file(str(out / WEIGHTS_FILE))[key], value)


def test_priors_of_other_networks_or_a_bad_weight_are_refused(tmp_path, two_priors, capsys):
    base, tuned = two_priors
    other = support.saved_unet_prior(tmp_path / "other", "MR", size=32)
    with pytest.raises(InputError, match="image_size"):
        interpolate_priors(base, other, 0.5, tmp_path / "x")
    with pytest.raises(InputError, match=r"in \[0, 1\]"):
        interpolate_priors(base, tuned, 1.5, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert main(["priors", "interpolate", str(base), str(tuned), "--weight", "0.5", "-o", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / WEIGHTS_FILE).is_file()
    assert main(["priors", "interpolate", str(base), str(tuned), "--weight", "0.5", "-o", str(tmp_path / "cli")]) == 2
    assert "exists" in capsys.readouterr().err
