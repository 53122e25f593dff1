"""``medrecon priors convert``: ADM and diffusers checkpoints -> prior folders, held to the reference code;
the command and its refusals (NCSN++: test_ncsnpp_convert.py).

The fixtures (tests/fixtures/conversion/, written by scripts/make_conversion_fixtures.py from
openai/guided-diffusion, which the tests do not need) hold tiny checkpoints as recipes (container,
tensor shapes, seeded fill, sha256) and the reference networks' outputs on fixed inputs. A
converted network must reproduce them within a maximum relative difference ``max|a - b| / max|b|``
of 1e-5 in float32, raw and as the denoiser ``D(x, sigma)``, whose reference is computed here from
the reference output by the parameterisation's formula.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from medrecon.commands import main
from medrecon.priors.convert import FORMATS, convert_checkpoint, expected_source_shapes, read_flags
from medrecon.priors.convert.presets import PRESETS
from medrecon.priors.hub import CARD_FILE, load_prior
from tests import support
from tests.support import CT_DICOM, MR_SAMPLE, load_script

FIXTURES = support.FIXTURES / "conversion"
TOLERANCE = 1e-5
CT_WINDOW = json.dumps({"kind": "hu-window", "low": -1000, "high": 2000})  # the starter priors' normalisations
MR_PERCENTILE = json.dumps({"kind": "volume-percentile", "percentile": 99.5})


def record(case: str) -> dict:
    return json.loads((FIXTURES / f"{case}.json").read_text())


def arrays(case: str) -> dict[str, torch.Tensor]:
    with np.load(FIXTURES / f"{case}.npz") as data:
        return {k: torch.from_numpy(data[k]) for k in data.files}


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """The fixture checkpoints, rebuilt from their recipes and saved in their native container."""
    script = load_script("make_conversion_fixtures")
    root = tmp_path_factory.mktemp("checkpoints")
    out = {}
    for case in ("adm_tiny", "adm_variant", "ncsnpp_tiny"):
        rec = record(case)
        tensors = script.fill(rec["slots"], rec["seed"])
        assert script.digest(tensors) == rec["sha256"], f"{case}: the recipe no longer gives the reference's weights"
        out[case] = root / f"{case}.pt"
        torch.save(script.materialise(rec["skeleton"], tensors), out[case])
    return out


def flags_file(tmp_path: Path, flags: dict, **changes) -> Path:
    path = tmp_path / f"flags-{len(list(tmp_path.glob('flags-*')))}.json"
    path.write_text(json.dumps({**flags, **changes}))
    return path


@pytest.fixture(scope="module")
def converted(checkpoints, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("converted")
    modality = {"adm_tiny": "CT", "adm_variant": "MR"}
    normalisation = {"CT": CT_WINDOW, "MR": MR_PERCENTILE}
    return {case: convert_checkpoint(checkpoints[case], root / case, fmt="adm", flags=record(case)["flags"], modality=m,
                                     normalisation=normalisation[m]) for case, m in modality.items()}


# ------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("case", ["adm_tiny", "adm_variant"])
def test_converted_adm_computes_what_guided_diffusion_computes(converted, case):
    prior, data = load_prior(converted[case]), arrays(case)
    with torch.no_grad():
        raw = prior.network(data["x_raw"], data["t_raw"]).sample
        assert relative_difference(raw, data["out_raw"]) <= TOLERANCE
        # D(x, sigma) = x - sigma eps(sqrt(abar) x, t(sigma)): the reference eps was computed at the
        # reference schedule's t(sigma); the variance channels (learned sigma) are not part of D
        channels = data["x"].shape[1]
        sigma = data["sigma"][:, None, None, None]
        reference = data["x"] - sigma * data["eps"][:, :channels]
        assert relative_difference(prior.denoiser(data["x"], data["sigma"]), reference) <= TOLERANCE
        assert relative_difference(prior.denoiser(data["x"], data["sigma"]) - data["x"], reference - data["x"]) <= TOLERANCE
    card = prior.card
    assert card.parameterisation == "vp_epsilon" and card.channels == channels
    assert prior.denoiser.learned_variance == record(case)["flags"]["learn_sigma"]


def test_the_card_records_the_source_and_the_weights_stay_float32(converted, checkpoints):
    card = json.loads((converted["adm_tiny"] / CARD_FILE).read_text())
    source = card["training"]["converted"]
    assert source["format"] == "adm" and source["source_file"] == "adm_tiny.pt"
    assert source["source_sha256"] == hashlib.sha256(checkpoints["adm_tiny"].read_bytes()).hexdigest()
    assert source["flags"] == record("adm_tiny")["flags"] and card["sha256"]
    assert card["normalisation"] == json.loads(CT_WINDOW) and card["architecture"] == "UNet2DModel"
    assert len(card["schedule"]["alphas_cumprod"]) == 1000
    from safetensors.torch import load_file

    stored = load_file(str(converted["adm_tiny"] / "diffusion_pytorch_model.safetensors"))
    assert {t.dtype for t in stored.values()} == {torch.float32}


# ----------------------------------------------------------------------- published presets
@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if p.format == "adm"])
def test_the_mapping_covers_every_tensor_of_the_published_adm_architectures(name):
    published = json.loads((FIXTURES / "published.json").read_text())[name]
    reference = {k: tuple(shape) for k, shape in published["tensors"]}
    expected = expected_source_shapes("adm", read_flags("adm", PRESETS[name].flags))
    assert expected == reference


@pytest.mark.parametrize("name, kind", [("dds-aapm-256", "user-choice"), ("dds-fastmri-knee-320", "user-choice")])
def test_the_dds_presets_leave_the_normalisation_to_the_user_since_the_repository_does_not_state_it(name, kind):
    assert PRESETS[name].normalisation["kind"] == kind and "not stated" in PRESETS[name].normalisation["note"]


# ---------------------------------------------------------------------------- the command
def test_the_command_converts_and_the_folder_loads_by_path(tmp_path, checkpoints, capsys):
    flags = flags_file(tmp_path, record("adm_tiny")["flags"])
    out = tmp_path / "prior"
    argv = ["priors", "convert", "--format", "adm", str(checkpoints["adm_tiny"]), "-o", str(out), "--flags", str(flags),
            "--modality", "ct", "--name", "tiny-adm", "--normalisation", CT_WINDOW]
    assert main(argv) == 0, capsys.readouterr().err
    prior = load_prior(out)
    assert prior.card.name == "tiny-adm" and prior.card.modality == "CT"
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err  # DIR exists
    assert main(argv + ["--overwrite"]) == 0
    assert main(["priors", str(tmp_path)]) == 0 and "tiny-adm" in capsys.readouterr().out  # listing still works


@pytest.mark.parametrize("case, modality, study, attention", [
    ("adm_tiny", "CT", [str(CT_DICOM)], [32, 16]),
    ("adm_variant", "MR", [str(MR_SAMPLE), "--modality", "mr", "--accel", "4"], [32]),  # 2 channels: real, imaginary
])
def test_a_converted_prior_of_another_size_runs_dds_through_the_grid(tmp_path, checkpoints, capsys, case, modality, study,
                                                                     attention):
    """A tiny ADM's weights at image size 64 (ADM weights do not depend on the size; the attention
    stays at the same downsampling rates): a 256x256 study is reconstructed on the prior's 64x64
    grid by ``medrecon reconstruct --prior DIR`` (medrecon.reconstruct, DDS) and written back at 256x256."""
    flags = {**record(case)["flags"], "image_size": 64, "attention_resolutions": attention}
    prior = convert_checkpoint(checkpoints[case], tmp_path / "adm64", fmt="adm", flags=flags, modality=modality,
                               normalisation=CT_WINDOW if modality == "CT" else MR_PERCENTILE)
    out = tmp_path / "out.nii.gz"
    code = main(["reconstruct", *study, "-o", str(out), "--slices", "1:2", "--steps", "2", "--prior", str(prior), "--quiet",
                 "--grid", "prior"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["grid"]["size"] == 64 and result["grid"]["input_shape"] == [256, 256]
    assert result["reconstruction"]["settings"]["sampler"] == "dds"
    assert result["reconstruction"]["nfe_per_slice_and_sample"] == 2


# ---------------------------------------------------------------------------- bad input
def run_convert(capsys, *argv) -> tuple[int, str]:
    """``medrecon priors convert ARGV`` (with ``--normalisation user-choice`` where neither it nor a
    preset is given: the card's normalisation is not what these tests are about)."""
    argv = [str(a) for a in argv]
    if "--normalisation" not in argv and "--preset" not in argv:
        argv += ["--normalisation", "user-choice"]
    try:
        code = main(["priors", "convert", *argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    return code, capsys.readouterr().err.strip()


def one_line_error(capsys, *argv, expect: str) -> None:
    code, err = run_convert(capsys, *argv)
    assert code == 2 and "\n" not in err and expect in err, err


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_files_that_are_not_checkpoints_are_refused_without_running_anything(tmp_path, capsys):
    flags = flags_file(tmp_path, record("adm_tiny")["flags"])
    out = tmp_path / "out"
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    one_line_error(capsys, "--format", "adm", text, "-o", out, "--flags", flags, "--modality", "CT",
                   expect="is not a PyTorch checkpoint")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.pt"
    torch.save({"time_embed.0.weight": torch.zeros(1), "x": Payload()}, evil)
    one_line_error(capsys, "--format", "adm", evil, "-o", out, "--flags", flags, "--modality", "CT",
                   expect="does not load with torch.load(weights_only=True)")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"x": Payload()}))
    one_line_error(capsys, "--format", "adm", plain, "-o", out, "--flags", flags, "--modality", "CT",
                   expect="does not load with torch.load(weights_only=True)")
    one_line_error(capsys, "--format", "adm", tmp_path / "missing.pt", "-o", out, "--flags", flags, "--modality", "CT",
                   expect="is not a file")
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], listed)
    one_line_error(capsys, "--format", "adm", listed, "-o", out, "--flags", flags, "--modality", "CT",
                   expect="not a state dict")
    assert not marker.exists() and not out.exists()


