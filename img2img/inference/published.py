"""``img2img models``: list the catalogue of published checkpoints, fetch and import one.

``fetch_model("horse2zebra", "models")`` downloads the catalogue's file into a temp folder
inside ``models/`` (streamed, hashed while it arrives: :func:`img2img.data.fetch.fetch`),
imports it with :func:`~img2img.inference.loader.import_checkpoint` -- which reads the file
safely, recognises the generator from its tensors, writes the toolkit's ``.safetensors`` and
checks it reloads to the same outputs -- checks that the file is the kind of network the
catalogue says (task, scale), and moves ``models/horse2zebra.safetensors`` into place with
``os.replace``. Its metadata records the URL, the upstream file name and the SHA-256 of the
bytes received. The downloaded original is deleted unless ``keep_original`` (then it is kept
as ``models/horse2zebra.pth``): the imported file is complete and verified, and the recorded
URL and SHA-256 identify the original. A known SHA-256 that differs refuses the file. Any
failure leaves nothing in the folder (and removes the folder if it was created here).
"""

from __future__ import annotations

import os
import urllib.parse
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from img2img.checkpoint import CheckpointError, GeneratorMeta
from img2img.data.fetch import ByteProgress, DownloadError, fetch, work_folder
from img2img.errors import UsageError
from img2img.foreign.catalogue import CATALOGUE, FAMILIES, PublishedModel, lookup
from img2img.inference.loader import import_checkpoint

__all__ = ["FetchedModel", "catalogue_table", "fetch_model"]

URL_SCHEMES = ("https", "http", "file")


@dataclass(frozen=True)
class FetchedModel:
    """The outcome of :func:`fetch_model`: where the checkpoint is and what was received."""

    entry: PublishedModel
    path: Path  # DIR/<name>.safetensors
    url: str
    skipped: bool  # it already existed; nothing was downloaded
    size: int | None = None
    sha256: str = ""  # of the downloaded bytes
    verified: bool = False  # it matched a known SHA-256
    original: Path | None = None  # the kept download (keep_original)
    meta: GeneratorMeta | None = None


def catalogue_table(entries: list[PublishedModel] | None = None) -> list[str]:
    """Lines of the table ``img2img models`` prints: name, family, task, scale, licence and
    what it does; under each row, its upstream URL."""
    rows = list(CATALOGUE.values()) if entries is None else entries
    width = max(len(m.name) for m in rows) if rows else 4
    head = f"{'NAME':{width}}  {'FAMILY':11}  {'TASK':8}  SCALE  {'LICENCE':13}  WHAT IT DOES"
    lines = [head]
    notes: list[str] = []
    for m in rows:
        mark = ""
        if m.licence_note:
            if m.licence_note not in notes:
                notes.append(m.licence_note)
            mark = "*" * (notes.index(m.licence_note) + 1)
        lines.append(f"{m.name:{width}}  {m.family:11}  {m.task:8}  x{m.scale:<4}  "
                     f"{m.licence + mark:13}  {m.description}")
        lines.append(f"{'':{width}}  {m.url}")
    lines += [f"{'*' * (i + 1)} {note}" for i, note in enumerate(notes)]
    return lines


def _check_url(url: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in URL_SCHEMES:
        raise UsageError(f"--url {url}: expected an https://, http:// or file:// URL")


def _check_kind(entry: PublishedModel, meta: GeneratorMeta, url: str) -> None:
    """The imported network must be the kind of generator the catalogue lists."""
    want_task = FAMILIES[entry.family]
    if meta.task != want_task or meta.scale != entry.scale:
        raise DownloadError(
            f"{url}: the file holds {meta.extra.get('family', meta.arch)} (task {meta.task}, "
            f"x{meta.scale}); the catalogue lists a {entry.family} generator (task "
            f"{want_task}, x{entry.scale}) for {entry.name}; nothing kept")


def fetch_model(name: str, out_dir: str | os.PathLike[str], *, url: str | None = None,
                force: bool = False, keep_original: bool = False,
                progress: ByteProgress | None = None, timeout: float = 60.0) -> FetchedModel:
    """Download catalogue model ``name`` and import it as ``out_dir/<name>.safetensors``.

    ``url`` replaces the catalogue's URL (a mirror, a local copy; http:// and file:// are
    accepted there); a known SHA-256 in the catalogue is checked either way. An existing
    output is kept (``skipped``) unless ``force``. Raises UnknownModelError / UsageError
    (exit 2) or DownloadError (exit 1: offline, HTTP error, checksum mismatch, a file that
    is not the catalogue's kind of generator), leaving nothing behind.
    """
    entry = lookup(name)
    src_url = url or entry.url
    _check_url(src_url)
    out_p = Path(out_dir)
    dest = out_p / f"{entry.name}.safetensors"
    if (dest.exists() or dest.is_symlink()) and not force:
        return FetchedModel(entry, dest, src_url, skipped=True)
    if out_p.exists() and not out_p.is_dir():
        raise UsageError(f"--out {out_p} exists and is not a folder")
    with work_folder(out_p, entry.name, ".fetch") as work:
        src = work / entry.file_name
        size, sha256 = fetch(src_url, src, progress, timeout, sha256=entry.sha256)
        converted = work / dest.name
        record = {"url": src_url, "catalogue_name": entry.name, "licence": entry.licence}
        try:
            meta = import_checkpoint(src, converted, None, "A2B", extra=record)
        except (CheckpointError, ValueError) as exc:  # UsageError included: not our request
            raise DownloadError(f"{src_url}: not a checkpoint the toolkit can run: "
                                f"{exc}") from None
        _check_kind(entry, meta, src_url)
        if meta.extra.get("source_sha256") != sha256:  # the file changed after the download
            raise DownloadError(f"{src_url}: the downloaded file changed while importing it")
        kept = out_p / f"{entry.name}.pth" if keep_original else None
        try:
            if kept is not None:
                os.replace(src, kept)
            os.replace(converted, dest)
        except OSError as exc:
            if kept is not None:
                with suppress(OSError):
                    kept.unlink()
            raise DownloadError(f"cannot write {dest}: {exc.strerror or exc}") from None
    return FetchedModel(entry, dest, src_url, False, size, sha256, entry.sha256 is not None,
                        kept, meta)
