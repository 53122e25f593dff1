"""How a prior's network is executed: precision, memory layout and compilation.

The network is nearly all of a diffusion reconstruction's time (15,000 calls for a 300-slice volume
at 50 steps), so on a GPU it runs fast by default: bf16 autocast (the weights stay fp32, matmuls
and convolutions run in bf16), channels_last activations, and ``torch.compile`` (inductor). On a
CPU with native bf16 (AMX / AVX512-BF16, :func:`medrecon.hardware.cpu_has_native_bf16`) the
default is bf16 eager (about 4x fp32 there, and within 0.014 dB of fp32 on a 4-slice DDS volume,
docs/benchmarks.md); on other CPUs fp32 eager, since bf16 is emulated there. Compiling stays off
on the CPU by default: it costs about 40 s per input shape and measured no faster than eager; it
can be asked for. The fast settings must give the fp32 eager image within a stated tolerance
(docs/benchmarks.md, "GPU fast path"; the CPU tests in tests/).

A compile that fails (no C compiler for inductor's CPU kernels, a GPU triton does not support)
falls back to eager execution with one warning; :attr:`ExecutedNetwork.compile_failure` holds the
reason and the reconstruction's record states it.

:func:`with_execution` returns a prior whose denoiser calls an :class:`ExecutedNetwork`; the
sampler code does not change. A compiled network is compiled for fixed shapes (``dynamic=False``):
a batch smaller than the largest one seen is zero-padded to it (each image is processed on its own:
group norm, attention and convolutions never mix batch items), so a volume whose last batch is
short compiles once. ``reduce-overhead`` (CUDA graphs) pays only where launch overhead matters,
i.e. small batches; its outputs are copied out of the graph's memory.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from medrecon.errors import InputError
from medrecon.hardware import cpu_has_native_bf16

from .denoiser import call_network
from .latent import LatentPrior

PRECISIONS = ("fp32", "bf16")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class NetworkExecution:
    """``precision`` ``fp32`` or ``bf16`` (autocast), ``channels_last`` activations, ``compile``
    one of :data:`COMPILE_MODES` (``off``: eager). ``auto`` / None leave the choice to the device
    (:meth:`for_device`): on CUDA bf16, channels_last and ``torch.compile`` (mode ``default``); on
    a CPU with native bf16 bf16 eager; elsewhere fp32 eager. channels_last follows bf16 unless
    given (it is what makes bf16 convolutions fast, on CPUs with native bf16 as well)."""

    precision: str = "auto"
    channels_last: bool | None = None
    compile: str = "auto"

    def __post_init__(self):
        if self.precision not in PRECISIONS + ("auto",):
            raise InputError(f"precision must be one of {PRECISIONS} or auto, got {self.precision!r}")
        if self.compile not in COMPILE_MODES + ("auto",):
            raise InputError(f"compile must be one of {COMPILE_MODES} or auto, got {self.compile!r}")
        if self.channels_last not in (None, True, False):
            raise InputError(f"channels_last must be true, false or None (auto), got {self.channels_last!r}")

    @classmethod
    def plain(cls) -> NetworkExecution:
        """fp32 eager in the default layout: the network as loaded (the reference of the tolerance)."""
        return cls("fp32", False, "off")

    @property
    def is_plain(self) -> bool:
        return self == NetworkExecution.plain()

    def for_device(self, device, *, native_bf16: bool | None = None) -> NetworkExecution:
        """These settings with every ``auto`` resolved for ``device``. ``native_bf16``: whether the
        CPU has native bf16 (None: detected, :func:`medrecon.hardware.cpu_has_native_bf16`)."""
        gpu = torch.device(device).type == "cuda"
        if self.precision == "auto":
            native = cpu_has_native_bf16() if native_bf16 is None else native_bf16
            precision = "bf16" if gpu or (torch.device(device).type == "cpu" and native) else "fp32"
        else:
            precision = self.precision
        compile = ("default" if gpu else "off") if self.compile == "auto" else self.compile
        channels_last = precision == "bf16" if self.channels_last is None else self.channels_last
        return NetworkExecution(precision, channels_last, compile)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ExecutedNetwork(nn.Module):
    """``net(x, t)`` executed as ``execution`` says; returns a tensor of ``x``'s dtype in the default
    layout. ``first_calls`` records the seconds of the first call of each input shape (the compile
    time when compiled), with and without gradients apart. Converts ``net``'s weights to
    channels_last in place when asked (a layout change, not a value change). A compiled call that
    fails falls back to eager for good, with one warning; ``compile_failure`` says why (None
    while compiling works or when not compiled)."""

    def __init__(self, net: nn.Module, execution: NetworkExecution) -> None:
        super().__init__()
        self.net = net
        self.execution = execution
        if execution.channels_last:
            net.to(memory_format=torch.channels_last)
        self._call = net
        if execution.compile != "off":
            self._call = torch.compile(net, mode=execution.compile, dynamic=False)
        self.first_calls: dict[str, float] = {}
        self.compile_failure: str | None = None
        self._largest_batch = 0

    @property
    def config(self):
        """The wrapped network's config (diffusers), which adapters and checks read."""
        return self.net.config

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.compiled:
            self._largest_batch = max(self._largest_batch, n)
            if n < self._largest_batch:  # one compiled shape: pad the short batch
                pad = self._largest_batch - n
                x = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))])
                t = torch.cat([t, t[-1:].expand(pad)])
        key = f"{tuple(x.shape)}{' grad' if torch.is_grad_enabled() else ''}"
        first = key not in self.first_calls
        if first:
            _synchronise(x.device)
            start = time.perf_counter()
        timer = _TIMERS[-1] if _TIMERS and not first else None
        marked = timer is not None and torch.is_grad_enabled() and x.requires_grad
        if marked:
            state: dict = {}
            x = _BackwardMark.apply(x, timer, False, state)
        begin = timer.start(x.device) if timer is not None else None
        out = self._run(x, t)
        if timer is not None:
            timer.stop(begin, x.device, n)
        if marked:
            out = _BackwardMark.apply(out, timer, True, state)
        if first:
            _synchronise(x.device)
            self.first_calls[key] = round(time.perf_counter() - start, 3)
        return out[:n]

    @property
    def compiled(self) -> bool:
        """Whether calls go through ``torch.compile`` (asked for, and it has not failed)."""
        return self.execution.compile != "off" and self.compile_failure is None

    def _run(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if self.execution.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.execution.precision == "bf16"):
            if self.compiled:
                try:
                    out = call_network(self._call, x, t)
                except Exception as exc:  # any failure of compilation means: run eagerly
                    self._fall_back(exc)
                    out = call_network(self.net, x, t)
            else:
                out = call_network(self.net, x, t)
        out = out.to(dtype).contiguous()
        if self.compiled and self.execution.compile == "reduce-overhead":
            out = out.clone()  # CUDA graphs reuse their output memory at the next replay
        return out


    def _fall_back(self, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]
        self.compile_failure = reason
        self._call = self.net
        warnings.warn(f"torch.compile failed ({reason}); the network runs eagerly", RuntimeWarning, stacklevel=3)


