"""Image file decoding and encoding: the only module that touches image file formats.

Decoded images are ``H x W x C`` numpy arrays (always 3-D, C-contiguous) with ``C`` in
{1, 3, 4}, channel order gray / RGB / RGBA, dtype ``uint8`` or ``uint16``.

Decoder choice (verified against opencv-python-headless 5.0.0 and Pillow 13):

* OpenCV decodes everything by default (fast, keeps 16-bit samples). Bytes are read in Python
  and passed to ``cv2.imdecode*``, so non-ASCII paths work.
* EXIF orientation: ``IMREAD_UNCHANGED`` (needed to keep alpha and 16 bits) ignores it for
  JPEG/PNG/WebP, so we take the EXIF block from ``cv2.imdecodeWithMetadata`` (same cost as
  ``imdecode``) and rotate ourselves. OpenCV's TIFF decoder always applies the TIFF orientation
  tag itself (even with ``IMREAD_IGNORE_ORIENTATION``), so TIFFs are never rotated twice.
* Truncation: OpenCV 5 returns ``None`` for truncated JPEG/PNG, but 4.x returned a grey-filled
  image with only a libjpeg warning, so a structural check runs first (and names the problem):
  a JPEG needs complete header segments and an EOI marker after its last SOS marker, a PNG
  needs an IEND chunk.
* Pillow decodes only what OpenCV gets wrong or cannot do: 8-bit TIFFs with alpha (OpenCV
  premultiplies unassociated alpha), gray+alpha TIFF (OpenCV drops the alpha) and CMYK TIFF
  (OpenCV adds a constant alpha channel), plus, as a fallback, any file OpenCV fails to decode
  (format variants it lacks). Pillow is never used for 16-bit colour: it silently reduces it to
  8 bits.
* Gray+alpha becomes RGBA with the gray value replicated (OpenCV does this for PNG already).
  Palette images become RGB, or RGBA if they carry transparency. CMYK JPEG (incl. Adobe
  inverted CMYK) becomes RGB via libjpeg in OpenCV. Transparency in a gray PNG's tRNS chunk is
  ignored (OpenCV drops it).
* Float or signed samples (e.g. float32 TIFF) raise ``ImageReadError("unsupported sample
  format float32 ...")``: their value range is not defined, so any conversion would be a guess.

Pixel limit: before anything is decoded, the width and height are read from the header
(``image_header``; Pillow's lazy open for other formats) and an image of more than
``max_image_pixels()`` pixels (default ``DEFAULT_MAX_IMAGE_PIXELS`` = 2**28, 268.4 MP) raises
``ImageTooLargeError`` naming its size and ``--max-image-pixels``: a small, highly compressible
file must not make us allocate gigabytes. ``read_image`` checks before reading the rest of the
file. ``set_max_image_pixels`` changes the limit for the process and its future worker
processes (through the ``IMG2IMG_MAX_IMAGE_PIXELS`` environment variable, read at import) and
sets Pillow's ``Image.MAX_IMAGE_PIXELS`` to the same value, so Pillow never refuses an image
we accept. OpenCV reads its own limits (``OPENCV_IO_MAX_IMAGE_PIXELS``, default 2**30, and
2**20 per side) once, when cv2 is imported; images beyond them are decoded by Pillow
(8-bit only: 16-bit colour beyond OpenCV's limit needs that variable set before the start).
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import cv2
import numpy as np
from PIL import GifImagePlugin, Image, ImageOps, PngImagePlugin, TiffImagePlugin, WebPImagePlugin

from img2img.data.image_header import bytes_reader, file_reader, header_size
from img2img.data.paths import lock_temp, temp_name
from img2img.errors import UsageError

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "IMAGE_EXTENSIONS",
    "check_pixel_limit",
    "MAX_IMAGE_PIXELS_ENV",
    "READ_ONLY_EXTENSIONS",
    "ImageIOError",
    "ImageReadError",
    "ImageTooLargeError",
    "ImageWriteError",
    "atomic_path",
    "atomic_write_bytes",
    "decode_image",
    "dropped_frames_reason",
    "encode_image",
    "max_image_pixels",
    "read_image",
    "read_image_info",
    "set_max_image_pixels",
    "write_image",
]

PathLike = str | os.PathLike[str]
log = logging.getLogger("img2img")


class ImageIOError(Exception):
    """Base class: an image file could not be read or written; has ``.path`` and ``.reason``."""

    def __init__(self, path: PathLike, reason: str = "") -> None:
        super().__init__(path, reason)
        self.path = os.fspath(path)
        self.reason = reason

    def __str__(self) -> str:
        # Single-argument form (e.g. re-raised by a DataLoader worker) holds the whole message.
        return f"{self.path}: {self.reason}" if self.reason else self.path


class ImageReadError(ImageIOError):
    """Any read failure: missing, empty, not an image, corrupt, truncated or unsupported."""


class ImageTooLargeError(ImageReadError):
    """The header says the image has more pixels than ``max_image_pixels()``; nothing was
    decoded. ``width`` and ``height`` are the header's (0 if Pillow only said "too large"),
    ``format`` the container (e.g. ``"TIFF"``)."""

    def __init__(self, path: PathLike, reason: str = "", width: int = 0, height: int = 0,
                 format: str | None = None) -> None:  # noqa: A002 - the container's name
        super().__init__(path, reason)
        self.args = (self.path, reason, width, height, format)  # pickles with all fields
        self.width, self.height, self.format = width, height, format


class ImageWriteError(ImageIOError):
    """Any failure to encode or write an image file."""


# --------------------------------------------------------------------------- pixel limit

DEFAULT_MAX_IMAGE_PIXELS = 2**28
"""Most pixels (width * height) an image may have to be decoded whole: 268.4 MP, i.e. 805 MB
as 8-bit RGB and several times that while it is converted."""

MAX_IMAGE_PIXELS_ENV = "IMG2IMG_MAX_IMAGE_PIXELS"
"""Environment variable holding the limit (set by ``set_max_image_pixels``, read at import)."""


def _limit_from_env() -> int:
    text = os.environ.get(MAX_IMAGE_PIXELS_ENV)
    if text is None:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        log.warning("ignoring %s=%r: not a positive integer", MAX_IMAGE_PIXELS_ENV, text)
        return DEFAULT_MAX_IMAGE_PIXELS
    return value


def _cv2_setting(name: str, default: int) -> int:
    """An OpenCV imgcodecs limit as OpenCV read it from the environment at import."""
    try:
        return int(os.environ.get(name, default))
    except ValueError:  # e.g. a "1G" suffix: assume the default; OpenCV failing falls back
        return default


_max_pixels = _limit_from_env()
Image.MAX_IMAGE_PIXELS = _max_pixels
_CV2_MAX_PIXELS = _cv2_setting("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30)
_CV2_MAX_SIDE = min(_cv2_setting("OPENCV_IO_MAX_IMAGE_WIDTH", 1 << 20),
                    _cv2_setting("OPENCV_IO_MAX_IMAGE_HEIGHT", 1 << 20))


def max_image_pixels() -> int:
    """The current limit on width * height for decoding a whole image."""
    return _max_pixels


def set_max_image_pixels(pixels: int) -> None:
    """Set the process-wide limit on width * height for decoding a whole image.

    Also exported as ``IMG2IMG_MAX_IMAGE_PIXELS`` so worker processes started afterwards
    (spawn / forkserver data loaders) use it, and set as Pillow's ``Image.MAX_IMAGE_PIXELS``.
    Raises UsageError unless ``pixels`` is a positive integer.
    """
    global _max_pixels
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
        raise UsageError(f"--max-image-pixels must be a positive integer, got {pixels!r}")
    _max_pixels = pixels
    Image.MAX_IMAGE_PIXELS = pixels
    os.environ[MAX_IMAGE_PIXELS_ENV] = str(pixels)


def _amount(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP" if pixels >= 100_000 else f"{pixels} pixels"


def _pillow_size(name: str, f: io.IOBase) -> tuple[int, int] | None:
    """Size from Pillow's lazy open (header only), for containers without our own parser."""
    try:
        with Image.open(f) as im:
            return im.size
    except Image.DecompressionBombError:  # more than twice Pillow's limit, i.e. ours
        raise ImageTooLargeError(
            name, f"more than twice the limit of {_amount(_max_pixels)} for decoding a whole "
                  f"image; raise it with --max-image-pixels") from None
    except Exception:  # not something Pillow knows: the decoders will say what is wrong
        return None


