"""Build an unpaired (CycleGAN) dataset ``ROOT/trainA trainB testA testB`` from loose sources.

Sources are folders, globs, list files (:mod:`img2img.data.sources`) or a label CSV. Steps:

1. **Collect.** Files in the order given: domain A, then B; sources in command-line order;
   files in each source's order (folders and globs sorted by path, lists as listed). A path
   given twice in one domain counts once.
2. **Check.** Every file is read once, hashed (SHA-256 of its bytes) and fully decoded with
   :func:`~img2img.data.io.decode_image` in a thread pool. Unreadable, corrupt and non-image
   files are dropped as ``corrupt``; images with ``min(h, w) < min_size`` as ``too_small``.
3. **Deduplicate** by content hash. Within a domain the first occurrence (in the order of
   step 1) is kept, later copies are dropped as ``duplicate`` with ``duplicate_of``.
   *Cross-domain duplicates:* content found in both A and B has no trustworthy domain, so
   every copy is dropped from both domains (kind ``cross_domain_duplicate``, ``duplicate_of``
   names the first copy in the other domain). The user can put it back where it belongs.
4. **Split.** Per domain, images rank by ``sha256(f"{seed}:{domain}:{content_sha256}")``;
   the first ``round(n * test_fraction)`` go to test (at least 1 when ``n >= 2`` and the
   fraction is > 0; at least 1 image always stays in train). The split depends only on the
   image contents and the seed: not on paths, source order or the disk, and adding images
   moves existing ones only at the cut-off.
5. **Name.** Output names are the source file names, unique per domain (case-insensitively,
   so trainA and testA never clash either): the first file keeps its name, later ones with
   the same name get ``_2``, ``_3``, ... before the suffix (skipping names already taken).
   With ``resize`` the image is decoded again, resized so the shorter side is ``resize``
   (INTER_AREA to shrink, INTER_CUBIC to enlarge) and written as ``.jpg`` if the source is a
   JPEG, else ``.png``. Otherwise ``mode="copy"`` copies the bytes unchanged (format, EXIF and
   mtime kept) and ``mode="link"`` makes a hard link, falling back to a symlink, then to a copy
   (the manifest records which per file and in total). A source whose suffix readers would
   not list (e.g. from a list file) is copied with its detected format's suffix, or written as
   PNG if that format is not one the toolkit lists.
6. **Write.** Everything goes into a hidden staging folder inside ROOT (each file through
   :func:`~img2img.data.io.atomic_path`); a source whose hash or size changed since step 2
   aborts the build. Only when all files are written are the old ``trainA trainB testA
   testB manifest.json`` (with ``overwrite``) replaced; ``manifest.json`` is written last,
   so its presence marks a complete dataset. A failure leaves ROOT as it was.

ROOT must be empty or absent (unless ``overwrite``), must not be (inside) a folder a source
reads, must not hold a source file in a folder it would replace, and none of the entries it
would replace may be a symbolic link leading outside ROOT (:mod:`img2img.data.paths`).
Sources are only read.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from img2img import __version__
from img2img.data.io import (
    IMAGE_EXTENSIONS,
    ImageIOError,
    atomic_path,
    atomic_write_bytes,
    decode_image,
    write_image,
)
from img2img.data.paths import (
    check_clear_of_inputs,
    check_output_folder,
    is_inside,
    outside_reason,
    real,
)
from img2img.data.placing import link_or_copy, remove_entry
from img2img.data.resize import resize_short_side
from img2img.data.scan import is_image_path
from img2img.data.sources import Source, UsageError, read_labels, resolve_source

__all__ = [
    "MANIFEST",
    "SPLIT_DIRS",
    "BuildError",
    "BuildReport",
    "Dropped",
    "LabelsSpec",
    "UnpairedOptions",
    "UsageError",
    "build_unpaired",
    "resize_short_side",
    "unique_names",
]

DOMAINS = ("A", "B")
SPLIT_DIRS = ("trainA", "trainB", "testA", "testB")
MANIFEST = "manifest.json"
MODES = ("copy", "link")

T = TypeVar("T")
Progress = Callable[..., Iterable[Any]]
"""``progress(iterable, desc=str, total=int) -> iterable`` (``tqdm`` fits)."""


def _no_progress(iterable: Iterable[T], **_: object) -> Iterable[T]:
    return iterable


class BuildError(RuntimeError):
    """Writing the dataset failed (ROOT is left as it was)."""


@dataclass(frozen=True)
class LabelsSpec:
    """Domains from a label CSV: rows whose ``label_column`` is ``a_value`` / ``b_value``."""

    csv: str
    path_column: str = "path"
    label_column: str = "label"
    a_value: str = ""
    b_value: str = ""


@dataclass(frozen=True)
class UnpairedOptions:
    """Everything a build needs; ``a``/``b`` are source specs (or ``labels`` instead)."""

    out: str
    a: tuple[str, ...] = ()
    b: tuple[str, ...] = ()
    labels: LabelsSpec | None = None
    test_fraction: float = 0.1
    seed: int = 0
    min_size: int = 0
    resize: int | None = None
    mode: str = "copy"
    overwrite: bool = False
    workers: int = 4

    def validate(self) -> None:
        """UsageError for inconsistent or out-of-range options."""
        if self.labels is not None:
            if self.a or self.b:
                raise UsageError("use either --a/--b or --labels, not both")
            if not self.labels.a_value or not self.labels.b_value:
                raise UsageError("--labels needs --a-value and --b-value")
            if self.labels.a_value == self.labels.b_value:
                raise UsageError("--a-value and --b-value must differ")
        elif not self.a or not self.b:
            raise UsageError("give sources for both domains (--a ... --b ...) or --labels")
        if not 0.0 <= self.test_fraction < 1.0:
            raise UsageError(f"--test-fraction must be in [0, 1), got {self.test_fraction}")
        if self.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {self.seed}")
        if self.min_size < 0:
            raise UsageError(f"--min-size must be >= 0, got {self.min_size}")
        if self.resize is not None and self.resize < 1:
            raise UsageError(f"--resize must be >= 1, got {self.resize}")
        if self.mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class Dropped:
    """A source file left out, and why."""

    domain: str
    path: Path
    kind: str  # "corrupt" | "too_small" | "duplicate" | "cross_domain_duplicate"
    reason: str
    duplicate_of: Path | None = None

    def as_json(self) -> dict[str, str]:
        d = {"domain": self.domain, "path": str(self.path), "kind": self.kind,
             "reason": self.reason}
        if self.duplicate_of is not None:
            d["duplicate_of"] = str(self.duplicate_of)
        return d


@dataclass
class BuildReport:
    """Outcome of a build: counts per split folder, dropped files, the manifest written."""

    counts: dict[str, int]
    dropped: list[Dropped]
    manifest: dict[str, Any] = field(default_factory=dict)

    def drop_counts(self) -> Counter[str]:
        """Dropped files per kind (cross-domain duplicates count as ``duplicate``)."""
        return Counter("duplicate" if d.kind.endswith("duplicate") else d.kind
                       for d in self.dropped)

    def summary(self) -> str:
        """``A: n train / m test, B: ...; dropped k (corrupt x, too small y, duplicate z)``."""
        c, k = self.counts, self.drop_counts()
        return (f"A: {c['trainA']} train / {c['testA']} test, "
                f"B: {c['trainB']} train / {c['testB']} test; dropped {len(self.dropped)} "
                f"(corrupt {k['corrupt']}, too small {k['too_small']}, "
                f"duplicate {k['duplicate']})")


# --------------------------------------------------------------------------- helpers


def unique_names(names: list[str]) -> list[str]:
    """Make names unique case-insensitively: first keeps its name, later get ``_2``, ``_3``..."""
    out: list[str | None] = [None] * len(names)
    used: set[str] = set()
    for i, name in enumerate(names):
        if name.lower() not in used:
            used.add(name.lower())
            out[i] = name
    for i, name in enumerate(names):
        if out[i] is None:
            stem, ext = os.path.splitext(name)
            k = 2
            while f"{stem}_{k}{ext}".lower() in used:
                k += 1
            out[i] = f"{stem}_{k}{ext}"
            used.add(out[i].lower())
    return [n for n in out if n is not None]


_CONTAINER_SUFFIX = (
    (b"\xff\xd8\xff", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
    (b"BM", ".bmp"),
)


def _container_suffix(head: bytes) -> str | None:
    """Suffix of the file format from its first bytes (None if unknown)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    return next((suffix for magic, suffix in _CONTAINER_SUFFIX if head.startswith(magic)), None)


