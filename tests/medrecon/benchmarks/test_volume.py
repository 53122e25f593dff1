"""`medrecon bench recon-volume` (medrecon.benchmarks.volume): volume scores see the reslices and the
slice differences; bad arguments are refused before any work."""

from __future__ import annotations

import torch


def test_volume_scores_see_the_reslices_and_the_slice_differences():
    from medrecon.benchmarks.volume import reslices, score_volume

    ref = torch.rand(8, 1, 12, 10, generator=torch.Generator().manual_seed(0))
    stacks = reslices(ref)
    assert stacks["coronal"].shape == (12, 1, 8, 10) and stacks["sagittal"].shape == (10, 1, 8, 12)
    torch.testing.assert_close(stacks["coronal"][3, 0, 5], ref[5, 0, 3])
    # a slice-independent error and one that flickers from slice to slice, of the same size
    steady = (ref + 0.05).clamp(0, 1)
    sign = torch.tensor([1.0, -1.0] * 4).reshape(8, 1, 1, 1)
    flicker = (ref + 0.05 * sign).clamp(0, 1)
    a, b = score_volume(steady, ref), score_volume(flicker, ref)
    assert abs(a["psnr"] - b["psnr"]) < 0.5
    assert a["dz_psnr"] > b["dz_psnr"] + 6.0


def test_bench_recon_volume_refuses_bad_arguments_before_any_work(capsys):
    from medrecon.commands import main

    assert main(["bench", "recon-volume", "--slices", "3"]) == 2
    assert "at least 7" in capsys.readouterr().err
    assert main(["bench", "recon-volume", "--source", "mr-brain2"]) == 2
    assert "not a CT source" in capsys.readouterr().err
    assert main(["bench", "recon-volume", "--tv-lam-rel", "-1"]) == 2
    assert "tv_lam_rel must be >= 0" in capsys.readouterr().err
