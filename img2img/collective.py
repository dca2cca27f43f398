"""The process group under ``torchrun``: this process's place in the job and the few
collective operations on small Python objects that training and translation share.

Without ``torchrun`` (no ``WORLD_SIZE`` > 1 in the environment) every helper here is a no-op
and a run is a plain single process. Under ``torchrun`` each process drives one device
(``cuda:LOCAL_RANK`` with NCCL, or the CPU with gloo); the process group is initialised from
the environment torchrun sets (``env://``), which also covers multi-node rendezvous.

Training-only parts (DDP wrapping, tensor reductions) are in ``img2img.engine.distributed``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["World", "all_gather", "barrier", "broadcast", "device_for", "gather", "init",
           "joined", "shutdown", "world_from_env"]


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` (``local_rank`` on its node)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, samples, logs and summaries."""
        return self.rank == 0


def world_from_env() -> World:
    """The ``World`` torchrun describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))


def device_for(world: World, device: torch.device) -> torch.device:
    """One device per process: ``cuda:LOCAL_RANK`` when running on CUDA, else ``device``."""
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return device


def init(world: World, device: torch.device, backend: str | None = None) -> None:
    """Join the process group (NCCL for CUDA devices, gloo otherwise); no-op when alone."""
    if not world.distributed or dist.is_initialized():
        return
    dist.init_process_group(backend or ("nccl" if device.type == "cuda" else "gloo"))


def shutdown(world: World) -> None:
    """Leave the process group (after a final barrier)."""
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@contextmanager
def joined(device: torch.device,
           backend: str | None = None) -> Iterator[tuple[World, torch.device]]:
    """``(world, this process's device)`` with the process group joined for the block and
    left after it (a no-op pair for a single process)."""
    world = world_from_env()
    device = device_for(world, device)
    init(world, device, backend)
    try:
        yield world, device
    finally:
        shutdown(world)


def barrier(world: World) -> None:
    """Wait until every rank gets here."""
    if world.distributed:
        dist.barrier()


def broadcast(world: World, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; for small control data between our own
    processes)."""
    if not world.distributed:
        return obj
    box = [obj if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(world: World, obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` as a list on rank 0 (None elsewhere)."""
    if not world.distributed:
        return [obj]
    out: list[Any] | None = [None] * world.size if world.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_gather(world: World, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out