def test_flags_that_do_not_fit_the_tensors_name_the_first_one(tmp_path, checkpoints, capsys):
    flags = record("adm_tiny")["flags"]
    ckpt, out = checkpoints["adm_tiny"], tmp_path / "out"
    wider = flags_file(tmp_path, flags, num_channels=64)
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, "--flags", wider, "--modality", "CT",
                   expect="'input_blocks.0.0.weight' is (32, 1, 3, 3); these flags need (64, 1, 3, 3)")
    fewer = flags_file(tmp_path, flags, num_res_blocks=1)
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, "--flags", fewer, "--modality", "CT",
                   expect="flags and checkpoint do not match")
    no_updown = flags_file(tmp_path, flags, resblock_updown=False)
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, "--flags", no_updown, "--modality", "CT",
                   expect="has no tensor 'input_blocks.3.0.op.weight'")
    state = torch.load(ckpt, weights_only=True)
    del state["middle_block.1.qkv.weight"]
    missing = tmp_path / "missing-one.pt"
    torch.save(state, missing)
    one_line_error(capsys, "--format", "adm", missing, "-o", out, "--flags", flags_file(tmp_path, flags), "--modality", "CT",
                   expect="has no tensor 'middle_block.1.qkv.weight' (192, 64, 1)")
    state = torch.load(ckpt, weights_only=True)
    state["label_emb.weight"] = torch.zeros(10, 128)
    labelled = tmp_path / "labelled.pt"
    torch.save(state, labelled)
    one_line_error(capsys, "--format", "adm", labelled, "-o", out, "--flags", flags_file(tmp_path, flags), "--modality", "CT",
                   expect="class-conditional (label_emb.weight)")
    bad_ema = torch.load(checkpoints["ncsnpp_tiny"], weights_only=True)
    bad_ema["ema"]["shadow_params"] = bad_ema["ema"]["shadow_params"][:-1]
    short = tmp_path / "short-ema.pth"
    torch.save(bad_ema, short)
    one_line_error(capsys, "--format", "ncsnpp", short, "-o", out, "--flags",
                   flags_file(tmp_path, record("ncsnpp_tiny")["flags"]), "--modality", "MR", expect="cannot be paired")
    assert not out.exists()


