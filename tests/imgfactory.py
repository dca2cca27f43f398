"""Test helpers that write image files of every kind (good and broken) into a folder.

Files are written with Pillow, OpenCV or raw bytes -- never with ``img2img.data.io`` -- so
tests of the reader do not depend on the writer. Every writer returns a ``Sample`` saying
what ``read_image`` should produce (or which error reason it should report).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "Sample",
    "make_messy_tree",
    "photo_like",
    "write_animated",
    "write_bmp",
    "write_cmyk_jpeg",
    "write_cmyk_tiff",
    "write_corrupt_png",
    "write_empty",
    "write_exif_jpeg",
    "write_exif_png",
    "write_float_tiff",
    "write_gray16_png",
    "write_gray16_tiff",
    "write_gray_png",
    "write_still_gif",
    "write_tiff_pages",
    "write_jpeg",
    "write_la_png",
    "write_la_tiff",
    "write_palette_png",
    "write_png",
    "write_rgb16_png",
    "write_rgb16_tiff",
    "write_rgba_png",
    "write_rgba_tiff",
    "write_text_file",
    "write_truncated_jpeg",
    "write_truncated_png",
    "write_webp_lossless",
]

RED = (255, 0, 0)


@dataclass(frozen=True)
class Sample:
    """A written test file and what reading it should give."""

    path: Path
    kind: str
    ok: bool  # read_image should succeed
    shape: tuple[int, int, int] | None = None  # expected (H, W, C)
    dtype: type | None = None  # np.uint8 / np.uint16
    expected: np.ndarray | None = None  # expected pixels (HxWxC)
    lossy: bool = False  # compare `expected` approximately (mean abs error)
    reason: str = ""  # substring of the ImageReadError reason (bad files)
    listed: bool = True  # list_images should return it


# --------------------------------------------------------------------------- pixel data


def _smooth(h: int, w: int, seed: int, channels: int) -> np.ndarray:
    """Float image in [0, 1]: gradients plus a few soft blobs (JPEG-friendly, seeded)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy /= max(h - 1, 1)
    xx /= max(w - 1, 1)
    out = np.empty((h, w, channels))
    for c in range(channels):
        a, b = rng.uniform(-1, 1, 2)
        base = 0.5 + 0.25 * (a * xx + b * yy)
        for _ in range(3):
            cy, cx = rng.uniform(0, 1, 2)
            amp = rng.uniform(-0.25, 0.25)
            base += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.05)
        out[..., c] = base
    return np.clip(out, 0.0, 1.0)


def photo_like(
    h: int, w: int, seed: int = 0, channels: int = 3, dtype: type = np.uint8
) -> np.ndarray:
    """Smooth "photo-like" HxWxC image of ``dtype`` (uint8 or uint16), deterministic per seed."""
    peak = 65535 if dtype == np.uint16 else 255
    return np.round(_smooth(h, w, seed, channels) * peak).astype(dtype)


def _save_pil(im: Image.Image, path: Path, fmt: str, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt, **kwargs)
    return path


