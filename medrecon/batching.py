"""How many slices a batch holds: the CPU's fixed batch and a GPU's memory plan.

:func:`memory_plan` is what ``batch_size="auto"`` takes on a GPU (docs/samplers.md, "Volume
reconstruction")::

    bytes per slice = network + sampler
    batch = (AUTO_SHARE * free - fixed) / bytes per slice, between 1 and min(slices, MAX_AUTO_BATCH)

- network, measured (:func:`probe_bytes_per_item`): one eager call of the denoiser as the sampler
  calls it, on a few slices, on the grid it runs on (through the multi-resolution wrapper; the latent
  grid and the decoder for a latent prior);
- sampler, computed from the operator's shapes (:func:`sampler_bytes_per_slice`): the sampler's own
  tensors (the registry's per-sampler counts of images and measurements) and the operator's
  temporaries;
- fixed (:func:`operator_fixed_bytes`): the operator's buffers and matrices on the device, and for a
  volume prior the sampler's tensors of every slice.

The device's memory readings come from :class:`CudaMemory`; a test passes an object with its three
methods, so the plan runs on the CPU. :func:`batch_from_memory` is the arithmetic alone.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from medrecon.multiresolution import CoarseGridDenoiser
from medrecon.operators import CTProjector, MultiCoilMRI, NonCartesianMRI
from medrecon.operators.base import complex_dtype_of, real_dtype_of
from medrecon.operators.ct import fbp_filter_response
from medrecon.operators.ct_geometry import system_matrix_entries
from medrecon.priors.execution import with_execution
from medrecon.samplers.registry import sampler_spec
from medrecon.samplers.score_sde import full_transform

MAX_AUTO_BATCH = 256  # on an H100, DDS ran batch 128 twice as fast as 32; nothing larger was measured, so no more
AUTO_SHARE = 0.7
"""The share of a GPU's free memory a planned batch may take (:func:`memory_plan`); the rest is the
allocator's slack (fragmentation, its cached blocks), cuDNN workspaces and what a compiled network
allocates beyond the eager probe."""
CPU_BATCH = 8
"""The CPU's ``batch_size="auto"`` whatever the image size (:func:`cpu_batch_size`)."""


def cpu_batch_size(slices: int) -> int:
    """Slices per batch on the CPU: :data:`CPU_BATCH`, at most ``slices``, at any image size. Measured
    on a 48-slice 512x512 CT series (DDS, 2-core Xeon, docs/benchmarks.md "Studies of another
    matrix"): at 512x512 (``--grid native``) batch 8 ran 5x faster per slice than batch 1 for 0.5 GiB
    more peak memory while sampling (1.70 against 1.19 GiB), on the prior's 256 grid 1.7x faster for
    0.57 GiB more; a batch's memory is the network's activations (about 80 MB a slice at 256x256),
    not the images."""
    return max(1, min(CPU_BATCH, slices))


