"""Normalization layer factory shared by the generators and discriminators."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

NORM_KINDS = ("instance", "batch", "none")


def _check(kind: str) -> None:
    if kind not in NORM_KINDS:
        raise ValueError(f"unknown norm {kind!r}; expected one of {', '.join(NORM_KINDS)}")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Return a 2d normalization layer over ``channels`` channels.

    ``instance``: InstanceNorm2d without affine parameters or running stats (as in the
    CycleGAN reference); ``batch``: affine BatchNorm2d; ``none``: Identity.
    """
    _check(kind)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True)
    return nn.Identity()


def uses_bias(kind: str) -> bool:
    """Whether a conv followed by this norm should have a bias.

    BatchNorm has its own learned shift, so the conv bias would be redundant; non-affine
    InstanceNorm (kept with a bias, following the CycleGAN reference) and no norm keep it.
    """
    _check(kind)
    return kind != "batch"


class PerImageBatchNorm2d(nn.BatchNorm2d):
    """A trained BatchNorm2d that normalises every image with its own statistics.

    This is what the layer computes in training mode on a batch of one image (the pix2pix
    paper's test-time behaviour, the reference ``test.py`` without ``--eval``), for batches of
    any size and without updating the stored running statistics. Same parameters and buffers,
    so the state dict is unchanged.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def use_per_image_statistics(model: nn.Module) -> int:
    """Make every BatchNorm2d of ``model`` a :class:`PerImageBatchNorm2d` (in place); returns
    how many layers changed."""
    changed = 0
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = PerImageBatchNorm2d  # same object: parameters, buffers, hooks
            changed += 1
    return changed
