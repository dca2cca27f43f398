"""Training under ``torchrun``: DDP wrapping and reductions of tensors over the ranks.

The process group, this process's place in it and the collectives on small objects are in
:mod:`img2img.collective` (translation uses them too); they are re-exported here, so the
trainer reads ``distributed.broadcast`` and ``distributed.wrap`` from one module.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from img2img.collective import (  # noqa: F401 - re-exported for the trainer
    World,
    all_gather,
    barrier,
    broadcast,
    device_for,
    gather,
    init,
    shutdown,
    world_from_env,
)
from img2img.errors import UsageError


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
