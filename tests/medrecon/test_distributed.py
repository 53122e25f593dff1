"""medrecon.distributed and reconstruct_sharded: slices shared among torchrun processes (gloo, CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pytest
import torch

from medrecon.distributed import init_if_launched, rank_device, reconstruct_sharded, shard, world
from medrecon.errors import InputError
from medrecon.priors.execution import NetworkExecution
from medrecon.reconstruct import reconstruct
from tests.support import CT_SAMPLE, ROOT, gaussian_prior, saved_unet_prior, small_ct_problem, unet_prior

# fp32 eager on every CPU: with native bf16 (auto's choice there) a network's rounding depends on the
# batch's composition, which sharding changes; the sharding, not bf16, is what is tested here
KWARGS = dict(sampler="dds", steps=4, options={"cg_iters": 5}, samples=2, seed=11, batch_size=2, progress=False,
              execution=NetworkExecution.plain())


def network_prior():
    """A tiny untrained UNet prior on 8x8 CT images, the same on every rank (seeded): its run
    record (compile/first-call seconds) differs between ranks, its settings do not."""
    return unet_prior("CT", 8, attention=False)


def _torchrun(nproc: int, *args, timeout: int = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_shards_cover_every_slice_once_in_order_and_are_balanced():
    for n in range(0, 12):
        for world_size in range(1, 6):
            parts = [shard(n, r, world_size) for r in range(world_size)]
            assert [i for p in parts for i in range(p.start, p.stop)] == list(range(n))
            sizes = [p.stop - p.start for p in parts]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert shard(5, 0, 2) == slice(0, 3) and shard(5, 1, 2) == slice(3, 5)
    with pytest.raises(InputError):
        shard(5, 2, 2)


def test_not_launched_is_one_process_and_plain_reconstruct(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert world() == (0, 1, 0) and init_if_launched("cpu") is False
    assert rank_device("cpu") == torch.device("cpu") and rank_device(None) == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    problem, _ = small_ct_problem(n=3)
    prior = gaussian_prior()
    plain = reconstruct(problem, prior, **KWARGS)
    same = reconstruct_sharded(problem, prior, **KWARGS)
    torch.testing.assert_close(same.mean, plain.mean, rtol=0, atol=0)
    assert same.ranks is None and "ranks" not in same.summary()


_SHARDED_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, torch
    import torch.distributed as dist
    from medrecon.distributed import world
    from medrecon.distributed import reconstruct_sharded
    from medrecon.priors.execution import NetworkExecution
    from tests.support import gaussian_prior, small_ct_problem, unet_prior

    KWARGS = {kwargs}  # the test module's KWARGS; the prior is network_prior()'s
    out = sys.argv[1]
    rank = int(os.environ["RANK"])
    prior = gaussian_prior()
    assert not dist.is_initialized()
    odd, _ = small_ct_problem(n=5)
    result = reconstruct_sharded(odd, unet_prior("CT", 8, attention=False), **KWARGS)  # initialises the group (gloo) and keeps it
    assert dist.is_initialized() and dist.get_backend() == "gloo" and world()[:2] == (rank, 2)
    if rank == 0:
        torch.save({"mean": result.mean, "std": result.std}, out + "/five.pt")
        with open(out + "/five.json", "w") as f:
            json.dump(result.summary(), f)
    else:
        assert result is None
    # a second call on the same group: one slice for two ranks (rank 1's shard is empty), to_all
    # gives every rank the volume, and the global slice index 7 seeds it
    one, _ = small_ct_problem(n=1)
    result = reconstruct_sharded(one, prior, to_all=True, slice_indices=[7], **KWARGS)
    torch.save(result.mean, out + f"/one-rank{rank}.pt")
    # the group is destroyed at exit
    """
)


def test_two_gloo_processes_give_the_one_process_volume(tmp_path):
    script = tmp_path / "sharded.py"
    script.write_text(_SHARDED_SCRIPT.replace("{kwargs}", repr(KWARGS)))
    proc = _torchrun(2, script, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    prior = gaussian_prior()
    problem, _ = small_ct_problem(n=5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the children (OMP_NUM_THREADS=1): the same reduction order
    try:
        single = reconstruct(problem, network_prior(), **KWARGS)
    finally:
        torch.set_num_threads(threads)
    got = torch.load(tmp_path / "five.pt", weights_only=True)
    torch.testing.assert_close(got["mean"], single.mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got["std"], single.std, rtol=1e-4, atol=1e-4)
    summary = json.loads((tmp_path / "five.json").read_text())
    assert summary["world_size"] == 2 and [r["slices"] for r in summary["ranks"]] == [[0, 3], [3, 5]]
    assert summary["nfe_per_slice_and_sample"] == single.nfe and summary["samples"] == 2
    assert [list(r["run"]) for r in summary["ranks"]] == [["batch_size", "first_call_seconds"]] * 2
    # a different seed gives a different volume: the comparison above can fail
    assert not torch.allclose(reconstruct(problem, network_prior(), **dict(KWARGS, seed=12)).mean, got["mean"], atol=1e-3)

    one, _ = small_ct_problem(n=1)
    expected = reconstruct(one, prior, slice_indices=[7], **KWARGS).mean
    for rank in (0, 1):
        torch.testing.assert_close(torch.load(tmp_path / f"one-rank{rank}.pt", weights_only=True), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # about 40 s on 2 busy CPU cores: three processes each simulate and reconstruct
def test_torchrun_cli_writes_the_one_process_volume(tmp_path):
    from medrecon.commands import main

    prior = saved_unet_prior(tmp_path / "tiny-ct", "CT")
    flags = ["--modality", "ct", "--slices", "0:3", "--steps", "1", "--prior", prior, "--batch-size", "2", "--quiet",
             "--precision", "fp32"]  # the same arithmetic on every CPU (see KWARGS)
    single = tmp_path / "single.nii.gz"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the children (OMP_NUM_THREADS=1): the same reduction order
    try:
        assert main(["reconstruct", str(CT_SAMPLE), "-o", str(single), *map(str, flags)]) == 0
    finally:
        torch.set_num_threads(threads)
    shared = tmp_path / "shared.nii.gz"
    proc = _torchrun(2, "-m", "medrecon", "reconstruct", CT_SAMPLE, "-o", shared, *flags, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("wrote ") == 1  # rank 0 alone reports (and writes)
    a, b = nib.load(single), nib.load(shared)
    np.testing.assert_allclose(b.affine, a.affine)
    va, vb = np.asarray(a.dataobj), np.asarray(b.dataobj)
    assert va.shape == vb.shape == (256, 256, 3)
    # the same batches ([0, 1], [2]) and threads give the same voxels here; HU are rounded to integers,
    # so a floating-point difference elsewhere may flip a rounding, and nothing more
    assert np.abs(va.astype(float) - vb.astype(float)).max() <= 1 and np.mean(va == vb) > 0.999
    record = json.loads((tmp_path / "shared.json").read_text())
    assert record["reconstruction"]["world_size"] == 2
    assert [r["slices"] for r in record["reconstruction"]["ranks"]] == [[0, 2], [2, 3]]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("shared")) == ["shared.json", "shared.nii.gz", "shared.png"]