def _check_size(name: str, fmt: str | None, read: Callable[[int, int], bytes],
                f: io.IOBase) -> tuple[int, int] | None:
    """(width, height) from the header (``read``, or Pillow on ``f``); raises
    ImageTooLargeError above the limit. None if the size cannot be read from the header."""
    size = header_size(fmt, read) or _pillow_size(name, f)
    if size is not None and size[0] * size[1] > _max_pixels:
        w, h = size
        raise ImageTooLargeError(
            name, f"{w}x{h} = {_amount(w * h)} is more than the limit of "
                  f"{_amount(_max_pixels)} for decoding a whole image; raise it with "
                  f"--max-image-pixels", w, h, fmt)
    return size


# --------------------------------------------------------------------------- formats

_CANDIDATE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _codec_works(ext: str) -> bool:
    """True if the installed OpenCV can encode and decode ``ext`` (checked by a tiny round trip)."""
    try:
        ok, buf = cv2.imencode(ext, np.zeros((2, 2, 3), np.uint8))
        return bool(ok) and cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) is not None
    except cv2.error:
        return False


IMAGE_EXTENSIONS: frozenset[str] = frozenset(e for e in _CANDIDATE_EXTENSIONS if _codec_works(e))
"""Lower-case suffixes (with dot) that are listed as images and can be written."""

