"""How a prior's network runs (medrecon.priors.execution): settings per device, eager fallback of a
failed compile, compiled == eager within bounds that hold on every CPU, bf16 within its tolerance."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from medrecon.errors import InputError
from medrecon.evaluation.scoring import score
from medrecon.evaluation.settings import SETTINGS, make_problem
from medrecon.priors.denoiser import EDMDenoiser
from medrecon.priors.execution import ExecutedNetwork, NetworkExecution, executed_network, timing_network_calls, with_execution
from medrecon.priors.hub import Prior
from medrecon.priors.normalisation import Normalisation, resample_slices
from medrecon.reconstruct import reconstruct
from tests import support


def ct_sample_problem(n_slices: int, size: int):
    """Slices of the shipped validation sample (ct-lung1) in the prior's units, 23 parallel views."""
    import nibabel as nib
    import numpy as np

    volume = np.asarray(nib.load(support.CT_SAMPLE).dataobj).transpose(2, 1, 0)
    index = np.linspace(1, volume.shape[0] - 2, n_slices).round().astype(int)
    images = resample_slices(Normalisation.for_modality("CT").apply(torch.as_tensor(volume[index], dtype=torch.float32)), size)
    return make_problem(SETTINGS[0], images, seed=0)


def test_settings_resolve_per_device_and_cpu_and_refuse_bad_values():
    plain = NetworkExecution.plain()
    assert NetworkExecution().for_device("cpu", native_bf16=False) == plain
    assert NetworkExecution().for_device("cpu", native_bf16=True) == NetworkExecution("bf16", True, "off")
    assert NetworkExecution().for_device("cuda") == NetworkExecution("bf16", True, "default")
    assert NetworkExecution("bf16").for_device("cpu", native_bf16=False) == NetworkExecution("bf16", True, "off")
    assert NetworkExecution("fp32").for_device("cpu", native_bf16=True) == plain  # asked for: kept
    assert NetworkExecution("fp32", True, "auto").for_device("cuda") == NetworkExecution("fp32", True, "default")
    with pytest.raises(InputError, match="precision"):
        NetworkExecution("fp16")
    with pytest.raises(InputError, match="compile"):
        NetworkExecution(compile="fast")


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch):
    from medrecon import hardware

    for flags, native in (("fpu avx2 fma", False), ("fpu avx512f avx512_bf16", True), ("fpu amx_bf16 amx_tile", True)):
        monkeypatch.setattr(hardware, "_cpuinfo", lambda flags=flags: f"model name\t: Test CPU\nflags\t\t: {flags}\n")
        assert hardware.cpu_has_native_bf16() is native
        assert hardware.cpu_model_name() == "Test CPU"


def test_an_analytic_prior_runs_as_it_is_and_refuses_what_it_cannot_do(gaussian_prior):
    prior = gaussian_prior("CT", 8)
    assert with_execution(prior, NetworkExecution()) is prior  # auto: whatever the CPU, nothing to execute
    with pytest.raises(InputError, match="no network"):
        with_execution(prior, NetworkExecution("bf16"))


