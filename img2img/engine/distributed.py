"""Running under ``torchrun``: process group, per-rank device, DDP wrapping, collectives.

Without ``torchrun`` (no ``WORLD_SIZE`` > 1 in the environment) every helper here is a no-op
and a run is a plain single process. Under ``torchrun`` each process drives one device
(``cuda:LOCAL_RANK`` with NCCL, or the CPU with gloo); the process group is initialised from
the environment torchrun sets (``env://``), which also covers multi-node rendezvous.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from img2img.errors import UsageError


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
    """One device per process: ``cuda:LOCAL_RANK`` when training on CUDA, else ``device``."""
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


def broadcast(world: World, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; for small control data)."""
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


def mean_over_ranks(world: World, values: dict[str, float]) -> dict[str, float]:
    """Average a dict of floats (same keys on every rank) over the ranks."""
    if not world.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return {k: float(v) / world.size for k, v in zip(keys, t.tolist(), strict=True)}


def max_over_ranks(world: World, values: list[int]) -> list[int]:
    """Element-wise maximum of a list of ints (same length on every rank) over the ranks."""
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [int(v) for v in t.tolist()]


class GanDDP(DistributedDataParallel):
    """DDP that steps aside when no gradient can flow into its parameters.

    GAN steps run the discriminator with frozen weights while training the generator, and
    rank 0 alone runs the generator without gradients to draw samples. Going through DDP
    there would make it wait for gradients that never come (or for buffer broadcasts the
    other ranks never join), so those calls go straight to the wrapped module.
    """

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled() or not any(p.requires_grad
                                                  for p in self.module.parameters()):
            return self.module(*args, **kwargs)
        return super().forward(*args, **kwargs)


def wrap(net: nn.Module, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """``net`` wrapped for data-parallel training (rank 0's weights are broadcast)."""
    if sync_bn:
        if device.type != "cuda":
            raise UsageError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU "
                             "implementation)")
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    ids = [device.index] if device.type == "cuda" else None
    return GanDDP(net, device_ids=ids, output_device=ids[0] if ids else None)


def unwrap(net: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (checkpoints never carry ``module.`` keys)."""
    return net.module if isinstance(net, DistributedDataParallel) else net