_EIGHT_BIT_ONLY = {".jpg", ".jpeg", ".webp", ".bmp"}
_NO_ALPHA = {".jpg", ".jpeg"}


def _sniff(data: bytes) -> str | None:
    """Container format from the magic bytes, or None if not one we know."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def _jpeg_truncation(data: bytes) -> str | None:
    """Why a JPEG is truncated, or None: walk the header segments to the first SOS, then
    require an EOI marker after the last SOS.

    Entropy-coded data cannot contain FFD9/FFDA, and a thumbnail's markers live inside an APP
    segment that the walk skips, so they cannot make a cut-off main image look complete. Data
    appended after the EOI (e.g. motion photos) is accepted. Cost: a few header hops plus a
    search from the end.
    """
    pos, n = 2, len(data)
    while True:
        if pos + 4 > n:
            return "truncated JPEG data (file ends inside the header)"
        if data[pos] != 0xFF:
            return None  # malformed header: leave the verdict to the decoder
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xDA:  # start of scan: headers done
            break
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
            pos += 2
        elif marker == 0xD9:
            return None
        else:
            pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    eoi = data.rfind(b"\xff\xd9")
    if eoi < pos or data.find(b"\xff\xda", eoi + 2) >= 0:
        return "truncated JPEG data (no end-of-image marker)"
    return None


def _truncation_reason(data: bytes, fmt: str | None) -> str | None:
    """Cheap structural truncation check for JPEG and PNG; the reason, or None."""
    if fmt == "JPEG":
        return _jpeg_truncation(data)
    if fmt == "PNG" and data.rfind(b"IEND") < 0:
        return "truncated PNG data (no IEND chunk)"
    return None


# --------------------------------------------------------------------------- OpenCV logging

# OpenCV logs a warning/error for every undecodable file; we turn each failure into an
# ImageReadError instead, so logging is silenced while our decode calls run. The level is
# process-global, hence the reference count. Setting OPENCV_LOG_LEVEL in the environment
# disables this (for debugging). libjpeg/libpng messages on corrupt (not truncated) data are
# printed by those libraries directly and cannot be silenced through OpenCV.
_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_level = 0
_logging = getattr(getattr(cv2, "utils", None), "logging", None)


@contextmanager
def _quiet_cv2() -> Iterator[None]:
    global _quiet_depth, _saved_level
    if _logging is None or "OPENCV_LOG_LEVEL" in os.environ:
        yield
        return
    with _quiet_lock:
        if _quiet_depth == 0:
            _saved_level = _logging.getLogLevel()
            _logging.setLogLevel(_logging.LOG_LEVEL_SILENT)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                _logging.setLogLevel(_saved_level)


# --------------------------------------------------------------------------- reading

_UNSUPPORTED_DTYPE = "unsupported sample format {} (only 8- and 16-bit unsigned integers)"


def _exif_orientation(exif: bytes) -> int:
    """Orientation tag (1-8) from a raw EXIF block; 1 if absent or unparsable."""
    try:
        exif_obj = Image.Exif()
        exif_obj.load(exif)
        value = int(exif_obj.get(0x0112, 1))
    except Exception:  # malformed EXIF must not make a good image unreadable
        return 1
    return value if 1 <= value <= 8 else 1


def _apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip so the image displays upright (EXIF orientation 1-8)."""
    if orientation == 2:
        img = img[:, ::-1]
    elif orientation == 3:
        img = img[::-1, ::-1]
    elif orientation == 4:
        img = img[::-1]
    elif orientation == 5:
        img = img.swapaxes(0, 1)
    elif orientation == 6:
        img = img.swapaxes(0, 1)[:, ::-1]
    elif orientation == 7:
        img = img.swapaxes(0, 1)[::-1, ::-1]
    elif orientation == 8:
        img = img.swapaxes(0, 1)[::-1]
    return img


