"""``medrecon bench volume``: how fast a whole study is reconstructed, end to end through
:func:`medrecon.reconstruct`, and where the time goes.

Protocol:

- Volume: ``--slices`` slices (default 300) of 256x256: the validation CT patient (ct-lung1, all
  its slices, in the prior's units) repeated back and forth until there are enough; 23 parallel
  views, noiseless (the setting of the GPU figures in docs/benchmarks.md).
- Rows: each sampler of ``--samplers`` (default every slice-wise sampler of a pixel prior: DDS,
  DPS, score-SDE) at its ct-clean preset (``--steps SAMPLER=N`` overrides, stated in the row; the
  long samplers, score-SDE's 2001 and DPS's 1000 NFE, run on the first ``--long-slices`` slices
  where given, the row says how many), with the device's fast network execution (``--precision`` /
  ``--compile``, default ``auto``: bf16 + channels_last + ``torch.compile`` on a GPU, bf16 eager on
  a CPU with native bf16, fp32 eager elsewhere); and DDS once more in fp32 eager
  (``--no-reference`` to skip), whose PSNR the fast rows are compared with (the tolerance: at most
  0.05 dB).
- Per row: total seconds (first calls, i.e. compilation, included and also given apart), slices/s,
  network images/s, the network's share of the sampling time (network calls timed with CUDA events,
  or the wall clock on the CPU; first calls excluded from both), achieved TFLOP/s of the network
  (FLOPs per image counted by ``torch.utils.flop_counter``, forward plus the input gradient for
  DPS), peak memory (CUDA peak allocation; on the CPU the process's peak resident size), PSNR.
- ``--networks``: the network alone, images/s and TFLOP/s at the batch size, eager fp32 and with
  the fast execution: the shipped prior's architecture and the reference UNet of the GPU figures
  (32, 64, 128, 128; attention at the third level; random weights), at 256x256.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from medrecon.benchmarks import report
from medrecon.benchmarks.volume import repeated_volume, volume_slab
from medrecon.errors import InputError, positive_int
from medrecon.evaluation.scoring import score
from medrecon.operators import CTProjector, ParallelBeamGeometry
from medrecon.operators.noise import randn_per_item
from medrecon.priors.denoiser import call_network
from medrecon.priors.execution import ExecutedNetwork, NetworkExecution, timing_network_calls
from medrecon.priors.hub import load_prior
from medrecon.priors.networks import UNetConfig, build_unet
from medrecon.reconstruct import Problem, reconstruct
from medrecon.samplers.presets import sampler_settings
from medrecon.samplers.registry import DEFAULT_SAMPLER, SAMPLERS, sampler_names

from .common import bench_device, markdown_table, run_header, time_call

VIEWS = 23
# measured on an H100 (docs/benchmarks.md, GPU figures): 3x3 convolutions in bf16, channels_last (the UNet layers' ceiling)
H100_CONV_CEILING = "94 TFLOP/s at 32 ch 256², 196 at 64 ch 128², 338 at 128 ch 64², 484 at 256 ch 32²"
REFERENCE_UNET = {"block_out_channels": (32, 64, 128, 128), "attention_levels": (2,), "layers_per_block": 2}


def parse_steps(items: list[str] | None) -> dict[str, int]:
    """``["SAMPLER=N", ...]`` -> ``{SAMPLER: N}`` (registry names, positive N)."""
    steps = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if name not in SAMPLERS or not value.isdigit() or int(value) < 1:
            raise InputError(f"--steps takes SAMPLER=N with a positive N, got {item!r}")
        steps[name] = int(value)
    return steps


def _scores(image, reference) -> dict:
    s = score(image, reference, "volume")
    return {"psnr": s.psnr, "ssim": s.ssim}


def network_flops(net, shape: tuple[int, ...], device, *, with_input_gradient: bool = False) -> int:
    """FLOPs of one image ``(1, *shape)`` through ``net`` (and of the gradient w.r.t. the input)."""
    x = torch.randn((1, *shape), device=device, requires_grad=with_input_gradient)
    t = torch.full((1,), 0.5, device=device)
    trainable = [p for p in net.parameters() if p.requires_grad]
    for p in trainable:  # as in DPS: the gradient w.r.t. the input only, none for the weights
        p.requires_grad_(False)
    try:
        # attention through the math kernel: its matrix products are counted (fused kernels are not)
        with FlopCounterMode(display=False) as counter, torch.set_grad_enabled(with_input_gradient), \
                sdpa_kernel(SDPBackend.MATH):
            out = call_network(net, x, t)
            if with_input_gradient:
                out.sum().backward()  # (autograd.grad cannot run under the counter)
    finally:
        for p in trainable:
            p.requires_grad_(True)
    return int(counter.get_total_flops())


def network_rate(net, execution, shape, batch: int, device, *, calls: int = 3) -> dict:
    """Images/s and first-call seconds of ``net`` alone at ``batch``, as ``execution`` runs it."""
    executed = ExecutedNetwork(net, execution.for_device(device))
    x = torch.randn((batch, *shape), device=device)
    t = torch.full((batch,), 0.5, device=device)
    with torch.no_grad():
        executed(x, t)  # first call: compilation when compiled
        with timing_network_calls() as timer:
            for _ in range(calls):
                executed(x, t)
    seconds = timer.seconds
    return {"images_per_second": timer.images / seconds, "first_call_seconds": sum(executed.first_calls.values())}


def noise_draw_seconds(batch: int, shape: tuple[int, ...], device, *, repeats: int = 20) -> dict:
    """Seconds of one diffusion-noise draw for ``batch`` slices (median of ``repeats`` after a
    warm-up draw, :func:`~medrecon.benchmarks.common.time_call`): from one generator per slice (the
    samplers' way, a ``torch.randn`` per slice) and, for comparison, one batched ``torch.randn``."""
    device = torch.device(device)

    def generator(seed):
        return (torch.Generator(device=device) if device.type == "cuda" else torch.Generator()).manual_seed(seed)

    like = torch.empty((batch, *shape), device=device)
    gens = [generator(k) for k in range(batch)]
    one = generator(batch)

    return {"batch": batch, "per_slice_generators": time_call(lambda: randn_per_item(like, gens), repeats, device),
            "one_batched_draw": time_call(lambda: torch.randn(like.shape, generator=one, device=device), repeats, device)}


@dataclass(frozen=True)
class ThroughputBench:
    """What ``medrecon bench volume`` runs (module docstring). ``steps``: ``{sampler: steps}``."""

    slices: int = 300
    samplers: tuple[str, ...] = tuple(sampler_names(prior="pixel", slice_wise=True))
    steps: dict = field(default_factory=dict)
    long_slices: int | None = None
    no_reference: bool = False
    networks: bool = False
    network_batch: int = 32
    prior: str = "ct-starter"
    starter: str | None = None
    batch_size: int | str = "auto"
    device: str = "auto"
    precision: str = "auto"
    compile: str = "auto"
    seed: int = 0
    json: str | None = None
    write: str | None = None
    section: str = "volume-cpu"


def _runs(bench: ThroughputBench) -> list[tuple[str, str, object]]:
    fast = NetworkExecution(precision=bench.precision, compile=bench.compile)
    runs = [(sampler, "fast", fast) for sampler in bench.samplers]
    if DEFAULT_SAMPLER in bench.samplers and not bench.no_reference:
        runs.insert(1, (DEFAULT_SAMPLER, "fp32 eager (reference)", NetworkExecution.plain()))
    return runs


def run_throughput_bench(bench: ThroughputBench, *, command: str = "medrecon bench volume") -> dict:
    """Run the tables and print them as Markdown (and write them / their JSON where asked);
    returns ``{"header", "rows", "networks"}``."""
    if bench.write:
        report.check_write_target(bench.write, bench.section)
    positive_int(bench.slices, "--slices")
    steps = dict(bench.steps)
    runs = _runs(bench)
    for sampler, _, _ in runs:  # bad settings are refused before any work
        sampler_settings(sampler, "ct-clean", steps=steps.get(sampler))
    device = bench_device(bench.device)
    prior = load_prior(bench.prior, device=device)
    size = prior.card.image_size
    images, spacing = volume_slab("ct-lung1", prior.card.normalisation, size, 0, bench.starter)
    source_slices = images.shape[0]
    images = repeated_volume(images, bench.slices)
    op = CTProjector(ParallelBeamGeometry.sparse_view((size, size), VIEWS, "uniform"))
    problem = Problem(op, op.to(device)(images.to(device)).cpu(), "CT", noisy=False)
    flops = {grad: network_flops(prior.network, (prior.card.channels, size, size), device, with_input_gradient=grad)
             for grad in (False, True)}
    t0 = time.perf_counter()
    rows = []
    long_slices = bench.long_slices or problem.slices
    positive_int(long_slices, "--long-slices")
    for sampler, label, execution in runs:
        fresh = load_prior(bench.prior, device=device)  # each run compiles and converts its own copy
        run_problem = problem
        if SAMPLERS[sampler].long and long_slices < problem.slices:
            run_problem = Problem(op.batch_slice(slice(0, long_slices)), problem.y[:long_slices], "CT", noisy=False)
        with timing_network_calls() as timer:
            result = reconstruct(run_problem, fresh, sampler=sampler, steps=steps.get(sampler), batch_size=bench.batch_size,
                                 device=device, seed=bench.seed, progress=False, execution=execution)
        network = result.settings["network"]
        first = sum(result.run["first_call_seconds"].values())
        sampling = max(result.seconds - first, 1e-9)
        net_seconds = timer.seconds
        grad = SAMPLERS[sampler].gradient
        row = {
            "sampler": sampler, "execution": label, "steps": result.settings["steps"], "nfe": result.nfe,
            "network": dict(network),
            "batch_size": result.run["batch_size"], "slices": run_problem.slices, "seconds": result.seconds,
            "first_call_seconds": first, "slices_per_second": run_problem.slices / result.seconds,
            "images_per_second": run_problem.slices * result.nfe / result.seconds,
            "network_share": net_seconds / sampling if timer.calls else None,
            "tflops": flops[grad] * timer.images / net_seconds / 1e12 if timer.calls and net_seconds > 0 else None,
            "peak_memory_bytes": result.peak_memory_bytes, **_scores(result.mean, images[: run_problem.slices]),
        }
        rows.append(row)
        print(f"  {sampler:10s} {label:24s} {row['seconds']:8.1f} s  {row['slices_per_second']:.3f} slices/s  "
              f"{row['images_per_second']:.1f} img/s  network {100 * (row['network_share'] or 0):.0f}%  "
              f"PSNR {row['psnr']:.2f}", flush=True)
    reference = next((r["psnr"] for r in rows if r["execution"].startswith("fp32 eager")), None)
    for r in rows:
        r["psnr_difference"] = None if reference is None or r["sampler"] != DEFAULT_SAMPLER else r["psnr"] - reference
    networks = []
    if bench.networks:
        architectures = {f"{prior.card.name} (shipped)": prior.network}
        torch.manual_seed(0)
        gpu_unet = build_unet(UNetConfig(sample_size=size, **REFERENCE_UNET)).to(device).eval()
        architectures["reference UNet of the GPU figures (random weights)"] = gpu_unet
        for name, net in architectures.items():
            shape = (int(net.config.in_channels), size, size)
            per_image = network_flops(net, shape, device)
            for label, execution in (("fp32 eager", NetworkExecution.plain()),
                                     ("fast", NetworkExecution(precision=bench.precision, compile=bench.compile))):
                rate = network_rate(net, execution, shape, bench.network_batch, device)
                networks.append({"network": name, "parameters": sum(p.numel() for p in net.parameters()),
                                 "gflop_per_image": per_image / 1e9, "execution": label,
                                 "execution_settings": execution.for_device(device).to_dict(), **rate,
                                 "tflops": per_image * rate["images_per_second"] / 1e12})
                n = networks[-1]
                print(f"  {name:42s} {label:12s} {n['images_per_second']:8.1f} img/s  {n['tflops']:.2f} TFLOP/s", flush=True)
    fast_dds = next((r for r in rows if r["sampler"] == DEFAULT_SAMPLER and r["execution"] == "fast"), None)
    noise = noise_draw_seconds(fast_dds["batch_size"] if fast_dds else 8, (prior.card.channels, size, size), device)
    header = run_header(
        command, device, t0, prior=prior.card.name, noise=noise,
        volume=(f"{problem.slices} slices of {size}x{size}: the {source_slices} slices of ct-lung1 (validation; "
                f"{spacing[2]:.3g} mm) repeated back and forth; {VIEWS} parallel views, noiseless"),
        gflop_per_image=flops[False] / 1e9, gflop_per_dps_image=flops[True] / 1e9,
        ceiling=H100_CONV_CEILING if device.type == "cuda" else None,
    )
    table = to_markdown(rows, networks, header)
    print(table)
    result = {"header": header, "rows": rows, "networks": networks}
    if bench.json:
        Path(bench.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    if bench.write:
        report.write_section(bench.write, table, bench.section)
    return result


def _execution_label(n: dict) -> str:
    """``bf16 channels_last compile default`` of an execution's settings."""
    parts = [n["precision"]] + (["channels_last"] if n["channels_last"] else [])
    parts.append(f"compile {n['compile']}" if n["compile"] != "off" else "eager")
    return " ".join(parts)


def to_markdown(rows: list[dict], networks: list[dict], header: dict) -> str:
    """The tables, with the command, machine, date and volume stated above them."""
    lines = [
        f"Command: `{header['command']}`  ",
        f"Machine: {header['machine']}; date {header['date']}; total {header['seconds']:.0f} s.  ",
        f"Prior: {header['prior']} ({header['gflop_per_image']:.1f} GFLOP per image, "
        f"{header['gflop_per_dps_image']:.1f} with the input gradient of a DPS step); volume: {header['volume']}.",
        "",
    ]
    cells = []
    for r in rows:
        share = "-" if r["network_share"] is None else f"{100 * r['network_share']:.0f}%"
        tflops = "-" if r["tflops"] is None else f"{r['tflops']:.2f}"
        diff = "-" if r["psnr_difference"] is None or r["execution"].startswith("fp32 eager") else f"{r['psnr_difference']:+.3f}"
        cells.append([r["sampler"], _execution_label(r["network"]), r["steps"], r["nfe"], r["slices"], r["batch_size"],
                      f"{r['seconds']:.1f}", f"{r['first_call_seconds']:.1f}", f"{r['slices_per_second']:.3f}",
                      f"{r['images_per_second']:.1f}", share, tflops, f"{r['peak_memory_bytes'] / 2**20:.0f}",
                      f"{r['psnr']:.2f}", diff])
    lines += markdown_table(["sampler", "network execution", "steps", "NFE", "slices", "batch", "total s", "of which first calls s",
                             "slices/s", "network img/s", "network share", "network TFLOP/s", "peak memory (MB)", "PSNR (dB)",
                             "vs fp32 eager (dB)"], cells).rstrip("\n").split("\n")
    if networks:
        cells = [[n["network"], f"{n['parameters'] / 1e6:.1f}", f"{n['gflop_per_image']:.1f}", _execution_label(n["execution_settings"]),
                  f"{n['images_per_second']:.1f}", f"{n['first_call_seconds']:.1f}", f"{n['tflops']:.2f}"] for n in networks]
        lines += ["", "Network alone (same batch, 3 timed calls after a first call):", "",
                  *markdown_table(["network", "parameters (M)", "GFLOP / image", "execution", "images/s", "first call s", "TFLOP/s"],
                                  cells).rstrip("\n").split("\n")]
    noise = header["noise"]
    lines += ["", f"Noise draw for a batch of {noise['batch']} slices (once per step): "
              f"{1000 * noise['per_slice_generators']:.2f} ms from one generator per slice (the samplers' way: the "
              f"volume does not depend on the batch size), {1000 * noise['one_batched_draw']:.2f} ms as one batched draw."]
    if header.get("ceiling"):
        lines += ["", f"Convolution ceiling on an H100 (bf16, channels_last; the GPU figures): {header['ceiling']}."]
    return "\n".join(lines) + "\n"


__all__ = ["ThroughputBench", "run_throughput_bench", "network_flops", "network_rate", "noise_draw_seconds", "parse_steps", "to_markdown"]
