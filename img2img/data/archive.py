"""Unpack a dataset archive (zip or tar) without trusting it.

The archive is unpacked by this module itself, never by ``tarfile.extractall`` (so the safety
does not depend on the interpreter's tarfile filters, absent before Python 3.10.12): only
regular files and folders are accepted -- a symbolic link, hard link, device file or FIFO
refuses the whole archive, as do absolute names and ``..`` components -- every file is opened
with ``O_EXCL | O_NOFOLLOW`` in folders this module created, and every file's folder is
checked again after resolving links. The members go to a temp folder that becomes the target
only when the whole archive was unpacked.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import IO

from img2img.errors import UsageError

__all__ = ["ArchiveError", "extract_archive"]


_ONLY_FILES = "dataset archives hold only files and folders"


class ArchiveError(Exception):
    """The archive is unsafe, damaged or cannot be written out; the message is one line."""


class _Unsafe(Exception):
    """An archive member that must not be extracted (the message says why)."""


class _Damaged(Exception):
    """Reading the archive failed (the message is the reader's reason)."""


class _CannotWrite(Exception):
    """Writing an extracted member failed (disk full, permissions, ...)."""


def _member_parts(name: str) -> tuple[str, ...]:
    """Path components of an archive member name; _Unsafe if absolute or climbing ``..``.

    Backslashes count as separators (zips made on Windows); ``.`` and empty parts are
    dropped, so ``./a//b`` is ``("a", "b")`` and ``./`` is ``()`` (the archive root).
    """
    if not name:
        raise _Unsafe("empty name")
    if "\x00" in name:
        raise _Unsafe("NUL character in the name")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or re.match(r"[A-Za-z]:", unified):
        raise _Unsafe("absolute path")
    parts = tuple(p for p in unified.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _Unsafe("'..' in path")
    return parts


def _tar_kind(m: tarfile.TarInfo) -> str:
    """``"file"`` or ``"dir"``; _Unsafe for links and special files."""
    if m.isreg():
        return "file"
    if m.isdir():
        return "dir"
    if m.issym():
        raise _Unsafe(f"symbolic link to {m.linkname!r} refused ({_ONLY_FILES})")
    if m.islnk():
        raise _Unsafe(f"hard link to {m.linkname!r} refused ({_ONLY_FILES})")
    if m.ischr() or m.isblk():
        raise _Unsafe(f"device file refused ({_ONLY_FILES})")
    if m.isfifo():
        raise _Unsafe(f"FIFO refused ({_ONLY_FILES})")
    raise _Unsafe(f"special member of tar type {m.type!r} refused ({_ONLY_FILES})")


_ZIP_SPECIAL = {stat.S_IFLNK: "symbolic link", stat.S_IFCHR: "device file",
                stat.S_IFBLK: "device file", stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket"}


def _zip_kind(info: zipfile.ZipInfo) -> str:
    """``"file"`` or ``"dir"``; _Unsafe when the Unix mode bits say link or special file."""
    kind = _ZIP_SPECIAL.get(stat.S_IFMT(info.external_attr >> 16))
    if kind:
        raise _Unsafe(f"{kind} refused ({_ONLY_FILES})")
    return "dir" if info.is_dir() else "file"


def _inside(root: str, path: str) -> bool:
    """Whether ``path`` is ``root`` or below it once links are resolved (``root`` is real)."""
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


_O_NEW_FILE = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_BINARY", 0))
_READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError,
                zlib.error, RuntimeError, NotImplementedError)


def _read(src: IO[bytes]) -> bytes:
    try:
        return src.read(1 << 20)
    except _READ_ERRORS as exc:  # bad CRC, truncated stream, encrypted zip member, ...
        raise _Damaged(_first_line(exc)) from None


class _Writer:
    """Creates members under ``root``, a new folder of this module: it holds only the plain
    folders and files written here, so no link can redirect a write. Each file's folder is
    still resolved with ``os.path.realpath`` and must be inside ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self.made: set[tuple[str, ...]] = {()}  # folders created (or checked) so far

    def _folder(self, parts: tuple[str, ...]) -> str:
        """Create the folder ``parts`` (and its parents) as plain folders; its path."""
        for i in range(1, len(parts) + 1):
            sub = parts[:i]
            if sub in self.made:
                continue
            path = os.path.join(self.root, *sub)
            try:
                try:
                    os.mkdir(path)
                except FileExistsError:
                    mode = os.lstat(path).st_mode
                    if stat.S_ISLNK(mode):  # never made here: someone else's link
                        raise _Unsafe("its folder is a symbolic link") from None
                    if not stat.S_ISDIR(mode):
                        raise _Unsafe(f"{'/'.join(sub)!r} is a file in this archive, not a "
                                      "folder") from None
            except OSError as exc:
                raise _CannotWrite(f"{path}: {exc.strerror or exc}") from None
            self.made.add(sub)
        path = os.path.join(self.root, *parts)
        if not _inside(self.root, path):  # second line of defence: resolve what exists
            raise _Unsafe("its folder resolves outside the target folder")
        return path

    def folder(self, parts: tuple[str, ...]) -> None:
        """Create the folder member ``parts``."""
        self._folder(parts)

    def file(self, parts: tuple[str, ...], src: IO[bytes]) -> int:
        """Create the file member ``parts`` from ``src``; the number of bytes written."""
        path = os.path.join(self._folder(parts[:-1]), parts[-1])
        if parts in self.made:
            raise _Unsafe("a folder of the same name is in this archive")
        try:
            with suppress(FileNotFoundError):
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    raise _Unsafe("its name is taken by something that is not a file")
                os.unlink(path)  # a later copy of the same member replaces it, as with tar
            fd = os.open(path, _O_NEW_FILE, 0o666)  # never follows a link or reuses a file
            written = 0
            with os.fdopen(fd, "wb") as out:
                while chunk := _read(src):
                    out.write(chunk)
                    written += len(chunk)
            return written
        except OSError as exc:
            raise _CannotWrite(f"{path}: {exc.strerror or exc}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(":")


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _too_big(archive: Path, total: int, free: int | None, folder: Path) -> ArchiveError:
    return ArchiveError(f"{archive.name} unpacks to at least {total / 1e9:.2f} GB but only "
                         f"{(free or 0) / 1e9:.2f} GB are free in {folder}")


def _tar_members(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Members one at a time (a .tar.gz is decompressed once, not once to list and again)."""
    while True:
        try:
            m = tf.next()
        except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as exc:
            raise _Damaged(_first_line(exc)) from None
        if m is None:
            return
        yield m


def _extract_zip(archive: Path, work: Path) -> None:
    """Check every member of the zip ``archive``, then write them under ``work``."""
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if not infos:
            raise ArchiveError(f"{archive.name}: empty archive")
        plan = []
        for info in infos:
            try:
                plan.append((info, _member_parts(info.filename), _zip_kind(info)))
            except _Unsafe as exc:
                raise ArchiveError(f"unsafe member {info.filename!r} in {archive.name}: "
                                    f"{exc}") from None
        total = sum(info.file_size for info in infos)  # zipfile reads no more than this
        free = _free_bytes(work)
        if free is not None and total > free:
            raise _too_big(archive, total, free, work)
        writer = _Writer(work)
        for info, parts, kind in plan:
            try:
                if kind == "dir" or not parts:
                    writer.folder(parts)
                else:
                    with zf.open(info) as src:
                        writer.file(parts, src)
            except _Unsafe as exc:
                raise ArchiveError(f"unsafe member {info.filename!r} in {archive.name}: "
                                    f"{exc}") from None
            except _Damaged as exc:
                raise _Damaged(f"member {info.filename!r}: {exc}") from None


def _extract_tar(archive: Path, work: Path) -> None:
    """Check and write the members of the tar ``archive`` under ``work``, one pass."""
    with tarfile.open(archive) as tf:
        writer = _Writer(work)
        free = _free_bytes(work)
        total = 0
        count = 0
        for m in _tar_members(tf):
            count += 1
            try:
                parts, kind = _member_parts(m.name), _tar_kind(m)
                if kind == "dir" or not parts:
                    writer.folder(parts)
                    continue
                total += m.size  # tarfile reads exactly this many bytes for the member
                if free is not None and total > free:
                    raise _too_big(archive, total, free, work)
                src = tf.extractfile(m)
                if src is None:
                    raise _Damaged(f"member {m.name!r} cannot be read")
                with src:
                    writer.file(parts, src)
            except _Unsafe as exc:
                raise ArchiveError(f"unsafe member {m.name!r} in {archive.name}: "
                                    f"{exc}") from None
        if not count:
            raise ArchiveError(f"{archive.name}: empty archive")


def extract_archive(archive: Path, dst: Path) -> None:
    """Check ``archive`` (zip or tar[.gz|.bz2|.xz]) and extract it into the folder ``dst``.

    ``dst`` must not exist or be empty. The members are written into a temp folder next to
    ``dst`` that becomes ``dst`` only when the whole archive was extracted; a link, device
    file, FIFO, absolute or ``..`` name refuses the archive. ArchiveError names the archive
    and the first unsafe member, or the reason the archive cannot be read or written.
    """
    dst = Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise UsageError(f"cannot extract {archive.name} into {dst}: it exists and is not an "
                         "empty folder")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    except OSError as exc:
        raise ArchiveError(f"cannot create a folder in {dst.parent}: "
                            f"{exc.strerror or exc}") from None
    try:
        try:
            if zipfile.is_zipfile(archive):
                _extract_zip(archive, work)
            else:
                _extract_tar(archive, work)
        except _CannotWrite as exc:
            raise ArchiveError(f"cannot extract {archive.name}: {exc}") from None
        except (_Damaged, *_READ_ERRORS) as exc:  # gzip errors are OSErrors too
            raise ArchiveError(f"{archive.name} is not a valid archive or is damaged: "
                                f"{_first_line(exc)}") from None
        try:
            with suppress(FileNotFoundError):
                dst.rmdir()  # empty (checked above); Windows cannot os.replace onto a folder
            os.replace(work, dst)
        except OSError as exc:
            raise ArchiveError(f"cannot move the extracted files to {dst}: "
                                f"{exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
