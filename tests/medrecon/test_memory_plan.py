"""The batch size's memory plan (medrecon.batching.memory_plan), run on the CPU with the device's
memory readings injected, the CPU's default batch, and the CPU's peak memory on a 300-slice
512x512 series (slow).

The plan's network term is measured by a probe call; here the network is a fake whose "activations"
are a fixed number of bytes per pixel it sees, reported to a fake of :class:`CudaMemory`, so the
arithmetic, the grid the network is probed on and the budget are checked without a GPU.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from pydicom.uid import generate_uid

from medrecon.batching import (
    AUTO_SHARE,
    CPU_BATCH,
    MAX_AUTO_BATCH,
    auto_batch_size,
    batch_from_memory,
    cpu_batch_size,
    memory_plan,
    sampler_bytes_per_slice,
)
from medrecon.operators import CTProjector, ParallelBeamGeometry
from medrecon.operators.ct_geometry import system_matrix_entries
from medrecon.priors.execution import NetworkExecution
from medrecon.priors.hub import Prior
from medrecon.reconstruct import Problem, reconstruct
from tests import support
from tests.support_files import write_ct_series

GIB = 2**30
MIB = 2**20
FREE_80GB = 79 * GIB  # what an idle 80 GB-class GPU reports free with a prior loaded
NETWORK_BYTES_PER_PIXEL = 1280
"""The fake network's activations per pixel it sees: 80 MiB a 256x256 slice, about what ct-starter's UNet
measured on the CPU (bf16, the peak resident size's growth from batch 1 to 8: docs/benchmarks.md)."""


class FakeMemory:
    """:class:`~medrecon.batching.CudaMemory`'s readings for a CPU test: ``free`` bytes free, and
    each probe's peak what the fake network reported with :meth:`use`."""

    def __init__(self, free: int) -> None:
        self.free_bytes = free
        self.high = 0

    def start(self) -> int:
        self.high = 0
        return 0

    def use(self, nbytes: int) -> None:
        self.high = max(self.high, nbytes)

    def peak(self) -> int:
        return self.high

    def free(self) -> int:
        return self.free_bytes


class RecordingNetwork(torch.nn.Module):
    """A denoiser whose activations take ``bytes_per_pixel`` per pixel of its input (a UNet's grow
    so); records the shapes it was called with."""

    def __init__(self, memory: FakeMemory, bytes_per_pixel: int = NETWORK_BYTES_PER_PIXEL) -> None:
        super().__init__()
        self.memory, self.bytes_per_pixel = memory, bytes_per_pixel
        self.shapes: list[tuple] = []

    def forward(self, x, sigma):
        self.shapes.append(tuple(x.shape))
        self.memory.use(x.shape[0] * x.shape[-2] * x.shape[-1] * self.bytes_per_pixel)
        return x * 1.0


def recording_prior(memory: FakeMemory, size: int = 256) -> Prior:
    net = RecordingNetwork(memory)
    return Prior(net, torch.nn.Identity(), support.card("CT", size, "recording-ct"), Path("."))


def ct_series_problem(slices: int = 300, size: int = 512, views: int = 23) -> Problem:
    """The problem of a DICOM-sized CT series: ``slices`` of ``size x size`` at ``views`` parallel views
    (no data needed for a plan: zero sinograms)."""
    op = CTProjector(ParallelBeamGeometry.sparse_view(size, views))
    return Problem(op, torch.zeros((slices, *op.out_shape)), "CT", noisy=False)


def plan_for(problem, prior, memory, sampler="dds", **kwargs):
    return memory_plan(prior, problem.op, sampler, NetworkExecution(), "cpu", problem.slices, memory=memory, **kwargs)


# ------------------------------------------------------------------------------ arithmetic
def test_batch_from_memory_takes_the_fixed_bytes_first():
    assert batch_from_memory(80 * GIB, 0.12 * GIB, 1000, fixed_bytes=0) == min(int(0.7 * 80 / 0.12), MAX_AUTO_BATCH)
    assert batch_from_memory(10 * GIB, 0.12 * GIB, 1000, fixed_bytes=2 * GIB) == int((0.7 * 10 - 2) / 0.12)
    assert batch_from_memory(10 * GIB, 0.12 * GIB, 1000, fixed_bytes=20 * GIB) == 1  # never below one slice
    assert batch_from_memory(10 * GIB, 0.12 * GIB, 1000, share=0.5) == int(0.5 * 10 / 0.12)


def test_sampler_bytes_come_from_the_operators_shapes():
    op = ct_series_problem(1).op
    image, data = 512 * 512 * 4, 4 * 23 * op.out_shape[-1]
    dds = sampler_bytes_per_slice(op, "dds")
    assert dds == {"state": 14 * image + data, "operator": 2 * (image + data)}
    assert sampler_bytes_per_slice(op, "dds", volume=True)["state"] == (14 + 13) * image + data
    # score-SDE's data are the full-view sinogram (23 x 23 views at 512), its operator part FBP's filtering
    score = sampler_bytes_per_slice(op, "score_sde")
    assert score["state"] == 12 * image + 6 * 23 * data and score["operator"] > 4 * 23 * data
    mr = support.small_mr_problem(n=1, size=16, coils=4)[0].op  # complex images, 4 coils
    assert sampler_bytes_per_slice(mr, "dds") == {"state": 14 * 16 * 16 * 8 + 4 * 16 * 16 * 8, "operator": 4 * 4 * 16 * 16 * 8}


# ------------------------------------------------------------------------------ the plan on a 512x512 series
def test_a_300_slice_512_series_is_planned_within_the_budget():
    problem = ct_series_problem()
    memory = FakeMemory(FREE_80GB)
    plan = plan_for(problem, recording_prior(memory, size=512), memory)  # a prior run at the images' own size
    per_slice = plan.network_bytes + plan.sampler_bytes
    assert plan.network_bytes == 512 * 512 * NETWORK_BYTES_PER_PIXEL
    parts = sampler_bytes_per_slice(problem.op, "dds")
    assert plan.sampler_bytes == parts["state"] + parts["operator"]
    assert plan.fixed_bytes >= 2 * 8 * system_matrix_entries(problem.op.geometry)  # the system matrix and its transpose
    assert 1 <= plan.batch_size <= min(300, MAX_AUTO_BATCH)
    assert plan.batch_size * per_slice + plan.fixed_bytes <= AUTO_SHARE * FREE_80GB
    assert (plan.batch_size + 1) * per_slice + plan.fixed_bytes > AUTO_SHARE * FREE_80GB  # the most that fits
    record = plan.to_dict()
    assert record["bytes_per_slice"] == {"network": int(plan.network_bytes), "sampler": int(plan.sampler_bytes)}
    assert record["limit"] == "memory" and record["network_grid"] == [512, 512] and record["batch_size"] == plan.batch_size


def test_multiresolution_probes_the_network_on_the_priors_grid():
    problem = ct_series_problem()
    memory = FakeMemory(FREE_80GB)
    prior = recording_prior(memory, size=256)
    plan = plan_for(problem, prior, memory, multiresolution=True)
    assert prior.denoiser.shapes == [(4, 1, 256, 256)]  # handed 512x512 images, the network ran on 256x256
    assert plan.network_bytes == 256 * 256 * NETWORK_BYTES_PER_PIXEL
    assert plan.probe_input == (1, 512, 512) and plan.network_grid == (256, 256)
    # the sampler's tensors stay on the native grid
    assert plan.sampler_bytes == sum(sampler_bytes_per_slice(problem.op, "dds").values())
    assert plan.batch_size * plan.bytes_per_slice + plan.fixed_bytes <= AUTO_SHARE * FREE_80GB
    # on 20 GB free the memory decides, and the coarse grid's cheaper network lets more slices in
    small = FakeMemory(20 * GIB)
    coarse = plan_for(problem, recording_prior(small, 256), small, multiresolution=True).batch_size
    native = plan_for(problem, recording_prior(small, 512), small).batch_size
    assert 1 <= native < coarse < MAX_AUTO_BATCH


def test_a_volume_prior_keeps_every_slice_state_fixed():
    problem = ct_series_problem(slices=300)
    memory = FakeMemory(FREE_80GB)
    plan = plan_for(problem, recording_prior(memory, 256), memory, sampler="diffusion_mbir", volume=True,
                    multiresolution=True)
    parts = sampler_bytes_per_slice(problem.op, "diffusion_mbir", volume=True)
    assert plan.sampler_bytes == parts["operator"]  # the batch is the network's and the operator's chunk
    assert plan.fixed_bytes >= 300 * parts["state"]
    assert plan.batch_size * plan.bytes_per_slice + plan.fixed_bytes <= AUTO_SHARE * FREE_80GB


def test_a_latent_prior_is_probed_on_the_latent_grid_and_through_its_decoder(tiny_latent_prior):
    prior = tiny_latent_prior()
    problem, _ = support.small_ct_problem(n=6, size=8)
    shapes = {"denoiser": [], "decoder": []}
    hooks = [prior.latent.denoiser.net.register_forward_pre_hook(lambda m, a: shapes["denoiser"].append(tuple(a[0].shape))),
             prior.latent.autoencoder.decoder.register_forward_pre_hook(lambda m, a: shapes["decoder"].append(tuple(a[0].shape)))]
    try:
        plan = plan_for(problem, prior, FakeMemory(FREE_80GB), sampler="resample")
    finally:
        for h in hooks:
            h.remove()
    assert shapes["denoiser"] == [(4, 4, 4, 4)] and len(shapes["decoder"]) == 1  # 8x8 images, latents 4 x 4x4
    assert plan.probe_input == (4, 4, 4) and plan.network_grid == (4, 4) and plan.batch_size == 6


# ------------------------------------------------------------------------------ the CPU
def test_the_cpu_batch_is_8_at_any_image_size():
    assert cpu_batch_size(300) == CPU_BATCH and cpu_batch_size(3) == 3  # capped by the volume
    for size in (8, 256, 512):
        op = CTProjector(ParallelBeamGeometry.sparse_view(size, 23))
        assert auto_batch_size(None, op, "dds", NetworkExecution(), "cpu", 300) == CPU_BATCH


def test_an_auto_batch_on_the_cpu_records_its_rule(gaussian_prior, small_ct_problem):
    problem, _ = small_ct_problem(n=3, size=8)
    out = reconstruct(problem, gaussian_prior(), sampler="dds", steps=2, batch_size="auto", progress=False)
    plan = out.run["memory_plan"]
    assert out.run["batch_size"] == 3 and plan["device"] == "cpu" and plan["batch_size"] == 3
    assert plan["bytes_per_slice"]["sampler"] == sum(sampler_bytes_per_slice(problem.op, "dds", problem.y.dtype).values())
    assert "memory_plan" not in reconstruct(problem, gaussian_prior(), steps=2, batch_size=2, progress=False).run


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_auto_batch_on_a_gpu_records_its_memory_plan():
    prior = support.unet_prior("CT", 16)
    prior = Prior(prior.denoiser.to("cuda"), prior.network.to("cuda"), prior.card, prior.path)
    problem, _ = support.small_ct_problem(n=5, size=16)
    out = reconstruct(problem, prior, sampler="dds", steps=2, batch_size="auto", device="cuda", progress=False)
    plan = out.run["memory_plan"]
    assert plan["bytes_per_slice"]["network"] > 0 and plan["limit"] == "slices" and out.run["batch_size"] == 5


# ------------------------------------------------------------------------------ measured on the CPU
PEAK_RSS_LIMIT = 4 * 10**9
SAMPLE_300 = """
import resource, sys, torch
from medrecon.inputs import load_input
from medrecon.reconstruct import reconstruct
from tests.support import gaussian_prior

prior = gaussian_prior("CT", 256)
data = load_input(sys.argv[1], lambda modality: prior, grid=sys.argv[2])
out = reconstruct(data.problem, data.prior, steps=1, options={"cg_iters": 1}, batch_size=1,
                  multiresolution=data.multiresolution, progress=False)
assert out.mean.shape[0] == 300, out.mean.shape
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@pytest.mark.slow  # about 30 s on 2 idle CPU cores (up to 2 min while other jobs share them)
def test_a_300_slice_512_series_is_sampled_within_4_gb_on_the_cpu_at_batch_1(tmp_path):
    """``medrecon reconstruct``'s loading, simulation and sampling of a 300-slice 512x512 CT DICOM
    series at batch 1 on CT's default grid (``auto``: the study's 512x512, the prior on its 256 grid),
    measured as the child process's peak resident size (2.1 GiB measured; 1.3 GiB on the prior's
    grid; docs/benchmarks.md). One step and one CG iteration: the peak is the volume's tensors and
    one batch's working set, allocated in the first step whatever the step count. The analytic
    prior has no network: ct-starter's activations add about 80 MB at batch 1. The command's
    baseline and metrics, run after the sampling, are not part of this (docs/benchmarks.md,
    "Studies of another matrix")."""
    yy, xx = np.mgrid[-1:1:512j, -1:1:512j]
    body = xx**2 / 0.8**2 + yy**2 / 0.6**2 < 1
    lungs = ((np.abs(xx) - 0.35) ** 2 / 0.25**2 + yy**2 / 0.4**2) < 1
    hu = np.where(lungs, -800, np.where(body, 40, -1000))
    stored = np.broadcast_to((hu + 1024).astype(np.int16), (300, 512, 512))
    series = write_ct_series(tmp_path / "series", "P300", generate_uid(), stored, np.arange(300) * 1.0)["folder"]
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(SAMPLE_300), str(series), "auto"], cwd=support.ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    peak = int(result.stdout.strip().splitlines()[-1])
    assert peak < PEAK_RSS_LIMIT, f"peak RSS {peak / 2**30:.2f} GiB"