# --------------------------------------------------------------------------- checking


@dataclass(frozen=True)
class _Checked:
    """What reading one file found."""

    sha256: str = ""
    height: int = 0
    width: int = 0
    suffix: str | None = None  # detected container suffix
    size: int = 0
    mtime_ns: int = 0
    error: str = ""


def _read(path: Path) -> tuple[bytes, os.stat_result]:
    with open(path, "rb") as f:
        return f.read(), os.fstat(f.fileno())


def _check(path: Path) -> _Checked:
    """Read, hash and decode one file; errors become ``_Checked.error``."""
    try:
        data, st = _read(path)
    except FileNotFoundError:
        return _Checked(error="file not found")
    except IsADirectoryError:
        return _Checked(error="is a directory, not a file")
    except OSError as exc:
        return _Checked(error=exc.strerror or str(exc))
    try:
        img = decode_image(data, path)
    except ImageIOError as exc:
        return _Checked(error=exc.reason or str(exc))
    return _Checked(hashlib.sha256(data).hexdigest(), img.shape[0], img.shape[1],
                    _container_suffix(data[:16]), st.st_size, st.st_mtime_ns)


def _run_pool(
    fn: Callable[[T], Any], items: list[T], workers: int, progress: Progress, desc: str
) -> list[Any]:
    """``[fn(x) for x in items]`` on a thread pool, with a progress bar; first error raises."""
    results: list[Any] = [None] * len(items)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures: dict[Future[Any], int] = {pool.submit(fn, x): i for i, x in enumerate(items)}
        try:
            for fut in progress(as_completed(futures), desc=desc, total=len(items), unit="img"):
                results[futures[fut]] = fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return results


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class _Job:
    source: Path
    output: str  # "trainA/name.ext"
    checked: _Checked
    encode: bool  # decode + (resize) + encode instead of copy/link


