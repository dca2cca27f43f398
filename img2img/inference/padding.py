"""Padding to the network's size multiple: the one place that decides the padded size.

A strided network (e.g. two stride-2 downsamplings: multiple 4) needs inputs whose height and
width are multiples of its ``size_multiple``, and some need a smallest size (``min_size``, a
U-Net's innermost 1x1). Untiled inference pads every image at the bottom/right and crops the
output; tiled inference sizes its windows with ``window_size`` so that they need no padding
except at the image border.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["pad_to_multiple", "padded_length"]


def padded_length(length: int, multiple: int, min_size: int = 1) -> int:
    """The smallest multiple of ``multiple`` that is at least ``max(length, min_size)``."""
    n = max(length, min_size)
    return n + (-n) % max(1, multiple)


def pad_to_multiple(x: torch.Tensor, multiple: int,
                    min_size: int = 1) -> tuple[torch.Tensor, int, int]:
    """Pad NCHW ``x`` at the bottom/right to a multiple of ``multiple`` that is at least
    ``min_size`` in both dims; reflect where possible, else replicate. Returns the padded
    tensor and the original height and width."""
    h, w = x.shape[-2:]
    ph = padded_length(h, multiple, min_size) - h
    pw = padded_length(w, multiple, min_size) - w
    if ph == 0 and pw == 0:
        return x, h, w
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), h, w
