"""Normalization layer factory shared by the generators and discriminators."""

from __future__ import annotations

from torch import nn

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
