"""Catalogue and downloader of the public CycleGAN and pix2pix datasets.

Names: the CycleGAN datasets keep their own names (``horse2zebra``, ``maps``, ``facades``, ...)
and unpack to ``OUT/NAME/trainA|trainB|testA|testB``. The pix2pix datasets whose name also
exists for CycleGAN are called ``pix2pix_facades`` and ``pix2pix_maps``; the others keep their
names (``edges2shoes``, ``night2day``, ...); they unpack to ``OUT/NAME/train|val|test`` of
``A|B`` images. ``cyclegan/NAME`` and ``pix2pix/NAME`` are accepted as aliases. The dataset
folder is always named after the catalogue name (so both ``maps`` can coexist).

A download streams to a temp file in a temp folder inside ``OUT`` while its SHA-256 is
computed; its size must match Content-Length, and a known size / SHA-256 (catalogue entry or
the caller's) must match too. The archive is then unpacked by this module itself, never by
``tarfile.extractall`` (so the safety does not depend on the interpreter's tarfile filters):
only regular files and folders are accepted -- a symbolic link, hard link, device file or FIFO
refuses the whole archive, as do absolute names and ``..`` components -- and every file's
folder is checked again after resolving links. The unpacked top folder, with a
``download.json`` recording the archive's URL, size and SHA-256, is moved into place with
``os.replace``. A failed or interrupted download leaves no dataset folder and no temp files.
"""

from __future__ import annotations

import datetime
import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from img2img.data.archive import ArchiveError, extract_archive
from img2img.data.fetch import ByteProgress, DownloadError, fetch, work_folder
from img2img.errors import UsageError

__all__ = [
    "CATALOGUE",
    "CYCLEGAN_URL",
    "MANIFEST_NAME",
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

# Both folders live on the same host. It serves the CycleGAN zips over https, and the pix2pix
# tarballs (published with plain http:// links) are fetched over https too. That the pix2pix
# folder answers on https could not be checked from the offline machine this was written on;
# if it ever fails, --url-base http://efrosgans.eecs.berkeley.edu/pix2pix/datasets is the
# fallback (pin the archive's SHA-256 with --sha256 then).
CYCLEGAN_URL = "https://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
PIX2PIX_URL = "https://efrosgans.eecs.berkeley.edu/pix2pix/datasets"

MANIFEST_NAME = "download.json"
"""File written into each downloaded dataset folder: URL, size and SHA-256 of its archive."""

@dataclass(frozen=True)
class Dataset:
    """One catalogue entry; ``size``/``sha256`` are checked when known (never guessed)."""

    name: str  # folder name under --out
    family: str  # "cyclegan" or "pix2pix"
    remote: str  # archive name on the server, without suffix
    description: str
    manual: str = ""  # instructions when it cannot be downloaded automatically
    size: int | None = None  # archive size in bytes, when known
    sha256: str = ""  # archive SHA-256 (lower-case hex), when known

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


class UnknownDatasetError(UsageError):
    """The name is not in the catalogue (exit code 2)."""


class ManualDownloadError(UsageError):
    """The dataset must be downloaded by hand; the message holds the instructions (exit 2)."""


@dataclass(frozen=True)
class DownloadResult:
    """Where the dataset is, whether it was already there (nothing downloaded), and what the
    downloaded archive was: its size, SHA-256, whether they matched a known value, and the
    manifest file that records them (None if skipped or the archive had its own)."""

    path: Path
    skipped: bool
    url: str = ""
    size: int | None = None
    sha256: str = ""
    verified: bool = False
    manifest: Path | None = None


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


# --------------------------------------------------------------------------- extraction



def _top_folder(extracted: Path) -> Path:
    """The single top-level folder of an extraction, or the extraction folder itself."""
    entries = [e for e in extracted.iterdir() if e.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return extracted


def _write_manifest(folder: Path, record: dict[str, object]) -> Path | None:
    """Write ``folder/download.json`` (unless the archive brought a file of that name)."""
    path = folder / MANIFEST_NAME
    if path.exists() or path.is_symlink():
        return None
    try:
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:  # the folder is still a temp folder: a failure leaves nothing
        raise DownloadError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def _expected(ds: Dataset, size: int | None, sha256: str | None) -> tuple[int | None, str]:
    """The size and SHA-256 to check: the caller's, else the catalogue's (either may be none)."""
    want = (sha256 if sha256 is not None else ds.sha256).strip().lower()
    if want and not _SHA256_RE.fullmatch(want):
        raise UsageError(f"sha256 {want!r} for {ds.name} is not 64 hexadecimal digits")
    want_size = size if size is not None else ds.size
    if want_size is not None and want_size < 0:
        raise UsageError(f"size {want_size} for {ds.name} is negative")
    return want_size, want


# --------------------------------------------------------------------------- download


def download_dataset(name: str, out: str | os.PathLike[str] = "datasets", *,
                     url_base: str | None = None, overwrite: bool = False,
                     progress: ByteProgress | None = None, timeout: float = 60.0,
                     sha256: str | None = None, size: int | None = None) -> DownloadResult:
    """Download and unpack dataset ``name`` into ``OUT/<name>`` atomically.

    ``sha256``/``size`` are the archive's expected SHA-256 (hex) and byte count; they default
    to the catalogue's, which are checked when present. The observed size and SHA-256 are
    returned and recorded in ``OUT/<name>/download.json``. An existing ``OUT/<name>`` is kept
    (``skipped=True``) unless ``overwrite``. Raises UnknownDatasetError, ManualDownloadError,
    UsageError (bad ``sha256``), or DownloadError (nothing left behind).
    """
    ds = lookup(name)
    if ds.manual:
        raise ManualDownloadError(ds.manual)
    want_size, want_sha = _expected(ds, size, sha256)
    out_p = Path(out)
    dest = out_p / ds.name
    url = dataset_url(ds, url_base)
    if (dest.exists() or dest.is_symlink()) and not overwrite:
        return DownloadResult(dest, True, url)
    with work_folder(out_p, ds.name, ".download") as work:
        archive = work / ds.archive
        got_size, got_sha = fetch(url, archive, progress, timeout, size=want_size,
                                  sha256=want_sha)
        extracted = work / "extracted"
        try:
            extract_archive(archive, extracted)
        except ArchiveError as exc:
            raise DownloadError(f"{url}: {exc}") from None
        archive.unlink()
        top = _top_folder(extracted)
        manifest = _write_manifest(top, {
            "dataset": ds.name, "url": url, "archive": ds.archive, "size": got_size,
            "sha256": got_sha, "verified": bool(want_sha),
            "downloaded": datetime.datetime.now(datetime.timezone.utc)
            .isoformat(timespec="seconds")})
        previous = work / "previous"  # an overwritten dataset, removed with the work folder
        try:
            if dest.exists() or dest.is_symlink():
                os.replace(dest, previous)
            os.replace(top, dest)
        except OSError as exc:
            if previous.exists() and not dest.exists():
                os.replace(previous, dest)  # put the old dataset back
            raise DownloadError(f"cannot move the dataset to {dest}: {exc}") from None
    return DownloadResult(dest, False, url, got_size, got_sha, bool(want_sha),
                          dest / MANIFEST_NAME if manifest else None)


def missing_folders(result: DownloadResult, name: str) -> list[str]:
    """Expected sub-folders (e.g. ``trainA``) that the downloaded dataset lacks."""
    return [f for f in lookup(name).expected if not (result.path / f).is_dir()]
