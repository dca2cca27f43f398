"""Finding image and video files: folder listing and file/folder/glob input specs."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .io import IMAGE_EXTENSIONS, READ_ONLY_EXTENSIONS
from .video_probe import VIDEO_EXTENSIONS

__all__ = ["InputScan", "expand_inputs", "is_image_path", "list_images", "scan_inputs"]

_MAGIC = re.compile(r"[*?[]")

TRANSLATABLE_EXTENSIONS: frozenset[str] = IMAGE_EXTENSIONS | READ_ONLY_EXTENSIONS | VIDEO_EXTENSIONS
"""Suffixes a translation run reads (the writable ones, still GIFs, which need --ext, and
videos)."""

OTHER_IMAGE_EXTENSIONS: frozenset[str] = frozenset({
    ".apng", ".arw", ".avif", ".bmp", ".cr2", ".dng", ".exr", ".gif", ".hdr", ".heic", ".heif",
    ".ico", ".j2k", ".jfif", ".jp2", ".jpeg", ".jpg", ".jpx", ".jxl", ".nef", ".pbm", ".pgm",
    ".png", ".pnm", ".ppm", ".psd", ".svg", ".tga", ".tif", ".tiff", ".webp",
}) - TRANSLATABLE_EXTENSIONS
"""Image-like suffixes the toolkit does not read: reported by :func:`scan_inputs`."""


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True if the file name has an image suffix (case-insensitive)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def _walk(root: Path, recursive: bool, broken: list[str] | None = None) -> list[str]:
    """Relative POSIX paths of non-hidden regular files below ``root`` (symlinks followed once).

    Links whose target is missing (or a link loop) are appended to ``broken`` if given.
    """
    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        st = os.stat(folder)
        key = (st.st_dev, st.st_ino)
        if key in seen:  # symlink loop or a folder reached twice through links
            continue
        seen.add(key)
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                rel = prefix + entry.name
                try:
                    if entry.is_dir():
                        if recursive:
                            stack.append((Path(entry.path), rel + "/"))
                    elif entry.is_file():
                        found.append(rel)
                    elif broken is not None and entry.is_symlink():
                        broken.append(rel)  # target missing
                except OSError:  # link loop, unreadable or vanished entry
                    if broken is not None and entry.is_symlink():
                        broken.append(rel)
                    continue
    return found


def list_images(root: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Image files under ``root``, sorted by relative path string.

    Only suffixes in IMAGE_EXTENSIONS count (case-insensitive); hidden files and folders (name
    starting with '.') are skipped; symlinked folders are followed, but each real folder is
    visited once, so link loops terminate. A missing folder raises FileNotFoundError.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    rels = sorted(r for r in _walk(root, recursive) if is_image_path(r))
    return [root / r for r in rels]


def _segment_regex(segment: str) -> str:
    """Regex for one glob path segment: ``*``, ``?`` and ``[...]`` never match '/'."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        ch = segment[i]
        i += 1
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = segment.find("]", i + 1 if segment[i : i + 1] in ("!", "]") else i)
            if end < 0:
                out.append(re.escape(ch))
                continue
            body = segment[i:end]
            i = end + 1
            negate = body.startswith("!")
            body = body[1:] if negate else body
            body = body.replace("\\", "\\\\").replace("^", "\\^")
            out.append(f"[{'^/' if negate else ''}{body}]")
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _glob_regex(segments: list[str]) -> re.Pattern[str]:
    """Compile glob segments (relative to the base folder) into a full-match regex.

    ``**`` matches zero or more folders; as the last segment it matches every file below.
    """
    parts: list[str] = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == "**":
            parts.append(".+" if last else "(?:[^/]+/)*")
        else:
            parts.append(_segment_regex(seg) + ("" if last else "/"))
    return re.compile("".join(parts))


def _glob_parts(spec: str) -> tuple[Path, re.Pattern[str], bool]:
    """(base folder, full-match regex of paths relative to it, recursive) of a glob spec."""
    parts = Path(os.path.expanduser(spec)).parts
    first_magic = next(i for i, p in enumerate(parts) if _MAGIC.search(p))
    base = Path(*parts[:first_magic]) if first_magic else Path(".")
    segments = list(parts[first_magic:])
    return base, _glob_regex(segments), len(segments) > 1 or "**" in segments


