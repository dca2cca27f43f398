"""One request of the app, without Gradio: an uploaded file -> full-size result + previews.

The upload is decoded by ``img2img.data.io`` (EXIF orientation, alpha, 16-bit, the pixel
limit), translated as ``translate`` does (tiled above ``--max-pixels`` or with ``--tile``)
and written back through ``img2img.data.io`` in the input's bit depth and channels: a TIFF
stays a TIFF, anything else becomes a PNG (lossless, and it holds 16-bit samples and alpha).
The page shows input and output through two previews of equal size (the input enlarged
for an upscaler), at most :data:`PREVIEW_SIDE` pixels on the long side.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2img.data.io import ImageReadError, dropped_frames_reason, read_image, write_image
from img2img.data.resize import cv_resize
from img2img.errors import UsageError
from img2img.inference.bands import translate_array_tiled
from img2img.inference.tile_layout import TileOptions
from img2img.inference.tiling import tile_grid
from img2img.inference.translator import Translator

PREVIEW_SIDE = 2048
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass
class Result:
    """What one request wrote: the full-size result and the two previews."""

    download: Path
    preview_input: Path
    preview_output: Path
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    dtype: str
    tiles: int
    seconds: float

    def summary(self) -> str:
        """One line for the page, e.g. ``40x24 RGBA 16-bit -> 160x96, 4 tiles, 0.3 s``."""
        (h, w), (oh, ow) = self.input_shape[:2], self.output_shape[:2]
        channels = {1: "gray", 3: "RGB", 4: "RGBA"}[self.input_shape[2]]
        bits = "16-bit" if self.dtype == "uint16" else "8-bit"
        tiled = f", {self.tiles} tiles" if self.tiles > 1 else ""
        return (f"{w}x{h} {channels} {bits} -> {ow}x{oh}{tiled}, {self.seconds:.1f} s; "
                f"the download is {self.download.name} at full size")


def read_upload(path: str | Path) -> np.ndarray:
    """Decode an uploaded file; errors name the file as uploaded (not its temp path)."""
    p = Path(path)
    try:
        reason = dropped_frames_reason(p)
        if reason:
            raise ImageReadError(p.name, reason)
        return read_image(p)
    except ImageReadError as exc:
        raise ImageReadError(p.name, exc.reason) from None


def check_model_channels(translator: Translator, name: str) -> None:
    """An image gives the network 1 or 3 channels (alpha is carried around it)."""
    n = translator.meta.in_channels
    if n not in (1, 3):
        raise UsageError(f"{name}: the model takes {n} input channels, but an image gives 1 "
                         f"or 3 (such models run on GeoTIFF bands: img2img translate --bands)")


def translate_image(translator: Translator, image: np.ndarray, tiling: TileOptions,
                    batch_size: int = 1,
                    progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, int]:
    """``translator(image)``, tiled as ``translate`` tiles it; also the number of tiles.
    ``progress(done, total)`` is called as tiles finish."""
    h, w = image.shape[:2]
    tile = tiling.tile_for(h, w, translator.meta.scale)
    if tile is None:
        return translator(image), 1
    rows, cols = tile_grid(translator, h, w, tile, tiling.overlap)
    total, done = len(rows) * len(cols), 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    out = translate_array_tiled(translator, image, tile, tiling.overlap, batch_size,
                                progress=advance)
    return out, total  # type: ignore[return-value]


def preview_size(height: int, width: int, side: int = PREVIEW_SIDE) -> tuple[int, int]:
    """(height, width) fitting in ``side`` x ``side`` with the aspect ratio kept."""
    f = min(1.0, side / max(height, width))
    return max(1, round(height * f)), max(1, round(width * f))


def run_request(upload: str | Path, translator: Translator, checkpoint: Path,
                tiling: TileOptions, out_dir: Path, batch_size: int = 1,
                progress: Callable[[int, int], None] | None = None) -> Result:
    """Translate the uploaded file into ``out_dir`` (previews in ``out_dir/preview``). Raises
    ImageReadError (``str()`` names the upload) or UsageError for a bad request."""
    start = time.perf_counter()
    src = Path(upload)
    check_model_channels(translator, checkpoint.name)
    image = read_upload(src)
    out, tiles = translate_image(translator, image, tiling, batch_size, progress)
    suffix = src.suffix.lower() if src.suffix.lower() in TIFF_SUFFIXES else ".png"
    download = out_dir / f"{src.stem}_{checkpoint.stem}{suffix}"
    write_image(download, out)
    ph, pw = preview_size(*out.shape[:2])
    preview_output = download
    if suffix != ".png" or (ph, pw) != out.shape[:2]:
        preview_output = out_dir / "preview" / "output.png"
        write_image(preview_output, cv_resize(out, pw, ph))
    preview_input = out_dir / "preview" / "input.png"
    write_image(preview_input, cv_resize(image, pw, ph))
    return Result(download, preview_input, preview_output, image.shape, out.shape,
                  str(image.dtype), tiles, time.perf_counter() - start)
