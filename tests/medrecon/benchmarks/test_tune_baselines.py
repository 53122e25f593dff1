"""The tuning command's search on the 64x64 training slices shipped in data/train (small grids)."""


import torch

from medrecon.benchmarks import tune_baselines as tune
from medrecon.io.studies import load_study
from tests.support import CT_TRAIN, MR_TRAIN


def test_search_rows_and_markdown(monkeypatch):
    """Settings tuned on 64x64 slices are named '...@64' (the plain names are the 256 settings)."""
    monkeypatch.setattr(tune, "CT_SETTINGS", [(23, True)])
    monkeypatch.setattr(tune, "CT_GRIDS", {"tv_pdhg": ("lam_rel", [1e-4, 1e-3]), "sirt": ("n_iter", [10])})
    monkeypatch.setattr(tune, "MR_SETTINGS", [(4, False)])
    monkeypatch.setattr(tune, "MR_GRIDS", {"cg_sense": ("n_iter", [3, 30])})
    ct = load_study(CT_TRAIN, modality="CT").voxels.permute(2, 1, 0).numpy()
    mr = load_study(MR_TRAIN, modality="MR").voxels.permute(2, 1, 0).numpy()
    with torch.no_grad():
        rows = tune.tune_ct(tune.ct_training_slices(ct, 2, size=64), log=lambda _: None)
        rows += tune.tune_mr(tune.mr_training_slices(mr, 2, size=64), log=lambda _: None)
    by = {(r["setting"], r["method"], r["value"]): r["psnr"] for r in rows}
    assert set(by) == {
        ("ct-parallel-23v-noisy@64", "fbp", None), ("ct-parallel-23v-noisy@64", "tv_pdhg", 1e-4),
        ("ct-parallel-23v-noisy@64", "tv_pdhg", 1e-3), ("ct-parallel-23v-noisy@64", "sirt", 10),
        ("mr-8coil-4x-clean@64", "zero_filled", None), ("mr-8coil-4x-clean@64", "cg_sense", 3), ("mr-8coil-4x-clean@64", "cg_sense", 30),
    }
    # noiseless CG-SENSE improves with iterations; TV beats FBP on noisy sparse views
    assert by[("mr-8coil-4x-clean@64", "cg_sense", 30)] > by[("mr-8coil-4x-clean@64", "cg_sense", 3)]
    assert max(by[("ct-parallel-23v-noisy@64", "tv_pdhg", v)] for v in (1e-4, 1e-3)) > by[("ct-parallel-23v-noisy@64", "fbp", None)]
    text = tune.to_markdown(rows, "header")
    assert "| mr-8coil-4x-clean@64 | cg_sense | n_iter=30 |" in text


def test_training_slices_at_a_larger_matrix_keep_their_pixel_size_zero_padded():
    """--matrix N larger than the study: its own pixels in the centre of N x N, air (0 after the HU
    window) around (a 256x256 MR study in a 320x320 matrix); smaller: resampled down as before."""
    volume = torch.rand(48, 40, 6, generator=torch.Generator().manual_seed(0)).numpy() * 1000
    slices = tune.ct_training_slices(volume, 2, size=64)
    assert slices.shape == (2, 1, 64, 64)
    inner = slices[:, 0, 12:52, 8:56]
    direct = tune.ct_training_slices(volume, 2, size=1024)[:, 0, 492:532, 488:536]  # same pixels, wider padding
    torch.testing.assert_close(inner, direct)
    assert slices[:, :, :12].abs().max() == 0 and slices[:, :, :, :8].abs().max() == 0
    assert tune.ct_training_slices(volume, 2, size=32).shape == (2, 1, 32, 32)
