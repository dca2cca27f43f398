"""What readers yield (``Frame``), writers take (``Output``) and how a run sets its writers
(``WriteOptions``).

A reader (``inference.readers``) turns an input file into frames: pixels plus what must
survive translation. A renderer (``inference.render``) turns each frame into an ``Output``:
the translated samples, whole or as rows computed while the writer (``inference.writers``)
stores them, so a large result never has to exist whole in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from img2img.inference.bands import ArraySink, Sink, translate_array_tiled
from img2img.inference.tiling import TiledModel

__all__ = ["Frame", "Output", "WriteOptions", "single_output"]


@dataclass
class Frame:
    """One picture of an input file.

    ``pixels``: HxW or HxWxC samples (C = 1-4, alpha last; uint8 or uint16) as the file holds
    them, EXIF orientation applied; None when the reader leaves the image on disk to be read
    by windows (a GeoTIFF, or a TIFF too large to decode whole; georeferencing stays with the
    file, ``source``). ``index``: the frame's number in its stream (0 for a still image).
    ``kind``: the output kind this frame needs whatever its size (``"geotiff"`` for a raster
    read by windows; a stream reader names its own, e.g. ``"video"``); None for an ordinary
    image, whose writer follows from its size and the output's suffix. ``note``: why the
    reader chose ``kind`` (said when the output cannot take it). ``stream``: what the writer
    of a stream needs from its reader (frame rate, rotation, ...).
    """

    source: Path
    pixels: np.ndarray | None = None
    index: int = 0
    kind: str | None = None
    note: str = ""
    stream: Any = None


@dataclass
class Output:
    """A translated frame: ``shape`` (H, W) or (H, W, C) samples of ``dtype``, held in
    ``array`` or pushed into a sink, rows top to bottom, by ``produce`` (whose return
    value, e.g. ``tiling.TileStats``, is kept in ``result``). ``bands``: for a raster read by
    windows, the 0-based source bands the output channels come from."""

    frame: Frame
    shape: tuple[int, ...]
    dtype: np.dtype
    array: np.ndarray | None = None
    produce: Callable[[Sink], Any] | None = None
    bands: tuple[int, ...] = ()
    result: Any = None

    @classmethod
    def of(cls, frame: Frame, array: np.ndarray) -> Output:
        """An output computed whole."""
        return cls(frame, tuple(array.shape), array.dtype, array=array)

    @classmethod
    def tiled(cls, translator: TiledModel, frame: Frame, tile: int, overlap: int,
              batch_size: int) -> Output:
        """The tiled translation of ``frame.pixels``, computed as a sink takes its rows."""
        image = frame.pixels
        assert image is not None, "a frame read by windows is rendered by its raster reader"
        s = translator.meta.scale
        shape = (image.shape[0] * s, image.shape[1] * s, *image.shape[2:])

        def produce(sink: Sink) -> Any:
            return translate_array_tiled(translator, image, tile, overlap, batch_size, sink=sink)

        return cls(frame, shape, image.dtype, produce=produce)

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def channels(self) -> int:
        return self.shape[2] if len(self.shape) == 3 else 1

    def into(self, sink: Sink) -> None:
        """Write every row into ``sink`` (HxWxC rows, top to bottom)."""
        if self.array is not None:
            sink.write(0, self.array if self.array.ndim == 3 else self.array[:, :, None])
        else:
            assert self.produce is not None, "an output holds an array or produces rows"
            self.result = self.produce(sink)

    def whole(self) -> np.ndarray:
        """The samples as one array of ``shape``."""
        if self.array is not None:
            return self.array
        sink = ArraySink(self.height, self.width, self.channels, self.dtype)
        self.into(sink)
        return sink.array.reshape(self.shape)


@dataclass(frozen=True)
class WriteOptions:
    """A run's settings for the writers that have some (``writers.configured``): the video
    encoder (``codec`` None: the container's default; ``crf`` None: its default quality),
    ``overwrite`` (redo the frames of a frames folder already there) and ``progress`` (a
    progress bar per stream, in frames)."""

    codec: str | None = None
    crf: int | None = None
    overwrite: bool = False
    progress: bool = False


def single_output(outputs: Iterable[Output], dst: Path) -> Output:
    """The one output of a still image (ValueError naming ``dst`` for more or none)."""
    items = list(outputs)
    if len(items) != 1:
        raise ValueError(f"{dst}: an image file holds one frame, got {len(items)}")
    return items[0]
