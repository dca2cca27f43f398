"""Start-up check of training images: format and size from the headers, no pixel decoding.

A run reads every file many times; one that cannot be used should stop it before the first
step, not hours in. :func:`image_size` opens a file with Pillow's lazy reader (headers only)
and looks at its last bytes for the end marker of PNG and JPEG data (the usual damage: an
interrupted download or copy). Whatever looks unusual there -- a format or mode Pillow's
header does not settle, a missing end marker -- is decided by a full ``read_image``, so the
check never refuses a file the decoder reads and its reasons are the decoder's own.
Scrambled compressed data is not detected; the datasets skip such files when they are drawn
(:mod:`img2img.data.fallback`).

:func:`check_images` runs this over every file a dataset reads and adds the dataset's own
size rules (:class:`InputGeometry`: what the generator needs when images are not resized).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from img2img.data.io import ImageReadError, check_pixel_limit, read_image
from img2img.errors import UsageError

Size = tuple[int, int]  # (height, width), as read_image's array shape
Problem = tuple[Path, str]

_HEAD, _TAIL = 1 << 16, 4096  # bytes read for the JPEG marker walk / the end marker
_FAST_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "BMP", "TIFF"})
_SWAPS = frozenset({5, 6, 7, 8})  # EXIF orientations that exchange width and height


@dataclass(frozen=True)
class InputGeometry:
    """What the networks need from an image that is not resized (``--preprocess none``).

    ``multiple``: height and width are cropped down to multiples of it; ``min_size``: the
    smallest height/width the network accepts; ``uniform``: when not empty, why all images
    of a folder must have one size (e.g. ``"--batch-size 4"``).
    """

    multiple: int = 4
    min_size: int = 8
    uniform: str = ""

    @property
    def smallest(self) -> int:
        """The smallest side, after cropping to ``multiple``, that the network accepts."""
        m = max(1, self.multiple)
        return -(-max(self.min_size, m) // m) * m

    def cropped(self, size: Size) -> Size:
        """``size`` cropped down to multiples of ``multiple``."""
        m = max(1, self.multiple)
        return size[0] - size[0] % m, size[1] - size[1] % m

    def problem(self, size: Size) -> str | None:
        """Why an image of ``size`` cannot be used unresized, or None."""
        h, w = size
        s = self.smallest
        if min(self.cropped(size)) < s:
            return (f"{w}x{h} is smaller than the network's minimum input {s}x{s} "
                    f"(--preprocess none does not resize)")
        return None


class CheckedDataset(Protocol):
    """What :func:`check_images` needs from a dataset."""

    def image_files(self) -> list[Path]: ...

    def size_problems(self, sizes: Mapping[Path, Size],
                      geometry: InputGeometry) -> list[Problem]: ...


def fmt_size(size: Size) -> str:
    """``WxH`` for a (height, width) pair."""
    return f"{size[1]}x{size[0]}"


def _jpeg_scan_start(head: bytes) -> int | None:
    """Offset of the first start-of-scan marker, walking the header segments; None if the
    header is longer than ``head`` or unusual."""
    pos, n = 2, len(head)
    while pos + 4 <= n:
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:
            pos += 1
        elif marker == 0xDA:
            return pos
        elif marker == 0x01 or 0xD0 <= marker <= 0xD9:
            pos += 2
        else:
            pos += 2 + int.from_bytes(head[pos + 2 : pos + 4], "big")
    return None


def _ends_complete(f, fmt: str, size: int) -> bool:  # noqa: ANN001 - a binary file
    """True if the file is as long as its format says: PNG and JPEG end markers in the last
    bytes, a WebP's RIFF length."""
    if fmt == "WEBP":
        f.seek(4)
        return int.from_bytes(f.read(4), "little") + 8 <= size
    if fmt not in ("PNG", "JPEG", "MPO"):
        return True
    start = max(0, size - _TAIL)
    f.seek(start)
    tail = f.read()
    if fmt == "PNG":
        return b"IEND" in tail
    f.seek(0)
    sos = _jpeg_scan_start(f.read(_HEAD))
    eoi = tail.rfind(b"\xff\xd9")
    if eoi < 0 or (sos is not None and start + eoi < sos):
        return False
    return tail.find(b"\xff\xda", eoi + 2) < 0