def _cv2_decode(data: bytes) -> tuple[np.ndarray | None, int]:
    """Decode with OpenCV (IMREAD_UNCHANGED); returns (BGR[A] image or None, EXIF orientation)."""
    buf = np.frombuffer(data, np.uint8)
    with _quiet_cv2():
        try:
            if hasattr(cv2, "imdecodeWithMetadata"):
                img, types, blocks = cv2.imdecodeWithMetadata(buf, cv2.IMREAD_UNCHANGED)
            else:  # OpenCV < 4.12: no metadata API, ask Pillow for the tag instead
                img, types, blocks = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), (), ()
        except cv2.error:
            return None, 1
    if img is None or img.size == 0:
        return None, 1
    orientation = 1
    for kind, block in zip(types, blocks, strict=False):
        if kind == cv2.IMAGE_METADATA_EXIF:
            orientation = _exif_orientation(np.asarray(block).tobytes())
    if not hasattr(cv2, "imdecodeWithMetadata"):
        with suppress(Exception):
            orientation = int(Image.open(io.BytesIO(data)).getexif().get(0x0112, 1))
    return img, orientation


def _canonical_from_cv2(img: np.ndarray, name: str) -> np.ndarray:
    """OpenCV BGR[A] result -> contiguous HxWxC gray/RGB/RGBA uint8/uint16."""
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(name, _UNSUPPORTED_DTYPE.format(img.dtype))
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    img = np.ascontiguousarray(img)
    if channels == 1:
        return img
    if channels == 2:  # gray + alpha -> RGBA with gray replicated
        return np.ascontiguousarray(img[:, :, [0, 0, 0, 1]])
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    raise ImageReadError(name, f"unsupported channel count {channels}")