def batch_from_memory(free_bytes: int, bytes_per_slice: float, slices: int, *, share: float = AUTO_SHARE,
                      fixed_bytes: float = 0.0) -> int:
    """The batch size whose ``bytes_per_slice`` fit ``share`` of ``free_bytes`` once ``fixed_bytes``
    (what the run holds whatever the batch) are taken, between 1 and ``min(slices, MAX_AUTO_BATCH)``."""
    fits = int(max(share * free_bytes - fixed_bytes, 0.0) // max(bytes_per_slice, 1.0))
    return max(1, min(fits, slices, MAX_AUTO_BATCH))


class CudaMemory:
    """The readings of a CUDA device that :func:`memory_plan` takes. A test passes an object with
    the same three methods instead, so the plan runs on the CPU."""

    def __init__(self, device) -> None:
        self.device = torch.device(device)

    def start(self) -> int:
        """Empty the allocator's cache and reset its peak; the bytes allocated now."""
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        return torch.cuda.memory_allocated(self.device)

    def peak(self) -> int:
        """The most bytes allocated since :meth:`start`."""
        torch.cuda.synchronize(self.device)
        return torch.cuda.max_memory_allocated(self.device)

    def free(self) -> int:
        """The device's free bytes, the allocator's cache emptied."""
        torch.cuda.empty_cache()
        return torch.cuda.mem_get_info(self.device)[0]


def probe_bytes_per_item(call, x: torch.Tensor, memory, *, grad: bool) -> float:
    """Peak bytes of ``call(x)`` per item of ``x`` above what was allocated before it (``x`` itself
    not counted), with the gradient with respect to ``x`` when ``grad``."""
    x = x.detach().requires_grad_(grad)
    before = memory.start()
    with torch.set_grad_enabled(grad):
        out = call(x)
        if grad:
            torch.autograd.grad((out.real if out.is_complex() else out).sum(), x)
    peak = memory.peak()
    del out
    return max(peak - before, 0) / x.shape[0]


def network_denoiser(prior, side: int, multiresolution: bool):
    """``prior`` with its denoiser as the sampler calls it on ``side x side`` images: with
    ``multiresolution``, the prior's own denoiser on its coarser grid (:class:`CoarseGridDenoiser`)."""
    if multiresolution and side != prior.card.image_size:
        return dataclasses.replace(prior, denoiser=CoarseGridDenoiser(prior.denoiser, side, prior.card.image_size))
    return prior


def _bytes(shape, dtype: torch.dtype) -> int:
    return math.prod(int(n) for n in shape) * torch.empty((), dtype=dtype).element_size()


def _inner_operator(op):
    while isinstance(getattr(op, "op", None), torch.nn.Module) and hasattr(op.op, "in_shape"):
        op = op.op  # wrappers (density weighting, slice chunks, a real-image embedding) keep the physics inside
    return op


def operator_workspace_bytes(op, image: int, data: int) -> int:
    """Bytes per slice of the temporaries of one ``A^H A`` of ``op`` (``image`` / ``data``: the bytes
    of one image / measurement): Cartesian MRI four coil images at once (the coil images, their
    shifted copy, the FFT's output and the shifted result); non-Cartesian MRI three coil images on
    the 2x oversampled grid (4 images each: the Toeplitz embedding's padded images, their FFT and
    product); otherwise (CT) the column copies in and out of the sparse product, two of each."""
    inner = _inner_operator(op)
    if isinstance(inner, NonCartesianMRI):
        return 12 * int(inner.out_shape[0]) * image
    if isinstance(inner, MultiCoilMRI) or (inner.in_complex and len(inner.out_shape) == 3):
        return 4 * int(inner.out_shape[0]) * image
    return 2 * (image + data)


def _matrix_bytes(entries: int) -> int:
    return entries * (8 if entries < 2**31 else 12)  # a float32 value and an int32 (or int64) column index each


def operator_fixed_bytes(op, sampler: str) -> int:
    """What the operator holds on the device whatever the batch: its buffers (every slice's coil
    maps, the mask, a trajectory) and the CT system matrices built on first use (the matrix and its
    transpose; for score-SDE its full-view matrix and FBP back-projector instead)."""
    buffers = sum(b.numel() * b.element_size() for b in op.buffers()) if isinstance(op, torch.nn.Module) else 0
    inner = _inner_operator(op)
    if not isinstance(inner, CTProjector) or inner.backend != "matrix":
        return buffers
    if sampler == "score_sde":
        geometry = full_transform(inner).full.geometry
        h, w = geometry.image_shape
        return buffers + _matrix_bytes(system_matrix_entries(geometry)) + _matrix_bytes(2 * h * w * geometry.n_angles)
    return buffers + 2 * _matrix_bytes(system_matrix_entries(inner.geometry))


def sampler_bytes_per_slice(op, sampler: str, dtype: torch.dtype = torch.float32, *, volume: bool = False) -> dict:
    """The sampler's memory per slice from the operator's shapes: ``state`` (its own tensors:
    :attr:`~medrecon.samplers.registry.SamplerSpec.working_images` images and ``working_data``
    measurements, score-SDE's in its full transform's views; a volume prior's images added) and
    ``operator`` (:func:`operator_workspace_bytes`; score-SDE on CT: its FBP's filtering and
    back-projection). ``dtype``: the data's real dtype."""
    spec = sampler_spec(sampler)
    real = real_dtype_of(dtype)
    image = _bytes(op.in_shape, complex_dtype_of(real) if op.in_complex else real)
    data = _bytes(op.out_shape, complex_dtype_of(real) if op.out_complex else real)
    inner = _inner_operator(op)
    operator = None
    if sampler == "score_sde" and isinstance(inner, CTProjector):  # its data are the full-view sinogram
        n_full = full_transform(inner).n_full
        data = data * n_full // inner.geometry.n_angles
        # its operator's part is FBP: the zero-padded views, their rfft, its product with the filter and
        # the irfft, each about a padded sinogram; then the back-projection's column copies
        padded = 2 * (fbp_filter_response(inner.geometry.detector_count, 1.0).shape[0] - 1)
        operator = 4 * n_full * padded * torch.empty((), dtype=real).element_size() + 2 * (image + data)
    images = spec.working_images + (spec.volume_images if volume else 0)
    operator = operator_workspace_bytes(op, image, data) if operator is None else operator
    return {"state": images * image + spec.working_data * data, "operator": operator}


@dataclass(frozen=True)
class MemoryPlan:
    """Why a batch size was picked (:func:`memory_plan`); :meth:`to_dict` goes into the record's ``run``.

    Per slice: ``network_bytes`` (measured: one call of the denoiser as the sampler sees it, on
    ``probe`` items of ``probe_input``; the network itself ran on ``network_grid``),
    ``sampler_bytes`` (computed: the sampler's own tensors and the operator's temporaries,
    :func:`sampler_bytes_per_slice`). ``fixed_bytes``: held whatever the batch (the
    operator's buffers and matrices; a volume prior's state for every slice). The batch is
    ``(share * free_bytes - fixed_bytes) / per-slice bytes`` slices, between 1 and
    ``min(slices, MAX_AUTO_BATCH)``; ``limit`` says which bound decided."""

    network_bytes: float
    sampler_bytes: float
    fixed_bytes: float
    free_bytes: int
    share: float
    slices: int
    batch_size: int
    probe_input: tuple
    network_grid: tuple
    probe: int

    @property
    def bytes_per_slice(self) -> float:
        return self.network_bytes + self.sampler_bytes

    @property
    def limit(self) -> str:
        if self.batch_size == self.slices:
            return "slices"
        if self.batch_size == MAX_AUTO_BATCH:
            return "MAX_AUTO_BATCH"
        return "memory"

    def to_dict(self) -> dict:
        return {"bytes_per_slice": {"network": int(self.network_bytes), "sampler": int(self.sampler_bytes)},
                "fixed_bytes": int(self.fixed_bytes), "free_bytes": int(self.free_bytes), "share": self.share,
                "probe_input": list(self.probe_input), "network_grid": list(self.network_grid), "probe_slices": self.probe,
                "batch_size": self.batch_size, "limit": self.limit}


def memory_plan(prior, op, sampler: str, execution, device, slices: int, *, multiresolution: bool = False,
                volume: bool = False, dtype: torch.dtype = torch.float32, probe: int = 4, memory=None,
                share: float = AUTO_SHARE) -> MemoryPlan:
    """The GPU batch size from a memory plan (:class:`MemoryPlan`, docs/samplers.md).

    Network: one eager call (``execution``'s precision and layout, no compile) on ``probe`` slices of
    what the sampler hands its denoiser: ``op.in_shape``'s grid, through the coarse-grid wrapper with
    ``multiresolution`` (so the network runs on the prior's grid, the resampling on the native one);
    the latent grid for a latent prior, and then the decoder with its input gradient too (ReSample's
    latent solves), the larger of the two. With input gradients for the samplers that differentiate
    through the network (DPS, ReSample). Sampler: :func:`sampler_bytes_per_slice`. ``volume``: a
    volume prior, whose state covers every slice (fixed) while the batch is the network's and the
    operator's chunk. ``memory``: the device's readings (:class:`CudaMemory` by default)."""
    device = torch.device(device)
    memory = CudaMemory(device) if memory is None else memory
    eager = with_execution(prior, dataclasses.replace(execution, compile="off"))
    grad = sampler_spec(sampler).gradient
    side = int(op.in_shape[-1])
    if eager.latent is not None:
        f = eager.latent.downsampling
        shape = (eager.latent.latent_channels, op.in_shape[-2] // f, op.in_shape[-1] // f)
        x = torch.randn((probe, *shape), device=device)
        network = probe_bytes_per_item(lambda t: eager.latent.denoiser(t, 1.0), x, memory, grad=grad)
        network = max(network, probe_bytes_per_item(eager.latent.decode, x, memory, grad=True))
        grid = shape[1:]
    else:
        denoiser = network_denoiser(eager, side, multiresolution).denoiser
        shape = (prior.card.channels, *op.in_shape[-2:])
        x = torch.randn((probe, *shape), device=device)
        network = probe_bytes_per_item(lambda t: denoiser(t, 1.0), x, memory, grad=grad)
        grid = (prior.card.image_size,) * 2 if isinstance(denoiser, CoarseGridDenoiser) else shape[1:]
    del x
    parts = sampler_bytes_per_slice(op, sampler, dtype, volume=volume)
    fixed = operator_fixed_bytes(op, sampler)
    if volume:  # the whole volume's state stays on the device; a batch is the chunk of network and operator
        fixed += slices * parts["state"]
        per_slice = parts["operator"]
    else:
        per_slice = parts["state"] + parts["operator"]
    free = int(memory.free())
    batch = batch_from_memory(free, network + per_slice, slices, share=share, fixed_bytes=fixed)
    return MemoryPlan(network, per_slice, fixed, free, share, slices, batch, shape, grid, probe)


def auto_batch_size(prior, op, sampler: str, execution, device, slices: int, *, probe: int = 4,
                    multiresolution: bool = False, volume: bool = False, memory=None) -> int:
    """Slices per batch for ``device``: on the CPU :func:`cpu_batch_size`; on a GPU the batch of
    :func:`memory_plan` (the network measured on the grid it runs on, plus the sampler's working set
    computed from the operator's shapes, in 70% of the free memory)."""
    if torch.device(device).type != "cuda":
        return cpu_batch_size(slices)
    return memory_plan(prior, op, sampler, execution, device, slices, multiresolution=multiresolution,
                       volume=volume, probe=probe, memory=memory).batch_size


__all__ = ["AUTO_SHARE", "CPU_BATCH", "MAX_AUTO_BATCH", "CudaMemory", "MemoryPlan", "auto_batch_size", "batch_from_memory",
           "cpu_batch_size", "memory_plan", "network_denoiser", "operator_fixed_bytes", "operator_workspace_bytes",
           "probe_bytes_per_item", "sampler_bytes_per_slice"]
