"""Catalogue and downloader of the public CycleGAN and pix2pix datasets.

Names: the CycleGAN datasets keep their own names (``horse2zebra``, ``maps``, ``facades``, ...)
and unpack to ``OUT/NAME/trainA|trainB|testA|testB``. The pix2pix datasets whose name also
exists for CycleGAN are called ``pix2pix_facades`` and ``pix2pix_maps``; the others keep their
names (``edges2shoes``, ``night2day``, ...); they unpack to ``OUT/NAME/train|val|test`` of
``A|B`` images. ``cyclegan/NAME`` and ``pix2pix/NAME`` are accepted as aliases. The dataset
folder is always named after the catalogue name (so both ``maps`` can coexist).

A download streams to a temp folder inside ``OUT``, is checked (the archive opens and lists,
its size matches Content-Length), extracted there with member checks (no absolute paths, no
``..``, no links pointing outside, no device files), and the extracted top folder is then
moved into place with ``os.replace``. A failed or interrupted download leaves no dataset
folder and removes its temp files.
"""

from __future__ import annotations

import difflib
import os
import shutil
import socket
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = [
    "CATALOGUE",
    "CYCLEGAN_URL",
    "PIX2PIX_URL",
    "Dataset",
    "DownloadError",
    "DownloadResult",
    "ManualDownloadError",
    "UnknownDatasetError",
    "dataset_url",
    "download_dataset",
    "extract_archive",
    "lookup",
    "missing_folders",
]

CYCLEGAN_URL = "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"

ByteProgress = Callable[[int, int | None], None]
"""Called with (bytes received since the last call, total size or None if unknown)."""


@dataclass(frozen=True)
class Dataset:
    """One catalogue entry."""

    name: str  # folder name under --out
    family: str  # "cyclegan" or "pix2pix"
    remote: str  # archive name on the server, without suffix
    description: str
    manual: str = ""  # instructions when it cannot be downloaded automatically

    @property
    def archive(self) -> str:
        """File name on the server."""
        return self.remote + (".zip" if self.family == "cyclegan" else ".tar.gz")

    @property
    def expected(self) -> tuple[str, ...]:
        """Sub-folders a complete dataset has."""
        return ("trainA", "trainB") if self.family == "cyclegan" else ("train",)


_CITYSCAPES_HELP = """\
cityscapes cannot be downloaded automatically: its licence requires registration.
  1. Register and log in at https://www.cityscapes-dataset.com/
  2. Download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip
     (https://www.cityscapes-dataset.com/downloads/) and unzip them.
  3. Put matching photos and colour label maps (*_gtFine_color.png) under the same relative
     names in two folders, then build A|B images, e.g.
     python datasets/combine_pairs.py --a photos --b labels --out datasets/cityscapes/train"""


def _cg(name: str, description: str) -> Dataset:
    return Dataset(name, "cyclegan", name, description)


def _p2p(name: str, description: str, remote: str | None = None, manual: str = "") -> Dataset:
    return Dataset(name, "pix2pix", remote or name, description, manual)


CATALOGUE: dict[str, Dataset] = {
    d.name: d
    for d in (
        _cg("apple2orange", "ImageNet apples <-> oranges"),
        _cg("summer2winter_yosemite", "Yosemite in summer <-> winter (Flickr)"),
        _cg("horse2zebra", "ImageNet horses <-> zebras"),
        _cg("monet2photo", "Monet paintings <-> landscape photos"),
        _cg("cezanne2photo", "Cezanne paintings <-> landscape photos"),
        _cg("ukiyoe2photo", "Ukiyo-e prints <-> landscape photos"),
        _cg("vangogh2photo", "Van Gogh paintings <-> landscape photos"),
        _cg("maps", "Google Maps aerial photos <-> maps (unpaired)"),
        _cg("iphone2dslr_flower", "iPhone <-> DSLR flower photos (shallow depth of field)"),
        _cg("ae_photos", "a small set of test photos from the CycleGAN paper"),
        _cg("facades", "CMP facade label maps <-> photos (unpaired)"),
        _cg("grumpifycat", "cats <-> Grumpy Cat"),
        _p2p("pix2pix_facades", "CMP facades: label map | photo", remote="facades"),
        _p2p("pix2pix_maps", "aerial photo | Google map", remote="maps"),
        _p2p("edges2shoes", "HED edges | shoe photo (50k)"),
        _p2p("edges2handbags", "HED edges | handbag photo (137k)"),
        _p2p("night2day", "night | day photos of the same outdoor webcam scenes"),
        _p2p("cityscapes", "semantic label map | street photo", manual=_CITYSCAPES_HELP),
    )
}


class DownloadError(Exception):
    """A download, check or extraction failed (exit code 1); the message is one line."""


class UnknownDatasetError(ValueError):
    """The name is not in the catalogue (exit code 2)."""


class ManualDownloadError(ValueError):
    """The dataset must be downloaded by hand; the message holds the instructions (exit 2)."""


@dataclass(frozen=True)
class DownloadResult:
    """Where the dataset is, and whether it was already there (nothing downloaded)."""

    path: Path
    skipped: bool
    url: str = ""