def _pil_to_array(im: Image.Image, name: str) -> np.ndarray:
    """Loaded Pillow image -> HxWxC gray/RGB/RGBA uint8/uint16 (same conventions as OpenCV path)."""
    mode = im.mode
    if mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.uint16)
    elif mode in ("I", "F") or mode.startswith(("I;", "F;")):
        raise ImageReadError(name, _UNSUPPORTED_DTYPE.format(np.asarray(im).dtype))
    else:
        if mode == "1":
            target = "L"
        elif mode in ("L", "RGB", "RGBA"):
            target = mode
        elif mode in ("P", "PA"):
            has_alpha = mode == "PA" or "transparency" in im.info
            target = "RGBA" if has_alpha else "RGB"
        elif "A" in mode or "a" in mode:  # LA, La, RGBa, ...
            target = "RGBA"
        else:  # CMYK, YCbCr, LAB, HSV, RGBX
            target = "RGB"
        if target != mode:
            im = im.convert(target)
        arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.array(arr, order="C")  # own, writable copy


def _is_deep_colour(im: Image.Image, data: bytes) -> bool:
    """True if the file holds >8-bit colour samples, which Pillow would reduce to 8 bits."""
    if im.mode.startswith(("I", "F")):  # 16-bit gray / int / float: kept or rejected later
        return False
    if im.format == "PNG":
        return len(data) > 24 and data[24] > 8  # IHDR bit depth
    bits = getattr(im, "tag_v2", {}).get(258, 8)  # TIFF BitsPerSample
    return any(b > 8 for b in (bits if isinstance(bits, tuple) else (bits,)))


def _decode_pillow(data: bytes, name: str, beyond_cv2: bool = False) -> np.ndarray:
    """Strict Pillow decode (truncated data raises), EXIF orientation applied.

    Refuses >8-bit colour (Pillow would silently reduce it to 8 bits). ``beyond_cv2``: the
    image is beyond OpenCV's limits (said in that refusal).
    """
    with Image.open(io.BytesIO(data)) as im:
        if _is_deep_colour(im, data):
            why = (f" beyond OpenCV's limits ({_amount(_CV2_MAX_PIXELS)}, {_CV2_MAX_SIDE} "
                   f"pixels a side; raise them by setting OPENCV_IO_MAX_IMAGE_PIXELS, "
                   f"OPENCV_IO_MAX_IMAGE_WIDTH or OPENCV_IO_MAX_IMAGE_HEIGHT before starting)"
                   if beyond_cv2 else "")
            raise ImageReadError(name, f"cannot decode 16-bit colour {im.format} data{why}")
        im.load()
        oriented = ImageOps.exif_transpose(im)
        return _pil_to_array(oriented, name)


# Pillow modes of 8-bit TIFFs that OpenCV decodes wrongly (see module docstring).
_TIFF_PILLOW_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA", "CMYK"})


