"""The translation gallery: ``OUTPUT/index.html`` (``translate --html``).

Every translated file is shown as an input thumbnail beside an output thumbnail, 200 to a
page (``index.html``, ``index_2.html``, ... with previous/next links), and the inputs that
were not translated are listed with their reasons on the first page.

Self-contained by design: both thumbnails are small files in ``OUTPUT/.thumbs/`` (a hidden
folder, which folder scans skip), and every link points inside OUTPUT -- the output
thumbnail links to the full output file. Inputs are only read: an input is not linked
(it may lie anywhere, and a copied output folder would lose it); its path is the
thumbnail's tooltip. So the pages work from ``file://`` and from a copy of OUTPUT.

A rerun rebuilds every page from all outputs present (skipped ones too); thumbnails newer
than their image are reused without decoding it, thumbnails of outputs no longer present
are removed. A page is only ever replaced if it is one we wrote (its generator tag).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from img2img.data.io import ImageIOError
from img2img.data.pages import esc, is_our_page, link, nav, thumbnail, write_page
from img2img.data.paths import outside_reason, remove_stale_temps
from img2img.errors import UsageError

__all__ = ["PER_PAGE", "THUMB_DIR", "check_gallery_target", "page_name", "write_gallery"]

PER_PAGE = 200
THUMB_DIR = ".thumbs"
THUMB_SIZE = 160  # pixels, the longer side; pages show them in a box of that size
_PAGE = re.compile(r"index(?:_(\d+))?\.html")
_THUMB = re.compile(r".*\.(?:in|out)\.(?:jpg|png)")


def page_name(number: int) -> str:
    """File name of gallery page ``number`` (1-based): index.html, index_2.html, ..."""
    return "index.html" if number == 1 else f"index_{number}.html"


def check_gallery_target(output: str | Path) -> None:
    """UsageError if ``OUTPUT/index.html`` exists and is not a page we wrote (it would be
    replaced); called before any work."""
    page = Path(output) / page_name(1)
    if page.exists() and not is_our_page(page):
        raise UsageError(f"--html: {page} exists and was not written by img2img; move it away "
                         f"or choose another --output")


def _thumb(src: Path, stem: Path, out: Path) -> tuple[Path | None, str | None]:
    reason = outside_reason(stem, out)
    if reason is not None:
        return None, reason
    try:
        return thumbnail(src, stem, THUMB_SIZE), None
    except ImageIOError as exc:
        return None, exc.reason or str(exc)
    except OSError as exc:
        return None, exc.strerror or str(exc)


def _cell(thumb: Path | None, reason: str | None, out: Path, title: str,
          target: Path | None) -> str:
    if thumb is None:
        return f'<td class="err">no preview: {esc(reason)}</td>'
    kind = "thumb chk" if thumb.suffix == ".png" else "thumb"  # PNG: it has alpha
    img = (f'<img class="{kind}" src="{esc(link(thumb, out))}" alt="{esc(title)}" '
           f'title="{esc(title)}">')
    if target is not None:
        img = f'<a href="{esc(link(target, out))}">{img}</a>'
    return f"<td>{img}</td>"


def _prune(thumbs: Path, keep: set[Path]) -> None:
    """Remove our thumbnails (``*.in.jpg`` ...) that no output needs any more."""
    if not thumbs.is_dir() or outside_reason(thumbs, thumbs.parent) is not None:
        return
    remove_stale_temps(thumbs)
    for p in thumbs.rglob("*"):
        if p.is_file() and not p.is_symlink() and _THUMB.fullmatch(p.name) and p not in keep:
            p.unlink()


def _pager(number: int, count: int) -> str:
    if count == 1:
        return ""
    items: list[tuple[str, str | None]] = [
        ("\u2190 previous", page_name(number - 1) if number > 1 else None)]
    items += [(str(i), None if i == number else page_name(i)) for i in range(1, count + 1)]
    items.append(("next \u2192", page_name(number + 1) if number < count else None))
    return nav(items)


def _remove_extra_pages(out: Path, count: int) -> None:
    for p in out.glob("index_*.html"):
        m = _PAGE.fullmatch(p.name)
        if m and m.group(1) and int(m.group(1)) > count and not p.is_symlink() \
                and is_our_page(p):
            p.unlink()


def write_gallery(output: str | Path, pairs: Sequence[tuple[Path, Path]],
                  failed: Sequence[tuple[Path, str]] = (), metrics: Sequence[str] = (),
                  per_page: int = PER_PAGE, workers: int = 2) -> list[Path]:
    """Write the gallery pages of ``output`` and return them (first page first).

    ``pairs``: (input, output file) of every translation present, in display order;
    ``failed``: (input, reason) of the inputs not translated; ``metrics``: lines shown at
    the top of every page (the hook for ``--fid-ref``: FID/KID of the outputs against a
    reference folder). An image that cannot be previewed shows the reason in its cell.
    """
    out = Path(output).resolve()
    thumbs = out / THUMB_DIR

    def both(pair: tuple[Path, Path]) -> tuple[tuple[Path | None, str | None], ...]:
        src, dst = pair
        stem = thumbs / dst.relative_to(out)
        return (_thumb(src, stem.with_name(stem.name + ".in"), out),
                _thumb(dst, stem.with_name(stem.name + ".out"), out))

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="thumb") as pool:
        previews = list(pool.map(both, pairs))
    _prune(thumbs, {t for pv in previews for t, _ in pv if t is not None})
    count = max(1, -(-len(pairs) // per_page))
    header = [f"{len(pairs)} translated image(s), {len(failed)} input(s) not translated"]
    pages = []
    for number in range(1, count + 1):
        lo, hi = (number - 1) * per_page, min(len(pairs), number * per_page)
        rows = []
        for (src, dst), ((ti, ri), (to, ro)) in zip(pairs[lo:hi], previews[lo:hi], strict=True):
            rel = dst.relative_to(out).as_posix()
            rows.append("<tr>" + _cell(ti, ri, out, f"input: {src}", None)
                        + _cell(to, ro, out, f"output: {rel}", dst)
                        + f'<td><a href="{esc(link(dst, out))}">{esc(rel)}</a>'
                        f'<br><span class=muted>{esc(src)}</span></td></tr>')
        shown = f"; this page: {lo + 1}\u2013{hi}" if pairs else ""
        parts = [f"<h1>Translations in {esc(out.name)}</h1>",
                 f"<p>{esc(header[0] + shown)}"
                 + (f' (<a href="{page_name(1)}#failures">the failures</a>)'
                    if failed and number > 1 else "") + "</p>"]
        parts += [f"<p><b>{esc(line)}</b></p>" for line in metrics]
        pager = _pager(number, count)
        parts.append(pager)
        if rows:
            parts.append("<table><tr><th>input</th><th>output</th><th>file</th></tr>"
                         + "".join(rows) + "</table>")
        else:
            parts.append("<p class=muted>No translated images.</p>")
        parts.append(pager)
        if number == 1 and failed:
            items = "".join(f"<li><b>{esc(src)}</b>: {esc(reason)}</li>"
                            for src, reason in failed)
            parts.append(f'<h2 id="failures">Not translated ({len(failed)})</h2><ul>{items}</ul>')
        title = f"img2img translations: {out.name}" + (f" (page {number})" if number > 1 else "")
        pages.append(write_page(out / page_name(number), title, "\n".join(parts)))
    _remove_extra_pages(out, count)
    return pages
