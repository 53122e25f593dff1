"""The GPU fast path in the form the CPU can test: no host synchronisation inside a sampling step of
any sampler (CT and complex multi-coil MR, Cartesian and radial, noiseless and noisy, the EDM and
discrete-VP adapters, DDS-3D and DiffusionMBIR, ReSample's latent prior), caught by a trap on every
Python-level host read of a tensor; and the trap itself. Network execution (bf16, channels_last,
torch.compile): priors/test_execution.py."""

from __future__ import annotations

import contextlib
import functools
import traceback
from pathlib import Path

import pytest
import torch

from medrecon import samplers
from medrecon.operators import NonCartesianMRI, simulated_maps
from medrecon.operators.trajectories import radial
from medrecon.priors.denoiser import DiscreteVPSchedule, EDMDenoiser, VPEpsilonDenoiser
from medrecon.priors.hub import Prior
from medrecon.reconstruct import Problem, reconstruct
from tests import support

# What reads a tensor's value on the host from Python (each waits for the device on a GPU).
HOST_READS = ("__bool__", "item", "tolist", "__float__", "__int__", "__index__", "numpy", "cpu")


def _optimiser_step_count() -> bool:
    """torch.optim's Adam (ReSample's latent solve) keeps its step counter as a host tensor unless
    made capturable, and reads it with ``.item()``: a host read of host memory, no device wait."""
    return any(frame.filename.endswith("torch/optim/optimizer.py") and frame.name == "_get_value"
               for frame in traceback.extract_stack(limit=4))


class HostReadTrap:
    """While armed, every Python-level host read of a tensor's value is recorded with its caller."""

    def __init__(self) -> None:
        self.armed = False
        self.reads: list[str] = []

    @contextlib.contextmanager
    def installed(self, monkeypatch):
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)

            def trapped(tensor, *args, _original=original, _name=name, **kwargs):
                if self.armed and not _optimiser_step_count():
                    self.armed = False  # the traceback itself must not trip the trap
                    self.reads.append(f"{_name} at " + "".join(traceback.format_stack(limit=7)[:-1]))
                    self.armed = True
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, trapped)
        yield self


class ArmingDenoiser(torch.nn.Module):
    """Arms the trap at the sampler's first network call: what comes before (argument checks,
    operator norms, the first noise) is set-up, not a step."""

    def __init__(self, inner, trap: HostReadTrap) -> None:
        super().__init__()
        self.inner, self.trap = inner, trap

    def forward(self, x, sigma):
        self.trap.armed = True
        return self.inner(x, sigma)

    def denoise(self, x, sigma):
        self.trap.armed = True
        return self.inner.denoise(x, sigma)


def _pixel_prior(modality: str, size: int, denoiser) -> Prior:
    return Prior(denoiser, torch.nn.Identity(), support.card(modality, size, f"trap-{modality.lower()}"), Path("."))


def _mr_problem(radial_spokes=0):
    if not radial_spokes:
        return support.small_mr_problem(n=2, size=16, noisy=True)[0]
    size = 16  # the NUFFT's torch backend: its GPU path
    maps = simulated_maps(4, (size, size), dtype=torch.complex64)[None]
    op = NonCartesianMRI(radial((size, size), radial_spokes), (size, size), maps, backend="torch")
    x = (0.5 + 0.1 * torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(1))).to(torch.complex64)
    return Problem(op, op(x), "MR", noisy=True)


CASES = {
    # sampler, problem, options: every sampler, CT and complex multi-coil MR, noiseless and noisy,
    # the EDM and the discrete-VP adapters, DDS-3D's ADMM and DiffusionMBIR's
    "dds-ct-vp": ("dds", "ct", "vp", {}),
    "dds-mr-noisy": ("dds", "mr", "edm", {}),
    "dds-radial-torch-nufft": ("dds", "mr-radial", "edm", {}),
    "dds-3d": ("dds", "ct", "edm", {"volume_prior": "tv-z", "tv_lam_rel": 1e-3, "tv_rho_rel": 1e-2}),
    "score-sde-ct": ("score_sde", "ct", "edm", {}),
    "score-sde-mr": ("score_sde", "mr", "vp", {}),
    "dps-ct": ("dps", "ct", "vp", {}),
    "dps-mr-noisy": ("dps", "mr", "edm", {}),
    "diffusion-mbir": ("diffusion_mbir", "ct", "edm", {}),
    "resample-ct": ("resample", "ct-latent", "latent", {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_host_synchronisation_inside_the_sampling_loop(case, monkeypatch, tiny_latent_prior, small_ct_problem):
    sampler, data, kind, options = CASES[case]
    trap = HostReadTrap()
    if data.startswith("mr"):
        problem, size = _mr_problem(radial_spokes=12 if data == "mr-radial" else 0), 16
    else:
        problem, _ = small_ct_problem(n=2, size=8 if kind == "latent" else 16, views=6)
        size = 8 if kind == "latent" else 16
    modality = "MR" if data.startswith("mr") else "CT"
    if kind == "latent":
        prior = tiny_latent_prior()
        prior.latent.denoiser = ArmingDenoiser(prior.latent.denoiser, trap)
    else:
        net = support.tiny_unet(size)
        inner = EDMDenoiser(net) if kind == "edm" else VPEpsilonDenoiser(net, DiscreteVPSchedule.linear())
        prior = _pixel_prior(modality, size, ArmingDenoiser(inner, trap))
    original = samplers.SAMPLERS[sampler].function

    @functools.wraps(original)  # the presets read the sampler's options from its signature
    def disarming(*args, **kwargs):
        try:
            return original(*args, **kwargs)
        finally:
            trap.armed = False

    monkeypatch.setitem(samplers.SAMPLERS[sampler].__dict__, "function", disarming)  # the spec's cached function
    with trap.installed(monkeypatch):
        out = reconstruct(problem, prior, sampler=sampler, steps=3, options=options, progress=False)
    assert torch.isfinite(out.mean).all()
    assert trap.reads == [], "host reads inside a sampling step:\n" + "\n".join(trap.reads)


def test_the_trap_catches_a_host_read(monkeypatch):
    trap = HostReadTrap()
    with trap.installed(monkeypatch):
        trap.armed = True
        if torch.ones(1) > 0:  # __bool__
            pass
        float(torch.ones(()))
        trap.armed = False
    assert [r.split(" ")[0] for r in trap.reads] == ["__bool__", "__float__"]
