"""Conversion between uint8/uint16 HWC images and float32 tensors in [-1, 1] (channels first).

``to_tensor`` maps 0 -> -1 and the dtype maximum -> +1; ``from_tensor`` inverts it with
clamping and round-to-nearest, so uint8 and uint16 images round-trip exactly.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["from_tensor", "max_value", "to_tensor"]

_MAX_VALUES = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}


def max_value(dtype: np.dtype | type | str) -> int:
    """Largest sample value of an image dtype: 255 for uint8, 65535 for uint16."""
    try:
        return _MAX_VALUES[np.dtype(dtype)]
    except (KeyError, TypeError):
        raise ValueError(f"unsupported image dtype {dtype!r} (expected uint8 or uint16)") from None


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC (or HW, or NHWC) uint8/uint16 array -> contiguous float32 CHW (NCHW) in [-1, 1]."""
    scale = 2.0 / max_value(img.dtype)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim not in (3, 4):
        raise ValueError(f"expected an HW, HWC or NHWC image, got shape {img.shape}")
    t = torch.from_numpy(img.astype(np.float32))  # astype copies, so the result owns its memory
    t = t.movedim(-1, -3).contiguous()
    return t.mul_(scale).sub_(1.0)


def from_tensor(t: torch.Tensor, dtype: np.dtype | type | str = np.uint8) -> np.ndarray:
    """Float CHW (or NCHW) tensor in [-1, 1] -> contiguous HWC (NHWC) array of ``dtype``.

    Values are clamped to [-1, 1] and rounded to the nearest integer; NaN becomes -1 (black),
    so a diverged model gives visibly black pixels rather than undefined casts.
    """
    peak = max_value(dtype)
    if t.ndim not in (3, 4):
        raise ValueError(f"expected a CHW or NCHW tensor, got shape {tuple(t.shape)}")
    x = t.detach().to(device="cpu", dtype=torch.float32)
    x = torch.nan_to_num(x, nan=-1.0).clamp(-1.0, 1.0)
    x = ((x + 1.0) * (peak / 2.0)).round_()
    # Cast and transpose in one numpy pass (cheaper than transposing float32 in torch).
    return np.ascontiguousarray(np.moveaxis(x.numpy(), -3, -1), dtype=np.dtype(dtype))


def as_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """Return an HxWx``channels`` view/copy: gray is replicated, alpha is dropped."""
    if img.ndim == 2:
        img = img[:, :, None]
    c = img.shape[2]
    if c == channels:
        return img
    if channels == 3:
        if c == 1:
            return np.repeat(img, 3, axis=2)
        if c >= 3:
            return np.ascontiguousarray(img[:, :, :3])
    if channels == 1:
        rgb = as_channels(img, 3).astype(np.float32)
        y = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(np.rint(y), 0, np.iinfo(img.dtype).max).astype(img.dtype)[:, :, None]
    raise ValueError(f"cannot convert a {c}-channel image to {channels} channels")