def test_bad_flags_presets_and_usage_are_refused(tmp_path, checkpoints, capsys):
    ckpt, out = checkpoints["adm_tiny"], tmp_path / "out"
    flags = record("adm_tiny")["flags"]
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, "--preset", "no-such-net", expect="unknown preset 'no-such-net'")
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, "--preset", "song2022-lidc-320", expect="is for --format ncsnpp")
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, expect="give exactly one of a preset or a flags file")
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, "--preset", "dds-aapm-256", "--modality", "MR",
                   expect="is a CT checkpoint")
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, "--flags", flags_file(tmp_path, flags),
                   expect="--modality CT or MR")
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, "--flags", flags_file(tmp_path, flags), "--modality", "CT",
                   "--normalisation", "minmax", expect="normalisation kind must be one of")
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, "--flags", flags_file(tmp_path, flags), "--modality", "CT",
                   "--normalisation", '{"kind": "hu-window", "low": 5}', expect="hu-window normalisation needs low < high")
    code = main(["priors", "convert", "--format", "adm", str(ckpt), "-o", str(out), "--flags", str(flags_file(tmp_path, flags)),
                 "--modality", "CT"])
    assert code == 2 and "give the normalisation the checkpoint's images were trained with" in capsys.readouterr().err
    partial = {k: v for k, v in flags.items() if k != "channel_mult"}
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, "--flags", flags_file(tmp_path, partial), "--modality", "CT",
                   expect="missing ['channel_mult']")
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, "--flags", flags_file(tmp_path, flags, typo=1),
                   "--modality", "CT", expect="unknown ['typo']")
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, "--flags", flags_file(tmp_path, flags, learn_sigma="true"),
                   "--modality", "CT", expect="learn_sigma must be bool, got 'true'")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, "--flags", broken, "--modality", "CT", expect="not valid JSON")
    assert run_convert(capsys, "--format", "nope", ckpt, "-o", out)[0] == 2  # argparse's own usage error
    assert not out.exists()


