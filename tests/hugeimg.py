"""Small files that claim (or hold) huge images, built byte by byte: no big array is made.

``huge_png`` and ``huge_tiff`` are valid images of all-zero 8-bit gray pixels whose pixel
data is one deflate stream made row by row (20000x20000 pixels: about 0.4 MB of file, 400 MB
decoded). ``huge_jpeg`` is a small real JPEG whose frame header claims a huge size.
"""

from __future__ import annotations

import functools
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np


@functools.lru_cache(maxsize=4)
def zeros_deflate(rows: int, row_bytes: int) -> bytes:
    """zlib stream of ``rows * row_bytes`` zero bytes, compressed row by row."""
    c = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    row = bytes(row_bytes)
    return b"".join(c.compress(row) for _ in range(rows)) + c.flush()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """8-bit gray PNG of zeros: IHDR, one IDAT (filter byte 0 + zeros per row), IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zeros_deflate(height, width + 1)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
                     + _chunk(b"IEND", b""))
    return path


def tiff_bytes(width: int, height: int, strip: bytes, compression: int = 1,
               big_endian: bool = False, bigtiff: bool = False) -> bytes:
    """A one-strip 8-bit gray TIFF (classic or BigTIFF, either byte order) holding ``strip``
    (raw samples, or a zlib stream with ``compression=8``)."""
    e = ">" if big_endian else "<"
    order = b"MM" if big_endian else b"II"
    head_size, count_fmt, entry_fmt, off_fmt = ((16, "Q", "HHQQ", "Q") if bigtiff
                                                else (8, "H", "HHII", "I"))
    tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, compression),
            (262, 3, 1), (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, len(strip))]
    ifd_size = struct.calcsize(e + count_fmt + entry_fmt * len(tags) + off_fmt)
    data_at = head_size + ifd_size
    entries = b""
    for tag, kind, value in tags:
        value = data_at if tag == 273 else value
        size = struct.calcsize(e + entry_fmt) - struct.calcsize(e + "HH" + entry_fmt[2])
        # values are left-justified in the value field
        raw = struct.pack(e + ("H" if kind == 3 else "I"), value).ljust(size, b"\0")
        entries += struct.pack(e + "HH" + entry_fmt[2], tag, kind, 1) + raw
    ifd = struct.pack(e + count_fmt, len(tags)) + entries + struct.pack(e + off_fmt, 0)
    if bigtiff:
        head = order + struct.pack(e + "HHHQ", 43, 8, 0, head_size)
    else:
        head = order + struct.pack(e + "HI", 42, head_size)
    return head + ifd + strip


def huge_tiff(path: Path, width: int = 20001, height: int = 20000) -> Path:
    """Deflate-compressed 8-bit gray TIFF of zeros (20001 wide: the same stream as the PNG)."""
    path.write_bytes(tiff_bytes(width, height, zeros_deflate(height, width), compression=8))
    return path


def huge_jpeg(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """An 8x8 gray baseline JPEG whose SOF0 header claims ``width`` x ``height``."""
    data = bytearray(cv2.imencode(".jpg", np.full((8, 8), 128, np.uint8))[1].tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path
