"""Tiled inference: images of any size in overlapping tiles, with memory bounded by the tile.

Where tiles go and how seams are blended is ``tile_layout``; this module runs them. Tiles of
one tile row run in batches through any ``TiledModel`` (a ``Translator``: each window is
padded and converted like untiled inference), their outputs are weighted and summed into a
band accumulator, and finished output rows leave it for a ``BandWriter``.

Instance norm uses whole-image statistics: a tiled instance-norm model normalises every
window on its own, so its result differs from the untiled one (blending hides the seams,
not the tone shifts between windows). A one-time warning says so. Batch norm in eval mode
(running statistics) and no norm are local and tile exactly.

**Memory.** Output rows are assembled in horizontal bands: the float accumulator holds only
the rows the current row of tiles still contributes to (at most ``(tile + overlap) * scale``
rows of the output width); finished rows go straight to the ``BandWriter`` (``bands``
converts them to samples for a sink: an array, a streamed PNG, windowed TIFF writes). The
input is read window by window through a ``WindowReader``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from img2img.inference.tile_layout import DEFAULT_OVERLAP, Span, axis_spans, weight_sums
from img2img.nn.norm import PerImageBatchNorm2d

__all__ = ["WRITE_ROWS", "BandWriter", "TileStats", "TiledModel", "WindowReader",
           "tile_grid", "translate_large", "warn_if_not_tileable"]

log = logging.getLogger("img2img")

WRITE_ROWS = 256  # finished output rows are handed to the writer in chunks of at most this


class WindowReader(Protocol):
    """Model input by windows: ``read`` returns float32 CHW in [-1, 1] (C = model input)."""

    height: int
    width: int

    def read(self, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor: ...


class BandWriter(Protocol):
    """Receives finished output rows top to bottom: ``band`` is float32 CHW in [-1, 1]
    (C = model output channels) for output rows ``y0 .. y0 + band.shape[1]``."""

    def write(self, y0: int, band: np.ndarray) -> None: ...


class TiledModel(Protocol):
    """What tiling needs of a model: its metadata (``scale``, ``size_multiple``,
    ``out_channels``), the smallest input it runs on, the network (to check its norm
    layers) and untiled inference of a batch of windows (``Translator`` has all four)."""

    meta: Any
    min_size: int
    model: Any

    def translate_tensor(self, x: torch.Tensor) -> torch.Tensor: ...


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


def _uses_global_norm(model: Any) -> bool:
    return any(isinstance(m, nn.InstanceNorm2d | nn.GroupNorm | PerImageBatchNorm2d)
               for m in model.modules())


def warn_if_not_tileable(translator: TiledModel) -> None:
    """Log once per translator when tiling cannot reproduce untiled results."""
    if getattr(translator, "_tiling_warned", False) or not _uses_global_norm(translator.model):
        return
    translator._tiling_warned = True  # type: ignore[attr-defined]
    log.warning("tiling a model with instance normalisation: every tile is normalised with its "
                "own statistics, so results differ from untiled inference (seams are blended, "
                "but tone may vary between tiles); use a larger --tile if memory allows")


def tile_grid(translator: TiledModel, height: int, width: int, tile: int,
              overlap: int = DEFAULT_OVERLAP) -> tuple[list[Span], list[Span]]:
    """The tile rows and columns ``translate_large`` runs for an image of this size
    (``len(rows) * len(cols)`` tiles in all)."""
    meta = translator.meta
    geometry = dict(scale=meta.scale, multiple=meta.size_multiple, min_size=translator.min_size)
    return (axis_spans(height, tile, overlap, **geometry),
            axis_spans(width, tile, overlap, **geometry))


def translate_large(translator: TiledModel, reader: WindowReader, writer: BandWriter,
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
    col_sum = weight_sums(cols, out_w)
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