def _unusual_mode(mode: str) -> bool:
    """Modes whose decoded result the header does not settle (32-bit ints, floats)."""
    return mode in ("I", "F") or mode.startswith("F") or (
        mode.startswith("I;") and not mode.startswith("I;16"))


def _tiff_data_end(tags: Mapping[int, object]) -> int:
    """End offset of the last strip or tile a TIFF's first image refers to."""
    end = 0
    for offsets_tag, counts_tag in ((273, 279), (324, 325)):
        offsets, counts = tags.get(offsets_tag, ()), tags.get(counts_tag, ())
        offsets = offsets if isinstance(offsets, tuple) else (offsets,)
        counts = counts if isinstance(counts, tuple) else (counts,)
        for o, c in zip(offsets, counts, strict=False):
            end = max(end, int(o) + int(c))
    return end


def _header_size(path: Path) -> Size | None:
    """(height, width) from the header, or None when only a full decode can tell."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            with Image.open(f) as im:
                fmt, mode, (w, h) = im.format, im.mode, im.size
                if fmt not in _FAST_FORMATS or _unusual_mode(mode):
                    return None
                if fmt == "TIFF":
                    orientation = int(im.tag_v2.get(274, 1))
                    if _tiff_data_end(im.tag_v2) > size:
                        return None
                elif "exif" in im.info:  # PNG: only an eXIf before the pixel data counts
                    orientation = int(im.getexif().get(0x0112, 1))
                else:
                    orientation = 1
            if not _ends_complete(f, fmt, size):
                return None
    except Exception:  # noqa: BLE001 - any doubt goes to the decoder, which names the reason
        return None
    return (w, h) if orientation in _SWAPS else (h, w)


def image_size(path: str | os.PathLike[str]) -> Size:
    """(height, width) that ``read_image(path)`` would return, from the file's header.

    Falls back to a full decode for formats and modes the header does not settle and for
    files without their end marker. Raises ``ImageReadError`` (``"<path>: <reason>"``)
    for a file that cannot be read.
    """
    path = Path(path)
    check_pixel_limit(path)  # a file too large to decode whole is refused before the run
    size = _header_size(path)
    if size is None:
        img = read_image(path)
        size = (img.shape[0], img.shape[1])
    return size


def scan_sizes(paths: Iterable[Path]) -> tuple[dict[Path, Size], list[Problem]]:
    """Sizes of the readable files and ``(path, reason)`` for the others."""
    sizes: dict[Path, Size] = {}
    bad: list[Problem] = []
    for p in paths:
        try:
            sizes[p] = image_size(p)
        except ImageReadError as exc:
            bad.append((p, exc.reason or "cannot be read"))
    return sizes, bad


def uniform_problems(files: Sequence[Path], sizes: Mapping[Path, Size], folder: str,
                     reason: str) -> list[Problem]:
    """Files whose size differs from the most common one among ``files`` (when ``reason``,
    why one size is needed, is given)."""
    known = [p for p in files if p in sizes]
    if not reason or not known:
        return []
    common, _ = Counter(sizes[p] for p in known).most_common(1)[0]
    return [(p, f"{fmt_size(sizes[p])}, but most images in {folder} are {fmt_size(common)}: "
                f"--preprocess none with {reason} needs images of one size")
            for p in known if sizes[p] != common]


def describe_problems(problems: Sequence[Problem], total: int, limit: int = 20) -> str:
    """One line for one problem; otherwise a summary line and up to ``limit`` file lines."""
    if len(problems) == 1:
        path, reason = problems[0]
        return f"{path}: {reason}"
    lines = [f"{len(problems)} of {total} training images cannot be used "
             f"(fix or remove them and start again):"]
    lines += [f"  {p}: {r}" for p, r in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


def check_images(dataset: CheckedDataset, geometry: InputGeometry) -> int:
    """Check the header of every file ``dataset`` reads and its size rules.

    Returns the number of files checked; raises ``UsageError`` listing the files that
    cannot be used.
    """
    files = dataset.image_files()
    sizes, problems = scan_sizes(files)
    problems += dataset.size_problems(sizes, geometry)
    if problems:
        raise UsageError(describe_problems(problems, len(files)))
    return len(files)
