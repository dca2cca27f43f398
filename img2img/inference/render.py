"""Frames -> outputs through a translator: whole, in tiles, or by raster windows.

``Renderer`` holds what translating a frame needs besides the frame (the translator, when to
tile, the GeoTIFF band options, the batch size) and decides, per frame, between translating
it whole (batched with frames of equal shape), in tiles (``Output.tiled``: rows computed as
the writer takes them) and by windows from disk (``geotiff.raster_output``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from img2img.inference.frames import Frame, Output
from img2img.inference.geotiff import GeoOptions, raster_output
from img2img.inference.tile_layout import TileOptions
from img2img.inference.translator import Translator

__all__ = ["Renderer"]


@dataclass
class Renderer:
    """Translates frames with ``translator``: see the module docstring."""

    translator: Translator
    tiling: TileOptions = field(default_factory=TileOptions)
    geo: GeoOptions | None = None
    batch_size: int = 4

    def tile_for(self, frame: Frame) -> int | None:
        """The tile size for ``frame`` (None: whole; always None for a raster on disk)."""
        if frame.pixels is None:
            return None
        h, w = frame.pixels.shape[:2]
        return self.tiling.tile_for(h, w, self.translator.meta.scale)

    def whole(self, frames: list[Frame]) -> list[Output]:
        """Frames in memory translated at once (equal shapes run as one batch)."""
        arrays = self.translator.translate_arrays([f.pixels for f in frames])
        return [Output.of(f, a) for f, a in zip(frames, arrays, strict=True)]

    def render(self, frame: Frame) -> Output:
        """One frame's output: whole, tiled or by raster windows."""
        if frame.pixels is None:
            return raster_output(self.translator, frame, self.geo, self.tiling, self.batch_size)
        tile = self.tile_for(frame)
        if tile is None:
            return self.whole([frame])[0]
        return Output.tiled(self.translator, frame, tile, self.tiling.overlap, self.batch_size)

    def stream(self, frames: Iterable[Frame]) -> Iterator[Output]:
        """Outputs of a stream's frames, in order; consecutive frames of equal shape run in
        batches of ``batch_size``, so at most that many frames are held at once (a full
        batch runs before the next frame is read)."""
        batch: list[Frame] = []
        shape: tuple[int, ...] | None = None
        for frame in frames:
            if self.tile_for(frame) is not None or frame.pixels is None:
                yield from self.whole(batch) if batch else ()
                batch = []
                yield self.render(frame)
                continue
            if batch and np.shape(frame.pixels) != shape:
                yield from self.whole(batch)
                batch = []
            batch.append(frame)
            shape = np.shape(frame.pixels)
            if len(batch) >= self.batch_size:  # now, not after reading one more frame
                yield from self.whole(batch)
                batch = []
        if batch:
            yield from self.whole(batch)
