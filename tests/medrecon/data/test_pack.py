"""medrecon data pack: a compact starter folder that loads like the original, each loss stated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medrecon.commands import main
from medrecon.data import load_starter
from medrecon.data.fetch import MANIFEST_FORMAT, sha256_file
from medrecon.priors.training import TrainingSlices
from tests.support import CT_TRAIN, MR_TRAIN

TRAIN = {"ct-lung2": CT_TRAIN, "mr-brain1": MR_TRAIN}


def starter_folder(base: Path) -> Path:
    """A starter folder holding the shipped training slices of ct-lung2 and mr-brain1 (the real
    patients, downsampled), recorded as ``medrecon data fetch`` records them."""
    dest = base / "starter"
    dest.mkdir()
    sources = {}
    for sid, path in TRAIN.items():
        shutil.copyfile(path, dest / f"{sid}.nii.gz")
        sources[sid] = {"id": sid, "split": "train", "nifti": f"{sid}.nii.gz", "nifti_sha256": sha256_file(dest / f"{sid}.nii.gz")}
    (dest / "manifest.json").write_text(json.dumps({"format": MANIFEST_FORMAT, "format_version": 1, "sources": sources}))
    return dest


def test_pack_caps_the_plane_and_loads_like_the_original(tmp_path, capsys):
    dest = starter_folder(tmp_path)
    out = tmp_path / "pack"
    assert main(["data", "pack", "--source", str(dest), "-o", str(out), "--size", "32", "--only", "ct-lung2"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    ct = manifest["sources"]["ct-lung2"]
    assert ct["dtype"] == "uint8" and "11.8 HU" in ct["pack"]["storage"] and ct["pack"]["in_plane"].endswith("-> 32x32")
    assert ct["pack"]["from_nifti_sha256"] == sha256_file(dest / "ct-lung2.nii.gz")
    assert ct["nifti_sha256"] == sha256_file(out / "ct-lung2.nii.gz")
    original, packed = load_starter("ct-lung2", dest), load_starter("ct-lung2", out)  # checksums verified
    assert packed.shape[1:] == (32, 32) and packed.shape[0] == original.shape[0]
    # the world position of the volume is kept: the centre of the plane maps to the same point
    centre = lambda s: s.affine @ np.array([(s.shape[2] - 1) / 2, (s.shape[1] - 1) / 2, 0, 1])  # noqa: E731
    np.testing.assert_allclose(centre(packed), centre(original), atol=1e-6)
    a = TrainingSlices.from_starter("ct", ids=["ct-lung2"], dest=dest, size=32).images
    b = TrainingSlices.from_starter("ct", ids=["ct-lung2"], dest=out, size=32).images
    assert float((a - b).abs().max()) < 0.02 and float((a - b).pow(2).mean().sqrt()) < 0.003  # 1/255 steps
    # MR at its own size: stored as integers (here scaled uint16), the normalised slices unchanged
    mr_out = tmp_path / "pack-mr"
    assert main(["data", "pack", "--source", str(dest), "-o", str(mr_out), "--size", "64", "--only", "mr-brain1"]) == 0
    assert nib.load(mr_out / "mr-brain1.nii.gz").get_data_dtype() in (np.uint8, np.int16, np.uint16)
    m_a = TrainingSlices.from_starter("mr", ids=["mr-brain1"], dest=dest, size=32).images
    m_b = TrainingSlices.from_starter("mr", ids=["mr-brain1"], dest=mr_out, size=32).images
    assert float((m_a - m_b).abs().max()) < 2e-4
    assert main(["data", "pack", "--source", str(dest), "-o", str(out), "--only", "ct-lung2"]) == 2  # exists
    assert "exists" in capsys.readouterr().err


def test_train_on_named_sources_only(tmp_path):
    dest = starter_folder(tmp_path)
    with pytest.raises(Exception, match="validation"):
        TrainingSlices.from_starter("ct", ids=["ct-lung1"], dest=dest)
    slices = TrainingSlices.from_starter("ct", ids=["ct-lung2"], dest=dest, size=16)
    assert [s["id"] for s in slices.sources] == ["ct-lung2"] and torch.isfinite(slices.images).all()