def _collect(opts: UnpairedOptions) -> tuple[dict[str, list[Source]], Any]:
    """Resolve the sources of both domains; also return their manifest description."""
    if opts.labels is not None:
        lab = opts.labels
        by_domain = read_labels(lab.csv, lab.path_column, lab.label_column,
                                {"A": lab.a_value, "B": lab.b_value})
        desc: Any = {"labels": lab.csv, "path_column": lab.path_column,
                     "label_column": lab.label_column, "a_value": lab.a_value,
                     "b_value": lab.b_value}
        return {d: [s] for d, s in by_domain.items()}, desc
    sources = {"A": [resolve_source(s) for s in opts.a], "B": [resolve_source(s) for s in opts.b]}
    return sources, {"A": list(opts.a), "B": list(opts.b)}


def _check_output(out: Path, sources: list[Source], files: list[Path], overwrite: bool) -> None:
    """UsageError unless ROOT can be written without touching any source (module docstring)."""
    check_output_folder(out, "--out")
    # A flat glob reads only its folder's top level: ROOT may lie below it, but not be it.
    folders = [(s.folder, f"the source folder {s.folder} (from {s.spec})") for s in sources
               if s.folder is not None and (s.recursive or real(s.folder) == real(out))]
    check_clear_of_inputs(out, folders, flag="--out")
    for name in (*SPLIT_DIRS, MANIFEST):
        if (reason := outside_reason(out / name, out)) is not None:
            raise UsageError(f"{reason}; this build would replace it: remove the link or "
                             f"choose another --out")
    # Compare both the given (abspath) and the real form: a symlink in a replaced folder
    # would dangle once the folder is replaced, whatever it points to.
    replaced = [(name, p) for name in (*SPLIT_DIRS, MANIFEST) for p in (out / name,
                                                                      real(out / name))]
    extra = [s.listing for s in sources if s.listing is not None]
    extra += [s.folder for s in sources if s.folder is not None]
    for f in [*files, *extra]:
        for form in (f, real(f)):
            hit = next((name for name, d in replaced if is_inside(form, d, resolve=False)),
                       None)
            if hit is not None:
                raise UsageError(f"source {f} is in {out / hit}, which this build would "
                                 "replace; choose another --out")
    if out.is_dir() and not overwrite:
        with os.scandir(out) as it:
            if next(it, None) is not None:
                raise UsageError(f"--out {out} is not empty; use --overwrite to replace "
                                 f"{', '.join(SPLIT_DIRS)} and {MANIFEST} in it")