def lookup(name: str) -> Dataset:
    """Catalogue entry for ``name`` (or ``cyclegan/NAME``, ``pix2pix/NAME``)."""
    key = name.strip().strip("/")
    family, _, rest = key.partition("/")
    if rest and family in ("cyclegan", "pix2pix"):
        matches = [d for d in CATALOGUE.values() if d.family == family and d.remote == rest]
        if matches:
            return matches[0]
    elif key in CATALOGUE:
        return CATALOGUE[key]
    close = difflib.get_close_matches(key, list(CATALOGUE), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UnknownDatasetError(f"unknown dataset {name!r}{hint} (--list shows all names)")


def dataset_url(ds: Dataset, url_base: str | None = None) -> str:
    """Archive URL; ``url_base`` replaces the server folder that holds the archives."""
    base = url_base or (CYCLEGAN_URL if ds.family == "cyclegan" else PIX2PIX_URL)
    return base.rstrip("/") + "/" + ds.archive


# --------------------------------------------------------------------------- fetching


def _fetch(url: str, dst: Path, progress: ByteProgress | None, timeout: float) -> None:
    """Stream ``url`` into ``dst``; DownloadError with a one-line reason on any failure."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dst, "wb") as f:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if progress:
                progress(0, total)
            received = 0
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                received += len(chunk)
                if progress:
                    progress(len(chunk), total)
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
    if total is not None and received != total:
        raise DownloadError(f"cannot download {url}: incomplete, got {received} of "
                            f"{total} bytes")


# --------------------------------------------------------------------------- extraction


def _unsafe_name(name: str) -> str | None:
    """Why an archive member name is unsafe, or None."""
    if not name:
        return "empty name"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "'..' in path"
    return None


def _check_tar_member(m: tarfile.TarInfo) -> str | None:
    reason = _unsafe_name(m.name)
    if reason:
        return reason
    if m.issym() or m.islnk():
        target = m.linkname
        if target.startswith(("/", "\\")):
            return f"link to absolute path {target}"
        # symlinks resolve from the member's folder, hard links from the archive root
        base = PurePosixPath(m.name).parent if m.issym() else PurePosixPath()
        depth = 0
        for part in (base / target).parts:
            depth += -1 if part == ".." else 0 if part == "." else 1
            if depth < 0:
                return f"link pointing outside the archive ({target})"
    elif not (m.isfile() or m.isdir()):
        return "device, FIFO or other special file"
    return None


def extract_archive(archive: Path, dst: Path) -> None:
    """Check ``archive`` (zip or tar[.gz]) and extract it into the folder ``dst``.

    Every member is checked before anything is written; DownloadError names the first
    unsafe member or the reason the archive cannot be read.
    """
    dst.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                if not infos:
                    raise DownloadError(f"{archive.name}: empty archive")
                for info in infos:
                    reason = _unsafe_name(info.filename)
                    if reason:
                        raise DownloadError(f"unsafe member {info.filename!r} in "
                                            f"{archive.name}: {reason}")
                zf.extractall(dst)  # zip "symlinks" are extracted as plain files
            return
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            if not members:
                raise DownloadError(f"{archive.name}: empty archive")
            for m in members:
                reason = _check_tar_member(m)
                if reason:
                    raise DownloadError(f"unsafe member {m.name!r} in {archive.name}: {reason}")
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dst, members, filter="data")
            else:  # Python < 3.11.4: members were checked above
                tf.extractall(dst, members)
    except DownloadError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError,
            zlib.error) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(":")
        raise DownloadError(f"{archive.name} is not a valid archive or is damaged: "
                            f"{detail}") from None


def _top_folder(extracted: Path) -> Path:
    """The single top-level folder of an extraction, or the extraction folder itself."""
    entries = [e for e in extracted.iterdir() if e.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return extracted


# --------------------------------------------------------------------------- download


def download_dataset(name: str, out: str | os.PathLike[str] = "datasets", *,
                     url_base: str | None = None, overwrite: bool = False,
                     progress: ByteProgress | None = None,
                     timeout: float = 60.0) -> DownloadResult:
    """Download and unpack dataset ``name`` into ``OUT/<name>`` atomically.

    An existing ``OUT/<name>`` is kept (``skipped=True``) unless ``overwrite``. Raises
    UnknownDatasetError, ManualDownloadError, or DownloadError (nothing left behind).
    """
    ds = lookup(name)
    if ds.manual:
        raise ManualDownloadError(ds.manual)
    out_p = Path(out)
    dest = out_p / ds.name
    url = dataset_url(ds, url_base)
    if (dest.exists() or dest.is_symlink()) and not overwrite:
        return DownloadResult(dest, True, url)
    created = not out_p.exists()
    try:
        out_p.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{ds.name}.", suffix=".download", dir=out_p))
    except OSError as exc:
        raise DownloadError(f"cannot create {out_p}: {exc.strerror or exc}") from None
    ok = False
    try:
        archive = work / ds.archive
        _fetch(url, archive, progress, timeout)
        extracted = work / "extracted"
        try:
            extract_archive(archive, extracted)
        except DownloadError as exc:
            raise DownloadError(f"{url}: {exc}") from None
        archive.unlink()
        top = _top_folder(extracted)
        previous = work / "previous"  # an overwritten dataset, removed with the work folder
        try:
            if dest.exists() or dest.is_symlink():
                os.replace(dest, previous)
            os.replace(top, dest)
        except OSError as exc:
            if previous.exists() and not dest.exists():
                os.replace(previous, dest)  # put the old dataset back
            raise DownloadError(f"cannot move the dataset to {dest}: {exc}") from None
        ok = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if created and not ok:
            with suppress(OSError):
                out_p.rmdir()  # only if still empty: a failed download leaves no trace
    return DownloadResult(dest, False, url)


def missing_folders(result: DownloadResult, name: str) -> list[str]:
    """Expected sub-folders (e.g. ``trainA``) that the downloaded dataset lacks."""
    return [f for f in lookup(name).expected if not (result.path / f).is_dir()]
