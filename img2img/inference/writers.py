"""Writers: translated frames -> output files, chosen from a table keyed by output kind.

``WRITERS`` maps an output kind to its writer:

* ``"image"``: one whole image through ``data.io.write_image`` (any format it encodes);
* ``"png-stream"``: a tiled result streamed into a PNG row band by row band
  (``data.png_stream``), never whole in memory;
* ``"tiff-stream"``: a tiled result written into a TIFF window by window (rasterio);
* ``"geotiff"``: a raster read by windows written by windows with the source's
  georeferencing, band metadata, nodata and compression (``inference.geotiff``);
* ``"video"``: a video's frames encoded as they come into a video of the input's container,
  timing, rotation and audio kept (``inference.video``);
* ``"frames"``: a stream's frames as numbered PNGs in a folder (``--frames-out``).

A writer with settings (the video encoder, overwrite, a progress bar) has ``configured``:
``configured(options)`` is the table a run writes with. A writer that keeps the parts of an
output already written (numbered frames) has ``pending``, which drops those frames before
they are translated.

A frame's reader may name its kind (``Frame.kind``: a GeoTIFF, a video); otherwise a frame
small enough to translate whole is an ``"image"``, and a tiled one is streamed when the
output's suffix has a streaming writer (``STREAMED``) that is available; the plan sends a
stream to ``"frames"`` (``Job.frames``). Every writer writes atomically: the output (each
frame file, for ``"frames"``) is complete or absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from img2img.data.io import IMAGE_EXTENSIONS, write_image
from img2img.data.png_stream import png_rows
from img2img.inference.frames import Frame, Output, WriteOptions, single_output
from img2img.inference.geotiff import GeoTiffWriter, TiffStreamWriter
from img2img.inference.video import FramesWriter, VideoWriter

__all__ = ["STREAMED", "WRITERS", "Configurable", "ImageWriter", "KeepsParts",
           "PngStreamWriter", "Writer", "configured", "output_kind", "writable_suffixes"]


class Writer(Protocol):
    """Writes the translated frames of one input to one output file.

    ``streams``: True if ``write`` takes outputs as they are computed (rows or frames are
    translated while it writes, on the calling thread); False if it wants whole arrays (they
    are computed first, and the write may run in a writer thread). ``suffixes``: the output
    file names it writes; planning accepts an output whose suffix some writer has.
    """

    streams: bool
    suffixes: frozenset[str]  # output suffixes it writes (lower case, with the dot)

    def available(self) -> bool:
        """False if a library this writer needs is missing (the image writer is used)."""
        ...

    def refuses(self, frame: Frame, dst: Path) -> str | None:
        """Why ``frame`` cannot be written to ``dst`` (one line), or None."""
        ...

    def write(self, dst: Path, outputs: Iterable[Output]) -> None:
        """Write ``outputs`` (in order) to ``dst``, atomically."""
        ...


@runtime_checkable
class Configurable(Protocol):
    """A writer with settings a run chooses (``WriteOptions``)."""

    def configured(self, options: WriteOptions) -> Writer:
        """This writer with ``options`` (UsageError for settings it cannot use)."""
        ...


@runtime_checkable
class KeepsParts(Protocol):
    """A stream writer that keeps the frames of an output already written."""

    def pending(self, dst: Path, frames: Iterable[Frame]) -> Iterator[Frame]:
        """The frames still to translate and write into ``dst``, in order."""
        ...


class ImageWriter:
    """``"image"``: the whole result, encoded by ``data.io.write_image``."""

    streams = False
    suffixes = IMAGE_EXTENSIONS

    def available(self) -> bool:
        return True

    def refuses(self, frame: Frame, dst: Path) -> str | None:
        return None

    def write(self, dst: Path, outputs: Iterable[Output]) -> None:
        write_image(dst, single_output(outputs, dst).whole())


class PngStreamWriter:
    """``"png-stream"``: rows streamed into a PNG as they are finished, so the output never
    exists whole in memory (an x4 result of a 4000x4000 photo is 768 MB)."""

    streams = True
    suffixes = frozenset({".png"})

    def available(self) -> bool:
        return True

    def refuses(self, frame: Frame, dst: Path) -> str | None:
        return None

    def write(self, dst: Path, outputs: Iterable[Output]) -> None:
        out = single_output(outputs, dst)
        with png_rows(dst, out.height, out.width, out.channels, out.dtype) as sink:
            out.into(sink)


WRITERS: dict[str, Writer] = {
    "image": ImageWriter(),
    "png-stream": PngStreamWriter(),
    "tiff-stream": TiffStreamWriter(),
    "geotiff": GeoTiffWriter(),
    "video": VideoWriter(),
    "frames": FramesWriter(),
}

STREAMED: dict[str, str] = {".png": "png-stream", ".tif": "tiff-stream", ".tiff": "tiff-stream"}
"""Output suffix -> the kind of writer that streams a tiled result into it."""


def writable_suffixes() -> frozenset[str]:
    """Every output suffix some writer of ``WRITERS`` writes."""
    return frozenset().union(*(w.suffixes for w in WRITERS.values()))


def configured(options: WriteOptions) -> dict[str, Writer]:
    """``WRITERS`` with a run's ``options`` given to the writers that take settings
    (UsageError for settings one of them cannot use)."""
    return {kind: w.configured(options) if isinstance(w, Configurable) else w
            for kind, w in WRITERS.items()}


def output_kind(frame: Frame, dst: Path, tiled: bool, frames: bool = False) -> str:
    """The ``WRITERS`` key for ``frame`` written to ``dst`` (``tiled``: translated in tiles;
    ``frames``: the plan made ``dst`` a folder for a stream's frames)."""
    if frames:
        return "frames"
    if frame.kind is not None:
        return frame.kind
    kind = STREAMED.get(dst.suffix.lower(), "image") if tiled else "image"
    return kind if WRITERS[kind].available() else "image"
