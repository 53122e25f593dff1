"""NCSN++ priors: score_sde PyTorch and Flax checkpoints -> medrecon's NCSN++, held to the reference code.

The fixtures (tests/fixtures/conversion/, written by scripts/make_conversion_fixtures.py from
score_sde_pytorch, score-MRI, DiffusionMBIR and the Flax original of score_inverse_problems, which
the tests do not need) hold checkpoints as recipes: the published medical configurations at reduced
width and size, and variants exercising every other switch. A PyTorch case is rebuilt into its
score_sde container (model, EMA, optimizer, step) and saved with ``torch.save``; a Flax case into
score_sde's ``State`` and written as the msgpack bytes Flax writes (their sha256 recorded from
Flax itself). Each is converted and must reproduce the reference network's output, raw and as
``D(x, sigma) = x + sigma^2 s``, within a maximum relative difference of 1e-5 in float32.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medrecon.commands import main
from medrecon.errors import InputError
from medrecon.priors.convert import convert_checkpoint, expected_source_shapes, read_flags
from medrecon.priors.convert.flax import read_msgpack
from medrecon.priors.convert.presets import PRESETS
from medrecon.priors.hub import CARD_FILE, load_prior
from medrecon.priors.ncsnpp import NCSNpp
from tests import support
from tests.support import load_script

FIXTURES = support.FIXTURES / "conversion"
TOLERANCE = 1e-5
TORCH_CASES = ("ncsnpp_tiny", "chung2022_knee_reduced", "chung2023_aapm_reduced", "ncsnpp_variant_torch")
FLAX_CASES = ("song2022_lidc_reduced", "song2022_brats_reduced", "ncsnpp_variant_flax", "ncsnpp_variant_flax_plain")
NCSNPP_PRESETS = [n for n, p in PRESETS.items() if p.format == "ncsnpp"]


@pytest.fixture(scope="module")
def scripts():
    return load_script("make_conversion_fixtures"), load_script("ncsnpp_fixtures")


def record(case: str) -> dict:
    return json.loads((FIXTURES / f"{case}.json").read_text())


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def flags_file(tmp_path: Path, flags: dict, **changes) -> Path:
    path = tmp_path / f"flags-{len(list(tmp_path.glob('flags-*')))}.json"
    path.write_text(json.dumps({**flags, **changes}))
    return path


@pytest.fixture(scope="module")
def checkpoints(scripts, tmp_path_factory) -> dict[str, Path]:
    """Every NCSN++ fixture rebuilt from its recipe in its native container."""
    script, nf = scripts
    root = tmp_path_factory.mktemp("ncsnpp-checkpoints")
    out = {}
    for case in TORCH_CASES + FLAX_CASES:
        rec = record(case)
        if rec["container"] == "torch":
            tensors = script.fill(rec["slots"], rec["seed"])
            assert script.digest(tensors) == rec["sha256"], f"{case}: the recipe no longer gives the reference's weights"
            out[case] = root / f"{case}.pth"
            torch.save(script.materialise(rec["skeleton"], tensors), out[case])
        else:
            tensors = script.fill(nf.flax_slots(rec["params"]), rec["seed"])
            assert script.digest(tensors) == rec["sha256"], f"{case}: the recipe no longer gives the reference's weights"
            data = nf.msgpack_bytes(nf.flax_state(rec, tensors))
            assert hashlib.sha256(data).hexdigest() == rec["file_sha256"], f"{case}: not the bytes Flax wrote"
            out[case] = root / case / "checkpoint_101"
            out[case].parent.mkdir()
            out[case].write_bytes(data)
    return out


@pytest.fixture(scope="module")
def converted(checkpoints, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ncsnpp-converted")
    return {case: convert_checkpoint(path, root / case, fmt="ncsnpp", flags=record(case)["flags"], modality="CT",
                                     normalisation="volume-minmax") for case, path in checkpoints.items()}


# ------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("case", TORCH_CASES + FLAX_CASES)
def test_converted_ncsnpp_computes_what_the_reference_computes(converted, checkpoints, scripts, case):
    _, nf = scripts
    rec, prior = record(case), load_prior(converted[case])
    with np.load(FIXTURES / f"{case}.npz") as data:
        reference = torch.from_numpy(data["out_raw"])
    sigma = torch.tensor(rec["sigmas"])
    x = nf.reference_inputs(rec["input_seed"], tuple(reference.shape), rec["sigmas"])
    with torch.no_grad():
        assert relative_difference(prior.network(x, sigma), reference) <= TOLERANCE
        expected = x + sigma[:, None, None, None] ** 2 * reference  # Tweedie: D = x + sigma^2 s(x, sigma)
        assert relative_difference(prior.denoiser(x, sigma), expected) <= TOLERANCE
    card = json.loads((converted[case] / CARD_FILE).read_text())
    assert card["parameterisation"] == "ve_score" and card["architecture"] == "NCSNpp" and isinstance(prior.network, NCSNpp)
    assert card["schedule"] == {"kind": "ve", "sigma_min": rec["flags"]["sigma_min"], "sigma_max": rec["flags"]["sigma_max"]}
    assert card["training"]["converted"]["container"] == rec["container"]
    assert card["training"]["converted"]["weights"].startswith("EMA weights")
    # every reference parameter is converted, except the Dense_0 layers score_sde_pytorch creates in the
    # residual blocks of an unconditional network and never calls (counted from the checkpoint itself)
    unused = 0
    if rec["container"] == "torch" and not rec["flags"]["conditional"]:
        model = torch.load(checkpoints[case], weights_only=True)["model"]
        unused = sum(v.numel() for k, v in model.items() if ".Dense_0." in k)
        assert unused > 0
    assert sum(p.numel() for p in prior.network.parameters()) + unused == rec["parameters"]


def test_the_ema_is_what_is_converted_not_the_training_weights(checkpoints, scripts, tmp_path):
    script, nf = scripts
    for case in ("chung2022_knee_reduced", "song2022_lidc_reduced"):
        rec = record(case)
        if rec["container"] == "torch":  # the 'model' entry alone, as a bare state dict
            source = tmp_path / "model-only.pt"
            torch.save(torch.load(checkpoints[case], weights_only=True)["model"], source)
        else:  # the optimizer's target (the training weights) as a bare parameter tree
            source = tmp_path / "target"
            state = read_msgpack(checkpoints[case])
            source.write_bytes(nf.msgpack_bytes({"params": as_numpy(state["optimizer"]["target"])}))
        prior = load_prior(convert_checkpoint(source, tmp_path / case, fmt="ncsnpp", flags=rec["flags"], modality="MR",
                                              normalisation="slice-minmax"))
        assert prior.card.training["converted"]["weights"] == "the state dict as stored" or \
            prior.card.training["converted"]["weights"] == "the parameter tree as stored"
        with np.load(FIXTURES / f"{case}.npz") as data:
            reference = torch.from_numpy(data["out_raw"])
        x = nf.reference_inputs(rec["input_seed"], tuple(reference.shape), rec["sigmas"])
        with torch.no_grad():
            assert relative_difference(prior.network(x, torch.tensor(rec["sigmas"])), reference) > 1e-3


def as_numpy(tree: dict) -> dict:
    return {k: as_numpy(v) if isinstance(v, dict) else v.numpy() for k, v in tree.items()}


# ----------------------------------------------------------------------- published presets
@pytest.mark.parametrize("name", NCSNPP_PRESETS)
def test_the_converter_expects_exactly_the_tensors_of_each_published_architecture(scripts, name):
    _, nf = scripts
    published = json.loads((FIXTURES / "published.json").read_text())[name]
    expected = expected_source_shapes("ncsnpp", read_flags("ncsnpp", PRESETS[name].flags), published["container"])
    assert nf.tensor_digest(expected) == published["tensors_sha256"] and len(expected) == published["tensor_count"]
    assert published["flags_checked_against"] and published["parameters"] == sum(int(np.prod(s)) for s in expected.values())
    full = published["full_size"]  # the comparison at the published width and size (docs/priors.md)
    assert full["max_relative_difference_D"] <= TOLERANCE and full["max_relative_difference_raw"] <= TOLERANCE
    assert full["input"][-1] == PRESETS[name].flags["image_size"]


@pytest.mark.parametrize("name, kind", [("song2022-lidc-320", "volume-minmax"), ("song2022-brats-240", "volume-clip-minmax"),
                                        ("chung2022-fastmri-knee-320", "slice-minmax"), ("chung2023-aapm-256", "user-choice")])
def test_each_preset_states_the_normalisation_its_paper_used(name, kind):
    from medrecon.priors.normalisation import Normalisation

    stated = PRESETS[name].normalisation
    assert stated["kind"] == kind and stated["note"] and Normalisation.from_dict(stated).kind == kind
    assert all(p.normalisation["kind"] != "unknown" and not p.refusal for p in PRESETS.values())


def test_song_lidc_converts_with_its_preset_at_full_size(scripts, tmp_path, capsys):
    """A Flax ``params_ema`` tree of the published LIDC network (4.1 M random weights, written with the
    converter's expected names and shapes, which the test above ties to the reference), through the command."""
    script, nf = scripts
    flags = read_flags("ncsnpp", PRESETS["song2022-lidc-320"].flags)
    shapes = expected_source_shapes("ncsnpp", flags, "flax")
    params = [[path, list(shape), 0.0, 0.05] for path, shape in shapes.items()]
    tensors = script.fill(nf.flax_slots(params), 7)
    state = nf.flax_state({"params": params, "step": 101000, "seed": 7}, tensors)
    source = tmp_path / "checkpoint_101"
    source.write_bytes(nf.msgpack_bytes({k: state[k] for k in ("step", "ema_rate", "params_ema")}))
    out = tmp_path / "song-lidc"
    assert main(["priors", "convert", "--format", "ncsnpp", str(source), "-o", str(out), "--preset", "song2022-lidc-320"]) == 0
    prior = load_prior(out)
    card = prior.card
    assert (card.modality, card.image_size, card.channels, card.architecture) == ("CT", 320, 1, "NCSNpp")
    assert card.normalisation["kind"] == "volume-minmax" and card.schedule["sigma_max"] == 128.0
    assert card.training["converted"]["preset"]["name"] == "song2022-lidc-320"
    assert sum(p.numel() for p in prior.network.parameters()) == 4119015
    with torch.no_grad():  # it runs (at 64x64: the weights do not depend on the size)
        assert torch.isfinite(prior.denoiser(torch.rand(1, 1, 64, 64), 1.0)).all()


# ---------------------------------------------------------------------------- refusals
def convert_error(tmp_path, source, **kwargs) -> str:
    out = tmp_path / "out"
    with pytest.raises(InputError) as info:
        convert_checkpoint(source, out, fmt="ncsnpp", modality=kwargs.pop("modality", "CT"),
                           normalisation=kwargs.pop("normalisation", "volume-minmax"), **kwargs)
    assert not out.exists() and "\n" not in str(info.value)
    return str(info.value)


def test_files_that_are_neither_container_are_refused(tmp_path, checkpoints):
    flags = record("song2022_lidc_reduced")["flags"]
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    assert "is neither a Flax msgpack state nor a PyTorch checkpoint" in convert_error(tmp_path, text, flags=flags)
    truncated = tmp_path / "checkpoint_1"
    truncated.write_bytes(checkpoints["song2022_lidc_reduced"].read_bytes()[:5000])
    assert "truncated" in convert_error(tmp_path, truncated, flags=flags)
    trailing = tmp_path / "checkpoint_2"
    trailing.write_bytes(checkpoints["song2022_lidc_reduced"].read_bytes() + b"\x00")
    assert "1 bytes follow the msgpack value" in convert_error(tmp_path, trailing, flags=flags)
    _, nf = load_script("make_conversion_fixtures"), load_script("ncsnpp_fixtures")
    other = tmp_path / "checkpoint_3"
    other.write_bytes(nf.msgpack_bytes({"step": 1, "optimizer": {"target": {}}}))
    assert "without 'params_ema'" in convert_error(tmp_path, other, flags=flags)


def test_flags_that_do_not_fit_name_the_first_mismatch(tmp_path, checkpoints):
    lidc, knee = record("song2022_lidc_reduced")["flags"], record("chung2022_knee_reduced")["flags"]
    flax, pth = checkpoints["song2022_lidc_reduced"], checkpoints["chung2022_knee_reduced"]
    # the first tensor in the network's order: the Fourier features (nf frequencies)
    assert "'GaussianFourierProjection_0/W' is (16,); these flags need (32,)" in convert_error(tmp_path, flax, flags={**lidc, "nf": 32})
    message = convert_error(tmp_path, flax, flags={**lidc, "num_channels": 3})
    assert "'Conv_0/kernel' is (3, 3, 1, 16); these flags need (3, 3, 3, 16)" in message
    message = convert_error(tmp_path, flax, flags={**lidc, "progressive_input": "residual"})
    assert "has no tensor 'Downsample_" in message and "flags and checkpoint do not match" in message
    message = convert_error(tmp_path, flax, flags={**lidc, "num_res_blocks": 1})
    assert "flags and checkpoint do not match" in message
    assert "'all_modules.0.W' is (16,); these flags need (32,)" in convert_error(tmp_path, pth, flags={**knee, "nf": 32})
    message = convert_error(tmp_path, pth, flags={**knee, "num_channels": 2})
    assert "'all_modules.3.weight' is (16, 1, 3, 3); these flags need (16, 2, 3, 3)" in message
    state = torch.load(pth, weights_only=True)
    state["model"]["all_modules.99.extra"] = torch.zeros(3)
    extra = tmp_path / "extra.pth"
    torch.save(state, extra)
    assert "cannot be paired" in convert_error(tmp_path, extra, flags=knee)  # the EMA no longer lines up with the model
    bare = {k: v for k, v in torch.load(pth, weights_only=True)["model"].items()}
    bare["all_modules.99.extra"] = torch.zeros(3)
    torch.save(bare, extra)
    assert "holds 1 tensor(s) these flags do not describe, the first 'all_modules.99.extra' (3,)" in convert_error(
        tmp_path, extra, flags=knee)
    assert "resblock_type='resnet'" in convert_error(tmp_path, pth, flags={**knee, "resblock_type": "resnet"})


def test_normalisation_is_stated_or_chosen_never_unknown(tmp_path, checkpoints, capsys):
    flags = flags_file(tmp_path, record("chung2022_knee_reduced")["flags"])
    source = checkpoints["chung2022_knee_reduced"]
    base = ["priors", "convert", "--format", "ncsnpp", str(source), "-o", str(tmp_path / "out"), "--flags", str(flags),
            "--modality", "MR"]
    assert main(base) == 2 and "give the normalisation" in capsys.readouterr().err
    assert main(base + ["--normalisation", "volume-percentile"]) == 2
    assert "volume-percentile normalisation needs 0 < percentile <= 100" in capsys.readouterr().err
    assert main(base + ["--normalisation", '{"kind": "volume-percentile", "percentile": 99.5}']) == 0
    assert load_prior(tmp_path / "out").card.normalisation == {"kind": "volume-percentile", "percentile": 99.5}
    with pytest.raises(InputError, match="only replaces a preset's user-choice"):
        convert_checkpoint(source, tmp_path / "o2", fmt="ncsnpp", preset="song2022-lidc-320", normalisation="slice-minmax")
    assert not (tmp_path / "o2").exists()


# --------------------------------------------------------------------------- the msgpack reader
def ext(code: int, payload: bytes) -> bytes:
    return bytes([0xC7, len(payload)]) + bytes([code]) + payload if len(payload) < 256 else \
        bytes([0xC8]) + len(payload).to_bytes(2, "big") + bytes([code]) + payload


def test_the_msgpack_reader_handles_flax_s_types(tmp_path):
    nf = load_script("ncsnpp_fixtures")
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    chunked = {"__msgpack_chunked_array__": True, "shape": {"0": 2, "1": 3}, "chunks": {"0": w.reshape(-1)[:4], "1": w.reshape(-1)[4:]}}
    body = nf.msgpack_bytes({"a": chunked, "b": np.float32(2.5), "c": [1, -7, 300, -40000, 2**40], "d": None, "e": True,
                             "f": "x" * 40, "g": b"\x01\x02"})
    bf16 = torch.tensor([1.0, -2.0], dtype=torch.bfloat16)
    raw = nf.msgpack_bytes([[2], "bfloat16", bf16.view(torch.int16).numpy().tobytes()])
    tail = b"\xa1h" + ext(1, raw) + b"\xa1z" + ext(2, nf.msgpack_bytes([1.5, -0.5]))
    data = bytes([body[0] + 2]) + body[1:] + tail  # the fixmap holds two more entries
    path = tmp_path / "checkpoint_1"
    path.write_bytes(data)
    tree = read_msgpack(path)
    assert torch.equal(tree["a"], torch.from_numpy(w)) and float(tree["b"]) == 2.5 and tree["c"] == [1, -7, 300, -40000, 2**40]
    assert tree["d"] is None and tree["e"] is True and tree["f"] == "x" * 40 and tree["g"] == b"\x01\x02"
    assert tree["h"].dtype == torch.bfloat16 and tree["h"].tolist() == [1.0, -2.0] and tree["z"] == complex(1.5, -0.5)
    path.write_bytes(bytes([0x81, 0xA1, 0x61]) + ext(9, b"abc"))
    with pytest.raises(InputError, match="extension type 9 is not one of Flax's"):
        read_msgpack(path)
    path.write_bytes(bytes([0x81, 0xA1, 0x61, 0xC1]))
    with pytest.raises(InputError, match="byte 0xc1 at offset 3 is no msgpack type"):
        read_msgpack(path)
    path.write_bytes(bytes([0x81, 0xA1, 0x61]) + ext(1, nf.msgpack_bytes([[3], "float32", b"\x00" * 8])))
    with pytest.raises(InputError, match=r"shape \(3,\) and dtype float32 holds 8 bytes"):
        read_msgpack(path)