def _save_cv2(arr_rgb: np.ndarray, path: Path) -> Path:
    """Write with OpenCV (needed for 16-bit colour, which Pillow cannot write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = arr_rgb
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., [2, 1, 0, 3]]
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(arr))
    assert ok, path
    path.write_bytes(buf.tobytes())
    return path


def _sample(path: Path, kind: str, expected: np.ndarray, lossy: bool = False) -> Sample:
    if expected.ndim == 2:
        expected = expected[:, :, None]
    return Sample(path, kind, True, expected.shape, expected.dtype.type, expected, lossy=lossy)


# --------------------------------------------------------------------------- good files


def write_jpeg(folder: Path, name: str = "photo.jpg", size=(37, 53), seed: int = 0) -> Sample:
    """Baseline RGB JPEG (quality 95) of a photo-like image."""
    arr = photo_like(*size, seed=seed)
    path = _save_pil(Image.fromarray(arr), Path(folder) / name, "JPEG", quality=95)
    return _sample(path, "rgb_jpeg", arr, lossy=True)


def write_png(folder: Path, name: str = "rgb.png", size=(37, 53), seed: int = 1) -> Sample:
    """8-bit RGB PNG."""
    arr = photo_like(*size, seed=seed)
    return _sample(_save_pil(Image.fromarray(arr), Path(folder) / name, "PNG"), "rgb_png", arr)


def write_rgba_png(folder: Path, name: str = "rgba.png", size=(37, 53), seed: int = 2) -> Sample:
    """8-bit RGBA PNG with a varying alpha."""
    arr = photo_like(*size, seed=seed, channels=4)
    path = _save_pil(Image.fromarray(arr), Path(folder) / name, "PNG")
    return _sample(path, "rgba_png", arr)


def write_gray_png(folder: Path, name: str = "gray.png", size=(37, 53), seed: int = 3) -> Sample:
    """8-bit grayscale PNG (reads as HxWx1)."""
    arr = photo_like(*size, seed=seed, channels=1)[..., 0]
    path = _save_pil(Image.fromarray(arr), Path(folder) / name, "PNG")
    return _sample(path, "gray_png", arr)


def write_la_png(folder: Path, name: str = "la.png", size=(37, 53), seed: int = 4) -> Sample:
    """Gray+alpha PNG; reads as RGBA with the gray replicated."""
    ga = photo_like(*size, seed=seed, channels=2)
    path = _save_pil(Image.fromarray(ga), Path(folder) / name, "PNG")
    return _sample(path, "la_png", ga[..., [0, 0, 0, 1]])


def write_la_tiff(folder: Path, name: str = "la.tif", size=(37, 53), seed: int = 4) -> Sample:
    """Gray+alpha TIFF (Pillow); reads as RGBA with the gray replicated."""
    ga = photo_like(*size, seed=seed, channels=2)
    path = _save_pil(Image.fromarray(ga), Path(folder) / name, "TIFF")
    return _sample(path, "la_tiff", ga[..., [0, 0, 0, 1]])


def write_rgb16_png(folder: Path, name: str = "rgb16.png", size=(37, 53), seed=5) -> Sample:
    """16-bit RGB PNG (written by OpenCV)."""
    arr = photo_like(*size, seed=seed, dtype=np.uint16)
    return _sample(_save_cv2(arr, Path(folder) / name), "rgb16_png", arr)


def write_rgb16_tiff(folder: Path, name: str = "rgb16.tif", size=(37, 53), seed=6) -> Sample:
    """16-bit RGB TIFF (written by OpenCV)."""
    arr = photo_like(*size, seed=seed, dtype=np.uint16)
    return _sample(_save_cv2(arr, Path(folder) / name), "rgb16_tiff", arr)


def write_gray16_png(folder: Path, name: str = "gray16.png", size=(37, 53), seed=7) -> Sample:
    """16-bit grayscale PNG (Pillow I;16); reads as HxWx1 uint16."""
    arr = photo_like(*size, seed=seed, channels=1, dtype=np.uint16)[..., 0]
    path = _save_pil(Image.fromarray(arr), Path(folder) / name, "PNG")
    return _sample(path, "gray16_png", arr)


def write_gray16_tiff(folder: Path, name: str = "gray16.tif", size=(37, 53), seed=8) -> Sample:
    """16-bit grayscale TIFF (Pillow I;16); reads as HxWx1 uint16."""
    arr = photo_like(*size, seed=seed, channels=1, dtype=np.uint16)[..., 0]
    path = _save_pil(Image.fromarray(arr), Path(folder) / name, "TIFF")
    return _sample(path, "gray16_tiff", arr)


def write_rgba_tiff(folder: Path, name: str = "rgba.tif", size=(37, 53), seed=9) -> Sample:
    """8-bit RGBA TIFF with unassociated alpha (Pillow), which OpenCV would premultiply."""
    arr = photo_like(*size, seed=seed, channels=4)
    path = _save_pil(Image.fromarray(arr), Path(folder) / name, "TIFF")
    return _sample(path, "rgba_tiff", arr)


_PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (250, 200, 10), (17, 34, 51)]


def write_palette_png(
    folder: Path, name: str = "palette.png", size=(37, 53), transparent: bool = False
) -> Sample:
    """Palette PNG; with ``transparent`` index 0 is fully transparent (reads as RGBA)."""
    h, w = size
    idx = (np.add.outer(np.arange(h), np.arange(w)) % len(_PALETTE)).astype(np.uint8)
    im = Image.new("P", (w, h))
    im.frombytes(idx.tobytes())
    im.putpalette([v for rgb in _PALETTE for v in rgb])
    rgb = np.array(_PALETTE, np.uint8)[idx]
    kwargs = {"transparency": 0} if transparent else {}
    path = _save_pil(im, Path(folder) / name, "PNG", **kwargs)
    if transparent:
        alpha = np.where(idx == 0, 0, 255).astype(np.uint8)
        return _sample(path, "palette_trns_png", np.dstack([rgb, alpha]))
    return _sample(path, "palette_png", rgb)


def write_cmyk_jpeg(folder: Path, name: str = "cmyk.jpg", size=(37, 53), seed=10) -> Sample:
    """CMYK JPEG written by Pillow (Adobe, inverted CMYK); reads as RGB, approximately."""
    arr = photo_like(*size, seed=seed)
    im = Image.fromarray(arr).convert("CMYK")
    path = _save_pil(im, Path(folder) / name, "JPEG", quality=95)
    return _sample(path, "cmyk_jpeg", arr, lossy=True)


def write_cmyk_tiff(folder: Path, name: str = "cmyk.tif", size=(37, 53), seed=11) -> Sample:
    """CMYK TIFF written by Pillow; reads as RGB (Pillow's naive conversion, exact here)."""
    arr = photo_like(*size, seed=seed)
    im = Image.fromarray(arr).convert("CMYK")
    return _sample(_save_pil(im, Path(folder) / name, "TIFF"), "cmyk_tiff", arr)


def _exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _with_marker(h: int, w: int, seed: int) -> np.ndarray:
    arr = photo_like(h, w, seed=seed)
    arr[:8, :8] = RED  # marks the stored top-left corner
    return arr


def write_exif_jpeg(
    folder: Path, name: str = "exif6.jpg", size=(30, 50), orientation: int = 6, seed=12
) -> Sample:
    """JPEG stored HxW with an EXIF orientation tag and a red 8x8 marker at stored top-left.

    For orientation 6 (rotate 90 degrees clockwise to display) the image reads as WxH with the
    marker at the top-right corner.
    """
    arr = _with_marker(*size, seed=seed)
    path = _save_pil(
        Image.fromarray(arr), Path(folder) / name, "JPEG", quality=95, exif=_exif_bytes(orientation)
    )
    expected = _orient_reference(arr, orientation)
    return _sample(path, f"exif{orientation}_jpeg", expected, lossy=True)


def write_exif_png(
    folder: Path, name: str = "exif.png", size=(30, 50), orientation: int = 6, seed=13
) -> Sample:
    """Lossless PNG with an EXIF orientation tag (eXIf chunk) and a red marker."""
    arr = _with_marker(*size, seed=seed)
    path = _save_pil(
        Image.fromarray(arr), Path(folder) / name, "PNG", exif=_exif_bytes(orientation)
    )
    return _sample(path, f"exif{orientation}_png", _orient_reference(arr, orientation))


def _orient_reference(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Upright pixels per Pillow's exif_transpose (an independent reference)."""
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    im = Image.fromarray(arr)
    return np.asarray(im.transpose(method) if method is not None else im)


def write_webp_lossless(folder: Path, name: str = "photo.webp", size=(37, 53), seed=14) -> Sample:
    """Lossless RGB WebP."""
    arr = photo_like(*size, seed=seed)
    path = _save_pil(Image.fromarray(arr), Path(folder) / name, "WEBP", lossless=True)
    return _sample(path, "rgb_webp", arr)


def write_bmp(folder: Path, name: str = "photo.bmp", size=(37, 53), seed=15) -> Sample:
    """24-bit RGB BMP."""
    arr = photo_like(*size, seed=seed)
    return _sample(_save_pil(Image.fromarray(arr), Path(folder) / name, "BMP"), "rgb_bmp", arr)


def write_still_gif(folder: Path, name: str = "still.gif", size=(12, 10)) -> Sample:
    """A one-frame palette GIF (reads as RGB)."""
    h, w = size
    idx = (np.add.outer(np.arange(h), np.arange(w)) % len(_PALETTE)).astype(np.uint8)
    im = Image.new("P", (w, h))
    im.frombytes(idx.tobytes())
    im.putpalette([v for rgb in _PALETTE for v in rgb])
    path = _save_pil(im, Path(folder) / name, "GIF")
    return _sample(path, "still_gif", np.array(_PALETTE, np.uint8)[idx])


def write_animated(folder: Path, name: str = "anim.gif", frames: int = 3,
                   size=(12, 10)) -> Sample:
    """An animated GIF, PNG (APNG) or WebP (format from the suffix) with distinct frames;
    ``read_image`` would return only the first frame, so it counts as not readable."""
    images = [Image.fromarray(photo_like(*size, seed=40 + i)) for i in range(frames)]
    fmt = {".gif": "GIF", ".png": "PNG", ".webp": "WEBP"}[Path(name).suffix.lower()]
    path = _save_pil(images[0], Path(folder) / name, fmt, save_all=True,
                     append_images=images[1:], duration=100, loop=0)
    return _bad(path, f"animated_{fmt.lower()}", f"({frames} frames")


def write_tiff_pages(folder: Path, name: str = "pages.tif", subfile_types=(0, 0, 0),
                     size=(12, 10)) -> Sample:
    """An uncompressed RGB TIFF with one IFD per entry of ``subfile_types`` (NewSubfileType:
    0 = a page, 1 = a reduced-resolution copy at half size). Written byte by byte, so the
    IFD chain is exactly as asked. More than one page: a bad sample (pages would be lost)."""
    pages = [photo_like(*(size if t == 0 else (size[0] // 2, size[1] // 2)), seed=50 + i)
             for i, t in enumerate(subfile_types)]
    out = bytearray(b"II*\x00\x00\x00\x00\x00")
    link = 4  # where the offset of the next IFD goes
    for arr, kind in zip(pages, subfile_types, strict=True):
        h, w = arr.shape[:2]
        strip = len(out)
        out += arr.tobytes()
        bits = len(out)
        out += struct.pack("<3H", 8, 8, 8)
        if len(out) % 2:
            out += b"\x00"
        tags = [(254, 4, kind), (256, 4, w), (257, 4, h), (258, 3, bits), (259, 3, 1),
                (262, 3, 2), (273, 4, strip), (277, 3, 3), (278, 4, h), (279, 4, arr.nbytes),
                (284, 3, 1)]
        ifd = len(out)
        out[link : link + 4] = struct.pack("<I", ifd)
        out += struct.pack("<H", len(tags))
        for tag, typ, value in tags:
            count = 3 if tag == 258 else 1
            field = struct.pack("<HI", value, 0)[:4] if typ == 3 and count == 1 else \
                struct.pack("<I", value)
            out += struct.pack("<HHI", tag, typ, count) + field
        link = len(out)
        out += b"\x00\x00\x00\x00"
    path = _write_bytes(Path(folder) / name, bytes(out))
    n = sum(t == 0 for t in subfile_types)
    if n > 1:
        return _bad(path, "multipage_tiff", f"multi-page TIFF ({n} pages)")
    return _sample(path, "tiff_with_overview", pages[0])


# --------------------------------------------------------------------------- bad files


def _write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _bad(path: Path, kind: str, reason: str) -> Sample:
    return Sample(path, kind, False, reason=reason)


def write_truncated_jpeg(
    folder: Path, name: str = "truncated.jpg", keep: float = 0.5, size=(37, 53)
) -> Sample:
    """A JPEG cut to ``keep`` of its bytes (keep=1.0 drops just the final EOI marker)."""
    buf = io.BytesIO()
    Image.fromarray(photo_like(*size, seed=16)).save(buf, "JPEG", quality=95)
    data = buf.getvalue()
    data = data[:-2] if keep >= 1.0 else data[: int(len(data) * keep)]
    return _bad(_write_bytes(Path(folder) / name, data), "truncated_jpeg", "truncated JPEG")


def write_truncated_png(folder: Path, name: str = "truncated.png", size=(37, 53)) -> Sample:
    """A PNG cut in the middle of its image data."""
    buf = io.BytesIO()
    Image.fromarray(photo_like(*size, seed=17)).save(buf, "PNG")
    data = buf.getvalue()
    return _bad(
        _write_bytes(Path(folder) / name, data[: len(data) // 2]), "truncated_png", "truncated PNG"
    )


def write_corrupt_png(folder: Path, name: str = "corrupt.png", size=(37, 53)) -> Sample:
    """A structurally complete PNG whose image data is scrambled."""
    buf = io.BytesIO()
    Image.fromarray(photo_like(*size, seed=18)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    start = data.find(b"IDAT") + 4
    rng = np.random.default_rng(0)
    data[start : start + 200] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    return _bad(_write_bytes(Path(folder) / name, bytes(data)), "corrupt_png", "corrupt")


def write_empty(folder: Path, name: str = "empty.png") -> Sample:
    """A zero-byte file with an image suffix."""
    return _bad(_write_bytes(Path(folder) / name, b""), "empty", "empty file")


def write_text_file(folder: Path, name: str = "notes.jpg") -> Sample:
    """A text file with an image suffix."""
    data = b"this is not an image\nreally not\n"
    return _bad(_write_bytes(Path(folder) / name, data), "text", "not an image")


def write_float_tiff(folder: Path, name: str = "float.tif", size=(37, 53)) -> Sample:
    """A float32 grayscale TIFF (unsupported sample format)."""
    arr = _smooth(*size, seed=19, channels=1)[..., 0].astype(np.float32)
    path = _save_pil(Image.fromarray(arr), Path(folder) / name, "TIFF")
    return _bad(path, "float_tiff", "unsupported sample format float32")


# --------------------------------------------------------------------------- trees


def make_messy_tree(root: Path) -> dict[str, Sample]:
    """Build a nested folder of good, bad, hidden and non-image files with odd sizes.

    Returns {relative POSIX path: Sample}. ``Sample.listed`` says whether ``list_images``
    should return the file (hidden files and non-image suffixes are not listed).
    """
    root = Path(root)
    made: list[Sample] = [
        write_jpeg(root, "a_photo.jpg", size=(37, 53)),
        write_jpeg(root, "B_UPPER.JPG", size=(53, 37), seed=20),
        write_png(root, "rgb.png", size=(1, 1)),
        write_rgba_png(root, "rgba.png", size=(17, 3)),
        write_gray_png(root, "gray.png"),
        write_la_png(root, "la.png"),
        write_palette_png(root / "pal", "palette.png"),
        write_palette_png(root / "pal", "palette_trns.png", transparent=True),
        write_rgb16_png(root / "deep/nested/dir", "rgb16.png", size=(29, 31)),
        write_gray16_png(root / "deep/nested/dir", "gray16.png"),
        write_gray16_tiff(root / "deep/nested", "gray16.tif"),
        write_rgb16_tiff(root / "deep/nested", "rgb16.TIFF"),
        write_rgba_tiff(root / "deep", "rgba.tif"),
        write_la_tiff(root / "deep", "la.tiff"),
        write_cmyk_jpeg(root / "deep", "cmyk.jpeg"),
        write_cmyk_tiff(root / "deep", "cmyk.tif"),
        write_exif_jpeg(root / "exif", "exif6.jpg"),
        write_exif_png(root / "exif", "exif8.png", orientation=8),
        write_webp_lossless(root / "misc", "photo.webp", size=(41, 7)),
        write_bmp(root / "misc", "photo.bmp", size=(5, 9)),
        write_png(root / "ünïcode dir", "фото.png", size=(11, 13)),
        write_truncated_jpeg(root / "bad", "truncated.jpg"),
        write_truncated_jpeg(root / "bad", "no_eoi.jpg", keep=1.0),
        write_truncated_png(root / "bad", "truncated.png"),
        write_corrupt_png(root / "bad", "corrupt.png"),
        write_empty(root / "bad", "empty.png"),
        write_text_file(root / "bad", "text.jpg"),
        write_text_file(root / "bad", "text.png"),
        write_float_tiff(root / "bad", "float.tif"),
    ]
    hidden = [
        write_png(root / ".hidden", "secret.png"),
        write_png(root, ".dotfile.png"),
        write_png(root / "deep/.cache", "thumb.png"),
    ]
    made += [_unlisted(s) for s in hidden]
    notes = _write_bytes(root / "notes.txt", b"not an image suffix\n")
    made.append(Sample(notes, "text_other_suffix", False, reason="not an image", listed=False))
    return {s.path.relative_to(root).as_posix(): s for s in made}


def _unlisted(s: Sample) -> Sample:
    return Sample(
        s.path, s.kind, s.ok, s.shape, s.dtype, s.expected, s.lossy, s.reason, listed=False
    )