class NetworkTimer:
    """The network calls made while it is active (:func:`timing_network_calls`), first calls of a
    shape (compilation) apart: their count, images, and wall time — CUDA events on a GPU, read
    once at the end, so timing adds no synchronisation to the steps. A call made with gradients
    (DPS) also counts its backward pass through the network (:class:`_BackwardMark`)."""

    def __init__(self) -> None:
        self.calls = 0
        self.images = 0
        self.backward_passes = 0
        self._cpu_seconds = 0.0
        self._events: list = []

    def start(self, device: torch.device):
        if device.type == "cuda":
            begin = torch.cuda.Event(enable_timing=True)
            begin.record()
            return begin
        return time.perf_counter()

    def stop(self, begin, device: torch.device, images: int | None = None) -> None:
        """End an interval: a forward call of ``images`` images, or (None) a backward pass."""
        if images is None:
            self.backward_passes += 1
        else:
            self.calls += 1
            self.images += images
        if device.type == "cuda":
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events.append((begin, end))
        else:
            self._cpu_seconds += time.perf_counter() - begin

    @property
    def seconds(self) -> float:
        if self._events:
            torch.cuda.synchronize()
        return self._cpu_seconds + sum(b.elapsed_time(e) for b, e in self._events) / 1000.0


_TIMERS: list[NetworkTimer] = []