def _tiff_wants_pillow(data: bytes) -> bool:
    """True for an 8-bit TIFF with alpha or CMYK (Pillow parses only the header here)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            bits = im.tag_v2.get(258, (8,))  # BitsPerSample
            bits = bits if isinstance(bits, tuple) else (bits,)
            return im.mode in _TIFF_PILLOW_MODES and all(b == 8 for b in bits)
    except Exception:  # Pillow cannot parse it: let OpenCV try
        return False


def decode_image(data: bytes, name: PathLike = "<memory>") -> np.ndarray:
    """Decode encoded image bytes to HxWxC uint8/uint16 gray/RGB/RGBA (see module docstring).

    ``name`` is only used in error messages. Raises ImageReadError on any failure, and
    ImageTooLargeError (before decoding) above ``max_image_pixels()``.
    """
    name = os.fspath(name)
    if len(data) == 0:
        raise ImageReadError(name, "empty file (0 bytes)")
    fmt = _sniff(data)
    size = _check_size(name, fmt, bytes_reader(data), io.BytesIO(data))
    beyond_cv2 = size is not None and (size[0] * size[1] > _CV2_MAX_PIXELS
                                       or max(size) > _CV2_MAX_SIDE)
    reason = _truncation_reason(data, fmt)
    if reason:
        raise ImageReadError(name, reason)

    if fmt == "TIFF" and _tiff_wants_pillow(data):
        try:
            return _decode_pillow(data, name)
        except ImageReadError:
            raise
        except Exception:
            pass  # fall through to OpenCV

    img, orientation = (None, 1) if beyond_cv2 else _cv2_decode(data)
    if img is None:
        # OpenCV failed: Pillow may know this format variant; otherwise explain the failure.
        try:
            return _decode_pillow(data, name, beyond_cv2)
        except ImageReadError:
            raise
        except Exception as exc:
            raise ImageReadError(name, _failure_reason(data, fmt, exc)) from None
    if fmt != "TIFF" and orientation != 1:  # OpenCV's TIFF decoder orients by itself
        img = _apply_orientation(img, orientation)
    return _canonical_from_cv2(img, name)


def _failure_reason(data: bytes, fmt: str | None, exc: Exception) -> str:
    """Human-readable reason when neither OpenCV nor Pillow could decode the data."""
    if isinstance(exc, Image.DecompressionBombError):
        return f"image too large ({exc}); raise the limit with --max-image-pixels"
    if fmt is None:
        if isinstance(exc, Image.UnidentifiedImageError):
            return f"not an image file (unrecognised contents starting {data[:8]!r})"
        return f"unsupported image format ({exc})"
    detail = "" if isinstance(exc, Image.UnidentifiedImageError) else f" ({exc})"
    return f"corrupt or unsupported {fmt} data{detail}"


@contextmanager
def _reading(path: PathLike) -> Iterator[None]:
    """Turn the OS errors of opening/reading ``path`` into ImageReadError naming it."""
    try:
        yield
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory, not a file") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as exc:
        raise ImageReadError(path, exc.strerror or str(exc)) from None


def _read_bytes(path: PathLike) -> bytes:
    with _reading(path), open(path, "rb") as f:
        return f.read()


def _read_checked(path: PathLike) -> bytes:
    """The file's bytes, after its header passed the pixel limit (a file too large to decode
    is not read further than its header)."""
    check_pixel_limit(path)
    return _read_bytes(path)


def check_pixel_limit(path: PathLike) -> None:
    """Raise ImageTooLargeError when the header of ``path`` gives more pixels than
    ``max_image_pixels()`` (ImageReadError when it cannot be opened); reads only the header."""
    with _reading(path), open(path, "rb") as f:
        head = f.read(16)
        if head:
            _check_size(os.fspath(path), _sniff(head), file_reader(f), f)


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as HxWxC uint8/uint16 gray/RGB/RGBA, EXIF orientation applied.

    Raises ImageReadError (``str()`` is ``"<path>: <reason>"``) for every kind of failure;
    ImageTooLargeError, after reading only the header, above ``max_image_pixels()``.
    """
    return decode_image(_read_checked(path), path)


def _before_idat(data: bytes, chunk: bytes) -> int:
    """Offset of a chunk type that precedes the first IDAT (-1 if absent)."""
    idat = data.find(b"IDAT")
    return data.find(chunk, 0, idat) if idat > 0 else -1


def _png_info(data: bytes) -> tuple[int, int, int, np.dtype] | None:
    """(H, W, C, dtype) from a PNG IHDR, matching what decode_image returns; None if unusual."""
    if len(data) < 29 or data[12:16] != b"IHDR":
        return None
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    depth, color_type = data[24], data[25]
    if color_type not in (0, 2, 3, 4, 6):
        return None
    # OpenCV: tRNS adds alpha to palette and RGB images but is ignored for gray.
    trns = color_type in (2, 3) and _before_idat(data, b"tRNS") >= 0
    channels = 4 if trns or color_type in (4, 6) else 1 if color_type == 0 else 3
    dtype = np.dtype(np.uint16 if depth == 16 else np.uint8)
    return height, width, channels, dtype


