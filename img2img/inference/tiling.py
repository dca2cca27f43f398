"""Tiled inference: images of any size in overlapping tiles, with memory bounded by the tile.

**Tiles.** ``tile`` is the size of the part of the image a tile is responsible for (its
*core*, input pixels); ``overlap`` is the context added on each side, so the network sees
windows of about ``tile + 2 * overlap`` pixels. Window origins are aligned to the model's
``size_multiple`` (a strided network is only shift-equivariant for such shifts), and each
window is padded like untiled inference (``Translator.translate_tensor``).

**Blending.** Neighbouring windows are cross-faded over the ``overlap`` pixels centred on the
seam between their cores with a raised-cosine ramp, ``w(t) = (1 - cos(pi * t)) / 2``; the
weight is 1 elsewhere in the core (and up to the image border, so edges are not attenuated)
and 0 in the outer half of the context. The two ramps of a seam sum to 1; output =
sum(value * weight) / sum(weight). Every pixel with non-zero weight is at least
``overlap / 2`` pixels from an artificial window edge, so **the tiled result equals the
untiled one when the network's receptive-field radius is at most overlap / 2 input pixels**
(the whole receptive field fits in the overlap), up to float rounding (one 8-bit level).

Instance norm uses whole-image statistics: a tiled instance-norm model normalises every
window on its own, so its result differs from the untiled one (blending hides the seams,
not the tone shifts between windows). A one-time warning says so. Batch norm in eval mode
(running statistics) and no norm are local and tile exactly.

**Memory.** Output rows are assembled in horizontal bands: the float accumulator holds only
the rows the current row of tiles still contributes to (at most ``(tile + overlap) * scale``
rows of the output width); finished rows go straight to a ``BandWriter`` that converts them
to the output dtype and stores them (an in-memory array, or windowed GeoTIFF writes; see
``img2img.inference.geotiff``). The input is read window by window through a
``WindowReader``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from img2img.data.convert import as_channels, max_value
from img2img.errors import UsageError
from img2img.inference.translator import Translator
from img2img.nn.norm import PerImageBatchNorm2d

log = logging.getLogger("img2img")

DEFAULT_OVERLAP = 32
WRITE_ROWS = 256  # finished output rows are handed to the writer in chunks of at most this
DEFAULT_MAX_OUTPUT_PIXELS = 2048 * 2048
"""Images whose *output* would exceed this many pixels are tiled automatically, i.e. more
than 2048x2048 input pixels for a translation model and more than 512x512 for an x4 model."""


# --------------------------------------------------------------------------- options


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


# --------------------------------------------------------------------------- value range


def normalize(samples: np.ndarray, data_range: float | None = None) -> np.ndarray:
    """uint8/uint16 samples -> float32 in [-1, 1]: ``0 -> -1``, ``data_range -> 1``.

    ``data_range`` defaults to the dtype's maximum (255 or 65535, as ``data.convert``); larger
    samples are clipped to it.
    """
    peak = float(max_value(samples.dtype) if data_range is None else data_range)
    x = samples.astype(np.float32)
    if peak < max_value(samples.dtype):
        np.minimum(x, np.float32(peak), out=x)
    x /= np.float32(peak)
    x *= 2
    x -= 1
    return x


def denormalize(x: np.ndarray, dtype: np.dtype | type,
                data_range: float | None = None) -> np.ndarray:
    """Float in [-1, 1] -> ``dtype`` samples in [0, data_range], rounded; NaN -> 0."""
    peak = float(max_value(dtype) if data_range is None else data_range)
    y = np.nan_to_num(x.astype(np.float32, copy=True), nan=-1.0)
    np.clip(y, -1.0, 1.0, out=y)
    y += 1
    y *= np.float32(peak / 2.0)
    np.rint(y, out=y)
    np.clip(y, 0, peak, out=y)
    return y.astype(dtype)


# --------------------------------------------------------------------------- protocols


class WindowReader(Protocol):
    """Model input by windows: ``read`` returns float32 CHW in [-1, 1] (C = model input)."""

    height: int
    width: int

    def read(self, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor: ...


class BandWriter(Protocol):
    """Receives finished output rows top to bottom: ``band`` is float32 CHW in [-1, 1]
    (C = model output channels) for output rows ``y0 .. y0 + band.shape[1]``."""

    def write(self, y0: int, band: np.ndarray) -> None: ...


class Source(Protocol):
    """Raw samples of an image by windows: ``read`` returns HxWxB for 0-based ``bands``."""

    height: int
    width: int
    count: int
    dtype: np.dtype

    def read(self, y0: int, y1: int, x0: int, x1: int, bands: Sequence[int]) -> np.ndarray: ...


class Sink(Protocol):
    """Stores finished output samples (HxWxC of the output dtype), rows top to bottom."""

    def write(self, y0: int, rows: np.ndarray) -> None: ...


# --------------------------------------------------------------------------- tile layout


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
    window = tile + 2 * overlap + multiple - 1
    window = max(window + (-window) % multiple, min_size)
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


# --------------------------------------------------------------------------- the engine


@dataclass
class TileStats:
    """What a tiled run did (for logs and tests)."""

    tiles: int = 0
    batches: int = 0
    peak_rows: int = 0  # output rows the float accumulator holds (allocated once)
    acc_width: int = 0


class _BandAccumulator:
    """Float sums of value * weight and of the row weights for output rows
    ``[top, top + capacity)`` only, in one buffer allocated once."""

    def __init__(self, channels: int, capacity: int, width: int, stats: TileStats) -> None:
        self.acc = np.zeros((channels, capacity, width), np.float32)
        self.row_weight = np.zeros(capacity, np.float32)
        self.top = 0
        self.used = 0  # rows [top, top + used) may hold contributions
        stats.peak_rows, stats.acc_width = capacity, width

    def add_rows(self, y0: int, weights: np.ndarray) -> None:
        self.row_weight[y0 - self.top : y0 - self.top + len(weights)] += weights
        self.used = max(self.used, y0 - self.top + len(weights))

    def add(self, y0: int, x0: int, values: np.ndarray) -> None:
        h, w = values.shape[1:]
        self.acc[:, y0 - self.top : y0 - self.top + h, x0 : x0 + w] += values

    def finish(self, bottom: int, writer: BandWriter, col_weight: np.ndarray) -> None:
        """Normalise rows ``[top, bottom)``, hand them to ``writer`` and drop them."""
        n = bottom - self.top
        for j in range(0, n, WRITE_ROWS):  # chunks keep the writer's copies small
            k = min(n, j + WRITE_ROWS)
            part = self.acc[:, j:k]
            part /= np.maximum(self.row_weight[j:k, None] * col_weight[None, :], 1e-12)
            writer.write(self.top + j, part)
        keep = max(0, self.used - n)  # rows already receiving the next tile row's share
        self.acc[:, :keep] = self.acc[:, n : n + keep]
        self.acc[:, keep:] = 0
        self.row_weight[:keep] = self.row_weight[n : n + keep]
        self.row_weight[keep:] = 0
        self.top, self.used = bottom, keep


def _uses_global_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.InstanceNorm2d | nn.GroupNorm | PerImageBatchNorm2d)
               for m in model.modules())


def warn_if_not_tileable(translator: Translator) -> None:
    """Log once per translator when tiling cannot reproduce untiled results."""
    if getattr(translator, "_tiling_warned", False) or not _uses_global_norm(translator.model):
        return
    translator._tiling_warned = True  # type: ignore[attr-defined]
    log.warning("tiling a model with instance normalisation: every tile is normalised with its "
                "own statistics, so results differ from untiled inference (seams are blended, "
                "but tone may vary between tiles); use a larger --tile if memory allows")


def tile_grid(translator: Translator, height: int, width: int, tile: int,
              overlap: int = DEFAULT_OVERLAP) -> tuple[list[Span], list[Span]]:
    """The tile rows and columns ``translate_large`` runs for an image of this size
    (``len(rows) * len(cols)`` tiles in all)."""
    meta = translator.meta
    geometry = dict(scale=meta.scale, multiple=meta.size_multiple, min_size=translator.min_size)
    return (axis_spans(height, tile, overlap, **geometry),
            axis_spans(width, tile, overlap, **geometry))


def translate_large(translator: Translator, reader: WindowReader, writer: BandWriter,
                    tile: int, overlap: int = DEFAULT_OVERLAP, batch_size: int = 4,
                    progress: Callable[[int], None] | None = None) -> TileStats:
    """Translate ``reader``'s image in overlapping tiles, handing finished rows to ``writer``.

    Tiles of one tile row run in batches of ``batch_size`` (equal shapes only). ``progress``
    is called with the number of tiles done. Returns what was done (see ``TileStats``).
    """
    if tile < 1 or overlap < 0 or batch_size < 1:
        raise ValueError(f"bad tiling: tile={tile}, overlap={overlap}, batch_size={batch_size}")
    meta = translator.meta
    s = meta.scale
    rows, cols = tile_grid(translator, reader.height, reader.width, tile, overlap)
    if len(rows) * len(cols) > 1:
        warn_if_not_tileable(translator)
    out_w = reader.width * s
    col_sum = np.zeros(out_w, np.float32)
    for c in cols:
        col_sum[c.lo : c.hi] += c.weights
    stats = TileStats()
    # Rows [r.lo, r.hi) of a tile row; the previous one's finished rows end at r.lo.
    acc = _BandAccumulator(meta.out_channels, max(r.hi - r.lo for r in rows), out_w, stats)
    for i, r in enumerate(rows):
        acc.add_rows(r.lo, r.weights)
        k = 0
        while k < len(cols):  # batches of equal-shaped windows
            size = cols[k].stop - cols[k].start
            n = 1
            while (k + n < len(cols) and n < batch_size
                   and cols[k + n].stop - cols[k + n].start == size):
                n += 1
            batch, k = cols[k : k + n], k + n
            x = torch.stack([reader.read(r.start, r.stop, c.start, c.stop) for c in batch])
            y = translator.translate_tensor(x).cpu().numpy()
            stats.batches += 1
            stats.tiles += n
            for out, c in zip(y, batch, strict=True):
                part = out[:, r.lo - r.start * s : r.hi - r.start * s,
                           c.lo - c.start * s : c.hi - c.start * s]
                acc.add(r.lo, c.lo, part * (r.weights[:, None] * c.weights[None, :]))
            if progress is not None:
                progress(n)
        acc.finish(rows[i + 1].lo if i + 1 < len(rows) else reader.height * s, writer, col_sum)
    return stats


# --------------------------------------------------------------------------- readers/writers


class ArraySource:
    """``Source`` over an in-memory HxW or HxWxC array."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image[:, :, None] if image.ndim == 2 else image
        self.height, self.width, self.count = self.image.shape
        self.dtype = self.image.dtype

    def read(self, y0: int, y1: int, x0: int, x1: int, bands: Sequence[int]) -> np.ndarray:
        return self.image[y0:y1, x0:x1][:, :, list(bands)]


