"""Readers: input files -> frames, chosen from a table.

``READERS`` is tried in order and the first reader that ``claims`` a file reads it; the
image-file reader, last, takes anything. A reader reports a bad input by raising
``data.io.ImageReadError`` (its ``reason`` is what the run reports), or ``GeoTiffError`` /
``OSError``. A still-image reader (``stream = False``) yields one frame, decoded at once (in
a reading thread, ahead of the model); a stream reader (``stream = True``, e.g. video) yields
numbered frames lazily as the writer takes them.

A reader with a ``kind`` names the output kind of all its frames and claims files by name
alone (no file access), so that planning can ask it (``named_reader``): such an input keeps
its name and format (``--ext`` is for images) and, for a stream, may go to a folder of
numbered frames instead (``--frames-out``). ``kind`` None: the frame decides when it is read
(a GeoTIFF found by its header, an image by its size and the output's suffix).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from img2img.data.io import ImageReadError, ImageTooLargeError, read_image
from img2img.inference.frames import Frame
from img2img.inference.geotiff import INSTALL_HINT, GeoTiffReader, rasterio_available
from img2img.inference.video import VideoReader

__all__ = ["READERS", "ImageFileReader", "Reader", "named_reader", "reader_for"]


class Reader(Protocol):
    """Reads one kind of input file (see the module docstring)."""

    stream: bool
    kind: str | None

    def claims(self, path: Path) -> bool:
        """True if this reader reads ``path`` (a header or suffix check, cheap)."""
        ...

    def frames(self, path: Path) -> Iterator[Frame]:
        """The frames of ``path``, in order."""
        ...


class ImageFileReader:
    """Still images through ``data.io.read_image`` (every format it decodes: EXIF
    orientation applied, alpha, 16-bit and grayscale kept). A TIFF with more pixels than
    ``data.io`` decodes whole is left on disk, to be read by windows (rasterio)."""

    stream = False
    kind = None

    def claims(self, path: Path) -> bool:
        return True

    def frames(self, path: Path) -> Iterator[Frame]:
        try:
            image = read_image(path)
        except ImageTooLargeError as exc:
            if exc.format != "TIFF":
                raise
            if not rasterio_available():
                raise ImageReadError(path, f"{exc.reason}, or translate it by windows after "
                                           f"{INSTALL_HINT}") from None
            yield Frame(path, kind="geotiff", note=exc.reason)
            return
        yield Frame(path, image)


READERS: dict[str, Reader] = {
    "video": VideoReader(),
    "geotiff": GeoTiffReader(),
    "image": ImageFileReader(),
}


def reader_for(path: Path) -> Reader:
    """The first reader in ``READERS`` that claims ``path``."""
    return next(r for r in READERS.values() if r.claims(path))


def named_reader(path: Path) -> Reader | None:
    """The first reader in ``READERS`` with a ``kind`` that claims ``path`` by its name, or
    None when the file's reader and output kind are only known once it is read."""
    return next((r for r in READERS.values() if r.kind is not None and r.claims(path)), None)
