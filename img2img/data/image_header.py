"""Image dimensions from file headers, without decoding any pixels.

``header_size(fmt, read)`` returns ``(width, height)`` as the header states it (before any
EXIF rotation) for the containers ``data.io`` decodes: PNG (IHDR), JPEG (the first SOFn frame
header), TIFF and BigTIFF (the first image directory's ImageWidth / ImageLength), WebP (VP8,
VP8L and VP8X), BMP and GIF. ``read(offset, size)`` returns up to ``size`` bytes at
``offset``, so the same parsers work on bytes in memory and on an open file (only the few
header bytes are read). Malformed or unusual headers give None: the caller decides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

ReadAt = Callable[[int, int], bytes]
"""``read(offset, size) -> bytes``: up to ``size`` bytes starting at ``offset``."""

_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # not DHT, JPG, DAC
_MAX_JPEG_SEGMENTS = 1000  # a real file has a few dozen before its frame header
_MAX_TIFF_ENTRIES = 4096


def bytes_reader(data: bytes | memoryview) -> ReadAt:
    """``ReadAt`` over bytes in memory."""
    return lambda offset, size: bytes(data[offset : offset + size])


def file_reader(f: BinaryIO) -> ReadAt:
    """``ReadAt`` over an open binary file (seeks, so not for files shared between threads)."""

    def read(offset: int, size: int) -> bytes:
        f.seek(offset)
        return f.read(size)

    return read


def _png(read: ReadAt) -> tuple[int, int] | None:
    head = read(0, 24)
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _jpeg(read: ReadAt) -> tuple[int, int] | None:
    pos = 2
    for _ in range(_MAX_JPEG_SEGMENTS):
        seg = read(pos, 9)
        if len(seg) < 4 or seg[0] != 0xFF:
            return None
        marker = seg[1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in _JPEG_SOF:
            if len(seg) < 9:
                return None
            height, width = int.from_bytes(seg[5:7], "big"), int.from_bytes(seg[7:9], "big")
            return (width, height) if width and height else None  # 0: height set by DNL
        elif marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
            pos += 2
        else:
            pos += 2 + int.from_bytes(seg[2:4], "big")
    return None


_TIFF_VALUE_SIZE = {3: 2, 4: 4, 16: 8}  # SHORT, LONG, LONG8


def _tiff(read: ReadAt) -> tuple[int, int] | None:
    head = read(0, 16)
    if len(head) < 8 or head[:2] not in (b"II", b"MM"):
        return None
    endian = "little" if head[:2] == b"II" else "big"

    def num(b: bytes) -> int:
        return int.from_bytes(b, endian)

    version = num(head[2:4])
    if version == 42:
        offset, count_size, entry_size, value_at = num(head[4:8]), 2, 12, 8
    elif version == 43 and len(head) == 16 and num(head[4:6]) == 8:
        offset, count_size, entry_size, value_at = num(head[8:16]), 8, 20, 12
    else:
        return None
    n = num(read(offset, count_size) or b"\0")
    if not 0 < n <= _MAX_TIFF_ENTRIES:
        return None
    entries = read(offset + count_size, n * entry_size)
    dims: dict[int, int] = {}
    for i in range(0, len(entries) - entry_size + 1, entry_size):
        tag = num(entries[i : i + 2])
        if tag in (256, 257):  # ImageWidth, ImageLength; the value is left-justified
            size = _TIFF_VALUE_SIZE.get(num(entries[i + 2 : i + 4]))
            if size is None:
                return None
            dims[tag] = num(entries[i + value_at : i + value_at + size])
    if 256 not in dims or 257 not in dims:
        return None
    return dims[256], dims[257]


def _webp(read: ReadAt) -> tuple[int, int] | None:
    head = read(0, 30)
    if len(head) < 30:
        return None
    kind = head[12:16]
    if kind == b"VP8 ":  # lossy: frame tag, start code, 14-bit sizes
        if head[23:26] != b"\x9d\x01\x2a":
            return None
        return (int.from_bytes(head[26:28], "little") & 0x3FFF,
                int.from_bytes(head[28:30], "little") & 0x3FFF)
    if kind == b"VP8L":  # lossless: signature byte, then 14-bit (size - 1) twice
        if head[20] != 0x2F:
            return None
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":  # extended: 24-bit (canvas size - 1) twice
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _bmp(read: ReadAt) -> tuple[int, int] | None:
    head = read(0, 26)
    if len(head) < 22:
        return None
    if int.from_bytes(head[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return int.from_bytes(head[18:20], "little"), int.from_bytes(head[20:22], "little")
    if len(head) < 26:
        return None
    width = int.from_bytes(head[18:22], "little", signed=True)
    height = int.from_bytes(head[22:26], "little", signed=True)  # negative: top-down rows
    return (width, abs(height)) if width > 0 else None


def _gif(read: ReadAt) -> tuple[int, int] | None:
    head = read(0, 10)
    if len(head) < 10:
        return None
    return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")


_PARSERS: dict[str, Callable[[ReadAt], tuple[int, int] | None]] = {
    "PNG": _png, "JPEG": _jpeg, "TIFF": _tiff, "WebP": _webp, "BMP": _bmp, "GIF": _gif,
}


def header_size(fmt: str | None, read: ReadAt) -> tuple[int, int] | None:
    """``(width, height)`` from the header of a ``fmt`` file (a ``data.io`` format name), or
    None if the format has no parser here or the header is malformed."""
    parser = _PARSERS.get(fmt or "")
    if parser is None:
        return None
    try:
        return parser(read)
    except (IndexError, ValueError):
        return None
