"""Streamed download of one file: checked, hashed while it arrives, written atomically.

``fetch(url, dst)`` streams ``url`` into ``dst.part`` next to ``dst`` while computing its
SHA-256, checks the byte count against Content-Length and against a known size / SHA-256
when given, and only then renames it to ``dst``. An https URL redirected to plain http is
refused. Any failure -- offline, host not found, HTTP error, timeout, truncated body, disk
full, mismatch -- raises :class:`DownloadError` with a one-line message naming the URL and
leaves no file behind. Used by the dataset downloader and by ``img2img models fetch``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tqdm import tqdm

__all__ = ["ByteBar", "ByteProgress", "DownloadError", "fetch"]

ByteProgress = Callable[[int, int | None], None]
"""Called with (bytes received since the last call, total size or None if unknown)."""


class DownloadError(Exception):
    """A download or its check failed (exit code 1); the message is one line."""


class ByteBar:
    """A :data:`ByteProgress` that shows a tqdm bar in bytes, opened once the size is known
    and closed as soon as all of it has arrived (so later output starts on its own line)."""

    def __init__(self, quiet: bool = False, desc: str | None = None) -> None:
        self.quiet, self.desc = quiet, desc
        self.bar: tqdm | None = None

    def __call__(self, n: int, total: int | None) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total, disable=self.quiet, unit="B", unit_scale=True,
                            unit_divisor=1024, dynamic_ncols=True, desc=self.desc)
        self.bar.update(n)
        if total is not None and self.bar.n >= total:
            self.bar.close()

    def close(self) -> None:
        """Close the bar (if one was opened)."""
        if self.bar is not None:
            self.bar.close()


def fetch(url: str, dst: str | os.PathLike[str], progress: ByteProgress | None = None,
          timeout: float = 60.0, size: int | None = None,
          sha256: str | None = None) -> tuple[int, str]:
    """Download ``url`` to ``dst`` and return ``(bytes, sha256 hex)`` of what was received.

    ``size``/``sha256`` (lower-case hex) are checked when given; a mismatch, like any other
    failure, raises :class:`DownloadError` and removes the partial file (``dst`` is then
    untouched: an existing file stays as it was).
    """
    dst = Path(dst)
    part = dst.with_name(dst.name + ".part")
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as f:
            final = resp.geturl() or url
            if url.lower().startswith("https:") and not final.lower().startswith("https:"):
                raise DownloadError(f"cannot download {url}: redirected to {final}, which is "
                                    "not https")
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if size is not None and total is not None and total != size:
                raise DownloadError(f"cannot download {url}: the server offers {total} bytes, "
                                    f"expected {size}")
            if progress:
                progress(0, total)
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if progress:
                    progress(len(chunk), total)
        if total is not None and received != total:
            raise DownloadError(f"cannot download {url}: incomplete, got {received} of "
                                f"{total} bytes")
        if size is not None and received != size:
            raise DownloadError(f"{url}: size mismatch: got {received} bytes, expected {size} "
                                "(download removed)")
        got = digest.hexdigest()
        if sha256 and got != sha256:
            raise DownloadError(f"{url}: sha256 mismatch: got {got}, expected {sha256} "
                                "(download removed)")
        os.replace(part, dst)
        return received, got
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, socket.gaierror):
            reason = f"host not found ({reason.strerror}); offline?"
        elif isinstance(reason, OSError) and reason.strerror:
            reason = reason.strerror
        raise DownloadError(f"cannot download {url}: {reason}") from None
    except TimeoutError:
        raise DownloadError(f"cannot download {url}: timed out after {timeout:g} s") from None
    except (OSError, ValueError) as exc:  # disk full, connection reset, bad URL, ...
        raise DownloadError(f"cannot download {url}: {exc}") from None
    finally:
        with suppress(OSError):
            part.unlink()  # gone already after a successful os.replace


@contextmanager
def work_folder(out: Path, name: str, suffix: str) -> Iterator[Path]:
    """A temp folder ``out/.NAME.*SUFFIX`` (``out`` created with its parents) for a download in
    progress. It is removed afterwards, and so is ``out`` when this created it and the body
    failed, so a failed download leaves no trace. DownloadError when ``out`` cannot be made."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=suffix, dir=out))
    except OSError as exc:
        raise DownloadError(f"cannot create {out}: {exc.strerror or exc}") from None
    ok = False
    try:
        yield work
        ok = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if created and not ok:
            with suppress(OSError):
                out.rmdir()  # only if still empty