def _select(
    entries: list[tuple[str, Path]], checked: list[_Checked], min_size: int
) -> tuple[dict[str, list[int]], list[tuple[int, Dropped]]]:
    """Drop bad, small and duplicate entries; return kept indices per domain and the drops."""
    dropped: list[tuple[int, Dropped]] = []
    groups: dict[str, list[int]] = {}
    for i, ((domain, path), c) in enumerate(zip(entries, checked, strict=True)):
        if c.error:
            dropped.append((i, Dropped(domain, path, "corrupt", c.error)))
        elif min(c.height, c.width) < min_size:
            reason = f"too small: {c.width}x{c.height} (shorter side < --min-size {min_size})"
            dropped.append((i, Dropped(domain, path, "too_small", reason)))
        else:
            groups.setdefault(c.sha256, []).append(i)
    kept: dict[str, list[int]] = {d: [] for d in DOMAINS}
    for members in groups.values():
        first = {d: next((i for i in members if entries[i][0] == d), None) for d in DOMAINS}
        if all(i is not None for i in first.values()):
            for i in members:
                domain, path = entries[i]
                other = "B" if domain == "A" else "A"
                twin = entries[first[other]][1]  # type: ignore[index]
                reason = (f"same content in A and B (also {other}: {twin}): domain is "
                          "ambiguous, dropped from both")
                dropped.append((i, Dropped(domain, path, "cross_domain_duplicate", reason,
                                           twin)))
            continue
        keep = members[0]
        kept[entries[keep][0]].append(keep)
        for i in members[1:]:
            domain, path = entries[i]
            reason = f"duplicate of {entries[keep][1]} (same SHA-256)"
            dropped.append((i, Dropped(domain, path, "duplicate", reason, entries[keep][1])))
    for domain in DOMAINS:
        kept[domain].sort()
    dropped.sort(key=lambda t: t[0])
    return kept, dropped


def _test_count(n: int, fraction: float) -> int:
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, int(n * fraction + 0.5)))


def _split(domain: str, shas: list[str], seed: int, fraction: float) -> set[int]:
    """Indices (into ``shas``) of the test images, by seeded content-hash rank."""
    def rank(i: int) -> str:
        return hashlib.sha256(f"{seed}:{domain}:{shas[i]}".encode()).hexdigest()

    order = sorted(range(len(shas)), key=rank)
    return set(order[: _test_count(len(shas), fraction)])


def _output_name(path: Path, checked: _Checked, resize: bool) -> tuple[str, bool]:
    """(output file name, needs re-encoding) for one kept source."""
    stem = path.stem.lstrip(".") or "image"
    if resize:
        return stem + (".jpg" if checked.suffix == ".jpg" else ".png"), True
    if is_image_path(path):
        return (path.name.lstrip(".") or "image" + path.suffix), False
    if checked.suffix in IMAGE_EXTENSIONS:
        return stem + checked.suffix, False
    return stem + ".png", True


def _plan(
    entries: list[tuple[str, Path]], checked: list[_Checked], kept: dict[str, list[int]],
    opts: UnpairedOptions,
) -> list[_Job]:
    jobs: list[_Job] = []
    for domain in DOMAINS:
        idx = kept[domain]
        if not idx:
            raise UsageError(f"domain {domain} has no usable images after dropping bad, "
                             "small and duplicate files")
        test = _split(domain, [checked[i].sha256 for i in idx], opts.seed, opts.test_fraction)
        named = [_output_name(entries[i][1], checked[i], opts.resize is not None) for i in idx]
        names = unique_names([n for n, _ in named])
        for j, i in enumerate(idx):
            folder = ("test" if j in test else "train") + domain
            jobs.append(_Job(entries[i][1], f"{folder}/{names[j]}", checked[i], named[j][1]))
    return jobs


# --------------------------------------------------------------------------- writing


def _read_verified(job: _Job) -> bytes:
    data, _ = _read(job.source)
    if hashlib.sha256(data).hexdigest() != job.checked.sha256:
        raise BuildError(f"{job.source}: changed since it was checked; run again")
    return data


def _copy(job: _Job, dst: Path) -> None:
    data = _read_verified(job)
    st = os.stat(job.source)
    with atomic_path(dst) as tmp:
        tmp.write_bytes(data)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))


