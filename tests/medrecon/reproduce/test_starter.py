"""reproduce starter: the bench recon settings written as files (a tiny run on stand-in priors)."""

import csv
import json

import pytest
import torch

from medrecon.evaluation import settings as evaluation_settings
from medrecon.reproduce import starter


def test_starter_protocol_writes_the_tables(tmp_path, monkeypatch, gaussian_prior):
    images = torch.nn.functional.avg_pool2d(torch.rand(2, 1, 20, 20, generator=torch.Generator().manual_seed(0)), 5, stride=1)
    priors = {"ct-starter": gaussian_prior("CT", size=16), "mr-starter": gaussian_prior("MR", size=16)}
    monkeypatch.setattr("medrecon.benchmarks.recon.load_prior", lambda name, device=None: priors[name])
    monkeypatch.setattr(starter, "evaluation_slices", lambda *a, **k: images)
    monkeypatch.setattr(starter, "SETTINGS", (evaluation_settings.SETTINGS[0], evaluation_settings.SETTINGS[4]))
    out = tmp_path / "starter"
    run = dict(samplers=["dds"], slices=2, steps=2, device="cpu", seed=0, batch_size=2)
    summary = starter.reproduce_starter(out, **run)
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 * (4 + 1) and {r["method"] for r in rows} >= {"dds", "FBP (ramp)", "zero-filled"}
    assert "different data" in (out / "summary.md").read_text()
    assert json.loads((out / "summary.json").read_text())["rows"] == json.loads(json.dumps(summary["rows"], default=str))
    with pytest.raises(Exception, match="exists"):
        starter.reproduce_starter(out, **run)
