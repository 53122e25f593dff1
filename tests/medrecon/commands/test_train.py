"""`medrecon train` end to end on tiny networks: from files, resuming, refusals, ``--init`` from a prior,
time limits and names with no machine paths on the card, the autoencoder and latent stages."""

from __future__ import annotations

import json

from medrecon.commands import main
from medrecon.priors.hub import load_prior
from tests.support import CT_SAMPLE, ROOT, absolute_paths
from tests.support import CT_TRAIN as CT_FILE
from tests.support import TINY_AE_32 as AE
from tests.support import TINY_LATENT_UNET_16 as LATENT_UNET
from tests.support import TINY_UNET_32 as TINY


def test_cli_train_from_files(tmp_path):

    out = tmp_path / "prior"
    tiny = json.dumps(TINY.to_dict())

    def argv(steps):
        return ["train", "--modality", "ct", "--out", str(out), "--files", str(CT_FILE), "--steps", str(steps),
                "--batch-size", "2", "--size", "32", "--crop", "16", "--unet-config", tiny]

    assert main(argv(2)) == 0
    assert json.loads((out / "train_record.json").read_text())["steps"] == 2
    assert main(argv(4)) == 0
    record = json.loads((out / "train_record.json").read_text())
    assert record["resumed_from_step"] == 2 and record["steps"] == 4
    assert main(argv(4) + ["--no-resume"]) == 2  # would silently restart over the checkpoint
    bad = ["train", "--modality", "ct", "--out", str(tmp_path / "x"), "--files", str(CT_SAMPLE)]
    assert main(bad) == 2


def test_cli_init_takes_the_prior_config(tmp_path):

    tiny = json.dumps(TINY.to_dict())
    base = tmp_path / "base"
    common = ["--modality", "ct", "--files", str(CT_FILE), "--batch-size", "2", "--size", "32", "--crop", "16"]
    assert main(["train", "--out", str(base), "--steps", "1", "--unet-config", tiny, *common]) == 0
    out = tmp_path / "tuned"
    assert main(["train", "--out", str(out), "--steps", "1", "--init", str(base / "prior"), "--p-mean", "0.5", *common]) == 0
    record = json.loads((out / "train_record.json").read_text())
    assert record["unet_config"] == TINY.to_dict() and record["train_config"]["p_mean"] == 0.5
    assert record["train_config"]["init_from"] == str(base / "prior")
    assert main(["train", "--out", str(tmp_path / "z"), "--stage", "autoencoder", "--init", str(base / "prior"), *common]) == 2
    assert main(["train", "--out", str(tmp_path / "w"), "--stage", "autoencoder", "--p-mean", "0", *common]) == 2


def test_cli_time_limit_and_name_and_no_machine_paths_on_the_card(tmp_path):

    tiny = json.dumps(TINY.to_dict())
    out = tmp_path / "run"
    common = ["--modality", "ct", "--files", str(CT_FILE), "--batch-size", "2", "--size", "32", "--crop", "16"]
    assert main(["train", "--out", str(out), "--steps", "1000", "--time-limit", "0.000001", "--name", "ct-tiny",
                 "--unet-config", tiny, *common]) == 0
    record = json.loads((out / "train_record.json").read_text())
    assert record["steps"] == 1 and record["stopped_by_time_limit"]
    tuned = tmp_path / "tuned"
    assert main(["train", "--out", str(tuned), "--steps", "1", "--init", str(out / "prior"), *common]) == 0
    card = json.loads((tuned / "prior" / "medrecon_prior.json").read_text())
    assert card["name"] == "tuned" and card["training"]["record"]["initialised_from"]["prior"] == "ct-tiny"
    assert absolute_paths(card, str(tmp_path), str(ROOT)) == []
    assert card["training"]["data"]["sources"][0]["path"] == CT_FILE.name
    assert main(["train", "--out", str(tmp_path / "ae"), "--stage", "autoencoder", "--name", "x", *common]) == 2
    assert main(["train", "--out", str(tmp_path / "neg"), "--time-limit", "-1", *common]) == 2


def test_cli_latent_stages(tmp_path):

    common = ["train", "--modality", "ct", "--files", str(CT_FILE), "--size", "32", "--batch-size", "2", "--steps", "2"]
    ae_out, lat_out = tmp_path / "ae", tmp_path / "latent"
    ae_json = json.dumps(AE.to_dict())
    assert main(common + ["--out", str(ae_out), "--stage", "autoencoder", "--autoencoder-config", ae_json]) == 0
    assert (ae_out / "autoencoder" / "config.json").is_file()
    assert main(common + ["--out", str(lat_out), "--stage", "latent"]) == 2  # no --autoencoder
    unet_json = json.dumps(LATENT_UNET.to_dict())
    argv = common + ["--out", str(lat_out), "--stage", "latent", "--autoencoder", str(ae_out), "--unet-config", unet_json]
    assert main(argv) == 0
    prior = load_prior(lat_out / "prior")
    assert prior.latent is not None and prior.card.sigma_data == 1.0
    assert main(common + ["--out", str(tmp_path / "px"), "--autoencoder", str(ae_out)]) == 2  # pixel stage
