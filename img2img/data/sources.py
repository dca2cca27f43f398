"""Where a dataset builder's input files come from: folders, globs, list files, label CSVs.

A source spec is resolved in this order:

* an existing folder: every image below it (:func:`~img2img.data.scan.list_images`, recursive);
* an existing file with an image suffix: that one image;
* any other existing file: a list file, one path per line (blank lines and lines starting with
  ``#`` are ignored; relative paths are relative to the list file's folder; entries are kept
  whatever their suffix and in the listed order);
* otherwise a glob (``*``, ``?``, ``[...]``, ``**``; see :func:`~img2img.data.scan.expand_inputs`).

A spec that does not exist, or gives no files, is a :class:`UsageError`. Listed files that do
not exist are *not* usage errors: the builder reports them as unreadable like any bad file.
A label CSV (:func:`read_labels`) maps rows to domains by the value of one column.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from img2img.data.scan import expand_inputs, is_image_path, list_images
from img2img.errors import UsageError

__all__ = ["Source", "UsageError", "read_labels", "read_list_file", "resolve_source"]

_MAGIC = re.compile(r"[*?[]")


@dataclass(frozen=True)
class Source:
    """A resolved source spec.

    ``files`` are absolute (``os.path.abspath``: symlinks are kept, not resolved). ``folder``
    is the folder whose tree the source reads (None for list files and single files);
    ``recursive`` says whether it reads below the folder's top level; ``listing`` is the list
    file or label CSV the paths came from.
    """

    spec: str
    kind: str  # "folder" | "glob" | "file" | "list" | "labels"
    files: tuple[Path, ...]
    folder: Path | None = None
    recursive: bool = False
    listing: Path | None = None


def _abs(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def read_list_file(path: str | os.PathLike[str]) -> list[Path]:
    """Absolute paths listed in a text file (see module docstring); UsageError if unreadable."""
    list_path = _abs(path)
    try:
        text = list_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read list file {path}: {exc}") from None
    out: list[Path] = []
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        p = Path(os.path.expanduser(entry))
        out.append(_abs(p if p.is_absolute() else list_path.parent / p))
    return out


def resolve_source(spec: str) -> Source:
    """Resolve one source spec (folder, image file, list file or glob); UsageError if empty."""
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        files = list_images(path)
        kind, folder, recursive = "folder", _abs(path), True
    elif path.is_file():
        if is_image_path(path):
            return Source(spec, "file", (_abs(path),))
        files = read_list_file(path)
        if not files:
            raise UsageError(f"source {spec}: the list file names no files")
        return Source(spec, "list", tuple(files), listing=_abs(path))
    elif _MAGIC.search(spec):
        base, files = expand_inputs(spec)
        kind, folder = "glob", _abs(base or ".")
        segments = path.parts[next(i for i, p in enumerate(path.parts) if _MAGIC.search(p)) :]
        recursive = len(segments) > 1
    else:
        raise UsageError(f"source {spec}: no such file or folder")
    if not files:
        what = "no images in this folder" if kind == "folder" else "the glob matches no images"
        raise UsageError(f"source {spec}: {what}")
    return Source(spec, kind, tuple(_abs(f) for f in files), folder, recursive)


def read_labels(
    csv_path: str | os.PathLike[str], path_column: str, label_column: str, values: dict[str, str]
) -> dict[str, Source]:
    """Split the rows of a label CSV into domains: ``values`` maps domain -> label value.

    Relative paths resolve against the CSV's folder; rows whose label is not one of the values
    (compared after stripping spaces) and rows with an empty path are ignored. ``.tsv`` files
    are tab-separated. UsageError for a missing file or column (naming the columns) or a label
    that no row has.
    """
    path = _abs(csv_path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            columns = list(reader.fieldnames or [])
            for col, flag in ((path_column, "--path-column"), (label_column, "--label-column")):
                if col not in columns:
                    listed = ", ".join(repr(c) for c in columns) or "none"
                    raise UsageError(f"{csv_path}: no column {col!r} ({flag}); columns: {listed}")
            by_label: dict[str, list[Path]] = {v: [] for v in values.values()}
            for row in reader:
                label = (row.get(label_column) or "").strip()
                cell = (row.get(path_column) or "").strip()
                if label in by_label and cell:
                    p = Path(os.path.expanduser(cell))
                    by_label[label].append(_abs(p if p.is_absolute() else path.parent / p))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"cannot read label file {csv_path}: {exc}") from None
    out: dict[str, Source] = {}
    for domain, value in values.items():
        if not by_label[value]:
            raise UsageError(f"{csv_path}: no row has {label_column} = {value!r} (domain {domain})")
        spec = f"{csv_path} [{label_column} = {value}]"
        out[domain] = Source(spec, "labels", tuple(by_label[value]), listing=path)
    return out