def expand_inputs(spec: str) -> tuple[Path | None, list[Path]]:
    """Resolve an input spec into (base folder, sorted files).

    * an existing file: (its parent, [file]) whatever its suffix;
    * a folder: (folder, list_images(folder)) -- recursive;
    * a glob (``*``, ``?``, ``[...]``, recursive ``**``): (longest non-magic leading folder,
      matching non-hidden files with image suffixes, sorted by path relative to the base).
      Matching is case-sensitive like the shell's; symlinked folders are followed once.

    Output paths for the inputs are meant to be computed relative to the base. Nothing
    matched gives an empty list (the caller reports it); a missing plain path gives (None, []).
    """
    path = Path(os.path.expanduser(spec))
    if path.is_file():
        return path.parent, [path]
    if path.is_dir():
        return path, list_images(path)
    if not _MAGIC.search(spec):
        return None, []

    base, pattern, recursive = _glob_parts(spec)
    if not base.is_dir():
        return base, []
    rels = sorted(r for r in _walk(base, recursive) if is_image_path(r) and pattern.fullmatch(r))
    return base, [base / r for r in rels]


@dataclass(frozen=True)
class InputScan:
    """The files of a translation input spec, and the ones it leaves out with the reason."""

    base: Path | None
    files: list[Path]
    rejected: list[tuple[Path, str]]


_READS = ", ".join(sorted(TRANSLATABLE_EXTENSIONS))


def _rejection(path: Path, broken: bool) -> str:
    if broken:
        try:
            return f"broken symbolic link (its target {os.readlink(path)} does not exist)"
        except OSError:
            return "broken symbolic link"
    suffix = path.suffix.lower()
    if suffix in OTHER_IMAGE_EXTENSIONS:
        return f"unsupported image format {suffix} (the toolkit reads {_READS})"
    return f"not an image file name ({suffix or 'no suffix'}; the toolkit reads {_READS})"


def scan_inputs(spec: str) -> InputScan:
    """Like :func:`expand_inputs` for a translation run, with GIFs and what is left out.

    ``files`` hold the suffixes of ``TRANSLATABLE_EXTENSIONS``. ``rejected`` are (path,
    reason), sorted: for a folder, files with an image-like suffix the toolkit does not read
    (``OTHER_IMAGE_EXTENSIONS``) and broken links with an image-like suffix; for a glob,
    every non-hidden match that is not in ``files``; a spec that is itself a broken link.
    """
    path = Path(os.path.expanduser(spec))
    if path.is_file():
        return InputScan(path.parent, [path], [])
    broken: list[str] = []
    if path.is_dir():
        base, rels = path, _walk(path, True, broken)
        image_like = TRANSLATABLE_EXTENSIONS | OTHER_IMAGE_EXTENSIONS
        keep = [r for r in rels if os.path.splitext(r)[1].lower() in image_like]
        broken = [r for r in broken if os.path.splitext(r)[1].lower() in image_like]
    elif _MAGIC.search(spec):
        base, pattern, recursive = _glob_parts(spec)
        if not base.is_dir():
            return InputScan(base, [], [])
        keep = [r for r in _walk(base, recursive, broken) if pattern.fullmatch(r)]
        broken = [r for r in broken if pattern.fullmatch(r)]
    elif path.is_symlink():
        return InputScan(path.parent, [], [(path, _rejection(path, True))])
    else:
        return InputScan(None, [], [])
    files, rejected = [], [(base / r, _rejection(base / r, True)) for r in broken]
    for r in sorted(keep):
        if os.path.splitext(r)[1].lower() in TRANSLATABLE_EXTENSIONS:
            files.append(base / r)
        else:
            rejected.append((base / r, _rejection(base / r, False)))
    return InputScan(base, files, sorted(rejected, key=lambda x: str(x[0])))
