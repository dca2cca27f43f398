"""Conversions between image samples and the networks' values, in one place.

Samples are uint8/uint16 arrays (HWC, or any shape for the element-wise functions); inside
the toolkit a network's values are float32 in [-1, 1], channels first. ``normalize`` /
``to_tensor`` map 0 -> -1 and the data range (default: the dtype maximum, 255 or 65535) ->
+1; ``denormalize`` / ``from_tensor`` invert it with clamping and round-to-nearest, so uint8
and uint16 images round-trip exactly. A network trained on another range (e.g. [0, 1] for
BasicSR models) or on BGR gets its inputs through ``to_network`` and gives its outputs back
through ``from_network``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["as_channels", "denormalize", "from_network", "from_tensor", "max_value",
           "normalize", "to_network", "to_tensor"]

_MAX_VALUES = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}


def max_value(dtype: np.dtype | type | str) -> int:
    """Largest sample value of an image dtype: 255 for uint8, 65535 for uint16."""
    try:
        return _MAX_VALUES[np.dtype(dtype)]
    except (KeyError, TypeError):
        raise ValueError(f"unsupported image dtype {dtype!r} (expected uint8 or uint16)") from None


def _peak(dtype: np.dtype | type | str, data_range: float | None) -> float:
    return float(max_value(dtype) if data_range is None else data_range)


def normalize(samples: np.ndarray, data_range: float | None = None) -> np.ndarray:
    """uint8/uint16 samples (any shape) -> float32 in [-1, 1]: ``0 -> -1``,
    ``data_range -> 1``.

    ``data_range`` defaults to the dtype's maximum; larger samples are clipped to it (e.g.
    4095 for 12-bit data stored as uint16).
    """
    peak = _peak(samples.dtype, data_range)
    x = samples.astype(np.float32)
    if peak < max_value(samples.dtype):
        np.minimum(x, np.float32(peak), out=x)
    # x * (2 / peak) - 1 in float32, the toolkit's conversion since its first release: runs
    # written before resume bit for bit (tests/fixtures/flat_config_runs)
    x *= np.float32(2.0 / peak)
    x -= np.float32(1.0)
    return x


def _scaled(x: np.ndarray, peak: float) -> np.ndarray:
    """A float32 copy of ``x`` with NaN -> -1, clamped to [-1, 1], mapped to [0, peak] and
    rounded to the nearest integer (ties to even)."""
    y = x.astype(np.float32)  # always a copy: the caller's array is never changed
    np.nan_to_num(y, copy=False, nan=-1.0)
    np.clip(y, -1.0, 1.0, out=y)
    y += np.float32(1.0)
    y *= np.float32(peak / 2.0)
    np.rint(y, out=y)
    return y


def denormalize(x: np.ndarray, dtype: np.dtype | type | str,
                data_range: float | None = None) -> np.ndarray:
    """Float in [-1, 1] (any shape) -> ``dtype`` samples in [0, data_range], rounded.

    Values are clamped to [-1, 1] first; NaN becomes 0 (black), so a diverged model gives
    visibly black pixels rather than undefined casts.
    """
    return _scaled(x, _peak(dtype, data_range)).astype(np.dtype(dtype))


def to_tensor(img: np.ndarray, data_range: float | None = None) -> torch.Tensor:
    """HWC (or HW, or NHWC) uint8/uint16 array -> contiguous float32 CHW (NCHW) in [-1, 1]
    (see ``normalize``)."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim not in (3, 4):
        raise ValueError(f"expected an HW, HWC or NHWC image, got shape {img.shape}")
    return torch.from_numpy(normalize(img, data_range)).movedim(-1, -3).contiguous()


def from_tensor(t: torch.Tensor, dtype: np.dtype | type | str = np.uint8,
                data_range: float | None = None) -> np.ndarray:
    """Float CHW (or NCHW) tensor in [-1, 1] -> contiguous HWC (NHWC) array of ``dtype``
    (see ``denormalize``)."""
    peak = _peak(dtype, data_range)
    if t.ndim not in (3, 4):
        raise ValueError(f"expected a CHW or NCHW tensor, got shape {tuple(t.shape)}")
    y = _scaled(t.detach().to(device="cpu", dtype=torch.float32).numpy(), peak)
    # Cast and transpose in one numpy pass (cheaper than transposing float32 first).
    return np.ascontiguousarray(np.moveaxis(y, -3, -1), dtype=np.dtype(dtype))


def to_network(x: torch.Tensor, value_range: Sequence[float] = (-1.0, 1.0),
               bgr: bool = False) -> torch.Tensor:
    """NCHW values in [-1, 1] -> the network's input: mapped linearly onto
    ``value_range`` and, for a BGR network, with the channels reversed."""
    lo, hi = value_range
    if (lo, hi) != (-1.0, 1.0):
        x = (x + 1) * ((hi - lo) / 2) + lo
    return x.flip(1) if bgr else x


def from_network(y: torch.Tensor, value_range: Sequence[float] = (-1.0, 1.0),
                 bgr: bool = False) -> torch.Tensor:
    """The network's NCHW output -> float32 values in [-1, 1]: clamped to ``value_range``,
    mapped back linearly and, for a BGR network, with the channels reversed."""
    lo, hi = value_range
    y = y.float().clamp_(lo, hi)
    if bgr:
        y = y.flip(1)
    if (lo, hi) != (-1.0, 1.0):
        y = (y - lo) * (2 / (hi - lo)) - 1
    return y


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
