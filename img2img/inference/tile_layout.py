"""Where the tiles of a large image go and how their seams are blended (NumPy only).

**Tiles.** ``tile`` is the size of the part of the image a tile is responsible for (its
*core*, input pixels); ``overlap`` is the context added on each side, so the network sees
windows of about ``tile + 2 * overlap`` pixels. Window origins are aligned to the model's
``size_multiple`` (a strided network is only shift-equivariant for such shifts), and window
sizes are padded sizes (``padding.padded_length``), so that only windows at the image
border need padding, exactly as untiled inference pads the whole image.

**Blending.** Neighbouring windows are cross-faded over the ``overlap`` pixels centred on the
seam between their cores with a raised-cosine ramp, ``w(t) = (1 - cos(pi * t)) / 2``; the
weight is 1 elsewhere in the core (and up to the image border, so edges are not attenuated)
and 0 in the outer half of the context. The two ramps of a seam sum to 1; output =
sum(value * weight) / sum(weight). Every pixel with non-zero weight is at least
``overlap / 2`` pixels from an artificial window edge, so **the tiled result equals the
untiled one when the network's receptive-field radius is at most overlap / 2 input pixels**
(the whole receptive field fits in the overlap), up to float rounding (one 8-bit level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from img2img.errors import UsageError
from img2img.inference.padding import padded_length

__all__ = ["DEFAULT_MAX_OUTPUT_PIXELS", "DEFAULT_OVERLAP", "Span", "TileOptions",
           "auto_max_pixels", "axis_spans", "weight_sums"]

DEFAULT_OVERLAP = 32
DEFAULT_MAX_OUTPUT_PIXELS = 2048 * 2048
"""Images whose *output* would exceed this many pixels are tiled automatically, i.e. more
than 2048x2048 input pixels for a translation model and more than 512x512 for an x4 model."""


def auto_max_pixels(scale: int) -> int:
    """Default ``--max-pixels`` (input pixels) for a model of the given scale."""
    return max(1, DEFAULT_MAX_OUTPUT_PIXELS // (scale * scale))


@dataclass(frozen=True)
class TileOptions:
    """When and how to tile.

    ``tile``: always tile with this core size (input pixels); ``None`` tiles only images with
    more than ``max_pixels`` input pixels (default: ``auto_max_pixels(scale)``), with a core
    of half the side of a ``max_pixels`` square, between 32 and 512 / scale pixels.
    """

    tile: int | None = None
    overlap: int = DEFAULT_OVERLAP
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.tile is not None and self.tile < 1:
            raise UsageError(f"tile size must be positive, got {self.tile}")
        if self.overlap < 0:
            raise UsageError(f"tile overlap must be >= 0, got {self.overlap}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise UsageError(f"max pixels must be positive, got {self.max_pixels}")

    def limit(self, scale: int) -> int:
        """Input pixels above which an image is tiled."""
        return self.max_pixels if self.max_pixels is not None else auto_max_pixels(scale)

    def tile_for(self, height: int, width: int, scale: int) -> int | None:
        """Tile size for an image of this size, or None to run it whole."""
        if self.tile is not None:
            return self.tile
        limit = self.limit(scale)
        if height * width <= limit:
            return None
        # Cores of 512 input pixels for a translation model, 512 / scale for upscalers: the
        # activations of a window grow with its *output* size (srresnet x4, fp32: tile 256
        # peaks at 1.8 GB, tile 128 at 1.1 GB, for 10% more time).
        return min(max(32, 512 // scale), max(32, math.isqrt(limit) // 2))


@dataclass(frozen=True)
class Span:
    """One tile along one axis: the network reads input ``[start, stop)``; its output
    pixels ``[lo, hi)`` (output coordinates) carry the non-zero ``weights``."""

    start: int
    stop: int
    lo: int
    hi: int
    weights: np.ndarray  # float32, length hi - lo


def _ramp(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * t)


def axis_spans(length: int, tile: int, overlap: int, scale: int = 1, multiple: int = 1,
               min_size: int = 1) -> list[Span]:
    """Tiles covering ``[0, length)`` along one axis, with their blending weights."""
    tile, multiple = max(1, tile), max(1, multiple)
    window = padded_length(tile + 2 * overlap + multiple - 1, multiple, min_size)
    if length <= window:  # one window holds the whole axis: no seam at all
        return [Span(0, length, 0, length * scale, np.ones(length * scale, np.float32))]
    n = math.ceil(length / tile)
    cuts = [round(k * length / n) for k in range(n + 1)]  # balanced cores, each <= tile
    half = overlap / 2
    spans = []
    for c0, c1 in zip(cuts[:-1], cuts[1:], strict=True):
        start = max(0, c0 - overlap) // multiple * multiple
        stop = start + window
        if stop > length:
            stop = length
            start = max(0, length - window) // multiple * multiple
        lo = max(0, math.floor((c0 - half) * scale)) if c0 > 0 else 0
        hi = min(length * scale, math.ceil((c1 + half) * scale)) if c1 < length else length * scale
        u = (np.arange(lo, hi) + 0.5) / scale  # output pixel centres in input coordinates
        w = np.ones(hi - lo)
        if overlap == 0:
            w = ((u >= c0) & (u < c1)).astype(np.float64)
        else:
            if c0 > 0:
                w *= _ramp((u - (c0 - half)) / overlap)
            if c1 < length:
                w *= _ramp(((c1 + half) - u) / overlap)
        assert start * scale <= lo and hi <= stop * scale, "tile window misses its weights"
        spans.append(Span(start, stop, lo, hi, w.astype(np.float32)))
    return spans


def weight_sums(spans: list[Span], out_length: int) -> np.ndarray:
    """Per output pixel, the sum of the weights of the spans covering it (1 up to float
    rounding; dividing by it makes the blend exact)."""
    total = np.zeros(out_length, np.float32)
    for sp in spans:
        total[sp.lo : sp.hi] += sp.weights
    return total