def read_image_info(path: PathLike) -> tuple[int, int, int, np.dtype]:
    """(height, width, channels, dtype) as ``read_image`` would return them.

    Reads headers only where that is reliable (PNG IHDR, Pillow's lazy open for JPEG/WebP, with
    EXIF orientation) and falls back to a full decode otherwise (TIFF, BMP, anything unusual).
    Does not validate pixel data: a truncated file may still report its size.
    """
    data = _read_bytes(path)
    fmt = _sniff(data)
    info: tuple[int, int, int, np.dtype] | None = None
    orientation = 1
    if fmt == "PNG":
        info = _png_info(data)
        orientation = _png_orientation(data)
    elif fmt in ("JPEG", "WebP"):
        with suppress(Exception), Image.open(io.BytesIO(data)) as im:
            channels = {"L": 1, "RGB": 3, "CMYK": 3, "YCbCr": 3, "RGBA": 4}.get(im.mode)
            if channels is not None:
                info = (im.height, im.width, channels, np.dtype(np.uint8))
                orientation = int(im.getexif().get(0x0112, 1))
    if info is None:
        img = read_image(path)
        return img.shape[0], img.shape[1], img.shape[2], img.dtype
    h, w, c, dtype = info
    if orientation in (5, 6, 7, 8):
        h, w = w, h
    return h, w, c, dtype


def _png_orientation(data: bytes) -> int:
    """EXIF orientation from a PNG eXIf chunk (1 if none)."""
    pos = _before_idat(data, b"eXIf")
    if pos < 4:
        return 1
    length = int.from_bytes(data[pos - 4 : pos], "big")
    return _exif_orientation(data[pos + 4 : pos + 4 + length])


# --------------------------------------------------------------------------- writing


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 with rounding: round(v * 255 / 65535)."""
    return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def encode_image(
    array: np.ndarray, ext: str, *, quality: int = 95, name: PathLike = "<memory>"
) -> bytes:
    """Encode an HxW or HxWxC (C in 1/3/4, RGB[A] order) uint8/uint16 array as ``ext``.

    16-bit data written to JPEG/WebP/BMP is reduced to 8 bits with rounding
    (``round(v * 255 / 65535)``; OpenCV itself would saturate). Alpha into JPEG raises.
    ``quality`` (1-100) applies to JPEG and WebP. WebP has no gray mode: gray is stored as RGB.
    Raises ImageWriteError naming ``name``.
    """
    name = os.fspath(name)
    if not ext:
        raise ImageWriteError(name, "no file suffix to choose the image format from")
    ext = ext.lower() if ext.startswith(".") else "." + ext.lower()
    if ext not in IMAGE_EXTENSIONS:
        supported = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise ImageWriteError(name, f"unsupported output format {ext!r} (use one of {supported})")
    if not isinstance(array, np.ndarray):
        raise ImageWriteError(name, f"expected a numpy array, got {type(array).__name__}")
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageWriteError(name, f"unsupported dtype {array.dtype} (expected uint8 or uint16)")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape:
        raise ImageWriteError(
            name, f"expected an HxW or HxWxC array with C in (1, 3, 4), got shape {array.shape}"
        )
    if not 1 <= quality <= 100:
        raise ImageWriteError(name, f"quality must be in 1..100, got {quality}")
    channels = array.shape[2]
    if channels == 4 and ext in _NO_ALPHA:
        raise ImageWriteError(name, "JPEG cannot store alpha; use .png")
    if array.dtype == np.uint16 and ext in _EIGHT_BIT_ONLY:
        array = _to_uint8(array)
    array = np.ascontiguousarray(array)
    if channels == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif channels == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    params: list[int] = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    with _quiet_cv2():
        try:
            ok, buf = cv2.imencode(ext, array, params)
        except cv2.error as exc:
            msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
            raise ImageWriteError(name, f"encoding failed: {msg}") from None
    if not ok:
        raise ImageWriteError(name, "encoding failed")
    return buf.tobytes()


def write_image(path: PathLike, array: np.ndarray, *, quality: int = 95) -> None:
    """Atomically write an image; the format comes from the path's suffix (see encode_image).

    Encodes in memory first, so a failed encode never creates or touches the target. Parent
    folders are created. Raises ImageWriteError naming the file.
    """
    data = encode_image(array, Path(path).suffix, quality=quality, name=path)
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise ImageWriteError(path, exc.strerror or str(exc)) from None


# --------------------------------------------------------------------------- atomic files


def _create_temp(target: Path) -> tuple[Path, int | None]:
    """Create an empty, unique ``paths.temp_name`` file next to ``target`` (umask-respecting).

    Returns it with an open descriptor holding its in-use lock (``paths.lock_temp``), or
    None where there are no locks (the descriptor is then closed at once).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = target.with_name(temp_name(target.name))
        try:
            # os.open with 0o666 applies the umask like a normal file (mkstemp would force 0600).
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        if lock_temp(fd):
            return tmp, fd
        os.close(fd)
        return tmp, None


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: PathLike, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it replaces ``path``, on error it is removed.

    The temp file already exists (empty) when yielded; write to it by name (``torch.save``,
    ``open(tmp, "w")``, ...). Parent folders are created. With ``fsync`` the data is flushed
    to disk before the rename.
    """
    target = Path(path)
    tmp, lock = _create_temp(target)
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        if lock is not None:
            os.close(lock)


def atomic_write_bytes(path: PathLike, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
    with atomic_path(path, fsync=False) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())


# --------------------------------------------------------------------------- frames and pages

READ_ONLY_EXTENSIONS: frozenset[str] = frozenset({".gif"})
"""Suffixes ``read_image`` decodes (still images only) but ``write_image`` cannot write.

