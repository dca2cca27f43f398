"""Samples by windows and rows around tiled inference: sources, sinks, and the adapters
between them and the model's float values.

A ``Source`` gives raw samples of an image by windows (an array, a rasterio dataset); a
``Sink`` stores finished output samples row band by row band (an array, a streamed PNG,
windowed TIFF writes). ``ModelReader`` turns source windows into model input and
``BandAssembler`` turns the model's output rows back into samples, with the conversions of
``img2img.data.convert``. ``translate_array_tiled`` puts them together for an in-memory image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

from img2img.data.convert import as_channels, from_tensor, to_tensor
from img2img.inference.tile_layout import DEFAULT_OVERLAP
from img2img.inference.tiling import TiledModel, translate_large

__all__ = ["ArraySink", "ArraySource", "BandAssembler", "ModelReader", "Sink", "Source",
           "array_layout", "translate_array_tiled"]


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


class ArraySource:
    """``Source`` over an in-memory HxW or HxWxC array."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image[:, :, None] if image.ndim == 2 else image
        self.height, self.width, self.count = self.image.shape
        self.dtype = self.image.dtype

    def read(self, y0: int, y1: int, x0: int, x1: int, bands: Sequence[int]) -> np.ndarray:
        return self.image[y0:y1, x0:x1][:, :, list(bands)]


class ModelReader:
    """``tiling.WindowReader``: ``bands`` of a ``Source`` adapted to the model's input
    channels (``data.convert.as_channels``: gray replicated, RGB to luminance) and
    normalised by ``data_range`` (``data.convert.to_tensor``)."""

    def __init__(self, source: Source, bands: Sequence[int], in_channels: int,
                 data_range: float | None = None) -> None:
        self.source, self.bands = source, list(bands)
        self.in_channels, self.data_range = in_channels, data_range
        self.height, self.width = source.height, source.width

    def read(self, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
        win = as_channels(self.source.read(y0, y1, x0, x1, self.bands), self.in_channels)
        return to_tensor(win, self.data_range)


class ArraySink:
    """``Sink`` filling a preallocated HxWxC array."""

    def __init__(self, height: int, width: int, channels: int, dtype: np.dtype | type) -> None:
        self.array = np.empty((height, width, channels), dtype)

    def write(self, y0: int, rows: np.ndarray) -> None:
        self.array[y0 : y0 + rows.shape[0]] = rows


class BandAssembler:
    """``tiling.BandWriter`` turning model output rows into output samples for a ``Sink``.

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
        model = from_tensor(torch.from_numpy(band), src.dtype, self.data_range)
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


def translate_array_tiled(translator: TiledModel, image: np.ndarray, tile: int,
                          overlap: int = DEFAULT_OVERLAP, batch_size: int = 4,
                          sink: Sink | None = None,
                          progress: Callable[[int], None] | None = None) -> np.ndarray | None:
    """Tiled equivalent of ``translator(image)`` for a uint8/uint16 array (layout, alpha and
    dtype kept). With ``sink`` the rows go there and None is returned. ``progress`` is called
    with the number of tiles done (of ``tiling.tile_grid``'s)."""
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