def _link(job: _Job, dst: Path) -> str:
    """Hard link, else symlink, else copy; returns the method used."""
    st = os.stat(job.source)
    if (st.st_size, st.st_mtime_ns) != (job.checked.size, job.checked.mtime_ns):
        raise BuildError(f"{job.source}: changed since it was checked; run again")
    return link_or_copy(job.source, dst, lambda: _copy(job, dst))


def _write_one(job: _Job, staging: Path, opts: UnpairedOptions) -> str:
    """Write one output file into ``staging``; returns the method used."""
    dst = staging / job.output
    if job.encode:
        img = decode_image(_read_verified(job), job.source)
        if opts.resize is not None:
            img = resize_short_side(img, opts.resize)
        write_image(dst, img)
        return "resized" if opts.resize is not None else "encoded"
    if opts.mode == "link":
        return _link(job, dst)
    _copy(job, dst)
    return "copy"


def _write_all(
    jobs: list[_Job], out: Path, opts: UnpairedOptions, manifest: dict[str, Any],
    progress: Progress,
) -> list[str]:
    """Write into a staging folder, then swap it in; returns the method per job."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".make_unpaired-{secrets.token_hex(4)}"
    try:
        for d in SPLIT_DIRS:
            (staging / d).mkdir(parents=True)
        methods = _run_pool(lambda job: _write_one(job, staging, opts), jobs, opts.workers,
                            progress, "write")
        remove_entry(out / MANIFEST)
        for d in SPLIT_DIRS:
            remove_entry(out / d)
            os.rename(staging / d, out / d)
        staging.rmdir()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            with suppress(OSError):
                out.rmdir()
        raise
    manifest["methods"] = dict(sorted(Counter(methods).items()))
    manifest["files"] = [
        {"path": j.output, "source": str(j.source), "source_sha256": j.checked.sha256,
         "method": m}
        for j, m in zip(jobs, methods, strict=True)
    ]
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    atomic_write_bytes(out / MANIFEST, text.encode("utf-8"))
    return methods


# --------------------------------------------------------------------------- entry point


def _entries(sources: dict[str, list[Source]]) -> Iterator[tuple[str, Path]]:
    for domain in DOMAINS:
        seen: set[Path] = set()
        for src in sources[domain]:
            for f in src.files:
                if f not in seen:
                    seen.add(f)
                    yield domain, f


def build_unpaired(opts: UnpairedOptions, progress: Progress = _no_progress) -> BuildReport:
    """Build the dataset described by ``opts`` (see module docstring).

    Raises UsageError for a bad request (nothing is written) and BuildError when writing
    fails (ROOT is left as it was). ``progress`` wraps iterables like ``tqdm``.
    """
    opts.validate()
    out = Path(os.path.abspath(os.path.expanduser(opts.out)))
    sources, sources_desc = _collect(opts)
    entries = list(_entries(sources))
    _check_output(out, [s for d in DOMAINS for s in sources[d]], [p for _, p in entries],
                  opts.overwrite)
    checked = _run_pool(_check, [p for _, p in entries], opts.workers, progress, "check")
    kept, dropped_at = _select(entries, checked, opts.min_size)
    jobs = _plan(entries, checked, kept, opts)
    counts = {d: 0 for d in SPLIT_DIRS}
    for job in jobs:
        counts[job.output.split("/")[0]] += 1
    dropped = [d for _, d in dropped_at]
    report = BuildReport(counts, dropped)
    manifest: dict[str, Any] = {
        "tool": "make_unpaired",
        "version": __version__,
        "sources": sources_desc,
        "seed": opts.seed,
        "test_fraction": opts.test_fraction,
        "options": {"min_size": opts.min_size, "resize": opts.resize, "mode": opts.mode,
                    "cross_domain_duplicates": "dropped from both domains"},
        "counts": {**counts, "dropped": len(dropped),
                   **{k: report.drop_counts()[k] for k in ("corrupt", "too_small", "duplicate")}},
        "dropped": [d.as_json() for d in dropped],
    }
    try:
        _write_all(jobs, out, opts, manifest, progress)
    except BuildError:
        raise
    except Exception as exc:  # any failure while writing: report it, ROOT is unchanged
        raise BuildError(f"writing {out} failed: {exc}") from exc
    report.manifest = manifest
    return report
