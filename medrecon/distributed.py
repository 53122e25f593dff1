"""Several processes (``torchrun``) reconstructing one volume: a contiguous shard of slices each.

``torchrun --nproc_per_node N -m medrecon reconstruct ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set (:func:`world`). Each one initialises the default process
group (:func:`init_if_launched`: ``gloo`` on the CPU, ``nccl`` on CUDA), takes the device of its
local rank (:func:`rank_device`: ``cuda:{local_rank}``), reconstructs the slices :func:`shard`
gives it, and :func:`gather_reconstruction` collects the parts on rank 0 in slice order;
:func:`reconstruct_sharded` does all of it around :func:`medrecon.reconstruct.reconstruct`. This
module sits above the single-process reconstruction, never below it.

Because slice ``k``'s generator for posterior sample ``j`` is seeded from ``(seed, k, j)`` (its
*global* index), the gathered volume is the one a single process makes with the same seed (up to
floating-point differences of batch composition, as between two batch sizes).

The gather uses :func:`torch.distributed.gather_object` on CPU tensors: every part is pickled
and sent once to rank 0. That is simple and backend-agnostic (with ``nccl`` the pickled bytes pass
through the current CUDA device, which :func:`rank_device`'s caller has set), and small next to the
reconstruction itself (a 512-slice 512 x 512 float32 volume is 0.5 GB, sent once); it needs rank 0
to hold the whole volume, as writing it does anyway.
"""

from __future__ import annotations

import atexit
import dataclasses
import os

import torch
import torch.distributed as dist

from medrecon.errors import InputError, MedreconError
from medrecon.reconstruct import Reconstruction, reconstruct


