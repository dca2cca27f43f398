"""Static HTML pages shared by the run report and the translation gallery.

The pages are plain files meant to be opened from a ``file://`` URL or from a copy of their
folder: every link and image is a relative, percent-encoded URL to a file inside the page's
own folder tree, pages carry their styles inline, and nothing loads from the network.
Pages, thumbnails and charts are written atomically (temp file + ``os.replace``).
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np

from img2img.data.io import atomic_write_bytes, encode_image, read_image
from img2img.data.resize import cv_resize

__all__ = ["GENERATOR", "esc", "is_our_page", "key_value_table", "link", "nav", "thumbnail",
           "write_page"]

GENERATOR = "img2img"
"""Content of the ``<meta name="generator">`` tag that marks a page as written by us."""

_MARKER = f'<meta name="generator" content="{GENERATOR}">'

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin:1.4em 0 .4em;
border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.4em 0}td,th{padding:.2em .6em;text-align:left;
vertical-align:top;border-bottom:1px solid #eee}th{background:#f6f6f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#8a5a00;background:#fff6e0;padding:.4em .7em;border-left:3px solid #e0a800}
.muted{color:#777}.err{color:#a00}
nav a,nav span{margin-right:.6em}
figure{display:inline-block;margin:.3em .6em .6em 0;vertical-align:top}
figcaption{font-size:.9em;color:#555;max-width:40em;word-break:break-all}
img{max-width:100%;height:auto}
.thumb{width:160px;height:160px;object-fit:contain;image-rendering:pixelated}
.pixelated{image-rendering:pixelated}
.chk{background:repeating-conic-gradient(#ddd 0 25%,#fff 0 50%) 0 0/16px 16px}
"""


def esc(value: object) -> str:
    """Text for HTML content or a quoted attribute."""
    return html.escape(str(value), quote=True)


def link(target: str | os.PathLike[str], page_dir: str | os.PathLike[str]) -> str:
    """Relative, percent-encoded URL of ``target`` as seen from a page in ``page_dir``
    (``#``, ``?``, spaces and non-ASCII names stay part of the file name); escape it with
    :func:`esc` before putting it into an attribute."""
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(page_dir))
    return quote(Path(rel).as_posix(), safe="/")


def nav(items: Iterable[tuple[str, str | None]]) -> str:
    """A ``<nav>`` of (label, url) items; an item whose url is None is plain text."""
    parts = [f'<a href="{esc(url)}">{esc(label)}</a>' if url is not None
             else f"<span>{esc(label)}</span>" for label, url in items]
    return "<nav>" + "".join(parts) + "</nav>"


def key_value_table(rows: Iterable[tuple[object, object]]) -> str:
    """A two-column table of escaped keys and values."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def write_page(path: Path, title: str, body: str) -> Path:
    """Write a complete HTML page (``body`` is HTML) atomically; returns ``path``."""
    doc = (f"<!doctype html>\n<html lang=en><head><meta charset=utf-8>{_MARKER}"
           f'<meta name="viewport" content="width=device-width,initial-scale=1">'
           f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n"
           f"</body></html>\n")
    atomic_write_bytes(path, doc.encode("utf-8"))
    return path


def is_our_page(path: Path) -> bool:
    """True if ``path`` is a page :func:`write_page` wrote (its generator tag is there)."""
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return _MARKER.encode() in head


def _preview(img: np.ndarray, size: int) -> np.ndarray:
    """``img`` shrunk to at most ``size`` pixels on its longer side, as 8-bit."""
    h, w = img.shape[:2]
    scale = min(1.0, size / max(h, w))
    small = cv_resize(img, max(1, round(w * scale)), max(1, round(h * scale)))
    if small.dtype == np.uint16:
        small = ((small.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return small


def thumbnail(src: Path, dst_stem: Path, size: int = 256,
              stale_after: Sequence[Path] = ()) -> Path:
    """A small preview of the image ``src`` at ``dst_stem`` + ``.jpg`` (``.png`` when the
    image has alpha, shown over a checkerboard); returns its path. ``src`` is only read.

    An existing preview newer than ``src`` and every path in ``stale_after`` is reused
    without decoding anything. Raises ``ImageIOError`` (from ``read_image``) when ``src``
    cannot be decoded.
    """
    sources = [src, *stale_after]
    newest = max(p.stat().st_mtime_ns for p in sources)
    for ext in (".jpg", ".png"):
        done = dst_stem.with_name(dst_stem.name + ext)
        if done.is_file() and done.stat().st_mtime_ns >= newest:
            return done
    small = _preview(read_image(src), size)
    alpha = small.shape[2] == 4
    dst = dst_stem.with_name(dst_stem.name + (".png" if alpha else ".jpg"))
    atomic_write_bytes(dst, encode_image(small, dst.suffix, quality=85, name=dst))
    other = dst_stem.with_name(dst_stem.name + (".jpg" if alpha else ".png"))
    if other.is_file():
        other.unlink()
    return dst
