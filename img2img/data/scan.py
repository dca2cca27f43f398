"""Finding image files: folder listing and file/folder/glob input specs."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .io import IMAGE_EXTENSIONS

__all__ = ["expand_inputs", "is_image_path", "list_images"]

_MAGIC = re.compile(r"[*?[]")


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True if the file name has an image suffix (case-insensitive)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def _walk(root: Path, recursive: bool) -> list[str]:
    """Relative POSIX paths of non-hidden regular files below ``root`` (symlinks followed once)."""
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
                except OSError:  # broken link or vanished entry
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

    parts = path.parts
    first_magic = next(i for i, p in enumerate(parts) if _MAGIC.search(p))
    base = Path(*parts[:first_magic]) if first_magic else Path(".")
    segments = list(parts[first_magic:])
    if not base.is_dir():
        return base, []
    recursive = len(segments) > 1 or "**" in segments
    pattern = _glob_regex(segments)
    rels = sorted(r for r in _walk(base, recursive) if is_image_path(r) and pattern.fullmatch(r))
    return base, [base / r for r in rels]