class _BackwardMark(torch.autograd.Function):
    """Identity whose backward starts (on the network's output) or stops (on its input) the timer:
    the backward pass through the network lies between the two."""

    @staticmethod
    def forward(ctx, x, timer, entering, state):
        ctx.timer, ctx.entering, ctx.state = timer, entering, state
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        if ctx.entering:
            ctx.state["begin"] = ctx.timer.start(grad.device)
        elif "begin" in ctx.state:
            ctx.timer.stop(ctx.state.pop("begin"), grad.device)
        return grad, None, None, None


@contextlib.contextmanager
def timing_network_calls():
    """``with timing_network_calls() as timer:`` — every :class:`ExecutedNetwork` call inside is
    timed (benchmarks: the network's share of the step time)."""
    timer = NetworkTimer()
    _TIMERS.append(timer)
    try:
        yield timer
    finally:
        _TIMERS.remove(timer)


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def with_execution(prior, execution: NetworkExecution):
    """``prior`` with its denoiser calling an :class:`ExecutedNetwork` (the plain execution too: it
    records the first calls and feeds :func:`timing_network_calls`). The denoiser keeps everything
    else (schedule, ``sigma_data``...): it is a shallow copy whose ``net`` is replaced, and ``prior``
    itself is not changed. ``execution``'s ``auto`` settings are resolved for the network's device.
    A latent prior's latent denoiser is executed so; its autoencoder stays fp32 eager. A prior
    without a network (an analytic denoiser) is returned as it is for ``auto`` / fp32 eager
    settings, and refused (:class:`InputError`) for anything else."""
    latent = prior.latent
    holder = latent.denoiser if latent is not None else prior.denoiser
    net = getattr(holder, "net", None)  # the UNet of a pixel prior, the latent UNet of a latent prior
    has_network = isinstance(net, nn.Module) and any(True for _ in net.parameters())
    if not has_network:
        if execution.precision in ("auto", "fp32") and execution.compile in ("auto", "off") and not execution.channels_last:
            return prior  # an analytic denoiser (tests): nothing to execute
        raise InputError(f"the prior {prior.card.name!r} has no network to run in {execution.precision} / compiled")
    execution = execution.for_device(next(net.parameters()).device)
    denoiser = copy.copy(holder)
    denoiser._modules = dict(holder._modules)  # the copy's own submodule table: the original keeps its net
    denoiser.net = ExecutedNetwork(net, execution)
    if latent is None:
        return dataclasses.replace(prior, denoiser=denoiser)

    latent = LatentPrior(latent.autoencoder, latent.scaling_factor, denoiser)
    return dataclasses.replace(prior, denoiser=denoiser, latent=latent)


def executed_network(prior) -> ExecutedNetwork | None:
    """The :class:`ExecutedNetwork` behind ``prior``'s denoiser, if it has one."""
    holder = prior.latent.denoiser if prior.latent is not None else prior.denoiser
    net = getattr(holder, "net", None)
    return net if isinstance(net, ExecutedNetwork) else None


__all__ = ["COMPILE_MODES", "PRECISIONS", "ExecutedNetwork", "NetworkExecution", "NetworkTimer", "executed_network",
           "timing_network_calls", "with_execution"]