class ConvNet(torch.nn.Module):
    """A one-layer network ``net(x, t)``: what the executed networks wrap, at the smallest graph."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, t):
        return self.conv(x) + t.reshape(-1, 1, 1, 1)


def test_a_failed_compile_falls_back_to_eager_once_and_the_record_says_so(small_ct_problem):
    import torch._dynamo
    import torch._inductor.config as inductor

    problem, _ = small_ct_problem(n=2, size=16, views=6)
    # the fallback wraps any network: a one-layer one is traced and fails to build in 2 s, not 10
    net = ConvNet().eval()
    prior = Prior(EDMDenoiser(net), net, support.card("CT", 16), Path("."))
    # no C++ compiler: inductor cannot build its kernels (torch's own config patch restores the setting)
    with inductor.patch({"cpp.cxx": ("/nonexistent/c++",)}), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = reconstruct(problem, prior, sampler="dds", steps=2, progress=False, execution=NetworkExecution("fp32", False, "default"))
    torch._dynamo.reset()  # the failed graph is not reused by a later test
    failures = [w for w in caught if "torch.compile failed" in str(w.message)]
    assert len(failures) == 1
    assert "failed, ran eagerly" in out.run["compile"] and "compiler" in out.run["compile"].lower()
    eager = reconstruct(problem, prior, sampler="dds", steps=2, progress=False, execution=NetworkExecution.plain())
    torch.testing.assert_close(out.mean, eager.mean)


@pytest.mark.slow
def test_a_compiled_network_matches_eager_and_compiles_once_for_a_volume():
    # torch.compile (inductor) on the CPU with a tiny network: 3 slices at batch size 2 are two
    # batches of 2 and 1; the short one is padded, so one shape is compiled, and its time recorded.
    #
    # Bounds. One network call: kernels reordered by inductor differ from eager by rounding only
    # (measured max |diff| 1.2e-6 on outputs of about 1, AVX-512 and AVX2 alike): 1e-5. The whole
    # 3-step DDS run amplifies rounding, and discretely: CG freezes a slice whose residual reaches
    # round-off, so a rounding-level change of the network's output can move that iteration.
    # Measured on this problem, eager runs whose network output was perturbed by 1e-6 relative
    # noise (two seeds, AVX-512 and emulated AVX2) drifted from the unperturbed run by 1.3e-4 to
    # 6.4e-3 max |diff| (RMS 2.7e-5 to 1.0e-3; the 5.6e-3 seen on an AMD EPYC is one of these
    # jumps). The whole-run bound is 3x the largest measured drift: max |diff| <= 2e-2, RMS <= 3e-3.
    problem, _ = ct_sample_problem(3, 32)
    results, nets = {}, {}
    for mode in ("off", "default"):
        net = support.tiny_unet(32)
        prior = Prior(EDMDenoiser(net), net, support.card("CT", 32), Path("."))
        results[mode] = reconstruct(problem, prior, sampler="dds", steps=3, batch_size=2, progress=False,
                                    execution=NetworkExecution("fp32", False, mode))
        nets[mode] = executed_network(with_execution(prior, NetworkExecution("fp32", False, mode)))
    eager, compiled = results["off"], results["default"]
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 0.3)
    with torch.no_grad():
        torch.testing.assert_close(nets["default"](x, t), nets["off"](x, t), rtol=1e-5, atol=1e-5)
    diff = compiled.mean - eager.mean
    assert float(diff.abs().max()) <= 2e-2 and float(diff.pow(2).mean().sqrt()) <= 3e-3
    assert compiled.settings["network"]["compile"] == "default" and "compile" not in compiled.run
    assert list(compiled.run["first_call_seconds"]) == ["(2, 1, 32, 32)"] and compiled.run["first_call_seconds"]["(2, 1, 32, 32)"] > 0
    assert eager.settings["network"]["compile"] == "off"


@pytest.mark.slow
def test_bf16_channels_last_gives_the_fp32_image_within_the_tolerance():
    # The fast path's tolerance (PSNR within 0.05 dB of fp32 eager), in reduced form: the shipped CT
    # prior, two validation-sample slices, DDS at 10 steps instead of 50. Slow where bf16 is
    # emulated (CPUs without AMX / AVX512-BF16).
    from medrecon.priors.hub import load_prior

    problem, reference = ct_sample_problem(2, 256)
    runs = {}
    for name, execution in {"fp32": NetworkExecution.plain(), "bf16": NetworkExecution("bf16")}.items():
        result = reconstruct(problem, load_prior("ct-starter"), sampler="dds", steps=10, progress=False, execution=execution)
        runs[name] = (result, score(result.mean, reference).psnr)
    (fp32, psnr32), (bf16, psnr16) = runs["fp32"], runs["bf16"]
    assert bf16.settings["network"]["precision"] == "bf16" and bf16.settings["network"]["channels_last"] is True
    assert fp32.settings["network"] == NetworkExecution.plain().to_dict()
    assert psnr32 > 30  # a real reconstruction, not two equal failures
    assert abs(psnr16 - psnr32) <= 0.05, (psnr32, psnr16)
    assert not torch.equal(bf16.mean, fp32.mean)  # bf16 did run


def test_the_network_timer_counts_calls_and_the_backward_pass_of_a_gradient_call():
    net = ExecutedNetwork(support.tiny_unet(16), NetworkExecution.plain())
    x, t = torch.randn(3, 1, 16, 16), torch.zeros(3)
    xg = x.clone().requires_grad_(True)
    with torch.no_grad():  # the first call of a shape is not timed (compilation, when compiled)
        net(x, t)
    net(xg, t)
    with timing_network_calls() as timer:
        with torch.no_grad():
            net(x, t)
        torch.autograd.grad(net(xg, t).sum(), xg)  # as DPS: the gradient w.r.t. the input
    assert (timer.calls, timer.images, timer.backward_passes) == (2, 6, 1) and timer.seconds > 0
    assert list(net.first_calls) == ["(3, 1, 16, 16)", "(3, 1, 16, 16) grad"]


def test_execution_keeps_the_denoiser_and_leaves_the_prior_unchanged():
    net = support.tiny_unet(8)
    prior = Prior(EDMDenoiser(net, sigma_data=1.0), net, support.card("CT", 8), Path("."))  # not the card's sigma_data
    executed = with_execution(prior, NetworkExecution.plain())
    assert isinstance(executed.denoiser.net, ExecutedNetwork) and executed.denoiser.sigma_data == 1.0
    assert prior.denoiser.net is net  # the original is untouched
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(executed.denoiser(x, 0.3), prior.denoiser(x, 0.3))