Only GIF: it is always 8-bit, so nothing is lost. Pillow could also open AVIF or JPEG 2000,
but it reduces their deep-colour samples to 8 bits without a word, so they are not listed.
"""

# NewSubfileType (TIFF tag 254) bits of subfiles that are not pages of their own.
_REDUCED_RESOLUTION, _TRANSPARENCY_MASK = 1, 4


def _tiff_pages(im: Image.Image) -> int:
    """Pages of a TIFF, not counting reduced-resolution copies (overviews, thumbnails) and
    transparency masks."""
    pages = 0
    for i in range(im.n_frames):
        im.seek(i)
        if not int(im.tag_v2.get(254, 0)) & (_REDUCED_RESOLUTION | _TRANSPARENCY_MASK):
            pages += 1
    return max(pages, 1)


# Pillow's parsers, used directly: ``Image.open`` would refuse huge images although only
# their headers are read here.
_FRAME_PARSERS = {"GIF": GifImagePlugin.GifImageFile, "PNG": PngImagePlugin.PngImageFile,
                  "TIFF": TiffImagePlugin.TiffImageFile, "WebP": WebPImagePlugin.WebPImageFile}


def dropped_frames_reason(path: PathLike) -> str | None:
    """Why ``read_image`` would return only the first of several frames or pages of ``path``
    (animated GIF/PNG/WebP, multi-page TIFF), as one line; None for single images.

    Reads headers only. A file these parsers cannot read gives None: the decoder then
    reports what is wrong.
    """
    try:
        with open(path, "rb") as f:
            fmt = _sniff(f.read(16))
            if fmt not in _FRAME_PARSERS:
                return None
            f.seek(0)
            im = _FRAME_PARSERS[fmt](f)
            frames = _tiff_pages(im) if fmt == "TIFF" else int(getattr(im, "n_frames", 1))
    except Exception:  # noqa: BLE001 - unparsable header: leave the verdict to the decoder
        return None
    if frames < 2:
        return None
    if fmt == "TIFF":
        return (f"multi-page TIFF ({frames} pages): not supported, only the first page would "
                f"be translated; split it into single-page files")
    return f"animated {fmt}: not supported ({frames} frames; only still images are translated)"