class ModelReader:
    """``WindowReader``: ``bands`` of a ``Source`` adapted to the model's input channels
    (gray replicated, RGB to luminance; as ``data.convert.as_channels``), normalised by
    ``data_range``."""

    def __init__(self, source: Source, bands: Sequence[int], in_channels: int,
                 data_range: float | None = None) -> None:
        self.source, self.bands = source, list(bands)
        self.in_channels, self.data_range = in_channels, data_range
        self.height, self.width = source.height, source.width

    def read(self, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        win = as_channels(self.source.read(y0, y1, x0, x1, self.bands), self.in_channels)
        return torch.from_numpy(np.ascontiguousarray(
            np.moveaxis(normalize(win, self.data_range), -1, 0)))


class ArraySink:
    """``Sink`` filling a preallocated HxWxC array."""

    def __init__(self, height: int, width: int, channels: int, dtype: np.dtype | type) -> None:
        self.array = np.empty((height, width, channels), dtype)

    def write(self, y0: int, rows: np.ndarray) -> None:
        self.array[y0 : y0 + rows.shape[0]] = rows


class BandAssembler:
    """``BandWriter`` turning model output rows into output samples for a ``Sink``.

    Model outputs (converted back to ``len(model_bands)`` channels and to the source dtype
    with ``data_range``) go to the positions ``model_bands`` had in the source; ``extra_bands``
    are upscaled with bicubic interpolation (``cv2.INTER_CUBIC``, on row windows with enough
    margin to equal a whole-image resize) into their positions. Output band order follows the
    source (bands in neither list are dropped). Where the input equals ``nodata`` in all bands,
    the output is set to ``nodata`` in all bands (the mask is scaled with nearest neighbour).
    """

    def __init__(self, source: Source, sink: Sink, scale: int, model_bands: Sequence[int],
                 extra_bands: Sequence[int] = (), data_range: float | None = None,
                 nodata: float | None = None) -> None:
        self.source, self.sink, self.scale = source, sink, scale
        self.model_bands, self.extra_bands = list(model_bands), list(extra_bands)
        order = sorted(self.model_bands + self.extra_bands)
        self.model_pos = [order.index(b) for b in self.model_bands]
        self.extra_pos = [order.index(b) for b in self.extra_bands]
        self.channels = len(order)
        self.data_range = data_range
        info = np.iinfo(source.dtype)
        self.nodata = nodata if nodata is not None and info.min <= nodata <= info.max else None

    def write(self, y0: int, band: np.ndarray) -> None:
        s, src = self.scale, self.source
        rows = band.shape[1]
        model = denormalize(np.moveaxis(band, 0, -1), src.dtype, self.data_range)
        model = as_channels(model, len(self.model_bands))
        out = np.empty((rows, src.width * s, self.channels), src.dtype)
        out[:, :, self.model_pos] = model
        if self.extra_bands or self.nodata is not None:
            # Input rows a bicubic kernel (4 taps) reaches from output rows [y0, y0 + rows).
            r0, r1 = max(0, y0 // s - 2), min(src.height, -(-(y0 + rows) // s) + 2)
            raw = src.read(r0, r1, 0, src.width, range(src.count))
            off = y0 - r0 * s
            for pos, b in zip(self.extra_pos, self.extra_bands, strict=True):
                out[:, :, pos] = _upscale(raw[:, :, b], s)[off : off + rows]
            if self.nodata is not None:
                empty = np.all(raw == self.nodata, axis=2)
                ys = np.arange(y0, y0 + rows) // s - r0
                mask = empty[ys][:, np.arange(src.width * s) // s]
                out[mask] = self.nodata
        self.sink.write(y0, out)


def _upscale(plane: np.ndarray, scale: int) -> np.ndarray:
    if scale == 1:
        return plane
    import cv2

    h, w = plane.shape
    return cv2.resize(plane, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)


def array_layout(image: np.ndarray) -> tuple[list[int], list[int]]:
    """(colour bands, alpha bands) of an HxW[xC] image as ``Translator`` sees it."""
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a uint8 or uint16 image, got {image.dtype}")
    c = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else 0
    if c not in (1, 2, 3, 4):
        raise ValueError(f"expected an HxW or HxWxC image with 1-4 channels, got {image.shape}")
    return (list(range(c - 1)), [c - 1]) if c in (2, 4) else (list(range(c)), [])


def translate_array_tiled(translator: Translator, image: np.ndarray, tile: int,
                          overlap: int = DEFAULT_OVERLAP, batch_size: int = 4,
                          sink: Sink | None = None,
                          progress: Callable[[int], None] | None = None) -> np.ndarray | None:
    """Tiled equivalent of ``translator(image)`` for a uint8/uint16 array (layout, alpha and
    dtype kept). With ``sink`` the rows go there and None is returned. ``progress`` is called
    with the number of tiles done (of ``tile_grid``'s)."""
    colour, alpha = array_layout(image)
    source = ArraySource(image)
    s = translator.meta.scale
    own = None if sink is not None else ArraySink(source.height * s, source.width * s,
                                                  source.count, source.dtype)
    reader = ModelReader(source, colour, translator.meta.in_channels)
    writer = BandAssembler(source, sink or own, s, colour, alpha)  # type: ignore[arg-type]
    translate_large(translator, reader, writer, tile, overlap, batch_size, progress)
    if own is None:
        return None
    return own.array[:, :, 0] if image.ndim == 2 else own.array


def write_png_tiled(translator: Translator, image: np.ndarray, dst: str | os.PathLike,
                    tile: int, overlap: int = DEFAULT_OVERLAP, batch_size: int = 4) -> None:
    """Tiled translation of ``image`` streamed into the PNG ``dst`` as rows are finished, so
    the output never exists whole in memory (an x4 result of a 4000x4000 photo is 768 MB)."""
    from img2img.data.png_stream import png_rows

    s = translator.meta.scale
    channels = 1 if image.ndim == 2 else image.shape[2]
    with png_rows(dst, image.shape[0] * s, image.shape[1] * s, channels, image.dtype) as sink:
        translate_array_tiled(translator, image, tile, overlap, batch_size, sink=sink)
