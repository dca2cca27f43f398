"""Reflection padding that keeps autocast's low precision.

Under CPU/CUDA autocast, ``reflection_pad2d`` is on the run-in-fp32 list: a bf16
activation is widened to fp32, padded, and narrowed again by the next convolution. Every
pad in the ResNet generator feeds a convolution, so casting to the autocast dtype first and
padding in that dtype gives bit-identical results while moving half the bytes and skipping
two casts (resnet_9blocks, 512x512, bf16 inference on 2 Zen 4 cores: 1.83 -> 1.54 s/image).
It helps under CUDA autocast too; ``img2img.nn.cpu.optimize`` puts it in place of the
ResNet generator's pads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ReflectionPad2d(nn.ReflectionPad2d):
    """``nn.ReflectionPad2d`` whose output is in the autocast dtype when autocast is on (no
    state of its own: a built pad becomes one by changing its class)."""

    def forward(self, x: Tensor) -> Tensor:
        kind = x.device.type
        if not (torch.amp.is_autocast_available(kind) and torch.is_autocast_enabled(kind)):
            return super().forward(x)
        x = x.to(torch.get_autocast_dtype(kind))
        with torch.autocast(kind, enabled=False):
            return F.pad(x, self.padding, mode="reflect")
