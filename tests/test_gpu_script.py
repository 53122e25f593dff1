"""scripts/gpu-priors.sh, the one-call GPU training of the larger priors, run on the CPU with a tiny
budget and a tiny network: it trains both stages for both modalities within the budget, measures
them, and leaves at most 8 files of at most 16 MiB that hold loadable priors; and
scripts/gpu-fast-path.sh on a tiny volume. Each runs about a minute on 2 CPU cores: ``-m slow``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from medrecon.data.fetch import MANIFEST_FORMAT, sha256_file
from medrecon.priors.hub import load_prior

ROOT = Path(__file__).resolve().parents[1]
FILES = {
    "ct-lung2": ROOT / "data/train/ct-lung2-train64.nii.gz",
    "mr-brain1": ROOT / "data/train/mr-brain1-train64.nii.gz",
    "ct-lung1": ROOT / "data/ct-lung1-sample.nii.gz",
    "mr-brain2": ROOT / "data/mr-brain2-sample.nii.gz",
}
TINY = {"sample_size": 32, "block_out_channels": [8, 16], "attention_levels": [1], "norm_num_groups": 4, "layers_per_block": 1}


@pytest.mark.slow  # about 65 s on 2 CPU cores: both stages of both modalities, then their benchmarks
def test_gpu_priors_script_with_a_tiny_budget_on_the_cpu(tmp_path):
    starter = tmp_path / "starter"  # the shipped slices of two training and the two validation patients
    starter.mkdir()
    sources = {}
    for sid, path in FILES.items():
        shutil.copyfile(path, starter / f"{sid}.nii.gz")
        split = "validation" if sid in ("ct-lung1", "mr-brain2") else "train"
        sources[sid] = {"id": sid, "split": split, "nifti": f"{sid}.nii.gz", "nifti_sha256": sha256_file(starter / f"{sid}.nii.gz")}
    (starter / "manifest.json").write_text(json.dumps({"format": MANIFEST_FORMAT, "format_version": 1, "sources": sources}))
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable)
    run = subprocess.run(
        ["bash", str(ROOT / "scripts/gpu-priors.sh"), "--out", str(out), "--seconds", "8", "--starter", str(starter),
         "--size", "32", "--crop", "16", "--crop-batch", "4", "--whole-batch", "4", "--unet-config", json.dumps(TINY),
         "--sources-ct", "ct-lung2", "--sources-mr", "mr-brain1", "--bench-slices", "2",
         # the recipe's contrast augmentation without its histogram references (no DWI b0 in this starter folder)
         "--mr-augment", '{"p_gamma": 0.2, "gamma_range": [0.4, 2.5], "p_invert": 0, "p_curve": 0.5}'],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["ct-large.tar", "ct.log", "mr-large.tar", "mr.log", "prior-ct-large.png", "prior-mr-large.png"]
    assert all((out / f).stat().st_size <= 16 * 2**20 for f in files)
    for m in ("ct", "mr"):
        log = (out / f"{m}.log").read_text()
        assert log.count("reached at step") == 2 and "bench prior" in log and "prior - wavelet" in log
        with tarfile.open(out / f"{m}-large.tar") as tar:
            tar.extractall(tmp_path / "unpacked", filter="data")
        prior = load_prior(tmp_path / "unpacked" / f"{m}-large")
        card = prior.card
        assert card.name == f"{m}-large" and card.training["record"]["initialised_from"]["prior"] == f"{m}-large-crops"
        assert card.training["record"]["stopped_by_time_limit"] and card.training["record"]["unet_config"]["attention_levels"] == [1]
        augmentation = card.training["data"]["augmentation"]["intensity"]
        assert (augmentation is not None) == (m == "mr")
        assert m == "ct" or (augmentation["p_curve"] == 0.5 and augmentation["p_invert"] == 0)


@pytest.mark.slow  # about 65 s on 2 CPU cores: the shipped CT prior, eager and fast, three samplers
def test_gpu_fast_path_script_with_a_tiny_volume_on_the_cpu(tmp_path):
    # scripts/gpu-fast-path.sh end to end on the CPU: a 2-slice volume, a few steps; the tables and
    # the JSON come back in the output folder (the torchrun part needs several GPUs and is skipped)
    starter = tmp_path / "starter"
    starter.mkdir()
    shutil.copyfile(FILES["ct-lung1"], starter / "ct-lung1.nii.gz")
    sources = {"ct-lung1": {"id": "ct-lung1", "split": "validation", "nifti": "ct-lung1.nii.gz",
                            "nifti_sha256": sha256_file(starter / "ct-lung1.nii.gz")}}
    (starter / "manifest.json").write_text(json.dumps({"format": MANIFEST_FORMAT, "format_version": 1, "sources": sources}))
    out = tmp_path / "out"
    run = subprocess.run(
        ["bash", str(ROOT / "scripts/gpu-fast-path.sh"), "--out", str(out), "--starter", str(starter), "--slices", "3",
         "--long-slices", "1", "--network-batch", "1", "--extra", "--steps dds=2 score_sde=1 dps=2"],
        capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable), cwd=ROOT, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["run.log", "volume-gpu.json", "volume-gpu.md"]
    result = json.loads((out / "volume-gpu.json").read_text())
    rows = {(r["sampler"], r["execution"]): r for r in result["rows"]}
    assert set(rows) == {("dds", "fast"), ("dds", "fp32 eager (reference)"), ("score_sde", "fast"), ("dps", "fast")}
    assert rows[("dds", "fast")]["slices"] == 3 and rows[("dps", "fast")]["slices"] == 1
    assert rows[("dps", "fast")]["nfe"] == 2 and rows[("score_sde", "fast")]["nfe"] == 3
    assert all(0 < r["network_share"] <= 1 and r["tflops"] > 0 for r in result["rows"])
    assert [n["network"].split(" ")[0] for n in result["networks"]] == ["ct-starter", "ct-starter", "reference", "reference"]
    assert "<!-- bench:volume-gpu:start -->" in (out / "volume-gpu.md").read_text()
