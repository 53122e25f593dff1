"""reproduce starter: the bench recon settings written as files (a tiny run on stand-in priors)."""

import argparse
import csv
import json

import pytest
import torch

from medrecon.benchmarks import recon

from .test_reconstruct import gaussian_prior


def test_starter_protocol_writes_the_tables(tmp_path, monkeypatch):
    images = torch.nn.functional.avg_pool2d(torch.rand(2, 1, 20, 20, generator=torch.Generator().manual_seed(0)), 5, stride=1)
    priors = {"ct-starter": gaussian_prior("CT", size=16), "mr-starter": gaussian_prior("MR", size=16)}
    monkeypatch.setattr("medrecon.priors.hub.load_prior", lambda name, device=None: priors[name])
    monkeypatch.setattr(recon, "evaluation_slices", lambda *a, **k: images)
    monkeypatch.setattr(recon, "SETTINGS", (recon.SETTINGS[0], recon.SETTINGS[4]))
    args = argparse.Namespace(out=str(tmp_path / "starter"), samplers="dds", slices="2", steps=2, device="cpu", seed=0,
                              batch_size=2, overwrite=False, data=None)
    assert recon.run_starter_reproduce(args) == 0
    out = tmp_path / "starter"
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 * (4 + 1) and {r["method"] for r in rows} >= {"dds", "FBP (ramp)", "zero-filled"}
    assert "different data" in (out / "summary.md").read_text()
    assert json.loads((out / "summary.json").read_text())["rows"]
    with pytest.raises(Exception, match="exists"):
        recon.run_starter_reproduce(args)