def world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` of this process: from the initialised default process group
    when there is one, else from torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (``(0, 1, 0)``
    when not launched)."""
    local = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
    if _initialised():
        return dist.get_rank(), dist.get_world_size(), local
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world_size}")
    return rank, world_size, local


def launched() -> bool:
    """Whether this process is one of several (an initialised group of > 1, or ``WORLD_SIZE`` > 1)."""
    return world()[1] > 1


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_device(device=None, local_rank: int | None = None) -> torch.device:
    """The device of this process. ``None``/``"auto"``: ``cuda:{local_rank}`` (modulo the visible
    devices) when CUDA is available, else the CPU; ``"cuda"`` without an index: ``cuda:{local_rank}``;
    anything else (``"cpu"``, ``"cuda:1"``) as given."""
    if local_rank is None:
        local_rank = world()[2]
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda was asked for, but torch sees no CUDA device")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def init_if_launched(device=None) -> bool:
    """Initialise the default process group when launched by torchrun (``WORLD_SIZE`` > 1) and none
    is initialised yet: ``nccl`` for a CUDA ``device`` (made the current device), ``gloo`` otherwise.
    Returns True when it initialised the group, so that the caller destroys it
    (:func:`destroy`); False when not launched or the group already existed (its owner destroys it).
    Initialise it once per process: torch cannot reliably initialise a default group again after
    destroying one (the new group reuses the old one's store keys; pytorch issues 55967, 114585)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or _initialised():
        return False
    if not dist.is_available():
        raise MedreconError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    device = rank_device(device)
    if device.type == "cuda":
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        if per_node > torch.cuda.device_count():
            raise InputError(f"torchrun started {per_node} processes on this node for {torch.cuda.device_count()} CUDA "
                             f"device(s); nccl needs one device per process (--nproc_per_node "
                             f"{torch.cuda.device_count()}, or --device cpu)")
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        dist.init_process_group(backend="gloo")
    return True


def destroy(owned: bool = True) -> None:
    """Destroy the default process group if ``owned`` (what :func:`init_if_launched` returned) and
    it is still initialised, after a barrier."""
    if owned and _initialised():
        try:  # every rank finishes its collectives (and rank 0 its writing) before the group goes:
            dist.barrier()  # a rank tearing gloo down while another still uses it aborts the process
        finally:
            dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process of the default group (nothing to wait for in one process)."""
    if _initialised():
        dist.barrier()


def shard(n: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous share of ``n`` slices: the first ``n % world_size`` ranks take one
    more than the others, so the shards differ by at most one slice, cover ``0..n-1`` exactly once
    in rank order, and are empty on ranks beyond ``n``."""
    if n < 0 or world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"cannot shard {n} slices for rank {rank} of {world_size}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def gather_reconstruction(part, n: int, *, dst: int = 0, to_all: bool = False):
    """Gather every rank's :class:`~medrecon.reconstruct.Reconstruction` of its :func:`shard` of ``n``
    slices (``None`` for an empty shard) into the volume's, on rank ``dst`` (every rank with
    ``to_all``); the other ranks get None. Collective: every rank of the default group calls it.

    The result: ``mean``/``std`` concatenated in slice order; ``nfe``, ``samples`` and ``settings``
    as on every rank (checked); ``seconds`` the slowest rank's (the wall time of the sharded work);
    ``peak_memory_bytes`` the largest rank's (a per-process peak); ``device`` the ranks' devices;
    ``ranks`` one summary per rank (rank, first and last slice, seconds, peak memory, device).
    """
    rank, world_size, _ = world()
    own = shard(n, rank, world_size)
    payload = {"rank": rank, "start": own.start, "stop": own.stop, "part": _to_cpu(part)}
    if world_size == 1:
        parts = [payload]
    elif to_all:
        parts = [None] * world_size
        dist.all_gather_object(parts, payload)
    else:
        parts = [None] * world_size if rank == dst else None
        dist.gather_object(payload, parts, dst=dst)
    if world_size > 1 and dist.get_backend() == "nccl":
        torch.cuda.synchronize()  # the sends are done before this rank goes on (and may destroy the group)
    if parts is None:
        return None
    parts.sort(key=lambda p: p["start"])
    filled = [p for p in parts if p["part"] is not None]
    if not filled:
        raise MedreconError(f"no rank reconstructed any of the {n} slices")
    covered = [i for p in filled for i in range(p["start"], p["stop"])]
    if covered != list(range(n)):
        raise MedreconError(f"the ranks' parts cover slices {covered}, not 0..{n - 1}")
    first = filled[0]["part"]
    for p in filled[1:]:
        q = p["part"]
        if (q.samples, q.nfe, q.settings) != (first.samples, first.nfe, first.settings):
            raise MedreconError(f"rank {p['rank']} ran other settings than rank {filled[0]['rank']}")
    mean = torch.cat([p["part"].mean for p in filled])
    std = None if first.std is None else torch.cat([p["part"].std for p in filled])
    devices = list(dict.fromkeys(p["part"].device for p in filled))
    ranks = [{"rank": p["rank"], "slices": [p["start"], p["stop"]], "seconds": round(p["part"].seconds, 3),
              "peak_memory_bytes": p["part"].peak_memory_bytes, "device": p["part"].device, "run": p["part"].run}
             for p in filled]
    ranks += [{"rank": p["rank"], "slices": [p["start"], p["stop"]]} for p in parts if p["part"] is None]
    ranks.sort(key=lambda r: r["rank"])
    return Reconstruction(mean, std, first.samples, first.nfe, max(p["part"].seconds for p in filled),
                          max(p["part"].peak_memory_bytes for p in filled), first.settings, ", ".join(devices), ranks=ranks)


def _to_cpu(part):
    if part is None:
        return None

    return dataclasses.replace(part, mean=part.mean.detach().cpu(), std=None if part.std is None else part.std.detach().cpu())


def reconstruct_sharded(problem, prior, *, device=None, slice_indices=None, progress: bool | None = None,
                        to_all: bool = False, **kwargs):
    """:func:`~medrecon.reconstruct.reconstruct` with the slices shared among the processes of ``torchrun``.

    Launched by torchrun (``WORLD_SIZE`` > 1, or an initialised default process group of > 1
    ranks): this rank reconstructs its contiguous :func:`~medrecon.distributed.shard` of the slices
    (the sub-problem ``op.batch_slice(shard)``, ``y[shard]``, seeded by the slices' global indices)
    on its own device (``device`` None or ``"cuda"``: ``cuda:{LOCAL_RANK}`` when CUDA is available),
    and the parts are gathered in slice order: rank 0 gets the volume's
    :class:`~medrecon.reconstruct.Reconstruction`
    (with ``ranks``, one summary per rank), the other ranks None (every rank gets it with
    ``to_all``). With the same seed the volume is the one a single process makes (up to
    floating-point differences of batch composition, as between batch sizes). Only rank 0 shows
    the progress line (of its own shard).

    The default process group: one that exists is used as it is. Otherwise it is initialised here
    (:func:`init_if_launched`) and left initialised for later calls, then
    destroyed at exit (or by :func:`destroy`): torch cannot reliably initialise
    a default group again after destroying one in the same process (the new group reuses the old
    one's store keys; pytorch issues 55967, 114585), so a function called more than once must not
    init and destroy it each time.

    Not launched: plain ``reconstruct``. ``**kwargs``: the other arguments of ``reconstruct``.
    """
    if not launched():
        return reconstruct(problem, prior, device=device, slice_indices=slice_indices, progress=progress, **kwargs)
    if (kwargs.get("options") or {}).get("volume_prior") is not None:
        raise InputError("a volume prior (TV along the slice axis) couples every slice of the volume: run it in one "
                         "process, not sharded over torchrun processes")
    dev = rank_device(device)
    if init_if_launched(dev):
        atexit.register(destroy)
    rank, world_size, _ = world()
    n = problem.slices
    indices = list(range(n)) if slice_indices is None else [int(k) for k in slice_indices]
    if len(indices) != n:
        raise InputError(f"slice_indices has {len(indices)} entries for {n} slices")
    own = shard(n, rank, world_size)
    part = None
    if own.stop > own.start:
        sub = dataclasses.replace(problem, op=problem.op.batch_slice(own), y=problem.y[own],
                                  phase=None if problem.phase is None else problem.phase[own])
        part = reconstruct(sub, prior, device=dev, slice_indices=indices[own], progress=progress if rank == 0 else False, **kwargs)
    return gather_reconstruction(part, n, to_all=to_all)


__all__ = ["destroy", "gather_reconstruction", "init_if_launched", "launched", "rank_device", "reconstruct_sharded", "shard", "world"]