def test_architectures_that_do_not_map_are_refused_with_what_does_not(tmp_path, checkpoints, capsys):
    ckpt, out = checkpoints["adm_tiny"], tmp_path / "out"
    adm = record("adm_tiny")["flags"]
    heads_wide = flags_file(tmp_path, adm, num_head_channels=-1, num_heads=4, channel_mult=[1, 2, 4])
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, "--flags", heads_wide, "--modality", "CT",
                   expect="num_heads=4 with attention at widths [64, 128] gives head widths [16.0, 32.0]")
    half = flags_file(tmp_path, adm, channel_mult=[0.5, 1, 1], num_channels=64)
    one_line_error(capsys, "--format", "adm", ckpt, "-o", out, "--flags", half, "--modality", "CT", expect="channel_mult[0]=0.5")
    assert not out.exists()


# ------------------------------------------------------------------------- diffusers folders
def tiny_unet(**changes):
    from diffusers import UNet2DModel

    torch.manual_seed(0)  # test-only: diffusers initialises from the global generator
    config = dict(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                  down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                  norm_num_groups=4, attention_head_dim=8)
    return UNet2DModel(**{**config, **changes}).eval()


def test_a_diffusers_folder_is_copied_into_a_prior_folder(tmp_path):
    from diffusers import DDPMScheduler, ScoreSdeVeScheduler

    net = tiny_unet()
    pipeline = tmp_path / "pipeline"
    net.half().save_pretrained(pipeline / "unet")
    DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction").save_pretrained(pipeline / "scheduler")
    out = convert_checkpoint(pipeline, tmp_path / "prior", fmt="diffusers", modality="CT", normalisation=CT_WINDOW)
    prior = load_prior(out)
    assert prior.card.parameterisation == "vp_v" and prior.card.image_size == 16
    assert prior.card.normalisation == json.loads(CT_WINDOW)
    expected = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod.double()
    torch.testing.assert_close(torch.tensor(prior.card.schedule["alphas_cumprod"], dtype=torch.float64), expected)
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([3.0, 500.0])
    with torch.no_grad():
        torch.testing.assert_close(prior.network(x, t).sample, net.float()(x, t).sample, rtol=0, atol=0)
    from safetensors.torch import load_file

    assert {v.dtype for v in load_file(str(out / "diffusion_pytorch_model.safetensors")).values()} == {torch.float16}
    fourier = tiny_unet(time_embedding_type="fourier", down_block_types=("DownBlock2D", "DownBlock2D"),
                        up_block_types=("UpBlock2D", "UpBlock2D"))
    folder = tmp_path / "ve"
    fourier.save_pretrained(folder)
    ScoreSdeVeScheduler(sigma_max=50.0).save_config(folder)
    prior = load_prior(convert_checkpoint(folder, tmp_path / "ve-prior", fmt="diffusers", modality="MR", normalisation="user-choice"))
    assert prior.card.parameterisation == "ve_score" and prior.card.schedule["sigma_max"] == 50.0


def test_diffusers_folders_that_do_not_convert_are_refused(tmp_path, capsys):
    from diffusers import DDPMScheduler

    folder = tmp_path / "unet"
    tiny_unet().save_pretrained(folder)
    out = tmp_path / "out"
    one_line_error(capsys, "--format", "diffusers", folder, "-o", out, "--modality", "CT", expect="scheduler_config.json")
    DDPMScheduler(prediction_type="sample").save_config(folder)
    one_line_error(capsys, "--format", "diffusers", folder, "-o", out, "--modality", "CT", expect="prediction_type 'sample'")
    DDPMScheduler().save_config(folder)
    one_line_error(capsys, "--format", "diffusers", folder, "-o", out, expect="--modality CT or MR")
    one_line_error(capsys, "--format", "diffusers", folder, "-o", out, "--modality", "CT", "--preset", "dds-aapm-256",
                   expect="carries its own config")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "block_out_channels": [8, 32]}))
    one_line_error(capsys, "--format", "diffusers", folder, "-o", out, "--modality", "CT", expect="its config.json needs (32,)")
    assert not out.exists()
    assert FORMATS == ("adm", "ncsnpp", "diffusers")
